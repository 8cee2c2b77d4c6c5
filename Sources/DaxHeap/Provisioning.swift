// Provisioning: arena changes, one or several at a time, each call one metadata update
// (docs/FORMAT.md, "Update protocol"): made in the table in place (and undone if anything
// after fails), new space zeroed, both copies persisted, then published to readers.

import DaxArenas
import DaxDevice
import DaxMetadata

/// One change of ``Heap/provision(_:)``.
public enum ArenaChange: Sendable, Hashable {
    /// Creates an arena of `size` bytes (``Heap/createArena(named:size:)``).
    case create(name: String, size: UInt64)
    /// Grows or shrinks an arena to `size` bytes (``Heap/resizeArena(named:to:)``).
    case resize(name: String, size: UInt64)
    /// Destroys an arena (``Heap/destroyArena(named:)``).
    case destroy(name: String)

    /// The arena the change is about.
    public var name: String {
        switch self {
        case .create(let name, _), .resize(let name, _), .destroy(let name): name
        }
    }
}

extension Heap {
    /// Applies `changes`, in order, as one metadata update (one generation): after a crash
    /// at any instant the heap holds all of them or none, so that a database needing two
    /// arenas (say an index and a log) never finds one without the other.
    ///
    /// Each change is checked against the table the ones before it left; if any is
    /// refused, none is applied and the heap is unchanged. The call waits as its changes
    /// would: a shrink or destroy for the accesses of its arena open before it.
    public func provision(_ changes: [ArenaChange]) throws(HeapError) {
        _ = try change(changes.map { Step($0) })
    }

    /// A change, and the id its arena must have: a handle's resize must not reach a newer
    /// arena that took the name of a destroyed one.
    struct Step {
        let change: ArenaChange
        let expectedID: UInt64?
        init(_ change: ArenaChange, expectedID: UInt64? = nil) {
            self.change = change
            self.expectedID = expectedID
        }
    }

    /// An arena's layout that a change replaced, freed once no access can hold it.
    private struct Retired {
        let id: UInt64
        /// The key its readers' sections hold (``ArenaCell/readKey``).
        let key: UInt64
        let snapshot: Unmanaged<ArenaSnapshot>
    }

    /// Applies `steps` as one update and returns the id of each step's arena.
    ///
    /// Nothing here is proportional to the whole table except moving bytes: the table is
    /// changed in place, not copied, and the new image is the current one edited arena by
    /// arena (`MetadataCopy.applying`), which equals a full encoding of the new table.
    ///
    /// Changes are serialized by `provisioning`; `state` is held only while the table and
    /// the copies change, not while waiting for readers, so that a reader may query the
    /// heap from inside its access while a shrink or destroy waits for it.
    ///
    /// After publishing, a change waits only if it released space: a shrink or destroy waits
    /// for the sections of that arena open before it (``ReadSections``; `provisioning`
    /// stays held, so the space is not handed out meanwhile). A grow waits for no one: the
    /// old layout maps a prefix of the new one, so a reader still using it reaches only the
    /// arena's bytes; it is freed on the reclaimer thread once those sections have ended.
    func change(_ steps: [Step]) throws(HeapError) -> [UInt64] {
        try provisioning.withLock { _ throws(HeapError) -> [UInt64] in
            try ensureOpen()  // close() sets the flag under this lock: past here the device stays open
            guard device.mode == .readWrite else { throw .readOnly(path: path) }
            let (ids, retired) = try state.withLock { s throws(HeapError) in try apply(steps, state: &s) }
            for old in retired {
                let current = state.withLock { $0.table.arenas[old.id] }
                let waited = ReadSections.begin(holding: old.key)
                if let current, Self.isPrefix(old.snapshot._withUnsafeGuaranteedRef { $0.layout }, of: current) {
                    ReadSections.retire(waited) { old.snapshot.release() }
                } else {
                    ReadSections.wait(waited)
                    // No reader is in the space the change took away, and `provisioning`
                    // keeps it from being handed out: its memory can go (on a file), but
                    // for what another step of the same change gave to an arena.
                    let removed = Self.addedRanges(old: current, new: old.snapshot._withUnsafeGuaranteedRef { $0.layout })
                    old.snapshot.release()
                    let free = state.withLock { s in removed.flatMap { s.table.tree.gaps(within: $0) } }
                    for range in free { device.release(offset: range.lowerBound, length: Geometry.length(of: range)) }
                }
            }
            return ids
        }
    }

