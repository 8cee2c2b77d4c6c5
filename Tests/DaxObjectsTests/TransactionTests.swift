import DaxHeap
@testable import DaxObjects
import Testing

@Suite struct TransactionTests {
    struct Refused: Error {}

    @Test func aTransactionWritesObjectsAndAnotherArenaTogether() throws {
        var fixture = try Fixture()
        defer { fixture.remove() }
        let pages = try fixture.heap.createArena(named: "pages", size: 2 << 20)
        let context = try fixture.objects.makeContext()
        let table = try context.allocate(64, kind: .references, into: fixture.objects.root(named: "t"))
        let record = try context.allocate(256, into: ObjectSlot(in: table, at: 0))
        try context.transaction { tx in
            let bytes: [UInt8] = Array(repeating: 0xAB, count: 200)
            try bytes.withUnsafeBytes { try tx.write($0, at: record.offset + 8) }
            try bytes.withUnsafeBytes { try tx.write($0, to: pages, at: 4096) }
            try tx.allocate(32, into: ObjectSlot(in: table, at: 8))
        }
        context.close()
        try fixture.reopen()
        #expect(fixture.objects.recovery.transactionsReplayed == 0)
        let address = try fixture.objects.address(of: record)
        #expect(UnsafeRawBufferPointer(start: address + 8, count: 200).allSatisfy { $0 == 0xAB })
        #expect(try fixture.heap.arena(named: "pages").read(at: 4096, count: 200) == Array(repeating: 0xAB, count: 200))
        #expect(fixture.objects.statistics().objects == 3)
    }

    @Test func aThrowingBodyLeavesNothing() throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let context = try fixture.objects.makeContext()
        let root = try fixture.objects.root(named: "r")
        let table = try context.allocate(64, kind: .references, into: root)
        let before = fixture.objects.statistics()
        #expect(throws: Refused.self) {
            try context.transaction { tx in
                try tx.allocate(100, into: ObjectSlot(in: table, at: 0))
                try tx.store(7, at: table.offset + 8)
                try tx.free(from: root)
                throw Refused()
            }
        }
        #expect(try fixture.objects.load(root) == table)
        #expect(try fixture.objects.load(ObjectSlot(in: table, at: 0)) == .null)
        #expect(try fixture.objects.address(of: table).load(fromByteOffset: 8, as: UInt64.self) == 0)
        let after = fixture.objects.statistics()
        #expect(after.objects == before.objects && after.allocatedBytes == before.allocatedBytes)
        fixture.objects.checkInvariants()
    }

    @Test func aLogThatDoesNotFitIsRefusedAndNothingApplied() throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let context = try fixture.objects.makeContext()
        let object = try context.allocate(64 << 10, into: fixture.objects.root(named: "r"))
        let big = [UInt8](repeating: 1, count: 20 << 10)  // the default log holds 16 KiB
        #expect(throws: ObjectError.self) {
            try context.transaction { tx in
                try [UInt8](repeating: 2, count: 64).withUnsafeBytes { try tx.write($0, at: object.offset) }
                try big.withUnsafeBytes { try tx.write($0, at: object.offset + 4096) }
            }
        }
        let address = try fixture.objects.address(of: object)
        #expect(address.load(as: UInt8.self) != 2)
        #expect(address.load(fromByteOffset: 4096, as: UInt8.self) != 1)
    }

    @Test func writesOutsideLiveObjectsAreRefused() throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let context = try fixture.objects.makeContext()
        let object = try context.allocate(64, into: fixture.objects.root(named: "r"))
        let size = try fixture.objects.size(of: object)
        for offset: UInt64 in [0, 4096 + 8, object.offset + size - 4, fixture.objects.window.size - 8] {
            #expect(throws: ObjectError.self, "offset \(offset)") {
                try context.transaction { tx in
                    try [UInt8](repeating: 9, count: 8).withUnsafeBytes { try tx.write($0, at: offset) }
                }
            }
        }
    }

    @Test func aReadOnlyHeapOpensButMakesNoContext() throws {
        var fixture = try Fixture()
        defer { fixture.remove() }
        let context = try fixture.objects.makeContext()
        try context.allocate(64, into: fixture.objects.root(named: "r"))
        context.close()
        try fixture.objects.close()
        try fixture.heap.close()
        let heap = try Heap.open(path: fixture.path, mode: .readOnly)
        let objects = try ObjectHeap.open(in: heap, arena: "objects")
        #expect(objects.recovery.liveObjects == 1)
        #expect(throws: ObjectError.heap(.readOnly(path: fixture.path))) { try objects.makeContext() }
        try objects.close()
        try heap.close()
        fixture.heap = try Heap.open(path: fixture.path)
        fixture.objects = try ObjectHeap.open(in: fixture.heap, arena: "objects")
    }
}
