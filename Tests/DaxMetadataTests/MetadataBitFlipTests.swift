// Every single-bit flip of a copy is caught: in the header by the magic, the version,
// the length checks or the CRC; in the table by the CRC.

import DaxMetadata
import Testing

@Suite struct MetadataBitFlipTests {
    /// What a flip of header bit `bit` (0 ..< 512) must give, decoding `bytes`.
    func checkHeaderFlip(_ original: [UInt8], bit: Int, padTo length: Int? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
        var bytes = original
        if let length { bytes += [UInt8](repeating: 0, count: length - bytes.count) }
        let byte = bit / 8
        bytes[byte] ^= 1 << UInt8(bit % 8)
        let where_ = "header bit \(bit) (byte \(byte), bit \(bit % 8)), buffer of \(bytes.count) bytes"
        let result = MetadataCopy.decode(bytes)
        switch byte {
        case Offsets.magic ..< Offsets.version:
            #expect(result == .failure(.notADaxHeap), "\(where_)", sourceLocation: sourceLocation)
        case Offsets.version ..< Offsets.flags:
            switch result {
            case .failure(.unsupportedVersion(let v)):
                #expect(v == 1 ^ (1 << UInt32(bit - 64)), "\(where_): version \(v)", sourceLocation: sourceLocation)
            case .failure(.corrupt):
                break
            default:
                Issue.record("\(where_): \(result), expected unsupported version", sourceLocation: sourceLocation)
            }
        case Offsets.tableLength ..< Offsets.checksum:
            guard case .failure(.corrupt(let why)) = result else {
                Issue.record("\(where_): \(result), expected corrupt", sourceLocation: sourceLocation)
                return
            }
            #expect(why.contains("checksum") || why.contains("table length") || why.contains("cut short"),
                    "\(where_): \(why)", sourceLocation: sourceLocation)
        default:
            guard case .failure(.corrupt(let why)) = result else {
                Issue.record("\(where_): \(result), expected corrupt", sourceLocation: sourceLocation)
                return
            }
            #expect(why.contains("checksum"), "\(where_): \(why)", sourceLocation: sourceLocation)
        }
    }

    @Test(arguments: ["empty", "sample", "many"])
    func everyHeaderBitFlipIsCaught(table: String) {
        let metadata = switch table {
        case "empty": emptyMetadata()
        case "sample": sampleMetadata()
        default: manyArenas(count: 50, maxExtents: 4, seed: 3)
        }
        let bytes = MetadataCopy.encode(metadata)
        #expect(MetadataCopy.decode(bytes) == .success(metadata))
        for bit in 0 ..< 512 {
            checkHeaderFlip(bytes, bit: bit)
        }
    }

    /// The same flips when the copy is read as a whole block (zeros after it): a length
    /// flipped upwards now stays inside the buffer, and only the CRC can catch it.
    @Test func everyHeaderBitFlipIsCaughtInAWholeBlock() {
        let bytes = sampleBytes()
        for bit in 0 ..< 512 {
            checkHeaderFlip(bytes, bit: bit, padTo: Int(blockSize))
        }
    }

    @Test func tableLengthFlipsGiveTheRightReason() {
        let bytes = sampleBytes()
        let length = bytes.claimedTableLength  // 448
        for bit in 0 ..< 32 {
            var flipped = bytes
            flipped[Offsets.tableLength + bit / 8] ^= 1 << UInt8(bit % 8)
            let claimed = flipped.claimedTableLength
            #expect(claimed == length ^ (1 << bit))
            if claimed < 16 || claimed > MetadataCopy.maxTableLength {
                expectCorrupt(flipped, "table length", note: "bit \(bit)")
            } else if claimed > length {
                expectCorrupt(flipped, "cut short", note: "bit \(bit)")
            } else {
                expectCorrupt(flipped, "checksum", note: "bit \(bit)")
            }
        }
    }

    @Test(arguments: ["one", "sample", "many"])
    func everyTableBitFlipIsCaught(table: String) {
        let metadata = switch table {
        case "one": HeapMetadata(uuid: sampleUUID, deviceSize: 6 * MiB, alignment: 2 * MiB, generation: 1, nextArenaID: 2,
                                 arenas: [ArenaRecord(id: 1, name: "é", extents: [ExtentRecord(deviceOffset: 2 * MiB, arenaOffset: 0, length: 2 * MiB)])])
        case "sample": sampleMetadata()
        default: manyArenas(count: 12, maxExtents: 5, seed: 11)
        }
        let bytes = MetadataCopy.encode(metadata)
        #expect(MetadataCopy.decode(bytes) == .success(metadata))
        var caught = 0
        for bit in 64 * 8 ..< bytes.count * 8 {
            var flipped = bytes
            flipped[bit / 8] ^= 1 << UInt8(bit % 8)
            expectCorrupt(flipped, "checksum", note: "table bit \(bit - 512) (byte \(bit / 8))")
            caught += 1
        }
        #expect(caught == (bytes.count - 64) * 8)
    }

    /// Two copies' worth of flips of a flipped checksum field: any one-bit change of the
    /// stored value is a mismatch.
    @Test func aFlippedChecksumIsAMismatch() {
        let bytes = sampleBytes()
        let stored = bytes.le32(at: Offsets.checksum)
        for bit in 0 ..< 32 {
            var flipped = bytes
            flipped.setLE32(stored ^ (1 << UInt32(bit)), at: Offsets.checksum)
            guard case .failure(.corrupt(let why)) = MetadataCopy.decode(flipped) else {
                Issue.record("checksum bit \(bit) not caught")
                continue
            }
            #expect(why.contains("checksum mismatch"))
            #expect(why.contains(String(stored ^ (1 << UInt32(bit)), radix: 16)), "\(why)")
            #expect(why.contains(String(stored, radix: 16)), "\(why)")
        }
    }

    /// Byte-level damage as a media error leaves it: a whole byte, or a run of 8 bytes
    /// (one cache line word), set to 0x00 or 0xFF anywhere after the magic.
    @Test func wordsOfZerosOrOnesAreCaught() {
        let bytes = sampleBytes()
        for value: UInt8 in [0x00, 0xFF] {
            for start in stride(from: 8, to: bytes.count, by: 8) {
                var damaged = bytes
                for i in start ..< min(start + 8, bytes.count) { damaged[i] = value }
                if damaged == bytes { continue }
                switch MetadataCopy.decode(damaged) {
                case .success: Issue.record("word at \(start) set to \(value) decoded")
                case .failure(.notADaxHeap): Issue.record("word at \(start) set to \(value): not a heap")
                case .failure: break
                }
            }
        }
    }
}
