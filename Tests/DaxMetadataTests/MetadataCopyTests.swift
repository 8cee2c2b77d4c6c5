// Encoding and decoding of one metadata copy: round trips, the byte layout, determinism,
// and the table size arithmetic.

import DaxMetadata
import Testing
import DaxTestSupport

@Suite struct MetadataCopyTests {
    // MARK: - Round trips

    @Test func emptyTableRoundTrips() throws {
        let metadata = emptyMetadata()
        let bytes = MetadataCopy.encode(metadata)
        #expect(bytes.count == MetadataCopy.headerSize + MetadataCopy.tableHeaderSize)
        #expect(bytes.count == 80)
        let decoded = try MetadataCopy.decode(bytes).get()
        #expect(decoded == metadata)
        #expect(decoded.arenas.isEmpty)
        #expect(decoded.extentCount == 0)
        #expect(decoded.nextArenaID == 1)
    }

    @Test func emptyTableWithAnyNextIDRoundTrips() throws {
        for next: UInt64 in [0, 1, 2, 1 << 32, .max] {
            var metadata = emptyMetadata()
            metadata.nextArenaID = next
            #expect(try MetadataCopy.decode(MetadataCopy.encode(metadata)).get() == metadata)
        }
    }

    @Test func oneArenaRoundTrips() throws {
        let metadata = HeapMetadata(
            uuid: sampleUUID, deviceSize: 8 * MiB, alignment: 2 * MiB, generation: 2, nextArenaID: 2,
            arenas: [ArenaRecord(id: 1, name: "a", extents: [ExtentRecord(deviceOffset: 2 * MiB, arenaOffset: 0, length: 4 * MiB)])])
        let bytes = MetadataCopy.encode(metadata)
        #expect(bytes.count == 64 + MetadataCopy.tableLength(arenas: 1, extents: 1))
        #expect(try MetadataCopy.decode(bytes).get() == metadata)
        #expect(metadata.arenas[0].size == 4 * MiB)
    }

    @Test func sampleRoundTrips() throws {
        let metadata = sampleMetadata()
        let bytes = MetadataCopy.encode(metadata)
        #expect(bytes.count == 64 + 16 + 3 * 96 + 6 * 24)
        let decoded = try MetadataCopy.decode(bytes).get()
        #expect(decoded == metadata)
        #expect(decoded.arenas.map(\.name) == ["alpha", "béta", "γάμμα"])
        #expect(decoded.arenas.map(\.size) == [6 * MiB, 2 * MiB, 12 * MiB])
        #expect(decoded.extentCount == 6)
    }

    @Test(arguments: [(300, 7), (500, 3), (1000, 1)])
    func manyArenasWithManyExtentsRoundTrip(arenas: Int, maxExtents: Int) throws {
        let metadata = manyArenas(count: arenas, maxExtents: maxExtents, seed: 0xDA7A)
        #expect(metadata.arenas.count == arenas)
        let bytes = MetadataCopy.encode(metadata)
        #expect(bytes.count == 64 + MetadataCopy.tableLength(arenas: arenas, extents: metadata.extentCount))
        let decoded = try MetadataCopy.decode(bytes).get()
        #expect(decoded == metadata)
        #expect(MetadataCopy.encode(decoded) == bytes)
    }

    /// The largest table a block holds, 16 + 96a + 24e == 2 MiB - 64, round trips.
    @Test func fullBlockRoundTrips() throws {
        let arenaCount = 10_000
        let extentCount = 87_378 - 4 * arenaCount
        #expect(MetadataCopy.tableLength(arenas: arenaCount, extents: extentCount) == MetadataCopy.maxTableLength)
        var arenas: [ArenaRecord] = []
        var block: UInt64 = 1
        for i in 0 ..< arenaCount {
            let count = extentCount / arenaCount + (i < extentCount % arenaCount ? 1 : 0)
            var extents: [ExtentRecord] = []
            for k in 0 ..< count {
                // Every other block, so that no two extents of an arena touch.
                extents.append(ExtentRecord(deviceOffset: block * blockSize, arenaOffset: UInt64(k) * blockSize, length: blockSize))
                block += 2
            }
            arenas.append(ArenaRecord(id: UInt64(i + 1), name: "n\(i)", extents: extents))
        }
        let metadata = HeapMetadata(uuid: sampleUUID, deviceSize: (block + 1) * blockSize, alignment: 1 << 30,
                                    generation: .max, nextArenaID: .max, arenas: arenas)
        #expect(metadata.extentCount == extentCount)
        let bytes = MetadataCopy.encode(metadata)
        #expect(bytes.count == Int(blockSize))
        let decoded = try MetadataCopy.decode(bytes).get()
        #expect(decoded == metadata)
    }

