// The data plane: copying and scoped access across extents, durability calls, zeroed new
// space, persistent references, and what another mapping (a reopen, another process)
// sees of the bytes and extents.

import DaxHeap
import DaxMetadata
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct DataPlaneTests {
    /// A 64 MiB heap whose arena "frag" has 8 extents of 2 MiB then one of 4 MiB (20 MiB).
    static func makeFragmentedHeap(_ path: String) throws -> (Heap, Arena) {
        let heap = try Heap.create(path: path, size: 64 << 20)
        let frag = try makeDiscontiguousArena(on: heap, named: "frag", extents: 8, tail: 4 << 20)
        return (heap, frag)
    }

    @Test func fragmentedArenaHasTheExpectedShape() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let (heap, frag) = try Self.makeFragmentedHeap(path)
        let info = try frag.info
        #expect(info.size == 20 << 20)
        #expect(info.extents.count == 9)
        #expect(info.extents.map(\.length) == Array(repeating: twoMiB, count: 8) + [4 << 20])
        #expect(info.extents.map(\.arenaOffset) == (0 ..< 9).map { UInt64($0) * twoMiB })
        // Spacer arenas sit between every two extents.
        #expect(info.extents.map(\.deviceOffset) == (0 ..< 9).map { twoMiB + UInt64($0) * 2 * twoMiB })
        #expect(heap.check().isHealthy)
    }

    @Test(arguments: [
        (100, 1000),  // inside one extent
        ((2 << 20) - 500, 1000),  // across one boundary
        ((2 << 20) - 1, 2),  // one byte either side
        (1 << 20, 15 << 20),  // across seven boundaries
        (0, 20 << 20),  // the whole arena
        ((16 << 20) - 7, (4 << 20) + 7),  // into and to the end of the last extent
    ] as [(UInt64, Int)])
    func copyingRoundTrip(offset: UInt64, count: Int) throws {
        let path = tempPath()
        defer { removeFile(path) }
        let (_, frag) = try Self.makeFragmentedHeap(path)
        let data = pattern(count, seed: offset &+ UInt64(count))
        try frag.write(data, at: offset)
        #expect(sameBytes(try frag.read(at: offset, count: count), data), "frag.read(at: offset, count: count) differs")
        // Untouched bytes around it stay zero.
        if offset > 0 { #expect(try frag.read(at: offset - 1, count: 1) == [0]) }
        if offset + UInt64(count) < 20 << 20 { #expect(try frag.read(at: offset + UInt64(count), count: 1) == [0]) }
        // The raw-buffer forms agree.
        var back = [UInt8](repeating: 0xEE, count: count)
        try back.withUnsafeMutableBytes { raw in try frag.read(into: raw, at: offset) }
        #expect(sameBytes(back, data), "back differs")
        try pattern(count, seed: 99).withUnsafeBytes { raw in try frag.write(raw, at: offset) }
        #expect(sameBytes(try frag.read(at: offset, count: count), pattern(count, seed: 99)), "frag.read(at: offset, count: count) differs")
        // And the bytes are where the extents say, in the file.
        try frag.persist(at: offset, count: UInt64(count))
        let viaFile = try bytesThroughExtents(try frag.info, path: path, offset: offset, count: count)
        #expect(sameBytes(viaFile, pattern(count, seed: 99)), "the file through the extents differs")
    }

    @Test func durabilityCallsAcrossExtents() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let (_, frag) = try Self.makeFragmentedHeap(path)
        let size = 20 << 20
        // memcpyPersist across all extents.
        let data = pattern(size - 3, seed: 5)
        try frag.memcpyPersist(at: 1, data)
        #expect(sameBytes(try frag.read(at: 1, count: size - 3), data), "frag.read(at: 1, count: size - 3) differs")
        try data.withUnsafeBytes { raw in try frag.memcpyPersist(at: 2, from: UnsafeRawBufferPointer(rebasing: raw[0 ..< 4 << 20])) }
        #expect(try frag.read(at: 2, count: 4 << 20) == Array(data[0 ..< 4 << 20]))
        // memsetPersist exactly over a boundary: nothing outside the range changes.
        let b = twoMiB
        let around = try frag.read(at: b - 4, count: 8)
        try frag.memsetPersist(at: b - 3, value: 0x77, count: 6)
        let after = try frag.read(at: b - 4, count: 8)
        #expect(after == [around[0]] + Array(repeating: 0x77, count: 6) + [around[7]])
        // A long memset over many extents.
        try frag.memsetPersist(at: 3 << 20, value: 0xA5, count: 12 << 20)
        #expect(sameBytes(try frag.read(at: 3 << 20, count: 12 << 20), Array(repeating: 0xA5, count: 12 << 20)), "frag.read(at: 3 << 20, count: 12 << 20) differs")
        // flush + drain and persist over several extents, and over the whole arena.
        try frag.write(pattern(6 << 20, seed: 6), at: 1 << 20)
        try frag.flush(at: 1 << 20, count: 3 << 20)
        try frag.flush(at: 4 << 20, count: 3 << 20)
        frag.drain()
        try frag.persist(at: 0, count: 20 << 20)
        // Everything above is visible in the file through the extents.
        var expected = [UInt8](repeating: 0, count: size)
        expected[1] = data[0]
        expected.replaceSubrange(2 ..< 2 + (4 << 20), with: data[0 ..< 4 << 20])
        expected.replaceSubrange((4 << 20) + 2 ..< size - 2, with: data[(4 << 20) + 1 ..< size - 3])
        expected.replaceSubrange(Int(b) - 3 ..< Int(b) + 3, with: Array(repeating: 0x77, count: 6))
        expected.replaceSubrange(3 << 20 ..< 15 << 20, with: Array(repeating: 0xA5, count: 12 << 20))
        expected.replaceSubrange(1 << 20 ..< 7 << 20, with: pattern(6 << 20, seed: 6))
        #expect(sameBytes(try frag.read(at: 0, count: size), expected), "frag.read(at: 0, count: size) differs")
        #expect(sameBytes(try bytesThroughExtents(try frag.info, path: path, offset: 0, count: size), expected))
    }

    @Test func scopedAccessExtentByExtent() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let (_, frag) = try Self.makeFragmentedHeap(path)
        let size: UInt64 = 20 << 20
        let data = pattern(Int(size), seed: 11)
        var offset: UInt64 = 0
        var runs: [UInt64] = []
        while offset < size {
            let n = try frag.contiguousBytes(at: offset)
            #expect(n > 0)
            runs.append(n)
            try frag.withUnsafeMutableBytes(at: offset, count: Int(n)) { raw in
                raw.copyBytes(from: data[Int(offset) ..< Int(offset + n)])
            }
            try frag.persist(at: offset, count: n)
            offset += n
        }
        #expect(try frag.contiguousBytes(at: size) == 0)
        #expect(runs == (try frag.info.extents.map(\.length)))
        #expect(sameBytes(try frag.read(at: 0, count: Int(size)), data), "frag.read(at: 0, count: Int(size)) differs")
        // Mid-extent contiguity, and reading back through the scoped read.
        #expect(try frag.contiguousBytes(at: (2 << 20) + 100) == (2 << 20) - 100)
        #expect(try frag.contiguousBytes(at: (17 << 20)) == 3 << 20)
        let piece = try frag.withUnsafeBytes(at: (2 << 20) + 100, count: 1000) { Array($0) }
        #expect(piece == Array(data[(2 << 20) + 100 ..< (2 << 20) + 1100]))
        // Pointers of one extent are contiguous in memory: the byte after the last of an
        // extent is not the next extent's first (they are apart on the device).
        let first = try frag.withUnsafeBytes(at: 0, count: 1) { UInt(bitPattern: $0.baseAddress) }
        let second = try frag.withUnsafeBytes(at: twoMiB, count: 1) { UInt(bitPattern: $0.baseAddress) }
        #expect(second - first == 2 * twoMiB)
    }

    // MARK: - New space reads as zero

    @Test func spaceOfADestroyedArenaReadsAsZeroInANewOne() throws {
        let path = tempPath()
        defer { removeFile(path) }
        do {
            let heap = try Heap.create(path: path, size: 32 << 20)
            let a = try heap.createArena(named: "a", size: 8 << 20)
            try a.memsetPersist(at: 0, value: 0xFF, count: 8 << 20)
            let extents = try a.info.extents
            try heap.destroyArena(named: "a")
            let b = try heap.createArena(named: "b", size: 8 << 20)
            #expect(try b.info.extents.map(\.deviceOffset) == extents.map(\.deviceOffset), "b should reuse a's space")
            #expect(allZero(try b.read(at: 0, count: 8 << 20)))
            // Fill b, destroy it, and grow into its space from another arena.
            try b.memsetPersist(at: 0, value: 0xEE, count: 8 << 20)
            let c = try heap.createArena(named: "c", size: 2 << 20)
            try heap.destroyArena(named: "b")
            try heap.resizeArena(named: "c", to: 12 << 20)
            #expect(allZero(try c.read(at: 0, count: 12 << 20)))
        }
        // Still zero after reopening (the zeroing is durable).
        let heap = try Heap.open(path: path)
        #expect(allZero(try heap.arena(named: "c").read(at: 0, count: 12 << 20)))
    }

    @Test func shrinkThenGrowReadsAsZeroBeyondTheKeptPart() throws {
        let path = tempPath()
        defer { removeFile(path) }
        do {
            let heap = try Heap.create(path: path, size: 32 << 20)
            let a = try heap.createArena(named: "a", size: 8 << 20)
            try a.memsetPersist(at: 0, value: 0xAB, count: 8 << 20)
            // In place: shrink and grow the same extent.
            try heap.resizeArena(named: "a", to: 2 << 20)
            try heap.resizeArena(named: "a", to: 8 << 20)
            #expect(try a.info.extents.count == 1)
            #expect(sameBytes(try a.read(at: 0, count: 2 << 20), Array(repeating: 0xAB, count: 2 << 20)), "a.read(at: 0, count: 2 << 20) differs")
            #expect(allZero(try a.read(at: 2 << 20, count: 6 << 20)))
            // Blocked in place: a neighbour takes the freed space after a shrink, the
            // neighbour is filled, destroyed, and a grows back over it.
            try a.memsetPersist(at: 0, value: 0xCD, count: 8 << 20)
            try heap.resizeArena(named: "a", to: 4 << 20)
            let n = try heap.createArena(named: "n", size: 2 << 20)
            #expect(allZero(try n.read(at: 0, count: 2 << 20)))
            try n.memsetPersist(at: 0, value: 0x11, count: 2 << 20)
            try heap.resizeArena(named: "a", to: 10 << 20)  // goes elsewhere: n is in the way
            #expect(try a.info.extents.count == 2)
            #expect(sameBytes(try a.read(at: 0, count: 4 << 20), Array(repeating: 0xCD, count: 4 << 20)), "a.read(at: 0, count: 4 << 20) differs")
            #expect(allZero(try a.read(at: 4 << 20, count: 6 << 20)))
            try heap.destroyArena(named: "n")
            try heap.resizeArena(named: "a", to: 4 << 20)
            try heap.resizeArena(named: "a", to: 16 << 20)
            #expect(allZero(try a.read(at: 4 << 20, count: 12 << 20)))
        }
        let heap = try Heap.open(path: path)
        let a = try heap.arena(named: "a")
        #expect(sameBytes(try a.read(at: 0, count: 4 << 20), Array(repeating: 0xCD, count: 4 << 20)), "a.read(at: 0, count: 4 << 20) differs")
        #expect(allZero(try a.read(at: 4 << 20, count: 12 << 20)))
    }

    // MARK: - Persistent references and reopening

    @Test func persistentReferenceSurvivesReopen() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let message = Array("a reference survives the mapping".utf8)
        let fragID: UInt64
        let refOffset: UInt64 = (6 << 20) - 10  // crosses an extent boundary
        do {
            let (heap, frag) = try Self.makeFragmentedHeap(path)
            fragID = frag.id
            let root = try heap.createArena(named: "root", size: 2 << 20)
            try frag.memcpyPersist(at: refOffset, message)
            let reference = try frag.reference(at: refOffset)
            #expect(reference == PersistentReference(arenaID: frag.id, offset: refOffset))
            #expect(MemoryLayout<PersistentReference>.size == 16)
            // Store the reference itself on the heap, as the type invites.
            try withUnsafeBytes(of: reference) { raw in try root.memcpyPersist(at: 0, from: raw) }
            #expect(try heap.resolve(reference).name == "frag")
        }
        let heap = try Heap.open(path: path)
        let root = try heap.arena(named: "root")
        let stored = try root.withUnsafeBytes(at: 0, count: 16) { $0.loadUnaligned(as: PersistentReference.self) }
        #expect(stored == PersistentReference(arenaID: fragID, offset: refOffset))
        let arena = try heap.resolve(stored)
        #expect(arena.name == "frag")
        #expect(arena.id == fragID)
        #expect(try arena.read(at: stored.offset, count: message.count) == message)
        #expect(try heap.arena(named: "frag").id == fragID)
    }

    /// The doc of `Heap.resolve`: "The arena a reference points into, and the reference's
    /// offset checked against it." An offset past the arena's end must be refused, as
    /// `Arena.reference(at:)` refuses to make one.
    @Test func resolveChecksTheReferenceOffset() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 16 << 20)
        let a = try heap.createArena(named: "a", size: 4 << 20)
        #expect(try heap.resolve(PersistentReference(arenaID: a.id, offset: 4 << 20)).name == "a")
        let beyond = PersistentReference(arenaID: a.id, offset: (4 << 20) + 1)
        #expect(throws: HeapError.outOfRange(arena: "a", offset: (4 << 20) + 1, count: 0, arenaSize: 4 << 20),
                "heap.resolve accepted a reference past the end of its arena") {
            try heap.resolve(beyond)
        }
        // Also after a shrink left a stored reference beyond the end.
        let inside = try a.reference(at: (3 << 20) + 5)
        try heap.resizeArena(named: "a", to: 2 << 20)
        #expect(throws: HeapError.outOfRange(arena: "a", offset: (3 << 20) + 5, count: 0, arenaSize: 2 << 20),
                "heap.resolve accepted a reference beyond a shrunk arena") {
            try heap.resolve(inside)
        }
    }

    /// Several arenas with data; returns the data of each by name.
    static func populate(_ heap: Heap) throws -> [String: [UInt8]] {
        var data: [String: [UInt8]] = [:]
        _ = try makeDiscontiguousArena(on: heap, named: "frag", extents: 4, tail: 2 << 20)
        try heap.createArena(named: "one", size: 4 << 20)
        try heap.resizeArena(named: "frag-spacer-1", to: 4 << 20)
        for (i, info) in heap.arenas.enumerated() {
            let bytes = pattern(Int(info.size), seed: UInt64(i) + 100)
            try heap.arena(named: info.name).memcpyPersist(at: 0, bytes)
            data[info.name] = bytes
        }
        return data
    }

    @Test func dataAndExtentsAreTheSameAfterReopen() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let infos: [ArenaInfo]
        let data: [String: [UInt8]]
        let uuid: String
        let generation: UInt64
        let available: UInt64
        do {
            let heap = try Heap.create(path: path, size: 64 << 20)
            data = try Self.populate(heap)
            infos = heap.arenas
            uuid = heap.uuid
            generation = heap.generation
            available = heap.availableSize
            #expect(infos.contains { $0.extents.count > 1 })
        }
        for mode in [HeapMode.readWrite, .readOnly] {
            let heap = try Heap.open(path: path, mode: mode)
            #expect(heap.arenas == infos)
            #expect(heap.uuid == uuid)
            #expect(heap.generation == generation)
            #expect(heap.availableSize == available)
            #expect(heap.repairs.isEmpty)
            for info in infos {
                let arena = try heap.arena(named: info.name)
                #expect(arena.id == info.id)
                #expect(try arena.info == info)
                #expect(sameBytes(try arena.read(at: 0, count: Int(info.size)), data[info.name] ?? []), "arena.read(at: 0, count: Int(info.size)) differs")
            }
        }
    }

    @Test(.enabled(if: executableExists("/usr/bin/od"), "od(1) is not installed at /usr/bin/od"))
    func anotherProcessSeesTheBytesAndExtents() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let infos: [ArenaInfo]
        let data: [String: [UInt8]]
        do {
            let heap = try Heap.create(path: path, size: 64 << 20)
            data = try Self.populate(heap)
            infos = heap.arenas
            // While the heap is open (and mapped MAP_SHARED here), the child sees the bytes.
            try Self.compareInChild(path: path, infos: infos, data: data, deviceSize: 64 << 20)
        }
        // And after it is closed.
        try Self.compareInChild(path: path, infos: infos, data: data, deviceSize: 64 << 20)
        // And a reopen agrees with what the child read.
        let heap = try Heap.open(path: path, mode: .readOnly)
        #expect(heap.arenas == infos)
    }

    /// Reads both metadata copies and a few pieces of every extent in a child process (od),
    /// and compares them with the arenas' extents and data.
    static func compareInChild(path: String, infos: [ArenaInfo], data: [String: [UInt8]], deviceSize: UInt64,
                               sourceLocation: SourceLocation = #_sourceLocation) throws {
        for copyOffset in [Geometry.primaryOffset, Geometry.secondaryOffset(deviceSize: deviceSize)] {
            let header = try readBytesInChildProcess(path: path, offset: copyOffset, count: MetadataCopy.headerSize)
            let tableLength = try #require(header.withUnsafeBytes { MetadataCopy.claimedTableLength(header: $0) }, sourceLocation: sourceLocation)
            let image = try readBytesInChildProcess(path: path, offset: copyOffset, count: MetadataCopy.headerSize + tableLength)
            let metadata = try MetadataCopy.decode(image).get()
            #expect(metadata.deviceSize == deviceSize, sourceLocation: sourceLocation)
            let recorded = metadata.arenas.sorted { $0.name < $1.name }
            #expect(recorded.map(\.name) == infos.map(\.name), sourceLocation: sourceLocation)
            #expect(recorded.map(\.id) == infos.map(\.id), sourceLocation: sourceLocation)
            for (record, info) in zip(recorded, infos) {
                #expect(record.extents.map { [$0.deviceOffset, $0.arenaOffset, $0.length] }
                    == info.extents.map { [$0.deviceOffset, $0.arenaOffset, $0.length] }, sourceLocation: sourceLocation)
            }
        }
        for info in infos {
            let bytes = try #require(data[info.name], sourceLocation: sourceLocation)
            for extent in info.extents {
                // The first and last 512 bytes of each extent, and 512 from its middle.
                for within in [0, extent.length / 2, extent.length - 512] {
                    let child = try readBytesInChildProcess(path: path, offset: extent.deviceOffset + within, count: 512)
                    let start = Int(extent.arenaOffset + within)
                    #expect(child == Array(bytes[start ..< start + 512]),
                            "arena \(info.name) offset \(start) (device \(extent.deviceOffset + within))", sourceLocation: sourceLocation)
                }
            }
        }
    }

    // MARK: - Facts

    @Test func persistenceModeFollowsTheEnvironment() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let forced = getenv("PMEM_IS_PMEM_FORCE").map { String(cString: $0) } == "1"
        let expected: Persistence = forced ? .pmem : .msync
        do {
            let heap = try Heap.create(path: path, size: 8 << 20)
            #expect(heap.persistence == expected, "PMEM_IS_PMEM_FORCE=\(forced ? "1" : "unset") on /dev/shm")
            #expect(heap.kind == .file)
            #expect(heap.alignment == 2 << 20)
            #expect(heap.deviceSize == 8 << 20)
            #expect(heap.path == path)
            #expect(heap.mode == .readWrite)
        }
        for mode in [HeapMode.readWrite, .readOnly] {
            let heap = try Heap.open(path: path, mode: mode)
            #expect(heap.persistence == expected, "\(mode)")
            #expect(heap.mode == mode)
        }
    }
}

