// The decoder's semantic validation: copies with a VALID checksum whose contents break a
// rule of the table. Each test mutates the bytes of a valid copy by hand, re-seals it
// (recomputes the CRC with MetadataCopy.checksum and stores it at offset 60), and
// expects a refusal naming the broken rule.
//
// The sample table (MetadataTestSupport.swift), on a 64 MiB device, usable [2, 62) MiB:
//   arena 0 "alpha" id 1: extents 0 [2,6) MiB, 1 [20,22) MiB
//   arena 1 "béta"  id 3: extent  2 [8,10) MiB
//   arena 2 "γάμμα" id 4: extents 3 [12,14) MiB, 4 [6,8) MiB, 5 [30,38) MiB
//   next id 5

import DaxMetadata
#if canImport(Glibc)
import Glibc
#endif
import Testing

/// The sample's bytes after `mutate`, re-sealed.
private func sealed(_ mutate: (inout [UInt8]) -> Void) -> [UInt8] {
    var bytes = sampleBytes()
    mutate(&bytes)
    bytes.reseal()
    return bytes
}

private func extentAt(_ index: Int) -> Int { Offsets.extent(index, arenaCount: sampleArenaCount) }

@Suite struct MetadataValidationTests {
    @Test func resealingAnUnchangedCopyChangesNothing() {
        #expect(sealed { _ in } == sampleBytes())
        #expect(MetadataCopy.decode(sealed { _ in }) == .success(sampleMetadata()))
    }

    // MARK: - Extents

    @Test func overlappingExtentsOfTwoArenas() {
        // béta's extent moved onto alpha's first [2, 6) MiB.
        expectCorrupt(sealed { $0.setLE64(4 * MiB, at: extentAt(2)) }, "overlap")
        expectCorrupt(sealed { $0.setLE64(2 * MiB, at: extentAt(2)) }, "overlap")
        // béta's extent at the same start as alpha's second.
        expectCorrupt(sealed { $0.setLE64(20 * MiB, at: extentAt(2)) }, "overlap")
        // γάμμα's last extent [30, 38) moved to [20, 28): covers alpha's [20, 22).
        expectCorrupt(sealed { $0.setLE64(20 * MiB, at: extentAt(5)) }, "overlap")
        // ... to [16, 24): alpha's [20, 22) lies inside it.
        expectCorrupt(sealed { $0.setLE64(16 * MiB, at: extentAt(5)) }, "overlap")
        // ... to [4, 12) MiB: starts inside alpha's first.
        expectCorrupt(sealed { $0.setLE64(4 * MiB, at: extentAt(5)) }, "overlap")
        // Touching is fine: alpha [2, 6) and γάμμα [6, 8) already touch; béta to [10, 12) touches [12, 14).
        expectDecodes(sealed { $0.setLE64(10 * MiB, at: extentAt(2)) })
        expectDecodes(sealed { $0.setLE64(60 * MiB, at: extentAt(2)) })
    }

    @Test func overlappingExtentsOfOneArena() {
        // γάμμα's second extent moved onto its first.
        expectCorrupt(sealed { $0.setLE64(12 * MiB, at: extentAt(4)) }, "overlap")
        // γάμμα's first moved inside its third, [30, 38).
        expectCorrupt(sealed { $0.setLE64(36 * MiB, at: extentAt(3)) }, "overlap")
        // alpha's second moved onto its first.
        expectCorrupt(sealed { $0.setLE64(4 * MiB, at: extentAt(1)) }, "overlap")
    }

    @Test func misalignedExtents() {
        for delta: UInt64 in [1, 512, 4096, MiB, blockSize - 1] {
            expectCorrupt(sealed { $0.setLE64(2 * MiB + delta, at: extentAt(0)) }, "aligned", note: "offset +\(delta)")
            expectCorrupt(sealed { $0.setLE64(8 * MiB - delta, at: extentAt(2)) }, "aligned", note: "offset -\(delta)")
            // A misaligned length, and the size made to agree so that only alignment is wrong.
            expectCorrupt(sealed {
                $0.setLE64(2 * MiB + delta, at: extentAt(2) + 16)
                $0.setLE64(2 * MiB + delta, at: Offsets.arenaSize(1))
            }, "aligned", note: "length +\(delta)")
        }
    }

