// Batched puts: group commit, one fence for the shards a batch touches.
import DaxHeap

extension KVStore {
    /// Puts `keys[i]` → `values[i]` for every `i` with group commit: records are made
    /// durable a segment's worth at a time, and the last group of every shard the batch
    /// touches shares one fence (their slots are replayable from the tail, like a single
    /// put's). Returns once all are durable. Later pairs win over earlier ones with the
    /// same key. Every key and value is checked before anything is written; on an error
    /// after that (the store full), some of the pairs may have been applied: in each
    /// shard, a prefix of that shard's pairs. Its scratch space (a hash and two words a
    /// pair) is temporary, on the stack for small batches: no allocation there.
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
                try withLocks(ofShards: involved) {
                    try commit(involved, order: UnsafeBufferPointer(order), ends: UnsafeBufferPointer(starts),
                               keys: keys, values: values, hashes: UnsafeBufferPointer(hashes))
                }
            }
        }
    }

    /// The locked part of a batched put: every involved shard appends its pairs, then
    /// every shard's last group is flushed, then one fence for them all with no retain or
    /// release in between (the shards reached unretained: see `withShard`), then each
    /// publishes its slots, also when a later shard failed (the records of those that
    /// appended are in their logs' tails already).
    private func commit(_ involved: UInt64, order: UnsafeBufferPointer<Int>, ends: UnsafeBufferPointer<Int>,
                        keys: UnsafeBufferPointer<UnsafeRawBufferPointer>, values: UnsafeBufferPointer<UnsafeRawBufferPointer>,
                        hashes: UnsafeBufferPointer<UInt64>) throws {
        var appended: UInt64 = 0
        var failure: (any Error)? = nil
        for s in Self.shardNumbers(involved) {
            let pairs = UnsafeBufferPointer(rebasing: order[(s == 0 ? 0 : ends[s - 1]) ..< ends[s]])
            do {
                try withShard(at: s) { try $0.appendBatch(pairs, keys: keys, values: values, hashes: hashes) }
                appended |= 1 << UInt64(s)
            } catch {
                failure = error  // that shard has nothing pending: see `appendBatch`
                break
            }
        }
        for s in Self.shardNumbers(appended) { try withShard(at: s) { try $0.flushForCommit() } }
        withShard(at: 0) { $0.dataArena.drain() }
        for s in Self.shardNumbers(appended) { try withShard(at: s) { try $0.publishPending() } }
        if let failure { throw failure }
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

    /// Runs `body` holding the writer locks of the shards whose bits `mask` sets, taken in
    /// increasing shard order (as every path that takes several does).
    func withLocks<R>(ofShards mask: UInt64, _ body: () throws -> R) throws -> R {
        guard mask != 0 else { return try body() }
        let first = mask.trailingZeroBitCount
        return try shards[first].lock.withLock { _ in try withLocks(ofShards: mask & (mask - 1), body) }
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
