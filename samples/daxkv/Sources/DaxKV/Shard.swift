import DaxHeap
import Synchronization  // Atomic (the published index descriptor, the live count, the statistics)

#if canImport(Glibc)
import Glibc
#endif

/// One shard of a store (see ``KVStore``): the keys whose hash picks it, on two arenas
/// of their own, `NAME.index` (a hash table of 8-byte slots) and `NAME.data` (a log of
/// checksummed records in 2 MiB segments), with ".N" appended for shard N > 0. See
/// samples/daxkv/README.md for the layout and the crash argument.
///
/// Thread safety: any number of threads may call `get` concurrently with each other and
/// with one writer; writers (`put`, `delete`, batches, iteration) take the shard's `WriterLock`.
final class Shard: @unchecked Sendable {
    // @unchecked: the writer state below is touched only with `lock` held; readers use
    // only the immutable handles and the atomics.
    let heap: Heap
    /// The store's name (errors name the store, not the shard).
    let name: String
    /// Which shard of the store this is.
    let place: ShardPlace
    /// The two arenas, each mapped as one window: one range of addresses for the whole
    /// arena, however many extents it spans. While the store is open the windows stay
    /// open, so every address below an arena's size stays valid: the base never moves, a
    /// grow maps the new space in before it returns, and a shrink or destroy of a mapped
    /// arena is refused. So no access here needs a read section or a view; what a reader
    /// must still guard against is the store's own reuse of its space (`spaceReuses`).
    let index: ArenaWindow
    let data: ArenaWindow
    /// `index.base` and `data.base`, fixed while the windows are open: arena offset `o`
    /// is at `indexBase + o` (`indexWord`) and `dataBase + o` (`record`).
    let indexBase: UnsafeMutableRawPointer
    let dataBase: UnsafeMutableRawPointer
    let lock = WriterLock()
    /// The current index table, as in the index header (readers load it each lookup).
    let descriptor: Atomic<UInt64>
    /// Space the store reused while readers may still be reading it, counted before its
    /// first byte changes: a segment that held records becoming the tail again, and the
    /// index space of old tables taken by a rebuild's new one. A get loads it before and
    /// after its reads and looks again when it changed (a seqlock's reader): see `get` and
    /// README "Concurrency". This is the one read-side protection the store needs: the
    /// windows keep the bytes mapped, but only this count tells a reader that the record
    /// its slot pointed at, or the table it probed, was rewritten.
    let spaceReuses = Atomic<UInt64>(0)
    /// The number of pairs, for readers: the writer's `liveCount`, published with a plain
    /// store (no read-modify-write: that would be a locked instruction).
    let live: Atomic<Int>
    /// What this shard's recovery counted. Its `seconds` stay 0: the store times its open
    /// as a whole (the shards recover in parallel), `KVStore.recovery`.
    private(set) var recovery: KVRecoveryStats
    /// The header versions the open found (index, data), until `recover` has run.
    private var versionsFound: (index: UInt64, data: UInt64)?
    let reclaimBeforeGrowth: Double

