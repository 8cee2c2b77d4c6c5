import DaxArenas
import DaxDevice
import DaxMetadata
import Logging

/// A whole device-dax (or a file emulating one) as a persistent heap of named arenas.
///
/// The device is mapped once, MAP_SHARED, 2 MiB aligned. Its first and last 2 MiB blocks
/// hold two checksummed copies of the arena table (docs/FORMAT.md); the space between
/// them is carved into arenas that grow and shrink online, each a list of 2 MiB-aligned
/// extents. Provisioning changes are serialized and persisted in both copies before they
/// are visible; data-plane accesses run concurrently with them (see ``Arena``).
///
/// A `Heap` is safe to share across threads. It closes (unmaps, drops its lock) when the
/// last reference to it, to one of its ``Arena``s or to an open ``ArenaWindow``, goes away.
///
/// Inside an access closure (``Arena/withView(_:)``, ``Arena/withViews(_:_:_:)``,
/// ``Arena/withUnsafeBytes(at:count:_:)`` and the like) every read-only query is allowed:
/// ``availableSize``, ``usableSize``, ``generation``, ``metadataStatus``, ``arenas``,
/// ``arena(named:)``, ``resolve(_:)``, ``check()``, ``badBlocks()``, an arena's `size`.
/// Provisioning is not (``createArena(named:size:)``, ``resizeArena(named:to:)``,
/// ``destroyArena(named:)``, ``Arena/resize(to:)``, ``repair()``): a shrink or destroy
/// waits for the accesses of its arena open before it, so one started from inside such an
/// access would wait for itself (it traps instead), and any change waits for the one before.
public final class Heap: Sendable {
    let device: MappedDevice
    /// Serializes provisioning (and repairs), and is held across a grace period; taken
    /// before `state`, never inside it.
    let provisioning = Locked<Void>(())
    /// The table and the copies' states: held briefly, never across a grace period, so
    /// that queries from inside an access closure never wait for a change that waits for them.
    let state: Locked<HeapState>
    let logger: Logger
    /// Test hook (package only): injected metadata write faults; nil in production.
    let faults: MetadataFaults?

    /// The heap's random identity, recorded in both metadata copies.
    public let uuid: String
    /// What open repaired, one line each (empty if nothing was); also logged as warnings.
    public let repairs: [String]

    struct HeapState {
        var table: ArenaTable
        var generation: UInt64
        var primary: MetadataCopyStatus
        var secondary: MetadataCopyStatus
        var cells: [UInt64: ArenaCell]
        /// The encoded current table, as both copies hold it (put back if an update fails).
        var image: [UInt8]
        let uuid: HeapUUID
        /// The highest generation ever written or attempted: the next update takes the one
        /// after it, so that a number is never reused for other contents, even after a
        /// failed write.
        var highestGeneration: UInt64
        /// Open windows by arena id (``ArenaWindow``): a grow maps into each, a shrink or
        /// destroy is refused while any is open.
        var windows: [UInt64: [WindowRegion]] = [:]

        subscript(status copy: MetadataIO.Copy) -> MetadataCopyStatus {
            get { copy == .primary ? primary : secondary }
            set { if copy == .primary { primary = newValue } else { secondary = newValue } }
        }
    }

    private init(device: MappedDevice, state: HeapState, repairs: [String], logger: Logger, faults: MetadataFaults?) {
        self.device = device
        self.uuid = state.uuid.description
        self.repairs = repairs
        self.logger = logger
        self.faults = faults
        self.state = Locked(state)
    }

    // MARK: - Creating and opening

    /// Creates a heap with no arenas.
    ///
    /// - Parameters:
    ///   - path: a device-dax (/dev/daxX.Y) or a regular file, created sparse if absent.
    ///   - size: the file's size, a multiple of 2 MiB of at least 6 MiB; for a device-dax,
    ///     nil or its own size. For an existing file with `overwrite`, nil keeps its size.
    ///   - overwrite: reinitialise an existing non-empty file, or a device-dax whose
    ///     metadata blocks hold data. Without it, such a device is refused.
    ///   - simulator: for crash-consistency tests only: persistence is simulated, and every
    ///     flush and fence, from the heap's first metadata write on, goes to the simulator.
    public static func create(
        path: String, size: UInt64? = nil, overwrite: Bool = false,
        logger: Logger = Logger(label: "DaxHeap"), simulator: PowerLossSimulator? = nil
    ) throws(HeapError) -> Heap {
        try create(path: path, size: size, overwrite: overwrite, logger: logger, sysfsRoot: "/sys", faults: nil,
                   simulator: simulator)
    }

