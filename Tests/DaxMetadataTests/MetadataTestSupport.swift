// Shared helpers of the DaxMetadata test suites: byte offsets of the on-media layout,
// little-endian field access on a copy's bytes, re-sealing a mutated copy with a valid
// CRC, sample tables, and a seeded random number generator.

import DaxMetadata
import Testing
import DaxTestSupport

let MiB: UInt64 = 1 << 20
let blockSize = Geometry.blockSize

// MARK: - Layout (see the comment at the top of MetadataCopy.swift)

enum Offsets {
    static let magic = 0
    static let version = 8
    static let flags = 12
    static let uuidHigh = 16
    static let uuidLow = 24
    static let deviceSize = 32
    static let alignment = 40
    static let generation = 48
    static let tableLength = 56
    static let checksum = 60

    static let arenaCount = 64
    static let extentCount = 68
    static let nextArenaID = 72

    /// Start of arena entry `index`.
    static func arena(_ index: Int) -> Int { 64 + 16 + index * 96 }
    static func arenaID(_ index: Int) -> Int { arena(index) }
    static func arenaSize(_ index: Int) -> Int { arena(index) + 8 }
    static func arenaFirstExtent(_ index: Int) -> Int { arena(index) + 16 }
    static func arenaExtentCount(_ index: Int) -> Int { arena(index) + 20 }
    static func arenaNameLength(_ index: Int) -> Int { arena(index) + 24 }
    static func arenaName(_ index: Int) -> Int { arena(index) + 25 }
    static func arenaReserved(_ index: Int) -> Int { arena(index) + 88 }

    /// Start of extent entry `index` in a table of `arenaCount` arenas.
    static func extent(_ index: Int, arenaCount: Int) -> Int { 64 + 16 + arenaCount * 96 + index * 24 }
}

// MARK: - Little-endian field access on a copy's bytes

extension Array where Element == UInt8 {
    func le32(at offset: Int) -> UInt32 {
        (0 ..< 4).reduce(UInt32(0)) { $0 | UInt32(self[offset + $1]) << (8 * $1) }
    }

    func le64(at offset: Int) -> UInt64 {
        (0 ..< 8).reduce(UInt64(0)) { $0 | UInt64(self[offset + $1]) << (8 * $1) }
    }

