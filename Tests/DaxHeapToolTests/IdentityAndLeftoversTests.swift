// The check command's reports added with issue 15's device identity: the device layout
// (a changed one refuses --repair unless --accept-new-device-layout), old metadata copies
// left outside the heap's two places, and bad blocks past the heap's end.

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

private func truncateFile(_ path: String, to size: Int) throws {
    try ResizeTests.truncateFile(path, to: size)
}

private func copyRange(_ path: String, offset: Int, count: Int) throws -> Data {
    let handle = try #require(FileHandle(forReadingAtPath: path))
    defer { try? handle.close() }
    try handle.seek(toOffset: UInt64(offset))
    return try handle.read(upToCount: count) ?? Data()
}

private func patch(_ path: String, offset: Int, _ data: Data) throws {
    let handle = try #require(FileHandle(forWritingAtPath: path))
    defer { try? handle.close() }
    try handle.seek(toOffset: UInt64(offset))
    try handle.write(contentsOf: data)
}

@Suite struct IdentityAndLeftoversTests {
    @Test func acceptingANewLayoutNeedsRepairAndIsHarmlessOnAFile() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(arenas: [("a", "2M")])
        try expectUnchanged(heap) {
            expectUsageError(try Tool.run(["check", heap, "--accept-new-device-layout"]))
            let run = try Tool.run(["check", heap, "--repair", "--accept-new-device-layout"])
            expectSuccess(run)
            #expect(run.out.hasSuffix("healthy\n"), "\(run)")
            #expect(!run.out.contains("device layout"), "a file has no device layout to show: \(run.out)")
        }
        let json = try Tool.run(["check", heap, "--json"]).json()
        #expect(json["device_layout"] as? String == "not recorded")
    }

    /// A grow's old secondary put back in the grown heap's free space (a clear that failed):
    /// check reports it, exit 3; check --repair clears it.
    @Test func anOldCopyIsReportedAndCheckRepairClearsIt() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(arenas: [("a", "2M")])
        try truncateFile(heap, to: 24 * MiB)
        expectSuccess(try Tool.run(["grow", heap]))
        let generation = try #require(integer(try Tool.run(["info", heap, "--json"]).json()["generation"]))
        let copy = try copyRange(heap, offset: 22 * MiB, count: 4096)
        try truncateFile(heap, to: 32 * MiB)
        expectSuccess(try Tool.run(["grow", heap]))
        try patch(heap, offset: 22 * MiB, copy)

        let check = try Tool.run(["check", heap, "--json"])
        #expect(check.status == 3, "\(check)")
        let json = try check.json()
        let copies = try #require(json["old_metadata_copies"] as? [[String: Any]])
        #expect(copies.count == 1)
        let fields = copies.first.map { c in [integer(c["device_offset"]), integer(c["generation"]), integer(c["heap_size"])] }
        #expect(fields == [UInt64(22 * MiB), generation, UInt64(24 * MiB)])
        let problems = json["problems"] as? [String] ?? []
        #expect(problems.count == 1 && problems.first?.hasPrefix("old metadata copy of this heap at device offset \(22 * MiB)") == true, "\(problems)")

        let repair = try Tool.run(["check", heap, "--repair"])
        #expect(repair.status == 0, "\(repair)")
        #expect(repair.out.contains("cleared an old metadata copy at device offset \(22 * MiB)"), "\(repair.out)")
        #expect(repair.out.hasSuffix("healthy after repair\n"), "\(repair.out)")
        expectSuccess(try Tool.run(["check", heap]))
    }

    /// On a device-dax whose layout changed (a fake sysfs tree describes the heap's file as
    /// one: the package-only hook, in process), check reports it and says how to accept it.
    @Test func aChangedLayoutIsReportedWithTheWayToAcceptIt() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let path = scratch.file("heap")
        let sysfs = scratch.file("sysfs")
        let number = DeviceNumber(major: 251, minor: 3)
        func fakeDevice(regionID: Int) throws {
            let dir = "\(sysfs)/dev/char/\(number)"
            try? FileManager.default.removeItem(atPath: sysfs)
            try FileManager.default.createDirectory(atPath: "\(dir)/device/dax_region", withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: "\(dir)/subsystem", withDestinationPath: "../../../bus/dax")
            try Data("16777216\n".utf8).write(to: URL(fileURLWithPath: "\(dir)/size"))
            try Data("2097152\n".utf8).write(to: URL(fileURLWithPath: "\(dir)/align"))
            try Data("\(regionID)\n".utf8).write(to: URL(fileURLWithPath: "\(dir)/device/dax_region/id"))
        }
        try fakeDevice(regionID: 0)
        _ = try Heap.create(path: path, size: 16 << 20, overwrite: false, logger: Logger(label: "test"), sysfsRoot: sysfs,
                            faults: nil, identityDevice: number)
        try fakeDevice(regionID: 4)
        let heap = try Heap.open(path: path, mode: .readOnly, logger: Logger(label: "test"), sysfsRoot: sysfs, faults: nil,
                                 identityDevice: number)
        var outcome = CheckCommand.Outcome(heap.check(), heapSize: heap.heapSize, unusedDeviceSize: heap.unusedDeviceSize)
        outcome.layout = heap.deviceLayoutState
        #expect(!outcome.healthy)
        let human = try CheckCommand.parse([path]).output(outcome)
        #expect(human.contains { $0.hasPrefix("device layout:") && $0.hasSuffix("changed") }, "\(human)")
        #expect(human.contains { $0.contains("region id is 4, was 0") }, "\(human)")
        #expect(human.last == "damaged: the device's layout changed (it was re-created); if that is intended, run `daxheap check --repair --accept-new-device-layout \(path)` to record the new layout")
        let json = try #require(JSONSerialization.jsonObject(with: Data(try CheckCommand.parse([path, "--json"]).output(outcome).joined().utf8)) as? [String: Any])
        #expect(json["device_layout"] as? String == "changed")
        let info = Formatting.infoLines(heap)
        #expect(info.contains { $0.hasPrefix("device identity:") && $0.hasSuffix("region 0, 2 MiB alignment, mapping ranges unknown") }, "\(info)")
    }

    @Test func badBlocksPastTheHeapsEndAreListed() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let path = try scratch.heap()
        try truncateFile(path, to: 24 * MiB)
        let heap = try Heap.open(path: path, mode: .readOnly, logger: Logger(label: "test"), sysfsRoot: "/sys", faults: nil,
                                 reportedBadRanges: [BadRange(offset: UInt64(20 * MiB), length: 4096)])
        let outcome = CheckCommand.Outcome(heap.check(), heapSize: heap.heapSize, unusedDeviceSize: heap.unusedDeviceSize)
        let json = try #require(JSONSerialization.jsonObject(with: Data(try CheckCommand.parse([path, "--json"]).output(outcome).joined().utf8)) as? [String: Any])
        let blocks = try #require(json["badblocks"] as? [[String: Any]])
        let locations = blocks.map { $0["location"] as? String ?? "?" }
        #expect(locations == ["past heap end"])
        let human = try CheckCommand.parse([path]).output(outcome)
        #expect(human.contains("  bad block at device offset \(20 * MiB), 4096 bytes, past the heap's end (unused device space)"), "\(human)")
    }
}

