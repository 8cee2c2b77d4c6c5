// The seed's foreach_order_pgoff / order_at: a run of pages covered by power-of-two,
// naturally aligned blocks, largest first where alignment allows. Every block is later
// inserted into the multi-order radix tree, which refuses a block that is not aligned to
// its order, so alignment is the property that matters.

import DaxRadix
import Testing

/// What is wrong with `blocks` as the decomposition of pages `[start, start + count)`,
/// or nil: blocks must be ascending, contiguous (hence disjoint), cover exactly the run,
/// be aligned to their order, and each be the largest aligned block that still fits.
func decompositionViolation(_ blocks: [PageBlock], start: UInt64, count: UInt64) -> String? {
    var cursor = start
    let end = start + count
    for (i, block) in blocks.enumerated() {
        guard block.order >= 0, block.order < 64 else { return "block \(i) has order \(block.order)" }
        if block.index != cursor { return "block \(i) starts at \(block.index), expected \(cursor) (gap or overlap)" }
        if block.index % block.pageCount != 0 {
            return "block \(i): order \(block.order) at index \(block.index) is not aligned to its order"
        }
        if block.pageCount > end - block.index { return "block \(i) runs past the end \(end)" }
        let larger = block.pageCount << 1
        if block.order < 63, block.index % larger == 0, larger <= end - block.index {
            return "block \(i): order \(block.order) at \(block.index) is not maximal, order \(block.order + 1) fits"
        }
        cursor = block.index + block.pageCount
    }
    return cursor == end ? nil : "the blocks end at \(cursor), not at \(end)"
}

// MARK: - The posted seed, kept here to show the invariant catches its bug

private func ilog2(_ x: UInt64) -> Int { 63 - x.leadingZeroBitCount }

/// order_at as posted in [PATCH 4/8] and [PATCH 6/8] (2016): the HIGHEST set bit,
/// `min(ilog2(nr_pages | dev_pgoff), ilog2(nr_pages - pgoff))`, dev_pgoff = start + pgoff.
/// Not aligned in general; see kernel-dax.md §1, bug 1.
func seedPostedOrderAt(start: UInt64, count: UInt64, offset: UInt64) -> Int? {
    if count == offset { return nil }  // UINT_MAX ends foreach_order_pgoff
    let orderPgoff = ilog2(count | (start + offset))
    let orderMax = ilog2(count - offset)
    return min(orderMax, orderPgoff)
}

/// foreach_order_pgoff driven by the posted order_at.
func seedPostedBlocks(start: UInt64, count: UInt64) -> [PageBlock] {
    var blocks: [PageBlock] = []
    var offset: UInt64 = 0
    while let order = seedPostedOrderAt(start: start, count: count, offset: offset) {
        blocks.append(PageBlock(index: start + offset, order: order))
        offset += 1 << UInt64(order)
    }
    return blocks
}

@Suite struct PageOrdersTests {
    @Test func alignedRunIsOneBlock() {
        #expect(Array(PageOrders(start: 0, count: 1024)) == [PageBlock(index: 0, order: 10)])
        #expect(Array(PageOrders(start: 1 << 40, count: 1 << 20)) == [PageBlock(index: 1 << 40, order: 20)])
    }

    @Test func emptyRunHasNoBlocks() {
        #expect(Array(PageOrders(start: 0, count: 0)).isEmpty)
        #expect(Array(PageOrders(start: 77, count: 0)).isEmpty)
        #expect(orderAt(start: 5, count: 3, offset: 3) == nil)
    }

    /// kernel-dax.md §1 bug 1: pgoff 512 with 1024 pages. The merged order_at (lowest set
    /// bit of `pgoff | rounddown_pow_of_two(remaining)`) gives two aligned order-9 blocks.
    @Test func pgoff512With1024PagesIsTwoOrder9Blocks() {
        let blocks = Array(PageOrders(start: 512, count: 1024))
        #expect(blocks == [PageBlock(index: 512, order: 9), PageBlock(index: 1024, order: 9)])
        #expect(decompositionViolation(blocks, start: 512, count: 1024) == nil)
        #expect(orderAt(start: 512, count: 1024, offset: 0) == 9)
        #expect(orderAt(start: 512, count: 1024, offset: 512) == 9)
        #expect(orderAt(start: 512, count: 1024, offset: 1024) == nil)
    }

