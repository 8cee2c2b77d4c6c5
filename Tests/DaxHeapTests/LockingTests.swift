// The heap's flock: one writer or any number of readers, never blocking, in one process
// (flock is per open file description) and across processes.

import DaxHeap
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct LockingTests {
    static func makeHeap(_ path: String) throws {
        let heap = try Heap.create(path: path, size: 8 << 20)
        try heap.createArena(named: "a", size: 2 << 20).memcpyPersist(at: 0, [1, 2, 3])
    }

    @Test func secondReadWriteOpenInTheSameProcessIsInUse() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 8 << 20)
        try heap.createArena(named: "a", size: 2 << 20)
        let before = try FileImage(path)
        let start = monotonicSeconds()
        #expect(throws: HeapError.inUse(path: path)) { try Heap.open(path: path) }
        #expect(throws: HeapError.inUse(path: path)) { try Heap.open(path: path, mode: .readOnly) }
        #expect(throws: HeapError.inUse(path: path)) { try Heap.create(path: path, overwrite: true) }
        #expect(throws: HeapError.inUse(path: path)) { try Heap.create(path: path, size: 16 << 20, overwrite: true) }
        #expect(monotonicSeconds() - start < 1, "a refused open waited for the lock")
        #expect(try FileImage(path) == before)
        #expect(fileSize(path) == 8 << 20)
        // The holder is unaffected.
        #expect(heap.arenas.map(\.name) == ["a"])
        try heap.createArena(named: "b", size: 2 << 20)
        #expect(heap.check().isHealthy)
    }

    @Test func readersShareButExcludeAWriter() throws {
        let path = tempPath()
        defer { removeFile(path) }
        try Self.makeHeap(path)
        do {
            let r1 = try Heap.open(path: path, mode: .readOnly)
            let r2 = try Heap.open(path: path, mode: .readOnly)
            #expect(try r1.arena(named: "a").read(at: 0, count: 3) == [1, 2, 3])
            #expect(try r2.arena(named: "a").read(at: 0, count: 3) == [1, 2, 3])
            #expect(r1.uuid == r2.uuid)
            let before = try FileImage(path)
            #expect(throws: HeapError.inUse(path: path)) { try Heap.open(path: path) }
            #expect(throws: HeapError.inUse(path: path)) { try Heap.create(path: path, overwrite: true) }
            #expect(try FileImage(path) == before)
            // A third reader still gets in.
            _ = try Heap.open(path: path, mode: .readOnly)
        }
        let heap = try Heap.open(path: path)
        #expect(heap.mode == .readWrite)
    }

    @Test func theLockGoesWithTheLastReference() throws {
        let path = tempPath()
        defer { removeFile(path) }
        try Self.makeHeap(path)
        do {
            _ = try Heap.open(path: path)
        }
        // Released at the end of its scope: a new open works, again and again.
        for _ in 0 ..< 3 {
            let heap = try Heap.open(path: path)
            #expect(heap.arenas.count == 1)
        }
        // An Arena handle keeps its heap, and so the lock, alive.
        var handle: Arena? = try { try Heap.open(path: path).arena(named: "a") }()
        #expect(throws: HeapError.inUse(path: path)) { try Heap.open(path: path) }
        #expect(try handle?.read(at: 0, count: 3) == [1, 2, 3])
        handle = nil
        let heap = try Heap.open(path: path)
        #expect(try heap.arena(named: "a").read(at: 0, count: 3) == [1, 2, 3])
    }

    @Test func aReadOnlyHolderBlocksCreateWithOverwrite() throws {
        let path = tempPath()
        defer { removeFile(path) }
        try Self.makeHeap(path)
        let reader = try Heap.open(path: path, mode: .readOnly)
        let before = try FileImage(path)
        #expect(throws: HeapError.inUse(path: path)) { try Heap.create(path: path, size: 8 << 20, overwrite: true) }
        #expect(try FileImage(path) == before)
        #expect(try reader.arena(named: "a").read(at: 0, count: 3) == [1, 2, 3])
    }

    // MARK: - Across processes (util-linux flock(1))

    static let flockTool = "/usr/bin/flock"
    static var haveFlock: Bool { executableExists(flockTool) }

    /// A child process holding `path`'s flock (exclusive or shared) until `release`.
    final class ChildLockHolder {
        let process = Process()
        let input = Pipe()
        let output = Pipe()
        private(set) var holds = false

        init(path: String, exclusive: Bool) throws {
            process.executableURL = URL(fileURLWithPath: LockingTests.flockTool)
            // -n: fail rather than wait; -o: the command does not inherit the lock, flock(1)
            // itself holds it until the command (which waits for our stdin to close) exits.
            process.arguments = [exclusive ? "-x" : "-s", "-n", "-o", path, "-c", "echo locked; read x; exit 0"]
            process.standardInput = input
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            var seen = Data()
            while !seen.contains(UInt8(ascii: "\n")) {
                let chunk = output.fileHandleForReading.availableData
                if chunk.isEmpty { break }  // exited without the lock
                seen += chunk
            }
            holds = String(decoding: seen, as: UTF8.self).hasPrefix("locked")
        }

        /// Lets the child exit and waits for it; returns its status.
        @discardableResult
        func release() -> Int32 {
            try? input.fileHandleForWriting.close()
            process.waitUntilExit()
            return process.terminationStatus
        }
    }

    /// `flock -n` on the path in a child process: 0 if it could take the lock, 1 if not.
    static func childCanLock(_ path: String, exclusive: Bool) throws -> Int32 {
        try runProcess(flockTool, [exclusive ? "-x" : "-s", "-n", path, "-c", "true"]).status
    }

    @Test(.enabled(if: LockingTests.haveFlock, "util-linux flock(1) is not installed at /usr/bin/flock"))
    func anotherProcessHoldingTheLockMakesOpenInUse() throws {
        let path = tempPath()
        defer { removeFile(path) }
        try Self.makeHeap(path)
        let before = try FileImage(path)
        let child = try ChildLockHolder(path: path, exclusive: true)
        defer { child.release() }
        try #require(child.holds, "the child could not take the lock")
        let start = monotonicSeconds()
        #expect(throws: HeapError.inUse(path: path)) { try Heap.open(path: path) }
        #expect(throws: HeapError.inUse(path: path)) { try Heap.open(path: path, mode: .readOnly) }
        #expect(throws: HeapError.inUse(path: path)) { try Heap.create(path: path, overwrite: true) }
        #expect(monotonicSeconds() - start < 1, "a refused open waited for the lock")
        #expect(try FileImage(path) == before)
        #expect(child.release() == 0)
        let heap = try Heap.open(path: path)
        #expect(try heap.arena(named: "a").read(at: 0, count: 3) == [1, 2, 3])
    }

    @Test(.enabled(if: LockingTests.haveFlock, "util-linux flock(1) is not installed at /usr/bin/flock"))
    func anotherProcessReadingAllowsReadersOnly() throws {
        let path = tempPath()
        defer { removeFile(path) }
        try Self.makeHeap(path)
        let child = try ChildLockHolder(path: path, exclusive: false)
        defer { child.release() }
        try #require(child.holds, "the child could not take a shared lock")
        #expect(throws: HeapError.inUse(path: path)) { try Heap.open(path: path) }
        let reader = try Heap.open(path: path, mode: .readOnly)
        #expect(try reader.arena(named: "a").read(at: 0, count: 3) == [1, 2, 3])
    }

    @Test(.enabled(if: LockingTests.haveFlock, "util-linux flock(1) is not installed at /usr/bin/flock"))
    func otherProcessesSeeOurLock() throws {
        let path = tempPath()
        defer { removeFile(path) }
        try Self.makeHeap(path)
        do {
            let writer = try Heap.open(path: path)
            #expect(try Self.childCanLock(path, exclusive: true) == 1)
            #expect(try Self.childCanLock(path, exclusive: false) == 1)
            _ = writer
        }
        do {
            let reader = try Heap.open(path: path, mode: .readOnly)
            #expect(try Self.childCanLock(path, exclusive: true) == 1)
            #expect(try Self.childCanLock(path, exclusive: false) == 0)
            _ = reader
        }
        #expect(try Self.childCanLock(path, exclusive: true) == 0)
    }

    // MARK: - A child that inherited the descriptor

    /// The descriptor this process has open on `path` (from /proc/self/fd), if exactly one.
    static func descriptor(of path: String) -> Int32? {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        let matches = fds.compactMap(Int32.init).filter { fd in
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")) == path
        }
        return matches.count == 1 ? matches[0] : nil
    }

    /// Spawns `/bin/sleep seconds` holding a duplicate of `fd` (as its descriptor 10): what
    /// any child forked or spawned by another thread holds between its fork and its exec.
    static func spawnHolding(_ fd: Int32, seconds: String) -> pid_t? {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fd, 10)
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup(seconds), nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        guard posix_spawn(&pid, "/bin/sleep", &actions, nil, argv, environ) == 0 else { return nil }
        return pid
    }

    /// A heap's lock is taken on its open file description; a child process that inherited
    /// a duplicate (another thread spawned it between this heap's open and close, or the
    /// program forked) keeps the description, and so the lock, alive after the heap is
    /// closed. Closing must release the lock itself (flock(fd, LOCK_UN) before close(2)):
    /// otherwise a reopen right after a close fails with inUse whenever another thread
    /// happens to be spawning a process, and a long-lived child keeps the heap locked.
    @Test(.enabled(if: executableExists("/bin/sleep"), "/bin/sleep is not installed"))
    func closingReleasesTheLockEvenIfAChildInheritedTheDescriptor() throws {
        let path = tempPath()
        defer { removeFile(path) }
        try Self.makeHeap(path)
        var pid: pid_t?
        do {
            let heap = try Heap.open(path: path)
            let fd = try #require(Self.descriptor(of: path), "cannot find the heap's descriptor in /proc/self/fd")
            pid = Self.spawnHolding(fd, seconds: "1")
            try #require(pid != nil, "posix_spawn failed")
            _ = heap
        }
        defer {
            if let pid {
                var status: Int32 = 0
                waitpid(pid, &status, 0)
            }
        }
        // The heap is closed; the child still sleeps with its copy of the descriptor.
        do {
            let heap = try Heap.open(path: path)
            #expect(heap.arenas.map(\.name) == ["a"])
        } catch {
            Issue.record("reopening after close failed while a child held an inherited descriptor: \(error)")
        }
    }
}
