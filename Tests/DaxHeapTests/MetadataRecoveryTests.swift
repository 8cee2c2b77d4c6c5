// End to end recovery of the two metadata copies on real files under /dev/shm: a heap is
// created, closed, damaged with plain POSIX I/O, and opened again. Read-write, a bad or
// stale copy is rewritten from the good one; read-only, nothing is ever written; with no
// good copy, open fails and writes nothing.

import DaxHeap
import DaxMetadata
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
import DaxTestSupport

// MARK: - Helpers (file-private, prefixed to stay clear of the other test files)

private let mdrecHeapSize: UInt64 = 16 << 20
private let mdrecBlock = Int(Geometry.blockSize)
private let mdrecSecondaryOffset = Int(mdrecHeapSize) - mdrecBlock
private let mdrecCounter = Atomic<Int>(0)

/// A fresh path under /dev/shm, unique to this process and call.
private func mdrecPath(_ tag: String) -> String {
    let n = mdrecCounter.wrappingAdd(1, ordering: .relaxed).oldValue
    return "/dev/shm/daxheap-mdrec-\(getpid())-\(n)-\(tag).heap"
}

private struct MdrecError: Error, CustomStringConvertible {
    var description: String
}

private func mdrecOpen(_ path: String, _ flags: Int32) throws -> Int32 {
    let fd = open(path, flags, 0o644)
    guard fd >= 0 else { throw MdrecError(description: "open \(path): errno \(errno)") }
    return fd
}

/// `count` bytes at `offset`, or the whole file when `count` is nil.
private func mdrecRead(_ path: String, at offset: Int = 0, count: Int? = nil) throws -> [UInt8] {
    let fd = try mdrecOpen(path, O_RDONLY)
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw MdrecError(description: "fstat \(path): errno \(errno)") }
    let length = count ?? (Int(st.st_size) - offset)
    var bytes = [UInt8](repeating: 0, count: length)
    var done = 0
    while done < length {
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, length - done, off_t(offset + done)) }
        guard n > 0 else { throw MdrecError(description: "pread \(path) at \(offset + done): \(n), errno \(errno)") }
        done += n
    }
    return bytes
}

private func mdrecWrite(_ path: String, at offset: Int, _ bytes: [UInt8]) throws {
    let fd = try mdrecOpen(path, O_RDWR)
    defer { close(fd) }
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, bytes.count - done, off_t(offset + done)) }
        guard n > 0 else { throw MdrecError(description: "pwrite \(path) at \(offset + done): errno \(errno)") }
        done += n
    }
}

/// XORs one byte of the file with `mask`.
private func mdrecFlip(_ path: String, at offset: Int, mask: UInt8 = 0xFF) throws {
    let byte = try mdrecRead(path, at: offset, count: 1)[0]
    try mdrecWrite(path, at: offset, [byte ^ mask])
}

/// Whether two byte arrays are equal, with memcmp: whole files are compared, and the
/// element-wise comparison is slow in a debug build (and unreadable when it fails).
private func mdrecSame(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    guard !a.isEmpty else { return true }
    return a.withUnsafeBytes { x in b.withUnsafeBytes { y in memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 } }
}

/// Whether `a` and `b` are equal outside `except`.
private func mdrecSame(_ a: [UInt8], _ b: [UInt8], except: Range<Int>) -> Bool {
    a.count == b.count
        && mdrecSame(Array(a[..<except.lowerBound]), Array(b[..<except.lowerBound]))
        && mdrecSame(Array(a[except.upperBound...]), Array(b[except.upperBound...]))
}

private func mdrecTruncate(_ path: String, to size: Int) throws {
    guard truncate(path, off_t(size)) == 0 else { throw MdrecError(description: "truncate \(path): errno \(errno)") }
}

