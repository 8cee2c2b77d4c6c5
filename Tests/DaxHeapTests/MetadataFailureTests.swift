// The update protocol when a metadata write fails (docs/FORMAT.md, "Failed writes"),
// driven by the package-only fault hook: a write stores a prefix of the copy, then
// fails with a media error or an I/O error. What must hold: the only good copy is never
// written while the other does not hold the new table; a change reported as failed
// leaves the table as it was; a generation number is never used for two tables.

import DaxHeap
import DaxMetadata
import Logging
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct MetadataFailureTests {
    static let size: UInt64 = 32 << 20
    static let secondaryOffset = Int(size - Geometry.blockSize)

    /// A heap with two arenas, closed, then opened again with `faults`.
    static func heap(_ path: String, faults: [MetadataFaults.Fault]) throws -> Heap {
        do {
            let heap = try Heap.create(path: path, size: size)
            try heap.createArena(named: "a", size: 4 << 20)
            try heap.createArena(named: "b", size: 2 << 20)
        }
        return try Heap.open(path: path, mode: .readWrite, logger: Logger(label: "test"), sysfsRoot: "/sys",
                             faults: MetadataFaults(faults))
    }

    /// The copy in the block at `offset`, decoded (nil if it is not valid).
    static func copy(_ path: String, at offset: Int) throws -> HeapMetadata? {
        let block = try fileRange(path, offset: UInt64(offset), count: Int(Geometry.blockSize))
        let length = block.withUnsafeBytes { MetadataCopy.claimedTableLength(header: UnsafeRawBufferPointer(rebasing: $0.prefix(64))) } ?? 0
        return try? MetadataCopy.decode(Array(block.prefix(64 + length))).get()
    }

    // MARK: The first write fails

    /// A media error partway through the primary: the secondary, then the only intact
    /// copy, must not be touched (a power loss while writing it would leave none), and the
    /// change is refused with the table unchanged.
    @Test(arguments: [MetadataFaults.Kind.media, .io])
    func aFailedPrimaryWriteLeavesTheSecondaryUntouched(kind: MetadataFaults.Kind) throws {
        let path = tempPath("primary-fault")
        defer { removeFile(path) }
        let heap = try Self.heap(path, faults: [.init(copy: .primary, storedBytes: 100, kind: kind)])
        let arenas = heap.arenas
        let secondary = try fileRange(path, offset: UInt64(Self.secondaryOffset), count: Int(Geometry.blockSize))
        let error = #expect(throws: HeapError.self) { try heap.createArena(named: "c", size: 2 << 20) }
        guard case .metadataWriteFailed(_, "primary", _)? = error else {
            Issue.record("expected metadataWriteFailed on the primary, got \(String(describing: error))")
            return
        }
        #expect(heap.arenas == arenas)
        #expect(try fileRange(path, offset: UInt64(Self.secondaryOffset), count: Int(Geometry.blockSize)) == secondary,
                "the only intact copy was written")
        #expect(heap.metadataStatus.primary.state != .ok)
        #expect(heap.metadataStatus.secondary.state == .ok)
        // Every later change is refused the same way until the primary can be written.
        #expect(throws: HeapError.self) { try heap.resizeArena(named: "a", to: 2 << 20) }
        #expect(try fileRange(path, offset: UInt64(Self.secondaryOffset), count: Int(Geometry.blockSize)) == secondary)
    }

    /// An I/O error after the whole primary was stored (msync's EIO says nothing of
    /// whether the bytes reached the media): the change is reported as failed, so it must
    /// not come back at the next open, and its generation is never used again.
    @Test func aChangeReportedAsFailedDoesNotComeBack() throws {
        let path = tempPath("io-after-store")
        defer { removeFile(path) }
        let generation: UInt64
        do {
            let heap = try Self.heap(path, faults: [.init(copy: .primary, storedBytes: .max, kind: .io, times: 1)])
            generation = heap.generation
            #expect(throws: HeapError.self) { try heap.createArena(named: "c", size: 2 << 20) }
            #expect(heap.arenas.map(\.name) == ["a", "b"])
            // The table was put back under a new number, in both copies.
            #expect(heap.metadataStatus.primary.state == .ok)
            #expect(heap.metadataStatus.secondary.state == .ok)
            #expect(heap.generation == generation + 2)
            try heap.createArena(named: "d", size: 2 << 20)
            #expect(heap.generation == generation + 3, "a generation was used for two tables")
        }
        let reopened = try Heap.open(path: path, mode: .readOnly)
        #expect(reopened.arenas.map(\.name) == ["a", "b", "d"])
    }

    // MARK: The second write fails

    /// The primary holds the new table durably when the secondary's write fails: the
    /// update stands (rolled forward); putting the old table back over a durable newer
    /// primary would risk both copies, and could bring back a change reported failed.
    @Test(arguments: [MetadataFaults.Kind.media, .io])
    func aFailedSecondaryWriteRollsForward(kind: MetadataFaults.Kind) throws {
        let path = tempPath("secondary-fault")
        defer { removeFile(path) }
        do {
            let heap = try Self.heap(path, faults: [.init(copy: .secondary, storedBytes: 100, kind: kind, times: 1)])
            let generation = heap.generation
            try heap.createArena(named: "c", size: 2 << 20)
            #expect(heap.generation == generation + 1)
            #expect(heap.metadataStatus.primary == MetadataCopyStatus(state: .ok, generation: generation + 1))
            #expect(heap.metadataStatus.secondary.state != .ok)
            #expect(try Self.copy(path, at: 0)?.generation == generation + 1)
            // The next update writes the bad copy first; the fault is gone, so both are good.
            try heap.createArena(named: "d", size: 2 << 20)
            #expect(heap.metadataStatus.secondary == MetadataCopyStatus(state: .ok, generation: generation + 2))
            #expect(try Self.copy(path, at: Self.secondaryOffset)?.generation == generation + 2)
        }
        let reopened = try Heap.open(path: path, mode: .readOnly)
        #expect(reopened.arenas.map(\.name) == ["a", "b", "c", "d"])
        #expect(reopened.check().isHealthy)
    }

    /// A copy that failed (and stays valid at an old generation, because the fault came
    /// before its first byte) is never skipped: the other copy may not advance alone, or
    /// a later torn write of it would bring the old table back.
    @Test func aCopyThatFailedIsWrittenFirstAndNeverLeftBehind() throws {
        let path = tempPath("left-behind")
        defer { removeFile(path) }
        let heap = try Self.heap(path, faults: [.init(copy: .secondary, storedBytes: 0, kind: .media)])
        try heap.createArena(named: "c", size: 2 << 20)  // rolled forward; the secondary is left at the old table
        let stale = try #require(try Self.copy(path, at: Self.secondaryOffset))
        #expect(stale.generation < heap.generation)
        let primary = try fileRange(path, offset: 0, count: Int(Geometry.blockSize))
        for _ in 0 ..< 3 {
            #expect(throws: HeapError.self) { try heap.createArena(named: "d", size: 2 << 20) }
            #expect(try fileRange(path, offset: 0, count: Int(Geometry.blockSize)) == primary,
                    "the primary advanced while the secondary holds an older valid table")
        }
        #expect(heap.arenas.map(\.name) == ["a", "b", "c"])
    }
}
