// One thin wrapper per C call, each returning a Result with the errno, in the manner of
// swift-system's Internals/Syscalls.swift. Nothing here interprets an error: the
// typed-throwing API in Device.swift says what went wrong and what to do.

import CDaxShims
import CPMem
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed C call: its name and errno.
public struct SystemCallError: Error, Equatable, Sendable, CustomStringConvertible {
    public var call: String
    public var errno: Int32

    public init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    /// strerror text of the errno.
    public var message: String { String(cString: strerror(errno)) }
    public var description: String { "\(call): \(message) (errno \(errno))" }
}

enum Syscall {
    /// Runs `body` until it returns something other than -1 with EINTR.
    @inline(__always)
    static func retrying<T: BinaryInteger>(_ call: String, _ body: () -> T) -> Result<T, SystemCallError> {
        while true {
            let r = body()
            if r != -1 { return .success(r) }
            if errno != EINTR { return .failure(SystemCallError(call, errno: errno)) }
        }
    }

    static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0) -> Result<Int32, SystemCallError> {
        retrying("open") { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    static func close(_ fd: Int32) {
        _ = Glibc.close(fd)  // the descriptor is gone whatever close returns (Linux)
    }

    static func fstat(_ fd: Int32) -> Result<Glibc.stat, SystemCallError> {
        var st = Glibc.stat()
        return retrying("fstat") { Glibc.fstat(fd, &st) }.map { _ in st }
    }

    static func stat(_ path: String) -> Result<Glibc.stat, SystemCallError> {
        var st = Glibc.stat()
        return retrying("stat") { statPath(path, &st) }.map { _ in st }
    }

    static func flock(_ fd: Int32, _ operation: Int32) -> Result<Void, SystemCallError> {
        retrying("flock") { lockFile(fd, operation) }.map { _ in () }
    }

    static func ftruncate(_ fd: Int32, _ length: UInt64) -> Result<Void, SystemCallError> {
        retrying("ftruncate") { Glibc.ftruncate(fd, off_t(length)) }.map { _ in () }
    }

    /// fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE): the range reads as zeros after.
    static func punchHole(_ fd: Int32, _ offset: UInt64, _ length: UInt64) -> Result<Void, SystemCallError> {
        retrying("fallocate") { CDaxShims_punch_hole(fd, offset, length) }.map { _ in () }
    }

    static func madvise(_ address: UnsafeMutableRawPointer, _ length: Int, _ advice: Int32) -> Result<Void, SystemCallError> {
        retrying("madvise") { Glibc.madvise(address, length, advice) }.map { _ in () }
    }

    static func fdatasync(_ fd: Int32) -> Result<Void, SystemCallError> {
        retrying("fdatasync") { Glibc.fdatasync(fd) }.map { _ in () }
    }

    static func mmap(
        _ address: UnsafeMutableRawPointer?, _ length: Int, _ protection: Int32, _ flags: Int32,
        _ fd: Int32, _ offset: Int
    ) -> Result<UnsafeMutableRawPointer, SystemCallError> {
        let p = Glibc.mmap(address, length, protection, flags, fd, off_t(offset))
        guard let p, p != MAP_FAILED else { return .failure(SystemCallError("mmap", errno: errno)) }
        return .success(p)
    }

    static func munmap(_ address: UnsafeMutableRawPointer, _ length: Int) {
        _ = Glibc.munmap(address, length)
    }

    static func readlink(_ path: String) -> Result<String, SystemCallError> {
        var buffer = [CChar](repeating: 0, count: 4096)
        return retrying("readlink") { Glibc.readlink(path, &buffer, buffer.count - 1) }.map { n in
            String(decoding: buffer[0 ..< n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    /// Reads a small text file whole (sysfs attributes).
    static func readSmallFile(_ path: String) -> Result<String, SystemCallError> {
        open(path, O_RDONLY).flatMap { fd in
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 4096)
            return retrying("read") { Glibc.read(fd, &buffer, buffer.count) }.map { n in
                String(decoding: buffer[0 ..< n], as: UTF8.self)
            }
        }
    }

    // libpmem

    static func pmemMapFile(_ path: String) -> Result<(UnsafeMutableRawPointer, Int, Bool), SystemCallError> {
        var length = 0
        var isPmem: Int32 = 0
        // len 0 and no flags: map the whole existing file or device (device-dax requires it).
        guard let p = pmem_map_file(path, 0, 0, 0, &length, &isPmem) else {
            return .failure(SystemCallError("pmem_map_file", errno: errno))
        }
        return .success((p, length, isPmem != 0))
    }

    static func pmemUnmap(_ address: UnsafeMutableRawPointer, _ length: Int) {
        _ = pmem_unmap(address, length)
    }

    static func pmemMsync(_ address: UnsafeRawPointer, _ length: Int) -> Result<Void, SystemCallError> {
        pmem_msync(address, length) == 0 ? .success(()) : .failure(SystemCallError("pmem_msync", errno: errno))
    }
}

/// The calls a mapped device makes whose effect cannot be seen from outside (whether
/// libpmem calls the mapping persistent memory; punching and syncing when zeroing), as
/// values. Programs always get `.system`; a test opens a device with a table whose
/// entries record the calls or fail on purpose (`MappedDevice.open(..., syscalls:)`).
struct SyscallTable: Sendable {
    var pmemMapFile: @Sendable (String) -> Result<(UnsafeMutableRawPointer, Int, Bool), SystemCallError>
    var punchHole: @Sendable (Int32, UInt64, UInt64) -> Result<Void, SystemCallError>
    var fdatasync: @Sendable (Int32) -> Result<Void, SystemCallError>

    static let system = SyscallTable(
        pmemMapFile: Syscall.pmemMapFile, punchHole: Syscall.punchHole, fdatasync: Syscall.fdatasync)
}

// The C functions whose names the Swift overlay also gives to structs.
private func statPath(_ path: UnsafePointer<CChar>, _ buffer: UnsafeMutablePointer<stat>) -> Int32 { stat(path, buffer) }
private func lockFile(_ fd: Int32, _ operation: Int32) -> Int32 { flock(fd, operation) }
