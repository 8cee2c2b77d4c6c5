import DaxTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

// Helpers for driving the built `daxheap` executable as a user would: spawned processes
// with pipes for standard input, output and error, on real files in a scratch folder.

/// What one run of `daxheap` did.
struct Run: CustomStringConvertible {
    var status: Int32
    var stdout: Data
    var stderr: String

    var out: String { String(decoding: stdout, as: UTF8.self) }
    var stderrLines: [Substring] { stderr.split(separator: "\n", omittingEmptySubsequences: true) }

    var description: String { "exit \(status)\nstdout: \(out.prefix(2000))\nstderr: \(stderr)" }

    /// The standard output parsed as a JSON object.
    func json() throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: stdout)
        return try #require(object as? [String: Any], "not a JSON object: \(out)")
    }
}

enum Tool {
    /// The built `daxheap`: beside the test bundle (or the xctest executable), or its
    /// parent, or DAXHEAP_BIN.
    static let executable: URL? = builtExecutable(named: "daxheap", override: "DAXHEAP_BIN")

    static func url() throws -> URL {
        try #require(executable, "the daxheap executable was not found beside the test bundle (\(CommandLine.arguments[0])); build it first (swift build --build-tests) or set DAXHEAP_BIN")
    }

    /// Runs `daxheap ARGS` with `stdin` (nothing: standard input is closed at once).
    @discardableResult
    static func run(_ arguments: [String], stdin: Data? = nil, environment: [String: String] = [:]) throws -> Run {
        let done = try runToCompletion(try url(), arguments, stdin: stdin, environment: environment)
        return Run(status: done.status, stdout: done.stdout, stderr: String(decoding: done.stderr, as: UTF8.self))
    }
}

/// A scratch folder, on /dev/shm when there is one; removed by `remove()`.
struct Scratch {
    let path: String

    init() throws { path = try makeScratchFolder(prefix: "daxheap-cli-tests") }

    func file(_ name: String) -> String { "\(path)/\(name)" }
    func remove() { try? FileManager.default.removeItem(atPath: path) }

    /// A new heap with these arenas (name, size), through the tool.
    func heap(_ name: String = "heap", size: String = "16M", arenas: [(String, String)] = []) throws -> String {
        let path = file(name)
        try expectSuccess(Tool.run(["create", path, "--size", size]))
        for (arena, arenaSize) in arenas {
            try expectSuccess(Tool.run(["create-arena", path, "--name", arena, "--size", arenaSize]))
        }
        return path
    }
}

// MARK: - Expectations

/// Exit 0 and a clean standard error.
@discardableResult
func expectSuccess(_ run: Run, sourceLocation: SourceLocation = #_sourceLocation) -> Run {
    #expect(run.status == 0, "\(run)", sourceLocation: sourceLocation)
    #expect(run.stderr.isEmpty, "stderr not clean: \(run.stderr)", sourceLocation: sourceLocation)
    return run
}

/// Exit 1 and exactly one stderr line, `error: ...` containing every fragment (after
/// any `note:` lines when `notes` is set), nothing on standard output.
func expectFailure(_ run: Run, _ fragments: String..., notes: Int = 0, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(run.status == 1, "\(run)", sourceLocation: sourceLocation)
    let lines = run.stderrLines
    #expect(lines.count == notes + 1, "expected \(notes) note line(s) and one error line: \(run.stderr)", sourceLocation: sourceLocation)
    #expect(run.stderr.hasSuffix("\n"), sourceLocation: sourceLocation)
    for note in lines.dropLast() {
        #expect(note.hasPrefix("note: "), "\(run.stderr)", sourceLocation: sourceLocation)
    }
    if let last = lines.last {
        #expect(last.hasPrefix("error: "), "\(run.stderr)", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(last.contains(fragment), "error line lacks \"\(fragment)\": \(last)", sourceLocation: sourceLocation)
        }
    }
    #expect(run.stdout.isEmpty, "stdout not empty on failure: \(run.out)", sourceLocation: sourceLocation)
}

/// An ArgumentParser usage error: exit 64, "Error:" on standard error.
func expectUsageError(_ run: Run, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(run.status == 64, "\(run)", sourceLocation: sourceLocation)
    #expect(run.stderr.contains("Error: "), "\(run.stderr)", sourceLocation: sourceLocation)
    #expect(!run.stderr.contains("Fatal error"), sourceLocation: sourceLocation)
    #expect(run.stdout.isEmpty, sourceLocation: sourceLocation)
}

// MARK: - Files

func contents(_ path: String) throws -> Data {
    try Data(contentsOf: URL(fileURLWithPath: path))
}

func fileExists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

/// Runs `body` and expects the file to be byte-for-byte what it was.
func expectUnchanged(_ path: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) throws {
    let before = try contents(path)
    try body()
    let after = try contents(path)
    #expect(before == after, "\(path) changed", sourceLocation: sourceLocation)
}


/// Reads `count` bytes at `offset`.
func readBytes(_ path: String, at offset: Int, count: Int) throws -> [UInt8] {
    let handle = try #require(FileHandle(forReadingAtPath: path))
    defer { try? handle.close() }
    try handle.seek(toOffset: UInt64(offset))
    return [UInt8](try handle.read(upToCount: count) ?? Data())
}

/// Writes `bytes` at `offset`.
func writeBytes(_ path: String, at offset: Int, _ bytes: [UInt8]) throws {
    let handle = try #require(FileHandle(forWritingAtPath: path))
    defer { try? handle.close() }
    try handle.seek(toOffset: UInt64(offset))
    try handle.write(contentsOf: Data(bytes))
}

func fileSize(_ path: String) throws -> Int {
    (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? -1
}

let MiB = 1 << 20

/// Offsets of the two metadata copies: the first and the last 2 MiB.
func secondaryOffset(_ path: String) throws -> Int { try fileSize(path) - 2 * MiB }

/// Deterministic test bytes.
func pattern(_ count: Int, seed: UInt8 = 1) -> Data {
    var bytes = [UInt8](repeating: 0, count: count)
    for i in 0 ..< count { bytes[i] = UInt8(truncatingIfNeeded: i &* 7 &+ i >> 9) &+ seed }
    return Data(bytes)
}

// MARK: - JSON types

/// A JSON integer (JSONSerialization on Linux: an NSNumber that is not a Boolean).
func isInteger(_ value: Any?) -> Bool {
    guard let number = value as? NSNumber else { return false }
    let type = String(cString: number.objCType)
    return type != "c" && type != "B" && type != "d" && type != "f"
}

func isBool(_ value: Any?) -> Bool {
    guard let number = value as? NSNumber else { return false }
    let type = String(cString: number.objCType)
    return type == "c" || type == "B"
}

func integer(_ value: Any?) -> UInt64? {
    isInteger(value) ? (value as? NSNumber)?.uint64Value : nil
}

/// A JSON integer, or UInt64.max when it is absent or not one: for `#expect(a == b)`, where
/// an optional UInt64 makes swift-testing's expansion read 9 bytes from an 8-byte slot
/// (AddressSanitizer's stack-buffer-overflow, Swift 6.3.1).
func number(_ value: Any?) -> UInt64 { integer(value) ?? .max }
