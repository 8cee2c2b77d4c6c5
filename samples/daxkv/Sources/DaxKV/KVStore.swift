import DaxHeap
import Synchronization  // Atomic (the published index descriptor, the live count, the statistics)

#if canImport(Glibc)
import Glibc
#endif

/// How a store is opened.
public struct KVStoreOptions: Sendable {
    /// Create the store's arenas when they do not exist yet.
    public var create: Bool
    /// Size the index for this many keys up front (it grows online anyway).
    public var expectedKeys: Int
    /// The data arena's size when the store is created (a multiple of 2 MiB, at least 2 MiB).
    public var initialDataSize: UInt64

    /// When the log needs a segment and none is free: compact a segment (rather than grow
    /// the data arena) if at least this fraction of it is reclaimable. 0.5 bounds both write
    /// and space amplification by about 2; higher trades space for faster updates (0.75:
    /// write amplification 1.33, space up to 4x). Once the heap cannot grow, any gain is taken.
    public var reclaimBeforeGrowth: Double

    public init(create: Bool = true, expectedKeys: Int = 0, initialDataSize: UInt64 = 4 << 20, reclaimBeforeGrowth: Double = 0.5) {
        self.create = create
        self.expectedKeys = expectedKeys
        self.initialDataSize = initialDataSize
        self.reclaimBeforeGrowth = min(max(reclaimBeforeGrowth, 0), 1)
    }
}

/// What opening the store cost: recovery is one scan of the index and one of the log's
/// tail segment, replaying the writes whose slot stores were lost.
public struct KVRecoveryStats: Sendable {
    /// Index slots scanned (8 bytes each, read sequentially).
    public var slotsScanned: Int
    /// Record headers read: the records slots reference in the tail segment.
    public var recordHeadersRead: Int
    /// Records of the tail segment scanned (read and checksummed) for replay.
    public var tailRecordsScanned: Int = 0
    /// Of those, the ones whose slot store (or tombstone) had not reached the media and
    /// were applied to the index again.
    public var recordsReplayed: Int = 0
    public var seconds: Double
}

/// An embeddable, crash-safe key-value store on two arenas of a DaxHeap heap:
/// `NAME.index` (a hash table of 8-byte slots) and `NAME.data` (a log of checksummed
/// records in 2 MiB segments). See samples/daxkv/README.md for the layout and the crash
/// argument.
///
/// Thread safety: any number of threads may call `get` concurrently with each other and
/// with one writer; writers (`put`, `delete`, batches, iteration) take a mutex.
public final class KVStore: @unchecked Sendable {
    // @unchecked: the writer state below is touched only with `lock` held; readers use
    // only the immutable handles and the atomics.
    public let heap: Heap
    public let name: String
    /// The two arenas, each mapped as one window: one range of addresses for the whole
    /// arena, however many extents it spans. While the store is open the windows stay
    /// open, so every address below an arena's size stays valid: the base never moves, a
    /// grow maps the new space in before it returns, and a shrink or destroy of a mapped
    /// arena is refused. So no access here needs a read section or a view; what a reader
    /// must still guard against is the store's own reuse of its space (`segmentReuses`).
    let index: ArenaWindow
    let data: ArenaWindow
    /// `index.base` and `data.base`, fixed while the windows are open: arena offset `o`
    /// is at `indexBase + o` (`indexWord`) and `dataBase + o` (`record`).
    private let indexBase: UnsafeMutableRawPointer
    private let dataBase: UnsafeMutableRawPointer
    /// The same arenas, for flushes and fences only: bytes are stored through the windows,
    /// made durable through `Arena.flush`, `drain` and `persist`. Those flush the same
    /// cache lines through the heap's whole-device mapping (and, on a file, msync the same
    /// pages). The window's own `flush` and `drain` would do as well, but they retain and
    /// release the heap's device around `pmem_flush`, and on x86 a locked instruction
    /// waits for earlier flushes as a fence does: an extra fence's wait per flush, the
    /// fill 15 % slower when measured. (README, "What windows bought".)
    private let indexArena: Arena
    private let dataArena: Arena
    private let lock = Locked<Void>(())  // DaxHeap's pthread mutex: visible to ThreadSanitizer
    /// The current index table, as in the index header (readers load it each lookup).
    private let descriptor: Atomic<UInt64>
    /// Segments that held records and became the tail again, counted before their first
    /// byte changes. A get loads it before and after its reads and looks again when it
    /// changed (a seqlock's reader): see `get` and README "Concurrency". This is the one
    /// read-side protection the store needs: the windows keep the bytes mapped, but only
    /// this count tells a reader that the record its slot pointed at was rewritten.
    private let segmentReuses = Atomic<UInt64>(0)
    /// The number of pairs, for readers: the writer's `liveCount`, published with a plain
    /// store (no read-modify-write: that would be a locked instruction).
    private let live: Atomic<Int>
    public private(set) var recovery: KVRecoveryStats
    private let reclaimBeforeGrowth: Double

    // Writer state, touched only with `lock` held. The lock already serializes every
    // access, so Swift's dynamic exclusivity checks (a runtime call per access of a class
    // property, several per put) are switched off for these.
    @exclusivity(unchecked) private var tail: UInt64 = 0
    @exclusivity(unchecked) private var tailSegment = 0
    @exclusivity(unchecked) private var segmentLive: [Int] = []
    /// Records appended to each segment since it last became the tail; -1 when unknown
    /// (segments written before this open). With `segmentLive`, tells a segment with no
    /// dead record, which compaction need not even walk.
    @exclusivity(unchecked) private var segmentAppended: [Int] = []
    /// Segments known to be all zero (added by growth and not used since).
    @exclusivity(unchecked) private var segmentZeroed: [Bool] = []
    @exclusivity(unchecked) private var freeSegments: [Int] = []
    @exclusivity(unchecked) private var tombstones = 0
    /// Inserts whose slots are stored but not yet fenced (see `countInserts`).
    @exclusivity(unchecked) private var unpublishedInserts = 0
    /// The index offset of the slot the last put or delete stored and did not flush; the
    /// next write flushes it before its fence. Until then the tail replay covers it.
    @exclusivity(unchecked) private var pendingSlot: UInt64? = nil
    @exclusivity(unchecked) private var liveCount = 0
    @exclusivity(unchecked) private var damagedSegments: Set<Int> = []
    @exclusivity(unchecked) private var pending: [Pending] = []
    @exclusivity(unchecked) private var relocations: [Relocation] = []

    deinit {
        // A clean close leaves nothing for the next open to replay.
        if let position = pendingSlot { try? indexArena.persist(at: position, count: 8) }
        // No call is running (each holds the store), so no thread uses the windows'
        // addresses any more: unmap them, which lets the arenas be shrunk or destroyed.
        index.close()
        data.close()
    }

    /// Statistics of the writer's background work. The writer counts under its lock;
    /// anyone may read them meanwhile, so they are atomics.
    public var compactions: Int { compactionCount.load(ordering: .relaxed) }
    public var dataGrowths: Int { growthCount.load(ordering: .relaxed) }
    public var indexRebuilds: Int { rebuildCount.load(ordering: .relaxed) }
    private let compactionCount = Atomic<Int>(0)
    private let growthCount = Atomic<Int>(0)
    private let rebuildCount = Atomic<Int>(0)

