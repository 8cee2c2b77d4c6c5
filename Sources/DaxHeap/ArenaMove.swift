import DaxArenas
import DaxDevice
import DaxMetadata
import DaxResourceTree
import Logging

// Moving an arena's extents below a new end, so that a shrink can proceed (issue 15,
// docs/FORMAT.md, "Moving an arena"): the data is copied durably into free space first,
// then one metadata update points the arena at it.

/// What ``Heap/moveArena(path:named:below:logger:simulator:)`` did.
public struct ArenaMove: Equatable, Sendable {
    /// The arena's bytes that moved (0: nothing lay at or past the limit).
    public var movedBytes: UInt64
    /// The arena's extents after the move, ordered by arena offset.
    public var extents: [Extent]
    /// What the open repaired first, one line each (as ``Heap/repairs``).
    public var repairs: [String]
}

extension Heap {
    /// Moves every part of arena `name` that lies at or past the usable end of a heap of
    /// `size` bytes (`size` − 2 MiB) into free space below it, so that
    /// ``shrink(path:to:logger:simulator:)`` to `size` can proceed. The arena keeps its
    /// bytes, its size and its id; only where they live changes.
    ///
    /// Crash-safe: the bytes are copied into free space and made durable first, and only
    /// then does one metadata update (both copies, the next generation) point the arena at
    /// the copies; interrupted at any point, the heap has the arena where it was, or where
    /// it moved, with its bytes. Refused, changing nothing, if the free space below the
    /// limit is too small (``HeapError/noSpace(requested:available:)``), with the same size
    /// rules as a shrink. Opens the heap read-write (refused while any process has it open),
    /// so that no access to the arena can run during the copy.
    ///
    /// - Parameter simulator: for crash-consistency tests only (see ``open(path:mode:acceptNewDeviceLayout:logger:simulator:)``).
    @discardableResult
    public static func moveArena(
        path: String, named name: String, below size: UInt64, logger: Logger = Logger(label: "DaxHeap"),
        simulator: PowerLossSimulator? = nil
    ) throws(HeapError) -> ArenaMove {
        guard Geometry.isAligned(size) else { throw .deviceSizeNotAligned(path: path, size: size) }
        guard size >= Geometry.minimumDeviceSize else { throw .deviceTooSmall(path: path, size: size) }
        let heap = try open(path: path, mode: .readWrite, logger: logger, sysfsRoot: "/sys", faults: nil,
                            simulator: simulator, resizing: true)
        defer { try? heap.close() }
        guard size <= heap.heapSize else { throw .sizeAboveHeap(path: path, requested: size, heapSize: heap.heapSize) }
        var move = try heap.moveArena(named: name, below: Geometry.secondaryOffset(deviceSize: size))
        move.repairs = heap.repairs
        return move
    }

    /// The move on this heap, opened exclusively by the caller (no handle to it exists).
    private func moveArena(named name: String, below limit: UInt64) throws(HeapError) -> ArenaMove {
        try provisioning.withLock { _ throws(HeapError) -> ArenaMove in
            try state.withLock { s throws(HeapError) -> ArenaMove in
                guard let id = s.table.ids[name], let layout = s.table.arenas[id] else { throw .unknownArena(name) }
                let (extents, copies) = try Self.placement(of: layout, below: limit, in: s.table)
                let moved = copies.reduce(UInt64(0)) { $0 + $1.length }
                guard moved > 0 else { return ArenaMove(movedBytes: 0, extents: layout.extents.map(Extent.init), repairs: []) }
                guard MetadataCopy.fits(arenas: s.table.arenas.count, extents: s.table.extentCount - layout.extents.count + extents.count) else {
                    throw .tableFull(arenas: s.table.arenas.count, extents: s.table.extentCount - layout.extents.count + extents.count)
                }
                guard s.highestGeneration < UInt64.max - 1 else { throw .generationExhausted(path: path) }
                guard case .success(var metadata) = MetadataCopy.decode(s.image),
                      let index = metadata.arenas.firstIndex(where: { $0.id == id })
                else {
                    throw .corruptMetadata(path: path, primary: "the heap's own table does not decode", secondary: "not used")
                }
                // 1. The bytes, into space no arena holds, durable before the table names it.
                for copy in copies { try self.copy(copy) }
                // 2. One update points the arena at them.
                let generation = s.highestGeneration + 1
                metadata.arenas[index].extents = extents
                metadata.generation = generation
                let table: ArenaTable
                do throws(ResourceTreeError) {
                    table = try ArenaTable(metadata: metadata)
                } catch {
                    throw .corruptMetadata(path: path, primary: "table rejected after the move: \(error)", secondary: "not used")
                }
                let image = MetadataCopy.encode(metadata)
                try commit(image, generation: generation, state: &s)
                // No handle to this heap exists (the caller opened it for the move alone),
                // so the cells need not be published; the heap is closed next.
                s.table = table
                s.image = image
                s.generation = generation
                logger.info("moved an arena", metadata: ["path": "\(path)", "arena": "\(name)", "bytes": "\(moved)"])
                return ArenaMove(movedBytes: moved, extents: extents.map(Extent.init), repairs: [])
            }
        }
    }

