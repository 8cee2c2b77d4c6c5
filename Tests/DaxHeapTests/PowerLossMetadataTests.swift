// Every fence of every metadata update, crashed under the power-loss simulator: heap
// create, arena create, grow in place and into a gap, shrink, destroy, several changes in
// one update (`Heap.provision`), and the repair a read-write open makes. Each crash image must open read-only to exactly the table before
// or after the interrupted operation, open read-write to the same table, and then be
// healthy (what `daxheap check --repair` asks for). The only data ever written is a
// pattern in arena "b" before it is destroyed; every other arena must read as zero in every
// image (space joins an arena zeroed, durably, before the table points at it).
//
// Mutations this sweep was seen to catch (made on purpose, then reverted):
// - No fence after a metadata copy: `MappedDevice.guardedMemcpyPersist` in simulated mode
//   flushed without draining. Failed at fence 1 ("create a"), all-old image: "read-only open
//   gave no heap: ... neither metadata copy has the DaxHeap magic; expected one of
//   ["[]", "[a:4M/1]"]": the new heap's two copies were never made durable.
// - Zeroing not flushed: `MappedDevice.zero` in simulated mode stored the zeros without
//   flushing them. Failed at fence 15 ("grow c", which took b's freed space), all-old
//   image: "arena c holds old bytes at offset 2097152 ([a:6M/2 c:4M/2])": the pattern b
//   left, in an image whose table already gave c the space. (A SIGKILL test cannot see
//   this: the zeros sit in the CPU cache and survive a killed process.)

import DaxHeap
import DaxTestSupport
import Foundation
import Testing

/// A heap's table as the sweep compares it: arenas by id, with sizes and extents.
private func table(_ heap: Heap) -> [ArenaInfo] { heap.arenas.sorted { $0.id < $1.id } }

private func describe(_ table: [ArenaInfo]?) -> String {
    guard let table else { return "no heap" }
    return "[" + table.map { "\($0.name):\($0.size >> 20)M/\($0.extents.count)" }.joined(separator: " ") + "]"
}

/// What a crash image may hold: the table before or after the operation in flight
/// (nil: no heap at all, only while the heap itself is being created).
private let allowedTables = Locked<[[ArenaInfo]?]>([])

private func checkImage(_ image: CrashImage) throws {
    let allowed = allowedTables.withLock { $0 }
    var seen: [ArenaInfo]?
    var openError = ""
    do {
        seen = table(try Heap.open(path: image.path, mode: .readOnly))
    } catch {
        openError = ": \(error)"
    }
    guard allowed.contains(where: { $0 == seen }) else {
        throw TestFailure("read-only open gave \(describe(seen))\(openError); expected one of \(allowed.map(describe))")
    }
    guard let seen else { return }
    let heap = try Heap.open(path: image.path)
    guard table(heap) == seen else {
        throw TestFailure("read-write open gave \(describe(table(heap))), read-only gave \(describe(seen))")
    }
    let report = heap.check()
    guard report.isHealthy else { throw TestFailure("not healthy after a read-write open: \(report.problems)") }
    for info in seen where info.name != "b" {
        let bytes = try heap.arena(named: info.name).read(at: 0, count: Int(info.size))
        if !allZero(bytes), let at = bytes.firstIndex(where: { $0 != 0 }) {
            throw TestFailure("arena \(info.name) holds old bytes at offset \(at) (\(describe(seen)))")
        }
    }
}

