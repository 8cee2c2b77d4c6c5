// Gets (lock-free) and iteration.
import DaxHeap
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

extension Shard {
    // MARK: - Reading (lock-free)

    /// Copies the value of `key` (whose key hash is `hash`) into `buffer` and returns its
    /// length, or nil if the key is absent; see `KVStore.get(_:into:)`.
    ///
    /// No lock, no read section, no fence, no allocation: plain loads through the windows.
    @inline(__always)
    func get(_ key: UnsafeRawBufferPointer, hash: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
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
            requestSmallRecordOnce(at: record(Format.slotOffset(slot)))  // read once
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
                let intact = checksumMatches(checksum, lengthWord: lengths, key: storedKey, keyCount: k, value: buffer.baseAddress, valueCount: v)
                return intact ? .found(v) : .damaged(offset, "checksum mismatch")
            }
            let intact = checksumMatches(checksum, lengthWord: lengths, key: storedKey, keyCount: k, value: storedValue, valueCount: v)
            return intact ? .found(v) : .damaged(offset, "checksum mismatch")
        }
        // Another key with the same tag: fine unless the record is damaged (then the
        // key bytes themselves may be what is wrong, and absent would be a lie).
        let intact = checksumMatches(checksum, lengthWord: lengths, key: storedKey, keyCount: k, value: storedValue, valueCount: v)
        return intact ? nil : .damaged(offset, "checksum mismatch")
    }

    /// Calls `body` with every pair of the shard, in index order. The caller holds the
    /// writer lock (`KVStore.forEach` holds every shard's). Damaged records throw.
    func forEachLocked(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void) throws {
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
