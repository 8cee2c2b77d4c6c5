// The next tail segment prepared (grown into, prefaulted, zeroed) by a writer that does
// not hold the lock.
import Synchronization  // Atomic: what was prefaulted and zeroed ahead

extension Shard {
    // Prefaulting a segment (`prefault`, MADV_POPULATE_WRITE) takes 1.5 ms on this
    // machine's tmpfs for a fresh 2 MiB (the kernel allocates and zeroes 512 pages) and
    // 0.2 ms for one already populated. Done by `switchToFreeSegment`, under the lock, it
    // stalled every other writer: with random keys a second writer needs the same shard
    // within a few puts. So once the tail segment is nearly full, a writer claims the
    // segment the next switch will take (the last free one, also when the switch will
    // compact into it) and prefaults it after it has let go of the lock; the switch then
    // skips its own prefault if that one finished. A reused segment is zeroed so too
    // (`claimZeroing`): a switch waits for a zeroing ahead of its segment to finish. When the switch would
    // have to grow the data arena first (a fill's case), the claim grows it, also after
    // the lock (the heap zeroes what it adds: on a device-dax a persisted memset of a
    // quarter of the arena), a little earlier than the switch would have, then takes the
    // lock again to add the new segments to the free ones and claim the next tail among
    // them. A switch that comes first grows (or finds grown) the arena itself.
    //
    // A claim is made at most once a tail segment. A prefault claim is valid only for the
    // switch it was made before: `tailSwitches` in the high 32 bits of the claim tells a
    // prefault that finished too late (after the switch, which then prefaulted the
    // segment itself) from one that finished in time. A zeroing claim stays until the
    // writer sees it finished (`zeroingAhead`), and its segment stays the last free one.

    /// What a writer does for the next tail once it has let go of the lock.
    enum Ahead {
        /// Prefault the claimed segment (`prefaultAhead`), zero it (`zeroAhead`: a reused
        /// segment), or both.
        case prepare(UInt64, prefault: Bool, zero: Bool)
        /// Grow the data arena past this many segments, then claim the next tail (`growAhead`).
        case grow(beyond: Int)
    }

    /// Under the lock, after a write: what the caller is to do for the next tail segment
    /// once it has let go of the lock (`prepareAhead`), or nil (nothing due, or nothing to do).
    @inline(__always)
    func claimPrefaultAhead() -> Ahead? {
        guard prefaultClaimedAt != tailSwitches,
              Format.segmentEnd(tailSegment) - tail <= Self.prefaultAheadRoom else { return nil }
        return claimNextTail()
    }

    private func claimNextTail() -> Ahead? {
        prefaultClaimedAt = tailSwitches
        // With fewer than two free segments the switch compacts or grows first. When it
        // will grow (nothing to compact: a fill's case), the growth is done ahead, so that
        // the segment it adds can be prefaulted ahead. When it compacts, it compacts into
        // the last free segment (the reserve), which is the one claimed, as otherwise.
        if freeSegments.count < 2 && compactionVictim(evenWithoutDeadRecords: false) == nil {
            return .grow(beyond: segmentLive.count)
        }
        return claimFreeTail()
    }

    /// The claim on the segment the next switch takes (the last free one), if it needs a
    /// prefault or zeroing (lock held).
    private func claimFreeTail() -> Ahead? {
        guard let next = freeSegments.last else { return nil }
        let claim = Self.prefaultClaim(switches: tailSwitches, segment: next)
        let prefault = !segmentPrefaulted[next]
        let zero = claimZeroing(of: next, claim)
        return prefault || zero ? .prepare(claim, prefault: prefault, zero: zero) : nil
    }

    /// Lock held: whether the caller is to zero `segment`, a reused one, ahead. A switch
    /// zeroes a reused segment before it becomes the tail (invariant 4), under the lock, a
    /// persisted 2 MiB memset that the shard's other writers wait out; done ahead, only the
    /// claiming put waits for it. What the switch does first is done here: the slots that
    /// released the segment's records are made durable (invariant 3) and the reuse is
    /// counted for gets that may still hold such a slot, both before the segment's first
    /// byte changes (the drain orders them before the zeroing's non-temporal stores).
    /// One zeroing ahead at a time.
    private func claimZeroing(of segment: Int, _ claim: UInt64) -> Bool {
        guard !segmentZeroed[segment] else { return false }  // never written since it was added
        observeZeroingAhead()
        guard zeroingAhead == nil, (try? flushPendingSlot()) != nil else { return false }
        countSpaceReuse()
        index.drain()
        zeroingAhead = (segment, claim)
        return true
    }

