// The seed's foreach_order_pgoff / order_at: cover a run of pages with power-of-two,
// naturally aligned blocks, largest first where alignment allows.
//
// The seed as posted computed order_at with the HIGHEST set bit of
// `nr_pages | dev_pgoff`, which can yield a block that is not aligned to its order
// (pgoff 512 with 1024 pages gave order 10 at index 512). This is the version merged
// later (kernel/memremap.c): the LOWEST set bit of `pgoff | rounddown_pow_of_two(remaining)`.

/// One block of a decomposition: `1 << order` pages starting at `index`, with
/// `index` a multiple of `1 << order`.
public struct PageBlock: Hashable, Sendable {
    public var index: UInt64
    public var order: Int

    public init(index: UInt64, order: Int) {
        self.index = index
        self.order = order
    }

    public var pageCount: UInt64 { 1 << UInt64(order) }
}

/// The order of the block that starts `offset` pages into a run of `count` pages
/// beginning at page `start`, or nil once the run is covered (order_at).
@inlinable
public func orderAt(start: UInt64, count: UInt64, offset: UInt64) -> Int? {
    guard offset < count else { return nil }
    let remaining = count - offset
    let largestFitting: UInt64 = 1 << UInt64(63 - remaining.leadingZeroBitCount)  // rounddown_pow_of_two
    return ((start + offset) | largestFitting).trailingZeroBitCount
}

/// The blocks covering pages `[start, start + count)`, in ascending order
/// (foreach_order_pgoff).
public struct PageOrders: Sequence, Sendable {
    public let start: UInt64
    public let count: UInt64

    public init(start: UInt64, count: UInt64) {
        self.start = start
        self.count = count
    }

    public struct Iterator: IteratorProtocol {
        let start: UInt64
        let count: UInt64
        var offset: UInt64 = 0

        public mutating func next() -> PageBlock? {
            guard let order = orderAt(start: start, count: count, offset: offset) else { return nil }
            defer { offset += 1 << UInt64(order) }
            return PageBlock(index: start + offset, order: order)
        }
    }

    public func makeIterator() -> Iterator { Iterator(start: start, count: count) }
}
