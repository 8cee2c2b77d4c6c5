// The log's segments: switching the tail, compaction, growth.
import DaxHeap
import Synchronization  // Atomic: the counts readers load

#if canImport(Glibc)
import Glibc
#endif

extension Shard {
    // MARK: Segments: switching, growth, compaction

    /// Makes the tail segment one with room for a record of `needed` bytes.
    func advance(needed: Int) throws {
        var triedGrowth = false
        while true {
            if tail + UInt64(needed) <= Format.segmentEnd(tailSegment) { return }
            // One free segment stays in reserve as compaction's destination.
            if freeSegments.count >= 2 {
                try switchToFreeSegment()
                continue
            }
            if let victim = compactionVictim(evenWithoutDeadRecords: triedGrowth) {
                let capacity = Format.segmentEnd(freeSegments.last!) - Format.segmentStart(freeSegments.last!)
                // Worth it before growing if it frees enough of a segment (the option;
                // half by default); after growth failed, any gain will do.
                func worthIt(_ liveBytes: Int) -> Bool {
                    let room = capacity - UInt64(liveBytes)
                    return room >= UInt64(needed) && (Double(room) >= Double(capacity) * reclaimBeforeGrowth || triedGrowth)
                }
                // Walked before and no record of it died since: the same records, no gain.
                let known = unprofitableWalk.flatMap { $0.segment == victim && $0.live == segmentLive[victim] ? $0.liveBytes : nil }
                if known.map(worthIt) ?? true, let plan = planCompaction(of: victim) {
                    if worthIt(plan.bytes) {
                        try compact(plan)
                        continue
                    }
                    unprofitableWalk = (victim, segmentLive[victim], plan.bytes)
                }
            }
            if !triedGrowth {
                triedGrowth = true
                if try grow() { continue }
                continue  // retry compaction accepting any gain
            }
            throw KVError.storeFull(store: name, needed: UInt64(needed),
                                    detail: "the heap has no free space for the data arena to grow and no segment holds enough reclaimable space")
        }
    }

    /// Makes the last free segment the tail.
    func switchToFreeSegment() throws {
        let segment = freeSegments.last!
        // A writer zeroing it ahead, without the lock, finishes first (PrefaultAhead.swift);
        // if it succeeded, the segment reads as zero and its reuse was counted.
        awaitZeroingAhead(of: segment)
        observeZeroingAhead()
        // May fail: nothing has changed yet. Skipped if this window did it before, or a
        // writer did it ahead (PrefaultAhead.swift).
        if !segmentPrefaulted[segment] && !wasPrefaultedAhead(segment) {
            try prefault(data, segment: segment, store: name)
            switchPrefaults.incrementByWriter()
        }
        segmentPrefaulted[segment] = true
        tailSwitches += 1
        freeSegments.removeLast()
        if unprofitableWalk?.segment == segment { unprofitableWalk = nil }  // its records are gone
        let old = tailSegment
        let reused = !segmentZeroed[segment]
        // A get may still hold a slot into the segment's earlier use: counted before the
        // first byte changes (the drain below keeps the zeroing's non-temporal stores after
        // this store; release: after the stores that redirected those slots).
        if reused { countSpaceReuse() }
        // Invariant 3 (README): every slot stored so far (the last put's or delete's, a
        // group's) is durable before the segment is zeroed or the tail word stored, since
        // from then on the replay reads only the new tail. A fence of its own, right after
        // the flush: a store may reach the media before the fence that follows it, so the
        // one persisting the tail word below comes too late to order the slots before it.
        try flushPendingSlot()
        index.drain()
        // Invariant 4: past the tail, the tail segment is zero, so the replay at open stops
        // at the end of what was written there and never reads a stale record of the
        // segment's earlier use. Zeroed and persisted before it becomes the tail.
        if reused {
            try zeroSegment(segment)
            switchZeroings.incrementByWriter()
        }
        segmentZeroed[segment] = false
        try data.store(UInt64(segment), at: Format.tailSegmentOffset)
        try data.persist(at: Format.tailSegmentOffset, count: Format.wordSize)
        tailSegment = segment
        segmentAppended[segment] = 0
        tail = Format.segmentStart(segment)
        if segmentLive[old] == 0 && old != segment && !damagedSegments.contains(old) { addFreeSegment(old) }
    }

