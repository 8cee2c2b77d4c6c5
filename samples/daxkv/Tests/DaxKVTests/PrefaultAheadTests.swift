import DaxHeap
@testable import DaxKV
import DaxTestSupport
import Foundation
import Testing

@Suite("DaxKV prefault ahead")
struct PrefaultAheadTests {
    static let valueSize = 4000  // about 500 records a segment, 64 in the last eighth

    static func key(_ i: Int) -> [UInt8] { Array(String(format: "key-%08d", i).utf8) }
    static func value(_ i: Int) -> [UInt8] { [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: valueSize) }

    /// A fill: the put that brings the tail within `prefaultAheadRoom` of its segment's
    /// end grows the data arena (nothing to compact) and prefaults the segment the switch
    /// will take; the switch takes that segment, and the claim is spent with it.
    @Test("a fill's put claims, grows and prefaults the next tail, and the switch takes it")
    func aFillClaimsTheNextTail() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let store = try KVStore.open(heap: try scratch.heap(), options: .oneShard)
        let shard = store.only
        func state() -> (tail: UInt64, segment: Int, switches: Int, claimedAt: Int, next: Int?, free: Int) {
            shard.lock.withLock {
                (shard.tail, shard.tailSegment, shard.tailSwitches, shard.prefaultClaimedAt, shard.freeSegments.last, shard.freeSegments.count)
            }
        }
        var i = 0
        var seen = 0, grownByClaims = 0  // switches whose claim was checked
        while seen < 4 {
            let before = state(), growths = store.dataGrowths
            try store.put(Self.key(i), Self.value(i))
            i += 1
            let after = state()
            if after.switches != before.switches {
                // The switch took the segment claimed before it.
                #expect(after.claimedAt == before.switches, "the switch from segment \(before.segment) came without a claim")
                continue
            }
            guard before.claimedAt != before.switches, after.claimedAt == after.switches else { continue }
            // This put made the claim: the tail is in the last eighth of its segment.
            #expect(Format.segmentEnd(after.segment) - after.tail <= Shard.prefaultAheadRoom)
            #expect(Format.segmentEnd(after.segment) - before.tail > Shard.prefaultAheadRoom)
            let next = try #require(after.next)
            // (Or, the store's initial segment, when it was created.)
            #expect(shard.lock.withLock { shard.wasPrefaultedAhead(next) || shard.segmentPrefaulted[next] }, "segment \(next) should be prefaulted ahead")
            // Fewer than two free segments: the switch would have grown the arena, so the claim did.
            #expect(store.dataGrowths == growths + (before.free < 2 ? 1 : 0))
            if before.free < 2 { grownByClaims += 1 }
            // Fill to the switch: it takes `next`.
            while state().switches == after.switches {
                try store.put(Self.key(i), Self.value(i))
                i += 1
            }
            #expect(state().segment == next)
            #expect(!shard.lock.withLock { shard.wasPrefaultedAhead(next) }, "a claim is spent by its switch")
            seen += 1
        }
        #expect(grownByClaims > 0, "a fill from a small arena should have grown by claims")
        // One writer prefaults each claim before its next put: no switch had to, under the lock.
        #expect(shard.switchPrefaults.load(ordering: .relaxed) == 0)
        for j in 0 ..< i { #expect(try store.get(Self.key(j)) == Self.value(j)) }
    }