@Suite struct MoveArenaCommandTests {
    /// The operator's sequence: shrink refused with an arena in the way, move-arena, shrink, cut.
    @Test func moveArenaLetsTheShrinkProceed() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: "32M", arenas: [("a", "4M"), ("filler", "16M"), ("b", "6M")])
        expectSuccess(try Tool.run(["write", heap, "--name", "b"], stdin: pattern(4096, seed: 9)))
        expectSuccess(try Tool.run(["destroy-arena", heap, "--name", "filler"]))
        expectFailure(try Tool.run(["shrink", heap, "--size", "16M"]), "arena \"b\" has 6 MiB past its new usable end")
        try expectUnchanged(heap) {
            expectFailure(try Tool.run(["move-arena", heap, "--name", "nope", "--below", "16M"]), "no arena named \"nope\"")
            expectFailure(try Tool.run(["move-arena", heap, "--name", "b", "--below", "8M"]), "not enough space")
            expectUsageError(try Tool.run(["move-arena", heap, "--name", "b", "--below", "1.5M"]))
        }
        let move = try Tool.run(["move-arena", heap, "--name", "b", "--below", "16M"])
        expectSuccess(move)
        #expect(move.out == "moved 6 MiB of arena \"b\" below 14 MiB, now in 1 extent; `daxheap shrink \(heap) --size 16777216` can proceed\n", "\(move)")
        expectSuccess(try Tool.run(["shrink", heap, "--size", "16M"]))
        try ResizeTests.truncateFile(heap, to: 16 * MiB)
        expectSuccess(try Tool.run(["check", heap]))
        let read = try Tool.run(["read", heap, "--name", "b", "--length", "4096"])
        #expect(read.status == 0 && read.stdout == pattern(4096, seed: 9), "\(read.status) \(read.stderr)")
    }
}
