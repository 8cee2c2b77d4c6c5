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
        // Reads first: every lane's log and the chunk table are checked before anything is
        // written, so an open refused for their damage leaves the arena as it was (no lane
        // replayed, no log ended). A log that would write the chunk table is refused
        // (`inspect`), so reading it before the replay reads what it holds after.
        let logs = try (0..<heap.geometry.laneCount).map { lane throws(ObjectError) in try inspect(lane: lane) }
        let chunkCount = Int(heap.window.size >> Layout.chunkShift)
        let stray = try loadChunkTable(chunkCount)
        if writable {
            for (lane, log) in logs.enumerated() { try settle(lane: lane, log, &report) }
        } else {
            report.logsPendingReadOnly += logs.count { if case .committed = $0 { true } else { false } }
        }
        // `mark` can still refuse (a reference reaching a stray chunk), after the replay:
        // what it reads is what the committed transactions wrote. The replay only finished
        // transactions that had committed, as the next open would.
        try mark(stray: stray, &report)
        try rebuild(chunkCount, stray: stray, writable: writable, &report)
        let elapsed = clock.now - started
        report.milliseconds = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
    }

    /// What a lane's log holds at open.
    enum LaneLog {
        /// No log; `staleChecksum` if its checksum word is not zero (an older version's,
        /// or a crash inside a log's end): cleared before the lane commits again.
        case empty(staleChecksum: Bool)
        /// A log committed whole (its checksum holds) whose entries tile it: replayed.
        case committed(length: Int)
        /// A log cut short by a crash before its commit: discarded.
        case torn
    }

    /// Reads lane `lane`'s log (no write); a committed log whose entries do not tile it is damage.
    private func inspect(lane: Int) throws(ObjectError) -> LaneLog {
        let at = Layout.laneOffset(lane, laneLogBytes: heap.geometry.laneLogBytes)
        let length = heap.word(at + Layout.logLengthOffset).pointee.load(ordering: .relaxed)
        guard length != 0 else {
            // An empty log keeps no checksum (commitLog).
            return .empty(staleChecksum: heap.word(at + Layout.logChecksumOffset).pointee.load(ordering: .relaxed) != 0)
        }
        let capacity = UInt64(heap.geometry.laneLogBytes) - Layout.logEntriesOffset
        let valid = length <= capacity && length % 8 == 0
            && heap.word(at + Layout.logChecksumOffset).pointee.load(ordering: .relaxed) == UInt64(ObjectHeap.logChecksum(length, logEntries(at)))
        guard valid else { return .torn }
        // A log whose checksum holds was written whole by commitLog, so its entries tile it;
        // if they do not, the checksum matched by accident or forgery: damage, not a log.
        guard ObjectHeap.logIsWellFormed(logEntries(at), Int(length)) else {
            throw .corrupt(arena: heap.arena.name, detail: "lane \(lane)'s committed log has an entry that runs past its end")
        }
        // commitLog writes only inside objects and root slots (`checkWritable`); a log that
        // would write this arena's header, logs or chunk table is damage too, and refusing
        // it is what lets the chunk table be read before the replay.
        if let offset = heap.firstMetadataTarget(logEntries(at), Int(length)) {
            throw .corrupt(arena: heap.arena.name, detail: "lane \(lane)'s committed log writes the allocator's own metadata (offset \(offset))")
        }
        return .committed(length: Int(length))
    }

    /// Replays a committed log and ends it, discards a torn one, clears a stale checksum.
    private func settle(lane: Int, _ log: LaneLog, _ report: inout RecoveryReport) throws(ObjectError) {
        let at = Layout.laneOffset(lane, laneLogBytes: heap.geometry.laneLogBytes)
        switch log {
        case .empty(let staleChecksum):
            if staleChecksum { try heap.endLog(at) }
        case .committed(let length):
            try heap.applyLog(logEntries(at), length)
            heap.window.drain()
            report.transactionsReplayed += 1
            try heap.endLog(at)
        case .torn:
            report.tornLogsDiscarded += 1
            try heap.endLog(at)
        }
    }

    private func logEntries(_ laneOffset: UInt64) -> UnsafeMutableRawPointer { heap.base + Int(laneOffset + Layout.logEntriesOffset) }

    /// Reads the chunk table into the volatile tables; returns the stray chunks: entries
    /// that belong to no whole large object, which a crash leaves in two ways. A large
    /// object's entries (head, then tails) are made durable by one fence, in any order,
    /// and a SIGKILL can stop their writing between two of them: a head whose tails are
    /// not all there. Its free clears them head first, unfenced: tails no head covers.
    /// Neither can be reachable (an object is published only after its entries' fence,
    /// and freed only after its slot is durably empty), so both are free space; `mark`
    /// refuses a reference that reaches one, as damage.
    private func loadChunkTable(_ chunkCount: Int) throws(ObjectError) -> Set<Int> {
        var stray = Set<Int>()
        var chunk = Int(heap.geometry.metadataChunks)
        while chunk < chunkCount {
            let descriptor = try entry(chunk)
            switch descriptor.kind {
            case .largeTail:
                stray.insert(chunk)
            case .largeHead:
                let run = Int(descriptor.runLength)
                guard try isWholeRun(chunk, descriptor, chunkCount) else {
                    stray.insert(chunk)
                    break
                }
                for i in 0..<run {
                    heap.tables.setChunkInfo(chunk + i, ChunkInfo(i == 0 ? descriptor : ChunkDescriptor(kind: .largeTail, objectKind: descriptor.objectKind), distanceToHead: UInt64(i)))
                }
                chunk += run
                continue
            case .small, .free:
                heap.tables.setChunkInfo(chunk, ChunkInfo(descriptor))
            }
            chunk += 1
        }
        return stray
    }

    /// The valid entry of `chunk`, or a typed error (its check fails: damage).
    private func entry(_ chunk: Int) throws(ObjectError) -> ChunkDescriptor {
        let word = heap.word(heap.chunkEntryOffset(chunk)).pointee.load(ordering: .relaxed)
        guard let descriptor = ChunkDescriptor.decode(word, chunk: UInt64(chunk)) else {
            throw .corrupt(arena: heap.arena.name, detail: "chunk table entry \(chunk) is not valid (0x\(String(word, radix: 16)))")
        }
        return descriptor
    }

    /// Whether the chunks after the head at `chunk` are all tails of its object kind, as
    /// many as its run says, inside the arena.
    private func isWholeRun(_ chunk: Int, _ head: ChunkDescriptor, _ chunkCount: Int) throws(ObjectError) -> Bool {
        let run = Int(head.runLength)
        guard run <= chunkCount - chunk else { return false }
        for i in 1..<run {
            let tail = try entry(chunk + i)
            guard tail.kind == .largeTail, tail.objectKind == head.objectKind else { return false }
        }
        return true
    }

    /// Marks every object reachable from the roots live; `.references` objects are read
    /// for further references, each once.
    private func mark(stray: Set<Int>, _ report: inout RecoveryReport) throws(ObjectError) {
        var pending: [Block] = []
        func visit(_ raw: UInt64) throws(ObjectError) {
            guard raw >> ObjectReference.offsetBits == heap.tag else { return }
            let offset = raw & ObjectReference.offsetMask
            guard let block = heap.block(at: offset), block.start == offset else {
                // A stray chunk reads as free; a reference to its start is damage, not garbage.
                if offset & (Layout.chunkSize - 1) == 0, stray.contains(Int(truncatingIfNeeded: offset >> Layout.chunkShift)) {
                    throw .corrupt(arena: heap.arena.name, detail: "a reachable object at offset \(offset) has chunk-table entries that do not make a whole large object (chunk \(offset >> Layout.chunkShift))")
                }
                return
            }
            guard heap.tables.setLive(block.chunk, block.index) else { return }
            report.liveObjects += 1
            report.liveBytes += block.size
            if block.info.objectKind == .references { pending.append(block) }
        }
        for entry in 0..<Layout.rootCount where heap.rootNameLength(entry) > 0 {
            try visit(heap.word(heap.rootOffset(entry) + Layout.rootReferenceOffset).pointee.load(ordering: .relaxed))
        }
        while let block = pending.popLast() {
            let words = (heap.base + Int(block.start)).assumingMemoryBound(to: UInt64.self)
            for i in 0..<Int(block.size / 8) where words[i] >> ObjectReference.offsetBits == heap.tag {
                try visit(words[i])
            }
        }
    }

    /// Frees what was not reached: whole chunks (their entries cleared, and those of the
    /// stray chunks) and blocks of chunks that hold live ones (claimable again; in
    /// `.references` chunks zeroed, since a crash may have come between a free's slot and
    /// its zeroing).
    private func rebuild(_ chunkCount: Int, stray: Set<Int>, writable: Bool, _ report: inout RecoveryReport) throws(ObjectError) {
        var cleared = false
        report.chunksFreed += stray.count
        if writable, !stray.isEmpty {
            cleared = true
            for chunk in stray { clearEntries(chunk, 1) }
        }
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
                case .largeTail: length = 1  // unreachable: a head covers its tails, stray ones are free
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

    /// Clears the entries of chunks nothing reaches. A flush that fails is not an error
    /// here: an entry that stays on the media is freed again by the next recovery.
    private func clearEntries(_ chunk: Int, _ length: Int) {
        try? heap.clearChunkEntries(chunk, length)
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
    ///
    /// The entries, checksum and length reach the media in any order before the first
    /// fence, so the checksum must never match entries a previous transaction left in the
    /// lane: the log's end clears it with the length (`endLog`).
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
        try endLog(at)
    }

    /// Ends the log of the lane at `at`: length and checksum zero, durably. A crash
    /// inside leaves either a length of zero (no log) or a checksum of zero (a torn log,
    /// discarded: its writes were applied and fenced before).
    func endLog(_ at: UInt64) throws(ObjectError) {
        word(at + Layout.logLengthOffset).pointee.store(0, ordering: .relaxed)
        word(at + Layout.logChecksumOffset).pointee.store(0, ordering: .relaxed)
        try persist(at + Layout.logLengthOffset, Layout.logChecksumOffset + 8 - Layout.logLengthOffset)
    }

    /// Whether the entries tile `length` bytes exactly, each count within the log (the
    /// counts are read from the media: any 64-bit value).
    static func logIsWellFormed(_ entries: UnsafeRawPointer, _ length: Int) -> Bool {
        var at = 0
        while at < length {
            guard length - at >= Int(Layout.entryBytesOffset) else { return false }
            let count = entries.load(fromByteOffset: at + Int(Layout.entryCountOffset), as: UInt64.self)
            let room = UInt64(length - at) - Layout.entryBytesOffset
            guard count <= room, (count + 7) & ~7 <= room else { return false }
            at += Int(Layout.entryBytesOffset) + Int((count + 7) & ~7)
        }
        return at == length
    }

    /// The first target of a well-formed log in this arena that is neither in the data
    /// chunks nor a root's reference word: nil when there is none.
    func firstMetadataTarget(_ entries: UnsafeRawPointer, _ length: Int) -> UInt64? {
        var at = 0
        while at < length {
            let target = entries.load(fromByteOffset: at + Int(Layout.entryTargetOffset), as: UInt64.self)
            let count = entries.load(fromByteOffset: at + Int(Layout.entryCountOffset), as: UInt64.self)
            let offset = target & ObjectReference.offsetMask
            if target >> ObjectReference.offsetBits == tag, offset < geometry.firstDataOffset, !(count == 8 && isRootSlot(offset)) {
                return offset
            }
            at += Int(Layout.entryBytesOffset) + Int((count + 7) & ~7)
        }
        return nil
    }

    /// Copies every entry to its target and flushes it (no fence). Entries whose target is
    /// not a range of a live arena are skipped (they were checked when logged); an entry
    /// that runs past the log ends it (recovery refuses such a log before).
    func applyLog(_ entries: UnsafeRawPointer, _ length: Int) throws(ObjectError) {
        var at = 0
        while at + Int(Layout.entryBytesOffset) <= length {
            let target = entries.load(fromByteOffset: at + Int(Layout.entryTargetOffset), as: UInt64.self)
            let stored = entries.load(fromByteOffset: at + Int(Layout.entryCountOffset), as: UInt64.self)
            guard stored <= UInt64(length - at) - Layout.entryBytesOffset else { return }
            let count = Int(stored)
            let data = entries + at + Int(Layout.entryBytesOffset)
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
