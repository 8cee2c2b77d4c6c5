import DaxArenas
import DaxDevice
import DaxMetadata
import Logging

/// What open found on the device: the copy in effect, where the heap ends, and what an
/// interrupted grow or shrink left behind (docs/FORMAT.md, "Device growth and shrink").
struct MetadataFound {
    /// The copy in effect, and the states of the heap's own two copies: the primary at
    /// device offset 0, the secondary in the heap's last block.
    var choice: MetadataIO.Choice
    /// The highest generation of any copy of this heap that open read: the next update
    /// takes a higher one, so that no number is used for two different tables.
    var highestGeneration: UInt64
    /// Device offsets of valid copies of this heap, outside its two places and older
    /// than the copy in effect: left by an interrupted grow or shrink. A read-write open
    /// clears them, so that no later open can mistake one for the heap.
    var leftovers: [UInt64] = []

    /// The heap's size as its metadata records it: its secondary copy lives in the last
    /// 2 MiB block of it, and its usable region ends there. At most the device's size.
    var heapSize: UInt64 { choice.metadata.deviceSize }
}

extension MetadataIO {
    /// The lowest device offset a secondary copy can have: that of the smallest heap.
    static let lowestSecondaryOffset = Geometry.secondaryOffset(deviceSize: Geometry.minimumDeviceSize)

    /// The open rule (docs/FORMAT.md, "Device growth and shrink"): a valid primary's
    /// recorded size says where its secondary is; on a device larger than that, the
    /// device's last block may hold the newer copy of a grow interrupted after its first
    /// write. Without a valid primary, the device's last block is the secondary, and, if
    /// no copy ever lived there, the highest-generation copy found at the end of the heap
    /// it records (a grown device whose heap was not grown yet).
    static func locate(on device: MappedDevice, path: String) throws(HeapError) -> MetadataFound {
        let primary = read(at: Geometry.primaryOffset, on: device)
        guard case .valid(let p, _) = primary else {
            return try locateWithoutPrimary(primary, on: device, path: path)
        }
        guard p.deviceSize <= device.size else {
            // Cut short: the secondary and the end of the usable region are gone.
            throw .sizeMismatch(path: path, recorded: p.deviceSize, actual: device.size)
        }
        let secondaryOffset = Geometry.secondaryOffset(deviceSize: p.deviceSize)
        let secondary = readSecondary(at: secondaryOffset, on: device)
        var found = MetadataFound(choice: try choose(primary: primary, secondary: secondary, path: path),
                                  highestGeneration: max(p.generation, generation(of: secondary, uuid: p.uuid) ?? 0))
        guard p.deviceSize < device.size else { return found }
        let tailOffset = Geometry.secondaryOffset(deviceSize: device.size)
        guard case .valid(let t, let tailImage) = readSecondary(at: tailOffset, on: device), t.uuid == p.uuid else {
            return found
        }
        found.highestGeneration = max(found.highestGeneration, t.generation)
        let current = found.choice.metadata.generation
        if t.generation > current {
            // A grow interrupted after its first write: its new secondary is the newest
            // copy, so the grow rolls forward; the old secondary is left over.
            found.choice = Choice(
                metadata: t, image: tailImage,
                primary: MetadataCopyStatus(state: .stale, detail: "generation \(p.generation), the secondary at the device's end has \(t.generation)", generation: p.generation),
                secondary: MetadataCopyStatus(state: .ok, generation: t.generation))
            if generation(of: secondary, uuid: p.uuid) != nil { found.leftovers.append(secondaryOffset) }
        } else if t.generation < current {
            // The secondary of the heap before a shrink, past the heap's end now.
            found.leftovers.append(tailOffset)
        }
        return found
    }

    /// Open without a valid primary: the device's last block, else (only when the primary
    /// is damaged rather than absent, and no copy ever lived in the last block) the scan.
    private static func locateWithoutPrimary(_ primary: ReadResult, on device: MappedDevice, path: String) throws(HeapError) -> MetadataFound {
        let tailOffset = Geometry.secondaryOffset(deviceSize: device.size)
        let tail = readSecondary(at: tailOffset, on: device)
        var secondary = tail
        if case .invalid(.notADaxHeap) = tail, isDamaged(primary), let copy = scanForSecondary(below: tailOffset, on: device) {
            secondary = copy
        }
        let choice = try choose(primary: primary, secondary: secondary, path: path)
        return MetadataFound(choice: choice, highestGeneration: choice.metadata.generation)
    }

    /// Whether a copy that is not valid still shows that a heap lives here: damaged
    /// (it has the magic) or unreadable, as opposed to absent or of another version.
    private static func isDamaged(_ result: ReadResult) -> Bool {
        switch result {
        case .valid, .invalid(.notADaxHeap), .invalid(.unsupportedVersion): false
        case .invalid(.corrupt), .unreadable: true
        }
    }

    /// The valid copy of the highest generation among the blocks below `offset` that each
    /// hold a secondary copy where the size it records puts it, or nil.
    private static func scanForSecondary(below offset: UInt64, on device: MappedDevice) -> ReadResult? {
        var best: ReadResult?
        var bestGeneration: UInt64 = 0
        var at = offset
        while at > lowestSecondaryOffset {
            at -= Geometry.blockSize
            let result = readSecondary(at: at, on: device)
            if case .valid(let metadata, _) = result, best == nil || metadata.generation > bestGeneration {
                best = result
                bestGeneration = metadata.generation
            }
        }
        return best
    }

    /// The generation of a valid copy of the heap `uuid`, or nil.
    static func generation(of result: ReadResult, uuid: HeapUUID) -> UInt64? {
        guard case .valid(let metadata, _) = result, metadata.uuid == uuid else { return nil }
        return metadata.generation
    }
}

