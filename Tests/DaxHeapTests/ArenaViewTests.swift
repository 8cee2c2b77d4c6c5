import DaxHeap
import Foundation
import Testing

@Suite struct ArenaViewTests {
    /// Copies through a view cross extents like `Arena.write`, and land where the extents
    /// say (read back from the file, not through the mapping).
    @Test func memcpyAcrossExtentsLandsWhereTheExtentsSay() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 64 << 20)
        let a = try makeDiscontiguousArena(on: heap, named: "a", extents: 3, tail: 2 << 20)
        let info = try a.info
        #expect(info.extents.count >= 3)
        let bytes = pattern(5 << 20, seed: 9)
        let start: UInt64 = (1 << 20) + 3  // crosses two extent boundaries
        try a.withView { view in
            #expect(view.size == info.size)
            #expect(view.name == "a")
            try bytes.withUnsafeBytes { try view.memcpyNoDrain(at: start, from: $0) }
            view.drain()
        }
        #expect(try a.read(at: start, count: bytes.count) == bytes)
        #expect(try bytesThroughExtents(info, path: path, offset: start, count: bytes.count) == bytes)
        // memcpyPersist and persist take the same path.
        try a.withView { view in
            try [UInt8](repeating: 7, count: 100).withUnsafeBytes { try view.memcpyPersist(at: (2 << 20) - 50, from: $0) }
            try view.persist(at: 0, count: info.size)
        }
        #expect(try a.read(at: (2 << 20) - 50, count: 100) == [UInt8](repeating: 7, count: 100))
    }

    /// Scoped access lends exactly the asked range of one extent, and refuses the rest.
    @Test func scopedAccessStaysInsideOneExtent() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 64 << 20)
        let a = try makeDiscontiguousArena(on: heap, named: "frag", extents: 2)
        let b = try a.info.extents[0].length
        try a.withView { view in
            try view.withUnsafeMutableBytes(at: b - 8, count: 8) { $0.copyBytes(from: [1, 2, 3, 4, 5, 6, 7, 8]) }
            try view.withUnsafeBytes(at: b - 8, count: 8) { #expect(Array($0) == [1, 2, 3, 4, 5, 6, 7, 8]) }
            try view.withUnsafeBytes(at: view.size, count: 0) { #expect($0.isEmpty) }
            #expect(throws: HeapError.crossesExtent(arena: "frag", offset: b - 4, count: 8, contiguous: 4)) {
                try view.withUnsafeBytes(at: b - 4, count: 8) { _ in }
            }
            #expect(throws: HeapError.outOfRange(arena: "frag", offset: view.size - 4, count: 8, arenaSize: view.size)) {
                try view.withUnsafeMutableBytes(at: view.size - 4, count: 8) { _ in }
            }
            #expect(throws: HeapError.outOfRange(arena: "frag", offset: 0, count: 0, arenaSize: view.size)) {
                try view.withUnsafeBytes(at: 0, count: -1) { _ in }
            }
        }
        #expect(try a.read(at: b - 8, count: 8) == [1, 2, 3, 4, 5, 6, 7, 8])
    }

    /// The span forms lend the same ranges as the unsafe ones, with the same refusals.
    @Test func spansStayInsideOneExtent() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 64 << 20)
        let a = try makeDiscontiguousArena(on: heap, named: "frag", extents: 2)
        let b = try a.info.extents[0].length
        try a.withView { view in
            let lent = try view.withMutableBytes(at: b - 16, count: 16) { bytes in
                bytes.storeBytes(of: 0x0807_0605_0403_0201, toByteOffset: 8, as: UInt64.self)
                return bytes.byteCount
            }
            #expect(lent == 16)
            let word = try view.withBytes(at: b - 8, count: 8) { ($0.byteCount, $0.unsafeLoad(as: UInt64.self)) }
            #expect(word == (8, 0x0807_0605_0403_0201))
            #expect(try view.withBytes(at: view.size, count: 0) { $0.isEmpty })
            #expect(throws: HeapError.crossesExtent(arena: "frag", offset: b - 4, count: 8, contiguous: 4)) {
                try view.withMutableBytes(at: b - 4, count: 8) { _ in }
            }
            #expect(throws: HeapError.outOfRange(arena: "frag", offset: view.size - 4, count: 8, arenaSize: view.size)) {
                try view.withBytes(at: view.size - 4, count: 8) { _ in }
            }
        }
        #expect(try a.read(at: b - 8, count: 8) == [1, 2, 3, 4, 5, 6, 7, 8])
    }

    /// 8-byte words: stored whole, loaded whole, refused when misaligned or out of range.
    @Test func wordsAreAlignedAndBoundsChecked() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 32 << 20)
        let a = try heap.createArena(named: "w", size: 2 << 20)
        try a.withView { view in
            try view.store(0x0102_0304_0506_0708, at: 16)
            try view.persist(at: 16, count: 8)
            #expect(try view.load(at: 16) == 0x0102_0304_0506_0708)
            #expect(try view.load(at: view.size - 8) == 0)
            #expect(throws: HeapError.misalignedAccess(arena: "w", offset: 12)) { try view.store(1, at: 12) }
            #expect(throws: HeapError.misalignedAccess(arena: "w", offset: 3)) { _ = try view.load(at: 3) }
            #expect(throws: HeapError.outOfRange(arena: "w", offset: view.size, count: 8, arenaSize: view.size)) {
                _ = try view.load(at: view.size)
            }
        }
        #expect(try a.read(at: 16, count: 8) == [8, 7, 6, 5, 4, 3, 2, 1])
        #expect(try a.read(at: 8, count: 8) == [UInt8](repeating: 0, count: 8))
    }

    /// A refused write through a view changes neither the heap nor one byte of the file.
    @Test func refusedWritesChangeNothing() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 64 << 20)
        let a = try makeDiscontiguousArena(on: heap, named: "frag", extents: 2)
        let size = a.size
        try a.memcpyPersist(at: 0, pattern(Int(size), seed: 3))
        let big = [UInt8](repeating: 0xEE, count: 3 << 20)
        // The copy would cross into the second extent and then past the end: the whole
        // range is checked before the first byte is written.
        try expectRefused(.outOfRange(arena: "frag", offset: size - (2 << 20), count: 3 << 20, arenaSize: size), heap: heap, path: path) {
            try a.withView { view in try big.withUnsafeBytes { try view.memcpyNoDrain(at: size - (2 << 20), from: $0) } }
        }
        try expectRefused(.outOfRange(arena: "frag", offset: 1, count: size, arenaSize: size), heap: heap, path: path) {
            try a.withView { view in try view.flush(at: 1, count: size) }
        }
        try expectRefused(.misalignedAccess(arena: "frag", offset: 4), heap: heap, path: path) {
            try a.withView { view in try view.store(.max, at: 4) }
        }
    }

    /// A read-only heap lends bytes for reading only.
    @Test func readOnlyHeapRefusesWrites() throws {
        let path = tempPath()
        defer { removeFile(path) }
        do {
            let heap = try Heap.create(path: path, size: 32 << 20)
            try heap.createArena(named: "r", size: 2 << 20).memcpyPersist(at: 0, [9, 9, 9, 9, 9, 9, 9, 9])
        }
        let heap = try Heap.open(path: path, mode: .readOnly)
        let a = try heap.arena(named: "r")
        let image = try FileImage(path)
        try a.withView { view throws in
            #expect(try view.load(at: 0) == 0x0909_0909_0909_0909)
            #expect(throws: HeapError.readOnly(path: path)) { try view.store(1, at: 0) }
            #expect(throws: HeapError.readOnly(path: path)) { try view.withUnsafeMutableBytes(at: 0, count: 1) { _ in } }
            #expect(throws: HeapError.readOnly(path: path)) { try view.withMutableBytes(at: 0, count: 1) { _ in } }
            #expect(throws: HeapError.readOnly(path: path)) { try [UInt8(1)].withUnsafeBytes { try view.memcpyNoDrain(at: 0, from: $0) } }
        }
        #expect(try FileImage(path) == image)
    }

    /// Two arenas of one heap share a section; arenas of two heaps, or a destroyed arena,
    /// are refused with an error that names them.
    @Test func viewsOfTwoArenas() throws {
        let path = tempPath(), otherPath = tempPath("other")
        defer { removeFile(path); removeFile(otherPath) }
        let heap = try Heap.create(path: path, size: 32 << 20)
        let other = try Heap.create(path: otherPath, size: 32 << 20)
        let a = try heap.createArena(named: "a", size: 2 << 20)
        let b = try heap.createArena(named: "b", size: 4 << 20)
        let c = try other.createArena(named: "c", size: 2 << 20)
        try Arena.withViews(a, b) { va, vb in
            try va.store(1, at: 0)
            try vb.store(2, at: (4 << 20) - 8)
            #expect(va.size == 2 << 20 && vb.size == 4 << 20)
        }
        #expect(try a.read(at: 0, count: 1) == [1])
        #expect(try b.read(at: (4 << 20) - 8, count: 1) == [2])
        #expect(throws: HeapError.foreignArena(arena: "c", heap: heap.path)) { try Arena.withViews(a, c) { _, _ in } }
        try heap.destroyArena(named: "b")
        #expect(throws: HeapError.unknownArena("b")) { try Arena.withViews(a, b) { _, _ in } }
        #expect(throws: HeapError.unknownArena("b")) { try b.withView { _ in } }
        #expect(heap.check().isHealthy)
    }
}

