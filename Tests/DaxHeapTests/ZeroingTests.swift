// Zeroing space that is about to join an arena must be durable before the arena table
// says so, in every persistence mode: on a file, the punched hole is a change of the file
// system's metadata that only fdatasync makes durable, also when libpmem maps the file as
// persistent memory (fs-dax with MAP_SYNC), where stores need no msync but a hole does.
//
// The device is opened with a system-call table whose entries record the calls and can
// fail on purpose; libpmem's answer to "is this persistent memory" is set by the test.

@testable import DaxDevice
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct ZeroingTests {
    /// The calls a device made through its table, in order, and the ones to fail.
    final class Calls: Sendable {
        let made = Mutex<[String]>([])
        let failing: [String: Int32]
        let isPmem: Bool

        init(isPmem: Bool, failing: [String: Int32] = [:]) {
            self.isPmem = isPmem
            self.failing = failing
        }

        func record(_ call: String) -> Result<Void, SystemCallError> {
            made.withLock { $0.append(call) }
            if let errno = failing[call] { return .failure(SystemCallError(call, errno: errno)) }
            return .success(())
        }

        /// The real calls, recorded, with libpmem's verdict replaced by `isPmem`.
        var table: SyscallTable {
            SyscallTable(
                pmemMapFile: { path in
                    self.made.withLock { $0.append("pmem_map_file") }
                    return SyscallTable.system.pmemMapFile(path).map { base, length, _ in (base, length, self.isPmem) }
                },
                punchHole: { fd, offset, length in
                    self.record("fallocate").flatMap { SyscallTable.system.punchHole(fd, offset, length) }
                },
                fdatasync: { fd in self.record("fdatasync").flatMap { SyscallTable.system.fdatasync(fd) } })
        }
    }

    static let size: UInt64 = 16 << 20
    static let range = (offset: UInt64(4 << 20), length: UInt64(4 << 20))

    /// A device file of `size` bytes whose range to zero, and a page either side of it,
    /// hold data; opened read-write through `calls`.
    func device(_ path: String, _ calls: Calls) throws -> MappedDevice {
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0o644)
        try #require(fd >= 0)
        defer { close(fd) }
        try #require(ftruncate(fd, off_t(Self.size)) == 0)
        let data = [UInt8](repeating: 0xA5, count: Int(Self.range.length) + 2 * 4096)
        try #require(pwrite(fd, data, data.count, off_t(Self.range.offset - 4096)) == data.count)
        let device = try MappedDevice.open(path: path, mode: .readWrite, syscalls: calls.table)
        #expect(!device.isZero(offset: Self.range.offset, length: Self.range.length))
        calls.made.withLock { $0.removeAll() }
        return device
    }

    @Test(arguments: [PersistenceMode.msync, .pmem])
    func aPunchedHoleIsSyncedInEveryMode(mode: PersistenceMode) throws {
        let path = tempPath("zeroing")
        defer { removeFile(path) }
        let calls = Calls(isPmem: mode == .pmem)
        let device = try device(path, calls)
        #expect(device.persistence == mode)
        try device.zero(offset: Self.range.offset, length: Self.range.length)
        // zero returns only after the hole is durable: the sync follows the punch.
        #expect(calls.made.withLock { $0 } == ["fallocate", "fdatasync"])
        #expect(device.isZero(offset: Self.range.offset, length: Self.range.length))
        expectNeighboursKept(device)
    }

    @Test(arguments: [PersistenceMode.msync, .pmem])
    func aFailedSyncIsReported(mode: PersistenceMode) throws {
        let path = tempPath("zeroing")
        defer { removeFile(path) }
        let calls = Calls(isPmem: mode == .pmem, failing: ["fdatasync": EIO])
        let device = try device(path, calls)
        #expect(throws: DeviceError.system(path: path, SystemCallError("fdatasync", errno: EIO))) {
            try device.zero(offset: Self.range.offset, length: Self.range.length)
        }
    }

    /// A file system that cannot punch holes gets stores instead, made durable the
    /// mode's way (pmem_memset_persist, or memset and msync); no fdatasync is needed.
    @Test(arguments: [PersistenceMode.msync, .pmem])
    func withoutHolesTheRangeIsWrittenWithZeros(mode: PersistenceMode) throws {
        let path = tempPath("zeroing")
        defer { removeFile(path) }
        let calls = Calls(isPmem: mode == .pmem, failing: ["fallocate": EOPNOTSUPP])
        let device = try device(path, calls)
        try device.zero(offset: Self.range.offset, length: Self.range.length)
        #expect(calls.made.withLock { $0 } == ["fallocate"])
        #expect(device.isZero(offset: Self.range.offset, length: Self.range.length))
        expectNeighboursKept(device)
    }

    /// The pages either side of the range still hold their data.
    func expectNeighboursKept(_ device: MappedDevice, sourceLocation: SourceLocation = #_sourceLocation) {
        for offset in [Self.range.offset - 4096, Self.range.offset + Self.range.length] {
            let page = UnsafeRawBufferPointer(start: device.base + Int(offset), count: 4096)
            #expect(page.allSatisfy { $0 == 0xA5 }, "page at \(offset) changed", sourceLocation: sourceLocation)
        }
    }
}
