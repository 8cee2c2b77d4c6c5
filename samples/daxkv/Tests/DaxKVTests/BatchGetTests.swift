import DaxHeap
@testable import DaxKV
import DaxTestSupport
import Foundation
import Testing

@Suite("DaxKV batched gets")
struct BatchGetTests {
    /// Batches of every size from 1 to 40 (groups of 16 and a remainder), of present,
    /// absent and deleted keys in random order, agree with single gets, also after an
    /// index rebuild and with values longer than the convenience form's first guess.
    @Test("a batch returns what single gets return")
    func agreesWithSingleGets() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let store = try KVStore.open(heap: try scratch.heap())
        var random = SplitMix64(seed: 0xBA7C)
        for i in 0 ..< 4000 { try store.put(key(i), stamped(i, version: 1, count: [0, 7, 128, 300, 5000][i % 5])) }
        for i in stride(from: 0, to: 4000, by: 7) { try store.delete(key(i)) }
        #expect(store.indexRebuilds > 0)
        for size in 1 ... 40 {
            let keys = (0 ..< size).map { _ in key(random.below(4500)) }  // 4000 ..< 4500 never put
            let batch = try store.get(batch: keys)
            #expect(batch.count == size)
            for (j, k) in keys.enumerated() { #expect(batch[j] == (try store.get(k)), "batch of \(size), key \(j)") }
        }
        #expect(try store.get(batch: []) == [])
    }

    /// The allocation-free form: a buffer too small for its value gets the length and no
    /// bytes (as a single get), the others their values.
    @Test("a value longer than its buffer gets its length only")
    func shortBuffer() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let store = try KVStore.open(heap: try scratch.heap())
        try store.put(bytes("long"), stamped(1, version: 1, count: 100))
        try store.put(bytes("short"), bytes("abc"))
        let keys = [bytes("long"), bytes("short"), bytes("absent")]
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: 3 * 16, alignment: 8)
        defer { storage.deallocate() }
        storage.initializeMemory(as: UInt8.self, repeating: 0xEE)
        let buffers = (0 ..< 3).map { UnsafeMutableRawBufferPointer(rebasing: storage[16 * $0 ..< 16 * ($0 + 1)]) }
        var lengths: [Int?] = [0, 0, 0]
        try keys[0].withUnsafeBytes { k0 in
            try keys[1].withUnsafeBytes { k1 in
                try keys[2].withUnsafeBytes { k2 in
                    try [k0, k1, k2].withUnsafeBufferPointer { k in
                        try buffers.withUnsafeBufferPointer { b in
                            try lengths.withUnsafeMutableBufferPointer { try store.get(batch: k, into: b, lengths: $0) }
                        }
                    }
                }
            }
        }
        #expect(lengths == [100, 3, nil])
        #expect(Array(buffers[0]) == [UInt8](repeating: 0xEE, count: 16))
        #expect(Array(buffers[1].prefix(3)) == bytes("abc"))
    }

    @Test("bad batches are refused with one-line errors")
    func badBatches() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let store = try KVStore.open(heap: try scratch.heap())
        #expect(throws: KVError.invalidKeySize(0)) { try store.get(batch: [bytes("a"), []]) }
        #expect(throws: KVError.invalidKeySize(1025)) { try store.get(batch: [[UInt8](repeating: 1, count: 1025)]) }
        let key = bytes("k")
        key.withUnsafeBytes { k in
            [k, k].withUnsafeBufferPointer { keys in
                let error = #expect(throws: KVError.self) {
                    var lengths: [Int?] = [nil, nil]
                    try lengths.withUnsafeMutableBufferPointer { try store.get(batch: keys, into: UnsafeBufferPointer(start: nil, count: 0), lengths: $0) }
                }
                #expect(error == .batchMismatch(keys: 2, buffers: 0, lengths: 2))
                #expect(error.map { "\($0)" }?.contains("one buffer and one length per key") == true)
            }
        }
    }
}
