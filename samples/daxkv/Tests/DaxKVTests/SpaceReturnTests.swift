import DaxHeap
@testable import DaxKV
import DaxTestSupport
import Foundation
import Synchronization
import Testing

@Suite("DaxKV space given back: the data arena's free end, old index tables")
struct SpaceReturnTests {
    static let big = 256 << 10

    /// Sets the scene: A keys live in the first segments, B keys put after them and
    /// deleted, two C keys live after those, D keys after them and deleted, then the tail
    /// moved down to the lowest free segment (so a live segment lies above the tail, and
    /// free ones above that); and the index's
    /// current table (2 MiB) at the arena's start with an older one above it. Closed.
    /// Returns the model and the data and index arenas' sizes.
    static func freeEnd(_ heap: Heap) throws -> (model: [[UInt8]: [UInt8]], dataSize: UInt64, indexSize: UInt64) {
        var model: [[UInt8]: [UInt8]] = [:]
        do {
            let options = KVStoreOptions(expectedKeys: 100_000, initialDataSize: 2 << 20)
            let store = try KVStore.open(heap: heap, options: options.oneShard)
            for i in 0 ..< 12 {
                model[key(i)] = stamped(i, version: 1, count: big)
                try store.put(key(i), model[key(i)]!)
            }
            for i in 100 ..< 140 { try store.put(key(i), stamped(i, version: 1, count: big)) }
            for i in 300 ..< 302 {
                model[key(i)] = stamped(i, version: 1, count: big)
                try store.put(key(i), model[key(i)]!)
            }
            for i in 140 ..< 170 { try store.put(key(i), stamped(i, version: 1, count: big)) }
            for i in 100 ..< 170 { try store.delete(key(i)) }
        }
        // At open the lowest free segment is taken first: fill the tail until it moves there.
        let store = try KVStore.open(heap: heap, options: KVStoreOptions(giveBackSpace: false).oneShard)
        let tail = store.only.lock.withLock { store.only.tailSegment }
        var version = 0
        while store.only.lock.withLock({ store.only.tailSegment }) == tail {
            version += 1
            model[key(7)] = stamped(7, version: version, count: big)
            try store.put(key(7), model[key(7)]!)
        }
        #expect(store.only.lock.withLock { store.only.tailSegment } < tail - 2, "the tail should move down to a free segment")
        // Two rebuilds at the same size: the first places its table after the current one
        // (growing the arena), the second at the arena's start again. The tombstone count
        // stands for that many deletes, which would bring the same rebuilds (slowly).
        let first = store.only.currentTable()
        for _ in 0 ..< 2 {
            try store.only.lock.withLock {
                store.only.tombstones = first.slotCount
                try store.only.ensureIndexRoom(adding: 1)
            }
        }
        let table = store.only.currentTable()
        #expect(table.offset == first.offset && table.byteCount == first.byteCount && store.indexRebuilds == 2)
        #expect(store.only.index.size > roundUp2M(table.offset + table.byteCount), "an older table should lie above the current one")
        return (model, store.only.data.size, store.only.index.size)
    }

