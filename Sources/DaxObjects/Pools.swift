/// Small objects: contexts take blocks from the class pools in batches (refill) and give
/// surplus back (giveBack); a pool carves a new chunk when none of its chunks has an
/// unclaimed block. Lock order: a class pool, then the chunk lock.
extension ObjectHeap {
    @inline(__always)
    static func poolIndex(_ sizeClass: Int, _ kind: ObjectKind) -> Int { 2 * sizeClass + Int(kind.rawValue) }

    /// Claims up to `want` unclaimed blocks of `sizeClass` and `kind` into `out` for the
    /// context on `lane`, from a chunk of its own when it can (carving one if every chunk
    /// with room is another context's); returns how many (at least one, or it throws).
    func refill(_ sizeClass: Int, _ kind: ObjectKind, lane: Int, into out: UnsafeMutablePointer<UInt64>, want: Int) throws(ObjectError) -> Int {
        let size = SizeClasses.sizes[sizeClass]
        let blocks = Int(Layout.chunkSize / size)
        let mine = UInt16(lane + 1)
        return try pools[Self.poolIndex(sizeClass, kind)].withLock { pool throws(ObjectError) -> Int in
            var got = 0
            while got < want {
                // A chunk of this context's; else a new one if the arena has room without
                // growing; else another context's; else a new one, growing the arena.
                var found = ownChunk(pool, mine)
                if found == nil { found = try? carve(&pool, sizeClass, kind, grow: false) }
                if found == nil, pool.head != 0 { found = pool.head - 1 }
                if found == nil {
                    do throws(ObjectError) {
                        found = try carve(&pool, sizeClass, kind, grow: true)
                    } catch {
                        if got > 0 { return got }
                        throw error
                    }
                }
                let chunk = found!
                tables.owner[chunk] = mine
                got += claim(chunk, blocks: blocks, size: size, into: out + got, want: want - got)
                if tables.claimedCount[chunk] == UInt32(blocks) { removePartial(&pool, chunk) }
            }
            return got
        }
    }

    /// Carves a free chunk for a class and puts it on the class's list.
    private func carve(_ pool: inout ClassPool, _ sizeClass: Int, _ kind: ObjectKind, grow: Bool) throws(ObjectError) -> Int {
        let chunk = try takeChunks(1, for: SizeClasses.sizes[sizeClass], grow: grow)
        try commitChunks(chunk, [ChunkDescriptor(kind: .small, sizeClass: sizeClass, objectKind: kind)])
        pushPartial(&pool, chunk)
        return chunk
    }

    /// A chunk with room that `mine` claimed from last, or nobody: among the first few of
    /// the class's list.
    private func ownChunk(_ pool: ClassPool, _ mine: UInt16) -> Int? {
        var next = pool.head
        for _ in 0..<8 where next != 0 {
            let chunk = next - 1
            if tables.owner[chunk] == mine || tables.owner[chunk] == 0 { return chunk }
            next = Int(tables.nextPartial[chunk])
        }
        return nil
    }

    /// Claims unclaimed blocks of one chunk from its cursor on (under its class's lock).
    private func claim(_ chunk: Int, blocks: Int, size: UInt64, into out: UnsafeMutablePointer<UInt64>, want: Int) -> Int {
        var got = 0
        let words = (blocks + 63) / 64
        let bitmap = tables.claimed + chunk * VolatileTables.bitmapWords
        let chunkStart = UInt64(chunk) << Layout.chunkShift
        var w = Int(tables.cursor[chunk]) / 64
        while got < want, w < words {
            var open = ~bitmap[w]
            if w == words - 1, blocks % 64 != 0 { open &= (1 << UInt64(blocks % 64)) - 1 }
            while open != 0, got < want {
                let bit = open.trailingZeroBitCount
                open &= open - 1
                bitmap[w] |= 1 << UInt64(bit)
                out[got] = chunkStart + UInt64(w * 64 + bit) * size
                got += 1
            }
            if open == 0 { w += 1 }
        }
        tables.claimedCount[chunk] += UInt32(got)
        tables.cursor[chunk] = UInt32(w * 64)
        return got
    }

    /// Returns claimed blocks (not live) to their chunks. A chunk left with no claimed
    /// block goes back to the free chunks, unless it is its class's only chunk with room
    /// (kept, so that a class that frees and allocates around one chunk does not carve it
    /// again and again).
    func giveBack(_ sizeClass: Int, _ kind: ObjectKind, _ offsets: UnsafeMutablePointer<UInt64>, count: Int) {
        let size = SizeClasses.sizes[sizeClass]
        pools[Self.poolIndex(sizeClass, kind)].withLock { pool in
            for i in 0..<count {
                let offset = offsets[i]
                let chunk = Int(offset >> Layout.chunkShift)
                let index = Int((offset & (Layout.chunkSize - 1)) / size)
                let (word, bit) = tables.claimedWord(chunk, index)
                word.pointee &= ~bit
                tables.claimedCount[chunk] -= 1
                tables.cursor[chunk] = min(tables.cursor[chunk], UInt32(index & ~63))
                if tables.inPartial[chunk] == 0 { pushPartial(&pool, chunk) }
                if tables.claimedCount[chunk] == 0, pool.head != chunk + 1 || tables.nextPartial[chunk] != 0 {
                    removePartial(&pool, chunk)
                    // No block of it is claimed: nothing reaches it. (A class lock, then the
                    // chunk lock, as refill takes them.)
                    try? giveBackChunks(chunk, 1)
                }
            }
        }
    }

    func pushPartial(_ pool: inout ClassPool, _ chunk: Int) {
        tables.nextPartial[chunk] = UInt32(pool.head)
        tables.previousPartial[chunk] = 0
        if pool.head != 0 { tables.previousPartial[pool.head - 1] = UInt32(chunk + 1) }
        tables.inPartial[chunk] = 1
        pool.head = chunk + 1
    }

    func removePartial(_ pool: inout ClassPool, _ chunk: Int) {
        let next = Int(tables.nextPartial[chunk]), previous = Int(tables.previousPartial[chunk])
        if previous == 0 { pool.head = next } else { tables.nextPartial[previous - 1] = UInt32(next) }
        if next != 0 { tables.previousPartial[next - 1] = UInt32(previous) }
        tables.inPartial[chunk] = 0
    }

    // MARK: - Large objects

    /// Takes and records a run of whole chunks for `size` bytes; the object is live (and,
    /// of kind `.references`, zero) when this returns, but reachable from nothing yet.
    func allocateLarge(_ size: UInt64, _ kind: ObjectKind) throws(ObjectError) -> UInt64 {
        let length = (size + Layout.chunkSize - 1) >> Layout.chunkShift
        guard length < 1 << 24 else { throw .invalidSize(size) }
        let first = try takeChunks(Int(length), for: size)
        var descriptors = [ChunkDescriptor(kind: .largeHead, objectKind: kind, runLength: length)]
        descriptors += Array(repeating: ChunkDescriptor(kind: .largeTail, objectKind: kind), count: Int(length) - 1)
        do {
            try commitChunks(first, descriptors)
        } catch {
            chunks.withLock { pool in for chunk in first..<(first + Int(length)) { pool.setFree(chunk, true) } }
            throw error
        }
        _ = tables.setLive(first, 0)
        return UInt64(first) << Layout.chunkShift
    }
}