    // Writer state, touched only with `lock` held. The lock already serializes every
    // access, so Swift's dynamic exclusivity checks (a runtime call per access of a class
    // property, several per put) are switched off for these.
    @exclusivity(unchecked) var tail: UInt64 = 0
    @exclusivity(unchecked) var tailSegment = 0
    @exclusivity(unchecked) var segmentLive: [Int] = []
    /// Records appended to each segment since it last became the tail; -1 when unknown
    /// (segments written before this open). With `segmentLive`, tells a segment with no
    /// dead record, which compaction need not even walk.
    @exclusivity(unchecked) var segmentAppended: [Int] = []
    /// The last segment `advance` walked for a compaction that was not worth it: its live
    /// records then, and their bytes. Until one of them dies (or the segment is reused) a
    /// walk would find the same records, so `advance` decides on these bytes without one.
    @exclusivity(unchecked) var unprofitableWalk: (segment: Int, live: Int, liveBytes: Int)? = nil
    /// Segments known to be all zero (added by growth and not used since).
    @exclusivity(unchecked) var segmentZeroed: [Bool] = []
    /// Segments this shard's data window has prefaulted (`prefault`): their pages backed
    /// and mapped writable. They stay so while the window is mapped (nothing unmaps or
    /// punches a segment of an open store), so a switch to one need not prefault it again
    /// (0.25 ms for 2 MiB already backed on this machine's tmpfs, by `strace -T`).
    @exclusivity(unchecked) var segmentPrefaulted: [Bool] = []
    @exclusivity(unchecked) var freeSegments: [Int] = []
    @exclusivity(unchecked) var tombstones = 0
    /// Inserts whose slots are stored but not yet fenced (see `countInserts`).
    @exclusivity(unchecked) var unpublishedInserts = 0
    /// The index offset of the slot the last put or delete stored and did not flush; the
    /// next write flushes it before its fence. Until then the tail replay covers it.
    @exclusivity(unchecked) var pendingSlot: UInt64? = nil
    /// The same for the slots the last batch published in this shard (`publishPending`).
    /// Kept apart from `pendingSlot` so that a single put's bookkeeping between its
    /// record's flush and its fence stays a plain store: an array's (a uniqueness check,
    /// perhaps a runtime call) might bring a locked instruction there, which waits for the
    /// flush like a fence.
    @exclusivity(unchecked) var pendingBatchSlots: [UInt64] = []
    @exclusivity(unchecked) var liveCount = 0
    @exclusivity(unchecked) var damagedSegments: Set<Int> = []
    @exclusivity(unchecked) var pending: [Pending] = []
    /// `planCompaction`'s list of a segment's records, kept to spare an allocation a walk.
    @exclusivity(unchecked) var compactionCandidates: [(offset: UInt64, lengths: RecordLengths, hash: UInt64)] = []
    /// How many times the tail moved to another segment (`switchToFreeSegment`), and the
    /// count at which a writer last claimed the next tail's prefault (`claimPrefaultAhead`).
    @exclusivity(unchecked) var tailSwitches = 0
    @exclusivity(unchecked) var prefaultClaimedAt = -1
    /// The claim of the segment a writer prefaulted ahead, without the lock, once it had
    /// (`prefaultAhead`); `UInt64.max` before any.
    let prefaultedAhead = Atomic<UInt64>(.max)
    /// The reused segment a writer claimed to zero ahead, without the lock, and the claim;
    /// nil once the writer has seen that zeroing finish (PrefaultAhead.swift).
    @exclusivity(unchecked) var zeroingAhead: (segment: Int, claim: UInt64)? = nil
    /// The claim of the last zeroing ahead that finished, whether or not it succeeded, and
    /// of the last that succeeded; `UInt64.max` before any.
    let zeroAheadFinished = Atomic<UInt64>(.max)
    let zeroedAhead = Atomic<UInt64>(.max)
    /// Where the records `appendBatch` laid out and nobody flushed yet begin (they run to
    /// `tail`); nil when there are none. `flushForCommit` flushes them.
    @exclusivity(unchecked) var unflushedFrom: UInt64? = nil
    /// The writer's copy of the short keys its slots point at (KeyCache.swift).
    let keyCache: KeyCache
    /// Keys `find` compared in a record (its copy did not know the slot's key): tests.
    @exclusivity(unchecked) var recordKeyComparisons = 0

    deinit {
        // A clean close leaves nothing for the next open to replay.
        try? flushPendingSlot()
        index.drain()
        // No call is running (each holds the store), so no thread uses the windows'
        // addresses any more: unmap them, which lets the arenas be shrunk or destroyed.
        index.close()
        data.close()
    }

