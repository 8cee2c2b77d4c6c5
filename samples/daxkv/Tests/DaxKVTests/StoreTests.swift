import DaxHeap
@testable import DaxKV
import Foundation
import Testing

@Suite("DaxKV store")
struct StoreTests {
    @Test("round trips: empty and 1 MiB values, 1- and 1024-byte keys")
    func roundTrips() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let big = stamped(7, version: 1, count: 1 << 20)
        let longKey = [UInt8](repeating: 0x41, count: 1024)
        do {
            let store = try KVStore.open(heap: try scratch.heap())
            try store.put(bytes("empty"), [])
            try store.put([0x00], bytes("one byte key"))
            try store.put(longKey, bytes("long key"))
            try store.put(bytes("big"), big)
            #expect(try store.get(bytes("empty")) == [])
            #expect(try store.get([0x00]) == bytes("one byte key"))
            #expect(try store.get(longKey) == bytes("long key"))
            #expect(try store.get(bytes("big")) == big)
            #expect(try store.get(bytes("absent")) == nil)
            #expect(store.count == 4)
            // A buffer too small: the length comes back, nothing is copied.
            var small = [UInt8](repeating: 0, count: 4)
            let length = try bytes("big").withUnsafeBytes { k in try small.withUnsafeMutableBytes { try store.get(k, into: $0) } }
            #expect(length == 1 << 20)
        }
        // Reopen: everything is still there.
        let store = try KVStore.open(heap: try Heap.open(path: scratch.file("heap")))
        #expect(store.count == 4)
        #expect(try store.get(bytes("big")) == big)
        #expect(try store.get(longKey) == bytes("long key"))
        #expect(try store.get(bytes("empty")) == [])
    }

    @Test("invalid sizes are refused and change nothing")
    func invalidSizes() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let store = try KVStore.open(heap: try scratch.heap())
        #expect(throws: KVError.invalidKeySize(0)) { try store.put([], bytes("v")) }
        #expect(throws: KVError.invalidKeySize(1025)) { try store.put([UInt8](repeating: 1, count: 1025), bytes("v")) }
        #expect(throws: KVError.invalidValueSize((1 << 20) + 1)) { try store.put(bytes("k"), [UInt8](repeating: 1, count: (1 << 20) + 1)) }
        #expect(throws: KVError.invalidKeySize(0)) { try store.get([]) }
        #expect(throws: KVError.invalidKeySize(1025)) { try store.delete([UInt8](repeating: 1, count: 1025)) }
        #expect(throws: KVError.invalidKeySize(0)) { try store.put(batch: [(key: [], value: [])]) }
        #expect(store.count == 0)
        #expect(throws: KVError.invalidStoreName("")) { try KVStore.open(heap: store.heap, name: "") }
    }

    @Test("replace, delete, count and iteration; survives reopen")
    func replaceDeleteIterate() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        var expected: [[UInt8]: [UInt8]] = [:]
        do {
            let store = try KVStore.open(heap: try scratch.heap(), name: "s1")
            for i in 0 ..< 2000 {
                try store.put(key(i), stamped(i, version: 0, count: i % 300))
                expected[key(i)] = stamped(i, version: 0, count: i % 300)
            }
            for i in stride(from: 0, to: 2000, by: 3) {
                try store.put(key(i), stamped(i, version: 1, count: 50))
                expected[key(i)] = stamped(i, version: 1, count: 50)
            }
            for i in stride(from: 1, to: 2000, by: 5) {
                #expect(try store.delete(key(i)))
                expected[key(i)] = nil
            }
            #expect(try store.delete(bytes("never there")) == false)
            #expect(try store.delete(key(1)) == false)
            #expect(store.count == expected.count)
            // Deleted keys can come back.
            try store.put(key(1), bytes("back"))
            expected[key(1)] = bytes("back")
            var seen: [[UInt8]: [UInt8]] = [:]
            for (k, v) in try store.pairs() {
                #expect(seen[k] == nil, "a key came twice")
                seen[k] = v
            }
            #expect(seen == expected)
            // A second store on the same heap is independent.
            let other = try KVStore.open(heap: store.heap, name: "s2")
            try other.put(key(1), bytes("other"))
            #expect(try store.get(key(1)) == bytes("back"))
            #expect(other.count == 1)
        }
        let heap = try Heap.open(path: scratch.file("heap"))
        let store = try KVStore.open(heap: heap, name: "s1")
        #expect(store.count == expected.count)
        for (k, v) in expected { #expect(try store.get(k) == v) }
        #expect(try store.get(key(6)) == nil)
        #expect(store.recovery.slotsScanned > 0)
        #expect(try KVStore.open(heap: heap, name: "s2").get(key(1)) == bytes("other"))
        #expect(throws: KVError.noSuchStore("s3")) { try KVStore.open(heap: heap, name: "s3", options: KVStoreOptions(create: false)) }
    }

    @Test("batches: later pairs win, all durable on return")
    func batches() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        do {
            let store = try KVStore.open(heap: try scratch.heap())
            var batch: [(key: [UInt8], value: [UInt8])] = []
            for i in 0 ..< 5000 { batch.append((key(i % 3000), stamped(i % 3000, version: i / 3000, count: 700))) }
            try store.put(batch: batch)
            #expect(store.count == 3000)
            for i in 0 ..< 3000 { #expect(try store.get(key(i)) == stamped(i, version: i < 2000 ? 1 : 0, count: 700)) }
        }
        let store = try KVStore.open(heap: try Heap.open(path: scratch.file("heap")))
        #expect(store.count == 3000)
        #expect(try store.get(key(10)) == stamped(10, version: 1, count: 700))
    }

    @Test("every error says what is wrong in one line")
    func errorsAreOneLine() {
        let all: [KVError] = [
            .invalidKeySize(0), .invalidValueSize(2 << 20),
            .storeFull(store: "kv", needed: 4096, detail: "the heap has no free space"),
            .damagedRecord(store: "kv", offset: 4096, reason: "checksum mismatch"),
            .notAStore(store: "kv", reason: "bad magic"), .invalidStoreName("a\nb"),
            .noSuchStore("kv"), .needsRecovery(store: "kv", records: 3),
            .heap(.unknownArena("kv.data")),
        ]
        for error in all {
            let text = error.description
            #expect(!text.isEmpty && !text.contains("\n"), "\(text)")
        }
    }
}
