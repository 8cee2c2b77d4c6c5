// The seeded workload of the power-loss sweep (PowerLossTests.swift).
import DaxHeap
@testable import DaxKV
import DaxTestSupport

// MARK: - The workload

/// The seeded workload: the prefill that sets the scene, then the window's operations.
/// Keys are numbered (`key(n)`, Support.swift); values are stamped with their key's number
/// and a version of their own, so that every value names the put that wrote it.
///
/// The scene (README "Compaction", "Growth"): segment 0 holds the T keys' records (put,
/// then deleted) and the window's first small and A pairs, segment 1 the C pairs and dead
/// filler, segment 2 the B pairs and dead filler, nearly full and the tail; segment 3 is
/// the reserve. A segment is compacted when at least 95% of it would be reclaimed, and the
/// victim is the one with the fewest live records. So the window's first segment switch
/// compacts segment 1 (a few small live records) into segment 3; once segment 3 is full
/// the victim is segment 2, whose B pairs are too big to be worth moving, and the data
/// arena grows; that switch then reuses segment 1 (zeroed first). The T keys' tombstones
/// count towards the index's first rebuild (at 3/4 of its 4,096 slots) as pairs do, and
/// leave `roomBeforeRebuild` entries, which the window's new keys (those that land in an
/// empty slot rather than a tombstone) or a batch of that many pairs pass. Later, once
/// segment 1 is full again, the tail moves to a segment the growth added, which is known
/// to be zero and so is not zeroed: only there does the switch's own fence order the
/// last slot store before the new tail word (README "Crash argument", invariant 3).
struct Workload: Sendable {
    // One shard: the scene below is laid out in one log.
    static let options = KVStoreOptions(expectedKeys: 0, initialDataSize: 8 << 20, reclaimBeforeGrowth: 0.95, shards: 1)
    /// Index entries (pairs and tombstones) the window may add before the rebuild.
    static let roomBeforeRebuild = 2
    /// Small keys the window works on: 0 ..< smallKeys at first, new ones count up.
    static let smallKeys = 40
    /// Keys the window gives big values (overwrites, deletes, puts again).
    static let aKeys = 100_000 ..< 100_003
    /// Live pairs with big values in segment 2, which the window leaves alone.
    static let bKeys = 200_000 ..< 200_002
    /// Live pairs with small values in segment 1, which the window leaves alone.
    static let cKeys = 300_000 ..< 300_010
    static let filler = 400_000
    /// Takes a huge value now and then, deleted by the next operation.
    static let hugeKey = 600_000
    /// Put and deleted before the window: their tombstones bring the index close to its
    /// first rebuild.
    static let tKeys = 1_000_000 ..< 1_000_000 + 4096 * 3 / 4 - roomBeforeRebuild - smallKeys - aKeys.count - bKeys.count - cKeys.count - 2
    static let bigValue = 64 << 10
    /// The filler's records: 4 fill a segment (the segment's end is reached by the fifth).
    static let fillerRecord = 480 << 10
    /// Room left in the tail segment when the window starts: a few big values.
    static let roomAtStart = 160 << 10
    /// Keys whose gets every image checks (iteration checks every pair): those the window
    /// touches (added as it goes), and the small, A, B and C keys.
    static let gets = Set((Array(0 ..< smallKeys) + Array(aKeys) + Array(bKeys) + Array(cKeys)).map { key($0) })

    var random: SplitMix64
    /// Added to every key number the window uses: writers of a two-writer sweep keep apart.
    let keyBase: Int
    var version = 0
    /// The next small key never used.
    var nextSmall = smallKeys
    /// Keys present now (small and A keys), for overwrites and deletes to pick from.
    var present: [Int] = []
    var hugeIsPresent = false

    init(seed: UInt64, keyBase: Int = 0) {
        random = SplitMix64(seed: seed)
        self.keyBase = keyBase
    }

    mutating func value(of key: Int, size: Int) -> [UInt8] {
        version += 1
        return stamped(key, version: version, count: size)
    }

    mutating func smallValue(of key: Int) -> [UInt8] { value(of: key, size: 8 + random.below(120)) }
    /// 64 to 128 KiB: the window fills a segment with a few dozen of these.
    mutating func bigValue(of key: Int) -> [UInt8] { value(of: key, size: Self.bigValue + random.below(Self.bigValue)) }

    mutating func newSmallKey() -> Int {
        nextSmall += 1
        return keyBase + nextSmall - 1
    }