    /// Statistics of the writer's background work. The writer counts under its lock;
    /// anyone may read them meanwhile, so they are atomics.
    var compactions: Int { compactionCount.load(ordering: .relaxed) }
    var dataGrowths: Int { growthCount.load(ordering: .relaxed) }
    var indexRebuilds: Int { rebuildCount.load(ordering: .relaxed) }
    let compactionCount = Atomic<Int>(0)
    /// Segments walked to plan a compaction (`planCompaction`), worth it or not.
    let compactionWalks = Atomic<Int>(0)
    let growthCount = Atomic<Int>(0)
    let rebuildCount = Atomic<Int>(0)
    /// Serializes the data arena's growths (`growArena`), which a put's claim makes without
    /// the writer lock. Taken with the writer lock held (`advance`) or alone, never the
    /// writer lock while it is held.
    let growthLock = Locked(())
    /// Segments a switch prefaulted itself, under the lock (1.5 ms a fresh 2 MiB on tmpfs,
    /// which every other writer of the shard waits out): neither done ahead nor before.
    let switchPrefaults = Atomic<Int>(0)
    /// Reused segments a switch zeroed itself, under the lock (a persisted 2 MiB memset,
    /// which every other writer of the shard waits out): not zeroed ahead.
    let switchZeroings = Atomic<Int>(0)

    #if DEBUG
    /// Tests only (compiled in debug builds): called by `get` between loading a slot of the
    /// key's tag and reading the record the slot points at, with the record's offset. A test
    /// pauses the reader here while the writer reuses the record's segment.
    var afterSlotLoad: (@Sendable (_ recordOffset: UInt64) -> Void)? = nil
    #endif

    /// A batch's record appended and not yet published: its key's hash and length, where
    /// it is, and (once published) the index offset of its slot.
    struct Pending { var hash: UInt64; var offset: UInt64; var keyCount: Int; var slotAt: UInt64 = 0 }

    // MARK: - Opening

    /// Opens shard `place` of store `name` on `heap`: with `fresh`, lays it out anew in the
    /// arenas found (whatever they hold) and creates those absent; else opens it as it
    /// is, and both arenas must be there, the index finished. Opening scans the index;
    /// `recover()` then replays the log's tail segment (at most 2 MiB); see ``recovery``.
    /// On a read-only heap, a shard that needs the replay throws
    /// ``KVError/needsRecovery(store:records:)`` from `recover()`.
    ///
    /// The shard maps both arenas as windows (``Arena/mapWindow(reserving:)``) until it is
    /// released: meanwhile they cannot be shrunk or destroyed. A read-write open gives the
    /// heap back space the shard does not use (``KVStoreOptions/giveBackSpace``).
    static func open(heap: Heap, name: String, place: ShardPlace, options: KVStoreOptions, fresh: Bool) throws -> Shard {
        try wrapHeap {
            var index = try heap.findArena(named: place.arenaName(name, .index))?.mapWindow()
            var data = try heap.findArena(named: place.arenaName(name, .data))?.mapWindow()
            let dataIsNew = data == nil
            if fresh {
                (index, data) = try initialise(heap: heap, name: name, place: place, index: index, data: data, options: options)
            } else {
                for (kind, window) in [(ShardPlace.Kind.index, index), (.data, data)] where window == nil {
                    throw KVError.notAStore(store: name, reason: "its arena \(quoted(place.arenaName(name, kind))) (shard \(place.index) of \(place.count)) is missing")
                }
                // Shard 0's index magic says the store exists, and it is written after
                // every other shard's: an unfinished one is damage.
                guard try index!.size >= Format.headerSize && index!.load(at: Format.magicOffset) == Format.indexMagic else {
                    throw KVError.notAStore(store: name, reason: "the index of its shard \(place.index) of \(place.count) was never finished")
                }
            }
            let store = try Shard(heap: heap, name: name, place: place, index: index!, data: data!, options: options)
            (index, data) = (nil, nil)  // the shard holds the windows now
            // Laid out just now, it holds no record: none was appended to any segment (the
            // others, free, are counted from 0 again when they become the tail). Left
            // unknown, the first segment was walked for compaction at every switch of a fill.
            if fresh {
                store.segmentAppended = [Int](repeating: 0, count: store.segmentAppended.count)
                store.markNewLog(arenaIsNew: dataIsNew)
            }
            return store
        }
    }