    @Test func emptyExtent() {
        expectCorrupt(sealed {
            $0.setLE64(0, at: extentAt(2) + 16)
            $0.setLE64(0, at: Offsets.arenaSize(1))
        }, "empty")
    }

    @Test func extentsOutsideTheUsableRegion() {
        // In the primary block.
        expectCorrupt(sealed { $0.setLE64(0, at: extentAt(2)) }, "usable region")
        // In the secondary block, [62, 64) MiB.
        expectCorrupt(sealed { $0.setLE64(62 * MiB, at: extentAt(2)) }, "usable region")
        // Past the device.
        expectCorrupt(sealed { $0.setLE64(64 * MiB, at: extentAt(2)) }, "usable region")
        expectCorrupt(sealed { $0.setLE64(1 << 40, at: extentAt(2)) }, "usable region")
        expectCorrupt(sealed { $0.setLE64(UInt64.max & ~(blockSize - 1), at: extentAt(2)) }, "usable region")
        // Running into the secondary block: γάμμα's [30, 38) made [56, 64).
        expectCorrupt(sealed { $0.setLE64(56 * MiB, at: extentAt(5)) }, "usable region")
        // Ending exactly at the secondary block is fine: [54, 62).
        expectDecodes(sealed { $0.setLE64(54 * MiB, at: extentAt(5)) })
        // A length that would overflow offset + length.
        let huge = UInt64.max & ~(blockSize - 1)
        expectCorrupt(sealed {
            $0.setLE64(huge, at: extentAt(2) + 16)
            $0.setLE64(huge, at: Offsets.arenaSize(1))
        }, "usable region")
        // Too long by one block: [8, 64).
        expectCorrupt(sealed {
            $0.setLE64(56 * MiB, at: extentAt(2) + 16)
            $0.setLE64(56 * MiB, at: Offsets.arenaSize(1))
        }, "usable region", "overlap")
    }

    @Test func arenaOffsetsNotContiguous() {
        // γάμμα's second extent claims arena offset 4 MiB instead of 2 MiB: a hole.
        expectCorrupt(sealed { $0.setLE64(4 * MiB, at: extentAt(4) + 8) }, "arena offset")
        // ... or 0: overlapping the first within the arena.
        expectCorrupt(sealed { $0.setLE64(0, at: extentAt(4) + 8) }, "arena offset")
        // The first extent does not start at arena offset 0.
        expectCorrupt(sealed { $0.setLE64(2 * MiB, at: extentAt(3) + 8) }, "arena offset")
        expectCorrupt(sealed { $0.setLE64(.max, at: extentAt(0) + 8) }, "arena offset")
        // Extents listed out of arena-offset order: swap γάμμα's first two entries' arena offsets.
        expectCorrupt(sealed {
            $0.setLE64(2 * MiB, at: extentAt(3) + 8)
            $0.setLE64(0, at: extentAt(4) + 8)
        }, "arena offset")
    }

    @Test func sizeNotTheSumOfTheExtents() {
        for size: UInt64 in [0, 2 * MiB, 4 * MiB, 8 * MiB, 6 * MiB + 1, .max] {
            expectCorrupt(sealed { $0.setLE64(size, at: Offsets.arenaSize(0)) }, "not the sum", note: "size \(size)")
        }
        expectCorrupt(sealed { $0.setLE64(14 * MiB, at: Offsets.arenaSize(2)) }, "not the sum")
    }

    @Test func extentsOwnedByNoArena() throws {
        // A seventh, valid, extent appended, counted in the extent count and the table
        // length, but in no arena's run.
        var bytes = sampleBytes()
        var extra = [UInt8](repeating: 0, count: 24)
        extra.setLE64(40 * MiB, at: 0)
        extra.setLE64(0, at: 8)
        extra.setLE64(2 * MiB, at: 16)
        bytes += extra
        bytes.setLE32(7, at: Offsets.extentCount)
        bytes.setLE32(UInt32(bytes.count - 64), at: Offsets.tableLength)
        bytes.reseal()
        expectCorrupt(bytes, "belong to no arena")
    }

