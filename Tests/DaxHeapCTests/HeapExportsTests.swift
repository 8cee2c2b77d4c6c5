// The heap's C functions: daxheap_create, daxheap_open, daxheap_close, the sizes, and what
// each refuses (status, message, and the file unchanged; `*out` untouched).

import CDaxHeap
@testable import DaxHeapC
import DaxHeap
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct HeapExportsTests {
    /// A sentinel for out parameters: a failed call must leave it there.
    static var sentinel: OpaquePointer { OpaquePointer(bitPattern: 0x5EAF)! }

    @Test func createOpenAndCloseAgreeWithTheSwiftHeap() throws {
        let (path, heap) = try createHeap()
        defer { removeFile(path) }
        let swift = swiftHeap(heap)
        #expect(daxheap_usable_size(heap) == heapSize - 2 * twoMiB)
        #expect(daxheap_usable_size(heap) == swift.usableSize)
        #expect(daxheap_arena_create(heap, "a", 3 * twoMiB) == 0)
        #expect(daxheap_available_size(heap) == swift.availableSize)
        #expect(daxheap_available_size(heap) == heapSize - 5 * twoMiB)
        #expect(daxheap_is_pmem(heap) == (swift.persistence == .pmem ? 1 : 0))
        // Closed with no window: unlocked at once, so the path opens again.
        daxheap_close(heap)
        #expect(swift.isClosed)
        let again = try openHeap(path)
        #expect(try arenaSize(again, "a").get() == 3 * twoMiB)
        daxheap_close(again)
        // Read-only, then read-write again.
        let readOnly = try openHeap(path, flags: DAXHEAP_READ_ONLY)
        #expect(swiftHeap(readOnly).mode == .readOnly)
        daxheap_close(readOnly)
        daxheap_close(try openHeap(path))
    }

    @Test func createRefusesAFileThatHoldsDataAndChangesNothing() throws {
        let (path, heap) = try createHeap()
        defer { removeFile(path) }
        #expect(daxheap_arena_create(heap, "a", twoMiB) == 0)
        daxheap_close(heap)
        let before = try fileImage(path)
        for size in [heapSize, 0, 2 * heapSize] {
            var out: OpaquePointer? = Self.sentinel
            #expect(daxheap_create(path, size, &out) == code(DAXHEAP_EEXIST))
            #expect(lastMessage().contains("refusing to overwrite it"))
            #expect(out == Self.sentinel)
        }
        #expect(try fileImage(path) == before)
    }

    @Test func createRejectsBadArguments() throws {
        let path = tempPath()
        defer { removeFile(path) }
        var out: OpaquePointer? = Self.sentinel
        #expect(daxheap_create(nil, heapSize, &out) == code(DAXHEAP_EINVAL))
        #expect(lastMessage() == "path is NULL; pass a NUL-terminated UTF-8 string")
        #expect(daxheap_create(path, heapSize, nil) == code(DAXHEAP_EINVAL))
        #expect(lastMessage().hasPrefix("out is NULL"))
        // Not UTF-8.
        let bad: [CChar] = [0x2F, CChar(bitPattern: 0xFF), CChar(bitPattern: 0xFE), 0]
        #expect(daxheap_create(bad, heapSize, &out) == code(DAXHEAP_EINVAL))
        #expect(lastMessage() == "path is not valid UTF-8; pass a NUL-terminated UTF-8 string")
        // Sizes: not a multiple of 2 MiB, below 6 MiB, beyond a file offset, none for a new file.
        for size in [heapSize + 1, 4 << 20, UInt64.max - (2 << 20) + 1, 0] {
            #expect(daxheap_create(path, size, &out) == code(DAXHEAP_EINVAL), "size \(size)")
        }
        #expect(lastMessage().contains("no size was given"))
        // Not a file or device-dax.
        #expect(daxheap_create("/dev/shm", heapSize, &out) == code(DAXHEAP_EINVAL))
        #expect(daxheap_create("/dev/null", heapSize, &out) == code(DAXHEAP_EINVAL))
        #expect(daxheap_create("/nonexistent-daxheap-dir/heap", heapSize, &out) == code(DAXHEAP_ENOENT))
        #expect(out == Self.sentinel)
        #expect(access(path, F_OK) != 0, "a refused create leaves no file behind")
    }

    @Test func openRejectsBadArguments() throws {
        let (path, heap) = try createHeap()
        defer { removeFile(path) }
        daxheap_close(heap)
        var out: OpaquePointer? = Self.sentinel
        #expect(daxheap_open(nil, 0, &out) == code(DAXHEAP_EINVAL))
        #expect(daxheap_open(path, 0, nil) == code(DAXHEAP_EINVAL))
        #expect(daxheap_open(path, 2, &out) == code(DAXHEAP_EINVAL))
        #expect(lastMessage() == "unknown flags 0x2 for daxheap_open; pass 0 or DAXHEAP_READ_ONLY")
        #expect(daxheap_open(path, -1, &out) == code(DAXHEAP_EINVAL))
        #expect(daxheap_open(path + ".missing", 0, &out) == code(DAXHEAP_ENOENT))
        #expect(out == Self.sentinel)
    }

    /// Each refused open: its status, and not one byte of the file changed.
    @Test func openRefusesWhatIsNotAUsableHeap() throws {
        // No heap at all: zeros.
        let zeros = tempPath("zeros")
        defer { removeFile(zeros) }
        #expect(truncate(zeros, 0) != 0)
        let fd = open(zeros, O_CREAT | O_WRONLY, 0o600)
        #expect(ftruncate(fd, off_t(heapSize)) == 0)
        close(fd)
        var out: OpaquePointer? = Self.sentinel
        #expect(daxheap_open(zeros, 0, &out) == code(DAXHEAP_ENOTHEAP))
        #expect(lastMessage().contains("is not a DaxHeap device"))

        // Both checksums damaged.
        let (corrupt, heap) = try createHeap(size: heapSize, "corrupt")
        defer { removeFile(corrupt) }
        daxheap_close(heap)
        let checksumOffset: UInt64 = 60  // docs/FORMAT.md: the header's CRC-32C
        for copy in [UInt64(0), heapSize - twoMiB] {
            try patchFile(corrupt, at: copy + checksumOffset, [0xDE, 0xAD, 0xBE, 0xEF])
        }
        let damaged = try fileImage(corrupt)
        #expect(daxheap_open(corrupt, 0, &out) == code(DAXHEAP_ECORRUPT))
        #expect(lastMessage().hasPrefix("both metadata copies of"))
        #expect(daxheap_open(corrupt, DAXHEAP_READ_ONLY, &out) == code(DAXHEAP_ECORRUPT))
        #expect(try fileImage(corrupt) == damaged)

        // Cut short, then longer than its heap (read-write only).
        let (cut, heap2) = try createHeap(size: heapSize, "cut")
        defer { removeFile(cut) }
        daxheap_close(heap2)
        #expect(truncate(cut, off_t(heapSize - twoMiB)) == 0)
        #expect(daxheap_open(cut, 0, &out) == code(DAXHEAP_ESIZE))
        #expect(truncate(cut, off_t(heapSize + twoMiB)) == 0)
        #expect(daxheap_open(cut, 0, &out) == code(DAXHEAP_ESIZE))
        #expect(lastMessage().contains("it opens read-only"))
        let longer = try openHeap(cut, flags: DAXHEAP_READ_ONLY)
        daxheap_close(longer)
        #expect(out == Self.sentinel)
    }

    /// One read-write open at a time, in this process as in another; a close frees it.
    @Test func aHeapOpenReadWriteIsBusyUntilClosed() throws {
        let (path, heap) = try createHeap()
        defer { removeFile(path) }
        var out: OpaquePointer? = Self.sentinel
        #expect(daxheap_open(path, 0, &out) == code(DAXHEAP_EBUSY))
        #expect(lastMessage().contains("is in use"))
        #expect(daxheap_open(path, DAXHEAP_READ_ONLY, &out) == code(DAXHEAP_EBUSY))
        #expect(out == Self.sentinel)
        daxheap_close(heap)
        daxheap_close(try openHeap(path))
    }

    /// A read-only heap: reads and windows work, every write is EROFS and changes nothing.
    @Test func aReadOnlyHeapRefusesWrites() throws {
        let (path, rw) = try createHeap()
        defer { removeFile(path) }
        #expect(daxheap_arena_create(rw, "a", twoMiB) == 0)
        #expect(writeBytes(rw, "a", at: 0, [7, 8, 9]) == 0)
        daxheap_close(rw)
        let before = try fileImage(path)
        let heap = try openHeap(path, flags: DAXHEAP_READ_ONLY)
        defer { daxheap_close(heap) }
        #expect(try readBytes(heap, "a", at: 0, count: 3) == [7, 8, 9])
        #expect(daxheap_arena_create(heap, "b", twoMiB) == code(DAXHEAP_EROFS))
        #expect(lastMessage().contains("is open read-only"))
        #expect(daxheap_arena_resize(heap, "a", 2 * twoMiB) == code(DAXHEAP_EROFS))
        #expect(daxheap_arena_destroy(heap, "a") == code(DAXHEAP_EROFS))
        #expect(writeBytes(heap, "a", at: 0, [1]) == code(DAXHEAP_EROFS))
        let window = try openWindow(heap, "a")
        #expect(daxheap_window_base(window)!.load(as: UInt8.self) == 7)
        let one: [UInt8] = [1]
        #expect(one.withUnsafeBytes { daxheap_window_memcpy_persist(window, 0, $0.baseAddress, 1) } == code(DAXHEAP_EROFS))
        #expect(daxheap_window_close(window) == 0)
        #expect(try fileImage(path) == before)
    }

    /// The functions that return a value rather than a status, given NULL: a neutral value
    /// and the message; daxheap_close(NULL) does nothing.
    @Test func nullHeapsAreHarmless() {
        daxheap_close(nil)
        #expect(daxheap_available_size(nil) == 0)
        #expect(daxheap_usable_size(nil) == 0)
        #expect(daxheap_is_pmem(nil) == code(DAXHEAP_EINVAL))
        #expect(lastMessage() == "the heap handle is NULL; pass one from daxheap_open or daxheap_create")
        #expect(daxheap_arena_create(nil, "a", twoMiB) == code(DAXHEAP_EINVAL))
        #expect(daxheap_arena_resize(nil, "a", twoMiB) == code(DAXHEAP_EINVAL))
        #expect(daxheap_arena_destroy(nil, "a") == code(DAXHEAP_EINVAL))
        var size: UInt64 = 5
        #expect(daxheap_arena_size(nil, "a", &size) == code(DAXHEAP_EINVAL))
        #expect(size == 5)
        var byte: UInt8 = 0
        #expect(daxheap_read(nil, "a", 0, &byte, 1) == code(DAXHEAP_EINVAL))
        #expect(daxheap_write(nil, "a", 0, &byte, 1) == code(DAXHEAP_EINVAL))
        var window: OpaquePointer?
        #expect(daxheap_window_open(nil, "a", &window) == code(DAXHEAP_EINVAL))
        #expect(daxheap_window_open_reserving(nil, "a", twoMiB, &window) == code(DAXHEAP_EINVAL))
        #expect(window == nil)
    }
}