    /// `create` with the test hooks: a fake sysfs tree and injected metadata faults.
    package static func create(
        path: String, size: UInt64?, overwrite: Bool, logger: Logger, sysfsRoot: String, faults: MetadataFaults?,
        simulator: PowerLossSimulator? = nil
    ) throws(HeapError) -> Heap {
        let device: MappedDevice
        do {
            device = try MappedDevice.create(path: path, size: size, overwrite: overwrite, sysfsRoot: sysfsRoot, observer: simulator)
        } catch {
            throw HeapError(error)
        }
        let uuid = HeapUUID.random()
        let table = ArenaTable(deviceSize: device.size)
        let metadata = table.metadata(uuid: uuid, alignment: device.alignment, generation: 1)
        let image = MetadataCopy.encode(metadata)
        do {
            try MetadataIO.write(image, copy: .primary, heapSize: device.size, on: device)
            try MetadataIO.write(image, copy: .secondary, heapSize: device.size, on: device)
        } catch {
            throw HeapError(error)
        }
        let state = HeapState(table: table, generation: 1, primary: .init(state: .ok, generation: 1),
                              secondary: .init(state: .ok, generation: 1), cells: [:], image: image, uuid: uuid,
                              highestGeneration: 1)
        logger.info("created heap", metadata: ["path": "\(path)", "size": "\(device.size)", "uuid": "\(uuid)"])
        return Heap(device: device, state: state, repairs: [], logger: logger, faults: faults)
    }

    /// Opens an existing heap.
    ///
    /// Both metadata copies are read and validated; the valid one with the higher
    /// generation is used. Read-write, a corrupt, stale or unreadable copy is rewritten
    /// from the good one (logged as a warning and listed in ``repairs``). If neither
    /// copy is valid, or the device is smaller than the recorded size, open fails and
    /// writes nothing. A device larger than its heap (grown, or not yet cut after
    /// ``shrink(path:to:logger:simulator:)``) opens read-only, with ``unusedDeviceSize``
    /// saying how much lies past the heap; read-write it is refused
    /// (``HeapError/deviceLargerThanHeap(path:heapSize:deviceSize:)``): ``grow(path:logger:simulator:)``
    /// first (docs/FORMAT.md, "Device growth and shrink").
    ///
    /// - Parameter simulator: for crash-consistency tests only: persistence is simulated,
    ///   and every flush and fence (the open-time repair's included) goes to the simulator.
    public static func open(
        path: String, mode: HeapMode = .readWrite, logger: Logger = Logger(label: "DaxHeap"),
        simulator: PowerLossSimulator? = nil
    ) throws(HeapError) -> Heap {
        try open(path: path, mode: mode, logger: logger, sysfsRoot: "/sys", faults: nil, simulator: simulator)
    }

    /// `open` with the test hooks: a fake sysfs tree and injected metadata faults.
    /// `resizing`: a read-write open of a device larger than its heap is allowed (for a
    /// grow, a shrink or a repair).
    package static func open(
        path: String, mode: HeapMode, logger: Logger, sysfsRoot: String, faults: MetadataFaults?,
        simulator: PowerLossSimulator? = nil, resizing: Bool = false
    ) throws(HeapError) -> Heap {
        let device: MappedDevice
        do {
            device = try MappedDevice.open(path: path, mode: mode == .readOnly ? .readOnly : .readWrite, sysfsRoot: sysfsRoot,
                                           observer: simulator)
        } catch {
            throw HeapError(error)
        }
        let found = try MetadataIO.locate(on: device, path: path)
        let choice = found.choice
        let metadata = choice.metadata
        if mode == .readWrite, metadata.deviceSize < device.size, !resizing {
            throw .deviceLargerThanHeap(path: path, heapSize: metadata.deviceSize, deviceSize: device.size)
        }
        let table: ArenaTable
        do {
            table = try ArenaTable(metadata: metadata)
        } catch {
            // The decoder validated the table, so this is a bug, but refuse rather than trap.
            throw .corruptMetadata(path: path, primary: "table rejected: \(error)", secondary: "not used")
        }
        var statuses = (primary: choice.primary, secondary: choice.secondary)
        var repairs: [String] = []
        if mode == .readWrite {
            repairs = try repairAtOpen(found, table: table, statuses: &statuses, device: device, logger: logger, faults: faults)
        }
        var cells: [UInt64: ArenaCell] = [:]
        for (id, layout) in table.arenas { cells[id] = ArenaCell(layout) }
        let state = HeapState(table: table, generation: metadata.generation, primary: statuses.primary,
                              secondary: statuses.secondary, cells: cells, image: choice.image, uuid: metadata.uuid,
                              highestGeneration: found.highestGeneration)
        return Heap(device: device, state: state, repairs: repairs, logger: logger, faults: faults)
    }

