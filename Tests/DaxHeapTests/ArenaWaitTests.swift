// Who a change waits for (issue 11). A grow releases nothing and waits for no reader; a
// shrink or destroy waits only for accesses of the arena it shrinks, and sleeps while it
// waits. Before, every change waited for every access of every arena, spinning: a
// one-second view of "a" delayed a grow of "b" by most of that second, and burned it.
//
// Serialized: each test parks a thread in a view for a second on a 2-core machine.

import DaxHeap
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct ArenaWaitTests {
    /// How long a parked view stays open.
    static let viewSeconds = 1.0
    /// What "did not wait for it" allows: well under the view, with room for a slow
    /// (sanitized, loaded) machine to write the metadata.
    static let promptSeconds = 0.3

    /// Opens a view of `arena` on another thread for `viewSeconds`; returns once it is open.
    /// The view checks that its bytes stay the arena's (0x5A) to the end.
    static func parkView(of arena: Arena, failures: Failures) -> TestThread {
        let entered = Flag()
        let thread = TestThread {
            do {
                try arena.withView { view in
                    entered.set()
                    let size = view.size
                    usleep(UInt32(viewSeconds * 1e6))
                    let last = try view.withUnsafeBytes(at: size - 4096, count: 4096) { $0.allSatisfy { $0 == 0x5A } }
                    if !last { failures.record("the view's bytes changed under it") }
                }
            } catch {
                failures.record("view: \(error)")
            }
        }
        while !entered.isSet { usleep(1000) }
        return thread
    }

    /// A heap with arenas "a" and "b" of 4 MiB each, filled with 0x5A.
    static func heap(_ path: String) throws -> (Heap, Arena, Arena) {
        let heap = try Heap.create(path: path, size: 64 << 20)
        let a = try heap.createArena(named: "a", size: 4 << 20)
        let b = try heap.createArena(named: "b", size: 4 << 20)
        try a.memsetPersist(at: 0, value: 0x5A, count: 4 << 20)
        try b.memsetPersist(at: 0, value: 0x5A, count: 4 << 20)
        return (heap, a, b)
    }

    /// Seconds `body` took.
    static func timed(_ body: () throws -> Void) rethrows -> Double {
        let start = monotonicSeconds()
        try body()
        return monotonicSeconds() - start
    }

    enum Prompt: String, CaseIterable { case growOther, growSame, shrinkOther, destroyOther }

    /// None of these can make the parked view reach space that is no longer its arena's,
    /// so none waits for it.
    @Test(arguments: Prompt.allCases)
    func changesThatReleaseNothingTheViewReachesDoNotWaitForIt(change: Prompt) throws {
        let path = tempPath()
        defer { removeFile(path) }
        let (heap, a, _) = try Self.heap(path)
        let failures = Failures()
        let view = Self.parkView(of: a, failures: failures)
        let took = try Self.timed {
            switch change {
            case .growOther: try heap.resizeArena(named: "b", to: 8 << 20)
            case .growSame: try heap.resizeArena(named: "a", to: 8 << 20)
            case .shrinkOther: try heap.resizeArena(named: "b", to: 2 << 20)
            case .destroyOther: try heap.destroyArena(named: "b")
            }
        }
        view.join()
        #expect(took < Self.promptSeconds, "\(change) took \(took) s while a view of a was open")
        #expect(failures.all.isEmpty, "\(failures.all)")
        #expect(heap.check().isHealthy)
        if change == .growSame {
            #expect(a.size == 8 << 20)
            #expect(try a.read(at: (4 << 20) - 1, count: 2) == [0x5A, 0])
        }
    }

    /// A shrink of the viewed arena waits for the view, and sleeps meanwhile: the waiting
    /// thread's CPU time stays a small part of the wait.
    @Test(arguments: [false, true])
    func aShrinkOfTheViewedArenaWaitsAsleep(destroy: Bool) throws {
        let path = tempPath()
        defer { removeFile(path) }
        let (heap, a, _) = try Self.heap(path)
        let failures = Failures()
        let view = Self.parkView(of: a, failures: failures)
        let cpuBefore = threadCPUSeconds()
        let took = try Self.timed {
            if destroy { try heap.destroyArena(named: "a") } else { try heap.resizeArena(named: "a", to: 2 << 20) }
        }
        let cpu = threadCPUSeconds() - cpuBefore
        view.join()
        #expect(failures.all.isEmpty, "\(failures.all)")
        #expect(took > Self.viewSeconds / 2, "returned after \(took) s, before the view ended")
        #expect(cpu < 0.1, "burned \(cpu) s of CPU in a \(took) s wait")
        #expect(heap.check().isHealthy)
    }

    /// Sections nest: an access inside a view, views of two arenas. A shrink waits for a
    /// nested section of its arena (here the innermost, below an outer one it does not
    /// hold) until that section ends, not for the outer one's end.
    @Test func aShrinkWaitsForANestedSectionOfItsArenaOnly() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let (heap, a, b) = try Self.heap(path)
        let c = try heap.createArena(named: "c", size: 4 << 20)
        let failures = Failures()
        let innerOpen = Flag(), innerEnded = Flag(), shrunk = Flag()
        let reader = TestThread {
            do {
                try Arena.withViews(a, b) { va, vb in
                    _ = try va.load(at: 0)
                    try c.withView { _ in
                        innerOpen.set()
                        usleep(300_000)
                        _ = try a.read(at: 0, count: 8)  // an access inside the views: one more level
                        if shrunk.isSet { failures.record("shrink of c returned while its view was open") }
                        innerEnded.set()
                    }
                    // c's view has ended; a and b's stay open for a while more.
                    usleep(700_000)
                    _ = try vb.load(at: 0)
                }
            } catch {
                failures.record("reader: \(error)")
            }
        }
        while !innerOpen.isSet { usleep(1000) }
        try heap.resizeArena(named: "c", to: 2 << 20)
        shrunk.set()
        let innerWasOver = innerEnded.isSet
        let took = try Self.timed { try heap.resizeArena(named: "a", to: 2 << 20) }
        reader.join()
        #expect(failures.all.isEmpty, "\(failures.all)")
        #expect(innerWasOver, "the shrink of c returned before c's view ended")
        #expect(took > 0.3, "the shrink of a did not wait for the open view of a (\(took) s)")
    }
}

/// CPU time (user + system) of the calling thread (CLOCK_THREAD_CPUTIME_ID).
func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
