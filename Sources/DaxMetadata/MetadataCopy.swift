import CDaxShims

// Byte layout of one metadata copy (all integers little-endian; docs/FORMAT.md):
//
//   header, 64 bytes
//     0  magic        8  "DAXHEAP\0"
//     8  version      4  1, or 2 when the table ends with a device identity record
//    12  flags        4  0 (reserved, must be zero)
//    16  uuid        16
//    32  deviceSize   8
//    40  alignment    8
//    48  generation   8
//    56  tableLength  4  bytes of table after the header
//    60  checksum     4  CRC-32C of [0, 64 + tableLength) with this field taken as zero
//   table, at 64
//     0  arenaCount   4
//     4  extentCount  4
//     8  nextArenaID  8
//    16  arenaCount  x 96-byte arena entries, ordered by id
//          0 id 8 | 8 size 8 | 16 firstExtent 4 | 20 extentCount 4 | 24 nameLength 1 |
//          25 name 63 (zero padded) | 88 reserved 8 (zero)
//        extentCount x 24-byte extent entries, grouped by arena in arena order, each
//        arena's run ordered by arena offset
//          0 deviceOffset 8 | 8 arenaOffset 8 | 16 length 8
//        version 2 only: the device identity record (DeviceIdentityRecord.swift)

/// Why a copy's bytes were refused.
public enum MetadataDecodeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The magic is absent: these bytes were never a DaxHeap metadata copy.
    case notADaxHeap
    /// A DaxHeap copy of a format version this build does not read.
    case unsupportedVersion(UInt32)
    /// The magic is there but the copy is damaged or inconsistent.
    case corrupt(String)

    public var description: String {
        switch self {
        case .notADaxHeap: "no DaxHeap magic"
        case .unsupportedVersion(let v): "format version \(v) is not supported (this build reads versions \(MetadataCopy.formatVersion) and \(MetadataCopy.identityFormatVersion))"
        case .corrupt(let why): why
        }
    }
}

/// Encoding and decoding of one metadata copy. Both copies hold identical bytes.
public enum MetadataCopy {
    public static let magic: [UInt8] = Array("DAXHEAP\0".utf8)
    /// The version of a copy without a device identity record (a file's heap, or a heap
    /// made before version 2): older builds read it.
    public static let formatVersion: UInt32 = 1
    /// The version of a copy whose table ends with a device identity record.
    public static let identityFormatVersion: UInt32 = 2
    public static let headerSize = 64
    public static let tableHeaderSize = 16
    public static let arenaEntrySize = 96
    public static let extentEntrySize = 24
    /// Offset of the checksum field in the header.
    public static let checksumOffset = 60
    /// Offset of the generation field in the header.
    public static let generationOffset = 48
    /// Offset of the table length field in the header.
    public static let tableLengthOffset = 56
    /// The largest table that fits in a block after the header.
    public static let maxTableLength = Int(Geometry.blockSize) - headerSize
    /// The largest arena table a change may make: the block less room for the largest
    /// device identity record, so that recording one never overflows the block.
    public static let maxArenaTableLength = maxTableLength - DeviceIdentityRecord.reservedLength

    /// Bytes a table of this many arenas and extents takes after the header.
    public static func tableLength(arenas: Int, extents: Int) -> Int {
        tableHeaderSize + arenas * arenaEntrySize + extents * extentEntrySize
    }

    /// Whether a table this large fits in a metadata block, with room left for the
    /// largest device identity record (``maxArenaTableLength``).
    public static func fits(arenas: Int, extents: Int) -> Bool {
        tableLength(arenas: arenas, extents: extents) <= maxArenaTableLength
    }

