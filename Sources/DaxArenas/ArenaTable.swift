import DaxMetadata
import DaxRadix
import DaxResourceTree

/// Why a provisioning request was refused. The table is unchanged after any of them.
public enum ProvisionError: Error, Equatable, Sendable {
    case noSpace(requested: UInt64, available: UInt64)
    case nameTaken(String)
    case unknownArena(String)
    case misalignedSize(UInt64)
    case invalidName(String, reason: String)
    /// The arena table would not fit in a 2 MiB metadata block.
    case tableFull(arenas: Int, extents: Int)
}

/// The arena table of one heap: the resource tree of the usable region, and each arena's
/// extents with its radix tree. Pure provisioning logic, no I/O.
///
/// A value type: every mutating method either succeeds completely or throws and leaves
/// `self` exactly as it was. The `…InPlace` changes also return an ``Undo``, so the heap
/// can make a change without copying the table, persist it, and put the table back if
/// the write fails.
public struct ArenaTable: Hashable, Sendable {
    /// The usable region and its children, one per extent, owned by arena id.
    public private(set) var tree: ResourceTree
    /// Arenas by id.
    public private(set) var arenas: [UInt64: ArenaLayout] = [:]
    /// Arena ids by name.
    public private(set) var ids: [String: UInt64] = [:]
    /// Arena ids in increasing order (the order of the on-media table), kept so that
    /// encoding an update needs no sort: a new arena always has the largest id.
    public private(set) var order: [UInt64] = []
    /// The id the next created arena gets; ids are never reused.
    public private(set) var nextArenaID: UInt64 = 1
    public let deviceSize: UInt64

    /// An empty table for a device of `deviceSize` bytes.
    public init(deviceSize: UInt64) {
        precondition(deviceSize >= Geometry.minimumDeviceSize && Geometry.isAligned(deviceSize))
        self.deviceSize = deviceSize
        let usable = Geometry.usableRegion(deviceSize: deviceSize)
        tree = ResourceTree(start: usable.lowerBound, size: Geometry.length(of: usable))
    }

    /// The table a decoded metadata copy describes. The decoder has validated it; a
    /// conflict here still throws rather than trapping.
    public init(metadata: HeapMetadata) throws(ResourceTreeError) {
        self.init(deviceSize: metadata.deviceSize)
        nextArenaID = metadata.nextArenaID
        for record in metadata.arenas {
            var layout = ArenaLayout(id: record.id, name: record.name)
            for extent in record.extents {
                try tree.request(start: extent.deviceOffset, size: extent.length, owner: record.id, pageOffset: extent.arenaOffset)
                layout.extents.append(extent)
                layout.size += extent.length
                layout.insertBlocks(of: layout.extents.count - 1)
            }
            arenas[record.id] = layout
            ids[record.name] = record.id
        }
        order = metadata.arenas.map(\.id).sorted()
    }

    /// The records to persist, arenas ordered by id.
    public func metadata(uuid: HeapUUID, alignment: UInt64, generation: UInt64) -> HeapMetadata {
        let records = order.map { id in
            let arena = arenas[id]!
            return ArenaRecord(id: id, name: arena.name, extents: arena.extents)
        }
        return HeapMetadata(
            uuid: uuid, deviceSize: deviceSize, alignment: alignment, generation: generation,
            nextArenaID: nextArenaID, arenas: records)
    }

    /// Bytes not held by any arena.
    public var availableSize: UInt64 { tree.availableSize }
    /// Size of the usable region.
    public var usableSize: UInt64 { tree.size }
    /// Number of extents over all arenas.
    public var extentCount: Int { tree.children.count }

    public func arena(named name: String) -> ArenaLayout? { ids[name].flatMap { arenas[$0] } }

    // MARK: - Provisioning

    /// What one change made in place replaced: enough for ``undo(_:)`` to put the table
    /// back exactly as it was (the heap undoes a change whose metadata write failed).
    /// Only valid on the table it came from, before any other change.
    public struct Undo: Sendable {
        /// The arena the change was about.
        public let id: UInt64
        /// Its layout before the change; nil if the change created it.
        public let before: ArenaLayout?
        let tree: ResourceTree
        let nextArenaID: UInt64
    }

    /// Creates an arena of `size` bytes (a positive multiple of 2 MiB) and returns its id.
    @discardableResult
    public mutating func create(name: String, size: UInt64) throws(ProvisionError) -> UInt64 {
        try createInPlace(name: name, size: size).id
    }

    /// Grows or shrinks the arena to `size` bytes (a positive multiple of 2 MiB).
    public mutating func resize(name: String, to size: UInt64) throws(ProvisionError) {
        _ = try resizeInPlace(name: name, to: size)
    }

