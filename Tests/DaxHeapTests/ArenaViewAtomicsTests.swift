// A view's 8-byte compare-and-swap and fetch-add (issue 11 part 4): the same names and
// semantics as a window's, on the same words, checked like the view's load and store.

import DaxHeap
import Testing

@Suite struct ArenaViewAtomicsTests {
    @Test func compareExchangeSwapsOnlyTheExpectedWord() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        let a = try heap.createArena(named: "a", size: 2 << 20)
        try a.withView { view throws(HeapError) in
            try view.store(10, at: 64)
            let swapped = try view.compareExchange(expected: 10, desired: 11, at: 64)
            #expect(swapped.exchanged && swapped.original == 10)
            let missed = try view.compareExchange(expected: 10, desired: 12, at: 64)
            #expect(!missed.exchanged && missed.original == 11)
            #expect(try view.load(at: 64) == 11)
            // The last word of the arena is a word like any other.
            let last = view.size - 8
            #expect(try view.compareExchange(expected: 0, desired: .max, at: last) == (true, 0))
            try view.persist(at: last, count: 8)
        }
        #expect(try a.read(at: 64, count: 8) == [11, 0, 0, 0, 0, 0, 0, 0])
        #expect(try a.read(at: (2 << 20) - 8, count: 8) == [UInt8](repeating: 0xFF, count: 8))
    }

    @Test func wrappingAddReturnsTheWordBeforeAndWraps() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        let a = try heap.createArena(named: "a", size: 2 << 20)
        try a.withView { view throws(HeapError) in
            #expect(try view.wrappingAdd(5, at: 0) == 0)
            #expect(try view.wrappingAdd(7, at: 0) == 5)
            #expect(try view.load(at: 0) == 12)
            try view.store(.max - 1, at: 8)
            #expect(try view.wrappingAdd(3, at: 8) == .max - 1)
            #expect(try view.load(at: 8) == 1)
        }
    }

    /// The words a view and a window reach are the same memory: an atomic through one is
    /// seen through the other.
    @Test func viewAndWindowAtomicsMeetOnTheSameWord() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 32 << 20)
        let a = try makeDiscontiguousArena(on: heap, named: "a", extents: 2)
        let window = try a.mapWindow()
        defer { window.close() }
        let offset = a.size - 16  // in the second extent
        #expect(try window.wrappingAdd(40, at: offset) == 0)
        try a.withView { view throws(HeapError) in
            #expect(try view.wrappingAdd(2, at: offset) == 40)
            #expect(try view.compareExchange(expected: 42, desired: 43, at: offset).exchanged)
        }
        #expect(try window.compareExchange(expected: 43, desired: 44, at: offset) == (true, 43))
    }

    /// Misaligned and out-of-range words are refused before anything is written, as for
    /// load and store; so is any atomic on a read-only heap.
    @Test func refusalsChangeNothing() throws {
        let path = tempPath()
        defer { removeFile(path) }
        do {
            let heap = try Heap.create(path: path, size: 16 << 20)
            let a = try heap.createArena(named: "w", size: 2 << 20)
            let size = a.size
            try expectRefused(.misalignedAccess(arena: "w", offset: 12), heap: heap, path: path) {
                try a.withView { view in _ = try view.compareExchange(expected: 0, desired: 1, at: 12) }
            }
            try expectRefused(.misalignedAccess(arena: "w", offset: 1), heap: heap, path: path) {
                try a.withView { view in _ = try view.wrappingAdd(1, at: 1) }
            }
            try expectRefused(.outOfRange(arena: "w", offset: size, count: 8, arenaSize: size), heap: heap, path: path) {
                try a.withView { view in _ = try view.compareExchange(expected: 0, desired: 1, at: size) }
            }
            try expectRefused(.outOfRange(arena: "w", offset: .max - 7, count: 8, arenaSize: size), heap: heap, path: path) {
                try a.withView { view in _ = try view.wrappingAdd(1, at: .max - 7) }
            }
        }
        let heap = try Heap.open(path: path, mode: .readOnly)
        let a = try heap.arena(named: "w")
        try a.withView { view throws(HeapError) in
            #expect(throws: HeapError.readOnly(path: path)) { try view.compareExchange(expected: 0, desired: 1, at: 0) }
            #expect(throws: HeapError.readOnly(path: path)) { try view.wrappingAdd(1, at: 0) }
            #expect(try view.load(at: 0) == 0)
        }
    }

    /// Fetch-add from several threads, each through views of its own, loses no increment.
    @Test func concurrentFetchAddsLoseNothing() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        let a = try heap.createArena(named: "a", size: 2 << 20)
        let failures = Failures()
        let perThread = 20_000
        let threads = (0 ..< 4).map { _ in
            TestThread {
                do {
                    for _ in 0 ..< perThread / 100 {
                        try a.withView { view throws(HeapError) in
                            for _ in 0 ..< 100 {
                                _ = try view.wrappingAdd(1, at: 0)
                                // A CAS loop on the next word: the classic lock-free max.
                                var seen = try view.load(at: 8)
                                while !(try view.compareExchange(expected: seen, desired: seen + 1, at: 8)).exchanged {
                                    seen = try view.load(at: 8)
                                }
                            }
                        }
                    }
                } catch {
                    failures.record("\(error)")
                }
            }
        }
        for thread in threads { thread.join() }
        #expect(failures.all == [])
        try a.withView { view throws(HeapError) in
            #expect(try view.load(at: 0) == UInt64(4 * perThread))
            #expect(try view.load(at: 8) == UInt64(4 * perThread))
        }
    }
}
