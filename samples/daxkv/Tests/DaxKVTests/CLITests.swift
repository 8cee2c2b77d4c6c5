import DaxHeap
import Foundation
import Testing

@Suite("daxkv command line")
struct CLITests {
    @Test("put, get, delete, count, import and their errors")
    func commands() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let path = scratch.file("heap")
        _ = try Heap.create(path: path, size: 32 << 20)
        var run = try KVTool.run(["count", path])
        #expect(run.status == 0 && run.out == "0\n", "\(run)")
        run = try KVTool.run(["put", path, "k1", "hello world"])
        #expect(run.status == 0 && run.out.isEmpty && run.err.isEmpty, "\(run)")
        run = try KVTool.run(["get", path, "k1"])
        #expect(run.status == 0 && run.out == "hello world\n", "\(run)")
        run = try KVTool.run(["get", path, "nope"])
        #expect(run.status == 1 && run.out.isEmpty && run.err.hasPrefix("error: ") && run.err.contains("\"nope\" is not in store \"kv\""), "\(run)")
        #expect(run.err.split(separator: "\n").count == 1)
        run = try KVTool.run(["import", path], stdin: Data("a\t1\nb\tx\ty\nk1\treplaced\n".utf8))
        #expect(run.status == 0 && run.out == "a\nb\nk1\n", "\(run)")
        #expect(try KVTool.run(["get", path, "b"]).out == "x\ty\n")
        #expect(try KVTool.run(["get", path, "k1"]).out == "replaced\n")
        #expect(try KVTool.run(["count", path]).out == "3\n")
        run = try KVTool.run(["delete", path, "a"])
        #expect(run.status == 0 && run.out.isEmpty, "\(run)")
        run = try KVTool.run(["delete", path, "a"])
        #expect(run.status == 1 && run.err.contains("not in store"), "\(run)")
        #expect(try KVTool.run(["count", path]).out == "2\n")
        // Another store on the same heap.
        #expect(try KVTool.run(["put", path, "--store", "other", "a", "z"]).status == 0)
        #expect(try KVTool.run(["get", path, "--store", "other", "a"]).out == "z\n")
        #expect(try KVTool.run(["count", path, "--store", "other"]).out == "1\n")
        // Errors: a malformed import line, an oversized key, a missing heap.
        run = try KVTool.run(["import", path], stdin: Data("c\t3\nno tab here\nd\t4\n".utf8))
        #expect(run.status == 1 && run.out == "c\n" && run.err.contains("line 2") && run.err.hasPrefix("error: "), "\(run)")
        run = try KVTool.run(["put", path, String(repeating: "k", count: 1025), "v"])
        #expect(run.status == 1 && run.err.contains("1 to 1024 bytes"), "\(run)")
        run = try KVTool.run(["get", scratch.file("missing"), "k"])
        #expect(run.status == 1 && run.err.hasPrefix("error: ") && run.err.contains("does not exist"), "\(run)")
        // bench: the seven lines, quiet stderr when not a terminal, its store removed.
        run = try KVTool.run(["bench", path, "--keys", "2000", "--value-size", "64"])
        let names = run.out.split(separator: "\n").map { $0.split(separator: " ") }
        #expect(run.status == 0 && run.err.isEmpty, "\(run)")
        #expect(names.map { String($0[0]) } == ["daxkv.fill", "daxkv.read", "daxkv.read.batch16", "daxkv.update", "daxkv.update.reuse",
                                               "daxkv.fill.batch16", "daxkv.fill.growing"])
        #expect(names.allSatisfy { $0.count == 3 && Double($0[1]) != nil && $0[2] == "ops/s" })
        run = try KVTool.run(["bench", path, "--keys", "2000", "--threads", "2"])
        #expect(run.out.split(separator: "\n").map { String($0.split(separator: " ")[0]) } == [
            "daxkv.fill", "daxkv.read", "daxkv.read.batch16", "daxkv.update", "daxkv.update.reuse", "daxkv.fill.batch16",
            "daxkv.fill.growing", "daxkv.t2.fill", "daxkv.t2.read", "daxkv.t2.read.batch16", "daxkv.t2.update",
            "daxkv.t2.update.reuse", "daxkv.t2.fill.batch16", "daxkv.t2.fill.growing"], "\(run)")
        run = try KVTool.run(["bench", path, "--keys", "500", "--no-key-copy"])
        #expect(run.status == 0 && run.out.split(separator: "\n").count == 7, "\(run)")
        run = try KVTool.run(["bench", path, "--keys", "500", "--measure-open"])
        #expect(run.status == 0 && run.out.contains("daxkv.open "), "\(run)")
        #expect(try KVTool.run(["count", path]).out == "3\n")  // b, k1 and c
    }
}