    static let names: [String] = [
        "x",  // 1 byte
        "é",  // one 2-byte scalar
        "😀",  // one 4-byte scalar
        String(repeating: "a", count: 63),
        String(repeating: "é", count: 31) + "z",  // 62 + 1
        String(repeating: "€", count: 21),  // 21 x 3
        String(repeating: "😀", count: 15) + "abc",  // 60 + 3
        "日本語の名前" + String(repeating: "ü", count: 22) + "!",  // 18 + 44 + 1
        "e\u{301}",  // a decomposed é: kept byte for byte
        "a b\u{A0}c",  // U+00A0 is not a control character
        "~\u{7E}\u{A1}\u{FFFD}\u{10FFFF}",
        "-",
    ]

    @Test(arguments: names)
    func namesRoundTripByteForByte(name: String) throws {
        #expect(ArenaName.problem(with: name) == nil)
        #expect(name.utf8.count >= 1 && name.utf8.count <= 63)
        let metadata = HeapMetadata(
            uuid: sampleUUID, deviceSize: 8 * MiB, alignment: 2 * MiB, generation: 2, nextArenaID: 9,
            arenas: [ArenaRecord(id: 8, name: name, extents: [ExtentRecord(deviceOffset: 4 * MiB, arenaOffset: 0, length: 2 * MiB)])])
        let bytes = MetadataCopy.encode(metadata)
        let utf8 = Array(name.utf8)
        #expect(bytes[Offsets.arenaNameLength(0)] == UInt8(utf8.count))
        #expect(Array(bytes[Offsets.arenaName(0) ..< Offsets.arenaName(0) + utf8.count]) == utf8)
        #expect(bytes[Offsets.arenaName(0) + utf8.count ..< Offsets.arena(0) + 96].allSatisfy { $0 == 0 })
        let decoded = try MetadataCopy.decode(bytes).get()
        #expect(decoded == metadata)
        #expect(Array(decoded.arenas[0].name.utf8) == utf8)
    }

    @Test func decodingALongerBufferReadsOnlyTheCopy() throws {
        let bytes = sampleBytes()
        var block = [UInt8](repeating: 0, count: Int(blockSize))
        block.replaceSubrange(0 ..< bytes.count, with: bytes)
        #expect(try MetadataCopy.decode(block).get() == sampleMetadata())
        // Garbage after the copy does not matter either.
        var rng = SplitMix64(seed: 1)
        for i in bytes.count ..< block.count { block[i] = UInt8.random(in: 0 ... 255, using: &rng) }
        #expect(try MetadataCopy.decode(block).get() == sampleMetadata())
        // Nor does a buffer whose base is not aligned.
        let shifted = [0xAA] + bytes
        let decoded = shifted.withUnsafeBytes { MetadataCopy.decode(UnsafeRawBufferPointer(rebasing: $0[1...])) }
        #expect(try decoded.get() == sampleMetadata())
    }

    // MARK: - The bytes

    @Test func headerLayoutIsLittleEndianAsDocumented() {
        let metadata = sampleMetadata()
        let bytes = MetadataCopy.encode(metadata)
        #expect(Array(bytes[0 ..< 8]) == Array("DAXHEAP\0".utf8))
        #expect(Array(bytes[0 ..< 8]) == MetadataCopy.magic)
        #expect(bytes.le32(at: Offsets.version) == 1)
        #expect(bytes.le32(at: Offsets.flags) == 0)
        #expect(bytes.le64(at: Offsets.uuidHigh) == 0x0123_4567_89AB_CDEF)
        #expect(bytes.le64(at: Offsets.uuidLow) == 0xFEDC_BA98_7654_3210)
        #expect(Array(bytes[16 ..< 24]) == [0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01])
        #expect(bytes.le64(at: Offsets.deviceSize) == 64 * MiB)
        #expect(bytes.le64(at: Offsets.alignment) == 2 * MiB)
        #expect(bytes.le64(at: Offsets.generation) == 7)
        #expect(bytes.claimedTableLength == bytes.count - 64)
        #expect(MetadataCopy.checksumOffset == Offsets.checksum)
        #expect(MetadataCopy.tableLengthOffset == Offsets.tableLength)
    }