    @Test func arenaWithNoExtents() {
        // An arena of no extents, encoded consistently: the run of 0 is refused.
        var metadata = sampleMetadata()
        metadata.arenas.insert(ArenaRecord(id: 2, name: "void", extents: []), at: 1)
        let bytes = MetadataCopy.encode(metadata)
        expectCorrupt(bytes, "extent run")
    }

    // MARK: - Extent runs and counts

    @Test func extentRunsThatDoNotFollowEachOther() {
        // alpha takes 3 extents: béta's run must then start at 3.
        expectCorrupt(sealed { $0.setLE32(3, at: Offsets.arenaExtentCount(0)) }, "extent run", "arena offset", "not the sum")
        // alpha takes 1: béta's run starts at 2, expected 1.
        expectCorrupt(sealed { $0.setLE32(1, at: Offsets.arenaExtentCount(0)) }, "extent run", "not the sum")
        // A run of zero.
        expectCorrupt(sealed { $0.setLE32(0, at: Offsets.arenaExtentCount(1)) }, "extent run")
        // Runs starting elsewhere.
        for first: UInt32 in [1, 2, 6, 7, .max] {
            expectCorrupt(sealed { $0.setLE32(first, at: Offsets.arenaFirstExtent(0)) }, "extent run", note: "first \(first)")
        }
        expectCorrupt(sealed { $0.setLE32(0, at: Offsets.arenaFirstExtent(1)) }, "extent run")
        // The last run overflowing the extents.
        for count: UInt32 in [4, 5, 1000, .max] {
            expectCorrupt(sealed { $0.setLE32(count, at: Offsets.arenaExtentCount(2)) }, "extent run", note: "count \(count)")
        }
        // A huge first index with a huge count (their sum overflows 32 bits).
        expectCorrupt(sealed {
            $0.setLE32(.max, at: Offsets.arenaFirstExtent(2))
            $0.setLE32(.max, at: Offsets.arenaExtentCount(2))
        }, "extent run")
        // The last run too short: extents left over.
        expectCorrupt(sealed {
            $0.setLE32(2, at: Offsets.arenaExtentCount(2))
            $0.setLE64(4 * MiB, at: Offsets.arenaSize(2))
        }, "belong to no arena")
    }

    @Test func countsInconsistentWithTheTableLength() {
        for (arenas, extents): (UInt32, UInt32) in [
            (2, 6), (4, 6), (3, 5), (3, 7), (0, 0), (0, 6), (3, 0),
            (.max, 6), (3, .max), (.max, .max), (0x8000_0000, 6), (3, 0x8000_0000),
            (21_845, 0), (0, 87_379), (21_844, 2), (0, 87_378),  // a full block, but not this table
            (0, 18), (1, 14), (2, 10),  // 4a + e = 18, the sample's 4*3 + 6: same length, wrong split
        ] where !(arenas == 3 && extents == 6) {
            let bytes = sealed {
                $0.setLE32(arenas, at: Offsets.arenaCount)
                $0.setLE32(extents, at: Offsets.extentCount)
            }
            let total = 16 + 96 * Int(arenas) + 24 * Int(extents)
            if total == bytes.claimedTableLength {
                // Same length: the entries are read with the wrong split, and refused.
                switch MetadataCopy.decode(bytes) {
                case .success: Issue.record("\(arenas) arenas, \(extents) extents decoded")
                case .failure(.corrupt): break
                case .failure(let e): Issue.record("\(arenas) arenas, \(extents) extents: \(e)")
                }
            } else {
                expectCorrupt(bytes, "do not make", note: "\(arenas) arenas, \(extents) extents")
            }
        }
    }

    @Test func tableLengthOutOfBounds() {
        for length: UInt32 in [0, 1, 15, UInt32(MetadataCopy.maxTableLength) + 1, UInt32(blockSize), 0x8000_0000, .max] {
            var bytes = sampleBytes()
            bytes.setLE32(length, at: Offsets.tableLength)
            // Even with room in the buffer, the length itself is refused.
            bytes += [UInt8](repeating: 0, count: Int(blockSize) - bytes.count)
            expectCorrupt(bytes, "table length", note: "length \(length)")
        }
        // Within the block, but longer than the buffer.
        var bytes = sampleBytes()
        bytes.setLE32(UInt32(MetadataCopy.maxTableLength), at: Offsets.tableLength)
        expectCorrupt(bytes, "cut short")
    }

