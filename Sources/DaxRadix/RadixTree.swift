// A multi-order radix tree, as the seed uses the kernel's (RADIX_TREE_MULTIORDER) to map
// a device page offset to the resource that backs it. Keys are page indexes (for DaxHeap:
// arena page offsets in 2 MiB units), values are small integers (an extent's position).
//
// Each node has 64 slots (the kernel's RADIX_TREE_MAP_SHIFT of 6). An entry of order k
// lives at level k / 6 and fills 2^(k mod 6) consecutive slots there: the first slot is
// the head, the others are siblings (the kernel's sibling entries). A lookup walks one
// slot per level from the root: O(height), never a scan over extents.

/// Why a radix-tree operation was refused. The tree is unchanged after any of them.
public enum RadixTreeError: Error, Equatable, Sendable {
    /// `index` is not a multiple of `1 << order`, or the order is out of range.
    case misaligned(index: UInt64, order: Int)
    /// Some index in the block already has an entry.
    case occupied(index: UInt64, order: Int)
    /// No entry of exactly this index and order.
    case notFound(index: UInt64, order: Int)
    /// The value does not fit in a slot (it must be below `RadixTree.maxValue`).
    case valueTooLarge(UInt32)
}

/// A multi-order radix tree from page index to a 30-bit value.
public struct RadixTree: Sendable, Equatable {
    /// Bits of the key consumed per level.
    public static let shift = 6
    /// Slots per node.
    public static let fanout = 1 << shift
    /// Values must be below this.
    public static let maxValue: UInt32 = 1 << 30

    // Slot encoding, in one flat array of `fanout` slots per node:
    //   0              empty
    //   (n + 1) << 2   child node n
    //   v << 2 | 1     head of an entry with value v
    //   v << 2 | 3     sibling slot of the entry whose head is to its left
    @usableFromInline var slots: [UInt32] = []
    /// Non-empty slots per node, to free a node as soon as it empties.
    var occupancy: [Int] = []
    var freeNodes: [Int] = []
    @usableFromInline var rootNode: Int = 0
    /// Levels of nodes; 0 for an empty tree. The root covers indexes below 64^height.
    @usableFromInline var height: Int = 0
    /// Number of entries (blocks) stored.
    public private(set) var entryCount: Int = 0

    public init() {}

    /// Two trees are equal when they hold the same entries, however their nodes are laid out.
    public static func == (a: RadixTree, b: RadixTree) -> Bool {
        guard a.entryCount == b.entryCount else { return false }
        let x = a.entries
        let y = b.entries
        return x.count == y.count && zip(x, y).allSatisfy { $0.index == $1.index && $0.order == $1.order && $0.value == $1.value }
    }

    /// The value stored for `index`, or nil.
    @inlinable
    public func lookup(_ index: UInt64) -> UInt32? {
        let height = self.height
        guard height > 0, Self.covers(index, height: height) else { return nil }
        return slots.withUnsafeBufferPointer { slots -> UInt32? in
            var node = rootNode
            var shift = UInt64(Self.shift * (height - 1))
            while true {
                let slot = slots[node &* Self.fanout &+ Int(truncatingIfNeeded: (index &>> shift) & 63)]
                if slot & 1 != 0 { return slot &>> 2 }
                if slot == 0 { return nil }
                node = Int(slot &>> 2) &- 1
                shift &-= UInt64(Self.shift)
            }
        }
    }

    /// Stores `value` for the `1 << order` indexes starting at `index`, which must be a
    /// multiple of `1 << order` and all free.
    public mutating func insert(index: UInt64, order: Int, value: UInt32) throws(RadixTreeError) {
        guard order >= 0, order < 64, index & ((1 << UInt64(order)) - 1) == 0 else {
            throw .misaligned(index: index, order: order)
        }
        guard value < Self.maxValue else { throw .valueTooLarge(value) }
        let level = order / Self.shift
        let span = 1 << (order - level * Self.shift)
        if try !isFree(index: index, order: order, level: level, span: span) {
            throw .occupied(index: index, order: order)
        }
        while height == 0 || level >= height || !Self.covers(index, height: height) {
            growHeight()
        }
        var node = rootNode
        var current = height - 1
        while current > level {
            let s = node * Self.fanout + slotIndex(index, level: current)
            if slots[s] == 0 {
                let child = allocateNode()
                slots[s] = UInt32(child + 1) << 2
                occupancy[node] += 1
            }
            node = Int(slots[s] >> 2) - 1
            current -= 1
        }
        let first = node * Self.fanout + slotIndex(index, level: level)
        slots[first] = value << 2 | 1
        for s in first + 1 ..< first + span { slots[s] = value << 2 | 3 }
        occupancy[node] += span
        entryCount += 1
    }