    @Test func tableLayoutIsAsDocumented() {
        let metadata = sampleMetadata()
        let bytes = MetadataCopy.encode(metadata)
        #expect(bytes.le32(at: Offsets.arenaCount) == 3)
        #expect(bytes.le32(at: Offsets.extentCount) == 6)
        #expect(bytes.le64(at: Offsets.nextArenaID) == 5)
        var first: UInt32 = 0
        var extentIndex = 0
        for (i, arena) in metadata.arenas.enumerated() {
            #expect(bytes.le64(at: Offsets.arenaID(i)) == arena.id)
            #expect(bytes.le64(at: Offsets.arenaSize(i)) == arena.size)
            #expect(bytes.le32(at: Offsets.arenaFirstExtent(i)) == first)
            #expect(bytes.le32(at: Offsets.arenaExtentCount(i)) == UInt32(arena.extents.count))
            #expect(bytes[Offsets.arenaReserved(i) ..< Offsets.arenaReserved(i) + 8].allSatisfy { $0 == 0 })
            first += UInt32(arena.extents.count)
            for extent in arena.extents {
                let at = Offsets.extent(extentIndex, arenaCount: 3)
                #expect(bytes.le64(at: at) == extent.deviceOffset)
                #expect(bytes.le64(at: at + 8) == extent.arenaOffset)
                #expect(bytes.le64(at: at + 16) == extent.length)
                extentIndex += 1
            }
        }
        #expect(Offsets.extent(extentIndex, arenaCount: 3) == bytes.count)
    }

    /// The stored checksum is the standard CRC-32C (reflected 0x82F63B78, init and final
    /// xor 0xFFFFFFFF) of the copy with the checksum field as zero.
    @Test func checksumIsCRC32COfTheCopyWithTheFieldZeroed() {
        #expect(referenceCRC32C(Array("123456789".utf8)) == 0xE306_9283)  // the check value
        for metadata in [emptyMetadata(), sampleMetadata(), manyArenas(count: 40, maxExtents: 4, seed: 9)] {
            let bytes = MetadataCopy.encode(metadata)
            var zeroed = bytes
            zeroed.setLE32(0, at: Offsets.checksum)
            #expect(bytes.le32(at: Offsets.checksum) == referenceCRC32C(zeroed))
            #expect(bytes.withUnsafeBytes { MetadataCopy.checksum($0) } == referenceCRC32C(zeroed))
            // Whatever the field holds, it is taken as zero.
            var junk = bytes
            junk.setLE32(0xDEAD_BEEF, at: Offsets.checksum)
            #expect(junk.withUnsafeBytes { MetadataCopy.checksum($0) } == bytes.le32(at: Offsets.checksum))
        }
    }

    /// The hardware CRC runs three interleaved streams over blocks of 8 KiB and 256 bytes
    /// and combines them: every path (long and short triples, words, bytes, unaligned
    /// starts) must give the bit-by-bit CRC-32C.
    @Test func checksumAgreesWithTheReferenceAtEveryPathAndAlignment() {
        var rng = SplitMix64(seed: 0xC3C3_2C)
        var lengths = [64, 65, 71, 72, 767, 768, 769, 775, 776, 3 * 8192 - 1, 3 * 8192, 3 * 8192 + 1,
                       3 * 8192 + 768 + 13, 2 * 3 * 8192 + 5 * 768 + 7, 120_080, Int(blockSize)]
        for _ in 0 ..< 12 { lengths.append(64 + rng.below(130_000)) }
        for (i, length) in lengths.enumerated() {
            let skew = i % 8  // start the copy at every offset within a word
            var buffer = [UInt8](repeating: 0, count: skew + length)
            for j in buffer.indices { buffer[j] = UInt8(truncatingIfNeeded: rng.next()) }
            var zeroed = Array(buffer[skew...])
            zeroed.setLE32(0, at: Offsets.checksum)
            let computed = buffer.withUnsafeBytes { MetadataCopy.checksum(UnsafeRawBufferPointer(rebasing: $0[skew...])) }
            #expect(computed == referenceCRC32C(zeroed), "length \(length), skew \(skew)")
        }
    }

