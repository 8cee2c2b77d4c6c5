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
    let index: Arena
    let data: Arena
    private let lock = Locked<Void>(())  // DaxHeap's pthread mutex: visible to ThreadSanitizer
    /// The current index table, as in the index header (readers load it each lookup).
    private let descriptor: Atomic<UInt64>
    /// Segments that held records and became the tail again, counted before their first
    /// byte changes. A get loads it before and after its reads and looks again when it
    /// changed (a seqlock's reader): see `get` and README "Concurrency".
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
        if let position = pendingSlot { try? index.persist(at: position, count: 8) }
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
    public static func open(heap: Heap, name: String = "kv", options: KVStoreOptions = .init()) throws -> KVStore {
        guard !name.isEmpty, name.utf8.count <= 57, !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw KVError.invalidStoreName(name)
        }
        let indexName = "\(name).index", dataName = "\(name).data"
        do {
            var index = try? heap.arena(named: indexName)
            var data = try? heap.arena(named: dataName)
            let ready = try index.map { try $0.size >= Format.headerSize && load($0, Format.magicOffset) == Format.indexMagic } ?? false
            if !ready || data == nil {
                // Absent, or a creation that was interrupted (the index magic is written
                // last, so no put can have been acknowledged): (re)initialise.
                guard options.create else {
                    if index == nil && data == nil { throw KVError.noSuchStore(name) }
                    throw KVError.notAStore(store: name, reason: "its creation never finished; open it with creation allowed to start afresh")
                }
                if index != nil, ready { throw KVError.notAStore(store: name, reason: "the data arena is missing") }
                let dataSize = max(Format.segmentSize, (options.initialDataSize + Format.segmentSize - 1) & ~(Format.segmentSize - 1))
                let existingData = data != nil
                if data == nil {
                    data = try heap.createArena(named: dataName, size: dataSize)
                    try data!.prefault(at: 0, count: dataSize)  // as growth does (see grow())
                }
                // The header and segment 0, the first tail: a data arena left by an earlier
                // attempt may hold records there, which the tail replay must never see
                // (invariant 4). A new arena reads as zero already.
                try data!.memsetPersist(at: 0, value: 0, count: existingData ? Format.segmentSize : Format.headerSize)
                try store(data!, Format.versionOffset, Format.version)
                try store(data!, Format.tailSegmentOffset, 0)
                try store(data!, Format.magicOffset, Format.dataMagic)
                try data!.persist(at: 0, count: Format.headerSize)
                let log2 = Self.log2Buckets(forKeys: options.expectedKeys)
                let tableBytes = UInt64(1 << log2) * Format.bucketSize
                let indexSize = roundUp2M(Format.headerSize + tableBytes)
                if let existing = index {
                    if try existing.size < indexSize { try existing.resize(to: indexSize) }
                } else {
                    index = try heap.createArena(named: indexName, size: indexSize)
                }
                try index!.memsetPersist(at: 0, value: 0, count: Format.headerSize + tableBytes)
                try store(index!, Format.versionOffset, Format.version)
                try store(index!, Format.descriptorOffset, Format.descriptor(tableOffset: Format.headerSize, log2Buckets: log2))
                try index!.persist(at: 0, count: Format.headerSize)
                try store(index!, Format.magicOffset, Format.indexMagic)
                try index!.persist(at: 0, count: 8)
            }
            return try KVStore(heap: heap, name: name, index: index!, data: data!, reclaim: options.reclaimBeforeGrowth)
        } catch let error as HeapError {
            throw KVError.heap(error)
        }
    }

    /// Destroys a store's arenas (no-op for those absent).
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

    private init(heap: Heap, name: String, index: Arena, data: Arena, reclaim: Double) throws {
        self.reclaimBeforeGrowth = reclaim
        let clock = ContinuousClock()
        let started = clock.now
        self.heap = heap
        self.name = name
        self.index = index
        self.data = data
        guard try Self.load(data, Format.magicOffset) == Format.dataMagic, try Self.load(index, Format.magicOffset) == Format.indexMagic else {
            throw KVError.notAStore(store: name, reason: "bad magic")
        }
        let version = try Self.load(index, Format.versionOffset), dataVersion = try Self.load(data, Format.versionOffset)
        guard (1 ... Format.version).contains(version), (1 ... Format.version).contains(dataVersion) else {
            throw KVError.notAStore(store: name, reason: "format version \(max(version, dataVersion)), this build reads 1 to \(Format.version)")
        }
        let word = try Self.load(index, Format.descriptorOffset)
        let (tableOffset, log2) = Format.decode(descriptor: word)
        let indexSize = try index.size
        guard tableOffset >= Format.headerSize, (3 ... 40).contains(log2),
              tableOffset + UInt64(1 << log2) * Format.bucketSize <= indexSize else {
            throw KVError.notAStore(store: name, reason: "the index descriptor is damaged")
        }
        descriptor = Atomic(word)
        let dataSize = try data.size
        let segments = Int(dataSize >> Format.segmentShift)
        let tailSegment = Int(try Self.load(data, Format.tailSegmentOffset))
        guard tailSegment < segments else { throw KVError.notAStore(store: name, reason: "the tail segment \(tailSegment) is past the data arena") }
        var segmentLive = [Int](repeating: 0, count: segments)
        var count = 0, tombstones = 0, headers = 0
        var tail = Format.segmentStart(tailSegment)
        let slots = (1 << log2) * Format.slotsPerBucket
        var tailOffsets: [UInt64] = []
        // One sequential pass over the table, an extent at a time.
        var at = tableOffset
        let end = tableOffset + UInt64(slots) * 8
        while at < end {
            let n = min(try index.contiguousBytes(at: at), end - at)
            try index.withUnsafeBytes(at: at, count: Int(n)) { raw in
                var i = 0
                while i < Int(n) {
                    let slot = raw.load(fromByteOffset: i, as: UInt64.self)
                    i += 8
                    if slot == Format.emptySlot { continue }
                    if slot == Format.tombstone { tombstones += 1; continue }
                    let offset = Format.slotOffset(slot)
                    let segment = Format.segment(of: offset)
                    guard offset >= Format.headerSize, segment < segments,
                          offset + UInt64(Format.recordHeaderSize) <= Format.segmentEnd(segment) else {
                        throw KVError.notAStore(store: name, reason: "index slot at \(at + UInt64(i) - 8) points outside the data arena")
                    }
                    segmentLive[segment] += 1
                    count += 1
                    if segment == tailSegment { tailOffsets.append(offset) }
                }
            }
            at += n
        }
        // The tail restarts after the last record a slot references in the tail segment:
        // anything after it is unreferenced (an unacknowledged put) and may be overwritten.
        for offset in tailOffsets {
            headers += 1
            let word = try data.withUnsafeBytes(at: offset + 8, count: 8) { $0.load(as: UInt64.self) }
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
            try store(data, Format.versionOffset, Format.version)
            try data.persist(at: Format.versionOffset, count: 8)
            try store(index, Format.versionOffset, Format.version)
            try index.persist(at: Format.versionOffset, count: 8)
            return (0, 0)
        }
        // The valid records from the segment's start; the first that fails its checks ends
        // the log (zero bytes past the tail, by invariant 4, or a torn append).
        // The last record of each key in the tail is the key's newest state: a put the
        // slot must point at, or a delete the key must be absent after. (Records are in
        // log order, and anything outside the tail is older: compaction copies into a new
        // tail, never into the current one.)
        var records: [(offset: UInt64, keyCount: Int, hash: UInt64, isDelete: Bool)] = []
        var last: [[UInt8]: Int] = [:]  // key -> its last record in `records`
        var at = Format.segmentStart(segment)
        try data.withView { dat in
            while at + UInt64(Format.recordHeaderSize) <= end {
                let size: Int? = try dat.withUnsafeBytes(at: at, count: Int(end - at)) { r in
                    let base = r.baseAddress!
                    guard let lengths = RecordLengths(base.load(fromByteOffset: 8, as: UInt64.self)),
                          lengths.size <= r.count, recordIsIntact(base, lengths) else { return nil }
                    let key = UnsafeRawBufferPointer(start: base + Format.recordHeaderSize, count: lengths.keyCount)
                    last[Array(key)] = records.count
                    records.append((at, lengths.keyCount, hash64(key, seed: Seeds.key), lengths.isDelete))
                    return lengths.size
                }
                guard let size else { break }
                at += UInt64(size)
            }
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
        func lost(_ r: (offset: UInt64, keyCount: Int, hash: UInt64, isDelete: Bool), _ v: Views) throws -> (position: UInt64, old: UInt64, found: Bool)? {
            try v.data.withUnsafeBytes(at: r.offset + 16, count: r.keyCount) { key in
                let probe = try find(hash: r.hash, key: key, v)
                let agrees = r.isDelete ? !probe.found : probe.found && Format.slotOffset(probe.old) == r.offset
                return agrees ? nil : probe
            }
        }
        guard writable else {
            let outstanding = try withViews { v in try finals.filter { try lost($0, v) != nil }.count }
            if outstanding > 0 { throw KVError.needsRecovery(store: name, records: outstanding) }
            return (records.count, 0)
        }
        var replayed = 0
        for r in finals {
            if !r.isDelete { try ensureIndexRoom(adding: 1) }  // resizes: outside the views
            try withViews { v in
                guard let probe = try lost(r, v) else { return }
                replayed += 1
                if r.isDelete {
                    try v.index.store(Format.tombstone, at: probe.position)
                    try v.index.flush(at: probe.position, count: 8)
                    release(Format.slotOffset(probe.old))
                    tombstones += 1
                    liveCount -= 1
                } else {
                    _ = try v.data.withUnsafeBytes(at: r.offset + 16, count: r.keyCount) { key in
                        try publish(hash: r.hash, key: key, offset: r.offset, v)
                    }
                }
            }
        }
        index.drain()  // the replayed slots are durable
        countInserts()
        live.store(liveCount, ordering: .releasing)
        // Restore invariant 4 after a torn append: zero from the new tail on.
        if !damaged && tail < end {
            if try !data.withUnsafeBytes(at: tail, count: Int(end - tail), isZero) { try data.memsetPersist(at: tail, value: 0, count: end - tail) }
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
            return ((try? index.size) ?? 0, (try? data.size) ?? 0, segmentLive.count, freeSegments.count, (1 << log2) * Format.slotsPerBucket)
        }
    }

    // MARK: - Reading (lock-free)

    /// Copies the value of `key` into `buffer` and returns its length, or nil if the key is
    /// absent. When the value is longer than `buffer`, nothing is copied and the length is
    /// returned (call again with a larger buffer). The value is checked against its
    /// record's checksum first: a damaged record throws ``KVError/damagedRecord``.
    ///
    /// One read section, no lock, no fence, no allocation.
    public func get(_ key: UnsafeRawBufferPointer, into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        guard (1 ... Format.maxKeySize).contains(key.count) else { throw KVError.invalidKeySize(key.count) }
        let hash = hash64(key, seed: Seeds.key)
        while true {
            // Before the table descriptor (which `withViews` loads): see `reusedSegment`.
            let reuses = segmentReuses.load(ordering: .acquiring)
            let result = try wrapHeap { try withViews { try lookup($0, hash: hash, key: key, buffer: buffer) } }
            // A slot the lookup loaded may have led it to what the writer put in place of
            // the record: another key's (then the key looked absent) or one not yet durable.
            if reusedSegment(since: reuses) { continue }
            switch result {
            case .absent: return nil
            case .found(let length): return length
            case .beyondView(let offset):
                // A record in a segment the data arena gained after the view was taken:
                // look again with a new view. Past the end of a fresh one, it is damage.
                if try wrapHeap({ try Format.segmentEnd(Format.segment(of: offset)) > data.size }) {
                    throw KVError.damagedRecord(store: name, offset: offset, reason: "an index slot points past the data arena")
                }
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

    private enum Lookup { case absent, found(Int), beyondView(UInt64), damaged(UInt64, String) }

    /// The two arenas pinned for one operation, and the index table it works on.
    /// Non-escapable like the views it holds: it lives only inside `withViews`.
    struct Views: ~Escapable {
        let index: ArenaView
        let data: ArenaView
        let tableOffset: UInt64
        let mask: UInt64

        @_lifetime(copy index, copy data)
        init(index: ArenaView, data: ArenaView, descriptor: UInt64) {
            self.index = index
            self.data = data
            let (tableOffset, log2) = Format.decode(descriptor: descriptor)
            self.tableOffset = tableOffset
            self.mask = UInt64(1 << log2) - 1
        }

        @inline(__always) func bucketOffset(_ bucket: UInt64) -> UInt64 { tableOffset + bucket * Format.bucketSize }
    }

    @inline(__always)
    private func lookup(_ v: Views, hash: UInt64, key: UnsafeRawBufferPointer, buffer: UnsafeMutableRawBufferPointer) throws -> Lookup {
        let tag = Format.tag(hash)
        var bucket = hash & v.mask
        for _ in 0 ... v.mask {
            let result: Lookup? = try v.index.withUnsafeBytes(at: v.bucketOffset(bucket), count: Int(Format.bucketSize)) { slots in
                for i in 0 ..< Format.slotsPerBucket {
                    let slot = atomicLoad(slots.baseAddress! + i * 8)
                    if slot == Format.emptySlot { return .absent }
                    guard Format.isLive(slot), Format.slotTag(slot) == tag else { continue }
                    #if DEBUG
                    afterSlotLoad?(Format.slotOffset(slot))
                    #endif
                    if let r = try readRecord(at: Format.slotOffset(slot), key: key, buffer: buffer, v.data) { return r }
                }
                return nil
            }
            if let result { return result }
            bucket = (bucket + 1) & v.mask
        }
        return .absent
    }

    /// The record at `offset` if it holds `key` (its value copied out), nil if it holds
    /// another key, damaged if it fails its checks.
    @inline(__always)
    private func readRecord(at offset: UInt64, key: UnsafeRawBufferPointer, buffer: UnsafeMutableRawBufferPointer, _ data: ArenaView) throws -> Lookup? {
        let end = Format.segmentEnd(Format.segment(of: offset))
        guard end <= data.size else { return .beyondView(offset) }
        return try data.withUnsafeBytes(at: offset, count: Int(end - offset)) { record -> Lookup? in
            let base = record.baseAddress!
            let checksum = atomicLoad(base)
            let lengths = atomicLoad(base + 8)
            guard let decoded = RecordLengths(lengths), !decoded.isDelete,
                  Format.recordHeaderSize + decoded.keyCount + decoded.valueCount <= record.count else {
                return .damaged(offset, "impossible lengths")
            }
            let k = decoded.keyCount, v = decoded.valueCount
            let storedKey = base + Format.recordHeaderSize
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
    }

    /// Calls `body` with every pair, in index order (the writer lock is held meanwhile: a
    /// consistent snapshot). `body` must not write to this store (that would deadlock) nor
    /// provision the heap (it runs inside a read section). The buffers are the records on
    /// the media: copy what you keep. Damaged records throw.
    public func forEach(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void) throws {
        try lock.withLock { _ in
            try withViews { v in
                let (idx, dat) = (v.index, v.data)
                for bucket in 0 ... v.mask {
                    for i in 0 ..< UInt64(Format.slotsPerBucket) {
                        let slot = try idx.load(at: v.bucketOffset(bucket) + i * 8)
                        guard Format.isLive(slot) else { continue }
                        let offset = Format.slotOffset(slot)
                        try dat.withUnsafeBytes(at: offset, count: Int(Format.segmentEnd(Format.segment(of: offset)) - offset)) { record in
                            let base = record.baseAddress!
                            guard let lengths = RecordLengths(base.load(fromByteOffset: 8, as: UInt64.self)), !lengths.isDelete,
                                  Format.recordHeaderSize + lengths.keyCount + lengths.valueCount <= record.count,
                                  recordIsIntact(base, lengths) else {
                                throw KVError.damagedRecord(store: name, offset: offset, reason: "checksum mismatch")
                            }
                            let k = lengths.keyCount
                            try body(UnsafeRawBufferPointer(start: base + 16, count: k), UnsafeRawBufferPointer(start: base + 16 + k, count: lengths.valueCount))
                        }
                    }
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
                // Provisioning first: it may resize an arena, which must not happen in a view.
                try ensureIndexRoom(adding: 1)
                if tail + UInt64(size) > Format.segmentEnd(tailSegment) { try advance(needed: size) }
                try withViews { v in
                    let dat = v.data
                    let offset = tail
                    try writeRecord(at: offset, size: size, key: key, value: value, dat)
                    try flushPendingSlot(v.index)
                    // Find the key's slot while those flushes drain: the bucket miss (and
                    // an update's miss on the old record) overlaps the fence's wait instead
                    // of following it. Loads only: nothing may be stored before the fence.
                    let probe: Probe
                    do { probe = try find(hash: hash, key: key, v) } catch {
                        try? eraseUnpublished(at: offset, size: size, dat)
                        throw error
                    }
                    // The fence: this record and the previous write's slot are durable.
                    dat.drain()
                    tail += UInt64(size)
                    // The slot is stored, not flushed: the next write's fence takes it
                    // (a flush here would be waited for by the next locked instruction,
                    // the mutex, as if it were a fence of its own).
                    pendingSlot = try publish(probe, hash: hash, offset: offset, flush: false, v)
                    countInserts()
                }
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
                // Room for every pair up front (duplicates only overestimate), so that no
                // index rebuild, which resizes, falls inside a view.
                try ensureIndexRoom(adding: items.count)
                var next = 0
                while next < items.count {
                    let first = Format.recordSize(keyCount: items[next].key.count, valueCount: items[next].value.count)
                    // Nothing is pending here: compaction never sees an unpublished record.
                    if tail + UInt64(first) > Format.segmentEnd(tailSegment) { try advance(needed: first) }
                    try withViews { v in
                        pending.removeAll(keepingCapacity: true)
                        // As many records as the tail segment holds, then one commit.
                        while next < items.count {
                            let item = items[next]
                            let size = Format.recordSize(keyCount: item.key.count, valueCount: item.value.count)
                            if tail + UInt64(size) > Format.segmentEnd(tailSegment) { break }
                            let offset = tail
                            try item.key.withUnsafeBytes { k in try item.value.withUnsafeBytes { value in try writeRecord(at: offset, size: size, key: k, value: value, v.data) } }
                            tail += UInt64(size)
                            pending.append(Pending(hash: item.key.withUnsafeBytes { hash64($0, seed: Seeds.key) }, offset: offset, item: next))
                            next += 1
                        }
                        try commitPending(items, v)
                    }
                }
            }
        }
    }

    /// Publishes the pending records of a group: one fence for their records; their slots
    /// are flushed and made durable by the next write's fence (the tail replay covers them).
    private func commitPending(_ items: [(key: [UInt8], value: [UInt8])], _ v: Views) throws {
        guard !pending.isEmpty else { return }
        try flushPendingSlot(v.index)
        v.data.drain()  // one fence for the whole group (and the slots flushed before it)
        for p in pending {
            _ = try items[p.item].key.withUnsafeBytes { k in try publish(hash: p.hash, key: k, offset: p.offset, v) }
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
                // Room for the delete record first (outside the view), even if the key
                // turns out to be absent: a segment switch then is merely early.
                if tail + UInt64(size) > Format.segmentEnd(tailSegment) { try advance(needed: size) }
                return try withViews { v in
                    let idx = v.index
                    let probe = try find(hash: hash, key: key, v)
                    guard probe.found else { return false }
                    let offset = tail
                    try writeRecord(at: offset, size: size, key: key, value: UnsafeRawBufferPointer(start: nil, count: 0), flags: Format.deleteFlag, v.data)
                    try flushPendingSlot(idx)
                    v.data.drain()  // the fence: the delete record (and the previous slot) are durable
                    tail += UInt64(size)
                    if segmentAppended[tailSegment] >= 0 { segmentAppended[tailSegment] += 1 }
                    try idx.store(Format.tombstone, at: probe.position)
                    pendingSlot = probe.position  // flushed by the next write, like a put's slot
                    release(Format.slotOffset(probe.old))
                    tombstones += 1
                    liveCount -= 1
                    live.store(liveCount, ordering: .releasing)
                    return true
                }
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
        base.storeBytes(of: lengths, toByteOffset: 8, as: UInt64.self)
        (base + 16).copyMemory(from: key.baseAddress!, byteCount: key.count)
        if value.count > 0 { (base + 16 + key.count).copyMemory(from: value.baseAddress!, byteCount: value.count) }
        let padding = size - 16 - key.count - value.count
        if padding > 0 { (base + size - padding).initializeMemory(as: UInt8.self, repeating: 0, count: padding) }
    }

    /// Lays a record out in the log at `offset` and flushes it (no fence). Records never
    /// straddle segments, and segments never straddle extents: one scoped access.
    @inline(__always)
    private func writeRecord(at offset: UInt64, size: Int, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, flags: UInt64 = 0, _ data: ArenaView) throws {
        try data.withUnsafeMutableBytes(at: offset, count: size) { record in
            Self.layOutRecord(at: record.baseAddress!, size: size, key: key, value: value, flags: flags)
        }
        try data.flush(at: offset, count: UInt64(size))
    }

    /// Zeroes a record written at the tail whose put then failed, as the bytes past the tail
    /// were (invariant 4): after a crash, the replay must not take a failed put for a write.
    private func eraseUnpublished(at offset: UInt64, size: Int, _ data: ArenaView) throws {
        try data.withUnsafeMutableBytes(at: offset, count: size) { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) }
        try data.persist(at: offset, count: UInt64(size))
    }

    /// Points `key`'s slot at the durable record at `offset` and flushes it (no fence).
    @inline(__always)
    @discardableResult
    private func publish(hash: UInt64, key: UnsafeRawBufferPointer, offset: UInt64, flush: Bool = true, _ v: Views) throws -> UInt64 {
        try publish(try find(hash: hash, key: key, v), hash: hash, offset: offset, flush: flush, v)
    }

    /// Where `find` said the key's slot is.
    typealias Probe = (position: UInt64, old: UInt64, found: Bool)

    /// `publish` with the key's slot already found (the writer lock held since).
    @inline(__always)
    private func publish(_ probe: Probe, hash: UInt64, offset: UInt64, flush: Bool, _ v: Views) throws -> UInt64 {
        try v.index.store(Format.slot(tag: Format.tag(hash), offset: offset), at: probe.position)
        if flush { try v.index.flush(at: probe.position, count: 8) }
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
    private func flushPendingSlot(_ index: ArenaView) throws {
        if let position = pendingSlot {
            try index.flush(at: position, count: 8)
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
    private func find(hash: UInt64, key: UnsafeRawBufferPointer, _ v: Views) throws -> (position: UInt64, old: UInt64, found: Bool) {
        let tag = Format.tag(hash)
        var bucket = hash & v.mask
        var reusable: UInt64? = nil
        for _ in 0 ... v.mask {
            let at = v.bucketOffset(bucket)
            let hit: (UInt64, UInt64, Bool)? = try v.index.withUnsafeBytes(at: at, count: Int(Format.bucketSize)) { slots in
                for i in 0 ..< Format.slotsPerBucket {
                    let slot = slots.load(fromByteOffset: i * 8, as: UInt64.self)
                    let position = at + UInt64(i * 8)
                    if slot == Format.emptySlot { return reusable.map { ($0, Format.tombstone, false) } ?? (position, slot, false) }
                    if slot == Format.tombstone { if reusable == nil { reusable = position }; continue }
                    if Format.slotTag(slot) == tag, try keyMatches(at: Format.slotOffset(slot), key: key, v.data) { return (position, slot, true) }
                }
                return nil
            }
            if let hit { return hit }
            bucket = (bucket + 1) & v.mask
        }
        guard let reusable else { fatalError("DaxKV: index table full (load factor invariant broken)") }
        return (reusable, Format.tombstone, false)
    }

    @inline(__always)
    private func keyMatches(at offset: UInt64, key: UnsafeRawBufferPointer, _ data: ArenaView) throws -> Bool {
        let room = Int(Format.segmentEnd(Format.segment(of: offset)) - offset)
        let n = Format.recordHeaderSize + key.count
        guard n <= room else { return false }
        return try data.withUnsafeBytes(at: offset, count: n) { record in
            let lengths = record.load(fromByteOffset: 8, as: UInt64.self)
            return Int(lengths & 0xFFFF) == key.count && memcmp(record.baseAddress! + 16, key.baseAddress!, key.count) == 0
        }
    }

    /// The slot whose record is at `offset`, found by the record's key hash.
    private func slotPointing(to offset: UInt64, hash: UInt64, _ v: Views) throws -> (position: UInt64, slot: UInt64)? {
        let want = Format.slot(tag: Format.tag(hash), offset: offset)
        var bucket = hash & v.mask
        for _ in 0 ... v.mask {
            let at = v.bucketOffset(bucket)
            let hit: (UInt64, UInt64)?? = try v.index.withUnsafeBytes(at: at, count: Int(Format.bucketSize)) { slots in
                for i in 0 ..< Format.slotsPerBucket {
                    let slot = slots.load(fromByteOffset: i * 8, as: UInt64.self)
                    if slot == Format.emptySlot { return .some(nil) }
                    if slot == want { return (at + UInt64(i * 8), slot) }
                }
                return nil
            }
            if let hit { return hit }
            bucket = (bucket + 1) & v.mask
        }
        return nil
    }

    /// Runs `body` with both arenas pinned and the current table. No provisioning inside.
    private func withViews<R>(_ body: (Views) throws -> R) throws -> R {
        // The descriptor before the views: a table a rebuild published lies inside the
        // index arena as it was at publication, which a view taken afterwards includes.
        let word = descriptor.load(ordering: .acquiring)
        return try Arena.withViews(index, data) { idx, dat in try body(Views(index: idx, data: dat, descriptor: word)) }
    }

    // MARK: Segments: switching, growth, compaction

    /// Makes the tail segment one with room for a record of `needed` bytes.
    private func advance(needed: Int) throws {
        var triedGrowth = false
        while true {
            if tail + UInt64(needed) <= Format.segmentEnd(tailSegment) { return }
            // One free segment stays in reserve as compaction's destination.
            if freeSegments.count >= 2 {
                try switchTo(freeSegments.removeLast())
                continue
            }
            // A victim known to hold no dead record is not walked (a fill's case).
            if !freeSegments.isEmpty, let victim = victim(), triedGrowth || segmentAppended[victim] != segmentLive[victim],
               let plan = try withViews({ try plan(victim, $0) }) {
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

    private func switchTo(_ segment: Int) throws {
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
        try index.withView { idx in
            if let position = pendingSlot { try idx.flush(at: position, count: 8) }
            idx.drain()
        }
        pendingSlot = nil
        // Invariant 4: past the tail, the tail segment is zero, so the replay at open stops
        // at the end of what was written there and never reads a stale record of the
        // segment's earlier use. Zeroed and persisted before it becomes the tail.
        if reused {
            let start = Format.segmentStart(segment)
            try data.memsetPersist(at: start, value: 0, count: Format.segmentEnd(segment) - start)
        }
        segmentZeroed[segment] = false
        try store(data, Format.tailSegmentOffset, UInt64(segment))
        try data.persist(at: Format.tailSegmentOffset, count: 8)
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
    private func plan(_ segment: Int, _ v: Views) throws -> Int? {
        relocations.removeAll(keepingCapacity: true)
        var offset = Format.segmentStart(segment)
        let end = Format.segmentEnd(segment)
        var bytes = 0
        while offset + UInt64(Format.recordHeaderSize) <= end && relocations.count < segmentLive[segment] {
            let step: Int? = try v.data.withUnsafeBytes(at: offset, count: Int(end - offset)) { record in
                let base = record.baseAddress!
                guard let lengths = RecordLengths(base.load(fromByteOffset: 8, as: UInt64.self)) else { return nil }
                let size = lengths.size
                guard size <= record.count else { return nil }
                if lengths.isDelete { return size }  // a delete record: never live
                let hash = hash64(base + 16, lengths.keyCount, seed: Seeds.key)
                if let (position, slot) = try slotPointing(to: offset, hash: hash, v) {
                    guard recordIsIntact(base, lengths) else { return -1 }
                    relocations.append(Relocation(from: offset, size: size, slotAt: position, tag: Format.slotTag(slot), to: 0))
                    bytes += size
                }
                return size
            }
            guard let step else { break }
            if step < 0 { break }
            offset += UInt64(step)
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
        try switchTo(freeSegments.removeLast())
        try withViews { v in
            for i in relocations.indices {
                let r = relocations[i]
                try v.data.withUnsafeBytes(at: r.from, count: r.size) { source in
                    try v.data.memcpyNoDrain(at: tail, from: source)
                }
                relocations[i].to = tail
                tail += UInt64(r.size)
            }
            v.data.drain()
            for r in relocations {
                try v.index.store(Format.slot(tag: r.tag, offset: r.to), at: r.slotAt)
                try v.index.flush(at: r.slotAt, count: 8)
            }
            v.index.drain()
        }
        segmentLive[tailSegment] += relocations.count
        segmentAppended[tailSegment] += relocations.count
        segmentLive[victim] = 0
        freeSegments.append(victim)
        relocations.removeAll(keepingCapacity: true)
        compactionCount.incrementByWriter()
    }

    /// Grows the data arena online; false when the heap has no room.
    private func grow() throws -> Bool {
        let size = try data.size
        let quarter = max(Format.segmentSize, (size / 4) & ~(Format.segmentSize - 1))
        for step in Set([quarter, 2 * Format.segmentSize, Format.segmentSize]).sorted(by: >) {
            var grown = false
            do throws(HeapError) {
                try data.resize(to: size + step)
                grown = true
            } catch {
                if !isOutOfSpace(error) { throw error }
            }
            if !grown { continue }
            // Map the new segments now: one call instead of a page fault per 4 KiB inside
            // later puts, and a file system with no room for them says so here (the space
            // goes back and a smaller step is tried) instead of with SIGBUS at a store.
            do throws(HeapError) {
                try data.prefault(at: size, count: step)
            } catch {
                try data.resize(to: size)
                continue
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
        if try index.size < needed {
            var failure: HeapError? = nil
            do throws(HeapError) {
                try index.resize(to: needed)
            } catch {
                if !isOutOfSpace(error) { throw error }
                failure = error
            }
            if let failure {
                throw KVError.storeFull(store: name, needed: needed - (try index.size), detail: "the index cannot grow (\(failure))")
            }
        }
        // The region may hold a rebuild a crash interrupted: clear it.
        try index.memsetPersist(at: newOffset, value: 0, count: newBytes)
        let newMask = UInt64(1 << newLog2) - 1
        try withViews { v in
            // `v` describes the old table; the new one is addressed by hand below.
            var at = tableOffset
            let end = tableOffset + oldBytes
            while at < end {
                let slot = try v.index.load(at: at)
                let oldBucket = (at - tableOffset) / Format.bucketSize
                at += 8
                guard Format.isLive(slot) else { continue }
                var bucket = try placementHash(of: slot, oldBucket: oldBucket, v.data) & newMask
                placed: while true {
                    let base = newOffset + bucket * Format.bucketSize
                    for i in 0 ..< UInt64(Format.slotsPerBucket) where try v.index.load(at: base + i * 8) == Format.emptySlot {
                        try v.index.store(slot, at: base + i * 8)
                        break placed
                    }
                    bucket = (bucket + 1) & newMask
                }
            }
            try v.index.persist(at: newOffset, count: newBytes)
        }
        let word = Format.descriptor(tableOffset: newOffset, log2Buckets: newLog2)
        try store(index, Format.descriptorOffset, word)
        try index.persist(at: Format.descriptorOffset, count: 8)
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
    private func placementHash(of slot: UInt64, oldBucket: UInt64, _ data: ArenaView) throws -> UInt64 {
        let offset = Format.slotOffset(slot)
        let room = Int(Format.segmentEnd(Format.segment(of: offset)) - offset)
        let tag = Format.slotTag(slot)
        guard room >= Format.recordHeaderSize else { return oldBucket }  // open refuses such slots
        return try data.withUnsafeBytes(at: offset, count: room) { record in
            let base = record.baseAddress!
            let key = base + Format.keyOffset
            if let lengths = RecordLengths(base.load(fromByteOffset: Format.lengthWordOffset, as: UInt64.self)),
               Format.keyOffset + lengths.keyCount <= room {
                let hash = hash64(key, lengths.keyCount, seed: Seeds.key)
                if Format.tag(hash) == tag { return hash }
            }
            return Self.keyHash(ofRecordWithDamagedKeyLength: record, tag: tag) ?? oldBucket
        }
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

    // MARK: - Raw words

    static func load(_ arena: Arena, _ offset: UInt64) throws -> UInt64 {
        try arena.withUnsafeBytes(at: offset, count: 8) { atomicLoad($0.baseAddress!) }
    }

    private static func store(_ arena: Arena, _ offset: UInt64, _ value: UInt64) throws {
        try arena.withUnsafeMutableBytes(at: offset, count: 8) { atomicStore($0.baseAddress!, value) }
    }

    private func store(_ arena: Arena, _ offset: UInt64, _ value: UInt64) throws {
        try Self.store(arena, offset, value)
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
