// What a C program can list: the heap's arenas (daxheap_arena_list), an object heap's
// roots (daxheap_objects_roots) and its size classes (daxheap_objects_class_stats). Each
// against what Swift reports, with the visitor stopping the walk, changing what it walks,
// and NULL arguments.

import CDaxHeap
@testable import DaxHeapC
import DaxHeap
@testable import DaxObjects
import Testing

/// What a visitor saw: names with a size or a slot, and when to stop (after `stopAfter`
/// calls, returning `stopWith`).
final class Visits {
    var seen: [(name: String, value: UInt64)] = []
    var stopAfter = Int.max
    var stopWith: Int32 = 0
    /// Run at each call (the visitor changing the heap under the walk).
    var during: (() -> Void)? = nil

    func visit(_ name: UnsafePointer<CChar>?, _ value: UInt64) -> Int32 {
        seen.append((String(cString: name!), value))
        during?()
        return seen.count >= stopAfter ? stopWith : 0
    }
}

/// The C visitors, which find their `Visits` through `arg`.
let arenaVisitor: daxheap_arena_visitor = { arg, name, size in
    Unmanaged<Visits>.fromOpaque(arg!).takeUnretainedValue().visit(name, size)
}
let rootVisitor: daxheap_root_visitor = { arg, name, slot in
    Unmanaged<Visits>.fromOpaque(arg!).takeUnretainedValue().visit(name, slot)
}

