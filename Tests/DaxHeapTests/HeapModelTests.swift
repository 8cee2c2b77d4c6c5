// A seeded, model-based randomized test of the public Heap API: random creates, resizes,
// destroys and writes on a 256 MiB heap, checked after every operation against a model
// of the arenas' names, ids and sizes and of every byte written; every ~100 operations the
// heap is closed and reopened and everything is checked again.
//
// DAXHEAP_MODEL_SEED=<n> runs that seed (and DAXHEAP_MODEL_OPS=<n> that many operations)
// instead of the built-in ones; a failure message always names its seed and operation.

import DaxHeap
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
import DaxTestSupport
#endif


/// What the heap should hold.
struct HeapModel {
    struct ArenaModel {
        var id: UInt64
        var size: UInt64
        /// Every byte written and still inside the arena; all others read as zero.
        var bytes: [UInt64: UInt8] = [:]
    }

    let usableSize: UInt64
    var arenas: [String: ArenaModel] = [:]
    var generation: UInt64 = 1
    var highestID: UInt64 = 0

    var used: UInt64 { arenas.values.reduce(0) { $0 + $1.size } }
    var available: UInt64 { usableSize - used }
    /// (name, size) ordered as `Heap.arenas` orders them.
    var listing: [String] { arenas.keys.sorted().map { "\($0):\(arenas[$0]!.size)" } }
}

@Suite struct HeapModelTests {
    static let deviceSize: UInt64 = 256 << 20
    static let names = (0 ..< 10).map { "n\($0)" } + ["ü", "日本", "with space", "x-\u{1F642}"]

    static var seeds: [UInt64] {
        if let text = ProcessInfo.processInfo.environment["DAXHEAP_MODEL_SEED"], let seed = UInt64(text) { return [seed] }
        return [0x5EED_0001, 0xDA7_4EA9, 20_261_121]
    }

    static var operations: Int {
        ProcessInfo.processInfo.environment["DAXHEAP_MODEL_OPS"].flatMap(Int.init) ?? 600
    }

    /// The HeapError `body` throws, nil if it succeeds; any other error is recorded.
    static func outcome(_ context: String, _ body: () throws -> Void) -> HeapError? {
        do {
            try body()
            return nil
        } catch let error as HeapError {
            return error
        } catch {
            Issue.record("\(context): unexpected error \(error)")
            return nil
        }
    }

