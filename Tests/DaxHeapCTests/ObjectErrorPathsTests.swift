// The object calls' rarer statuses, reached through the C entry points: DAXHEAP_ENOTSUP
// (an arena id past a reference's 16 bits), DAXHEAP_ECLOSED (a heap handed over from
// Swift and closed there) and DAXHEAP_EIO (a metadata copy that cannot be written, through
// the package-only MetadataFaults hook). Each failed call says what is wrong in one line
// and leaves the heap and its objects as they were.

import CDaxHeap
@testable import DaxHeapC
import DaxHeap
import DaxTestSupport
import Logging
import Testing

/// The first arena id a compact reference cannot hold (references hold 16 bits of it).
private let firstUnreferenceableID: UInt64 = 1 << 16

/// How many throwaway arenas one metadata update makes and destroys while ids are used up.
private let idsPerUpdate: UInt64 = 128

/// A message as daxheap_errmsg should give it: one line, naming `subject`, saying `what`.
private func expectOneLine(_ message: String, naming subject: String, saying what: String,
                           sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(!message.isEmpty && !message.contains("\n"), "not one line: \(message)", sourceLocation: sourceLocation)
    #expect(message.contains(subject), "does not name \(subject): \(message)", sourceLocation: sourceLocation)
    #expect(message.contains(what), "does not say \(what): \(message)", sourceLocation: sourceLocation)
}

/// Uses up arena ids until the heap's next arena gets `next`: arenas created and destroyed
/// in the same update, so that nothing is zeroed (through C that would be one call, and
/// 2 MiB zeroed, per id). `next` must be above every id used so far.
private func useUpArenaIDs(_ heap: OpaquePointer, until next: UInt64) throws {
    let swift = swiftHeap(heap)
    let probe = try swift.createArena(named: "id-probe", size: twoMiB)
    var remaining = next - probe.id - 1
    try swift.destroyArena(named: "id-probe")
    while remaining > 0 {
        let count = min(remaining, idsPerUpdate)
        try swift.provision((0..<count).flatMap { _ in [ArenaChange.create(name: "burn", size: twoMiB), .destroy(name: "burn")] })
        remaining -= count
    }
}

/// A heap with an object heap "objs" (a root "kept" holding a 64-byte object), reopened
/// from Swift with writes of its primary metadata copy failing as `kind` says, and handed
/// to C; and the kept object's reference.
private func heapWithFailingMetadata(_ kind: MetadataFaults.Kind) throws -> (path: String, heap: Heap, handle: OpaquePointer, kept: UInt64) {
    let (path, heap, objects) = try createObjects()
    let ctx = try openContext(objects)
    var kept: UInt64 = 0
    #expect(daxheap_alloc(ctx, 64, kindData, 0, try root(objects, "kept"), &kept) == 0)
    #expect(daxheap_objctx_close(ctx) == 0)
    #expect(daxheap_objects_close(objects) == 0)
    daxheap_close(heap)
    let faults = MetadataFaults([.init(copy: .primary, storedBytes: 100, kind: kind)])
    let failing = try Heap.open(path: path, mode: .readWrite, logger: Logger(label: "test"), sysfsRoot: "/sys", faults: faults)
    return (path, failing, daxheapHandle(adopting: failing), kept)
}

