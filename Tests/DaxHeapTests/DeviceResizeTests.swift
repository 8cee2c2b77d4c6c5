// Device growth and shrink (issue 15) through the library: Heap.grow, Heap.shrink,
// Heap.repair(path:), and the open rule for a device larger than its heap
// (docs/FORMAT.md, "Device growth and shrink"), on real files under /dev/shm.

import DaxHeap
import DaxMetadata
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

private let heapSize: UInt64 = 16 << 20
private let grownSize: UInt64 = 32 << 20

/// A 16 MiB heap whose usable region [2, 14) MiB is full: "a" [2, 6) MiB holding a
/// pattern, "b" [6, 14) MiB ending at the usable end (its highest extent can grow in place
/// once the heap grows). Closed on return.
private func makeFullHeap(_ path: String) throws -> [ArenaInfo] {
    let heap = try Heap.create(path: path, size: heapSize)
    try heap.createArena(named: "a", size: 4 << 20).memcpyPersist(at: 0, pattern(4 << 20, seed: 3))
    try heap.createArena(named: "b", size: 8 << 20).memcpyPersist(at: 0, pattern(64 << 10, seed: 4))
    #expect(heap.availableSize == 0)
    return heap.arenas
}

/// The arenas and data `makeFullHeap` made, checked on `heap`.
private func expectFullHeapData(_ heap: Heap, sourceLocation: SourceLocation = #_sourceLocation) throws {
    #expect(try heap.arena(named: "a").read(at: 0, count: 4 << 20) == pattern(4 << 20, seed: 3), sourceLocation: sourceLocation)
    #expect(try heap.arena(named: "b").read(at: 0, count: 64 << 10) == pattern(64 << 10, seed: 4), sourceLocation: sourceLocation)
}

/// The 8 bytes at `offset` of the file: a copy's magic where one lives.
private func magic(_ path: String, at offset: UInt64) throws -> [UInt8] { try fileRange(path, offset: offset, count: 8) }

private let daxHeapMagic = MetadataCopy.magic

@Suite struct DeviceResizeTests {
    // MARK: - Grow

    @Test func growAfterTruncateKeepsArenasAndTheHighestExtentGrowsInPlace() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let arenas = try makeFullHeap(path)
        try setFileSize(path, grownSize)
        // The device's new bytes hold old data, as a re-sized device-dax may: an arena must
        // still read zero there.
        let stale = pattern(Int(grownSize - heapSize - twoMiB), seed: 99)
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.seek(toOffset: heapSize)
        try handle.write(contentsOf: Data(stale))
        try handle.close()

        let result = try Heap.grow(path: path)
        #expect(result.previousSize == heapSize && result.size == grownSize && result.deviceSize == grownSize)
        #expect(result.repairs.isEmpty && result.warnings.isEmpty)
        // The old secondary is cleared: no open can take it again.
        #expect(try magic(path, at: heapSize - twoMiB) == [0, 0, 0, 0, 0, 0, 0, 0])
        #expect(try magic(path, at: grownSize - twoMiB) == daxHeapMagic)