    /// Releases every extent of the arena and forgets it.
    public mutating func destroy(name: String) throws(ProvisionError) {
        _ = try destroyInPlace(name: name)
    }

    /// ``create(name:size:)``, returning what ``undo(_:)`` needs to take it back.
    public mutating func createInPlace(name: String, size: UInt64) throws(ProvisionError) -> Undo {
        if let reason = ArenaName.problem(with: name) { throw .invalidName(name, reason: reason) }
        guard ids[name] == nil else { throw .nameTaken(name) }
        guard size > 0, Geometry.isAligned(size) else { throw .misalignedSize(size) }
        guard size <= availableSize else { throw .noSpace(requested: size, available: availableSize) }
        let id = nextArenaID
        let undo = Undo(id: id, before: nil, tree: tree, nextArenaID: nextArenaID)
        nextArenaID += 1
        arenas[id] = ArenaLayout(id: id, name: name)
        ids[name] = id
        order.append(id)  // ids only grow, so the order stays sorted
        grow(id: id, by: size)
        try checkTableFits(else: undo)
        return undo
    }

    /// ``resize(name:to:)``, returning what ``undo(_:)`` needs to take it back. A resize
    /// to the current size changes nothing (its `before` equals the arena's layout).
    public mutating func resizeInPlace(name: String, to size: UInt64) throws(ProvisionError) -> Undo {
        guard let id = ids[name], let arena = arenas[id] else { throw .unknownArena(name) }
        guard size > 0, Geometry.isAligned(size) else { throw .misalignedSize(size) }
        let undo = Undo(id: id, before: arena, tree: tree, nextArenaID: nextArenaID)
        if size == arena.size { return undo }
        if size > arena.size {
            let more = size - arena.size
            guard more <= availableSize else { throw .noSpace(requested: more, available: availableSize) }
            grow(id: id, by: more)
        } else {
            shrink(id: id, by: arena.size - size)
        }
        try checkTableFits(else: undo)
        return undo
    }

    /// ``destroy(name:)``, returning what ``undo(_:)`` needs to take it back.
    public mutating func destroyInPlace(name: String) throws(ProvisionError) -> Undo {
        guard let id = ids[name], let arena = arenas[id] else { throw .unknownArena(name) }
        let undo = Undo(id: id, before: arena, tree: tree, nextArenaID: nextArenaID)
        shrink(id: id, by: arena.size)
        arenas[id] = nil
        ids[name] = nil
        order.remove(at: position(of: id))
        return undo
    }

    /// Puts the table back as it was before the change `undo` came from.
    public mutating func undo(_ undo: Undo) {
        let id = undo.id
        if let before = undo.before {
            if arenas[id] == nil {  // destroyed: file it again, in id order
                ids[before.name] = id
                order.insert(id, at: position(of: id))
            }
            arenas[id] = before
        } else if let created = arenas.removeValue(forKey: id) {
            ids[created.name] = nil
            order.removeLast()  // a created arena has the largest id
        }
        tree = undo.tree
        nextArenaID = undo.nextArenaID
    }

