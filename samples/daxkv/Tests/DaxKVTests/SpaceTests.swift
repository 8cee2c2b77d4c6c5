import DaxHeap
@testable import DaxKV
import DaxTestSupport
import Foundation
import Testing

@Suite("DaxKV space: growth, compaction, a full heap")
struct SpaceTests {
    /// A fill has nothing to compact: every record is live. A new store knows that of its
    /// segments, so a segment switch grows the arena without walking one (the first
    /// segment used to count as unknown, and each switch walked it: 7 % of a fill).
    @Test("filling a new store walks no segment for compaction")
    func fillWalksNothing() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let store = try KVStore.open(heap: try scratch.heap(), options: KVStoreOptions(initialDataSize: 2 << 20).oneShard)
        for i in 0 ..< 3000 { try store.put(key(i), stamped(i, version: 0, count: 2000)) }  // 3 segments
        #expect(store.dataGrowths >= 2)
        #expect(store.only.compactionWalks.load(ordering: .relaxed) == 0)
        #expect(store.compactions == 0)
    }

    /// A reopened store does not know which of its old segments hold dead records, so a
    /// switch that finds no free segment walks the one with the fewest live records. When
    /// that walk finds too little to reclaim, the same segment is not walked again until one
    /// of its records dies: the walk would find the same records (it used to repeat at
    /// every growth of a fill after the reopen).
    @Test("a reopened store walks a full segment once, not at every growth")
    func reopenedFillWalksOnce() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let options = KVStoreOptions(initialDataSize: 2 << 20).oneShard
        do {
            let store = try KVStore.open(heap: try scratch.heap(), options: options)
            for i in 0 ..< 3000 { try store.put(key(i), stamped(i, version: 0, count: 2000)) }  // 3 segments, all live
        }
        let store = try KVStore.open(heap: try Heap.open(path: scratch.file("heap")), options: options)
        for i in 3000 ..< 12_000 { try store.put(key(i), stamped(i, version: 0, count: 2000)) }
        #expect(store.dataGrowths >= 3)
        #expect(store.only.compactionWalks.load(ordering: .relaxed) == 1)
        #expect(store.compactions == 0)
        // A death in the walked segment makes it worth a look again.
        try store.delete(key(0))
        for i in 12_000 ..< 16_000 { try store.put(key(i), stamped(i, version: 0, count: 2000)) }
        #expect(store.only.compactionWalks.load(ordering: .relaxed) == 2)
        for i in stride(from: 1, to: 16_000, by: 97) { #expect(try store.get(key(i)) == stamped(i, version: 0, count: 2000)) }
    }

    @Test("growth across many resizes onto discontiguous extents")
    func growth() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let count = 6000
        do {
            let heap = try scratch.heap(size: 96 << 20)
            let store = try KVStore.open(heap: heap, options: KVStoreOptions(initialDataSize: 2 << 20).oneShard)
            try fragment(heap)  // the store can only grow into 2 MiB holes
            for i in 0 ..< count { try store.put(key(i), stamped(i, version: 0, count: 4000)) }
            // Many small pairs make the index outgrow its first 2 MiB.
            var small: [(key: [UInt8], value: [UInt8])] = []
            for i in 0 ..< 100_000 { small.append((bytes("s\(i)"), stamped(i, version: 9, count: 8))) }
            try store.put(batch: small)
            #expect(store.dataGrowths >= 5)
            #expect(store.indexRebuilds >= 1)
            #expect(try store.only.data.arena.info.extents.count >= 5, "the data arena should be discontiguous")
            #expect(try store.only.index.arena.info.extents.count >= 2, "the index arena should be discontiguous")
            for i in stride(from: 0, to: count, by: 7) { #expect(try store.get(key(i)) == stamped(i, version: 0, count: 4000)) }
        }
        let store = try KVStore.open(heap: try Heap.open(path: scratch.file("heap")), options: .oneShard)
        #expect(store.count == count + 100_000)
        for i in 0 ..< count { #expect(try store.get(key(i)) == stamped(i, version: 0, count: 4000)) }
        for i in stride(from: 0, to: 100_000, by: 11) { #expect(try store.get(bytes("s\(i)")) == stamped(i, version: 9, count: 8)) }
    }

    @Test("compaction: a fixed heap accepts 50 rounds of overwriting everything")
    func compactionForever() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        // 16 MiB heap: 12 MiB usable; 600 keys x 4 KiB = 2.4 MiB live, 120 MiB written.
        let keys = 600
        var rng = SplitMix64(seed: 0x5BACE)
        do {
            let heap = try scratch.heap(size: 16 << 20)
            let store = try KVStore.open(heap: heap, options: .oneShard)
            for round in 0 ..< 50 {
                // Alternate in-order and shuffled rounds; sizes vary a little.
                let order = round % 2 == 0 ? Array(0 ..< keys) : Array(0 ..< keys).shuffled(using: &rng)
                for i in order { try store.put(key(i), stamped(i, version: round, count: 3000 + (i * 37 + round) % 2000)) }
                if round % 10 == 9 { try store.delete(key(round)) ; try store.put(key(round), stamped(round, version: round, count: 3000 + (round * 37 + round) % 2000)) }
            }
            #expect(store.compactions > 0)
            #expect(heap.availableSize < 16 << 20)
            for i in 0 ..< keys { #expect(try store.get(key(i)) == stamped(i, version: 49, count: 3000 + (i * 37 + 49) % 2000)) }
        }
        let store = try KVStore.open(heap: try Heap.open(path: scratch.file("heap")), options: .oneShard)
        #expect(store.count == keys)
        for i in 0 ..< keys { #expect(try store.get(key(i)) == stamped(i, version: 49, count: 3000 + (i * 37 + 49) % 2000)) }
    }

    @Test("a full heap is a clear error and leaves the store intact")
    func heapFull() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        var stored = 0
        do {
            let heap = try scratch.heap(size: 16 << 20)
            let store = try KVStore.open(heap: heap, options: .oneShard)
            var failure: Error? = nil
            for i in 0 ..< 10_000 {
                do {
                    try store.put(key(i), stamped(i, version: 0, count: 60_000))
                    stored += 1
                } catch {
                    failure = error
                    break
                }
            }
            let error = try #require(failure as? KVError)
            guard case .storeFull = error else { Issue.record("expected storeFull, got \(error)"); return }
            #expect("\(error)".contains("is full"))
            #expect(store.count == stored)
            #expect(try store.get(key(stored)) == nil)
            for i in 0 ..< stored { #expect(try store.get(key(i)) == stamped(i, version: 0, count: 60_000)) }
            // Updates in place of deleted data go on working: compaction reclaims.
            for i in 0 ..< stored / 2 { try store.delete(key(i)) }
            for i in stored / 2 ..< stored { try store.put(key(i), stamped(i, version: 1, count: 60_000)) }
            for i in stored / 2 ..< stored { #expect(try store.get(key(i)) == stamped(i, version: 1, count: 60_000)) }
        }
        let store = try KVStore.open(heap: try Heap.open(path: scratch.file("heap")), options: .oneShard)
        #expect(store.count == stored - stored / 2)
        for i in stored / 2 ..< stored { #expect(try store.get(key(i)) == stamped(i, version: 1, count: 60_000)) }
    }

    // MARK: - Space set aside at creation

    /// The pages of `count` bytes at `base` that are resident (mincore): for a shared file
    /// mapping, the file's pages that are backed. A hole in an emulated device file is not.
    static func residentPages(_ base: UnsafeMutableRawPointer, _ count: Int) -> Int {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var vector = [UInt8](repeating: 0, count: (count + page - 1) / page)
        #expect(mincore(base, count, &vector) == 0)
        return vector.reduce(0) { $0 + Int($1 & 1) }
    }

    /// Creating a store prefaults its whole initial data arena, so the puts that reach its
    /// segments never wait for their page setup (1.5 ms a fresh 2 MiB on tmpfs, inside the
    /// put that switched to it); before, only the first segment was.
    @Test("a new store's initial data arena is prefaulted when it is created")
    func initialDataIsPrefaulted() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let size = 5 * Format.segmentSize
        let store = try KVStore.open(heap: try scratch.heap(), options: KVStoreOptions(initialDataSize: size).oneShard)
        let shard = store.only
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        #expect(Self.residentPages(shard.data.base, Int(size)) == Int(size) / page)
        #expect(shard.lock.withLock { shard.segmentPrefaulted } == [Bool](repeating: true, count: 5))
    }

    /// The segments of a data arena created with the store read as zero, so the switches
    /// to them do not zero them again (a 2 MiB persisted memset each, under the lock) and
    /// count no reuse (which sends lock-free gets back to retry), nor prefault them again.
    /// Segments that held records still are zeroed, and counted.
    @Test("a new store's first switches neither zero nor count a reuse")
    func newSegmentsAreNotZeroedAgain() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let store = try KVStore.open(heap: try scratch.heap(), options: KVStoreOptions(initialDataSize: 6 * Format.segmentSize).oneShard)
        let shard = store.only
        for i in 0 ..< 3000 { try store.put(key(i), stamped(i, version: 0, count: 2000)) }  // 3 segments
        #expect(shard.lock.withLock { shard.tailSegment } >= 2)
        #expect(store.dataGrowths == 0)
        #expect(shard.spaceReuses.load(ordering: .relaxed) == 0)
        #expect(shard.switchPrefaults.load(ordering: .relaxed) == 0, "every segment was prefaulted when the store was created")
        // Overwriting makes whole segments dead: their reuse is zeroed and counted.
        for round in 1 ... 3 { for i in 0 ..< 3000 { try store.put(key(i), stamped(i, version: round, count: 2000)) } }
        #expect(shard.spaceReuses.load(ordering: .relaxed) > 0)
        for i in 0 ..< 3000 { #expect(try store.get(key(i)) == stamped(i, version: 3, count: 2000)) }
    }

    /// `dataSize(forRecords:keyBytes:valueBytes:shards:)` is enough: a store created at that size
    /// holds that many records without growing, and one segment less is not enough. 5,498
    /// records end in the last eighth of their segment, where the next is prepared.
    @Test("dataSize(forRecords:) sizes a data arena for that many records", arguments: [5000, 5498])
    func dataSizeForRecords(records: Int) throws {
        let valueBytes = 700  // 2,849 records a segment, 2,843 in the first
        let size = KVStoreOptions.dataSize(forRecords: records, keyBytes: 16, valueBytes: valueBytes)
        #expect(size % Format.segmentSize == 0)
        for (dataSize, grows) in [(size, false), (size - Format.segmentSize, true)] {
            let scratch = try Scratch()
            defer { scratch.remove() }
            let store = try KVStore.open(heap: try scratch.heap(), options: KVStoreOptions(initialDataSize: dataSize).oneShard)
            for i in 0 ..< records { try store.put(key(i), stamped(i, version: 0, count: valueBytes)) }
            #expect((store.dataGrowths > 0) == grows, "\(dataSize >> 20) MiB for \(records) records of \(16 + valueBytes) bytes")
        }
        #expect(KVStoreOptions.dataSize(forRecords: 0, keyBytes: 16, valueBytes: 128) == Format.segmentSize)
    }

    /// For a sharded store, each shard's share (its own reserve counted): 10 % over, 20,000
    /// records over 4 shards fit without any shard's arena growing.
    @Test("dataSize(forRecords:shards:) sizes every shard's data arena")
    func dataSizeForShardedRecords() throws {
        let records = 20_000, valueBytes = 700
        let size = KVStoreOptions.dataSize(forRecords: records + records / 10, keyBytes: 16, valueBytes: valueBytes, shards: 4)
        #expect(size % (4 * Format.segmentSize) == 0)
        #expect(size > KVStoreOptions.dataSize(forRecords: records + records / 10, keyBytes: 16, valueBytes: valueBytes))
        let scratch = try Scratch()
        defer { scratch.remove() }
        let store = try KVStore.open(heap: try scratch.heap(), options: KVStoreOptions(initialDataSize: size, shards: 4))
        for i in 0 ..< records { try store.put(key(i), stamped(i, version: 0, count: valueBytes)) }
        #expect(store.dataGrowths == 0)
    }

    /// A creation that fails partway (here the heap has no room for the third shard's data
    /// arena) leaves the heap as it found it: the arenas it created go again, one created
    /// before by someone else stays, and the error is one line.
    @Test("a failed creation removes the arenas it created, and only those")
    func aFailedCreationLeavesTheHeapAsItWas() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap()  // 64 MiB
        try heap.createArena(named: "kv.data.3", size: 2 << 20)  // as an earlier attempt would leave it
        let before = heap.arenas.map(\.name).sorted()
        do {
            _ = try KVStore.open(heap: heap, options: KVStoreOptions(initialDataSize: 120 << 20, shards: 4))
            Issue.record("the creation should not fit")
        } catch {
            #expect(!"\(error)".contains("\n"), "\(error)")
        }
        #expect(heap.arenas.map(\.name).sorted() == before)
        #expect(heap.check().isHealthy)
        // And the store is absent, not an unfinished creation.
        #expect(throws: KVError.noSuchStore("kv")) { _ = try KVStore.open(heap: heap, options: KVStoreOptions(create: false)) }
    }
}