    // MARK: - Facts

    /// The path the heap was opened with.
    public var path: String { device.path }
    public var kind: HeapDeviceKind { device.kind == .deviceDax ? .deviceDax : .file }
    public var mode: HeapMode { device.mode == .readOnly ? .readOnly : .readWrite }
    /// Size of the whole device in bytes: at least ``heapSize``.
    public var deviceSize: UInt64 { device.size }
    /// The device's mapping alignment (sysfs `align`; 2 MiB for a file).
    public var alignment: UInt64 { device.alignment }
    /// How stores are made durable.
    public var persistence: Persistence {
        switch device.persistence {
        case .pmem: .pmem
        case .msync: .msync
        case .simulated: .simulated
        }
    }
    /// Bytes between the two metadata blocks.
    public var usableSize: UInt64 { state.withLock { $0.table.usableSize } }
    /// Usable bytes held by no arena.
    public var availableSize: UInt64 { state.withLock { $0.table.availableSize } }
    /// The generation of the arena table in effect. Every update raises it by at least one
    /// (a failed update can use numbers up, and never reuses them).
    public var generation: UInt64 { state.withLock { $0.generation } }
    /// The state of each metadata copy, as found at open and kept since.
    public var metadataStatus: (primary: MetadataCopyStatus, secondary: MetadataCopyStatus) {
        state.withLock { ($0.primary, $0.secondary) }
    }

    /// Every arena, ordered by name.
    public var arenas: [ArenaInfo] {
        state.withLock { s in s.table.arenas.values.map(ArenaInfo.init) }.sorted { $0.name < $1.name }
    }

    /// Reads both metadata copies from the media again (through the guarded copy, so a
    /// media error marks a copy unreadable instead of killing the process), verifies the
    /// arena table's invariants, and reports what it found. Never writes.
    public func check() -> HeapCheckReport {
        state.withLock { s in
            refreshStatuses(&s)
            var problems: [String] = []
            for (name, status) in [("primary", s.primary), ("secondary", s.secondary)] where status.state != .ok {
                problems.append("\(name) metadata copy is \(status.state.rawValue)\(status.detail.isEmpty ? "" : ": \(status.detail)")")
            }
            if let violation = s.table.invariantViolation() { problems.append("arena table: \(violation)") }
            if s.table.availableSize != s.table.usableSize - s.table.arenas.values.reduce(0, { $0 + $1.size }) {
                problems.append("available size \(s.table.availableSize) is not the usable size less the arenas")
            }
            var badBlocks: [BadBlock] = []
            do throws(HeapError) {
                badBlocks = try Self.badBlocks(on: device, table: s.table)
                problems += badBlocks.map(\.description)
            } catch {
                problems.append("\(error)")
            }
            return HeapCheckReport(primary: s.primary, secondary: s.secondary, badBlocks: badBlocks, problems: problems)
        }
    }

    /// The device's known bad ranges (libpmem2's bad-block list; on device-dax, the
    /// region's badblocks), each split by what it hits: a metadata copy, an arena at an
    /// arena offset, or free space.
    public func badBlocks() throws(HeapError) -> [BadBlock] {
        let table = state.withLock { $0.table }
        return try Self.badBlocks(on: device, table: table)
    }

    private static func badBlocks(on device: MappedDevice, table: ArenaTable) throws(HeapError) -> [BadBlock] {
        let ranges: [BadRange]
        do throws(DeviceError) {
            ranges = try device.badRanges()
        } catch {
            throw HeapError(error)
        }
        return ranges.flatMap { bad in
            table.owners(of: bad.offset ..< bad.offset + bad.length).map { piece in
                let location: BadBlock.Location = switch piece.owner {
                case .primaryMetadata: .primaryMetadata
                case .secondaryMetadata: .secondaryMetadata
                case .arena(let name, let offset): .arena(name: name, offset: offset)
                case .unallocated: .unallocated
                }
                return BadBlock(deviceOffset: piece.range.lowerBound, length: Geometry.length(of: piece.range), location: location)
            }
        }
    }

