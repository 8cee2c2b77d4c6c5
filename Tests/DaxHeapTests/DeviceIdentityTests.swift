// Device identity (issue 15, part 3; docs/FORMAT.md, "Device identity"): a heap on a
// device-dax records what sysfs shows of the device's physical layout, and open compares.
// The heap lives in a file under /dev/shm whose "device-dax" is described by a fake sysfs
// tree (the package-only `identityDevice` hook: the file's identity is read as that
// device number's), since a real character device that keeps its bytes across opens is
// not available to tests.

import DaxDevice
import DaxHeap
import DaxMetadata
import Foundation
import Logging
import Testing
#if canImport(Glibc)
import Glibc
#endif

private let size: UInt64 = 16 << 20
private let number = DeviceNumber(major: 251, minor: 3)
private let logger = Logger(label: "test")

/// One mapping range as sysfs shows it: hexadecimal start and end (inclusive), the page offset.
private struct Mapping {
    var start: UInt64
    var end: UInt64
    var pageOffset: UInt64
}

/// A sysfs tree laid out as the kernel's dax bus has it:
/// `devices/platform/hmem.0/{dax_region/{id,size},dax0.0/{subsystem,size,align,mappingN/...}}`
/// with `dev/char/251:3` a symlink to the device's directory.
private struct DaxSysfs {
    let root = tempPath("sysfs")
    var regionDir: String { "\(root)/devices/platform/hmem.0" }
    var deviceDir: String { "\(regionDir)/dax0.0" }

    /// Writes the tree anew. `unreadable`: files to make unreadable (a directory in their place:
    /// reading one fails, even as root, which a mode of 0400 would not stop).
    func write(regionID: UInt64? = 0, regionSize: UInt64? = 64 << 30, deviceSize: UInt64 = size, align: UInt64 = 2 << 20,
               mappings: [Mapping] = [Mapping(start: 0x1_0000_0000, end: 0x1_0000_0000 + size - 1, pageOffset: 0)],
               resource: UInt64? = nil, unreadable: [String] = []) throws {
        removeTree(root)
        let fm = FileManager.default
        try fm.createDirectory(atPath: "\(regionDir)/dax_region", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: deviceDir, withIntermediateDirectories: true)
        try fm.createDirectory(atPath: "\(root)/bus/dax", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: "\(root)/dev/char", withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: "\(root)/dev/char/\(number)", withDestinationPath: "../../devices/platform/hmem.0/dax0.0")
        try fm.createSymbolicLink(atPath: "\(deviceDir)/subsystem", withDestinationPath: "../../../../bus/dax")
        if let regionID { try writeText("\(regionDir)/dax_region/id", "\(regionID)\n") }
        if let regionSize { try writeText("\(regionDir)/dax_region/size", "\(regionSize)\n") }
        try writeText("\(deviceDir)/size", "\(deviceSize)\n")
        try writeText("\(deviceDir)/align", "\(align)\n")
        try writeText("\(deviceDir)/mapping", "")  // the write-only attribute that adds a range: not a range
        if let resource { try writeText("\(deviceDir)/resource", "0x\(String(resource, radix: 16))\n") }
        for (i, m) in mappings.enumerated() {
            let dir = "\(deviceDir)/mapping\(i)"
            try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try writeText("\(dir)/start", "0x\(String(m.start, radix: 16))\n")
            try writeText("\(dir)/end", "0x\(String(m.end, radix: 16))\n")
            try writeText("\(dir)/page_offset", m.pageOffset == 0 ? "0\n" : "0x\(String(m.pageOffset, radix: 16))\n")
        }
        for file in unreadable {
            let path = "\(root)/\(file)"
            try? fm.removeItem(atPath: path)
            try fm.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
    }

    func remove() { removeTree(root) }
}

private func create(_ path: String, _ sysfs: DaxSysfs, size: UInt64 = size) throws -> Heap {
    try Heap.create(path: path, size: size, overwrite: false, logger: logger, sysfsRoot: sysfs.root, faults: nil,
                    identityDevice: number)
}

private func open(_ path: String, _ sysfs: DaxSysfs, _ mode: HeapMode, accept: Bool = false) throws(HeapError) -> Heap {
    try Heap.open(path: path, mode: mode, logger: logger, sysfsRoot: sysfs.root, faults: nil,
                  acceptNewDeviceLayout: accept, identityDevice: number)
}

/// The version field of the copy at `offset`.
private func version(_ path: String, at offset: UInt64 = 0) throws -> UInt32 {
    let b = try fileRange(path, offset: offset + 8, count: 4)
    return UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
}

private func patch(_ path: String, at offset: UInt64, _ bytes: [UInt8]) throws {
    let handle = try #require(FileHandle(forWritingAtPath: path))
    try handle.seek(toOffset: offset)
    try handle.write(contentsOf: Data(bytes))
    try handle.close()
}

@Suite struct DeviceIdentityTests {
    // MARK: - Recording