    /// Removes the entry stored at exactly `index` with exactly `order`.
    /// Returns its value.
    @discardableResult
    public mutating func delete(index: UInt64, order: Int) throws(RadixTreeError) -> UInt32 {
        guard order >= 0, order < 64, index & ((1 << UInt64(order)) - 1) == 0 else {
            throw .misaligned(index: index, order: order)
        }
        let level = order / Self.shift
        let span = 1 << (order - level * Self.shift)
        guard height > level, Self.covers(index, height: height) else {
            throw .notFound(index: index, order: order)
        }
        var path: [(node: Int, slot: Int)] = []
        var node = rootNode
        var current = height - 1
        while current > level {
            let s = node * Self.fanout + slotIndex(index, level: current)
            let slot = slots[s]
            guard slot != 0, slot & 1 == 0 else { throw .notFound(index: index, order: order) }
            path.append((node, s))
            node = Int(slot >> 2) - 1
            current -= 1
        }
        let first = node * Self.fanout + slotIndex(index, level: level)
        let head = slots[first]
        guard head & 3 == 1 else { throw .notFound(index: index, order: order) }
        for s in first + 1 ..< first + span where slots[s] != head | 2 {
            throw .notFound(index: index, order: order)
        }
        let end = first + span
        if end % Self.fanout != 0, slots[end] == head | 2 {
            throw .notFound(index: index, order: order)  // the entry is larger than `order`
        }
        for s in first ..< end { slots[s] = 0 }
        occupancy[node] -= span
        entryCount -= 1
        // Free nodes that emptied, bottom up.
        while occupancy[node] == 0, let (parent, s) = path.popLast() {
            freeNode(node)
            slots[s] = 0
            occupancy[parent] -= 1
            node = parent
        }
        if occupancy[rootNode] == 0 {
            freeNode(rootNode)
            rootNode = 0
            height = 0
        }
        shrinkHeight()
        return head >> 2
    }

    /// Every entry as (index, order, value), in index order.
    public var entries: [(index: UInt64, order: Int, value: UInt32)] {
        var result: [(index: UInt64, order: Int, value: UInt32)] = []
        if height > 0 { collect(node: rootNode, level: height - 1, base: 0, into: &result) }
        return result
    }

    /// Number of nodes in use (memory footprint is 256 bytes per node).
    public var nodeCount: Int { occupancy.count - freeNodes.count }

    /// Tree height in levels (0 when empty).
    public var levels: Int { height }

    /// Checks the structure: occupancy counts, no empty node, every sibling after a head of
    /// the same value, every entry aligned to its order. Returns the first violation.
    public func invariantViolation() -> String? {
        guard height > 0 else { return entryCount == 0 ? nil : "empty tree with \(entryCount) entries" }
        var seenNodes = 0
        var count = 0
        if let problem = check(node: rootNode, level: height - 1, nodes: &seenNodes, entries: &count) {
            return problem
        }
        if seenNodes != nodeCount { return "\(nodeCount) nodes in use but \(seenNodes) reachable" }
        if count != entryCount { return "entryCount \(entryCount) but \(count) entries found" }
        if height > 1, occupancy[rootNode] == 1, slots[rootNode * Self.fanout] != 0, slots[rootNode * Self.fanout] & 3 == 0 {
            return "root has a single child in slot 0: the tree should have been shrunk"
        }
        return nil
    }

    // MARK: - Internals

    @usableFromInline
    static func covers(_ index: UInt64, height: Int) -> Bool {
        let bits = shift * height
        return bits >= 64 || index >> UInt64(bits) == 0
    }

    func slotIndex(_ index: UInt64, level: Int) -> Int {
        Int((index >> UInt64(Self.shift * level)) & UInt64(Self.fanout - 1))
    }

