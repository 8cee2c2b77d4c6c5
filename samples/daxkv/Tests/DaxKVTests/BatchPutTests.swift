import DaxHeap
@testable import DaxKV
import DaxTestSupport
import Foundation
import Testing

/// Calls `body` with `pairs` as the buffers `put(batch:values:)` takes.
func withBuffers<R>(_ pairs: [(key: [UInt8], value: [UInt8])],
                    _ body: (UnsafeBufferPointer<UnsafeRawBufferPointer>, UnsafeBufferPointer<UnsafeRawBufferPointer>) throws -> R) rethrows -> R {
    let storage = pairs.map { (UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, $0.key.count), alignment: 1),
                               UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, $0.value.count), alignment: 1)) }
    defer { for (k, v) in storage { k.deallocate(); v.deallocate() } }
    let keys = zip(pairs, storage).map { pair, room in
        room.0.copyBytes(from: pair.key)
        return UnsafeRawBufferPointer(rebasing: room.0[0 ..< pair.key.count])
    }
    let values = zip(pairs, storage).map { pair, room in
        room.1.copyBytes(from: pair.value)
        return UnsafeRawBufferPointer(rebasing: room.1[0 ..< pair.value.count])
    }
    return try keys.withUnsafeBufferPointer { k in try values.withUnsafeBufferPointer { v in try body(k, v) } }
}

@Suite("DaxKV batched puts")
struct BatchPutTests {
    /// Random batches (sizes 0 to 60, keys repeated within a batch, empty values and
    /// values of 3,000 bytes) through the buffer form on 2 shards leave the store as
    /// single puts in the same order would, across segment switches, growth and index
    /// rebuilds, and after a reopen.
    @Test("a batch of buffers does what the same single puts do")
    func agreesWithSinglePuts() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: 96 << 20)
        var model: [[UInt8]: [UInt8]] = [:]
        var random = SplitMix64(seed: 0xB47C)
        do {
            let store = try KVStore.open(heap: heap, options: KVStoreOptions(initialDataSize: 2 << 20, shards: 2))
            for round in 0 ..< 300 {
                let pairs = (0 ..< random.below(61)).map { _ in
                    let k = random.below(20_000)
                    return (key: key(k), value: stamped(k, version: round, count: [0, 9, 128, 3000][random.below(4)]))
                }
                try withBuffers(pairs) { k, v in try store.put(batch: k, values: v) }
                for (k, v) in pairs { model[k] = v }
                #expect(store.count == model.count, "round \(round)")
            }
            #expect(store.indexRebuilds > 0 && store.dataGrowths > 0, "the batches should rebuild the index and grow the log")
            for (k, v) in model { #expect(try store.get(k) == v) }
            try withBuffers([]) { k, v in try store.put(batch: k, values: v) }  // nothing to do
            #expect(store.count == model.count)
        }
        let reopened = try KVStore.open(heap: heap, options: KVStoreOptions(create: false))
        #expect(reopened.count == model.count)
        for (k, v) in model { #expect(try reopened.get(k) == v) }
    }

    /// Bad batches are refused with a one-line error before anything is written: counts
    /// that differ, a key too long or empty, a value too long (even at the batch's end).
    @Test("a bad batch changes nothing")
    func badBatches() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let store = try KVStore.open(heap: try scratch.heap(), options: KVStoreOptions(shards: 4))
        try store.put(bytes("kept"), bytes("value"))
        let good = (0 ..< 8).map { (key: key($0), value: bytes("v\($0)")) }
        withBuffers(good) { k, v in
            #expect(throws: KVError.self) { try store.put(batch: k, values: UnsafeBufferPointer(rebasing: v[0 ..< 7])) }
            do { try store.put(batch: k, values: UnsafeBufferPointer(rebasing: v[0 ..< 7])) } catch {
                #expect("\(error)" == "a batched put needs one value per key; it was given 8 keys and 7 values")
            }
        }
        for (position, bad) in [(3, (key: [UInt8](), value: bytes("x"))),
                                (7, (key: [UInt8](repeating: 1, count: 1025), value: bytes("x"))),
                                (7, (key: bytes("big"), value: [UInt8](repeating: 2, count: (1 << 20) + 1)))] {
            var pairs = good
            pairs[position] = bad
            #expect(throws: KVError.self) { try withBuffers(pairs) { k, v in try store.put(batch: k, values: v) } }
            #expect(throws: KVError.self) { try store.put(batch: pairs) }
        }
        #expect(store.count == 1)
        #expect(try store.pairs().map(\.key) == [bytes("kept")])
    }
}
