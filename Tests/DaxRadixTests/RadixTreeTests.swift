// The multi-order radix tree (RADIX_TREE_MULTIORDER, 64 slots per node): page index ->
// extent. An entry of order k lives at level k / 6 and fills 2^(k mod 6) slots there
// (a head and its siblings).

import DaxRadix
import Testing
import DaxTestSupport

private typealias Entry = (index: UInt64, order: Int, value: UInt32)

private func expectSound(_ tree: RadixTree, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(tree.invariantViolation() == nil, sourceLocation: sourceLocation)
    #expect(tree.entries.count == tree.entryCount, "entries vs entryCount", sourceLocation: sourceLocation)
}

private func expectEmpty(_ tree: RadixTree, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(tree.entryCount == 0, sourceLocation: sourceLocation)
    #expect(tree.entries.isEmpty, sourceLocation: sourceLocation)
    #expect(tree.nodeCount == 0, "an empty tree holds no nodes", sourceLocation: sourceLocation)
    #expect(tree.levels == 0, sourceLocation: sourceLocation)
    #expect(tree.invariantViolation() == nil, sourceLocation: sourceLocation)
}

/// Runs a call that must be refused with `expected` and leave the tree exactly as it was.
private func expectRefused(
    _ expected: RadixTreeError, _ tree: inout RadixTree,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ call: (inout RadixTree) throws -> Void
) {
    let before = tree
    do {
        try call(&tree)
        Issue.record("expected \(expected) but the call succeeded", sourceLocation: sourceLocation)
    } catch {
        #expect(error as? RadixTreeError == expected, sourceLocation: sourceLocation)
    }
    #expect(tree == before, "a refused call changed the tree", sourceLocation: sourceLocation)
}

private func sameEntries(_ a: [Entry], _ b: [Entry]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.index == $1.index && $0.order == $1.order && $0.value == $1.value }
}

// MARK: - Basics

@Suite struct RadixTreeBasicTests {
    @Test func emptyTree() {
        let tree = RadixTree()
        expectEmpty(tree)
        for index: UInt64 in [0, 1, 63, 64, 1 << 40, .max] { #expect(tree.lookup(index) == nil) }
    }

    @Test func insertLookupDelete() throws {
        var tree = RadixTree()
        try tree.insert(index: 5, order: 0, value: 42)
        expectSound(tree)
        #expect(tree.lookup(5) == 42)
        #expect(tree.lookup(4) == nil)
        #expect(tree.lookup(6) == nil)
        #expect(tree.lookup(5 + 64) == nil)
        #expect(tree.entryCount == 1)
        #expect(tree.levels == 1)
        #expect(tree.nodeCount == 1)
        #expect(try tree.delete(index: 5, order: 0) == 42)
        expectEmpty(tree)
        #expect(tree.lookup(5) == nil)
    }

    @Test func valueZeroAndTheLargestValueRoundTrip() throws {
        var tree = RadixTree()
        try tree.insert(index: 0, order: 0, value: 0)
        try tree.insert(index: 1, order: 0, value: RadixTree.maxValue - 1)
        try tree.insert(index: 2, order: 1, value: RadixTree.maxValue - 1)  // head and sibling
        expectSound(tree)
        #expect(tree.lookup(0) == 0)
        #expect(tree.lookup(1) == RadixTree.maxValue - 1)
        #expect(tree.lookup(3) == RadixTree.maxValue - 1)
        #expect(tree.lookup(4) == nil)
    }

    @Test func valueTooLargeIsRefused() throws {
        var tree = RadixTree()
        try tree.insert(index: 0, order: 0, value: 1)
        expectRefused(.valueTooLarge(RadixTree.maxValue), &tree) { try $0.insert(index: 8, order: 3, value: RadixTree.maxValue) }
        expectRefused(.valueTooLarge(.max), &tree) { try $0.insert(index: 1, order: 0, value: .max) }
        var empty = RadixTree()
        expectRefused(.valueTooLarge(RadixTree.maxValue), &empty) { try $0.insert(index: 0, order: 0, value: RadixTree.maxValue) }
    }

    /// __radix_tree_insert with an order requires index to be a multiple of 1 << order.
    @Test func misalignedInsertIsRefused() throws {
        var tree = RadixTree()
        try tree.insert(index: 0, order: 0, value: 1)
        let cases: [(UInt64, Int)] = [(1, 1), (2, 2), (512, 10), (64, 7), (32, 6), (4095, 12), (1 << 62, 63), (3, -1), (0, 64), (0, -1)]
        for (index, order) in cases {
            expectRefused(.misaligned(index: index, order: order), &tree) { try $0.insert(index: index, order: order, value: 9) }
            expectRefused(.misaligned(index: index, order: order), &tree) { try $0.delete(index: index, order: order) }
        }
        expectSound(tree)
    }

    @Test func sameValueInAdjacentEntriesStaysSeparate() throws {
        // Two entries of one extent side by side must not merge into one bigger entry.
        var tree = RadixTree()
        try tree.insert(index: 0, order: 1, value: 7)
        try tree.insert(index: 2, order: 1, value: 7)
        try tree.insert(index: 4, order: 0, value: 7)
        expectSound(tree)
        #expect(sameEntries(tree.entries, [(0, 1, 7), (2, 1, 7), (4, 0, 7)]))
        expectRefused(.notFound(index: 0, order: 2), &tree) { try $0.delete(index: 0, order: 2) }
        #expect(try tree.delete(index: 2, order: 1) == 7)
        expectSound(tree)
        #expect(tree.lookup(1) == 7)
        #expect(tree.lookup(2) == nil)
        #expect(tree.lookup(4) == 7)
    }
}

// MARK: - Multi-order entries

@Suite struct RadixTreeMultiOrderTests {
    /// Aligned indexes for an order-k block: 0, the first few multiples, and one far away.
    private static func indexes(order: Int) -> [UInt64] {
        [0, 1, 3, 65, 1 << 20].compactMap { (m: UInt64) -> UInt64? in
            let index = m << UInt64(order)
            return index >> UInt64(order) == m ? index : nil
        }
    }