    /// Re-reads both copies and rewrites every one that is not ok from the heap's current
    /// table. Returns what it repaired; a copy whose rewrite meets a media error stays
    /// unreadable (see ``check()``), logged with what the operator must do.
    @discardableResult
    public func repair() throws(HeapError) -> [String] {
        guard device.mode == .readWrite else { throw .readOnly(path: path) }
        return try provisioning.withLock { _ throws(HeapError) -> [String] in
            try state.withLock { s throws(HeapError) -> [String] in
                refreshStatuses(&s)
                var statuses = (primary: s.primary, secondary: s.secondary)
                let repaired = try Self.repairCopies(image: s.image, generation: s.generation, heapSize: s.table.deviceSize,
                                                     statuses: &statuses, device: device, logger: logger, faults: faults)
                (s.primary, s.secondary) = statuses
                return repaired
            }
        }
    }

    private func refreshStatuses(_ s: inout HeapState) {
        s.primary = MetadataIO.status(of: MetadataIO.read(.primary, heapSize: s.table.deviceSize, on: device), current: s.image, generation: s.generation)
        s.secondary = MetadataIO.status(of: MetadataIO.read(.secondary, heapSize: s.table.deviceSize, on: device), current: s.image, generation: s.generation)
    }

    // MARK: - Arenas

    /// The arena called `name`.
    public func arena(named name: String) throws(HeapError) -> Arena {
        try state.withLock { s throws(HeapError) in
            guard let id = s.table.ids[name], let cell = s.cells[id] else { throw .unknownArena(name) }
            return Arena(heap: self, cell: cell)
        }
    }

    /// The arena a reference points into, and the reference's offset checked against it.
    public func resolve(_ reference: PersistentReference) throws(HeapError) -> Arena {
        let arena = try state.withLock { s throws(HeapError) in
            guard let cell = s.cells[reference.arenaID] else { throw HeapError.unknownArena("#\(reference.arenaID)") }
            return Arena(heap: self, cell: cell)
        }
        let size = try arena.size
        guard reference.offset <= size else {
            throw .outOfRange(arena: arena.name, offset: reference.offset, count: 0, arenaSize: size)
        }
        return arena
    }

    /// Creates an arena of `size` bytes (a positive multiple of 2 MiB). Its bytes read as
    /// zero. It is placed first-fit and may span several discontiguous extents.
    @discardableResult
    public func createArena(named name: String, size: UInt64) throws(HeapError) -> Arena {
        let id = try change(arena: name) { table throws(ProvisionError) in try table.createInPlace(name: name, size: size) }
        return try state.withLock { s throws(HeapError) in
            guard let cell = s.cells[id] else { throw .unknownArena(name) }
            return Arena(heap: self, cell: cell)
        }
    }

    /// Grows or shrinks an arena online to `size` bytes (a positive multiple of 2 MiB).
    ///
    /// Growth first extends the arena's last extent in place, then adds extents first-fit
    /// in the free gaps; the new bytes read as zero. Shrinking releases the highest arena
    /// offsets; it returns only once no access can still reach the released range.
    public func resizeArena(named name: String, to size: UInt64) throws(HeapError) {
        _ = try change(arena: name) { table throws(ProvisionError) in try table.resizeInPlace(name: name, to: size) }
    }

    /// Resizes the arena with this persistent id (what a handle holds: a handle to a
    /// destroyed arena must not reach a newer arena that took its name).
    func resizeArena(id: UInt64, name: String, to size: UInt64) throws(HeapError) {
        _ = try change(arena: name) { table throws(ProvisionError) in
            guard table.arenas[id] != nil else { throw .unknownArena(name) }
            return try table.resizeInPlace(name: name, to: size)
        }
    }

    /// Destroys an arena, returning its space to the heap. Returns once no access can
    /// still reach it; handles to it then fail with ``HeapError/unknownArena(_:)``.
    public func destroyArena(named name: String) throws(HeapError) {
        _ = try change(arena: name) { table throws(ProvisionError) in
            try table.destroyInPlace(name: name)
        }
    }

