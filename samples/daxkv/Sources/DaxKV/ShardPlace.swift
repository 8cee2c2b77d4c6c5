// Which shard of a store a pair of arenas holds, and what they are called.

/// Shard `index` of a store of `count` shards. Keys are split between shards by their
/// hash (`KVStore.shardIndex(of:)`); each shard is a log and an index of its own, with its own
/// writer lock. Recorded in each shard's index header (`Format.shardOffset`), so that an
/// arena of another store, or of an older incarnation of this one, is never taken for a
/// shard.
struct ShardPlace: Equatable {
    let index: Int
    let count: Int

    /// The most shards a store may have.
    static let maxCount = 64

    /// Whether a store may have `count` shards: a power of two from 1 to `maxCount` (a
    /// key's shard is bits of its hash).
    static func isValidCount(_ count: Int) -> Bool {
        count >= 1 && count <= maxCount && count & (count - 1) == 0
    }

    enum Kind: String { case index, data }

    /// Shard 0 keeps the names of a store before shards, `NAME.index` and `NAME.data`
    /// (so such a store is a store of one shard); shard N > 0 is `NAME.index.N`, `NAME.data.N`.
    func arenaName(_ store: String, _ kind: Kind) -> String {
        index == 0 ? "\(store).\(kind.rawValue)" : "\(store).\(kind.rawValue).\(index)"
    }

    /// The header word: index << 32 | count.
    var word: UInt64 { UInt64(index) << 32 | UInt64(count) }

    init(index: Int, count: Int) {
        self.index = index
        self.count = count
    }

    /// Decodes a header word; 0, what a store written before shards holds, is shard 0 of 1.
    init(word: UInt64) {
        if word == 0 {
            self.init(index: 0, count: 1)
        } else {
            self.init(index: Int(word >> 32), count: Int(word & 0xFFFF_FFFF))
        }
    }

    /// This shard's data arena size at creation: its share of the store's, in whole 2 MiB
    /// segments, at least one.
    func initialDataSize(_ storeSize: UInt64) -> UInt64 {
        max(Format.segmentSize, roundUp2M(storeSize / UInt64(count)))
    }
}
