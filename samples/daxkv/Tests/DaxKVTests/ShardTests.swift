import DaxHeap
@testable import DaxKV
import DaxTestSupport
import Foundation
import Testing

@Suite("DaxKV shards")
struct ShardTests {
    /// Two writer threads (and the main thread's deletes) on a store of four shards; after
    /// a reopen, which keeps the count it was created with whatever the options say,
    /// every pair is where a dictionary says.
    @Test("a store of four shards keeps what two writers put, across reopens")
    func twoWritersAndReopen() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let keys = 3000
        do {
            let store = try KVStore.open(heap: try scratch.heap(), options: KVStoreOptions(shards: 4))
            #expect(store.shardCount == 4)
            let failures = Locked<[String]>([])
            let writers = DispatchGroup()
            for t in 0 ..< 2 {
                writers.enter()
                // Unowned: a thread's closure is released after its `leave()`, and one still
                // holding the store kept the heap open when the reopen below came (seen once,
                // under load: "in use by another process").
                Thread.detachNewThread { [unowned store] in
                    defer { writers.leave() }
                    do {
                        for i in stride(from: t, to: keys, by: 2) { try store.put(key(i), stamped(i, version: 1, count: 100 + i % 300)) }
                        for i in stride(from: t, to: keys, by: 6) { try store.put(key(i), stamped(i, version: 2, count: 64)) }
                    } catch {
                        failures.withLock { $0.append("writer \(t): \(error)") }
                    }
                }
            }
            writers.wait()
            #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
            for i in stride(from: 0, to: keys, by: 5) { #expect(try store.delete(key(i))) }
            #expect(store.count == keys - (keys + 4) / 5)
            let perShard = store.shards.map(\.count)
            #expect(perShard.allSatisfy { $0 > keys / 8 }, "the keys should spread over the shards: \(perShard)")
        }
        let heap = try Heap.open(path: scratch.file("heap"))
        for i in 1 ..< 4 {
            #expect(try heap.findArena(named: "kv.index.\(i)") != nil && heap.findArena(named: "kv.data.\(i)") != nil)
        }
        let store = try KVStore.open(heap: heap, options: .oneShard)
        #expect(store.shardCount == 4, "an existing store keeps its shard count")
        #expect(store.count == keys - (keys + 4) / 5)
        for i in 0 ..< keys {
            let want: [UInt8]? = i % 5 == 0 ? nil : i % 6 < 2 ? stamped(i, version: 2, count: 64) : stamped(i, version: 1, count: 100 + i % 300)
            #expect(try store.get(key(i)) == want, "key \(i)")
        }
        #expect(try store.pairs().count == store.count)
        let batch = try store.get(batch: (0 ..< 40).map { key($0) })
        #expect(batch == (0 ..< 40).map { i in i % 5 == 0 ? nil : try? store.get(key(i)) })
    }

    @Test("the default shard count follows the heap's room, and bad counts and names are refused")
    func countsAndNames() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        #expect(try KVStore.open(heap: try scratch.heap("small", size: 64 << 20)).shardCount == 1)
        let heap = try scratch.heap("large", size: 512 << 20)
        let available = heap.availableSize
        #expect(try KVStore.open(heap: heap, name: "auto").shardCount == 4)  // 508 MiB available: 4 shards, not yet 8
        #expect(KVStoreOptions.defaultShards(available: available) == 4)
        let sizes: [(UInt64, Int)] = [(0, 1), ((256 << 20) - 1, 1), (256 << 20, 4), (512 << 20, 8), (1 << 30, 16), (1 << 40, 16)]
        for (size, count) in sizes { #expect(KVStoreOptions.defaultShards(available: size) == count, "\(size) bytes available") }
        for bad in [0, 3, 128, -1] {
            #expect(throws: KVError.invalidShardCount(bad)) { try KVStore.open(heap: heap, name: "bad", options: KVStoreOptions(shards: bad)) }
        }
        #expect(KVError.invalidShardCount(3).description == "a store of 3 shards is not possible; use a power of two from 1 to 64")
        // 57 bytes make a one-shard store's "NAME.index" 63 bytes; shard 1's "NAME.index.1" would be 65.
        let long = String(repeating: "n", count: 57)
        #expect(throws: KVError.invalidStoreName(long)) { try KVStore.open(heap: heap, name: long, options: KVStoreOptions(shards: 2)) }
        #expect(try KVStore.open(heap: heap, name: String(long.dropLast(2)), options: KVStoreOptions(shards: 2)).shardCount == 2)
        #expect(try KVStore.open(heap: heap, name: long, options: KVStoreOptions(shards: 1)).shardCount == 1)
        // Nothing was created by the refused opens.
        #expect(try heap.findArena(named: "bad.index") == nil && heap.findArena(named: "\(long).index.1") == nil)
    }