    /// The part of a change done under the state lock.
    private func apply(_ steps: [Step], state s: inout HeapState) throws(HeapError) -> ([UInt64], [Retired]) {
        // A failed write may use up two numbers (the update's and the restore's).
        guard s.highestGeneration < UInt64.max - 1 else { throw .generationExhausted(path: path) }
        let generation = s.highestGeneration + 1
        var undos: [ArenaTable.Undo] = []
        var image = s.image
        var changed = false
        do throws(ProvisionError) {
            for step in steps {
                if let id = step.expectedID, s.table.arenas[id] == nil { throw .unknownArena(step.change.name) }
                let undo = try Self.perform(step.change, on: &s.table)
                undos.append(undo)
                if let edit = Self.edit(undo, table: s.table) {
                    image = MetadataCopy.applying(edit, to: image, generation: generation, nextArenaID: s.table.nextArenaID)
                    changed = true
                }
            }
        } catch {
            for undo in undos.reversed() { s.table.undo(undo) }
            throw HeapError(error)
        }
        let ids = undos.map(\.id)
        guard changed else { return (ids, []) }  // e.g. a resize to the same size
        // Each arena's layout before the first step that touched it.
        var before: [(id: UInt64, layout: ArenaLayout?)] = []
        for undo in undos where !before.contains(where: { $0.id == undo.id }) { before.append((undo.id, undo.before)) }
        do throws(HeapError) {
            let windows = try mapGrowth(before, state: s)
            do throws(HeapError) {
                try zeroAddedSpace(before, table: s.table)
                try commit(image, generation: generation, state: &s)
            } catch {
                for growth in windows { growth.undo() }
                throw error
            }
            for growth in windows { growth.publish() }
        } catch {
            for undo in undos.reversed() { s.table.undo(undo) }
            throw error
        }
        s.image = image
        s.generation = generation
        logger.debug("arena table updated", metadata: ["arenas": "\(steps.map(\.change.name))", "generation": "\(generation)"])
        return (ids, publish(before, state: &s))
    }

    private static func perform(_ change: ArenaChange, on table: inout ArenaTable) throws(ProvisionError) -> ArenaTable.Undo {
        switch change {
        case .create(let name, let size): try table.createInPlace(name: name, size: size)
        case .resize(let name, let size): try table.resizeInPlace(name: name, to: size)
        case .destroy(let name): try table.destroyInPlace(name: name)
        }
    }

    /// The edit of the metadata image that one step made, or nil if it changed nothing.
    private static func edit(_ undo: ArenaTable.Undo, table: ArenaTable) -> MetadataCopy.ArenaChange? {
        let new = table.arenas[undo.id]
        guard new != undo.before else { return nil }
        let index = table.position(of: undo.id)
        let record = new.map { ArenaRecord(id: undo.id, name: $0.name, extents: $0.extents) }
        switch (undo.before, record) {
        case (nil, let record?): return .insert(record, at: index)
        case (_?, let record?): return .replace(record, at: index)
        default: return .remove(at: index)
        }
    }

    /// Open windows: a shrink or destroy is refused, a grow mapped into each (undone by
    /// the caller if the change fails).
    private func mapGrowth(_ before: [(id: UInt64, layout: ArenaLayout?)], state s: HeapState) throws(HeapError) -> [WindowGrowth] {
        var growths: [WindowGrowth] = []
        for (id, old) in before {
            let new = s.table.arenas[id]
            do throws(HeapError) {
                let name = new?.name ?? old?.name ?? ""
                growths.append(try mapGrowth(arena: name, old: old, new: new, regions: s.windows[id] ?? []))
            } catch {
                for growth in growths { growth.undo() }
                throw error
            }
        }
        return growths
    }

    /// New space is zeroed while it is still free, so a crash leaves no arena holding
    /// stale bytes.
    private func zeroAddedSpace(_ before: [(id: UInt64, layout: ArenaLayout?)], table: ArenaTable) throws(HeapError) {
        do throws(DeviceError) {
            for (id, old) in before {
                for range in Self.addedRanges(old: old, new: table.arenas[id]) {
                    try device.zero(offset: range.lowerBound, length: Geometry.length(of: range))
                }
            }
        } catch {
            throw HeapError(error)
        }
    }

    /// Publishes each arena's new layout; returns the layouts replaced, which the caller
    /// frees after a grace period.
    private func publish(_ before: [(id: UInt64, layout: ArenaLayout?)], state s: inout HeapState) -> [Retired] {
        var retired: [Retired] = []
        for (id, _) in before {
            let new = s.table.arenas[id]
            guard let cell = s.cells[id] else {
                if let new { s.cells[id] = ArenaCell(new) }  // created (nothing, if also destroyed)
                continue
            }
            if new == nil { s.cells[id] = nil }
            if let old = cell.publish(new) { retired.append(Retired(id: id, key: cell.readKey, snapshot: old)) }
        }
        return retired
    }

    /// Whether every arena offset `old` maps, `new` maps to the same device offset: the
    /// extents are the same but for the last of `old`, which `new` may have lengthened.
    static func isPrefix(_ old: ArenaLayout, of new: ArenaLayout) -> Bool {
        guard old.extents.count <= new.extents.count else { return false }
        for (i, e) in old.extents.enumerated() {
            let n = new.extents[i]
            guard n.deviceOffset == e.deviceOffset, n.arenaOffset == e.arenaOffset else { return false }
            guard n.length == e.length || (i == old.extents.count - 1 && n.length > e.length) else { return false }
        }
        return true
    }

    /// Device ranges an arena holds in `new` and did not hold in `old`.
    static func addedRanges(old: ArenaLayout?, new: ArenaLayout?) -> [Range<UInt64>] {
        guard let new else { return [] }
        var held: [UInt64: UInt64] = [:]
        for e in old?.extents ?? [] { held[e.deviceOffset] = e.length }
        var result: [Range<UInt64>] = []
        for e in new.extents {
            let before = held[e.deviceOffset] ?? 0
            if e.length > before { result.append(e.deviceOffset + before ..< e.deviceOffset + e.length) }
        }
        return result
    }
}
