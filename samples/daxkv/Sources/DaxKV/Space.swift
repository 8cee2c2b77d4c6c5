// Giving space back to the heap: the data segments at the arena's end that hold no live
// record, and index space past the current table. Done at open only: an open store's
// windows keep its arenas mapped, and the heap refuses to shrink a mapped arena.
import DaxHeap
import Synchronization  // Atomic: the live count

extension Shard {
    /// Free segments kept at the data arena's end when space is given back: the reserve
    /// (compaction's destination) and one for the tail's next switch.
    static let keptFreeSegments = 2

    /// The sizes the arenas could shrink to, or nil when neither can or may: the data
    /// arena to its last segment that is the tail, holds a live record or is damaged, plus
    /// `keptFreeSegments`, but not below `minimumData` (the open's `initialDataSize`, so
    /// that a store created at that size keeps it); the index arena to the end of the current table (what lies past
    /// it is older tables or a rebuild a crash interrupted: no descriptor on the media
    /// points there, and no reader exists yet). Nil on a read-only heap, and while another
    /// window maps either arena (the same store open elsewhere in this process).
    func sizesAfterGivingBack(minimumData: UInt64) -> (data: UInt64, index: UInt64)? {
        guard heap.mode == .readWrite, index.arena.openWindowCount == 1, data.arena.openWindowCount == 1 else { return nil }
        return lock.withLock {
            var used = segmentLive.count
            while used > tailSegment + 1, segmentLive[used - 1] == 0, !damagedSegments.contains(used - 1) { used -= 1 }
            let dataSize = min(data.size, max(UInt64(used + Self.keptFreeSegments) << Format.segmentShift, roundUp2M(minimumData)))
            let table = currentTable()
            let indexSize = min(index.size, roundUp2M(table.offset + table.byteCount))
            return dataSize < data.size || indexSize < index.size ? (dataSize, indexSize) : nil
        }
    }

    /// What recovery found, carried to the store reopened on the shrunk arenas.
    struct RecoveredState {
        var descriptor: UInt64
        var tail: UInt64
        var tailSegment: Int
        var segmentLive: [Int]
        var segmentAppended: [Int]
        var segmentZeroed: [Bool]
        var freeSegments: [Int]
        var tombstones: Int
        var liveCount: Int
        var damagedSegments: Set<Int>
        var recovery: KVRecoveryStats
    }

    /// This store's writer state (just recovered: nothing pending).
    func recoveredState() -> RecoveredState {
        lock.withLock {
            RecoveredState(descriptor: descriptor.load(ordering: .relaxed), tail: tail, tailSegment: tailSegment, segmentLive: segmentLive,
                           segmentAppended: segmentAppended, segmentZeroed: segmentZeroed, freeSegments: freeSegments, tombstones: tombstones, liveCount: liveCount,
                           damagedSegments: damagedSegments, recovery: recovery)
        }
    }

    /// Takes over `state` for a data arena of `segments` segments (the ones past it were
    /// free and are gone).
    func resume(_ state: RecoveredState, segments: Int) {
        tail = state.tail
        tailSegment = state.tailSegment
        segmentLive = Array(state.segmentLive.prefix(segments))
        segmentAppended = Array(state.segmentAppended.prefix(segments))
        segmentZeroed = Array(state.segmentZeroed.prefix(segments))
        segmentPrefaulted = [Bool](repeating: false, count: segments)  // new windows
        tombstones = state.tombstones
        liveCount = state.liveCount
        damagedSegments = state.damagedSegments.filter { $0 < segments }
        freeSegments = state.freeSegments.filter { $0 < segments }
    }

    /// Closes `store` (just opened: recovered, every slot durable, no reader), shrinks its
    /// arenas to `sizes` and maps them again, keeping what recovery found.
    ///
    /// Crash-safe: no slot of the table the media's descriptor names points into the
    /// segments cut (recovery made every slot durable, and `segmentLive` counts them), the
    /// tail segment is kept, the index keeps that table, and each shrink is one atomic
    /// change of the heap's metadata: a crash leaves each arena at its old size or its
    /// new one, and the store opens either way. A shrink the heap refuses because the
    /// arena is mapped (the same store opened elsewhere in this process meanwhile) is
    /// skipped: the space stays with the store.
    static func giveBack(_ store: consuming Shard, shrinkingTo sizes: (data: UInt64, index: UInt64),
                         options: KVStoreOptions) throws -> Shard {
        let heap = store.heap, name = store.name, place = store.place
        let state = store.recoveredState()
        // Unmapped now, not whenever the last reference goes: nothing else holds the store.
        store.index.close()
        store.data.close()
        _ = consume store
        for (arena, size) in [(place.arenaName(name, .data), sizes.data), (place.arenaName(name, .index), sizes.index)] {
            guard let found = try heap.findArena(named: arena), found.size > size else { continue }
            do throws(HeapError) {
                try found.resize(to: size)
            } catch {
                guard case .arenaMapped = error else { throw error }
            }
        }
        guard let index = try heap.findArena(named: place.arenaName(name, .index))?.mapWindow(),
              let data = try heap.findArena(named: place.arenaName(name, .data))?.mapWindow() else {
            throw KVError.notAStore(store: name, reason: "its arenas vanished while it was reopened to give space back")
        }
        return try Shard(heap: heap, name: name, place: place, index: index, data: data, options: options, resuming: state)
    }
}