    /// Whether the block is free, judged before any node is created.
    func isFree(index: UInt64, order: Int, level: Int, span: Int) throws(RadixTreeError) -> Bool {
        guard height > 0 else { return true }
        if level >= height {
            // The block is at least as large as everything the root covers, and aligned:
            // it either contains all of it (index 0) or none of it.
            return index != 0 || entryCount == 0
        }
        guard Self.covers(index, height: height) else { return true }
        var node = rootNode
        var current = height - 1
        while current > level {
            let slot = slots[node * Self.fanout + slotIndex(index, level: current)]
            if slot == 0 { return true }
            if slot & 1 != 0 { return false }
            node = Int(slot >> 2) - 1
            current -= 1
        }
        let first = node * Self.fanout + slotIndex(index, level: level)
        return slots[first ..< first + span].allSatisfy { $0 == 0 }
    }

    mutating func allocateNode() -> Int {
        if let node = freeNodes.popLast() {
            return node
        }
        slots.append(contentsOf: repeatElement(0, count: Self.fanout))
        occupancy.append(0)
        return occupancy.count - 1
    }

    mutating func freeNode(_ node: Int) {
        for s in node * Self.fanout ..< (node + 1) * Self.fanout { slots[s] = 0 }
        occupancy[node] = 0
        freeNodes.append(node)
        if freeNodes.count == occupancy.count {  // all free: drop the storage
            slots = []
            occupancy = []
            freeNodes = []
        }
    }

    mutating func growHeight() {
        if height == 0 {
            rootNode = allocateNode()
            height = 1
            return
        }
        if occupancy[rootNode] == 0 {
            height += 1  // an empty root serves at any level; never link an empty node
            return
        }
        let newRoot = allocateNode()
        slots[newRoot * Self.fanout] = UInt32(rootNode + 1) << 2
        occupancy[newRoot] = 1
        rootNode = newRoot
        height += 1
    }

    /// Drops root levels that hold only a child in slot 0 (radix_tree_shrink).
    mutating func shrinkHeight() {
        while height > 1, occupancy[rootNode] == 1 {
            let slot = slots[rootNode * Self.fanout]
            guard slot != 0, slot & 3 == 0 else { return }
            let old = rootNode
            rootNode = Int(slot >> 2) - 1
            height -= 1
            freeNode(old)
        }
    }

    func collect(
        node: Int, level: Int, base: UInt64,
        into result: inout [(index: UInt64, order: Int, value: UInt32)]
    ) {
        var s = 0
        while s < Self.fanout {
            let slot = slots[node * Self.fanout + s]
            let index = base | UInt64(s) << UInt64(Self.shift * level)
            if slot == 0 {
                s += 1
            } else if slot & 1 == 0 {
                collect(node: Int(slot >> 2) - 1, level: level - 1, base: index, into: &result)
                s += 1
            } else {
                var span = 1
                while s + span < Self.fanout, slots[node * Self.fanout + s + span] == slot | 2 { span += 1 }
                result.append((index, level * Self.shift + span.trailingZeroBitCount, slot >> 2))
                s += span
            }
        }
    }

    func check(node: Int, level: Int, nodes: inout Int, entries: inout Int) -> String? {
        nodes += 1
        var used = 0
        var s = 0
        while s < Self.fanout {
            let slot = slots[node * Self.fanout + s]
            if slot == 0 {
                s += 1
                continue
            }
            if slot & 3 == 3 { return "node \(node) slot \(s): sibling without a head" }
            if slot & 3 == 2 { return "node \(node) slot \(s): bad tag" }
            if slot & 1 == 0 {
                if level == 0 { return "node \(node) slot \(s): child pointer at the leaf level" }
                let child = Int(slot >> 2) - 1
                if child >= occupancy.count || occupancy[child] == 0 {
                    return "node \(node) slot \(s): points at empty or missing node \(child)"
                }
                if let problem = check(node: child, level: level - 1, nodes: &nodes, entries: &entries) {
                    return problem
                }
                used += 1
                s += 1
                continue
            }
            var span = 1
            while s + span < Self.fanout, slots[node * Self.fanout + s + span] == slot | 2 { span += 1 }
            if span & (span - 1) != 0 { return "node \(node) slot \(s): entry spans \(span) slots, not a power of two" }
            if s % span != 0 { return "node \(node) slot \(s): entry of \(span) slots not aligned to its order" }
            entries += 1
            used += span
            s += span
        }
        if used != occupancy[node] { return "node \(node): occupancy \(occupancy[node]) but \(used) slots used" }
        if used == 0 { return "node \(node) is empty but still linked" }
        return nil
    }
}