    /// `store`, after giving the heap back the space it does not use, if
    /// ``KVStoreOptions/giveBackSpace``. The store calls it once every shard has opened, so
    /// that an open refused at a later shard has resized no arena of an earlier one.
    static func givingBackSpace(_ store: consuming Shard, options: KVStoreOptions) throws -> Shard {
        let minimum = store.place.initialDataSize(options.initialDataSize)
        guard options.giveBackSpace, let sizes = store.sizesAfterGivingBack(minimumData: minimum) else { return store }
        do { return try giveBack(store, shrinkingTo: sizes, options: options) } catch let error as HeapError { throw KVError.heap(error) }
    }

    /// Lays out an empty store in the arenas found (mapped), creating those absent. The
    /// index's magic is written last: the store exists once it is set.
    static func initialise(heap: Heap, name: String, place: ShardPlace, index found: ArenaWindow?, data existing: ArenaWindow?,
                           options: KVStoreOptions) throws -> (index: ArenaWindow, data: ArenaWindow) {
        let data: ArenaWindow
        if let existing {
            data = existing
        } else {
            data = try heap.createArena(named: place.arenaName(name, .data), size: place.initialDataSize(options.initialDataSize)).mapWindow()
        }
        // Every segment prefaulted (`markNewLog` says why), before anything is written, so
        // that a file system without room refuses the creation while the store does not
        // exist yet. Then the header and segment 0 (the first tail) are cleared: a data
        // arena left by an earlier attempt may hold records there, which the tail replay
        // must never see (invariant 4). A new arena reads as zero already.
        for segment in 0 ..< Int(data.size >> Format.segmentShift) { try prefault(data, segment: segment, store: name) }
        try data.memsetPersist(at: 0, value: 0, count: existing != nil ? Format.segmentSize : Format.headerSize)
        try data.store(Format.version, at: Format.versionOffset)
        try data.store(0, at: Format.tailSegmentOffset)
        try data.store(Format.dataMagic, at: Format.magicOffset)
        try data.arena.persist(at: 0, count: Format.headerSize)
        let log2 = Self.log2Buckets(forKeys: options.expectedKeys / place.count)
        let tableBytes = UInt64(1 << log2) * Format.bucketSize
        let indexSize = roundUp2M(Format.headerSize + tableBytes)
        let index: ArenaWindow
        if let found {
            if found.size < indexSize { try found.arena.resize(to: indexSize) }  // mapped into the window on return
            index = found
        } else {
            index = try heap.createArena(named: place.arenaName(name, .index), size: indexSize).mapWindow()
        }
        try index.memsetPersist(at: 0, value: 0, count: Format.headerSize + tableBytes)
        try index.store(Format.version, at: Format.versionOffset)
        try index.store(Format.descriptor(tableOffset: Format.headerSize, log2Buckets: log2), at: Format.descriptorOffset)
        try index.store(place.word, at: Format.shardOffset)
        try index.arena.persist(at: 0, count: Format.headerSize)
        try index.store(Format.indexMagic, at: Format.magicOffset)
        try index.arena.persist(at: Format.magicOffset, count: Format.wordSize)
        return (index, data)
    }

    /// A store just laid out (no other thread has the shard yet). `initialise` prefaulted
    /// its whole data arena, so that space set aside up front
    /// (``KVStoreOptions/initialDataSize``) costs its page setup at creation and not in the
    /// puts that reach it (on a file-backed heap, that is also when its memory is
    /// allocated): no switch prefaults those segments again. And the segments of an arena
    /// created just now are known to be zero (a new arena reads as zero), so that the
    /// switches to them do not zero them again. An arena left by an earlier attempt may
    /// hold records anywhere: its segments are zeroed as they are reused, as always.
    func markNewLog(arenaIsNew: Bool) {
        segmentPrefaulted = [Bool](repeating: true, count: segmentPrefaulted.count)
        if arenaIsNew { segmentZeroed = segmentZeroed.indices.map { $0 != tailSegment } }
    }

