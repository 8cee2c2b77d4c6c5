// The seed's provisioning scenarios (dax_dev_resize, dax_dev_shrink,
// dax_dev_adjust_resource, foreach_order_pgoff), with exact expected extents.
// Device offsets are absolute: usable block n starts at 2 MiB + n * 2 MiB (`dev(n)`),
// and `extent(at:off:len:)` is written in blocks.

import DaxArenas
import DaxMetadata
import DaxRadix
import DaxResourceTree
import Testing

@Suite struct GrowScenarioTests {
    /// create a, b, c contiguously; a's highest-offset extent is walled in by d; destroy b;
    /// grow a: the new space comes from b's old gap (and the tail), as new extents, and a's
    /// first extent is not extended although b's gap is right after it.
    @Test func growGetsANewExtentInTheGapOfADestroyedArena() throws {
        var t = table(usableBlocks: 12)
        try t.create(name: "a", size: 2 * unit)
        try t.create(name: "b", size: 2 * unit)
        try t.create(name: "c", size: 2 * unit)
        #expect(extents(t, "a") == [extent(at: 0, off: 0, len: 2)])
        #expect(extents(t, "b") == [extent(at: 2, off: 0, len: 2)])
        #expect(extents(t, "c") == [extent(at: 4, off: 0, len: 2)])
        // a's only extent has b right after it: the growth is a new extent after c.
        try t.resize(name: "a", to: 4 * unit)
        #expect(extents(t, "a") == [extent(at: 0, off: 0, len: 2), extent(at: 6, off: 2, len: 2)])
        try t.create(name: "d", size: 2 * unit)
        #expect(extents(t, "d") == [extent(at: 8, off: 0, len: 2)])
        try t.destroy(name: "b")
        #expect(t.arena(named: "b") == nil)
        #expect(t.tree.gaps == [gap(2, 4), gap(10, 12)])
        expectSound(t)

        // a's highest-offset extent [6,8) has d right after it: nothing to extend.
        try t.resize(name: "a", to: 8 * unit)
        #expect(extents(t, "a") == [
            extent(at: 0, off: 0, len: 2),
            extent(at: 6, off: 2, len: 2),
            extent(at: 2, off: 4, len: 2),  // b's old gap, right after a's first extent, yet separate
            extent(at: 10, off: 6, len: 2),
        ])
        #expect(t.arena(named: "a")?.size == 8 * unit)
        #expect(t.availableSize == 0)
        #expect(t.tree.gaps.isEmpty)
        #expect(t.extentCount == 6)
        #expect(t.tree.children.map(\.owner) == [1, 1, 3, 1, 4, 1])
        #expect(t.tree.children.map(\.pageOffset) == [0, 4 * unit, 0, 2 * unit, 0, 6 * unit])
        expectSound(t)
        #expect(roundTripViolation(t) == nil)
    }

    /// create a, b, c; destroy b; grow a: the free space right after a's last extent is
    /// taken by extending that extent in place (adjust_resource), no new extent.
    @Test func growExtendsTheLastExtentInPlace() throws {
        var t = table(usableBlocks: 10)
        try t.create(name: "a", size: 2 * unit)
        try t.create(name: "b", size: 2 * unit)
        try t.create(name: "c", size: 2 * unit)
        try t.destroy(name: "b")
        #expect(t.tree.gaps == [gap(2, 4), gap(6, 10)])

        try t.resize(name: "a", to: 3 * unit)  // part of b's gap
        #expect(extents(t, "a") == [extent(at: 0, off: 0, len: 3)])
        #expect(t.extentCount == 2)
        #expect(t.tree.gaps == [gap(3, 4), gap(6, 10)])
        expectSound(t)

        try t.resize(name: "a", to: 4 * unit)  // exactly the rest of it
        #expect(extents(t, "a") == [extent(at: 0, off: 0, len: 4)])
        #expect(t.extentCount == 2)
        #expect(t.tree.gaps == [gap(6, 10)])
        expectSound(t)

        try t.resize(name: "a", to: 6 * unit)  // nothing after [0,4): c is there
        #expect(extents(t, "a") == [extent(at: 0, off: 0, len: 4), extent(at: 6, off: 4, len: 2)])
        expectSound(t)

        try t.resize(name: "a", to: 7 * unit)  // the new last extent has the tail after it
        #expect(extents(t, "a") == [extent(at: 0, off: 0, len: 4), extent(at: 6, off: 4, len: 3)])
        #expect(t.extentCount == 3)
        #expect(t.tree.gaps == [gap(9, 10)])
        expectSound(t)

        try t.resize(name: "a", to: 8 * unit)  // up to the end of the usable region
        #expect(extents(t, "a") == [extent(at: 0, off: 0, len: 4), extent(at: 6, off: 4, len: 4)])
        #expect(t.availableSize == 0)
        expectSound(t)
        #expect(roundTripViolation(t) == nil)
    }

    /// Growth larger than the space after the last extent: extend in place first, then
    /// first fit from the start of the region.
    @Test func growExtendsInPlaceThenFillsGapsFirstFit() throws {
        var t = table(usableBlocks: 16)
        try t.create(name: "p", size: 1 * unit)  // [0,1)
        try t.create(name: "x", size: 2 * unit)  // [1,3)
        try t.create(name: "q", size: 1 * unit)  // [3,4)
        try t.create(name: "r", size: 2 * unit)  // [4,6)
        try t.create(name: "s", size: 1 * unit)  // [6,7)
        try t.destroy(name: "p")
        try t.destroy(name: "r")
        #expect(t.tree.gaps == [gap(0, 1), gap(4, 6), gap(7, 16)])
        try t.destroy(name: "q")  // frees [3,4), right after x
        try t.resize(name: "x", to: 7 * unit)
        #expect(extents(t, "x") == [
            extent(at: 1, off: 0, len: 5),  // [1,3) + [3,4) + [4,6): q's and r's gaps, in place
            extent(at: 0, off: 5, len: 1),  // then the first gap of the region
            extent(at: 7, off: 6, len: 1),
        ])
        expectSound(t)
    }

    /// create on a fragmented region takes the gaps first fit, in address order.
    @Test func createTakesGapsFirstFit() throws {
        var t = table(usableBlocks: 12)
        for name in ["a", "b", "c", "d", "e", "f"] { try t.create(name: name, size: 2 * unit) }
        try t.destroy(name: "b")
        try t.destroy(name: "d")
        try t.destroy(name: "f")
        try t.create(name: "g", size: 5 * unit)
        #expect(extents(t, "g") == [
            extent(at: 2, off: 0, len: 2), extent(at: 6, off: 2, len: 2), extent(at: 10, off: 4, len: 1),
        ])
        #expect(t.tree.gaps == [gap(11, 12)])
        expectSound(t)
    }

    /// Interleave 1-block arenas, destroy every other one and grow one arena: it gets one
    /// extent per gap (the fragmentation `tableFull` is about, at a small scale).
    @Test func interleavedArenasFragmentAGrowingArena() throws {
        var t = table(usableBlocks: 41)
        for i in 0 ..< 40 { try t.create(name: "p\(i)", size: unit) }
        for i in stride(from: 1, to: 40, by: 2) { try t.destroy(name: "p\(i)") }
        #expect(t.tree.gaps.count == 20)  // 1, 3, ..., 37, and [39,41) with the tail
        try t.create(name: "g", size: 2 * unit)
        #expect(extents(t, "g") == [extent(at: 1, off: 0, len: 1), extent(at: 3, off: 1, len: 1)])
        try t.resize(name: "g", to: 21 * unit)
        // g's last extent [3,4) has p4 after it: every further gap is a new extent.
        let expected = (0 ..< 19 as Range<UInt64>).map { extent(at: 2 * $0 + 1, off: $0, len: 1) }
            + [extent(at: 39, off: 19, len: 2)]
        #expect(extents(t, "g") == expected)
        #expect(t.extentCount == 20 + 20)
        #expect(t.availableSize == 0)
        expectSound(t)
        #expect(roundTripViolation(t) == nil)
    }

    /// A grow that needs every free block, scattered over many gaps, succeeds: the space
    /// check is on the total, not on a contiguous run.
    @Test func growUsesExactlyAllScatteredSpace() throws {
        var t = table(usableBlocks: 9)
        for name in ["a", "b", "c", "d", "e", "f", "g", "h", "i"] { try t.create(name: name, size: unit) }
        for name in ["b", "d", "f", "h"] { try t.destroy(name: name) }
        #expect(t.availableSize == 4 * unit)
        try t.resize(name: "i", to: 5 * unit)
        #expect(extents(t, "i") == [
            extent(at: 8, off: 0, len: 1), extent(at: 1, off: 1, len: 1), extent(at: 3, off: 2, len: 1),
            extent(at: 5, off: 3, len: 1), extent(at: 7, off: 4, len: 1),
        ])
        #expect(t.availableSize == 0)
        expectSound(t)
    }
}