    @Test func tableLengthLongerThanTheCountsWithAValidChecksum() {
        // 24 zero bytes more than the counts need, covered by a valid CRC.
        var bytes = sampleBytes() + [UInt8](repeating: 0, count: 24)
        bytes.setLE32(UInt32(bytes.count - 64), at: Offsets.tableLength)
        bytes.reseal()
        expectCorrupt(bytes, "do not make")
        // Shorter than the counts need (the last extent cut off), valid CRC.
        var short = Array(sampleBytes().dropLast(24))
        short.setLE32(UInt32(short.count - 64), at: Offsets.tableLength)
        short.reseal()
        expectCorrupt(short, "do not make")
        // The minimum length with the sample's counts.
        var minimal = Array(sampleBytes().prefix(80))
        minimal.setLE32(16, at: Offsets.tableLength)
        minimal.reseal()
        expectCorrupt(minimal, "do not make")
    }

    @Test func everyTruncationFailsCleanly() {
        for original in [sampleBytes(), MetadataCopy.encode(emptyMetadata()), MetadataCopy.encode(manyArenas(count: 20, maxExtents: 3, seed: 5))] {
            for length in 0 ..< original.count {
                let cut = Array(original.prefix(length))
                let result = MetadataCopy.decode(cut)
                if length < 64 {
                    #expect(result == .failure(.notADaxHeap), "cut to \(length)")
                } else {
                    expectCorrupt(cut, "cut short", note: "cut to \(length)")
                }
                // The same through a raw buffer that is exactly that long.
                let viaRaw = original.withUnsafeBytes { MetadataCopy.decode(UnsafeRawBufferPointer(rebasing: $0[0 ..< length])) }
                #expect(viaRaw == result, "cut to \(length)")
            }
        }
    }

    /// A cut copy whose header was edited to agree (length and CRC): the counts refuse it.
    @Test func truncationWithAMatchingHeader() {
        let original = sampleBytes()
        for length in stride(from: 80, to: original.count, by: 4) {
            var cut = Array(original.prefix(length))
            cut.setLE32(UInt32(length - 64), at: Offsets.tableLength)
            cut.reseal()
            expectCorrupt(cut, "do not make", note: "cut to \(length)")
        }
    }

    // MARK: - Names

    @Test func duplicateNames() {
        expectCorrupt(sealed { $0.setArenaName(Array("alpha".utf8), arena: 2) }, "appears twice")
        expectCorrupt(sealed { $0.setArenaName(Array("béta".utf8), arena: 2) }, "appears twice")
        expectCorrupt(sealed { $0.setArenaName(Array("alpha".utf8), arena: 1) }, "appears twice")
        // Differing in case is a different name.
        expectDecodes(sealed { $0.setArenaName(Array("Alpha".utf8), arena: 1) })
    }

    /// Names are Swift strings, compared by canonical equivalence: a precomposed and a
    /// decomposed "é" are the same name (as for the arena table's name lookup).
    @Test func canonicallyEquivalentNamesAreDuplicates() {
        // béta (arena 1) is stored precomposed, U+00E9; alpha renamed to a decomposed béta.
        #expect(Array(sampleBytes()[Offsets.arenaName(1) ..< Offsets.arenaName(1) + 5]) == [0x62, 0xC3, 0xA9, 0x74, 0x61])
        expectCorrupt(sealed { $0.setArenaName(Array("be\u{301}ta".utf8), arena: 0) }, "appears twice")
        // Renamed to a decomposed name nobody else has, it decodes and keeps its bytes.
        let decoded = expectDecodes(sealed { $0.setArenaName(Array("e\u{301}".utf8), arena: 0) })
        #expect(decoded.map { Array($0.arenas[0].name.utf8) } == [0x65, 0xCC, 0x81])
    }

