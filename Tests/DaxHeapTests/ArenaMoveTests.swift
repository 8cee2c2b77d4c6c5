// Heap.moveArena (issue 15, optional part): an arena's bytes past a new end move into free
// space below it, so that a shrink can proceed; refusals change nothing; and every fence of
// a move, crashed under the power-loss simulator, leaves the arena where it was or where it
// moved, with its bytes.
//
// Mutations the sweep was seen to catch (made on purpose in ArenaMove.swift, swept, then
// reverted; figures with 2 mixed images, seed 1; the unmutated move takes 3 crash points,
// 12 images):
// - The metadata update before the copy: fence 1, all-new image: "an arena lost its bytes".
// - The copy stored, never flushed (copyMemory for guardedMemcpyPersist): 5 of 8 images
//   fail, fence 1 (all-new, tables only) and fence 2 (all-old, all-new, both mixtures):
//   "an arena lost its bytes". The checker before the tables-only image: 3 of 8 (fence 2).
// - The copy flushed, not fenced (memcpyNoDrain): 1 of 8, fence 1, all-new, tables only.
//   The checker before it: 0 of 8 (the mixtures must take the new value of all 3 words the
//   switch changes, and 2 tries at 1 in 8 missed); the test failed only because the move
//   took 2 crash points, not 3.
// - The same with the fence moved before the copy (the crash points are 3 again): 1 of 9,
//   fence 2, all-new, tables only. The checker before it: 0 of 9, the test passed.

import DaxHeap
import DaxMetadata
import DaxTestSupport
import Foundation
import Testing

private let MiB: UInt64 = 1 << 20
private let payloadA = pattern(1 << 20, seed: 31)
private let payloadB = pattern(Int(6 * MiB), seed: 32)

/// A heap of `scale` × 32 MiB (scale 1 or 1/2 as `half`): "a" 4 MiB at [2, 6) MiB, free
/// [6, 22) MiB, "b" 6 MiB at [22, 28) MiB (past the usable end of a 16 MiB heap); halved:
/// "a" 2 MiB, free [4, 10), "b" 2 MiB at [10, 12) (past that of an 10 MiB heap). Each holds
/// a payload. Closed on return.
private func makeHeap(_ path: String, half: Bool = false) throws {
    let heap = try Heap.create(path: path, size: half ? 16 * MiB : 32 * MiB)
    try heap.createArena(named: "a", size: half ? 2 * MiB : 4 * MiB).memcpyPersist(at: 0, payloadA)
    try heap.createArena(named: "filler", size: half ? 6 * MiB : 16 * MiB)
    let b = half ? 2 * MiB : 6 * MiB
    try heap.createArena(named: "b", size: b).memcpyPersist(at: 0, Array(payloadB.prefix(Int(b))))
    try heap.destroyArena(named: "filler")
}

private func expectPayloads(_ heap: Heap) throws -> Bool {
    let b = try heap.arena(named: "b")
    return try heap.arena(named: "a").read(at: 0, count: payloadA.count) == payloadA
        && b.read(at: 0, count: Int(b.size)) == Array(payloadB.prefix(Int(b.size)))
}

@Suite struct ArenaMoveTests {
    @Test func aMovedArenaKeepsItsBytesAndTheShrinkThenProceeds() throws {
        let path = tempPath()
        defer { removeFile(path) }
        try makeHeap(path)
        let id = try Heap.open(path: path, mode: .readOnly).arena(named: "b").id
        #expect(throws: HeapError.self) { try Heap.shrink(path: path, to: 16 * MiB) }
        let move = try Heap.moveArena(path: path, named: "b", below: 16 * MiB)
        #expect(move.movedBytes == 6 * MiB)
        #expect(move.extents.map { [$0.deviceOffset, $0.arenaOffset, $0.length] } == [[6 * MiB, 0, 6 * MiB]])
        do {
            let heap = try Heap.open(path: path, mode: .readOnly)
            #expect(try expectPayloads(heap) && heap.check().isHealthy)
            #expect(try heap.arena(named: "b").id == id, "the arena keeps its id")
        }
        try Heap.shrink(path: path, to: 16 * MiB)
        try setFileSize(path, 16 * MiB)
        let heap = try Heap.open(path: path)
        #expect(try expectPayloads(heap) && heap.check().isHealthy)
    }

