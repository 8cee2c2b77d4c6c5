// Every read-only query of a heap is allowed inside an access closure, even while another
// thread shrinks or destroys an arena and so waits for that very access to end. Before,
// the waiting change held the lock every query takes: both threads waited forever.
// A change to another arena does not wait for the view at all (issue 11): it returns
// while the view is still open.

import DaxHeap
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct QueriesInsideAccessTests {
    enum Change: String, CaseIterable { case destroyOther, shrinkOther, shrinkSame }

    @Test(arguments: Change.allCases)
    func queriesInsideAViewWhileAChangeWaitsForIt(change: Change) throws {
        let path = tempPath("queries-inside")
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 64 << 20)
        let a = try heap.createArena(named: "a", size: 4 << 20)
        try heap.createArena(named: "b", size: 4 << 20)
        let reference = try a.reference(at: 4096)
        let entered = Flag(), changed = Flag()
        let failures = Failures()

        let reader = TestThread {
            do {
                try a.withView { view in
                    entered.set()
                    // Long enough for the change to start waiting for this view.
                    let end = monotonicSeconds() + 0.3
                    while monotonicSeconds() < end {
                        _ = heap.availableSize
                        _ = heap.usableSize
                        _ = heap.generation
                        _ = heap.metadataStatus
                        _ = heap.arenas
                        _ = try heap.arena(named: "a")
                        _ = try heap.resolve(reference)
                        _ = heap.check()
                        _ = try heap.badBlocks()
                        _ = a.size
                        _ = try view.load(at: 0)
                    }
                    switch (change, changed.isSet) {
                    case (.shrinkSame, true): failures.record("the shrink returned while a view of the old layout was open")
                    case (.destroyOther, false), (.shrinkOther, false):
                        failures.record("a change of another arena waited for this view")
                    default: break
                    }
                }
            } catch {
                failures.record("reader: \(error)")
            }
        }
        while !entered.isSet { sched_yield() }
        let writer = TestThread {
            do {
                switch change {
                case .destroyOther: try heap.destroyArena(named: "b")
                case .shrinkOther: try heap.resizeArena(named: "b", to: 2 << 20)
                case .shrinkSame: try heap.resizeArena(named: "a", to: 2 << 20)
                }
                changed.set()
            } catch {
                failures.record("writer: \(error)")
            }
        }
        // A deadlock leaves both threads stuck; fail instead of hanging the suite.
        guard reader.join(timeout: 20), writer.join(timeout: 20) else {
            Issue.record("deadlock: a query inside a view waited for a change that waited for the view")
            return
        }
        #expect(failures.all.isEmpty, "\(failures.all)")
        #expect(changed.isSet)
        #expect(heap.check().isHealthy)
    }
}
