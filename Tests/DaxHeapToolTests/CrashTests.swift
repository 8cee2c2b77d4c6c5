import Foundation
import Testing
import DaxTestSupport

/// Torn updates, for real: `DAXHEAP_CRASH_AFTER_BYTES=N` makes `daxheap` SIGKILL itself once
/// it has stored N bytes into the metadata blocks (docs/FORMAT.md, "Crash injection"). After
/// every crash the heap must open, `check --repair` must make it healthy, and the arena
/// table must be exactly the state before or after the interrupted operation.
@Suite struct CrashTests {
    /// Bytes one metadata copy takes for a table of `arenas` arenas and `extents` extents.
    static func imageSize(arenas: Int, extents: Int) -> Int { 64 + 16 + 96 * arenas + 24 * extents }

    /// The table as `list --json` prints it (sorted, stable): the state compared.
    static func state(_ heap: String) throws -> String {
        let run = try Tool.run(["list", heap, "--json"])
        #expect(run.status == 0, "\(run)")
        return run.out
    }

    static func counts(_ listJSON: String) throws -> (arenas: Int, extents: Int) {
        let object = try JSONSerialization.jsonObject(with: Data(listJSON.utf8)) as? [String: Any]
        let arenas = object?["arenas"] as? [[String: Any]] ?? []
        return (arenas.count, arenas.reduce(0) { $0 + (($1["extents"] as? [Any])?.count ?? 0) })
    }

    /// Powers of two up to `total` and their neighbours, the copy boundaries, and random
    /// points. Under a sanitizer (scripts/sanitizers.sh) the powers of two come without
    /// their neighbours and 3 random points instead of 12: there each point costs several
    /// processes at several times the price, and its neighbours run the same code; the
    /// boundaries where the outcome changes are all kept.
    static func sweep(total: Int, image: Int, seed: UInt64) -> [Int] {
        var points = Set<Int>()
        var p = 1
        while p <= total + 1 {
            points.formUnion(sanitizerIsLoaded ? [p] : [p - 1, p, p + 1])
            p <<= 1
        }
        points.formUnion([8, 59, 60, 63, 64, 65, 79, 80, image - 1, image, image + 1, 2 * image - 1, total, total + 1])
        var rng = SplitMix64(seed: seed)
        for _ in 0 ..< (sanitizerIsLoaded ? 3 : 12) { points.insert(Int(rng.next() % UInt64(total + 1)) + 1) }
        return points.filter { $0 >= 1 && $0 <= total + 1 }.sorted()
    }

    /// Runs `operation` on a pristine copy of `heap` for every sweep point.
    func sweepOperation(_ operation: [String], name: String, on heap: String, scratch: Scratch) throws {
        let pristine = try contents(heap)
        let before = try Self.state(heap)
        // The state after, from an uninterrupted run on a copy.
        let reference = scratch.file("\(name).reference")
        try pristine.write(to: URL(fileURLWithPath: reference))
        expectSuccess(try Tool.run(operation.map { $0 == heap ? reference : $0 }))
        let after = try Self.state(reference)
        #expect(after != before, "the operation \(operation) changed nothing")
        let (arenas, extents) = try Self.counts(after)
        let image = Self.imageSize(arenas: arenas, extents: extents)
        let total = 2 * image  // the primary, then the secondary, each written whole
        for n in Self.sweep(total: total, image: image, seed: UInt64(total)) {
            try pristine.write(to: URL(fileURLWithPath: heap))
            let crashed = try Tool.run(operation, environment: ["DAXHEAP_CRASH_AFTER_BYTES": "\(n)"])
            if n <= total {
                #expect(crashed.status == SIGKILL, "\(name) N=\(n): expected SIGKILL, got \(crashed)")
            } else {
                #expect(crashed.status == 0, "\(name) N=\(n): \(crashed)")
            }
            let repair = try Tool.run(["check", heap, "--repair", "--json"])
            #expect(repair.status == 0, "\(name) N=\(n): check --repair: \(repair)")
            let found = try Self.state(heap)
            #expect(found == before || found == after, "\(name) N=\(n): the table is neither the state before nor after:\n\(found)")
            if n >= image {
                // The primary was complete and fenced: the new state must win.
                #expect(found == after, "\(name) N=\(n): a complete primary was not taken")
            }
            let healthy = try Tool.run(["check", heap, "--json"])
            #expect(healthy.status == 0, "\(name) N=\(n): not healthy after repair: \(healthy)")
        }
    }

