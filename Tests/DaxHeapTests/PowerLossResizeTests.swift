// Every fence of a grow and of a shrink (and of the repairs that finish an interrupted
// one), crashed under the power-loss simulator. Each crash image must open read-only to
// exactly the heap before or after (its size and its arena table), with arena "a"'s data
// intact; Heap.repair(path:) must make it healthy at that size (a shrink's images are the
// whole old device: the heap may record less than the image holds); and the operator's
// next step must work from there: cutting the device to the heap's size, or growing the
// heap over the whole device. Once the operation's first write is fenced, only the new
// heap may come back (docs/FORMAT.md, "Device growth and shrink").
//
// Mutations this sweep was seen to catch (made on purpose, then reverted):
// - No roll-forward (open ignores a newer copy in the device's last block): grow, fence 2,
//   all-old image: "read-only open gave [16M: a:4M b:8M]; expected one of [[32M: a:4M b:8M]]".
// - A shrink writing its new secondary before the primary: fence 2, all-old image: "read-only
//   open gave [32M: a:4M b:2M]; expected one of [[12M: a:4M b:2M]]".
// - No scan for the secondary when the primary is torn: second shrink before the cut,
//   fence 1, mixed image 0: "both metadata copies ... are bad (primary: checksum mismatch
//   ...; secondary: no DaxHeap magic)".
// (A grow writing the primary first is not caught, and rightly: while the primary is torn
// the scan finds the old secondary, so that order is crash-safe too, through the scan.)

import DaxHeap
import DaxTestSupport
import Foundation
import Testing

/// What a crash image holds: the heap's size and its arenas by id.
private struct Shape: Equatable, CustomStringConvertible {
    var heapSize: UInt64
    var arenas: [ArenaInfo]

    init(_ heap: Heap) {
        heapSize = heap.heapSize
        arenas = heap.arenas.sorted { $0.id < $1.id }
    }

    var description: String { "[\(heapSize >> 20)M: \(arenas.map { "\($0.name):\($0.size >> 20)M" }.joined(separator: " "))]" }
}

/// The shapes a crash image may have: before or after the operation in flight; from the
/// fence that ends the operation's first write on, only after (0: no such rule).
private let allowedShapes = Locked<(shapes: [Shape], onlyAfterFromFence: Int)>(([], 0))
/// Written to arena "a" at offset 0 before the operation; every image must keep it.
private let payload = pattern(1 << 20, seed: 21)

private func expectPayload(_ heap: Heap, _ what: String) throws {
    guard try heap.arena(named: "a").read(at: 0, count: payload.count) == payload else {
        throw TestFailure("\(what): arena a lost its data")
    }
}

/// The shapes allowed at this crash point.
private func allowed(at point: CrashEvent) -> [Shape] {
    let (shapes, fence) = allowedShapes.withLock { $0 }
    if fence > 0, case .fence(let n) = point, n > fence { return [shapes.last!] }
    return shapes
}

private func checkResizeImage(_ image: CrashImage) throws {
    let allowed = allowed(at: image.point)
    guard let deviceSize = fileSize(image.path) else { throw TestFailure("cannot stat \(image.path)") }
    let seen: Shape
    do {
        let heap = try Heap.open(path: image.path, mode: .readOnly)
        seen = Shape(heap)
        try expectPayload(heap, "read-only open")
    } catch let error as HeapError {
        throw TestFailure("read-only open failed: \(error); expected one of \(allowed)")
    }
    guard allowed.contains(seen) else { throw TestFailure("read-only open gave \(seen); expected one of \(allowed)") }
    // What `daxheap check --repair` does, on a device larger than its heap too.
    try Heap.repair(path: image.path)
    do {
        let heap = try Heap.open(path: image.path, mode: .readOnly)
        guard Shape(heap) == seen else { throw TestFailure("after the repair: \(Shape(heap)), before it: \(seen)") }
        let report = heap.check()
        guard report.isHealthy else { throw TestFailure("not healthy after the repair (\(seen)): \(report.problems)") }
    }
    guard seen.heapSize < deviceSize else {
        let heap = try Heap.open(path: image.path)
        guard heap.repairs.isEmpty, heap.check().isHealthy else { throw TestFailure("read-write open of \(seen): \(heap.repairs)") }
        return
    }
    try expectGrowWorks(image.path, from: seen, deviceSize: deviceSize)
    // Cut the device to the heap's size: the heap must be whole within it.
    try setFileSize(image.path, seen.heapSize)
    let heap = try Heap.open(path: image.path)
    guard Shape(heap) == seen, heap.repairs.isEmpty, heap.check().isHealthy else {
        throw TestFailure("cut to \(seen.heapSize >> 20)M: \(Shape(heap)), repairs \(heap.repairs), problems \(heap.check().problems)")
    }
    try expectPayload(heap, "after the cut")
}

/// Growing a copy of the image over its whole device gives the same arenas at the device's size.
private func expectGrowWorks(_ path: String, from seen: Shape, deviceSize: UInt64) throws {
    let copy = path + ".grown"
    defer { removeFile(copy) }
    try writeFile(copy, try fileBytes(path))
    try Heap.grow(path: copy)
    let heap = try Heap.open(path: copy)
    guard heap.heapSize == deviceSize, Shape(heap).arenas == seen.arenas, heap.check().isHealthy else {
        throw TestFailure("grow from \(seen): \(Shape(heap)), problems \(heap.check().problems)")
    }
    try expectPayload(heap, "after a grow")
}