    @Test(arguments: HeapModelTests.seeds)
    func randomOperationsAgreeWithTheModel(seed: UInt64) throws {
        let path = tempPath("model")
        defer { removeFile(path) }
        var rng = SplitMix64(seed: seed)
        var heap: Heap? = try Heap.create(path: path, size: Self.deviceSize)
        var model = HeapModel(usableSize: heap!.usableSize)
        #expect(model.usableSize == Self.deviceSize - 4 << 20)
        var failures = 0

        for step in 0 ..< Self.operations {
            let context = "seed \(seed) op \(step)"
            do {
                let h = heap!
                var expected: HeapError? = nil
                var description = ""
                let name = Self.names.randomElement(using: &rng)!
                let roll = Int.random(in: 0 ..< 100, using: &rng)

                func randomSize() -> UInt64 {
                    switch Int.random(in: 0 ..< 100, using: &rng) {
                    case 0 ..< 4: return [0, 1 << 20, (2 << 20) + 4096, 3 << 20][Int.random(in: 0 ..< 4, using: &rng)]
                    case 4 ..< 14: return UInt64.random(in: 16 ... 80, using: &rng) * twoMiB
                    default: return UInt64.random(in: 1 ... 12, using: &rng) * twoMiB
                    }
                }

                if roll < 25 {
                    // create
                    let size = randomSize()
                    description = "create \(name) \(size)"
                    if model.arenas[name] != nil {
                        expected = .nameTaken(name)
                    } else if size == 0 || size % twoMiB != 0 {
                        expected = .misalignedSize(size)
                    } else if size > model.available {
                        expected = .noSpace(requested: size, available: model.available)
                    }
                    var created: Arena?
                    let got = Self.outcome(context) { created = try h.createArena(named: name, size: size) }
                    #expect(got == expected, "\(context): \(description)")
                    if got == nil, expected == nil, let created {
                        #expect(created.id > model.highestID, "\(context): ids are never reused")
                        model.highestID = max(model.highestID, created.id)
                        model.arenas[name] = .init(id: created.id, size: size)
                        model.generation += 1
                        // New arenas read as zero, where earlier arenas wrote too.
                        if !(try Self.verifyHotBytes(created, model: model.arenas[name]!, blocks: 0 ..< size / twoMiB, context: "\(context) new arena")) {
                            failures += 1
                        }
                    }
                } else if roll < 55 {
                    // resize
                    let size = randomSize()
                    description = "resize \(name) \(size)"
                    let old = model.arenas[name]
                    if old == nil {
                        expected = .unknownArena(name)
                    } else if size == 0 || size % twoMiB != 0 {
                        expected = .misalignedSize(size)
                    } else if size > old!.size, size - old!.size > model.available {
                        expected = .noSpace(requested: size - old!.size, available: model.available)
                    }
                    let got = Self.outcome(context) { try h.resizeArena(named: name, to: size) }
                    #expect(got == expected, "\(context): \(description)")
                    if got == nil, expected == nil, var arena = old {
                        if size != arena.size { model.generation += 1 }
                        if size < arena.size {
                            arena.bytes = arena.bytes.filter { $0.key < size }
                        } else if size > arena.size {
                            // The grown part reads as zero, where earlier arenas wrote too.
                            if !(try Self.verifyHotBytes(try h.arena(named: name), model: .init(id: arena.id, size: size),
                                                         blocks: arena.size / twoMiB ..< size / twoMiB, context: "\(context) grown part")) {
                                failures += 1
                            }
                        }
                        arena.size = size
                        model.arenas[name] = arena
                    }
                } else if roll < 65 {
                    // destroy
                    description = "destroy \(name)"
                    if model.arenas[name] == nil { expected = .unknownArena(name) }
                    let got = Self.outcome(context) { try h.destroyArena(named: name) }
                    #expect(got == expected, "\(context): \(description)")
                    if got == nil, expected == nil {
                        model.arenas[name] = nil
                        model.generation += 1
                    }
                } else {
                    // write a small pattern into an existing arena (sometimes past its end)
                    guard let target = model.arenas.keys.sorted().randomElement(using: &rng), var arena = model.arenas[target] else { continue }
                    let count = Int.random(in: 1 ... 64, using: &rng)
                    let past = Int.random(in: 0 ..< 20, using: &rng) == 0
                    // Mostly into the "hot" first bytes of a 2 MiB block (where a later arena
                    // on the same space is checked for zeros), sometimes anywhere.
                    let hot = UInt64.random(in: 0 ..< arena.size / twoMiB, using: &rng) * twoMiB
                        + UInt64.random(in: 0 ... Self.hotBytes - UInt64(count), using: &rng)
                    let offset = past
                        ? arena.size - UInt64.random(in: 0 ..< UInt64(count), using: &rng)
                        : Bool.random(using: &rng) ? hot : UInt64.random(in: 0 ... arena.size - UInt64(count), using: &rng)
                    let bytes = (0 ..< count).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
                    description = "write \(target) \(offset)+\(count)"
                    if past { expected = .outOfRange(arena: target, offset: offset, count: UInt64(count), arenaSize: arena.size) }
                    let handle = try h.arena(named: target)
                    let durable = Bool.random(using: &rng)
                    let got = Self.outcome(context) {
                        if durable { try handle.memcpyPersist(at: offset, bytes) } else { try handle.write(bytes, at: offset) }
                    }
                    #expect(got == expected, "\(context): \(description)")
                    if got == nil, expected == nil {
                        for (i, b) in bytes.enumerated() { arena.bytes[offset + UInt64(i)] = b }
                        model.arenas[target] = arena
                        #expect(try handle.read(at: offset, count: count) == bytes, "\(context): read back")
                    }
                    // Spot-check one earlier byte of the same arena.
                    if let (at, value) = arena.bytes.randomElement(using: &rng) {
                        #expect(try handle.read(at: at, count: 1) == [value], "\(context): earlier byte \(at) of \(target)")
                    }
                }

                // After every operation: the heap agrees with the model.
                let report = h.check()
                #expect(report.isHealthy, "\(context) after \(description): \(report.problems)")
                let listing = h.arenas.map { "\($0.name):\($0.size)" }
                #expect(listing == model.listing, "\(context) after \(description)")
                #expect(h.availableSize == model.available, "\(context) after \(description)")
                #expect(h.availableSize == h.usableSize - h.arenas.reduce(0) { $0 + $1.size }, "\(context)")
                #expect(h.generation == model.generation, "\(context) after \(description)")
                #expect(Self.extentsAreDisjoint(h.arenas), "\(context) after \(description)")
                if listing != model.listing || !report.isHealthy { failures += 1 }
                if failures > 3 { break }  // one divergence cascades; stop early
            }

            // Every ~100 operations: close, reopen, and check everything.
            if step % 100 == 99 || step == Self.operations - 1 {
                let before = heap!.arenas
                heap = nil
                let reopened = try Heap.open(path: path)
                heap = reopened
                #expect(reopened.repairs.isEmpty, "\(context): reopen repaired \(reopened.repairs)")
                #expect(reopened.arenas == before, "\(context): arenas changed across reopen")
                #expect(reopened.generation == model.generation, "\(context)")
                try Self.verifyAllBytes(reopened, model: model, rng: &rng, context: "\(context) after reopen")
            }
        }
        #expect(heap?.check().isHealthy == true, "seed \(seed) at the end")
    }

