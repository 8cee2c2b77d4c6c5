// The one correction ArenaTable makes to the seed's grow path.
//
// dax_dev_resize (patch 6/8) picks `max_res`, the device's highest-pgoff resource, once,
// then walks the region's children in ADDRESS order: it adds new resources in the gaps
// it meets (at the running dev_pgoff), and when it meets `max_res` with free space after
// it, it extends `max_res` with dax_dev_adjust_resource. If it added resources in earlier
// gaps first, `max_res` is extended over arena offsets those new resources already hold:
// arena offsets overlap and the device's size no longer maps contiguously.
//
// `SeedRegion` below re-implements that loop faithfully (with dax_dev_add_resource and
// dax_dev_adjust_resource, including their radix-tree updates) over a copy of the
// table's ResourceTree, so that the same scenario can be run through both.

import DaxArenas
import DaxMetadata
import DaxRadix
import DaxResourceTree
import Testing

/// The seed's grow path over a ResourceTree. `pageOffset` plays `res->desc` (kept in bytes
/// here, as ArenaTable keeps it), `owner` plays the device name.
struct SeedRegion {
    enum Failure: Error, Equatable {
        case noSpace  // -ENOSPC
        case busy  // __request_region failed: -EBUSY
        case radix(RadixTreeError)  // __radix_tree_insert failed
        case adjust(ResourceTreeError)  // adjust_resource failed (the seed ignores it)
    }

    var tree: ResourceTree
    /// dax_dev->res[]: each device's resources (by start), in the order they were added.
    var resources: [UInt64: [UInt64]] = [:]
    /// Each device's i_mapping->page_tree: device pgoff in 2 MiB pages -> the resource
    /// (identified here by its start block).
    var radix: [UInt64: RadixTree] = [:]

    /// The seed's state for the arenas of `table` (radix trees only for `devices`, all if nil).
    init(_ table: ArenaTable, devices: Set<UInt64>? = nil) {
        tree = table.tree
        for (id, arena) in table.arenas {
            resources[id] = arena.extents.map(\.deviceOffset)
            guard devices?.contains(id) ?? true else { continue }
            var pages = RadixTree()
            for e in arena.extents {
                for block in PageOrders(start: e.arenaOffset / unit, count: e.length / unit) {
                    try! pages.insert(index: block.index, order: block.order, value: UInt32(e.deviceOffset / unit))
                }
            }
            radix[id] = pages
        }
    }

    func child(at start: UInt64) -> Resource { tree.children[tree.index(ofChildAt: start)!] }

    /// dax_dev_size: the sum of the device's resources.
    func size(of owner: UInt64) -> UInt64 {
        (resources[owner] ?? []).reduce(0) { $0 + child(at: $1).size }
    }

    /// The device's resources as extents, ordered by pgoff (how a reader would take them).
    func extents(of owner: UInt64) -> [ExtentRecord] {
        (resources[owner] ?? []).map(child(at:))
            .map { ExtentRecord(deviceOffset: $0.start, arenaOffset: $0.pageOffset, length: $0.size) }
            .sorted { ($0.arenaOffset, $0.deviceOffset) < ($1.arenaOffset, $1.deviceOffset) }
    }

    /// dax_dev_add_resource.
    mutating func addResource(owner: UInt64, start: UInt64, size: UInt64, devPgoff: UInt64) throws(Failure) {
        do {
            try tree.request(start: start, size: size, owner: owner, pageOffset: devPgoff)
        } catch {
            throw .busy
        }
        resources[owner, default: []].append(start)
        var inserted: [PageBlock] = []
        for block in PageOrders(start: devPgoff / unit, count: size / unit) {
            do {
                try radix[owner, default: RadixTree()].insert(
                    index: block.index, order: block.order, value: UInt32(start / unit))
                inserted.append(block)
            } catch {
                // err_radix: delete the entries, drop the resource, release the region.
                for b in inserted { _ = try? radix[owner]!.delete(index: b.index, order: b.order) }
                resources[owner]!.removeLast()
                _ = try? tree.release(start: start, size: size)
                throw .radix(error)
            }
        }
    }

    /// dax_dev_adjust_resource: delete the radix entries, adjust_resource, reinsert; on an
    /// insert error it warns and stops, leaving the resource adjusted.
    mutating func adjustResource(owner: UInt64, start: UInt64, newSize: UInt64) throws(Failure) {
        let res = child(at: start)
        for block in PageOrders(start: res.pageOffset / unit, count: res.size / unit) {
            _ = try? radix[owner]!.delete(index: block.index, order: block.order)
        }
        do {
            try tree.adjust(start: start, newSize: newSize)
        } catch {
            throw .adjust(error)
        }
        for block in PageOrders(start: res.pageOffset / unit, count: newSize / unit) {
            do {
                try radix[owner]!.insert(index: block.index, order: block.order, value: UInt32(start / unit))
            } catch {
                throw .radix(error)  // dev_WARN(..., "error: %d adjusting size\n", rc); break
            }
        }
    }