@Suite(.serialized, .disabled(if: threadSanitizerIsLoaded, "single-threaded: ThreadSanitizer has no race to look for here, and the plain and AddressSanitizer runs sweep it")) struct PowerLossResizeTests {
    /// A heap of `size` bytes with arena "a" (4 MiB, the payload at its start) and arena
    /// "b" of `b` bytes after it. Closed on return.
    private func makeHeap(_ path: String, size: UInt64, b: UInt64) throws -> Shape {
        let heap = try Heap.create(path: path, size: size)
        try heap.createArena(named: "a", size: 4 << 20).memcpyPersist(at: 0, payload)
        try heap.createArena(named: "b", size: b)
        return Shape(heap)
    }

    /// Runs `operation` with a new simulator that checks every fence's images against
    /// `allowed` (before, after); once fence `firstWrite` (the end of the operation's first
    /// metadata write) has passed, only after is allowed: the first write decides.
    private func sweep(allowed: [Shape], firstWrite: Int = 0, _ operation: (PowerLossSimulator) throws -> Void) throws -> PowerLossSimulator {
        let directory = try tempDirectory()
        defer { removeTree(directory) }
        allowedShapes.withLock { $0 = (allowed, firstWrite) }
        let simulator = PowerLossSimulator(mixedImages: PowerLossSettings.mixedImages(default: 4), seed: PowerLossSettings.seed(default: 1),
                                           directory: directory, checker: checkResizeImage)
        try operation(simulator)
        try simulator.verify()
        return simulator
    }

    @Test func everyFenceOfAGrowLeavesTheOldOrTheNewSize() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let before = try makeHeap(path, size: 16 << 20, b: 8 << 20)
        // The device grew first (the simulator follows one device of one size).
        try setFileSize(path, 32 << 20)
        var after = before
        after.heapSize = 32 << 20
        let simulator = try sweep(allowed: [before, after], firstWrite: 1) { simulator in
            let result = try Heap.grow(path: path, simulator: simulator)
            #expect(result.size == 32 << 20 && result.warnings.isEmpty)
        }
        // The new secondary, the primary, the old secondary cleared: a fence each at least.
        #expect(simulator.crashPointsTaken >= 3)
        #expect(simulator.imagesChecked > simulator.crashPointsTaken * (simulator.mixedImages + 2) / 3)
        #expect(Shape(try Heap.open(path: path)) == after)
    }

    @Test func everyFenceOfAShrinkLeavesTheOldOrTheNewSize() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let before = try makeHeap(path, size: 32 << 20, b: 2 << 20)
        var after = before
        after.heapSize = 12 << 20
        let simulator = try sweep(allowed: [before, after], firstWrite: 1) { simulator in
            let result = try Heap.shrink(path: path, to: 12 << 20, simulator: simulator)
            #expect(result.size == 12 << 20 && result.warnings.isEmpty)
        }
        #expect(simulator.crashPointsTaken >= 3)
        #expect(Shape(try Heap.open(path: path, mode: .readOnly)) == after)
    }

    /// A second shrink before the device was cut: the heap's secondary is not in the
    /// device's last block, so while the primary is torn, open finds the heap by the scan.
    @Test func everyFenceOfASecondShrinkBeforeTheCutLeavesTheOldOrTheNewSize() throws {
        let path = tempPath()
        defer { removeFile(path) }
        var before = try makeHeap(path, size: 32 << 20, b: 2 << 20)
        try Heap.shrink(path: path, to: 24 << 20)
        before.heapSize = 24 << 20
        var after = before
        after.heapSize = 12 << 20
        let simulator = try sweep(allowed: [before, after], firstWrite: 1) { simulator in
            try Heap.shrink(path: path, to: 12 << 20, simulator: simulator)
        }
        #expect(simulator.crashPointsTaken >= 3)
    }

    /// A grow interrupted after its new secondary was durable: the read-write open that
    /// finishes it (the primary rewritten, the old secondary cleared) keeps the new size
    /// at every fence.
    @Test func everyFenceOfTheRepairAfterAnInterruptedGrowKeepsTheNewSize() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let before = try makeHeap(path, size: 16 << 20, b: 8 << 20)
        try setFileSize(path, 32 << 20)
        let oldPrimary = try fileRange(path, offset: 0, count: 4096)
        let oldSecondary = try fileRange(path, offset: (16 << 20) - twoMiB, count: 4096)
        try Heap.grow(path: path)
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.write(contentsOf: Data(oldPrimary))
        try handle.seek(toOffset: (16 << 20) - twoMiB)
        try handle.write(contentsOf: Data(oldSecondary))
        try handle.close()
        var after = before
        after.heapSize = 32 << 20
        let simulator = try sweep(allowed: [after]) { simulator in
            let heap = try Heap.open(path: path, simulator: simulator)
            #expect(heap.repairs.count == 2, "\(heap.repairs)")
        }
        #expect(simulator.crashPointsTaken >= 2)
    }

    /// A shrink whose new secondary was never written (the primary records the new size):
    /// Heap.repair, on the device not yet cut, keeps the new size at every fence.
    @Test func everyFenceOfTheRepairAfterAnInterruptedShrinkKeepsTheNewSize() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let before = try makeHeap(path, size: 32 << 20, b: 2 << 20)
        let faults = MetadataFaults([.init(copy: .secondary, storedBytes: 0, kind: .io, times: 1)])
        try Heap.shrink(path: path, to: 12 << 20, logger: .init(label: "test"), sysfsRoot: "/sys", faults: faults)
        var after = before
        after.heapSize = 12 << 20
        let simulator = try sweep(allowed: [after]) { simulator in
            let repairs = try Heap.repair(path: path, simulator: simulator)
            #expect(repairs.count == 1, "\(repairs)")
        }
        #expect(simulator.crashPointsTaken >= 1)
    }
}
