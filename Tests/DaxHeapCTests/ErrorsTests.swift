// Status codes and messages: the mapping from every HeapError case, each code reached
// through the C functions, and the per-thread message.

import CDaxHeap
@testable import DaxHeapC
import DaxHeap
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct ErrorsTests {
    /// One instance of every HeapError case and its code (docs/C-API.md lists the same).
    @Test func everyHeapErrorHasItsStatus() {
        let p = "/dev/shm/x"
        let table: [(HeapError, daxheap_status)] = [
            (.noSpace(requested: 1, available: 0), DAXHEAP_ENOSPC),
            (.nameTaken("a"), DAXHEAP_EEXIST),
            (.unknownArena("a"), DAXHEAP_ENOENT),
            (.misalignedSize(1), DAXHEAP_EINVAL),
            (.invalidName("", reason: "empty"), DAXHEAP_EINVAL),
            (.tableFull(arenas: 1, extents: 1), DAXHEAP_ENOSPC),
            (.outOfRange(arena: "a", offset: 0, count: 1, arenaSize: 0), DAXHEAP_ERANGE),
            (.crossesExtent(arena: "a", offset: 0, count: 1, contiguous: 0), DAXHEAP_ERANGE),
            (.readOnly(path: p), DAXHEAP_EROFS),
            (.misalignedAccess(arena: "a", offset: 1), DAXHEAP_EINVAL),
            (.foreignArena(arena: "a", heap: p), DAXHEAP_EINVAL),
            (.arenaMapped(arena: "a", windows: 1), DAXHEAP_EBUSY),
            (.windowReservationExceeded(arena: "a", size: 1, reservation: 0), DAXHEAP_ERANGE),
            (.invalidReservation(arena: "a", reservation: 0, arenaSize: 1), DAXHEAP_EINVAL),
            (.windowMisaligned(arena: "a", arenaOffset: 0, deviceOffset: 0, length: 1, alignment: 1 << 30), DAXHEAP_ENOTSUP),
            (.windowClosed(arena: "a"), DAXHEAP_ECLOSED),
            (.foreignReference(arena: "a", referenceArenaID: 2), DAXHEAP_EINVAL),
            (.addressOutsideWindow(arena: "a", address: 0, windowSize: 0), DAXHEAP_ERANGE),
            (.heapClosed(path: p), DAXHEAP_ECLOSED),
            (.windowsOpen(path: p, arenas: ["a"]), DAXHEAP_EBUSY),
            (.closeInsideReadSection(path: p), DAXHEAP_EBUSY),
            (.notFound(path: p), DAXHEAP_ENOENT),
            (.isDirectory(path: p), DAXHEAP_EINVAL),
            (.unsupportedFileType(path: p, kind: "a FIFO"), DAXHEAP_EINVAL),
            (.notDeviceDax(path: p, reason: "r"), DAXHEAP_EINVAL),
            (.deviceTooSmall(path: p, size: 1), DAXHEAP_EINVAL),
            (.deviceSizeNotAligned(path: p, size: 1), DAXHEAP_EINVAL),
            (.deviceTooLarge(path: p, size: 1), DAXHEAP_EINVAL),
            (.sizeRequired(path: p), DAXHEAP_EINVAL),
            (.sizeFixed(path: p, deviceSize: 1, requested: 2), DAXHEAP_EINVAL),
            (.notEmpty(path: p, what: "w"), DAXHEAP_EEXIST),
            (.notADaxHeapDevice(path: p), DAXHEAP_ENOTHEAP),
            (.unsupportedVersion(path: p, version: 9), DAXHEAP_ENOTHEAP),
            (.corruptMetadata(path: p, primary: "x", secondary: "y"), DAXHEAP_ECORRUPT),
            (.sizeMismatch(path: p, recorded: 2, actual: 1), DAXHEAP_ESIZE),
            (.generationExhausted(path: p), DAXHEAP_ENOSPC),
            (.metadataWriteFailed(path: p, copy: "primary", reason: "r"), DAXHEAP_EIO),
            (.inUse(path: p), DAXHEAP_EBUSY),
            (.mappingMisaligned(path: p, address: 1, alignment: 2), DAXHEAP_EIO),
            (.sysfs(path: p, reason: "r"), DAXHEAP_EIO),
            (.io(path: p, operation: "msync", errno: EIO, message: "m"), DAXHEAP_EIO),
            (.badBlocksUnavailable(path: p, reason: "r"), DAXHEAP_EIO),
            (.mediaError(path: p, deviceOffset: 0, location: "l"), DAXHEAP_EIO),
            (.deviceLargerThanHeap(path: p, heapSize: 1, deviceSize: 2), DAXHEAP_ESIZE),
            (.arenasPastNewEnd(path: p, size: 1 << 30, arenas: []), DAXHEAP_EBUSY),
            (.sizeAboveHeap(path: p, requested: 2, heapSize: 1), DAXHEAP_EINVAL),
            (.resizeNeedsBothCopies(path: p, copy: "primary", detail: "d"), DAXHEAP_EIO),
        ]
        for (error, status) in table {
            #expect(Failure.status(of: error) == status, "\(error)")
            #expect(Failure(error).message == error.description)
        }
        // Every code but OK is some error's.
        let codes = Set(table.map(\.1.rawValue))
        #expect(codes == Set((-13)...(-1)))
    }

    /// The codes that only a heap handed over from Swift can reach: DAXHEAP_ECLOSED, for
    /// a heap closed in Swift, and for a window closed in Swift.
    @Test func closedFromSwiftIsECLOSED() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: heapSize)
        let handle = daxheapHandle(adopting: heap)
        #expect(daxheap_arena_create(handle, "a", twoMiB) == 0)
        let window = try openWindow(handle, "a")
        WindowHandle.from(window).window.close()
        #expect(daxheap_window_persist(window, 0, 8) == code(DAXHEAP_ECLOSED))
        #expect(lastMessage().contains("is closed; map a new one"))
        #expect(daxheap_window_close(window) == 0)
        try heap.close()
        #expect(daxheap_arena_create(handle, "b", twoMiB) == code(DAXHEAP_ECLOSED))
        #expect(lastMessage().contains("is closed; open it again"))
        var out: OpaquePointer?
        #expect(daxheap_window_open(handle, "a", &out) == code(DAXHEAP_ECLOSED))
        var size: UInt64 = 0
        #expect(daxheap_arena_size(handle, "a", &size) == code(DAXHEAP_ECLOSED))
        daxheap_close(handle)
    }

    /// An adopted heap with a window open in Swift: daxheap_close cannot close it, says why,
    /// and drops the handle; the heap is Swift's to close.
    @Test func anAdoptedHeapWithASwiftWindowOpenOutlivesDaxheapClose() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: heapSize)
        let window = try heap.createArena(named: "a", size: twoMiB).mapWindow()
        daxheap_close(daxheapHandle(adopting: heap))
        #expect(!heap.isClosed)
        #expect(lastMessage().contains("window is open onto \"a\""))
        window.close()
        try heap.close()
    }

    /// daxheap_errmsg: "" before any error, per thread, kept across successful calls,
    /// replaced by the thread's next failure, never touched by other threads' failures.
    @Test func theMessageIsPerThread() throws {
        let (path, heap) = try createHeap()
        defer { removeFile(path); daxheap_close(heap) }
        #expect(daxheap_arena_create(heap, "shared", twoMiB) == 0)
        let handle = UInt(bitPattern: heap)
        let failures = Locked<[String]>([])
        onThreads(4) { i in
            let heap = OpaquePointer(bitPattern: handle)
            func check(_ ok: Bool, _ what: String) { if !ok { failures.withLock { $0.append("thread \(i): \(what)") } } }
            check(String(cString: daxheap_errmsg()) == "", "a fresh thread's message is empty")
            for round in 0..<50 {
                let name = "t\(i)-\(round)"
                check(daxheap_arena_resize(heap, name, twoMiB) == code(DAXHEAP_ENOENT), "resize missing")
                let mine = String(cString: daxheap_errmsg())
                check(mine == "no arena named \"\(name)\"; list the arenas to see their names", "message: \(mine)")
                // Successful calls (and other threads' failures meanwhile) leave it.
                var size: UInt64 = 0
                check(daxheap_arena_size(heap, "shared", &size) == 0 && size == twoMiB, "size")
                check(String(cString: daxheap_errmsg()) == mine, "kept across a success")
            }
        }
        #expect(failures.withLock { $0 } == [])
    }
}