    /// An extent across the limit keeps its part below; the rest is split over the gaps.
    @Test func anExtentAcrossTheLimitMovesOnlyItsPartPastIt() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let data = pattern(Int(10 * MiB), seed: 33)
        do {
            let heap = try Heap.create(path: path, size: 32 * MiB)
            try heap.createArena(named: "a", size: 2 * MiB)  // [2, 4)
            try heap.createArena(named: "f1", size: 2 * MiB)  // [4, 6)
            try heap.createArena(named: "a2", size: 2 * MiB)  // [6, 8)
            try heap.createArena(named: "f2", size: 4 * MiB)  // [8, 12)
            try heap.createArena(named: "b", size: 10 * MiB).memcpyPersist(at: 0, data)  // [12, 22)
            try heap.destroyArena(named: "f1")
            try heap.destroyArena(named: "f2")
        }
        // Below 16 MiB (limit 14 MiB): b keeps [12, 14); its 8 MiB past the limit go to the
        // gaps [4, 6) and [8, 12)... which hold only 6 MiB: refused, nothing changed.
        let before = try fileBytes(path)
        #expect(throws: HeapError.noSpace(requested: 8 * MiB, available: 6 * MiB)) {
            try Heap.moveArena(path: path, named: "b", below: 16 * MiB)
        }
        #expect(sameBytes(try fileBytes(path), before))
        // Below 18 MiB (limit 16 MiB): b keeps [12, 16), 6 MiB move, split over both gaps.
        let move = try Heap.moveArena(path: path, named: "b", below: 18 * MiB)
        #expect(move.movedBytes == 6 * MiB)
        #expect(move.extents.map { [$0.deviceOffset, $0.arenaOffset, $0.length] }
                == [[12 * MiB, 0, 4 * MiB], [4 * MiB, 4 * MiB, 2 * MiB], [8 * MiB, 6 * MiB, 4 * MiB]])
        let heap = try Heap.open(path: path)
        #expect(try heap.arena(named: "b").read(at: 0, count: data.count) == data)
        #expect(heap.check().isHealthy)
        try heap.close()
        try Heap.shrink(path: path, to: 18 * MiB)
    }

    @Test func refusalsAndNothingToDoChangeNothing() throws {
        let path = tempPath()
        defer { removeFile(path) }
        try makeHeap(path)
        let before = try fileBytes(path)
        #expect(throws: HeapError.unknownArena("zz")) { try Heap.moveArena(path: path, named: "zz", below: 16 * MiB) }
        #expect(throws: HeapError.deviceSizeNotAligned(path: path, size: 15 * MiB)) { try Heap.moveArena(path: path, named: "b", below: 15 * MiB) }
        #expect(throws: HeapError.deviceTooSmall(path: path, size: 4 * MiB)) { try Heap.moveArena(path: path, named: "b", below: 4 * MiB) }
        #expect(throws: HeapError.sizeAboveHeap(path: path, requested: 64 * MiB, heapSize: 32 * MiB)) {
            try Heap.moveArena(path: path, named: "b", below: 64 * MiB)
        }
        let heap = try Heap.open(path: path)
        #expect(throws: HeapError.inUse(path: path)) { try Heap.moveArena(path: path, named: "b", below: 16 * MiB) }
        try heap.close()
        let move = try Heap.moveArena(path: path, named: "a", below: 16 * MiB)
        #expect(move.movedBytes == 0)
        #expect(sameBytes(try fileBytes(path), before))
    }
}

/// What a crash image holds: each arena's extents.
private let shapes = Locked<[[ArenaInfo]]>([])
/// The all-old image of the crash point being checked (the simulator hands a point's images
/// to the checker in order: all-old, all-new, then the mixtures).
private let allOldImage = Locked<[UInt8]?>(nil)

