// Kernel semantics of the device-dax region's resource tree (kernel/resource.c as the
// 2016 sub-division series uses it): __request_region, adjust_resource,
// __release_region and dax_region_avail_size, plus the first-fit gap order of
// dax_dev_resize.

import DaxResourceTree
import Testing
import DaxTestSupport

/// The device's allocation unit: 2 MiB (PMD_SIZE).
private let unit: UInt64 = 2 << 20
/// Root regions start here unless a test says otherwise, so that "before the root" exists.
private let base: UInt64 = 1 << 30

/// A root region of `units` 2 MiB units starting at `base`.
private func region(units: UInt64 = 16, at start: UInt64 = base) -> ResourceTree {
    ResourceTree(start: start, size: units * unit)
}

/// Byte offset of unit `n` of a region at `base`.
private func at(_ n: UInt64) -> UInt64 { base + n * unit }

/// Checks every structural rule, and that availableSize and the gaps account for
/// exactly the bytes the children do not (dax_region_avail_size).
private func expectSound(_ tree: ResourceTree, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(tree.invariantViolation() == nil, sourceLocation: sourceLocation)
    let used = tree.children.reduce(0) { $0 + $1.size }
    #expect(tree.availableSize == tree.size - used, "availableSize", sourceLocation: sourceLocation)
    let free = tree.gaps.reduce(0) { $0 + UInt64($1.count) }
    #expect(free == tree.availableSize, "gaps do not add up to availableSize", sourceLocation: sourceLocation)
}

/// Runs a call that must be refused with `expected` and leave the tree exactly as it was.
private func expectRefused(
    _ expected: ResourceTreeError, _ tree: inout ResourceTree,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ call: (inout ResourceTree) throws -> Void
) {
    let before = tree
    do {
        try call(&tree)
        Issue.record("expected \(expected) but the call succeeded", sourceLocation: sourceLocation)
    } catch {
        #expect(error as? ResourceTreeError == expected, sourceLocation: sourceLocation)
    }
    #expect(tree == before, "a refused call changed the tree", sourceLocation: sourceLocation)
    expectSound(tree, sourceLocation: sourceLocation)
}

// MARK: - request (__request_region)

@Suite struct RequestTests {
    @Test func emptyRegionHasOneGapAndFullAvailability() {
        let tree = region()
        #expect(tree.children.isEmpty)
        #expect(tree.end == base + 16 * unit)
        #expect(tree.availableSize == 16 * unit)
        #expect(tree.gaps == [base ..< base + 16 * unit])
        expectSound(tree)
    }

    @Test func requestReturnsAndStoresTheResource() throws {
        var tree = region()
        let r = try tree.request(start: at(2), size: 3 * unit, owner: 7, pageOffset: 4 * unit)
        #expect(r == Resource(start: at(2), size: 3 * unit, owner: 7, pageOffset: 4 * unit))
        #expect(r.end == at(5))
        #expect(tree.children == [r])
        #expect(tree.allocatedSize == 3 * unit)
        #expect(tree.availableSize == 13 * unit)
        expectSound(tree)
    }

    @Test func childrenStayOrderedByStartWhateverTheRequestOrder() throws {
        var tree = region()
        for n: UInt64 in [9, 1, 14, 5, 0, 12] {
            try tree.request(start: at(n), size: unit, owner: n, pageOffset: 0)
            expectSound(tree)
        }
        #expect(tree.children.map(\.start) == [0, 1, 5, 9, 12, 14].map { at($0) })
        #expect(tree.index(ofChildAt: at(9)) == 3)
        #expect(tree.index(ofChildAt: at(9) + 1) == nil)
        #expect(tree.firstIndex(startingAtOrAfter: at(6)) == 3)
        #expect(tree.firstIndex(startingAtOrAfter: at(15)) == 6)
    }

    /// Resources are half-open: a request that ends where a child starts, or starts where
    /// one ends, does not conflict (the kernel compares inclusive ends).
    @Test func touchingNeighboursAreAllowed() throws {
        var tree = region()
        try tree.request(start: at(4), size: 2 * unit, owner: 1, pageOffset: 0)
        try tree.request(start: at(2), size: 2 * unit, owner: 2, pageOffset: 0)
        expectSound(tree)
        try tree.request(start: at(6), size: 2 * unit, owner: 3, pageOffset: 0)
        expectSound(tree)
        // The whole root, first and last byte included.
        try tree.request(start: at(0), size: 2 * unit, owner: 4, pageOffset: 0)
        try tree.request(start: at(8), size: 8 * unit, owner: 5, pageOffset: 0)
        expectSound(tree)
        #expect(tree.availableSize == 0)
        #expect(tree.gaps.isEmpty)
        #expect(tree.children.map(\.owner) == [4, 2, 1, 3, 5])
    }