    static func log2Buckets(forKeys keys: Int) -> Int {
        // At most half full at the expected size; at least 512 buckets (4096 slots).
        var log2 = 9
        while (1 << log2) * Format.slotsPerBucket < 2 * keys { log2 += 1 }
        return log2
    }

    /// Opens the store on `index` and `data`: checks the headers, then recovers (the index
    /// scan and the tail replay), unless `resuming` gives the state a recovery of the same
    /// media already found (`giveBack` reopens on shrunk arenas without recovering twice).
    init(heap: Heap, name: String, place: ShardPlace, index: ArenaWindow, data: ArenaWindow, options: KVStoreOptions,
         resuming: RecoveredState? = nil) throws {
        self.reclaimBeforeGrowth = options.reclaimBeforeGrowth
        keyCache = KeyCache(enabled: options.keyCopy)
        self.heap = heap
        self.name = name
        self.place = place
        self.index = index
        self.data = data
        indexBase = index.base
        dataBase = data.base
        guard try data.load(at: Format.magicOffset) == Format.dataMagic, try index.load(at: Format.magicOffset) == Format.indexMagic else {
            throw KVError.notAStore(store: name, reason: "bad magic")
        }
        let version = try index.load(at: Format.versionOffset), dataVersion = try data.load(at: Format.versionOffset)
        guard (1 ... Format.version).contains(version), (1 ... Format.version).contains(dataVersion) else {
            throw KVError.notAStore(store: name, reason: "format version \(max(version, dataVersion)), this build reads 1 to \(Format.version)")
        }
        let recorded = ShardPlace(word: try index.load(at: Format.shardOffset))
        guard recorded == place else {
            throw KVError.notAStore(store: name, reason: "\(quoted(place.arenaName(name, .index))) holds shard \(recorded.index) of \(recorded.count), not shard \(place.index) of \(place.count)")
        }
        let word = try index.load(at: Format.descriptorOffset)
        let (tableOffset, log2) = Format.decode(descriptor: word)
        // Words read from the media may hold any value: compared so that nothing overflows.
        guard tableOffset >= Format.headerSize, (3 ... 40).contains(log2), tableOffset <= index.size,
              UInt64(1 << log2) * Format.bucketSize <= index.size - tableOffset else {
            throw KVError.notAStore(store: name, reason: "the index descriptor is damaged")
        }
        descriptor = Atomic(word)
        let segments = Int(data.size >> Format.segmentShift)
        let tailWord = try data.load(at: Format.tailSegmentOffset)
        guard tailWord < UInt64(segments) else { throw KVError.notAStore(store: name, reason: "the tail segment \(tailWord) is past the data arena") }
        let tailSegment = Int(tailWord)
        if let state = resuming {
            guard state.descriptor == word, state.tailSegment == tailSegment, state.segmentLive.count >= segments else {
                throw KVError.notAStore(store: name, reason: "it changed while it was reopened to give space back")
            }
            live = Atomic(state.liveCount)
            recovery = state.recovery
            resume(state, segments: segments)
            return
        }
        let scan = try Self.scanIndex(index, data, Table(descriptor: word), segments: segments, tailSegment: tailSegment, store: name)
        let count = scan.pairs, segmentLive = scan.segmentLive
        self.live = Atomic(count)
        self.liveCount = count
        self.tail = scan.tail
        self.tailSegment = tailSegment
        self.segmentLive = segmentLive
        self.segmentAppended = [Int](repeating: -1, count: segments)
        self.segmentZeroed = [Bool](repeating: false, count: segments)
        self.segmentPrefaulted = [Bool](repeating: false, count: segments)
        self.tombstones = scan.tombstones
        self.freeSegments = (0 ..< segments).reversed().filter { $0 != tailSegment && segmentLive[$0] == 0 }
        self.recovery = KVRecoveryStats(slotsScanned: scan.slots, recordHeadersRead: scan.headersRead, seconds: 0)
        versionsFound = (version, dataVersion)
    }