    /// The bytes of a copy holding `metadata`: header then table. The caller checks
    /// `fits` first; names are expected to be valid (`ArenaName`).
    public static func encode(_ metadata: HeapMetadata) -> [UInt8] {
        let extentCount = metadata.extentCount
        let arenaTable = tableLength(arenas: metadata.arenas.count, extents: extentCount)
        let table = arenaTable + (metadata.identity?.encodedLength ?? 0)
        precondition(table <= maxTableLength, "arena table does not fit in a metadata block")
        var out = [UInt8](repeating: 0, count: headerSize + table)
        out.withUnsafeMutableBytes { raw in
            let w = Writer(raw)
            w.bytes(magic, at: 0)
            w.u32(metadata.identity == nil ? formatVersion : identityFormatVersion, at: 8)
            w.u32(0, at: 12)
            w.u64(metadata.uuid.bytes.0, at: 16)
            w.u64(metadata.uuid.bytes.1, at: 24)
            w.u64(metadata.deviceSize, at: 32)
            w.u64(metadata.alignment, at: 40)
            writeCounts(generation: metadata.generation, tableLength: table, arenas: metadata.arenas.count,
                        extents: extentCount, nextArenaID: metadata.nextArenaID, w)
            var arenaAt = headerSize + tableHeaderSize
            var extentAt = arenaAt + metadata.arenas.count * arenaEntrySize
            var firstExtent = 0
            for arena in metadata.arenas {
                writeArena(arena, firstExtent: firstExtent, entryAt: arenaAt, extentsAt: extentAt, w)
                arenaAt += arenaEntrySize
                extentAt += arena.extents.count * extentEntrySize
                firstExtent += arena.extents.count
            }
            metadata.identity?.write(at: headerSize + arenaTable, w)
            w.u32(checksum(UnsafeRawBufferPointer(raw)), at: checksumOffset)
        }
        return out
    }

    /// Writes the fields every change rewrites: the header's generation and table length,
    /// and the table header (arena and extent counts, next arena id).
    static func writeCounts(generation: UInt64, tableLength: Int, arenas: Int, extents: Int, nextArenaID: UInt64, _ w: Writer) {
        w.u64(generation, at: generationOffset)
        w.u32(UInt32(tableLength), at: tableLengthOffset)
        w.u32(UInt32(arenas), at: headerSize)
        w.u32(UInt32(extents), at: headerSize + 4)
        w.u64(nextArenaID, at: headerSize + 8)
    }

    /// Writes one arena entry at `entryAt` and its extent run at `extentsAt`, into bytes
    /// that are zero where the entry is (the name padding and the reserved field).
    static func writeArena(_ arena: ArenaRecord, firstExtent: Int, entryAt: Int, extentsAt: Int, _ w: Writer) {
        w.u64(arena.id, at: entryAt)
        w.u64(arena.size, at: entryAt + 8)
        w.u32(UInt32(firstExtent), at: entryAt + 16)
        w.u32(UInt32(arena.extents.count), at: entryAt + 20)
        var nameLength = 0
        for byte in arena.name.utf8 {
            w.u8(byte, at: entryAt + 25 + nameLength)
            nameLength += 1
        }
        w.u8(UInt8(nameLength), at: entryAt + 24)
        var extentAt = extentsAt
        for extent in arena.extents {
            w.u64(extent.deviceOffset, at: extentAt)
            w.u64(extent.arenaOffset, at: extentAt + 8)
            w.u64(extent.length, at: extentAt + 16)
            extentAt += extentEntrySize
        }
    }

    /// What one provisioning change does to the arena entries, at one position in them.
    public enum ArenaChange {
        /// A new arena entry is inserted at `index` (a created arena).
        case insert(ArenaRecord, at: Int)
        /// The entry at `index` is replaced by one with the same id (a resized arena).
        case replace(ArenaRecord, at: Int)
        /// The entry at `index` is removed (a destroyed arena).
        case remove(at: Int)
    }