    @Test func encodingIsDeterministic() throws {
        for metadata in [emptyMetadata(), sampleMetadata(), manyArenas(count: 200, maxExtents: 5, seed: 42)] {
            let first = MetadataCopy.encode(metadata)
            #expect(MetadataCopy.encode(metadata) == first)
            // An equal value built separately encodes to the same bytes.
            let copy = HeapMetadata(uuid: metadata.uuid, deviceSize: metadata.deviceSize, alignment: metadata.alignment,
                                    generation: metadata.generation, nextArenaID: metadata.nextArenaID,
                                    arenas: metadata.arenas.map { ArenaRecord(id: $0.id, name: String($0.name), extents: Array($0.extents)) })
            #expect(MetadataCopy.encode(copy) == first)
            // Decoding then encoding gives back the very bytes.
            #expect(MetadataCopy.encode(try MetadataCopy.decode(first).get()) == first)
        }
    }

    @Test func everyFieldChangesTheBytes() {
        let base = sampleMetadata()
        let bytes = MetadataCopy.encode(base)
        var variants: [HeapMetadata] = []
        var m = base; m.uuid = HeapUUID(high: 1, low: 2); variants.append(m)
        m = base; m.deviceSize += blockSize; variants.append(m)
        m = base; m.alignment = 4096; variants.append(m)
        m = base; m.generation += 1; variants.append(m)
        m = base; m.nextArenaID += 1; variants.append(m)
        m = base; m.arenas[1].name = "beta"; variants.append(m)
        m = base; m.arenas[1].id = 2; variants.append(m)
        m = base; m.arenas[2].extents[2].length += blockSize; variants.append(m)
        for variant in variants {
            let other = MetadataCopy.encode(variant)
            #expect(other != bytes)
            #expect(other.le32(at: Offsets.checksum) != bytes.le32(at: Offsets.checksum))
            #expect(MetadataCopy.decode(other) == .success(variant))
        }
    }

    // MARK: - Size arithmetic

    @Test func tableLengthArithmetic() {
        #expect(MetadataCopy.headerSize == 64)
        #expect(MetadataCopy.tableHeaderSize == 16)
        #expect(MetadataCopy.arenaEntrySize == 96)
        #expect(MetadataCopy.extentEntrySize == 24)
        #expect(MetadataCopy.maxTableLength == 2 * 1024 * 1024 - 64)
        #expect(MetadataCopy.tableLength(arenas: 0, extents: 0) == 16)
        #expect(MetadataCopy.tableLength(arenas: 1, extents: 0) == 112)
        #expect(MetadataCopy.tableLength(arenas: 0, extents: 1) == 40)
        #expect(MetadataCopy.tableLength(arenas: 1, extents: 1) == 136)
        #expect(MetadataCopy.tableLength(arenas: 3, extents: 6) == 16 + 288 + 144)
        #expect(MetadataCopy.tableLength(arenas: 21_844, extents: 2) == MetadataCopy.maxTableLength)
        for a in stride(from: 0, through: 21_844, by: 997) {
            for e in [0, 1, 24, 1000, 87_378 - 4 * a] where e >= 0 {
                #expect(MetadataCopy.tableLength(arenas: a, extents: e) == 16 + 96 * a + 24 * e)
            }
        }
    }

