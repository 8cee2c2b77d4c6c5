import DaxHeap
#if canImport(Glibc)
import Glibc
#endif

/// What opening an object heap found and did.
public struct RecoveryReport: Sendable, Equatable {
    /// Objects reachable from the roots: the live objects.
    public var liveObjects = 0
    /// Their blocks' bytes.
    public var liveBytes: UInt64 = 0
    /// Transactions that had committed their log but not finished applying it: applied now.
    public var transactionsReplayed = 0
    /// Logs cut short by the crash (never committed): discarded.
    public var tornLogsDiscarded = 0
    /// Committed logs left as they are because the heap is open read-only.
    public var logsPendingReadOnly = 0
    /// Chunks that held no reachable object: free again.
    public var chunksFreed = 0
    /// Wall-clock time of the recovery, in milliseconds.
    public var milliseconds = 0.0
}

/// Rebuilds the allocator's state at open (docs/OBJECTS.md, "Recovery"): replay committed
/// logs, read the chunk table, mark every object reachable from the roots, and free
/// everything else. Bounded by the live objects (each visited once; only `.references`
/// objects are read) and by the chunk table's entries.
struct Recovery {
    let heap: ObjectHeap

    func run(_ report: inout RecoveryReport) throws(ObjectError) {
        let clock = ContinuousClock()
        let started = clock.now
        let writable = heap.window.isWritable
        for lane in 0..<heap.geometry.laneCount { try replay(lane: lane, writable: writable, &report) }
        let chunkCount = Int(heap.window.size >> Layout.chunkShift)
        try loadChunkTable(chunkCount)
        try mark(&report)
        try rebuild(chunkCount, writable: writable, &report)
        let elapsed = clock.now - started
        report.milliseconds = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
    }

    private func replay(lane: Int, writable: Bool, _ report: inout RecoveryReport) throws(ObjectError) {
        let at = Layout.laneOffset(lane, laneLogBytes: heap.geometry.laneLogBytes)
        let length = heap.word(at + Layout.logLengthOffset).pointee.load(ordering: .relaxed)
        guard length != 0 else { return }
        let capacity = UInt64(heap.geometry.laneLogBytes) - Layout.logEntriesOffset
        let entries = heap.base + Int(at + Layout.logEntriesOffset)
        let valid = length <= capacity && length % 8 == 0
            && heap.word(at + Layout.logChecksumOffset).pointee.load(ordering: .relaxed) == UInt64(ObjectHeap.logChecksum(length, entries))
        guard writable else {
            if valid { report.logsPendingReadOnly += 1 }
            return
        }
        if valid {
            try heap.applyLog(entries, Int(length))
            heap.window.drain()
            report.transactionsReplayed += 1
        } else {
            report.tornLogsDiscarded += 1
        }
        heap.word(at + Layout.logLengthOffset).pointee.store(0, ordering: .relaxed)
        try heap.persist(at + Layout.logLengthOffset, 8)
    }

    private func loadChunkTable(_ chunkCount: Int) throws(ObjectError) {
        var chunk = Int(heap.geometry.metadataChunks)
        while chunk < chunkCount {
            let word = heap.word(heap.chunkEntryOffset(chunk)).pointee.load(ordering: .relaxed)
            guard let descriptor = ChunkDescriptor.decode(word, chunk: UInt64(chunk)) else {
                throw .corrupt(arena: heap.arena.name, detail: "chunk table entry \(chunk) is not valid (0x\(String(word, radix: 16)))")
            }
            switch descriptor.kind {
            case .largeTail:
                throw .corrupt(arena: heap.arena.name, detail: "chunk table entry \(chunk) continues no large object")
            case .largeHead:
                let run = Int(descriptor.runLength)
                guard chunk + run <= chunkCount else {
                    throw .corrupt(arena: heap.arena.name, detail: "the large object at chunk \(chunk) runs past the arena")
                }
                for i in 0..<run {
                    let tail = heap.word(heap.chunkEntryOffset(chunk + i)).pointee.load(ordering: .relaxed)
                    if i > 0 {
                        guard let next = ChunkDescriptor.decode(tail, chunk: UInt64(chunk + i)), next.kind == .largeTail,
                              next.objectKind == descriptor.objectKind else {
                            throw .corrupt(arena: heap.arena.name, detail: "chunk \(chunk + i) should continue the large object at chunk \(chunk)")
                        }
                    }
                    heap.tables.setChunkInfo(chunk + i, ChunkInfo(i == 0 ? descriptor : ChunkDescriptor(kind: .largeTail, objectKind: descriptor.objectKind), distanceToHead: UInt64(i)))
                }
                chunk += run
                continue
            case .small, .free:
                heap.tables.setChunkInfo(chunk, ChunkInfo(descriptor))
            }
            chunk += 1
        }
    }