    /// One piece of the arena to copy: `length` bytes from device offset `from` to `to`.
    struct MovedPiece: Equatable {
        var from: UInt64
        var to: UInt64
        var length: UInt64
    }

    /// The arena's extents with every byte at or past `limit` placed first-fit in the
    /// free gaps below it (merged where they touch in the device and the arena), and the
    /// pieces to copy. Throws ``HeapError/noSpace(requested:available:)`` if they do not fit.
    static func placement(of layout: ArenaLayout, below limit: UInt64, in table: ArenaTable) throws(HeapError) -> ([ExtentRecord], [MovedPiece]) {
        var kept: [ExtentRecord] = []
        var moving: [ExtentRecord] = []
        for e in layout.extents {
            let end = e.deviceOffset + e.length
            if end <= limit {
                kept.append(e)
            } else if e.deviceOffset >= limit {
                moving.append(e)
            } else {
                let below = limit - e.deviceOffset
                kept.append(ExtentRecord(deviceOffset: e.deviceOffset, arenaOffset: e.arenaOffset, length: below))
                moving.append(ExtentRecord(deviceOffset: limit, arenaOffset: e.arenaOffset + below, length: end - limit))
            }
        }
        let needed = moving.reduce(UInt64(0)) { $0 + $1.length }
        guard needed > 0 else { return (layout.extents, []) }
        var gaps = table.owners(of: Geometry.blockSize ..< limit).filter { $0.owner == .unallocated }.map(\.range)
        let available = gaps.reduce(UInt64(0)) { $0 + Geometry.length(of: $1) }
        guard available >= needed else { throw .noSpace(requested: needed, available: available) }
        var placed: [ExtentRecord] = []
        var copies: [MovedPiece] = []
        for piece in moving {
            var done: UInt64 = 0
            while done < piece.length {
                let gap = gaps[0]
                let length = min(piece.length - done, Geometry.length(of: gap))
                placed.append(ExtentRecord(deviceOffset: gap.lowerBound, arenaOffset: piece.arenaOffset + done, length: length))
                copies.append(MovedPiece(from: piece.deviceOffset + done, to: gap.lowerBound, length: length))
                done += length
                if length == Geometry.length(of: gap) { gaps.removeFirst() } else { gaps[0] = gap.lowerBound + length ..< gap.upperBound }
            }
        }
        var extents: [ExtentRecord] = []
        for e in (kept + placed).sorted(by: { $0.arenaOffset < $1.arenaOffset }) {
            if let last = extents.last, last.deviceOffset + last.length == e.deviceOffset, last.arenaOffset + last.length == e.arenaOffset {
                extents[extents.count - 1].length += e.length
            } else {
                extents.append(e)
            }
        }
        return (extents, copies)
    }

    /// Copies one piece through the guarded copy, in chunks, each made durable.
    private func copy(_ piece: MovedPiece) throws(HeapError) {
        let chunk = min(piece.length, 64 << 20)
        var buffer = [UInt8](repeating: 0, count: Int(chunk))
        var done: UInt64 = 0
        while done < piece.length {
            let length = Int(min(chunk, piece.length - done))
            do throws(DeviceError) {
                try buffer.withUnsafeMutableBytes { raw in
                    Result { () throws(DeviceError) in
                        let bytes = UnsafeMutableRawBufferPointer(rebasing: raw[0 ..< length])
                        try device.guardedRead(offset: piece.from + done, into: bytes)
                        try device.guardedMemcpyPersist(offset: piece.to + done, from: UnsafeRawBufferPointer(bytes))
                    }
                }.get()
            } catch {
                throw HeapError(error)
            }
            done += UInt64(length)
        }
    }
}