    @Test func fitsExactlyUpToTheBlock() {
        // 16 + 96a + 24e <= 2 MiB - 64 - 1536 (room for the largest device identity record)
        //   <=>  4a + e <= 87314
        #expect(MetadataCopy.maxArenaTableLength == MetadataCopy.maxTableLength - 1536)
        #expect(MetadataCopy.fits(arenas: 0, extents: 0))
        #expect(MetadataCopy.fits(arenas: 0, extents: 87_314))
        #expect(!MetadataCopy.fits(arenas: 0, extents: 87_315))
        #expect(MetadataCopy.fits(arenas: 21_828, extents: 2))
        #expect(!MetadataCopy.fits(arenas: 21_828, extents: 3))
        #expect(!MetadataCopy.fits(arenas: 21_829, extents: 0))
        #expect(MetadataCopy.fits(arenas: 1, extents: 87_310))
        #expect(!MetadataCopy.fits(arenas: 1, extents: 87_311))
        for a in stride(from: 0, through: 21_829, by: 113) {
            let limit = 87_314 - 4 * a
            if limit >= 0 {
                #expect(MetadataCopy.fits(arenas: a, extents: limit))
                #expect(!MetadataCopy.fits(arenas: a, extents: limit + 1))
            } else {
                #expect(!MetadataCopy.fits(arenas: a, extents: 0))
            }
        }
    }

    // MARK: - Header peeking

    @Test func claimedTableLength() {
        let bytes = sampleBytes()
        bytes.withUnsafeBytes { raw in
            #expect(MetadataCopy.claimedTableLength(header: raw) == bytes.count - 64)
            #expect(MetadataCopy.claimedTableLength(header: UnsafeRawBufferPointer(rebasing: raw[0 ..< 64])) == bytes.count - 64)
            #expect(MetadataCopy.claimedTableLength(header: UnsafeRawBufferPointer(rebasing: raw[0 ..< 63])) == nil)
        }
        var other = bytes
        other[3] ^= 0x01
        #expect(other.withUnsafeBytes { MetadataCopy.claimedTableLength(header: $0) } == nil)
        other = bytes
        other.setLE32(UInt32(MetadataCopy.maxTableLength), at: Offsets.tableLength)
        #expect(other.withUnsafeBytes { MetadataCopy.claimedTableLength(header: $0) } == MetadataCopy.maxTableLength)
        other.setLE32(UInt32(MetadataCopy.maxTableLength + 1), at: Offsets.tableLength)
        #expect(other.withUnsafeBytes { MetadataCopy.claimedTableLength(header: $0) } == nil)
        other.setLE32(.max, at: Offsets.tableLength)
        #expect(other.withUnsafeBytes { MetadataCopy.claimedTableLength(header: $0) } == nil)
        let zeros = [UInt8](repeating: 0, count: 64)
        #expect(zeros.withUnsafeBytes { MetadataCopy.claimedTableLength(header: $0) } == nil)
    }

    // MARK: - Errors and small types

    @Test func decodeErrorDescriptions() {
        #expect(MetadataDecodeError.notADaxHeap.description == "no DaxHeap magic")
        #expect(MetadataDecodeError.unsupportedVersion(3).description.contains("3"))
        #expect(MetadataDecodeError.unsupportedVersion(3).description.contains("versions 1 and 2"))
        #expect(MetadataDecodeError.corrupt("why").description == "why")
    }

    @Test func uuidDescriptionAndRandomVersion() {
        #expect(sampleUUID.description == "01234567-89ab-cdef-fedc-ba9876543210")
        #expect(HeapUUID(high: 0, low: 1).description == "00000000-0000-0000-0000-000000000001")
        var seen = Set<HeapUUID>()
        for _ in 0 ..< 100 {
            let u = HeapUUID.random()
            #expect((u.bytes.0 >> 12) & 0xF == 4, "version nibble of \(u)")
            #expect(u.bytes.1 >> 62 == 0b10, "variant bits of \(u)")
            #expect(Array(u.description)[14] == "4")
            seen.insert(u)
        }
        #expect(seen.count == 100)
    }

    @Test func geometry() {
        #expect(Geometry.blockSize == 2 * MiB)
        #expect(Geometry.minimumDeviceSize == 6 * MiB)
        #expect(Geometry.primaryOffset == 0)
        #expect(Geometry.secondaryOffset(deviceSize: 64 * MiB) == 62 * MiB)
        #expect(Geometry.usableRegion(deviceSize: 64 * MiB) == 2 * MiB ..< 62 * MiB)
        #expect(Geometry.isAligned(0) && Geometry.isAligned(4 * MiB) && !Geometry.isAligned(MiB))
    }
}
