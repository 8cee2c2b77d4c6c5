import DaxArenas
import DaxDevice
import DaxMetadata
import DaxResourceTree
import Logging

// Device growth and shrink: moving the heap's end (its secondary metadata copy and the end
// of its usable region) to follow a device an operator resized. The protocol and why a
// crash at any point leaves exactly the old or the new size: docs/FORMAT.md, "Device
// growth and shrink".

/// One arena's bytes at or past the usable end a shrink asked for: what would have to move.
public struct ArenaPastEnd: Hashable, Sendable, CustomStringConvertible {
    public var name: String
    /// Bytes of the arena at or past the new usable end.
    public var bytesPastEnd: UInt64

    public init(name: String, bytesPastEnd: UInt64) {
        self.name = name
        self.bytesPastEnd = bytesPastEnd
    }

    public var description: String { "arena \(debugQuoted(name)) has \(bytes(bytesPastEnd))" }
}

/// What ``Heap/grow(path:logger:simulator:)`` or ``Heap/shrink(path:to:logger:simulator:)`` did.
public struct HeapResize: Equatable, Sendable {
    /// The heap's size before, both metadata blocks included.
    public var previousSize: UInt64
    /// The heap's size after (the same when there was nothing to do).
    public var size: UInt64
    /// The device's size: the heap's after a grow; after a shrink, the device can be cut to ``size``.
    public var deviceSize: UInt64
    /// What the open repaired first, one line each (as ``Heap/repairs``); it stays even
    /// when the resize is refused.
    public var repairs: [String]
    /// What failed without undoing the resize, one line each: a metadata copy that could
    /// not be written (the resize stands in the other; `daxheap check --repair` rewrites it).
    public var warnings: [String]

    /// The usable region's size after: between the two metadata blocks.
    public var usableSize: UInt64 { size - 2 * Geometry.blockSize }
}

extension Heap {
    /// The heap's size as its metadata records it: its secondary copy lives in the last
    /// 2 MiB block of it and its usable region ends there. At most ``deviceSize``.
    public var heapSize: UInt64 { state.withLock { $0.table.deviceSize } }

    /// Bytes of the device past the heap's end: the device grew (``grow(path:logger:simulator:)``
    /// extends the heap over them), or was not cut yet after ``shrink(path:to:logger:simulator:)``.
    /// While this is not zero the heap opens read-only only.
    public var unusedDeviceSize: UInt64 { deviceSize - heapSize }

    // MARK: - Grow, shrink, repair: each opens the heap exclusively, acts, and closes it

    /// Extends the heap over its whole device, after the device grew (a file extended with
    /// truncate, a device-dax resized with `daxctl reconfigure-device`): the secondary
    /// metadata copy moves to the device's last 2 MiB block and the usable region grows up
    /// to it; an arena's highest extent can then extend in place into the new space, which
    /// reads as zero when an arena gets it. Crash-safe: an interrupted grow leaves exactly
    /// the old or the new size. Nothing to do (the heap spans the device) is no error.
    ///
    /// Opens the heap read-write (so it fails with ``HeapError/inUse(path:)`` while any
    /// process has it open) and, as every read-write open, first repairs a bad copy.
    ///
    /// - Parameter simulator: for crash-consistency tests only (see ``open(path:mode:acceptNewDeviceLayout:logger:simulator:)``).
    @discardableResult
    public static func grow(
        path: String, logger: Logger = Logger(label: "DaxHeap"), simulator: PowerLossSimulator? = nil
    ) throws(HeapError) -> HeapResize {
        try grow(path: path, logger: logger, sysfsRoot: "/sys", faults: nil, simulator: simulator)
    }

    /// `grow` with the test hooks: a fake sysfs tree and injected metadata faults.
    package static func grow(
        path: String, logger: Logger, sysfsRoot: String, faults: MetadataFaults?, simulator: PowerLossSimulator? = nil,
        identityDevice: DeviceNumber? = nil
    ) throws(HeapError) -> HeapResize {
        let heap = try open(path: path, mode: .readWrite, logger: logger, sysfsRoot: sysfsRoot, faults: faults,
                            simulator: simulator, resizing: true, identityDevice: identityDevice)
        return try heap.moveEnd(to: heap.deviceSize)
    }

