// The device layer: device-dax attributes from a fake sysfs tree, character devices
// classified through it, and the hand-made aligned mapping (the fallback for a libpmem
// mapping that is not aligned).

import DaxDevice
import DaxHeap
import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A fake sysfs tree: `<root>/dev/char/MAJ:MIN/{subsystem,size,align,device/dax_region/align}`.
struct FakeSysfs {
    let root: String
    init() { root = tempPath("sysfs") }

    func dir(_ major: UInt32, _ minor: UInt32) -> String { "\(root)/dev/char/\(major):\(minor)" }

    /// Writes the attributes given (nil: absent).
    func device(
        _ major: UInt32, _ minor: UInt32, subsystem: String? = "../../../bus/dax",
        size: String? = "33554432\n", align: String? = "2097152\n", regionAlign: String? = nil
    ) throws {
        let d = dir(major, minor)
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        if let subsystem { try FileManager.default.createSymbolicLink(atPath: "\(d)/subsystem", withDestinationPath: subsystem) }
        if let size { try writeText("\(d)/size", size) }
        if let align { try writeText("\(d)/align", align) }
        if let regionAlign {
            try FileManager.default.createDirectory(atPath: "\(d)/device/dax_region", withIntermediateDirectories: true)
            try writeText("\(d)/device/dax_region/align", regionAlign)
        }
    }

    func remove() { removeTree(root) }
}

@Suite(.serialized) struct DeviceTests {  // two tests lock /dev/zero, system-wide
    static let dax = "/dev/dax0.0"

    /// The attributes as a comparable value (DeviceDaxAttributes has no public init).
    struct Facts: Equatable { var size: UInt64; var alignment: UInt64 }

    static func facts(_ sysfs: FakeSysfs, _ major: UInt32 = 251, _ minor: UInt32 = 3) throws(DeviceError) -> Facts {
        let a = try read(sysfs, major, minor)
        return Facts(size: a.size, alignment: a.alignment)
    }

    static func read(_ sysfs: FakeSysfs, _ major: UInt32 = 251, _ minor: UInt32 = 3) throws(DeviceError) -> DeviceDaxAttributes {
        try DeviceDaxAttributes.read(major: major, minor: minor, sysfsRoot: sysfs.root, path: dax)
    }

    @Test func sizeAndAlign() throws {
        let sysfs = FakeSysfs()
        defer { sysfs.remove() }
        try sysfs.device(251, 3)
        #expect(try Self.facts(sysfs) == Self.Facts(size: 32 << 20, alignment: 2 << 20))
    }

    @Test func oneGiBAlignAndHexadecimal() throws {
        let sysfs = FakeSysfs()
        defer { sysfs.remove() }
        try sysfs.device(251, 3, size: "0x100000000\n", align: "1073741824\n")
        try sysfs.device(251, 4, size: "68719476736", align: "0x200000\n")
        #expect(try Self.facts(sysfs) == Self.Facts(size: 4 << 30, alignment: 1 << 30))
        #expect(try Self.facts(sysfs, 251, 4) == Self.Facts(size: 64 << 30, alignment: 2 << 20))
    }

    @Test func oldDaxClassIsDeviceDaxToo() throws {
        let sysfs = FakeSysfs()
        defer { sysfs.remove() }
        try sysfs.device(252, 0, subsystem: "../../../class/dax", align: "4096\n")
        #expect(try Self.facts(sysfs, 252, 0) == Self.Facts(size: 32 << 20, alignment: 4096))
    }

    @Test func regionAlignWhenTheDeviceHasNone() throws {
        let sysfs = FakeSysfs()
        defer { sysfs.remove() }
        try sysfs.device(251, 3, align: nil, regionAlign: "2097152\n")
        #expect(try Self.facts(sysfs) == Self.Facts(size: 32 << 20, alignment: 2 << 20))
        // An unreadable device align also falls back to the region's.
        try sysfs.device(251, 5, align: "n/a\n", regionAlign: "1073741824\n")
        #expect(try Self.facts(sysfs, 251, 5) == Self.Facts(size: 32 << 20, alignment: 1 << 30))
        // The device's own align wins when both exist.
        try sysfs.device(251, 6, align: "4096\n", regionAlign: "2097152\n")
        #expect(try Self.read(sysfs, 251, 6).alignment == 4096)
    }