    /// __request_region marks its resources IORESOURCE_BUSY, so any overlap with a child
    /// is a conflict: before, after, containing, contained or identical.
    @Test(arguments: [
        (4, 4),   // the same range
        (2, 4),   // starts before, ends inside
        (6, 4),   // starts inside, ends after
        (2, 8),   // contains the child
        (5, 2),   // contained in the child
        (4, 1),   // the child's first unit
        (7, 1),   // the child's last unit
        (3, 2),   // one unit before and the first unit
        (7, 9),   // the last unit and on to the root's end
        (0, 16),  // the whole root
    ] as [(UInt64, UInt64)])
    func overlapIsRefused(startUnit: UInt64, units: UInt64) throws {
        var tree = region()
        let child = try tree.request(start: at(4), size: 4 * unit, owner: 1, pageOffset: 0)
        expectRefused(.overlap(child), &tree) { try $0.request(start: at(startUnit), size: units * unit, owner: 2, pageOffset: 0) }
    }

    @Test func overlapByOneByteIsRefused() throws {
        var tree = region()
        let child = try tree.request(start: at(4), size: 4 * unit, owner: 1, pageOffset: 0)
        expectRefused(.overlap(child), &tree) { try $0.request(start: at(8) - 1, size: unit, owner: 2, pageOffset: 0) }
        expectRefused(.overlap(child), &tree) { try $0.request(start: at(3), size: unit + 1, owner: 2, pageOffset: 0) }
        expectRefused(.overlap(child), &tree) { try $0.request(start: at(5) + 17, size: 1, owner: 2, pageOffset: 0) }
        // One byte short of each side is fine.
        try tree.request(start: at(8), size: 1, owner: 3, pageOffset: 0)
        try tree.request(start: at(3), size: unit, owner: 4, pageOffset: 0)
        expectSound(tree)
    }

    /// The kernel walks the children in address order and reports the first conflict.
    @Test func overlapReportsTheLowestConflictingChild() throws {
        var tree = region()
        let low = try tree.request(start: at(2), size: 2 * unit, owner: 1, pageOffset: 0)
        let high = try tree.request(start: at(6), size: 2 * unit, owner: 2, pageOffset: 0)
        expectRefused(.overlap(low), &tree) { try $0.request(start: at(3), size: 4 * unit, owner: 3, pageOffset: 0) }
        expectRefused(.overlap(low), &tree) { try $0.request(start: at(0), size: 16 * unit, owner: 3, pageOffset: 0) }
        expectRefused(.overlap(high), &tree) { try $0.request(start: at(4), size: 3 * unit, owner: 3, pageOffset: 0) }
    }

    @Test func outsideTheRootIsOutOfBounds() {
        var tree = region()
        let cases: [(UInt64, UInt64)] = [
            (base - unit, unit),          // entirely before the root
            (base - unit, 2 * unit),      // straddles the root's start
            (base - 1, 1),                // the byte before the root
            (at(16), unit),               // starts at the root's end
            (at(15), 2 * unit),           // straddles the root's end
            (at(16) - 1, 2),              // one byte past the end
            (0, 1),                       // address 0, below a root that starts at 1 GiB
        ]
        for (start, size) in cases {
            expectRefused(.outOfBounds(start: start, size: size), &tree) { try $0.request(start: start, size: size, owner: 1, pageOffset: 0) }
        }
    }

    /// __request_region(n = 0) computes end = start - 1 < start and is refused.
    @Test func zeroSizeIsRefused() throws {
        var tree = region()
        expectRefused(.outOfBounds(start: at(3), size: 0), &tree) { try $0.request(start: at(3), size: 0, owner: 1, pageOffset: 0) }
        try tree.request(start: at(4), size: unit, owner: 1, pageOffset: 0)
        // Even exactly at the end of a child, where a half-open empty range would "fit".
        expectRefused(.outOfBounds(start: at(5), size: 0), &tree) { try $0.request(start: at(5), size: 0, owner: 1, pageOffset: 0) }
    }

