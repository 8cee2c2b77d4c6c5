// What a database engineer trying the API tripped over (issue 11 part 4): access closures
// that lose HeapError, `try` on a live arena's size, a lookup that must throw to say
// "absent". Much of this file is checked by the compiler: the functions marked
// `throws(HeapError)` compile only if the calls inside them throw HeapError, typed.

import DaxHeap
import Testing

@Suite struct TypedAccessTests {
    /// Every access that lends a view, bytes or a translator to a closure throwing only
    /// HeapError (or nothing) throws HeapError, typed.
    @Test func accessClosuresThatThrowHeapErrorThrowItTyped() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 32 << 20)
        let a = try heap.createArena(named: "a", size: 2 << 20)
        let b = try heap.createArena(named: "b", size: 2 << 20)
        let window = try a.mapWindow()
        defer { window.close() }

        func everything() throws(HeapError) -> UInt64 {
            var sum: UInt64 = 0
            try a.withView { view throws(HeapError) in try view.store(1, at: 0) }
            sum += try a.withView { view in view.size }  // a closure that throws nothing
            sum += try Arena.withViews(a, b) { x, y throws(HeapError) in try x.load(at: 0) + y.load(at: 0) }
            sum += try Arena.withViews([a, b]) { views throws(HeapError) in try views[0].load(at: 0) }
            try a.withView { view throws(HeapError) in
                try view.withBytes(at: 0, count: 8) { span throws(HeapError) in sum += UInt64(span.byteCount) }
                try view.withMutableBytes(at: 8, count: 8) { span throws(HeapError) in span.storeBytes(of: 2, toByteOffset: 0, as: UInt64.self) }
                try view.withUnsafeBytes(at: 0, count: 8) { raw throws(HeapError) in sum += raw.load(as: UInt64.self) }
                try view.withUnsafeMutableBytes(at: 16, count: 8) { raw in raw.storeBytes(of: 3, as: UInt64.self) }
            }
            sum += try a.withUnsafeBytes(at: 8, count: 8) { raw in raw.load(as: UInt64.self) }
            try a.withUnsafeMutableBytes(at: 24, count: 8) { raw throws(HeapError) in raw.storeBytes(of: 4, as: UInt64.self) }
            sum += try a.withTranslator { t throws(HeapError) in
                guard let at = t.translate(0) else { throw .outOfRange(arena: "a", offset: 0, count: 0, arenaSize: t.size) }
                return at.contiguous
            }
            sum += try window.withUnsafeBytes(at: 16, count: 8) { raw throws(HeapError) in raw.load(as: UInt64.self) }
            try window.withUnsafeMutableBytes(at: 32, count: 8) { raw in raw.storeBytes(of: 5, as: UInt64.self) }
            return sum
        }
        // size 2 MiB, loads 1 + 0, 1, span 8, load 1, load 2, contiguous 2 MiB, load 3
        #expect(try everything() == (4 << 20) + 16)
        #expect(try a.read(at: 24, count: 16) == [4, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0])

        // The heap's own failure comes out typed too, and names what is wrong.
        func misaligned() throws(HeapError) { try a.withView { view throws(HeapError) in _ = try view.load(at: 4) } }
        do {
            try misaligned()
            Issue.record("a misaligned load did not throw")
        } catch {
            #expect(error == .misalignedAccess(arena: "a", offset: 4))
        }
    }

    /// A closure that throws its own errors gets the untyped overload: its error comes back
    /// as thrown, and the heap's own failures still match `catch let e as HeapError`.
    @Test func otherErrorsPassThroughAndHeapErrorsStillMatch() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        let a = try heap.createArena(named: "a", size: 2 << 20)
        struct NotFound: Error, Equatable { let key: UInt64 }
        #expect(throws: NotFound(key: 9)) {
            try a.withView { view in
                if try view.load(at: 0) == 0 { throw NotFound(key: 9) }
            }
        }
        #expect(throws: NotFound(key: 1)) { try a.withUnsafeBytes(at: 0, count: 8) { _ in throw NotFound(key: 1) } }
        #expect(throws: NotFound(key: 2)) { try a.withTranslator { _ in throw NotFound(key: 2) } }
        try heap.destroyArena(named: "a")
        do {
            try a.withView { _ in throw NotFound(key: 3) }
            Issue.record("a view of a destroyed arena opened")
        } catch let error as HeapError {
            #expect(error == .unknownArena("a"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    /// A live arena's size needs no `try`; a destroyed arena's reads 0 (a live one is
    /// never empty) while its other calls throw.
    @Test func sizeNeedsNoTryAndReadsZeroOnceDestroyed() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        let a = try heap.createArena(named: "a", size: 4 << 20)
        let size: UInt64 = a.size
        #expect(size == 4 << 20)
        try a.resize(to: 6 << 20)
        #expect(a.size == 6 << 20)
        try heap.destroyArena(named: "a")
        #expect(a.size == 0)
        #expect(throws: HeapError.unknownArena("a")) { try a.info }
        // A new arena of the same name does not bring the old handle back.
        let again = try heap.createArena(named: "a", size: 2 << 20)
        #expect(a.size == 0)
        #expect(again.size == 2 << 20)
    }

    /// `findArena(named:)` says "absent" with nil; `arena(named:)` still throws.
    @Test func findArenaReturnsNilForAMissingArena() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        #expect(try heap.findArena(named: "a") == nil)
        #expect(try heap.findArena(named: "") == nil)
        #expect(try heap.findArena(named: "no\nsuch") == nil)
        let a = try heap.createArena(named: "a", size: 2 << 20)
        let found = try #require(try heap.findArena(named: "a"))
        #expect(found.id == a.id && found.name == "a")
        #expect(try heap.findArena(named: "A") == nil)
        try heap.destroyArena(named: "a")
        #expect(try heap.findArena(named: "a") == nil)
        #expect(throws: HeapError.unknownArena("a")) { try heap.arena(named: "a") }
        // Inside a view, as any read-only query.
        let b = try heap.createArena(named: "b", size: 2 << 20)
        try b.withView { _ throws(HeapError) in #expect(try heap.findArena(named: "b")?.id == b.id) }
        // A closed heap does throw: "absent" would be a lie.
        try heap.close()
        #expect(throws: HeapError.heapClosed(path: path)) { try heap.findArena(named: "a") }
    }
}
