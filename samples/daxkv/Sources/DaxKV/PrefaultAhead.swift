// The next tail segment prepared (grown into, prefaulted) by a writer that does not hold
// the lock.
import Synchronization  // Atomic: what was prefaulted ahead

extension Shard {
    // Prefaulting a segment (`prefault`, MADV_POPULATE_WRITE) takes 1.5 ms on this
    // machine's tmpfs for a fresh 2 MiB (the kernel allocates and zeroes 512 pages) and
    // 0.2 ms for one already populated. Done by `switchToFreeSegment`, under the lock, it
    // stalled every other writer: with random keys a second writer needs the same shard
    // within a few puts. So once the tail segment is nearly full, a writer claims the
    // segment the next switch will take (the last free one, when the switch will not
    // need to compact or grow) and prefaults it after it has let go of the lock; the
    // switch then skips its own prefault if that one finished. When the switch would
    // have to grow the data arena first (a fill's case), the claim grows it, also after
    // the lock (the heap zeroes what it adds: on a device-dax a persisted memset of a
    // quarter of the arena), a little earlier than the switch would have, then takes the
    // lock again to add the new segments to the free ones and claim the next tail among
    // them. A switch that comes first grows (or finds grown) the arena itself.
    //
    // A claim is made at most once a tail segment. It is valid only for the switch it
    // was made before: `tailSwitches` in the high 32 bits of the claim tells a prefault
    // that finished too late (after the switch, which then prefaulted the segment itself)
    // from one that finished in time.

    /// What a writer does for the next tail once it has let go of the lock.
    enum Ahead {
        /// Prefault the claimed segment (`prefaultAhead`).
        case prefault(UInt64)
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
        // the segment it adds can be prefaulted ahead; when it may compact, which segment
        // it ends on is not known yet.
        if freeSegments.count < 2 {
            guard compactionVictim(evenWithoutDeadRecords: false) == nil else { return nil }
            return .grow(beyond: segmentLive.count)
        }
        return claimFreeTail().map { .prefault($0) }
    }

    /// The claim on the segment the next switch takes, if it needs a prefault (lock held).
    private func claimFreeTail() -> UInt64? {
        guard freeSegments.count >= 2, let next = freeSegments.last, !segmentPrefaulted[next] else { return nil }
        return Self.prefaultClaim(switches: tailSwitches, segment: next)
    }

    /// Without the lock: carries out what `claimPrefaultAhead` asked for.
    func prepareAhead(_ ahead: Ahead) {
        switch ahead {
        case .prefault(let claim): prefaultAhead(claim)
        case .grow(let segments): growAhead(beyond: segments)
        }
    }

    /// Without the lock: grows the data arena (unless a switch did meanwhile), then, under
    /// the lock, takes the new segments as free ones and claims the next tail among them,
    /// and prefaults it. A failed growth is left for the switch, which grows or compacts
    /// itself and reports a full store.
    private func growAhead(beyond segments: Int) {
        guard (try? growArena(beyond: segments)) == true else { return }
        let claim = lock.withLock {
            adoptNewSegments()
            return claimFreeTail()
        }
        if let claim { prefaultAhead(claim) }
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