@Suite struct ShrinkScenarioTests {
    /// x made of four extents, then shrunk across several of them: whole extents go from
    /// the highest arena offset down, then the last needed one is trimmed in place.
    @Test func shrinkAcrossSeveralExtents() throws {
        var t = table(usableBlocks: 20)
        try t.create(name: "x", size: 2 * unit)  // [0,2)
        try t.create(name: "y", size: 1 * unit)  // [2,3)
        try t.resize(name: "x", to: 4 * unit)  // + [3,5)
        try t.create(name: "z", size: 1 * unit)  // [5,6)
        try t.resize(name: "x", to: 7 * unit)  // + [6,9)
        try t.create(name: "w", size: 1 * unit)  // [9,10)
        try t.resize(name: "x", to: 10 * unit)  // + [10,13)
        #expect(extents(t, "x") == [
            extent(at: 0, off: 0, len: 2), extent(at: 3, off: 2, len: 2),
            extent(at: 6, off: 4, len: 3), extent(at: 10, off: 7, len: 3),
        ])
        #expect(t.tree.gaps == [gap(13, 20)])
        #expect(t.availableSize == 7 * unit)
        expectSound(t)

        // 10 -> 3 blocks: release [10,13) and [6,9), trim [3,5) to [3,4).
        try t.resize(name: "x", to: 3 * unit)
        #expect(extents(t, "x") == [extent(at: 0, off: 0, len: 2), extent(at: 3, off: 2, len: 1)])
        #expect(t.tree.gaps == [gap(4, 5), gap(6, 9), gap(10, 20)])
        #expect(t.availableSize == 14 * unit)
        #expect(t.extentCount == 5)
        expectSound(t)

        // The trimmed extent is the last one again: growing re-extends it in place.
        try t.resize(name: "x", to: 4 * unit)
        #expect(extents(t, "x") == [extent(at: 0, off: 0, len: 2), extent(at: 3, off: 2, len: 2)])
        #expect(t.tree.gaps == [gap(6, 9), gap(10, 20)])
        expectSound(t)

        // The released space is available again, first fit.
        try t.resize(name: "x", to: 8 * unit)
        #expect(extents(t, "x") == [
            extent(at: 0, off: 0, len: 2), extent(at: 3, off: 2, len: 2),
            extent(at: 6, off: 4, len: 3), extent(at: 10, off: 7, len: 1),
        ])
        expectSound(t)

        // Shrinking by exactly whole extents trims nothing.
        try t.resize(name: "x", to: 4 * unit)
        #expect(extents(t, "x") == [extent(at: 0, off: 0, len: 2), extent(at: 3, off: 2, len: 2)])
        #expect(t.tree.gaps == [gap(6, 9), gap(10, 20)])
        expectSound(t)

        // Shrinking inside the first extent.
        try t.resize(name: "x", to: 1 * unit)
        #expect(extents(t, "x") == [extent(at: 0, off: 0, len: 1)])
        #expect(t.tree.gaps == [gap(1, 2), gap(3, 5), gap(6, 9), gap(10, 20)])
        expectSound(t)

        // destroy releases everything; a new arena takes every gap.
        try t.destroy(name: "x")
        #expect(t.tree.gaps == [gap(0, 2), gap(3, 5), gap(6, 9), gap(10, 20)])
        #expect(t.availableSize == 17 * unit)
        try t.create(name: "v", size: 17 * unit)
        #expect(extents(t, "v") == [
            extent(at: 0, off: 0, len: 2), extent(at: 3, off: 2, len: 2),
            extent(at: 6, off: 4, len: 3), extent(at: 10, off: 7, len: 10),
        ])
        #expect(t.availableSize == 0)
        expectSound(t)
        #expect(roundTripViolation(t) == nil)
    }

    /// Ids are never reused, and a destroyed name can be created again with a new id.
    @Test func destroyThenRecreateGetsANewID() throws {
        var t = table(usableBlocks: 8)
        let a = try t.create(name: "a", size: unit)
        let b = try t.create(name: "b", size: unit)
        try t.destroy(name: "a")
        let a2 = try t.create(name: "a", size: unit)
        #expect([a, b, a2] == [1, 2, 3])
        #expect(t.nextArenaID == 4)
        #expect(t.arena(named: "a")?.id == 3)
        #expect(extents(t, "a") == [extent(at: 0, off: 0, len: 1)])
        try t.resize(name: "b", to: unit)  // same size: a no-op
        #expect(extents(t, "b") == [extent(at: 1, off: 0, len: 1)])
        expectSound(t)
    }
}

