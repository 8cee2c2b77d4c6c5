import DaxHeap
@testable import DaxObjects
import Testing

@Suite struct ObjectHeapTests {
    @Test func anObjectAllocatedIntoARootIsThereAfterReopen() throws {
        var fixture = try Fixture()
        defer { fixture.remove() }
        let root = try fixture.objects.root(named: "first")
        let context = try fixture.objects.makeContext()
        let object = try context.allocate(100, into: root)
        try fixture.objects.address(of: object).storeBytes(of: UInt64(0xFEED), as: UInt64.self)
        try fixture.objects.window.persist(at: object.offset, count: 8)
        context.close()
        try fixture.reopen()
        let slot = try #require(fixture.objects.findRoot(named: "first"))
        let found = try fixture.objects.load(slot)
        #expect(found == object)
        #expect(try fixture.objects.address(of: found).load(as: UInt64.self) == 0xFEED)
        #expect(fixture.objects.recovery.liveObjects == 1)
        #expect(try fixture.objects.size(of: found) == 112)
        fixture.objects.checkInvariants()
    }

    @Test func unreachableObjectsAreFreeAfterReopen() throws {
        var fixture = try Fixture()
        defer { fixture.remove() }
        let context = try fixture.objects.makeContext()
        let table = try context.allocate(64 * 8, kind: .references, into: fixture.objects.root(named: "table"))
        for i in 0..<64 { try context.allocate(48, into: ObjectSlot(in: table, at: UInt64(i) * 8)) }
        _ = try context.reserve(4096)  // reachable from nothing
        try context.free(from: ObjectSlot(in: table, at: 0))
        context.close()
        try fixture.reopen()
        #expect(fixture.objects.recovery.liveObjects == 64)  // the table and 63 children
        let stats = fixture.objects.statistics()
        #expect(stats.objects == 64)
        fixture.objects.checkInvariants()
    }

    @Test func referencesObjectsReadAsZeroEvenAfterReuse() throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let context = try fixture.objects.makeContext()
        let root = try fixture.objects.root(named: "r")
        for _ in 0..<3 {
            let object = try context.allocate(256, kind: .references, into: root)
            let bytes = UnsafeMutableRawBufferPointer(start: try fixture.objects.address(of: object), count: 256)
            #expect(bytes.allSatisfy { $0 == 0 })
            bytes.initializeMemory(as: UInt8.self, repeating: 0xEE)
            try context.free(from: root)
        }
    }

    @Test func misuseIsATypedErrorThatChangesNothing() throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let objects = fixture.objects
        let context = try objects.makeContext()
        let root = try objects.root(named: "r")
        let data = try context.allocate(64, into: root)
        #expect(throws: ObjectError.slotOccupied(offset: root.offset, holding: data)) { try context.allocate(8, into: root) }
        // A slot inside a .data object: recovery would not see it.
        #expect { try context.allocate(8, into: ObjectSlot(in: data, at: 8)) } throws: { error in
            if case ObjectError.invalidSlot = error { return true } else { return false }
        }
        #expect(throws: ObjectError.self) { try context.allocate(8, into: ObjectSlot(offset: 12)) }     // metadata
        let empty = try objects.root(named: "empty")
        #expect(throws: ObjectError.invalidSize(0)) { try context.allocate(0, into: empty) }
        #expect(throws: ObjectError.invalidAlignment(3)) { try context.allocate(8, alignment: 3, into: empty) }
        #expect(try objects.load(empty) == .null)
        let foreign = ObjectReference(arenaTag: objects.tag + 1, offset: data.offset)
        #expect(throws: ObjectError.foreignReference(foreign, arena: "objects")) { try objects.address(of: foreign) }
        try context.free(from: root)
        #expect(try objects.load(root) == .null)
        #expect(throws: ObjectError.self) { try context.free(from: root) }  // null
        #expect(throws: ObjectError.self) { try objects.address(of: data) }  // freed
        #expect(objects.statistics().objects == 0)
        objects.checkInvariants()
    }

    @Test func alignmentAndLargeObjects() throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let context = try fixture.objects.makeContext()
        let table = try context.allocate(64, kind: .references, into: fixture.objects.root(named: "t"))
        for (i, alignment) in [16, 64, 256, 4096].enumerated() {
            let object = try context.allocate(100, alignment: UInt64(alignment), into: ObjectSlot(in: table, at: UInt64(i) * 8))
            #expect(UInt(bitPattern: try fixture.objects.address(of: object)) % UInt(alignment) == 0)
        }
        let large = try context.allocate(5 << 20, into: ObjectSlot(in: table, at: 32))
        #expect(try fixture.objects.size(of: large) == 6 << 20)
        #expect(large.offset % (2 << 20) == 0)
        try context.free(from: ObjectSlot(in: table, at: 32))
        fixture.objects.checkInvariants()
    }

    @Test func theArenaGrowsAndRunningOutIsATypedError() throws {
        let fixture = try Fixture(heapSize: 32 << 20, arenaSize: 4 << 20)
        defer { fixture.remove() }
        let context = try fixture.objects.makeContext()
        let table = try context.allocate(4096, kind: .references, into: fixture.objects.root(named: "t"))
        var i: UInt64 = 0
        var failure: ObjectError?
        while failure == nil, i < 512 {
            do { try context.allocate(1 << 20, into: ObjectSlot(in: table, at: i * 8)); i += 1 } catch { failure = error }
        }
        guard case .outOfSpace = failure else { Issue.record("expected outOfSpace, got \(String(describing: failure))"); return }
        #expect(i >= 20)  // ~26 MiB of the heap's 28 MiB usable, 2 objects per chunk
        #expect(fixture.objects.arena.size > 4 << 20)
        #expect(try fixture.objects.load(ObjectSlot(in: table, at: i * 8)) == .null)
        fixture.objects.checkInvariants()
    }

    @Test func sizeClassesWasteAtMostAQuarterFrom48Bytes() {
        for size in UInt64(48)...UInt64(1 << 20) where size < 8192 || size % 97 == 0 {
            let block = SizeClasses.sizes[SizeClasses.index(size: size)!]
            #expect(block >= size)
            #expect(Double(block - size) / Double(block) < 0.25, "size \(size) -> \(block)")
        }
        #expect(SizeClasses.index(size: (1 << 20) + 1) == nil)
    }
}

