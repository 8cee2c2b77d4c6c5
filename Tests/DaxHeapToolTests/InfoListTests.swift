import Foundation
import Testing
import DaxTestSupport

@Suite struct InfoListTests {
    static let infoKeys: Set<String> = ["path", "kind", "size", "heap_size", "unused_device_size", "align", "usable_size",
                                         "available_size", "generation", "arena_count", "persistence", "metadata",
                                         "device_layout", "device_identity"]

    @Test func infoJSONShape() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: "32M", arenas: [("a", "4M"), ("b", "2M")])
        let run = try Tool.run(["info", heap, "--json"])
        expectSuccess(run)
        let info = try run.json()
        #expect(Set(info.keys) == Self.infoKeys)
        #expect(info["path"] as? String == heap)
        #expect(info["kind"] as? String == "file")
        #expect(info["device_layout"] as? String == "not recorded", "a file records no device identity")
        #expect(info["device_identity"] is NSNull)
        #expect(["pmem", "msync"].contains(info["persistence"] as? String))
        #expect(number(info["size"]) == UInt64(32 * MiB))
        #expect(number(info["heap_size"]) == UInt64(32 * MiB))
        #expect(number(info["unused_device_size"]) == 0)
        #expect(number(info["align"]) == UInt64(2 * MiB))
        #expect(number(info["usable_size"]) == UInt64(28 * MiB))
        #expect(number(info["available_size"]) == UInt64(22 * MiB))
        #expect(number(info["generation"]) == 3)
        #expect(number(info["arena_count"]) == 2)
        for key in ["size", "heap_size", "unused_device_size", "align", "usable_size", "available_size", "generation", "arena_count"] {
            #expect(isInteger(info[key]), "\(key) is not an integer")
        }
        let metadata = try #require(info["metadata"] as? [String: Any])
        #expect(Set(metadata.keys) == ["primary", "secondary"])
        #expect(metadata["primary"] as? String == "ok")
        #expect(metadata["secondary"] as? String == "ok")
    }

    @Test func infoForPeople() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: "32M", arenas: [("a", "4M")])
        let run = expectSuccess(try Tool.run(["info", heap]))
        for fragment in ["path:", heap, "kind:", "file", "size:", "32 MiB", "alignment:", "2 MiB", "usable size:", "28 MiB",
                         "available size:", "24 MiB", "generation:", "arenas:", "persistence:", "primary copy:", "secondary copy:", "ok"] {
            #expect(run.out.contains(fragment), "info lacks \(fragment): \(run.out)")
        }
    }

    static func makeDiscontiguous(_ scratch: Scratch) throws -> String {
        // a, b, c side by side; destroy a; grow b: c follows b, so b's growth goes to a's gap.
        let heap = try scratch.heap(size: "32M", arenas: [("c-first", "2M"), ("b", "4M"), ("c", "4M")])
        expectSuccess(try Tool.run(["destroy-arena", heap, "--name", "c-first"]))
        expectSuccess(try Tool.run(["resize-arena", heap, "--name", "b", "--size", "6M"]))
        return heap
    }

    @Test func listJSONShapeAndOrder() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try Self.makeDiscontiguous(scratch)
        expectSuccess(try Tool.run(["create-arena", heap, "--name", "a", "--size", "2M"]))
        let run = try Tool.run(["list", heap, "--json"])
        expectSuccess(run)
        let list = try run.json()
        #expect(Set(list.keys) == ["available_size", "arenas"])
        #expect(isInteger(list["available_size"]))
        let arenas = try #require(list["arenas"] as? [[String: Any]])
        #expect(arenas.map { $0["name"] as? String } == ["a", "b", "c"])
        var total: UInt64 = 0
        for arena in arenas {
            #expect(Set(arena.keys) == ["name", "size", "extents"])
            #expect(isInteger(arena["size"]))
            let extents = try #require(arena["extents"] as? [[String: Any]])
            var next: UInt64 = 0
            for extent in extents {
                #expect(Set(extent.keys) == ["device_offset", "arena_offset", "size"])
                #expect(isInteger(extent["device_offset"]) && isInteger(extent["arena_offset"]) && isInteger(extent["size"]))
                #expect(number(extent["arena_offset"]) == next, "extents not ordered by arena offset")
                next += integer(extent["size"]) ?? 0
            }
            #expect(next == number(arena["size"]))
            total += next
        }
        #expect(total + (integer(list["available_size"]) ?? 0) == UInt64(28 * MiB))
        // b: arena 0..<4M at device 4M, then 4M..<6M in the freed gap at device 2M.
        let b = arenas[1]["extents"] as? [[String: Any]] ?? []
        #expect(b.count == 2)
        #expect(b.map { integer($0["device_offset"]) } == [UInt64(4 * MiB), UInt64(2 * MiB)])
        #expect(b.map { integer($0["arena_offset"]) } == [0, UInt64(4 * MiB)])
    }

    @Test func listForPeople() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try Self.makeDiscontiguous(scratch)
        let run = expectSuccess(try Tool.run(["list", heap]))
        #expect(run.out.contains("2 arenas"))
        #expect(run.out.contains("b  6 MiB in 2 extents, discontiguous"), "\(run.out)")
        #expect(run.out.contains("at device offset 2 MiB"))
        let empty = try scratch.heap("empty")
        #expect(expectSuccess(try Tool.run(["list", empty])).out.hasPrefix("0 arenas, 12 MiB of 12 MiB available"))
        let emptyJSON = try Tool.run(["list", empty, "--json"]).json()
        #expect((emptyJSON["arenas"] as? [Any])?.count == 0)
    }

    /// Names may hold quotes, backslashes and any non-control Unicode; JSON escapes them.
    @Test func namesRoundTripThroughJSON() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: "32M")
        let names = ["quote\"d", "back\\slash", "ünïcødé 日本語 🚀", "{\"json\": [1]}", "sl/ash", String(repeating: "x", count: 63), "-dash", "\u{2028}sep", "éé"]
        for name in names {
            let run = try Tool.run(["create-arena", heap, "--name=\(name)", "--size", "2M"])
            expectSuccess(run)
        }
        let list = try Tool.run(["list", heap, "--json"])
        let arenas = try #require(try list.json()["arenas"] as? [[String: Any]])
        let listed = arenas.compactMap { $0["name"] as? String }
        #expect(listed == names.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })
        // The bytes exactly, not just equal as Unicode strings.
        #expect(Set(listed.map { Array($0.utf8) }) == Set(names.map { Array($0.utf8) }))
        let human = expectSuccess(try Tool.run(["list", heap]))
        #expect(human.out.contains("ünïcødé 日本語 🚀"))
    }

    @Test func infoAndListNeverWrite() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(arenas: [("a", "2M")])
        try flipByte(heap, at: 20)  // primary copy corrupt: a read-write open would repair it
        try expectUnchanged(heap) {
            let info = try Tool.run(["info", heap, "--json"])
            expectSuccess(info)
            let metadata = try #require(try info.json()["metadata"] as? [String: Any])
            #expect(metadata["primary"] as? String == "corrupt")
            #expect(metadata["secondary"] as? String == "ok")
            expectSuccess(try Tool.run(["info", heap]))
            expectSuccess(try Tool.run(["list", heap]))
            expectSuccess(try Tool.run(["list", heap, "--json"]))
            expectSuccess(try Tool.run(["read", heap, "--name", "a"]))
        }
    }
}
