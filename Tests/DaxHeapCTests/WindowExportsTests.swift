// Windows through C: addresses that stay put while the arena grows, reservations, the
// durability calls and their ranges, and what a mapped arena refuses.

import CDaxHeap
@testable import DaxHeapC
import DaxHeap
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct WindowExportsTests {
    @Test func aWindowShowsTheArenaAndItsStoresPersist() throws {
        let (path, heap) = try createHeap()
        defer { removeFile(path); daxheap_close(heap) }
        #expect(daxheap_arena_create(heap, "a", twoMiB) == 0)
        #expect(daxheap_arena_create(heap, "b", twoMiB) == 0)
        #expect(daxheap_arena_resize(heap, "a", 2 * twoMiB) == 0)  // two extents, b between
        #expect(writeBytes(heap, "a", at: twoMiB - 2, [1, 2, 3, 4]) == 0)
        let window = try openWindow(heap, "a")
        defer { #expect(daxheap_window_close(window) == 0) }
        let base = try #require(daxheap_window_base(window))
        #expect(Int(bitPattern: base) % Int(twoMiB) == 0)
        #expect(daxheap_window_size(window) == 2 * twoMiB)
        // One contiguous range across the extent boundary.
        #expect((0..<4).map { base.load(fromByteOffset: Int(twoMiB) - 2 + $0, as: UInt8.self) } == [1, 2, 3, 4])
        // Plain stores, then persist; memcpy_persist; flush + drain.
        base.storeBytes(of: UInt64(0x1122_3344_5566_7788), toByteOffset: 4096, as: UInt64.self)
        #expect(daxheap_window_persist(window, 4096, 8) == 0)
        let bytes = pattern(64, seed: 1)
        #expect(bytes.withUnsafeBytes { daxheap_window_memcpy_persist(window, twoMiB - 32, $0.baseAddress, 64) } == 0)
        base.storeBytes(of: UInt8(9), toByteOffset: 100, as: UInt8.self)
        #expect(daxheap_window_flush(window, 100, 1) == 0)
        daxheap_window_drain(window)
        #expect(try readBytes(heap, "a", at: twoMiB - 32, count: 64) == bytes)
        #expect(try readBytes(heap, "a", at: 100, count: 1) == [9])
        #expect(try swiftHeap(heap).arena(named: "a").read(at: 4096, count: 8)
            == withUnsafeBytes(of: UInt64(0x1122_3344_5566_7788).littleEndian) { Array($0) })
        // Length 0 is fine anywhere up to the size, with NULL too.
        #expect(daxheap_window_persist(window, 2 * twoMiB, 0) == 0)
        #expect(daxheap_window_memcpy_persist(window, 0, nil, 0) == 0)
    }

    /// A grow, here and from another thread, maps the new bytes at base + old size; the base
    /// and the bytes below stay.
    @Test func aWindowFollowsAGrow() throws {
        let (path, heap) = try createHeap()
        defer { removeFile(path); daxheap_close(heap) }
        #expect(daxheap_arena_create(heap, "a", twoMiB) == 0)
        #expect(daxheap_arena_create(heap, "b", twoMiB) == 0)
        let window = try openWindow(heap, "a")
        defer { #expect(daxheap_window_close(window) == 0) }
        let base = daxheap_window_base(window)
        let first = pattern(256, seed: 4)
        #expect(first.withUnsafeBytes { daxheap_window_memcpy_persist(window, 0, $0.baseAddress, 256) } == 0)
        #expect(daxheap_arena_resize(heap, "a", 2 * twoMiB) == 0)
        #expect(daxheap_window_size(window) == 2 * twoMiB)
        #expect(daxheap_window_base(window) == base)
        // The new bytes read as zero and take stores; the old ones are unchanged.
        let newByte = try #require(base).advanced(by: Int(twoMiB))
        #expect(newByte.load(as: UInt64.self) == 0)
        newByte.storeBytes(of: UInt64(42), as: UInt64.self)
        #expect(daxheap_window_persist(window, twoMiB, 8) == 0)
        #expect(try readBytes(heap, "a", at: twoMiB, count: 1) == [42])
        #expect(try readBytes(heap, "a", at: 0, count: 256) == first)
        // From another thread, and the size seen here afterwards.
        let handle = UInt(bitPattern: heap)
        onThreads(1) { _ in
            let heap = OpaquePointer(bitPattern: handle)
            precondition(daxheap_arena_resize(heap, "a", 3 * twoMiB) == 0)
        }
        #expect(daxheap_window_size(window) == 3 * twoMiB)
        #expect(daxheap_window_base(window) == base)
        #expect(daxheap_window_persist(window, 3 * twoMiB - 8, 8) == 0)
    }

    @Test func aReservationBoundsGrowsAndIsChecked() throws {
        let (path, heap) = try createHeap()
        defer { removeFile(path); daxheap_close(heap) }
        #expect(daxheap_arena_create(heap, "a", 2 * twoMiB) == 0)
        var out: OpaquePointer?
        for bad in [UInt64(0), twoMiB + 1, twoMiB] {  // zero, not a multiple, below the arena's size
            #expect(daxheap_window_open_reserving(heap, "a", bad, &out) == code(DAXHEAP_EINVAL), "\(bad)")
            #expect(lastMessage().contains("window reservation of \(bad) bytes"))
        }
        // No address space is that large: mmap refuses, as an I/O error.
        #expect(daxheap_window_open_reserving(heap, "a", UInt64.max - twoMiB + 1, &out) == code(DAXHEAP_EIO))
        #expect(lastMessage().hasPrefix("I/O error"))
        #expect(daxheap_window_open_reserving(heap, "missing", 2 * twoMiB, &out) == code(DAXHEAP_ENOENT))
        #expect(daxheap_window_open(heap, nil, &out) == code(DAXHEAP_EINVAL))
        #expect(daxheap_window_open(heap, "a", nil) == code(DAXHEAP_EINVAL))
        #expect(out == nil)

        let window = try openWindow(heap, "a", reserving: 3 * twoMiB)
        #expect(daxheap_arena_resize(heap, "a", 3 * twoMiB) == 0)
        let image = try fileImage(path)
        #expect(daxheap_arena_resize(heap, "a", 4 * twoMiB) == code(DAXHEAP_ERANGE))
        #expect(lastMessage().contains("an open window reserved only 6 MiB"))
        #expect(try arenaSize(heap, "a").get() == 3 * twoMiB)
        #expect(daxheap_window_size(window) == 3 * twoMiB)
        #expect(try fileImage(path) == image)
        #expect(daxheap_window_close(window) == 0)
        #expect(daxheap_arena_resize(heap, "a", 4 * twoMiB) == 0)
    }

    /// Shrinking or destroying a mapped arena is EBUSY and changes nothing; once the
    /// windows are closed both work.
    @Test func aMappedArenaCannotShrinkOrGo() throws {
        let (path, heap) = try createHeap()
        defer { removeFile(path); daxheap_close(heap) }
        #expect(daxheap_arena_create(heap, "a", 2 * twoMiB) == 0)
        let one = try openWindow(heap, "a")
        let two = try openWindow(heap, "a")
        let image = try fileImage(path)
        #expect(daxheap_arena_resize(heap, "a", twoMiB) == code(DAXHEAP_EBUSY))
        #expect(lastMessage().contains("is mapped by 2 windows"))
        #expect(daxheap_arena_destroy(heap, "a") == code(DAXHEAP_EBUSY))
        #expect(try fileImage(path) == image)
        #expect(daxheap_window_close(one) == 0)
        #expect(daxheap_arena_destroy(heap, "a") == code(DAXHEAP_EBUSY))
        #expect(lastMessage().contains("is mapped by 1 window"))
        #expect(daxheap_window_close(two) == 0)
        #expect(daxheap_arena_resize(heap, "a", twoMiB) == 0)
        #expect(daxheap_arena_destroy(heap, "a") == 0)
    }

    @Test func badWindowRangesAndHandles() throws {
        let (path, heap) = try createHeap()
        defer { removeFile(path); daxheap_close(heap) }
        #expect(daxheap_arena_create(heap, "a", twoMiB) == 0)
        let window = try openWindow(heap, "a")
        defer { #expect(daxheap_window_close(window) == 0) }
        let image = try fileImage(path)
        var bytes = [UInt8](repeating: 0xCC, count: 16)
        for (offset, length) in [(twoMiB - 8, UInt64(16)), (twoMiB + 1, 0), (UInt64.max - 4, 16), (0, UInt64.max)] {
            #expect(daxheap_window_flush(window, offset, length) == code(DAXHEAP_ERANGE), "flush \(offset) \(length)")
            #expect(daxheap_window_persist(window, offset, length) == code(DAXHEAP_ERANGE), "persist \(offset) \(length)")
            let copied = bytes.withUnsafeBytes { daxheap_window_memcpy_persist(window, offset, $0.baseAddress, length) }
            #expect(copied == code(DAXHEAP_ERANGE), "memcpy \(offset) \(length)")
        }
        #expect(daxheap_window_memcpy_persist(window, 0, nil, 1) == code(DAXHEAP_EINVAL))
        #expect(try fileImage(path) == image)
        // NULL windows.
        #expect(daxheap_window_base(nil) == nil)
        #expect(daxheap_window_size(nil) == 0)
        daxheap_window_drain(nil)
        #expect(daxheap_window_flush(nil, 0, 1) == code(DAXHEAP_EINVAL))
        #expect(daxheap_window_persist(nil, 0, 1) == code(DAXHEAP_EINVAL))
        #expect(daxheap_window_memcpy_persist(nil, 0, &bytes, 1) == code(DAXHEAP_EINVAL))
        #expect(daxheap_window_close(nil) == code(DAXHEAP_EINVAL))
        #expect(lastMessage() == "the window handle is NULL; pass one from daxheap_window_open")
    }

    /// daxheap_close with windows open: the windows keep the heap mapped (and locked) and
    /// usable; the last window's close closes it, and the path opens again at once.
    @Test func closingAHeapWithWindowsOpenClosesItWithTheLastWindow() throws {
        let (path, heap) = try createHeap()
        defer { removeFile(path) }
        #expect(daxheap_arena_create(heap, "a", twoMiB) == 0)
        #expect(daxheap_arena_create(heap, "b", twoMiB) == 0)
        let swift = swiftHeap(heap)
        let a = try openWindow(heap, "a")
        let b = try openWindow(heap, "b")
        daxheap_close(heap)
        #expect(!swift.isClosed)
        var out: OpaquePointer?
        #expect(daxheap_open(path, 0, &out) == code(DAXHEAP_EBUSY))
        let bytes = pattern(32, seed: 8)
        #expect(bytes.withUnsafeBytes { daxheap_window_memcpy_persist(a, 64, $0.baseAddress, 32) } == 0)
        #expect(daxheap_window_close(a) == 0)
        #expect(!swift.isClosed)
        #expect(daxheap_open(path, 0, &out) == code(DAXHEAP_EBUSY))
        #expect(daxheap_window_persist(b, 0, 8) == 0)
        #expect(daxheap_window_close(b) == 0)
        #expect(swift.isClosed)
        let again = try openHeap(path)
        #expect(try readBytes(again, "a", at: 64, count: 32) == bytes)
        daxheap_close(again)
    }

    /// A window that fails to open does not count: the heap still closes at daxheap_close.
    @Test func aFailedWindowOpenDoesNotKeepTheHeapOpen() throws {
        let (path, heap) = try createHeap()
        defer { removeFile(path) }
        var out: OpaquePointer?
        #expect(daxheap_window_open(heap, "missing", &out) == code(DAXHEAP_ENOENT))
        let swift = swiftHeap(heap)
        daxheap_close(heap)
        #expect(swift.isClosed)
    }
}