@Suite struct ObjectErrorPathsTests {
    /// A heap whose arena ids have passed 65535: no object heap can be made or opened in
    /// a newer arena, nor can a transaction write to one (DAXHEAP_ENOTSUP); the arenas,
    /// the free space, the arena's bytes and the open object heap stay as they were.
    @Test(.disabled(if: threadSanitizerIsLoaded, "single-threaded, and 65,536 arenas long: ThreadSanitizer has no race to look for here"))
    func arenaIDsPastSixteenBitsAreENOTSUP() throws {
        let (path, heap, objects) = try createObjects()
        defer { removeFile(path); daxheap_close(heap) }
        defer { #expect(daxheap_objects_close(objects) == 0) }
        try useUpArenaIDs(heap, until: firstUnreferenceableID)
        #expect(daxheap_arena_create(heap, "late", twoMiB) == 0)
        try #require(try swiftHeap(heap).arena(named: "late").id == firstUnreferenceableID)
        #expect(writeBytes(heap, "late", at: 0, pattern(64, seed: 3)) == 0)
        let arenas = swiftHeap(heap).arenas, available = swiftHeap(heap).availableSize
        let image = try fileImage(path)

        var out: OpaquePointer?
        #expect(daxheap_objects_open(heap, "late", &out) == code(DAXHEAP_ENOTSUP))
        expectOneLine(lastMessage(), naming: "\"late\"", saying: "above 65535")
        #expect(out == nil)
        #expect(try fileImage(path) == image, "the open wrote nothing")

        // The arena create makes is destroyed again (its id, and two generations, are used up).
        #expect(daxheap_objects_create(heap, "more", twoMiB, &out) == code(DAXHEAP_ENOTSUP))
        expectOneLine(lastMessage(), naming: "\"more\"", saying: "above 65535")
        #expect(lastMessage().contains("ids are never reused"), "a newer arena cannot help")
        #expect(out == nil)
        #expect(swiftHeap(heap).arenas == arenas && swiftHeap(heap).availableSize == available)

        // Inside a transaction the write is refused; the body goes on and commits the rest.
        let ctx = try openContext(objects)
        defer { #expect(daxheap_objctx_close(ctx) == 0) }
        let slot = try root(objects, "made")
        var refused: Int32 = 0
        var message = ""
        let rc = runTransaction(ctx) { tx in
            var word: UInt64 = 7
            refused = daxheap_tx_write_arena(tx, "late", 0, &word, 8)
            message = lastMessage()
            return daxheap_tx_alloc(tx, 16, kindData, 0, slot, nil)
        }
        #expect(refused == code(DAXHEAP_ENOTSUP))
        expectOneLine(message, naming: "\"late\"", saying: "above 65535")
        #expect(rc == 0, "\(lastMessage())")
        #expect(try readBytes(heap, "late", at: 0, count: 64) == pattern(64, seed: 3))
        #expect(try load(objects, slot) != 0)
    }

    /// A heap handed over from Swift and closed there: opening or creating an object heap
    /// through it is DAXHEAP_ECLOSED, writes nothing, and the heap opens again as it was.
    @Test func aHeapClosedFromSwiftIsECLOSEDForObjects() throws {
        let path = tempPath("objects-closed")
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: heapSize)
        let handle = daxheapHandle(adopting: heap)
        var out: OpaquePointer?
        #expect(daxheap_objects_create(handle, "objs", 8 << 20, &out) == 0)
        let objects = try #require(out)
        let kept = try root(objects, "kept")
        #expect(daxheap_objects_close(objects) == 0)
        try heap.close()
        let image = try fileImage(path)

        out = nil
        #expect(daxheap_objects_open(handle, "objs", &out) == code(DAXHEAP_ECLOSED))
        expectOneLine(lastMessage(), naming: path, saying: "is closed")
        #expect(out == nil)
        #expect(daxheap_objects_create(handle, "more", twoMiB, &out) == code(DAXHEAP_ECLOSED))
        expectOneLine(lastMessage(), naming: path, saying: "is closed")
        #expect(out == nil)
        #expect(try fileImage(path) == image)
        daxheap_close(handle)

        let again = try openHeap(path)
        defer { daxheap_close(again) }
        #expect(swiftHeap(again).arenas.map(\.name) == ["objs"])
        let reopened = try openObjects(again, "objs")
        defer { #expect(daxheap_objects_close(reopened) == 0) }
        var found: UInt64 = 0
        #expect(daxheap_objects_find_root(reopened, "kept", &found) == 0 && found == kept)
    }

    /// A primary metadata copy that cannot be written (a media error, or msync's EIO):
    /// creating an object heap is DAXHEAP_EIO, saying so, and changes nothing.
    @Test(arguments: [MetadataFaults.Kind.media, .io])
    func aFailedMetadataWriteIsEIOForCreate(kind: MetadataFaults.Kind) throws {
        let (path, heap, handle, _) = try heapWithFailingMetadata(kind)
        defer { removeFile(path) }
        let arenas = heap.arenas, available = heap.availableSize
        var out: OpaquePointer?
        #expect(daxheap_objects_create(handle, "more", twoMiB, &out) == code(DAXHEAP_EIO))
        expectOneLine(lastMessage(), naming: path, saying: "cannot write the primary metadata copy")
        #expect(out == nil)
        #expect(heap.arenas == arenas && heap.availableSize == available)
        daxheap_close(handle)

        let again = try openHeap(path)  // no faults: the primary is repaired from the secondary
        defer { daxheap_close(again) }
        #expect(swiftHeap(again).arenas == arenas)
    }

    /// An allocation that must grow the arena while its metadata cannot be written: there
    /// is room, so it is DAXHEAP_EIO, not DAXHEAP_ENOSPC, from daxheap_alloc and from a
    /// transaction's body (whose status daxheap_tx_run passes on); nothing changes, and
    /// once the copy can be written (a plain reopen repairs it) the same allocation succeeds.
    @Test(arguments: [MetadataFaults.Kind.media, .io])
    func aFailedMetadataWriteIsEIOForAGrowingAllocation(kind: MetadataFaults.Kind) throws {
        let (path, heap, handle, kept) = try heapWithFailingMetadata(kind)
        defer { removeFile(path) }
        let objects = try openObjects(handle, "objs")
        let ctx = try openContext(objects)
        let slot = try root(objects, "big")
        let counts = stats(objects), arenas = heap.arenas
        let size = counts.arena_size + twoMiB  // more than the arena holds
        try #require(heap.availableSize >= size, "the heap has room to grow the arena")

        var made: UInt64 = 12345
        #expect(daxheap_alloc(ctx, size, kindData, 0, slot, &made) == code(DAXHEAP_EIO))
        expectOneLine(lastMessage(), naming: path, saying: "cannot write the primary metadata copy")
        #expect(made == 12345)
        var message = ""
        let rc = runTransaction(ctx) { tx in
            let status = daxheap_tx_alloc(tx, size, kindData, 0, slot, nil)
            message = lastMessage()
            return status
        }
        #expect(rc == code(DAXHEAP_EIO))
        #expect(lastMessage() == message)
        expectOneLine(message, naming: path, saying: "cannot write the primary metadata copy")
        #expect(stats(objects) == counts && heap.arenas == arenas)
        #expect(try load(objects, slot) == 0)
        #expect(daxheap_objctx_close(ctx) == 0)
        #expect(daxheap_objects_close(objects) == 0)
        daxheap_close(handle)

        let again = try openHeap(path)
        defer { daxheap_close(again) }
        let reopened = try openObjects(again, "objs")
        defer { #expect(daxheap_objects_close(reopened) == 0) }
        #expect(stats(reopened).objects == counts.objects)
        #expect(try load(reopened, try root(reopened, "kept")) == kept)
        let retry = try openContext(reopened)
        defer { #expect(daxheap_objctx_close(retry) == 0) }
        #expect(daxheap_alloc(retry, size, kindData, 0, try root(reopened, "big"), nil) == 0, "\(lastMessage())")
    }
}
