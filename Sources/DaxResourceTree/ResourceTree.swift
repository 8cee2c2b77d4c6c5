// The kernel's resource tree (kernel/resource.c) reduced to what device-dax sub-division
// uses: one root region and a flat, start-ordered list of child resources.
// `request` is __request_region, `adjust` is adjust_resource, `release` is
// __release_region and `availableSize` is the seed's dax_region_avail_size.

/// A child of the root region: one extent of one arena.
///
/// Offsets are device byte offsets; `end` is exclusive. `owner` names the arena the
/// extent belongs to (the kernel names the resource after its device), and `pageOffset`
/// is the extent's byte offset inside that arena (the seed keeps it in `res->desc`).
public struct Resource: Hashable, Sendable, CustomStringConvertible {
    public var start: UInt64
    public var size: UInt64
    public var owner: UInt64
    public var pageOffset: UInt64

    public init(start: UInt64, size: UInt64, owner: UInt64, pageOffset: UInt64) {
        self.start = start
        self.size = size
        self.owner = owner
        self.pageOffset = pageOffset
    }

    /// One past the last byte.
    public var end: UInt64 { start + size }

    public var description: String {
        "[\(hex(start))-\(hex(end)) owner \(owner) pgoff \(hex(pageOffset))]"
    }
}

/// Why a resource-tree operation was refused. The tree is unchanged after any of them.
public enum ResourceTreeError: Error, Equatable, Sendable {
    /// The range is empty, wraps around, or leaves the root region.
    case outOfBounds(start: UInt64, size: UInt64)
    /// The range overlaps an existing child.
    case overlap(Resource)
    /// No child starts at this offset (or it does not have this size).
    case notFound(start: UInt64)
}

/// A root region and its disjoint children, kept ordered by start.
///
/// A value type: callers stage a whole multi-step change on a copy and keep the copy
/// only when every step (and the metadata write) succeeded.
public struct ResourceTree: Hashable, Sendable {
    /// First byte of the root region.
    public let start: UInt64
    /// Size of the root region in bytes.
    public let size: UInt64
    /// The children, ordered by start, pairwise disjoint, inside the root.
    public private(set) var children: [Resource] = []
    /// Sum of the children's sizes, kept so that `availableSize` is O(1).
    public private(set) var allocatedSize: UInt64 = 0

    public init(start: UInt64, size: UInt64) {
        precondition(size <= UInt64.max - start, "root region wraps around")
        self.start = start
        self.size = size
    }

    /// One past the last byte of the root region.
    public var end: UInt64 { start + size }

    /// Region size minus the sum of the children (dax_region_avail_size).
    public var availableSize: UInt64 { size - allocatedSize }

    /// The index of the first child whose start is >= `offset` (binary search).
    public func firstIndex(startingAtOrAfter offset: UInt64) -> Int {
        var low = 0
        var high = children.count
        while low < high {
            let mid = (low + high) / 2
            if children[mid].start < offset { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// The index of the child that starts exactly at `start`, if any.
    public func index(ofChildAt start: UInt64) -> Int? {
        let i = firstIndex(startingAtOrAfter: start)
        return i < children.count && children[i].start == start ? i : nil
    }

    /// Claims `[start, start+size)` as a new child (__request_region): fails on any overlap.
    @discardableResult
    public mutating func request(
        start: UInt64, size: UInt64, owner: UInt64, pageOffset: UInt64
    ) throws(ResourceTreeError) -> Resource {
        guard size > 0, start >= self.start, start < end, size <= end - start else {
            throw .outOfBounds(start: start, size: size)
        }
        let i = firstIndex(startingAtOrAfter: start)
        if i > 0, children[i - 1].end > start { throw .overlap(children[i - 1]) }
        if i < children.count, children[i].start < start + size { throw .overlap(children[i]) }
        let resource = Resource(start: start, size: size, owner: owner, pageOffset: pageOffset)
        children.insert(resource, at: i)
        allocatedSize += size
        return resource
    }

    /// Changes the size of the child starting at `start`, keeping its start
    /// (adjust_resource with an unchanged start): growing succeeds only when the
    /// following neighbour (or the end of the root) leaves room.
    @discardableResult
    public mutating func adjust(start: UInt64, newSize: UInt64) throws(ResourceTreeError) -> Resource {
        guard let i = index(ofChildAt: start) else { throw .notFound(start: start) }
        let limit = i + 1 < children.count ? children[i + 1].start : end
        guard newSize > 0, newSize <= limit - start else {
            if newSize > 0, i + 1 < children.count { throw .overlap(children[i + 1]) }
            throw .outOfBounds(start: start, size: newSize)
        }
        allocatedSize = allocatedSize - children[i].size + newSize
        children[i].size = newSize
        return children[i]
    }

    /// Removes the child `[start, start+size)` (__release_region): it must match exactly.
    @discardableResult
    public mutating func release(start: UInt64, size: UInt64) throws(ResourceTreeError) -> Resource {
        guard let i = index(ofChildAt: start), children[i].size == size else {
            throw .notFound(start: start)
        }
        allocatedSize -= size
        return children.remove(at: i)
    }

    /// Free space right after the child at `start`, up to the next child or the root's end.
    public func freeSpace(after start: UInt64) -> UInt64? {
        guard let i = index(ofChildAt: start) else { return nil }
        let limit = i + 1 < children.count ? children[i + 1].start : end
        return limit - children[i].end
    }

    /// The free gaps in address order, as half-open ranges: the first-fit search order
    /// of dev_dax_resize (before the first child, between children, after the last).
    public var gaps: [Range<UInt64>] {
        var result: [Range<UInt64>] = []
        var cursor = start
        for child in children {
            if child.start > cursor { result.append(cursor..<child.start) }
            cursor = child.end
        }
        if cursor < end { result.append(cursor..<end) }
        return result
    }

    /// The free gaps inside `range`, in address order: the parts of it no child holds.
    public func gaps(within range: Range<UInt64>) -> [Range<UInt64>] {
        var result: [Range<UInt64>] = []
        var cursor = range.lowerBound
        var i = max(firstIndex(startingAtOrAfter: range.lowerBound) - 1, 0)  // a child may start before it
        while i < children.count, children[i].start < range.upperBound {
            if children[i].end > cursor {
                if children[i].start > cursor { result.append(cursor ..< children[i].start) }
                cursor = children[i].end
            }
            i += 1
        }
        if cursor < range.upperBound { result.append(cursor ..< range.upperBound) }
        return result
    }

    /// Every structural rule of the tree; returns a description of the first broken one.
    public func invariantViolation() -> String? {
        var sum: UInt64 = 0
        var cursor = start
        for (i, child) in children.enumerated() {
            if child.size == 0 { return "child \(i) \(child) is empty" }
            if child.start < cursor { return "child \(i) \(child) overlaps its predecessor or leaves the root" }
            if child.end > end || child.end < child.start { return "child \(i) \(child) leaves the root" }
            cursor = child.end
            sum += child.size
        }
        if sum != allocatedSize { return "allocated size \(allocatedSize) != sum of children \(sum)" }
        return nil
    }
}

func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
