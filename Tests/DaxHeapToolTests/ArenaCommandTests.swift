import Foundation
import Testing

@Suite struct ArenaCommandTests {
    func arenas(_ heap: String) throws -> [String: UInt64] {
        let list = try Tool.run(["list", heap, "--json"]).json()
        var result: [String: UInt64] = [:]
        for arena in list["arenas"] as? [[String: Any]] ?? [] {
            result[arena["name"] as? String ?? "?"] = integer(arena["size"])
        }
        return result
    }

    @Test func createResizeDestroy() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: "32M")
        var run = expectSuccess(try Tool.run(["create-arena", heap, "--name", "log", "--size", "4M"]))
        #expect(run.out == "created arena \"log\" of 4 MiB in 1 extent; 24 MiB available\n")
        run = expectSuccess(try Tool.run(["resize-arena", heap, "--name", "log", "--size", "8M"]))
        #expect(run.out.contains("grew arena \"log\" from 4 MiB to 8 MiB"), "\(run.out)")
        run = expectSuccess(try Tool.run(["resize-arena", heap, "--name", "log", "--size", "2M"]))
        #expect(run.out.contains("shrank arena \"log\" from 8 MiB to 2 MiB"), "\(run.out)")
        expectSuccess(try Tool.run(["resize-arena", heap, "--name", "log", "--size", "2M"]))
        #expect(try arenas(heap) == ["log": UInt64(2 * MiB)])
        run = expectSuccess(try Tool.run(["destroy-arena", heap, "--name", "log"]))
        #expect(run.out.contains("destroyed arena \"log\", freeing 2 MiB; 28 MiB available"), "\(run.out)")
        #expect(try arenas(heap).isEmpty)
    }

    @Test func provisioningErrorsChangeNothing() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: "16M", arenas: [("a", "2M"), ("b", "4M")])
        try expectUnchanged(heap) {
            // Duplicate, unknown.
            expectFailure(try Tool.run(["create-arena", heap, "--name", "a", "--size", "2M"]), "\"a\" already exists")
            expectFailure(try Tool.run(["resize-arena", heap, "--name", "zz", "--size", "2M"]), "no arena named \"zz\"")
            expectFailure(try Tool.run(["destroy-arena", heap, "--name", "zz"]), "no arena named \"zz\"")
            // Invalid names: empty, too long (ASCII and multi-byte), control characters.
            expectFailure(try Tool.run(["create-arena", heap, "--name", "", "--size", "2M"]), "invalid arena name", "empty")
            expectUsageError(try Tool.run(["create-arena", heap, "--name=", "--size", "2M"]))
            for name in [String(repeating: "n", count: 64), String(repeating: "日", count: 22), "tab\there", "new\nline", "del\u{7F}", "c1\u{85}", "nul\u{01}"] {
                let run = try Tool.run(["create-arena", heap, "--name=\(name)", "--size", "2M"])
                expectFailure(run, "invalid arena name")
            }
            // Unknown names with control characters still give a one-line error.
            expectFailure(try Tool.run(["destroy-arena", heap, "--name", "x\ny\rz"]), "no arena named")
            expectFailure(try Tool.run(["read", heap, "--name", "x\ny"]), "no arena named")
            // Zero and misaligned sizes.
            for size in ["0", "1", "1000", "3M", "2097153", "1K"] {
                expectFailure(try Tool.run(["create-arena", heap, "--name", "c", "--size", size]), "not a positive multiple of 2 MiB")
                expectFailure(try Tool.run(["resize-arena", heap, "--name", "a", "--size", size]), "not a positive multiple of 2 MiB")
            }
            // No space: the message names the available size.
            expectFailure(try Tool.run(["create-arena", heap, "--name", "c", "--size", "8M"]), "not enough space", "6 MiB available")
            expectFailure(try Tool.run(["resize-arena", heap, "--name", "a", "--size", "10M"]), "not enough space", "6 MiB available")
            // Sizes of exbibytes: reported, never a crash (DaxHeap's bytes(_:) traps there).
            expectFailure(try Tool.run(["create-arena", heap, "--name", "c", "--size", "16777215T"]), "not enough space", "15.99 EiB requested")
            expectFailure(try Tool.run(["resize-arena", heap, "--name", "a", "--size", "8388606T"]), "not enough space", "7.99 EiB requested")
            expectFailure(try Tool.run(["create-arena", heap, "--name", "c", "--size", "18446744073709551615"]), "not a positive multiple of 2 MiB")
        }
    }

    @Test func provisionAppliesEveryChangeInOrderOrNone() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: "32M", arenas: [("old", "4M")])
        let run = expectSuccess(try Tool.run(["provision", heap, "create:index:8M", "create:a:b:2M", "destroy:old", "resize:index:10M"]))
        #expect(run.out == "created \"index\" of 8 MiB, created \"a:b\" of 2 MiB, destroyed \"old\", resized \"index\" to 10 MiB in one update; 16 MiB available\n")
        #expect(try arenas(heap) == ["index": UInt64(10 * MiB), "a:b": UInt64(2 * MiB)])
        try expectUnchanged(heap) {
            // A refused change anywhere in the list: none is applied.
            expectFailure(try Tool.run(["provision", heap, "create:x:2M", "destroy:nope"]), "no arena named \"nope\"")
            expectFailure(try Tool.run(["provision", heap, "create:x:2M", "create:x:2M"]), "\"x\" already exists")
            expectFailure(try Tool.run(["provision", heap, "destroy:index", "create:y:3M"]), "not a positive multiple of 2 MiB")
            expectFailure(try Tool.run(["provision", heap, "create:y:2M", "resize:index:64M"]), "not enough space")
            // Changes that do not parse, or none at all: usage errors.
            for change in ["bogus", "create:x", "create::2M", "resize:index:2X", "destroy:", "make:x:2M"] {
                expectUsageError(try Tool.run(["provision", heap, change]))
            }
            expectUsageError(try Tool.run(["provision", heap]))
        }
    }

    @Test func spaceIsReturnedAndReused() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: "16M", arenas: [("a", "4M"), ("b", "4M"), ("c", "4M")])
        expectFailure(try Tool.run(["create-arena", heap, "--name", "d", "--size", "2M"]), "not enough space", "0 B available")
        expectSuccess(try Tool.run(["destroy-arena", heap, "--name", "b"]))
        expectSuccess(try Tool.run(["resize-arena", heap, "--name", "c", "--size", "8M"]))
        let list = try Tool.run(["list", heap, "--json"]).json()
        #expect(number(list["available_size"]) == 0)
        let c = (list["arenas"] as? [[String: Any]])?.first { $0["name"] as? String == "c" }
        #expect((c?["extents"] as? [Any])?.count == 2)
        expectSuccess(try Tool.run(["check", heap]))
    }
}
