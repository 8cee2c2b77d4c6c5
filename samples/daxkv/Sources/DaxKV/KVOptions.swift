// How a store is opened, and what opening it cost.

import DaxHeap

/// How a store is opened.
public struct KVStoreOptions: Sendable {
    /// Create the store's arenas when they do not exist yet.
    public var create: Bool
    /// Size the index for this many keys up front (it grows online anyway).
    public var expectedKeys: Int
    /// The data arena's size when the store is created (a multiple of 2 MiB, at least 2 MiB),
    /// and the least an open gives space back down to (`giveBackSpace`). Creating the store
    /// prefaults all of it, so that the puts that reach it never wait for its page setup
    /// (nor, on a file-backed heap, for its memory to be allocated and zeroed, about 1.5 ms
    /// a 2 MiB segment on tmpfs); a larger store grows as it goes. To size it for a
    /// workload, see ``dataSize(forRecords:keyBytes:valueBytes:shards:)``.
    public var initialDataSize: UInt64

    /// When the log needs a segment and none is free: compact a segment (rather than grow
    /// the data arena) if at least this fraction of it is reclaimable. 0.5 bounds both write
    /// and space amplification by about 2; higher trades space for faster updates (0.75:
    /// write amplification 1.33, space up to 4x). Once the heap cannot grow, any gain is taken.
    public var reclaimBeforeGrowth: Double

    /// At a read-write open, give the heap back what the store does not use: the data
    /// segments at the arena's end that hold no live record (two free ones are kept for
    /// the log's next switches, and the arena keeps at least `initialDataSize`) and the
    /// index space past the current table. Only at open: an open store's windows keep its
    /// arenas mapped, and a mapped arena cannot shrink.
    public var giveBackSpace: Bool

    /// How many shards a new store has (a power of two, 1 to 64); an existing store keeps
    /// the count it was created with. Keys are split between shards by their hash, and
    /// each shard is a log and an index of its own with its own writer lock: that many
    /// writers can put at once. Each shard takes at least 4 MiB of the heap (a 2 MiB index
    /// arena and one 2 MiB data segment), and `initialDataSize` is split between them.
    /// nil (the default): ``defaultShards(available:)`` of the heap's available space at
    /// creation.
    public var shards: Int?

    /// The shard count of a new store when ``shards`` is nil, on a heap with `available`
    /// bytes free: 1 below ``shardedHeapMinimum`` (there the 4 MiB a shard takes at least
    /// matters), else one shard per ``heapPerDefaultShard`` (a power of two), at most
    /// ``maxDefaultShards``: 4 at 256 MiB, 16 from 1 GiB.
    ///
    /// Why that many: two writers whose keys fall in the same shard wait for each other,
    /// one time in `shards`, and a waiter spins or sleeps for most of a put; measured with
    /// 1,000,000 puts, two writer threads gain about 1.1 to 1.35x over one with 4 shards and
    /// 1.3 to 1.55x with 16 to 64 (Benchmarks/RESULTS.md). Why not more: each shard's
    /// recovery replays its own tail segment, so a store's worst-case open time grows with
    /// the count (README "Recovery cost").
    public static func defaultShards(available: UInt64) -> Int {
        guard available >= shardedHeapMinimum else { return 1 }
        var count = 1
        while count < maxDefaultShards, UInt64(2 * count) * heapPerDefaultShard <= available { count *= 2 }
        return count
    }
    /// How many shards a store created with these options on `heap` has: ``shards``, or
    /// ``defaultShards(available:)`` of the heap's available space now.
    public func shardCount(forNewStoreOn heap: Heap) -> Int { shards ?? Self.defaultShards(available: heap.availableSize) }

    /// The available heap space from which a new store is split into shards by default.
    public static let shardedHeapMinimum: UInt64 = 256 << 20
    /// Heap space per shard of ``defaultShards(available:)``.
    public static let heapPerDefaultShard: UInt64 = 64 << 20
    /// The most shards ``defaultShards(available:)`` gives.
    public static let maxDefaultShards = 16

    /// The ``initialDataSize`` of a store of `shards` shards in whose data arenas `count`
    /// records of a `keyBytes` key and a `valueBytes` value fit without growing, if they
    /// split evenly between the shards. Each put appends a record, an update too; each
    /// shard's log keeps one free segment in reserve (compaction's destination) and
    /// prepares the next segment once its tail is within an eighth of its segment's end.
    /// Keys split between shards by their hash, not exactly evenly: leave some room for a
    /// sharded store (10 % is ample from a few thousand records a shard).
    public static func dataSize(forRecords count: Int, keyBytes: Int, valueBytes: Int, shards: Int = 1) -> UInt64 {
        let shards = max(shards, 1)
        return UInt64(shards) * shardDataSize(forRecords: (count + shards - 1) / shards, keyBytes: keyBytes, valueBytes: valueBytes)
    }

    /// `dataSize` for one shard: whole segments.
    private static func shardDataSize(forRecords count: Int, keyBytes: Int, valueBytes: Int) -> UInt64 {
        let size = Format.recordSize(keyCount: keyBytes, valueCount: valueBytes)
        let perSegment = Int(Format.segmentSize) / size
        let inFirst = Int(Format.segmentSize - Format.headerSize) / size  // after the arena's header
        guard count > 0, inFirst > 0 else { return Format.segmentSize }
        let needed = count + perSegment / 8 + 1  // the last record before the next segment is prepared
        let logSegments = needed <= inFirst ? 1 : 1 + (needed - inFirst + perSegment - 1) / perSegment
        return UInt64(logSegments + 1) << Format.segmentShift  // and the reserve
    }

    /// Keep, for each shard's writer, a copy in DRAM of the key each index slot points at
    /// (keys of up to 16 bytes), so that an update or a delete finds its key's slot without
    /// reading the old record, a cache miss that depends on the bucket's: updates about
    /// 1.5x faster, fills about 20 % slower (README "Performance"). It costs 17 bytes of
    /// memory a slot, 34 MiB for 1 M keys (the table keeps at least two slots a key), taken
    /// as the writer touches it; nothing of it is on the media. Turn it off to spare the
    /// memory; the store's data and behaviour are the same either way.
    public var keyCopy: Bool

    public init(create: Bool = true, expectedKeys: Int = 0, initialDataSize: UInt64 = 4 << 20, reclaimBeforeGrowth: Double = 0.5,
                giveBackSpace: Bool = true, shards: Int? = nil, keyCopy: Bool = true) {
        self.create = create
        self.keyCopy = keyCopy
        self.shards = shards
        self.expectedKeys = expectedKeys
        self.initialDataSize = initialDataSize
        self.reclaimBeforeGrowth = min(max(reclaimBeforeGrowth, 0), 1)
        self.giveBackSpace = giveBackSpace
    }
}

/// What opening the store cost: recovery is, in each shard, one scan of the index and one
/// of the log's tail segment, replaying the writes whose slot stores were lost. Summed
/// over the shards.
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
    /// How long the open took (a store's: wall clock, its shards recovering in parallel).
    public var seconds: Double
}

extension Duration {
    /// The duration in seconds (recovery times are reported so).
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