@Suite struct TranslationScenarioTests {
    /// An extent at arena page 3 with 13 pages (not a power of two, not aligned): every page
    /// translates, up to and including the extent's last byte, which the seed's
    /// `__pgoff_to_phys` (`>=` instead of `>`) refused.
    @Test func unalignedPageOffsetTranslatesEveryPage() throws {
        var t = table(usableBlocks: 20)
        try t.create(name: "x", size: 3 * unit)  // [0,3)
        try t.create(name: "y", size: 1 * unit)  // [3,4)
        try t.resize(name: "x", to: 16 * unit)
        let x = try #require(t.arena(named: "x"))
        #expect(x.extents == [extent(at: 0, off: 0, len: 3), extent(at: 4, off: 3, len: 13)])
        // foreach_order_pgoff as merged: [0,2) [2] for extent 0; [3] [4,8) [8,16) for extent 1.
        #expect(x.radix.entries.map { [$0.index, UInt64($0.order), UInt64($0.value)] } == [
            [0, 1, 0], [2, 0, 0], [3, 0, 1], [4, 2, 1], [8, 3, 1],
        ])
        #expect(translationViolation(x, at: everyPageProbe(x)) == nil)
        for page: UInt64 in 3 ..< 16 {
            let translated = x.translate(page * unit)
            #expect(translated?.deviceOffset == dev(4 + page - 3))
            #expect(translated?.contiguous == (16 - page) * unit)
        }
        let last = try #require(x.translate(16 * unit - 1))
        #expect(last.deviceOffset == dev(17) - 1)
        #expect(last.contiguous == 1)
        #expect(x.translate(16 * unit) == nil)
        #expect(x.extentIndex(containing: 16 * unit - 1) == 1)
        #expect(x.extentIndex(containing: 16 * unit) == nil)
        expectSound(t)

        // Trim the unaligned extent in place: 13 -> 7 pages ([3] [4,8) [8,10)).
        try t.resize(name: "x", to: 10 * unit)
        let trimmed = try #require(t.arena(named: "x"))
        #expect(trimmed.extents == [extent(at: 0, off: 0, len: 3), extent(at: 4, off: 3, len: 7)])
        #expect(trimmed.radix.entries.map { [$0.index, UInt64($0.order), UInt64($0.value)] } == [
            [0, 1, 0], [2, 0, 0], [3, 0, 1], [4, 2, 1], [8, 1, 1],
        ])
        #expect(trimmed.translate(10 * unit - 1)?.deviceOffset == dev(11) - 1)
        #expect(trimmed.translate(10 * unit) == nil)
        expectSound(t)
    }

    /// The seed's order_at took the highest set bit: at dev pgoff 512 with 1024 pages it
    /// gave one order-10 block at the misaligned index 512. The merged version gives two
    /// order-9 blocks, and every page of the arena translates.
    @Test func pageOffset512With1024Pages() throws {
        var t = table(usableBlocks: 1537)
        try t.create(name: "x", size: 512 * unit)  // [0,512)
        try t.create(name: "y", size: 1 * unit)  // [512,513)
        try t.resize(name: "x", to: 1536 * unit)
        let x = try #require(t.arena(named: "x"))
        #expect(x.extents == [extent(at: 0, off: 0, len: 512), extent(at: 513, off: 512, len: 1024)])
        #expect(x.radix.entries.map { [$0.index, UInt64($0.order), UInt64($0.value)] } == [
            [0, 9, 0], [512, 9, 1], [1024, 9, 1],
        ])
        expectSound(t)
        #expect(x.translate(1536 * unit - 1)?.deviceOffset == dev(1537) - 1)
    }

    /// Growing and shrinking one unaligned extent in place a block at a time: after every
    /// step the radix tree is exactly the fresh decomposition of the extents (as a reopen
    /// builds it), and every page translates as a binary search says.
    @Test func adjustInPlaceKeepsTheRadixTreeConsistent() throws {
        var t = table(usableBlocks: 80)
        try t.create(name: "x", size: 3 * unit)  // [0,3)
        try t.create(name: "y", size: 1 * unit)  // [3,4): x's next growth is a new extent
        try t.resize(name: "x", to: 4 * unit)  // [4,5) at arena page 3
        for blocks: UInt64 in 5 ... 70 {
            try t.resize(name: "x", to: blocks * unit)
            let x = try #require(t.arena(named: "x"))
            #expect(x.extents == [extent(at: 0, off: 0, len: 3), extent(at: 4, off: 3, len: blocks - 3)])
            #expect(t.invariantViolation() == nil)
            #expect(translationViolation(x, at: everyPageProbe(x)) == nil)
            #expect(roundTripViolation(t) == nil, "growing to \(blocks) blocks")
        }
        for blocks: UInt64 in (1 ... 69).reversed() {
            try t.resize(name: "x", to: blocks * unit)
            let x = try #require(t.arena(named: "x"))
            #expect(x.size == blocks * unit)
            #expect(t.invariantViolation() == nil)
            #expect(translationViolation(x, at: everyPageProbe(x)) == nil)
            #expect(roundTripViolation(t) == nil, "shrinking to \(blocks) blocks")
        }
        #expect(extents(t, "x") == [extent(at: 0, off: 0, len: 1)])
        #expect(t.arena(named: "x")?.radix.entryCount == 1)
    }

    /// `pieces` splits a byte range at extent boundaries, in arena order.
    @Test func piecesFollowTheExtents() throws {
        var t = table(usableBlocks: 12)
        try t.create(name: "x", size: 2 * unit)  // [0,2)
        try t.create(name: "y", size: 1 * unit)  // [2,3)
        try t.resize(name: "x", to: 5 * unit)  // + [3,6)
        let x = try #require(t.arena(named: "x"))
        let all = try #require(x.pieces(offset: 0, count: 5 * unit))
        #expect(all.map { [$0.arenaOffset, $0.deviceOffset, $0.length] } == [
            [0, dev(0), 2 * unit], [2 * unit, dev(3), 3 * unit],
        ])
        let middle = try #require(x.pieces(offset: 2 * unit - 10, count: 20))
        #expect(middle.map { [$0.arenaOffset, $0.deviceOffset, $0.length] } == [
            [2 * unit - 10, dev(2) - 10, 10], [2 * unit, dev(3), 10],
        ])
        #expect(x.pieces(offset: 5 * unit - 1, count: 1)?.first?.deviceOffset == dev(6) - 1)
        #expect(x.pieces(offset: 5 * unit, count: 0)?.isEmpty == true)
        #expect(x.pieces(offset: 5 * unit - 1, count: 2) == nil)
        #expect(x.pieces(offset: 5 * unit + 1, count: 0) == nil)
        #expect(x.pieces(offset: 1, count: .max) == nil)
    }
}