    @Test func knownDecompositions() {
        func blocks(_ start: UInt64, _ count: UInt64) -> [[UInt64]] {
            PageOrders(start: start, count: count).map { [$0.index, UInt64($0.order)] }
        }
        #expect(blocks(1, 7) == [[1, 0], [2, 1], [4, 2]])
        #expect(blocks(3, 10) == [[3, 0], [4, 2], [8, 2], [12, 0]])
        #expect(blocks(0, 300) == [[0, 8], [256, 5], [288, 3], [296, 2]])
        #expect(blocks(1, 1) == [[1, 0]])
        #expect(blocks(63, 3) == [[63, 0], [64, 1]])  // across a 64-slot node boundary
        #expect(blocks(4032, 128) == [[4032, 6], [4096, 6]])
        // Typed constants: shifts inside the macros' literals took seconds to type-check.
        let tera: UInt64 = 1 << 40, half: UInt64 = 1 << 63, quarter: UInt64 = 1 << 62
        #expect(blocks(tera - 1, 2) == [[tera - 1, 0], [tera, 0]])
        #expect(blocks(0, half) == [[0, 63]])
        #expect(blocks(half, quarter) == [[half, 62]])
    }

    @Test func pageBlockCountsPages() {
        #expect(PageBlock(index: 0, order: 0).pageCount == 1)
        #expect(PageBlock(index: 0, order: 13).pageCount == 8192)
        #expect(PageBlock(index: 0, order: 63).pageCount == 1 << 63)
    }

    /// Every start in 0..<300 and count in 1..<300: disjoint, exact cover, aligned, maximal.
    @Test func exhaustiveSmallRunsAreAlignedMaximalCovers() {
        var failures = 0
        for start: UInt64 in 0 ..< 300 {
            for count: UInt64 in 1 ..< 300 {
                let blocks = Array(PageOrders(start: start, count: count))
                var problem = decompositionViolation(blocks, start: start, count: count)
                // orderAt agrees with the iterator at every block start.
                if problem == nil {
                    for block in blocks where orderAt(start: start, count: count, offset: block.index - start) != block.order {
                        problem = "orderAt disagrees with the iterator at \(block.index)"
                    }
                }
                if let problem {
                    failures += 1
                    if failures <= 5 { Issue.record("start \(start) count \(count): \(problem): \(blocks)") }
                }
            }
        }
        #expect(failures == 0)
    }

    @Test func largeStartsDoNotOverflow() {
        for (start, count) in [(UInt64.max - 5, UInt64(5)), ((1 << 63) + 3, 1 << 20), (1 << 62, (1 << 62) + 1)] {
            let blocks = Array(PageOrders(start: start, count: count))
            #expect(decompositionViolation(blocks, start: start, count: count) == nil, "start \(start) count \(count)")
        }
    }

    // MARK: The invariant catches the posted seed's bug

    @Test func seedPostedOrderAtIsMisalignedAt512() {
        let posted = seedPostedBlocks(start: 512, count: 1024)
        #expect(posted == [PageBlock(index: 512, order: 10)])
        let problem = decompositionViolation(posted, start: 512, count: 1024)
        #expect(problem?.contains("not aligned") == true, "the alignment check must flag the posted order_at: \(problem ?? "nil")")
    }

    /// The posted order_at always covers the run exactly (its order never exceeds the
    /// remaining pages), so only the alignment rule tells it apart from the merged one.
    @Test func seedPostedOrderAtIsFlaggedOnlyForAlignment() {
        var misaligned = 0
        for start: UInt64 in 0 ..< 300 {
            for count: UInt64 in 1 ..< 300 {
                let posted = seedPostedBlocks(start: start, count: count)
                let total = posted.reduce(0) { $0 + $1.pageCount }
                #expect(total == count && posted.first?.index == start, "start \(start) count \(count)")
                if posted.contains(where: { $0.index % $0.pageCount != 0 }) {
                    misaligned += 1
                    #expect(decompositionViolation(posted, start: start, count: count) != nil)
                }
            }
        }
        #expect(misaligned > 1_000, "the posted order_at is misaligned in \(misaligned) of 89,700 runs")
    }
}