    /// Moves the heap's end down to `size` bytes (a multiple of 2 MiB, at least 6 MiB, at
    /// most the heap's size), so that the device can then be cut to `size`: the secondary
    /// copy moves to the new last block. Refused, changing nothing, while any arena holds
    /// bytes at or past the new usable end (`size` - 2 MiB), with an error naming each and
    /// how many of its bytes lie there. Crash-safe like ``grow(path:logger:simulator:)``.
    ///
    /// Until the device is cut to `size`, the heap opens read-only only
    /// (``unusedDeviceSize``); ``grow(path:logger:simulator:)`` takes the shrink back.
    @discardableResult
    public static func shrink(
        path: String, to size: UInt64, logger: Logger = Logger(label: "DaxHeap"), simulator: PowerLossSimulator? = nil
    ) throws(HeapError) -> HeapResize {
        try shrink(path: path, to: size, logger: logger, sysfsRoot: "/sys", faults: nil, simulator: simulator)
    }

    /// `shrink` with the test hooks: a fake sysfs tree and injected metadata faults.
    package static func shrink(
        path: String, to size: UInt64, logger: Logger, sysfsRoot: String, faults: MetadataFaults?,
        simulator: PowerLossSimulator? = nil, identityDevice: DeviceNumber? = nil
    ) throws(HeapError) -> HeapResize {
        guard Geometry.isAligned(size) else { throw .deviceSizeNotAligned(path: path, size: size) }
        guard size >= Geometry.minimumDeviceSize else { throw .deviceTooSmall(path: path, size: size) }
        let heap = try open(path: path, mode: .readWrite, logger: logger, sysfsRoot: sysfsRoot, faults: faults,
                            simulator: simulator, resizing: true, identityDevice: identityDevice)
        let heapSize = heap.heapSize
        guard size <= heapSize else { throw .sizeAboveHeap(path: path, requested: size, heapSize: heapSize) }
        return try heap.moveEnd(to: size)
    }

    /// Opens the heap read-write, which rewrites every bad or stale metadata copy and
    /// clears the copies an interrupted grow or shrink left behind, and closes it; returns
    /// what it repaired (``repairs``). Unlike ``open(path:mode:acceptNewDeviceLayout:logger:simulator:)``
    /// it works on a device larger than its heap too (after an interrupted shrink, say), and
    /// it also clears every old copy of the heap that ``check()`` finds elsewhere
    /// (``HeapCheckReport/oldCopies``). `acceptNewDeviceLayout`: as for `open`.
    @discardableResult
    public static func repair(
        path: String, acceptNewDeviceLayout: Bool = false, logger: Logger = Logger(label: "DaxHeap"),
        simulator: PowerLossSimulator? = nil
    ) throws(HeapError) -> [String] {
        try repair(path: path, acceptNewDeviceLayout: acceptNewDeviceLayout, logger: logger, sysfsRoot: "/sys",
                   simulator: simulator)
    }

    /// `repair` with the test hooks (see `open`).
    package static func repair(
        path: String, acceptNewDeviceLayout: Bool, logger: Logger, sysfsRoot: String, simulator: PowerLossSimulator? = nil,
        identityDevice: DeviceNumber? = nil
    ) throws(HeapError) -> [String] {
        let heap = try open(path: path, mode: .readWrite, logger: logger, sysfsRoot: sysfsRoot, faults: nil,
                            simulator: simulator, resizing: true, acceptNewDeviceLayout: acceptNewDeviceLayout,
                            identityDevice: identityDevice)
        return heap.repairs + heap.clearOldCopies()
    }

    // MARK: - Moving the end

