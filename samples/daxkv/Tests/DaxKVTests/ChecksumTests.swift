import DaxHeap
@testable import DaxKV
import DaxTestSupport
import Foundation
import Testing

/// Version 3's four-lane record checksum, and version 2 stores (one-chain checksums)
/// upgraded to it.
@Suite("DaxKV record checksums")
struct ChecksumTests {
    /// The checksum is on-media format: a change to it must be a new version, not an
    /// accident. (Benchmarks/ceiling/kv_ceiling.c computes the same value.)
    @Test("the version 3 checksum of a fixed record is pinned")
    func pinned() {
        let key = bytes("key0000000000042"), value = [UInt8](0 ..< 128)
        let word = Format.lengthWord(keyCount: key.count, valueCount: value.count)
        let sum = Self.checksum(word, key, value)
        #expect(sum == 0xB129_4A6B_D18B_6365, "checksum \(String(sum, radix: 16))")
    }

    /// Every single-bit flip of the length word, a key byte or a value byte changes the
    /// checksum, for every way a record's bytes split into 32-byte blocks, words and a
    /// last partial word.
    @Test("one flipped bit anywhere changes the checksum")
    func singleBitFlips() {
        var random = SplitMix64(seed: 0xC5C5)
        for keyCount in [1, 7, 8, 9, 16, 24, 31, 33] {
            for valueCount in [0, 1, 7, 8, 15, 16, 24, 31, 32, 33, 100, 128, 129] {
                var key = (0 ..< keyCount).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                var value = (0 ..< valueCount).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                let word = Format.lengthWord(keyCount: keyCount, valueCount: valueCount)
                let original = Self.checksum(word, key, value)
                for bit in 0 ..< 64 { #expect(Self.checksum(word ^ 1 << UInt64(bit), key, value) != original) }
                for i in 0 ..< keyCount * 8 {
                    key[i / 8] ^= 1 << (i % 8)
                    #expect(Self.checksum(word, key, value) != original, "key \(keyCount) bit \(i)")
                    key[i / 8] ^= 1 << (i % 8)
                }
                for i in 0 ..< valueCount * 8 {
                    value[i / 8] ^= 1 << (i % 8)
                    #expect(Self.checksum(word, key, value) != original, "value \(valueCount) bit \(i)")
                    value[i / 8] ^= 1 << (i % 8)
                }
            }
        }
    }

    /// A version 2 store (this build's layout with the one-chain checksum, as version 2
    /// builds wrote it). A read-only open reads it and leaves it version 2; a read-write
    /// open says 3 in both headers, still reads every old record (gets, batched gets,
    /// iteration, compaction's copies), and writes new records with the new checksum.
    @Test("a version 2 store is read as it is and upgraded at its first read-write open")
    func upgradeFromVersion2() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let path = scratch.file("heap")
        let options = KVStoreOptions(initialDataSize: 4 * Format.segmentSize, reclaimBeforeGrowth: 0.01).oneShard
        var expected: [[UInt8]: [UInt8]] = [:]
        do {
            let store = try KVStore.open(heap: try scratch.heap(), options: options)
            for i in 0 ..< 300 {
                expected[key(i)] = stamped(i, version: 1, count: [0, 5, 128, 1001][i % 4])
                try store.put(key(i), expected[key(i)]!)
            }
            try store.delete(key(7))
            expected[key(7)] = nil
        }
        let rewritten = try Self.makeVersion2(try Heap.open(path: path))
        #expect(rewritten == 301)

        do {
            let store = try KVStore.open(heap: try Heap.open(path: path, mode: .readOnly), options: options)
            try Self.expectContents(store, expected)
        }
        try Self.expectVersion(path, 2)

        do {
            let store = try KVStore.open(heap: try Heap.open(path: path), options: options)
            try Self.expectContents(store, expected)
            // Random overwrites, sparing every fiftieth key, leave segments partly live: the
            // arena's four segments fill, and compaction copies the spared old records.
            var random = SplitMix64(seed: 0x0D2)
            var puts = 0
            while Self.recordOffset(store, key(0)) < Format.segmentEnd(0) && puts < 50_000 {
                let i = random.below(300)
                guard i % 50 != 0, i != 7 else { continue }
                expected[key(i)] = stamped(i, version: puts, count: 1000 + random.below(2000))
                try store.put(key(i), expected[key(i)]!)
                puts += 1
            }
            #expect(store.compactions > 0)
            // Copied verbatim: still version 2's checksum, and still read.
            let moved = Self.recordOffset(store, key(0))
            #expect(moved >= Format.segmentEnd(0), "key 0's record never moved")
            let record = Array(UnsafeRawBufferPointer(start: store.only.record(moved), count: Format.recordSize(keyCount: key(0).count, valueCount: 0)))
            #expect(try Self.checksums(of: record).version3 == false)
            try Self.expectContents(store, expected)
        }
        try Self.expectVersion(path, 3)
        do {
            let store = try KVStore.open(heap: try Heap.open(path: path), options: options)
            try Self.expectContents(store, expected)
            try store.put(bytes("fresh-key"), bytes("FRESH-VALUE"))
        }
        // New records carry version 3's checksum.
        let heap = try Heap.open(path: path, mode: .readOnly)
        let data = try heap.arena(named: "kv.data")
        let at = try #require(try findInArena(data, bytes("fresh-keyFRESH-VALUE"))) - UInt64(Format.keyOffset)
        let record = try data.read(at: at, count: Format.recordSize(keyCount: 9, valueCount: 11))
        #expect(try Self.checksums(of: record) == (stored: Self.word(record, Format.checksumOffset), version3: true))
    }