    /// dax_dev_resize, grow path only (the request is larger than the current size).
    /// Note: on a region without children the seed's loop does not run at all.
    mutating func resize(owner: UInt64, to size: UInt64) throws(Failure) {
        let avail = tree.availableSize
        let devSize = self.size(of: owner)
        var devPgoff = devSize
        if size == devSize { return }
        if size > devSize, size - devSize > avail { throw .noSpace }
        precondition(size > devSize, "only the seed's grow path is modelled")
        var toAlloc = size - devSize

        // max_res: the device's resource with the highest pgoff, chosen once.
        let maxRes = resources[owner]?.max { child(at: $0).pageOffset < child(at: $1).pageOffset }

        let regionStart = tree.start
        let regionEnd = tree.end
        let first = tree.children.first?.start
        var cursor = first
        while toAlloc > 0, let resStart = cursor {
            let i = tree.index(ofChildAt: resStart)!
            let res = tree.children[i]
            let next = i + 1 < tree.children.count ? tree.children[i + 1].start : nil
            let resEnd = res.end

            // space at the beginning of the region
            if resStart == first, resStart > regionStart {
                let alloc = min(resStart - regionStart, toAlloc)
                try addResource(owner: owner, start: regionStart, size: alloc, devPgoff: devPgoff)
                toAlloc -= alloc
                devPgoff += alloc
            }
            // space between allocations
            if toAlloc > 0, let next, next > resEnd {
                let alloc = min(next - resEnd, toAlloc)
                if resStart == maxRes, res.owner == owner {
                    try adjustResource(owner: owner, start: resStart, newSize: res.size + alloc)
                } else {
                    try addResource(owner: owner, start: resEnd, size: alloc, devPgoff: devPgoff)
                }
                toAlloc -= alloc
                devPgoff += alloc
            }
            // space at the end of the region
            if toAlloc > 0, next == nil, resEnd < regionEnd {
                let alloc = min(regionEnd - resEnd, toAlloc)
                if resStart == maxRes, res.owner == owner {
                    try adjustResource(owner: owner, start: resStart, newSize: res.size + alloc)
                } else {
                    try addResource(owner: owner, start: resEnd, size: alloc, devPgoff: devPgoff)
                }
                toAlloc -= alloc
                devPgoff += alloc
            }
            // res = res->sibling (which is a resource just added after res, if any)
            let j = tree.index(ofChildAt: resStart)!
            cursor = j + 1 < tree.children.count ? tree.children[j + 1].start : nil
        }
    }
}

@Suite struct SeedResizeTests {
    /// x = E0 [2,4) @0 (low address, free space right after it, and an earlier gap [0,2))
    ///   + E1 [8,10) @2 (x's highest arena offset, free space right after it).
    /// Layout: gap [0,2) | x.E0 [2,4) | gap [4,6) | q [6,8) | x.E1 [8,10) | free [10,16)
    static func fragmentedX(wallAfterE1: Bool) throws -> ArenaTable {
        var t = table(usableBlocks: 16)
        try t.create(name: "a", size: 2 * unit)  // [0,2)
        try t.create(name: "x", size: 2 * unit)  // [2,4)
        try t.create(name: "p", size: 2 * unit)  // [4,6)
        try t.create(name: "q", size: 2 * unit)  // [6,8)
        try t.resize(name: "x", to: 4 * unit)  // E0 walled by p: + [8,10) @2
        if wallAfterE1 { try t.create(name: "r", size: 6 * unit) }  // [10,16)
        try t.destroy(name: "a")
        try t.destroy(name: "p")
        #expect(extents(t, "x") == [extent(at: 2, off: 0, len: 2), extent(at: 8, off: 2, len: 2)])
        #expect(t.tree.gaps == (wallAfterE1 ? [gap(0, 2), gap(4, 6)] : [gap(0, 2), gap(4, 6), gap(10, 16)]))
        return t
    }