    @Test func aCharacterDeviceOutsideDaxIsNotDeviceDax() throws {
        let sysfs = FakeSysfs()
        defer { sysfs.remove() }
        try sysfs.device(1, 3, subsystem: "../../../../class/mem")
        #expect(throws: DeviceError.notDeviceDax(path: Self.dax, reason: "character device 1:3 belongs to \"mem\", not dax")) {
            try Self.read(sysfs, 1, 3)
        }
        // No subsystem link at all, or no directory at all.
        try sysfs.device(1, 7, subsystem: nil)
        for minor: UInt32 in [7, 8] {
            let error = thrownError { _ = try Self.read(sysfs, 1, minor) }
            guard case .notDeviceDax(let path, let reason) = error as? DeviceError else {
                Issue.record("1:\(minor): expected notDeviceDax, got \(String(describing: error))")
                continue
            }
            #expect(path == Self.dax)
            #expect(reason.contains("no sysfs subsystem link"), "\(reason)")
        }
    }

    @Test func missingSize() throws {
        let sysfs = FakeSysfs()
        defer { sysfs.remove() }
        try sysfs.device(251, 3, size: nil)
        #expect(throws: DeviceError.sysfs(path: Self.dax, reason: "cannot read \(sysfs.dir(251, 3))/size: \(String(cString: strerror(ENOENT)))")) {
            try Self.read(sysfs)
        }
    }

    @Test(arguments: ["lots\n", "", "\n", "-1\n", "12 MiB\n", "0x\n", "99999999999999999999999\n"])
    func garbageSize(text: String) throws {
        let sysfs = FakeSysfs()
        defer { sysfs.remove() }
        try sysfs.device(251, 3, size: text)
        let error = thrownError { _ = try Self.read(sysfs) }
        guard case .sysfs(let path, let reason) = error as? DeviceError else {
            Issue.record("expected sysfs, got \(String(describing: error))")
            return
        }
        #expect(path == Self.dax)
        #expect(reason.hasPrefix("\(sysfs.dir(251, 3))/size holds ") && reason.hasSuffix("not a number"), "\(reason)")
    }

    /// A sysfs reason ends up in `HeapError.sysfs`'s description, which must be one line;
    /// the attribute's raw text (with its newline) must not be pasted in as it is.
    @Test func sysfsReasonIsOneLine() throws {
        let sysfs = FakeSysfs()
        defer { sysfs.remove() }
        try sysfs.device(251, 3, size: "lots\n")
        let error = thrownError { _ = try Self.read(sysfs) }
        guard case .sysfs(_, let reason) = error as? DeviceError else {
            Issue.record("expected sysfs, got \(String(describing: error))")
            return
        }
        #expect(!reason.contains("\n"), "the reason spans two lines: \(reason.debugDescription)")
        #expect(!HeapError.sysfs(path: Self.dax, reason: reason).description.contains("\n"))
    }

    @Test(arguments: ["3000000\n", "2048\n", "0\n", "6291456\n", "1\n"])
    func alignNotAPowerOfTwoOfAtLeast4096(text: String) throws {
        let sysfs = FakeSysfs()
        defer { sysfs.remove() }
        try sysfs.device(251, 3, align: text)
        let value = UInt64(text.dropLast())!
        #expect(throws: DeviceError.sysfs(path: Self.dax, reason: "alignment \(value) read from sysfs is not a power of two of at least 4096")) {
            try Self.read(sysfs)
        }
        // The same through the region fallback.
        try sysfs.device(251, 9, align: nil, regionAlign: text)
        #expect(throws: DeviceError.sysfs(path: Self.dax, reason: "alignment \(value) read from sysfs is not a power of two of at least 4096")) {
            try Self.read(sysfs, 251, 9)
        }
    }

    @Test func noAlignAnywhere() throws {
        let sysfs = FakeSysfs()
        defer { sysfs.remove() }
        try sysfs.device(251, 3, align: nil)
        let file = "\(sysfs.dir(251, 3))/device/dax_region/align"
        #expect(throws: DeviceError.sysfs(path: Self.dax, reason: "cannot read \(file): \(String(cString: strerror(ENOENT)))")) {
            try Self.read(sysfs)
        }
    }

    // MARK: - Character devices through a fake sysfs

    /// /dev/zero (1:5) made to look like a device-dax: its size and alignment come from
    /// the fake sysfs, and its geometry is checked like any device's. (/dev/zero can be
    /// mapped MAP_SHARED, so a read-only open maps it by hand.)
    @Test func aCharacterDeviceIsDescribedBySysfs() throws {
        let sysfs = FakeSysfs()
        defer { sysfs.remove() }
        var st = stat()
        try #require(stat("/dev/zero", &st) == 0 && (st.st_mode & S_IFMT) == S_IFCHR)
        try sysfs.device(1, 5, size: "33554432\n", align: "1073741824\n")
        let device = try MappedDevice.open(path: "/dev/zero", mode: .readOnly, sysfsRoot: sysfs.root)
        #expect(device.kind == .deviceDax)
        #expect(device.size == 32 << 20)
        #expect(device.alignment == 1 << 30)
        #expect(device.mode == .readOnly)
        #expect(device.persistence == .pmem, "device-dax is always flushed with CPU instructions")
        #expect(UInt(bitPattern: device.base) % (1 << 30) == 0, "mapped at \(device.base), not 1 GiB aligned")
        #expect(device.isZero(offset: 0, length: 32 << 20))
    }

    @Test func aCharacterDeviceWithABadGeometryIsRefused() throws {
        let sysfs = FakeSysfs()
        defer { sysfs.remove() }
        try sysfs.device(1, 5, size: "5242880\n")
        #expect(throws: DeviceError.sizeNotAligned(path: "/dev/zero", size: 5 << 20)) {
            try MappedDevice.open(path: "/dev/zero", mode: .readOnly, sysfsRoot: sysfs.root)
        }
        sysfs.remove()
        try sysfs.device(1, 5, size: "4194304\n")
        #expect(throws: DeviceError.tooSmall(path: "/dev/zero", size: 4 << 20)) {
            try MappedDevice.open(path: "/dev/zero", mode: .readOnly, sysfsRoot: sysfs.root)
        }
        sysfs.remove()
        // A device-dax has its own size: create with another one is refused.
        try sysfs.device(1, 5, size: "33554432\n")
        #expect(throws: DeviceError.sizeFixed(path: "/dev/zero", deviceSize: 32 << 20, requested: 64 << 20)) {
            try MappedDevice.create(path: "/dev/zero", size: 64 << 20, overwrite: true, sysfsRoot: sysfs.root)
        }
        sysfs.remove()
        try sysfs.device(1, 5, subsystem: "../../../../class/mem")
        #expect(throws: DeviceError.notDeviceDax(path: "/dev/zero", reason: "character device 1:5 belongs to \"mem\", not dax")) {
            try MappedDevice.open(path: "/dev/zero", mode: .readOnly, sysfsRoot: sysfs.root)
        }
    }
}