    /// Recovery's writing half, called once every shard of the store has opened (so an open
    /// refused at one shard has written in none): the tail replay, and the headers of an
    /// older version made to say this one. Does nothing the second time, nor on a shard
    /// reopened by `giveBack` (its recovery was done before).
    func recover() throws {
        guard let (version, dataVersion) = versionsFound else { return }
        let replay = try wrapHeap { try recoverTail(upgrading: version == 1 || dataVersion == 1) }
        // Version 2 differs only in the checksum new records get (old ones still verify).
        if min(version, dataVersion) == 2 && heap.mode == .readWrite { try wrapHeap { try writeVersion() } }
        versionsFound = nil
        recovery.tailRecordsScanned = replay.scanned
        recovery.recordsReplayed = replay.replayed
    }

    // MARK: - Facts

    /// The number of pairs.
    var count: Int { live.load(ordering: .acquiring) }

    /// Sizes of the two arenas and how the data arena is used.
    var usage: (indexBytes: UInt64, dataBytes: UInt64, segments: Int, freeSegments: Int, indexSlots: Int) {
        lock.withLock {
            let (_, log2) = Format.decode(descriptor: descriptor.load(ordering: .relaxed))
            return (index.size, data.size, segmentLive.count, freeSegments.count, (1 << log2) * Format.slotsPerBucket)
        }
    }

    // MARK: - Addresses

    /// The address of the record at data arena offset `offset`, which the caller knows to
    /// lie inside the window (see `recordRoom`).
    @inline(__always)
    func record(_ offset: UInt64) -> UnsafeMutableRawPointer { dataBase + Int(offset) }

    /// The bytes from the record at `offset` to its segment's end (a record never
    /// straddles segments: the segment is the log's unit of reuse and of the replay), or
    /// nil if that segment lies past the data arena. Every slot the writer stores points
    /// below the window's size: the arena grew (and the window with it) before the record
    /// was written, and a reader's acquiring load of the slot sees that; so only a damaged
    /// slot gets nil. Call it after loading the slot.
    @inline(__always)
    func recordRoom(_ offset: UInt64) -> Int? {
        let end = Format.segmentEnd(Format.segment(of: offset))
        return end <= data.size ? Int(end - offset) : nil
    }
}

func isOutOfSpace(_ error: HeapError) -> Bool {
    switch error {
    case .noSpace, .tableFull: true
    default: false
    }
}

func roundUp2M(_ n: UInt64) -> UInt64 { (n + Format.segmentSize - 1) & ~(Format.segmentSize - 1) }

/// Whether every byte of `bytes` is zero (8 bytes a step).
func isZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
    var i = 0
    while i + 8 <= bytes.count {
        if bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { return false }
        i += 8
    }
    return bytes[i...].allSatisfy { $0 == 0 }
}

extension Atomic where Value == Int {
    /// Adds one with a load and a store, not a read-modify-write (a locked instruction):
    /// for a count that only the writer changes, holding its lock.
    @inline(__always)
    func incrementByWriter() { store(load(ordering: .relaxed) + 1, ordering: .relaxed) }
}

/// An aligned 8-byte load that the compiler may neither split nor reorder with the loads
/// that depend on it (x86-64: a plain MOV).
@inline(__always)
func atomicLoad(_ p: UnsafeRawPointer) -> UInt64 {
    UnsafeMutableRawPointer(mutating: p).assumingMemoryBound(to: Atomic<UInt64>.self)[0].load(ordering: .acquiring)
}

/// An aligned 8-byte store, published whole (the unit of failure atomicity on x86-64).
@inline(__always)
func atomicStore(_ p: UnsafeMutableRawPointer, _ value: UInt64) {
    p.assumingMemoryBound(to: Atomic<UInt64>.self)[0].store(value, ordering: .releasing)
}