    /// ArenaTable extends only the highest-offset extent E1, never E0, and arena offsets
    /// stay contiguous.
    @Test func growExtendsOnlyTheHighestOffsetExtent() throws {
        var t = try Self.fragmentedX(wallAfterE1: false)
        try t.resize(name: "x", to: 10 * unit)
        #expect(extents(t, "x") == [extent(at: 2, off: 0, len: 2), extent(at: 8, off: 2, len: 8)])
        #expect(t.tree.gaps == [gap(0, 2), gap(4, 6)])  // the earlier gaps are left alone
        #expect(t.invariantViolation() == nil)
        #expect(contiguityViolation(extents(t, "x")) == nil)
        expectSound(t)
        #expect(roundTripViolation(t) == nil)
    }

    /// The same scenario through the seed's loop: it adds [0,2) @4 and [4,6) @6 first, then
    /// meets max_res E1 and extends it over arena offsets 4..6, which [0,2) already holds.
    /// The reinsert of E1's radix entries collides (the seed's dev_WARN), and the extents no
    /// longer have contiguous arena offsets: the invariant check catches the seed's bug.
    @Test func theSeedsLoopBreaksContiguityOnTheSameScenario() throws {
        let t = try Self.fragmentedX(wallAfterE1: false)
        let x = try #require(t.arena(named: "x")).id
        var seed = SeedRegion(t)
        #expect(throws: SeedRegion.Failure.radix(.occupied(index: 4, order: 1))) {
            try seed.resize(owner: x, to: 10 * unit)
        }
        let seedExtents = seed.extents(of: x)
        #expect(seedExtents == [
            extent(at: 2, off: 0, len: 2),
            extent(at: 8, off: 2, len: 4),  // max_res extended: arena offsets [2,6)
            extent(at: 0, off: 4, len: 2),  // added in the first gap: arena offsets [4,6) again
            extent(at: 4, off: 6, len: 2),
        ])
        #expect(seed.size(of: x) == 10 * unit)
        #expect(seed.tree.invariantViolation() == nil)  // the resource tree itself is fine...
        #expect(contiguityViolation(seedExtents) == "extent 2 at arena offset 4 blocks, expected 6")  // ...the arena is not
        // Arena pages 8 and 9 are mapped by nothing, page 4 and 5 by two extents.
        let pages = seed.radix[x]!
        #expect(pages.lookup(8) == nil && pages.lookup(9) == nil)

        // The metadata decoder refuses such a table too.
        var metadata = t.metadata(uuid: HeapUUID(high: 1, low: 2), alignment: unit, generation: 1)
        let i = try #require(metadata.arenas.firstIndex { $0.id == x })
        metadata.arenas[i].extents = seedExtents
        guard case .failure(.corrupt(let why)) = MetadataCopy.decode(MetadataCopy.encode(metadata)) else {
            Issue.record("the decoder accepted overlapping arena offsets")
            return
        }
        #expect(why.contains("arena offset"))

        // ArenaTable on the very same table: contiguous.
        var fixed = t
        try fixed.resize(name: "x", to: 10 * unit)
        #expect(fixed.invariantViolation() == nil)
        #expect(contiguityViolation(extents(fixed, "x")) == nil)
    }

    /// When the highest-offset extent has no free space after it, both never touch E0 and
    /// agree exactly: new extents first fit, even the one right after E0.
    @Test func withoutSpaceAfterTheLastExtentTheSeedAndArenaTableAgree() throws {
        var t = try Self.fragmentedX(wallAfterE1: true)
        let x = try #require(t.arena(named: "x")).id
        var seed = SeedRegion(t)
        try seed.resize(owner: x, to: 7 * unit)
        try t.resize(name: "x", to: 7 * unit)
        let expected = [
            extent(at: 2, off: 0, len: 2),  // E0 untouched though [4,5) is taken right after it
            extent(at: 8, off: 2, len: 2),
            extent(at: 0, off: 4, len: 2),
            extent(at: 4, off: 6, len: 1),
        ]
        #expect(extents(t, "x") == expected)
        #expect(seed.extents(of: x) == expected)
        #expect(seed.tree == t.tree)
        expectSound(t)
    }

    /// When the highest-offset extent's free space comes before any gap, the seed extends it
    /// in place too, and both agree.
    @Test func withoutEarlierGapsTheSeedAndArenaTableAgree() throws {
        var t = table(usableBlocks: 12)
        try t.create(name: "x", size: 2 * unit)  // [0,2)
        try t.create(name: "y", size: 2 * unit)  // [2,4)
        try t.destroy(name: "y")
        let x = try #require(t.arena(named: "x")).id
        var seed = SeedRegion(t)
        try seed.resize(owner: x, to: 12 * unit)
        try t.resize(name: "x", to: 12 * unit)
        #expect(extents(t, "x") == [extent(at: 0, off: 0, len: 12)])
        #expect(seed.extents(of: x) == extents(t, "x"))
        #expect(seed.tree == t.tree)
    }
}