    /// Zeroes data segment `segment` and makes the zeros durable (invariant 4: a reused
    /// segment, before it becomes the tail; at a switch, or ahead of it).
    func zeroSegment(_ segment: Int) throws {
        let start = Format.segmentStart(segment)
        try data.memsetPersist(at: start, value: 0, count: Format.segmentEnd(segment) - start)
    }

    /// Raises the reuse count (`spaceReuses`), before the first byte of reused space
    /// changes; the caller's next fence orders it before the changes' non-temporal stores.
    /// Writer only (a plain store: no read-modify-write).
    func countSpaceReuse() {
        spaceReuses.store(spaceReuses.load(ordering: .relaxed) &+ 1, ordering: .releasing)
    }

    /// The segment `advance` considers compacting before it grows the arena: the victim,
    /// when a free segment is there to take its records and, unless
    /// `evenWithoutDeadRecords` (growth failed), it holds a dead record: a victim known to
    /// hold none is not walked (a fill's case). `claimPrefaultAhead` asks the same.
    func compactionVictim(evenWithoutDeadRecords: Bool) -> Int? {
        guard !freeSegments.isEmpty, let victim = victim(),
              evenWithoutDeadRecords || segmentAppended[victim] != segmentLive[victim] else { return nil }
        return victim
    }

    /// The full segment with the fewest live records.
    func victim() -> Int? {
        var best: Int? = nil
        for s in 0 ..< segmentLive.count where s != tailSegment && segmentLive[s] > 0 && !damagedSegments.contains(s) {
            if best == nil || segmentLive[s] < segmentLive[best!] { best = s }
        }
        return best
    }

    /// What compacting a segment would move: its live records, each with the slot that
    /// points at it, and their total size. `to` is filled in by `compact`.
    struct CompactionPlan {
        struct Relocation { var from: UInt64; var size: Int; var slotAt: UInt64; var tag: UInt64; var to: UInt64 = 0 }
        let victim: Int
        var relocations: [Relocation] = []
        var bytes = 0
    }

    /// Walks `segment`, collecting its live records (checked against their checksums);
    /// nil (and the segment marked damaged) when a live record is damaged or cannot be
    /// found. Valid until the writer next changes a slot.
    ///
    /// Two passes: the records' headers in log order (sequential reads) and their keys'
    /// hashes; then each key's probe for the slot pointing at its record, with the bucket
    /// of the key `probeAhead` records on requested first, so that the probes' misses
    /// overlap rather than follow one another.
    func planCompaction(of segment: Int) -> CompactionPlan? {
        compactionWalks.incrementByWriter()
        var plan = CompactionPlan(victim: segment)
        let table = currentTable()
        compactionCandidates.removeAll(keepingCapacity: true)
        var offset = Format.segmentStart(segment)
        let end = Format.segmentEnd(segment)
        while offset + UInt64(Format.recordHeaderSize) <= end {
            let base = record(offset)
            guard let lengths = RecordLengths(base.load(fromByteOffset: Format.lengthWordOffset, as: UInt64.self)),
                  offset + UInt64(lengths.size) <= end else { break }
            if !lengths.isDelete {  // a delete record is never live
                compactionCandidates.append((offset, lengths, hash64(base + Format.keyOffset, lengths.keyCount, seed: Seeds.key)))
            }
            offset += UInt64(lengths.size)
        }
        let candidates = compactionCandidates.count
        for i in 0 ..< min(Self.probeAhead, candidates) { requestBucket(table, hash: compactionCandidates[i].hash) }
        for i in 0 ..< candidates {
            if plan.relocations.count == segmentLive[segment] { break }  // every live record found
            if i + Self.probeAhead < candidates { requestBucket(table, hash: compactionCandidates[i + Self.probeAhead].hash) }
            let (from, lengths, hash) = compactionCandidates[i]
            guard let (position, slot) = slotPointing(to: from, hash: hash, table) else { continue }
            guard recordIsIntact(record(from), lengths) else { break }
            plan.relocations.append(.init(from: from, size: lengths.size, slotAt: position, tag: Format.slotTag(slot)))
            plan.bytes += lengths.size
        }
        if plan.relocations.count != segmentLive[segment] {
            damagedSegments.insert(segment)
            return nil
        }
        return plan
    }

