// Several threads on one heap handle: provisioning, copying, windows following grows from
// other threads, and windows of a released heap closed all at once (run under TSan by
// scripts/sanitizers.sh).

import CDaxHeap
@testable import DaxHeapC
import DaxHeap
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct ConcurrencyTests {
    /// Four threads provision, write and read their own arenas, through copies and windows,
    /// while a fifth grows a shared arena that a window of the first maps; every byte read
    /// back is the one written.
    @Test func threadsShareOneHandle() throws {
        let (path, heap) = try createHeap(size: 128 << 20)
        defer { removeFile(path); daxheap_close(heap) }
        #expect(daxheap_arena_create(heap, "shared", twoMiB) == 0)
        let shared = try openWindow(heap, "shared", reserving: 16 * twoMiB)
        defer { #expect(daxheap_window_close(shared) == 0) }
        let handle = UInt(bitPattern: heap)
        let sharedHandle = UInt(bitPattern: shared)
        let failures = Locked<[String]>([])
        onThreads(5) { i in
            let heap = OpaquePointer(bitPattern: handle)!
            func check(_ ok: Bool, _ what: @autoclosure () -> String) {
                if !ok { failures.withLock { $0.append("thread \(i): \(what()) (\(String(cString: daxheap_errmsg())))") } }
            }
            if i == 4 {
                // The grower: the shared arena to 8 extents, one 2 MiB step at a time.
                for step in 2...8 {
                    check(daxheap_arena_resize(heap, "shared", UInt64(step) * twoMiB) == 0, "grow shared to \(step)")
                }
                return
            }
            let name = "t\(i)"
            check(daxheap_arena_create(heap, name, twoMiB) == 0, "create")
            for round in 0..<20 {
                let bytes = pattern(3000, seed: UInt8(truncatingIfNeeded: i * 20 + round))
                let offset = UInt64(round) * 4000
                check(writeBytes(heap, name, at: offset, bytes) == 0, "write")
                var back = [UInt8](repeating: 0, count: bytes.count)
                let rc = back.withUnsafeMutableBytes { daxheap_read(heap, name, offset, $0.baseAddress, UInt64(bytes.count)) }
                check(rc == 0 && back == bytes, "read back round \(round)")
                // Each thread's own word in the shared window, below its first size.
                let window = OpaquePointer(bitPattern: sharedHandle)
                let base = daxheap_window_base(window)!
                base.storeBytes(of: UInt64(round), toByteOffset: i * 64, as: UInt64.self)
                check(daxheap_window_persist(window, UInt64(i * 64), 8) == 0, "persist shared")
                check(daxheap_window_size(window) >= twoMiB, "shared size")
            }
            var window: OpaquePointer?
            check(daxheap_window_open(heap, name, &window) == 0, "window")
            check(daxheap_arena_resize(heap, name, 2 * twoMiB) == 0, "grow own")
            check(daxheap_window_size(window) == 2 * twoMiB, "own window followed")
            check(daxheap_window_close(window) == 0, "close own")
            check(daxheap_arena_destroy(heap, name) == 0, "destroy own")
        }
        #expect(failures.withLock { $0 } == [])
        #expect(daxheap_window_size(shared) == 8 * twoMiB)
        let base = try #require(daxheap_window_base(shared))
        for i in 0..<4 { #expect(base.load(fromByteOffset: i * 64, as: UInt64.self) == 19) }
        #expect(swiftHeap(heap).arenas.map(\.name) == ["shared"])
    }

    /// A released heap's windows closed by several threads at once: the heap closes exactly
    /// when the last one does.
    @Test func theLastOfManyWindowsClosingAtOnceClosesTheHeap() throws {
        let (path, heap) = try createHeap()
        defer { removeFile(path) }
        #expect(daxheap_arena_create(heap, "a", twoMiB) == 0)
        let windows = try (0..<6).map { _ in UInt(bitPattern: try openWindow(heap, "a")) }
        let swift = swiftHeap(heap)
        daxheap_close(heap)
        let failures = Locked<Int>(0)
        onThreads(windows.count) { i in
            if daxheap_window_close(OpaquePointer(bitPattern: windows[i])) != 0 { failures.withLock { $0 += 1 } }
        }
        #expect(failures.withLock { $0 } == 0)
        #expect(swift.isClosed)
        daxheap_close(try openHeap(path))
    }
}
