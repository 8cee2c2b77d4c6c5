import DaxHeap
@testable import DaxKV
import DaxTestSupport
import Foundation
import Testing

@Suite("DaxKV writer's copy of the keys")
struct KeyCacheTests {
    // MARK: The copy alone

    @Test("a remembered key is the same, another key or length different, a forgotten or long one unknown")
    func verdicts() {
        let table = Shard.Table(offset: 4096, log2Buckets: 3)
        let cache = KeyCache()
        cache.prepare(for: table)
        let slot3 = table.offset + 3 * Format.slotSize
        let a = bytes("sixteen-byte-key"), b = bytes("sixteen-byte-kez")
        #expect(verdict(cache, slot3, a) == .unknown, "a new copy knows nothing")
        remember(cache, slot3, a)
        #expect(verdict(cache, slot3, a) == .same)
        #expect(verdict(cache, slot3, b) == .different)
        #expect(verdict(cache, slot3, Array(a.prefix(15))) == .different, "a prefix is another key")
        #expect(verdict(cache, table.offset + 4 * Format.slotSize, a) == .unknown, "the next slot knows nothing")
        cache.forget(at: slot3)
        #expect(verdict(cache, slot3, a) == .unknown)
        let long = [UInt8](repeating: 7, count: KeyCache.maxKeyBytes + 1)
        remember(cache, slot3, a)
        remember(cache, slot3, long)
        #expect(verdict(cache, slot3, long) == .unknown, "a long key is compared in its record")
        #expect(verdict(cache, slot3, a) == .unknown, "and the key it replaced is forgotten")
        remember(cache, slot3, [9])
        #expect(verdict(cache, slot3, [9]) == .same, "a one-byte key")
        #expect(verdict(cache, slot3, [9, 0]) == .different)
    }

    @Test("a copy prepared for another table starts empty")
    func anotherTable() {
        let old = Shard.Table(offset: 4096, log2Buckets: 3), new = Shard.Table(offset: 8192, log2Buckets: 4)
        let cache = KeyCache()
        cache.prepare(for: old)
        let key = bytes("k")
        remember(cache, old.offset, key)
        cache.prepare(for: old)
        #expect(cache.knownKey(at: old.offset, of: old) == key, "the same table keeps its copy")
        cache.prepare(for: new)
        #expect(cache.knownKey(at: old.offset, of: old) == nil, "the copy describes the new table only")
        #expect(verdict(cache, new.offset, key) == .unknown)
        #expect(cache.knownKey(at: new.offset, of: new) == nil)
        // A rebuild's table may lie where one before it lay, at its size: the rebuild
        // starts the copy afresh, so the same offset and size start empty too.
        remember(cache, new.offset, key)
        cache.start(for: new)
        #expect(cache.knownKey(at: new.offset, of: new) == nil)
    }

    // MARK: The writer

    /// The reason for the copy: an update finds its key's slot without reading the old
    /// record. Fails without the copy (every update compares a record).
    @Test("updates of keys this writer put compare no record")
    func updatesReadNoRecord() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let store = try KVStore.open(heap: try scratch.heap(), options: .oneShard)
        for i in 0 ..< 2000 { try store.put(key(i), stamped(i, version: 1, count: 64)) }
        store.only.recordKeyComparisons = 0
        for i in 0 ..< 2000 { try store.put(key(i), stamped(i, version: 2, count: 64)) }
        #expect(store.only.recordKeyComparisons == 0)
        for i in stride(from: 0, to: 2000, by: 3) { #expect(try store.delete(key(i))) }
        #expect(store.only.recordKeyComparisons == 0, "deletes find their keys alike")
        store.checkInvariants("after updates and deletes")
        for i in 0 ..< 2000 { #expect(try store.get(key(i)) == (i % 3 == 0 ? nil : stamped(i, version: 2, count: 64))) }
    }

    /// After an open the copy knows only the keys of the tail segment's records (the
    /// replay's check looked them up): the first update of any other key compares its
    /// record and remembers the key, the second compares none.
    @Test("after a reopen, a key's first update compares its record unless the replay looked it up, the next none")
    func afterReopen() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let keys = 30_000  // 96-byte records: more than a segment, so most lie before the tail
        do {
            let store = try KVStore.open(heap: try scratch.heap(), options: .oneShard)
            for i in 0 ..< keys { try store.put(key(i), stamped(i, version: 1, count: 64)) }
        }
        let store = try KVStore.open(heap: try Heap.open(path: scratch.file("heap")), options: .oneShard)
        let shard = store.only
        // Each key has one record: those of the segments before the tail.
        let beforeTail = shard.segmentLive.reduce(0, +) - shard.segmentLive[shard.tailSegment]
        #expect(beforeTail > keys / 2 && beforeTail < keys)
        shard.recordKeyComparisons = 0
        for i in 0 ..< keys { try store.put(key(i), stamped(i, version: 2, count: 64)) }
        #expect(shard.recordKeyComparisons == beforeTail)
        store.checkInvariants("after the first updates")
        for i in 0 ..< keys { try store.put(key(i), stamped(i, version: 3, count: 64)) }
        #expect(shard.recordKeyComparisons == beforeTail, "the second updates compared no record")
        for i in 0 ..< keys { #expect(try store.get(key(i)) == stamped(i, version: 3, count: 64)) }
    }

    /// A slot of the key's tag that holds another key: the copy tells them apart without
    /// the record, and an empty copy compares the record and remembers nothing. Two keys
    /// whose hashes share bucket and tag are hard to find, so the probe is given one key's
    /// hash for another key.
    @Test("another key behind a slot of the same tag is not taken for the key")
    func sameTagAnotherKey() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let a = key(1), b = key(2)
        let hashA = a.withUnsafeBytes { hash64($0, seed: Seeds.key) }
        do {
            let store = try KVStore.open(heap: try scratch.heap(), options: .oneShard)
            try store.put(a, stamped(1, version: 1, count: 64))
            let shard = store.only
            shard.recordKeyComparisons = 0
            let probe = b.withUnsafeBytes { shard.find(hash: hashA, key: $0, shard.currentTable()) }
            #expect(!probe.found && shard.recordKeyComparisons == 0, "told apart by the copy")
        }
        // Reopened, and the copy of `a` forgotten (the replay's check at open looked it up).
        let store = try KVStore.open(heap: try Heap.open(path: scratch.file("heap")), options: .oneShard)
        let shard = store.only
        let table = shard.currentTable()
        for position in table.allSlots { shard.keyCache.forget(at: position) }
        shard.recordKeyComparisons = 0
        let probe = b.withUnsafeBytes { shard.find(hash: hashA, key: $0, shard.currentTable()) }
        #expect(!probe.found && shard.recordKeyComparisons == 1, "told apart by the record")
        #expect(table.allSlots.allSatisfy { shard.keyCache.knownKey(at: $0, of: table) == nil }, "nothing remembered")
        let found = a.withUnsafeBytes { shard.find(hash: hashA, key: $0, shard.currentTable()) }
        #expect(found.found && shard.keyCache.knownKey(at: found.position, of: table) == a, "the key itself is remembered")
        shard.checkInvariants("after the probes")
    }