    @Test("a store with a shard's arenas gone does not open, and destroy removes every shard")
    func missingShardAndDestroy() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap()
        do {
            let store = try KVStore.open(heap: heap, options: KVStoreOptions(shards: 4))
            for i in 0 ..< 100 { try store.put(key(i), bytes("v\(i)")) }
        }
        try heap.destroyArena(named: "kv.data.2")
        #expect(throws: KVError.notAStore(store: "kv", reason: "its arena \"kv.data.2\" (shard 2 of 4) is missing")) { try KVStore.open(heap: heap) }
        try heap.destroyArena(named: "kv.index.2")
        #expect(throws: KVError.notAStore(store: "kv", reason: "its arena \"kv.index.2\" (shard 2 of 4) is missing")) { try KVStore.open(heap: heap) }
        // Refused opens leave the other shards as they were.
        #expect(try heap.findArena(named: "kv.index.3") != nil && heap.findArena(named: "kv.data.3") != nil)
        try KVStore.destroy(heap: heap, name: "kv")
        #expect(heap.arenas.isEmpty, "\(heap.arenas.map(\.name))")
        #expect(throws: KVError.noSuchStore("kv")) { try KVStore.open(heap: heap, options: KVStoreOptions(create: false)) }
    }

    /// An open refused at a later shard must not have changed the earlier ones: they hold
    /// free segments a successful open would give back, and keep them.
    @Test("an open refused at shard 2 gives back no space in shards 0 and 1")
    func refusedOpenChangesNoArena() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: 128 << 20)
        do {
            let store = try KVStore.open(heap: heap, options: KVStoreOptions(initialDataSize: 32 << 20, shards: 4))
            for i in 0 ..< 100 { try store.put(key(i), bytes("v\(i)")) }
        }
        try heap.destroyArena(named: "kv.data.2")
        let sizes = heap.arenas.map { ($0.name, $0.size) }
        let smaller = KVStoreOptions(initialDataSize: 4 << 20)  // a successful open would shrink each data arena to 2 MiB
        #expect(throws: KVError.notAStore(store: "kv", reason: "its arena \"kv.data.2\" (shard 2 of 4) is missing")) {
            try KVStore.open(heap: heap, options: smaller)
        }
        #expect(heap.arenas.map { ($0.name, $0.size) }.elementsEqual(sizes) { $0 == $1 }, "\(heap.arenas.map { ($0.name, $0.size) })")
    }

    /// Recovery writes too: a tail replay stores the slots a power loss lost, and an open
    /// of a version 2 store makes its headers say 3. An open refused at one shard (here
    /// its index claims to be another shard) must have done neither in any shard.
    @Test("an open refused at shard 3 replays no tail and upgrades no header in the others")
    func refusedOpenRecoversNothing() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap()
        let names = (0 ..< 4).flatMap { i in [ShardPlace(index: i, count: 4).arenaName("kv", .index), ShardPlace(index: i, count: 4).arenaName("kv", .data)] }
        var lost: [String: [UInt8]] = [:]
        do {
            let store = try KVStore.open(heap: heap, options: KVStoreOptions(shards: 4))
            for i in 0 ..< 100 { try store.put(key(i), bytes("v\(i)")) }
            for name in names where name.contains(".index") { lost[name] = try heap.arena(named: name).read(at: 0, count: Int(heap.arena(named: name).size)) }
            for i in 100 ..< 200 { try store.put(key(i), bytes("v\(i)")) }  // every shard's tail
        }
        for (name, bytes) in lost { try heap.arena(named: name).memcpyPersist(at: 0, bytes) }  // the slot stores lost
        for name in names { try heap.arena(named: name).memcpyPersist(at: Format.versionOffset, littleEndianBytes(2)) }
        let claim = ShardPlace(index: 2, count: 4).word
        try heap.arena(named: "kv.index.3").memcpyPersist(at: Format.shardOffset, littleEndianBytes(claim))
        let before = try names.map { try heap.arena(named: $0).read(at: 0, count: Int(heap.arena(named: $0).size)) }

        #expect(throws: KVError.notAStore(store: "kv", reason: "\"kv.index.3\" holds shard 2 of 4, not shard 3 of 4")) {
            try KVStore.open(heap: heap)
        }
        for (name, bytes) in zip(names, before) { #expect(try heap.arena(named: name).read(at: 0, count: bytes.count) == bytes, "\(name) changed") }
    }

    /// A creation interrupted before shard 0's magic (or a store whose shard 0 was
    /// destroyed first, as `destroy` does): the next open lays every shard out anew,
    /// keeps none of the old pairs, and removes shards past its own count.
    @Test("an unfinished store is laid out anew, old shards and all")
    func unfinishedStoreStartsAfresh() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap()
        do {
            let store = try KVStore.open(heap: heap, options: KVStoreOptions(shards: 4))
            for i in 0 ..< 200 { try store.put(key(i), bytes("old")) }
        }
        try heap.arena(named: "kv.index").write([UInt8](repeating: 0, count: 8), at: Format.magicOffset)
        #expect(throws: KVError.notAStore(store: "kv", reason: "its creation never finished; open it with creation allowed to start afresh")) {
            try KVStore.open(heap: heap, options: KVStoreOptions(create: false))
        }
        let store = try KVStore.open(heap: heap, options: KVStoreOptions(shards: 2))
        #expect(store.shardCount == 2)
        #expect(store.count == 0)
        for i in 0 ..< 200 { #expect(try store.get(key(i)) == nil) }
        #expect(try heap.findArena(named: "kv.index.2") == nil && heap.findArena(named: "kv.data.3") == nil)
    }

    /// A batch's part in each shard is one group with one fence: counted by an unarmed
    /// power-loss simulator, which observes every fence and takes no image.
    @Test("a batch over four shards is one fence a shard, later pairs win, and it survives a reopen")
    func batchAcrossShardsIsOneFenceAShard() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let want = (0 ..< 64).map { bytes($0 % 3 == 0 ? "later \($0)" : "batch \($0)") }
        do {
            let simulator = PowerLossSimulator(directory: scratch.path) { _ in }
            simulator.isArmed = false
            let heap = try Heap.create(path: scratch.file("heap"), size: 64 << 20, simulator: simulator)
            let store = try KVStore.open(heap: heap, options: KVStoreOptions(shards: 4))
            for i in 0 ..< 64 { try store.put(key(i), bytes("first")) }
            var batch = (0 ..< 64).map { (key: key($0), value: bytes("batch \($0)")) }
            batch += (0 ..< 64).filter { $0 % 3 == 0 }.map { (key: key($0), value: bytes("later \($0)")) }
            let perShard = Set(batch.map { store.shardIndex(of: $0.key) })
            #expect(perShard.count == 4, "the batch should touch every shard")
            let before = simulator.fenceCount
            try store.put(batch: batch)
            #expect(simulator.fenceCount - before == 4, "one fence for each shard the batch reaches")
            #expect(try (0 ..< 64).map { try store.get(key($0)) } == want)
        }
        let reopened = try KVStore.open(heap: try Heap.open(path: scratch.file("heap")))
        #expect(try (0 ..< 64).map { try reopened.get(key($0)) } == want)
    }
}
