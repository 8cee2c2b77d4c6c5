// The device identity record of format version 2 (docs/FORMAT.md, "Device identity"):
// encoding, the version field, the edit path (`applying`) carrying it, and its validation.

import DaxMetadata
import Testing

private let fullIdentity = DeviceIdentityRecord(
    regionID: 3, regionSize: 64 << 30, alignment: 2 << 20, deviceSize: 64 * MiB,
    ranges: [MappingRangeRecord(deviceOffset: 0, physicalStart: 0x1_0000_0000, length: 32 * MiB),
             MappingRangeRecord(deviceOffset: 32 * MiB, physicalStart: 0x9_0000_0000, length: 32 * MiB)])

private func withIdentity(_ identity: DeviceIdentityRecord? = fullIdentity) -> HeapMetadata {
    var m = sampleMetadata()
    m.identity = identity
    return m
}

/// Where the record starts in the sample's copy.
private let recordAt = 64 + MetadataCopy.tableLength(arenas: sampleArenaCount, extents: sampleExtentCount)

private func sealedRecord(_ mutate: (inout [UInt8]) -> Void) -> [UInt8] {
    var bytes = MetadataCopy.encode(withIdentity())
    mutate(&bytes)
    bytes.reseal()
    return bytes
}

@Suite struct DeviceIdentityRecordTests {
    @Test func aCopyWithoutIdentityIsVersionOneAsBefore() throws {
        let bytes = sampleBytes()
        #expect(bytes.le32(at: Offsets.version) == 1)
        #expect(bytes.count == recordAt)
        #expect(try MetadataCopy.decode(bytes).get().identity == nil)
    }

    @Test(arguments: [
        fullIdentity,
        DeviceIdentityRecord(regionID: nil, regionSize: nil, alignment: 1 << 30, deviceSize: 64 * MiB, ranges: nil),
        DeviceIdentityRecord(regionID: 0, regionSize: nil, alignment: 4096, deviceSize: 6 * MiB, ranges: []),
    ])
    func aCopyWithIdentityIsVersionTwoAndRoundTrips(identity: DeviceIdentityRecord) throws {
        let metadata = withIdentity(identity)
        let bytes = MetadataCopy.encode(metadata)
        #expect(bytes.le32(at: Offsets.version) == 2)
        #expect(bytes.count == recordAt + identity.encodedLength)
        #expect(bytes.claimedTableLength == bytes.count - 64)
        #expect(bytes.le32(at: recordAt) == UInt32(identity.encodedLength))
        let decoded = try MetadataCopy.decode(bytes).get()
        #expect(decoded == metadata)
        #expect(MetadataCopy.encode(decoded) == bytes, "the decoder is canonical")
    }

    @Test func theRecordLayoutIsAsDocumented() {
        let bytes = MetadataCopy.encode(withIdentity())
        #expect(bytes.le32(at: recordAt + 4) == 0b111)
        #expect(bytes.le64(at: recordAt + 8) == 3)
        #expect(bytes.le64(at: recordAt + 16) == 64 << 30)
        #expect(bytes.le64(at: recordAt + 24) == 2 << 20)
        #expect(bytes.le32(at: recordAt + 32) == 2)
        #expect(bytes.le32(at: recordAt + 36) == 0)
        #expect(bytes.le64(at: recordAt + 40) == 64 * MiB)
        #expect(bytes.le64(at: recordAt + 48 + 24) == 32 * MiB)
        #expect(bytes.le64(at: recordAt + 48 + 24 + 8) == 0x9_0000_0000)
        #expect(bytes.le64(at: recordAt + 48 + 24 + 16) == 32 * MiB)
    }

    /// The provisioning path edits the image in place; the record after the extents moves
    /// with them, and the result is byte for byte a full encoding.
    @Test func applyingAnArenaChangeCarriesTheRecord() {
        let metadata = withIdentity()
        let image = MetadataCopy.encode(metadata)
        var inserted = metadata
        let new = ArenaRecord(id: 5, name: "new", extents: [ExtentRecord(deviceOffset: 40 * MiB, arenaOffset: 0, length: 2 * MiB)])
        inserted.arenas.append(new)
        inserted.generation = 8
        inserted.nextArenaID = 6
        #expect(MetadataCopy.applying(.insert(new, at: 3), to: image, generation: 8, nextArenaID: 6) == MetadataCopy.encode(inserted))
        var removed = metadata
        removed.arenas.remove(at: 0)
        removed.generation = 9
        #expect(MetadataCopy.applying(.remove(at: 0), to: image, generation: 9, nextArenaID: 5) == MetadataCopy.encode(removed))
        #expect(MetadataCopy.restamped(image, generation: 10).le32(at: Offsets.version) == 2)
    }

    @Test func theRecordIsValidated() {
        expectCorrupt(sealedRecord { $0.setLE32(0b1000, at: recordAt + 4) }, "device identity: unknown flags")
        expectCorrupt(sealedRecord { $0.setLE32(1, at: recordAt + 36) }, "device identity: unknown flags")
        expectCorrupt(sealedRecord { $0.setLE32(0b110, at: recordAt + 4) }, "device identity: a field marked unknown is not zero")
        expectCorrupt(sealedRecord { $0.setLE32(0b011, at: recordAt + 4) }, "device identity: a field marked unknown is not zero")
        expectCorrupt(sealedRecord { $0.setLE32(1, at: recordAt + 32) }, "device identity: record length")
        expectCorrupt(sealedRecord { $0.setLE32(200, at: recordAt) }, "device identity: record length")
        expectCorrupt(sealedRecord { $0.setLE64(3 << 20, at: recordAt + 24) }, "device identity: alignment")
        // A range empty, overlapping the one before, or past 2^64.
        expectCorrupt(sealedRecord { $0.setLE64(0, at: recordAt + 48 + 16) }, "device identity: mapping range 0")
        expectCorrupt(sealedRecord { $0.setLE64(16 * MiB, at: recordAt + 48 + 24) }, "device identity: mapping range 1")
        expectCorrupt(sealedRecord { $0.setLE64(.max - 4096, at: recordAt + 48 + 24 + 8) }, "device identity: mapping range 1")
        // A version-2 table too short for the record's header.
        var short = sampleBytes()
        short.setLE32(2, at: Offsets.version)
        short += [UInt8](repeating: 0, count: 40)
        short.setLE32(UInt32(short.count - 64), at: Offsets.tableLength)
        short.reseal()
        expectCorrupt(short, "device identity: 40 bytes")
    }

    @Test func theArenaTableLeavesRoomForTheLargestRecord() {
        #expect(DeviceIdentityRecord.reservedLength == 48 + 62 * 24)
        let ranges = (0 ..< UInt64(DeviceIdentityRecord.maxRanges)).map {
            MappingRangeRecord(deviceOffset: $0 * 2 * MiB, physicalStart: $0 * 4 * MiB, length: 2 * MiB)
        }
        let largest = DeviceIdentityRecord(regionID: 1, regionSize: 1, alignment: 4096, deviceSize: 6 * MiB, ranges: ranges)
        #expect(largest.encodedLength == DeviceIdentityRecord.reservedLength)
        #expect(MetadataCopy.maxArenaTableLength + largest.encodedLength == MetadataCopy.maxTableLength)
    }
}
