// How a store is opened, and what opening it cost.

/// How a store is opened.
public struct KVStoreOptions: Sendable {
    /// Create the store's arenas when they do not exist yet.
    public var create: Bool
    /// Size the index for this many keys up front (it grows online anyway).
    public var expectedKeys: Int
    /// The data arena's size when the store is created (a multiple of 2 MiB, at least 2 MiB),
    /// and the least an open gives space back down to (`giveBackSpace`).
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
    /// nil (the default): `defaultShards` when the heap has at least
    /// `shardedHeapMinimum` available at creation, else 1.
    public var shards: Int?

    /// The shard count of a new store on a heap with room for it: with four shards, two
    /// writers want the same shard a quarter of the time (Benchmarks/RESULTS.md has what
    /// two writer threads gain).
    public static let defaultShards = 4
    /// The available heap space from which a new store gets `defaultShards` by default:
    /// below it, the 4 MiB a shard takes at least matters.
    public static let shardedHeapMinimum: UInt64 = 256 << 20

    public init(create: Bool = true, expectedKeys: Int = 0, initialDataSize: UInt64 = 4 << 20, reclaimBeforeGrowth: Double = 0.5,
                giveBackSpace: Bool = true, shards: Int? = nil) {
        self.create = create
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
    public var seconds: Double
}

