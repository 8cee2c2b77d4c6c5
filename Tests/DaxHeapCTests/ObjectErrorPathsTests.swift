// The object calls' rarer statuses, reached through the C entry points: DAXHEAP_ENOTSUP
// (an arena id past a reference's 16 bits), DAXHEAP_ECLOSED (a heap handed over from
// Swift and closed there) and DAXHEAP_EIO (a metadata copy that cannot be written, through
// the package-only MetadataFaults hook). Each failed call says what is wrong in one line
// and leaves the heap and its objects as they were.

import CDaxHeap
@testable import DaxHeapC
import DaxHeap
import Logging
import Testing

/// A message as daxheap_errmsg should give it: one line, naming `subject`, saying `what`.
private func expectOneLine(_ message: String, naming subject: String, saying what: String,
                           sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(!message.isEmpty && !message.contains("\n"), "not one line: \(message)", sourceLocation: sourceLocation)
    #expect(message.contains(subject), "does not name \(subject): \(message)", sourceLocation: sourceLocation)
    #expect(message.contains(what), "does not say \(what): \(message)", sourceLocation: sourceLocation)
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
}