    /// start + size must not wrap past UInt64.max into a range that looks inside the root.
    @Test func hugeValuesDoNotWrapAround() throws {
        var tree = region()
        try tree.request(start: at(1), size: unit, owner: 1, pageOffset: 0)
        let cases: [(UInt64, UInt64)] = [
            (at(0), .max),
            (at(2), .max),
            (at(2), .max - at(2) + 1),    // start + size == 2^64, i.e. 0 when wrapped
            (.max, 1),
            (.max, .max),
            (.max - unit + 1, 2 * unit),  // wraps to a small end
            (at(2), 1 << 63),
        ]
        for (start, size) in cases {
            expectRefused(.outOfBounds(start: start, size: size), &tree) { try $0.request(start: start, size: size, owner: 1, pageOffset: 0) }
        }
    }

    @Test func rootAtTheTopOfTheAddressSpace() throws {
        let top = UInt64.max - 4 * unit
        var tree = ResourceTree(start: top, size: 4 * unit)
        #expect(tree.end == .max)
        let last = try tree.request(start: .max - unit, size: unit, owner: 1, pageOffset: 0)
        #expect(last.end == .max)
        expectSound(tree)
        expectRefused(.outOfBounds(start: .max - unit, size: unit + 1), &tree) { try $0.request(start: .max - unit, size: unit + 1, owner: 2, pageOffset: 0) }
        expectRefused(.outOfBounds(start: top, size: .max), &tree) { try $0.request(start: top, size: .max, owner: 2, pageOffset: 0) }
        expectRefused(.overlap(last), &tree) { try $0.request(start: top, size: 4 * unit, owner: 2, pageOffset: 0) }
        expectRefused(.outOfBounds(start: .max - unit, size: .max), &tree) { try $0.adjust(start: .max - unit, newSize: .max) }
        #expect(tree.freeSpace(after: .max - unit) == 0)
        #expect(tree.gaps == [top ..< .max - unit])
    }

    @Test func byteGranularRequestsAreAccepted() throws {
        // The tree itself has no alignment rule; 2 MiB alignment is the caller's policy.
        var tree = region()
        try tree.request(start: at(0) + 1, size: 4095, owner: 1, pageOffset: 0)
        try tree.request(start: at(0) + 4096, size: 1, owner: 2, pageOffset: 0)
        expectSound(tree)
        #expect(tree.availableSize == 16 * unit - 4096)
        #expect(tree.gaps.first == at(0) ..< at(0) + 1)
    }
}

// MARK: - adjust (adjust_resource with an unchanged start)

@Suite struct AdjustTests {
    /// Two children A = [0, 2) and B = [5, 7) in a 16-unit root.
    private func twoChildren() throws -> ResourceTree {
        var tree = region()
        try tree.request(start: at(0), size: 2 * unit, owner: 1, pageOffset: 0)
        try tree.request(start: at(5), size: 2 * unit, owner: 2, pageOffset: 6 * unit)
        return tree
    }

    @Test func growsInPlaceUpToTheNextNeighbour() throws {
        var tree = try twoChildren()
        let grown = try tree.adjust(start: at(0), newSize: 5 * unit)  // now touches B
        #expect(grown == Resource(start: at(0), size: 5 * unit, owner: 1, pageOffset: 0))
        #expect(tree.children[0] == grown)
        #expect(tree.availableSize == 9 * unit)
        expectSound(tree)
        #expect(tree.freeSpace(after: at(0)) == 0)
    }

    /// adjust_resource fails (-EBUSY) when the new end runs into the next sibling.
    @Test func growingIntoTheNextNeighbourIsRefused() throws {
        var tree = try twoChildren()
        let b = tree.children[1]
        expectRefused(.overlap(b), &tree) { try $0.adjust(start: at(0), newSize: 5 * unit + 1) }
        expectRefused(.overlap(b), &tree) { try $0.adjust(start: at(0), newSize: 16 * unit) }
        expectRefused(.overlap(b), &tree) { try $0.adjust(start: at(0), newSize: .max) }
    }

