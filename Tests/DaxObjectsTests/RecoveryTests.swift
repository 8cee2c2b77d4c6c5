// Recovery's reading of large objects' chunk-table entries, which a crash can leave torn:
// one fence makes a run's head and tails durable, in any order, and a SIGKILL can stop
// their writing between two entries (a kill test saw "chunk 17 should continue the large
// object at chunk 16"). PowerLossObjectTests.everyFenceOfLargeObjectsRecovers sweeps the
// crashes; these tests forge the two shapes by hand, and the damage that must still be
// refused.

import DaxHeap
@testable import DaxObjects
import Testing

@Suite struct RecoveryTests {
    /// Writes chunk-table entries as a crash could leave them, durably.
    func forge(_ objects: ObjectHeap, _ entries: [(chunk: Int, ChunkDescriptor)]) throws {
        for (chunk, descriptor) in entries {
            objects.word(objects.chunkEntryOffset(chunk)).pointee.store(descriptor.encoded(chunk: UInt64(chunk)), ordering: .relaxed)
            try objects.persist(objects.chunkEntryOffset(chunk), 8)
        }
    }

    func entry(_ objects: ObjectHeap, _ chunk: Int) -> UInt64 {
        objects.word(objects.chunkEntryOffset(chunk)).pointee.load(ordering: .relaxed)
    }

    @Test func aPartialRunThatNothingReachesIsFreed() throws {
        var fixture = try Fixture(arenaSize: 32 << 20)
        defer { fixture.remove() }
        let context = try fixture.objects.makeContext()
        let root = try fixture.objects.root(named: "big")
        let head = Int(try context.allocate(5 << 20, kind: .references, into: root).offset >> Layout.chunkShift)
        try context.free(from: root)
        context.close()
        // An allocation of three chunks killed after two entries: the head and one tail.
        // Beyond it, a tail of nothing (a free killed after clearing its head).
        let tail = ChunkDescriptor(kind: .largeTail, objectKind: .references)
        try forge(fixture.objects, [(head, ChunkDescriptor(kind: .largeHead, objectKind: .references, runLength: 3)),
                                    (head + 1, tail), (head + 2, .free), (head + 4, tail)])
        try fixture.reopen()

        #expect(fixture.objects.recovery.chunksFreed == 3)
        #expect(fixture.objects.recovery.liveObjects == 0)
        for chunk in head...(head + 4) { #expect(entry(fixture.objects, chunk) == 0, "chunk \(chunk)'s entry cleared") }
        fixture.objects.checkInvariants()
        let again = try fixture.objects.makeContext()
        defer { again.close() }
        let object = try again.allocate(5 << 20, into: root)
        #expect(object.offset >> Layout.chunkShift == UInt64(head), "the freed run is allocated again")
    }

    @Test func aReadOnlyOpenFreesAPartialRunInMemoryOnly() throws {
        var fixture = try Fixture(arenaSize: 32 << 20)
        defer { fixture.remove() }
        let context = try fixture.objects.makeContext()
        let root = try fixture.objects.root(named: "big")
        let head = Int(try context.allocate(3 << 20, into: root).offset >> Layout.chunkShift)
        try context.free(from: root)
        context.close()
        let forged = ChunkDescriptor(kind: .largeHead, objectKind: .data, runLength: 2)
        try forge(fixture.objects, [(head, forged)])
        try fixture.objects.close()
        try fixture.heap.close()

        let heap = try Heap.open(path: fixture.path, mode: .readOnly)
        fixture.heap = heap
        fixture.objects = try ObjectHeap.open(in: heap, arena: "objects")
        #expect(fixture.objects.recovery.chunksFreed == 1)
        #expect(fixture.objects.statistics().objects == 0)
        #expect(entry(fixture.objects, head) == forged.encoded(chunk: UInt64(head)), "a read-only open writes nothing")
    }

    /// A reachable object is whole: its entries were fenced before it was published. One
    /// whose run is not whole is damage, and open says so rather than free it.
    @Test func aReachableObjectWithoutItsWholeRunIsRefused() throws {
        var fixture = try Fixture(arenaSize: 32 << 20)
        defer { fixture.remove() }
        let context = try fixture.objects.makeContext()
        let object = try context.allocate(5 << 20, into: fixture.objects.root(named: "big"))
        context.close()
        let head = Int(object.offset >> Layout.chunkShift)
        try forge(fixture.objects, [(head + 2, .free)])
        #expect {
            try fixture.reopen()
        } throws: { error in
            guard case .corrupt(_, let detail) = error as? ObjectError else { return false }
            return detail.contains("do not make a whole large object (chunk \(head))")
        }
    }
}
