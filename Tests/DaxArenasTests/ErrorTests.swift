// Refused requests: each one throws exactly the documented ProvisionError and leaves the
// whole ArenaTable value (and its radix trees) as it was.

import DaxArenas
import DaxMetadata
import DaxRadix
import DaxResourceTree
import Testing

private func fragmented() throws -> ArenaTable {
    let t = try fragmentedTable()
    #expect(t.availableSize == 4 * unit)
    return t
}

@Suite struct ErrorTests {
    @Test func noSpaceCarriesTheExactAvailableSize() throws {
        var t = try fragmented()
        expectRefused(.noSpace(requested: 6 * unit, available: 4 * unit), &t) { t throws(ProvisionError) in
            try t.create(name: "e", size: 6 * unit)
        }
        expectRefused(.noSpace(requested: 5 * unit, available: 4 * unit), &t) { t throws(ProvisionError) in
            try t.create(name: "e", size: 5 * unit)
        }
        // Growing a by 5 blocks (4 -> 9) with 4 available.
        expectRefused(.noSpace(requested: 5 * unit, available: 4 * unit), &t) { t throws(ProvisionError) in
            try t.resize(name: "a", to: 9 * unit)
        }
        // The largest aligned size does not overflow anything.
        let huge = UInt64.max - UInt64.max % unit
        expectRefused(.noSpace(requested: huge, available: 4 * unit), &t) { t throws(ProvisionError) in
            try t.create(name: "e", size: huge)
        }
        expectRefused(.noSpace(requested: huge - 4 * unit, available: 4 * unit), &t) { t throws(ProvisionError) in
            try t.resize(name: "a", to: huge)
        }
        // Exactly the available size fits, scattered over both gaps.
        var full = t
        try full.create(name: "e", size: 4 * unit)
        #expect(full.availableSize == 0)
        #expect(extents(full, "e") == [extent(at: 2, off: 0, len: 2), extent(at: 10, off: 2, len: 2)])
        expectRefused(.noSpace(requested: unit, available: 0), &full) { t throws(ProvisionError) in
            try t.create(name: "f", size: unit)
        }
        expectRefused(.noSpace(requested: unit, available: 0), &full) { t throws(ProvisionError) in
            try t.resize(name: "c", to: 3 * unit)
        }
        expectSound(full)
        var grown = t
        try grown.resize(name: "a", to: 8 * unit)
        #expect(grown.availableSize == 0)
        expectSound(grown)
    }

    @Test func nameTaken() throws {
        var t = try fragmented()
        expectRefused(.nameTaken("a"), &t) { t throws(ProvisionError) in try t.create(name: "a", size: unit) }
        // The name is checked before the size.
        expectRefused(.nameTaken("c"), &t) { t throws(ProvisionError) in try t.create(name: "c", size: 1) }
        expectRefused(.nameTaken("d"), &t) { t throws(ProvisionError) in try t.create(name: "d", size: 100 * unit) }
        // A destroyed name is free again.
        try t.create(name: "b", size: unit)
        expectSound(t)
    }

    @Test func unknownArena() throws {
        var t = try fragmented()
        for name in ["b", "e", "", "A", "a ", "\u{0}"] {
            expectRefused(.unknownArena(name), &t) { t throws(ProvisionError) in try t.resize(name: name, to: unit) }
            expectRefused(.unknownArena(name), &t) { t throws(ProvisionError) in try t.resize(name: name, to: 3) }
            expectRefused(.unknownArena(name), &t) { t throws(ProvisionError) in try t.destroy(name: name) }
        }
        try t.destroy(name: "c")
        expectRefused(.unknownArena("c"), &t) { t throws(ProvisionError) in try t.destroy(name: "c") }
        expectRefused(.unknownArena("c"), &t) { t throws(ProvisionError) in try t.resize(name: "c", to: unit) }
    }

    static let misalignedSizes: [UInt64] = [0, 1, 4096, 1 << 20, 2 << 20 | 1, 3 << 20, (2 << 20) - 1, .max]

    @Test(arguments: misalignedSizes)
    func misalignedSize(_ size: UInt64) throws {
        var t = try fragmented()
        expectRefused(.misalignedSize(size), &t) { t throws(ProvisionError) in try t.create(name: "e", size: size) }
        expectRefused(.misalignedSize(size), &t) { t throws(ProvisionError) in try t.resize(name: "a", to: size) }
        expectRefused(.misalignedSize(size), &t) { t throws(ProvisionError) in try t.resize(name: "c", to: size) }
    }

