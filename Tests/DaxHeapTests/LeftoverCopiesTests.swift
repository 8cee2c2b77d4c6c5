// What check reports beyond the heap's own two copies and its arenas (issue 15): old
// metadata copies of the heap left at an old last-block position, and bad blocks past the
// heap's end on a device larger than the heap.

import DaxDevice
import DaxHeap
import DaxMetadata
import Foundation
import Logging
import Testing
#if canImport(Glibc)
import Glibc
#endif

private let MiB: UInt64 = 1 << 20

private func patch(_ path: String, at offset: UInt64, _ bytes: [UInt8]) throws {
    let handle = try #require(FileHandle(forWritingAtPath: path))
    try handle.seek(toOffset: offset)
    try handle.write(contentsOf: Data(bytes))
    try handle.close()
}

@Suite struct LeftoverCopiesTests {
    /// A heap grown 16 -> 24 -> 32 MiB, with the 24 MiB heap's secondary (cleared by the
    /// second grow) put back at 22 MiB, as a clear that failed or a crash before it leaves
    /// it. Returns that copy's bytes and generation.
    private func heapWithAnOldCopy(_ path: String) throws -> (copy: [UInt8], generation: UInt64) {
        try Heap.create(path: path, size: 16 * MiB).createArena(named: "a", size: 2 * MiB)
        try setFileSize(path, 24 * MiB)
        try Heap.grow(path: path)
        let copy = try fileRange(path, offset: 22 * MiB, count: 4096)
        let generation = try Heap.open(path: path, mode: .readOnly).generation
        try setFileSize(path, 32 * MiB)
        try Heap.grow(path: path)
        #expect(try fileRange(path, offset: 22 * MiB, count: 8) == [0, 0, 0, 0, 0, 0, 0, 0])
        try patch(path, at: 22 * MiB, copy)
        return (copy, generation)
    }

    @Test func anOldCopyInFreeSpaceIsReportedAndRepairClearsIt() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let (_, generation) = try heapWithAnOldCopy(path)
        let expected = OldMetadataCopy(deviceOffset: 22 * MiB, generation: generation, recordedSize: 24 * MiB)
        do {
            let report = try Heap.open(path: path, mode: .readOnly).check()
            #expect(report.oldCopies == [expected])
            #expect(report.problems == [expected.description])
            #expect(!expected.description.contains("\n") && expected.description.contains("daxheap check --repair"))
        }
        // An open (read-write) does not look for it; the explicit repair does.
        #expect(try Heap.open(path: path).repairs.isEmpty)
        let repaired = try Heap.repair(path: path)
        #expect(repaired == ["cleared an old metadata copy at device offset \(22 * MiB) (generation \(generation)), left by an interrupted grow or shrink"])
        #expect(try fileRange(path, offset: 22 * MiB, count: 8) == [0, 0, 0, 0, 0, 0, 0, 0])
        let report = try Heap.open(path: path, mode: .readOnly).check()
        #expect(report.isHealthy && report.oldCopies.isEmpty)
    }

    /// Past the heap's end (shrunk, the device not cut yet), where open reads only the
    /// device's last block: check still finds it, and Heap.repair(path:) clears it there too.
    @Test func anOldCopyPastTheHeapsEndIsReportedAndCleared() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let (copy, generation) = try heapWithAnOldCopy(path)
        try Heap.repair(path: path)
        try Heap.shrink(path: path, to: 16 * MiB)
        try patch(path, at: 22 * MiB, copy)
        let heap = try Heap.open(path: path, mode: .readOnly)
        #expect(heap.unusedDeviceSize == 16 * MiB)
        #expect(heap.check().oldCopies == [OldMetadataCopy(deviceOffset: 22 * MiB, generation: generation, recordedSize: 24 * MiB)])
        try heap.close()
        #expect(try Heap.repair(path: path).count == 1)
        #expect(try Heap.open(path: path, mode: .readOnly).check().isHealthy)
    }

    /// A copy inside an arena is the arena's data, not looked at; another heap's copy is
    /// not this heap's.
    @Test func copiesInArenasAndOfOtherHeapsAreNotReported() throws {
        let (path, other) = (tempPath(), tempPath("other"))
        defer { removeFile(path); removeFile(other) }
        let (copy, _) = try heapWithAnOldCopy(path)
        try Heap.repair(path: path)
        let heap = try Heap.open(path: path)
        try heap.createArena(named: "b", size: 26 * MiB)  // [4, 30) MiB, over 22 MiB
        try heap.arena(named: "b").memcpyPersist(at: 18 * MiB, copy)
        #expect(heap.check().isHealthy)
        try heap.destroyArena(named: "b")
        // On a file the destroy punched the arena's blocks out (ReleaseTests), copy and all;
        // a device-dax keeps its bytes, as writing the copy back does here.
        #expect(heap.check().oldCopies.isEmpty)
        try patch(path, at: 22 * MiB, copy)
        // The instance repair clears what check finds, too.
        #expect(heap.check().oldCopies.count == 1)
        #expect(try heap.repair().count == 1 && heap.check().isHealthy)
        try heap.close()
        // Another heap's copy at a self-consistent position.
        try Heap.create(path: other, size: 24 * MiB)
        try patch(path, at: 22 * MiB, try fileRange(other, offset: 22 * MiB, count: 4096))
        #expect(try Heap.open(path: path, mode: .readOnly).check().isHealthy)
    }

    // MARK: - Bad blocks past the heap's end

    @Test func badBlocksPastTheHeapsEndAreReported() throws {
        let path = tempPath()
        defer { removeFile(path) }
        try Heap.create(path: path, size: 16 * MiB).close()
        try setFileSize(path, 24 * MiB)
        let reported = [BadRange(offset: 15 * MiB, length: 2 * MiB), BadRange(offset: 20 * MiB, length: 4096)]
        let heap = try Heap.open(path: path, mode: .readOnly, logger: Logger(label: "test"), sysfsRoot: "/sys", faults: nil,
                                 reportedBadRanges: reported)
        let expected = [
            BadBlock(deviceOffset: 15 * MiB, length: MiB, location: .secondaryMetadata),
            BadBlock(deviceOffset: 16 * MiB, length: MiB, location: .pastHeapEnd),
            BadBlock(deviceOffset: 20 * MiB, length: 4096, location: .pastHeapEnd),
        ]
        #expect(try heap.badBlocks() == expected)
        let report = heap.check()
        #expect(report.badBlocks == expected)
        #expect(report.problems.contains("bad block at device offset \(20 * MiB), 4096 bytes, past the heap's end (unused device space)"), "\(report.problems)")
    }
}