    // MARK: - Helpers

    static func checksum(_ word: UInt64, _ key: [UInt8], _ value: [UInt8]) -> UInt64 {
        key.withUnsafeBytes { k in
            value.withUnsafeBytes { v in
                recordChecksum(lengthWord: word, key: k.baseAddress, keyCount: k.count, value: v.baseAddress, valueCount: v.count)
            }
        }
    }

    static func word(_ bytes: [UInt8], _ offset: Int) -> UInt64 {
        bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self) }
    }

    /// The stored checksum of `record` and whether it is version 3's (else version 2's).
    static func checksums(of record: [UInt8]) throws -> (stored: UInt64, version3: Bool) {
        let word = Self.word(record, Format.lengthWordOffset)
        let lengths = try #require(RecordLengths(word))
        let stored = Self.word(record, Format.checksumOffset)
        let key = Array(record[Format.keyOffset ..< Format.keyOffset + lengths.keyCount])
        let value = Array(record[Format.keyOffset + lengths.keyCount ..< Format.keyOffset + lengths.keyCount + lengths.valueCount])
        return (stored, Self.checksum(word, key, value) == stored)
    }

    /// Rewrites every record of the one-shard store "kv" (all in segment 0) with version
    /// 2's checksum and sets both headers to version 2. Returns the records rewritten.
    static func makeVersion2(_ heap: Heap) throws -> Int {
        let data = try heap.arena(named: "kv.data"), index = try heap.arena(named: "kv.index")
        var at = Format.segmentStart(0), records = 0
        while let lengths = RecordLengths(word(try data.read(at: at + UInt64(Format.lengthWordOffset), count: 8), 0)) {
            let record = try data.read(at: at, count: lengths.size)
            #expect(try checksums(of: record).version3)
            let sum = record.withUnsafeBytes { r in
                let key = r.baseAddress! + Format.keyOffset
                return version2RecordChecksum(lengthWord: lengths.word, key: key, keyCount: lengths.keyCount,
                                              value: key + lengths.keyCount, valueCount: lengths.valueCount)
            }
            try data.memcpyPersist(at: at + UInt64(Format.checksumOffset), littleEndianBytes(sum))
            at += UInt64(lengths.size)
            records += 1
        }
        for arena in [data, index] {
            try arena.memcpyPersist(at: Format.versionOffset, littleEndianBytes(2))
        }
        return records
    }

    /// The offset of `key`'s record in the one-shard store's data arena.
    static func recordOffset(_ store: KVStore, _ key: [UInt8]) -> UInt64 {
        let shard = store.only
        let probe = key.withUnsafeBytes { shard.find(hash: hash64($0, seed: Seeds.key), key: $0, shard.currentTable()) }
        return Format.slotOffset(probe.old)
    }

    static func expectVersion(_ path: String, _ version: UInt64) throws {
        let heap = try Heap.open(path: path, mode: .readOnly)
        for name in ["kv.data", "kv.index"] {
            #expect(word(try heap.arena(named: name).read(at: Format.versionOffset, count: 8), 0) == version, "\(name)")
        }
    }

    static func expectContents(_ store: KVStore, _ expected: [[UInt8]: [UInt8]]) throws {
        let keys = (0 ..< 300).map { key($0) }
        for k in keys { #expect(try store.get(k) == expected[k]) }
        #expect(try store.get(batch: keys) == keys.map { expected[$0] })
        #expect(try store.pairs().count == expected.count)
    }
}