@Suite struct ListingExportsTests {
    @Test func arenasAreListedInNameOrderWithTheirSizes() throws {
        let (path, heap) = try createHeap()
        defer { daxheap_close(heap); removeFile(path) }
        for (name, size) in [("c", 2 * twoMiB), ("a", twoMiB), ("b", 3 * twoMiB)] { #expect(daxheap_arena_create(heap, name, size) == 0) }
        let visits = Visits()
        #expect(daxheap_arena_list(heap, arenaVisitor, Unmanaged.passUnretained(visits).toOpaque()) == 0)
        #expect(visits.seen.map(\.name) == ["a", "b", "c"])
        #expect(visits.seen.map(\.value) == [twoMiB, 3 * twoMiB, 2 * twoMiB])
    }

    @Test func anEmptyHeapListsNothing() throws {
        let (path, heap) = try createHeap()
        defer { daxheap_close(heap); removeFile(path) }
        let visits = Visits()
        #expect(daxheap_arena_list(heap, arenaVisitor, Unmanaged.passUnretained(visits).toOpaque()) == 0)
        #expect(visits.seen.isEmpty)
    }

    /// A nonzero return stops the walk and comes back as it is: a value of the caller's
    /// own, or a status passed on (and then the thread's message is left alone).
    @Test(arguments: [Int32(7), code(DAXHEAP_ENOSPC)])
    func theVisitorStopsTheWalk(with value: Int32) throws {
        let (path, heap) = try createHeap()
        defer { daxheap_close(heap); removeFile(path) }
        for name in ["a", "b", "c"] { #expect(daxheap_arena_create(heap, name, twoMiB) == 0) }
        #expect(daxheap_arena_size(heap, "missing", nil) == code(DAXHEAP_EINVAL))
        let message = lastMessage()
        let visits = Visits()
        visits.stopAfter = 2
        visits.stopWith = value
        #expect(daxheap_arena_list(heap, arenaVisitor, Unmanaged.passUnretained(visits).toOpaque()) == value)
        #expect(visits.seen.map(\.name) == ["a", "b"])
        #expect(lastMessage() == message)
    }

    /// The walk is of the table as it stood at the call: the visitor may create and destroy
    /// arenas (as a C program cleaning up by prefix would), and sees neither change.
    @Test func theVisitorMayChangeTheArenas() throws {
        let (path, heap) = try createHeap()
        defer { daxheap_close(heap); removeFile(path) }
        for name in ["a", "b"] { #expect(daxheap_arena_create(heap, name, twoMiB) == 0) }
        let visits = Visits()
        visits.during = { [unowned visits] in  // not a strong capture: the closure is the visits' own
            if visits.seen.count == 1 {
                #expect(daxheap_arena_destroy(heap, "b") == 0)
                #expect(daxheap_arena_create(heap, "aa", twoMiB) == 0)
            }
        }
        #expect(daxheap_arena_list(heap, arenaVisitor, Unmanaged.passUnretained(visits).toOpaque()) == 0)
        #expect(visits.seen.map(\.name) == ["a", "b"])
        let after = Visits()
        #expect(daxheap_arena_list(heap, arenaVisitor, Unmanaged.passUnretained(after).toOpaque()) == 0)
        #expect(after.seen.map(\.name) == ["a", "aa"])
    }

    @Test func rootsAreListedInTheOrderTheyWereMadeWithTheirSlots() throws {
        let (path, heap, objects) = try createObjects()
        defer { removeFile(path); daxheap_close(heap) }
        defer { #expect(daxheap_objects_close(objects) == 0) }
        let empty = Visits()
        #expect(daxheap_objects_roots(objects, rootVisitor, Unmanaged.passUnretained(empty).toOpaque()) == 0)
        #expect(empty.seen.isEmpty)
        let slots = try ["zeta", "alpha", "mid"].map { try root(objects, $0) }
        let visits = Visits()
        #expect(daxheap_objects_roots(objects, rootVisitor, Unmanaged.passUnretained(visits).toOpaque()) == 0)
        #expect(visits.seen.map(\.name) == ["zeta", "alpha", "mid"])
        #expect(visits.seen.map(\.value) == slots)

        // Stopped after the first; a root made by the visitor does no harm.
        let stopped = Visits()
        stopped.stopAfter = 1
        stopped.stopWith = 3
        stopped.during = { _ = try? root(objects, "made during the walk") }
        #expect(daxheap_objects_roots(objects, rootVisitor, Unmanaged.passUnretained(stopped).toOpaque()) == 3)
        #expect(stopped.seen.map(\.name) == ["zeta"])
        var slot: UInt64 = 0
        #expect(daxheap_objects_find_root(objects, "made during the walk", &slot) == 0)
    }

    @Test func sizeClassesAgreeWithTheObjectHeapsOwnCount() throws {
        #expect(Int(DAXHEAP_CLASS_COUNT) == SizeClasses.count)
        let (path, heap, objects) = try createObjects()
        defer { removeFile(path); daxheap_close(heap) }
        defer { #expect(daxheap_objects_close(objects) == 0) }
        var count = 99
        #expect(daxheap_objects_class_stats(objects, nil, 0, &count) == 0)
        #expect(count == 0, "a new object heap has no carved chunk")

        let ctx = try openContext(objects)
        defer { #expect(daxheap_objctx_close(ctx) == 0) }
        let list = try root(objects, "list")
        var ref: UInt64 = 0
        // Two 16-byte objects, one of 100 bytes (the 112-byte class) and one of 5000 (5120);
        // each published into a fresh root so that none is freed.
        for (i, size) in [16, 16, 100, 5000].enumerated() {
            let slot = i == 0 ? list : try root(objects, "r\(i)")
            #expect(daxheap_alloc(ctx, UInt64(size), kindData, 0, slot, &ref) == 0, "\(lastMessage())")
        }
        #expect(daxheap_objects_class_stats(objects, nil, 0, &count) == 0)
        #expect(count == 3)
        var all = [daxheap_class_stats](repeating: daxheap_class_stats(), count: Int(DAXHEAP_CLASS_COUNT))
        #expect(daxheap_objects_class_stats(objects, &all, all.count, &count) == 0)
        let listed = all.prefix(count).map { [$0.block_size, $0.chunks, $0.objects] }
        #expect(listed == [[16, 1, 2], [112, 1, 1], [5120, 1, 1]])
        let swift = try Arguments.objects(objects).objects.statistics().classes
        #expect(listed == swift.map { [$0.blockSize, UInt64($0.chunks), UInt64($0.objects)] })

        // A short array: the first classes only, the whole count.
        var one = [daxheap_class_stats(block_size: 1, chunks: 1, objects: 1), daxheap_class_stats(block_size: 7, chunks: 7, objects: 7)]
        #expect(daxheap_objects_class_stats(objects, &one, 1, &count) == 0)
        #expect(count == 3 && one[0].block_size == 16 && one[1].block_size == 7, "only `capacity` entries written")
    }

    @Test func nullArgumentsAreRefused() throws {
        let (path, heap, objects) = try createObjects()
        defer { removeFile(path); daxheap_close(heap) }
        defer { #expect(daxheap_objects_close(objects) == 0) }
        let einval = code(DAXHEAP_EINVAL)
        let visits = Visits()
        let arg = Unmanaged.passUnretained(visits).toOpaque()
        #expect(daxheap_arena_list(nil, arenaVisitor, arg) == einval)
        #expect(daxheap_arena_list(heap, nil, arg) == einval)
        #expect(lastMessage().contains("visitor is NULL"))
        #expect(daxheap_objects_roots(nil, rootVisitor, arg) == einval)
        #expect(daxheap_objects_roots(objects, nil, arg) == einval)
        var count = 0
        #expect(daxheap_objects_class_stats(nil, nil, 0, &count) == einval)
        #expect(daxheap_objects_class_stats(objects, nil, 0, nil) == einval)
        #expect(daxheap_objects_class_stats(objects, nil, 4, &count) == einval)
        #expect(lastMessage().contains("out is NULL with a capacity of 4"))
        #expect(daxheap_objects_class_stats(objects, nil, -1, &count) == einval, "SIZE_MAX from C")
        #expect(visits.seen.isEmpty)
    }
}
