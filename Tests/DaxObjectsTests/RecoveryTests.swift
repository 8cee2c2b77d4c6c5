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

    // MARK: - Lane logs

    /// A transaction's log stays in its lane after the commit; only its length is zeroed.
    /// The next commit in the lane stores its entries, checksum and length with one fence,
    /// so a power loss can leave the new length durable and the rest old. With the old
    /// checksum still there, a log of the same length read as the old transaction,
    /// committed, and open replayed it: a freed object back in its slot (found by
    /// PowerLossObjectTests with DAXHEAP_POWERLOSS_SEED=7, fence 53). The log's end clears
    /// the checksum too, and open clears one left at rest by an older version.
    @Test func aTornLogHeaderDoesNotReplayTheLanesLastTransaction() throws {
        var fixture = try Fixture()
        defer { fixture.remove() }
        let pages = try fixture.heap.createArena(named: "pages", size: 2 << 20)
        let context = try fixture.objects.makeContext()
        let root = try fixture.objects.root(named: "r")
        let lane = Layout.laneOffset(context.lane, laneLogBytes: fixture.objects.geometry.laneLogBytes)
        try context.transaction { tx in  // two entries: the root, a page
            try tx.allocate(100, into: root)
            var stamp: UInt64 = 0xAB
            try withUnsafeBytes(of: &stamp) { try tx.write($0, to: pages, at: 0) }
        }
        try context.free(from: root)
        context.close()
        // The next transaction of the same shape, cut by a power loss after its length
        // reached the media and before its entries and checksum did.
        let length = 2 * (Layout.entryBytesOffset + 8)
        fixture.objects.word(lane + Layout.logLengthOffset).pointee.store(length, ordering: .relaxed)
        try fixture.objects.persist(lane + Layout.logLengthOffset, 8)
        try fixture.reopen()

        #expect(try fixture.objects.load(root).isNull, "the freed object is not back in its root")
        #expect(fixture.objects.recovery.transactionsReplayed == 0)
        #expect(fixture.objects.recovery.tornLogsDiscarded == 1)
        #expect(fixture.objects.statistics().objects == 0)
    }
}