@Suite(.serialized, .disabled(if: threadSanitizerIsLoaded, "single-threaded: ThreadSanitizer has no race to look for here, and the plain and AddressSanitizer runs sweep it")) struct PowerLossMetadataTests {
    /// Images are checked as they are taken, against the tables before and after the step
    /// in flight; those are learnt first from a plain run of the same steps (provisioning
    /// is deterministic), then the steps run again on a simulated heap.
    private func runSwept(_ steps: [(String, (Heap) throws -> Void)]) throws -> PowerLossSimulator {
        let learnPath = tempPath("learn")
        defer { removeFile(learnPath) }
        var tables: [[ArenaInfo]] = []
        do {
            let heap = try Heap.create(path: learnPath, size: 32 << 20)
            tables.append(table(heap))
            for (_, step) in steps {
                try step(heap)
                tables.append(table(heap))
            }
        }
        let directory = try tempDirectory(), path = tempPath()
        defer { removeTree(directory); removeFile(path) }
        let simulator = PowerLossSimulator(mixedImages: PowerLossSettings.mixedImages(default: 4), seed: PowerLossSettings.seed(default: 1),
                                           directory: directory, checker: checkImage)
        allowedTables.withLock { $0 = [nil, tables[0]] }
        let heap = try Heap.create(path: path, size: 32 << 20, simulator: simulator)
        #expect(table(heap) == tables[0])
        for (index, (name, step)) in steps.enumerated() {
            allowedTables.withLock { $0 = [tables[index], tables[index + 1]] }
            try step(heap)
            guard table(heap) == tables[index + 1] else { throw TestFailure("\(name) gave another table than in the plain run") }
        }
        return simulator
    }

    @Test func everyFenceOfEveryKindOfUpdateLeavesTheTableBeforeOrAfter() throws {
        let simulator = try runSwept([
            ("create a", { _ = try $0.createArena(named: "a", size: 4 << 20) }),
            ("create b", { _ = try $0.createArena(named: "b", size: 2 << 20) }),
            ("fill b", { try $0.arena(named: "b").memcpyPersist(at: 0, pattern(2 << 20, seed: 9)) }),
            ("create c", { _ = try $0.createArena(named: "c", size: 2 << 20) }),
            ("grow a into a new extent past c", { try $0.resizeArena(named: "a", to: 6 << 20) }),
            ("destroy b", { try $0.destroyArena(named: "b") }),
            ("grow c into b's space", { try $0.resizeArena(named: "c", to: 4 << 20) }),
            ("grow a in place", { try $0.resizeArena(named: "a", to: 8 << 20) }),
            ("shrink a", { try $0.resizeArena(named: "a", to: 2 << 20) }),
            ("destroy c", { try $0.destroyArena(named: "c") }),
            ("create d", { _ = try $0.createArena(named: "d", size: 2 << 20) }),
            ("provision: create e and f, destroy d, grow a", {
                try $0.provision([.create(name: "e", size: 2 << 20), .create(name: "f", size: 4 << 20),
                                  .destroy(name: "d"), .resize(name: "a", size: 4 << 20)])
            }),
        ])
        try simulator.verify()
        // Two copies per update, and the zeroing of new space: at least 3 fences for each.
        #expect(simulator.crashPointsTaken >= 2 + 12 * 2)
        // Most points had words in flight: more than half of the all-old, all-new and
        // mixed images each could give (a point with none in flight gives the all-old only).
        #expect(simulator.imagesChecked > simulator.crashPointsTaken * (simulator.mixedImages + 2) / 2)
    }

    @Test func theRepairOfAReadWriteOpenLeavesTheTableWholeAtEveryFence() throws {
        for damaged in [UInt64(0), (32 << 20) - twoMiB] {  // the primary, then the secondary
            let path = tempPath(), directory = try tempDirectory()
            defer { removeFile(path); removeTree(directory) }
            let expected: [ArenaInfo]
            do {
                let heap = try Heap.create(path: path, size: 32 << 20)
                _ = try heap.createArena(named: "a", size: 4 << 20)
                expected = table(heap)
            }
            // One flipped byte in the copy's header: its checksum no longer matches.
            var bytes = try fileRange(path, offset: damaged + 8, count: 1)
            bytes[0] ^= 0xFF
            let handle = try #require(FileHandle(forWritingAtPath: path))
            try handle.seek(toOffset: damaged + 8)
            try handle.write(contentsOf: bytes)
            try handle.close()

            allowedTables.withLock { $0 = [expected] }
            let simulator = PowerLossSimulator(mixedImages: PowerLossSettings.mixedImages(default: 4), seed: PowerLossSettings.seed(default: 1),
                                           directory: directory, checker: checkImage)
            let heap = try Heap.open(path: path, simulator: simulator)
            #expect(heap.repairs.count == 1)
            try simulator.verify()
            #expect(simulator.crashPointsTaken >= 1)
        }
    }
}
