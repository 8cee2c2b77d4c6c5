// Shared helpers of the C API tests: temporary heap files, calling the C functions with
// Swift strings, and reading this thread's message.

import CDaxHeap
@testable import DaxHeapC
import DaxHeap
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

let twoMiB: UInt64 = 2 << 20
let heapSize: UInt64 = 32 << 20

private let tempCounter = Atomic<Int>(0)

/// A fresh path under /dev/shm, unique per process and call; nothing is created there.
func tempPath(_ tag: String = "heap") -> String {
    let n = tempCounter.wrappingAdd(1, ordering: .relaxed).oldValue
    return "/dev/shm/daxheap-ctest-\(getpid())-\(n)-\(tag)"
}

func removeFile(_ path: String) { unlink(path) }

/// This thread's last message, as daxheap_errmsg gives it.
func lastMessage() -> String { String(cString: daxheap_errmsg()) }

/// A status code as the enum constant's raw value, for comparing with what a call returns.
func code(_ status: daxheap_status) -> Int32 { status.rawValue }

/// A new heap of `size` bytes at a fresh path, through daxheap_create.
func createHeap(size: UInt64 = heapSize, _ tag: String = "heap") throws -> (path: String, heap: OpaquePointer) {
    let path = tempPath(tag)
    var heap: OpaquePointer?
    let rc = daxheap_create(path, size, &heap)
    try #require(rc == 0, "daxheap_create: \(lastMessage())")
    return (path, try #require(heap))
}

/// Opens `path` through daxheap_open, requiring success.
func openHeap(_ path: String, flags: Int32 = 0) throws -> OpaquePointer {
    var heap: OpaquePointer?
    let rc = daxheap_open(path, flags, &heap)
    try #require(rc == 0, "daxheap_open: \(lastMessage())")
    return try #require(heap)
}

/// Opens the object heap in `arena`, requiring success.
func openObjects(_ heap: OpaquePointer, _ arena: String) throws -> OpaquePointer {
    var objects: OpaquePointer?
    let rc = daxheap_objects_open(heap, arena, &objects)
    try #require(rc == 0, "daxheap_objects_open: \(lastMessage())")
    return try #require(objects)
}

/// Opens a window onto `arena`, requiring success.
func openWindow(_ heap: OpaquePointer, _ arena: String, reserving reservation: UInt64? = nil) throws -> OpaquePointer {
    var window: OpaquePointer?
    let rc = reservation.map { daxheap_window_open_reserving(heap, arena, $0, &window) } ?? daxheap_window_open(heap, arena, &window)
    try #require(rc == 0, "daxheap_window_open: \(lastMessage())")
    return try #require(window)
}

/// The size of `arena`, or the failing status.
func arenaSize(_ heap: OpaquePointer, _ arena: String) -> Result<UInt64, CStatus> {
    var size: UInt64 = 0
    let rc = daxheap_arena_size(heap, arena, &size)
    return rc == 0 ? .success(size) : .failure(CStatus(rc))
}

struct CStatus: Error, Equatable {
    let code: Int32
    init(_ code: Int32) { self.code = code }
}

/// `count` bytes of `arena` from `offset` through daxheap_read, requiring success.
func readBytes(_ heap: OpaquePointer, _ arena: String, at offset: UInt64, count: Int) throws -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    let rc = bytes.withUnsafeMutableBytes { daxheap_read(heap, arena, offset, $0.baseAddress, UInt64(count)) }
    try #require(rc == 0, "daxheap_read: \(lastMessage())")
    return bytes
}

/// Writes `bytes` to `arena` at `offset` through daxheap_write; the status.
func writeBytes(_ heap: OpaquePointer, _ arena: String, at offset: UInt64, _ bytes: [UInt8]) -> Int32 {
    bytes.withUnsafeBytes { daxheap_write(heap, arena, offset, $0.baseAddress, UInt64(bytes.count)) }
}

/// Deterministic bytes for a test pattern.
func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
}

/// Every byte of a file, for checking that a failed call changed nothing.
func fileImage(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY)
    try #require(fd >= 0, "cannot open \(path)")
    defer { close(fd) }
    var st = stat()
    try #require(fstat(fd, &st) == 0)
    var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
    let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
    try #require(got == Int(st.st_size))
    return bytes
}

/// Overwrites bytes of a file (to damage a heap for the error paths).
func patchFile(_ path: String, at offset: UInt64, _ bytes: [UInt8]) throws {
    let fd = open(path, O_WRONLY)
    try #require(fd >= 0, "cannot open \(path)")
    defer { close(fd) }
    let wrote = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
    try #require(wrote == bytes.count)
}

/// The Swift heap behind a C handle (what the tests compare the C view with).
func swiftHeap(_ handle: OpaquePointer) -> Heap { HeapHandle.from(handle).heap }

/// Runs `body` on `count` threads at once (pthreads: each its own thread, for the
/// per-thread message) and waits for all of them.
func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    final class Job: @unchecked Sendable {
        let index: Int
        let body: @Sendable (Int) -> Void
        init(_ index: Int, _ body: @escaping @Sendable (Int) -> Void) { self.index = index; self.body = body }
    }
    var threads: [pthread_t] = []
    for i in 0..<count {
        var thread = pthread_t()
        let job = Unmanaged.passRetained(Job(i, body)).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in
            let job = Unmanaged<Job>.fromOpaque(raw!).takeRetainedValue()
            job.body(job.index)
            return nil
        }, job)
        precondition(rc == 0, "pthread_create: \(rc)")
        threads.append(thread)
    }
    for thread in threads { pthread_join(thread, nil) }
}
