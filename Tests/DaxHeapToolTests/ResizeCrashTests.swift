import DaxTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `daxheap grow` and `daxheap shrink` killed with `DAXHEAP_CRASH_AFTER_BYTES=N` at every
/// sweep point (docs/FORMAT.md, "Crash injection"): after every crash `check --repair`
/// makes the heap healthy at exactly the old or the new size with the arenas and data
/// intact (the new one once the first copy is whole), and the operator's next step works:
/// the same command again, and for a shrink the cut of the file to the new size.
@Suite struct ResizeCrashTests {
    /// The heap's size and its arenas: what must be the state before or after.
    static func shape(_ heap: String) throws -> String {
        let info = try ResizeTests.info(heap)
        return "heap_size \(integer(info["heap_size"]) ?? 0), arenas \(try ResizeTests.arenas(heap))"
    }

    /// Runs `operation` on a pristine copy of `heap` killed at every sweep point. Its
    /// stores: the first copy, the second, then the old secondary's 8-byte magic cleared.
    func sweepOperation(_ operation: [String], on heap: String, scratch: Scratch, cutTo cut: Int? = nil) throws {
        let pristine = try contents(heap)
        let data = try expectSuccess(Tool.run(["read", heap, "--name", "a"])).stdout
        let before = try Self.shape(heap)
        let reference = scratch.file("reference")
        try pristine.write(to: URL(fileURLWithPath: reference))
        expectSuccess(try Tool.run(operation.map { $0 == heap ? reference : $0 }))
        let after = try Self.shape(reference).replacingOccurrences(of: reference, with: heap)
        #expect(after != before, "\(operation) changed nothing")
        let (arenas, extents) = try CrashTests.counts(CrashTests.state(heap))
        let image = CrashTests.imageSize(arenas: arenas, extents: extents)
        let total = 2 * image + 8
        var points = Set(CrashTests.sweep(total: total, image: image, seed: UInt64(total)))
        points.formUnion([2 * image, 2 * image + 1, 2 * image + 4, 2 * image + 7])
        for n in points.sorted() {
            try pristine.write(to: URL(fileURLWithPath: heap))
            let crashed = try Tool.run(operation, environment: ["DAXHEAP_CRASH_AFTER_BYTES": "\(n)"])
            #expect(crashed.status == (n <= total ? SIGKILL : 0), "\(operation[0]) N=\(n): \(crashed)")
            let repair = try Tool.run(["check", heap, "--repair", "--json"])
            #expect(repair.status == 0, "\(operation[0]) N=\(n): check --repair: \(repair)")
            let found = try Self.shape(heap)
            #expect(found == before || found == after, "\(operation[0]) N=\(n): neither before nor after: \(found)")
            if n >= image {
                #expect(found == after, "\(operation[0]) N=\(n): a whole first copy did not decide")
            }
            #expect(try Tool.run(["check", heap, "--json"]).status == 0, "\(operation[0]) N=\(n): not healthy after the repair")
            #expect(try expectSuccess(Tool.run(["read", heap, "--name", "a"])).stdout == data, "\(operation[0]) N=\(n): data lost")
            // The operator's next step: the command again (clearing, and saying so, the old
            // copy a kill during the last store left behind), then (shrink) the cut.
            let again = try Tool.run(operation)
            #expect(again.status == 0, "\(operation[0]) N=\(n): again: \(again)")
            #expect(again.stderrLines.allSatisfy { $0.hasPrefix("note: cleared an old metadata copy at device offset") }, "\(again)")
            #expect(try Self.shape(heap) == after, "\(operation[0]) N=\(n): running it again did not finish it")
            if let cut {
                try ResizeTests.truncateFile(heap, to: cut)
                let check = try Tool.run(["check", heap, "--json"])
                let unused = integer(try check.json()["unused_device_size"])
                #expect(check.status == 0 && unused == 0, "\(operation[0]) N=\(n): after the cut: \(check)")
                expectSuccess(try Tool.run(["create-arena", heap, "--name", "after-cut", "--size", "2M"]))
            }
        }
    }

    @Test func growIsAtomic() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: "16M", arenas: [("a", "4M"), ("b", "6M")])
        expectSuccess(try Tool.run(["write", heap, "--name", "a", "--offset", "3M"], stdin: pattern(MiB, seed: 2)))
        try ResizeTests.truncateFile(heap, to: 32 * MiB)
        try sweepOperation(["grow", heap], on: heap, scratch: scratch)
    }

    @Test func shrinkIsAtomic() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: "32M", arenas: [("a", "4M"), ("b", "2M")])
        expectSuccess(try Tool.run(["write", heap, "--name", "a", "--offset", "3M"], stdin: pattern(MiB, seed: 3)))
        try sweepOperation(["shrink", heap, "--size", "12M"], on: heap, scratch: scratch, cutTo: 12 * MiB)
    }
}