/// Each image as it is, and with the all-new image, the "tables only" image too: the
/// metadata blocks (the primary copy in block 0, the secondary in the last block) of the
/// all-new image over the all-old one. Every word there holds its durable or its live
/// value, so the simulator's rules allow it; it is the image in which the table's switch
/// reached the media and the copied bytes did not. The random mixtures find it only by
/// luck: they must take the new value of each of the few words the switch changes
/// (3 of them, 1 mixture in 8), and the sweep takes 2 per crash point.
private func checkMoveImage(_ image: CrashImage) throws {
    if case .allOld = image.kind { allOldImage.withLock { $0 = nil } }
    let bytes = try fileBytes(image.path)
    switch image.kind {
    case .allOld:
        allOldImage.withLock { $0 = bytes }
    case .allNew:
        guard var tablesOnly = allOldImage.withLock({ $0 }), tablesOnly.count == bytes.count else { break }
        let block = Int(Geometry.blockSize)
        for range in [0 ..< block, bytes.count - block ..< bytes.count] { tablesOnly[range] = bytes[range] }
        if tablesOnly != bytes {
            let path = image.path + ".tables-only"
            defer { removeFile(path) }
            try writeFile(path, tablesOnly)
            do { try checkMoveImage(at: path) } catch { throw TestFailure("the all-new image's metadata blocks over the all-old image: \(error)") }
        }
    case .mixed:
        break
    }
    try checkMoveImage(at: image.path)
}

private func checkMoveImage(at path: String) throws {
    let allowed = shapes.withLock { $0 }
    let heap = try Heap.open(path: path, mode: .readOnly)
    let seen = heap.arenas
    guard allowed.contains(seen) else { throw TestFailure("read-only open gave \(seen.map(\.extents)); expected one of \(allowed.map { $0.map(\.extents) })") }
    guard try expectPayloads(heap) else { throw TestFailure("an arena lost its bytes (\(seen.map(\.extents)))") }
    try heap.close()
    try Heap.repair(path: path)
    let repaired = try Heap.open(path: path, mode: .readOnly)
    guard repaired.arenas == seen, repaired.check().isHealthy else { throw TestFailure("after the repair: \(repaired.check().problems)") }
}

@Suite(.serialized, .disabled(if: threadSanitizerIsLoaded, "single-threaded: ThreadSanitizer has no race to look for here, and the plain and AddressSanitizer runs sweep it")) struct PowerLossMoveTests {
    @Test func everyFenceOfAMoveLeavesTheArenaWhereItWasOrWhereItMoved() throws {
        let path = tempPath()
        defer { removeFile(path) }
        try makeHeap(path, half: true)
        let before = try Heap.open(path: path, mode: .readOnly).arenas
        let copy = path + ".after"
        defer { removeFile(copy) }
        try writeFile(copy, try fileBytes(path))
        try Heap.moveArena(path: copy, named: "b", below: 10 * MiB)
        let after = try Heap.open(path: copy, mode: .readOnly).arenas
        #expect(before != after)
        shapes.withLock { $0 = [before, after] }
        let directory = try tempDirectory()
        defer { removeTree(directory) }
        let simulator = PowerLossSimulator(mixedImages: 2, directory: directory, checker: checkMoveImage)
        try Heap.moveArena(path: path, named: "b", below: 10 * MiB, simulator: simulator)
        let failures = simulator.failures
        print("PowerLossMoveTests: \(simulator.crashPointsTaken) crash points, \(simulator.imagesChecked) images, \(failures.count) failures"
              + failures.prefix(8).map { "\n  \($0.point), \($0.kind): \($0.reason)" }.joined())
        try simulator.verify()
        // The copy, then the two metadata copies: a fence each at least.
        #expect(simulator.crashPointsTaken >= 3)
        #expect(try Heap.open(path: path, mode: .readOnly).arenas == after)
    }
}
