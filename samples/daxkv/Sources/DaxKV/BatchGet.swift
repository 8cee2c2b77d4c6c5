// Batched gets: the misses of many keys overlapped (as RocksDB's MultiGet).
import DaxHeap
import Synchronization

extension KVStore {
    /// Keys a batched get looks up together. 16 misses in flight is about what a core
    /// sustains (its miss buffers); more only spreads the batch's lines over a longer time.
    static let batchWidth = 16

    /// Looks up `keys[i]` for every `i`, copying its value into `buffers[i]` and setting
    /// `lengths[i]` to its length, or nil if the key is absent. A value longer than its
    /// buffer is not copied, and its length is set (as the single `get(_:into:)` does).
    ///
    /// What it is for: a get is two dependent cache misses (the key's bucket, then its
    /// record), each one a full memory latency. A batch looks the keys up 16 at a time in
    /// three passes: it requests every key's bucket, then (the buckets arriving together)
    /// every key's record, then reads the records, so that each pass waits for one
    /// latency, not 16. Each value is as a single get would return it at some instant
    /// during the call, and checked against its record's checksum: a damaged record throws
    /// ``KVError/damagedRecord`` (the other keys' results are then unspecified). No lock,
    /// no fence, no allocation.
    public func get(batch keys: UnsafeBufferPointer<UnsafeRawBufferPointer>,
                    into buffers: UnsafeBufferPointer<UnsafeMutableRawBufferPointer>,
                    lengths: UnsafeMutableBufferPointer<Int?>) throws {
        guard buffers.count == keys.count, lengths.count == keys.count else {
            throw KVError.batchMismatch(keys: keys.count, buffers: buffers.count, lengths: lengths.count)
        }
        for key in keys where !(1 ... Format.maxKeySize).contains(key.count) { throw KVError.invalidKeySize(key.count) }
        try withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 3 * Self.batchWidth) { scratch in
            let hashes = scratch.baseAddress!, slots = hashes + Self.batchWidth, reuses = slots + Self.batchWidth
            var start = 0
            while start < keys.count {
                let group = start ..< min(keys.count, start + Self.batchWidth)
                try getGroup(keys, buffers, lengths, group, hashes: hashes, slots: slots, reuses: reuses)
                start = group.upperBound
            }
        }
    }

    /// The values of `keys` (nil for those absent), looked up in batches.
    public func get(batch keys: [[UInt8]]) throws -> [[UInt8]?] {
        // The keys copied into one allocation, room for values up to `guess` bytes in
        // another; a longer value is fetched again at its size.
        let guess = 256
        let keyBytes = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, keys.reduce(0) { $0 + $1.count }), alignment: 8)
        let valueBytes = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, keys.count * guess), alignment: 8)
        let keyBuffers = UnsafeMutableBufferPointer<UnsafeRawBufferPointer>.allocate(capacity: keys.count)
        let valueBuffers = UnsafeMutableBufferPointer<UnsafeMutableRawBufferPointer>.allocate(capacity: keys.count)
        let lengths = UnsafeMutableBufferPointer<Int?>.allocate(capacity: keys.count)
        defer { keyBytes.deallocate(); valueBytes.deallocate(); keyBuffers.deallocate(); valueBuffers.deallocate(); lengths.deallocate() }
        var at = 0
        for (i, key) in keys.enumerated() {
            let slice = UnsafeMutableRawBufferPointer(rebasing: keyBytes[at ..< at + key.count])
            slice.copyBytes(from: key)
            keyBuffers[i] = UnsafeRawBufferPointer(slice)
            valueBuffers[i] = UnsafeMutableRawBufferPointer(rebasing: valueBytes[i * guess ..< (i + 1) * guess])
            lengths[i] = nil
            at += key.count
        }
        try get(batch: UnsafeBufferPointer(keyBuffers), into: UnsafeBufferPointer(valueBuffers), lengths: lengths)
        return try keys.indices.map { i in
            guard let length = lengths[i] else { return nil }
            return length <= guess ? Array(valueBuffers[i][..<length]) : try get(keys[i])
        }
    }

    /// One group of a batch (at most `batchWidth` keys), in three passes: buckets
    /// requested, records requested, records read, each key in its own shard. A segment
    /// reuse during the group in the shard of any of its keys (see `Shard.spaceReused`)
    /// redoes the whole group.
    @inline(__always)
    func getGroup(_ keys: UnsafeBufferPointer<UnsafeRawBufferPointer>, _ buffers: UnsafeBufferPointer<UnsafeMutableRawBufferPointer>,
                  _ lengths: UnsafeMutableBufferPointer<Int?>, _ group: Range<Int>,
                  hashes: UnsafeMutablePointer<UInt64>, slots: UnsafeMutablePointer<UInt64>, reuses: UnsafeMutablePointer<UInt64>) throws {
        for (j, i) in group.enumerated() { hashes[j] = hash64(keys[i], seed: Seeds.key) }
        while true {
            // 1. Every key's bucket requested before any is waited for. Each shard's reuse
            // count is loaded before its table descriptor: see `Shard.get`. (Later passes
            // load the descriptor again; any table loaded after the count will do.)
            for j in 0 ..< group.count {
                withShard(of: hashes[j]) { shard in
                    reuses[j] = shard.spaceReuses.load(ordering: .acquiring)
                    let table = shard.currentTable()
                    shard.requestBucket(table, hash: hashes[j])
                }
            }
            // 2. Every key's first candidate slot (the buckets arrive together); its record requested.
            for j in 0 ..< group.count {
                withShard(of: hashes[j]) { shard in
                    let slot = shard.firstCandidate(shard.currentTable(), hash: hashes[j])
                    slots[j] = slot
                    if Format.isLive(slot) {
                        let base = shard.record(Format.slotOffset(slot))
                        requestSmallRecord(at: base)
                    }
                }
            }
            // 3. The records, now arriving together.
            var damage: (offset: UInt64, reason: String)? = nil
            for (j, i) in group.enumerated() {
                let result = withShard(of: hashes[j]) { shard in
                    guard Format.isLive(slots[j]) else { return Shard.Lookup.absent }
                    // Another key with the same tag (rare): the whole probe, as a single get.
                    return shard.readRecord(at: Format.slotOffset(slots[j]), key: keys[i], buffer: buffers[i])
                        ?? shard.lookup(shard.currentTable(), hash: hashes[j], key: keys[i], buffer: buffers[i])
                }
                switch result {
                case .absent: lengths[i] = nil
                case .found(let length): lengths[i] = length
                case .damaged(let offset, let reason): if damage == nil { damage = (offset, reason) }
                }
            }
            if (0 ..< group.count).contains(where: { j in withShard(of: hashes[j]) { $0.spaceReused(since: reuses[j]) } }) { continue }
            if let damage { throw KVError.damagedRecord(store: name, offset: damage.offset, reason: damage.reason) }
            return
        }
    }
}
