import Foundation
import Testing

/// Every command on paths that are not usable heaps: exit 1, one `error:` line, and the
/// file byte-for-byte unchanged.
@Suite struct BadDeviceTests {
    /// Every command that opens an existing heap, with arguments that would otherwise work.
    static func commands(_ path: String) -> [([String], Data?)] {
        [
            (["info", path], nil), (["info", path, "--json"], nil), (["list", path], nil), (["list", path, "--json"], nil),
            (["create-arena", path, "--name", "n", "--size", "2M"], nil),
            (["resize-arena", path, "--name", "a", "--size", "4M"], nil),
            (["destroy-arena", path, "--name", "a"], nil),
            (["write", path, "--name", "a"], Data("data".utf8)),
            (["read", path, "--name", "a"], nil),
            (["check", path], nil), (["check", path, "--json"], nil), (["check", path, "--repair"], nil),
        ]
    }

    func expectEveryCommandFails(_ path: String, _ fragment: String, exceptCheck: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) throws {
        for (arguments, stdin) in Self.commands(path) where !(exceptCheck && arguments[0] == "check") {
            let run = try Tool.run(arguments, stdin: stdin)
            expectFailure(run, fragment, sourceLocation: sourceLocation)
        }
    }

    @Test func missingPathAndDirectory() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let missing = scratch.file("missing.heap")
        try expectEveryCommandFails(missing, "does not exist")
        #expect(!fileExists(missing))
        try expectEveryCommandFails(scratch.path, "is a directory")
        try expectEveryCommandFails("/dev/null", "not a device-dax")
    }

    @Test func filesThatAreNotHeaps() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let zeros = scratch.file("zeros")
        try Data(count: 8 * MiB).write(to: URL(fileURLWithPath: zeros))
        let random = scratch.file("random")
        try pattern(6 * MiB, seed: 77).write(to: URL(fileURLWithPath: random))
        let text = scratch.file("text")
        try Data("just some text\n".utf8).write(to: URL(fileURLWithPath: text))
        let empty = scratch.file("empty")
        _ = FileManager.default.createFile(atPath: empty, contents: nil)
        for (path, fragment) in [(zeros, "not a DaxHeap device"), (random, "not a DaxHeap device"),
                                 (text, "not a multiple of 2 MiB"), (empty, "below the 6 MiB minimum")] {
            try expectUnchanged(path) { try expectEveryCommandFails(path, fragment) }
        }
    }

    /// (`check` on a file cut short reports damage instead: CheckTests.deviceCutShortIsDamage;
    /// a grown file is no bad device: ResizeTests.)
    @Test func heapFileCutShortOrNotWhole2MiB() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: "16M", arenas: [("a", "2M")])
        let image = try contents(heap)
        for (size, fragment) in [(14 * MiB, "was cut short"), (16 * MiB + 4096, "not a multiple of 2 MiB"),
                                 (16 * MiB - 1, "not a multiple of 2 MiB")] {
            let path = scratch.file("resized-\(size)")
            var bytes = image
            if size < bytes.count { bytes = bytes.prefix(size) } else { bytes.append(Data(count: size - bytes.count)) }
            try bytes.write(to: URL(fileURLWithPath: path))
            try expectUnchanged(path) { try expectEveryCommandFails(path, fragment, exceptCheck: size == 14 * MiB) }
        }
    }

    static let flock: String? = ["/usr/bin/flock", "/bin/flock"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Holds flock(2) on `path` (as the library's lock) in a child until the returned
    /// closure is called.
    func hold(_ path: String, exclusive: Bool) throws -> () -> Void {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(Self.flock))
        process.arguments = [exclusive ? "-x" : "-s", path, "sh", "-c", "echo locked; read line"]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        // Wait for "locked": the lock is held from then on.
        var seen = Data()
        while !seen.contains(UInt8(ascii: "\n")) {
            let more = output.fileHandleForReading.availableData
            if more.isEmpty { break }
            seen.append(more)
        }
        #expect(String(decoding: seen, as: UTF8.self) == "locked\n")
        return {
            try? input.fileHandleForWriting.close()
            process.waitUntilExit()
        }
    }

    @Test(.enabled(if: flock != nil, "flock(1) is not installed"))
    func heapInUseByAnotherProcess() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(arenas: [("a", "2M")])
        do {
            let release = try hold(heap, exclusive: true)
            defer { release() }
            try expectUnchanged(heap) {
                try expectEveryCommandFails(heap, "in use by another process")
                expectFailure(try Tool.run(["create", heap, "--force"]), "in use by another process")
                expectFailure(try Tool.run(["demo", heap]), "in use by another process")
            }
        }
        // A shared holder (a reader) lets readers in and keeps writers out.
        do {
            let release = try hold(heap, exclusive: false)
            defer { release() }
            try expectUnchanged(heap) {
                expectSuccess(try Tool.run(["info", heap]))
                expectSuccess(try Tool.run(["list", heap]))
                expectSuccess(try Tool.run(["read", heap, "--name", "a", "--length", "1"]))
                expectSuccess(try Tool.run(["check", heap]))
                expectFailure(try Tool.run(["write", heap, "--name", "a"], stdin: Data([1])), "in use by another process")
                expectFailure(try Tool.run(["create-arena", heap, "--name", "b", "--size", "2M"]), "in use by another process")
                expectFailure(try Tool.run(["create", heap, "--force"]), "in use by another process")
            }
        }
        // Released: writers work again.
        expectSuccess(try Tool.run(["create-arena", heap, "--name", "b", "--size", "2M"]))
    }
}
