import DaxHeap
import Testing

@Suite struct SmokeTests {
    @Test func createGrowDiscontiguousReopen() throws {
        let path = "/dev/shm/daxheap-smoke-\(getpidValue()).heap"
        defer { removeFile(path) }
        do {
            let heap = try Heap.create(path: path, size: 32 << 20)
            #expect(heap.usableSize == 28 << 20)
            let a = try heap.createArena(named: "a", size: 4 << 20)
            _ = try heap.createArena(named: "b", size: 4 << 20)
            try a.write(Array(repeating: 7, count: 100), at: 0)
            try heap.resizeArena(named: "a", to: 8 << 20)
            let info = try a.info
            #expect(info.extents.count == 2)
            let data = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0) }
            try a.memcpyPersist(at: (4 << 20) - (1 << 19), data)
            #expect(try a.read(at: (4 << 20) - (1 << 19), count: 1 << 20) == data)
        }
        let heap = try Heap.open(path: path)
        let a = try heap.arena(named: "a")
        #expect(a.size == 8 << 20)
        #expect(try a.read(at: 0, count: 100) == Array(repeating: 7, count: 100))
        #expect(heap.generation == 4)
        #expect(heap.check().isHealthy)
    }
}