/// The copy in the block at `offset`: its header and the table its header claims.
private func mdrecImage(_ path: String, block offset: Int) throws -> [UInt8] {
    let header = try mdrecRead(path, at: offset, count: 64)
    let length = (0 ..< 4).reduce(0) { $0 | Int(header[56 + $1]) << (8 * $1) }
    return try mdrecRead(path, at: offset, count: 64 + min(length, MetadataCopy.maxTableLength))
}

/// Sets the copy's version in the block at `offset` and re-seals its CRC.
private func mdrecSetVersion(_ path: String, block offset: Int, to version: UInt32) throws {
    var image = try mdrecImage(path, block: offset)
    for i in 0 ..< 4 { image[8 + i] = UInt8(truncatingIfNeeded: version >> (8 * i)) }
    let crc = image.withUnsafeBytes { MetadataCopy.checksum($0) }
    for i in 0 ..< 4 { image[60 + i] = UInt8(truncatingIfNeeded: crc >> (8 * i)) }
    try mdrecWrite(path, at: offset, image)
}

/// What a heap held when it was closed.
private struct MdrecSnapshot: Equatable {
    var arenas: [ArenaInfo]
    var generation: UInt64
    var uuid: String

    init(_ heap: Heap) {
        arenas = heap.arenas
        generation = heap.generation
        uuid = heap.uuid
    }
}

private let mdrecPayload = Array("bytes that must survive every repair".utf8)

/// A 16 MiB heap with two arenas and three extents (one arena discontiguous), some data
/// written; closed on return.
///
///   alpha: [2, 6) MiB then [10, 12) MiB    γάμμα: [8, 10) MiB    free: [6, 8), [12, 14)
private func mdrecMakeHeap(_ path: String) throws -> MdrecSnapshot {
    let heap = try Heap.create(path: path, size: mdrecHeapSize)
    let alpha = try heap.createArena(named: "alpha", size: 4 << 20)
    try heap.createArena(named: "béta", size: 2 << 20)
    let gamma = try heap.createArena(named: "γάμμα", size: 2 << 20)
    try heap.resizeArena(named: "alpha", to: 6 << 20)
    try heap.destroyArena(named: "béta")
    try alpha.memcpyPersist(at: 0, mdrecPayload)
    try alpha.memcpyPersist(at: 5 << 20, mdrecPayload)
    try gamma.memcpyPersist(at: 100, mdrecPayload)
    let snapshot = MdrecSnapshot(heap)
    #expect(snapshot.arenas.map(\.name) == ["alpha", "γάμμα"])
    #expect(snapshot.arenas.first?.extents.count == 2)
    #expect(heap.check().isHealthy)
    return snapshot
}

/// Checks the arenas' data is what `mdrecMakeHeap` wrote.
private func mdrecExpectPayload(_ heap: Heap, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let alpha = try heap.arena(named: "alpha")
    let gamma = try heap.arena(named: "γάμμα")
    #expect(try alpha.read(at: 0, count: mdrecPayload.count) == mdrecPayload, sourceLocation: sourceLocation)
    #expect(try alpha.read(at: 5 << 20, count: mdrecPayload.count) == mdrecPayload, sourceLocation: sourceLocation)
    #expect(try gamma.read(at: 100, count: mdrecPayload.count) == mdrecPayload, sourceLocation: sourceLocation)
}

