// Every error path of the public API: the exact HeapError case, and that the refused call
// changed nothing (arena list, available size, generation, and the file's bytes).

import DaxHeap
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct HeapErrorTests {
    static let heapSize: UInt64 = 16 << 20

    /// A 16 MiB heap with arena "a" (4 MiB, a pattern in its first 64 KiB), closed.
    static func makeHeap(_ path: String) throws {
        let heap = try Heap.create(path: path, size: heapSize)
        let a = try heap.createArena(named: "a", size: 4 << 20)
        try a.memcpyPersist(at: 0, pattern(64 << 10, seed: 7))
    }

    // MARK: - Creating

    @Test func createOnExistingHeapWithoutOverwriteIsRefused() throws {
        let path = tempPath()
        defer { removeFile(path) }
        try Self.makeHeap(path)
        let before = try FileImage(path)
        #expect(throws: HeapError.notEmpty(path: path, what: "a file of \(Self.heapSize) bytes")) {
            try Heap.create(path: path, size: Self.heapSize)
        }
        #expect(throws: HeapError.notEmpty(path: path, what: "a file of \(Self.heapSize) bytes")) {
            try Heap.create(path: path)
        }
        #expect(throws: HeapError.notEmpty(path: path, what: "a file of \(Self.heapSize) bytes")) {
            try Heap.create(path: path, size: 32 << 20)
        }
        #expect(try FileImage(path) == before)
        let heap = try Heap.open(path: path)
        #expect(heap.arenas.map(\.name) == ["a"])
        #expect(try heap.arena(named: "a").read(at: 0, count: 64 << 10) == pattern(64 << 10, seed: 7))
    }

    @Test func createOnNonEmptyPlainFileWithoutOverwriteIsRefused() throws {
        let path = tempPath()
        defer { removeFile(path) }
        try writeFile(path, Array("not a heap".utf8))
        #expect(throws: HeapError.notEmpty(path: path, what: "a file of 10 bytes")) {
            try Heap.create(path: path, size: 8 << 20)
        }
        #expect(try fileBytes(path) == Array("not a heap".utf8))
    }

    @Test func createOnEmptyExistingFileWorksWithoutOverwrite() throws {
        let path = tempPath()
        defer { removeFile(path) }
        try writeFile(path, [])
        let heap = try Heap.create(path: path, size: 8 << 20)
        #expect(heap.deviceSize == 8 << 20)
        #expect(fileSize(path) == 8 << 20)
    }

    @Test func createWithOverwriteReinitialises() throws {
        let path = tempPath()
        defer { removeFile(path) }
        try Self.makeHeap(path)
        let oldUUID = try { try Heap.open(path: path, mode: .readOnly).uuid }()
        do {
            // size nil keeps the file's size
            let heap = try Heap.create(path: path, overwrite: true)
            #expect(heap.arenas.isEmpty)
            #expect(heap.deviceSize == Self.heapSize)
            #expect(heap.availableSize == heap.usableSize)
            #expect(heap.usableSize == Self.heapSize - 2 * twoMiB)
            #expect(heap.generation == 1)
            #expect(heap.uuid != oldUUID)
            #expect(throws: HeapError.unknownArena("a")) { try heap.arena(named: "a") }
            // The old data is gone: a new arena in the same place reads as zeros.
            let b = try heap.createArena(named: "b", size: 4 << 20)
            #expect(try b.info.extents.first?.deviceOffset == twoMiB)
            #expect(allZero(try b.read(at: 0, count: 4 << 20)))
        }
        let file = try fileBytes(path)
        #expect(allZero(Array(file[Int(twoMiB) ..< Int(Self.heapSize - twoMiB)])))
        // And with a new size.
        do {
            let heap = try Heap.create(path: path, size: 8 << 20, overwrite: true)
            #expect(heap.arenas.isEmpty)
            #expect(heap.deviceSize == 8 << 20)
        }
        #expect(fileSize(path) == 8 << 20)
        let reopened = try Heap.open(path: path)
        #expect(reopened.arenas.isEmpty)
        #expect(reopened.usableSize == 4 << 20)
    }

    @Test func createWithOverwriteKeepingAMisalignedSizeIsRefused() throws {
        let path = tempPath()
        defer { removeFile(path) }
        try writeFile(path, Array("abc".utf8))
        #expect(throws: HeapError.deviceSizeNotAligned(path: path, size: 3)) {
            try Heap.create(path: path, overwrite: true)
        }
        #expect(try fileBytes(path) == Array("abc".utf8))
    }

    @Test func createWithoutSizeOnMissingPathNeedsASize() {
        let path = tempPath()
        defer { removeFile(path) }
        #expect(throws: HeapError.sizeRequired(path: path)) { try Heap.create(path: path) }
        #expect(!pathExists(path))
    }

    @Test(arguments: [7 << 20, (6 << 20) + 1, (32 << 20) - 4096, 1] as [UInt64])
    func createWithMisalignedSizeIsRefused(size: UInt64) throws {
        let path = tempPath()
        defer { removeFile(path) }
        #expect(throws: HeapError.deviceSizeNotAligned(path: path, size: size)) { try Heap.create(path: path, size: size) }
        #expect(!pathExists(path))
        // Also on an existing heap with overwrite: refused before anything is touched.
        try Self.makeHeap(path)
        let before = try FileImage(path)
        #expect(throws: HeapError.deviceSizeNotAligned(path: path, size: size)) {
            try Heap.create(path: path, size: size, overwrite: true)
        }
        #expect(try FileImage(path) == before)
    }

    @Test(arguments: [0, 2 << 20, 4 << 20] as [UInt64])
    func createBelowSixMiBIsRefused(size: UInt64) throws {
        let path = tempPath()
        defer { removeFile(path) }
        #expect(throws: HeapError.deviceTooSmall(path: path, size: size)) { try Heap.create(path: path, size: size) }
        #expect(!pathExists(path))
    }

    @Test func createAboveInt64MaxIsRefused() {
        let path = tempPath()
        defer { removeFile(path) }
        let size = UInt64.max - (2 << 20) + 1  // a multiple of 2 MiB
        #expect(throws: HeapError.deviceTooLarge(path: path, size: size)) { try Heap.create(path: path, size: size) }
        #expect(!pathExists(path))
    }

    @Test func sixMiBIsTheSmallestHeap() throws {
        let path = tempPath()
        defer { removeFile(path) }
        do {
            let heap = try Heap.create(path: path, size: 6 << 20)
            #expect(heap.deviceSize == 6 << 20)
            #expect(heap.usableSize == 2 << 20)
            #expect(heap.availableSize == 2 << 20)
            let a = try heap.createArena(named: "only", size: 2 << 20)
            #expect(try a.info.extents == heap.arenas[0].extents)
            #expect(try a.info.extents.map(\.deviceOffset) == [twoMiB])
            try a.memcpyPersist(at: (2 << 20) - 4, [1, 2, 3, 4])
            try expectRefused(.noSpace(requested: 2 << 20, available: 0), heap: heap, path: path) {
                try heap.createArena(named: "more", size: 2 << 20)
            }
        }
        let heap = try Heap.open(path: path)
        #expect(try heap.arena(named: "only").read(at: (2 << 20) - 4, count: 4) == [1, 2, 3, 4])
        #expect(heap.check().isHealthy)
    }

    // MARK: - Opening

    @Test func openMissingPath() {
        let path = tempPath()
        #expect(throws: HeapError.notFound(path: path)) { try Heap.open(path: path) }
        #expect(throws: HeapError.notFound(path: path)) { try Heap.open(path: path, mode: .readOnly) }
        #expect(!pathExists(path))
    }

    @Test func openOrCreateOnADirectory() throws {
        let path = tempPath("dir")
        defer { removeTree(path) }
        #expect(mkdir(path, 0o755) == 0)
        #expect(throws: HeapError.isDirectory(path: path)) { try Heap.open(path: path) }
        #expect(throws: HeapError.isDirectory(path: path)) { try Heap.open(path: path, mode: .readOnly) }
        #expect(throws: HeapError.isDirectory(path: path)) { try Heap.create(path: path, size: 8 << 20) }
        #expect(throws: HeapError.isDirectory(path: path)) { try Heap.create(path: path, overwrite: true) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: path).isEmpty)
    }

    @Test func devNullIsACharacterDeviceButNotDeviceDax() {
        for mode in [HeapMode.readWrite, .readOnly] {
            let error = thrownError { _ = try Heap.open(path: "/dev/null", mode: mode) }
            guard case .notDeviceDax(let path, let reason) = error as? HeapError else {
                Issue.record("expected notDeviceDax, got \(String(describing: error))")
                continue
            }
            #expect(path == "/dev/null")
            #expect(reason.contains("1:3"), "\(reason)")
        }
        let error = thrownError { _ = try Heap.create(path: "/dev/null", size: 8 << 20, overwrite: true) }
        guard case .notDeviceDax(path: "/dev/null", _) = error as? HeapError else {
            Issue.record("expected notDeviceDax, got \(String(describing: error))")
            return
        }
    }

    @Test func fifoIsRefusedReadWrite() throws {
        let path = tempPath("fifo")
        defer { removeFile(path) }
        #expect(mkfifo(path, 0o644) == 0)
        let kind = "neither a regular file nor a device-dax"
        // O_RDWR on a FIFO does not block on Linux.
        #expect(throws: HeapError.unsupportedFileType(path: path, kind: kind)) { try Heap.open(path: path) }
        #expect(throws: HeapError.unsupportedFileType(path: path, kind: kind)) { try Heap.create(path: path, size: 8 << 20) }
        #expect(throws: HeapError.unsupportedFileType(path: path, kind: kind)) {
            try Heap.create(path: path, size: 8 << 20, overwrite: true)
        }
        var st = stat()
        #expect(lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFIFO)
    }

    /// Opening a FIFO read-only (O_RDONLY without O_NONBLOCK) blocks until some process
    /// opens it for writing. A heap open must not hang on a path it is about to refuse.
    /// If it does, this test unblocks it by opening the FIFO for writing after 2 s.
    @Test func fifoIsRefusedReadOnlyWithoutBlocking() throws {
        let path = tempPath("fifo")
        defer { removeFile(path) }
        #expect(mkfifo(path, 0o644) == 0)
        let outcome = Failures()
        let opener = TestThread {
            do {
                _ = try Heap.open(path: path, mode: .readOnly)
                outcome.record("opened")
            } catch {
                outcome.record("\(error as? HeapError == .unsupportedFileType(path: path, kind: "neither a regular file nor a device-dax") ? "refused" : "other: \(error)")")
            }
        }
        let finishedInTime = opener.join(timeout: 2)
        #expect(finishedInTime, "Heap.open(path: <fifo>, mode: .readOnly) blocked in open(2) for 2 s (O_RDONLY without O_NONBLOCK)")
        if !finishedInTime {
            // Be the writer the blocked open waits for, then let it finish.
            let fd = open(path, O_WRONLY | O_NONBLOCK)
            opener.join()
            if fd >= 0 { close(fd) }
        }
        #expect(outcome.all == ["refused"])
    }

    @Test(.enabled(if: HeapErrorTests.blockDevice != nil, "no block device under /dev to open read-only"))
    func blockDeviceIsRefused() throws {
        let path = try #require(Self.blockDevice)
        let error = thrownError { _ = try Heap.open(path: path, mode: .readOnly) }
        #expect(error as? HeapError == .unsupportedFileType(path: path, kind: "a block device (use its device-dax namespace, /dev/daxX.Y)"),
                "\(String(describing: error))")
    }

    /// An unused loop device (opened read-only only, so nothing can be written to it).
    static let blockDevice: String? = (0 ..< 8).map { "/dev/loop\($0)" }.first { path in
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFBLK else { return false }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        close(fd)
        return true
    }

    @Test func pathThroughAFileIsAnIOError() throws {
        let file = tempPath()
        defer { removeFile(file) }
        try writeFile(file, [1])
        let path = file + "/heap"
        let message = String(cString: strerror(ENOTDIR))
        #expect(throws: HeapError.io(path: path, operation: "open", errno: ENOTDIR, message: message)) { try Heap.open(path: path) }
        #expect(throws: HeapError.io(path: path, operation: "stat", errno: ENOTDIR, message: message)) {
            try Heap.create(path: path, size: 8 << 20)
        }
        #expect(try fileBytes(file) == [1])
    }

    @Test func zeroFileIsNotAHeapAndIsNotWritten() throws {
        let path = tempPath()
        defer { removeFile(path) }
        try writeFile(path, [])
        try setFileSize(path, 8 << 20)
        #expect(throws: HeapError.notADaxHeapDevice(path: path)) { try Heap.open(path: path) }
        #expect(throws: HeapError.notADaxHeapDevice(path: path)) { try Heap.open(path: path, mode: .readOnly) }
        #expect(allZero(try fileBytes(path)))
        #expect(fileSize(path) == 8 << 20)
    }

    @Test(arguments: [2 << 20, 8 << 20, -(2 << 20), -(8 << 20)] as [Int64])
    func heapFileGrownOrCutIsRefused(change: Int64) throws {
        let path = tempPath()
        defer { removeFile(path) }
        try Self.makeHeap(path)
        let actual = UInt64(Int64(Self.heapSize) + change)
        try setFileSize(path, actual)
        let before = try FileImage(path)
        if change > 0 {
            // Grown: read-only it opens, read-write it is refused (Heap.grow first).
            #expect(throws: HeapError.deviceLargerThanHeap(path: path, heapSize: Self.heapSize, deviceSize: actual)) {
                try Heap.open(path: path, mode: .readWrite)
            }
            let heap = try Heap.open(path: path, mode: .readOnly)
            #expect(heap.heapSize == Self.heapSize && heap.unusedDeviceSize == actual - Self.heapSize)
        } else {
            for mode in [HeapMode.readWrite, .readOnly] {
                #expect(throws: HeapError.sizeMismatch(path: path, recorded: Self.heapSize, actual: actual)) {
                    try Heap.open(path: path, mode: mode)
                }
            }
        }
        #expect(try FileImage(path) == before)
        // Restored to its size, the heap opens again (a cut loses the secondary copy,
        // which open repairs; a grow loses nothing).
        try setFileSize(path, Self.heapSize)
        let heap = try Heap.open(path: path)
        #expect(heap.arenas.map(\.name) == ["a"])
        #expect(try heap.arena(named: "a").read(at: 0, count: 64 << 10) == pattern(64 << 10, seed: 7))
        #expect(heap.check().isHealthy)
    }

    // MARK: - Provisioning

    @Test func noSpaceReportsTheExactAvailableSize() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 32 << 20)  // 28 MiB usable
        try heap.createArena(named: "a", size: 20 << 20)
        #expect(heap.availableSize == 8 << 20)
        try expectRefused(.noSpace(requested: 10 << 20, available: 8 << 20), heap: heap, path: path) {
            try heap.createArena(named: "b", size: 10 << 20)
        }
        try expectRefused(.noSpace(requested: 10 << 20, available: 8 << 20), heap: heap, path: path) {
            try heap.resizeArena(named: "a", to: 30 << 20)
        }
        try expectRefused(.noSpace(requested: 10 << 20, available: 8 << 20), heap: heap, path: path) {
            try heap.arena(named: "a").resize(to: 30 << 20)
        }
        // Exactly the available size fits.
        try heap.createArena(named: "b", size: 8 << 20)
        #expect(heap.availableSize == 0)
        try expectRefused(.noSpace(requested: 2 << 20, available: 0), heap: heap, path: path) {
            try heap.createArena(named: "c", size: 2 << 20)
        }
        try expectRefused(.noSpace(requested: 2 << 20, available: 0), heap: heap, path: path) {
            try heap.resizeArena(named: "b", to: 10 << 20)
        }
        // Growing by exactly what a shrink freed works.
        try heap.resizeArena(named: "b", to: 4 << 20)
        try heap.resizeArena(named: "a", to: 24 << 20)
        #expect(heap.availableSize == 0)
        #expect(heap.check().isHealthy)
    }

    @Test func nameTaken() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        try heap.createArena(named: "a", size: 2 << 20)
        try heap.createArena(named: "é", size: 2 << 20)
        try expectRefused(.nameTaken("a"), heap: heap, path: path) { try heap.createArena(named: "a", size: 2 << 20) }
        try expectRefused(.nameTaken("a"), heap: heap, path: path) { try heap.createArena(named: "a", size: 4 << 20) }
        // The same name in another normalisation form is the same Swift string.
        try expectRefused(.nameTaken("e\u{301}"), heap: heap, path: path) { try heap.createArena(named: "e\u{301}", size: 2 << 20) }
        // The name check comes before the space check.
        try expectRefused(.nameTaken("a"), heap: heap, path: path) { try heap.createArena(named: "a", size: 1 << 30) }
    }

    @Test func unknownArena() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        try heap.createArena(named: "a", size: 2 << 20)
        try expectRefused(.unknownArena("zz"), heap: heap, path: path) { _ = try heap.arena(named: "zz") }
        try expectRefused(.unknownArena("A"), heap: heap, path: path) { _ = try heap.arena(named: "A") }
        try expectRefused(.unknownArena("zz"), heap: heap, path: path) { try heap.resizeArena(named: "zz", to: 2 << 20) }
        try expectRefused(.unknownArena("zz"), heap: heap, path: path) { try heap.resizeArena(named: "zz", to: 3) }
        try expectRefused(.unknownArena("zz"), heap: heap, path: path) { try heap.destroyArena(named: "zz") }
        try expectRefused(.unknownArena(""), heap: heap, path: path) { try heap.destroyArena(named: "") }
        try expectRefused(.unknownArena("#999"), heap: heap, path: path) {
            _ = try heap.resolve(PersistentReference(arenaID: 999, offset: 0))
        }
    }

    @Test(arguments: [0, 1, 1 << 20, (2 << 20) + 4096, 3 << 20, .max] as [UInt64])
    func misalignedSize(size: UInt64) throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        try heap.createArena(named: "a", size: 2 << 20)
        try expectRefused(.misalignedSize(size), heap: heap, path: path) { try heap.createArena(named: "b", size: size) }
        try expectRefused(.misalignedSize(size), heap: heap, path: path) { try heap.resizeArena(named: "a", to: size) }
        try expectRefused(.misalignedSize(size), heap: heap, path: path) { try heap.arena(named: "a").resize(to: size) }
    }

    @Test func invalidNames() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        let invalid = [
            "", String(repeating: "x", count: 64), String(repeating: "é", count: 32), String(repeating: "x", count: 1000),
            "a\nb", "\t", "tab\there", "\u{0}", "del\u{7F}", "c1\u{85}", "\u{9F}", "\r\n",
        ]
        for name in invalid {
            let facts = HeapFacts(heap)
            let image = try FileImage(path)
            let error = thrownError { try heap.createArena(named: name, size: 2 << 20) }
            guard case .invalidName(let reported, let reason) = error as? HeapError else {
                Issue.record("\(name.debugDescription): expected invalidName, got \(String(describing: error))")
                continue
            }
            #expect(reported == name)
            #expect(!reason.isEmpty && !reason.contains("\n"))
            #expect(HeapFacts(heap) == facts)
            #expect(try FileImage(path) == image)
        }
        // The invalid-name check comes first, before size and space.
        #expect(throws: HeapError.invalidName("", reason: "the name is empty")) { try heap.createArena(named: "", size: 3) }
        #expect(throws: HeapError.invalidName(String(repeating: "x", count: 64), reason: "the name is 64 bytes of UTF-8, the limit is 63")) {
            try heap.createArena(named: String(repeating: "x", count: 64), size: 1 << 40)
        }
        #expect(throws: HeapError.invalidName("a\nb", reason: "the name contains the control character U+000A")) {
            try heap.createArena(named: "a\nb", size: 2 << 20)
        }
    }

    @Test func namesAtTheLimitsAreValid() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let names: Set = [String(repeating: "y", count: 63), "x", "γάμμα", "with space", "🙂", String(repeating: "é", count: 31) + "z"]
        do {
            let heap = try Heap.create(path: path, size: 16 << 20)
            for name in names {
                try heap.createArena(named: name, size: 2 << 20)
                #expect(try heap.arena(named: name).name == name)
            }
        }
        let reopened = try Heap.open(path: path)
        #expect(Set(reopened.arenas.map(\.name)) == names)
    }

    // MARK: - Data plane

    @Test func outOfRange() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        let a = try heap.createArena(named: "a", size: 4 << 20)
        try a.memcpyPersist(at: 0, pattern(4 << 20, seed: 3))
        let s: UInt64 = 4 << 20
        func oor(_ offset: UInt64, _ count: UInt64) -> HeapError { .outOfRange(arena: "a", offset: offset, count: count, arenaSize: s) }

        // Reads.
        try expectRefused(oor(s, 1), heap: heap, path: path) { _ = try a.read(at: s, count: 1) }
        try expectRefused(oor(s - 10, 11), heap: heap, path: path) { _ = try a.read(at: s - 10, count: 11) }
        try expectRefused(oor(s + 1, 0), heap: heap, path: path) { _ = try a.read(at: s + 1, count: 0) }
        try expectRefused(oor(0, 0), heap: heap, path: path) { _ = try a.read(at: 0, count: -1) }
        try expectRefused(oor(.max, 1), heap: heap, path: path) { _ = try a.read(at: .max, count: 1) }
        try expectRefused(oor(0, s + 1), heap: heap, path: path) { _ = try a.read(at: 0, count: Int(s) + 1) }
        var buffer = [UInt8](repeating: 0xEE, count: 16)
        try expectRefused(oor(s - 8, 16), heap: heap, path: path) {
            try buffer.withUnsafeMutableBytes { raw in try a.read(into: raw, at: s - 8) }
        }
        #expect(buffer == [UInt8](repeating: 0xEE, count: 16), "a refused read filled part of the buffer")

        // Writes must not write a partial prefix.
        try expectRefused(oor(s - 10, 11), heap: heap, path: path) { try a.write(pattern(11), at: s - 10) }
        try expectRefused(oor(s, 1), heap: heap, path: path) { try a.write([1], at: s) }
        try expectRefused(oor(s - 1, 2 << 20), heap: heap, path: path) {
            try pattern(2 << 20).withUnsafeBytes { raw in try a.write(raw, at: s - 1) }
        }
        try expectRefused(oor(s - 1, 2), heap: heap, path: path) { try a.memcpyPersist(at: s - 1, [1, 2]) }
        try expectRefused(oor(s + 4096, 2), heap: heap, path: path) {
            try [UInt8]([1, 2]).withUnsafeBytes { raw in try a.memcpyPersist(at: s + 4096, from: raw) }
        }
        try expectRefused(oor(s - 100, 101), heap: heap, path: path) { try a.memsetPersist(at: s - 100, value: 0xAB, count: 101) }
        try expectRefused(oor(0, .max), heap: heap, path: path) { try a.memsetPersist(at: 0, value: 0xAB, count: .max) }

        // Durability calls.
        try expectRefused(oor(s, 1), heap: heap, path: path) { try a.persist(at: s, count: 1) }
        try expectRefused(oor(s - 1, 2), heap: heap, path: path) { try a.flush(at: s - 1, count: 2) }
        try expectRefused(oor(.max, .max), heap: heap, path: path) { try a.persist(at: .max, count: .max) }

        // Scoped access: the body is never called.
        let called = Flag()
        try expectRefused(oor(s - 10, 11), heap: heap, path: path) { _ = try a.withUnsafeBytes(at: s - 10, count: 11) { _ in called.set() } }
        try expectRefused(oor(s + 1, 0), heap: heap, path: path) { _ = try a.withUnsafeBytes(at: s + 1, count: 0) { _ in called.set() } }
        try expectRefused(oor(0, 0), heap: heap, path: path) { _ = try a.withUnsafeBytes(at: 0, count: -1) { _ in called.set() } }
        try expectRefused(oor(s - 10, 11), heap: heap, path: path) {
            _ = try a.withUnsafeMutableBytes(at: s - 10, count: 11) { raw in called.set(); raw.storeBytes(of: 1, as: UInt8.self) }
        }
        try expectRefused(oor(s, 1), heap: heap, path: path) { _ = try a.withUnsafeMutableBytes(at: s, count: 1) { _ in called.set() } }
        #expect(!called.isSet)

        // References and contiguity.
        try expectRefused(oor(s + 1, 0), heap: heap, path: path) { _ = try a.reference(at: s + 1) }
        try expectRefused(oor(.max, 0), heap: heap, path: path) { _ = try a.reference(at: .max) }
        try expectRefused(oor(s + 1, 0), heap: heap, path: path) { _ = try a.contiguousBytes(at: s + 1) }

        // The end itself is fine with a count of zero.
        #expect(try a.read(at: s, count: 0) == [])
        try a.write([], at: s)
        try a.memcpyPersist(at: s, [])
        try a.memsetPersist(at: s, value: 1, count: 0)
        try a.persist(at: s, count: 0)
        try a.flush(at: s, count: 0)
        #expect(try a.withUnsafeBytes(at: s, count: 0) { $0.count } == 0)
        #expect(try a.withUnsafeMutableBytes(at: s, count: 0) { $0.count } == 0)
        #expect(try a.reference(at: s) == PersistentReference(arenaID: a.id, offset: s))
        #expect(try a.contiguousBytes(at: s) == 0)
        #expect(try a.read(at: s - 1, count: 1) == [pattern(4 << 20, seed: 3).last!])
        #expect(sameBytes(try a.read(at: 0, count: Int(s)), pattern(4 << 20, seed: 3)), "a.read(at: 0, count: Int(s)) differs")
    }

    /// `read(at:count:)` with a count no arena could satisfy must throw outOfRange like
    /// every other out-of-range access, not trap allocating the result first. Run in a
    /// child process (an exit test), since the failure mode is a crash.
    @Test func readWithAnAbsurdCountThrowsInsteadOfTrapping() async throws {
        await #expect(processExitsWith: .success, "Arena.read(at: 0, count: 1 << 42) on a 2 MiB arena trapped instead of throwing outOfRange") {
            exit(HeapErrorTests.readWithAnAbsurdCount())
        }
        removeFile("/dev/shm/daxheap-test-\(getpid())-exit-read")
    }

    /// The exit test's body: 0 if the read threw the right outOfRange.
    static func readWithAnAbsurdCount() -> Int32 {
        let path = "/dev/shm/daxheap-test-\(getppid())-exit-read"
        defer { unlink(path) }
        do {
            let heap = try Heap.create(path: path, size: 8 << 20, overwrite: true)
            let a = try heap.createArena(named: "a", size: 2 << 20)
            _ = try a.read(at: 0, count: 1 << 42)
            return 1
        } catch {
            return error == .outOfRange(arena: "a", offset: 0, count: 1 << 42, arenaSize: 2 << 20) ? 0 : 2
        }
    }

    @Test func outOfRangeOnADiscontiguousArenaWritesNothing() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 32 << 20)
        let frag = try makeDiscontiguousArena(on: heap, named: "frag", extents: 3)
        #expect(try frag.info.extents.count == 3)
        let s: UInt64 = 6 << 20
        // Spans all three extents and one byte past the end.
        try expectRefused(.outOfRange(arena: "frag", offset: 1 << 20, count: s, arenaSize: s), heap: heap, path: path) {
            try frag.write(pattern(Int(s), seed: 9), at: 1 << 20)
        }
        try expectRefused(.outOfRange(arena: "frag", offset: 1 << 20, count: s, arenaSize: s), heap: heap, path: path) {
            try frag.memsetPersist(at: 1 << 20, value: 0x5A, count: s)
        }
        #expect(allZero(try frag.read(at: 0, count: Int(s))))
    }

    @Test func crossesExtent() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 32 << 20)
        let frag = try makeDiscontiguousArena(on: heap, named: "frag", extents: 3)
        let info = try frag.info
        #expect(info.extents.map(\.arenaOffset) == [0, twoMiB, 2 * twoMiB])
        #expect(info.extents.map(\.length) == [twoMiB, twoMiB, twoMiB])
        // Really discontiguous on the device.
        #expect(info.extents[0].deviceOffset + info.extents[0].length != info.extents[1].deviceOffset)
        let b = twoMiB
        let called = Flag()
        try expectRefused(.crossesExtent(arena: "frag", offset: b - 10, count: 20, contiguous: 10), heap: heap, path: path) {
            _ = try frag.withUnsafeMutableBytes(at: b - 10, count: 20) { raw in called.set(); raw.storeBytes(of: 1, as: UInt8.self) }
        }
        try expectRefused(.crossesExtent(arena: "frag", offset: b - 10, count: 20, contiguous: 10), heap: heap, path: path) {
            _ = try frag.withUnsafeBytes(at: b - 10, count: 20) { _ in called.set() }
        }
        try expectRefused(.crossesExtent(arena: "frag", offset: 0, count: 6 << 20, contiguous: b), heap: heap, path: path) {
            _ = try frag.withUnsafeMutableBytes(at: 0, count: 6 << 20) { _ in called.set() }
        }
        try expectRefused(.crossesExtent(arena: "frag", offset: 3 << 20, count: (1 << 20) + 1, contiguous: 1 << 20), heap: heap, path: path) {
            _ = try frag.withUnsafeBytes(at: 3 << 20, count: (1 << 20) + 1) { _ in called.set() }
        }
        // Out of range takes precedence over crossing.
        try expectRefused(.outOfRange(arena: "frag", offset: b, count: 5 << 20, arenaSize: 6 << 20), heap: heap, path: path) {
            _ = try frag.withUnsafeMutableBytes(at: b, count: 5 << 20) { _ in called.set() }
        }
        #expect(!called.isSet)
        // Up to the boundary is fine, and so is the copying API across it.
        #expect(try frag.contiguousBytes(at: b - 10) == 10)
        try frag.withUnsafeMutableBytes(at: b - 10, count: 10) { raw in raw.copyBytes(from: pattern(10)) }
        try frag.withUnsafeMutableBytes(at: b, count: 10) { raw in raw.copyBytes(from: pattern(10, seed: 2)) }
        #expect(try frag.read(at: b - 10, count: 20) == pattern(10) + pattern(10, seed: 2))
    }

    @Test func everyMutationOfAReadOnlyHeapIsRefused() throws {
        let path = tempPath()
        defer { removeFile(path) }
        try Self.makeHeap(path)
        let heap = try Heap.open(path: path, mode: .readOnly)
        #expect(heap.mode == .readOnly)
        let a = try heap.arena(named: "a")
        let ro = HeapError.readOnly(path: path)
        let called = Flag()
        try expectRefused(ro, heap: heap, path: path) { try heap.createArena(named: "b", size: 2 << 20) }
        try expectRefused(ro, heap: heap, path: path) { try heap.createArena(named: "", size: 3) }
        try expectRefused(ro, heap: heap, path: path) { try heap.resizeArena(named: "a", to: 8 << 20) }
        try expectRefused(ro, heap: heap, path: path) { try heap.resizeArena(named: "a", to: 2 << 20) }
        try expectRefused(ro, heap: heap, path: path) { try heap.resizeArena(named: "a", to: 4 << 20) }
        try expectRefused(ro, heap: heap, path: path) { try a.resize(to: 2 << 20) }
        try expectRefused(ro, heap: heap, path: path) { try heap.destroyArena(named: "a") }
        try expectRefused(ro, heap: heap, path: path) { try a.write([1, 2, 3], at: 0) }
        try expectRefused(ro, heap: heap, path: path) { try [UInt8]([1]).withUnsafeBytes { raw in try a.write(raw, at: 0) } }
        try expectRefused(ro, heap: heap, path: path) { try a.memcpyPersist(at: 0, [1, 2, 3]) }
        try expectRefused(ro, heap: heap, path: path) { try [UInt8]([1]).withUnsafeBytes { raw in try a.memcpyPersist(at: 0, from: raw) } }
        try expectRefused(ro, heap: heap, path: path) { try a.memsetPersist(at: 0, value: 1, count: 10) }
        try expectRefused(ro, heap: heap, path: path) {
            _ = try a.withUnsafeMutableBytes(at: 0, count: 1) { raw in called.set(); raw.storeBytes(of: 1, as: UInt8.self) }
        }
        #expect(!called.isSet)
        // Reading and the durability calls that write nothing work.
        #expect(try a.read(at: 0, count: 64 << 10) == pattern(64 << 10, seed: 7))
        #expect(try a.withUnsafeBytes(at: 0, count: 4) { Array($0) } == Array(pattern(4, seed: 7)))
        try a.persist(at: 0, count: 4096)
        try a.flush(at: 0, count: 4096)
        a.drain()
        #expect(try a.contiguousBytes(at: 0) == 4 << 20)
        #expect(heap.check().isHealthy)
        #expect(heap.repairs.isEmpty)
    }

    @Test func handleOfADestroyedArena() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        let a = try heap.createArena(named: "a", size: 4 << 20)
        try a.memcpyPersist(at: 0, [9, 9, 9])
        let reference = try a.reference(at: 100)
        let oldID = a.id
        try heap.destroyArena(named: "a")
        #expect(a.name == "a")
        #expect(a.id == oldID)
        func check(sourceLocation: SourceLocation = #_sourceLocation) {
            let gone = HeapError.unknownArena("a")
            let facts = HeapFacts(heap)
            #expect(a.size == 0, "a destroyed arena's size reads 0", sourceLocation: sourceLocation)
            #expect(throws: gone, sourceLocation: sourceLocation) { try a.info }
            #expect(throws: gone, sourceLocation: sourceLocation) { try a.read(at: 0, count: 1) }
            #expect(throws: gone, sourceLocation: sourceLocation) { try a.read(at: 0, count: 0) }
            #expect(throws: gone, sourceLocation: sourceLocation) { try a.write([1], at: 0) }
            #expect(throws: gone, sourceLocation: sourceLocation) { try a.memcpyPersist(at: 0, [1]) }
            #expect(throws: gone, sourceLocation: sourceLocation) { try a.memsetPersist(at: 0, value: 1, count: 1) }
            #expect(throws: gone, sourceLocation: sourceLocation) { try a.persist(at: 0, count: 1) }
            #expect(throws: gone, sourceLocation: sourceLocation) { try a.flush(at: 0, count: 1) }
            #expect(throws: gone, sourceLocation: sourceLocation) { try a.reference(at: 0) }
            #expect(throws: gone, sourceLocation: sourceLocation) { try a.contiguousBytes(at: 0) }
            #expect(throws: gone, sourceLocation: sourceLocation) { try a.withUnsafeBytes(at: 0, count: 1) { _ in } }
            #expect(throws: gone, sourceLocation: sourceLocation) { try a.withUnsafeMutableBytes(at: 0, count: 1) { _ in } }
            #expect(throws: gone, sourceLocation: sourceLocation) { try a.withView { _ in } }
            #expect(throws: gone, sourceLocation: sourceLocation) { try a.withTranslator { _ in } }
            #expect(throws: gone, sourceLocation: sourceLocation) { try a.mapWindow() }
            #expect(throws: gone, sourceLocation: sourceLocation) { try heap.arena(named: "a") }
            #expect(throws: HeapError.unknownArena("#\(oldID)"), sourceLocation: sourceLocation) { try heap.resolve(reference) }
            #expect(HeapFacts(heap) == facts, sourceLocation: sourceLocation)
        }
        check()
        #expect(throws: HeapError.unknownArena("a")) { try a.resize(to: 2 << 20) }
        // A new arena of the same name is another arena: the old handle stays dead.
        let again = try heap.createArena(named: "a", size: 4 << 20)
        #expect(again.id != oldID)
        #expect(try again.read(at: 0, count: 3) == [0, 0, 0])
        #expect(throws: HeapError.unknownArena("a")) { try a.read(at: 0, count: 1) }
        #expect(throws: HeapError.unknownArena("a")) { try a.write([1], at: 0) }
        #expect(throws: HeapError.unknownArena("#\(oldID)")) { try heap.resolve(reference) }
        #expect(try again.read(at: 0, count: 3) == [0, 0, 0])
    }

    /// `Arena.resize(to:)` is documented as "Resizes this arena", and after a destroy
    /// "handles to it then fail with unknownArena". A stale handle must not resize a
    /// newer arena that happens to have the same name.
    @Test func staleHandleResizeDoesNotReachANewArenaOfTheSameName() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        let stale = try heap.createArena(named: "a", size: 4 << 20)
        try heap.destroyArena(named: "a")
        let again = try heap.createArena(named: "a", size: 4 << 20)
        let facts = HeapFacts(heap)
        #expect(throws: HeapError.unknownArena("a"), "a handle to the destroyed arena resized the new arena \"a\"") {
            try stale.resize(to: 2 << 20)
        }
        #expect(again.size == 4 << 20)
        #expect(HeapFacts(heap) == facts)
    }

    // MARK: - Descriptions

    /// One of each case. (Not enforced by an exhaustive switch: HeapError gains cases while
    /// other work goes on; add new ones here.)
    static let oneOfEach: [HeapError] = [
        .noSpace(requested: 10 << 20, available: 3 << 20),
        .nameTaken("a"),
        .unknownArena("a"),
        .misalignedSize(12345),
        .invalidName("a\nb\u{7F}\"\\", reason: "the name contains the control character U+000A"),
        .tableFull(arenas: 20000, extents: 10),
        .outOfRange(arena: "a", offset: .max, count: .max, arenaSize: 2 << 20),
        .crossesExtent(arena: "a", offset: 10, count: 5 << 20, contiguous: 100),
        .readOnly(path: "/dev/shm/x"),
        .misalignedAccess(arena: "a", offset: 3),
        .foreignArena(arena: "a", heap: "/dev/shm/x"),
        .arenaMapped(arena: "log", windows: 2),
        .windowReservationExceeded(arena: "a", size: 80 << 20, reservation: 64 << 20),
        .invalidReservation(arena: "a", reservation: 3 << 20, arenaSize: 8 << 20),
        .windowMisaligned(arena: "a", arenaOffset: 0, deviceOffset: 2 << 20, length: 2 << 20, alignment: 1 << 30),
        .windowClosed(arena: "a"),
        .foreignReference(arena: "a", referenceArenaID: 7),
        .addressOutsideWindow(arena: "a", address: 0x7f00_0000_0000, windowSize: 2 << 20),
        .heapClosed(path: "/dev/shm/x"),
        .windowsOpen(path: "/dev/shm/x", arenas: ["a", "a", "log"]),
        .closeInsideReadSection(path: "/dev/shm/x"),
        .notFound(path: "/dev/shm/x"),
        .isDirectory(path: "/dev/shm"),
        .unsupportedFileType(path: "/dev/shm/f", kind: "neither a regular file nor a device-dax"),
        .notDeviceDax(path: "/dev/null", reason: "character device 1:3 belongs to \"mem\", not dax"),
        .deviceTooSmall(path: "/dev/shm/x", size: 4 << 20),
        .deviceSizeNotAligned(path: "/dev/shm/x", size: 7 << 20),
        .sizeRequired(path: "/dev/shm/x"),
        .sizeFixed(path: "/dev/dax0.0", deviceSize: 1 << 30, requested: 2 << 30),
        .notEmpty(path: "/dev/shm/x", what: "a file of 3 bytes"),
        .notADaxHeapDevice(path: "/dev/shm/x"),
        .unsupportedVersion(path: "/dev/shm/x", version: 99),
        .corruptMetadata(path: "/dev/shm/x", primary: "bad checksum", secondary: "no magic"),
        .sizeMismatch(path: "/dev/shm/x", recorded: 32 << 20, actual: 30 << 20),
        .deviceLargerThanHeap(path: "/dev/shm/x", heapSize: 32 << 20, deviceSize: 64 << 20),
        .arenasPastNewEnd(path: "/dev/shm/x", size: 16 << 20, arenas: [ArenaPastEnd(name: "a\nb", bytesPastEnd: 4 << 20),
                                                                      ArenaPastEnd(name: "c", bytesPastEnd: 2 << 20)]),
        .sizeAboveHeap(path: "/dev/shm/x", requested: 64 << 20, heapSize: 32 << 20),
        .resizeNeedsBothCopies(path: "/dev/shm/x", copy: "primary", detail: "unreadable: media error at device offset 4096"),
        .deviceLayoutChanged(path: "/dev/dax0.0", differences: ["region id is 1, was 0", "a\nb"]),
        .generationExhausted(path: "/dev/shm/x"),
        .metadataWriteFailed(path: "/dev/shm/x", copy: "secondary", reason: "media error at device offset 31457280"),
        .inUse(path: "/dev/shm/x"),
        .deviceTooLarge(path: "/dev/shm/x", size: UInt64.max),
        .mappingMisaligned(path: "/dev/dax0.0", address: 0x7f00_0010_0000, alignment: 1 << 30),
        .sysfs(path: "/dev/dax0.0", reason: "cannot read /sys/dev/char/251:3/size: No such file or directory"),
        .io(path: "/dev/shm/x", operation: "open", errno: EACCES, message: String(cString: strerror(EACCES))),
        .badBlocksUnavailable(path: "/dev/dax0.0", reason: "pmem2_badblock_context_new failed"),
        .mediaError(path: "/dev/dax0.0", deviceOffset: 4096, location: "arena \"a\" at offset 4096"),
    ]

    /// The case's name (every case has associated values, so the mirror has one child).
    static func caseName(_ e: HeapError) -> String {
        Mirror(reflecting: e).children.first?.label ?? "\(e)"
    }

    @Test func everyDescriptionIsOneNonEmptyLine() {
        #expect(Set(Self.oneOfEach.map(Self.caseName)).count == Self.oneOfEach.count)
        for error in Self.oneOfEach {
            let d = error.description
            #expect(!d.isEmpty, "\(Self.caseName(error))")
            #expect(!d.contains("\n") && !d.contains("\r"), "\(Self.caseName(error)): \(d)")
            #expect(d == "\(error)")
        }
        #expect(HeapError.noSpace(requested: 10 << 20, available: 3 << 20).description.contains("10 MiB"))
        #expect(HeapError.invalidName("a\nb", reason: "x").description.contains("\"a\\nb\""))
        // Equatable: the associated values matter.
        #expect(HeapError.nameTaken("a") != .nameTaken("b"))
        #expect(HeapError.nameTaken("a") != .unknownArena("a"))
    }

    /// Arena names come from callers; an unknown one can hold a newline. The description
    /// must stay one line (as `invalidName` does by escaping).
    @Test func unknownArenaDescriptionStaysOneLineForAnyName() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 8 << 20)
        let error = thrownError { _ = try heap.arena(named: "no\nsuch") }
        #expect(error as? HeapError == .unknownArena("no\nsuch"))
        let description = (error as? HeapError)?.description ?? ""
        #expect(!description.contains("\n"), "HeapError.unknownArena(\"no\\nsuch\").description spans two lines: \(description.debugDescription)")
    }

    /// Paths come from callers too; Linux allows a newline in a file name.
    @Test func pathDescriptionsStayOneLineForAnyPath() {
        let path = tempPath("new\nline")
        let error = thrownError { _ = try Heap.open(path: path) }
        #expect(error as? HeapError == .notFound(path: path))
        let description = (error as? HeapError)?.description ?? ""
        #expect(!description.contains("\n"), "HeapError.notFound(path: <path with a newline>).description spans two lines: \(description.debugDescription)")
    }
}