    @Test func growsTheLastChildUpToTheRootEnd() throws {
        var tree = try twoChildren()
        let grown = try tree.adjust(start: at(5), newSize: 11 * unit)
        #expect(grown.end == tree.end)
        #expect(grown.owner == 2 && grown.pageOffset == 6 * unit)  // adjust keeps the identity
        expectSound(tree)
        #expect(tree.freeSpace(after: at(5)) == 0)
        expectRefused(.outOfBounds(start: at(5), size: 11 * unit + 1), &tree) { try $0.adjust(start: at(5), newSize: 11 * unit + 1) }
        expectRefused(.outOfBounds(start: at(5), size: .max), &tree) { try $0.adjust(start: at(5), newSize: .max) }
    }

    @Test func shrinksAndFreesTheTail() throws {
        var tree = try twoChildren()
        try tree.adjust(start: at(5), newSize: 1)
        expectSound(tree)
        #expect(tree.children[1].size == 1)
        #expect(tree.availableSize == 14 * unit - 1)
        #expect(tree.gaps == [at(2) ..< at(5), at(5) + 1 ..< at(16)])
        // Freed space is immediately requestable.
        try tree.request(start: at(5) + 1, size: unit - 1, owner: 3, pageOffset: 0)
        expectSound(tree)
    }

    @Test func sameSizeIsANoOp() throws {
        var tree = try twoChildren()
        let before = tree
        try tree.adjust(start: at(5), newSize: 2 * unit)
        #expect(tree == before)
    }

    /// adjust_resource to size 0 would leave an empty resource; the seed's shrink releases
    /// the whole resource instead, and the tree refuses the empty one.
    @Test func adjustingToZeroIsRefused() throws {
        var tree = try twoChildren()
        expectRefused(.outOfBounds(start: at(0), size: 0), &tree) { try $0.adjust(start: at(0), newSize: 0) }
        expectRefused(.outOfBounds(start: at(5), size: 0), &tree) { try $0.adjust(start: at(5), newSize: 0) }
    }

    /// Only a child's own start names it: an offset inside a child or in a gap is notFound.
    @Test func startThatIsNotAChildIsNotFound() throws {
        var tree = try twoChildren()
        for start in [at(1), at(0) + 1, at(3), at(7), at(6), base - unit, at(16), UInt64.max, 0] {
            expectRefused(.notFound(start: start), &tree) { try $0.adjust(start: start, newSize: unit) }
        }
        var empty = region()
        expectRefused(.notFound(start: at(0)), &empty) { try $0.adjust(start: at(0), newSize: unit) }
    }

    @Test func shrinkThenGrowBackAroundANewNeighbour() throws {
        var tree = try twoChildren()
        try tree.adjust(start: at(5), newSize: unit)
        let c = try tree.request(start: at(7), size: unit, owner: 3, pageOffset: 0)
        expectSound(tree)
        try tree.adjust(start: at(5), newSize: 2 * unit)  // touches C
        expectRefused(.overlap(c), &tree) { try $0.adjust(start: at(5), newSize: 3 * unit) }
        #expect(tree.availableSize == 11 * unit)
    }
}

// MARK: - release (__release_region)

@Suite struct ReleaseTests {
    @Test func releaseNeedsAnExactMatch() throws {
        var tree = region()
        let r = try tree.request(start: at(3), size: 4 * unit, owner: 9, pageOffset: 0)
        expectRefused(.notFound(start: at(3)), &tree) { try $0.release(start: at(3), size: 3 * unit) }
        expectRefused(.notFound(start: at(3)), &tree) { try $0.release(start: at(3), size: 5 * unit) }
        expectRefused(.notFound(start: at(3)), &tree) { try $0.release(start: at(3), size: 0) }
        expectRefused(.notFound(start: at(4)), &tree) { try $0.release(start: at(4), size: 3 * unit) }
        expectRefused(.notFound(start: at(2)), &tree) { try $0.release(start: at(2), size: 5 * unit) }
        expectRefused(.notFound(start: at(3) + 1), &tree) { try $0.release(start: at(3) + 1, size: 4 * unit - 1) }
        let released = try tree.release(start: at(3), size: 4 * unit)
        #expect(released == r)
        #expect(tree.children.isEmpty)
        #expect(tree.availableSize == tree.size)
        expectSound(tree)
        #expect(tree == region(), "releasing the only child restores the empty tree")
    }

    @Test func releasingTwiceIsNotFound() throws {
        var tree = region()
        try tree.request(start: at(0), size: unit, owner: 1, pageOffset: 0)
        try tree.release(start: at(0), size: unit)
        expectRefused(.notFound(start: at(0)), &tree) { try $0.release(start: at(0), size: unit) }
    }