    mutating func setLE32(_ value: UInt32, at offset: Int) {
        for i in 0 ..< 4 { self[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }

    mutating func setLE64(_ value: UInt64, at offset: Int) {
        for i in 0 ..< 8 { self[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }

    /// Writes an arena entry's name length and name bytes, zeroing the rest of the
    /// 63-byte name field (the reserved 8 bytes after it are left alone).
    mutating func setArenaName(_ name: [UInt8], length: Int? = nil, arena index: Int) {
        precondition(name.count <= 63)
        self[Offsets.arenaNameLength(index)] = UInt8(length ?? name.count)
        for i in 0 ..< 63 { self[Offsets.arenaName(index) + i] = i < name.count ? name[i] : 0 }
    }

    /// The table length the header claims.
    var claimedTableLength: Int { Int(le32(at: Offsets.tableLength)) }

    /// Recomputes the CRC over `[0, 64 + tableLength)` (as the header claims it) with
    /// `MetadataCopy.checksum` and stores it at offset 60, so that a deliberately
    /// inconsistent copy gets past the checksum to the semantic validation.
    mutating func reseal() {
        let length = Swift.min(count, 64 + claimedTableLength)
        let crc = withUnsafeBytes { MetadataCopy.checksum(UnsafeRawBufferPointer(rebasing: $0[0 ..< length])) }
        setLE32(crc, at: Offsets.checksum)
    }
}

// MARK: - An independent CRC-32C, bit by bit, to cross-check the shim

func referenceCRC32C(_ bytes: some Sequence<UInt8>) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0 ..< 8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
    }
    return ~crc
}

// MARK: - Samples

let sampleUUID = HeapUUID(high: 0x0123_4567_89AB_CDEF, low: 0xFEDC_BA98_7654_3210)

/// A 64 MiB device with three arenas (ids 1, 3, 4; next id 5) and six extents:
///
///   arena 0 "alpha"  extents 0, 1:    [2, 6) MiB, [20, 22) MiB
///   arena 1 "béta"   extent  2:       [8, 10) MiB
///   arena 2 "γάμμα"  extents 3, 4, 5: [12, 14) MiB, [6, 8) MiB, [30, 38) MiB
///
/// The usable region is [2, 62) MiB. alpha's first extent and γάμμα's second touch.
func sampleMetadata() -> HeapMetadata {
    HeapMetadata(
        uuid: sampleUUID, deviceSize: 64 * MiB, alignment: 2 * MiB, generation: 7, nextArenaID: 5,
        arenas: [
            ArenaRecord(id: 1, name: "alpha", extents: [
                ExtentRecord(deviceOffset: 2 * MiB, arenaOffset: 0, length: 4 * MiB),
                ExtentRecord(deviceOffset: 20 * MiB, arenaOffset: 4 * MiB, length: 2 * MiB),
            ]),
            ArenaRecord(id: 3, name: "béta", extents: [
                ExtentRecord(deviceOffset: 8 * MiB, arenaOffset: 0, length: 2 * MiB),
            ]),
            ArenaRecord(id: 4, name: "γάμμα", extents: [
                ExtentRecord(deviceOffset: 12 * MiB, arenaOffset: 0, length: 2 * MiB),
                ExtentRecord(deviceOffset: 6 * MiB, arenaOffset: 2 * MiB, length: 2 * MiB),
                ExtentRecord(deviceOffset: 30 * MiB, arenaOffset: 4 * MiB, length: 8 * MiB),
            ]),
        ])
}

let sampleArenaCount = 3
let sampleExtentCount = 6

func sampleBytes() -> [UInt8] { MetadataCopy.encode(sampleMetadata()) }

/// An empty table on a device of `deviceSize` bytes.
func emptyMetadata(deviceSize: UInt64 = 6 * MiB, generation: UInt64 = 1) -> HeapMetadata {
    HeapMetadata(uuid: sampleUUID, deviceSize: deviceSize, alignment: 2 * MiB, generation: generation)
}

/// `count` arenas on a device just large enough, arena `i` holding `1 + i % maxExtents`
/// single-block extents scattered over the device in a seeded random order, so that
/// no arena is contiguous. Names mix ASCII and multi-byte UTF-8.
func manyArenas(count: Int, maxExtents: Int, seed: UInt64) -> HeapMetadata {
    var rng = SplitMix64(seed: seed)
    let perArena = (0 ..< count).map { 1 + $0 % maxExtents }
    let totalBlocks = perArena.reduce(0, +)
    var slots = Array(0 ..< totalBlocks)
    slots.shuffle(using: &rng)
    let decorations = ["", "é", "€", "😀", "日本", "ß"]
    var arenas: [ArenaRecord] = []
    var next = 0
    for i in 0 ..< count {
        var extents: [ExtentRecord] = []
        for k in 0 ..< perArena[i] {
            let device = blockSize * UInt64(1 + slots[next])
            next += 1
            extents.append(ExtentRecord(deviceOffset: device, arenaOffset: UInt64(k) * blockSize, length: blockSize))
        }
        arenas.append(ArenaRecord(id: UInt64(2 * i + 1), name: "arena-\(i)\(decorations[i % decorations.count])", extents: extents))
    }
    return HeapMetadata(
        uuid: sampleUUID, deviceSize: blockSize * UInt64(totalBlocks + 2), alignment: 2 * MiB,
        generation: 123_456, nextArenaID: UInt64(2 * count + 1), arenas: arenas)
}

// MARK: - Decoding expectations

/// The copy's bytes as the encoder would write them for the decoded result, or nil.
func decodedOrNil(_ bytes: [UInt8]) -> HeapMetadata? {
    if case .success(let metadata) = MetadataCopy.decode(bytes) { return metadata }
    return nil
}

/// Expects `bytes` to be refused as corrupt with a reason containing one of `reasons`
/// (case-insensitively).
func expectCorrupt(
    _ bytes: [UInt8], _ reasons: String..., note comment: String? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    switch MetadataCopy.decode(bytes) {
    case .success:
        Issue.record("decoded successfully, expected corrupt (\(reasons.joined(separator: " | ")))\(comment.map { ": \($0)" } ?? "")",
                     sourceLocation: sourceLocation)
    case .failure(.corrupt(let why)):
        let lowered = why.lowercased()
        #expect(reasons.contains { lowered.contains($0.lowercased()) },
                "reason \"\(why)\" does not mention \(reasons)\(comment.map { ": \($0)" } ?? "")",
                sourceLocation: sourceLocation)
    case .failure(let other):
        Issue.record("failed with \(other), expected corrupt (\(reasons.joined(separator: " | ")))\(comment.map { ": \($0)" } ?? "")",
                     sourceLocation: sourceLocation)
    }
}

/// Expects `bytes` to decode, and returns the result.
@discardableResult
func expectDecodes(
    _ bytes: [UInt8], note comment: String? = nil, sourceLocation: SourceLocation = #_sourceLocation
) -> HeapMetadata? {
    switch MetadataCopy.decode(bytes) {
    case .success(let metadata):
        return metadata
    case .failure(let error):
        Issue.record("refused: \(error)\(comment.map { " (\($0))" } ?? "")", sourceLocation: sourceLocation)
        return nil
    }
}

// MARK: - SplitMix64

