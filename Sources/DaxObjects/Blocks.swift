import DaxHeap
import Synchronization

/// An object's block: where it is and what holds it.
struct Block {
    var chunk: Int
    /// The block's index in its chunk (0 for a large object).
    var index: Int
    var start: UInt64
    var size: UInt64
    var info: ChunkInfo
}

extension ObjectHeap {
    /// The block that holds arena offset `offset`, whether live or not; nil outside every
    /// carved chunk (metadata, a free chunk, a small chunk's unused tail).
    @inline(__always)
    func block(at offset: UInt64) -> Block? {
        let chunk = Int(truncatingIfNeeded: offset >> Layout.chunkShift)
        guard chunk >= Int(geometry.metadataChunks), chunk < tables.capacity else { return nil }
        let info = tables.chunkInfo(chunk)
        let chunkStart = UInt64(chunk) << Layout.chunkShift
        switch info.kind {
        case .small:
            let size = SizeClasses.sizes[info.sizeClass]
            let index = (offset - chunkStart) / size
            guard index < Layout.chunkSize / size else { return nil }
            return Block(chunk: chunk, index: Int(index), start: chunkStart + index * size, size: size, info: info)
        case .largeHead:
            return Block(chunk: chunk, index: 0, start: chunkStart, size: info.run << Layout.chunkShift, info: info)
        case .largeTail:
            let head = chunk - Int(info.run)
            let headInfo = tables.chunkInfo(head)
            guard info.run > 0, headInfo.kind == .largeHead else { return nil }
            return Block(chunk: head, index: 0, start: UInt64(head) << Layout.chunkShift,
                         size: headInfo.run << Layout.chunkShift, info: headInfo)
        case .free:
            return nil
        }
    }

    /// The live object `reference` names, or a typed error saying why it names none.
    @inline(__always)
    func object(_ reference: ObjectReference) throws(ObjectError) -> Block {
        guard reference.arenaTag == tag else {
            if reference.isNull { throw .notAnObject(reference, reason: "it is null") }
            throw .foreignReference(reference, arena: arena.name)
        }
        guard let block = block(at: reference.offset), block.start == reference.offset else {
            throw .notAnObject(reference, reason: "no object starts there")
        }
        guard tables.isLive(block.chunk, block.index) else {
            throw .notAnObject(reference, reason: "it is not allocated (freed already?)")
        }
        return block
    }

    /// The word of `slot`, checked: 8-byte aligned, and a root in use or a word inside a
    /// live object of kind `.references` (recovery reads only those, so a reference kept
    /// anywhere else would not keep its object alive).
    @inline(__always)
    func checkSlot(_ slot: ObjectSlot) throws(ObjectError) -> UnsafeMutablePointer<Atomic<UInt64>> {
        let offset = slot.offset
        guard offset & 7 == 0 else { throw .invalidSlot(offset: offset, reason: "not a multiple of 8") }
        if offset < geometry.firstDataOffset {
            guard isRootSlot(offset) else { throw .invalidSlot(offset: offset, reason: "in the metadata, and not a root") }
            return word(offset)
        }
        guard let block = block(at: offset), offset + 8 <= block.start + block.size,
              tables.isLive(block.chunk, block.index) else {
            throw .invalidSlot(offset: offset, reason: "not inside a live object")
        }
        guard block.info.objectKind == .references else {
            throw .invalidSlot(offset: offset, reason: "inside an object of kind .data, which recovery does not scan for references")
        }
        return word(offset)
    }
}

// MARK: - Chunks

/// Which data chunks are free, under the chunk lock.
struct ChunkPool {
    var free: [UInt64]
    /// Chunks the arena has now (metadata chunks included).
    var count = 0

    init(capacity: Int) { free = Array(repeating: 0, count: (capacity + 63) / 64) }

    func isFree(_ chunk: Int) -> Bool { free[chunk >> 6] & 1 << UInt64(chunk & 63) != 0 }
    mutating func setFree(_ chunk: Int, _ value: Bool) {
        if value { free[chunk >> 6] |= 1 << UInt64(chunk & 63) } else { free[chunk >> 6] &= ~(1 << UInt64(chunk & 63)) }
    }

    /// The first of `length` consecutive free chunks below `count`, lowest first.
    func findRun(_ length: Int, from start: Int) -> Int? {
        var run = 0
        var chunk = start
        while chunk < count {
            if length == 1, free[chunk >> 6] == 0 { chunk = (chunk | 63) + 1; run = 0; continue }
            run = isFree(chunk) ? run + 1 : 0
            if run == length { return chunk - length + 1 }
            chunk += 1
        }
        return nil
    }

    /// Free chunks at the end of the arena.
    var trailingFree: Int {
        var chunk = count - 1
        while chunk >= 0, isFree(chunk) { chunk -= 1 }
        return count - 1 - chunk
    }
}

/// The chunks of one (size class, object kind) that have unclaimed blocks: a list linked
/// through `VolatileTables.nextPartial`, under the class's lock.
struct ClassPool {
    /// The first chunk of the list, plus one (0: empty).
    var head = 0
}

