// Arena windows: one contiguous range of addresses over an arena's discontiguous extents,
// kept valid while the arena grows, refusing a shrink or destroy while open.

import DaxDevice
import DaxHeap
import DaxTestSupport
import Foundation
import Logging
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The permissions (`rw-s`, `r--s`, `---p`) of the mapping holding `address`, from
/// /proc/self/maps; nil if nothing is mapped there.
func protection(at address: UnsafeRawPointer) throws -> String? {
    try mapping(at: address)?.permissions
}

/// The line of /proc/self/maps that covers `address`: its permissions ("rw-s") and the
/// file it maps ("" for an anonymous mapping), or nil when nothing is mapped there.
func mapping(at address: UnsafeRawPointer) throws -> (permissions: String, file: String)? {
    // read(2) to the end: /proc files report size 0, and some readers stop at one page.
    let fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw TestFailure("open /proc/self/maps: errno \(errno)") }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        guard n >= 0 else { throw TestFailure("read /proc/self/maps: errno \(errno)") }
        if n == 0 { break }
        bytes += chunk[0 ..< n]
    }
    let maps = String(decoding: bytes, as: UTF8.self)
    let at = UInt(bitPattern: address)
    for line in maps.split(separator: "\n") {
        // address perms offset dev inode [path, which may hold spaces]
        let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
        let bounds = fields[0].split(separator: "-").compactMap { UInt($0, radix: 16) }
        if bounds.count == 2, bounds[0] <= at, at < bounds[1] {
            let file = fields.count > 5 ? fields[5].trimmingCharacters(in: .whitespaces) : ""
            return (String(fields[1]), file)
        }
    }
    return nil
}