    /// How many records ahead `planCompaction` requests buckets: enough misses in flight
    /// to cover one probe's wait.
    static let probeAhead = 16

    /// Moves the live records `plan` found (with no slot changed since) into the reserve
    /// segment, which becomes the tail: the copies are made durable (one fence), then the
    /// slots (one more). Only then is the victim free.
    func compact(_ plan: CompactionPlan) throws {
        var plan = plan
        try switchToFreeSegment()
        for i in plan.relocations.indices {
            let r = plan.relocations[i]
            record(tail).copyMemory(from: record(r.from), byteCount: r.size)
            try data.flush(at: tail, count: UInt64(r.size))
            plan.relocations[i].to = tail
            tail += UInt64(r.size)
        }
        data.drain()
        for r in plan.relocations {
            atomicStore(indexWord(r.slotAt), Format.slot(tag: r.tag, offset: r.to))
            try index.flush(at: r.slotAt, count: Format.slotSize)
        }
        index.drain()
        segmentLive[tailSegment] += plan.relocations.count
        segmentAppended[tailSegment] += plan.relocations.count
        segmentLive[plan.victim] = 0
        addFreeSegment(plan.victim)
        compactionCount.incrementByWriter()
    }

    /// Grows the data arena online (lock held) and takes the new segments as free ones;
    /// false when the heap has no room.
    func grow() throws -> Bool {
        guard try growArena(beyond: segmentLive.count) else { return false }
        adoptNewSegments()
        return true
    }

    /// Makes the data arena hold more than `segments` segments, growing it by a quarter
    /// (at least a segment) unless another thread already did: true once it does, false
    /// when the heap has no room. Needs no writer lock (the claim of a put grows without
    /// it: the heap zeroes what it adds, on a device-dax a `pmem_memset_persist` of the
    /// whole step, which the shard's other writers should not wait out); growths of the
    /// shard are serialized by `growthLock`. The new segments are mapped into the window
    /// on return and free for the writer to take (`adoptNewSegments`, lock held). Each is
    /// prefaulted when it becomes the tail, or ahead (PrefaultAhead.swift), not here.
    func growArena(beyond segments: Int) throws -> Bool {
        try growthLock.withLock { (_: inout Void) throws -> Bool in
            let size = data.size
            if Int(size >> Format.segmentShift) > segments { return true }  // grown meanwhile
            let quarter = max(Format.segmentSize, (size / 4) & ~(Format.segmentSize - 1))
            for step in Set([quarter, 2 * Format.segmentSize, Format.segmentSize]).sorted(by: >) {
                do throws(HeapError) {
                    try data.arena.resize(to: size + step)
                } catch {
                    if isOutOfSpace(error) { continue }
                    throw error
                }
                growthCount.incrementByWriter()  // every growth holds `growthLock`
                return true
            }
            return false
        }
    }

    /// Lock held: the segments the data arena has beyond the writer's bookkeeping (grown by
    /// `growArena`, here or in another thread) become free ones, taken in order after the
    /// older free ones. They read as zero (new arena space) and are not prefaulted yet.
    func adoptNewSegments() {
        let old = segmentLive.count
        let now = Int(data.size >> Format.segmentShift)
        guard now > old else { return }
        segmentLive += [Int](repeating: 0, count: now - old)
        segmentAppended += [Int](repeating: 0, count: now - old)
        segmentZeroed += [Bool](repeating: true, count: now - old)
        segmentPrefaulted += [Bool](repeating: false, count: now - old)
        freeSegments = Array((old ..< now).reversed()) + freeSegments.filter { $0 < old }
    }
}

/// Maps data segment `segment` into `window` now, writable (`ArenaWindow.prefault`):
/// one call instead of a page fault per 4 KiB inside later puts, and a file system
/// without room for the pages says so here, with an error, instead of with SIGBUS at a
/// store. Older kernels lack the call; their pages fault in as they are used.
func prefault(_ window: ArenaWindow, segment: Int, store: String) throws {
    do throws(HeapError) {
        try window.prefault(at: UInt64(segment) << Format.segmentShift, count: Format.segmentSize)
    } catch {
        guard case .io(_, _, _, let message) = error else { throw KVError.heap(error) }
        throw KVError.storeFull(store: store, needed: Format.segmentSize, detail: "the file system cannot back data segment \(segment) (\(message))")
    }
}