    /// Applies one provisioning change: made in the table in place (and undone if anything
    /// after it fails), new space zeroed, both metadata copies persisted (docs/FORMAT.md,
    /// "Update protocol"), then published to readers.
    ///
    /// Nothing here is proportional to the whole table except moving bytes: the table is
    /// not copied, and the new image is the current one with one arena entry changed
    /// (`MetadataCopy.applying`), which equals a full encoding of the new table.
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
    private func change(
        arena name: String, _ body: (inout ArenaTable) throws(ProvisionError) -> ArenaTable.Undo
    ) throws(HeapError) -> UInt64 {
        guard device.mode == .readWrite else { throw .readOnly(path: path) }
        return try provisioning.withLock { _ throws(HeapError) -> UInt64 in
            var cell: ArenaCell?  // the arena's cell as it was: what its readers' sections hold
            let (id, retired) = try state.withLock { s throws(HeapError) in
                cell = s.table.ids[name].flatMap { s.cells[$0] }
                return try apply(arena: name, body, state: &s)
            }
            guard let retired else { return id }
            // The arena's own sections, or (should the name have led elsewhere) every section.
            let key = cell.flatMap { $0.id == id ? $0.readKey : nil }
            let current = state.withLock { $0.table.arenas[id] }
            let waited = ReadSections.begin(holding: key)
            if let current, Self.isPrefix(retired._withUnsafeGuaranteedRef { $0.layout }, of: current) {
                ReadSections.retire(waited) { retired.release() }
            } else {
                ReadSections.wait(waited)
                retired.release()
            }
            return id
        }
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

    /// The part of a change done under the state lock: returns the arena's id and the
    /// layout it replaced, which the caller frees after a grace period.
    private func apply(
        arena name: String, _ body: (inout ArenaTable) throws(ProvisionError) -> ArenaTable.Undo,
        state s: inout HeapState
    ) throws(HeapError) -> (UInt64, Unmanaged<ArenaSnapshot>?) {
        let undo: ArenaTable.Undo
        do throws(ProvisionError) {
            undo = try body(&s.table)
        } catch {
            throw HeapError(error)
        }
        let id = undo.id
        let old = undo.before
        let new = s.table.arenas[id]
        if new == old { return (id, nil) }  // e.g. a resize to the same size
        // A failed write may use up two numbers (the update's and the restore's).
        guard s.highestGeneration < UInt64.max - 1 else {
            s.table.undo(undo)
            throw .generationExhausted(path: path)
        }
        // Open windows: a shrink or destroy is refused, a grow mapped into each (undone
        // below if the change fails).
        let windows: WindowGrowth
        do throws(HeapError) {
            windows = try mapGrowth(arena: name, old: old, new: new, regions: s.windows[id] ?? [])
        } catch {
            s.table.undo(undo)
            throw error
        }
        do throws(DeviceError) {
            // New space is zeroed while it is still free, so a crash leaves no arena
            // holding stale bytes.
            for range in Self.addedRanges(old: old, new: new) {
                try device.zero(offset: range.lowerBound, length: Geometry.length(of: range))
            }
        } catch {
            windows.undo()
            s.table.undo(undo)
            throw HeapError(error)
        }
        let generation = s.highestGeneration + 1
        let index = s.table.position(of: id)
        let record = new.map { ArenaRecord(id: id, name: $0.name, extents: $0.extents) }
        let edit: MetadataCopy.ArenaChange = switch (old, record) {
        case (nil, let record?): .insert(record, at: index)
        case (_?, let record?): .replace(record, at: index)
        default: .remove(at: index)
        }
        let image = MetadataCopy.applying(edit, to: s.image, generation: generation, nextArenaID: s.table.nextArenaID)
        do throws(HeapError) {
            try commit(image, generation: generation, state: &s)
        } catch {
            windows.undo()
            s.table.undo(undo)
            throw error
        }
        windows.publish()
        s.image = image
        s.generation = generation
        logger.debug("arena table updated", metadata: ["arena": "\(name)", "generation": "\(generation)"])
        // Publish; the caller waits out every access that could hold the old layout.
        guard let new else {
            let retired = s.cells[id]?.publish(nil)
            s.cells[id] = nil
            return (id, retired)
        }
        guard let cell = s.cells[id] else {
            s.cells[id] = ArenaCell(new)
            return (id, nil)
        }
        return (id, cell.publish(new))
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