/// Expects both copies on the file to be valid, identical, and to hold `snapshot`.
private func mdrecExpectBothCopiesGood(_ path: String, _ snapshot: MdrecSnapshot,
                                       sourceLocation: SourceLocation = #_sourceLocation) throws {
    let primary = try mdrecImage(path, block: 0)
    let secondary = try mdrecImage(path, block: mdrecSecondaryOffset)
    #expect(primary == secondary, "the two copies differ", sourceLocation: sourceLocation)
    let decoded = MetadataCopy.decode(primary)
    guard case .success(let metadata) = decoded else {
        Issue.record("primary copy does not decode: \(decoded)", sourceLocation: sourceLocation)
        return
    }
    #expect(metadata.generation == snapshot.generation, sourceLocation: sourceLocation)
    #expect(metadata.arenas.map(\.name).sorted() == snapshot.arenas.map(\.name).sorted(), sourceLocation: sourceLocation)
    let heap = try Heap.open(path: path, mode: .readOnly)
    #expect(heap.metadataStatus.primary == MetadataCopyStatus(state: .ok, generation: snapshot.generation), sourceLocation: sourceLocation)
    #expect(heap.metadataStatus.secondary == MetadataCopyStatus(state: .ok, generation: snapshot.generation), sourceLocation: sourceLocation)
    #expect(heap.repairs.isEmpty, sourceLocation: sourceLocation)
    #expect(MdrecSnapshot(heap) == snapshot, sourceLocation: sourceLocation)
    #expect(heap.check().isHealthy, "\(heap.check().problems)", sourceLocation: sourceLocation)
    try mdrecExpectPayload(heap, sourceLocation: sourceLocation)
}

enum MetadataRecoveryCopy: String, CustomTestStringConvertible, CaseIterable {
    case primary, secondary
    var offset: Int { self == .primary ? 0 : mdrecSecondaryOffset }
    var other: MetadataRecoveryCopy { self == .primary ? .secondary : .primary }
    var testDescription: String { rawValue }
}

/// Offsets within a copy to damage: every header field, and table bytes (counts, next id,
/// an arena id, a name byte, an extent, the table's last byte). The table of
/// `mdrecMakeHeap` is 2 arenas, 3 extents: 280 bytes, so the copy ends at 344.
private let mdrecHeaderOffsets = [0, 7, 8, 12, 20, 31, 32, 40, 48, 55, 56, 57, 60, 63]
private let mdrecTableOffsets = [64, 68, 72, 80, 88, 96, 104, 105, 120, 176, 272, 288, 343]

// MARK: - The suite