    /// A prefault that finishes after the switch it was claimed for (the switch then
    /// prefaulted the segment itself) does not count for a later switch to the same
    /// segment: only a claim made since the last switch does.
    @Test("a prefault claimed before an earlier switch does not count for the next")
    func aLateClaimDoesNotCount() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let store = try KVStore.open(heap: try scratch.heap(), options: .oneShard)
        let shard = store.only
        try shard.lock.withLock {
            _ = try shard.grow()
            let next = try #require(shard.freeSegments.last)
            let switches = shard.tailSwitches
            shard.prefaultedAhead.store(Shard.prefaultClaim(switches: switches - 1, segment: next), ordering: .releasing)
            #expect(!shard.wasPrefaultedAhead(next))
            shard.prefaultedAhead.store(Shard.prefaultClaim(switches: switches + 1, segment: next), ordering: .releasing)
            #expect(!shard.wasPrefaultedAhead(next))
            shard.prefaultedAhead.store(Shard.prefaultClaim(switches: switches, segment: next - 1), ordering: .releasing)
            #expect(!shard.wasPrefaultedAhead(next))
            shard.prefaultedAhead.store(Shard.prefaultClaim(switches: switches, segment: next), ordering: .releasing)
            #expect(shard.wasPrefaultedAhead(next))
        }
    }

    /// The claim grows the arena without the writer lock, so a switch (another writer's)
    /// may need the growth at the same time: whichever asks second for growth past the same
    /// segment count finds it done and does not grow again, and the new segments join the
    /// free ones once, under the lock, whoever adopts them.
    @Test("a growth asked for again past the same size is not made twice, and is adopted once")
    func aGrowthIsMadeOnce() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let store = try KVStore.open(heap: try scratch.heap(), options: .oneShard)
        let shard = store.only
        let segments = shard.lock.withLock { shard.segmentLive.count }
        #expect(try shard.growArena(beyond: segments))
        let growths = store.dataGrowths, size = shard.data.size
        #expect(growths == 1 && size > UInt64(segments) << Format.segmentShift)
        #expect(try shard.growArena(beyond: segments), "the arena is past that size already")
        #expect(store.dataGrowths == growths && shard.data.size == size)
        shard.lock.withLock {
            #expect(shard.segmentLive.count == segments, "grown, not yet adopted")
            let free = shard.freeSegments
            shard.adoptNewSegments()
            let now = Int(size >> Format.segmentShift)
            #expect(shard.segmentLive.count == now && shard.segmentPrefaulted.count == now && shard.segmentZeroed.count == now)
            #expect(shard.freeSegments == Array((segments ..< now).reversed()) + free)
            shard.adoptNewSegments()
            #expect(shard.freeSegments.count == free.count + now - segments, "adopted once")
        }
    }

    /// Two writers of one shard from a one-segment arena: claims grow it without the lock
    /// while switches grow it with the lock, racing. No segment is lost or taken twice.
    @Test("two writers of one shard grow it by claims and switches without losing a segment")
    func twoWritersGrowOneShard() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let store = try KVStore.open(heap: try scratch.heap(), options: KVStoreOptions(initialDataSize: Format.segmentSize).oneShard)
        let shard = store.only
        let perWriter = 3000  // 6,000 records of 4 KB: about 12 segments
        _ = try KVStore.inParallel(2) { w in
            for i in w * perWriter ..< (w + 1) * perWriter { try store.put(Self.key(i), Self.value(i)) }
        }
        #expect(store.dataGrowths > 2)
        store.checkInvariants("after two writers grew one shard")
        shard.lock.withLock {
            #expect(shard.segmentLive.count == Int(shard.data.size >> Format.segmentShift), "every segment of the arena adopted")
            #expect(Set(shard.freeSegments).count == shard.freeSegments.count, "no segment free twice")
            #expect(shard.freeSegments.allSatisfy { shard.segmentLive[$0] == 0 && $0 != shard.tailSegment })
        }
        for i in 0 ..< 2 * perWriter { #expect(try store.get(Self.key(i)) == Self.value(i)) }
    }

    /// Rounds of overwrites on a store of four segments: every round frees segments, which
    /// the log takes as its tail again. Each reused segment is zeroed ahead by the put that
    /// claims it, after the lock, so no switch zeroes one under the lock; each reuse is
    /// still counted once for the readers, before the zeroing. Fails without the zeroing
    /// ahead (every reuse a switch's own zeroing).
    @Test("reused segments are zeroed ahead, not by the switch under the lock")
    func reusedSegmentsZeroedAhead() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let keys = 300  // about 0.6 segment of 4 KB records
        do {
            let store = try KVStore.open(heap: try scratch.heap(), options: KVStoreOptions(initialDataSize: 4 * Format.segmentSize).oneShard)
            let shard = store.only
            for round in 0 ..< 12 {
                for i in 0 ..< keys { try store.put(Self.key(i), Self.value(i + round)) }
                store.checkInvariants("round \(round)")
            }
            #expect(store.usage.segments == 4, "no growth: the log turned over in its four segments")
            #expect(shard.spaceReuses.load(ordering: .relaxed) >= 4, "segments were reused")
            #expect(shard.switchZeroings.load(ordering: .relaxed) == 0)
            for i in 0 ..< keys { #expect(try store.get(Self.key(i)) == Self.value(i + 11)) }
        }
        // Reopened: nothing to replay, and every value there (the zeroing ahead left no
        // stale record past the tail for the replay to take).
        let store = try KVStore.open(heap: try Heap.open(path: scratch.file("heap")), options: .oneShard)
        #expect(store.recovery.recordsReplayed == 0)
        for i in 0 ..< keys { #expect(try store.get(Self.key(i)) == Self.value(i + 11)) }
    }

    /// Two writers of one shard overwrite keys on a store that never grows: segments are
    /// freed and reused all along, zeroed ahead by one writer's put while the other appends
    /// (and, when the other reaches the switch first, waits for the zeroing). Values,
    /// invariants and the free list hold.
    @Test("two writers of one shard reuse segments zeroed ahead")
    func twoWritersReuseSegments() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let store = try KVStore.open(heap: try scratch.heap(), options: KVStoreOptions(initialDataSize: 6 * Format.segmentSize).oneShard)
        let shard = store.only
        let perWriter = 200, rounds = 15
        _ = try KVStore.inParallel(2) { w in
            for round in 0 ..< rounds {
                for i in w * perWriter ..< (w + 1) * perWriter { try store.put(Self.key(i), Self.value(i + round)) }
            }
        }
        #expect(store.usage.segments == 6)
        #expect(shard.spaceReuses.load(ordering: .relaxed) >= 4)
        store.checkInvariants("after two writers reused segments")
        shard.lock.withLock {
            #expect(Set(shard.freeSegments).count == shard.freeSegments.count, "no segment free twice")
            #expect(shard.freeSegments.allSatisfy { shard.segmentLive[$0] == 0 && $0 != shard.tailSegment })
        }
        for i in 0 ..< 2 * perWriter { #expect(try store.get(Self.key(i)) == Self.value(i + rounds - 1)) }
    }
}