    /// The copy `image` (a valid, encoded copy) becomes after one arena entry changes, with
    /// a new generation and next arena id: the same bytes ``encode(_:)`` gives for the
    /// changed metadata, made by moving the unchanged entries instead of re-encoding them.
    /// The extent runs after the changed one move, and their arenas' `firstExtent` shift by
    /// the difference in extent count. The caller checks `fits` first.
    public static func applying(
        _ change: ArenaChange, to image: [UInt8], generation: UInt64, nextArenaID: UInt64
    ) -> [UInt8] {
        image.withUnsafeBytes { old in
            let r = Reader(old)
            let arenaCount = Int(r.u32(at: headerSize))
            let extentCount = Int(r.u32(at: headerSize + 4))
            let arenasAt = headerSize + tableHeaderSize
            let oldExtentsAt = arenasAt + arenaCount * arenaEntrySize
            // What follows the extent entries (a version-2 copy's identity record) moves as it is.
            let oldTrailerAt = oldExtentsAt + extentCount * extentEntrySize
            precondition(old.count >= oldTrailerAt, "not an encoded copy")
            let trailer = old.count - oldTrailerAt
            let index: Int
            let record: ArenaRecord?
            var removedEntries = 0
            switch change {
            case .insert(let new, let i): (record, index) = (new, i)
            case .replace(let new, let i): (record, index, removedEntries) = (new, i, 1)
            case .remove(let i): (record, index, removedEntries) = (nil, i, 1)
            }
            precondition(index >= 0 && index + removedEntries <= arenaCount, "arena entry \(index) is not in the table")
            // The changed arena's extent run starts where the entry at `index` says, or
            // after every run if it is appended.
            let first = index < arenaCount ? Int(r.u32(at: arenasAt + index * arenaEntrySize + 16)) : extentCount
            let removedExtents = removedEntries == 1 ? Int(r.u32(at: arenasAt + index * arenaEntrySize + 20)) : 0
            if case .replace(let new, _) = change {
                precondition(r.u64(at: arenasAt + index * arenaEntrySize) == new.id, "a replaced entry keeps its id")
            }
            let addedEntries = record == nil ? 0 : 1
            let addedExtents = record?.extents.count ?? 0
            let newArenaCount = arenaCount - removedEntries + addedEntries
            let newExtentCount = extentCount - removedExtents + addedExtents
            let table = tableLength(arenas: newArenaCount, extents: newExtentCount) + trailer
            precondition(table <= maxTableLength, "arena table does not fit in a metadata block")
            let newExtentsAt = arenasAt + newArenaCount * arenaEntrySize
            return [UInt8](unsafeUninitializedCapacity: headerSize + table) { buffer, count in
                let raw = UnsafeMutableRawBufferPointer(buffer)
                let w = Writer(raw)
                func move(_ from: Int, _ length: Int, to: Int) {
                    guard length > 0 else { return }
                    (raw.baseAddress! + to).copyMemory(from: old.baseAddress! + from, byteCount: length)
                }
                // Header and table header: only the generation, lengths and counts change.
                move(0, headerSize, to: 0)
                writeCounts(generation: generation, tableLength: table, arenas: newArenaCount,
                            extents: newExtentCount, nextArenaID: nextArenaID, w)
                // Arena entries before, the changed one, and after (their runs shifted).
                move(arenasAt, index * arenaEntrySize, to: arenasAt)
                let afterFrom = index + removedEntries
                let afterTo = index + addedEntries
                move(arenasAt + afterFrom * arenaEntrySize, (arenaCount - afterFrom) * arenaEntrySize,
                     to: arenasAt + afterTo * arenaEntrySize)
                let shift = addedExtents - removedExtents
                if shift != 0 {
                    for i in afterTo ..< newArenaCount {
                        let at = arenasAt + i * arenaEntrySize + 16
                        let firstOfThat = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt32.self)))
                        w.u32(UInt32(firstOfThat + shift), at: at)
                    }
                }
                // Extent runs before, the changed one, and after.
                move(oldExtentsAt, first * extentEntrySize, to: newExtentsAt)
                let afterRun = first + removedExtents
                move(oldExtentsAt + afterRun * extentEntrySize, (extentCount - afterRun) * extentEntrySize,
                     to: newExtentsAt + (first + addedExtents) * extentEntrySize)
                move(oldTrailerAt, trailer, to: newExtentsAt + newExtentCount * extentEntrySize)
                if let record {
                    let entryAt = arenasAt + index * arenaEntrySize
                    raw.baseAddress!.advanced(by: entryAt).initializeMemory(as: UInt8.self, repeating: 0, count: arenaEntrySize)
                    writeArena(record, firstExtent: first, entryAt: entryAt,
                               extentsAt: newExtentsAt + first * extentEntrySize, w)
                }
                w.u32(checksum(UnsafeRawBufferPointer(raw)), at: checksumOffset)
                count = headerSize + table
            }
        }
    }

    /// `image` (a valid, encoded copy) with another generation and its checksum updated:
    /// the same table under a new number, which is how a failed update puts the previous
    /// table back without ever reusing a generation for other contents.
    public static func restamped(_ image: [UInt8], generation: UInt64) -> [UInt8] {
        var copy = image
        copy.withUnsafeMutableBytes { raw in
            let w = Writer(raw)
            w.u64(generation, at: generationOffset)
            w.u32(checksum(UnsafeRawBufferPointer(raw)), at: checksumOffset)
        }
        return copy
    }

    /// The table length a header claims, if these 64 bytes are a DaxHeap header whose
    /// length field is in bounds; used to know how much more to read.
    public static func claimedTableLength(header: UnsafeRawBufferPointer) -> Int? {
        guard header.count >= headerSize, header.prefix(8).elementsEqual(magic) else { return nil }
        let length = Int(Reader(header).u32(at: tableLengthOffset))
        return length <= maxTableLength ? length : nil
    }

    /// Decodes and validates a copy. `bytes` may be longer than the copy (e.g. the whole
    /// block). Every rule of the table is checked, so a decoded copy is consistent.
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> Result<HeapMetadata, MetadataDecodeError> {
        guard bytes.count >= headerSize, bytes.prefix(8).elementsEqual(magic) else { return .failure(.notADaxHeap) }
        let r = Reader(bytes)
        let version = r.u32(at: 8)
        let table = Int(r.u32(at: tableLengthOffset))
        guard version == formatVersion || version == identityFormatVersion else {
            // A copy written by another format version keeps the header's place for the
            // length and checksum; if they verify, it is a real copy of that version (do not
            // overwrite it), otherwise it is a version-1 copy with a damaged version field.
            if table <= maxTableLength, bytes.count >= headerSize + table,
               r.u32(at: checksumOffset) == checksum(UnsafeRawBufferPointer(rebasing: bytes[0 ..< headerSize + table])) {
                return .failure(.unsupportedVersion(version))
            }
            return .failure(.corrupt("checksum mismatch, and format version \(version) is not \(formatVersion) or \(identityFormatVersion)"))
        }
        guard table >= tableHeaderSize, table <= maxTableLength else {
            return .failure(.corrupt("table length \(table) is outside \(tableHeaderSize)...\(maxTableLength)"))
        }
        guard bytes.count >= headerSize + table else {
            return .failure(.corrupt("copy is cut short: \(bytes.count) bytes for a \(headerSize + table)-byte copy"))
        }
        let stored = r.u32(at: checksumOffset)
        let computed = checksum(UnsafeRawBufferPointer(rebasing: bytes[0 ..< headerSize + table]))
        guard stored == computed else {
            return .failure(.corrupt("checksum mismatch (stored \(hex32(stored)), computed \(hex32(computed)))"))
        }
        return validate(r, tableLength: table, hasIdentity: version == identityFormatVersion)
    }

    /// Convenience for an array of bytes.
    public static func decode(_ bytes: [UInt8]) -> Result<HeapMetadata, MetadataDecodeError> {
        bytes.withUnsafeBytes { decode($0) }
    }

    /// CRC-32C over a whole copy with the checksum field taken as zero.
    public static func checksum(_ copy: UnsafeRawBufferPointer) -> UInt32 {
        let zero: [UInt8] = [0, 0, 0, 0]
        var crc = CDaxShims_crc32c(0, copy.baseAddress, checksumOffset)
        crc = CDaxShims_crc32c(crc, zero, 4)
        return CDaxShims_crc32c(crc, copy.baseAddress! + checksumOffset + 4, copy.count - checksumOffset - 4)
    }

    // MARK: - Validation of a checksummed copy

    static func validate(_ r: Reader, tableLength table: Int, hasIdentity: Bool) -> Result<HeapMetadata, MetadataDecodeError> {
        func corrupt(_ why: String) -> Result<HeapMetadata, MetadataDecodeError> { .failure(.corrupt(why)) }
        let flags = r.u32(at: 12)
        guard flags == 0 else { return corrupt("reserved flags \(hex32(flags)) are not zero") }
        let uuid = HeapUUID(high: r.u64(at: 16), low: r.u64(at: 24))
        let deviceSize = r.u64(at: 32)
        let alignment = r.u64(at: 40)
        let generation = r.u64(at: 48)
        guard deviceSize >= Geometry.minimumDeviceSize, Geometry.isAligned(deviceSize) else {
            return corrupt("device size \(deviceSize) is not a multiple of 2 MiB of at least 6 MiB")
        }
        guard alignment >= 4096, alignment & (alignment - 1) == 0, alignment <= 1 << 30 else {
            return corrupt("alignment \(alignment) is not a power of two between 4 KiB and 1 GiB")
        }
        let arenaCount = Int(r.u32(at: headerSize))
        let extentCount = Int(r.u32(at: headerSize + 4))
        let nextArenaID = r.u64(at: headerSize + 8)
        // Bound the counts by the table length before allocating anything. A version-2
        // table ends with the identity record, which fills the rest of it.
        let arenaTable = tableLength(arenas: arenaCount, extents: extentCount)
        guard arenaCount <= maxTableLength / arenaEntrySize, extentCount <= maxTableLength / extentEntrySize,
              hasIdentity ? arenaTable < table : arenaTable == table
        else {
            return corrupt("\(arenaCount) arenas and \(extentCount) extents do not make a \(table)-byte table")
        }
        var identity: DeviceIdentityRecord?
        if hasIdentity {
            switch DeviceIdentityRecord.read(at: headerSize + arenaTable, length: table - arenaTable, r) {
            case .success(let record): identity = record
            case .failure(let error): return .failure(error)
            }
        }
        let usable = Geometry.usableRegion(deviceSize: deviceSize)
        var arenas: [ArenaRecord] = []
        arenas.reserveCapacity(arenaCount)
        var names = Set<String>()
        var allExtents: [(ExtentRecord, String)] = []
        allExtents.reserveCapacity(extentCount)
        var expectedFirst = 0
        var previousID: UInt64 = 0
        var arenaAt = headerSize + tableHeaderSize
        let extentBase = arenaAt + arenaCount * arenaEntrySize
        for index in 0 ..< arenaCount {
            let id = r.u64(at: arenaAt)
            let size = r.u64(at: arenaAt + 8)
            let first = Int(r.u32(at: arenaAt + 16))
            let count = Int(r.u32(at: arenaAt + 20))
            let nameLength = Int(r.u8(at: arenaAt + 24))
            guard id > previousID, id < nextArenaID else {
                return corrupt("arena entry \(index): id \(id) is not increasing and below the next id \(nextArenaID)")
            }
            previousID = id
            guard nameLength >= 1, nameLength <= ArenaName.maxBytes,
                  r.allZero(arenaAt + 25 + nameLength ..< arenaAt + 96)
            else {
                return corrupt("arena entry \(index): bad name length \(nameLength) or non-zero padding")
            }
            guard let name = r.string(at: arenaAt + 25, count: nameLength) else {
                return corrupt("arena entry \(index): name is not valid UTF-8")
            }
            if let problem = ArenaName.problem(with: name) {
                return corrupt("arena entry \(index): \(problem)")
            }
            guard names.insert(name).inserted else { return corrupt("arena name \"\(name)\" appears twice") }
            guard first == expectedFirst, count >= 1, count <= extentCount - first else {
                return corrupt("arena \"\(name)\": extent run \(first)+\(count) does not follow the previous arena's")
            }
            expectedFirst += count
            var extents: [ExtentRecord] = []
            extents.reserveCapacity(count)
            var arenaOffset: UInt64 = 0
            for e in first ..< first + count {
                let at = extentBase + e * extentEntrySize
                let extent = ExtentRecord(deviceOffset: r.u64(at: at), arenaOffset: r.u64(at: at + 8), length: r.u64(at: at + 16))
                guard extent.length > 0, Geometry.isAligned(extent.deviceOffset), Geometry.isAligned(extent.length) else {
                    return corrupt("arena \"\(name)\": extent \(e) is empty or not 2 MiB aligned")
                }
                guard extent.deviceOffset >= usable.lowerBound, extent.deviceOffset < usable.upperBound,
                      extent.length <= usable.upperBound - extent.deviceOffset
                else {
                    return corrupt("arena \"\(name)\": extent \(e) leaves the usable region")
                }
                guard extent.arenaOffset == arenaOffset else {
                    return corrupt("arena \"\(name)\": extent \(e) starts at arena offset \(extent.arenaOffset), expected \(arenaOffset)")
                }
                let (next, overflow) = arenaOffset.addingReportingOverflow(extent.length)
                guard !overflow else { return corrupt("arena \"\(name)\": extents add up past 2^64 bytes") }
                arenaOffset = next
                extents.append(extent)
                allExtents.append((extent, name))
            }
            guard arenaOffset == size else {
                return corrupt("arena \"\(name)\": size \(size) is not the sum of its extents \(arenaOffset)")
            }
            arenas.append(ArenaRecord(id: id, name: name, extents: extents))
            arenaAt += arenaEntrySize
        }
        guard expectedFirst == extentCount else {
            return corrupt("\(extentCount - expectedFirst) extents belong to no arena")
        }
        allExtents.sort { $0.0.deviceOffset < $1.0.deviceOffset }
        for i in allExtents.indices.dropFirst() {
            let (a, aName) = allExtents[i - 1]
            let (b, bName) = allExtents[i]
            if a.deviceOffset + a.length > b.deviceOffset {
                return corrupt("extents of \"\(aName)\" and \"\(bName)\" overlap at device offset \(b.deviceOffset)")
            }
        }
        return .success(HeapMetadata(
            uuid: uuid, deviceSize: deviceSize, alignment: alignment, generation: generation,
            nextArenaID: nextArenaID, arenas: arenas, identity: identity))
    }
}