extension DataPlaneTests {
    /// Bytes of `path` the file system has allocated (st_blocks, in 512-byte units).
    static func allocatedBytes(_ path: String) -> UInt64 {
        var st = stat()
        guard stat(path, &st) == 0 else { return 0 }
        return UInt64(st.st_blocks) * 512
    }

    /// prefault allocates every piece of a discontiguous range up front and changes no
    /// byte; it refuses a range past the end or a read-only heap without touching the file.
    @Test func prefaultAllocatesTheRangeAndChangesNoByte() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let (heap, frag) = try Self.makeFragmentedHeap(path)
        let info = try frag.info
        let bytes = pattern(4096, seed: 5)
        try frag.memcpyPersist(at: (2 << 20) - 2048, bytes)  // straddles the first boundary
        let before = Self.allocatedBytes(path)
        let range: (UInt64, UInt64) = (1 << 20, 8 << 20)   // crosses four extents
        guard try frag.prefault(at: range.0, count: range.1) else { return }  // kernel before 5.14: nothing to see
        // Every page of the range is now allocated (the heap starts sparse), whichever extent it is in.
        #expect(Self.allocatedBytes(path) >= before + range.1 - 2 * 4096)
        #expect(try frag.read(at: (2 << 20) - 2048, count: 4096) == bytes)
        #expect(try bytesThroughExtents(info, path: path, offset: range.0, count: 4096) == [UInt8](repeating: 0, count: 4096))
        let size = info.size
        try expectRefused(.outOfRange(arena: "frag", offset: size - 4096, count: 8192, arenaSize: size), heap: heap, path: path) {
            try frag.prefault(at: size - 4096, count: 8192)
        }
    }

    @Test func prefaultRefusesAReadOnlyHeap() throws {
        let path = tempPath()
        defer { removeFile(path) }
        do { _ = try Heap.create(path: path, size: 32 << 20).createArena(named: "r", size: 2 << 20) }
        let heap = try Heap.open(path: path, mode: .readOnly)
        let arena = try heap.arena(named: "r")
        let image = try FileImage(path)
        #expect(throws: HeapError.readOnly(path: path)) { try arena.prefault(at: 0, count: 4096) }
        #expect(try FileImage(path) == image)
    }
}
