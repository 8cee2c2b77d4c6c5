import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct CreateTests {
    @Test func createsASparseFileOfTheGivenSize() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let path = scratch.file("new.heap")
        let run = expectSuccess(try Tool.run(["create", path, "--size", "64M"]))
        #expect(run.out.hasPrefix("created a heap of 64 MiB on \(path)"), "\(run.out)")
        #expect(try fileSize(path) == 64 * MiB)
        var st = stat()
        #expect(stat(path, &st) == 0)
        #expect(Int(st.st_blocks) * 512 < 16 * MiB, "not sparse: \(st.st_blocks) blocks")
        let info = try Tool.run(["info", path, "--json"]).json()
        #expect(number(info["size"]) == UInt64(64 * MiB))
        #expect(number(info["arena_count"]) == 0)
        #expect(number(info["generation"]) == 1)
    }

    @Test func refusesAnExistingHeapOrNonEmptyFileWithoutForce() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(arenas: [("keep", "2M")])
        try expectUnchanged(heap) {
            expectFailure(try Tool.run(["create", heap, "--size", "16M"]), heap, "refusing to overwrite")
            expectFailure(try Tool.run(["create", heap]), "refusing to overwrite")
            expectFailure(try Tool.run(["create", heap, "--size", "32M"]), "refusing to overwrite")
        }
        let other = scratch.file("notes.txt")
        try Data("not a heap\n".utf8).write(to: URL(fileURLWithPath: other))
        try expectUnchanged(other) {
            expectFailure(try Tool.run(["create", other, "--size", "8M"]), other, "refusing to overwrite")
        }
    }

    @Test func forceReinitialisesAtTheGivenOrCurrentSize() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: "16M", arenas: [("a", "2M")])
        expectSuccess(try Tool.run(["create", heap, "--force"]))
        #expect(try fileSize(heap) == 16 * MiB)
        var list = try Tool.run(["list", heap, "--json"]).json()
        #expect((list["arenas"] as? [Any])?.isEmpty == true)
        expectSuccess(try Tool.run(["create", heap, "--force", "--size", "8M"]))
        #expect(try fileSize(heap) == 8 * MiB)
        list = try Tool.run(["list", heap, "--json"]).json()
        #expect(number(list["available_size"]) == UInt64(4 * MiB))
        // Any non-empty file, with force.
        let other = scratch.file("junk")
        try pattern(3 * MiB).write(to: URL(fileURLWithPath: other))
        expectSuccess(try Tool.run(["create", other, "--force", "--size", "6M"]))
        expectSuccess(try Tool.run(["check", other]))
        // An existing empty file needs no force.
        let empty = scratch.file("empty")
        _ = FileManager.default.createFile(atPath: empty, contents: nil)
        expectSuccess(try Tool.run(["create", empty, "--size", "6M"]))
    }

    @Test func badSizesAndPathsCreateNothing() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let path = scratch.file("x.heap")
        expectFailure(try Tool.run(["create", path]), "no size was given")
        expectFailure(try Tool.run(["create", path, "--size", "5M"]), "not a multiple of 2 MiB")
        expectFailure(try Tool.run(["create", path, "--size", "4M"]), "below the 6 MiB minimum")
        expectFailure(try Tool.run(["create", path, "--size", "0"]), "below the 6 MiB minimum")
        expectFailure(try Tool.run(["create", path, "--size", "2047K"]), "not a multiple of 2 MiB")
        // Beyond what a file offset holds: refused, nothing made.
        expectFailure(try Tool.run(["create", path, "--size", "16777214T"]), "beyond what a file offset can address")
        expectFailure(try Tool.run(["create", path, "--size", "8388608T"]), "beyond what a file offset can address")
        #expect(!fileExists(path))
        expectFailure(try Tool.run(["create", scratch.file("missing/x.heap"), "--size", "8M"]), "does not exist")
        #expect(!fileExists(scratch.file("missing")))
        expectFailure(try Tool.run(["create", scratch.path, "--size", "8M"]), "is a directory")
        expectFailure(try Tool.run(["create", scratch.path, "--force"]), "is a directory")
        // A bad size with --force leaves the existing heap alone.
        let heap = try scratch.heap(arenas: [("a", "2M")])
        try expectUnchanged(heap) {
            expectFailure(try Tool.run(["create", heap, "--force", "--size", "3M"]), "not a multiple of 2 MiB")
            expectFailure(try Tool.run(["create", heap, "--force", "--size", "2M"]), "below the 6 MiB minimum")
        }
    }

    @Test func helpAndUsage() throws {
        let help = try Tool.run(["--help"])
        #expect(help.status == 0)
        for command in ["create", "info", "list", "create-arena", "resize-arena", "destroy-arena", "write", "read", "check", "demo"] {
            #expect(help.out.contains("  \(command) "), "help lacks \(command)")
        }
        expectUsageError(try Tool.run(["bogus"]))
        expectUsageError(try Tool.run(["info"]))
        expectUsageError(try Tool.run(["create-arena", "/nonexistent", "--name", "a"]))
        expectUsageError(try Tool.run(["read", "/nonexistent"]))
        expectUsageError(try Tool.run(["info", "/nonexistent", "--bogus"]))
        let sub = try Tool.run(["help", "check"])
        #expect(sub.status == 0)
        #expect(sub.out.contains("--repair"))
    }
}