    @Test(arguments: [
        [0xFF], [0xFE], [0x80], [0xBF],  // not a lead byte
        [0xC0, 0x80], [0xC1, 0xBF],  // overlong 2-byte
        [0xE0, 0x80, 0x80], [0xF0, 0x80, 0x80, 0x80],  // overlong 3- and 4-byte
        [0xED, 0xA0, 0x80], [0xED, 0xBF, 0xBF],  // surrogates
        [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80],  // above U+10FFFF
        [0x61, 0xC3], [0x61, 0xE2, 0x82], [0xF0, 0x9F, 0x98],  // cut short
        [0xC3, 0x61], [0xE2, 0x28, 0xA1],  // bad continuation
    ] as [[UInt8]])
    func invalidUTF8Names(name: [UInt8]) {
        expectCorrupt(sealed { $0.setArenaName(name, arena: 1) }, "UTF-8", note: "\(name)")
        // At the end of a full-length name.
        let long = Array(repeating: UInt8(ascii: "a"), count: 63 - name.count) + name
        expectCorrupt(sealed { $0.setArenaName(long, arena: 0) }, "UTF-8", note: "\(name) at the end")
    }

    /// A name whose multi-byte character is split by the length byte.
    @Test func nameLengthSplittingACharacter() {
        // "γάμμα" is 10 bytes; claim 9 and zero the tenth.
        expectCorrupt(sealed { $0.setArenaName(Array(Array("γάμμα".utf8).prefix(9)), arena: 2) }, "UTF-8")
    }

    @Test(arguments: ["\u{0}", "a\u{0}b", "\u{1}", "tab\there", "new\nline", "\u{1B}[0m", "\u{1F}", "del\u{7F}", "\u{80}", "c1\u{85}", "\u{9F}"])
    func controlCharactersInNames(name: String) {
        let utf8 = Array(name.utf8)
        expectCorrupt(sealed { $0.setArenaName(utf8, arena: 1) }, "control character", note: "\(utf8)")
    }

    @Test func nameLengthOutOfRange() {
        // Zero-length, all-zero name field.
        expectCorrupt(sealed { $0.setArenaName([], arena: 1) }, "name length")
        // Zero length with name bytes still there.
        expectCorrupt(sealed { $0[Offsets.arenaNameLength(1)] = 0 }, "name length")
        // Longer than the field: 64 runs into the reserved bytes; 255 is the byte's maximum.
        for length in [64, 65, 88, 100, 255] {
            expectCorrupt(sealed { $0.setArenaName(Array(repeating: 0x61, count: 63), length: length, arena: 1) }, "name length",
                          note: "length \(length)")
        }
        // A length longer than the name: it takes zero padding into the name (a NUL).
        expectCorrupt(sealed { $0[Offsets.arenaNameLength(0)] = 6 }, "control character")
        // Shorter than the name: the rest is non-zero padding.
        expectCorrupt(sealed { $0[Offsets.arenaNameLength(0)] = 4 }, "padding")
        // One and 63 bytes are fine.
        expectDecodes(sealed { $0.setArenaName([0x7E], arena: 1) })
        expectDecodes(sealed { $0.setArenaName(Array(String(repeating: "€", count: 21).utf8), arena: 1) })
    }

    @Test func nonZeroNamePaddingOrReservedBytes() {
        // Every byte after the name ("béta" is 5 bytes) up to the entry's end, one at a time.
        for offset in Offsets.arenaName(1) + 5 ..< Offsets.arena(1) + 96 {
            for value: UInt8 in [0x01, 0x61, 0xFF] {
                expectCorrupt(sealed { $0[offset] = value }, "padding", note: "byte \(offset - Offsets.arena(1)) = \(value)")
            }
        }
        // A 63-byte name: only the reserved 8 bytes follow.
        for offset in Offsets.arenaReserved(0) ..< Offsets.arenaReserved(0) + 8 {
            expectCorrupt(sealed {
                $0.setArenaName(Array(repeating: 0x61, count: 63), arena: 0)
                $0[offset] = 0x80
            }, "padding", note: "reserved byte \(offset - Offsets.arena(0))")
        }
    }

    // MARK: - Ids

