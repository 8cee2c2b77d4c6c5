// The object layer through C: object heaps, roots, references, contexts, allocation,
// reservations. Every status path, NULL arguments, refusals that change nothing, and a
// reopen that finds the roots and objects again. Transactions and threads are in
// ObjectTransactionTests.swift.

import CDaxHeap
@testable import DaxHeapC
import DaxHeap
import DaxObjects
import Testing
#if canImport(Glibc)
import Glibc
#endif

let kindData = Int32(DAXHEAP_KIND_DATA.rawValue)
let kindReferences = Int32(DAXHEAP_KIND_REFERENCES.rawValue)

/// A heap with an object heap "objs" in it, through the C calls.
func createObjects(size: UInt64 = heapSize, objectsSize: UInt64 = 8 << 20, lanes: UInt32? = nil, logBytes: UInt32 = 16 << 10)
    throws -> (path: String, heap: OpaquePointer, objects: OpaquePointer)
{
    let (path, heap) = try createHeap(size: size, "objects")
    var objects: OpaquePointer?
    let rc = lanes.map { daxheap_objects_create_lanes(heap, "objs", objectsSize, $0, logBytes, &objects) }
        ?? daxheap_objects_create(heap, "objs", objectsSize, &objects)
    try #require(rc == 0, "daxheap_objects_create: \(lastMessage())")
    return (path, heap, try #require(objects))
}

/// Opens a context, requiring success.
func openContext(_ objects: OpaquePointer) throws -> OpaquePointer {
    var ctx: OpaquePointer?
    let rc = daxheap_objctx_open(objects, &ctx)
    try #require(rc == 0, "daxheap_objctx_open: \(lastMessage())")
    return try #require(ctx)
}

/// The slot of root `name` (made if missing), requiring success.
func root(_ objects: OpaquePointer, _ name: String) throws -> UInt64 {
    var slot: UInt64 = 0
    let rc = daxheap_objects_root(objects, name, &slot)
    try #require(rc == 0, "daxheap_objects_root: \(lastMessage())")
    return slot
}

/// The reference `slot` holds, requiring success.
func load(_ objects: OpaquePointer, _ slot: UInt64) throws -> UInt64 {
    var ref: UInt64 = 99
    let rc = daxheap_objects_load(objects, slot, &ref)
    try #require(rc == 0, "daxheap_objects_load: \(lastMessage())")
    return ref
}

/// The address of `ref`, requiring success.
func address(_ objects: OpaquePointer, _ ref: UInt64) throws -> UnsafeMutableRawPointer {
    var pointer: UnsafeMutableRawPointer?
    let rc = daxheap_objects_address(objects, ref, &pointer)
    try #require(rc == 0, "daxheap_objects_address: \(lastMessage())")
    return try #require(pointer)
}

/// The object heap's statistics, as C reads them.
func stats(_ objects: OpaquePointer) -> daxheap_objects_stats {
    var stats = daxheap_objects_stats()
    precondition(daxheap_objects_stats(objects, &stats) == 0)
    return stats
}

extension daxheap_objects_stats: @retroactive Equatable {
    public static func == (a: Self, b: Self) -> Bool {
        (a.objects, a.allocated_bytes, a.free_bytes, a.largest_free_block, a.arena_size)
            == (b.objects, b.allocated_bytes, b.free_bytes, b.largest_free_block, b.arena_size)
    }
}

@Suite struct ObjectExportsTests {
    /// One instance of every ObjectError case and its code (docs/C-API.md lists the same).
    @Test func everyObjectErrorHasItsStatus() {
        let ref = ObjectReference(rawValue: 1 << 48 | 4096)
        let table: [(ObjectError, daxheap_status)] = [
            (.heap(.noSpace(requested: 1, available: 0)), DAXHEAP_ENOSPC),
            (.heap(.readOnly(path: "p")), DAXHEAP_EROFS),
            (.notAnObjectHeap(arena: "a", reason: "r"), DAXHEAP_ENOTHEAP),
            (.corrupt(arena: "a", detail: "d"), DAXHEAP_ECORRUPT),
            (.arenaIDTooLarge(arena: "a", id: 1 << 16), DAXHEAP_ENOTSUP),
            (.outOfSpace(arena: "a", requested: 1, reason: "r"), DAXHEAP_ENOSPC),
            (.invalidSize(0), DAXHEAP_EINVAL),
            (.invalidAlignment(3), DAXHEAP_EINVAL),
            (.invalidSlot(offset: 1, reason: "r"), DAXHEAP_EINVAL),
            (.slotOccupied(offset: 8, holding: ref), DAXHEAP_EEXIST),
            (.notAnObject(ref, reason: "r"), DAXHEAP_EINVAL),
            (.foreignReference(ref, arena: "a"), DAXHEAP_EINVAL),
            (.invalidRootName(""), DAXHEAP_EINVAL),
            (.rootsFull(capacity: 64), DAXHEAP_ENOSPC),
            (.noFreeLane(lanes: 1), DAXHEAP_EBUSY),
            (.transactionTooLarge(bytes: 2, capacity: 1), DAXHEAP_ENOSPC),
            (.misuse("m"), DAXHEAP_EBUSY),
        ]
        for (error, expected) in table {
            #expect(Failure.status(of: error) == expected, "\(error)")
            #expect(Failure(error).message == error.description)
        }
    }

    /// A list built through C survives closing everything: the reopened object heap finds
    /// the root, the objects, their contents, kinds and sizes, and counts them live.
    @Test func reopenFindsRootsAndObjects() throws {
        let (path, heap, objects) = try createObjects()
        defer { removeFile(path) }
        let ctx = try openContext(objects)
        let head = try root(objects, "list")
        #expect(try load(objects, head) == 0)
        // Two nodes of { next ref, value }: the first allocated into the root, the second
        // into the first's next field (found both ways: daxheap_field and offset_of).
        var first: UInt64 = 0
        #expect(daxheap_alloc(ctx, 16, kindReferences, 0, head, &first) == 0)
        let firstAddress = try address(objects, first)
        var nextSlot: UInt64 = 0
        #expect(daxheap_objects_offset_of(objects, firstAddress, &nextSlot) == 0)
        #expect(nextSlot == daxheap_field(first, 0))
        var second: UInt64 = 0
        #expect(daxheap_alloc(ctx, 16, kindReferences, 0, nextSlot, &second) == 0)
        firstAddress.storeBytes(of: UInt64(111), toByteOffset: 8, as: UInt64.self)
        #expect(daxheap_objects_persist(objects, firstAddress + 8, 8) == 0)
        try address(objects, second).storeBytes(of: UInt64(222), toByteOffset: 8, as: UInt64.self)
        #expect(daxheap_objects_persist(objects, try address(objects, second) + 8, 8) == 0)
        // A data object hanging off the second node.
        var blob: UInt64 = 0
        #expect(daxheap_alloc(ctx, 1000, kindData, 64, daxheap_field(second, 0), &blob) == 0)
        let text = Array("persistent bytes".utf8)
        try address(objects, blob).copyMemory(from: text, byteCount: text.count)
        #expect(daxheap_objects_persist(objects, try address(objects, blob), UInt64(text.count)) == 0)
        #expect(stats(objects).objects == 3)
        #expect(daxheap_objctx_close(ctx) == 0)
        #expect(daxheap_objects_close(objects) == 0)
        daxheap_close(heap)

        let again = try openHeap(path)
        defer { daxheap_close(again) }
        let objs = try openObjects(again, "objs")
        defer { #expect(daxheap_objects_close(objs) == 0) }
        var report = daxheap_objects_recovery()
        #expect(daxheap_objects_recovery(objs, &report) == 0)
        #expect(report.live_objects == 3)
        var found: UInt64 = 0
        #expect(daxheap_objects_find_root(objs, "list", &found) == 0)
        #expect(found == head)
        let n1 = try load(objs, found)
        #expect(n1 == first)
        #expect(try address(objs, n1).load(fromByteOffset: 8, as: UInt64.self) == 111)
        let n2 = try load(objs, daxheap_field(n1, 0))
        #expect(n2 == second)
        #expect(try address(objs, n2).load(fromByteOffset: 8, as: UInt64.self) == 222)
        let data = try load(objs, daxheap_field(n2, 0))
        #expect(data == blob)
        #expect(Array(UnsafeRawBufferPointer(start: try address(objs, data), count: text.count)) == text)
        var kind: Int32 = -1, size: UInt64 = 0
        #expect(daxheap_objects_kind(objs, data, &kind) == 0 && kind == kindData)
        #expect(daxheap_objects_kind(objs, n1, &kind) == 0 && kind == kindReferences)
        #expect(daxheap_objects_size(objs, data, &size) == 0 && size >= 1000)
        #expect(UInt(bitPattern: try address(objs, data)) % 64 == 0)
        let s = stats(objs)
        #expect(s.objects == 3 && s.allocated_bytes >= 1032 && s.arena_size >= 8 << 20 && s.free_bytes > 0)
    }

    /// NULL handles, names and out pointers: DAXHEAP_EINVAL with a message, never a crash.
    @Test func nullArgumentsAreEinval() throws {
        let (path, heap, objects) = try createObjects()
        defer { removeFile(path); daxheap_close(heap) }
        defer { #expect(daxheap_objects_close(objects) == 0) }
        let einval = code(DAXHEAP_EINVAL)
        var out: OpaquePointer?
        var word: UInt64 = 0
        var pointer: UnsafeMutableRawPointer?
        var kind: Int32 = 0
        #expect(daxheap_objects_create(nil, "x", twoMiB, &out) == einval)
        #expect(lastMessage().contains("heap handle is NULL"))
        #expect(daxheap_objects_create(heap, nil, twoMiB, &out) == einval)
        #expect(daxheap_objects_create(heap, "x", twoMiB, nil) == einval)
        #expect(daxheap_objects_create_lanes(nil, "x", twoMiB, 4, 1024, &out) == einval)
        #expect(daxheap_objects_open(nil, "objs", &out) == einval)
        #expect(daxheap_objects_open(heap, nil, &out) == einval)
        #expect(daxheap_objects_open(heap, "objs", nil) == einval)
        #expect(daxheap_objects_close(nil) == einval)
        #expect(daxheap_objects_root(nil, "r", &word) == einval)
        #expect(lastMessage().contains("object heap handle is NULL"))
        #expect(daxheap_objects_root(objects, nil, &word) == einval)
        #expect(daxheap_objects_root(objects, "r", nil) == einval)
        #expect(daxheap_objects_find_root(objects, nil, &word) == einval)
        #expect(daxheap_objects_find_root(objects, "r", nil) == einval)
        #expect(daxheap_objects_load(nil, 0, &word) == einval)
        #expect(daxheap_objects_load(objects, 4096, nil) == einval)
        #expect(daxheap_objects_address(nil, 1, &pointer) == einval)
        #expect(daxheap_objects_address(objects, 1, nil) == einval)
        #expect(daxheap_objects_size(objects, 1, nil) == einval)
        #expect(daxheap_objects_kind(objects, 1, nil) == einval)
        #expect(daxheap_objects_kind(nil, 1, &kind) == einval)
        #expect(daxheap_objects_offset_of(objects, nil, &word) == einval)
        #expect(daxheap_objects_offset_of(objects, UnsafeRawPointer(bitPattern: 64), nil) == einval)
        #expect(daxheap_objects_persist(objects, nil, 8) == einval)
        #expect(daxheap_objects_persist(objects, nil, 0) == 0, "length 0 does nothing")
        #expect(daxheap_objects_persist(nil, nil, 0) == einval)
        #expect(daxheap_objects_stats(nil, nil) == einval)
        #expect(daxheap_objects_stats(objects, nil) == einval)
        #expect(daxheap_objects_recovery(objects, nil) == einval)
        #expect(daxheap_objctx_open(nil, &out) == einval)
        #expect(daxheap_objctx_open(objects, nil) == einval)
        #expect(daxheap_objctx_close(nil) == einval)
        #expect(daxheap_alloc(nil, 16, kindData, 0, 4096, &word) == einval)
        #expect(lastMessage().contains("context handle is NULL"))
        #expect(daxheap_free(nil, 4096) == einval)
        #expect(daxheap_reserve(nil, 16, kindData, 0, &word, &pointer) == einval)
        #expect(daxheap_publish(nil, 1, 4096) == einval)
        #expect(daxheap_cancel(nil, 1) == einval)
        #expect(daxheap_tx_run(nil, { _, _ in 0 }, nil) == einval)
        let ctx = try openContext(objects)
        defer { #expect(daxheap_objctx_close(ctx) == 0) }
        #expect(daxheap_reserve(ctx, 16, kindData, 0, nil, &pointer) == einval)
        #expect(daxheap_tx_run(ctx, nil, nil) == einval)
        #expect(lastMessage().contains("body is NULL"))
        #expect(daxheap_tx_write(nil, 4096, &word, 8) == einval)
        #expect(daxheap_tx_store64(nil, 4096, 1) == einval)
        #expect(daxheap_tx_write_arena(nil, "objs", 0, &word, 8) == einval)
        #expect(daxheap_tx_alloc(nil, 16, kindData, 0, 4096, &word) == einval)
        #expect(daxheap_tx_publish(nil, 1) == einval)
        #expect(daxheap_tx_free(nil, 4096) == einval)
        #expect(stats(objects).objects == 0)
        #expect(try load(objects, try root(objects, "untouched")) == 0)
    }

    /// Creating and opening: every refusal, each leaving the heap file as it was.
    @Test func createAndOpenRefusals() throws {
        let (path, heap, objects) = try createObjects()
        defer { removeFile(path); daxheap_close(heap) }
        var out: OpaquePointer?
        let before = try fileImage(path)
        #expect(daxheap_objects_create(heap, "objs", twoMiB, &out) == code(DAXHEAP_EEXIST))
        // Sizes below the metadata's minimum are raised to it; above, they must be multiples of 2 MiB.
        #expect(daxheap_objects_create(heap, "odd", (8 << 20) + 4096, &out) == code(DAXHEAP_EINVAL))
        #expect(lastMessage().contains("not a positive multiple of 2 MiB"))
        #expect(daxheap_objects_create(heap, "huge", 1 << 40, &out) == code(DAXHEAP_ENOSPC))
        #expect(daxheap_objects_create_lanes(heap, "x", twoMiB, 0, 1024, &out) == code(DAXHEAP_EINVAL))
        #expect(lastMessage().contains("lanes 0"))
        #expect(daxheap_objects_create_lanes(heap, "x", twoMiB, 2000, 1024, &out) == code(DAXHEAP_EINVAL))
        #expect(daxheap_objects_create_lanes(heap, "x", twoMiB, 4, 1000, &out) == code(DAXHEAP_EINVAL))
        #expect(daxheap_objects_create_lanes(heap, "x", twoMiB, 4, 2 << 20, &out) == code(DAXHEAP_EINVAL))
        #expect(daxheap_objects_open(heap, "objs", &out) == code(DAXHEAP_EBUSY), "open already in this process")
        #expect(lastMessage().contains("open already"))
        #expect(daxheap_objects_open(heap, "missing", &out) == code(DAXHEAP_ENOENT))
        #expect(out == nil)
        #expect(try fileImage(path) == before, "refusals wrote nothing")
        #expect(swiftHeap(heap).arenas.map(\.name) == ["objs"])

        // An arena that is not an object heap, and one whose header is damaged.
        #expect(daxheap_arena_create(heap, "plain", twoMiB) == 0)
        #expect(daxheap_objects_open(heap, "plain", &out) == code(DAXHEAP_ENOTHEAP))
        #expect(lastMessage().contains("holds no object heap"))
        #expect(daxheap_objects_close(objects) == 0)
        #expect(writeBytes(heap, "objs", at: 12, [9]) == 0)  // laneCount, under the checksum
        #expect(daxheap_objects_open(heap, "objs", &out) == code(DAXHEAP_ECORRUPT))
        #expect(lastMessage().contains("damaged"))
        #expect(out == nil)
    }

    /// Roots: made once, found again (after a reopen too), bad names refused, 64 at most.
    @Test func roots() throws {
        let (path, heap, objects) = try createObjects()
        defer { removeFile(path) }
        var slot: UInt64 = 0
        #expect(daxheap_objects_find_root(objects, "a", &slot) == code(DAXHEAP_ENOENT))
        #expect(lastMessage().contains("no root \"a\""))
        let a = try root(objects, "a")
        #expect(try root(objects, "a") == a)
        #expect(daxheap_objects_find_root(objects, "a", &slot) == 0 && slot == a)
        #expect(daxheap_objects_root(objects, String(repeating: "n", count: 49), &slot) == code(DAXHEAP_EINVAL))
        #expect(daxheap_objects_root(objects, "", &slot) == code(DAXHEAP_EINVAL))
        let bad: [CChar] = [CChar(bitPattern: 0xff), 0]
        #expect(daxheap_objects_root(objects, bad, &slot) == code(DAXHEAP_EINVAL))
        for i in 1..<64 { _ = try root(objects, "r\(i)") }
        slot = 7
        let before = try fileImage(path)
        #expect(daxheap_objects_root(objects, "one too many", &slot) == code(DAXHEAP_ENOSPC))
        #expect(slot == 7)
        #expect(try fileImage(path) == before)
        #expect(daxheap_objects_close(objects) == 0)
        daxheap_close(heap)

        let again = try openHeap(path)
        defer { daxheap_close(again) }
        let reopened = try openObjects(again, "objs")
        defer { #expect(daxheap_objects_close(reopened) == 0) }
        #expect(try root(reopened, "a") == a, "an existing root is found after a reopen")
        #expect(daxheap_objects_root(reopened, "new", &slot) == code(DAXHEAP_ENOSPC), "all 64 taken")
    }

    /// A read-only heap: its object heap opens and its roots are found, but nothing can be
    /// made or allocated (DAXHEAP_EROFS), and nothing is written.
    @Test func readOnlyHeap() throws {
        let (path, heap, objects) = try createObjects()
        defer { removeFile(path) }
        let a = try root(objects, "a")
        #expect(daxheap_objects_close(objects) == 0)
        daxheap_close(heap)
        let image = try fileImage(path)
        let readOnly = try openHeap(path, flags: DAXHEAP_READ_ONLY)
        defer { daxheap_close(readOnly) }
        let ro = try openObjects(readOnly, "objs")
        defer { #expect(daxheap_objects_close(ro) == 0) }
        #expect(try root(ro, "a") == a)
        var slot: UInt64 = 7
        #expect(daxheap_objects_root(ro, "new", &slot) == code(DAXHEAP_EROFS))
        #expect(slot == 7)
        var ctx: OpaquePointer?
        #expect(daxheap_objctx_open(ro, &ctx) == code(DAXHEAP_EROFS))
        #expect(ctx == nil)
        #expect(daxheap_objects_create(readOnly, "more", twoMiB, &ctx) == code(DAXHEAP_EROFS))
        #expect(ctx == nil)
        #expect(try fileImage(path) == image)
    }

    /// Allocation and freeing: each refusal changes nothing (not the slot, not the counts,
    /// not a byte of the heap file).
    @Test func allocateAndFreeRefusals() throws {
        let (path, heap, objects) = try createObjects()
        defer { removeFile(path); daxheap_close(heap) }
        defer { #expect(daxheap_objects_close(objects) == 0) }
        let ctx = try openContext(objects)
        defer { #expect(daxheap_objctx_close(ctx) == 0) }
        let head = try root(objects, "head")
        var node: UInt64 = 0
        #expect(daxheap_alloc(ctx, 64, kindReferences, 0, head, &node) == 0)
        var data: UInt64 = 0
        #expect(daxheap_alloc(ctx, 64, kindData, 0, daxheap_field(node, 8), &data) == 0)
        let counts = stats(objects)
        let image = try fileImage(path)
        var out: UInt64 = 12345
        let einval = code(DAXHEAP_EINVAL)
        #expect(daxheap_alloc(ctx, 0, kindData, 0, daxheap_field(node, 0), &out) == einval)
        #expect(lastMessage().contains("invalid object size 0"))
        #expect(daxheap_alloc(ctx, 16, 7, 0, daxheap_field(node, 0), &out) == einval)
        #expect(lastMessage().contains("unknown object kind 7"))
        #expect(daxheap_alloc(ctx, 16, -1, 0, daxheap_field(node, 0), &out) == einval)
        #expect(daxheap_alloc(ctx, 16, kindData, 3, daxheap_field(node, 0), &out) == einval)
        #expect(daxheap_alloc(ctx, 16, kindData, 8192, daxheap_field(node, 0), &out) == einval)
        #expect(daxheap_alloc(ctx, 16, kindData, 0, daxheap_field(node, 4), &out) == einval, "unaligned slot")
        #expect(daxheap_alloc(ctx, 16, kindData, 0, daxheap_field(node, 64), &out) == einval, "past the object")
        #expect(daxheap_alloc(ctx, 16, kindData, 0, daxheap_field(data, 0), &out) == einval, "inside a .data object")
        #expect(lastMessage().contains("kind .data"))
        #expect(daxheap_alloc(ctx, 16, kindData, 0, 100 << 20, &out) == einval, "outside the arena")
        #expect(daxheap_alloc(ctx, 16, kindData, 0, 8192, &out) == einval, "in the metadata, not a root")
        #expect(daxheap_alloc(ctx, 16, kindData, 0, head, &out) == code(DAXHEAP_EEXIST))
        #expect(lastMessage().contains("already holds"))
        #expect(daxheap_alloc(ctx, 1 << 40, kindData, 0, daxheap_field(node, 0), &out) == code(DAXHEAP_ENOSPC))
        #expect(out == 12345, "no out parameter written")
        #expect(daxheap_free(ctx, daxheap_field(node, 0)) == einval, "a null slot")
        #expect(lastMessage().contains("null"))
        #expect(daxheap_free(ctx, 4096 + 8) == einval, "not a slot")
        try address(objects, node).storeBytes(of: node &+ 16, toByteOffset: 16, as: UInt64.self)  // made up
        #expect(daxheap_free(ctx, daxheap_field(node, 16)) == einval)
        #expect(lastMessage().contains("no object starts there"))
        var ref: UInt64 = 0
        #expect(daxheap_objects_load(objects, daxheap_field(node, 16), &ref) == einval)
        try address(objects, node).storeBytes(of: 0, toByteOffset: 16, as: UInt64.self)
        #expect(try fileImage(path) == image, "nothing written by the refusals")
        #expect(stats(objects) == counts)
        #expect(try load(objects, head) == node)

        // Freeing, then the double free.
        #expect(daxheap_free(ctx, daxheap_field(node, 8)) == 0)
        #expect(try load(objects, daxheap_field(node, 8)) == 0)
        #expect(daxheap_free(ctx, daxheap_field(node, 8)) == einval)
        var pointer: UnsafeMutableRawPointer?
        #expect(daxheap_objects_address(objects, data, &pointer) == einval, "a freed object")
        #expect(lastMessage().contains("not allocated"))
        #expect(stats(objects).objects == counts.objects - 1)
    }

    /// References and addresses: null, made up, foreign, out of the mapping.
    @Test func referencesAndAddresses() throws {
        let (path, heap, objects) = try createObjects()
        defer { removeFile(path); daxheap_close(heap) }
        defer { #expect(daxheap_objects_close(objects) == 0) }
        let ctx = try openContext(objects)
        defer { #expect(daxheap_objctx_close(ctx) == 0) }
        var node: UInt64 = 0
        #expect(daxheap_alloc(ctx, 48, kindData, 0, try root(objects, "r"), &node) == 0)
        var pointer: UnsafeMutableRawPointer?
        var size: UInt64 = 0
        let einval = code(DAXHEAP_EINVAL)
        #expect(daxheap_objects_address(objects, 0, &pointer) == einval)
        #expect(lastMessage().contains("null"))
        #expect(daxheap_objects_address(objects, node + 16, &pointer) == einval)
        #expect(daxheap_objects_address(objects, node ^ (1 << 60), &pointer) == einval)
        #expect(lastMessage().contains("another arena"))
        #expect(daxheap_objects_size(objects, 0, &size) == einval)
        #expect(pointer == nil && size == 0)
        let base = try address(objects, node)
        var offset: UInt64 = 0
        #expect(daxheap_objects_offset_of(objects, base + 40, &offset) == 0)
        #expect(offset == daxheap_field(node, 40))
        #expect(daxheap_objects_offset_of(objects, UnsafeRawPointer(bitPattern: 4096), &offset) == code(DAXHEAP_ERANGE))
        #expect(lastMessage().contains("not inside object heap"))
        #expect(daxheap_objects_persist(objects, base, 48) == 0)
        #expect(daxheap_objects_persist(objects, base, 1 << 40) == code(DAXHEAP_ERANGE))
        #expect(daxheap_objects_persist(objects, UnsafeRawPointer(bitPattern: 4096), 8) == code(DAXHEAP_ERANGE))
        #expect(daxheap_field(node, 24) == (node & (1 << 48 - 1)) + 24)
    }

    /// Reserve, fill, publish (or cancel); what is not an open reservation is refused.
    @Test func reservations() throws {
        let (path, heap, objects) = try createObjects()
        defer { removeFile(path); daxheap_close(heap) }
        defer { #expect(daxheap_objects_close(objects) == 0) }
        let ctx = try openContext(objects)
        let slot = try root(objects, "r")
        var ref: UInt64 = 0
        var pointer: UnsafeMutableRawPointer?
        #expect(daxheap_reserve(ctx, 32, kindData, 0, &ref, &pointer) == 0)
        #expect(pointer == (try address(objects, ref)))
        pointer!.storeBytes(of: UInt64(77), as: UInt64.self)
        #expect(try load(objects, slot) == 0, "nothing reaches a reservation")
        #expect(daxheap_publish(ctx, ref, slot) == 0)
        #expect(try load(objects, slot) == ref)
        #expect(daxheap_publish(ctx, ref, slot) == code(DAXHEAP_EINVAL), "published already")
        #expect(lastMessage().contains("not an open reservation"))
        #expect(daxheap_cancel(ctx, ref) == code(DAXHEAP_EINVAL))

        // Publishing into a full slot is refused and the reservation stays open.
        var other: UInt64 = 0
        #expect(daxheap_reserve(ctx, 32, kindData, 0, &other, nil) == 0)
        #expect(daxheap_publish(ctx, other, slot) == code(DAXHEAP_EEXIST))
        #expect(daxheap_publish(ctx, other, 12) == code(DAXHEAP_EINVAL), "not a slot")
        let live = stats(objects).objects
        #expect(daxheap_cancel(ctx, other) == 0)
        #expect(stats(objects).objects == live - 1)
        #expect(daxheap_cancel(ctx, other) == code(DAXHEAP_EINVAL))
        #expect(daxheap_publish(ctx, 0, slot) == code(DAXHEAP_EINVAL))

        // Another context's reservation is not this one's; closing a context cancels its own.
        let second = try openContext(objects)
        #expect(daxheap_reserve(second, 32, kindData, 0, &other, nil) == 0)
        #expect(daxheap_publish(ctx, other, daxheap_field(ref, 0)) == code(DAXHEAP_EINVAL))
        #expect(stats(objects).objects == live)
        #expect(daxheap_objctx_close(second) == 0)
        #expect(stats(objects).objects == live - 1)
        #expect(daxheap_objctx_close(ctx) == 0)
        #expect(try address(objects, try load(objects, slot)).load(as: UInt64.self) == 77)
    }

    /// Contexts: lanes run out (EBUSY until one closes); an object heap with contexts open
    /// is not closed, and stays usable.
    @Test func contextsAndLanes() throws {
        let (path, heap, objects) = try createObjects(lanes: 2, logBytes: 1024)
        defer { removeFile(path); daxheap_close(heap) }
        let a = try openContext(objects), b = try openContext(objects)
        var c: OpaquePointer?
        #expect(daxheap_objctx_open(objects, &c) == code(DAXHEAP_EBUSY))
        #expect(lastMessage().contains("lanes are taken"))
        #expect(c == nil)
        #expect(daxheap_objects_close(objects) == code(DAXHEAP_EBUSY))
        #expect(lastMessage().contains("close them first"))
        #expect(daxheap_alloc(a, 16, kindData, 0, try root(objects, "still usable"), nil) == 0)
        #expect(daxheap_objctx_close(b) == 0)
        let c2 = try openContext(objects)
        #expect(daxheap_objctx_close(c2) == 0)
        #expect(daxheap_objctx_close(a) == 0)
        #expect(daxheap_objects_close(objects) == 0)
    }

    /// An object heap keeps its heap mapped past daxheap_close, as a window does; its close
    /// then closes the heap, so the path opens again at once.
    @Test func objectHeapKeepsAReleasedHeapOpen() throws {
        let (path, heap, objects) = try createObjects()
        defer { removeFile(path) }
        let swift = swiftHeap(heap)
        daxheap_close(heap)
        #expect(!swift.isClosed)
        let ctx = try openContext(objects)
        #expect(daxheap_alloc(ctx, 16, kindData, 0, try root(objects, "r"), nil) == 0)
        #expect(daxheap_objctx_close(ctx) == 0)
        #expect(daxheap_objects_close(objects) == 0)
        #expect(swift.isClosed)
        let again = try openHeap(path)
        var out: OpaquePointer?
        #expect(daxheap_objects_open(again, "objs", &out) == 0)
        #expect(daxheap_objects_close(out) == 0)
        daxheap_close(again)
    }
}