    /// Moves the heap's end to `newSize`: grows when larger, shrinks when smaller.
    func moveEnd(to newSize: UInt64) throws(HeapError) -> HeapResize {
        try provisioning.withLock { _ throws(HeapError) -> HeapResize in
            try state.withLock { s throws(HeapError) -> HeapResize in
                let oldSize = s.table.deviceSize
                var result = HeapResize(previousSize: oldSize, size: oldSize, deviceSize: device.size, repairs: repairs,
                                        warnings: [])
                guard newSize != oldSize else { return result }
                let (image, table) = try resized(s, to: newSize)
                let generation = s.highestGeneration + 1
                if newSize > oldSize {
                    result.warnings = try commitGrow(image, table: table, generation: generation, state: &s)
                } else {
                    result.warnings = try commitShrink(image, table: table, generation: generation, state: &s)
                }
                result.size = newSize
                logger.info("moved the heap's end", metadata: ["path": "\(path)", "from": "\(oldSize)", "to": "\(newSize)"])
                return result
            }
        }
    }

    /// The image and table of the heap at `newSize`, under the next generation, after
    /// checking that the end can move there. Changes nothing.
    private func resized(_ s: HeapState, to newSize: UInt64) throws(HeapError) -> ([UInt8], ArenaTable) {
        for copy in [MetadataIO.Copy.primary, .secondary] where s[status: copy].state != .ok {
            let status = s[status: copy]
            throw .resizeNeedsBothCopies(path: path, copy: copy.description,
                                         detail: status.state.rawValue + (status.detail.isEmpty ? "" : ": \(status.detail)"))
        }
        if newSize < s.table.deviceSize {
            let inTheWay = Self.arenasPastEnd(s.table, usableEnd: Geometry.secondaryOffset(deviceSize: newSize))
            guard inTheWay.isEmpty else { throw .arenasPastNewEnd(path: path, size: newSize, arenas: inTheWay) }
        }
        // A shrink whose first write fails uses up two numbers (the update's and the restore's).
        guard s.highestGeneration < UInt64.max - 1 else { throw .generationExhausted(path: path) }
        guard case .success(var metadata) = MetadataCopy.decode(s.image) else {
            throw .corruptMetadata(path: path, primary: "the heap's own table does not decode", secondary: "not used")
        }
        metadata.deviceSize = newSize
        metadata.generation = s.highestGeneration + 1
        // The device's layout now, where it can be read (it matched the recorded one at open).
        metadata.identity = s.layout.refreshed(metadata.identity)
        do throws(ResourceTreeError) {
            return (MetadataCopy.encode(metadata), try ArenaTable(metadata: metadata))
        } catch {
            // The arenas were checked to end below the new usable end: a bug, but refuse.
            throw .corruptMetadata(path: path, primary: "table rejected at the new size: \(error)", secondary: "not used")
        }
    }

    /// Every arena with bytes at or past `usableEnd`, and how many, ordered by name.
    static func arenasPastEnd(_ table: ArenaTable, usableEnd: UInt64) -> [ArenaPastEnd] {
        table.arenas.values.compactMap { layout -> ArenaPastEnd? in
            let past = layout.extents.reduce(UInt64(0)) { sum, e in
                let end = e.deviceOffset + e.length
                return end > usableEnd ? sum + end - max(e.deviceOffset, usableEnd) : sum
            }
            return past > 0 ? ArenaPastEnd(name: layout.name, bytesPastEnd: past) : nil
        }.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
    }

