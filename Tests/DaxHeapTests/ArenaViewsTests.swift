// Views of any number of arenas at once (`Arena.withViews(_:_:)`, issue 11 part 4): each
// pinned for the whole closure, checked before the closure runs.

import DaxHeap
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct ArenaViewsTests {
    /// Three arenas of different sizes (one discontiguous): `views[i]` is `arenas[i]`.
    @Test func viewsOfThreeArenasEachReachTheirOwnBytes() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 64 << 20)
        let frag = try makeDiscontiguousArena(on: heap, named: "frag", extents: 2)
        let index = try heap.createArena(named: "index", size: 2 << 20)
        let log = try heap.createArena(named: "log", size: 6 << 20)
        let arenas = [index, log, frag]
        let total = try Arena.withViews(arenas) { views throws(HeapError) -> UInt64 in
            #expect(views.count == 3)
            #expect(views.indices == 0 ..< 3)
            #expect((0 ..< 3).map { views[$0].name } == ["index", "log", "frag"])
            let sizes: [UInt64] = [2 << 20, 6 << 20, 4 << 20]
            #expect((0 ..< 3).map { views[$0].size } == sizes)
            var sum: UInt64 = 0
            for i in views.indices {
                let view = views[i]
                try view.store(UInt64(i + 1), at: view.size - 8)
                try view.persist(at: view.size - 8, count: 8)
                sum += try view.load(at: view.size - 8)
            }
            return sum
        }
        #expect(total == 6)
        #expect(try index.read(at: (2 << 20) - 8, count: 1) == [1])
        #expect(try log.read(at: (6 << 20) - 8, count: 1) == [2])
        #expect(try frag.read(at: (4 << 20) - 8, count: 1) == [3])
        #expect(try bytesThroughExtents(frag.info, path: path, offset: (4 << 20) - 8, count: 1) == [3])
    }

    /// An arena passed twice gives two views of the same bytes (allowed: a caller may pick
    /// arenas by role, and two roles may share one).
    @Test func anArenaPassedTwiceGivesViewsOfTheSameBytes() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        let a = try heap.createArena(named: "a", size: 2 << 20)
        let b = try heap.createArena(named: "b", size: 2 << 20)
        try Arena.withViews([a, b, a]) { views throws(HeapError) in
            try views[0].store(7, at: 0)
            #expect(try views[2].load(at: 0) == 7)
            #expect(try views[2].wrappingAdd(1, at: 0) == 7)
            #expect(try views[0].load(at: 0) == 8)
            #expect(try views[1].load(at: 0) == 0)
        }
    }

    /// What is refused, before the closure runs, naming the first arena at fault: one of
    /// another heap, one destroyed; no arena at all is an empty set.
    @Test func foreignAndDestroyedArenasAreRefusedBeforeTheClosure() throws {
        let path = tempPath(), otherPath = tempPath("other")
        defer { removeFile(path); removeFile(otherPath) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        let other = try Heap.create(path: otherPath, size: 16 << 20)
        let a = try heap.createArena(named: "a", size: 2 << 20)
        let b = try heap.createArena(named: "b", size: 2 << 20)
        let c = try heap.createArena(named: "c", size: 2 << 20)
        let x = try other.createArena(named: "x", size: 2 << 20)
        let ran = Counter()
        #expect(throws: HeapError.foreignArena(arena: "x", heap: path)) { try Arena.withViews([a, b, x, c]) { _ in ran.next() } }
        try heap.destroyArena(named: "b")
        #expect(throws: HeapError.unknownArena("b")) { try Arena.withViews([a, c, b]) { _ in ran.next() } }
        #expect(throws: HeapError.unknownArena("b")) { try Arena.withViews([b, a]) { _ in ran.next() } }
        #expect(ran.current == 0)
        #expect(try Arena.withViews([]) { views in views.count } == 0)
        #expect(try Arena.withViews([c]) { views in views[0].size } == 2 << 20)
        // Nothing was left open: a destroy of every arena returns at once.
        try heap.destroyArena(named: "a")
        try heap.destroyArena(named: "c")
    }

    /// A shrink of any of the arenas waits for the closure, as for one view: also past the
    /// four nested sections a thread records keys for.
    @Test(arguments: [3, 6])
    func aShrinkOfAnyOfTheArenasWaitsForTheViews(count: Int) throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: UInt64(4 * count + 8) << 20)
        let arenas = try (0 ..< count).map { try heap.createArena(named: "a\($0)", size: 4 << 20) }
        let last = arenas[count - 1]
        try last.memsetPersist(at: 2 << 20, value: 0x5A, count: 2 << 20)
        let log = ConcurrencyTests.EventLog()
        let go = Flag()
        let changer = TestThread {
            _ = ConcurrencyTests.wait(upTo: 5) { go.isSet }
            log.add("shrink-start")
            do { try last.resize(to: 2 << 20); log.add("shrink-done") } catch { log.add("shrink-failed: \(error)") }
        }
        try Arena.withViews(arenas) { views throws(HeapError) in
            go.set()
            _ = ConcurrencyTests.wait(upTo: 2) { log.contains("shrink-start") }
            usleep(50_000)  // time for the shrink to (wrongly) complete
            let intact = try views[count - 1].withUnsafeBytes(at: 2 << 20, count: 2 << 20) { $0.allSatisfy { $0 == 0x5A } }
            log.add(intact ? "views-end" : "views-end-corrupt")
        }
        changer.join()
        #expect(log.all == ["shrink-start", "views-end", "shrink-done"])
    }

    /// Errors: a closure that throws HeapError only gets a typed call (this compiles only
    /// if so); one that throws anything else gets it back as it threw it.
    @Test func errorsOfTheClosurePassThrough() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        let a = try heap.createArena(named: "a", size: 2 << 20)
        func typed() throws(HeapError) -> UInt64 {
            try Arena.withViews([a, a]) { views throws(HeapError) in try views[1].load(at: 3) }
        }
        #expect(throws: HeapError.misalignedAccess(arena: "a", offset: 3)) { try typed() }
        struct Mine: Error, Equatable {}
        #expect(throws: Mine()) { try Arena.withViews([a]) { _ in throw Mine() } }
    }
}
