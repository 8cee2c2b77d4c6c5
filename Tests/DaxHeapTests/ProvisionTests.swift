// Several arena changes as one metadata update (`Heap.provision`): all or nothing, in
// order, one generation; a refused change anywhere leaves the heap and its file as they were.

import DaxHeap
import DaxTestSupport
import Testing

@Suite struct ProvisionTests {
    @Test func severalChangesTakeOneGeneration() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 64 << 20)
        try heap.createArena(named: "old", size: 4 << 20)
        try heap.createArena(named: "log", size: 2 << 20)
        let generation = heap.generation
        try heap.provision([
            .create(name: "index", size: 8 << 20),
            .resize(name: "log", size: 6 << 20),
            .destroy(name: "old"),
            .create(name: "meta", size: 2 << 20),  // may take old's space: changes apply in order
        ])
        #expect(heap.generation == generation + 1)
        #expect(heap.arenas.map(\.name).sorted() == ["index", "log", "meta"])
        #expect(try heap.arena(named: "log").size == 6 << 20)
        #expect(heap.check().isHealthy)
        // The same table after reopening, and new space reads zero.
        let table = heap.arenas
        try heap.close()
        let reopened = try Heap.open(path: path, mode: .readOnly)
        #expect(reopened.arenas == table)
        for info in table {
            #expect(allZero(try reopened.arena(named: info.name).read(at: 0, count: Int(info.size))))
        }
    }

    @Test func aRefusedChangeAnywhereChangesNothing() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 32 << 20)
        try heap.createArena(named: "a", size: 4 << 20)
        try expectRefused(.nameTaken("a"), heap: heap, path: path) {
            try heap.provision([.create(name: "b", size: 2 << 20), .resize(name: "a", size: 8 << 20), .create(name: "a", size: 2 << 20)])
        }
        try expectRefused(.unknownArena("b"), heap: heap, path: path) {
            try heap.provision([.create(name: "b", size: 2 << 20), .destroy(name: "b"), .destroy(name: "b")])
        }
        let available = heap.availableSize
        try expectRefused(.noSpace(requested: available + (6 << 20), available: available + (4 << 20)), heap: heap, path: path) {
            try heap.provision([.destroy(name: "a"), .create(name: "c", size: available + (6 << 20))])
        }
        // A window refuses the shrink of its arena, even behind a grow of another.
        let window = try heap.arena(named: "a").mapWindow()
        defer { window.close() }
        try expectRefused(.arenaMapped(arena: "a", windows: 1), heap: heap, path: path) {
            try heap.provision([.create(name: "d", size: 2 << 20), .resize(name: "a", size: 2 << 20)])
        }
    }

    @Test func aGrowInABatchIsMappedIntoOpenWindows() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 32 << 20)
        let window = try heap.createArena(named: "a", size: 2 << 20).mapWindow()
        defer { window.close() }
        try heap.provision([.create(name: "spacer", size: 2 << 20), .resize(name: "a", size: 6 << 20)])
        #expect(window.size == 6 << 20)
        try window.store(42, at: (6 << 20) - 8)
        #expect(try heap.arena(named: "a").withView { try $0.load(at: (6 << 20) - 8) } == 42)
    }

    @Test func anEmptyOrNoOpBatchWritesNothing() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        try heap.createArena(named: "a", size: 2 << 20)
        let facts = HeapFacts(heap)
        let image = try FileImage(path)
        try heap.provision([])
        try heap.provision([.resize(name: "a", size: 2 << 20)])
        #expect(HeapFacts(heap) == facts)
        #expect(try FileImage(path) == image)
    }

    /// Random batches against the same changes made one at a time on a twin heap: the
    /// same arenas, sizes and contents, one generation per batch, and a refused batch
    /// changes nothing.
    @Test func randomBatchesMatchTheirChangesMadeOneByOne() throws {
        let batched = tempPath("batched"), single = tempPath("single")
        defer { removeFile(batched); removeFile(single) }
        let a = try Heap.create(path: batched, size: 64 << 20)
        let b = try Heap.create(path: single, size: 64 << 20)
        var random = SplitMix64(seed: 11)
        let names = ["p", "q", "r", "s", "t"]
        var outcomes = (applied: 0, refused: 0)
        for _ in 0 ..< 150 {
            // Mostly changes that fit the table as the batch goes; one in ten is refused (or space runs out).
            var present = Set(a.arenas.map(\.name))
            let changes: [ArenaChange] = (0 ..< Int(random.next() % 4) + 1).map { _ in
                let name = names[Int(random.next() % UInt64(names.count))]
                let size = (random.next() % 6 + 1) << 21
                let wild = random.next() % 10 == 0
                if present.contains(name) != wild {
                    if random.next() % 2 == 0 { return .resize(name: name, size: size) }
                    present.remove(name)
                    return .destroy(name: name)
                }
                present.insert(name)
                return .create(name: name, size: size)
            }
            let before = HeapFacts(a)
            // The twin applies them one by one, and goes back if one is refused.
            let snapshot = b.arenas
            var refused = false
            for change in changes {
                do {
                    switch change {
                    case .create(let name, let size): try b.createArena(named: name, size: size)
                    case .resize(let name, let size): try b.resizeArena(named: name, to: size)
                    case .destroy(let name): try b.destroyArena(named: name)
                    }
                } catch {
                    refused = true
                    break
                }
            }
            do {
                try a.provision(changes)
                outcomes.applied += 1
                #expect(!refused, "\(changes) was applied but one of its changes alone is refused")
                #expect(a.generation <= before.generation + 1)
            } catch {
                outcomes.refused += 1
                #expect(refused, "\(changes) was refused: \(error)")
                #expect(HeapFacts(a) == before)
                // Undo the twin's partial steps: recreate it from the batched heap's table.
                if b.arenas != snapshot {
                    for info in b.arenas { try b.destroyArena(named: info.name) }
                    for info in a.arenas { try b.createArena(named: info.name, size: info.size) }
                }
            }
            let sizes = { (heap: Heap) in heap.arenas.map { "\($0.name)=\($0.size)" }.sorted() }
            #expect(sizes(a) == sizes(b))
            #expect(a.check().isHealthy)
        }
        #expect(outcomes.applied > 50 && outcomes.refused > 10, "\(outcomes)")
    }
}