    @Test func createArenaGrowShrinkAndDestroyAreAtomic() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: "32M", arenas: [("a", "2M"), ("b", "2M"), ("c", "4M")])
        try expectSuccess(Tool.run(["destroy-arena", heap, "--name", "b"]))
        try sweepOperation(["create-arena", heap, "--name", "new", "--size", "4M"], name: "create", on: heap, scratch: scratch)
        // a grows into b's old gap in place, then first-fit beyond c: two extents.
        try sweepOperation(["resize-arena", heap, "--name", "a", "--size", "8M"], name: "grow", on: heap, scratch: scratch)
        try sweepOperation(["resize-arena", heap, "--name", "c", "--size", "2M"], name: "shrink", on: heap, scratch: scratch)
        try sweepOperation(["destroy-arena", heap, "--name", "c"], name: "destroy", on: heap, scratch: scratch)
    }

    /// Several changes in one update (`provision`): the table before all of them or after all.
    @Test func aProvisionBatchIsAtomic() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: "32M", arenas: [("a", "2M"), ("b", "2M"), ("c", "4M")])
        try sweepOperation(["provision", heap, "create:index:4M", "destroy:b", "resize:a:6M", "create:log:2M"],
                           name: "provision", on: heap, scratch: scratch)
    }

    /// Creating the heap itself: until the primary is complete there is no heap (open fails
    /// and says so); from then on it is an empty, repairable heap.
    @Test func heapCreationIsAtomic() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let image = Self.imageSize(arenas: 0, extents: 0)
        for n in Self.sweep(total: 2 * image, image: image, seed: 7) {
            let heap = scratch.file("created-\(n)")
            let crashed = try Tool.run(["create", heap, "--size", "8M"], environment: ["DAXHEAP_CRASH_AFTER_BYTES": "\(n)"])
            #expect(crashed.status == (n <= 2 * image ? SIGKILL : 0), "N=\(n): \(crashed)")
            let repair = try Tool.run(["check", heap, "--repair", "--json"])
            if n >= image {
                #expect(repair.status == 0, "N=\(n): \(repair)")
                #expect(try Self.counts(Self.state(heap)).arenas == 0)
            } else if repair.status == 0 {
                // The bytes not yet stored were zeros already (the tail of a fresh table):
                // the primary is complete after all, and the heap is the new empty one.
                #expect(try Self.counts(Self.state(heap)).arenas == 0)
            } else {
                // No complete copy: not a heap (exit 1) or both copies bad (exit 3).
                #expect(repair.status == 1 || repair.status == 3, "N=\(n): \(repair)")
                #expect(!repair.stderr.contains("Fatal error"))
            }
            try? FileManager.default.removeItem(atPath: heap)
        }
    }

    /// SIGKILL at random moments of a loop of real operations (several processes in a
    /// row): the heap always comes back as the state after some prefix of the loop.
    @Test func randomKillsDuringALoopOfOperations() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let tool = try Tool.url().path
        let steps: [[String]] = [
            ["create-arena", "--name", "a", "--size", "2M"], ["create-arena", "--name", "b", "--size", "4M"],
            ["create-arena", "--name", "c", "--size", "2M"], ["destroy-arena", "--name", "b"],
            ["resize-arena", "--name", "a", "--size", "10M"], ["resize-arena", "--name", "c", "--size", "6M"],
            ["resize-arena", "--name", "a", "--size", "2M"], ["destroy-arena", "--name", "c"],
            ["create-arena", "--name", "d", "--size", "8M"], ["resize-arena", "--name", "d", "--size", "14M"],
        ]
        // The state after every prefix, from an uninterrupted run.
        let reference = try scratch.heap("reference", size: "32M")
        var states = [try Self.state(reference)]
        for step in steps {
            expectSuccess(try Tool.run([step[0], reference] + step.dropFirst()))
            states.append(try Self.state(reference))
        }
        let script = steps.map { "'\(tool)' \($0[0]) \"$1\" \($0.dropFirst().joined(separator: " ")) || exit 1" }
            .joined(separator: "\n")
        var rng = SplitMix64(seed: 0xDA7)
        var seen = Set<Int>()
        for round in 0 ..< 12 {
            let heap = try scratch.heap("loop-\(round)", size: "32M")
            let shell = Process()
            shell.executableURL = URL(fileURLWithPath: "/bin/sh")
            shell.arguments = ["-c", script, "sh", heap]
            shell.standardOutput = FileHandle.nullDevice
            shell.standardError = FileHandle.nullDevice
            try shell.run()
            usleep(useconds_t(rng.next() % 300_000))
            // Kill the running daxheap (the shell's child) first, then the shell.
            _ = try? Process.run(URL(fileURLWithPath: "/usr/bin/pkill"), arguments: ["-KILL", "-P", "\(shell.processIdentifier)"])
                .waitUntilExit()
            kill(shell.processIdentifier, SIGKILL)
            shell.waitUntilExit()
            let repair = try Tool.run(["check", heap, "--repair", "--json"])
            #expect(repair.status == 0, "round \(round): \(repair)")
            let found = try Self.state(heap)
            let index = states.firstIndex(of: found)
            #expect(index != nil, "round \(round): the table matches no prefix of the loop:\n\(found)")
            if let index { seen.insert(index) }
        }
        // The kills land at different points (not all before the first or after the last step).
        #expect(seen.count >= 2, "kills landed only at steps \(seen.sorted())")
    }
}