    /// One entry alone in the tree, for every order: every index inside it (orders up to
    /// 13) or every level boundary inside it (larger orders), and the indexes just outside.
    /// Lookups are checked first; the structure (invariant, empty after the delete) last,
    /// and a broken structure stops the case so that one bug reports once per order.
    @Test(arguments: 0 ..< 64)
    func singleEntryOfEveryOrder(order: Int) throws {
        let size: UInt64 = 1 << UInt64(order)
        for index in Self.indexes(order: order) {
            let place = "order \(order) at \(index)"
            var tree = RadixTree()
            let value = UInt32(order) + 100
            try tree.insert(index: index, order: order, value: value)
            let structure = tree.invariantViolation()
            #expect(tree.entryCount == 1)
            #expect(sameEntries(tree.entries, [(index, order, value)]), "\(place): \(tree.entries)")
            let last = index + (size - 1)
            var inside: [UInt64] = [index, last, index + size / 2]
            if order <= 13 {
                inside = Array(index ... last)
            } else {
                for bit in 0 ..< order {
                    let step: UInt64 = 1 << UInt64(bit)
                    inside += [index + step, index + step - 1, last - step + 1]
                }
            }
            for i in inside where tree.lookup(i) != value {
                Issue.record("\(place): lookup(\(i)) = \(String(describing: tree.lookup(i)))")
                break
            }
            if index > 0 { #expect(tree.lookup(index - 1) == nil, "\(place): page before") }
            if last < .max { #expect(tree.lookup(last + 1) == nil, "\(place): page after") }
            #expect(try tree.delete(index: index, order: order) == value)
            #expect(tree.lookup(index) == nil && tree.lookup(last) == nil)
            try #require(structure == nil, "\(place): after the insert")
            let leftover = (tree.levels, tree.nodeCount, tree.invariantViolation())
            try #require(leftover == (0, 0, nil), "\(place): after deleting the only entry (levels, nodes, invariant)")
        }
    }

    /// Entries that end exactly where a 64-slot node or a level ends, next to entries
    /// one level up: the sibling run must stop at the node's last slot.
    @Test func entriesMeetingAtNodeAndLevelBoundaries() throws {
        var tree = RadixTree()
        try tree.insert(index: 31, order: 0, value: 1)
        try tree.insert(index: 32, order: 5, value: 2)     // slots 32..63 of the first leaf
        try tree.insert(index: 64, order: 6, value: 3)     // one slot at level 1
        try tree.insert(index: 128, order: 7, value: 4)    // two slots at level 1
        try tree.insert(index: 2048, order: 11, value: 5)  // 32 slots at level 1, up to 4095
        try tree.insert(index: 4096, order: 12, value: 6)  // level 2
        expectSound(tree)
        let expected: [(UInt64, UInt32?)] = [
            (30, nil), (31, 1), (32, 2), (63, 2), (64, 3), (127, 3), (128, 4), (255, 4), (256, nil),
            (2047, nil), (2048, 5), (4095, 5), (4096, 6), (8191, 6), (8192, nil),
        ]
        for (index, value) in expected { #expect(tree.lookup(index) == value, "lookup(\(index))") }
        #expect(sameEntries(tree.entries, [(31, 0, 1), (32, 5, 2), (64, 6, 3), (128, 7, 4), (2048, 11, 5), (4096, 12, 6)]))
        for (index, order, value) in tree.entries {
            #expect(try tree.delete(index: index, order: order) == value)
            expectSound(tree)
        }
        expectEmpty(tree)
    }

    @Test func entriesRoundTrip() throws {
        var tree = RadixTree()
        var inserted: [Entry] = []
        var value: UInt32 = 0
        for (start, count) in [(0, 1), (3, 700), (1000, 24), (4096, 4096), (1 << 30, 1 << 21), ((1 << 40) + 7, 90)] as [(UInt64, UInt64)] {
            for block in PageOrders(start: start, count: count) {
                try tree.insert(index: block.index, order: block.order, value: value)
                inserted.append((block.index, block.order, value))
                value += 1
                expectSound(tree)
            }
        }
        #expect(sameEntries(tree.entries, inserted))
        // A tree rebuilt from `entries`, in reverse order, answers every lookup the same.
        var copy = RadixTree()
        for entry in tree.entries.reversed() { try copy.insert(index: entry.index, order: entry.order, value: entry.value) }
        #expect(sameEntries(copy.entries, inserted))
        for entry in inserted {
            let last = entry.index + (1 << UInt64(entry.order)) - 1
            for i in [entry.index, last, last + 1] { #expect(copy.lookup(i) == tree.lookup(i)) }
        }
    }
}

// MARK: - Refusals

@Suite struct RadixTreeRefusalTests {
    /// A tree holding one order-6 entry at 64 (one slot at level 1; height 2).
    private func treeWithBlockAt64() throws -> RadixTree {
        var tree = RadixTree()
        try tree.insert(index: 0, order: 0, value: 1)
        try tree.insert(index: 64, order: 6, value: 7)
        #expect(tree.levels == 2)
        return tree
    }

    /// Any index of the new block already in use refuses the whole insert (-EEXIST).
    @Test(arguments: [
        (64, 6),   // the same block
        (64, 0),   // its first page
        (127, 0),  // its last page
        (96, 5),   // its upper half
        (64, 3),   // contained
        (0, 7),    // containing: 0..127
        (0, 12),   // containing, at index 0, order larger than the tree's height covers
        (0, 20),
        (0, 63),
        (0, 6),    // the slot at level 1 that holds the leaf with index 0
        (0, 1),    // index 0's own page
    ] as [(UInt64, Int)])
    func overlappingInsertIsOccupied(index: UInt64, order: Int) throws {
        var tree = try treeWithBlockAt64()
        expectRefused(.occupied(index: index, order: order), &tree) { try $0.insert(index: index, order: order, value: 9) }
        expectSound(tree)
    }

    @Test func largeBlockAtIndexZeroOverASmallTree() throws {
        var tree = RadixTree()
        try tree.insert(index: 5, order: 0, value: 1)  // height 1
        for order in [3, 6, 12, 30, 63] {
            expectRefused(.occupied(index: 0, order: order), &tree) { try $0.insert(index: 0, order: order, value: 2) }
        }
        // A block of the same size just above the root's reach is free.
        try tree.insert(index: 1 << 12, order: 12, value: 3)
        expectSound(tree)
        #expect(tree.lookup(5) == 1)
        #expect(tree.lookup(4096) == 3)
        #expect(tree.lookup(8191) == 3)
        #expect(tree.lookup(8192) == nil)
    }

    /// radix_tree_delete of a multi-order entry needs its exact index and order.
    @Test func deleteNeedsTheExactIndexAndOrder() throws {
        var tree = try treeWithBlockAt64()
        let absent: [(UInt64, Int)] = [
            (64, 5),      // a smaller order at the same head
            (64, 0),      // the head's page alone
            (96, 5),      // inside
            (65, 0),      // inside
            (0, 7),       // a larger block that contains it
            (128, 6),     // the next block, empty
            (0, 6),       // the slot holding index 0's leaf
            (0, 3),       // index 0 has order 0
            (1, 0),       // empty page next to index 0
            (1 << 40, 0), // beyond the tree's height
            (0, 63),
        ]
        for (index, order) in absent {
            expectRefused(.notFound(index: index, order: order), &tree) { try $0.delete(index: index, order: order) }
        }
        var empty = RadixTree()
        expectRefused(.notFound(index: 0, order: 0), &empty) { try $0.delete(index: 0, order: 0) }
        expectRefused(.notFound(index: 64, order: 6), &empty) { try $0.delete(index: 64, order: 6) }
    }

    @Test func deleteOfABiggerOrderThanStoredIsNotFound() throws {
        var tree = RadixTree()
        try tree.insert(index: 0, order: 0, value: 1)
        try tree.insert(index: 1, order: 0, value: 1)
        expectRefused(.notFound(index: 0, order: 1), &tree) { try $0.delete(index: 0, order: 1) }
        try tree.insert(index: 8, order: 3, value: 2)
        expectRefused(.notFound(index: 0, order: 4), &tree) { try $0.delete(index: 0, order: 4) }
        expectRefused(.notFound(index: 8, order: 2), &tree) { try $0.delete(index: 8, order: 2) }
        expectRefused(.notFound(index: 12, order: 2), &tree) { try $0.delete(index: 12, order: 2) }
    }
}

// MARK: - Height and nodes

@Suite struct RadixTreeShapeTests {
    /// The tree grows a level whenever an index or order needs it, and shrinks back
    /// (radix_tree_shrink) when the root holds only a child in slot 0.
    @Test func heightGrowsAndShrinks() throws {
        var tree = RadixTree()
        let steps: [(UInt64, Int, Int)] = [  // index, order, levels after the insert
            (0, 0, 1), (64, 0, 2), (4096, 0, 3), (1 << 18, 0, 4), (1 << 40, 0, 7), (1 << 63, 0, 11),
        ]
        for (index, order, levels) in steps {
            try tree.insert(index: index, order: order, value: UInt32(levels))
            expectSound(tree)
            #expect(tree.levels == levels, "after inserting \(index)")
        }
        for (index, order, levels) in steps.reversed() {
            // Deleting the highest index leaves the root with the other levels in slot 0.
            let remaining = steps.last { $0.2 < levels }?.2 ?? 0
            #expect(try tree.delete(index: index, order: order) == UInt32(levels))
            expectSound(tree)
            #expect(tree.levels == remaining, "after deleting \(index)")
            #expect(tree.lookup(index) == nil)
        }
        expectEmpty(tree)
    }

    /// The first entry of an empty tree at a high index (or of a high order) needs
    /// several levels at once: the tree must be built without empty nodes.
    @Test(arguments: [(64, 0), (64, 6), (4096, 0), (4096, 12), (1 << 40, 0), (1 << 40, 40)] as [(UInt64, Int)])
    func firstEntryFarFromIndexZero(index: UInt64, order: Int) throws {
        var tree = RadixTree()
        try tree.insert(index: index, order: order, value: 5)
        expectSound(tree)
        #expect(tree.lookup(index) == 5)
        #expect(tree.lookup(0) == nil)
        // Index 0's block of the same order is free and must be accepted.
        try tree.insert(index: 0, order: order, value: 6)
        expectSound(tree)
        #expect(tree.lookup(0) == 6)
        #expect(tree.lookup(index) == 5)
        try tree.delete(index: 0, order: order)
        try tree.delete(index: index, order: order)
        expectEmpty(tree)
    }

    /// An empty tree given a block of order >= 6 at index 0 must put it in the root's
    /// slot 0; nothing else may sit there, and the delete must empty the tree again.
    @Test(arguments: [6, 7, 12, 40, 63])
    func firstEntryOfAHighOrderAtIndexZero(order: Int) throws {
        var tree = RadixTree()
        try tree.insert(index: 0, order: order, value: 3)
        expectSound(tree)
        #expect(tree.levels == order / 6 + 1)
        #expect(tree.nodeCount == 1)
        #expect(tree.lookup(0) == 3)
        #expect(tree.lookup((1 << UInt64(order)) - 1) == 3)
        #expect(try tree.delete(index: 0, order: order) == 3)
        expectEmpty(tree)
    }

    /// Equality is what callers use to see that a refused call left the tree unchanged;
    /// a tree emptied by deletes must equal a fresh one.
    @Test func emptiedTreeEqualsAFreshTree() throws {
        var tree = RadixTree()
        try tree.insert(index: 0, order: 0, value: 1)
        try tree.insert(index: 64, order: 0, value: 2)  // a new root above the first leaf
        try tree.delete(index: 0, order: 0)
        try tree.delete(index: 64, order: 0)
        #expect(tree.entryCount == 0 && tree.nodeCount == 0 && tree.levels == 0)
        #expect(tree == RadixTree())
    }

    @Test func emptyingTheTreeFreesEveryNode() throws {
        var tree = RadixTree()
        try tree.insert(index: 0, order: 0, value: 1)
        try tree.insert(index: 4095, order: 0, value: 2)
        #expect(tree.levels == 2)
        #expect(tree.nodeCount == 3)  // root + two leaves
        try tree.delete(index: 4095, order: 0)
        expectSound(tree)
        #expect(tree.nodeCount == 1)  // the root shrank onto the remaining leaf
        #expect(tree.levels == 1)
        try tree.delete(index: 0, order: 0)
        expectEmpty(tree)
        #expect(tree == RadixTree(), "an emptied tree equals a fresh one")
    }

    /// A root whose only occupied slot is not slot 0 cannot shrink; that is a valid tree.
    @Test func rootWithASingleChildOutsideSlotZero() throws {
        var tree = RadixTree()
        try tree.insert(index: 0, order: 0, value: 1)
        try tree.insert(index: 320, order: 0, value: 2)  // slot 5 of a height-2 root
        try tree.delete(index: 0, order: 0)
        #expect(tree.levels == 2)
        #expect(tree.nodeCount == 2)
        #expect(tree.invariantViolation() == nil)
        #expect(tree.lookup(320) == 2)
        try tree.delete(index: 320, order: 0)
        expectEmpty(tree)
    }

    @Test func nodesAreReusedAcrossInsertDeleteCycles() throws {
        var tree = RadixTree()
        try tree.insert(index: 0, order: 0, value: 0)
        for round in 0 ..< 50 {
            let index = UInt64(64 * (1 + round % 60))
            try tree.insert(index: index, order: 0, value: 1)
            #expect(tree.nodeCount == 3)
            try tree.delete(index: index, order: 0)
            #expect(tree.nodeCount == 1)
        }
        expectSound(tree)
    }
}

// MARK: - Seeded model-based test


/// The reference: the owner of every page of two zones, one near 0 and one far away
/// (so the tree needs 7 levels), plus the live extents.
private struct PageModel {
    static let zoneSize = 1 << 14
    static let farBase: UInt64 = (1 << 40) - 4096  // straddles a level-6 boundary
    var near = [UInt32?](repeating: nil, count: zoneSize)
    var far = [UInt32?](repeating: nil, count: zoneSize)
    var extents: [UInt32: (start: UInt64, count: UInt64)] = [:]

    func lookup(_ index: UInt64) -> UInt32? {
        if index < UInt64(Self.zoneSize) { return near[Int(index)] }
        if index >= Self.farBase, index - Self.farBase < UInt64(Self.zoneSize) { return far[Int(index - Self.farBase)] }
        return nil
    }

    mutating func set(_ start: UInt64, _ count: UInt64, to value: UInt32?) {
        for i in start ..< start + count {
            if i < UInt64(Self.zoneSize) { near[Int(i)] = value } else { far[Int(i - Self.farBase)] = value }
        }
    }

    func isFree(_ start: UInt64, _ count: UInt64) -> Bool {
        (start ..< start + count).allSatisfy { lookup($0) == nil }
    }

    /// Every block of every live extent, in index order: what `entries` must return.
    var entries: [Entry] {
        extents.flatMap { id, extent in
            PageOrders(start: extent.start, count: extent.count).map { (index: $0.index, order: $0.order, value: id) }
        }.sorted { $0.index < $1.index }
    }
}

@Suite struct RadixTreeModelTests {
    /// Extents decomposed with PageOrders, one entry per block, value = extent id; whole
    /// extents deleted block by block. Lookups are checked at random pages and at every
    /// extent's boundaries: first page, last page, one past the last, one before the first.
    @Test(arguments: [0x5EED_0000_0004, 0xDA11_2016_0608] as [UInt64])
    func extentsAgreeWithAPageModel(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        var model = PageModel()
        var tree = RadixTree()
        var nextID: UInt32 = 0
        var inserted = 0, refused = 0, deleted = 0, invariantProblems = 0
        let tag = "seed \(String(seed, radix: 16))"

        func checkBoundaries(_ start: UInt64, _ count: UInt64, _ context: String) -> Bool {
            var ok = true
            for i in [start &- 1, start, start + 1, start + count / 2, start + count - 1, start + count] {
                let expected = model.lookup(i), actual = tree.lookup(i)
                if actual != expected {
                    Issue.record("\(context): lookup(\(i)) = \(String(describing: actual)), model \(String(describing: expected)); extent [\(start), +\(count))")
                    ok = false
                }
            }
            return ok
        }

        for step in 0 ..< 3_000 {
            let context = "\(tag) step \(step)"
            if model.extents.isEmpty || rng.chance(55) {
                // Insert an extent: mostly free space, sometimes overlapping on purpose.
                let zoneBase: UInt64 = rng.chance(30) ? PageModel.farBase : 0
                let count = UInt64(rng.chance(10) ? 1 + rng.below(4096) : 1 + rng.below(400))
                var offset = UInt64(rng.below(PageModel.zoneSize - Int(count) + 1))
                if rng.chance(15) { offset &= rng.chance(50) ? ~4095 : ~63 }  // node-aligned starts, index 0 included
                let start = zoneBase + offset
                let id = nextID
                nextID += 1
                let blocks = Array(PageOrders(start: start, count: count))
                if model.isFree(start, count) {
                    for block in blocks {
                        do {
                            try tree.insert(index: block.index, order: block.order, value: id)
                        } catch {
                            Issue.record("\(context): insert \(block) of free extent [\(start), +\(count)) threw \(error)")
                            return
                        }
                    }
                    model.extents[id] = (start, count)
                    model.set(start, count, to: id)
                    inserted += 1
                } else {
                    // Each block is refused exactly when one of its pages is taken; try
                    // them on a copy and drop it, the extent is not provisioned.
                    var trial = tree
                    for block in blocks {
                        let before = trial
                        let taken = !model.isFree(block.index, block.pageCount)
                        do {
                            try trial.insert(index: block.index, order: block.order, value: id)
                            #expect(!taken, "\(context): insert \(block) over used pages succeeded")
                        } catch {
                            #expect(taken && error == .occupied(index: block.index, order: block.order), "\(context): insert \(block): \(error)")
                            #expect(trial == before, "\(context): refused insert \(block) changed the tree")
                        }
                    }
                    refused += 1
                }
                if !checkBoundaries(start, count, context + " after insert") { return }
            } else {
                // Delete a whole extent, block by block; now and then first try a wrong order.
                let ids = model.extents.keys.sorted()
                let id = ids[rng.below(ids.count)]
                let extent = model.extents[id]!
                for block in PageOrders(start: extent.start, count: extent.count) {
                    if rng.chance(5) {
                        let wrong = block.order + (rng.chance(50) ? 1 : -1)
                        let aligned = wrong >= 0 && block.index % (UInt64(1) << UInt64(wrong)) == 0
                        let expected: RadixTreeError = aligned ? .notFound(index: block.index, order: wrong) : .misaligned(index: block.index, order: wrong)
                        let before = tree
                        #expect(throws: expected, "\(context)") { try tree.delete(index: block.index, order: wrong) }
                        #expect(tree == before, "\(context): refused delete changed the tree")
                    }
                    do {
                        let value = try tree.delete(index: block.index, order: block.order)
                        #expect(value == id, "\(context): delete \(block) returned \(value), extent \(id)")
                    } catch {
                        Issue.record("\(context): delete \(block) of extent \(id) [\(extent.start), +\(extent.count)) threw \(error)")
                        return
                    }
                }
                model.extents[id] = nil
                model.set(extent.start, extent.count, to: nil)
                deleted += 1
                if !checkBoundaries(extent.start, extent.count, context + " after delete") { return }
            }

            // Random pages, and the boundaries of a few live extents.
            for _ in 0 ..< 8 {
                let i = (rng.chance(30) ? PageModel.farBase : 0) + UInt64(rng.below(PageModel.zoneSize + 64))
                if tree.lookup(i) != model.lookup(i) {
                    Issue.record("\(context): lookup(\(i)) = \(String(describing: tree.lookup(i))), model \(String(describing: model.lookup(i)))")
                    return
                }
            }
            let ids = model.extents.keys.sorted()
            for _ in 0 ..< min(3, ids.count) {
                let extent = model.extents[ids[rng.below(ids.count)]]!
                if !checkBoundaries(extent.start, extent.count, context) { return }
            }

            // A structural problem is reported once; the lookups go on being checked.
            if invariantProblems == 0, let problem = tree.invariantViolation() {
                Issue.record("\(context): \(problem)")
            }
            if tree.invariantViolation() != nil { invariantProblems += 1 }
            #expect(tree.entryCount == model.extents.values.reduce(0) { $0 + Array(PageOrders(start: $1.start, count: $1.count)).count })

            if step % 250 == 249 {
                // Full sweep of both zones, and entries against the model's blocks.
                for i in 0 ..< UInt64(PageModel.zoneSize) where tree.lookup(i) != model.lookup(i) || tree.lookup(PageModel.farBase + i) != model.lookup(PageModel.farBase + i) {
                    Issue.record("\(context): sweep disagrees at page \(i) of a zone")
                    return
                }
                #expect(sameEntries(tree.entries, model.entries), "\(context): entries")
            }
        }

        // Tear everything down: the tree must end empty.
        for (id, extent) in model.extents {
            for block in PageOrders(start: extent.start, count: extent.count) {
                #expect(try tree.delete(index: block.index, order: block.order) == id, "\(tag): teardown")
            }
        }
        expectEmpty(tree)
        #expect(invariantProblems == 0, "\(tag): invariantViolation() after \(invariantProblems) steps")
        #expect(inserted > 300 && refused > 100 && deleted > 300, "\(tag): \(inserted) inserted, \(refused) refused, \(deleted) deleted")
    }
}
