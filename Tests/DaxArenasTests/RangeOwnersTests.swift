// ArenaTable.owners(of:): what a device byte range holds (metadata blocks, arena bytes
// with their arena offset, free space), in device order.

import DaxArenas
import DaxMetadata
import DaxResourceTree
import Testing

@Suite struct RangeOwnersTests {
    static func fragmented() throws -> ArenaTable { try fragmentedTable() }

    @Test func wholeDevice() throws {
        let t = try Self.fragmented()
        let pieces = t.owners(of: 0 ..< t.deviceSize)
        #expect(pieces.map(\.range) == [
            0 ..< unit, dev(0) ..< dev(2), dev(2) ..< dev(4), dev(4) ..< dev(6), dev(6) ..< dev(8),
            dev(8) ..< dev(10), dev(10) ..< dev(12), dev(12) ..< 14 * unit,
        ])
        #expect(pieces.map(\.owner) == [
            .primaryMetadata, .arena(name: "a", arenaOffset: 0), .unallocated, .arena(name: "c", arenaOffset: 0),
            .arena(name: "a", arenaOffset: 2 * unit), .arena(name: "d", arenaOffset: 0), .unallocated,
            .secondaryMetadata,
        ])
        #expect(ownersViolation(t, 0 ..< t.deviceSize) == nil)
    }

    @Test func rangeStartingAndEndingInsideExtents() throws {
        let t = try Self.fragmented()
        let pieces = t.owners(of: dev(1) + 5 ..< dev(6) + 7)
        #expect(pieces.map(\.range) == [dev(1) + 5 ..< dev(2), dev(2) ..< dev(4), dev(4) ..< dev(6), dev(6) ..< dev(6) + 7])
        #expect(pieces.map(\.owner) == [
            .arena(name: "a", arenaOffset: unit + 5), .unallocated, .arena(name: "c", arenaOffset: 0),
            .arena(name: "a", arenaOffset: 2 * unit),
        ])
        // One byte: the last of a's second extent, and the first free byte after d.
        #expect(t.owners(of: dev(8) - 1 ..< dev(8)).map(\.owner) == [.arena(name: "a", arenaOffset: 4 * unit - 1)])
        #expect(t.owners(of: dev(10) ..< dev(10) + 1).map(\.owner) == [.unallocated])
    }

    @Test func metadataBlocksAndClipping() throws {
        let t = try Self.fragmented()
        #expect(t.owners(of: 0 ..< 1).map(\.owner) == [.primaryMetadata])
        #expect(t.owners(of: 10 ..< unit + 10).map(\.range) == [10 ..< unit, unit ..< unit + 10])
        #expect(t.owners(of: 10 ..< unit + 10).map(\.owner) == [.primaryMetadata, .arena(name: "a", arenaOffset: 0)])
        // Past the end of the device: dropped.
        let tail = t.owners(of: t.deviceSize - 3 ..< t.deviceSize + 100)
        #expect(tail.map(\.range) == [t.deviceSize - 3 ..< t.deviceSize])
        #expect(tail.map(\.owner) == [.secondaryMetadata])
        #expect(t.owners(of: t.deviceSize ..< t.deviceSize + 1).isEmpty)
        #expect(t.owners(of: t.deviceSize + 5 ..< .max).isEmpty)
        #expect(t.owners(of: 7 ..< 7).isEmpty)
        #expect(t.owners(of: 0 ..< .max).count == 8)
    }

    @Test func emptyAndFullTables() throws {
        var t = table(usableBlocks: 4)
        #expect(t.owners(of: 0 ..< t.deviceSize).map(\.owner) == [.primaryMetadata, .unallocated, .secondaryMetadata])
        try t.create(name: "x", size: 4 * unit)
        #expect(t.owners(of: 0 ..< t.deviceSize).map(\.owner) == [
            .primaryMetadata, .arena(name: "x", arenaOffset: 0), .secondaryMetadata,
        ])
    }

    /// Every range with ends on a 1 MiB grid (and a few bytes off it) of a fragmented table
    /// tiles correctly.
    @Test func everyGridRange() throws {
        var t = try Self.fragmented()
        try t.create(name: "e", size: unit)  // [2,3): a and e now touch, c too
        let half = unit / 2
        var points: [UInt64] = []
        for k in 0 ... 2 * (t.deviceSize / unit) { points += [k * half, k * half + 1] }
        for lower in points {
            for upper in points where upper > lower {
                #expect(ownersViolation(t, lower ..< upper) == nil)
            }
        }
    }
}
