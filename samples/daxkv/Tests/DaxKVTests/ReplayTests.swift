import DaxHeap
@testable import DaxKV
import DaxTestSupport
import Foundation
import Testing

/// A put or delete makes its record durable with one fence and leaves its slot store to
/// the next write's fence; a power loss in between loses the slot store, and open replays
/// the tail of the log. SIGKILL cannot lose a store (the page cache keeps it), so these
/// tests emulate the power loss: they copy the index arena's bytes before the operations
/// and put them back afterwards, as if none of those slot stores had reached the media.
/// (That loses more than a power loss can, which only loses the last write's slot: the
/// replay must cope with any number of them, as long as the tail segment holds them.)
@Suite("DaxKV replay of lost slot stores")
struct ReplayTests {
    static func indexBytes(_ heap: Heap, store: String = "kv") throws -> [UInt8] {
        let index = try heap.arena(named: "\(store).index")
        return try index.read(at: 0, count: Int(index.size))
    }

    /// Puts `bytes` back over the index arena and persists them (the emulated power loss).
    static func loseSlotStores(_ heap: Heap, restoring bytes: [UInt8], store: String = "kv") throws {
        let index = try heap.arena(named: "\(store).index")
        try index.memcpyPersist(at: 0, bytes)
    }

    @Test("a lost update, insert and delete are each replayed at open")
    func singleOperations() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap()
        var before: [UInt8]
        do {
            let store = try KVStore.open(heap: heap, options: .oneShard)
            try store.put(bytes("k"), bytes("v1"))
            try store.put(bytes("gone"), bytes("x"))
            before = try Self.indexBytes(heap)
            try store.put(bytes("k"), bytes("v2"))
        }
        try Self.loseSlotStores(heap, restoring: before)
        do {
            let store = try KVStore.open(heap: heap, options: .oneShard)
            #expect(store.recovery.recordsReplayed == 1)
            #expect(try store.get(bytes("k")) == bytes("v2"))
            #expect(store.count == 2)
            before = try Self.indexBytes(heap)
            try store.put(bytes("new"), bytes("n"))
        }
        try Self.loseSlotStores(heap, restoring: before)
        do {
            let store = try KVStore.open(heap: heap, options: .oneShard)
            #expect(try store.get(bytes("new")) == bytes("n"))
            #expect(store.count == 3)
            before = try Self.indexBytes(heap)
            #expect(try store.delete(bytes("gone")))
        }
        try Self.loseSlotStores(heap, restoring: before)
        let store = try KVStore.open(heap: heap, options: .oneShard)
        #expect(store.recovery.recordsReplayed == 1)
        #expect(try store.get(bytes("gone")) == nil)
        #expect(store.count == 2)
        #expect(try store.pairs().map { String(decoding: $0.key, as: UTF8.self) }.sorted() == ["k", "new"])
        // Nothing is left to replay once recovered.
        let again = try KVStore.open(heap: heap, options: .oneShard)
        #expect(again.recovery.recordsReplayed == 0)
    }

    /// Random puts, re-puts, deletes and batches on a few keys, all their slot stores
    /// lost at once: the replay, in log order, ends in exactly the model's state.
    @Test("any number of lost slot stores in the tail replay to the right state", arguments: [1, 2, 3])
    func randomOperations(seed: UInt64) throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap()
        var model: [[UInt8]: [UInt8]] = [:]
        var rng = SplitMix64(seed: seed)
        let before: [UInt8]
        do {
            let store = try KVStore.open(heap: heap, options: KVStoreOptions(expectedKeys: 1000).oneShard)
            for i in 0 ..< 20 { try store.put(key(i), stamped(i, version: 0, count: 40)); model[key(i)] = stamped(i, version: 0, count: 40) }
            before = try Self.indexBytes(heap)
            for step in 1 ... 300 {
                let k = key(Int(rng.next() % 30))
                switch rng.next() % 10 {
                case 0 ..< 5:
                    let v = stamped(step, version: step, count: Int(rng.next() % 200))
                    try store.put(k, v)
                    model[k] = v
                case 5 ..< 8:
                    #expect(try store.delete(k) == (model[k] != nil))
                    model[k] = nil
                default:
                    let pairs = (0 ..< 3).map { j in (key: key(Int(rng.next() % 30)), value: stamped(step, version: j, count: 16)) }
                    try store.put(batch: pairs)
                    for p in pairs { model[p.key] = p.value }
                }
            }
        }
        try Self.loseSlotStores(heap, restoring: before)
        let store = try KVStore.open(heap: heap, options: .oneShard)
        #expect(store.recovery.recordsReplayed > 0)
        #expect(store.count == model.count)
        for (k, v) in model { #expect(try store.get(k) == v) }
        for i in 0 ..< 30 where model[key(i)] == nil { #expect(try store.get(key(i)) == nil) }
        #expect(try store.pairs().count == model.count)
    }

    /// Right after a power loss a read-only open cannot replay: it says so, a read-write
    /// open recovers, and read-only opens work again. The CLI's `get` does this by itself.
    @Test("read-only opens ask for recovery; the CLI recovers by itself")
    func readOnlyAfterLoss() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let path = scratch.file("heap")
        do {
            let heap = try scratch.heap()
            let store = try KVStore.open(heap: heap, options: .oneShard)
            try store.put(bytes("a"), bytes("1"))
            let before = try Self.indexBytes(heap)
            try store.put(bytes("a"), bytes("2"))
            _ = store  // closed at the end of this scope
            try Self.loseSlotStores(heap, restoring: before)
        }
        do {
            let heap = try Heap.open(path: path, mode: .readOnly)
            #expect(throws: KVError.needsRecovery(store: "kv", records: 1)) { try KVStore.open(heap: heap, options: KVStoreOptions(create: false).oneShard) }
        }
        let run = try KVTool.run(["get", path, "a"])
        #expect(run.status == 0 && run.out == "2\n", "\(run)")
        let heap = try Heap.open(path: path, mode: .readOnly)
        #expect(try KVStore.open(heap: heap, options: KVStoreOptions(create: false).oneShard).get(bytes("a")) == bytes("2"))
    }

    /// A torn append (garbage after the last record) and a lost slot together: open
    /// replays up to the garbage, zeroes from the tail on (so nothing stale can ever be
    /// replayed later), and the store goes on.
    @Test("garbage past the tail is neither replayed nor left behind")
    func tornAppend() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap()
        let before: [UInt8]
        do {
            let store = try KVStore.open(heap: heap, options: .oneShard)
            try store.put(bytes("a"), bytes("1"))
            before = try Self.indexBytes(heap)
            try store.put(bytes("b"), bytes("2"))
        }
        try Self.loseSlotStores(heap, restoring: before)
        // A half-written record after "b": a valid-looking header whose checksum fails.
        let data = try heap.arena(named: "kv.data")
        let end = try #require(try findInArena(data, bytes("b2"))) + 8  // "b" + "2", padded to 8
        let garbage: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8, 1, 0, 0, 0, 3, 0, 0, 0] + bytes("zzzz")
        try data.memcpyPersist(at: end, garbage)
        do {
            let store = try KVStore.open(heap: heap, options: .oneShard)
            #expect(store.recovery.recordsReplayed == 1)
            #expect(try store.get(bytes("b")) == bytes("2"))
            #expect(try data.read(at: end, count: garbage.count) == [UInt8](repeating: 0, count: garbage.count))
            try store.put(bytes("c"), bytes("3"))
        }
        let store = try KVStore.open(heap: heap, options: .oneShard)
        #expect(try store.pairs().count == 3)
    }

    /// A version 1 store (every slot fenced, reused segments not zeroed) may hold a stale
    /// but valid record past its tail. Open upgrades it without replaying anything, and
    /// zeroes past the tail so that later replays cannot meet the stale record.
    @Test("a version 1 store is upgraded without replaying stale records")
    func upgradeFromVersion1() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap()
        let recordEnd: UInt64
        do {
            let store = try KVStore.open(heap: heap, options: .oneShard)
            try store.put(bytes("a"), bytes("new"))
            recordEnd = try #require(try findInArena(heap.arena(named: "kv.data"), bytes("anew"))) + 8
        }
        let data = try heap.arena(named: "kv.data"), index = try heap.arena(named: "kv.index")
        // A stale, valid record of "a" after the tail, as a reused v1 segment may hold.
        let stale: [UInt8] = try {
            let other = try scratch.heap("other")
            let s = try KVStore.open(heap: other, options: .oneShard)
            try s.put(bytes("a"), bytes("old"))
            let d = try other.arena(named: "kv.data")
            return try d.read(at: try #require(try findInArena(d, bytes("aold"))) - 16, count: 24)
        }()
        try data.memcpyPersist(at: recordEnd, stale)
        try data.memcpyPersist(at: Format.versionOffset, [1, 0, 0, 0, 0, 0, 0, 0])
        try index.memcpyPersist(at: Format.versionOffset, [1, 0, 0, 0, 0, 0, 0, 0])
        let store = try KVStore.open(heap: heap, options: .oneShard)
        #expect(try store.get(bytes("a")) == bytes("new"))
        #expect(try data.read(at: recordEnd, count: 24) == [UInt8](repeating: 0, count: 24))
        #expect(try data.read(at: Format.versionOffset, count: 1) == [UInt8(Format.version)])
        #expect(try index.read(at: Format.versionOffset, count: 1) == [UInt8(Format.version)])
    }

    /// A store whose index arena is gone starts afresh on the data arena it finds; the
    /// records that arena still holds must not come back through the tail replay.
    @Test("a store started afresh on an old data arena replays none of its records")
    func restartOnOldDataArena() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap()
        do {
            let store = try KVStore.open(heap: heap, options: .oneShard)
            try store.put(bytes("a"), bytes("1"))
            try store.put(bytes("b"), bytes("2"))
        }
        try heap.destroyArena(named: "kv.index")
        do {
            let store = try KVStore.open(heap: heap, options: .oneShard)
            #expect(store.count == 0)
            try store.put(bytes("c"), bytes("3"))  // the size of "a"'s record: "b"'s follows it
        }
        let store = try KVStore.open(heap: heap, options: .oneShard)
        #expect(store.recovery.recordsReplayed == 0)
        #expect(try store.pairs().map { String(decoding: $0.key, as: UTF8.self) } == ["c"])
    }
}