    @Test func releaseKeepsTheNeighboursAndFreesTheRange() throws {
        var tree = region()
        let a = try tree.request(start: at(0), size: 2 * unit, owner: 1, pageOffset: 0)
        try tree.request(start: at(2), size: 2 * unit, owner: 2, pageOffset: 0)
        let c = try tree.request(start: at(4), size: 2 * unit, owner: 3, pageOffset: 0)
        try tree.release(start: at(2), size: 2 * unit)
        expectSound(tree)
        #expect(tree.children == [a, c])
        #expect(tree.gaps == [at(2) ..< at(4), at(6) ..< at(16)])
        #expect(tree.freeSpace(after: at(0)) == 2 * unit)
        // The freed range can be requested again, by anyone.
        try tree.request(start: at(2), size: 2 * unit, owner: 4, pageOffset: 0)
        expectSound(tree)
        #expect(tree.children.map(\.owner) == [1, 4, 3])
    }
}

// MARK: - gaps and freeSpace(after:)

@Suite struct FreeSpaceTests {
    /// dev_dax_resize searches first fit: before the first child, between children in
    /// address order, then after the last one. Empty gaps are never listed.
    @Test func gapsAreInFirstFitOrder() throws {
        var tree = region()
        try tree.request(start: at(9), size: unit, owner: 1, pageOffset: 0)
        try tree.request(start: at(2), size: 2 * unit, owner: 2, pageOffset: 0)
        try tree.request(start: at(4), size: 2 * unit, owner: 3, pageOffset: 0)  // touches the previous one
        #expect(tree.gaps == [at(0) ..< at(2), at(6) ..< at(9), at(10) ..< at(16)])
        try tree.request(start: at(0), size: 2 * unit, owner: 4, pageOffset: 0)
        try tree.request(start: at(10), size: 6 * unit, owner: 5, pageOffset: 0)
        #expect(tree.gaps == [at(6) ..< at(9)])
        expectSound(tree)
    }

    @Test func freeSpaceAfterAChild() throws {
        var tree = region()
        try tree.request(start: at(1), size: unit, owner: 1, pageOffset: 0)
        try tree.request(start: at(5), size: unit, owner: 2, pageOffset: 0)
        try tree.request(start: at(6), size: unit, owner: 3, pageOffset: 0)
        #expect(tree.freeSpace(after: at(1)) == 3 * unit)   // up to the next child
        #expect(tree.freeSpace(after: at(5)) == 0)          // touching
        #expect(tree.freeSpace(after: at(6)) == 9 * unit)   // up to the root's end
        #expect(tree.freeSpace(after: at(0)) == nil)        // a gap, not a child
        #expect(tree.freeSpace(after: at(1) + 1) == nil)    // inside a child
        #expect(tree.freeSpace(after: .max) == nil)
    }
}

// MARK: - Seeded model-based test


/// The trivial reference: which request (if any) owns each 2 MiB unit of the root.
private struct UnitModel {
    static let units = 48
    var owner = [Int?](repeating: nil, count: units)
    var identity: [Int: (owner: UInt64, pageOffset: UInt64)] = [:]
    let start: UInt64

    func byteOffset(_ u: Int) -> UInt64 { start &+ UInt64(bitPattern: Int64(u)) &* unit }

    /// The children, rebuilt from runs of equal ids.
    var children: [Resource] {
        var result: [Resource] = []
        var u = 0
        while u < Self.units {
            guard let id = owner[u] else { u += 1; continue }
            var end = u + 1
            while end < Self.units, owner[end] == id { end += 1 }
            let meta = identity[id]!
            result.append(Resource(start: byteOffset(u), size: UInt64(end - u) * unit, owner: meta.owner, pageOffset: meta.pageOffset))
            u = end
        }
        return result
    }

    var gaps: [Range<UInt64>] {
        var result: [Range<UInt64>] = []
        var u = 0
        while u < Self.units {
            guard owner[u] == nil else { u += 1; continue }
            var end = u + 1
            while end < Self.units, owner[end] == nil { end += 1 }
            result.append(byteOffset(u) ..< byteOffset(end))
            u = end
        }
        return result
    }

    /// The child owning unit `u`, as the tree would report it.
    func child(at u: Int) -> Resource? {
        guard u >= 0, u < Self.units, owner[u] != nil else { return nil }
        return children.first { $0.start <= byteOffset(u) && byteOffset(u) < $0.end }
    }

