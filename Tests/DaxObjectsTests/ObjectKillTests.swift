// Issue 13's third proof: SIGKILL at random moments of a multi-threaded workload. A child
// (DaxObjectsProbe churn) runs two threads that allocate into slots, free from them and
// run transactions (one slot; a free and an allocation together, through the redo log)
// on a table under root "table", printing each operation before it starts and after it
// returned. The parent kills it with SIGKILL at a seeded random moment, reopens the heap
// as the next process would, and demands:
//   * every operation printed as done is durable: each slot holds what the completed
//     operations left (the object with its stamp, or null), except the slots of each
//     thread's one operation in flight, which hold all of its outcome or none of it;
//   * no leak: the live objects are exactly the table and what its slots reach;
//   * no double allocation: no object is reached twice, new allocations land on none of
//     the reached ones, and the allocator's invariants hold.
// Then the next round kills a new child working on the recovered heap. Every fourth child
// is killed counting from its spawn, so that some die while opening (recovery writes).
//
// Mutation that proves the checker can fail (by hand, then reverted): the probe printing
// "done" before the operation instead of after it. Round 1 fails: "slot 30: expected
// Optional(1099511627866), found nil" (an operation reported complete that never was).

import DaxHeap
@testable import DaxObjects
import DaxTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct ObjectKillTests {
    static let slots = 128
    static let threads = 2

    enum Probe {
        static func url() throws -> URL {
            try #require(builtExecutable(named: "DaxObjectsProbe", override: "DAXOBJECTS_PROBE"),
                         "DaxObjectsProbe was not found beside the test bundle; build with swift build --build-tests")
        }
    }

    /// One operation as the child printed it.
    struct Operation {
        var thread: Int
        var kind: String
        var a: Int
        var b: Int
        var stamp: UInt64

        /// The slots it changes and what each holds after it.
        var effect: [(Int, UInt64?)] {
            switch kind {
            case "alloc", "txalloc": return [(a, stamp)]
            case "free", "txfree": return [(a, nil)]
            default: return [(a, nil), (b, stamp)]  // txmove
            }
        }
    }

    struct Mismatch: Error, CustomStringConvertible { var description: String }

    @Test func sigkillAtRandomMomentsLosesNothingCompleted() throws {
        let fixture = try Fixture(heapSize: 256 << 20, arenaSize: 8 << 20)
        defer { fixture.remove() }
        let setup = try fixture.objects.makeContext()
        try setup.allocate(UInt64(Self.slots) * 8, kind: .references, into: fixture.objects.root(named: "table"))
        setup.close()
        try fixture.objects.close()
        try fixture.heap.close()

        var model = [UInt64?](repeating: nil, count: Self.slots)
        var random = SplitMix64(seed: 13)
        var completed = 0, inFlight = 0
        var startup = 50_000  // microseconds from spawn to "ready", as last measured
        let rounds = 16
        for round in 1...rounds {
            // Every fourth child is killed counting from its spawn, not from "ready", within
            // the time the last one took to get ready: some die in Heap.open or the object
            // heap's recovery (which writes: it clears chunks nothing reaches).
            let early = round % 4 == 0
            let delay = UInt32(early ? random.below(max(1, startup + startup / 4)) : 2_000 + random.below(60_000))
            let (output, ready) = try runAndKill(path: fixture.path, seed: UInt64(round), afterMicroseconds: delay, waitForReady: !early)
            if let ready { startup = ready }
            let (done, pending) = try parse(output)
            completed += done.count
            inFlight += pending.count
            for operation in done {
                for (slot, value) in operation.effect { model[slot] = value }
            }
            let found = try Self.read(fixture.path)
            // Each slot: the model, unless an operation in flight touches it; those hold
            // all of its effect or none.
            var touched = Set<Int>()
            for operation in pending {
                let effect = operation.effect
                touched.formUnion(effect.map(\.0))
                let before = effect.allSatisfy { found[$0.0] == model[$0.0] }
                let after = effect.allSatisfy { found[$0.0] == $0.1 }
                guard before || after else {
                    throw Mismatch(description: "round \(round): \(operation) half done: \(effect.map { "slot \($0.0) = \(String(describing: found[$0.0]))" })")
                }
                if after { for (slot, value) in effect { model[slot] = value } }
            }
            for slot in 0..<Self.slots where !touched.contains(slot) && found[slot] != model[slot] {
                throw Mismatch(description: "round \(round): slot \(slot): expected \(String(describing: model[slot])), found \(String(describing: found[slot]))")
            }
        }
        #expect(completed > 100, "the children completed \(completed) operations: too few to mean much")
        #expect(inFlight > 0, "no kill landed inside an operation in \(rounds) rounds")
    }

    /// Spawns the churning child, waits for "ready" (if `waitForReady`), kills it after
    /// `delay`; returns its standard output (its last line may be cut) and, when it waited,
    /// the microseconds from the spawn to "ready".
    func runAndKill(path: String, seed: UInt64, afterMicroseconds delay: UInt32, waitForReady: Bool) throws -> (String, Int?) {
        ignoreBrokenPipes()
        let process = Process()
        process.executableURL = try Probe.url()
        process.arguments = ["churn", path, "\(seed)", "\(Self.threads)"]
        // The cache-flush path (a kill loses no page-cache store either way): fast enough
        // that a round holds hundreds of operations even in a debug build.
        process.environment = ProcessInfo.processInfo.environment.merging(["PMEM_IS_PMEM_FORCE": "1"]) { $1 }
        let stdout = Pipe(), stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = FileHandle.nullDevice
        let spawned = ContinuousClock.now
        try process.run()
        let out = Collected(), err = Collected()
        let group = DispatchGroup()
        group.enter(); group.enter()
        Thread.detachNewThread {
            let reader = stdout.fileHandleForReading
            while case let data = reader.availableData, !data.isEmpty { out.append(data) }
            group.leave()
        }
        Thread.detachNewThread { err.set(stderr.fileHandleForReading.readDataToEndOfFile()); group.leave() }
        let deadline = Date().addingTimeInterval(30)
        while waitForReady, !String(decoding: out.get(), as: UTF8.self).contains("ready\n"), process.isRunning, Date() < deadline {
            usleep(500)
        }
        let startup = spawned.duration(to: .now).components
        let ready = waitForReady ? Int(startup.seconds) * 1_000_000 + Int(startup.attoseconds / 1_000_000_000_000) : nil
        usleep(delay)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        group.wait()
        let text = String(decoding: out.get(), as: UTF8.self)
        guard process.terminationReason == .uncaughtSignal, process.terminationStatus == SIGKILL else {
            throw Mismatch(description: "the child ended by itself (\(process.terminationStatus)): \(text.suffix(500)) \(String(decoding: err.get(), as: UTF8.self))")
        }
        return (text, ready)
    }

    /// The completed operations, and per thread the one in flight (printed, not done).
    func parse(_ output: String) throws -> (done: [Operation], pending: [Operation]) {
        var lines = output.split(separator: "\n", omittingEmptySubsequences: false)
        lines.removeLast()  // "" after the last newline, or a line cut by the kill
        if lines.isEmpty { return ([], []) }  // killed before "ready"
        guard lines.first == "ready" else { throw Mismatch(description: "no ready line: \(output.prefix(300))") }
        var started = [Int: Operation]()
        var done: [Operation] = []
        for line in lines.dropFirst() {
            let fields = line.split(separator: " ").map(String.init)
            guard fields.first != "error" else { throw Mismatch(description: "the child failed: \(line)") }
            guard let thread = Int(fields[0]) else { throw Mismatch(description: "bad line \(line)") }
            if fields.count == 3, fields[2] == "done" {
                guard let operation = started.removeValue(forKey: thread) else { throw Mismatch(description: "done without start: \(line)") }
                done.append(operation)
            } else if fields.count == 6, let a = Int(fields[3]), let b = Int(fields[4]), let stamp = UInt64(fields[5]) {
                guard started[thread] == nil else { throw Mismatch(description: "thread \(thread) started twice: \(line)") }
                started[thread] = Operation(thread: thread, kind: fields[2], a: a, b: b, stamp: stamp)
            } else {
                throw Mismatch(description: "bad line \(line)")
            }
        }
        return (done, Array(started.values))
    }

    /// Opens the heap as the next process would and reads each slot's stamp, checking for
    /// leaks and double allocation on the way.
    static func read(_ path: String) throws -> [UInt64?] {
        let heap = try Heap.open(path: path)
        defer { try? heap.close() }
        let objects = try ObjectHeap.open(in: heap, arena: "objects")
        defer { try? objects.close() }
        objects.checkInvariants()
        let table = try objects.load(#require(objects.findRoot(named: "table")))
        var found = [UInt64?](repeating: nil, count: slots)
        var reached = Set<ObjectReference>()
        for i in 0..<slots {
            let reference = try objects.load(ObjectSlot(in: table, at: UInt64(i) * 8))
            guard !reference.isNull else { continue }
            guard reached.insert(reference).inserted else { throw Mismatch(description: "slot \(i): \(reference) reached twice") }
            found[i] = try objects.address(of: reference).load(as: UInt64.self)
        }
        let live = objects.statistics().objects
        guard live == reached.count + 1 else {
            throw Mismatch(description: "\(live) live objects, but the table and its slots reach \(reached.count + 1): a leak")
        }
        let context = try objects.makeContext()
        defer { context.close() }
        let spare = try objects.root(named: "spare")
        for size: UInt64 in [16, 64, 200, 1000, 5000, 40_000, 3 << 20] {
            let fresh = try context.allocate(size, into: spare)
            if reached.contains(fresh) { throw Mismatch(description: "\(fresh) allocated while reachable") }
            try context.free(from: spare)
        }
        return found
    }
}