    /// No two extents of any arenas overlap, and each arena's arena offsets run from 0.
    static func extentsAreDisjoint(_ arenas: [ArenaInfo]) -> Bool {
        let all = arenas.flatMap(\.extents).sorted { $0.deviceOffset < $1.deviceOffset }
        for (a, b) in zip(all, all.dropFirst()) where a.deviceOffset + a.length > b.deviceOffset { return false }
        for arena in arenas {
            var next: UInt64 = 0
            for e in arena.extents {
                if e.arenaOffset != next { return false }
                next += e.length
            }
            if next != arena.size { return false }
        }
        return true
    }

    /// Writes go mostly into the first `hotBytes` of some 2 MiB block of an arena.
    static let hotBytes: UInt64 = 256

    /// The hot bytes of the given 2 MiB blocks of an arena agree with the model (zero
    /// where it holds nothing).
    @discardableResult
    static func verifyHotBytes(_ handle: Arena, model: HeapModel.ArenaModel, blocks: Range<UInt64>, context: String) throws -> Bool {
        for block in blocks {
            let start = block * twoMiB
            let actual = try handle.read(at: start, count: Int(hotBytes))
            let expected = (start ..< start + hotBytes).map { model.bytes[$0] ?? 0 }
            if let i = (0 ..< actual.count).first(where: { actual[$0] != expected[$0] }) {
                Issue.record("\(context): \(handle.name) byte \(start + UInt64(i)) is \(actual[i]), expected \(expected[i]) (first difference in \(start)..<\(start + hotBytes))")
                return false
            }
        }
        return true
    }

    /// Every modelled byte, in runs, the hot bytes of every block, and a few other bytes
    /// of each arena.
    static func verifyAllBytes(_ heap: Heap, model: HeapModel, rng: inout SplitMix64, context: String) throws {
        for (name, arena) in model.arenas {
            let handle = try heap.arena(named: name)
            #expect(handle.id == arena.id, "\(context): id of \(name)")
            #expect(handle.size == arena.size, "\(context): size of \(name)")
            let offsets = arena.bytes.keys.sorted()
            var i = 0
            while i < offsets.count {
                var j = i
                while j + 1 < offsets.count, offsets[j + 1] == offsets[j] + 1 { j += 1 }
                let expected = offsets[i ... j].map { arena.bytes[$0]! }
                let actual = try handle.read(at: offsets[i], count: j - i + 1)
                #expect(actual == expected, "\(context): \(name) bytes \(offsets[i])..<\(offsets[j] + 1)")
                i = j + 1
            }
            try verifyHotBytes(handle, model: arena, blocks: 0 ..< arena.size / twoMiB, context: context)
            for _ in 0 ..< 8 {
                let at = UInt64.random(in: 0 ..< arena.size, using: &rng)
                let value = try handle.read(at: at, count: 1)[0]
                #expect(value == arena.bytes[at] ?? 0, "\(context): \(name) byte \(at)")
            }
        }
    }
}
