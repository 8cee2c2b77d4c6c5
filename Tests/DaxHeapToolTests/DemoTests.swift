import Foundation
import Testing

@Suite struct DemoTests {
    @Test func demoInTheTemporaryDirectoryLeavesNothingBehind() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let started = Date()
        let run = try Tool.run(["demo"], environment: ["TMPDIR": scratch.path])
        #expect(Date().timeIntervalSince(started) < 20)
        expectSuccess(run)
        let text = run.out
        for fragment in ["discontiguous", "2 extents", "across", "identical", "corrupt", "repair", "healthy"] {
            #expect(text.contains(fragment), "demo output lacks \"\(fragment)\":\n\(text)")
        }
        #expect(text.contains(scratch.path), "the demo works in $TMPDIR")
        #expect(run.out.split(separator: "\n").count >= 8)
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path).isEmpty, "demo left files behind")
    }

    @Test func demoAtAPathLeavesTheHeapThere() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let path = scratch.file("demo.heap")
        expectSuccess(try Tool.run(["demo", path]))
        #expect(fileExists(path))
        expectSuccess(try Tool.run(["check", path]))
        let list = try Tool.run(["list", path, "--json"]).json()
        let arenas = try #require(list["arenas"] as? [[String: Any]])
        #expect(arenas.map { $0["name"] as? String } == ["b", "c"])
        #expect((arenas[0]["extents"] as? [Any])?.count == 2)
        // A second run refuses the now non-empty file, like create without --force.
        try expectUnchanged(path) {
            expectFailure(try Tool.run(["demo", path]), "refusing to overwrite")
        }
        expectFailure(try Tool.run(["demo", scratch.file("no/such/dir.heap")]), "does not exist")
        expectFailure(try Tool.run(["demo", scratch.path]), "is a directory")
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path) == ["demo.heap"])
    }
}