    /// Unarmed: sets the scene described above. Everything is acknowledged.
    mutating func prefill(_ store: KVStore, _ expectation: Locked<Expectation>) throws {
        precondition(keyBase == 0, "the one-writer scene uses the plain key numbers")
        var model: [[UInt8]: [UInt8]] = [:]
        func put(_ n: Int, _ value: [UInt8]) throws {
            try store.put(key(n), value)
            model[key(n)] = value
        }
        /// Dead filler: the filler key's values are zero (the image files stay sparse) and
        /// overwritten or deleted soon after.
        func putFiller(recordSize: Int) throws {
            let size = recordSize - Format.recordSize(keyCount: 16, valueCount: 0)
            try store.put(key(Self.filler), [UInt8](repeating: 0, count: size))
        }
        /// Fills the tail segment with dead filler until the tail moves to the next one.
        func fillSegment() throws {
            let free = store.usage.freeSegments
            while store.usage.freeSegments == free { try putFiller(recordSize: Self.fillerRecord) }
        }
        // Segment 0: first every key that is live when the window starts, and the filler
        // (the B and C keys and the filler with placeholders, overwritten below), then the
        // T keys, put in one batch and deleted. A key first put after the tombstones
        // could take one of them (or an empty slot), and the number of entries would be
        // a matter of luck: this way it is pairs + tombstones = 3072 - roomBeforeRebuild.
        for n in 0 ..< Self.smallKeys { try put(n, smallValue(of: n)) }
        for n in Self.aKeys { try put(n, smallValue(of: n)) }
        for n in Array(Self.bKeys) + Array(Self.cKeys) + [Self.filler, Self.hugeKey] { try store.put(key(n), value(of: n, size: 8)) }
        try store.put(batch: Self.tKeys.map { (key: key($0), value: value(of: $0, size: 8)) })
        for n in Self.tKeys { try store.delete(key(n)) }
        try fillSegment()
        // Segment 1: the C pairs, dead filler.
        for n in Self.cKeys { try put(n, smallValue(of: n)) }
        try fillSegment()
        // Segment 2 (the tail): a filler record (the one that moved the tail), the B pairs,
        // more filler and the filler's delete record, leaving `roomAtStart`.
        for n in Self.bKeys { try put(n, value(of: n, size: Self.bigValue)) }
        var used = Self.fillerRecord + Self.bKeys.count * Format.recordSize(keyCount: 16, valueCount: Self.bigValue)
        let end = Int(Format.segmentSize) - Format.recordSize(keyCount: 16, valueCount: 0) - Self.roomAtStart
        while used < end {
            let record = min(Self.fillerRecord, end - used)
            try putFiller(recordSize: record)
            used += record
        }
        try store.delete(key(Self.filler))
        try store.delete(key(Self.hugeKey))
        present = Array(0 ..< Self.smallKeys) + Array(Self.aKeys)
        expectation.withLock { [model] in
            $0.acknowledged = model
            $0.gets = Self.gets
        }
    }

    /// The window's next operation.
    mutating func nextOperation() -> Operation {
        if hugeIsPresent {  // deleted at once: it fills the log, not the checks
            hugeIsPresent = false
            return Operation(kind: .delete, steps: [Step(number: keyBase + Self.hugeKey, value: nil)])
        }
        let operation: Operation
        switch random.below(100) {
        case 0 ..< 8:  // a huge value (256 to 768 KiB), deleted by the next operation
            hugeIsPresent = true
            let size = 4 * Self.bigValue + random.below(8 * Self.bigValue)
            return Operation(kind: .put, steps: [Step(number: keyBase + Self.hugeKey, value: value(of: keyBase + Self.hugeKey, size: size))])
        case 8 ..< 40:  // a big value for an A key: an overwrite, or a put after a delete
            let n = keyBase + Self.aKeys.lowerBound + random.below(Self.aKeys.count)
            operation = Operation(kind: .put, steps: [Step(number: n, value: bigValue(of: n))])
        case 40 ..< 55:  // a new small key
            let n = newSmallKey()
            operation = Operation(kind: .put, steps: [Step(number: n, value: smallValue(of: n))])
        case 55 ..< 67 where !present.isEmpty:  // a small value for a present key
            let n = present[random.below(present.count)]
            operation = Operation(kind: .put, steps: [Step(number: n, value: smallValue(of: n))])
        case 67 ..< 82 where !present.isEmpty:  // delete a present key
            let n = present[random.below(present.count)]
            operation = Operation(kind: .delete, steps: [Step(number: n, value: nil)])
        case 82 ..< 94:  // a batch of 2 to 5 small pairs: new keys, present ones, one twice
            var keys: [Int] = []
            for _ in 0 ..< 2 + random.below(4) {
                let roll = random.below(10)
                if roll < 2, let first = keys.first {
                    keys.append(first)
                } else if roll < 6 || present.isEmpty {
                    keys.append(newSmallKey())
                } else {
                    keys.append(present[random.below(present.count)])
                }
            }
            var steps: [Step] = []
            for n in keys { steps.append(Step(number: n, value: smallValue(of: n))) }
            operation = Operation(kind: .batch, steps: steps)
        default:  // delete a key that is absent (never put)
            operation = Operation(kind: .delete, steps: [Step(number: keyBase + 500_000 + random.below(1000), value: nil)])
        }
        for step in operation.steps {
            if step.value == nil {
                present.removeAll { $0 == step.number }
            } else if !present.contains(step.number) {
                present.append(step.number)
            }
        }
        return operation
    }
}
