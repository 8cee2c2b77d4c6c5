import DaxHeap
@testable import DaxKV
import DaxTestSupport
import Foundation
import Testing

@Suite("DaxKV against a model")
struct ModelTests {
    /// Random puts (sizes from 0 to 200 KiB), deletes and batches on a small fixed heap,
    /// reopening now and then, checked against a dictionary after every step's reopen, and
    /// the shard's bookkeeping against its index every 100 operations (`checkInvariants`).
    @Test("random operations with reopens match a dictionary")
    func randomOperations() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        var model: [[UInt8]: [UInt8]] = [:]
        var generator = SplitMix64(seed: 0xDA7A)
        _ = try scratch.heap(size: 20 << 20)
        var fullErrors = 0
        var compactions = 0
        for epoch in 0 ..< 8 {
            let store = try KVStore.open(heap: try Heap.open(path: scratch.file("heap")))
            #expect(store.count == model.count, "epoch \(epoch)")
            for step in 0 ..< 1500 {
                if step % 100 == 0 { store.checkInvariants("epoch \(epoch), step \(step)") }
                let k = key(Int(generator.next() % 300))
                switch generator.next() % 10 {
                case 0 ..< 6:
                    let size = generator.next() % 8 == 0 ? Int(generator.next() % 200_000) : Int(generator.next() % 3000)
                    let v = stamped(Int(generator.next() % 1000), version: epoch, count: size)
                    do {
                        try store.put(k, v)
                        model[k] = v
                    } catch KVError.storeFull {
                        fullErrors += 1
                    }
                case 6 ..< 8:
                    #expect(try store.delete(k) == (model[k] != nil))
                    model[k] = nil
                case 8:
                    var batch: [(key: [UInt8], value: [UInt8])] = []
                    for _ in 0 ..< Int(generator.next() % 50) {
                        batch.append((key(Int(generator.next() % 300)), stamped(Int(generator.next() % 1000), version: epoch, count: Int(generator.next() % 2000))))
                    }
                    try store.put(batch: batch)
                    for (bk, bv) in batch { model[bk] = bv }
                default:
                    #expect(try store.get(k) == model[k])
                }
            }
            #expect(store.count == model.count)
            store.checkInvariants("end of epoch \(epoch)")
            compactions += store.compactions
            var seen = 0
            try store.forEach { k, v in
                seen += 1
                #expect(model[Array(k)] == Array(v))
            }
            #expect(seen == model.count)
        }
        let store = try KVStore.open(heap: try Heap.open(path: scratch.file("heap")))
        for (k, v) in model { #expect(try store.get(k) == v) }
        // Live data stays well under the heap, so it should never have been full.
        #expect(fullErrors == 0)
        #expect(compactions > 0)
    }
}