@Suite struct DeviceSizeTests {
    /// The smallest device: two metadata blocks and one usable block.
    @Test func smallestDevice() throws {
        var t = ArenaTable(deviceSize: Geometry.minimumDeviceSize)
        #expect(t.usableSize == unit)
        #expect(t.availableSize == unit)
        #expect(t.tree.gaps == [gap(0, 1)])
        try t.create(name: "only", size: unit)
        #expect(extents(t, "only") == [extent(at: 0, off: 0, len: 1)])
        expectRefused(.noSpace(requested: unit, available: 0), &t) { t throws(ProvisionError) in
            try t.create(name: "more", size: unit)
        }
        expectRefused(.noSpace(requested: unit, available: 0), &t) { t throws(ProvisionError) in
            try t.resize(name: "only", to: 2 * unit)
        }
        expectSound(t)
        #expect(roundTripViolation(t) == nil)
        try t.destroy(name: "only")
        #expect(t.availableSize == unit)
        #expect(t.arenas.isEmpty && t.ids.isEmpty && t.extentCount == 0)
        #expect(roundTripViolation(t) == nil)
    }

    /// An 8 EiB device (2^63 bytes, 2^42 pages): sizes that large neither overflow the
    /// arithmetic nor the radix tree (8 levels).
    @Test func eightExbibyteDevice() throws {
        let deviceSize: UInt64 = 1 << 63
        var t = ArenaTable(deviceSize: deviceSize)
        let usable = deviceSize - 2 * unit
        #expect(t.usableSize == usable)
        try t.create(name: "x", size: 3 * unit)
        try t.create(name: "y", size: unit)
        try t.resize(name: "x", to: usable - unit)  // everything but y's block
        #expect(t.availableSize == 0)
        let x = try #require(t.arena(named: "x"))
        #expect(x.extents == [extent(at: 0, off: 0, len: 3), ExtentRecord(deviceOffset: dev(4), arenaOffset: 3 * unit, length: usable - 4 * unit)])
        #expect(t.invariantViolation() == nil)
        #expect(independentViolation(t) == nil)
        var probes: [UInt64] = [0, unit - 1, 3 * unit - 1, 3 * unit, x.size - 1, x.size, .max]
        for shift: UInt64 in 22 ..< 64 where (1 << shift) < x.size { probes += [1 << shift, (1 << shift) - 1] }
        #expect(translationViolation(x, at: probes) == nil)
        let last = try #require(x.translate(x.size - 1))
        #expect(last.deviceOffset == deviceSize - unit - 1)
        #expect(last.contiguous == 1)
        #expect(roundTripViolation(t) == nil)
        expectRefused(.noSpace(requested: unit, available: 0), &t) { t throws(ProvisionError) in
            try t.create(name: "z", size: unit)
        }
        // Shrink the huge extent to one block in place, then give everything back.
        try t.resize(name: "x", to: 4 * unit)
        #expect(extents(t, "x") == [extent(at: 0, off: 0, len: 3), extent(at: 4, off: 3, len: 1)])
        expectSound(t)
        try t.destroy(name: "x")
        try t.destroy(name: "y")
        #expect(t.availableSize == usable)
    }
}

