import DaxMetadata
import DaxResourceTree

/// What a device byte range holds.
public enum RangeOwner: Hashable, Sendable {
    case primaryMetadata
    case secondaryMetadata
    /// Arena bytes from `arenaOffset` on.
    case arena(name: String, arenaOffset: UInt64)
    /// Free space of the usable region.
    case unallocated
}

extension ArenaTable {
    /// Splits a device byte range by what lives there: the metadata blocks, the arenas'
    /// extents (with the arena offset where each piece starts), free space. Pieces are in
    /// device order; the part of the range past the device's end is dropped.
    public func owners(of range: Range<UInt64>) -> [(range: Range<UInt64>, owner: RangeOwner)] {
        let clipped = range.clamped(to: 0 ..< deviceSize)
        guard !clipped.isEmpty else { return [] }
        var result: [(range: Range<UInt64>, owner: RangeOwner)] = []
        let usable = Geometry.usableRegion(deviceSize: deviceSize)
        let primary = clipped.clamped(to: 0 ..< usable.lowerBound)
        if !primary.isEmpty { result.append((primary, .primaryMetadata)) }
        let middle = clipped.clamped(to: usable)
        if !middle.isEmpty {
            var cursor = middle.lowerBound
            var i = max(tree.firstIndex(startingAtOrAfter: cursor) - 1, 0)
            while cursor < middle.upperBound {
                let child: Resource? = i < tree.children.count ? tree.children[i] : nil
                if let child, child.end <= cursor {
                    i += 1
                    continue
                }
                if let child, child.start <= cursor {
                    let end = min(child.end, middle.upperBound)
                    let name = arenas[child.owner]?.name ?? "#\(child.owner)"
                    result.append((cursor ..< end, .arena(name: name, arenaOffset: child.pageOffset + (cursor - child.start))))
                    cursor = end
                    i += 1
                } else {
                    let end = min(child?.start ?? middle.upperBound, middle.upperBound)
                    result.append((cursor ..< end, .unallocated))
                    cursor = end
                }
            }
        }
        let secondary = clipped.clamped(to: usable.upperBound ..< deviceSize)
        if !secondary.isEmpty { result.append((secondary, .secondaryMetadata)) }
        return result
    }
}
