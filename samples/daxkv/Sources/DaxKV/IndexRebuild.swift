// Rebuilding the index table at a larger size, online.
import DaxHeap
import Synchronization  // Atomic: the counts readers load

extension Shard {
    /// Rebuilds the index at a larger size when adding `n` entries would make it more
    /// than three quarters full (tombstones count), before anything of the put is written.
    func ensureIndexRoom(adding n: Int) throws {
        let (tableOffset, log2) = Format.decode(descriptor: descriptor.load(ordering: .relaxed))
        let old = Table(offset: tableOffset, log2Buckets: log2)
        let count = liveCount
        guard count + tombstones + n > old.slotCount * 3 / 4 else { return }
        let newLog2 = max(Self.log2Buckets(forKeys: count + n), log2)
        let newBytes = UInt64(1 << newLog2) * Format.bucketSize
        // The lowest place that does not overlap the current table: before it when the
        // new table fits there (space only older tables used), else right after it. So a
        // rebuild at the same size (tombstones) alternates between two places, and the
        // arena holds at most the current table and the one before it, not every table
        // there ever was.
        let newOffset = Format.headerSize + newBytes <= tableOffset
            ? Format.headerSize : (tableOffset + old.byteCount + Format.headerSize - 1) & ~(Format.headerSize - 1)
        let new = Table(offset: newOffset, log2Buckets: newLog2)
        let needed = roundUp2M(newOffset + newBytes)
        if index.size < needed {
            var failure: HeapError? = nil
            do throws(HeapError) {
                try index.arena.resize(to: needed)  // mapped into the window on return
            } catch {
                if !isOutOfSpace(error) { throw error }
                failure = error
            }
            if let failure {
                throw KVError.storeFull(store: name, needed: needed - index.size, detail: "the index cannot grow (\(failure))")
            }
        }
        // Readers may still be probing an old table there (its descriptor loaded before
        // the current one was published): counted before the first byte changes, so
        // they look again (`spaceReused`). The drain orders the count's store before the
        // clearing's non-temporal stores. Rebuilds are rare; the count moves every time.
        countSpaceReuse()
        index.drain()
        // The region may hold old tables or a rebuild a crash interrupted: clear it.
        try index.memsetPersist(at: newOffset, value: 0, count: newBytes)
        // The writer's copy of the keys, started afresh for the new table and filled with
        // the key of every slot placed, read from its record for the placement anyway.
        // (Should the rebuild fail before it publishes the table, the next probe finds
        // the copy describing another table than the current one and starts it again.)
        keyCache.start(for: new)
        for at in old.allSlots {
            let slot = indexWord(at).load(as: UInt64.self)
            guard Format.isLive(slot) else { continue }
            let (hash, key) = placement(of: slot, oldBucket: (at - tableOffset) / Format.bucketSize)
            // The new table has room for every live slot (it is at most half full).
            let position = firstEmptySlot(hash: hash, new)!
            indexWord(position).storeBytes(of: slot, as: UInt64.self)  // published below, after the persist
            if let key { keyCache.remember(at: position, key: key) }
        }
        try index.persist(at: newOffset, count: newBytes)
        let word = Format.descriptor(tableOffset: newOffset, log2Buckets: newLog2)
        try index.store(word, at: Format.descriptorOffset)
        try index.persist(at: Format.descriptorOffset, count: Format.wordSize)
        descriptor.store(word, ordering: .releasing)
        pendingSlot = nil  // their values are in the new table, which is durable
        pendingBatchSlots.removeAll(keepingCapacity: true)
        tombstones = 0
        rebuildCount.incrementByWriter()
    }

    /// The hash an index rebuild places a live slot by: its record's key hash, the lengths
    /// checked as a get checks them. A record whose lengths are impossible, or whose key
    /// hashes to another tag than the slot's, is damaged; if only its key length is, the
    /// key length that makes the record match its checksum and the slot's tag gives the
    /// key hash back, so that a get of the key still meets the slot and reports the damage.
    /// Failing that (its key bytes are damaged too), `oldBucket`: the bucket number stays.
    /// With the hash, the record's key when its own lengths gave it (for the writer's copy
    /// of the keys), else nil.
    func placement(of slot: UInt64, oldBucket: UInt64) -> (hash: UInt64, key: UnsafeRawBufferPointer?) {
        let offset = Format.slotOffset(slot)
        let tag = Format.slotTag(slot)
        guard let room = recordRoom(offset), room >= Format.recordHeaderSize else { return (oldBucket, nil) }  // open refuses such slots
        let base = record(offset)
        let key = base + Format.keyOffset
        if let lengths = RecordLengths(base.load(fromByteOffset: Format.lengthWordOffset, as: UInt64.self)),
           Format.keyOffset + lengths.keyCount <= room {
            let hash = hash64(key, lengths.keyCount, seed: Seeds.key)
            if Format.tag(hash) == tag { return (hash, UnsafeRawBufferPointer(start: key, count: lengths.keyCount)) }
        }
        return (Self.keyHash(ofRecordWithDamagedKeyLength: UnsafeRawBufferPointer(start: base, count: room), tag: tag) ?? oldBucket, nil)
    }

    /// The key hash of `record` (the rest of its segment) if only the key length field of
    /// its header is damaged: the hash of the key length with which the rest of the length
    /// word, the bytes and the checksum agree, and whose key hash has the slot's `tag`.
    static func keyHash(ofRecordWithDamagedKeyLength record: UnsafeRawBufferPointer, tag: UInt64) -> UInt64? {
        let base = record.baseAddress!
        let word = base.load(fromByteOffset: Format.lengthWordOffset, as: UInt64.self)
        for keyCount in 1 ... Format.maxKeySize {
            guard let lengths = RecordLengths(word & ~Format.keyLengthMask | UInt64(keyCount)),
                  Format.keyOffset + keyCount + lengths.valueCount <= record.count else { continue }
            let hash = hash64(base + Format.keyOffset, keyCount, seed: Seeds.key)
            if Format.tag(hash) == tag && recordIsIntact(base, lengths) { return hash }
        }
        return nil
    }
}