/// Regression: the usable region's size was taken as `UInt64(usable.count)` (and a gap's
/// as `UInt64(gap.count)` in `grow`); `Range<UInt64>.count` is an `Int`, so any device
/// larger than 2^63 + 4 MiB trapped ("Distance is not representable in Int") although it
/// passes the initializer's precondition and `MetadataCopy.decode` accepts such a size,
/// and `ArenaTable(metadata:)` trapped instead of throwing. Run as exit tests so that a
/// trap cannot take the other tests down.
@Suite struct HugeDeviceTests {
    @Test func deviceLargerThan2To63BytesDoesNotTrap() async {
        await #expect(processExitsWith: .success) {
            let deviceSize = UInt64.max - UInt64.max % Geometry.blockSize
            let usable = deviceSize - 2 * Geometry.blockSize
            var t = ArenaTable(deviceSize: deviceSize)
            precondition(t.usableSize == usable && t.availableSize == usable)
            precondition(t.tree.gaps == [Geometry.blockSize ..< deviceSize - Geometry.blockSize])
            try! t.create(name: "x", size: 1 << 63)  // from a gap of more than 2^63 bytes
            try! t.create(name: "y", size: usable - (1 << 63))
            try! t.destroy(name: "x")  // leaves a gap of exactly 2^63 bytes
            try! t.resize(name: "y", to: usable)  // which y then takes as a second extent
            precondition(t.availableSize == 0 && t.invariantViolation() == nil)
            precondition(t.arena(named: "y")!.extents.count == 2)
            let last = t.arena(named: "y")!.translate(usable - 1)!
            precondition(last.deviceOffset == Geometry.blockSize + (1 << 63) - 1 && last.contiguous == 1)
        }
        await #expect(processExitsWith: .success) {
            let deviceSize = UInt64.max - UInt64.max % Geometry.blockSize
            let metadata = HeapMetadata(uuid: HeapUUID(high: 1, low: 1), deviceSize: deviceSize,
                                        alignment: Geometry.blockSize, generation: 1)
            guard case .success(let decoded) = MetadataCopy.decode(MetadataCopy.encode(metadata)) else { return }
            _ = try? ArenaTable(metadata: decoded)  // throws or succeeds, never traps
        }
    }
}
