import DaxHeap
@testable import DaxKV
import Foundation
import Testing
import DaxTestSupport

@Suite("DaxKV torn and damaged records")
struct DamageTests {
    /// Damage a value byte, a key byte, and a length in the file behind the store's back:
    /// get refuses those keys with `damagedRecord` (never other data), others still read.
    @Test("a damaged record is refused, never returned")
    func damagedRecords() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let path = scratch.file("heap")
        do {
            let store = try KVStore.open(heap: try scratch.heap(), options: .oneShard)
            for i in 0 ..< 100 { try store.put(key(i), stamped(i, version: 3, count: 256)) }
            try store.put(bytes("victim-value"), bytes("MARKER-VALUE-0123456789"))
            try store.put(bytes("victim-key-MARKERKEY"), bytes("some value"))
            try store.put(bytes("victim-len"), bytes("MARKER-LENGTH-abcdefgh"))
        }
        // A value byte.
        try flipByte(path, at: try #require(try find(bytes("MARKER-VALUE-0123456789"), in: path)) + 7)
        // A key byte.
        try flipByte(path, at: try #require(try find(bytes("victim-key-MARKERKEY"), in: path)) + 12)
        // The value length of a record (its header is 16 bytes before the key).
        let lengthRecord = try #require(try find(bytes("victim-lenMARKER-LENGTH"), in: path)) - 16
        try flipByte(path, at: lengthRecord + 12)

        let store = try KVStore.open(heap: try Heap.open(path: path), options: .oneShard)
        for damaged in ["victim-value", "victim-key-MARKERKEY", "victim-len"] {
            #expect(throws: KVError.self, "\(damaged)") { try store.get(bytes(damaged)) }
            do {
                _ = try store.get(bytes(damaged))
            } catch let error as KVError {
                guard case .damagedRecord = error else { Issue.record("\(damaged): \(error)"); continue }
                #expect("\(error)".contains("damaged"))
            }
        }
        for i in 0 ..< 100 { #expect(try store.get(key(i)) == stamped(i, version: 3, count: 256)) }
        // A batched get refuses them too, among good keys.
        for damaged in ["victim-value", "victim-key-MARKERKEY", "victim-len"] {
            do {
                _ = try store.get(batch: [key(1), bytes(damaged), key(2)])
                Issue.record("get(batch:) returned \(damaged)")
            } catch let error as KVError {
                guard case .damagedRecord = error else { Issue.record("batch \(damaged): \(error)"); continue }
            }
        }
        #expect(try store.get(batch: (0 ..< 100).map { key($0) }) == (0 ..< 100).map { stamped($0, version: 3, count: 256) })
        // Iteration refuses to hand out a damaged record too.
        #expect(throws: KVError.self) { try store.pairs() }
        // Putting the key again heals it.
        try store.put(bytes("victim-value"), bytes("fresh"))
        #expect(try store.get(bytes("victim-value")) == bytes("fresh"))
    }

    /// A torn append (a record half written when the power went) is never referenced: the
    /// slot is published after the record is durable. Simulate one past the tail and check
    /// the store ignores it and overwrites it.
    @Test("bytes past the tail are ignored and overwritten")
    func garbagePastTail() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let path = scratch.file("heap")
        do {
            let store = try KVStore.open(heap: try scratch.heap(), options: .oneShard)
            try store.put(bytes("a"), bytes("TAILMARK-first"))
        }
        // Garbage right after the last record, as a torn append would leave.
        let at = try #require(try find(bytes("aTAILMARK-first"), in: path)) + 16
        let fd = open(path, O_RDWR)
        var junk = [UInt8](repeating: 0xA5, count: 4096)
        junk[0] = 3
        #expect(pwrite(fd, &junk, junk.count, off_t(at)) == junk.count)
        close(fd)
        do {
            let store = try KVStore.open(heap: try Heap.open(path: path), options: .oneShard)
            #expect(store.count == 1)
            #expect(try store.get(bytes("a")) == bytes("TAILMARK-first"))
            try store.put(bytes("b"), bytes("second"))
        }
        let store = try KVStore.open(heap: try Heap.open(path: path), options: .oneShard)
        #expect(try store.get(bytes("b")) == bytes("second"))
        #expect(try store.get(bytes("a")) == bytes("TAILMARK-first"))
        #expect(store.count == 2)
    }

    /// An index rebuild places every live slot by its record's key hash. A record whose
    /// key length is damaged (impossible, or possible but wrong) must still be found by a
    /// get of its key afterwards, and reported damaged: not read past its bytes, not put in
    /// another bucket and reported absent.
    @Test("a record with a damaged key length is still reported damaged after an index rebuild", arguments: [0xFFFF, 14])
    func damagedKeyLengthAcrossRebuild(keyLength: Int) throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let path = scratch.file("heap")
        let victim = bytes("victim-keylen")  // 13 bytes: 14 is a wrong but possible length
        let value = bytes("MARKER-KEYLEN-0123456789")
        do {
            let store = try KVStore.open(heap: try scratch.heap(), options: .oneShard)
            for i in 0 ..< 100 { try store.put(key(i), stamped(i, version: 1, count: 64)) }
            try store.put(victim, value)
        }
        // The key length: the first u16 of the record's length word.
        let record = try #require(try find(victim + value, in: path)) - Format.keyOffset
        try overwrite(path, at: record + Format.lengthWordOffset, with: [UInt8(keyLength & 0xFF), UInt8(keyLength >> 8)])

        let store = try KVStore.open(heap: try Heap.open(path: path), options: .oneShard)
        // Past 3/4 of the table's 4096 slots: the index is rebuilt from the records.
        for i in 100 ..< 3200 { try store.put(key(i), stamped(i, version: 1, count: 8)) }
        #expect(store.indexRebuilds == 1)
        do {
            let got = try store.get(victim)
            Issue.record("expected damagedRecord, got \(got.map { "\($0.count) bytes" } ?? "absent")")
        } catch let error as KVError {
            guard case .damagedRecord = error else { Issue.record("expected damagedRecord, got \(error)"); return }
        }
        for i in stride(from: 0, to: 3200, by: 7) {
            #expect(try store.get(key(i)) == stamped(i, version: 1, count: i < 100 ? 64 : 8))
        }
    }
}

/// Writes `bytes` into the file at `offset` (damage behind the store's back).
func overwrite(_ path: String, at offset: Int, with bytes: [UInt8]) throws {
    let fd = open(path, O_RDWR)
    try #require(fd >= 0, "open \(path)")
    defer { close(fd) }
    try #require(pwrite(fd, bytes, bytes.count, off_t(offset)) == bytes.count, "pwrite \(path)")
}
