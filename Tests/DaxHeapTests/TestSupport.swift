// Shared helpers of the DaxHeap-level tests: temporary paths, file bytes, child processes,
// threads, and a few ways of building heaps in known shapes.

import DaxHeap
import Dispatch
import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

func getpidValue() -> Int32 { getpid() }
func removeFile(_ path: String) { unlink(path) }

let oneMiB: UInt64 = 1 << 20
/// The heap's granularity.
let twoMiB: UInt64 = 2 << 20

// MARK: - Temporary paths

private let tempCounter = Atomic<Int>(0)

/// A fresh path under /dev/shm, unique per process and call; nothing is created there.
/// Remove it with `removeFile` (or `removeTree` for a directory) in a `defer`.
func tempPath(_ tag: String = "heap") -> String {
    let n = tempCounter.wrappingAdd(1, ordering: .relaxed).oldValue
    return "/dev/shm/daxheap-test-\(getpid())-\(n)-\(tag)"
}

/// Removes a file or a whole directory tree; missing paths are fine.
func removeTree(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

/// Whether anything (even a dangling symlink) exists at `path`.
func pathExists(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0
}

// MARK: - File bytes

/// Every byte of the file, for before/after comparisons.
func fileBytes(_ path: String) throws -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw TestFailure("cannot read \(path)")
    }
    return [UInt8](data)
}

/// A whole file's bytes, compared with memcmp and described briefly (a failed
/// comparison must not print megabytes).
struct FileImage: Equatable, CustomStringConvertible {
    let bytes: [UInt8]

    init(_ path: String) throws { bytes = try fileBytes(path) }

    static func == (a: FileImage, b: FileImage) -> Bool { sameBytes(a.bytes, b.bytes) }

    var description: String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        bytes.withUnsafeBytes { raw in for b in raw { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 } }
        return "\(bytes.count) bytes, FNV-1a \(String(h, radix: 16))"
    }
}

/// Byte-wise equality with memcmp (fast in debug builds).
func sameBytes(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    return a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in a.isEmpty || memcmp(pa.baseAddress!, pb.baseAddress!, a.count) == 0 } }
}

/// Whether every byte is zero: the first is, and each equals the next (memcmp, fast in
/// debug builds).
func allZero(_ a: [UInt8]) -> Bool {
    a.withUnsafeBytes { raw in raw.isEmpty || (raw[0] == 0 && memcmp(raw.baseAddress!, raw.baseAddress! + 1, raw.count - 1) == 0) }
}

/// The file's size from stat(2).
func fileSize(_ path: String) -> UInt64? {
    var st = stat()
    guard stat(path, &st) == 0 else { return nil }
    return UInt64(st.st_size)
}

/// Sets a file's size (truncate(2)): grows with zeros or cuts.
func setFileSize(_ path: String, _ size: UInt64) throws {
    guard truncate(path, off_t(size)) == 0 else { throw TestFailure("truncate \(path): errno \(errno)") }
}

/// Writes `bytes` to a new or existing file, replacing its contents.
func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
        throw TestFailure("cannot write \(path)")
    }
}

/// Writes text to a file (fake sysfs attributes).
func writeText(_ path: String, _ text: String) throws {
    try writeFile(path, Array(text.utf8))
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

// MARK: - Heap facts

/// What a failed call must leave unchanged.
struct HeapFacts: Equatable, CustomStringConvertible {
    var arenas: [ArenaInfo]
    var availableSize: UInt64
    var usableSize: UInt64
    var generation: UInt64

    init(_ heap: Heap) {
        arenas = heap.arenas
        availableSize = heap.availableSize
        usableSize = heap.usableSize
        generation = heap.generation
    }

    var description: String {
        "generation \(generation), available \(availableSize)/\(usableSize), arenas " +
            arenas.map { "\($0.name)#\($0.id):\($0.size)[\($0.extents.map { "\($0.deviceOffset)+\($0.length)" }.joined(separator: ","))]" }
            .joined(separator: " ")
    }
}

// MARK: - Byte patterns

/// Deterministic non-trivial bytes: `count` bytes depending on `seed` and position (a
/// shorter pattern of the same seed is a prefix of a longer one).
func pattern(_ count: Int, seed: UInt64 = 1) -> [UInt8] {
    var x = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        let raw = UnsafeMutableRawBufferPointer(buffer)
        var i = 0
        while i < count {
            x ^= x << 13
            x ^= x >> 7
            x ^= x << 17
            let word = x &* 0x2545_F491_4F6C_DD1D
            if i + 8 <= count {
                raw.storeBytes(of: word, toByteOffset: i, as: UInt64.self)
            } else {
                withUnsafeBytes(of: word) { w in for j in 0 ..< count - i { raw[i + j] = w[j] } }
            }
            i += 8
        }
        initialized = count
    }
}

// MARK: - Heaps of known shapes