    /// Marks every object reachable from the roots live; `.references` objects are read
    /// for further references, each once.
    private func mark(_ report: inout RecoveryReport) throws(ObjectError) {
        var pending: [Block] = []
        func visit(_ raw: UInt64) {
            guard raw >> ObjectReference.offsetBits == heap.tag, let block = heap.block(at: raw & ObjectReference.offsetMask),
                  block.start == raw & ObjectReference.offsetMask, heap.tables.setLive(block.chunk, block.index) else { return }
            report.liveObjects += 1
            report.liveBytes += block.size
            if block.info.objectKind == .references { pending.append(block) }
        }
        for entry in 0..<Layout.rootCount where heap.rootNameLength(entry) > 0 {
            visit(heap.word(heap.rootOffset(entry) + Layout.rootReferenceOffset).pointee.load(ordering: .relaxed))
        }
        while let block = pending.popLast() {
            let words = (heap.base + Int(block.start)).assumingMemoryBound(to: UInt64.self)
            for i in 0..<Int(block.size / 8) where words[i] >> ObjectReference.offsetBits == heap.tag {
                visit(words[i])
            }
        }
    }

    /// Frees what was not reached: whole chunks (their entries cleared) and blocks of
    /// chunks that hold live ones (claimable again; in `.references` chunks zeroed, since a
    /// crash may have come between a free's slot and its zeroing).
    private func rebuild(_ chunkCount: Int, writable: Bool, _ report: inout RecoveryReport) throws(ObjectError) {
        var cleared = false
        try heap.chunks.withLock { pool throws(ObjectError) in
            pool.count = chunkCount
            var chunk = Int(heap.geometry.metadataChunks)
            while chunk < chunkCount {
                let info = heap.tables.chunkInfo(chunk)
                var length = info.kind == .largeHead ? Int(info.run) : 1
                var live = 0
                switch info.kind {
                case .free: break
                case .largeHead: live = heap.tables.isLive(chunk, 0) ? 1 : 0
                case .small: live = try adopt(chunk, info, writable: writable)
                case .largeTail: length = 1  // unreachable: a head covers its tails
                }
                if live == 0 {
                    if info.kind != .free {
                        report.chunksFreed += length
                        if writable { cleared = true; clearEntries(chunk, length) }
                    }
                    for i in chunk..<(chunk + length) { heap.tables.setChunkInfo(i, .free); pool.setFree(i, true) }
                }
                chunk += length
            }
        }
        if cleared { heap.window.drain() }
    }

    /// Whether `count` bytes at `bytes` are all zero (memcmp against zeroes: fast in every
    /// build, as recovery reads every free block of `.references` chunks).
    private func isZero(_ bytes: UnsafeRawPointer, _ count: Int) -> Bool {
        var at = 0
        while at < count {
            let piece = min(count - at, Self.zeroes.count)
            if memcmp(bytes + at, Self.zeroes.baseAddress!, piece) != 0 { return false }
            at += piece
        }
        return true
    }

    /// Zeroes, never written (nonisolated(unsafe): read-only after initialization).
    nonisolated(unsafe) private static let zeroes = UnsafeRawBufferPointer(UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 64).initializeMemory(as: UInt8.self, repeating: 0))

    private func clearEntries(_ chunk: Int, _ length: Int) {
        for i in chunk..<(chunk + length) { heap.word(heap.chunkEntryOffset(i)).pointee.store(0, ordering: .relaxed) }
        try? heap.flush(heap.chunkEntryOffset(chunk), UInt64(length) * 8)
    }

    /// Puts a small chunk with live blocks back in its class: claimed = live.
    private func adopt(_ chunk: Int, _ info: ChunkInfo, writable: Bool) throws(ObjectError) -> Int {
        let size = SizeClasses.sizes[info.sizeClass]
        let blocks = Int(Layout.chunkSize / size)
        var live = 0
        for w in 0..<((blocks + 63) / 64) {
            let bits = heap.tables.live[chunk * VolatileTables.bitmapWords + w].load(ordering: .relaxed)
            heap.tables.claimed[chunk * VolatileTables.bitmapWords + w] = bits
            live += bits.nonzeroBitCount
        }
        guard live > 0 else { return 0 }
        heap.tables.claimedCount[chunk] = UInt32(live)
        heap.tables.cursor[chunk] = 0
        if info.objectKind == .references, writable {
            for index in 0..<blocks where !heap.tables.isLive(chunk, index) {
                let start = UInt64(chunk) << Layout.chunkShift + UInt64(index) * size
                if !isZero(heap.base + Int(start), Int(size)) {
                    (heap.base + Int(start)).initializeMemory(as: UInt8.self, repeating: 0, count: Int(size))
                    try heap.flush(start, size)
                }
            }
        }
        if live < blocks {
            heap.pools[ObjectHeap.poolIndex(info.sizeClass, info.objectKind)].withLock { pool in heap.pushPartial(&pool, chunk) }
        }
        return live
    }
}