    @Test func createRecordsTheLayoutAndAnUnchangedLayoutOpens() throws {
        let (path, sysfs) = (tempPath(), DaxSysfs())
        defer { removeFile(path); sysfs.remove() }
        try sysfs.write()
        do {
            let heap = try create(path, sysfs)
            try heap.createArena(named: "a", size: 2 << 20).memcpyPersist(at: 0, pattern(4096, seed: 5))
            #expect(heap.deviceLayoutState == .matches)
        }
        #expect(try version(path) == 2)
        #expect(try version(path, at: size - twoMiB) == 2)
        for mode in [HeapMode.readOnly, .readWrite] {
            let heap = try open(path, sysfs, mode)
            #expect(heap.deviceLayoutState == .matches, "\(mode)")
            #expect(heap.deviceLayoutChange == nil && heap.unverifiedDeviceLayout.isEmpty && heap.repairs.isEmpty)
            let identity = try #require(heap.deviceIdentity)
            #expect(identity.regionID == 0 && identity.regionSize == 64 << 30 && identity.alignment == 2 << 20)
            #expect(identity.deviceSize == size)
            #expect(identity.ranges == [DeviceMappingRange(deviceOffset: 0, physicalStart: 0x1_0000_0000, length: size)])
            #expect(heap.check().isHealthy)
            #expect(try heap.arena(named: "a").read(at: 0, count: 4096) == pattern(4096, seed: 5))
        }
        // A layout split into two ranges that map the same bytes to the same places is the same layout.
        try sysfs.write(mappings: [Mapping(start: 0x1_0000_0000, end: 0x1_0000_0000 + (4 << 20) - 1, pageOffset: 0),
                                   Mapping(start: 0x1_0040_0000, end: 0x1_0000_0000 + size - 1, pageOffset: (4 << 20) / 4096)])
        #expect(try open(path, sysfs, .readWrite).deviceLayoutState == .matches)
    }

    /// A file records no identity and stays format version 1, which older builds read.
    @Test func aFileRecordsNoIdentity() throws {
        let path = tempPath()
        defer { removeFile(path) }
        do {
            let heap = try Heap.create(path: path, size: size)
            #expect(heap.deviceIdentity == nil && heap.deviceLayoutState == .notRecorded)
        }
        #expect(try version(path) == 1)
        let heap = try Heap.open(path: path, acceptNewDeviceLayout: true)
        #expect(heap.repairs.isEmpty, "nothing to record on a file")
        #expect(heap.deviceIdentity == nil && heap.check().isHealthy)
    }

    // MARK: - A changed layout

    @Test func aChangedRegionIsReportedReadOnlyRefusedReadWriteAndRecordedWhenAccepted() throws {
        let (path, sysfs) = (tempPath(), DaxSysfs())
        defer { removeFile(path); sysfs.remove() }
        try sysfs.write()
        try create(path, sysfs).createArena(named: "a", size: 2 << 20)
        try sysfs.write(regionID: 1)
        let expected = HeapError.deviceLayoutChanged(path: path, differences: ["region id is 1, was 0"])
        let before = try fileBytes(path)
        do {
            let heap = try open(path, sysfs, .readOnly)
            #expect(heap.deviceLayoutState == .changed)
            #expect(heap.deviceLayoutChange == expected)
            #expect(heap.check().problems == [expected.description])
        }
        #expect(throws: expected) { _ = try open(path, sysfs, .readWrite) }
        #expect(throws: expected) { _ = try Heap.repair(path: path, acceptNewDeviceLayout: false, logger: logger, sysfsRoot: sysfs.root, identityDevice: number) }
        #expect(throws: expected) { _ = try Heap.grow(path: path, logger: logger, sysfsRoot: sysfs.root, faults: nil, identityDevice: number) }
        #expect(throws: expected) { _ = try Heap.shrink(path: path, to: 8 << 20, logger: logger, sysfsRoot: sysfs.root, faults: nil, identityDevice: number) }
        #expect(sameBytes(try fileBytes(path), before), "a refused open wrote")
        #expect(!expected.description.contains("\n") && expected.description.contains("--accept-new-device-layout"))

        let generation: UInt64
        do {
            let heap = try open(path, sysfs, .readWrite, accept: true)
            #expect(heap.repairs == ["recorded the device's current layout as the heap's identity (it differed: region id is 1, was 0)"])
            #expect(heap.deviceLayoutState == .matches && heap.deviceIdentity?.regionID == 1)
            generation = heap.generation
            #expect(heap.check().isHealthy)
        }
        let heap = try open(path, sysfs, .readWrite)
        #expect(heap.deviceLayoutState == .matches && heap.deviceIdentity?.regionID == 1 && heap.generation == generation)
        #expect(heap.arenas.map(\.name) == ["a"])
    }