/// The hand-made aligned mapping. `forceManualMapping` is a process-wide switch: the test
/// is short and resets it in a defer. Tests running in parallel meanwhile just get the
/// same mapping by hand, which must work as well.
@Suite(.serialized) struct ManualMappingTests {
    @Test func heapOnTheHandMadeAlignedMapping() throws {
        let path = tempPath()
        defer { removeFile(path) }
        MappedDevice.forceManualMapping.store(true, ordering: .relaxed)
        defer { MappedDevice.forceManualMapping.store(false, ordering: .relaxed) }
        let forced = getenv("PMEM_IS_PMEM_FORCE").map { String(cString: $0) } == "1"
        let data = pattern(3 << 20, seed: 77)
        do {
            let heap = try Heap.create(path: path, size: 32 << 20)
            #expect(heap.persistence == (forced ? .pmem : .msync))
            let frag = try makeDiscontiguousArena(on: heap, named: "frag", extents: 2, tail: 2 << 20)
            try frag.memcpyPersist(at: 1 << 20, data)
            #expect(sameBytes(try frag.read(at: 1 << 20, count: 3 << 20), data), "frag.read(at: 1 << 20, count: 3 << 20) differs")
            #expect(heap.check().isHealthy)
        }
        do {
            let heap = try Heap.open(path: path)
            #expect(sameBytes(try heap.arena(named: "frag").read(at: 1 << 20, count: 3 << 20), data), "heap.arena(named: frag).read(at: 1 << 20, count: 3 << 20) differs")
            try heap.resizeArena(named: "frag", to: 8 << 20)
            #expect(allZero(try heap.arena(named: "frag").read(at: 6 << 20, count: 2 << 20)))
        }
        for mode in [AccessMode.readWrite, .readOnly] {
            let device = try MappedDevice.open(path: path, mode: mode)
            #expect(UInt(bitPattern: device.base) % UInt(MappedDevice.granularity) == 0)
            #expect(device.kind == .file)
            #expect(device.size == 32 << 20)
            #expect(device.persistence == (forced ? .pmem : .msync))
        }
        // And back to libpmem's mapping: the same heap opens the same.
        MappedDevice.forceManualMapping.store(false, ordering: .relaxed)
        let heap = try Heap.open(path: path)
        #expect(sameBytes(try heap.arena(named: "frag").read(at: 1 << 20, count: 3 << 20), data), "heap.arena(named: frag).read(at: 1 << 20, count: 3 << 20) differs")
    }
}