    /// A grow: the new secondary, in the device's last block, first; then the old secondary
    /// is cleared (free space of the grown heap, it must not outlive the grow, where no open
    /// would see it again); then the primary; each durable before the next. Until the
    /// primary is written, a valid primary still says the old size, and the new secondary
    /// wins over it by its higher generation; a torn primary leaves the new secondary the
    /// only valid copy, in the device's last block.
    private func commitGrow(_ image: [UInt8], table: ArenaTable, generation: UInt64, state s: inout HeapState) throws(HeapError) -> [String] {
        let oldEnd = Geometry.secondaryOffset(deviceSize: s.table.deviceSize)
        let newSize = table.deviceSize
        s.highestGeneration = generation  // used up even if the write fails
        do throws(DeviceError) {
            try MetadataIO.write(image, copy: .secondary, heapSize: newSize, on: device, faults: faults)
        } catch {
            // The block may hold the new copy after all (an msync error does not say the
            // bytes never arrived), and would then win at the next open: clear it.
            clearCopy(at: Geometry.secondaryOffset(deviceSize: newSize))
            throw .metadataWriteFailed(path: path, copy: "new secondary", reason: Self.reason(error))
        }
        adopt(image, table: table, generation: generation, state: &s)
        s.secondary = MetadataCopyStatus(state: .ok, generation: generation)
        s.primary = MetadataCopyStatus(state: .stale, detail: "not yet rewritten by the grow", generation: nil)
        clearCopy(at: oldEnd)
        var warnings: [String] = []
        do throws(DeviceError) {
            try MetadataIO.write(image, copy: .primary, heapSize: newSize, on: device, faults: faults)
            s.primary = MetadataCopyStatus(state: .ok, generation: generation)
        } catch {
            s.primary = Self.failedWriteStatus(error)
            warnings.append(standsAlone(in: .secondary, failed: .primary, error))
        }
        return warnings
    }

    /// A shrink: the primary, recording the new size, first; then the new secondary in
    /// the new last block. Until the primary is written the old secondary, in the
    /// device's last block, is the heap; from then on the primary is, and says where its
    /// secondary is. Then the old secondary, past the heap's end now, is cleared.
    private func commitShrink(_ image: [UInt8], table: ArenaTable, generation: UInt64, state s: inout HeapState) throws(HeapError) -> [String] {
        let oldEnd = Geometry.secondaryOffset(deviceSize: s.table.deviceSize)
        let newSize = table.deviceSize
        s.highestGeneration = generation  // used up even if the write fails
        do throws(DeviceError) {
            try MetadataIO.write(image, copy: .primary, heapSize: newSize, on: device, faults: faults)
        } catch {
            // The primary may hold the new table after all: put the current one back over it.
            s.primary = Self.failedWriteStatus(error)
            restoreCurrentTable(over: .primary, state: &s)
            throw .metadataWriteFailed(path: path, copy: "primary", reason: Self.reason(error))
        }
        adopt(image, table: table, generation: generation, state: &s)
        s.primary = MetadataCopyStatus(state: .ok, generation: generation)
        var warnings: [String] = []
        do throws(DeviceError) {
            try MetadataIO.write(image, copy: .secondary, heapSize: newSize, on: device, faults: faults)
            s.secondary = MetadataCopyStatus(state: .ok, generation: generation)
        } catch {
            s.secondary = Self.failedWriteStatus(error)
            warnings.append(standsAlone(in: .primary, failed: .secondary, error))
        }
        clearCopy(at: oldEnd)
        return warnings
    }

    private func adopt(_ image: [UInt8], table: ArenaTable, generation: UInt64, state s: inout HeapState) {
        if case .success(let metadata) = MetadataCopy.decode(image) { s.identity = metadata.identity }
        s.table = table
        s.image = image
        s.generation = generation
    }

    /// The warning for a resize whose second write failed: it stands in the first copy.
    private func standsAlone(in written: MetadataIO.Copy, failed: MetadataIO.Copy, _ error: DeviceError) -> String {
        let failure = HeapError.metadataWriteFailed(path: path, copy: failed.description, reason: Self.reason(error))
        logger.error("the resize stands in the \(written) metadata copy alone: \(failure)")
        return "the resize stands in the \(written) metadata copy alone: the \(failed) copy could not be written (\(Self.reason(error))); run `daxheap check --repair \(path)` once the device is fixed"
    }

    /// Clears a copy no open may take any more; a failure is logged (the copy is older
    /// than the heap's, which win over it).
    private func clearCopy(at offset: UInt64) {
        do throws(DeviceError) {
            try MetadataIO.clear(at: offset, on: device)
        } catch {
            logger.error("could not clear the old metadata copy at device offset \(offset): \(HeapError(error))")
        }
    }
}
