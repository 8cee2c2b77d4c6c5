// Handles: a heap handed from Swift to C (daxheapHandle(adopting:)), and closing a heap
// while its windows are open.

import CDaxHeap
@testable import DaxHeapC
import DaxHeap
import Testing

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
}