// MARK: - Logs

extension ObjectHeap {
    static func logChecksum(_ length: UInt64, _ entries: UnsafeRawPointer) -> UInt32 {
        var length = length
        let seed = withUnsafeBytes(of: &length) { Layout.checksum($0.baseAddress!, 8) }
        return Layout.checksum(entries, Int(length), seed: seed)
    }

    /// Commits a transaction's log: log durable (fence), writes applied (fence), log
    /// ended (fence). A crash before the first fence leaves a log whose checksum fails
    /// (discarded at open); after it, open applies the log again (the writes are
    /// idempotent) until its end is durable.
    func commitLog(lane: Int, _ log: RedoBuffer) throws(ObjectError) {
        let at = Layout.laneOffset(lane, laneLogBytes: geometry.laneLogBytes)
        let entries = base + Int(at + Layout.logEntriesOffset)
        entries.copyMemory(from: log.entriesStart, byteCount: log.used)
        try flush(at + Layout.logEntriesOffset, UInt64(log.used))
        word(at + Layout.logChecksumOffset).pointee.store(UInt64(Self.logChecksum(UInt64(log.used), entries)), ordering: .relaxed)
        word(at + Layout.logLengthOffset).pointee.store(UInt64(log.used), ordering: .relaxed)
        try persist(at, 16)
        try applyLog(entries, log.used)
        window.drain()
        word(at + Layout.logLengthOffset).pointee.store(0, ordering: .relaxed)
        try persist(at + Layout.logLengthOffset, 8)
    }

    /// Copies every entry to its target and flushes it (no fence). Entries whose target is
    /// not a range of a live arena are skipped (they were checked when logged).
    func applyLog(_ entries: UnsafeRawPointer, _ length: Int) throws(ObjectError) {
        var at = 0
        while at + Int(Layout.entryBytesOffset) <= length {
            let target = entries.load(fromByteOffset: at + Int(Layout.entryTargetOffset), as: UInt64.self)
            let count = Int(entries.load(fromByteOffset: at + Int(Layout.entryCountOffset), as: UInt64.self))
            let data = entries + at + Int(Layout.entryBytesOffset)
            guard count <= length - at - Int(Layout.entryBytesOffset) else { return }
            let arenaID = target >> ObjectReference.offsetBits
            let offset = target & ObjectReference.offsetMask
            let source = UnsafeRawBufferPointer(start: data, count: count)
            if arenaID == tag {
                if offset <= window.size, UInt64(count) <= window.size - offset {
                    (base + Int(offset)).copyMemory(from: data, byteCount: count)
                    try flush(offset, UInt64(count))
                }
            } else if let arena = try? arena.heap.resolve(PersistentReference(arenaID: arenaID, offset: 0)),
                      offset <= arena.size, UInt64(count) <= arena.size - offset {
                try Self.wrap { () throws(HeapError) in
                    try arena.write(source, at: offset)
                    try arena.flush(at: offset, count: UInt64(count))
                }
            }
            at += Int(Layout.entryBytesOffset) + (count + 7) & ~7
        }
    }

    /// Checks that a transaction may write `[offset, offset + count)` of this arena: inside
    /// one live object, or a root's reference word.
    func checkWritable(_ offset: UInt64, _ count: UInt64) throws(ObjectError) {
        if count == 8, isRootSlot(offset) { return }
        guard let block = block(at: offset), tables.isLive(block.chunk, block.index),
              count <= block.start + block.size - offset else {
            throw .invalidSlot(offset: offset, reason: "a transaction writes only inside live objects and root slots")
        }
    }
}
