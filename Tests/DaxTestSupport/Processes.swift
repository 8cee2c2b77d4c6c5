import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Finding and running the package's built executables (`daxheap`, `daxkv`) as a user
/// would, and scratch folders for their files. Shared by the tool and sample tests.

/// The built executable `name`: the path in the environment variable `override` if set,
/// else beside the test bundle (or the xctest executable), or one folder up.
public func builtExecutable(named name: String, override variable: String) -> URL? {
    let fm = FileManager.default
    if let path = ProcessInfo.processInfo.environment[variable] { return URL(fileURLWithPath: path) }
    let arg0 = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var folders = [arg0.deletingLastPathComponent(), arg0.deletingLastPathComponent().deletingLastPathComponent()]
    let bundle = Bundle.main.bundleURL
    folders += [bundle, bundle.deletingLastPathComponent()]
    for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
        folders.append(bundle.bundleURL.deletingLastPathComponent())
    }
    for folder in folders {
        let candidate = folder.appendingPathComponent(name)
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: candidate.path, isDirectory: &isDirectory), !isDirectory.boolValue,
           fm.isExecutableFile(atPath: candidate.path) {
            return candidate
        }
    }
    return nil
}

/// What a finished process left: its exit status (the signal number if a signal ended
/// it) and everything it wrote.
public struct ProcessOutput: Sendable {
    public var status: Int32
    public var stdout: Data
    public var stderr: Data
}

private let ignoreSIGPIPE: Void = { signal(SIGPIPE, SIG_IGN); () }()

/// Lets a write to a pipe whose reader has gone fail with EPIPE instead of killing the tests.
public func ignoreBrokenPipes() { ignoreSIGPIPE }

/// Runs `executable ARGS` to completion, feeding it `stdin` (then closing it) and
/// collecting both outputs on their own threads so neither pipe can fill up.
public func runToCompletion(
    _ executable: URL, _ arguments: [String], stdin: Data? = nil, environment: [String: String] = [:]
) throws -> ProcessOutput {
    _ = ignoreSIGPIPE  // the tool may exit without reading its input
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    if !environment.isEmpty {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let input = Pipe(), output = Pipe(), errors = Pipe()
    process.standardInput = input
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    let out = Collected(), err = Collected()
    let group = DispatchGroup()
    group.enter(); group.enter()
    let outReader = output.fileHandleForReading, errReader = errors.fileHandleForReading
    Thread.detachNewThread { out.set(outReader.readDataToEndOfFile()); group.leave() }
    Thread.detachNewThread { err.set(errReader.readDataToEndOfFile()); group.leave() }
    let writer = input.fileHandleForWriting
    if let stdin, !stdin.isEmpty { try? writer.write(contentsOf: stdin) }
    try? writer.close()
    group.wait()
    process.waitUntilExit()
    return ProcessOutput(status: process.terminationStatus, stdout: out.get(), stderr: err.get())
}

/// A new folder for one test's files, on /dev/shm when there is one; the caller removes it.
public func makeScratchFolder(prefix: String) throws -> String {
    let base = FileManager.default.isWritableFile(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    let path = "\(base)/\(prefix)-\(getpid())-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Thread-safe holder for what a reader thread collects.
public final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var value = Data()
    public init() {}
    public func set(_ data: Data) { lock.lock(); value = data; lock.unlock() }
    public func append(_ data: Data) { lock.lock(); value.append(data); lock.unlock() }
    public func get() -> Data { lock.lock(); defer { lock.unlock() }; return value }
}

/// A failed POSIX call in a test helper, with its errno.
public struct TestIOError: Error, CustomStringConvertible {
    public var call: String
    public var errno: Int32
    public var description: String { "\(call): \(String(cString: strerror(errno)))" }
}

/// XORs one byte of the file with 0xFF, with plain POSIX calls (damage behind the
/// library's back).
public func flipByte(_ path: String, at offset: Int) throws {
    let fd = open(path, O_RDWR)
    guard fd >= 0 else { throw TestIOError(call: "open \(path)", errno: errno) }
    defer { close(fd) }
    var byte: UInt8 = 0
    guard pread(fd, &byte, 1, off_t(offset)) == 1 else { throw TestIOError(call: "pread", errno: errno) }
    byte ^= 0xFF
    guard pwrite(fd, &byte, 1, off_t(offset)) == 1 else { throw TestIOError(call: "pwrite", errno: errno) }
}
