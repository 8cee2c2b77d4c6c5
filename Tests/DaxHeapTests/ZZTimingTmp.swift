import DaxHeap
import Testing
@Suite struct ZZTimingTmp {
    @Test func timing() throws {
        let path = tempPath(); defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        var t = monotonicSeconds()
        for _ in 0..<100 { _ = heap.check() }
        print("TIMING check x100", monotonicSeconds() - t)
        t = monotonicSeconds()
        for _ in 0..<20 { _ = try FileImage(path) }
        print("TIMING image x20", monotonicSeconds() - t)
        let a = try FileImage(path)
        t = monotonicSeconds()
        for _ in 0..<20 { _ = a == a }
        print("TIMING cmp x20", monotonicSeconds() - t)
        t = monotonicSeconds()
        for i in 0..<100 { try heap.createArena(named: "a\(i % 3)", size: 2 << 20); try heap.destroyArena(named: "a\(i % 3)") }
        print("TIMING create+destroy x100", monotonicSeconds() - t)
        t = monotonicSeconds()
        _ = pattern(4 << 20)
        print("TIMING pattern 4MiB", monotonicSeconds() - t)
    }
}