func hex32(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }

/// Little-endian stores into a buffer the encoder sized exactly.
struct Writer {
    let raw: UnsafeMutableRawBufferPointer
    init(_ raw: UnsafeMutableRawBufferPointer) { self.raw = raw }
    func u8(_ v: UInt8, at o: Int) { raw[o] = v }
    func u32(_ v: UInt32, at o: Int) { raw.storeBytes(of: v.littleEndian, toByteOffset: o, as: UInt32.self) }
    func u64(_ v: UInt64, at o: Int) { raw.storeBytes(of: v.littleEndian, toByteOffset: o, as: UInt64.self) }
    func bytes(_ b: [UInt8], at o: Int) {
        UnsafeMutableRawBufferPointer(rebasing: raw[o ..< o + b.count]).copyBytes(from: b)
    }
}

/// Little-endian loads; every offset is checked against the buffer by the caller's
/// length validation first, and again here by the bounds-checked buffer subscript.
struct Reader {
    let raw: UnsafeRawBufferPointer
    init(_ raw: UnsafeRawBufferPointer) { self.raw = raw }
    func u8(at o: Int) -> UInt8 { raw[o] }
    func u32(at o: Int) -> UInt32 {
        precondition(o >= 0 && o + 4 <= raw.count)
        return UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: UInt32.self))
    }
    func u64(at o: Int) -> UInt64 {
        precondition(o >= 0 && o + 8 <= raw.count)
        return UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: UInt64.self))
    }
    func allZero(_ range: Range<Int>) -> Bool { raw[range].allSatisfy { $0 == 0 } }
    func string(at o: Int, count: Int) -> String? {
        String(validating: raw[o ..< o + count], as: UTF8.self)
    }
}