    #if DEBUG
    /// Tests only (compiled in debug builds): called by `get` between loading a slot of the
    /// key's tag and reading the record the slot points at, with the record's offset. A test
    /// pauses the reader here while the writer reuses the record's segment.
    var afterSlotLoad: (@Sendable (_ recordOffset: UInt64) -> Void)? = nil
    #endif

    private struct Pending { var hash: UInt64; var offset: UInt64; var item: Int }
    private struct Relocation { var from: UInt64; var size: Int; var slotAt: UInt64; var tag: UInt64; var to: UInt64 }

    // MARK: - Opening

    /// Opens the store `name` on `heap`, creating its arenas if they are absent (unless
    /// `options.create` is false). Recovery is a sequential scan of the index and a replay
    /// of the log's tail segment (at most 2 MiB); see ``recovery``. On a read-only heap,
    /// a store that needs the replay throws ``KVError/needsRecovery(store:records:)``.
    ///
    /// The store maps both arenas as windows (``Arena/mapWindow(reserving:)``) until it is
    /// released: meanwhile they cannot be shrunk or destroyed, by ``destroy(heap:name:)``
    /// either. A device whose alignment is coarser than the arenas' extents cannot map
    /// them (`HeapError.windowMisaligned`), and then the store cannot be opened.
    public static func open(heap: Heap, name: String = "kv", options: KVStoreOptions = .init()) throws -> KVStore {
        guard !name.isEmpty, name.utf8.count <= 57, !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw KVError.invalidStoreName(name)
        }
        do {
            var index = try (try? heap.arena(named: "\(name).index"))?.mapWindow()
            var data = try (try? heap.arena(named: "\(name).data"))?.mapWindow()
            let ready = try index.map { try $0.size >= Format.headerSize && $0.load(at: Format.magicOffset) == Format.indexMagic } ?? false
            if !ready || data == nil {
                // Absent, or a creation that was interrupted (the index magic is written
                // last, so no put can have been acknowledged): (re)initialise.
                guard options.create else {
                    if index == nil && data == nil { throw KVError.noSuchStore(name) }
                    throw KVError.notAStore(store: name, reason: "its creation never finished; open it with creation allowed to start afresh")
                }
                if index != nil, ready { throw KVError.notAStore(store: name, reason: "the data arena is missing") }
                (index, data) = try initialise(heap: heap, name: name, index: index, data: data, options: options)
            }
            return try KVStore(heap: heap, name: name, index: index!, data: data!, reclaim: options.reclaimBeforeGrowth)
        } catch let error as HeapError {
            throw KVError.heap(error)
        }
    }

    /// Lays out an empty store in the arenas found (mapped), creating those absent. The
    /// index's magic is written last: the store exists once it is set.
    private static func initialise(heap: Heap, name: String, index found: ArenaWindow?, data existing: ArenaWindow?,
                                   options: KVStoreOptions) throws -> (index: ArenaWindow, data: ArenaWindow) {
        let data: ArenaWindow
        if let existing {
            data = existing
        } else {
            let size = max(Format.segmentSize, roundUp2M(options.initialDataSize))
            data = try heap.createArena(named: "\(name).data", size: size).mapWindow()
        }
        // Segment 0 is the first tail: prefaulted, as `switchToFreeSegment` does each later
        // one. Then the header and segment 0 are cleared: a data arena left by an earlier
        // attempt may hold records there, which the tail replay must never see
        // (invariant 4). A new arena reads as zero already.
        try prefault(data, segment: 0, store: name)
        try data.memsetPersist(at: 0, value: 0, count: existing != nil ? Format.segmentSize : Format.headerSize)
        try data.store(Format.version, at: Format.versionOffset)
        try data.store(0, at: Format.tailSegmentOffset)
        try data.store(Format.dataMagic, at: Format.magicOffset)
        try data.arena.persist(at: 0, count: Format.headerSize)
        let log2 = Self.log2Buckets(forKeys: options.expectedKeys)
        let tableBytes = UInt64(1 << log2) * Format.bucketSize
        let indexSize = roundUp2M(Format.headerSize + tableBytes)
        let index: ArenaWindow
        if let found {
            if found.size < indexSize { try found.arena.resize(to: indexSize) }  // mapped into the window on return
            index = found
        } else {
            index = try heap.createArena(named: "\(name).index", size: indexSize).mapWindow()
        }
        try index.memsetPersist(at: 0, value: 0, count: Format.headerSize + tableBytes)
        try index.store(Format.version, at: Format.versionOffset)
        try index.store(Format.descriptor(tableOffset: Format.headerSize, log2Buckets: log2), at: Format.descriptorOffset)
        try index.arena.persist(at: 0, count: Format.headerSize)
        try index.store(Format.indexMagic, at: Format.magicOffset)
        try index.arena.persist(at: Format.magicOffset, count: 8)
        return (index, data)
    }

    /// Destroys a store's arenas (no-op for those absent). Fails while the store is open
    /// in this process: its windows keep the arenas mapped.
    public static func destroy(heap: Heap, name: String) throws {
        for arena in ["\(name).index", "\(name).data"] where (try? heap.arena(named: arena)) != nil {
            do { try heap.destroyArena(named: arena) } catch { throw KVError.heap(error) }
        }
    }

    static func log2Buckets(forKeys keys: Int) -> Int {
        // At most half full at the expected size; at least 512 buckets (4096 slots).
        var log2 = 9
        while (1 << log2) * Format.slotsPerBucket < 2 * keys { log2 += 1 }
        return log2
    }

    private init(heap: Heap, name: String, index: ArenaWindow, data: ArenaWindow, reclaim: Double) throws {
        self.reclaimBeforeGrowth = reclaim
        let clock = ContinuousClock()
        let started = clock.now
        self.heap = heap
        self.name = name
        self.index = index
        self.data = data
        indexBase = index.base
        dataBase = data.base
        indexArena = index.arena
        dataArena = data.arena
        guard try data.load(at: Format.magicOffset) == Format.dataMagic, try index.load(at: Format.magicOffset) == Format.indexMagic else {
            throw KVError.notAStore(store: name, reason: "bad magic")
        }
        let version = try index.load(at: Format.versionOffset), dataVersion = try data.load(at: Format.versionOffset)
        guard (1 ... Format.version).contains(version), (1 ... Format.version).contains(dataVersion) else {
            throw KVError.notAStore(store: name, reason: "format version \(max(version, dataVersion)), this build reads 1 to \(Format.version)")
        }
        let word = try index.load(at: Format.descriptorOffset)
        let (tableOffset, log2) = Format.decode(descriptor: word)
        guard tableOffset >= Format.headerSize, (3 ... 40).contains(log2),
              tableOffset + UInt64(1 << log2) * Format.bucketSize <= index.size else {
            throw KVError.notAStore(store: name, reason: "the index descriptor is damaged")
        }
        descriptor = Atomic(word)
        let segments = Int(data.size >> Format.segmentShift)
        let tailSegment = Int(try data.load(at: Format.tailSegmentOffset))
        guard tailSegment < segments else { throw KVError.notAStore(store: name, reason: "the tail segment \(tailSegment) is past the data arena") }
        var segmentLive = [Int](repeating: 0, count: segments)
        var count = 0, tombstones = 0, headers = 0
        var tail = Format.segmentStart(tailSegment)
        let slots = (1 << log2) * Format.slotsPerBucket
        var tailOffsets: [UInt64] = []
        // One sequential pass over the table, which the window shows as one range however
        // many extents hold it.
        let table = UnsafeRawPointer(index.base + Int(tableOffset))
        for i in 0 ..< slots {
            let slot = table.load(fromByteOffset: i * 8, as: UInt64.self)
            if slot == Format.emptySlot { continue }
            if slot == Format.tombstone { tombstones += 1; continue }
            let offset = Format.slotOffset(slot)
            let segment = Format.segment(of: offset)
            guard offset >= Format.headerSize, segment < segments,
                  offset + UInt64(Format.recordHeaderSize) <= Format.segmentEnd(segment) else {
                throw KVError.notAStore(store: name, reason: "index slot at \(tableOffset + UInt64(i * 8)) points outside the data arena")
            }
            segmentLive[segment] += 1
            count += 1
            if segment == tailSegment { tailOffsets.append(offset) }
        }
        // The tail restarts after the last record a slot references in the tail segment:
        // anything after it is unreferenced (an unacknowledged put) and may be overwritten.
        for offset in tailOffsets {
            headers += 1
            let word = data.base.load(fromByteOffset: Int(offset) + Format.lengthWordOffset, as: UInt64.self)
            if let lengths = RecordLengths(word), !lengths.isDelete, offset + UInt64(lengths.size) <= Format.segmentEnd(tailSegment) {
                tail = max(tail, offset + UInt64(lengths.size))
            } else {
                tail = Format.segmentEnd(tailSegment)  // damaged header: never append into this segment again
            }
        }
        self.live = Atomic(count)
        self.liveCount = count
        self.tail = tail
        self.tailSegment = tailSegment
        self.segmentLive = segmentLive
        self.segmentAppended = [Int](repeating: -1, count: segments)
        self.segmentZeroed = [Bool](repeating: false, count: segments)
        self.tombstones = tombstones
        self.freeSegments = (0 ..< segments).reversed().filter { $0 != tailSegment && segmentLive[$0] == 0 }
        self.recovery = KVRecoveryStats(slotsScanned: slots, recordHeadersRead: headers, seconds: 0)
        let replay = try wrapHeap { try recoverTail(upgrading: version == 1 || dataVersion == 1) }
        recovery.tailRecordsScanned = replay.scanned
        recovery.recordsReplayed = replay.replayed
        let elapsed = clock.now - started
        recovery.seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    }

    /// A record of the tail segment, as the replay collects them.
    private struct TailRecord { var offset: UInt64; var keyCount: Int; var hash: UInt64; var isDelete: Bool }

    /// Recovery's second half (README, "Crash argument"): the tail segment's records, in
    /// log order, applied to the index wherever a slot store or tombstone did not reach the
    /// media. Only the tail can need it: every slot flushed before a segment switch was made
    /// durable by the switch. Returns the records scanned and replayed.
    private func recoverTail(upgrading: Bool) throws -> (scanned: Int, replayed: Int) {
        let segment = tailSegment
        let end = Format.segmentEnd(segment)
        let writable = heap.mode == .readWrite
        if upgrading {
            // Version 1 fenced every slot (nothing to replay) but did not zero reused
            // segments, so stale records may follow the tail. Zero them, then say 2.
            guard writable else { return (0, 0) }
            if tail < end { try data.memsetPersist(at: tail, value: 0, count: end - tail) }
            try data.store(Format.version, at: Format.versionOffset)
            try dataArena.persist(at: Format.versionOffset, count: 8)
            try index.store(Format.version, at: Format.versionOffset)
            try indexArena.persist(at: Format.versionOffset, count: 8)
            return (0, 0)
        }
        // The valid records from the segment's start; the first that fails its checks ends
        // the log (zero bytes past the tail, by invariant 4, or a torn append).
        // The last record of each key in the tail is the key's newest state: a put the
        // slot must point at, or a delete the key must be absent after. (Records are in
        // log order, and anything outside the tail is older: compaction copies into a new
        // tail, never into the current one.)
        var records: [TailRecord] = []
        var last: [[UInt8]: Int] = [:]  // key -> its last record in `records`
        var at = Format.segmentStart(segment)
        while at + UInt64(Format.recordHeaderSize) <= end {
            let base = record(at)
            guard let lengths = RecordLengths(base.load(fromByteOffset: Format.lengthWordOffset, as: UInt64.self)),
                  at + UInt64(lengths.size) <= end, recordIsIntact(base, lengths) else { break }
            let key = UnsafeRawBufferPointer(start: base + Format.keyOffset, count: lengths.keyCount)
            last[Array(key)] = records.count
            records.append(TailRecord(offset: at, keyCount: lengths.keyCount, hash: hash64(key, seed: Seeds.key), isDelete: lengths.isDelete))
            at += UInt64(lengths.size)
        }
        // `tail` is where the index scan put it: after the last record a slot references
        // here (the segment's end if such a record's header was damaged). A referenced
        // record past the first invalid one is damage, not a torn append: replay what
        // precedes it and never append into this segment again.
        let damaged = tail > at
        tail = damaged ? end : at
        // Where the index disagrees with a key's last record, a slot store or tombstone was
        // lost: apply it again. Comparing final states keeps this idempotent.
        let finals = last.values.sorted().map { records[$0] }
        func lost(_ r: TailRecord) -> Probe? {
            let key = UnsafeRawBufferPointer(start: record(r.offset) + Format.keyOffset, count: r.keyCount)
            let probe = find(hash: r.hash, key: key, currentTable())
            let agrees = r.isDelete ? !probe.found : probe.found && Format.slotOffset(probe.old) == r.offset
            return agrees ? nil : probe
        }
        guard writable else {
            let outstanding = finals.filter { lost($0) != nil }.count
            if outstanding > 0 { throw KVError.needsRecovery(store: name, records: outstanding) }
            return (records.count, 0)
        }
        var replayed = 0
        for r in finals {
            if !r.isDelete { try ensureIndexRoom(adding: 1) }  // before the probe: a rebuild moves every slot
            guard let probe = lost(r) else { continue }
            replayed += 1
            if r.isDelete {
                atomicStore(indexWord(probe.position), Format.tombstone)
                try indexArena.flush(at: probe.position, count: 8)
                release(Format.slotOffset(probe.old))
                tombstones += 1
                liveCount -= 1
            } else {
                _ = try publish(probe, hash: r.hash, offset: r.offset, flush: true)
            }
        }
        indexArena.drain()  // the replayed slots are durable
        countInserts()
        live.store(liveCount, ordering: .releasing)
        // Restore invariant 4 after a torn append: zero from the new tail on.
        if !damaged && tail < end && !isZero(UnsafeRawBufferPointer(start: record(tail), count: Int(end - tail))) {
            try data.memsetPersist(at: tail, value: 0, count: end - tail)
        }
        return (records.count, replayed)
    }

    // MARK: - Facts

    /// The number of pairs.
    public var count: Int { live.load(ordering: .acquiring) }

    /// Sizes of the two arenas and how the data arena is used.
    public var usage: (indexBytes: UInt64, dataBytes: UInt64, segments: Int, freeSegments: Int, indexSlots: Int) {
        lock.withLock { _ in
            let (_, log2) = Format.decode(descriptor: descriptor.load(ordering: .relaxed))
            return (index.size, data.size, segmentLive.count, freeSegments.count, (1 << log2) * Format.slotsPerBucket)
        }
    }

    // MARK: - Addresses

    /// The index table an operation works on, from the descriptor it loaded.
    struct Table {
        let offset: UInt64
        let mask: UInt64

        init(descriptor: UInt64) {
            let (offset, log2) = Format.decode(descriptor: descriptor)
            self.offset = offset
            self.mask = UInt64(1 << log2) - 1
        }

        @inline(__always) func bucketOffset(_ bucket: UInt64) -> UInt64 { offset + bucket * Format.bucketSize }
    }

    /// The current table. Acquiring: a table a rebuild published lies in the index window
    /// as grown before the publication, and its slots were stored before it.
    @inline(__always)
    private func currentTable() -> Table { Table(descriptor: descriptor.load(ordering: .acquiring)) }

    /// The address of the 8-byte index word (a slot or a header word) at `offset`. Every
    /// table lies inside the index window: open checks the descriptor against the arena's
    /// size, and a rebuild publishes a table only after growing the arena to hold it.
    @inline(__always)
    private func indexWord(_ offset: UInt64) -> UnsafeMutableRawPointer { indexBase + Int(offset) }

    /// The address of the record at data arena offset `offset`, which the caller knows to
    /// lie inside the window (see `recordRoom`).
    @inline(__always)
    private func record(_ offset: UInt64) -> UnsafeMutableRawPointer { dataBase + Int(offset) }

    /// The bytes from the record at `offset` to its segment's end (a record never
    /// straddles segments: the segment is the log's unit of reuse and of the replay), or
    /// nil if that segment lies past the data arena. Every slot the writer stores points
    /// below the window's size: the arena grew (and the window with it) before the record
    /// was written, and a reader's acquiring load of the slot sees that; so only a damaged
    /// slot gets nil. Call it after loading the slot.
    @inline(__always)
    private func recordRoom(_ offset: UInt64) -> Int? {
        let end = Format.segmentEnd(Format.segment(of: offset))
        return end <= data.size ? Int(end - offset) : nil
    }

    // MARK: - Reading (lock-free)

    /// Copies the value of `key` into `buffer` and returns its length, or nil if the key is
    /// absent. When the value is longer than `buffer`, nothing is copied and the length is
    /// returned (call again with a larger buffer). The value is checked against its
    /// record's checksum first: a damaged record throws ``KVError/damagedRecord``.
    ///
    /// No lock, no read section, no fence, no allocation: plain loads through the windows.
    public func get(_ key: UnsafeRawBufferPointer, into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        guard (1 ... Format.maxKeySize).contains(key.count) else { throw KVError.invalidKeySize(key.count) }
        let hash = hash64(key, seed: Seeds.key)
        while true {
            // Before the table descriptor (which `lookup` loads): see `reusedSegment`.
            let reuses = segmentReuses.load(ordering: .acquiring)
            let result = lookup(currentTable(), hash: hash, key: key, buffer: buffer)
            // A slot the lookup loaded may have led it to what the writer put in place of
            // the record: another key's (then the key looked absent) or one not yet durable.
            if reusedSegment(since: reuses) { continue }
            switch result {
            case .absent: return nil
            case .found(let length): return length
            case .damaged(let offset, let reason):
                // No segment was reused meanwhile, so this is the record the slot pointed
                // at: the media is damaged.
                throw KVError.damagedRecord(store: name, offset: offset, reason: reason)
            }
        }
    }

    /// Whether a segment was reused since `segmentReuses` was `reuses`. If not, every record
    /// the get read is the one its slot pointed at when loaded: durable (it was written
    /// and fenced before the slot was stored) and unchanged (only reuse rewrites a record,
    /// and a segment a slot points into is not freed). A reader still probing an old
    /// table is covered too: a segment its slots point into is reused only after the
    /// rebuild's publication, and a get that saw that reuse counted in its first load
    /// loaded the new descriptor after it.
    @inline(__always)
    private func reusedSegment(since reuses: UInt64) -> Bool {
        atomicMemoryFence(ordering: .acquiring)  // the record reads above, before the load
        return segmentReuses.load(ordering: .relaxed) != reuses
    }

    /// The value of `key`, or nil.
    public func get(_ key: [UInt8]) throws -> [UInt8]? {
        var capacity = 256
        while true {
            var out = [UInt8](repeating: 0, count: capacity)
            let length = try key.withUnsafeBytes { k in try out.withUnsafeMutableBytes { try get(k, into: $0) } }
            guard let length else { return nil }
            if length <= capacity { out.removeSubrange(length...); return out }
            capacity = length
        }
    }

    private enum Lookup { case absent, found(Int), damaged(UInt64, String) }

    @inline(__always)
    private func lookup(_ table: Table, hash: UInt64, key: UnsafeRawBufferPointer, buffer: UnsafeMutableRawBufferPointer) -> Lookup {
        let tag = Format.tag(hash)
        var bucket = hash & table.mask
        for _ in 0 ... table.mask {
            let slots = indexWord(table.bucketOffset(bucket))
            for i in 0 ..< Format.slotsPerBucket {
                let slot = atomicLoad(slots + i * 8)
                if slot == Format.emptySlot { return .absent }
                guard Format.isLive(slot), Format.slotTag(slot) == tag else { continue }
                #if DEBUG
                afterSlotLoad?(Format.slotOffset(slot))
                #endif
                if let r = readRecord(at: Format.slotOffset(slot), key: key, buffer: buffer) { return r }
            }
            bucket = (bucket + 1) & table.mask
        }
        return .absent
    }

    /// The record at `offset` if it holds `key` (its value copied out), nil if it holds
    /// another key, damaged if it fails its checks.
    @inline(__always)
    private func readRecord(at offset: UInt64, key: UnsafeRawBufferPointer, buffer: UnsafeMutableRawBufferPointer) -> Lookup? {
        guard let room = recordRoom(offset) else { return .damaged(offset, "an index slot points past the data arena") }
        let base = record(offset)
        let checksum = atomicLoad(base)
        let lengths = atomicLoad(base + Format.lengthWordOffset)
        guard let decoded = RecordLengths(lengths), !decoded.isDelete,
              Format.recordHeaderSize + decoded.keyCount + decoded.valueCount <= room else {
            return .damaged(offset, "impossible lengths")
        }
        let k = decoded.keyCount, v = decoded.valueCount
        let storedKey = base + Format.keyOffset
        let storedValue = storedKey + k
        if k == key.count && memcmp(storedKey, key.baseAddress!, k) == 0 {
            if v <= buffer.count {
                if v > 0 { buffer.baseAddress!.copyMemory(from: storedValue, byteCount: v) }
                // Checked on the copy: what the caller gets is what the checksum covers.
                let sum = recordChecksum(lengthWord: lengths, key: storedKey, keyCount: k, value: buffer.baseAddress, valueCount: v)
                return sum == checksum ? .found(v) : .damaged(offset, "checksum mismatch")
            }
            let sum = recordChecksum(lengthWord: lengths, key: storedKey, keyCount: k, value: storedValue, valueCount: v)
            return sum == checksum ? .found(v) : .damaged(offset, "checksum mismatch")
        }
        // Another key with the same tag: fine unless the record is damaged (then the
        // key bytes themselves may be what is wrong, and absent would be a lie).
        let sum = recordChecksum(lengthWord: lengths, key: storedKey, keyCount: k, value: storedValue, valueCount: v)
        return sum == checksum ? nil : .damaged(offset, "checksum mismatch")
    }

    /// Calls `body` with every pair, in index order (the writer lock is held meanwhile: a
    /// consistent snapshot). `body` must not write to this store (that would deadlock).
    /// The buffers are the records on the media: copy what you keep. Damaged records throw.
    public func forEach(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void) throws {
        try lock.withLock { _ in
            let table = currentTable()
            for bucket in 0 ... table.mask {
                for i in 0 ..< UInt64(Format.slotsPerBucket) {
                    let slot = atomicLoad(indexWord(table.bucketOffset(bucket) + i * 8))
                    guard Format.isLive(slot) else { continue }
                    let offset = Format.slotOffset(slot)
                    let base = record(offset)
                    guard let room = recordRoom(offset), let lengths = RecordLengths(base.load(fromByteOffset: Format.lengthWordOffset, as: UInt64.self)),
                          !lengths.isDelete, Format.recordHeaderSize + lengths.keyCount + lengths.valueCount <= room,
                          recordIsIntact(base, lengths) else {
                        throw KVError.damagedRecord(store: name, offset: offset, reason: "checksum mismatch")
                    }
                    let key = base + Format.keyOffset, k = lengths.keyCount
                    try body(UnsafeRawBufferPointer(start: key, count: k), UnsafeRawBufferPointer(start: key + k, count: lengths.valueCount))
                }
            }
        }
    }

    /// Every pair, copied (for tests and small stores).
    public func pairs() throws -> [(key: [UInt8], value: [UInt8])] {
        var out: [(key: [UInt8], value: [UInt8])] = []
        try forEach { k, v in out.append((Array(k), Array(v))) }
        return out
    }

    // MARK: - Writing

    /// Inserts or replaces; returns once the pair is durable. One fence: the record is
    /// durable at the tail of the log, where recovery finds it should its slot store be
    /// lost; the slot is stored, then flushed and fenced by the next write (or a segment
    /// switch, an index rebuild, closing the store). See README "Crash argument".
    public func put(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws {
        guard (1 ... Format.maxKeySize).contains(key.count) else { throw KVError.invalidKeySize(key.count) }
        guard value.count <= Format.maxValueSize else { throw KVError.invalidValueSize(value.count) }
        let hash = hash64(key, seed: Seeds.key)
        let size = Format.recordSize(keyCount: key.count, valueCount: value.count)
        try lock.withLock { _ in
            try wrapHeap {
                // Room first, before the key's slot is looked up: an index rebuild moves
                // every slot to a new table, and a segment switch may compact (redirect
                // slots), so a slot found before either would be stale.
                try ensureIndexRoom(adding: 1)
                if tail + UInt64(size) > Format.segmentEnd(tailSegment) { try advance(needed: size) }
                let offset = tail
                try writeRecord(at: offset, size: size, key: key, value: value)
                try flushPendingSlot()
                // Find the key's slot while those flushes drain: the bucket miss (and
                // an update's miss on the old record) overlaps the fence's wait instead
                // of following it. Loads only: nothing may be stored before the fence.
                let probe = find(hash: hash, key: key, currentTable())
                // The fence: this record and the previous write's slot are durable.
                dataArena.drain()
                tail += UInt64(size)
                // The slot is stored, not flushed: the next write's fence takes it
                // (a flush here would be waited for by the next locked instruction,
                // the mutex, as if it were a fence of its own).
                pendingSlot = try publish(probe, hash: hash, offset: offset, flush: false)
                countInserts()
            }
        }
    }

    public func put(_ key: [UInt8], _ value: [UInt8]) throws {
        try key.withUnsafeBytes { k in try value.withUnsafeBytes { v in try put(k, v) } }
    }

    /// Puts many pairs with group commit: records are made durable a segment's worth at a
    /// time with one fence (their slots are replayable from the tail, like a single put's).
    /// Returns once all are durable.
    /// Later pairs win over earlier ones with the same key. On error, a prefix of the
    /// pairs may have been applied.
    public func put<C: Collection>(batch pairs: C) throws where C.Element == (key: [UInt8], value: [UInt8]) {
        let items = Array(pairs)
        for item in items {
            guard (1 ... Format.maxKeySize).contains(item.key.count) else { throw KVError.invalidKeySize(item.key.count) }
            guard item.value.count <= Format.maxValueSize else { throw KVError.invalidValueSize(item.value.count) }
        }
        try lock.withLock { _ in
            try wrapHeap {
                // Room for every pair up front (duplicates only overestimate): one index
                // rebuild at most, before any record is written.
                try ensureIndexRoom(adding: items.count)
                var next = 0
                while next < items.count {
                    let first = Format.recordSize(keyCount: items[next].key.count, valueCount: items[next].value.count)
                    // Nothing is pending here: compaction never sees an unpublished record.
                    if tail + UInt64(first) > Format.segmentEnd(tailSegment) { try advance(needed: first) }
                    pending.removeAll(keepingCapacity: true)
                    // As many records as the tail segment holds, then one commit.
                    while next < items.count {
                        let item = items[next]
                        let size = Format.recordSize(keyCount: item.key.count, valueCount: item.value.count)
                        if tail + UInt64(size) > Format.segmentEnd(tailSegment) { break }
                        let offset = tail
                        try item.key.withUnsafeBytes { k in try item.value.withUnsafeBytes { value in try writeRecord(at: offset, size: size, key: k, value: value) } }
                        tail += UInt64(size)
                        pending.append(Pending(hash: item.key.withUnsafeBytes { hash64($0, seed: Seeds.key) }, offset: offset, item: next))
                        next += 1
                    }
                    try commitPending(items)
                }
            }
        }
    }

    /// Publishes the pending records of a group: one fence for their records; their slots
    /// are flushed and made durable by the next write's fence (the tail replay covers them).
    private func commitPending(_ items: [(key: [UInt8], value: [UInt8])]) throws {
        guard !pending.isEmpty else { return }
        try flushPendingSlot()
        dataArena.drain()  // one fence for the whole group (and the slots flushed before it)
        for p in pending {
            let probe = items[p.item].key.withUnsafeBytes { k in find(hash: p.hash, key: k, currentTable()) }
            _ = try publish(probe, hash: p.hash, offset: p.offset, flush: true)
        }
        countInserts()
        pending.removeAll(keepingCapacity: true)
    }

    /// Removes `key`; false if it was absent. One fence: a delete record (the key alone)
    /// is appended to the log and made durable, then the slot becomes a tombstone, flushed
    /// like a put's slot (the tail replay covers it).
    @discardableResult
    public func delete(_ key: UnsafeRawBufferPointer) throws -> Bool {
        guard (1 ... Format.maxKeySize).contains(key.count) else { throw KVError.invalidKeySize(key.count) }
        let hash = hash64(key, seed: Seeds.key)
        let size = Format.recordSize(keyCount: key.count, valueCount: 0)
        return try lock.withLock { _ in
            try wrapHeap {
                // Room for the delete record before the slot is looked up (a switch may
                // compact, redirecting slots), even if the key turns out to be absent: a
                // segment switch then is merely early.
                if tail + UInt64(size) > Format.segmentEnd(tailSegment) { try advance(needed: size) }
                let probe = find(hash: hash, key: key, currentTable())
                guard probe.found else { return false }
                let offset = tail
                try writeRecord(at: offset, size: size, key: key, value: UnsafeRawBufferPointer(start: nil, count: 0), flags: Format.deleteFlag)
                try flushPendingSlot()
                dataArena.drain()  // the fence: the delete record (and the previous slot) are durable
                tail += UInt64(size)
                if segmentAppended[tailSegment] >= 0 { segmentAppended[tailSegment] += 1 }
                atomicStore(indexWord(probe.position), Format.tombstone)
                pendingSlot = probe.position  // flushed by the next write, like a put's slot
                release(Format.slotOffset(probe.old))
                tombstones += 1
                liveCount -= 1
                live.store(liveCount, ordering: .releasing)
                return true
            }
        }
    }

    @discardableResult
    public func delete(_ key: [UInt8]) throws -> Bool {
        try key.withUnsafeBytes { try delete($0) }
    }

    // MARK: - Writer internals (lock held)

    private func wrapHeap<R>(_ body: () throws -> R) throws -> R {
        do { return try body() } catch let error as HeapError { throw KVError.heap(error) }
    }

    /// The record format (Format.swift): checksum, length word, key, value, zero padding.
    @inline(__always)
    private static func layOutRecord(at base: UnsafeMutableRawPointer, size: Int, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, flags: UInt64) {
        let lengths = Format.lengthWord(keyCount: key.count, valueCount: value.count, flags: flags)
        base.storeBytes(of: recordChecksum(lengthWord: lengths, key: key.baseAddress, keyCount: key.count, value: value.baseAddress, valueCount: value.count), as: UInt64.self)
        base.storeBytes(of: lengths, toByteOffset: Format.lengthWordOffset, as: UInt64.self)
        (base + Format.keyOffset).copyMemory(from: key.baseAddress!, byteCount: key.count)
        if value.count > 0 { (base + Format.keyOffset + key.count).copyMemory(from: value.baseAddress!, byteCount: value.count) }
        let padding = size - Format.recordHeaderSize - key.count - value.count
        if padding > 0 { (base + size - padding).initializeMemory(as: UInt8.self, repeating: 0, count: padding) }
    }

    /// Lays a record out in the log at `offset` (at the tail, inside the tail segment) and
    /// flushes it (no fence).
    @inline(__always)
    private func writeRecord(at offset: UInt64, size: Int, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, flags: UInt64 = 0) throws {
        Self.layOutRecord(at: record(offset), size: size, key: key, value: value, flags: flags)
        try dataArena.flush(at: offset, count: UInt64(size))
    }

    /// Where `find` said the key's slot is.
    typealias Probe = (position: UInt64, old: UInt64, found: Bool)

    /// Points the key's slot (found by `find` with the writer lock held since) at the
    /// durable record at `offset`, and flushes it if asked (no fence).
    @inline(__always)
    private func publish(_ probe: Probe, hash: UInt64, offset: UInt64, flush: Bool) throws -> UInt64 {
        atomicStore(indexWord(probe.position), Format.slot(tag: Format.tag(hash), offset: offset))
        if flush { try indexArena.flush(at: probe.position, count: 8) }
        if probe.found {
            release(Format.slotOffset(probe.old))
        } else {
            if probe.old == Format.tombstone { tombstones -= 1 }
            unpublishedInserts += 1
        }
        segmentLive[Format.segment(of: offset)] += 1
        if segmentAppended[Format.segment(of: offset)] >= 0 { segmentAppended[Format.segment(of: offset)] += 1 }
        return probe.position
    }

    /// Adds the inserts published since the last call to the count, after the fence: what
    /// `count` says is durable.
    @inline(__always)
    private func countInserts() {
        if unpublishedInserts > 0 {
            liveCount += unpublishedInserts
            live.store(liveCount, ordering: .releasing)
        }
        unpublishedInserts = 0
    }

    /// Flushes the slot the last put or delete stored (no fence: the caller's comes next).
    @inline(__always)
    private func flushPendingSlot() throws {
        if let position = pendingSlot {
            try indexArena.flush(at: position, count: 8)
            pendingSlot = nil
        }
    }

    /// One record in `segment` is no longer referenced.
    private func release(_ offset: UInt64) {
        let segment = Format.segment(of: offset)
        segmentLive[segment] -= 1
        if segmentLive[segment] == 0 && segment != tailSegment && !damagedSegments.contains(segment) {
            freeSegments.append(segment)
        }
    }

    /// Where `key` is (found) or would go (the first tombstone or empty slot on its probe path).
    private func find(hash: UInt64, key: UnsafeRawBufferPointer, _ table: Table) -> Probe {
        let tag = Format.tag(hash)
        var bucket = hash & table.mask
        var reusable: UInt64? = nil
        for _ in 0 ... table.mask {
            let at = table.bucketOffset(bucket)
            for i in 0 ..< UInt64(Format.slotsPerBucket) {
                let position = at + i * 8
                let slot = indexWord(position).load(as: UInt64.self)  // only the writer stores slots
                if slot == Format.emptySlot { return reusable.map { ($0, Format.tombstone, false) } ?? (position, slot, false) }
                if slot == Format.tombstone { if reusable == nil { reusable = position }; continue }
                if Format.slotTag(slot) == tag, keyMatches(at: Format.slotOffset(slot), key: key) { return (position, slot, true) }
            }
            bucket = (bucket + 1) & table.mask
        }
        guard let reusable else { fatalError("DaxKV: index table full (load factor invariant broken)") }
        return (reusable, Format.tombstone, false)
    }

    @inline(__always)
    private func keyMatches(at offset: UInt64, key: UnsafeRawBufferPointer) -> Bool {
        guard let room = recordRoom(offset), Format.recordHeaderSize + key.count <= room else { return false }
        let base = record(offset)
        let lengths = base.load(fromByteOffset: Format.lengthWordOffset, as: UInt64.self)
        return Int(lengths & Format.keyLengthMask) == key.count && memcmp(base + Format.keyOffset, key.baseAddress!, key.count) == 0
    }

    /// The slot whose record is at `offset`, found by the record's key hash.
    private func slotPointing(to offset: UInt64, hash: UInt64, _ table: Table) -> (position: UInt64, slot: UInt64)? {
        let want = Format.slot(tag: Format.tag(hash), offset: offset)
        var bucket = hash & table.mask
        for _ in 0 ... table.mask {
            let at = table.bucketOffset(bucket)
            for i in 0 ..< UInt64(Format.slotsPerBucket) {
                let slot = indexWord(at + i * 8).load(as: UInt64.self)  // only the writer stores slots
                if slot == Format.emptySlot { return nil }
                if slot == want { return (at + i * 8, slot) }
            }
            bucket = (bucket + 1) & table.mask
        }
        return nil
    }

    // MARK: Segments: switching, growth, compaction

    /// Makes the tail segment one with room for a record of `needed` bytes.
    private func advance(needed: Int) throws {
        var triedGrowth = false
        while true {
            if tail + UInt64(needed) <= Format.segmentEnd(tailSegment) { return }
            // One free segment stays in reserve as compaction's destination.
            if freeSegments.count >= 2 {
                try switchToFreeSegment()
                continue
            }
            // A victim known to hold no dead record is not walked (a fill's case).
            if !freeSegments.isEmpty, let victim = victim(), triedGrowth || segmentAppended[victim] != segmentLive[victim],
               let plan = plan(victim) {
                let capacity = Format.segmentEnd(freeSegments.last!) - Format.segmentStart(freeSegments.last!)
                let room = capacity - UInt64(plan)
                // Worth it before growing if it frees enough of a segment (the option;
                // half by default); after growth failed, any gain will do.
                if room >= UInt64(needed), Double(room) >= Double(capacity) * reclaimBeforeGrowth || triedGrowth {
                    try compact(victim)
                    continue
                }
            }
            if !triedGrowth {
                triedGrowth = true
                if try grow() { continue }
                continue  // retry compaction accepting any gain
            }
            throw KVError.storeFull(store: name, needed: UInt64(needed),
                                    detail: "the heap has no free space for the data arena to grow and no segment holds enough reclaimable space")
        }
    }

    /// Makes the last free segment the tail.
    private func switchToFreeSegment() throws {
        let segment = freeSegments.last!
        try prefault(data, segment: segment, store: name)  // may fail: nothing has changed yet
        freeSegments.removeLast()
        let old = tailSegment
        let reused = !segmentZeroed[segment]
        // A get may still hold a slot into the segment's earlier use: counted before the
        // first byte changes (the drain below keeps the zeroing's non-temporal stores after
        // this store; release: after the stores that redirected those slots).
        if reused { segmentReuses.store(segmentReuses.load(ordering: .relaxed) &+ 1, ordering: .releasing) }
        // Invariant 3 (README): every slot stored so far (the last put's or delete's, a
        // group's) is durable before the segment is zeroed or the tail word stored, since
        // from then on the replay reads only the new tail. A fence of its own, right after
        // the flush: a store may reach the media before the fence that follows it, so the
        // one persisting the tail word below comes too late to order the slots before it.
        if let position = pendingSlot { try indexArena.flush(at: position, count: 8) }
        indexArena.drain()
        pendingSlot = nil
        // Invariant 4: past the tail, the tail segment is zero, so the replay at open stops
        // at the end of what was written there and never reads a stale record of the
        // segment's earlier use. Zeroed and persisted before it becomes the tail.
        if reused {
            let start = Format.segmentStart(segment)
            try data.memsetPersist(at: start, value: 0, count: Format.segmentEnd(segment) - start)
        }
        segmentZeroed[segment] = false
        try data.store(UInt64(segment), at: Format.tailSegmentOffset)
        try dataArena.persist(at: Format.tailSegmentOffset, count: 8)
        tailSegment = segment
        segmentAppended[segment] = 0
        tail = Format.segmentStart(segment)
        if segmentLive[old] == 0 && old != segment && !damagedSegments.contains(old) { freeSegments.append(old) }
    }

    /// The full segment with the fewest live records.
    private func victim() -> Int? {
        var best: Int? = nil
        for s in 0 ..< segmentLive.count where s != tailSegment && segmentLive[s] > 0 && !damagedSegments.contains(s) {
            if best == nil || segmentLive[s] < segmentLive[best!] { best = s }
        }
        return best
    }

    /// Walks `segment`, collecting its live records (checked against their checksums)
    /// into `relocations`; returns their total size, or nil (and marks the segment
    /// damaged) when a live record is damaged or cannot be found.
    private func plan(_ segment: Int) -> Int? {
        relocations.removeAll(keepingCapacity: true)
        let table = currentTable()
        var offset = Format.segmentStart(segment)
        let end = Format.segmentEnd(segment)
        var bytes = 0
        while offset + UInt64(Format.recordHeaderSize) <= end && relocations.count < segmentLive[segment] {
            let base = record(offset)
            guard let lengths = RecordLengths(base.load(fromByteOffset: Format.lengthWordOffset, as: UInt64.self)),
                  offset + UInt64(lengths.size) <= end else { break }
            if !lengths.isDelete {  // a delete record is never live
                let hash = hash64(base + Format.keyOffset, lengths.keyCount, seed: Seeds.key)
                if let (position, slot) = slotPointing(to: offset, hash: hash, table) {
                    guard recordIsIntact(base, lengths) else { break }
                    relocations.append(Relocation(from: offset, size: lengths.size, slotAt: position, tag: Format.slotTag(slot), to: 0))
                    bytes += lengths.size
                }
            }
            offset += UInt64(lengths.size)
        }
        if relocations.count != segmentLive[segment] {
            damagedSegments.insert(segment)
            return nil
        }
        return bytes
    }

    /// Moves the live records `plan` found into the reserve segment, which becomes the
    /// tail: the copies are made durable (one fence), then the slots (one more). Only
    /// then is the victim free.
    private func compact(_ victim: Int) throws {
        try switchToFreeSegment()
        for i in relocations.indices {
            let r = relocations[i]
            record(tail).copyMemory(from: record(r.from), byteCount: r.size)
            try dataArena.flush(at: tail, count: UInt64(r.size))
            relocations[i].to = tail
            tail += UInt64(r.size)
        }
        dataArena.drain()
        for r in relocations {
            atomicStore(indexWord(r.slotAt), Format.slot(tag: r.tag, offset: r.to))
            try indexArena.flush(at: r.slotAt, count: 8)
        }
        indexArena.drain()
        segmentLive[tailSegment] += relocations.count
        segmentAppended[tailSegment] += relocations.count
        segmentLive[victim] = 0
        freeSegments.append(victim)
        relocations.removeAll(keepingCapacity: true)
        compactionCount.incrementByWriter()
    }

    /// Grows the data arena online; false when the heap has no room.
    private func grow() throws -> Bool {
        let size = data.size
        let quarter = max(Format.segmentSize, (size / 4) & ~(Format.segmentSize - 1))
        for step in Set([quarter, 2 * Format.segmentSize, Format.segmentSize]).sorted(by: >) {
            do throws(HeapError) {
                // Mapped into the window on return. Each new segment is prefaulted when it
                // becomes the tail (`switchToFreeSegment`), not here.
                try data.arena.resize(to: size + step)
            } catch {
                if isOutOfSpace(error) { continue }
                throw error
            }
            let old = segmentLive.count
            let now = Int((size + step) >> Format.segmentShift)
            segmentLive += [Int](repeating: 0, count: now - old)
            segmentAppended += [Int](repeating: 0, count: now - old)
            segmentZeroed += [Bool](repeating: true, count: now - old)  // new arena space reads as zero
            // The new segments are taken in order, after the older free ones.
            freeSegments = Array((old ..< now).reversed()) + freeSegments.filter { $0 < old }
            growthCount.incrementByWriter()
            return true
        }
        return false
    }

    /// Rebuilds the index at a larger size when adding `n` entries would make it more
    /// than three quarters full (tombstones count), before anything of the put is written.
    private func ensureIndexRoom(adding n: Int) throws {
        let (tableOffset, log2) = Format.decode(descriptor: descriptor.load(ordering: .relaxed))
        let slots = (1 << log2) * Format.slotsPerBucket
        let count = liveCount
        guard count + tombstones + n > slots * 3 / 4 else { return }
        let newLog2 = max(Self.log2Buckets(forKeys: count + n), log2)
        let oldBytes = UInt64(1 << log2) * Format.bucketSize
        let newOffset = (tableOffset + oldBytes + Format.headerSize - 1) & ~(Format.headerSize - 1)
        let newBytes = UInt64(1 << newLog2) * Format.bucketSize
        let needed = roundUp2M(newOffset + newBytes)
        if index.size < needed {
            var failure: HeapError? = nil
            do throws(HeapError) {
                try index.arena.resize(to: needed)  // mapped into the window on return
            } catch {
                if !isOutOfSpace(error) { throw error }
                failure = error
            }
            if let failure {
                throw KVError.storeFull(store: name, needed: needed - index.size, detail: "the index cannot grow (\(failure))")
            }
        }
        // The region may hold a rebuild a crash interrupted: clear it.
        try index.memsetPersist(at: newOffset, value: 0, count: newBytes)
        let newMask = UInt64(1 << newLog2) - 1
        for at in stride(from: tableOffset, to: tableOffset + oldBytes, by: 8) {
            let slot = indexWord(at).load(as: UInt64.self)
            guard Format.isLive(slot) else { continue }
            var bucket = placementHash(of: slot, oldBucket: (at - tableOffset) / Format.bucketSize) & newMask
            placed: while true {
                let base = newOffset + bucket * Format.bucketSize
                for i in 0 ..< UInt64(Format.slotsPerBucket) where indexWord(base + i * 8).load(as: UInt64.self) == Format.emptySlot {
                    indexWord(base + i * 8).storeBytes(of: slot, as: UInt64.self)  // published below, after the persist
                    break placed
                }
                bucket = (bucket + 1) & newMask
            }
        }
        try indexArena.persist(at: newOffset, count: newBytes)
        let word = Format.descriptor(tableOffset: newOffset, log2Buckets: newLog2)
        try index.store(word, at: Format.descriptorOffset)
        try indexArena.persist(at: Format.descriptorOffset, count: 8)
        descriptor.store(word, ordering: .releasing)
        pendingSlot = nil  // its value is in the new table, which is durable
        tombstones = 0
        rebuildCount.incrementByWriter()
    }

    /// The hash an index rebuild places a live slot by: its record's key hash, the lengths
    /// checked as a get checks them. A record whose lengths are impossible, or whose key
    /// hashes to another tag than the slot's, is damaged; if only its key length is, the
    /// key length that makes the record match its checksum and the slot's tag gives the
    /// key hash back, so that a get of the key still meets the slot and reports the damage.
    /// Failing that (its key bytes are damaged too), `oldBucket`: the bucket number stays.
    private func placementHash(of slot: UInt64, oldBucket: UInt64) -> UInt64 {
        let offset = Format.slotOffset(slot)
        let tag = Format.slotTag(slot)
        guard let room = recordRoom(offset), room >= Format.recordHeaderSize else { return oldBucket }  // open refuses such slots
        let base = record(offset)
        let key = base + Format.keyOffset
        if let lengths = RecordLengths(base.load(fromByteOffset: Format.lengthWordOffset, as: UInt64.self)),
           Format.keyOffset + lengths.keyCount <= room {
            let hash = hash64(key, lengths.keyCount, seed: Seeds.key)
            if Format.tag(hash) == tag { return hash }
        }
        return Self.keyHash(ofRecordWithDamagedKeyLength: UnsafeRawBufferPointer(start: base, count: room), tag: tag) ?? oldBucket
    }

    /// The key hash of `record` (the rest of its segment) if only the key length field of
    /// its header is damaged: the hash of the key length with which the rest of the length
    /// word, the bytes and the checksum agree, and whose key hash has the slot's `tag`.
    private static func keyHash(ofRecordWithDamagedKeyLength record: UnsafeRawBufferPointer, tag: UInt64) -> UInt64? {
        let base = record.baseAddress!
        let word = base.load(fromByteOffset: Format.lengthWordOffset, as: UInt64.self)
        for keyCount in 1 ... Format.maxKeySize {
            guard let lengths = RecordLengths(word & ~Format.keyLengthMask | UInt64(keyCount)),
                  Format.keyOffset + keyCount + lengths.valueCount <= record.count else { continue }
            let hash = hash64(base + Format.keyOffset, keyCount, seed: Seeds.key)
            if Format.tag(hash) == tag && recordIsIntact(base, lengths) { return hash }
        }
        return nil
    }
}

func isOutOfSpace(_ error: HeapError) -> Bool {
    switch error {
    case .noSpace, .tableFull: true
    default: false
    }
}

func roundUp2M(_ n: UInt64) -> UInt64 { (n + Format.segmentSize - 1) & ~(Format.segmentSize - 1) }

/// Maps data segment `segment` into `window` now, writable (MADV_POPULATE_WRITE, Linux
/// 5.14): one call instead of a page fault per 4 KiB inside later puts, and a file system
/// without room for the pages says so here, with an error, instead of with SIGBUS at a
/// store. A window is a mapping of its own: `Arena.prefault`, which fills the heap's
/// whole-device mapping, does not reach its pages. Older kernels lack the call (EINVAL);
/// their pages fault in as they are used.
func prefault(_ window: ArenaWindow, segment: Int, store: String) throws {
    let start = window.base + Int(UInt64(segment) << Format.segmentShift)
    guard madvise(start, Int(Format.segmentSize), MADV_POPULATE_WRITE) != 0, errno != EINVAL else { return }
    let reason = String(cString: strerror(errno))
    throw KVError.storeFull(store: store, needed: Format.segmentSize, detail: "the file system cannot back data segment \(segment) (\(reason))")
}

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