@Suite struct ArenaWindowTests {
    @Test func aWindowMatchesTheOffsetAPIAtEveryExtentBoundary() throws {
        let path = tempPath("window")
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 64 << 20)
        let arena = try makeDiscontiguousArena(on: heap, named: "frag", extents: 4, tail: twoMiB)
        let info = try arena.info
        try #require(info.extents.count >= 4, "\(info.extents)")
        let window = try arena.mapWindow()
        defer { window.close() }
        #expect(UInt(bitPattern: window.base) % UInt(twoMiB) == 0, "base \(window.base) is not 2 MiB aligned")
        #expect(window.size == info.size)
        #expect(window.reservation == heap.usableSize)
        #expect(arena.openWindowCount == 1)
        for (i, extent) in info.extents.enumerated() where extent.arenaOffset > 0 {
            let boundary = extent.arenaOffset
            // Through the window, read back through the offset API and from the file.
            let written = pattern(8192, seed: UInt64(i))
            try window.memcpyPersist(at: boundary - 4096, written)
            #expect(sameBytes(try arena.read(at: boundary - 4096, count: 8192), written), "boundary \(boundary)")
            #expect(sameBytes(try bytesThroughExtents(info, path: path, offset: boundary - 4096, count: 8192), written))
            // Through the offset API, read back through the window, scoped and raw.
            let other = pattern(8192, seed: 100 + UInt64(i))
            try arena.memcpyPersist(at: boundary - 100, other)
            #expect(sameBytes(try window.withUnsafeBytes(at: boundary - 100, count: 8192) { Array($0) }, other))
            #expect(window.base.load(fromByteOffset: Int(boundary), as: UInt8.self) == other[100])
            // A value straddling the boundary, and a fill across it.
            let value = UInt64(0x0102_0304_0506_0708) &* UInt64(i + 1)
            try window.storeBytes(of: value, at: boundary - 3)
            #expect(try window.load(as: UInt64.self, at: boundary - 3) == value)
            #expect(try arena.read(at: boundary - 3, count: 8) == withUnsafeBytes(of: value) { Array($0) })
            try window.withUnsafeMutableBytes(at: boundary - 2, count: 4) { $0.copyBytes(from: [9, 8, 7, 6]) }
            try window.persist(at: boundary - 2, count: 4)
            #expect(try arena.read(at: boundary - 2, count: 4) == [9, 8, 7, 6])
            try window.memsetPersist(at: boundary - 10, value: 0xEE, count: 20)
            #expect(try arena.read(at: boundary - 10, count: 20) == [UInt8](repeating: 0xEE, count: 20))
        }
        // The last byte, and nothing past it.
        try window.storeBytes(of: UInt8(0x5A), at: info.size - 1)
        #expect(try arena.read(at: info.size - 1, count: 1) == [0x5A])
        #expect(throws: HeapError.outOfRange(arena: "frag", offset: info.size - 1, count: 2, arenaSize: info.size)) {
            try window.withUnsafeBytes(at: info.size - 1, count: 2) { _ in }
        }
        #expect(throws: HeapError.outOfRange(arena: "frag", offset: 0, count: info.size + 1, arenaSize: info.size)) {
            try window.persist(at: 0, count: info.size + 1)
        }
    }

    @Test func dataWrittenThroughAWindowSurvivesReopenInAnotherProcess() throws {
        let path = tempPath("window-reopen")
        defer { removeFile(path) }
        let data = pattern(4 << 20, seed: 42)  // arena bytes 1 MiB ..< 5 MiB: both boundaries
        let info: ArenaInfo
        do {
            let heap = try Heap.create(path: path, size: 32 << 20)
            let arena = try makeDiscontiguousArena(on: heap, named: "log", extents: 2, tail: twoMiB)
            info = try arena.info
            let window = try arena.mapWindow()
            try window.memcpyPersist(at: oneMiB, data)
            try window.store(0xFEED_FACE, at: 8)
            try window.persist(at: 8, count: 8)
        }
        // od, in another process, reads the file where the extents say the bytes are.
        let extentOffsets: [UInt64] = [0, 2 << 20, 4 << 20]
        try #require(info.extents.map(\.arenaOffset) == extentOffsets, "\(info.extents)")
        for extent in info.extents where extent.arenaOffset > 0 {
            let at = extent.arenaOffset - 512
            var expected: [UInt8] = []
            for piece in [(at, 512), (extent.arenaOffset, 512)] {
                let e = info.extents.last { $0.arenaOffset <= piece.0 }!
                expected += try readBytesInChildProcess(path: path, offset: e.deviceOffset + piece.0 - e.arenaOffset, count: piece.1)
            }
            #expect(expected == Array(data[Int(at - oneMiB) ..< Int(at - oneMiB) + 1024]), "around arena offset \(extent.arenaOffset)")
        }
        // Reopened, a new window sees all of it.
        let heap = try Heap.open(path: path)
        let window = try heap.arena(named: "log").mapWindow()
        #expect(try window.load(at: 8) == 0xFEED_FACE)
        #expect(sameBytes(try window.withUnsafeBytes(at: oneMiB, count: data.count) { Array($0) }, data))
    }

    /// Readers keep using raw pointers below the old size while the arena grows 24 times,
    /// onto new discontiguous extents each time (a spacer arena blocks growth in place).
    @Test func aWindowStaysValidWhileAnotherThreadGrowsTheArena() throws {
        let path = tempPath("window-grow")
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 128 << 20)
        let arena = try heap.createArena(named: "grow", size: twoMiB)
        let window = try arena.mapWindow()
        defer { window.close() }
        let first = pattern(Int(twoMiB), seed: 9)
        try window.memcpyPersist(at: 0, first)
        let base = UInt(bitPattern: window.base)
        let stop = Flag(), failures = Failures(), written = Counter(), rounds = Counter()
        let reader = TestThread {
            let p = UnsafeRawPointer(bitPattern: base)!
            while !stop.isSet {
                let marked = written.current
                if first.withUnsafeBytes({ memcmp(p, $0.baseAddress!, $0.count) }) != 0 { failures.record("the first 2 MiB changed") }
                for j in stride(from: 1, through: marked, by: 1) {
                    let word = (p + j * Int(twoMiB)).load(as: UInt64.self)
                    if word != UInt64(j) { failures.record("word at extent \(j) is \(word)") }
                }
                rounds.next()
            }
        }
        for i in 1 ... 24 {
            try heap.createArena(named: "spacer-\(i)", size: twoMiB)
            let size = UInt64(i + 1) * twoMiB
            if i % 2 == 0 { try heap.resizeArena(named: "grow", to: size) } else { try arena.resize(to: size) }
            #expect(window.size == size)
            #expect(try window.load(at: size - twoMiB) == 0, "new bytes read as zero")
            try window.store(UInt64(i), at: size - twoMiB)
            written.next()
        }
        while rounds.current < 2 { sched_yield() }
        stop.set()
        reader.join()
        #expect(failures.all.isEmpty, "\(failures.all)")
        #expect(try arena.info.extents.count == 25)
        #expect(sameBytes(try arena.read(at: 0, count: Int(twoMiB)), first))
        for j in 1 ... 24 { #expect(try arena.read(at: UInt64(j) * twoMiB, count: 8) == withUnsafeBytes(of: UInt64(j)) { Array($0) }) }
    }

    @Test func shrinkAndDestroyAreRefusedWhileMappedAndAllowedAfterClose() throws {
        let path = tempPath("window-busy")
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 32 << 20)
        let log = try heap.createArena(named: "log", size: 8 << 20)
        let first = try log.mapWindow()
        let second = try log.mapWindow()
        #expect(try mapping(at: first.base)?.file == path)
        #expect(HeapError.arenaMapped(arena: "log", windows: 2).description == "arena \"log\" is mapped by 2 windows; close them first")
        try expectRefused(.arenaMapped(arena: "log", windows: 2), heap: heap, path: path) { try heap.resizeArena(named: "log", to: 4 << 20) }
        try expectRefused(.arenaMapped(arena: "log", windows: 2), heap: heap, path: path) { try log.resize(to: 2 << 20) }
        try expectRefused(.arenaMapped(arena: "log", windows: 2), heap: heap, path: path) { try heap.destroyArena(named: "log") }
        // Closed on another thread: the count follows.
        TestThread { second.close() }.join()
        #expect(log.openWindowCount == 1)
        try expectRefused(.arenaMapped(arena: "log", windows: 1), heap: heap, path: path) { try heap.destroyArena(named: "log") }
        first.close()
        first.close()  // idempotent
        #expect(log.openWindowCount == 0)
        #expect(!first.isOpen)
        #expect(throws: HeapError.windowClosed(arena: "log")) { try first.load(at: 0) }
        // Other tests run in parallel and may map something new at the freed address, so
        // the check is that nothing there maps this heap's file any more.
        #expect(try mapping(at: first.base)?.file != path, "the window's extents are unmapped")
        // A window nobody keeps closes itself.
        _ = try log.mapWindow()
        #expect(log.openWindowCount == 0)
        try heap.resizeArena(named: "log", to: 4 << 20)
        try heap.destroyArena(named: "log")
    }

    @Test func theWindowCountStaysExactWhenWindowsCloseOnManyThreads() throws {
        let path = tempPath("window-count")
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        let arena = try heap.createArena(named: "a", size: twoMiB)
        let windows = try (0 ..< 16).map { _ in try arena.mapWindow(reserving: 4 << 20) }
        #expect(arena.openWindowCount == 16)
        // Every window closed twice, by two of four threads, while the arena grows.
        let threads = (0 ..< 4).map { t in TestThread { for w in windows.indices where w % 2 == t % 2 { windows[w].close() } } }
        try arena.resize(to: 4 << 20)
        for thread in threads { thread.join() }
        #expect(arena.openWindowCount == 0)
        try arena.resize(to: twoMiB)
    }

    @Test func reservationsAreCheckedAndExhaustionChangesNothing() throws {
        let path = tempPath("window-reserve")
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 32 << 20)
        let a = try heap.createArena(named: "a", size: 4 << 20)
        for bad: UInt64 in [0, 3 << 20, 2 << 20, 1] {
            try expectRefused(.invalidReservation(arena: "a", reservation: bad, arenaSize: 4 << 20), heap: heap) { _ = try a.mapWindow(reserving: bad) }
        }
        // More address space than there is: mmap's ENOMEM (at the limit of Int, ours).
        let noMemory = HeapError.io(path: path, operation: "mmap", errno: ENOMEM, message: String(cString: strerror(ENOMEM)))
        for huge: UInt64 in [1 << 62, UInt64.max / twoMiB * twoMiB] {
            try expectRefused(noMemory, heap: heap) { _ = try a.mapWindow(reserving: huge) }
        }
        #expect(a.openWindowCount == 0)
        let window = try a.mapWindow(reserving: 6 << 20)
        #expect(window.reservation == 6 << 20)
        try a.resize(to: 6 << 20)
        #expect(window.size == 6 << 20)
        try expectRefused(.windowReservationExceeded(arena: "a", size: 8 << 20, reservation: 6 << 20), heap: heap, path: path) {
            try heap.resizeArena(named: "a", to: 8 << 20)
        }
        #expect(window.size == 6 << 20)
        // More than the heap's usable size is allowed: it is only address space.
        let large = try a.mapWindow(reserving: 4 * heap.usableSize)
        #expect(large.size == 6 << 20)
        window.close()
        try a.resize(to: 8 << 20)
        #expect(large.size == 8 << 20)
    }

    /// A grow whose metadata commit fails leaves the window as it was: the new range is
    /// mapped before the commit and given back to the reservation after the failure.
    @Test func aFailedGrowGivesTheMappedRangeBack() throws {
        let path = tempPath("window-fail")
        defer { removeFile(path) }
        do {
            let heap = try Heap.create(path: path, size: 32 << 20)
            try heap.createArena(named: "a", size: twoMiB)
        }
        let faults = MetadataFaults([.init(copy: .primary, storedBytes: 0, kind: .io, times: 1)])
        let heap = try Heap.open(path: path, mode: .readWrite, logger: Logger(label: "test"), sysfsRoot: "/sys", faults: faults)
        let arena = try heap.arena(named: "a")
        let window = try arena.mapWindow()
        #expect(try protection(at: window.base) == "rw-s")
        #expect(try protection(at: window.base + Int(twoMiB)) == "---p")
        // (The generation moves: the current table is written back under a new one.)
        let before = (heap.arenas, heap.availableSize)
        let error = thrownError { try arena.resize(to: 4 << 20) }
        guard case .metadataWriteFailed = error as? HeapError else {
            Issue.record("expected metadataWriteFailed, got \(String(describing: error))")
            return
        }
        #expect(heap.arenas == before.0 && heap.availableSize == before.1)
        #expect(window.size == twoMiB)
        #expect(try protection(at: window.base + Int(twoMiB)) == "---p", "the new range is back in the reservation")
        try arena.resize(to: 4 << 20)  // the fault was one-shot
        #expect(window.size == 4 << 20)
        #expect(try protection(at: window.base + Int(twoMiB)) == "rw-s")
    }

    @Test func referencesAddressesAndAtomicWords() throws {
        let path = tempPath("window-refs")
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 32 << 20)
        let a = try makeDiscontiguousArena(on: heap, named: "a", extents: 2)
        let b = try heap.createArena(named: "b", size: twoMiB)
        let window = try a.mapWindow()
        let size = window.size
        let reference = try a.reference(at: 3 << 20)
        let address = try window.address(of: reference)
        #expect(address == window.base + (3 << 20))
        #expect(try window.reference(at: address) == reference)
        #expect(try window.reference(at: window.base + Int(size)) == PersistentReference(arenaID: a.id, offset: size))
        #expect(throws: HeapError.foreignReference(arena: "a", referenceArenaID: b.id)) { try window.address(of: b.reference(at: 0)) }
        #expect(throws: HeapError.outOfRange(arena: "a", offset: size + 1, count: 0, arenaSize: size)) {
            try window.address(of: PersistentReference(arenaID: a.id, offset: size + 1))
        }
        let outside = UInt(bitPattern: window.base) + UInt(size) + 1
        #expect(throws: HeapError.addressOutsideWindow(arena: "a", address: outside, windowSize: size)) {
            try window.reference(at: UnsafeRawPointer(bitPattern: outside)!)
        }
        // 8-byte words, the last one of the first extent included.
        let word = twoMiB - 8
        try window.store(5, at: word)
        #expect(try window.load(at: word) == 5)
        #expect(try window.compareExchange(expected: 4, desired: 9, at: word) == (false, 5))
        #expect(try window.compareExchange(expected: 5, desired: 9, at: word) == (true, 5))
        #expect(try window.wrappingAdd(3, at: word) == 9)
        #expect(try a.read(at: word, count: 8) == withUnsafeBytes(of: UInt64(12)) { Array($0) })
        #expect(throws: HeapError.misalignedAccess(arena: "a", offset: 4)) { try window.load(at: 4) }
        #expect(throws: HeapError.outOfRange(arena: "a", offset: size, count: 8, arenaSize: size)) { try window.store(1, at: size) }
    }

    @Test func aWindowOnAReadOnlyHeapIsReadOnly() throws {
        let path = tempPath("window-ro")
        defer { removeFile(path) }
        let data = pattern(4096, seed: 3)
        do {
            let heap = try Heap.create(path: path, size: 16 << 20)
            try heap.createArena(named: "ro", size: twoMiB).memcpyPersist(at: 0, data)
        }
        let heap = try Heap.open(path: path, mode: .readOnly)
        let window = try heap.arena(named: "ro").mapWindow()
        #expect(!window.isWritable)
        #expect(try protection(at: window.base) == "r--s")
        #expect(sameBytes(try window.withUnsafeBytes(at: 0, count: 4096) { Array($0) }, data))
        let readOnly = HeapError.readOnly(path: path)
        #expect(throws: readOnly) { try window.store(1, at: 0) }
        #expect(throws: readOnly) { try window.storeBytes(of: UInt8(1), at: 0) }
        #expect(throws: readOnly) { try window.memcpyPersist(at: 0, [1]) }
        #expect(throws: readOnly) { try window.memsetPersist(at: 0, value: 1, count: 1) }
        #expect(throws: readOnly) { try window.withUnsafeMutableBytes(at: 0, count: 1) { _ in } }
        #expect(throws: readOnly) { _ = try window.compareExchange(expected: 0, desired: 1, at: 0) }
        // A store through the raw base faults (in a helper process: it must die).
        let keep = { (name: String, option: String) in
            (ProcessInfo.processInfo.environment[name].map { $0 + ":" } ?? "") + option
        }
        let run = try runToCompletion(FaultProbe.url(), ["window-store", path, "ro"], environment: [
            "ASAN_OPTIONS": keep("ASAN_OPTIONS", "handle_segv=0"), "TSAN_OPTIONS": keep("TSAN_OPTIONS", "handle_segv=0"),
            "SWIFT_BACKTRACE": "enable=no",  // the signal itself must end the probe
        ])
        #expect(run.status == SIGSEGV, "\(run.status): \(String(decoding: run.stdout, as: UTF8.self))")
        #expect(String(decoding: run.stdout, as: UTF8.self) == "mapped\n")
        #expect(sameBytes(try window.withUnsafeBytes(at: 0, count: 4096) { Array($0) }, data))
    }
}

extension DeviceTests {  // serialized with the other users of /dev/zero
    /// A device-dax with 1 GiB alignment cannot map a 2 MiB extent on its own: the window
    /// is refused with the reason, nothing changes, and the offset API keeps working.
    @Test func aWindowOnADeviceWithACoarseAlignmentIsRefused() throws {
        let sysfs = FakeSysfs()
        defer { sysfs.remove() }
        try sysfs.device(1, 5, size: "33554432\n", align: "1073741824\n")
        let run = try FaultProbe.run(["window-devdax", "/dev/zero", sysfs.root])
        let expected = HeapError.windowMisaligned(arena: "a", arenaOffset: 0, deviceOffset: 2 << 20, length: 2 << 20, alignment: 1 << 30)
        #expect(run.status == 0 && run.out == "\(expected)\nok\n", "\(run)")
        #expect(expected.description.contains("1 GiB"))
    }
}