    static let invalidNames: [String] = [
        "",
        String(repeating: "n", count: 64),
        String(repeating: "é", count: 32),  // 32 characters, 64 bytes
        String(repeating: "€", count: 21) + "x",  // 22 characters, 64 bytes
        String(repeating: "é", count: 63),  // 63 characters of 2 bytes: 126 bytes
        "\u{0}",
        "a\u{0}",
        "\u{1F}",
        "\u{7F}",
        "\u{80}",
        "\u{85}",  // NEL, a C1 control
        "\u{9F}",
        "a\nb",
        "tab\there",
    ]

    @Test(arguments: invalidNames)
    func invalidName(_ name: String) throws {
        var t = try fragmented()
        let before = t
        do {
            try t.create(name: name, size: unit)
            Issue.record("created an arena named \(name.debugDescription)")
        } catch {
            guard case .invalidName(let refused, let reason) = error else {
                Issue.record("expected invalidName for \(name.debugDescription), got \(error)")
                return
            }
            #expect(refused == name)
            #expect(!reason.isEmpty)
        }
        #expect(t == before)
        // The name is checked first, even with a bad size.
        #expect(throws: ProvisionError.invalidName(name, reason: ArenaName.problem(with: name) ?? "")) {
            try t.create(name: name, size: 3)
        }
        #expect(t == before)
    }

    static let validNames: [String] = [
        "x",
        String(repeating: "n", count: 63),
        String(repeating: "€", count: 21),  // 63 bytes exactly
        String(repeating: "é", count: 31) + "x",  // 63 bytes
        "with space", "\u{A0}", "emoji 🧠", "日本語", "a-b_c.d/e",
    ]

    @Test(arguments: validNames)
    func validNameIsAccepted(_ name: String) throws {
        var t = try fragmented()
        try t.create(name: name, size: unit)
        #expect(t.arena(named: name)?.name == name)
        expectSound(t)
        #expect(roundTripViolation(t) == nil)
    }

    /// Precedence: name, then existence, then alignment, then space.
    @Test func checksComeInOrder() throws {
        var t = try fragmented()
        expectRefused(.misalignedSize(3), &t) { t throws(ProvisionError) in try t.create(name: "e", size: 3) }
        expectRefused(.unknownArena("e"), &t) { t throws(ProvisionError) in try t.resize(name: "e", to: 3) }
        // Misaligned wins over no space.
        expectRefused(.misalignedSize(100 * unit + 1), &t) { t throws(ProvisionError) in
            try t.resize(name: "a", to: 100 * unit + 1)
        }
    }

    /// Refusals in the middle of a table's life do not disturb later operations.
    @Test func tableWorksOnAfterRefusals() throws {
        var t = try fragmented()
        expectRefused(.noSpace(requested: 5 * unit, available: 4 * unit), &t) { t throws(ProvisionError) in
            try t.create(name: "e", size: 5 * unit)
        }
        #expect(t.nextArenaID == 5)  // a refused create does not consume an id
        let id = try t.create(name: "e", size: unit)
        #expect(id == 5)
        expectSound(t)
    }
}

/// `tableFull`: a table that would not fit in a 2 MiB metadata block.
///
/// Reaching the limit takes ~87,000 extents. Building it with one create per extent
/// (interleave 2 MiB arenas, destroy every other one, grow one arena) is too slow for a
/// debug test, so the fragmented table is built directly through `ArenaTable(metadata:)`
/// in the state that sequence leaves (one arena in every other block, the blocks between
/// free) and the refusals are then driven through the public operations.
@Suite struct TableFullTests {
    static let maxTable = MetadataCopy.maxTableLength  // 2 MiB - 64-byte header

    @Test func fitsArithmetic() {
        #expect(Self.maxTable == 2_097_088)
        #expect(MetadataCopy.tableLength(arenas: 0, extents: 0) == 16)
        #expect(MetadataCopy.tableLength(arenas: 2, extents: 3) == 16 + 2 * 96 + 3 * 24)
        // One arena: (2_097_088 - 16 - 96) / 24 = 87_374 extents fill the block exactly,
        // but a change leaves room for the largest device identity record (1_536 bytes,
        // 64 extents' worth): 87_310 fit.
        #expect(MetadataCopy.tableLength(arenas: 1, extents: 87_374) == Self.maxTable)
        #expect(MetadataCopy.maxArenaTableLength == Self.maxTable - 1_536)
        #expect(MetadataCopy.fits(arenas: 1, extents: 87_310))
        #expect(!MetadataCopy.fits(arenas: 1, extents: 87_311))
        #expect(!MetadataCopy.fits(arenas: 2, extents: 87_310))
        #expect(MetadataCopy.fits(arenas: 2, extents: 87_306))
        #expect(!MetadataCopy.fits(arenas: 3, extents: 87_306))
        // Arenas of one extent each: 120 bytes apiece, 17_462 of them fit.
        #expect(MetadataCopy.fits(arenas: 17_462, extents: 17_462))
        #expect(!MetadataCopy.fits(arenas: 17_463, extents: 17_463))
    }

