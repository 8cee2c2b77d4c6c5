import DaxHeap
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Media errors for real on emulation: a file cut short under the open mapping raises
/// SIGBUS on the pages past its new end, as a poisoned device-dax page does.
@Suite struct MediaErrorTests {
    static let size: UInt64 = 32 << 20

    private func withHeapFile(_ body: (String) throws -> Void) rethrows {
        let path = "/dev/shm/daxheap-media-\(getpid())-\(UInt64.random(in: 0 ..< .max)).heap"
        defer { unlink(path) }
        try body(path)
    }

    /// With the secondary known unreadable, the primary is the only good copy: an update
    /// would have to write it alone, and a power loss during that write would leave no
    /// valid copy. So the update writes the bad copy first, fails there, and is refused
    /// with the table unchanged; the data plane carries on.
    @Test func secondaryCutOffUnderTheMappingIsUnreadableAndProvisioningIsRefused() throws {
        try withHeapFile { path in
            let heap = try Heap.create(path: path, size: Self.size)
            let a = try heap.createArena(named: "a", size: 4 << 20)
            try a.memcpyPersist(at: 0, Array("before".utf8))
            #expect(truncate(path, off_t(Self.size - (2 << 20))) == 0)

            let report = heap.check()
            #expect(report.primary.state == .ok)
            #expect(report.secondary.state == .unreadable)
            #expect(!report.isHealthy)
            #expect(report.problems.contains { $0.contains("secondary metadata copy is unreadable") })

            let primaryBefore = try Self.primaryBlock(path)
            let arenas = heap.arenas
            let available = heap.availableSize
            let changes: [() throws -> Void] = [
                { try heap.resizeArena(named: "a", to: 6 << 20) },
                { try heap.createArena(named: "b", size: 2 << 20) },
                { try heap.destroyArena(named: "a") },
            ]
            for change in changes {
                let error = #expect(throws: HeapError.self) { try change() }
                if case .metadataWriteFailed(_, let copy, let reason)? = error {
                    #expect(copy == "secondary")
                    #expect(reason.contains("media error"))
                } else {
                    Issue.record("expected metadataWriteFailed, got \(String(describing: error))")
                }
                #expect(error?.description.contains("daxheap check --repair") == true)
                #expect(heap.arenas == arenas)
                #expect(heap.availableSize == available)
                #expect(try Self.primaryBlock(path) == primaryBefore, "the only good copy was written")
            }
            #expect(heap.metadataStatus.primary.state == .ok)
            #expect(heap.metadataStatus.secondary.state == .unreadable)
            try a.memcpyPersist(at: 8, Array("after".utf8))
            #expect(try a.read(at: 0, count: 6) == Array("before".utf8))

            // A repair cannot write the missing block: it stays unreadable and says what to do.
            #expect(try heap.repair().isEmpty)
            #expect(heap.metadataStatus.secondary.state == .unreadable)
            #expect(heap.metadataStatus.secondary.detail.contains("clear the poison"))
        }
    }

    /// The primary block as the file holds it.
    static func primaryBlock(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 2 << 20)
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, 0) }
        #expect(n == bytes.count)
        return bytes
    }

    /// The fault met by an update's second write: the first copy already holds the new
    /// table durably and wins at any open, so the update stands (rolled forward).
    @Test func anUpdateThatMeetsTheFaultSecondStillSucceeds() throws {
        try withHeapFile { path in
            let heap = try Heap.create(path: path, size: Self.size)
            #expect(truncate(path, off_t(Self.size - (2 << 20))) == 0)
            // No check first: the commit's secondary write itself takes the SIGBUS.
            _ = try heap.createArena(named: "a", size: 2 << 20)
            #expect(heap.metadataStatus.primary.state == .ok)
            #expect(heap.metadataStatus.secondary.state == .unreadable)
            #expect(heap.arenas.map(\.name) == ["a"])
        }
    }

    @Test func guardedReadNamesTheArenaAndOffsetOfAMediaError() throws {
        try withHeapFile { path in
            let heap = try Heap.create(path: path, size: Self.size)
            let usable = heap.usableSize
            let a = try heap.createArena(named: "a", size: usable)  // up to the secondary block
            try a.memcpyPersist(at: 0, [1, 2, 3])
            // Cut the file 4 MiB into the arena's last 6 MiB (the last 2 MiB block is the secondary).
            let cut = Self.size - (6 << 20)
            #expect(truncate(path, off_t(cut)) == 0)

            var head = [UInt8](repeating: 0, count: 3)
            let ok = head.withUnsafeMutableBytes { a.guardedRead(into: $0, at: 0) }
            #expect(throws: Never.self) { try ok.get() }
            #expect(head == [1, 2, 3])

            let arenaOffsetOfCut = cut - (2 << 20)  // the arena is one extent from device offset 2 MiB
            var tail = [UInt8](repeating: 0, count: 8192)
            let result = tail.withUnsafeMutableBytes { a.guardedRead(into: $0, at: arenaOffsetOfCut - 4096) }
            guard case .failure(.mediaError(let errorPath, let deviceOffset, let location)) = result else {
                Issue.record("expected a media error, got \(result)")
                return
            }
            #expect(errorPath == path)
            #expect(deviceOffset == cut)
            #expect(location == "arena \"a\" at offset \(arenaOffsetOfCut)")
            #expect(!HeapError.mediaError(path: errorPath, deviceOffset: deviceOffset, location: location).description.contains("\n"))
        }
    }

    @Test func guardedCopiesFromSeveralThreadsAtOnce() async throws {
        try withHeapFile { path in
            let heap = try Heap.create(path: path, size: Self.size)
            let a = try heap.createArena(named: "a", size: heap.usableSize)
            let cut = Self.size - (6 << 20)
            #expect(truncate(path, off_t(cut)) == 0)
            let faultAt = cut - (2 << 20)
            DispatchQueueLike.concurrentPerform(iterations: 8) { i in
                var buffer = [UInt8](repeating: 0, count: 4096)
                for _ in 0 ..< 200 {
                    let good = buffer.withUnsafeMutableBytes { a.guardedRead(into: $0, at: UInt64(i) * 4096) }
                    #expect((try? good.get()) != nil)
                    let bad = buffer.withUnsafeMutableBytes { a.guardedRead(into: $0, at: faultAt + UInt64(i) * 4096) }
                    #expect((try? bad.get()) == nil)
                }
            }
        }
    }
}

/// Threads without Foundation: pthreads joined before returning.
enum DispatchQueueLike {
    static func concurrentPerform(iterations: Int, _ body: @escaping @Sendable (Int) -> Void) {
        final class Box: @unchecked Sendable {
            let body: @Sendable (Int) -> Void
            let index: Int
            init(_ body: @escaping @Sendable (Int) -> Void, _ index: Int) { self.body = body; self.index = index }
        }
        var threads: [pthread_t] = []
        for i in 0 ..< iterations {
            var thread = pthread_t()
            let box = Unmanaged.passRetained(Box(body, i)).toOpaque()
            pthread_create(&thread, nil, { raw in
                let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
                box.body(box.index)
                return nil
            }, box)
            threads.append(thread)
        }
        for thread in threads { pthread_join(thread, nil) }
    }
}