    /// The index of `id` in ``order``, or where it would be inserted: an arena's position
    /// in the on-media table of arena entries.
    public func position(of id: UInt64) -> Int {
        var low = 0
        var high = order.count
        while low < high {
            let mid = (low + high) / 2
            if order[mid] < id { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// Undoes the change and throws if the table no longer fits in a metadata block.
    mutating func checkTableFits(else undo: Undo) throws(ProvisionError) {
        do {
            try checkTableFits()
        } catch {
            self.undo(undo)
            throw error
        }
    }

    func checkTableFits() throws(ProvisionError) {
        guard MetadataCopy.fits(arenas: arenas.count, extents: extentCount) else {
            throw .tableFull(arenas: arenas.count, extents: extentCount)
        }
    }

    /// dax_dev_resize, corrected: first extend the arena's highest-offset extent in place
    /// as far as the free space right after it allows, then add extents first-fit in the
    /// gaps from the start of the region. Only the highest-offset extent is ever extended
    /// (the seed could extend the old last extent after adding one in an earlier gap,
    /// which breaks the contiguity of arena offsets). The caller checked the space.
    mutating func grow(id: UInt64, by amount: UInt64) {
        var arena = arenas[id]!
        var left = amount
        if let last = arena.extents.last, let free = tree.freeSpace(after: last.deviceOffset), free > 0 {
            let add = min(free, left)
            adjustLast(of: &arena, newLength: last.length + add)
            left -= add
        }
        for gap in tree.gaps where left > 0 {
            let take = min(Geometry.length(of: gap), left)
            do {
                try tree.request(start: gap.lowerBound, size: take, owner: id, pageOffset: arena.size)
            } catch {
                preconditionFailure("first-fit placement into a free gap failed: \(error)")
            }
            arena.extents.append(ExtentRecord(deviceOffset: gap.lowerBound, arenaOffset: arena.size, length: take))
            arena.size += take
            arena.insertBlocks(of: arena.extents.count - 1)
            left -= take
        }
        precondition(left == 0, "grow placed less than the available size promised")
        arenas[id] = arena
    }

    /// dax_dev_shrink: release whole extents from the highest arena offset down, then trim
    /// the last one that is still needed.
    mutating func shrink(id: UInt64, by amount: UInt64) {
        var arena = arenas[id]!
        var left = amount
        while left > 0, let last = arena.extents.last {
            if left >= last.length {
                arena.deleteBlocks(of: arena.extents.count - 1)
                do {
                    try tree.release(start: last.deviceOffset, size: last.length)
                } catch {
                    preconditionFailure("releasing an arena's own extent failed: \(error)")
                }
                arena.extents.removeLast()
                arena.size -= last.length
                left -= last.length
            } else {
                adjustLast(of: &arena, newLength: last.length - left)
                left = 0
            }
        }
        arenas[id] = arena
    }

    /// adjust_resource on the arena's highest-offset extent, with the radix entries
    /// deleted before and reinserted after (dax_dev_adjust_resource).
    mutating func adjustLast(of arena: inout ArenaLayout, newLength: UInt64) {
        let i = arena.extents.count - 1
        let old = arena.extents[i]
        arena.deleteBlocks(of: i)
        do {
            try tree.adjust(start: old.deviceOffset, newSize: newLength)
        } catch {
            preconditionFailure("adjusting an arena's last extent failed: \(error)")
        }
        arena.extents[i].length = newLength
        arena.size = arena.size - old.length + newLength
        arena.insertBlocks(of: i)
    }

    // MARK: - Invariants

    /// Every rule of the table: 2 MiB alignment, disjoint extents inside the usable
    /// region, arena offsets contiguous from 0, the resource tree holding exactly the
    /// arenas' extents, exact available size, and radix trees in step with the extents.
    /// Returns a description of the first broken rule, or nil.
    public func invariantViolation() -> String? {
        if let problem = tree.invariantViolation() { return "resource tree: \(problem)" }
        if ids.count != arenas.count { return "\(ids.count) names for \(arenas.count) arenas" }
        if order != arenas.keys.sorted() { return "the id order does not list exactly the arenas, sorted" }
        var fromArenas: [Resource] = []
        var total: UInt64 = 0
        for (id, arena) in arenas {
            if arena.id != id { return "arena \(arena.name) filed under id \(id)" }
            if ids[arena.name] != id { return "name \(arena.name) does not lead to id \(id)" }
            if id >= nextArenaID { return "arena \(arena.name) id \(id) >= next id \(nextArenaID)" }
            if arena.extents.isEmpty || arena.size == 0 { return "arena \(arena.name) is empty" }
            var offset: UInt64 = 0
            var blocks = 0
            for (i, extent) in arena.extents.enumerated() {
                if !Geometry.isAligned(extent.deviceOffset) || !Geometry.isAligned(extent.length) || extent.length == 0 {
                    return "arena \(arena.name) extent \(i) is not 2 MiB aligned"
                }
                if extent.arenaOffset != offset {
                    return "arena \(arena.name) extent \(i) at arena offset \(extent.arenaOffset), expected \(offset)"
                }
                offset += extent.length
                fromArenas.append(Resource(start: extent.deviceOffset, size: extent.length, owner: id, pageOffset: extent.arenaOffset))
                let pages = PageOrders(start: extent.arenaOffset >> ArenaLayout.pageShift, count: extent.length >> ArenaLayout.pageShift)
                for block in pages {
                    blocks += 1
                    for probe in [block.index, block.index + block.pageCount - 1] where arena.radix.lookup(probe) != UInt32(i) {
                        return "arena \(arena.name): radix page \(probe) does not lead to extent \(i)"
                    }
                }
            }
            if offset != arena.size { return "arena \(arena.name) size \(arena.size) != sum of extents \(offset)" }
            if arena.radix.entryCount != blocks {
                return "arena \(arena.name): radix has \(arena.radix.entryCount) entries, extents need \(blocks)"
            }
            if let problem = arena.radix.invariantViolation() { return "arena \(arena.name) radix: \(problem)" }
            total += arena.size
        }
        fromArenas.sort { $0.start < $1.start }
        if fromArenas != tree.children { return "resource tree children differ from the arenas' extents" }
        if tree.availableSize != tree.size - total { return "available size \(tree.availableSize) != \(tree.size - total)" }
        return nil
    }
}