    /// Unit range of the child that starts exactly at unit `u`.
    func childStarting(at u: Int) -> Range<Int>? {
        guard u >= 0, u < Self.units, let id = owner[u], u == 0 || owner[u - 1] != id else { return nil }
        var end = u + 1
        while end < Self.units, owner[end] == id { end += 1 }
        return u ..< end
    }
}

@Suite struct ResourceTreeModelTests {
    @Test(arguments: [0x5EED_DA70_0001, 0xD1CE_2016_1211] as [UInt64])
    func randomOperationsAgreeWithAUnitModel(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        var model = UnitModel(start: base)
        var tree = ResourceTree(start: base, size: UInt64(UnitModel.units) * unit)
        var nextID = 0
        var outcomes = [0, 0]  // failures, successes: both paths must be exercised

        for step in 0 ..< 5_000 {
            let context = "seed \(String(seed, radix: 16)) step \(step)"
            let before = tree
            var description = ""
            var expected: Result<Resource, ResourceTreeError>
            var actual: Result<Resource, ResourceTreeError>
            var apply: () -> Void = {}

            switch rng.below(100) {
            case 0 ..< 45:  // request
                let u = rng.below(UnitModel.units + 8) - 4
                var n = rng.below(12)  // 0 is a refused size
                if rng.chance(3) { n = Int.max }  // a huge size that would wrap
                let size = n == Int.max ? UInt64.max - unit : UInt64(n) * unit
                // Now and then a byte offset far below the root instead of a unit.
                let startBytes = rng.chance(2) ? UInt64(rng.below(Int(base / 2))) : model.byteOffset(u)
                let owner = UInt64(rng.below(4))
                let pageOffset = UInt64(rng.below(64)) * unit
                description = "request(\(startBytes), \(size))"
                if startBytes < base || u < 0 || n == 0 || n == Int.max || u + n > UnitModel.units {
                    expected = .failure(.outOfBounds(start: startBytes, size: size))
                } else if let first = (u ..< u + n).first(where: { model.owner[$0] != nil }) {
                    expected = .failure(.overlap(model.child(at: first)!))
                } else {
                    let id = nextID
                    nextID += 1
                    expected = .success(Resource(start: startBytes, size: size, owner: owner, pageOffset: pageOffset))
                    apply = {
                        model.identity[id] = (owner, pageOffset)
                        for v in u ..< u + n { model.owner[v] = id }
                    }
                }
                actual = Result { () throws(ResourceTreeError) in
                    try tree.request(start: startBytes, size: size, owner: owner, pageOffset: pageOffset)
                }

            case 45 ..< 75:  // adjust: mostly an existing child, sometimes any unit
                let children = model.children
                let u: Int
                if !children.isEmpty, rng.chance(80) {
                    u = Int((children[rng.below(children.count)].start - base) / unit)
                } else {
                    u = rng.below(UnitModel.units + 4) - 2
                }
                let n = rng.below(14)
                let start = model.byteOffset(u)
                let newSize = UInt64(n) * unit
                description = "adjust(\(start), \(newSize))"
                if let run = model.childStarting(at: u) {
                    let id = model.owner[u]!
                    let next = (run.upperBound ..< UnitModel.units).first { model.owner[$0] != nil }
                    let limit = next ?? UnitModel.units
                    if n == 0 {
                        expected = .failure(.outOfBounds(start: start, size: 0))
                    } else if u + n > limit {
                        expected = .failure(next.map { .overlap(model.child(at: $0)!) } ?? .outOfBounds(start: start, size: newSize))
                    } else {
                        let meta = model.identity[id]!
                        expected = .success(Resource(start: start, size: newSize, owner: meta.owner, pageOffset: meta.pageOffset))
                        apply = {
                            for v in run { model.owner[v] = nil }
                            for v in u ..< u + n { model.owner[v] = id }
                        }
                    }
                } else {
                    expected = .failure(.notFound(start: start))
                }
                actual = Result { () throws(ResourceTreeError) in try tree.adjust(start: start, newSize: newSize) }

            default:  // release: mostly an exact child, sometimes a wrong size or start
                let children = model.children
                var start = model.byteOffset(rng.below(UnitModel.units))
                var size = UInt64(1 + rng.below(6)) * unit
                if !children.isEmpty, rng.chance(80) {
                    let child = children[rng.below(children.count)]
                    start = child.start
                    size = child.size
                    if rng.chance(15) { size = rng.chance(50) ? size + unit : size - unit }  // a wrong size
                }
                description = "release(\(start), \(size))"
                if let child = children.first(where: { $0.start == start && $0.size == size }) {
                    let u = Int((start - base) / unit)
                    expected = .success(child)
                    apply = { for v in u ..< u + Int(size / unit) { model.owner[v] = nil } }
                } else {
                    expected = .failure(.notFound(start: start))
                }
                actual = Result { () throws(ResourceTreeError) in try tree.release(start: start, size: size) }
            }

            apply()
            if case .success = expected { outcomes[1] += 1 } else { outcomes[0] += 1 }
            var agrees = actual == expected
            #expect(actual == expected, "\(context): \(description)")
            if case .failure = actual {
                agrees = agrees && tree == before
                #expect(tree == before, "\(context): refused \(description) changed the tree")
            }
            let children = model.children
            agrees = agrees && tree.children == children && tree.gaps == model.gaps
            #expect(tree.children == children, "\(context): after \(description)")
            #expect(tree.gaps == model.gaps, "\(context): gaps after \(description)")
            let used = children.reduce(0) { $0 + $1.size }
            #expect(tree.availableSize == tree.size - used, "\(context): availableSize")
            #expect(tree.invariantViolation() == nil, "\(context): after \(description)")
            if !agrees { return }  // one divergence is enough; the rest would only echo it
        }
        #expect(outcomes[0] > 500 && outcomes[1] > 500, "seed \(String(seed, radix: 16)): \(outcomes)")
    }
}

