// Heap.close() (issue 11 part 4): a process can open a heap again without first letting
// go of every handle; handles of the closed heap fail with heapClosed and never reach
// the unmapped device; close refuses while windows are open or from inside a section,
// and waits for the sections open when it starts.
//
// Serialized: the concurrent cases park threads in sections on a 2-core machine.

import DaxHeap
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct HeapCloseTests {
    /// The same process opens the same path again right away, read-write (an exclusive
    /// lock: it fails with inUse while the old mapping holds its lock), while handles to
    /// the closed heap are still alive; the data written before the close is there.
    @Test func theSamePathOpensAgainRightAfterClose() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        let a = try heap.createArena(named: "a", size: 4 << 20)
        try a.memcpyPersist(at: 100, [1, 2, 3])
        #expect(throws: HeapError.inUse(path: path)) { try Heap.open(path: path) }
        try heap.close()
        #expect(heap.isClosed)
        let again = try Heap.open(path: path)
        #expect(try again.arena(named: "a").read(at: 100, count: 3) == [1, 2, 3])
        #expect(again.uuid == heap.uuid)
        // The old handles stay closed: they do not reach the new mapping.
        #expect(throws: HeapError.heapClosed(path: path)) { try a.read(at: 100, count: 3) }
        try again.close()
        // Read-only and read-write opens alternate freely.
        let readOnly = try Heap.open(path: path, mode: .readOnly)
        try readOnly.close()
        let last = try Heap.open(path: path)
        #expect(last.check().isHealthy)
    }

    /// Closing twice is fine, and a closed heap's last reference going away does not unmap
    /// or unlock twice (a double munmap could unmap a newer mapping at the same address).
    @Test func closeIsIdempotentAndDeinitAfterCloseIsHarmless() throws {
        let path = tempPath()
        defer { removeFile(path) }
        for _ in 0 ..< 3 {
            let heap = try Heap.create(path: path, size: 8 << 20, overwrite: true)
            try heap.close()
            try heap.close()
        }
        let survivor = try Heap.open(path: path)
        let b = try survivor.createArena(named: "b", size: 2 << 20)
        do {
            // Closed and dropped while the survivor's mapping is in use.
            let other = tempPath("other")
            defer { removeFile(other) }
            try Heap.create(path: other, size: 8 << 20).close()
        }
        try b.memcpyPersist(at: 0, [7])
        #expect(try b.read(at: 0, count: 1) == [7])
    }

    /// Every call of the heap and of an arena handle after close: the ones that would
    /// reach the device or hand out an arena throw heapClosed; the facts stay readable.
    @Test func everyCallAfterCloseFailsWithHeapClosed() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        let a = try heap.createArena(named: "a", size: 4 << 20)
        let b = try heap.createArena(named: "b", size: 2 << 20)
        let reference = try a.reference(at: 8)
        let facts = HeapFacts(heap)
        try heap.close()
        let closed = HeapError.heapClosed(path: path)
        #expect(closed.description == "the heap on \(path) is closed; open it again (Heap.open) and take new handles from that heap")
        // The heap.
        #expect(throws: closed) { try heap.arena(named: "a") }
        #expect(throws: closed) { try heap.findArena(named: "a") }
        #expect(throws: closed) { try heap.findArena(named: "missing") }
        #expect(throws: closed) { try heap.resolve(reference) }
        #expect(throws: closed) { try heap.createArena(named: "c", size: 2 << 20) }
        #expect(throws: closed) { try heap.resizeArena(named: "a", to: 2 << 20) }
        #expect(throws: closed) { try heap.destroyArena(named: "b") }
        #expect(throws: closed) { try heap.repair() }
        #expect(throws: closed) { try heap.badBlocks() }
        #expect(heap.check().problems == [closed.description])
        #expect(HeapFacts(heap) == facts)
        #expect(heap.path == path)
        heap.withReadSection {}
        heap.synchronize()
        // An arena handle.
        #expect(a.size == 0)
        #expect(a.name == "a")
        #expect(a.openWindowCount == 0)
        #expect(throws: closed) { try a.info }
        #expect(throws: closed) { try a.reference(at: 0) }
        #expect(throws: closed) { try a.contiguousBytes(at: 0) }
        #expect(throws: closed) { try a.read(at: 0, count: 1) }
        #expect(throws: closed) { try a.read(at: 0, count: 0) }
        var buffer = [UInt8](repeating: 0, count: 8)
        #expect(throws: closed) { try buffer.withUnsafeMutableBytes { try a.read(into: $0, at: 0) } }
        #expect(throws: closed) { try buffer.withUnsafeMutableBytes { try a.guardedRead(into: $0, at: 0).get() } }
        #expect(throws: closed) { try a.write([1], at: 0) }
        #expect(throws: closed) { try a.memcpyPersist(at: 0, [1]) }
        #expect(throws: closed) { try a.memsetPersist(at: 0, value: 1, count: 1) }
        #expect(throws: closed) { try a.persist(at: 0, count: 1) }
        #expect(throws: closed) { try a.flush(at: 0, count: 1) }
        #expect(throws: closed) { try a.prefault(at: 0, count: 1) }
        #expect(throws: closed) { try a.resize(to: 8 << 20) }
        #expect(throws: closed) { try a.withUnsafeBytes(at: 0, count: 1) { _ in } }
        #expect(throws: closed) { try a.withUnsafeMutableBytes(at: 0, count: 1) { _ in } }
        #expect(throws: closed) { try a.withTranslator { _ in } }
        #expect(throws: closed) { try a.withView { _ in } }
        #expect(throws: closed) { try Arena.withViews(a, b) { _, _ in } }
        #expect(throws: closed) { try Arena.withViews([a, b, a]) { _ in } }
        #expect(throws: closed) { try a.mapWindow() }
        a.drain()  // a fence: touches no memory
    }

    /// A window keeps its addresses in use until its owner closes it, so close refuses
    /// while one is open, names the arenas, and leaves the heap fully usable.
    @Test func closeIsRefusedWhileWindowsAreOpen() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 32 << 20)
        let a = try heap.createArena(named: "a", size: 2 << 20)
        let log = try heap.createArena(named: "log", size: 2 << 20)
        let w1 = try log.mapWindow(), w2 = try a.mapWindow(), w3 = try log.mapWindow()
        let refused = HeapError.windowsOpen(path: path, arenas: ["a", "log", "log"])
        #expect(refused.description == "cannot close the heap on \(path): 3 windows are open onto \"a\", \"log\"; close them first (ArenaWindow.close)")
        try expectRefused(refused, heap: heap, path: path) { try heap.close() }
        #expect(!heap.isClosed)
        try w1.store(5, at: 0)
        #expect(try log.read(at: 0, count: 1) == [5])
        w1.close()
        w3.close()
        try expectRefused(.windowsOpen(path: path, arenas: ["a"]), heap: heap) { try heap.close() }
        w2.close()
        try heap.close()
        // A window closed before the heap now says the heap is closed.
        #expect(throws: HeapError.heapClosed(path: path)) { try w2.load(at: 0) }
        #expect(throws: HeapError.heapClosed(path: path)) { try w1.withUnsafeBytes(at: 0, count: 1) { _ in } }
        _ = try Heap.open(path: path)
    }

    /// Close waits for the sections open when it starts, so one started inside a section
    /// would wait for itself: it is refused instead, inside a view, an access closure or
    /// an application's read section, of this heap or any other.
    @Test func closeIsRefusedInsideAReadSection() throws {
        let path = tempPath(), otherPath = tempPath("other")
        defer { removeFile(path); removeFile(otherPath) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        let other = try Heap.create(path: otherPath, size: 16 << 20)
        let a = try heap.createArena(named: "a", size: 2 << 20)
        let c = try other.createArena(named: "c", size: 2 << 20)
        let refused = HeapError.closeInsideReadSection(path: path)
        try a.withView { _ throws(HeapError) in
            _ = #expect(throws: refused) { try heap.close() }
        }
        try a.withUnsafeBytes(at: 0, count: 8) { _ throws(HeapError) in
            _ = #expect(throws: refused) { try heap.close() }
        }
        heap.withReadSection {
            _ = #expect(throws: refused) { try heap.close() }
        }
        try c.withView { _ throws(HeapError) in
            _ = #expect(throws: refused) { try heap.close() }
        }
        #expect(!heap.isClosed)
        try a.memcpyPersist(at: 0, [1])
        try heap.close()
        try other.close()
    }

    /// Close from another thread while a view is open: close returns only after the view's
    /// closure, whose bytes stay mapped and intact to its end; meanwhile new calls from
    /// inside the view fail with heapClosed (a provisioning call too, instead of waiting
    /// for the close that waits for the view); the next view of that thread fails with
    /// heapClosed, and the path opens again.
    @Test func closeWaitsForAViewOpenOnAnotherThread() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        let a = try heap.createArena(named: "a", size: 4 << 20)
        try a.memsetPersist(at: 0, value: 0x5A, count: 4 << 20)
        let log = ConcurrencyTests.EventLog()
        let entered = Flag()
        let failures = Failures()
        let viewer = TestThread {
            do {
                try a.withView { view throws(HeapError) in
                    entered.set()
                    if !ConcurrencyTests.wait(upTo: 5, for: { heap.isClosed }) { failures.record("close did not start") }
                    usleep(100_000)  // time for the close to (wrongly) unmap
                    for (call, body) in [("createArena", { _ = try heap.createArena(named: "b", size: 2 << 20) }),
                                         ("read", { _ = try a.read(at: 0, count: 1) })] as [(String, () throws -> Void)] {
                        do { try body(); failures.record("\(call) worked during the close") } catch {
                            if error as? HeapError != .heapClosed(path: path) { failures.record("\(call) threw \(error)") }
                        }
                    }
                    let intact = try view.withUnsafeBytes(at: 0, count: 4 << 20) { $0.allSatisfy { $0 == 0x5A } }
                    try view.store(0x0101_0101_0101_0101, at: 0)
                    log.add(intact ? "view-end" : "view-end-corrupt")
                }
            } catch {
                failures.record("view: \(error)")
            }
            do throws(HeapError) {
                try a.withView { _ in failures.record("a view opened after the close") }
            } catch {
                if error != .heapClosed(path: path) { failures.record("second view threw \(error)") }
            }
        }
        _ = ConcurrencyTests.wait(upTo: 5) { entered.isSet }
        log.add("close-start")
        try heap.close()
        log.add("closed")
        viewer.join()
        #expect(failures.all == [])
        #expect(log.all == ["close-start", "view-end", "closed"])
        let again = try Heap.open(path: path)
        #expect(try again.arena(named: "a").read(at: 0, count: 9) == [1, 1, 1, 1, 1, 1, 1, 1, 0x5A])
    }

    /// Threads hammer views, copying calls and lookups while another closes the heap:
    /// every call either works on the mapping or throws heapClosed (never anything else,
    /// never a crash), and once a thread has seen heapClosed it sees nothing else.
    @Test func callsRacingCloseSucceedOrFailWithHeapClosed() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 32 << 20)
        let a = try heap.createArena(named: "a", size: 4 << 20)
        let b = try heap.createArena(named: "b", size: 4 << 20)
        let closed = HeapError.heapClosed(path: path)
        let failures = Failures()
        let worked = Counter(), refused = Counter()
        let threads = (0 ..< 3).map { t in
            TestThread {
                var seenClosed = false
                var mine = 0
                for i in 0 ..< Int.max {
                    do throws(HeapError) {
                        switch (i + t) % 4 {
                        case 0: _ = try a.withView { view throws(HeapError) in try view.wrappingAdd(1, at: 8 * UInt64(t)) }
                        case 1: try b.memcpyPersist(at: UInt64(i % 1000), [UInt8(truncatingIfNeeded: i)])
                        case 2: _ = try Arena.withViews([a, b]) { views throws(HeapError) in try views[1].load(at: 0) }
                        default: _ = try heap.arena(named: "a").read(at: 0, count: 64)
                        }
                        if seenClosed { failures.record("thread \(t): a call worked after one saw heapClosed") }
                        worked.next()
                    } catch {
                        if error != closed { failures.record("thread \(t): \(error)") }
                        seenClosed = true
                        refused.next()
                        mine += 1
                        if mine == 100 { return }
                    }
                }
            }
        }
        while worked.current < 5000 { usleep(1000) }
        try heap.close()
        for thread in threads { #expect(thread.join(timeout: 60), "a thread kept working after the close") }
        #expect(failures.all == [])
        #expect(refused.current == 300)
        let again = try Heap.open(path: path)
        #expect(again.check().isHealthy)
    }
}
