// Space an arena gives back (a shrink, a destroy) gives its memory back on a file: the
// file's blocks are punched out once no reader can be in them, so an emulating file on
// tmpfs holds about what its arenas do. Space another step of the same update hands to
// an arena keeps its bytes.

import DaxHeap
import DaxTestSupport
import Dispatch
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct ReleaseTests {
    /// Bytes the file's blocks hold (st_blocks: 512-byte units).
    func allocatedBytes(_ path: String) throws -> UInt64 {
        var info = stat()
        try #require(stat(path, &info) == 0)
        return UInt64(info.st_blocks) * 512
    }

    @Test func aShrinkAndADestroyGiveTheFilesBlocksBack() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 64 << 20)
        let arena = try heap.createArena(named: "a", size: 16 << 20)
        try arena.memsetPersist(at: 0, value: 0x5A, count: 16 << 20)
        let full = try allocatedBytes(path)
        #expect(full >= 16 << 20)
        try arena.resize(to: 4 << 20)
        #expect(try allocatedBytes(path) <= full - (12 << 20), "the 12 MiB the shrink cut")
        #expect(try arena.read(at: (4 << 20) - 1, count: 1) == [0x5A], "what the arena keeps is kept")
        try heap.destroyArena(named: "a")
        #expect(try allocatedBytes(path) <= full - (16 << 20), "the whole arena")
        // Reused, the space reads as zero, as new arena space always does.
        let again = try heap.createArena(named: "b", size: 16 << 20)
        #expect(try (0 ..< 16).allSatisfy { try again.read(at: UInt64($0) << 20, count: 1) == [0] })
        #expect(heap.check().isHealthy)
    }

    /// A destroy and a create in one update, the create taking the destroyed arena's
    /// space: the update publishes both, then waits for a reader still in the destroyed
    /// arena. What is written to the new arena meanwhile survives the release that follows
    /// (it releases only the space no arena holds).
    @Test func spaceTakenByTheSameUpdateIsNotReleased() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        let old = try heap.createArena(named: "old", size: 8 << 20)
        try old.memsetPersist(at: 0, value: 0x11, count: 8 << 20)
        let reading = DispatchSemaphore(value: 0), written = DispatchSemaphore(value: 0)
        let failures = Failures()
        let reader = TestThread {
            do {
                try old.withUnsafeBytes(at: 0, count: 4096) { _ in
                    reading.signal()
                    written.wait()  // in the old arena until the new one has been written
                }
            } catch { failures.record("reader: \(error)") }
        }
        reading.wait()
        let updater = TestThread {
            do { try heap.provision([.destroy(name: "old"), .create(name: "new", size: 8 << 20)]) } catch { failures.record("provision: \(error)") }
        }
        // Published while the update waits for the reader.
        var new: Arena? = nil
        for _ in 0 ..< 2000 where new == nil {
            new = try heap.findArena(named: "new")
            if new == nil { usleep(1000) }
        }
        let arena = try #require(new, "the update should publish before it waits")
        try arena.memsetPersist(at: 0, value: 0x22, count: 8 << 20)
        written.signal()
        reader.join()
        updater.join()
        #expect(failures.all.isEmpty, "\(failures.all)")
        #expect(try (0 ..< 8).allSatisfy { try arena.read(at: UInt64($0) << 20, count: 1) == [0x22] })
    }
}