/// Makes `name` an arena of `extentCount` extents of 2 MiB each, followed by one last
/// extent of `tail` bytes (when nonzero), by filling the heap with 2 MiB spacer arenas,
/// destroying every other one and then growing `name` into the gaps. The spacers that
/// remain are called "<name>-spacer-<i>". The heap needs at least
/// `(2 * extentCount) * 2 MiB + tail` free bytes at its start.
@discardableResult
func makeDiscontiguousArena(on heap: Heap, named name: String, extents extentCount: Int, tail: UInt64 = 0) throws -> Arena {
    precondition(extentCount >= 1)
    let spacers = 2 * extentCount
    for i in 0 ..< spacers { try heap.createArena(named: "\(name)-spacer-\(i)", size: twoMiB) }
    for i in stride(from: 0, to: spacers, by: 2) { try heap.destroyArena(named: "\(name)-spacer-\(i)") }
    let arena = try heap.createArena(named: name, size: twoMiB)
    try heap.resizeArena(named: name, to: UInt64(extentCount) * twoMiB + tail)
    return arena
}

/// Arena bytes `[offset, offset + count)` read from the backing file (pread) at the
/// device offsets the arena's extents give: what the arena holds, according to its extents.
func bytesThroughExtents(_ info: ArenaInfo, path: String, offset: UInt64, count: Int) throws -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(count)
    var at = offset
    let end = offset + UInt64(count)
    for e in info.extents where e.arenaOffset + e.length > at && at < end {
        let n = Int(min(end, e.arenaOffset + e.length) - at)
        out += try fileRange(path, offset: e.deviceOffset + (at - e.arenaOffset), count: n)
        at += UInt64(n)
    }
    guard out.count == count else { throw TestFailure("the extents cover \(out.count) of \(count) bytes") }
    return out
}

/// `count` bytes of a file at `offset` (pread).
func fileRange(_ path: String, offset: UInt64, count: Int) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw TestFailure("open \(path): errno \(errno)") }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: count)
    var done = 0
    while done < count {
        let n = buffer.withUnsafeMutableBytes { raw in pread(fd, raw.baseAddress! + done, count - done, off_t(offset) + off_t(done)) }
        guard n > 0 else { throw TestFailure("pread \(path) at \(Int(offset) + done): \(n < 0 ? "errno \(errno)" : "end of file")") }
        done += n
    }
    return buffer
}

// MARK: - Child processes

/// Runs a program to completion and returns its exit status and standard output.
func runProcess(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Reads `count` bytes at `offset` of `path` in a child process (od), so the bytes come
/// from the file through another process's view, not through this process's mapping.
func readBytesInChildProcess(path: String, offset: UInt64, count: Int) throws -> [UInt8] {
    let (status, output) = try runProcess("/usr/bin/od", ["-An", "-v", "-tx1", "-j", "\(offset)", "-N", "\(count)", path])
    guard status == 0 else { throw TestFailure("od exited with \(status)") }
    return try output.split(whereSeparator: { $0 == " " || $0 == "\n" }).map { token in
        guard let byte = UInt8(token, radix: 16) else { throw TestFailure("od printed \(token)") }
        return byte
    }
}

func executableExists(_ path: String) -> Bool { access(path, X_OK) == 0 }

// MARK: - Threads

/// A real thread (not a pool task) running `body`; `join` waits for it to finish.
/// Record failures in a `Failures` and check them on the test's own thread.
final class TestThread: Sendable {
    private let done = DispatchSemaphore(value: 0)

    init(_ body: @escaping @Sendable () -> Void) {
        let done = self.done
        let thread = Thread {
            body()
            done.signal()
        }
        thread.start()
    }

    func join() { done.wait() }

    /// Waits at most `seconds`; true if the thread finished.
    func join(timeout seconds: Double) -> Bool {
        done.wait(timeout: .now() + seconds) == .success
    }
}

/// Failure messages collected from other threads.
final class Failures: Sendable {
    private let messages = Locked<[String]>([])

    func record(_ message: String) { messages.withLock { if $0.count < 20 { $0.append(message) } } }
    var all: [String] { messages.withLock { $0 } }
}

/// A flag shared between threads.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .sequentiallyConsistent) }
    var isSet: Bool { value.load(ordering: .sequentiallyConsistent) }
}

/// A counter shared between threads (also a sequence for ordering events).
final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    /// Adds one and returns the new value.
    @discardableResult
    func next() -> Int { value.wrappingAdd(1, ordering: .sequentiallyConsistent).newValue }
    var current: Int { value.load(ordering: .sequentiallyConsistent) }
}

/// Seconds since an arbitrary start (CLOCK_MONOTONIC).
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

// MARK: - Refusals

/// Runs `body`, which must throw exactly `expected`, and checks that it changed nothing:
/// not the heap's arenas, available size or generation, and (when `path` is given) not
/// one byte of the backing file.
func expectRefused(
    _ expected: HeapError, heap: Heap, path: String? = nil,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> Void
) throws {
    let facts = HeapFacts(heap)
    let image = try path.map { try FileImage($0) }
    #expect(throws: expected, sourceLocation: sourceLocation) { try body() }
    #expect(HeapFacts(heap) == facts, "the heap changed", sourceLocation: sourceLocation)
    #expect(heap.check().isHealthy, sourceLocation: sourceLocation)
    if let path, let image {
        #expect(try FileImage(path) == image, "the file changed", sourceLocation: sourceLocation)
    }
}

/// The error `body` throws, or nil (with an issue recorded) if it returns.
func thrownError(sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) -> (any Error)? {
    do {
        try body()
        Issue.record("expected an error, none was thrown", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}