    @Test func idsNotIncreasing() {
        // béta's id 3 made equal to alpha's 1.
        expectCorrupt(sealed { $0.setLE64(1, at: Offsets.arenaID(1)) }, "not increasing")
        // Made lower.
        expectCorrupt(sealed { $0.setLE64(2, at: Offsets.arenaID(2)) }, "not increasing")
        // The first id zero (ids start at 1).
        expectCorrupt(sealed { $0.setLE64(0, at: Offsets.arenaID(0)) }, "not increasing")
        // Swapped.
        expectCorrupt(sealed {
            $0.setLE64(4, at: Offsets.arenaID(1))
            $0.setLE64(3, at: Offsets.arenaID(2))
        }, "not increasing")
        // Gaps are fine.
        expectDecodes(sealed { $0.setLE64(2, at: Offsets.arenaID(1)) })
    }

    @Test func idsAtOrAboveTheNextID() {
        // The highest id, 4, equal to the next id.
        expectCorrupt(sealed { $0.setLE64(4, at: Offsets.nextArenaID) }, "next id")
        expectCorrupt(sealed { $0.setLE64(0, at: Offsets.nextArenaID) }, "next id")
        expectCorrupt(sealed { $0.setLE64(2, at: Offsets.nextArenaID) }, "next id")
        expectCorrupt(sealed { $0.setLE64(.max, at: Offsets.arenaID(2)) }, "next id")
        // Above it is fine.
        expectDecodes(sealed { $0.setLE64(.max, at: Offsets.nextArenaID) })
        let decoded = expectDecodes(sealed {
            $0.setLE64(.max - 1, at: Offsets.arenaID(2))
            $0.setLE64(.max, at: Offsets.nextArenaID)
        })
        #expect(decoded?.arenas.last?.id == UInt64.max - 1)
    }

    // MARK: - Header fields

    @Test func nonZeroReservedFlags() {
        for bit in 0 ..< 32 {
            expectCorrupt(sealed { $0.setLE32(1 << UInt32(bit), at: Offsets.flags) }, "reserved flags", note: "bit \(bit)")
        }
        expectCorrupt(sealed { $0.setLE32(.max, at: Offsets.flags) }, "reserved flags")
    }

    @Test func unsupportedVersionsWithAValidChecksum() {
        for version: UInt32 in [0, 3, 0x100, 0x0100_0000, .max] {
            #expect(MetadataCopy.decode(sealed { $0.setLE32(version, at: Offsets.version) }) == .failure(.unsupportedVersion(version)))
        }
        // Version 2 is read, and its table must end with a device identity record: a
        // version-1 table marked 2 has none.
        expectCorrupt(sealed { $0.setLE32(2, at: Offsets.version) }, "arenas and")
    }

    @Test func deviceSizes() {
        // Empty tables, where only the size can be wrong.
        for size: UInt64 in [0, 1, MiB, 2 * MiB, 4 * MiB, 6 * MiB - 1, 6 * MiB + 1, 7 * MiB, 8 * MiB + 4096, 1 << 40 | 1, .max] {
            var bytes = MetadataCopy.encode(emptyMetadata())
            bytes.setLE64(size, at: Offsets.deviceSize)
            bytes.reseal()
            expectCorrupt(bytes, "device size", note: "size \(size)")
        }
        for size: UInt64 in [6 * MiB, 8 * MiB, 1 << 40, UInt64.max & ~(blockSize - 1)] {
            expectDecodes(MetadataCopy.encode(emptyMetadata(deviceSize: size)), note: "size \(size)")
        }
        // The sample's γάμμα ends at 38 MiB: a 38 MiB device (usable up to 36) cannot hold it.
        expectCorrupt(sealed { $0.setLE64(38 * MiB, at: Offsets.deviceSize) }, "usable region")
        expectDecodes(sealed { $0.setLE64(40 * MiB, at: Offsets.deviceSize) })
        // Not a multiple of 2 MiB with arenas.
        expectCorrupt(sealed { $0.setLE64(64 * MiB + 4096, at: Offsets.deviceSize) }, "device size")
    }

    @Test func alignments() {
        for alignment: UInt64 in [0, 1, 2, 2048, 4095, 4097, 3 * 4096, 2 * MiB + 4096, 3 * MiB, 2 << 30, 1 << 63, .max] {
            expectCorrupt(sealed { $0.setLE64(alignment, at: Offsets.alignment) }, "alignment", note: "alignment \(alignment)")
        }
        for alignment: UInt64 in [4096, 8192, 64 << 10, 2 * MiB, 1 << 30] {
            let decoded = expectDecodes(sealed { $0.setLE64(alignment, at: Offsets.alignment) }, note: "alignment \(alignment)")
            #expect(decoded?.alignment == alignment)
        }
    }