@Suite struct ChunkReuseTests {
    @Test func emptiedChunksGoBackAndServeOtherClasses() throws {
        let fixture = try Fixture(heapSize: 64 << 20, arenaSize: 16 << 20)
        defer { fixture.remove() }
        let objects = fixture.objects
        let context = try objects.makeContext()
        let table = try context.allocate(8192 * 8, kind: .references, into: objects.root(named: "t"))
        func slot(_ i: Int) -> ObjectSlot { ObjectSlot(in: table, at: UInt64(i) * 8) }
        // Three chunks of 256 KiB blocks (8 per chunk), then all freed.
        for i in 0..<24 { try context.allocate(256 << 10, into: slot(i)) }
        let filled = objects.statistics()
        for i in 0..<24 { try context.free(from: slot(i)) }
        context.close()  // its cache goes back: the chunks empty
        let emptied = objects.statistics()
        #expect(emptied.objects == 1)
        #expect(emptied.largestFreeBlock > filled.largestFreeBlock, "\(emptied.largestFreeBlock) vs \(filled.largestFreeBlock)")
        #expect(emptied.classes.first { $0.blockSize == 256 << 10 }.map { $0.chunks <= 1 } ?? true)
        objects.checkInvariants()
        // The room serves a large object without growing the arena.
        let size = objects.arena.size
        let again = try objects.makeContext()
        try again.allocate(4 << 20, into: slot(0))
        #expect(objects.arena.size == size)
        objects.checkInvariants()
    }
}

@Suite struct ObjectHeapCloseTests {
    @Test func closeIsRefusedWhileAContextIsOpen() throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let context = try fixture.objects.makeContext()
        try context.allocate(64, into: fixture.objects.root(named: "r"))
        #expect(throws: ObjectError.self) { try fixture.objects.close() }
        #expect(fixture.objects.window.isOpen)
        context.close()
        try fixture.objects.close()
        #expect(!fixture.objects.window.isOpen)
    }
}

@Suite struct ObjectHeapOpenTwiceTests {
    @Test func aSecondOpenOfTheSameArenaIsRefusedUntilTheFirstCloses() throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        #expect(throws: ObjectError.self) { try ObjectHeap.open(in: fixture.heap, arena: "objects") }
        try fixture.objects.close()
        let again = try ObjectHeap.open(in: fixture.heap, arena: "objects")
        try again.close()
    }
}
