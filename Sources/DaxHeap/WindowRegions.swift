import DaxArenas
import DaxDevice
import Synchronization

/// One open window's address space, as the heap's state tracks it: listed under the state
/// lock in `HeapState.windows` from the moment its extents are mapped until it is closed.
///
/// `@unchecked Sendable`: `base` and `reservation` never change; `size` and `isOpen` are
/// atomics, stored under the heap's state lock and read anywhere.
final class WindowRegion: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    /// Bytes of address space reserved from `base`.
    let reservation: UInt64
    /// Arena bytes mapped from `base`: the arena's size as of the last committed change.
    let size: Atomic<UInt64>
    /// False once closed (the reservation is then unmapped).
    let isOpen = Atomic<Bool>(true)

    init(base: UnsafeMutableRawPointer, reservation: UInt64, size: UInt64) {
        self.base = base
        self.reservation = reservation
        self.size = Atomic(size)
    }
}

/// What one provisioning change did to the open windows of its arena: the arena offsets it
/// mapped into each (empty unless the arena grew). Undone if the change fails; published
/// (the windows' sizes raised) once it is committed.
struct WindowGrowth {
    let device: MappedDevice
    let regions: [WindowRegion]
    let added: Range<UInt64>

    /// Gives the new range back to each window's reservation. Should that fail (ENOMEM
    /// when splitting a mapping), the pages stay mapped above the window's size, where no
    /// bounds-checked access reaches them, and a later grow maps over them again.
    func undo() {
        guard !added.isEmpty else { return }
        for region in regions {
            try? device.unmapFromWindow(at: region.base + Int(added.lowerBound), length: UInt64(added.count))
        }
    }

    func publish() {
        guard !added.isEmpty else { return }
        for region in regions { region.size.store(added.upperBound, ordering: .releasing) }
    }
}

extension Heap {
    /// The window side of a change to arena `name` (under the state lock, before the
    /// metadata commit): refuses to shrink or destroy an arena with open windows, or to
    /// grow it past a window's reservation or onto extents its device cannot map there;
    /// maps the grown range into every open window. Nothing is left changed when it throws.
    func mapGrowth(arena name: String, old: ArenaLayout?, new: ArenaLayout?, regions: [WindowRegion]) throws(HeapError) -> WindowGrowth {
        guard let old, !regions.isEmpty else { return WindowGrowth(device: device, regions: [], added: 0 ..< 0) }
        // The kernel refuses to shrink a device-dax that is mapped (-EBUSY); so do we.
        guard let new, new.size >= old.size else { throw .arenaMapped(arena: name, windows: regions.count) }
        let smallest = regions.map(\.reservation).min()!
        guard new.size <= smallest else {
            throw .windowReservationExceeded(arena: name, size: new.size, reservation: smallest)
        }
        let pieces = try windowPieces(of: new, from: old.size)
        var done: [WindowRegion] = []
        for region in regions {
            do throws(HeapError) {
                try map(pieces, into: region)
            } catch {
                // This window may hold some pieces: undo it with the ones done before.
                WindowGrowth(device: device, regions: done + [region], added: old.size ..< new.size).undo()
                throw error
            }
            done.append(region)
        }
        return WindowGrowth(device: device, regions: regions, added: old.size ..< new.size)
    }

    /// The device pieces of `layout` from arena offset `start` on, each checked against
    /// the device's alignment.
    func windowPieces(of layout: ArenaLayout, from start: UInt64) throws(HeapError) -> [(arenaOffset: UInt64, deviceOffset: UInt64, length: UInt64)] {
        let pieces = layout.pieces(offset: start, count: layout.size - start) ?? []
        let alignment = device.alignment
        // device-dax mmap rule: address, length and file offset are multiples of the
        // device's alignment. The base is aligned to it, so the arena offset stands for
        // the address. With the usual 2 MiB alignment every extent qualifies.
        for p in pieces where (p.arenaOffset | p.deviceOffset | p.length) % alignment != 0 {
            throw .windowMisaligned(arena: layout.name, arenaOffset: p.arenaOffset, deviceOffset: p.deviceOffset,
                                    length: p.length, alignment: alignment)
        }
        return pieces
    }

    /// Maps each piece at the window's base plus its arena offset.
    func map(_ pieces: [(arenaOffset: UInt64, deviceOffset: UInt64, length: UInt64)], into region: WindowRegion) throws(HeapError) {
        for p in pieces {
            do throws(DeviceError) {
                try device.mapIntoWindow(at: region.base + Int(p.arenaOffset), deviceOffset: p.deviceOffset, length: p.length)
            } catch {
                throw HeapError(error)
            }
        }
    }

    /// Reserves a window for the arena `id` and maps all of it there, registered in the
    /// state before the state lock is let go, so that no grow can fall between.
    func openWindow(arena: Arena, reserving requested: UInt64?) throws(HeapError) -> WindowRegion {
        try ensureOpen()
        let length = requested ?? usableSize
        guard length > 0, length % MappedDevice.granularity == 0 else {
            guard let size = arena.withLayout({ $0.size }) else { throw arena.goneError() }
            throw .invalidReservation(arena: arena.name, reservation: length, arenaSize: size)
        }
        let base: UnsafeMutableRawPointer
        do throws(DeviceError) { base = try device.reserveWindow(length: length) } catch { throw HeapError(error) }
        do throws(HeapError) {
            return try state.withLock { s throws(HeapError) -> WindowRegion in
                try ensureOpen()  // the device is closed only after close() sets it under this lock
                guard let layout = s.table.arenas[arena.id] else { throw .unknownArena(arena.name) }
                guard layout.size <= length else {
                    throw .invalidReservation(arena: arena.name, reservation: length, arenaSize: layout.size)
                }
                let region = WindowRegion(base: base, reservation: length, size: layout.size)
                try map(try windowPieces(of: layout, from: 0), into: region)
                s.windows[arena.id, default: []].append(region)
                return region
            }
        } catch {
            device.releaseWindow(base, length: length)  // and whatever was mapped into it
            throw error
        }
    }

    /// Closes a window: unlisted under the state lock (so a grow no longer maps into it
    /// and the count stays exact), then unmapped. False if it was already closed.
    @discardableResult
    func closeWindow(_ region: WindowRegion, arena id: UInt64) -> Bool {
        let removed = state.withLock { s -> Bool in
            guard let i = s.windows[id]?.firstIndex(where: { $0 === region }) else { return false }
            s.windows[id]!.remove(at: i)
            if s.windows[id]!.isEmpty { s.windows[id] = nil }
            region.isOpen.store(false, ordering: .releasing)
            return true
        }
        if removed { device.releaseWindow(region.base, length: region.reservation) }
        return removed
    }

    /// How many windows are open onto the arena `id`.
    func openWindows(arena id: UInt64) -> Int { state.withLock { $0.windows[id]?.count ?? 0 } }
}