extension Heap {
    /// What a read-write open repairs: every copy of the heap that is not ok is rewritten
    /// (``repairCopies(image:generation:heapSize:statuses:device:logger:faults:)``), then
    /// every copy left over by an interrupted grow or shrink is cleared, where no arena
    /// holds its block. A leftover that cannot be cleared is logged, not thrown: it is
    /// older than the heap's copies, which win over it at every open.
    static func repairAtOpen(
        _ found: MetadataFound, table: ArenaTable,
        statuses: inout (primary: MetadataCopyStatus, secondary: MetadataCopyStatus),
        device: MappedDevice, logger: Logger, faults: MetadataFaults?
    ) throws(HeapError) -> [String] {
        var repairs = try repairCopies(image: found.choice.image, generation: found.choice.metadata.generation,
                                       heapSize: found.heapSize, statuses: &statuses, device: device, logger: logger,
                                       faults: faults)
        for offset in found.leftovers where isFree(offset, in: table) {
            if let line = MetadataIO.clearOldCopy(at: offset, generation: nil, on: device, logger: logger) { repairs.append(line) }
        }
        return repairs
    }

    /// Whether the 2 MiB block at `offset` is free space of the heap, or past its end.
    static func isFree(_ offset: UInt64, in table: ArenaTable) -> Bool {
        table.owners(of: offset ..< offset + Geometry.blockSize).allSatisfy { $0.owner == .unallocated }
    }
}

/// A valid copy of a heap's metadata at neither of its two places: in the heap's free
/// space or past its end, left by a grow or shrink that was interrupted (or whose clearing
/// failed). It never wins beside a valid primary, but could be taken by open's last-resort
/// scan should the primary be lost; `Heap.repair(path:)` (`daxheap check --repair`) clears it.
public struct OldMetadataCopy: Hashable, Sendable, CustomStringConvertible {
    /// Where the copy is: the last block of the heap of ``recordedSize`` bytes it describes.
    public var deviceOffset: UInt64
    public var generation: UInt64
    public var recordedSize: UInt64

    public init(deviceOffset: UInt64, generation: UInt64, recordedSize: UInt64) {
        self.deviceOffset = deviceOffset
        self.generation = generation
        self.recordedSize = recordedSize
    }

    public var description: String {
        "old metadata copy of this heap at device offset \(deviceOffset) (generation \(generation), a heap of \(recordedSize) bytes), left by an interrupted grow or shrink; `daxheap check --repair` clears it"
    }
}

extension MetadataIO {
    /// Every valid copy of the heap `uuid` in a block where a secondary could have lived
    /// (each block from 4 MiB to the device's last, bar the heap's own secondary) that no
    /// arena holds. Reads 8 bytes of each such block, and the copy where they are the magic.
    static func oldCopies(of uuid: HeapUUID, table: ArenaTable, on device: MappedDevice) -> [OldMetadataCopy] {
        let own = Geometry.secondaryOffset(deviceSize: table.deviceSize)
        var found: [OldMetadataCopy] = []
        var at = lowestSecondaryOffset
        while at + Geometry.blockSize <= device.size {
            defer { at += Geometry.blockSize }
            guard at != own, Heap.isFree(at, in: table), hasMagic(at: at, on: device),
                  case .valid(let metadata, _) = readSecondary(at: at, on: device), metadata.uuid == uuid
            else { continue }
            found.append(OldMetadataCopy(deviceOffset: at, generation: metadata.generation, recordedSize: metadata.deviceSize))
        }
        return found
    }

    /// Whether the block at `offset` starts with the DaxHeap magic (false if unreadable).
    static func hasMagic(at offset: UInt64, on device: MappedDevice) -> Bool {
        var magic = [UInt8](repeating: 0, count: MetadataCopy.magic.count)
        let read = magic.withUnsafeMutableBytes { raw in
            Result { () throws(DeviceError) in try device.guardedRead(offset: offset, into: raw) }
        }
        guard case .success = read else { return false }
        return magic == MetadataCopy.magic
    }
}

extension Heap {
    /// Clears every old copy of the heap (``MetadataIO/oldCopies(of:table:on:)``) and returns
    /// a line for each; a copy that cannot be cleared is logged. Takes both locks.
    func clearOldCopies() -> [String] {
        provisioning.withLock { _ in state.withLock { s in clearOldCopies(state: &s) } }
    }

    /// `clearOldCopies()` under the locks the caller holds. Their generations feed the
    /// highest generation, so that no later update reuses one.
    func clearOldCopies(state s: inout HeapState) -> [String] {
        guard !isClosed, device.mode == .readWrite else { return [] }
        var lines: [String] = []
        for copy in MetadataIO.oldCopies(of: s.uuid, table: s.table, on: device) {
            s.highestGeneration = max(s.highestGeneration, copy.generation)
            if let line = MetadataIO.clearOldCopy(at: copy.deviceOffset, generation: copy.generation, on: device, logger: logger) {
                lines.append(line)
            }
        }
        return lines
    }
}

extension MetadataIO {
    /// Clears the old copy at `offset` and returns the repair's line (logged as a warning),
    /// or nil when it could not be cleared (logged as an error, not thrown: the heap's own
    /// copies win over it at every open).
    static func clearOldCopy(at offset: UInt64, generation: UInt64?, on device: MappedDevice, logger: Logger) -> String? {
        do throws(DeviceError) {
            try clear(at: offset, on: device)
        } catch {
            logger.error("could not clear the old metadata copy at device offset \(offset): \(HeapError(error))")
            return nil
        }
        let which = generation.map { " (generation \($0))" } ?? ""
        let line = "cleared an old metadata copy at device offset \(offset)\(which), left by an interrupted grow or shrink"
        logger.warning("\(line)", metadata: ["path": "\(device.path)"])
        return line
    }
}