    /// One arena "big" with `count` one-block extents in every other block, arena offsets
    /// 0, 1, 2, ...; the usable region ends right after the last one.
    static func fragmentedBig(count: UInt64) throws -> ArenaTable {
        let extents = (0 ..< count).map { extent(at: 2 * $0, off: $0, len: 1) }
        let metadata = HeapMetadata(
            uuid: HeapUUID(high: 7, low: 7), deviceSize: (2 * count - 1 + 2) * unit, alignment: unit,
            generation: 1, nextArenaID: 2, arenas: [ArenaRecord(id: 1, name: "big", extents: extents)])
        return try ArenaTable(metadata: metadata)
    }

    @Test func growThatNeedsANewExtentIsRefusedWhenTheTableIsFull() throws {
        let n: UInt64 = 87_310
        var t = try Self.fragmentedBig(count: n)
        #expect(t.extentCount == Int(n))
        #expect(t.availableSize == (n - 1) * unit)
        #expect(MetadataCopy.fits(arenas: 1, extents: t.extentCount))

        // big's last extent ends at the end of the region: growing needs a new extent.
        expectRefused(.tableFull(arenas: 1, extents: Int(n) + 1), &t) { t throws(ProvisionError) in
            try t.resize(name: "big", to: (n + 1) * unit)
        }
        // A new arena costs an entry and an extent.
        expectRefused(.tableFull(arenas: 2, extents: Int(n) + 1), &t) { t throws(ProvisionError) in
            try t.create(name: "c", size: unit)
        }
        // Errors that come first still win.
        expectRefused(.noSpace(requested: n * unit, available: (n - 1) * unit), &t) { t throws(ProvisionError) in
            try t.create(name: "c", size: n * unit)
        }

        // Shrinking releases the last extent; growing again extends the new last extent in
        // place into the freed blocks, which needs no new extent.
        try t.resize(name: "big", to: (n - 1) * unit)
        #expect(t.extentCount == Int(n) - 1)
        try t.resize(name: "big", to: n * unit)
        #expect(t.extentCount == Int(n) - 1)
        #expect(t.arena(named: "big")?.extents.last == extent(at: 2 * (n - 2), off: n - 2, len: 2))
        // Now one more arena would fit its extent but not its 96-byte entry.
        expectRefused(.tableFull(arenas: 2, extents: Int(n)), &t) { t throws(ProvisionError) in
            try t.create(name: "c", size: unit)
        }
        // Free a few extents' worth: the arena fits again.
        try t.resize(name: "big", to: (n - 5) * unit)
        try t.create(name: "c", size: unit)
        #expect(extents(t, "c") == [extent(at: 1, off: 0, len: 1)])
        #expect(t.invariantViolation() == nil)
    }

    @Test func createIsRefusedWhenTheArenaEntriesFillTheBlock() throws {
        let count = 17_461
        let records = (0 ..< count).map {
            ArenaRecord(id: UInt64($0 + 1), name: "a\($0)", extents: [extent(at: UInt64($0), off: 0, len: 1)])
        }
        let metadata = HeapMetadata(
            uuid: HeapUUID(high: 7, low: 7), deviceSize: UInt64(count + 10) * unit, alignment: unit,
            generation: 1, nextArenaID: UInt64(count + 1), arenas: records)
        var t = try ArenaTable(metadata: metadata)
        #expect(t.arenas.count == count)
        try t.create(name: "last", size: unit)  // 17_462 arenas of one extent: still fits
        #expect(t.arenas.count == 17_462)
        expectRefused(.tableFull(arenas: 17_463, extents: 17_463), &t) { t throws(ProvisionError) in
            try t.create(name: "one-too-many", size: unit)
        }
        #expect(t.nextArenaID == UInt64(count + 2))  // the refused create consumed no id
        #expect(t.availableSize == 7 * unit)
    }
}