    @Test func generationsAreNotJudged() {
        for generation: UInt64 in [0, 1, 1 << 32, .max - 1, .max] {
            let decoded = expectDecodes(sealed { $0.setLE64(generation, at: Offsets.generation) }, note: "generation \(generation)")
            #expect(decoded?.generation == generation)
        }
        var metadata = sampleMetadata()
        metadata.generation = .max
        #expect(MetadataCopy.decode(MetadataCopy.encode(metadata)) == .success(metadata))
    }

    @Test func anyUUIDIsAccepted() {
        for (high, low): (UInt64, UInt64) in [(0, 0), (.max, .max), (1, 0)] {
            let decoded = expectDecodes(sealed {
                $0.setLE64(high, at: Offsets.uuidHigh)
                $0.setLE64(low, at: Offsets.uuidLow)
            })
            #expect(decoded?.uuid == HeapUUID(high: high, low: low))
        }
    }

    // MARK: - Sums that overflow

    /// On a device of nearly 2^64 bytes two extents of 2^63 bytes each pass the per-extent
    /// checks; their sum in the running arena offset overflows UInt64. The decoder must
    /// refuse the copy (the extents overlap), not trap. Run in a child process so that a
    /// trap fails this test only.
    @Test func hugeOverlappingExtentsOfOneArenaAreRefusedWithoutTrapping() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent],
                                   "decoding a copy whose extent lengths sum past 2^64 must not trap") {
            let bytes = overflowingArenaCopy()
            guard case .failure(.corrupt(let why)) = MetadataCopy.decode(bytes) else { exit(3) }
            guard why.contains("2^64") || why.contains("overlap") else { exit(4) }
        }
        if let result, result.exitStatus != .exitCode(EXIT_SUCCESS) {
            // Where it trapped, from the child's crash report (when the runtime prints one).
            let report = String(decoding: result.standardErrorContent, as: UTF8.self)
            let frames = report.split(separator: "\n").filter { $0.contains("MetadataCopy") || $0.contains("Fatal") || $0.contains("overflow") }
            print("decoder trapped (\(result.exitStatus)):\n" + frames.prefix(8).joined(separator: "\n"))
        }
    }

    /// The same shape checked in-process where it is safe: one 2^63 extent is accepted
    /// on such a device; this is what the overflow test builds on.
    @Test func oneHugeExtentOnAHugeDevice() throws {
        let metadata = HeapMetadata(
            uuid: sampleUUID, deviceSize: UInt64.max & ~(blockSize - 1), alignment: 2 * MiB, generation: 1, nextArenaID: 2,
            arenas: [ArenaRecord(id: 1, name: "big", extents: [ExtentRecord(deviceOffset: 2 * MiB, arenaOffset: 0, length: 1 << 63)])])
        #expect(try MetadataCopy.decode(MetadataCopy.encode(metadata)).get() == metadata)
    }
}

/// One arena "big" on a device of 2^64 - 2 MiB bytes with two extents at the same device
/// offset, 2 MiB, each 2^63 bytes long (arena offsets 0 and 2^63), sealed with a valid
/// CRC. (Built with a short second extent, since `ArenaRecord.size` would itself
/// overflow, then patched.)
func overflowingArenaCopy() -> [UInt8] {
    let metadata = HeapMetadata(
        uuid: sampleUUID, deviceSize: UInt64.max & ~(blockSize - 1), alignment: 2 * MiB, generation: 1, nextArenaID: 2,
        arenas: [ArenaRecord(id: 1, name: "big", extents: [
            ExtentRecord(deviceOffset: 2 * MiB, arenaOffset: 0, length: 1 << 63),
            ExtentRecord(deviceOffset: 2 * MiB, arenaOffset: 1 << 63, length: 2 * MiB),
        ])])
    var bytes = MetadataCopy.encode(metadata)
    bytes.setLE64(1 << 63, at: Offsets.extent(1, arenaCount: 1) + 16)
    bytes.setLE64(0, at: Offsets.arenaSize(0))
    bytes.reseal()
    return bytes
}
