import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `daxheap grow` and `daxheap shrink` as an operator runs them: real files resized with
/// truncate(1), spawned commands, and every refusal a single error line with the file
/// byte-for-byte unchanged.
@Suite struct ResizeTests {
    /// Resizes a file as an operator would: `truncate -s SIZE PATH`.
    static func truncateFile(_ path: String, to size: Int) throws {
        let done = try runProcess("/usr/bin/truncate", ["-s", "\(size)", path])
        #expect(done == 0, "truncate -s \(size) \(path) exited \(done)")
    }

    static func runProcess(_ executable: String, _ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    static func info(_ heap: String) throws -> [String: Any] {
        try expectSuccess(Tool.run(["info", heap, "--json"])).json()
    }

    /// The arenas and their extents as `list --json` gives them, without the available size.
    static func arenas(_ heap: String) throws -> String {
        let list = try expectSuccess(Tool.run(["list", heap, "--json"])).json()
        let data = try JSONSerialization.data(withJSONObject: list["arenas"] ?? [], options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    @Test func growAfterTruncateKeepsArenasAndGrowsTheLastOneInPlace() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        // The usable region [2, 14) MiB, full: b ends where the secondary copy starts.
        let heap = try scratch.heap(size: "16M", arenas: [("a", "4M"), ("b", "8M")])
        let data = pattern(MiB, seed: 9)
        expectSuccess(try Tool.run(["write", heap, "--name", "a", "--offset", "1M"], stdin: data))
        let arenas = try Self.arenas(heap)
        try Self.truncateFile(heap, to: 32 * MiB)

        // Grown device: read-only commands work and say so; read-write ones name grow.
        let before = try Self.info(heap)
        #expect(integer(before["size"]) == UInt64(32 * MiB) && integer(before["heap_size"]) == UInt64(16 * MiB))
        #expect(integer(before["unused_device_size"]) == UInt64(16 * MiB))
        let human = expectSuccess(try Tool.run(["info", heap])).out
        #expect(human.contains("unused device size:  16 MiB (\(16 * MiB) bytes) past the heap's end: run `daxheap grow \(heap)`"), "\(human)")
        #expect(try Self.arenas(heap) == arenas)
        try expectUnchanged(heap) {
            expectFailure(try Tool.run(["create-arena", heap, "--name", "c", "--size", "2M"]),
                          "is \(32 * MiB) bytes but its heap spans only the first \(16 * MiB)", "daxheap grow \(heap)")
        }

        let grew = expectSuccess(try Tool.run(["grow", heap]))
        #expect(grew.out == "grew the heap on \(heap) from 16 MiB to 32 MiB: 28 MiB usable, 16 MiB more\n")
        let after = try Self.info(heap)
        #expect(integer(after["heap_size"]) == UInt64(32 * MiB) && integer(after["unused_device_size"]) == 0)
        #expect(integer(after["usable_size"]) == UInt64(28 * MiB) && integer(after["available_size"]) == UInt64(16 * MiB))
        #expect(try Self.arenas(heap) == arenas)
        #expect(expectSuccess(try Tool.run(["read", heap, "--name", "a", "--offset", "1M", "--length", "1M"])).stdout == data)

        // b grows in place over the old secondary's block and the new space: zeros there.
        let resized = expectSuccess(try Tool.run(["resize-arena", heap, "--name", "b", "--size", "24M"]))
        #expect(resized.out.contains("now in 1 extent"), "\(resized.out)")
        let grown = expectSuccess(try Tool.run(["read", heap, "--name", "b", "--offset", "8M"]))
        #expect(grown.stdout.count == 16 * MiB && grown.stdout.allSatisfy { $0 == 0 })
        expectSuccess(try Tool.run(["check", heap]))
        // Growing again: nothing to do.
        try expectUnchanged(heap) {
            let again = try expectSuccess(Tool.run(["grow", heap])).out
            #expect(again == "the heap on \(heap) already spans its whole device (32 MiB); nothing to do\n")
        }
    }

    @Test func shrinkIsRefusedWithArenasInTheWayThenAllowed() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        // a [2, 6) MiB, b [6, 14) MiB, c [14, 16) MiB on a 32 MiB heap.
        let heap = try scratch.heap(size: "32M", arenas: [("a", "4M"), ("b", "8M"), ("c", "2M")])
        let data = pattern(4 * MiB, seed: 4)
        expectSuccess(try Tool.run(["write", heap, "--name", "a"], stdin: data))
        // To 12 MiB: the usable end is 10 MiB; b has [10, 14) past it, c all of it.
        try expectUnchanged(heap) {
            let run = try Tool.run(["shrink", heap, "--size", "12M"])
            expectFailure(run, "cannot shrink the heap on \(heap) to 12 MiB: arena \"b\" has 4 MiB, arena \"c\" has 2 MiB past its new usable end (device offset 10 MiB); shrink, destroy or move those arenas first (nothing was changed)")
        }
        expectSuccess(try Tool.run(["destroy-arena", heap, "--name", "c"]))
        expectSuccess(try Tool.run(["resize-arena", heap, "--name", "b", "--size", "4M"]))
        let arenas = try Self.arenas(heap)
        let shrank = expectSuccess(try Tool.run(["shrink", heap, "--size", "12M"]))
        #expect(shrank.out == "shrank the heap on \(heap) from 32 MiB to 12 MiB: 8 MiB usable; now cut the device to \(12 * MiB) bytes (truncate -s \(12 * MiB) \(heap)); until then the heap opens read-only\n")
        // Before the cut: read-only works, read-write names grow.
        let info = try Self.info(heap)
        #expect(integer(info["heap_size"]) == UInt64(12 * MiB) && integer(info["unused_device_size"]) == UInt64(20 * MiB))
        try expectUnchanged(heap) {
            expectFailure(try Tool.run(["create-arena", heap, "--name", "d", "--size", "2M"]), "daxheap grow \(heap)")
        }
        expectSuccess(try Tool.run(["check", heap]))
        // The cut the tool asked for; then everything works at the new size.
        try Self.truncateFile(heap, to: 12 * MiB)
        let check = expectSuccess(try Tool.run(["check", heap, "--json"]))
        #expect((try check.json()["healthy"]) as? Bool == true)
        #expect(try Self.arenas(heap) == arenas)
        #expect(expectSuccess(try Tool.run(["read", heap, "--name", "a"])).stdout == data)
        // a and b fill the 8 MiB usable now.
        expectFailure(try Tool.run(["create-arena", heap, "--name", "d", "--size", "2M"]), "not enough space")
        expectSuccess(try Tool.run(["destroy-arena", heap, "--name", "b"]))
        expectSuccess(try Tool.run(["create-arena", heap, "--name", "d", "--size", "4M"]))
    }

    @Test func badInputChangesNothing() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: "32M", arenas: [("a", "4M"), ("b", "8M")])
        try expectUnchanged(heap) {
            expectFailure(try Tool.run(["shrink", heap, "--size", "8M"]), "arena \"b\" has 8 MiB past its new usable end")
            expectFailure(try Tool.run(["shrink", heap, "--size", "\(16 * MiB + 4096)"]), "a size of \(16 * MiB + 4096) bytes is not a multiple of 2 MiB")
            expectFailure(try Tool.run(["shrink", heap, "--size", "4M"]), "a size of 4 MiB is below the 6 MiB minimum")
            expectFailure(try Tool.run(["shrink", heap, "--size", "64M"]), "cannot shrink the heap on \(heap) to 64 MiB (\(64 * MiB) bytes): it spans only 32 MiB")
            expectUsageError(try Tool.run(["shrink", heap]))
            expectUsageError(try Tool.run(["shrink", heap, "--size", "1.5M"]))
            expectUsageError(try Tool.run(["grow"]))
        }
        // Not a heap, no such file.
        let zeros = scratch.file("zeros")
        try Data(count: 8 * MiB).write(to: URL(fileURLWithPath: zeros))
        try expectUnchanged(zeros) {
            expectFailure(try Tool.run(["grow", zeros]), "not a DaxHeap device")
            expectFailure(try Tool.run(["shrink", zeros, "--size", "6M"]), "not a DaxHeap device")
        }
        expectFailure(try Tool.run(["grow", scratch.file("missing")]), "does not exist")
        #expect(!fileExists(scratch.file("missing")))
    }

    @Test(.enabled(if: BadDeviceTests.flock != nil, "flock(1) is not installed"))
    func growAndShrinkOfAHeapInUseChangeNothing() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: "16M", arenas: [("a", "2M")])
        try Self.truncateFile(heap, to: 32 * MiB)
        for exclusive in [true, false] {
            let release = try BadDeviceTests().hold(heap, exclusive: exclusive)
            defer { release() }
            try expectUnchanged(heap) {
                expectFailure(try Tool.run(["grow", heap]), "in use by another process")
                expectFailure(try Tool.run(["shrink", heap, "--size", "8M"]), "in use by another process")
            }
        }
        expectSuccess(try Tool.run(["grow", heap]))
    }
}
