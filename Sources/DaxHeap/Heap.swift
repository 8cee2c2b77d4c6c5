import DaxArenas
import DaxDevice
import DaxMetadata
import Logging
import Synchronization

/// A whole device-dax (or a file emulating one) as a persistent heap of named arenas.
///
/// The device is mapped once, MAP_SHARED, 2 MiB aligned. Its first and last 2 MiB blocks
/// hold two checksummed copies of the arena table (docs/FORMAT.md); the space between
/// them is carved into arenas that grow and shrink online, each a list of 2 MiB-aligned
/// extents. Provisioning changes are serialized and persisted in both copies before they
/// are visible; data-plane accesses run concurrently with them (see ``Arena``).
///
/// A `Heap` is safe to share across threads. It closes (unmaps, drops its lock) when
/// ``close()`` is called, or else when the last reference to it, to one of its ``Arena``s
/// or to an open ``ArenaWindow``, goes away. After ``close()`` its handles stay safe to
/// call and fail with ``HeapError/heapClosed(path:)``.
///
/// Inside an access closure (``Arena/withView(_:)``, ``Arena/withViews(_:_:_:)``,
/// ``Arena/withUnsafeBytes(at:count:_:)`` and the like) every read-only query is allowed:
/// ``availableSize``, ``usableSize``, ``generation``, ``metadataStatus``, ``arenas``,
/// ``arena(named:)``, ``findArena(named:)``, ``resolve(_:)``, ``check()``, ``badBlocks()``,
/// an arena's `size`. Provisioning is not (``createArena(named:size:)``,
/// ``resizeArena(named:to:)``, ``destroyArena(named:)``, ``Arena/resize(to:)``,
/// ``repair()``): a shrink or destroy waits for the accesses of its arena open before it,
/// so one started from inside such an access would wait for itself (it traps instead), and
/// any change waits for the one before. Nor is ``close()``, which refuses with an error.
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
    /// Test hook (package only): the bad ranges the platform is to report (emulated
    /// devices have none); nil in production, where libpmem2 is asked.
    let reportedBadRanges: [BadRange]?
    /// Set once by ``close()``, holding both locks; read anywhere (see `HeapClose.swift`).
    let closed = Atomic<Bool>(false)
    /// Serializes ``close()`` calls, including the grace period and the unmapping.
    let closing = Locked<Void>(())

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
        /// The device identity the current table records (DeviceIdentity.swift).
        var identity: DeviceIdentityRecord? = nil
        /// What open found comparing it with the device's layout.
        var layout = DeviceLayoutFinding.none

        subscript(status copy: MetadataIO.Copy) -> MetadataCopyStatus {
            get { copy == .primary ? primary : secondary }
            set { if copy == .primary { primary = newValue } else { secondary = newValue } }
        }
    }

    private init(device: MappedDevice, state: HeapState, repairs: [String], logger: Logger, faults: MetadataFaults?,
                 reportedBadRanges: [BadRange]? = nil) {
        self.device = device
        self.reportedBadRanges = reportedBadRanges
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

    /// `create` with the test hooks: a fake sysfs tree and injected metadata faults;
    /// `identityDevice`: read the device identity of this device number in `sysfsRoot`, as
    /// if the heap's file were that device-dax.
    package static func create(
        path: String, size: UInt64?, overwrite: Bool, logger: Logger, sysfsRoot: String, faults: MetadataFaults?,
        simulator: PowerLossSimulator? = nil, identityDevice: DeviceNumber? = nil
    ) throws(HeapError) -> Heap {
        let device: MappedDevice
        do {
            device = try MappedDevice.create(path: path, size: size, overwrite: overwrite, sysfsRoot: sysfsRoot, observer: simulator)
        } catch {
            throw HeapError(error)
        }
        let uuid = HeapUUID.random()
        let table = ArenaTable(deviceSize: device.size)
        var metadata = table.metadata(uuid: uuid, alignment: device.alignment, generation: 1)
        var layout = try DeviceLayoutFinding.find(recorded: nil, heapSize: device.size, device: device, sysfsRoot: sysfsRoot,
                                                  emulated: identityDevice, path: path)
        metadata.identity = layout.currentRecord
        if metadata.identity != nil { layout.state = .matches }
        let image = MetadataCopy.encode(metadata)
        do {
            try MetadataIO.write(image, copy: .primary, heapSize: device.size, on: device)
            try MetadataIO.write(image, copy: .secondary, heapSize: device.size, on: device)
        } catch {
            throw HeapError(error)
        }
        let state = HeapState(table: table, generation: 1, primary: .init(state: .ok, generation: 1),
                              secondary: .init(state: .ok, generation: 1), cells: [:], image: image, uuid: uuid,
                              highestGeneration: 1, identity: metadata.identity, layout: layout)
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
    /// On a device-dax, the layout sysfs shows is compared with the identity the heap
    /// recorded (docs/FORMAT.md, "Device identity"). If it differs (the device was
    /// destroyed and re-created: the bytes are not what the heap wrote), a read-only open
    /// reports it (``deviceLayoutChange``) and a read-write open is refused
    /// (``HeapError/deviceLayoutChanged(path:differences:)``) unless
    /// `acceptNewDeviceLayout`, which records the device's current layout as the heap's
    /// identity (one metadata update, listed in ``repairs``; it also records one on a heap
    /// that has none).
    ///
    /// - Parameter simulator: for crash-consistency tests only: persistence is simulated,
    ///   and every flush and fence (the open-time repair's included) goes to the simulator.
    public static func open(
        path: String, mode: HeapMode = .readWrite, acceptNewDeviceLayout: Bool = false,
        logger: Logger = Logger(label: "DaxHeap"), simulator: PowerLossSimulator? = nil
    ) throws(HeapError) -> Heap {
        try open(path: path, mode: mode, logger: logger, sysfsRoot: "/sys", faults: nil, simulator: simulator,
                 acceptNewDeviceLayout: acceptNewDeviceLayout)
    }

    /// `open` with the test hooks: a fake sysfs tree, injected metadata faults, and the bad
    /// ranges the platform is to report. `resizing`: a read-write open of a device larger
    /// than its heap is allowed (for a grow, a shrink or a repair). `identityDevice`: as
    /// for `create`.
    package static func open(
        path: String, mode: HeapMode, logger: Logger, sysfsRoot: String, faults: MetadataFaults?,
        simulator: PowerLossSimulator? = nil, resizing: Bool = false, reportedBadRanges: [BadRange]? = nil,
        acceptNewDeviceLayout: Bool = false, identityDevice: DeviceNumber? = nil
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
        let layout = try DeviceLayoutFinding.find(recorded: metadata.identity, heapSize: metadata.deviceSize, device: device,
                                                  sysfsRoot: sysfsRoot, emulated: identityDevice, path: path)
        if mode == .readWrite, !acceptNewDeviceLayout, let change = layout.change(path: path) { throw change }
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
        let accepted = mode == .readWrite && acceptNewDeviceLayout ? acceptLine(layout, recorded: metadata.identity) : nil
        if let accepted { repairs.append(accepted) }
        var cells: [UInt64: ArenaCell] = [:]
        for (id, layout) in table.arenas { cells[id] = ArenaCell(layout) }
        let state = HeapState(table: table, generation: metadata.generation, primary: statuses.primary,
                              secondary: statuses.secondary, cells: cells, image: choice.image, uuid: metadata.uuid,
                              highestGeneration: found.highestGeneration, identity: metadata.identity, layout: layout)
        let heap = Heap(device: device, state: state, repairs: repairs, logger: logger, faults: faults,
                        reportedBadRanges: reportedBadRanges)
        if accepted != nil { try heap.recordDeviceLayout(layout) }
        return heap
    }

    // MARK: - Facts
    //
    // They stay readable after close(): the heap as it was when closed.

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
    /// arena table's invariants, and reports what it found. Never writes. On a closed heap
    /// it reads nothing and reports one problem, ``HeapError/heapClosed(path:)``.
    public func check() -> HeapCheckReport {
        state.withLock { s in
            guard !isClosed else {
                return HeapCheckReport(primary: s.primary, secondary: s.secondary, badBlocks: [],
                                       problems: [HeapError.heapClosed(path: path).description])
            }
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
                badBlocks = try Self.badBlocks(on: device, reported: reportedBadRanges, table: s.table)
                problems += badBlocks.map(\.description)
            } catch {
                problems.append("\(error)")
            }
            if let change = s.layout.change(path: path) { problems.append(change.description) }
            let oldCopies = MetadataIO.oldCopies(of: s.uuid, table: s.table, on: device)
            problems += oldCopies.map(\.description)
            return HeapCheckReport(primary: s.primary, secondary: s.secondary, badBlocks: badBlocks, problems: problems,
                                   oldCopies: oldCopies)
        }
    }

    /// The device's known bad ranges (libpmem2's bad-block list; on device-dax, the
    /// region's badblocks), each split by what it hits: a metadata copy, an arena at an
    /// arena offset, or free space.
    public func badBlocks() throws(HeapError) -> [BadBlock] {
        // Under the state lock, which close() holds to set the flag: the device stays open.
        try state.withLock { s throws(HeapError) in
            try ensureOpen()
            return try Self.badBlocks(on: device, reported: reportedBadRanges, table: s.table)
        }
    }

    private static func badBlocks(on device: MappedDevice, reported: [BadRange]?, table: ArenaTable) throws(HeapError) -> [BadBlock] {
        let ranges: [BadRange]
        do throws(DeviceError) {
            ranges = try device.badRanges(reported: reported)
        } catch {
            throw HeapError(error)
        }
        return ranges.flatMap { bad in
            // Past the heap's end (a device larger than its heap), no arena or copy lives.
            let end = bad.offset + bad.length
            let pastEnd = end > table.deviceSize
                ? [BadBlock(deviceOffset: max(bad.offset, table.deviceSize), length: end - max(bad.offset, table.deviceSize), location: .pastHeapEnd)]
                : []
            return table.owners(of: bad.offset ..< end).map { piece in
                let location: BadBlock.Location = switch piece.owner {
                case .primaryMetadata: .primaryMetadata
                case .secondaryMetadata: .secondaryMetadata
                case .arena(let name, let offset): .arena(name: name, offset: offset)
                case .unallocated: .unallocated
                }
                return BadBlock(deviceOffset: piece.range.lowerBound, length: Geometry.length(of: piece.range), location: location)
            } + pastEnd
        }
    }

    /// Re-reads both copies and rewrites every one that is not ok from the heap's current
    /// table. Returns what it repaired; a copy whose rewrite meets a media error stays
    /// unreadable (see ``check()``), logged with what the operator must do.
    @discardableResult
    public func repair() throws(HeapError) -> [String] {
        try provisioning.withLock { _ throws(HeapError) -> [String] in
            try ensureOpen()  // close() sets the flag under this lock: past here the device stays open
            guard device.mode == .readWrite else { throw .readOnly(path: path) }
            return try state.withLock { s throws(HeapError) -> [String] in
                refreshStatuses(&s)
                var statuses = (primary: s.primary, secondary: s.secondary)
                let repaired = try Self.repairCopies(image: s.image, generation: s.generation, heapSize: s.table.deviceSize,
                                                     statuses: &statuses, device: device, logger: logger, faults: faults)
                (s.primary, s.secondary) = statuses
                return repaired + clearOldCopies(state: &s)
            }
        }
    }

    private func refreshStatuses(_ s: inout HeapState) {
        s.primary = MetadataIO.status(of: MetadataIO.read(.primary, heapSize: s.table.deviceSize, on: device), current: s.image, generation: s.generation)
        s.secondary = MetadataIO.status(of: MetadataIO.read(.secondary, heapSize: s.table.deviceSize, on: device), current: s.image, generation: s.generation)
    }

    // MARK: - Arenas

    /// The arena called `name`; throws ``HeapError/unknownArena(_:)`` if there is none (see
    /// ``findArena(named:)`` for a lookup that returns nil instead).
    public func arena(named name: String) throws(HeapError) -> Arena {
        guard let arena = try findArena(named: name) else { throw .unknownArena(name) }
        return arena
    }

    /// The arena called `name`, or nil if there is none. Throws only on a closed heap
    /// (``HeapError/heapClosed(path:)``).
    public func findArena(named name: String) throws(HeapError) -> Arena? {
        try state.withLock { s throws(HeapError) in
            try ensureOpen()
            guard let id = s.table.ids[name], let cell = s.cells[id] else { return nil }
            return Arena(heap: self, cell: cell)
        }
    }

    /// The arena a reference points into, and the reference's offset checked against it.
    public func resolve(_ reference: PersistentReference) throws(HeapError) -> Arena {
        let arena = try state.withLock { s throws(HeapError) in
            try ensureOpen()
            guard let cell = s.cells[reference.arenaID] else { throw HeapError.unknownArena("#\(reference.arenaID)") }
            return Arena(heap: self, cell: cell)
        }
        guard let size = arena.withLayout({ $0.size }) else { throw arena.goneError() }
        guard reference.offset <= size else {
            throw .outOfRange(arena: arena.name, offset: reference.offset, count: 0, arenaSize: size)
        }
        return arena
    }

    /// Creates an arena of `size` bytes (a positive multiple of 2 MiB). Its bytes read as
    /// zero. It is placed first-fit and may span several discontiguous extents.
    @discardableResult
    public func createArena(named name: String, size: UInt64) throws(HeapError) -> Arena {
        let id = try change([Step(.create(name: name, size: size))])[0]
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
        _ = try change([Step(.resize(name: name, size: size))])
    }

    /// Resizes the arena with this persistent id (what a handle holds: a handle to a
    /// destroyed arena must not reach a newer arena that took its name).
    func resizeArena(id: UInt64, name: String, to size: UInt64) throws(HeapError) {
        _ = try change([Step(.resize(name: name, size: size), expectedID: id)])
    }

    /// Destroys an arena, returning its space to the heap. Returns once no access can
    /// still reach it; handles to it then fail with ``HeapError/unknownArena(_:)`` (and
    /// their ``Arena/size`` is 0), even once another arena takes the name.
    public func destroyArena(named name: String) throws(HeapError) {
        _ = try change([Step(.destroy(name: name))])
    }
}