    /// Lock held: if the zeroing ahead has finished, forgets it, and a segment it zeroed
    /// that is still free is known to read as zero (its reuse was counted when claimed).
    func observeZeroingAhead() {
        guard let (segment, claim) = zeroingAhead, zeroAheadFinished.load(ordering: .acquiring) == claim else { return }
        if zeroedAhead.load(ordering: .acquiring) == claim && freeSegments.contains(segment) { segmentZeroed[segment] = true }
        zeroingAhead = nil
    }

    /// Lock held, at a switch to `segment`: if a writer is zeroing it ahead, waits until
    /// that zeroing has finished, so that none of its stores lands after the switch's first
    /// record (the zeroing writer holds no lock, so it always finishes).
    func awaitZeroingAhead(of segment: Int) {
        guard let (zeroing, claim) = zeroingAhead, zeroing == segment else { return }
        var backoff = Backoff()
        while zeroAheadFinished.load(ordering: .acquiring) != claim { backoff.wait() }
    }

    /// Lock held: `segment` (no live record any more) joins the free ones. Taken from the
    /// end; so it goes below a last one being zeroed ahead, which stays the next tail.
    func addFreeSegment(_ segment: Int) {
        if let zeroing = zeroingAhead?.segment, freeSegments.last == zeroing {
            freeSegments.insert(segment, at: freeSegments.count - 1)
        } else {
            freeSegments.append(segment)
        }
    }

    /// Without the lock: carries out what `claimPrefaultAhead` asked for.
    func prepareAhead(_ ahead: Ahead) {
        switch ahead {
        case let .prepare(claim, prefault, zero):
            if prefault { prefaultAhead(claim) }
            if zero { zeroAhead(claim) }
        case .grow(let segments): growAhead(beyond: segments)
        }
    }

    /// Without the lock: zeroes and persists the claimed reused segment, then says it has
    /// finished, and whether it succeeded (a failure is left for the switch, which zeroes
    /// the segment itself). No writer appends to the segment meanwhile: it is free, and a
    /// switch to it waits for this (`awaitZeroingAhead`).
    private func zeroAhead(_ claim: UInt64) {
        if (try? zeroSegment(Int(claim & Self.claimSegmentMask))) != nil {
            zeroedAhead.store(claim, ordering: .releasing)
        }
        zeroAheadFinished.store(claim, ordering: .releasing)
    }

    /// Without the lock: grows the data arena (unless a switch did meanwhile), then, under
    /// the lock, takes the new segments as free ones and claims the next tail among them,
    /// and prepares it. A failed growth is left for the switch, which grows or compacts
    /// itself and reports a full store.
    private func growAhead(beyond segments: Int) {
        guard (try? growArena(beyond: segments)) == true else { return }
        let ahead = lock.withLock {
            adoptNewSegments()
            return claimFreeTail()
        }
        if let ahead { prepareAhead(ahead) }
    }

    /// Without the lock: prefaults the claimed segment and records that it did. A failure
    /// is left for the switch, which prefaults the segment again and reports it (a file
    /// system without room). The segment lies below the data arena's size, which only
    /// grows while the store is open, and its window stays mapped meanwhile.
    func prefaultAhead(_ claim: UInt64) {
        let segment = Int(claim & Self.claimSegmentMask)
        guard (try? prefault(data, segment: segment, store: name)) != nil else { return }
        prefaultedAhead.store(claim, ordering: .releasing)
    }

    /// At a switch (lock held): whether `segment` was prefaulted ahead for this switch.
    func wasPrefaultedAhead(_ segment: Int) -> Bool {
        prefaultedAhead.load(ordering: .acquiring) == Self.prefaultClaim(switches: tailSwitches, segment: segment)
    }

    /// How close to its end the tail segment is when the next one is claimed: 1/8 of a
    /// segment is about 1,600 small records, many times the puts one prefault takes, and
    /// the prefault's zeroed lines are still in the cache when the switch comes (claimed
    /// at half a segment, the one-writer fill was 3 % slower).
    static let prefaultAheadRoom = Format.segmentSize / 8

    private static let claimSegmentMask: UInt64 = 0xFFFF_FFFF

    /// `switches` (wrapped to 32 bits: a stale claim would need 2^32 switches to pass
    /// for a fresh one) above the segment (below 2^32: the arena is under 8 PiB).
    static func prefaultClaim(switches: Int, segment: Int) -> UInt64 {
        UInt64(truncatingIfNeeded: switches) << 32 | UInt64(segment) & claimSegmentMask
    }
}
