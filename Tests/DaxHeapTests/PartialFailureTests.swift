import DaxHeap
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What a data-plane call over several extents leaves behind when it throws (the rules
/// `HeapError` documents): range errors before the first byte, a system-call error on a
/// later extent's piece after the earlier pieces were done.
///
/// The only mid-range error a persisting write can meet is a failed msync, which a file on
/// /dev/shm cannot be made to return (msync over pages past a truncated end succeeds, and
/// a copy into them raises SIGBUS first). `prefault` stops the same way and can be made to
/// fail there, so it stands for them.
@Suite struct PartialFailureTests {
    /// Writes whose range starts in one extent and runs past the arena's end are refused
    /// before the first byte: the file is unchanged, the earlier extent included.
    @Test func aWriteRunningPastTheEndWritesNoByteOfTheEarlierExtents() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 64 << 20)
        let a = try makeDiscontiguousArena(on: heap, named: "frag", extents: 3)
        let size = a.size
        let start = size - (5 << 20)  // three extent pieces, then 1 MiB past the end
        let bytes = [UInt8](repeating: 0xEE, count: 6 << 20)
        let refused = HeapError.outOfRange(arena: "frag", offset: start, count: 6 << 20, arenaSize: size)
        try expectRefused(refused, heap: heap, path: path) { try a.write(bytes, at: start) }
        try expectRefused(refused, heap: heap, path: path) { try a.memcpyPersist(at: start, bytes) }
        try expectRefused(refused, heap: heap, path: path) { try a.memsetPersist(at: start, value: 0xEE, count: 6 << 20) }
        try expectRefused(refused, heap: heap, path: path) {
            try a.withView { view in try bytes.withUnsafeBytes { try view.memcpyPersist(at: start, from: $0) } }
        }
    }

    /// A prefault over two extents whose second lies past the end of a file cut short
    /// under the heap throws for that piece, with the first piece already done.
    @Test func aCallThatFailsOnALaterExtentHasDoneTheEarlierOnes() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 32 << 20)
        let f = try heap.createArena(named: "f", size: 2 << 20)  // device [2, 4) MiB
        _ = try heap.createArena(named: "z", size: 20 << 20)      // device [4, 24) MiB
        try f.resize(to: 4 << 20)                                 // adds device [24, 26) MiB
        let extents: [[UInt64]] = try f.info.extents.map { [$0.deviceOffset, $0.arenaOffset, $0.length] }
        let expected: [[UInt64]] = [[2 << 20, 0, 2 << 20], [24 << 20, 2 << 20, 2 << 20]]
        #expect(extents == expected)
        #expect(truncate(path, 16 << 20) == 0)  // the second extent is no longer backed
        let before = DataPlaneTests.allocatedBytes(path)

        let result = Result { () throws(HeapError) in try f.prefault(at: 0, count: 4 << 20) }
        if case .success(false) = result { return }  // kernel before 5.14: prefault does nothing
        guard case .failure(.io(let errorPath, let operation, let code, _)) = result else {
            Issue.record("expected the second extent's piece to fail, got \(result)")
            return
        }
        #expect(errorPath == path && operation == "madvise" && code == EFAULT)
        // The first extent's piece was populated before the second failed.
        #expect(DataPlaneTests.allocatedBytes(path) >= before + (2 << 20))
        #expect(try f.read(at: 0, count: 4096) == [UInt8](repeating: 0, count: 4096))
    }
}
