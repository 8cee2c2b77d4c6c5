// Handles: a heap handed from Swift to C (daxheapHandle(adopting:)), and closing a heap
// while its windows are open.

import CDaxHeap
@testable import DaxHeapC
import DaxHeap
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct HandlesTests {
    /// A heap opened in Swift works through the C handle, and daxheap_close closes it: the
    /// path opens again at once, and Swift's own reference sees the heap closed.
    @Test func anAdoptedHeapIsUsableFromCAndClosedByDaxheapClose() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: heapSize)
        let handle = daxheapHandle(adopting: heap)
        #expect(daxheap_arena_create(handle, "a", twoMiB) == 0)
        #expect(writeBytes(handle, "a", at: 10, [1, 2, 3]) == 0)
        #expect(try heap.arena(named: "a").read(at: 10, count: 3) == [1, 2, 3])
        daxheap_close(handle)
        #expect(heap.isClosed)
        let again = try openHeap(path)
        #expect(try readBytes(again, "a", at: 10, count: 3) == [1, 2, 3])
        daxheap_close(again)
    }

    /// The reason for the adopting function: a heap under the power-loss simulator, driven
    /// through C. Every flush and fence of the C calls reaches the simulator: a word
    /// persisted through a window is durable, one flushed but not fenced may or may not be,
    /// one only stored is lost in the all-old image; daxheap_write is durable on return.
    @Test func cCallsOnAnAdoptedSimulatedHeapReachTheSimulator() throws {
        let path = tempPath(), directory = tempPath("images")
        #expect(mkdir(directory, 0o700) == 0)
        defer { removeFile(path); removeFile(directory + "/crash.img"); rmdir(directory) }
        let seen = Locked<[String: Set<UInt64>]>([:])
        let simulator = PowerLossSimulator(crashPoints: .marksOnly, mixedImages: 16, directory: directory) { image in
            let crashed = try Heap.open(path: image.path, mode: .readOnly)
            let word = try crashed.arena(named: "a").withView { try $0.load(at: 0) }
            let copied = try crashed.arena(named: "b").read(at: 0, count: 4)
            let key = switch image.kind { case .allOld: "old"; case .allNew: "new"; case .mixed: "mixed" }
            seen.withLock {
                _ = $0[key, default: []].insert(word)
                _ = $0["b", default: []].insert(copied == [1, 2, 3, 4] ? 1 : 0)
            }
        }
        let heap = daxheapHandle(adopting: try Heap.create(path: path, size: 8 << 20, simulator: simulator))
        defer { daxheap_close(heap) }
        #expect(daxheap_is_pmem(heap) == 0)
        #expect(daxheap_arena_create(heap, "a", twoMiB) == 0)
        #expect(daxheap_arena_create(heap, "b", twoMiB) == 0)
        #expect(writeBytes(heap, "b", at: 0, [1, 2, 3, 4]) == 0)
        let window = try openWindow(heap, "a")
        defer { #expect(daxheap_window_close(window) == 0) }
        let base = try #require(daxheap_window_base(window))
        base.storeBytes(of: UInt64(1), as: UInt64.self)
        #expect(daxheap_window_persist(window, 0, 8) == 0)  // durable: 1
        base.storeBytes(of: UInt64(2), as: UInt64.self)
        #expect(daxheap_window_flush(window, 0, 8) == 0)    // flushed, not fenced: 2
        base.storeBytes(of: UInt64(3), as: UInt64.self)     // only in the cache: 3
        simulator.crashPoint("three values")
        try simulator.verify()
        let values = seen.withLock { $0 }
        #expect(values["old"] == [1])
        #expect(values["new"] == [3])
        #expect(values["mixed"] == [1, 2, 3])
        #expect(values["b"] == [1], "daxheap_write's bytes are in every image")
    }
}