extension ConcurrencyTests {
    /// A shrink started while a view is open returns only after the view's closure, and
    /// the bytes under the view stay intact meanwhile.
    @Test func shrinkWaitsForAnOpenView() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 32 << 20)
        let a = try heap.createArena(named: "a", size: 8 << 20)
        try a.memsetPersist(at: 6 << 20, value: 0x5A, count: 1 << 20)
        let log = EventLog()
        let go = Flag()
        let changer = TestThread {
            guard Self.wait(upTo: 5, for: { go.isSet }) else { return }
            log.add("shrink-start")
            do {
                try heap.resizeArena(named: "a", to: 4 << 20)
                log.add("shrink-done")
            } catch {
                log.add("shrink-failed: \(error)")
            }
        }
        try a.withView { view in
            go.set()
            _ = Self.wait(upTo: 2, for: { log.contains("shrink-start") })
            usleep(50_000)  // time for the shrink to (wrongly) complete
            let intact = try view.withUnsafeBytes(at: 6 << 20, count: 1 << 20) { $0.allSatisfy { $0 == 0x5A } }
            log.add(intact && view.size == 8 << 20 ? "view-end" : "view-end-corrupt")
        }
        changer.join()
        #expect(log.all == ["shrink-start", "view-end", "shrink-done"])
        #expect(a.size == 4 << 20)
    }
}