    /// `KVStoreOptions.keyCopy` off: no copy is kept, and every update compares its record.
    @Test("without the copy, every update compares its record")
    func optionOff() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        var options = KVStoreOptions.oneShard
        options.keyCopy = false
        let store = try KVStore.open(heap: try scratch.heap(), options: options)
        for i in 0 ..< 500 { try store.put(key(i), stamped(i, version: 1, count: 64)) }
        store.only.recordKeyComparisons = 0
        for i in 0 ..< 500 { try store.put(key(i), stamped(i, version: 2, count: 64)) }
        #expect(store.only.recordKeyComparisons == 500)
        let table = store.only.currentTable()
        #expect(table.allSlots.allSatisfy { store.only.keyCache.knownKey(at: $0, of: table) == nil })
        for i in 0 ..< 500 { #expect(try store.get(key(i)) == stamped(i, version: 2, count: 64)) }
    }

    /// Keys longer than the copy holds are always compared in their records, and right.
    @Test("long keys are compared in their records")
    func longKeys() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let store = try KVStore.open(heap: try scratch.heap(), options: .oneShard)
        let long = { (i: Int) in bytes("a key longer than sixteen bytes \(i)") }
        for i in 0 ..< 300 { try store.put(long(i), stamped(i, version: 1, count: 32)) }
        store.only.recordKeyComparisons = 0
        for i in 0 ..< 300 { try store.put(long(i), stamped(i, version: 2, count: 32)) }
        #expect(store.only.recordKeyComparisons >= 300)
        store.checkInvariants("after long keys")
        for i in 0 ..< 300 { #expect(try store.get(long(i)) == stamped(i, version: 2, count: 32)) }
    }

    /// An index rebuild publishes a new table, and fills its copy with every key it places
    /// (the copy of the old table must not answer for it). Many inserts into a store sized
    /// for few keys rebuild several times; the updates after them compare no record (fails
    /// if the rebuild leaves the new copy empty: every key put before it is unknown then).
    @Test("index rebuilds fill the new table's copy")
    func rebuilds() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let store = try KVStore.open(heap: try scratch.heap(), options: .oneShard)
        for i in 0 ..< 6000 {
            try store.put(key(i), stamped(i, version: 1, count: 16))
            if i % 1000 == 999 { store.checkInvariants("after \(i + 1) inserts") }
        }
        #expect(store.indexRebuilds > 0)
        store.only.recordKeyComparisons = 0
        for i in 0 ..< 6000 { try store.put(key(i), stamped(i, version: 2, count: 16)) }
        #expect(store.only.recordKeyComparisons == 0)
        store.checkInvariants("after the updates")
        for i in 0 ..< 6000 { #expect(try store.get(key(i)) == stamped(i, version: 2, count: 16)) }
    }

    private func remember(_ cache: KeyCache, _ position: UInt64, _ key: [UInt8]) {
        key.withUnsafeBytes { cache.remember(at: position, key: $0) }
    }

    private func verdict(_ cache: KeyCache, _ position: UInt64, _ key: [UInt8]) -> KeyCache.Verdict {
        key.withUnsafeBytes { cache.verdict(at: position, key: $0) }
    }
}