        let heap = try Heap.open(path: path)
        #expect(heap.heapSize == grownSize && heap.unusedDeviceSize == 0)
        #expect(heap.arenas == arenas)
        #expect(heap.usableSize == grownSize - 2 * twoMiB && heap.availableSize == grownSize - heapSize)
        try expectFullHeapData(heap)
        // b's highest extent ends where the old secondary was: it extends in place, over
        // the old secondary's block and the new space, which read zero.
        try heap.resizeArena(named: "b", to: 24 << 20)
        let b = try heap.arena(named: "b")
        #expect(try b.info.extents.count == 1)
        #expect(allZero(try b.read(at: 8 << 20, count: 16 << 20)))
        try expectFullHeapData(heap)
        #expect(heap.check().isHealthy, "\(heap.check().problems)")
        #expect(heap.availableSize == 0)
    }

    @Test func growOfAHeapThatSpansItsDeviceChangesNothing() throws {
        let path = tempPath()
        defer { removeFile(path) }
        _ = try makeFullHeap(path)
        let before = try FileImage(path)
        let result = try Heap.grow(path: path)
        #expect(result.size == heapSize && result.previousSize == heapSize && result.warnings.isEmpty)
        #expect(try FileImage(path) == before)
    }

    @Test func growIsRefusedWhileTheHeapIsOpen() throws {
        let path = tempPath()
        defer { removeFile(path) }
        _ = try makeFullHeap(path)
        try setFileSize(path, grownSize)
        let before = try FileImage(path)
        let reader = try Heap.open(path: path, mode: .readOnly)
        #expect(throws: HeapError.inUse(path: path)) { try Heap.grow(path: path) }
        #expect(throws: HeapError.inUse(path: path)) { try Heap.shrink(path: path, to: 8 << 20) }
        withExtendedLifetime(reader) {}
        #expect(try FileImage(path) == before)
    }

    // MARK: - A device larger than its heap

    @Test func aGrownDeviceOpensReadOnlyAndRefusesReadWrite() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let arenas = try makeFullHeap(path)
        try setFileSize(path, grownSize)
        let before = try FileImage(path)
        do {
            let heap = try Heap.open(path: path, mode: .readOnly)
            #expect(heap.deviceSize == grownSize && heap.heapSize == heapSize && heap.unusedDeviceSize == grownSize - heapSize)
            #expect(heap.usableSize == heapSize - 2 * twoMiB)
            #expect(heap.arenas == arenas)
            #expect(heap.check().isHealthy)
            try expectFullHeapData(heap)
        }
        let error = thrownError { _ = try Heap.open(path: path) }
        #expect(error as? HeapError == .deviceLargerThanHeap(path: path, heapSize: heapSize, deviceSize: grownSize))
        #expect((error as? HeapError)?.description.contains("daxheap grow \(path)") == true)
        #expect(try FileImage(path) == before)
    }

    /// The primary damaged on a device that grew before its heap did: the device's last
    /// block holds no copy, so the secondary is found by scanning down to the end of the
    /// heap it records; grow then repairs the primary and grows.
    @Test func aDamagedPrimaryOnAGrownDeviceIsFoundByTheScan() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let arenas = try makeFullHeap(path)
        try setFileSize(path, grownSize)
        var checksum = try fileRange(path, offset: UInt64(MetadataCopy.checksumOffset), count: 1)
        checksum[0] ^= 0xFF
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.seek(toOffset: UInt64(MetadataCopy.checksumOffset))
        try handle.write(contentsOf: Data(checksum))
        try handle.close()
        do {
            let heap = try Heap.open(path: path, mode: .readOnly)
            #expect(heap.heapSize == heapSize && heap.arenas == arenas)
            #expect(heap.metadataStatus.primary.state == .corrupt)
            #expect(heap.metadataStatus.secondary.state == .ok)
            try expectFullHeapData(heap)
        }
        #expect(throws: HeapError.deviceLargerThanHeap(path: path, heapSize: heapSize, deviceSize: grownSize)) {
            _ = try Heap.open(path: path)
        }
        let result = try Heap.grow(path: path)
        #expect(result.repairs.count == 1 && result.repairs[0].contains("rewrote the primary"), "\(result.repairs)")
        let heap = try Heap.open(path: path)
        #expect(heap.heapSize == grownSize && heap.arenas == arenas && heap.check().isHealthy)
        try expectFullHeapData(heap)
    }

    /// A primary with no magic at all is not "damaged": with no copy at the device's end
    /// either, the device is no heap, and nothing is scanned for (a wiped device must not
    /// come back as the heap whose secondary is still somewhere in it).
    @Test func aWipedPrimaryIsNotScannedPast() throws {
        let path = tempPath()
        defer { removeFile(path) }
        _ = try makeFullHeap(path)
        try setFileSize(path, grownSize)
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.write(contentsOf: Data(count: Int(twoMiB)))
        try handle.close()
        #expect(throws: HeapError.notADaxHeapDevice(path: path)) { _ = try Heap.open(path: path, mode: .readOnly) }
    }

    /// A grow interrupted after its first write (the new secondary is durable, the primary
    /// and the old secondary are as before): open rolls it forward, and a read-write open
    /// rewrites the primary and clears the old secondary.
    @Test func anInterruptedGrowRollsForwardAndItsLeftoverIsCleared() throws {
        let path = tempPath(), before = tempPath("before")
        defer { removeFile(path); removeFile(before) }
        let arenas = try makeFullHeap(path)
        try setFileSize(path, grownSize)
        let oldPrimary = try fileRange(path, offset: 0, count: 4096)
        let oldSecondary = try fileRange(path, offset: heapSize - twoMiB, count: 4096)
        try Heap.grow(path: path)
        // Put the primary and the old secondary back as they were before the grow.
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.write(contentsOf: Data(oldPrimary))
        try handle.seek(toOffset: heapSize - twoMiB)
        try handle.write(contentsOf: Data(oldSecondary))
        try handle.close()
        do {
            let heap = try Heap.open(path: path, mode: .readOnly)
            #expect(heap.heapSize == grownSize && heap.arenas == arenas)
            #expect(heap.metadataStatus.primary.state == .stale)
            #expect(heap.metadataStatus.secondary.state == .ok)
        }
        let heap = try Heap.open(path: path)
        #expect(heap.repairs.count == 2, "\(heap.repairs)")
        #expect(heap.repairs.first?.contains("rewrote the primary") == true)
        #expect(heap.repairs.last?.contains("cleared an old metadata copy at device offset \(heapSize - twoMiB)") == true)
        #expect(try magic(path, at: heapSize - twoMiB) == [0, 0, 0, 0, 0, 0, 0, 0])
        #expect(heap.check().isHealthy)
        try expectFullHeapData(heap)
    }

    // MARK: - Shrink

    /// A 32 MiB heap with one 2 MiB arena "a". Closed on return.
    private func makeOneArenaHeap(_ path: String) throws -> [ArenaInfo] {
        let heap = try Heap.create(path: path, size: grownSize)
        try heap.createArena(named: "a", size: 2 << 20)
        return heap.arenas
    }

    /// A 32 MiB heap: "a" [2, 10) MiB, "b" [10, 14) MiB, "c" [14, 16) MiB.
    private func makeWideHeap(_ path: String) throws -> [ArenaInfo] {
        let heap = try Heap.create(path: path, size: grownSize)
        try heap.createArena(named: "a", size: 8 << 20).memcpyPersist(at: 0, pattern(4 << 20, seed: 5))
        try heap.createArena(named: "b", size: 4 << 20)
        try heap.createArena(named: "c", size: 2 << 20)
        return heap.arenas
    }

    @Test func shrinkIsRefusedWithArenasInTheWayThenAllowedOnceTheyAreGone() throws {
        let path = tempPath()
        defer { removeFile(path) }
        _ = try makeWideHeap(path)
        let before = try FileImage(path)
        // New usable end: 6 MiB. a has [6, 10) past it, b all 4 MiB, c all 2 MiB.
        let error = thrownError { try Heap.shrink(path: path, to: 8 << 20) }
        #expect(error as? HeapError == .arenasPastNewEnd(path: path, size: 8 << 20, arenas: [
            ArenaPastEnd(name: "a", bytesPastEnd: 4 << 20), ArenaPastEnd(name: "b", bytesPastEnd: 4 << 20),
            ArenaPastEnd(name: "c", bytesPastEnd: 2 << 20),
        ]))
        let line = (error as? HeapError)?.description ?? ""
        #expect(line.contains("arena \"a\" has 4 MiB, arena \"b\" has 4 MiB, arena \"c\" has 2 MiB past its new usable end"), "\(line)")
        #expect(try FileImage(path) == before)
        do {
            let heap = try Heap.open(path: path)
            try heap.destroyArena(named: "b")
            try heap.destroyArena(named: "c")
            try heap.resizeArena(named: "a", to: 4 << 20)
        }
        let arenas = try Heap.open(path: path, mode: .readOnly).arenas
        let result = try Heap.shrink(path: path, to: 8 << 20)
        #expect(result.previousSize == grownSize && result.size == 8 << 20 && result.deviceSize == grownSize)
        #expect(result.repairs.isEmpty && result.warnings.isEmpty)
        // The old secondary, past the heap's end now, is cleared.
        #expect(try magic(path, at: grownSize - twoMiB) == [0, 0, 0, 0, 0, 0, 0, 0])
        do {
            let heap = try Heap.open(path: path, mode: .readOnly)
            #expect(heap.heapSize == 8 << 20 && heap.unusedDeviceSize == grownSize - (8 << 20) && heap.arenas == arenas)
            #expect(heap.check().isHealthy)
        }
        #expect(throws: HeapError.deviceLargerThanHeap(path: path, heapSize: 8 << 20, deviceSize: grownSize)) {
            _ = try Heap.open(path: path)
        }
        // The operator cuts the device; the heap is whole at its new size.
        try setFileSize(path, 8 << 20)
        let heap = try Heap.open(path: path)
        #expect(heap.arenas == arenas && heap.repairs.isEmpty && heap.check().isHealthy)
        #expect(try heap.arena(named: "a").read(at: 0, count: 4 << 20) == pattern(4 << 20, seed: 5))
    }

    @Test func shrinkRefusesBadSizesChangingNothing() throws {
        let path = tempPath()
        defer { removeFile(path) }
        _ = try makeWideHeap(path)
        let before = try FileImage(path)
        let cases: [(UInt64, HeapError)] = [
            ((16 << 20) + 4096, .deviceSizeNotAligned(path: path, size: (16 << 20) + 4096)),
            (4 << 20, .deviceTooSmall(path: path, size: 4 << 20)),
            (0, .deviceTooSmall(path: path, size: 0)),
            (34 << 20, .sizeAboveHeap(path: path, requested: 34 << 20, heapSize: grownSize)),
            (1 << 40, .sizeAboveHeap(path: path, requested: 1 << 40, heapSize: grownSize)),
        ]
        for (size, expected) in cases {
            #expect(throws: expected) { try Heap.shrink(path: path, to: size) }
        }
        let same = try Heap.shrink(path: path, to: grownSize)
        #expect(same.size == grownSize && same.previousSize == grownSize)
        #expect(try FileImage(path) == before)
    }

    /// Grow takes a shrink back before the device is cut.
    @Test func growUndoesAShrinkNotYetCut() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let arenas = try makeOneArenaHeap(path)
        try Heap.shrink(path: path, to: 8 << 20)
        let result = try Heap.grow(path: path)
        #expect(result.previousSize == 8 << 20 && result.size == grownSize)
        let heap = try Heap.open(path: path)
        #expect(heap.arenas == arenas && heap.availableSize == grownSize - 2 * twoMiB - twoMiB && heap.check().isHealthy)
    }

    // MARK: - Failed writes (injected)

    @Test func aGrowWhoseFirstWriteFailsLeavesTheOldSize() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let arenas = try makeFullHeap(path)
        try setFileSize(path, grownSize)
        // The whole new secondary reaches the file, then msync says EIO: it must not win.
        let faults = MetadataFaults([.init(copy: .secondary, storedBytes: .max, kind: .io, times: 1)])
        #expect(throws: HeapError.metadataWriteFailed(path: path, copy: "new secondary", reason: "msync: \(String(cString: strerror(EIO))) (errno \(EIO))")) {
            try Heap.grow(path: path, logger: .init(label: "test"), sysfsRoot: "/sys", faults: faults)
        }
        do {
            let heap = try Heap.open(path: path, mode: .readOnly)
            #expect(heap.heapSize == heapSize && heap.arenas == arenas && heap.check().isHealthy)
        }
        // And the grow can be done once the device is fixed.
        try Heap.grow(path: path)
        #expect(try Heap.open(path: path).heapSize == grownSize)
    }

    @Test func aGrowWhosePrimaryWriteFailsStandsInTheNewSecondary() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let arenas = try makeFullHeap(path)
        try setFileSize(path, grownSize)
        let faults = MetadataFaults([.init(copy: .primary, storedBytes: 10, kind: .media, times: 1)])
        let result = try Heap.grow(path: path, logger: .init(label: "test"), sysfsRoot: "/sys", faults: faults)
        #expect(result.size == grownSize)
        #expect(result.warnings.count == 1 && result.warnings[0].contains("stands in the secondary metadata copy alone"), "\(result.warnings)")
        do {
            let heap = try Heap.open(path: path, mode: .readOnly)
            #expect(heap.heapSize == grownSize && heap.arenas == arenas)
            // Its first bytes (magic, version) were the old copy's: it is torn or still old.
            #expect(heap.metadataStatus.primary.state != .ok)
        }
        let repairs = try Heap.repair(path: path)
        #expect(repairs.count == 1 && repairs[0].contains("rewrote the primary"), "\(repairs)")
        let heap = try Heap.open(path: path)
        #expect(heap.check().isHealthy && heap.heapSize == grownSize)
        try expectFullHeapData(heap)
    }

    @Test func aShrinkWhosePrimaryWriteFailsLeavesTheOldSize() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let arenas = try makeOneArenaHeap(path)
        // The new primary reaches the file whole, then msync fails: it is put back.
        let faults = MetadataFaults([.init(copy: .primary, storedBytes: .max, kind: .io, times: 1)])
        #expect(throws: HeapError.metadataWriteFailed(path: path, copy: "primary", reason: "msync: \(String(cString: strerror(EIO))) (errno \(EIO))")) {
            try Heap.shrink(path: path, to: 8 << 20, logger: .init(label: "test"), sysfsRoot: "/sys", faults: faults)
        }
        let heap = try Heap.open(path: path)
        #expect(heap.heapSize == grownSize && heap.arenas == arenas && heap.repairs.isEmpty && heap.check().isHealthy)
    }

    @Test func aShrinkWhoseSecondaryWriteFailsStandsAndIsRepairedBeforeTheCut() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let arenas = try makeOneArenaHeap(path)
        let faults = MetadataFaults([.init(copy: .secondary, storedBytes: 0, kind: .io, times: 1)])
        let result = try Heap.shrink(path: path, to: 8 << 20, logger: .init(label: "test"), sysfsRoot: "/sys", faults: faults)
        #expect(result.size == 8 << 20 && result.warnings.count == 1, "\(result.warnings)")
        do {
            let heap = try Heap.open(path: path, mode: .readOnly)
            #expect(heap.heapSize == 8 << 20 && heap.arenas == arenas)
            #expect(heap.metadataStatus.secondary.state == .corrupt)
        }
        // The device is larger than the heap, yet the repair works.
        let repairs = try Heap.repair(path: path)
        #expect(repairs.count == 1 && repairs[0].contains("rewrote the secondary"), "\(repairs)")
        try setFileSize(path, 8 << 20)
        let heap = try Heap.open(path: path)
        #expect(heap.repairs.isEmpty && heap.check().isHealthy && heap.arenas == arenas)
    }
}