    @Test func changedMappingRangesAlignmentAndRegionSizeAreEachNamed() throws {
        let (path, sysfs) = (tempPath(), DaxSysfs())
        defer { removeFile(path); sysfs.remove() }
        try sysfs.write()
        _ = try create(path, sysfs)
        // Re-created elsewhere in the region: the same size, other physical memory.
        try sysfs.write(mappings: [Mapping(start: 0x2_0000_0000, end: 0x2_0000_0000 + size - 1, pageOffset: 0)])
        #expect(try open(path, sysfs, .readOnly).deviceLayoutChange
                == .deviceLayoutChanged(path: path, differences: ["device offset 0 is at physical 0x200000000, was at physical 0x100000000"]))
        // Only the second half moved.
        try sysfs.write(mappings: [Mapping(start: 0x1_0000_0000, end: 0x1_0000_0000 + (8 << 20) - 1, pageOffset: 0),
                                   Mapping(start: 0x3_0000_0000, end: 0x3_0000_0000 + (8 << 20) - 1, pageOffset: (8 << 20) / 4096)])
        #expect(try open(path, sysfs, .readOnly).deviceLayoutChange
                == .deviceLayoutChanged(path: path, differences: ["device offset 8388608 is at physical 0x300000000, was at physical 0x100800000"]))
        try sysfs.write(regionSize: 32 << 30, align: 1 << 30)
        #expect(try open(path, sysfs, .readOnly).deviceLayoutChange
                == .deviceLayoutChanged(path: path, differences: ["region size is 34359738368 bytes, was 68719476736 bytes", "alignment is 1 GiB, was 2 MiB"]))
        #expect(throws: HeapError.self) { _ = try open(path, sysfs, .readWrite) }
    }

    /// A device grown by the operator keeps its first ranges and gets more: the heap's part
    /// is unchanged, and `grow` records the grown layout.
    @Test func aGrownDeviceMatchesAndGrowRecordsTheNewRanges() throws {
        let (path, sysfs) = (tempPath(), DaxSysfs())
        defer { removeFile(path); sysfs.remove() }
        try sysfs.write()
        _ = try create(path, sysfs)
        try setFileSize(path, 2 * size)
        let grown = [Mapping(start: 0x1_0000_0000, end: 0x1_0000_0000 + size - 1, pageOffset: 0),
                     Mapping(start: 0x5_0000_0000, end: 0x5_0000_0000 + size - 1, pageOffset: size / 4096)]
        try sysfs.write(deviceSize: 2 * size, mappings: grown)
        #expect(try open(path, sysfs, .readOnly).deviceLayoutState == .matches)
        try Heap.grow(path: path, logger: logger, sysfsRoot: sysfs.root, faults: nil, identityDevice: number)
        let heap = try open(path, sysfs, .readWrite)
        #expect(heap.heapSize == 2 * size && heap.deviceLayoutState == .matches)
        #expect(heap.deviceIdentity?.ranges?.count == 2 && heap.deviceIdentity?.deviceSize == 2 * size)
    }

    // MARK: - What sysfs does not let be read

    @Test func unreadableMappingFilesRecordTheRestAndAreNotVerified() throws {
        let (path, sysfs) = (tempPath(), DaxSysfs())
        defer { removeFile(path); sysfs.remove() }
        // Created without the ranges (sysfs shows them to root only): the rest is recorded.
        try sysfs.write(unreadable: ["devices/platform/hmem.0/dax0.0/mapping0/start"])
        do {
            let heap = try create(path, sysfs)
            let identity = try #require(heap.deviceIdentity)
            #expect(identity.ranges == nil && identity.regionID == 0 && identity.regionSize == 64 << 30)
        }
        // The ranges readable now, and other than they were: not recorded, so not compared.
        try sysfs.write(mappings: [Mapping(start: 0x2_0000_0000, end: 0x2_0000_0000 + size - 1, pageOffset: 0)])
        do {
            let heap = try open(path, sysfs, .readWrite)
            #expect(heap.deviceLayoutState == .matches && heap.unverifiedDeviceLayout.isEmpty && heap.repairs.isEmpty)
        }
        // Accepting records what can be read now.
        do {
            let heap = try open(path, sysfs, .readWrite, accept: true)
            #expect(heap.repairs == ["recorded the device's layout as the heap's identity again (more of it could be read than before)"])
            #expect(heap.deviceIdentity?.ranges?.count == 1)
        }
        // Recorded, but unreadable now: compared as far as it can be, and said so.
        try sysfs.write(mappings: [Mapping(start: 0x2_0000_0000, end: 0x2_0000_0000 + size - 1, pageOffset: 0)],
                        unreadable: ["devices/platform/hmem.0/dax0.0/mapping0/end", "devices/platform/hmem.0/dax_region/id"])
        let heap = try open(path, sysfs, .readWrite)
        #expect(heap.deviceLayoutState == .matches)
        #expect(heap.unverifiedDeviceLayout.count == 2)
        #expect(heap.unverifiedDeviceLayout.first { $0.hasPrefix("region id: ") }?.contains("dax_region/id") == true, "\(heap.unverifiedDeviceLayout)")
        #expect(heap.unverifiedDeviceLayout.first { $0.hasPrefix("mapping ranges: ") }?.contains("mapping0/end") == true, "\(heap.unverifiedDeviceLayout)")
        #expect(heap.check().isHealthy, "an unverified field is no problem")
    }

    /// Before Linux 5.10 a device has no mappingN: its one range starts at `resource`.
    @Test func withoutMappingRangesTheResourceIsTheOneRange() throws {
        let sysfs = DaxSysfs()
        defer { sysfs.remove() }
        try sysfs.write(mappings: [], resource: 0x4_0000_0000)
        let layout = try DeviceDaxLayout.read(device: number, sysfsRoot: sysfs.root, path: "/dev/dax0.0")
        #expect(layout.ranges == [DeviceDaxRange(deviceOffset: 0, physicalStart: 0x4_0000_0000, length: size)])
        try sysfs.write(regionID: nil, mappings: [], resource: nil)
        let bare = try DeviceDaxLayout.read(device: number, sysfsRoot: sysfs.root, path: "/dev/dax0.0")
        #expect(bare.ranges == nil && bare.regionID == nil && bare.regionSize == 64 << 30)
        #expect(bare.unreadable.count == 2, "\(bare.unreadable)")
    }

    // MARK: - Heaps made before format version 2

    @Test func aVersionOneHeapOnADeviceDaxOpensAndRecordsItsIdentityOnlyWhenAsked() throws {
        let (path, sysfs) = (tempPath(), DaxSysfs())
        defer { removeFile(path); sysfs.remove() }
        try sysfs.write()
        try Heap.create(path: path, size: size).createArena(named: "a", size: 2 << 20)  // as an older build made it
        #expect(try version(path) == 1)
        do {
            let heap = try open(path, sysfs, .readWrite)
            #expect(heap.deviceLayoutState == .notRecorded && heap.deviceIdentity == nil && heap.repairs.isEmpty)
            try heap.resizeArena(named: "a", to: 4 << 20)
            #expect(heap.check().isHealthy)
        }
        #expect(try version(path) == 1, "a read-write open or an update does not change the format version by itself")
        do {
            let heap = try open(path, sysfs, .readWrite, accept: true)
            #expect(heap.repairs == ["recorded the device's layout as the heap's identity (none was recorded; the metadata is format version 2 from now on)"])
        }
        #expect(try version(path) == 2 && version(path, at: size - twoMiB) == 2)
        let heap = try open(path, sysfs, .readOnly)
        #expect(heap.deviceLayoutState == .matches && heap.arenas.first?.size == 4 << 20)
    }

    // MARK: - The last-resort rule

    /// Without a valid primary, the copy in the device's last block is used whatever its
    /// uuid (docs/FORMAT.md, "Limits"). Another heap's copy there (a device-dax grown over
    /// memory that held it) carries that heap's layout, so it is no longer taken silently:
    /// open reports the changed layout, and a read-write open, which would rewrite the
    /// primary from it, is refused.
    @Test func anotherHeapsCopyInTheLastBlockIsReportedAndNotRepairedFrom() throws {
        let (path, other, sysfs) = (tempPath(), tempPath("other"), DaxSysfs())
        defer { removeFile(path); removeFile(other); sysfs.remove() }
        try sysfs.write(mappings: [Mapping(start: 0x7_0000_0000, end: 0x7_0000_0000 + size - 1, pageOffset: 0)])
        try create(other, sysfs).createArena(named: "theirs", size: 2 << 20)
        try sysfs.write()
        try create(path, sysfs).createArena(named: "ours", size: 2 << 20)
        // The other heap's secondary lands in our last block, and our primary is lost.
        try patch(path, at: size - twoMiB, try fileRange(other, offset: size - twoMiB, count: 4096))
        try patch(path, at: 100, [0xFF, 0xFF])
        let before = try fileBytes(path)
        let heap = try open(path, sysfs, .readOnly)
        #expect(heap.arenas.map(\.name) == ["theirs"])
        #expect(heap.deviceLayoutChange == .deviceLayoutChanged(
            path: path, differences: ["device offset 0 is at physical 0x100000000, was at physical 0x700000000"]))
        #expect(throws: HeapError.self) { _ = try open(path, sysfs, .readWrite) }
        #expect(sameBytes(try fileBytes(path), before))
    }
}