@Suite(.disabled(if: threadSanitizerIsLoaded, "single-threaded: ThreadSanitizer has no race to look for here, and the plain and AddressSanitizer runs cover it")) struct MetadataRecoveryTests {
    // MARK: One copy damaged

    @Test(arguments: MetadataRecoveryCopy.allCases, mdrecHeaderOffsets + mdrecTableOffsets)
    func oneDamagedCopyIsReportedThenRepaired(copy: MetadataRecoveryCopy, offset: Int) throws {
        let path = mdrecPath("\(copy)-\(offset)")
        defer { unlink(path) }
        let before = try mdrecMakeHeap(path)
        let good = try mdrecImage(path, block: copy.other.offset)
        #expect(good.count == 344)
        #expect(offset < good.count, "damage inside the copy")
        try mdrecFlip(path, at: copy.offset + offset)
        let damaged = try mdrecRead(path)

        // Read-only: reported, used from the other copy, nothing written.
        do {
            let heap = try Heap.open(path: path, mode: .readOnly)
            #expect(heap.mode == .readOnly)
            let status = heap.metadataStatus
            let bad = copy == .primary ? status.primary : status.secondary
            let other = copy == .primary ? status.secondary : status.primary
            #expect(bad.state == .corrupt)
            #expect(!bad.detail.isEmpty)
            if offset < 8 {
                #expect(bad.detail.contains("magic"), "\(bad.detail)")
            } else if offset < 12 {
                #expect(bad.detail.contains("version"), "\(bad.detail)")
            } else if !(56 ..< 60).contains(offset) {
                #expect(bad.detail.contains("checksum"), "\(bad.detail)")
            }
            #expect(other == MetadataCopyStatus(state: .ok, generation: before.generation))
            #expect(heap.repairs.isEmpty)
            #expect(MdrecSnapshot(heap) == before)
            try mdrecExpectPayload(heap)
            let report = heap.check()
            #expect(!report.isHealthy)
            #expect(report.problems.contains { $0.contains("\(copy)") && $0.contains("corrupt") }, "\(report.problems)")
            #expect(throws: HeapError.readOnly(path: path)) { try heap.createArena(named: "nope", size: 2 << 20) }
        }
        #expect(mdrecSame(try mdrecRead(path), damaged), "a read-only open wrote to the file")

        // Read-write: repaired at open from the other copy.
        do {
            let heap = try Heap.open(path: path)
            #expect(heap.repairs.count == 1, "\(heap.repairs)")
            let line = heap.repairs.first ?? ""
            #expect(line.contains("rewrote the \(copy) metadata copy from the \(copy.other) one"), "\(line)")
            #expect(line.contains("corrupt"), "\(line)")
            #expect(heap.metadataStatus.primary == MetadataCopyStatus(state: .ok, generation: before.generation))
            #expect(heap.metadataStatus.secondary == MetadataCopyStatus(state: .ok, generation: before.generation))
            #expect(MdrecSnapshot(heap) == before)
            #expect(heap.check().isHealthy, "\(heap.check().problems)")
            try mdrecExpectPayload(heap)
        }
        #expect(try mdrecImage(path, block: copy.offset) == good)
        try mdrecExpectBothCopiesGood(path, before)
        // The repair touched only the damaged copy's image.
        let after = try mdrecRead(path)
        let touched = copy.offset ..< copy.offset + good.count
        #expect(after.count == damaged.count)
        #expect(mdrecSame(after, damaged, except: touched))
    }

    /// The repaired heap is a normal heap: it can be changed and reopened.
    @Test func aRepairedHeapKeepsWorking() throws {
        let path = mdrecPath("keeps-working")
        defer { unlink(path) }
        let before = try mdrecMakeHeap(path)
        try mdrecFlip(path, at: 48)  // the primary's generation
        let after: MdrecSnapshot
        do {
            let heap = try Heap.open(path: path)
            #expect(heap.repairs.count == 1)
            try heap.createArena(named: "delta", size: 2 << 20)
            try heap.arena(named: "delta").memcpyPersist(at: 0, mdrecPayload)
            after = MdrecSnapshot(heap)
        }
        #expect(after.generation == before.generation + 1)
        try mdrecExpectBothCopiesGood(path, after)
        let heap = try Heap.open(path: path, mode: .readOnly)
        #expect(try heap.arena(named: "delta").read(at: 0, count: mdrecPayload.count) == mdrecPayload)
    }

    // MARK: Both copies damaged

    @Test(arguments: [(20, 20), (48, 100), (100, 48), (64, 343), (60, 60), (0, 100), (100, 0), (8, 100)])
    func bothCopiesDamagedRefusesToOpenAndWritesNothing(primaryOffset: Int, secondaryOffset: Int) throws {
        let path = mdrecPath("both-\(primaryOffset)-\(secondaryOffset)")
        defer { unlink(path) }
        _ = try mdrecMakeHeap(path)
        try mdrecFlip(path, at: primaryOffset)
        try mdrecFlip(path, at: mdrecSecondaryOffset + secondaryOffset)
        let damaged = try mdrecRead(path)
        for mode in [HeapMode.readWrite, .readOnly] {
            let error = #expect(throws: HeapError.self, "\(mode)") { _ = try Heap.open(path: path, mode: mode) }
            // A flipped version byte does not verify: corrupt, not another version.
            if case .corruptMetadata(let p, let primary, let secondary)? = error {
                #expect(p == path)
                #expect(primary.contains(primaryOffset < 8 ? "magic" : "checksum"), "\(primary)")
                #expect(secondary.contains(secondaryOffset < 8 ? "magic" : "checksum"), "\(secondary)")
                #expect(error?.description.contains("nothing was written") == true)
            } else {
                Issue.record("expected corruptMetadata, got \(String(describing: error))")
            }
            #expect(mdrecSame(try mdrecRead(path), damaged), "open \(mode) wrote to a heap it refused")
        }
    }

    @Test func bothMagicsGoneIsNotAHeap() throws {
        let path = mdrecPath("both-magics")
        defer { unlink(path) }
        _ = try mdrecMakeHeap(path)
        try mdrecFlip(path, at: 0)
        try mdrecFlip(path, at: mdrecSecondaryOffset + 3)
        let damaged = try mdrecRead(path)
        #expect(throws: HeapError.notADaxHeapDevice(path: path)) { _ = try Heap.open(path: path) }
        #expect(throws: HeapError.notADaxHeapDevice(path: path)) { _ = try Heap.open(path: path, mode: .readOnly) }
        #expect(mdrecSame(try mdrecRead(path), damaged))
    }

    // MARK: Stale copies

    /// An update interrupted before the primary was written, then an old primary put
    /// back: the secondary is newer and wins; the primary is stale.
    @Test func stalePrimaryLosesToTheNewerSecondary() throws {
        let path = mdrecPath("stale-primary")
        defer { unlink(path) }
        let old = try mdrecMakeHeap(path)
        let oldBlock = try mdrecRead(path, at: mdrecSecondaryOffset, count: mdrecBlock)
        let newer: MdrecSnapshot
        do {
            let heap = try Heap.open(path: path)
            try heap.createArena(named: "delta", size: 2 << 20)
            newer = MdrecSnapshot(heap)
        }
        #expect(newer.generation == old.generation + 1)
        #expect(newer.arenas.map(\.name) == ["alpha", "delta", "γάμμα"])
        let newImage = try mdrecImage(path, block: mdrecSecondaryOffset)
        try mdrecWrite(path, at: 0, oldBlock)
        let damaged = try mdrecRead(path)

        do {
            let heap = try Heap.open(path: path, mode: .readOnly)
            #expect(heap.metadataStatus.primary.state == .stale)
            #expect(heap.metadataStatus.primary.generation == old.generation)
            #expect(heap.metadataStatus.primary.detail.contains("generation \(old.generation)"), "\(heap.metadataStatus.primary.detail)")
            #expect(heap.metadataStatus.secondary == MetadataCopyStatus(state: .ok, generation: newer.generation))
            #expect(MdrecSnapshot(heap) == newer)
            #expect(heap.repairs.isEmpty)
            #expect(!heap.check().isHealthy)
            try mdrecExpectPayload(heap)
        }
        #expect(mdrecSame(try mdrecRead(path), damaged), "a read-only open wrote to the file")

        do {
            let heap = try Heap.open(path: path)
            #expect(heap.repairs.count == 1, "\(heap.repairs)")
            #expect(heap.repairs.first?.contains("rewrote the primary metadata copy from the secondary one (it was stale") == true,
                    "\(heap.repairs)")
            #expect(MdrecSnapshot(heap) == newer)
            #expect(heap.check().isHealthy)
        }
        #expect(try mdrecImage(path, block: 0) == newImage)
        try mdrecExpectBothCopiesGood(path, newer)
    }

    /// An update interrupted after the primary was written: the primary is newer and
    /// wins; the old secondary is stale.
    @Test func staleSecondaryLosesToTheNewerPrimary() throws {
        let path = mdrecPath("stale-secondary")
        defer { unlink(path) }
        let old = try mdrecMakeHeap(path)
        let oldBlock = try mdrecRead(path, at: mdrecSecondaryOffset, count: mdrecBlock)
        let newer: MdrecSnapshot
        do {
            let heap = try Heap.open(path: path)
            try heap.resizeArena(named: "γάμμα", to: 4 << 20)
            newer = MdrecSnapshot(heap)
        }
        #expect(newer.generation == old.generation + 1)
        #expect(newer != old)
        let newImage = try mdrecImage(path, block: 0)
        try mdrecWrite(path, at: mdrecSecondaryOffset, oldBlock)
        let damaged = try mdrecRead(path)

        do {
            let heap = try Heap.open(path: path, mode: .readOnly)
            #expect(heap.metadataStatus.primary == MetadataCopyStatus(state: .ok, generation: newer.generation))
            #expect(heap.metadataStatus.secondary.state == .stale)
            #expect(heap.metadataStatus.secondary.generation == old.generation)
            #expect(!heap.metadataStatus.secondary.detail.isEmpty)
            #expect(MdrecSnapshot(heap) == newer)
            #expect(try heap.arena(named: "γάμμα").size == 4 << 20)
        }
        #expect(mdrecSame(try mdrecRead(path), damaged), "a read-only open wrote to the file")

        do {
            let heap = try Heap.open(path: path)
            #expect(heap.repairs.count == 1, "\(heap.repairs)")
            #expect(heap.repairs.first?.contains("rewrote the secondary metadata copy from the primary one (it was stale") == true,
                    "\(heap.repairs)")
            #expect(MdrecSnapshot(heap) == newer)
        }
        #expect(try mdrecImage(path, block: mdrecSecondaryOffset) == newImage)
        try mdrecExpectBothCopiesGood(path, newer)
    }

    /// A stale primary AND a corrupt secondary: the stale copy is the only valid one and is
    /// used (older, but consistent), read-only without writing.
    @Test func aStaleCopyIsUsedWhenTheOtherIsCorrupt() throws {
        let path = mdrecPath("stale-and-corrupt")
        defer { unlink(path) }
        let old = try mdrecMakeHeap(path)
        let oldBlock = try mdrecRead(path, at: mdrecSecondaryOffset, count: mdrecBlock)
        do {
            let heap = try Heap.open(path: path)
            try heap.createArena(named: "delta", size: 2 << 20)
        }
        try mdrecWrite(path, at: 0, oldBlock)
        try mdrecFlip(path, at: mdrecSecondaryOffset + 48)
        let damaged = try mdrecRead(path)
        let heap = try Heap.open(path: path, mode: .readOnly)
        #expect(heap.metadataStatus.primary == MetadataCopyStatus(state: .ok, generation: old.generation))
        #expect(heap.metadataStatus.secondary.state == .corrupt)
        #expect(MdrecSnapshot(heap) == old)
        #expect(mdrecSame(try mdrecRead(path), damaged))
    }

    // MARK: A copy of another heap

    @Test func aCopyOfAnotherHeapIsCorrupt() throws {
        let path = mdrecPath("mine")
        let otherPath = mdrecPath("theirs")
        defer { unlink(path); unlink(otherPath) }
        let mine = try mdrecMakeHeap(path)
        do { _ = try Heap.create(path: otherPath, size: mdrecHeapSize) }  // generation 1
        let theirs = try mdrecRead(otherPath, at: 0, count: mdrecBlock)
        try mdrecWrite(path, at: mdrecSecondaryOffset, theirs)
        let damaged = try mdrecRead(path)
        do {
            let heap = try Heap.open(path: path, mode: .readOnly)
            #expect(heap.metadataStatus.primary == MetadataCopyStatus(state: .ok, generation: mine.generation))
            #expect(heap.metadataStatus.secondary.state == .corrupt)
            #expect(heap.metadataStatus.secondary.detail.contains("another heap"), "\(heap.metadataStatus.secondary.detail)")
            #expect(MdrecSnapshot(heap) == mine)
        }
        #expect(mdrecSame(try mdrecRead(path), damaged))
        do {
            let heap = try Heap.open(path: path)
            #expect(heap.repairs.count == 1)
            #expect(heap.repairs.first?.contains("secondary") == true)
        }
        try mdrecExpectBothCopiesGood(path, mine)
    }

    /// A block of another heap with a *higher* generation in the secondary: identity
    /// decides, not the generation, so the primary stays the heap and the stray block is
    /// damage (before, the newer stray table took the heap over).
    @Test func aNewerCopyOfAnotherHeapDoesNotTakeOver() throws {
        let path = mdrecPath("mine")
        let otherPath = mdrecPath("theirs")
        defer { unlink(path); unlink(otherPath) }
        let mine = try mdrecMakeHeap(path)
        do {
            let other = try Heap.create(path: otherPath, size: mdrecHeapSize)
            for _ in 0 ..< 10 {
                try other.createArena(named: "stray", size: 2 << 20)
                try other.destroyArena(named: "stray")
            }
            #expect(other.generation > mine.generation)
        }
        let theirs = try mdrecRead(otherPath, at: mdrecSecondaryOffset, count: mdrecBlock)
        try mdrecWrite(path, at: mdrecSecondaryOffset, theirs)
        do {
            let heap = try Heap.open(path: path, mode: .readOnly)
            #expect(MdrecSnapshot(heap) == mine)
            #expect(heap.metadataStatus.primary == MetadataCopyStatus(state: .ok, generation: mine.generation))
            #expect(heap.metadataStatus.secondary.state == .corrupt)
            #expect(heap.metadataStatus.secondary.detail.contains("belongs to another heap"), "\(heap.metadataStatus.secondary.detail)")
        }
        do {
            let heap = try Heap.open(path: path)
            #expect(heap.repairs.count == 1)
            #expect(heap.repairs.first?.contains("secondary") == true)
        }
        try mdrecExpectBothCopiesGood(path, mine)
    }

    /// The other direction: the primary is damaged and the secondary is the only valid
    /// copy. It is used whatever its generation, and the primary is rebuilt from it.
    @Test func onlyAValidSecondaryIsUsed() throws {
        let path = mdrecPath("secondary-only")
        defer { unlink(path) }
        let mine = try mdrecMakeHeap(path)
        try mdrecFlip(path, at: MetadataCopy.checksumOffset)
        do {
            let heap = try Heap.open(path: path, mode: .readOnly)
            #expect(MdrecSnapshot(heap) == mine)
            #expect(heap.metadataStatus.primary.state == .corrupt)
            #expect(heap.metadataStatus.secondary == MetadataCopyStatus(state: .ok, generation: mine.generation))
        }
        do {
            let heap = try Heap.open(path: path)
            #expect(heap.repairs.first?.contains("primary") == true)
        }
        try mdrecExpectBothCopiesGood(path, mine)
    }

    // MARK: Not a heap

    @Test func aZeroFilledFileIsNotAHeap() throws {
        let path = mdrecPath("zeros")
        defer { unlink(path) }
        let fd = try mdrecOpen(path, O_RDWR | O_CREAT | O_EXCL)
        #expect(ftruncate(fd, off_t(8 << 20)) == 0)
        close(fd)
        for mode in [HeapMode.readWrite, .readOnly] {
            #expect(throws: HeapError.notADaxHeapDevice(path: path)) { _ = try Heap.open(path: path, mode: mode) }
        }
        let bytes = try mdrecRead(path)
        #expect(bytes.count == 8 << 20)
        #expect(mdrecSame(bytes, [UInt8](repeating: 0, count: 8 << 20)))
    }

    @Test func aFileOfRandomBytesIsNotAHeap() throws {
        let path = mdrecPath("random")
        defer { unlink(path) }
        var rng = SplitMix64(seed: 0x5EED)
        var bytes = [UInt8](repeating: 0, count: 8 << 20)
        bytes.withUnsafeMutableBytes { raw in
            for i in stride(from: 0, to: raw.count, by: 8) { raw.storeBytes(of: rng.next(), toByteOffset: i, as: UInt64.self) }
        }
        let fd = try mdrecOpen(path, O_RDWR | O_CREAT | O_EXCL)
        close(fd)
        try mdrecWrite(path, at: 0, bytes)
        for mode in [HeapMode.readWrite, .readOnly] {
            #expect(throws: HeapError.notADaxHeapDevice(path: path)) { _ = try Heap.open(path: path, mode: mode) }
        }
        #expect(mdrecSame(try mdrecRead(path), bytes))
    }

    // MARK: Size changed behind the heap's back

    @Test(arguments: [Int(mdrecHeapSize) + mdrecBlock, Int(mdrecHeapSize) - mdrecBlock, Int(mdrecHeapSize) + 8 * mdrecBlock, 6 << 20])
    func aResizedFileIsASizeMismatch(newSize: Int) throws {
        let path = mdrecPath("resized-\(newSize)")
        defer { unlink(path) }
        _ = try mdrecMakeHeap(path)
        try mdrecTruncate(path, to: newSize)
        let resized = try mdrecRead(path)
        let actual = UInt64(newSize)
        for mode in [HeapMode.readWrite, .readOnly] {
            if actual > mdrecHeapSize, mode == .readOnly {
                // A grown file: read-only, the heap as it was, and the bytes past it.
                let heap = try Heap.open(path: path, mode: mode)
                #expect(heap.unusedDeviceSize == actual - mdrecHeapSize)
                try mdrecExpectPayload(heap)
            } else {
                let expected: HeapError = actual > mdrecHeapSize
                    ? .deviceLargerThanHeap(path: path, heapSize: mdrecHeapSize, deviceSize: actual)
                    : .sizeMismatch(path: path, recorded: mdrecHeapSize, actual: actual)
                #expect(throws: expected, "\(mode)") { _ = try Heap.open(path: path, mode: mode) }
            }
            #expect(mdrecSame(try mdrecRead(path), resized), "open \(mode) wrote to a resized heap")
        }
        // Put back to its size, the heap opens as it was.
        try mdrecTruncate(path, to: Int(mdrecHeapSize))
        if newSize > Int(mdrecHeapSize) {
            let heap = try Heap.open(path: path, mode: .readOnly)
            #expect(heap.metadataStatus.primary.state == .ok)
            #expect(heap.metadataStatus.secondary.state == .ok)
            try mdrecExpectPayload(heap)
        }
    }

    // MARK: Versions

    @Test func anUnsupportedVersionInBothCopies() throws {
        let path = mdrecPath("version")
        defer { unlink(path) }
        _ = try mdrecMakeHeap(path)
        try mdrecSetVersion(path, block: 0, to: 3)
        try mdrecSetVersion(path, block: mdrecSecondaryOffset, to: 3)
        let changed = try mdrecRead(path)
        for mode in [HeapMode.readWrite, .readOnly] {
            #expect(throws: HeapError.unsupportedVersion(path: path, version: 3), "\(mode)") { _ = try Heap.open(path: path, mode: mode) }
        }
        #expect(mdrecSame(try mdrecRead(path), changed))
        // Back to version 1, it opens.
        try mdrecSetVersion(path, block: 0, to: 1)
        try mdrecSetVersion(path, block: mdrecSecondaryOffset, to: 1)
        try mdrecExpectBothCopiesGood(path, MdrecSnapshot(try Heap.open(path: path, mode: .readOnly)))
    }

    @Test func anUnsupportedVersionBesideACorruptCopy() throws {
        let path = mdrecPath("version-corrupt")
        defer { unlink(path) }
        _ = try mdrecMakeHeap(path)
        try mdrecSetVersion(path, block: mdrecSecondaryOffset, to: 7)
        try mdrecFlip(path, at: 200)
        let changed = try mdrecRead(path)
        #expect(throws: HeapError.unsupportedVersion(path: path, version: 7)) { _ = try Heap.open(path: path) }
        #expect(mdrecSame(try mdrecRead(path), changed))
    }

    // MARK: Locking while damaged

    /// A damaged heap open read-only (shared lock) cannot be repaired by a writer at the
    /// same time.
    @Test func noRepairWhileAReaderHoldsTheHeap() throws {
        let path = mdrecPath("locked")
        defer { unlink(path) }
        _ = try mdrecMakeHeap(path)
        try mdrecFlip(path, at: 48)
        let damaged = try mdrecRead(path)
        let reader = try Heap.open(path: path, mode: .readOnly)
        #expect(throws: HeapError.inUse(path: path)) { _ = try Heap.open(path: path) }
        #expect(mdrecSame(try mdrecRead(path), damaged))
        withExtendedLifetime(reader) {}
    }
}

