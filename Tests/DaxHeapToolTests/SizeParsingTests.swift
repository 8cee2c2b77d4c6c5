@testable import DaxHeapTool
import Foundation
import Testing

/// SIZE, OFF and LEN: a whole number, optionally K/M/G/T (powers of 1024), optionally
/// B or iB, any case, no space, no fraction.
@Suite struct SizeParsingTests {
    static let accepted: [(String, UInt64)] = [
        ("0", 0), ("512", 512), ("512B", 512), ("512b", 512), ("2097152", 2 << 20), ("0002M", 2 << 20),
        ("4K", 4096), ("4k", 4096), ("4KB", 4096), ("4kb", 4096), ("4KiB", 4096), ("4kib", 4096), ("4KIB", 4096),
        ("2M", 2 << 20), ("2m", 2 << 20), ("2MB", 2 << 20), ("2Mb", 2 << 20), ("2MiB", 2 << 20), ("2mib", 2 << 20), ("2MIB", 2 << 20),
        ("1G", 1 << 30), ("1g", 1 << 30), ("1GiB", 1 << 30), ("3GB", 3 << 30),
        ("1T", 1 << 40), ("1TiB", 1 << 40), ("1tb", 1 << 40),
        ("18446744073709551615", UInt64.max), ("18446744073709551615B", UInt64.max),
        ("16777215T", 16_777_215 << 40), ("17179869183G", 17_179_869_183 << 30),
    ]

    static let rejected: [String] = [
        "", " ", "-1", "+2M", "1.5M", "1.0", "2 M", " 2M", "2M ", "2iB", "2ib", "iB", "B", "M", "K",
        "2Mi", "2MiBB", "2MBB", "2KM", "2P", "2E", "2Q", "0x10", "1e6", "1_000", "2,048", "２M",
        "2\u{212A}", "18446744073709551616", "99999999999999999999", "16777216T", "17179869184G", "2M\n",
    ]

    @Test(arguments: accepted)
    func parsesAcceptedSpellings(text: String, value: UInt64) {
        #expect(ByteCount(argument: text)?.value == value, "\(text)")
    }

    @Test(arguments: rejected)
    func rejectsOtherSpellings(text: String) {
        #expect(ByteCount(argument: text) == nil, "\(text.debugDescription) was accepted")
    }

    /// The spellings reach the library exactly: each creates a 2 MiB arena.
    @Test func acceptedSpellingsThroughTheTool() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: "32MiB")
        let spellings = ["2M", "2MiB", "2m", "2mib", "2MB", "2mb", "2097152", "2097152B", "2048K", "2048KiB", "2048kb"]
        for (i, spelling) in spellings.enumerated() {
            expectSuccess(try Tool.run(["create-arena", heap, "--name", "a\(i)", "--size", spelling]))
        }
        let list = try Tool.run(["list", heap, "--json"]).json()
        let arenas = try #require(list["arenas"] as? [[String: Any]])
        #expect(arenas.count == spellings.count)
        #expect(arenas.allSatisfy { integer($0["size"]) == 2 << 20 })
        // OFF and LEN take the same spellings.
        let read = try Tool.run(["read", heap, "--name", "a0", "--offset", "1k", "--length", "1KiB"])
        expectSuccess(read)
        #expect(read.stdout.count == 1024)
        let tail = try Tool.run(["read", heap, "--name", "a0", "--offset", "2mib"])
        expectSuccess(tail)
        #expect(tail.stdout.isEmpty)
    }

    /// Anything else is a usage error from ArgumentParser (exit 64) that changes nothing.
    @Test func rejectedSpellingsThroughTheTool() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(arenas: [("a", "2M")])
        try expectUnchanged(heap) {
            for spelling in ["", "-1", "-2M", "1.5M", "2 M", "2iB", "2MiBB", "0x200000", "18446744073709551616", "16777216T", "abc"] {
                let run = try Tool.run(["create-arena", heap, "--name", "b", "--size=\(spelling)"])
                expectUsageError(run)
                if !spelling.isEmpty {
                    #expect(run.stderr.contains("'\(spelling)'"), "\(run.stderr)")
                }
                #expect(run.stderr.contains("K, M, G or T"), "the help names the accepted spellings: \(run.stderr)")
                expectUsageError(try Tool.run(["read", heap, "--name", "a", "--offset=\(spelling)"]))
                expectUsageError(try Tool.run(["read", heap, "--name", "a", "--length=\(spelling)"]))
                expectUsageError(try Tool.run(["write", heap, "--name", "a", "--offset=\(spelling)"], stdin: Data("x".utf8)))
                expectUsageError(try Tool.run(["resize-arena", heap, "--name", "a", "--size=\(spelling)"]))
            }
            // A negative number as a separate word is not a value either.
            expectUsageError(try Tool.run(["create-arena", heap, "--name", "b", "--size", "-2M"]))
        }
        let unmade = scratch.file("unmade")
        expectUsageError(try Tool.run(["create", unmade, "--size", "1.5G"]))
        #expect(!fileExists(unmade))
    }
}

@Suite struct JSONEncoderTests {
    @Test func escapesAndSortsKeys() throws {
        let value = JSON.object([
            "b": .string("q\"uote \\ back\nline\ttab\u{01}\u{7F} ünï 日本 🚀"),
            "a": .array([.integer(UInt64.max), .bool(true), .bool(false), .array([]), .object([:])]),
        ])
        let text = value.text
        #expect(text.firstRange(of: "\"a\"")!.lowerBound < text.firstRange(of: "\"b\"")!.lowerBound)
        #expect(text.contains("18446744073709551615"))
        let parsed = try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(parsed["b"] as? String == "q\"uote \\ back\nline\ttab\u{01}\u{7F} ünï 日本 🚀")
        #expect(!text.contains("\n\t"))
    }
}
