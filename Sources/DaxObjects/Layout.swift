import CDaxShims

/// The on-media layout of an object heap (docs/OBJECTS.md): every offset is an offset in
/// the object heap's arena.
///
/// ```
/// chunk 0 ...                                      metadataChunks    ... arena size
/// | header | roots | lane logs | chunk table | pad | data chunks (2 MiB each) ... |
/// ```
///
/// Allocator metadata (the chunk table, the logs) lies below every data chunk, so a write
/// past the end of an object reaches another object, never the allocator's state.
enum Layout {
    /// The unit of the heap and of the object heap: a data chunk is one.
    static let chunkSize: UInt64 = 2 << 20
    static let chunkShift: UInt64 = 21

    // MARK: Header, at offset 0

    static let magic: UInt64 = 0x3153_4A42_4F58_4144  // "DAXOBJS1", little-endian
    static let version: UInt32 = 1
    static let headerBytes = 4096
    static let magicOffset = 0           // UInt64
    static let versionOffset = 8         // UInt32
    static let laneCountOffset = 12      // UInt32
    static let laneLogBytesOffset = 16   // UInt32
    static let rootCountOffset = 20      // UInt32
    static let chunkCapacityOffset = 24  // UInt64: entries of the chunk table
    static let metadataChunksOffset = 32 // UInt64: chunks before the first data chunk
    static let arenaIDOffset = 40        // UInt64: the arena the heap was created in
    static let headerChecksumOffset = 48 // UInt32: CRC-32C of bytes [0, 48)
    static let headerChecksummed = 48

    // MARK: Roots, from offset 4096: rootCount entries of 64 bytes

    static let rootsOffset: UInt64 = 4096
    static let rootCount = 64
    static let rootEntryBytes: UInt64 = 64
    static let rootReferenceOffset: UInt64 = 0   // the slot: an ObjectReference
    static let rootNameLengthOffset: UInt64 = 8  // UInt64, written last: 0 = entry unused
    static let rootNameOffset: UInt64 = 16       // up to 48 bytes of UTF-8
    static let rootNameCapacity = 48

    // MARK: Lane logs (redo logs of transactions), after the roots

    static let lanesOffset: UInt64 = rootsOffset + UInt64(rootCount) * rootEntryBytes
    /// A lane's log: a 64-byte header, then entries.
    static let logLengthOffset: UInt64 = 0    // UInt64: bytes of entries; 0 = empty
    static let logChecksumOffset: UInt64 = 8  // UInt64: CRC-32C of the length and the entries; 0 = empty
    static let logEntriesOffset: UInt64 = 64
    /// An entry: the target offset, the byte count, then the bytes padded to 8.
    static let entryTargetOffset: UInt64 = 0
    static let entryCountOffset: UInt64 = 8
    static let entryBytesOffset: UInt64 = 16

    static func laneOffset(_ lane: Int, laneLogBytes: Int) -> UInt64 {
        lanesOffset + UInt64(lane) * UInt64(laneLogBytes)
    }

    /// Where the chunk table starts for this many lanes (8-byte entries, one per chunk of
    /// the arena, metadata chunks included).
    static func chunkTableOffset(laneCount: Int, laneLogBytes: Int) -> UInt64 {
        laneOffset(laneCount, laneLogBytes: laneLogBytes)
    }

    /// Chunks the metadata takes for a chunk table of `capacity` entries.
    static func metadataChunks(capacity: UInt64, laneCount: Int, laneLogBytes: Int) -> UInt64 {
        let end = chunkTableOffset(laneCount: laneCount, laneLogBytes: laneLogBytes) + capacity * 8
        return (end + chunkSize - 1) / chunkSize
    }

    static func checksum(_ bytes: UnsafeRawPointer, _ count: Int, seed: UInt32 = 0) -> UInt32 {
        CDaxShims_crc32c(seed, bytes, count)
    }
}

/// One entry of the chunk table: what a data chunk holds, in one 8-byte word written
/// atomically, with a check so that a damaged entry is told from a valid one.
///
/// bits 0-7 kind, 8-15 size class, 16-23 object kind, 24-47 run length in chunks (a
/// large object's first chunk), 48-63 the low 16 bits of the entry's CRC-32C over bits 0-47
/// and the chunk's index.
struct ChunkDescriptor: Equatable {
    enum Kind: UInt8 {
        /// Holds nothing (never used, or given back).
        case free = 0
        /// Blocks of one size class.
        case small = 1
        /// The first chunk of a large object of `runLength` chunks.
        case largeHead = 2
        /// A later chunk of a large object.
        case largeTail = 3
    }

    var kind: Kind
    var sizeClass: Int = 0
    var objectKind: ObjectKind = .data
    var runLength: UInt64 = 0

    static let free = ChunkDescriptor(kind: .free)

    func encoded(chunk: UInt64) -> UInt64 {
        if kind == .free { return 0 }
        let body = UInt64(kind.rawValue) | UInt64(sizeClass) << 8 | UInt64(objectKind.rawValue) << 16 | runLength << 24
        return body | UInt64(Self.check(body, chunk: chunk)) << 48
    }

    /// The entry stored as `word` for chunk `chunk`, or nil when it is not a valid entry.
    static func decode(_ word: UInt64, chunk: UInt64) -> ChunkDescriptor? {
        if word == 0 { return .free }
        let body = word & ((1 << 48) - 1)
        guard UInt16(word >> 48) == check(body, chunk: chunk),
              let kind = Kind(rawValue: UInt8(body & 0xFF)), kind != .free,
              let objectKind = ObjectKind(rawValue: UInt8(body >> 16 & 0xFF)) else { return nil }
        let sizeClass = Int(body >> 8 & 0xFF)
        let run = body >> 24
        switch kind {
        case .small: guard sizeClass < SizeClasses.count, run == 0 else { return nil }
        case .largeHead: guard run > 0, sizeClass == 0 else { return nil }
        case .largeTail: guard run == 0, sizeClass == 0 else { return nil }
        case .free: return nil
        }
        return ChunkDescriptor(kind: kind, sizeClass: sizeClass, objectKind: objectKind, runLength: run)
    }

    private static func check(_ body: UInt64, chunk: UInt64) -> UInt16 {
        var words = (body, chunk)
        return withUnsafeBytes(of: &words) { UInt16(truncatingIfNeeded: Layout.checksum($0.baseAddress!, 16)) }
    }
}