    @Test("free segments at the data arena's end go back to the heap at the next open")
    func dataShrinksAtOpen() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap()
        var (model, before, indexBefore) = try Self.freeEnd(heap)
        let available = heap.availableSize
        do {
            let kept = try KVStore.open(heap: heap, options: KVStoreOptions(giveBackSpace: false).oneShard)
            #expect(kept.only.data.size == before, "giveBackSpace: false keeps the space")
        }
        let store = try KVStore.open(heap: heap, options: .oneShard)
        let (tail, lastLive) = store.only.lock.withLock { (store.only.tailSegment, store.only.segmentLive.lastIndex { $0 > 0 }!) }
        #expect(lastLive > tail + Shard.keptFreeSegments, "the C keys' segment should lie well above the tail")
        #expect(store.only.data.size == UInt64(lastLive + 1 + Shard.keptFreeSegments) << Format.segmentShift)
        #expect(store.only.data.size < before)
        let table = store.only.currentTable()
        #expect(store.only.index.size == roundUp2M(table.offset + table.byteCount) && store.only.index.size < indexBefore)
        #expect(heap.availableSize >= available + (before - store.only.data.size) + (indexBefore - store.only.index.size))
        #expect(store.count == model.count)
        for (k, v) in model { #expect(try store.get(k) == v) }
        // The log grows again when it needs to (once the free segments below are full),
        // into space that reads as zero.
        var i = 200
        while store.dataGrowths == 0 && i < 320 {
            model[key(i)] = stamped(i, version: 2, count: Self.big)
            try store.put(key(i), model[key(i)]!)
            i += 1
        }
        for j in i ..< i + 16 {
            model[key(j)] = stamped(j, version: 2, count: Self.big)
            try store.put(key(j), model[key(j)]!)
        }
        #expect(store.dataGrowths > 0)
        for (k, v) in model { #expect(try store.get(k) == v) }
        let count = store.count
        _ = consume store
        let reopened = try KVStore.open(heap: heap, options: .oneShard)
        #expect(reopened.count == count && count == model.count)
        for (k, v) in model { #expect(try reopened.get(k) == v) }
    }

    /// A store keeps the data arena's initial size across opens with the same options
    /// (creation gives nothing back); an open asking for less gives the free end back.
    @Test("the data arena keeps the open's initialDataSize")
    func initialSizeKept() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap()
        let options = KVStoreOptions(initialDataSize: 16 << 20)
        do {
            let store = try KVStore.open(heap: heap, options: options.oneShard)
            #expect(store.only.data.size == 16 << 20)
            for i in 0 ..< 4 { try store.put(key(i), stamped(i, version: 1, count: 1000)) }
        }
        do {
            let store = try KVStore.open(heap: heap, options: options.oneShard)
            #expect(store.only.data.size == 16 << 20)
        }
        let store = try KVStore.open(heap: heap, options: .oneShard)
        #expect(store.only.data.size == UInt64(1 + Shard.keptFreeSegments) << Format.segmentShift)
        for i in 0 ..< 4 { #expect(try store.get(key(i)) == stamped(i, version: 1, count: 1000)) }
    }

    /// The state the open that gave space back carried over is what a full recovery of
    /// the shrunk arenas finds; and the pairs are there after a close.
    @Test("the store reopened after giving space back is the one a recovery finds")
    func reopenedStateMatchesRecovery() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap()
        let (model, before, _) = try Self.freeEnd(heap)
        let usage: (indexBytes: UInt64, dataBytes: UInt64, segments: Int, freeSegments: Int, indexSlots: Int)
        let state: Shard.RecoveredState
        do {
            let store = try KVStore.open(heap: heap, options: .oneShard)
            #expect(store.only.data.size < before)
            usage = store.usage
            state = store.only.recoveredState()
        }
        let store = try KVStore.open(heap: heap, options: KVStoreOptions(giveBackSpace: false).oneShard)
        let recovered = store.only.recoveredState()
        #expect(store.usage == usage)
        #expect(recovered.tail == state.tail && recovered.tailSegment == state.tailSegment)
        #expect(recovered.segmentLive == state.segmentLive && recovered.liveCount == state.liveCount)
        #expect(recovered.tombstones == state.tombstones && recovered.descriptor == state.descriptor)
        #expect(Set(recovered.freeSegments) == Set(state.freeSegments))
        #expect(store.recovery.recordsReplayed == 0)
        #expect(store.count == model.count)
        for (k, v) in model { #expect(try store.get(k) == v) }
    }

    /// A second instance of a store open in this process (which the heap refuses to shrink
    /// under its windows) opens without giving anything back; once both are closed, the
    /// next open does.
    @Test("a store open twice in one process gives nothing back until it is closed")
    func openTwice() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap()
        let (model, before, indexBefore) = try Self.freeEnd(heap)
        do {
            let first = try KVStore.open(heap: heap, options: KVStoreOptions(giveBackSpace: false).oneShard)
            let second = try KVStore.open(heap: heap, options: .oneShard)
            #expect(first.only.data.size == before && second.only.data.size == before)
            #expect(try heap.findArena(named: "kv.data")?.size == before)
            #expect(try heap.findArena(named: "kv.index")?.size == indexBefore)
            #expect(second.count == model.count)
            for (k, v) in model { #expect(try second.get(k) == v) }
        }
        let store = try KVStore.open(heap: heap, options: .oneShard)
        #expect(store.only.data.size < before && store.only.index.size < indexBefore)
        for (k, v) in model { #expect(try store.get(k) == v) }
    }

    /// Tombstones bring rebuilds at the same size: the new table goes to the space of the
    /// one before, so the index arena keeps two places, not one per rebuild; and gets
    /// (single and batched) keep finding every key meanwhile.
    @Test("a rebuild at the same size takes the old table's space while readers probe")
    func indexTablesAlternate() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let store = try KVStore.open(heap: try scratch.heap(), options: .oneShard)
        let resident = 64
        for i in 0 ..< resident { try store.put(key(i), stamped(i, version: 1, count: 24)) }
        let stop = Atomic<Bool>(false)
        let problems = Locked<[String]>([])
        let readers = DispatchGroup()
        for r in 0 ..< 2 {
            readers.enter()
            Thread.detachNewThread {
                defer { readers.leave() }
                var i = r
                while !stop.load(ordering: .acquiring) {
                    i = (i + 7) % resident
                    do {
                        if r == 0 {
                            if try store.get(key(i)) != stamped(i, version: 1, count: 24) { problems.withLock { $0.append("get \(i)") } }
                        } else {
                            let keys = (0 ..< 5).map { key((i + $0) % resident) }
                            let values = try store.get(batch: keys)
                            for j in 0 ..< 5 where values[j] != stamped((i + j) % resident, version: 1, count: 24) {
                                problems.withLock { $0.append("batch \((i + j) % resident)") }
                            }
                        }
                    } catch {
                        problems.withLock { $0.append("\(error)") }
                    }
                }
            }
        }
        var offsets: Set<UInt64> = [store.only.currentTable().offset]
        // Rounds of 1,600 new keys put and deleted: 1,600 tombstones. Then room for 1,500
        // more is asked for (as a batch of them would): pairs + tombstones + 1,500 pass
        // 3/4 of the 4,096 slots, while 64 + 1,500 pairs fit a table of the same size at
        // most half full. (New keys' puts alone rarely bring that rebuild: a put takes a
        // tombstone on its probe path, and tombstones settle below the threshold.)
        for round in 0 ..< 4 {
            let keys = (0 ..< 1600).map { key(1000 + 1600 * round + $0) }
            for k in keys { try store.put(k, [1]) }
            for k in keys { try store.delete(k) }
            let rebuilds = store.indexRebuilds, reuses = store.only.spaceReuses.load(ordering: .relaxed)
            try store.only.lock.withLock { try store.only.ensureIndexRoom(adding: 1500) }
            #expect(store.indexRebuilds == rebuilds + 1)
            // Readers are told (the race itself is too narrow to meet here reliably).
            #expect(store.only.spaceReuses.load(ordering: .relaxed) > reuses, "a rebuild into old space must count it")
            offsets.insert(store.only.currentTable().offset)
        }
        #expect(store.indexRebuilds >= 4)
        stop.store(true, ordering: .releasing)
        readers.wait()
        #expect(problems.withLock { $0 }.isEmpty, "\(problems.withLock { $0.prefix(5) })")
        #expect(offsets.count == 2, "tables at \(offsets.sorted())")
        #expect(store.only.index.size == 2 << 20)
        for i in 0 ..< resident { #expect(try store.get(key(i)) == stamped(i, version: 1, count: 24)) }
    }

    /// The shrinks at open under simulated power loss: a crash at any fence of the open
    /// that gives space back (images of the media at that instant, and mixes of what may
    /// have reached it) leaves an image that opens with every pair, its arenas at the old
    /// size or the new one; and the images show both.
    @Test("a power loss while space is given back loses nothing",
          .disabled(if: threadSanitizerIsLoaded, "single-threaded: ThreadSanitizer has no race to look for here, and the plain and AddressSanitizer runs sweep it"))
    func powerLossWhileGivingBack() throws {
        let scratch = try Scratch()
        let expectation = Locked(Expectation())
        let checks = Locked(CheckCounts())
        let sizesSeen = Locked<Set<[UInt64]>>([])
        let simulator = PowerLossSimulator(crashPoints: .everyFence, mixedImages: PowerLossSettings.mixedImages(default: 2), seed: PowerLossSettings.seed(default: 16), directory: scratch.path) { image in
            do {
                let heap = try Heap.open(path: image.path, mode: .readOnly)
                let sizes = try ["kv.data", "kv.index"].map { try heap.findArena(named: $0)?.size ?? 0 }
                sizesSeen.withLock { _ = $0.insert(sizes) }
            }
            try check(image, against: expectation.withLock { $0 }, counts: checks)
        }
        defer { if simulator.failures.isEmpty { scratch.remove() } }
        simulator.isArmed = false
        let heap = try Heap.create(path: scratch.file("heap"), size: 48 << 20, simulator: simulator)
        let (model, before, indexBefore) = try Self.freeEnd(heap)
        expectation.withLock {
            $0.acknowledged = model
            $0.gets = Set(model.keys)
        }
        simulator.isArmed = true
        let store = try KVStore.open(heap: heap, options: .oneShard)
        simulator.isArmed = false
        #expect(store.only.data.size < before && store.only.index.size < indexBefore, "the open should have given space back")
        #expect(simulator.crashPointsTaken > 0)
        #expect(simulator.failures.isEmpty, "\(simulator.failures.count) of \(simulator.imagesChecked) images failed: \(simulator.failures.prefix(3))")
        // Before both shrinks, between them, after both.
        let seen = sizesSeen.withLock { $0 }
        #expect(seen.contains([before, indexBefore]))
        #expect(seen.contains([store.only.data.size, indexBefore]))
        #expect(seen.contains([store.only.data.size, store.only.index.size]))
        for (k, v) in model { #expect(try store.get(k) == v) }
        print("SpaceReturnTests: giving back \((before - store.only.data.size) >> 20) + \((indexBefore - store.only.index.size) >> 20) MiB at open: "
              + "\(simulator.crashPointsTaken) crash points, \(simulator.imagesChecked) images, \(simulator.failures.count) failures, sizes \(seen)")
    }
}
