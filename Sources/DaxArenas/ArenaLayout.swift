import DaxMetadata
import DaxRadix

/// One arena's extents and the radix tree that translates its offsets.
///
/// The tree is keyed by arena page offset in 2 MiB units; each extent is inserted as the
/// power-of-two, naturally aligned blocks of ``PageOrders`` with the extent's position in
/// ``extents`` as value, so a translation costs O(tree height) whatever the extent count.
public struct ArenaLayout: Hashable, Sendable {
    public let id: UInt64
    public let name: String
    /// Ordered by arena offset; arena offsets are contiguous from 0.
    public internal(set) var extents: [ExtentRecord]
    public internal(set) var radix: RadixTree
    /// Sum of the extents' lengths.
    public internal(set) var size: UInt64

    /// Page size of the radix keys: the heap's 2 MiB granularity.
    public static let pageShift: UInt64 = 21

    init(id: UInt64, name: String) {
        self.id = id
        self.name = name
        self.extents = []
        self.radix = RadixTree()
        self.size = 0
    }

    public static func == (a: ArenaLayout, b: ArenaLayout) -> Bool {
        a.id == b.id && a.name == b.name && a.extents == b.extents && a.size == b.size
    }
    public func hash(into hasher: inout Hasher) {
        hasher.combine(id)
        hasher.combine(extents)
    }

    /// The position in ``extents`` of the extent holding arena byte `offset`, found
    /// through the radix tree; nil past the end.
    @inlinable
    public func extentIndex(containing offset: UInt64) -> Int? {
        guard offset < size else { return nil }
        // Most arenas are one extent: no tree walk for them.
        if extents.count == 1 { return 0 }
        guard let value = radix.lookup(offset >> Self.pageShift) else { return nil }
        return Int(value)
    }

    /// The same answer by binary search over ``extents`` (a reference for tests and benchmarks).
    public func extentIndexByBinarySearch(containing offset: UInt64) -> Int? {
        guard offset < size else { return nil }
        var low = 0
        var high = extents.count - 1
        while low < high {
            let mid = (low + high + 1) / 2
            if extents[mid].arenaOffset <= offset { low = mid } else { high = mid - 1 }
        }
        return low
    }

    /// The device offset of arena byte `offset`, and how many bytes from there on stay in
    /// the same extent; nil past the end.
    @inlinable
    public func translate(_ offset: UInt64) -> (deviceOffset: UInt64, contiguous: UInt64)? {
        guard let i = extentIndex(containing: offset) else { return nil }
        let extent = extents[i]
        let within = offset - extent.arenaOffset
        return (extent.deviceOffset + within, extent.length - within)
    }

    /// The device ranges holding arena bytes `[offset, offset + count)`, one per extent
    /// crossed, in arena order; nil if any byte is past the end.
    public func pieces(offset: UInt64, count: UInt64) -> [(arenaOffset: UInt64, deviceOffset: UInt64, length: UInt64)]? {
        guard offset <= size, count <= size - offset else { return nil }
        var result: [(arenaOffset: UInt64, deviceOffset: UInt64, length: UInt64)] = []
        var at = offset
        var left = count
        while left > 0 {
            guard let (device, contiguous) = translate(at) else { return nil }
            let n = min(left, contiguous)
            result.append((at, device, n))
            at += n
            left -= n
        }
        return result
    }

    // MARK: Keeping the tree in step (the seed's delete-and-reinsert)

    mutating func insertBlocks(of index: Int) {
        let extent = extents[index]
        for block in PageOrders(start: extent.arenaOffset >> Self.pageShift, count: extent.length >> Self.pageShift) {
            do {
                try radix.insert(index: block.index, order: block.order, value: UInt32(index))
            } catch {
                preconditionFailure("radix tree out of step with the extents of \(name): \(error)")
            }
        }
    }

    mutating func deleteBlocks(of index: Int) {
        let extent = extents[index]
        for block in PageOrders(start: extent.arenaOffset >> Self.pageShift, count: extent.length >> Self.pageShift) {
            do {
                try radix.delete(index: block.index, order: block.order)
            } catch {
                preconditionFailure("radix tree out of step with the extents of \(name): \(error)")
            }
        }
    }
}
