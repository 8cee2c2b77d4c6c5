import DaxDevice
import DaxHeap
@testable import DaxHeapTool
import Foundation
import Logging
import Testing
import DaxTestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite struct CheckTests {
    static let checkKeys: Set<String> = ["healthy", "metadata", "problems", "repaired", "badblocks", "unused_device_size",
                                         "old_metadata_copies", "device_layout"]

    struct Report {
        var healthy: Bool
        var primary: String
        var secondary: String
        var problems: [String]
        var repaired: [String]
    }

    /// Parses `check --json` output, asserting its exact shape.
    func report(_ run: Run, sourceLocation: SourceLocation = #_sourceLocation) throws -> Report {
        let json = try run.json()
        #expect(Set(json.keys) == Self.checkKeys, sourceLocation: sourceLocation)
        #expect(isBool(json["healthy"]), sourceLocation: sourceLocation)
        let metadata = try #require(json["metadata"] as? [String: Any], sourceLocation: sourceLocation)
        #expect(Set(metadata.keys) == ["primary", "secondary"], sourceLocation: sourceLocation)
        let problems = try #require(json["problems"] as? [String], sourceLocation: sourceLocation)
        let repaired = try #require(json["repaired"] as? [String], sourceLocation: sourceLocation)
        #expect(json["badblocks"] is [Any], sourceLocation: sourceLocation)
        #expect(isInteger(json["unused_device_size"]), sourceLocation: sourceLocation)
        return Report(healthy: (json["healthy"] as? Bool) ?? false, primary: metadata["primary"] as? String ?? "?",
                      secondary: metadata["secondary"] as? String ?? "?", problems: problems, repaired: repaired)
    }

    @Test func healthyHeap() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(arenas: [("a", "2M")])
        try expectUnchanged(heap) {
            let run = expectSuccess(try Tool.run(["check", heap, "--json"]))
            let r = try report(run)
            #expect(r.healthy && r.primary == "ok" && r.secondary == "ok" && r.problems.isEmpty && r.repaired.isEmpty)
            let human = expectSuccess(try Tool.run(["check", heap]))
            #expect(human.out.hasSuffix("healthy\n"), "\(human.out)")
            // --repair on a healthy heap changes nothing.
            let repair = expectSuccess(try Tool.run(["check", heap, "--repair", "--json"]))
            #expect(try report(repair).healthy)
        }
    }

    @Test(arguments: ["primary", "secondary"])
    func oneDamagedCopyIsFoundThenRepaired(copy: String) throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(arenas: [("a", "2M")])
        try expectSuccess(Tool.run(["write", heap, "--name", "a"], stdin: Data("payload".utf8)))
        let base = copy == "primary" ? 0 : try secondaryOffset(heap)
        try flipByte(heap, at: base + 40)
        // Without --repair: exit 3, and nothing is written.
        try expectUnchanged(heap) {
            let run = try Tool.run(["check", heap, "--json"])
            #expect(run.status == 3, "\(run)")
            #expect(run.stderr.isEmpty)
            let r = try report(run)
            #expect(!r.healthy)
            #expect((copy == "primary" ? r.primary : r.secondary) == "corrupt")
            #expect((copy == "primary" ? r.secondary : r.primary) == "ok")
            #expect(r.problems.count == 1 && r.problems[0].hasPrefix("\(copy) metadata copy is corrupt"), "\(r.problems)")
            #expect(r.repaired.isEmpty)
            let human = try Tool.run(["check", heap])
            #expect(human.status == 3)
            #expect(human.out.contains("check --repair"), "\(human.out)")
        }
        // With --repair: exit 0; found what it found, repaired it, healthy now.
        let run = try Tool.run(["check", heap, "--repair", "--json"])
        #expect(run.status == 0, "\(run)")
        #expect(run.stderrLines.count == 1 && run.stderrLines[0].hasPrefix("note: rewrote the \(copy) metadata copy"), "\(run.stderr)")
        let r = try report(run)
        #expect(r.healthy)
        #expect((copy == "primary" ? r.primary : r.secondary) == "corrupt")
        #expect(r.problems.count == 1)
        #expect(r.repaired.count == 1 && r.repaired[0].contains("rewrote the \(copy) metadata copy"), "\(r.repaired)")
        // The repair stays: both copies identical again, data intact.
        let after = try report(expectSuccess(try Tool.run(["check", heap, "--json"])))
        #expect(after.healthy && after.primary == "ok" && after.secondary == "ok")
        let secondary = try secondaryOffset(heap)
        #expect(try readBytes(heap, at: 0, count: 4096) == readBytes(heap, at: secondary, count: 4096))
        #expect(expectSuccess(try Tool.run(["read", heap, "--name", "a", "--length", "7"])).stdout == Data("payload".utf8))
    }

    @Test func humanRepairOutput() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap()
        try flipByte(heap, at: 60)
        let run = try Tool.run(["check", heap, "--repair"])
        #expect(run.status == 0)
        for fragment in ["primary metadata copy:", "corrupt", "1 problem found", "repaired:", "healthy after repair"] {
            #expect(run.out.contains(fragment), "\(run.out)")
        }
    }

    @Test func staleCopyIsFoundAndRepaired() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap()
        let secondary = try secondaryOffset(heap)
        let old = try readBytes(heap, at: secondary, count: 2 * MiB)
        expectSuccess(try Tool.run(["create-arena", heap, "--name", "a", "--size", "2M"]))
        try writeBytes(heap, at: secondary, old)  // an update that never reached the secondary
        try expectUnchanged(heap) {
            let info = try Tool.run(["info", heap, "--json"]).json()
            #expect((info["metadata"] as? [String: Any])?["secondary"] as? String == "stale")
            #expect(number(info["generation"]) == 2)
            let run = try Tool.run(["check", heap, "--json"])
            #expect(run.status == 3)
            let r = try report(run)
            #expect(r.secondary == "stale" && r.primary == "ok")
            #expect(r.problems.count == 1 && r.problems[0].contains("stale"))
        }
        // A read-write command repairs first and says so.
        let run = try Tool.run(["create-arena", heap, "--name", "b", "--size", "2M"])
        #expect(run.status == 0)
        #expect(run.stderrLines.count == 1 && run.stderrLines[0].hasPrefix("note: rewrote the secondary metadata copy"), "\(run.stderr)")
        expectSuccess(try Tool.run(["check", heap]))
    }

    @Test func bothCopiesDamaged() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(arenas: [("a", "2M")])
        try flipByte(heap, at: 40)
        try flipByte(heap, at: try secondaryOffset(heap) + 40)
        try expectUnchanged(heap) {
            for arguments in [["check", heap, "--json"], ["check", heap, "--repair", "--json"]] {
                let run = try Tool.run(arguments)
                #expect(run.status == 3, "\(run)")
                #expect(run.stderr.isEmpty, "\(run.stderr)")
                let r = try report(run)
                #expect(!r.healthy && r.primary == "corrupt" && r.secondary == "corrupt")
                #expect(r.problems.count == 2)
                #expect(r.problems.contains { $0.hasPrefix("primary metadata copy is corrupt: ") })
                #expect(r.problems.contains { $0.hasPrefix("secondary metadata copy is corrupt: ") })
                #expect(r.repaired.isEmpty)
            }
            let human = try Tool.run(["check", heap])
            #expect(human.status == 3)
            #expect(human.out.contains("backup"))
            // Every other command fails plainly.
            expectFailure(try Tool.run(["info", heap]), "both metadata copies", "are bad")
            expectFailure(try Tool.run(["list", heap, "--json"]), "both metadata copies")
            expectFailure(try Tool.run(["read", heap, "--name", "a"]), "both metadata copies")
            expectFailure(try Tool.run(["write", heap, "--name", "a"], stdin: Data([1])), "both metadata copies")
            expectFailure(try Tool.run(["create-arena", heap, "--name", "b", "--size", "2M"]), "both metadata copies")
            expectFailure(try Tool.run(["resize-arena", heap, "--name", "a", "--size", "4M"]), "both metadata copies")
            expectFailure(try Tool.run(["destroy-arena", heap, "--name", "a"]), "both metadata copies")
        }
    }

    /// A device cut short lost its secondary copy and the arena data past the cut: that is
    /// damage (exit 3), and the one line says how to get back to a heap that can be repaired.
    @Test func deviceCutShortIsDamage() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: "16M", arenas: [("a", "2M")])
        try expectSuccess(Tool.run(["write", heap, "--name", "a"], stdin: Data("payload".utf8)))
        #expect(truncate(heap, off_t(14 * MiB)) == 0)
        try expectUnchanged(heap) {
            for arguments in [["check", heap], ["check", heap, "--json"], ["check", heap, "--repair"]] {
                let run = try Tool.run(arguments)
                #expect(run.status == 3, "\(arguments): \(run)")
                #expect(run.stdout.isEmpty, "\(run.out)")
                #expect(run.stderrLines.count == 1, "\(run.stderr)")
                let line = String(run.stderrLines.first ?? "")
                for fragment in ["error: \(heap) is \(14 * MiB) bytes but its heap was made for \(16 * MiB) bytes",
                                 "cut short", "truncate -s \(16 * MiB) \(heap)", "daxheap check --repair \(heap)"] {
                    #expect(line.contains(fragment), "lacks \"\(fragment)\": \(line)")
                }
            }
        }
        // Doing what it says gives a heap that --repair makes healthy, with the data kept.
        #expect(truncate(heap, off_t(16 * MiB)) == 0)
        #expect(try Tool.run(["check", heap]).status == 3)
        #expect(try Tool.run(["check", heap, "--repair"]).status == 0)
        expectSuccess(try Tool.run(["check", heap]))
        #expect(expectSuccess(try Tool.run(["read", heap, "--name", "a", "--length", "7"])).stdout == Data("payload".utf8))
    }

    /// A device larger than its heap is not damage: check reports the unused bytes, healthy
    /// (exit 0), and --repair has nothing to do (grow is what uses them).
    @Test func deviceGrownIsNotDamage() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: "16M")
        #expect(truncate(heap, off_t(18 * MiB)) == 0)
        try expectUnchanged(heap) {
            let human = expectSuccess(try Tool.run(["check", heap]))
            for fragment in ["unused device size:", "2 MiB (\(2 * MiB) bytes) past the heap's end", "daxheap grow \(heap)", "healthy"] {
                #expect(human.out.contains(fragment), "check lacks \(fragment): \(human.out)")
            }
            for arguments in [["check", heap, "--json"], ["check", heap, "--repair", "--json"]] {
                let run = expectSuccess(try Tool.run(arguments))
                let found = try report(run)
                #expect(found.healthy && found.repaired.isEmpty, "\(run)")
                #expect(integer(try run.json()["unused_device_size"]) == UInt64(2 * MiB))
            }
        }
    }

    @Test func zeroedPrimaryIsDamageNotAForeignDevice() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap()
        try writeBytes(heap, at: 0, [UInt8](repeating: 0, count: 4096))
        let run = try Tool.run(["check", heap, "--json"])
        #expect(run.status == 3)
        #expect(try report(run).primary == "corrupt")
        #expect(try Tool.run(["check", heap, "--repair"]).status == 0)
        expectSuccess(try Tool.run(["check", heap]))
    }

    /// A read-write command repairs first; the repair stays even when the command fails.
    @Test func failedReadWriteCommandKeepsItsRepair() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(arenas: [("a", "2M")])
        try flipByte(heap, at: 100)
        let run = try Tool.run(["destroy-arena", heap, "--name", "nope"])
        expectFailure(run, "no arena named \"nope\"", notes: 1)
        #expect(run.stderrLines.first?.hasPrefix("note: rewrote the primary metadata copy from the secondary one") == true)
        expectSuccess(try Tool.run(["check", heap]))
        // And a successful one prints the note and does its job.
        try flipByte(heap, at: try secondaryOffset(heap) + 100)
        let write = try Tool.run(["write", heap, "--name", "a"], stdin: Data("x".utf8))
        #expect(write.status == 0)
        #expect(write.stderrLines.count == 1 && write.stderrLines[0].hasPrefix("note: rewrote the secondary"))
        expectSuccess(try Tool.run(["check", heap]))
    }

    /// Bad blocks, as the platform would report them (injected into an in-process open:
    /// an emulated device has none), are listed by what they hit, in JSON and for humans,
    /// and make the heap unhealthy (exit status 3).
    @Test func badBlocksAreTranslatedAndListed() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let path = try scratch.heap(arenas: [("a", "4M")])  // a: one extent at device offset 2 MiB
        // 4 KiB in the primary copy, 8 KiB straddling a's first 2 MiB boundary... and free space.
        let reported = [BadRange(offset: 4096, length: 4096), BadRange(offset: (2 << 20) + (2 << 20) - 4096, length: 8192),
                        BadRange(offset: 10 << 20, length: 512)]
        try expectUnchanged(path) {
            let outcome: CheckCommand.Outcome
            do {
                let heap = try Heap.open(path: path, mode: .readOnly, logger: Logger(label: "test"), sysfsRoot: "/sys",
                                         faults: nil, reportedBadRanges: reported)
                outcome = CheckCommand.Outcome(heap.check(), heapSize: heap.heapSize, unusedDeviceSize: heap.unusedDeviceSize)
            }
            #expect(!outcome.healthy)
            let jsonLines = try CheckCommand.parse([path, "--json"]).output(outcome)
            let json = try #require(JSONSerialization.jsonObject(with: Data(jsonLines.joined().utf8)) as? [String: Any])
            let blocks = try #require(json["badblocks"] as? [[String: Any]])
            #expect(blocks.count == 3)
            for block in blocks {
                #expect(Set(block.keys) == ["device_offset", "length", "arena", "arena_offset", "location"])
            }
            // Values are taken out of the JSON before comparing (AddressSanitizer trips on
            // Swift Testing's expansion of comparisons over subscripted Any values).
            let locations = blocks.map { $0["location"] as? String ?? "?" }
            let arenas = blocks.map { $0["arena"] as? String ?? "null" }
            let offsets = blocks.map { number($0["device_offset"]) }
            let arenaOffsets = blocks.map { number($0["arena_offset"]) }
            let lengths = blocks.map { number($0["length"]) }
            #expect(locations == ["metadata primary", "arena", "unallocated"])
            #expect(arenas == ["null", "a", "null"])
            // Typed constants: shifts inside the macros' literals took seconds to type-check.
            let straddle: UInt64 = (2 << 20) - 4096  // where the straddling block starts in "a"
            let expectedOffsets: [UInt64] = [4096, (2 << 20) + straddle, 10 << 20]
            #expect(offsets == expectedOffsets)
            #expect(arenaOffsets[1] == straddle)
            #expect(lengths == [4096, 8192, 512])
            #expect(json["healthy"] as? Bool == false)
            let human = try CheckCommand.parse([path]).output(outcome).joined(separator: "\n")
            #expect(human.contains("bad block at device offset 4096, 4096 bytes, in the primary metadata copy"), "\(human)")
            #expect(human.contains("in arena \"a\" at offset \(straddle)"), "\(human)")
        }
    }
}