extension ObjectHeap {
    /// Takes `length` consecutive free chunks, growing the arena when it has none (and
    /// `grow` allows); the caller writes their chunk-table entries.
    func takeChunks(_ length: Int, for bytes: UInt64, grow mayGrow: Bool = true) throws(ObjectError) -> Int {
        try chunks.withLock { pool throws(ObjectError) -> Int in
            let first = Int(geometry.metadataChunks)
            if let run = pool.findRun(length, from: first) {
                for chunk in run..<(run + length) { pool.setFree(chunk, false) }
                return run
            }
            guard mayGrow else { throw .outOfSpace(arena: arena.name, requested: bytes, reason: "no free chunk without growing") }
            try grow(&pool, toFit: length, bytes: bytes)
            guard let run = pool.findRun(length, from: first) else {
                throw .outOfSpace(arena: arena.name, requested: bytes, reason: "no run of \(length) chunks after growing")
            }
            for chunk in run..<(run + length) { pool.setFree(chunk, false) }
            return run
        }
    }

    /// Grows the arena so that its free chunks at the end can hold `length`: by a quarter
    /// of its size (at least 16 MiB) when the heap has room, else by just what is needed.
    private func grow(_ pool: inout ChunkPool, toFit length: Int, bytes: UInt64) throws(ObjectError) {
        let needed = length - pool.trailingFree
        let capacity = Int(geometry.chunkCapacity)
        guard pool.count + needed <= capacity else {
            throw .outOfSpace(arena: arena.name, requested: bytes, reason: "the chunk table holds \(capacity) chunks")
        }
        let generous = min(capacity, pool.count + max(needed, pool.count / 4, 8))
        var lastError: HeapError?
        for target in [generous, pool.count + needed] where target > pool.count {
            do {
                try arena.heap.resizeArena(named: arena.name, to: UInt64(target) << Layout.chunkShift)
                for chunk in pool.count..<target { pool.setFree(chunk, true) }
                pool.count = target
                return
            } catch {
                lastError = error
            }
        }
        // Out of space only for want of room: a heap that failed to take the change (a metadata
        // write failed, say) is not full, and retrying will not help until that is mended.
        switch lastError {
        case .noSpace?, .tableFull?, nil:
            throw .outOfSpace(arena: arena.name, requested: bytes, reason: lastError?.description ?? "the arena cannot grow")
        case let error?:
            throw .heap(error)
        }
    }

    /// Gives chunks back to the free pool. Their table entries are cleared and flushed but
    /// not fenced: recovery frees an unreachable object whatever its entry says, and the
    /// next use of these chunks fences its own entries.
    func giveBackChunks(_ first: Int, _ length: Int) throws(ObjectError) {
        for chunk in first..<(first + length) { tables.setChunkInfo(chunk, .free) }
        try clearChunkEntries(first, length)
        chunks.withLock { pool in
            for chunk in first..<(first + length) { pool.setFree(chunk, true) }
        }
    }

    /// Clears the chunk-table entries of `length` chunks from `first` and flushes them, with
    /// no fence (a free, and recovery's freeing of what nothing reaches).
    func clearChunkEntries(_ first: Int, _ length: Int) throws(ObjectError) {
        for chunk in first..<(first + length) { word(chunkEntryOffset(chunk)).pointee.store(0, ordering: .relaxed) }
        try flush(chunkEntryOffset(first), UInt64(length) * 8)
    }

    func chunkEntryOffset(_ chunk: Int) -> UInt64 { geometry.chunkTableOffset + UInt64(chunk) * 8 }

    /// Writes chunk-table entries durably (with the zeroing of `.references` chunks,
    /// before any object in them can be published) and mirrors them in the tables. The
    /// chunks are zeroed before the first entry is written, so that a process killed
    /// meanwhile leaves no entry; one killed among the entries, or a power loss before
    /// their fence, leaves a partial run that recovery frees (Recovery.loadChunkTable).
    func commitChunks(_ first: Int, _ descriptors: [ChunkDescriptor]) throws(ObjectError) {
        for (i, descriptor) in descriptors.enumerated() where descriptor.objectKind == .references {
            // Stale bytes of an earlier life must not read as references.
            let start = UInt64(first + i) << Layout.chunkShift
            (base + Int(start)).initializeMemory(as: UInt8.self, repeating: 0, count: Int(Layout.chunkSize))
            try flush(start, Layout.chunkSize)
        }
        for (i, descriptor) in descriptors.enumerated() {
            word(chunkEntryOffset(first + i)).pointee.store(descriptor.encoded(chunk: UInt64(first + i)), ordering: .relaxed)
        }
        try persist(chunkEntryOffset(first), UInt64(descriptors.count) * 8)
        for (i, descriptor) in descriptors.enumerated() {
            tables.resetChunk(first + i)
            tables.setChunkInfo(first + i, ChunkInfo(descriptor, distanceToHead: UInt64(i)))
        }
    }
}