// MARK: - gaps(within:): the free parts of a range

@Suite struct GapsWithinTests {
    /// Random children, random byte ranges (inside, across and outside the root): the
    /// gaps within a range are the tree's gaps cut to it.
    @Test(arguments: [0x6A95_0001, 0x6A95_2016] as [UInt64])
    func gapsWithinARangeAreTheGapsCutToIt(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        for round in 0 ..< 200 {
            var tree = region(units: 32)
            for _ in 0 ..< rng.below(12) {
                let u = UInt64(rng.below(32)), n = UInt64(1 + rng.below(4))
                _ = try? tree.request(start: at(u), size: min(n, 32 - u) * unit, owner: 1, pageOffset: 0)
            }
            for _ in 0 ..< 20 {
                let a = at(0) - unit + UInt64(rng.below(Int(34 * unit)))
                let b = a + UInt64(rng.below(Int(8 * unit)))
                let range = a ..< b
                let expected = tree.gaps.map { clip(range, to: $0) }
                // Outside the root nothing is a child either: those parts count as free.
                let outside = [clip(range, to: 0 ..< tree.start), clip(range, to: tree.end ..< .max)]
                let model = merged((expected + outside).sorted { $0.lowerBound < $1.lowerBound })
                #expect(merged(tree.gaps(within: range)) == model, "seed \(seed) round \(round) range \(range)")
            }
        }
    }

    @Test func aRangeInsideOneChildHasNoGap() throws {
        var tree = region()
        try tree.request(start: at(2), size: 4 * unit, owner: 1, pageOffset: 0)
        #expect(tree.gaps(within: at(3) ..< at(4)).isEmpty)
        #expect(tree.gaps(within: at(1) ..< at(3)) == [at(1) ..< at(2)])
        #expect(tree.gaps(within: at(5) ..< at(7)) == [at(6) ..< at(7)])
        #expect(tree.gaps(within: at(0) ..< at(16)) == tree.gaps)
    }
}

/// The part of `range` inside `bounds` (empty, somewhere, if none).
private func clip(_ range: Range<UInt64>, to bounds: Range<UInt64>) -> Range<UInt64> {
    let low = max(range.lowerBound, bounds.lowerBound)
    return low ..< max(low, min(range.upperBound, bounds.upperBound))
}

/// Adjacent ranges joined (gaps either side of the root's edge are reported apart).
private func merged(_ ranges: [Range<UInt64>]) -> [Range<UInt64>] {
    var result: [Range<UInt64>] = []
    for r in ranges where !r.isEmpty {
        if let last = result.last, last.upperBound == r.lowerBound { result[result.count - 1] = last.lowerBound ..< r.upperBound } else { result.append(r) }
    }
    return result
}
