// Batched puts: group commit, one fence for each shard a batch reaches.
import DaxHeap

extension KVStore {
    /// Puts `keys[i]` → `values[i]` for every `i` with group commit: the pairs are split by
    /// shard, and each shard's part is appended and made durable under that shard's lock
    /// alone, a segment's worth of records to a fence (their slots are replayable from the
    /// tail, like a single put's). So a batch costs one fence for each shard it reaches,
    /// and other writers, batching or not, run in the shards it is not in. Returns once
    /// all are durable. Later pairs win over earlier ones with the same key. Every key and
    /// value is checked before anything is written; on an error after that (the store
    /// full), some of the pairs may have been applied: in each shard, a prefix of that
    /// shard's pairs. Its scratch space (a hash and two words a pair) is temporary, on the
    /// stack for small batches: no allocation there.
    public func put(batch keys: UnsafeBufferPointer<UnsafeRawBufferPointer>, values: UnsafeBufferPointer<UnsafeRawBufferPointer>) throws {
        guard values.count == keys.count else { throw KVError.batchPutMismatch(keys: keys.count, values: values.count) }
        for i in keys.indices {
            guard (1 ... Format.maxKeySize).contains(keys[i].count) else { throw KVError.invalidKeySize(keys[i].count) }
            guard values[i].count <= Format.maxValueSize else { throw KVError.invalidValueSize(values[i].count) }
        }
        guard !keys.isEmpty else { return }
        try withUnsafeTemporaryAllocation(of: UInt64.self, capacity: keys.count) { hashes in
            try withUnsafeTemporaryAllocation(of: Int.self, capacity: keys.count + shards.count + 1) { scratch in
                for i in keys.indices { hashes[i] = hash64(keys[i], seed: Seeds.key) }
                // The pairs' indices sorted by shard, each shard's in batch order (a
                // counting sort): `order[starts[s] ..< starts[s + 1]]` are shard s's.
                let order = UnsafeMutableBufferPointer(rebasing: scratch[0 ..< keys.count])
                let starts = UnsafeMutableBufferPointer(rebasing: scratch[keys.count...])
                starts.update(repeating: 0)
                for i in keys.indices { starts[shardIndex(of: hashes[i]) + 1] += 1 }
                for s in 0 ..< shards.count { starts[s + 1] += starts[s] }
                var involved: UInt64 = 0
                for i in keys.indices {
                    let s = shardIndex(of: hashes[i])
                    order[starts[s]] = i
                    starts[s] += 1
                    involved |= 1 << UInt64(s)
                }
                // `starts[s]` is now where shard s's pairs end, and `starts[s - 1]` where they begin.
                // One shard at a time, each under its own lock: holding every lock the batch
                // needs (about 10 of 16 shards for 16 random keys) for one shared fence made
                // two batching threads wait for each other, slower together than one alone
                // (0.85 M against 1.55 M pairs/s). A fence per shard costs one batching
                // thread about 5 %; two now batch 1.9x faster (Benchmarks/RESULTS.md).
                for s in Self.shardNumbers(involved) {
                    let pairs = UnsafeBufferPointer(rebasing: order[(s == 0 ? 0 : starts[s - 1]) ..< starts[s]])
                    try withShard(at: s) { try $0.putBatch(pairs, keys: keys, values: values, hashes: UnsafeBufferPointer(hashes)) }
                }
            }
        }
    }

    /// The pairs as arrays: copied into one buffer for the keys and one for the values,
    /// then put as ``put(batch:values:)`` puts them.
    public func put<C: Collection>(batch pairs: C) throws where C.Element == (key: [UInt8], value: [UInt8]) {
        let count = pairs.count
        let keyBytes = pairs.reduce(0) { $0 + $1.key.count }, valueBytes = pairs.reduce(0) { $0 + $1.value.count }
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, keyBytes + valueBytes), alignment: 8)
        let buffers = UnsafeMutableBufferPointer<UnsafeRawBufferPointer>.allocate(capacity: 2 * count)
        defer { bytes.deallocate(); buffers.deallocate() }
        var at = 0
        func copy(_ field: [UInt8], to slot: Int) {
            let slice = UnsafeMutableRawBufferPointer(rebasing: bytes[at ..< at + field.count])
            slice.copyBytes(from: field)
            buffers[slot] = UnsafeRawBufferPointer(slice)
            at += field.count
        }
        for (i, pair) in pairs.enumerated() {
            copy(pair.key, to: i)
            copy(pair.value, to: count + i)
        }
        try put(batch: UnsafeBufferPointer(rebasing: buffers[0 ..< count]), values: UnsafeBufferPointer(rebasing: buffers[count...]))
    }

    /// The shard numbers whose bits `mask` sets, in increasing order.
    static func shardNumbers(_ mask: UInt64) -> some Sequence<Int> {
        sequence(state: mask) { (rest: inout UInt64) -> Int? in
            guard rest != 0 else { return nil }
            defer { rest &= rest - 1 }
            return rest.trailingZeroBitCount
        }
    }
}
