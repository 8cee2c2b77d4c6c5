// Gets (lock-free) and iteration.
import DaxHeap
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

extension KVStore {
    // MARK: - Reading (lock-free)

    /// Copies the value of `key` into `buffer` and returns its length, or nil if the key is
    /// absent. When the value is longer than `buffer`, nothing is copied and the length is
    /// returned (call again with a larger buffer). The value is checked against its
    /// record's checksum first: a damaged record throws ``KVError/damagedRecord``.
    ///
    /// No lock, no read section, no fence, no allocation: plain loads through the windows.
    public func get(_ key: UnsafeRawBufferPointer, into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        guard (1 ... Format.maxKeySize).contains(key.count) else { throw KVError.invalidKeySize(key.count) }
        let hash = hash64(key, seed: Seeds.key)
        while true {
            // Before the table descriptor (which `lookup` loads): see `spaceReused`.
            let reuses = spaceReuses.load(ordering: .acquiring)
            let result = lookup(currentTable(), hash: hash, key: key, buffer: buffer)
            // A slot the lookup loaded may have led it to what the writer put in place of
            // the record: another key's (then the key looked absent) or one not yet durable.
            if spaceReused(since: reuses) { continue }
            switch result {
            case .absent: return nil
            case .found(let length): return length
            case .damaged(let offset, let reason):
                // No segment was reused meanwhile, so this is the record the slot pointed
                // at: the media is damaged.
                throw KVError.damagedRecord(store: name, offset: offset, reason: reason)
            }
        }
    }

    /// Whether space was reused since `spaceReuses` was `reuses`. If not, every record
    /// the get read is the one its slot pointed at when loaded: durable (it was written
    /// and fenced before the slot was stored) and unchanged (only reuse rewrites a record,
    /// and a segment a slot points into is not freed). A reader still probing an old
    /// table is covered too: a segment its slots point into is reused only after the
    /// rebuild's publication, and a get that saw that reuse counted in its first load
    /// loaded the new descriptor after it; and the old table's own bytes are rewritten
    /// (by a later rebuild placing its table there) only after the count moved.
    @inline(__always)
    func spaceReused(since reuses: UInt64) -> Bool {
        atomicMemoryFence(ordering: .acquiring)  // the record reads above, before the load
        return spaceReuses.load(ordering: .relaxed) != reuses
    }

    /// The value of `key`, or nil.
    public func get(_ key: [UInt8]) throws -> [UInt8]? {
        var capacity = 256
        while true {
            var out = [UInt8](repeating: 0, count: capacity)
            let length = try key.withUnsafeBytes { k in try out.withUnsafeMutableBytes { try get(k, into: $0) } }
            guard let length else { return nil }
            if length <= capacity { out.removeSubrange(length...); return out }
            capacity = length
        }
    }

    enum Lookup { case absent, found(Int), damaged(UInt64, String) }

    @inline(__always)
    func lookup(_ table: Table, hash: UInt64, key: UnsafeRawBufferPointer, buffer: UnsafeMutableRawBufferPointer) -> Lookup {
        let tag = Format.tag(hash)
        for position in ProbePath(table, hash: hash) {
            let slot = atomicLoad(indexWord(position))
            if slot == Format.emptySlot { return .absent }
            guard Format.isLive(slot), Format.slotTag(slot) == tag else { continue }
            #if DEBUG
            afterSlotLoad?(Format.slotOffset(slot))
            #endif
            if let r = readRecord(at: Format.slotOffset(slot), key: key, buffer: buffer) { return r }
        }
        return .absent
    }

    /// The record at `offset` if it holds `key` (its value copied out), nil if it holds
    /// another key, damaged if it fails its checks.
    @inline(__always)
    func readRecord(at offset: UInt64, key: UnsafeRawBufferPointer, buffer: UnsafeMutableRawBufferPointer) -> Lookup? {
        guard let room = recordRoom(offset) else { return .damaged(offset, "an index slot points past the data arena") }
        let base = record(offset)
        let checksum = atomicLoad(base + Format.checksumOffset)
        let lengths = atomicLoad(base + Format.lengthWordOffset)
        guard let decoded = RecordLengths(lengths), !decoded.isDelete,
              Format.recordHeaderSize + decoded.keyCount + decoded.valueCount <= room else {
            return .damaged(offset, "impossible lengths")
        }
        let k = decoded.keyCount, v = decoded.valueCount
        let storedKey = base + Format.keyOffset
        let storedValue = storedKey + k
        if k == key.count && memcmp(storedKey, key.baseAddress!, k) == 0 {
            if v <= buffer.count {
                if v > 0 { buffer.baseAddress!.copyMemory(from: storedValue, byteCount: v) }
                // Checked on the copy: what the caller gets is what the checksum covers.
                let sum = recordChecksum(lengthWord: lengths, key: storedKey, keyCount: k, value: buffer.baseAddress, valueCount: v)
                return sum == checksum ? .found(v) : .damaged(offset, "checksum mismatch")
            }
            let sum = recordChecksum(lengthWord: lengths, key: storedKey, keyCount: k, value: storedValue, valueCount: v)
            return sum == checksum ? .found(v) : .damaged(offset, "checksum mismatch")
        }
        // Another key with the same tag: fine unless the record is damaged (then the
        // key bytes themselves may be what is wrong, and absent would be a lie).
        let sum = recordChecksum(lengthWord: lengths, key: storedKey, keyCount: k, value: storedValue, valueCount: v)
        return sum == checksum ? nil : .damaged(offset, "checksum mismatch")
    }

    /// Calls `body` with every pair, in index order (the writer lock is held meanwhile: a
    /// consistent snapshot). `body` must not write to this store (that would deadlock).
    /// The buffers are the records on the media: copy what you keep. Damaged records throw.
    public func forEach(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void) throws {
        try lock.withLock { _ in
            for position in currentTable().allSlots {
                let slot = atomicLoad(indexWord(position))
                guard Format.isLive(slot) else { continue }
                let offset = Format.slotOffset(slot)
                let base = record(offset)
                guard let room = recordRoom(offset), let lengths = RecordLengths(base.load(fromByteOffset: Format.lengthWordOffset, as: UInt64.self)),
                      !lengths.isDelete, Format.recordHeaderSize + lengths.keyCount + lengths.valueCount <= room,
                      recordIsIntact(base, lengths) else {
                    throw KVError.damagedRecord(store: name, offset: offset, reason: "checksum mismatch")
                }
                let key = base + Format.keyOffset, k = lengths.keyCount
                try body(UnsafeRawBufferPointer(start: key, count: k), UnsafeRawBufferPointer(start: key + k, count: lengths.valueCount))
            }
        }
    }

    /// Every pair, copied (for tests and small stores).
    public func pairs() throws -> [(key: [UInt8], value: [UInt8])] {
        var out: [(key: [UInt8], value: [UInt8])] = []
        try forEach { k, v in out.append((Array(k), Array(v))) }
        return out
    }
}
