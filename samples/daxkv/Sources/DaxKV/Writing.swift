// Puts, batches and deletes, and the writer's index and record primitives (lock held).
import CDaxKVShims
import DaxHeap
import Synchronization  // Atomic: the counts readers load

#if canImport(Glibc)
import Glibc
#endif

extension Shard {
    // MARK: - Writing

    /// Inserts or replaces; returns once the pair is durable. One fence: the record is
    /// durable at the tail of the log, where recovery finds it should its slot store be
    /// lost; the slot is stored, then flushed and fenced by the next write (or a segment
    /// switch, an index rebuild, closing the store). See README "Crash argument".
    /// The key and value are checked, and `hash` is the key's hash (`KVStore.put`).
    func put(_ key: UnsafeRawBufferPointer, hash: UInt64, _ value: UnsafeRawBufferPointer) throws {
        let size = Format.recordSize(keyCount: key.count, valueCount: value.count)
        let (next, claim) = try lock.withLock {
            try wrapHeap {
                // Room first, before the key's slot is looked up: an index rebuild moves
                // every slot to a new table, and a segment switch may compact (redirect
                // slots), so a slot found before either would be stale.
                try ensureIndexRoom(adding: 1)
                // The key's bucket requested first, so that its miss overlaps laying out
                // the record, and an update's miss on the old record (which `find` reads
                // to compare keys) starts sooner: 4-14 % more updates, rounds alternated
                // in one process. Not before the lock: the lock's exchange, a locked
                // instruction, waited for the miss (the fill was 13 % slower so, with
                // the pthread mutex this lock replaced).
                let table = currentTable()
                requestBucket(table, hash: hash)
                // And the writer's copy of the bucket's keys: an update confirms its key
                // there, without waiting for the old record (KeyCache.swift).
                keyCache.prepare(for: table)
                keyCache.request(hash: hash)
                if tail + UInt64(size) > Format.segmentEnd(tailSegment) { try advance(needed: size) }
                let offset = tail
                try writeRecord(at: offset, size: size, key: key, value: value)
                try flushPendingSlot()
                // Find the key's slot while those flushes drain: the bucket miss (and
                // an update's miss on the old record) overlaps the fence's wait instead
                // of following it. Loads only: nothing may be stored before the fence.
                // (A segment switch above may compact, redirecting slots, but never
                // changes the table.)
                let probe = find(hash: hash, key: key, table)
                // The fence: this record and the previous write's slot are durable.
                data.drain()
                tail += UInt64(size)
                // The slot is stored, not flushed: the next write's fence takes it
                // (a flush here would be waited for by the next locked instruction,
                // the next put's lock, as if it were a fence of its own).
                pendingSlot = try publish(probe, hash: hash, key: key, offset: offset, flush: false)
                countInserts()
                return (record(tail), claimPrefaultAhead())
            }
        }
        // After the unlock: the two-writer fill was 8 % faster so (the single one alike).
        Self.requestTail(at: next)
        if let claim { prepareAhead(claim) }
    }

    /// This shard's part of a batch (`KVStore.put(batch:)`, which checks the pairs; they all
    /// belong to this shard, and later pairs win over earlier ones with the same key): under
    /// the lock, the records appended, then the last group committed with one fence.
    func putBatch(_ pairs: UnsafeBufferPointer<Int>, keys: UnsafeBufferPointer<UnsafeRawBufferPointer>,
                  values: UnsafeBufferPointer<UnsafeRawBufferPointer>, hashes: UnsafeBufferPointer<UInt64>) throws {
        let claim = try lock.withLock {
            try appendBatch(pairs, keys: keys, values: values, hashes: hashes)
            try commitPending()
            return claimPrefaultAhead()
        }
        if let claim { prepareAhead(claim) }
    }

    /// A batch's first half (lock held): appends the pairs `pairs` lists (indices into
    /// `keys`, `values` and their `hashes`), in that order. A group that fills the tail
    /// segment is committed as it goes (one fence); the last group is left laid out but
    /// neither flushed nor fenced, in `pending`, for `commitPending`. On error nothing is
    /// pending (a switch, the only step that can fail after the first record, comes after
    /// a commit).
    ///
    /// Nothing is flushed here but at commit: a locked instruction (a retain, a release)
    /// waits for every flush before it as a fence does. Flushing each record as it went
    /// (with the pairs' arrays retained and released around each) made a batch of 16
    /// slower than 16 single puts. Each key's bucket is requested as its record is laid
    /// out, for `publishPending`.
    private func appendBatch(_ pairs: UnsafeBufferPointer<Int>, keys: UnsafeBufferPointer<UnsafeRawBufferPointer>,
                     values: UnsafeBufferPointer<UnsafeRawBufferPointer>, hashes: UnsafeBufferPointer<UInt64>) throws {
        precondition(pending.isEmpty, "a batch's records were left unpublished")
        try wrapHeap {
            // Room for every pair up front (duplicates only overestimate): one index
            // rebuild at most, before any record is written.
            try ensureIndexRoom(adding: pairs.count)
            let table = currentTable()  // segment switches (and their compactions) keep it
            keyCache.prepare(for: table)
            var next = 0
            while next < pairs.count {
                let first = Format.recordSize(keyCount: keys[pairs[next]].count, valueCount: values[pairs[next]].count)
                if tail + UInt64(first) > Format.segmentEnd(tailSegment) {
                    // Committed before the switch: compaction never sees an unpublished record.
                    try commitPending()
                    try advance(needed: first)
                }
                // As many records as the tail segment holds: one range, flushed at commit.
                unflushedFrom = tail
                while next < pairs.count {
                    let i = pairs[next]
                    let size = Format.recordSize(keyCount: keys[i].count, valueCount: values[i].count)
                    if tail + UInt64(size) > Format.segmentEnd(tailSegment) { break }
                    let offset = tail
                    Self.layOutRecord(at: record(offset), size: size, key: keys[i], value: values[i], flags: 0)
                    requestBucket(table, hash: hashes[i])
                    keyCache.request(hash: hashes[i])
                    tail += UInt64(size)
                    pending.append(Pending(hash: hashes[i], offset: offset, keyCount: keys[i].count))
                    next += 1
                }
            }
        }
    }

    /// Flushes the records `appendBatch` laid out (one range at the tail) and the previous
    /// write's slot, for the fence that comes next. No fence.
    private func flushForCommit() throws {
        try wrapHeap {
            if let from = unflushedFrom, tail > from { try data.flush(at: from, count: tail - from) }
            unflushedFrom = nil
            try flushPendingSlot()
        }
    }

    /// Publishes the pending records of a group: one fence for their records; their slots
    /// are flushed by the next write and made durable by its fence (until then the tail
    /// replay covers them).
    func commitPending() throws {
        guard !pending.isEmpty else { return }
        try flushForCommit()
        data.drain()  // one fence for the whole group (and the slot flushed before it)
        try publishPending()
    }

    /// A batch's second half (lock held, after a fence that made the pending records
    /// durable): points their keys' slots at them, and leaves the slots for the next write
    /// to flush (`pendingBatchSlots`). Each key is read from its record in the log (just
    /// written, so in the cache).
    private func publishPending() throws {
        try wrapHeap {
            // The records the keys' slots point at now requested first (the buckets were
            // requested as the records were laid out): an update reads its old record to
            // compare keys, and so the batch's updates wait for those misses together.
            // Loops by index: a for-in over the shard's array retains it, and with two
            // writers that reference count is a line the other core wrote last (3 % of a
            // two-thread bench's samples were those retains).
            let table = currentTable()
            for i in pending.indices {
                let slot = firstCandidate(table, hash: pending[i].hash)
                if Format.isLive(slot) { daxkv_prefetch(record(Format.slotOffset(slot))) }
            }
            for i in pending.indices {
                let p = pending[i]
                let key = UnsafeRawBufferPointer(start: record(p.offset) + Format.keyOffset, count: p.keyCount)
                pending[i].slotAt = try publish(find(hash: p.hash, key: key, table), hash: p.hash, key: key, offset: p.offset, flush: false)
            }
            // Not flushed here: like a single put's slot, by the next write before its
            // fence. A flush here would be waited for by the next locked instruction (a
            // release, the shards' unlocks), as by a fence: 13 % of a batched fill's
            // samples sat in `swift_release` after these flushes.
            for i in pending.indices { pendingBatchSlots.append(pending[i].slotAt) }
        }
        countInserts()
        pending.removeAll(keepingCapacity: true)
        requestTail()
    }

    /// Removes `key`; false if it was absent. One fence: a delete record (the key alone)
    /// is appended to the log and made durable, then the slot becomes a tombstone, flushed
    /// like a put's slot (the tail replay covers it).
    /// The key is checked, and `hash` is its hash (`KVStore.delete`).
    func delete(_ key: UnsafeRawBufferPointer, hash: UInt64) throws -> Bool {
        let size = Format.recordSize(keyCount: key.count, valueCount: 0)
        return try lock.withLock {
            try wrapHeap {
                // Room for the delete record before the slot is looked up (a switch may
                // compact, redirecting slots), even if the key turns out to be absent: a
                // segment switch then is merely early.
                if tail + UInt64(size) > Format.segmentEnd(tailSegment) { try advance(needed: size) }
                let probe = find(hash: hash, key: key, currentTable())
                guard probe.found else { return false }
                let offset = tail
                try writeRecord(at: offset, size: size, key: key, value: UnsafeRawBufferPointer(start: nil, count: 0), flags: Format.deleteFlag)
                try flushPendingSlot()
                data.drain()  // the fence: the delete record (and the previous slot) are durable
                tail += UInt64(size)
                if segmentAppended[tailSegment] >= 0 { segmentAppended[tailSegment] += 1 }
                atomicStore(indexWord(probe.position), Format.tombstone)
                keyCache.forget(at: probe.position)
                pendingSlot = probe.position  // flushed by the next write, like a put's slot
                release(Format.slotOffset(probe.old))
                tombstones += 1
                liveCount -= 1
                live.store(liveCount, ordering: .releasing)
                requestTail()
                return true
            }
        }
    }

    // MARK: - Writer internals (lock held)

    /// The record format (Format.swift): checksum, length word, key, value, zero padding.
    @inline(__always)
    static func layOutRecord(at base: UnsafeMutableRawPointer, size: Int, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, flags: UInt64) {
        let lengths = Format.lengthWord(keyCount: key.count, valueCount: value.count, flags: flags)
        base.storeBytes(of: recordChecksum(lengthWord: lengths, key: key.baseAddress, keyCount: key.count, value: value.baseAddress, valueCount: value.count),
                        toByteOffset: Format.checksumOffset, as: UInt64.self)
        base.storeBytes(of: lengths, toByteOffset: Format.lengthWordOffset, as: UInt64.self)
        (base + Format.keyOffset).copyMemory(from: key.baseAddress!, byteCount: key.count)
        if value.count > 0 { (base + Format.keyOffset + key.count).copyMemory(from: value.baseAddress!, byteCount: value.count) }
        let padding = size - Format.recordHeaderSize - key.count - value.count
        if padding > 0 { (base + size - padding).initializeMemory(as: UInt8.self, repeating: 0, count: padding) }
    }

    /// Lays a record out in the log at `offset` (at the tail, inside the tail segment) and
    /// flushes it (no fence).
    @inline(__always)
    func writeRecord(at offset: UInt64, size: Int, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, flags: UInt64 = 0) throws {
        Self.layOutRecord(at: record(offset), size: size, key: key, value: value, flags: flags)
        try data.flush(at: offset, count: UInt64(size))
    }

    /// Points the key's slot (found by `find` with the writer lock held since) at the
    /// durable record of `key` at `offset`, and flushes it if asked (no fence).
    @inline(__always)
    func publish(_ probe: Probe, hash: UInt64, key: UnsafeRawBufferPointer, offset: UInt64, flush: Bool) throws -> UInt64 {
        atomicStore(indexWord(probe.position), Format.slot(tag: Format.tag(hash), offset: offset))
        keyCache.remember(at: probe.position, key: key)
        if flush { try index.flush(at: probe.position, count: Format.slotSize) }
        if probe.found {
            release(Format.slotOffset(probe.old))
        } else {
            if probe.old == Format.tombstone { tombstones -= 1 }
            unpublishedInserts += 1
        }
        segmentLive[Format.segment(of: offset)] += 1
        if segmentAppended[Format.segment(of: offset)] >= 0 { segmentAppended[Format.segment(of: offset)] += 1 }
        return probe.position
    }

    /// Adds the inserts published since the last call to the count, after the fence: what
    /// `count` says is durable.
    @inline(__always)
    func countInserts() {
        if unpublishedInserts > 0 {
            liveCount += unpublishedInserts
            live.store(liveCount, ordering: .releasing)
        }
        unpublishedInserts = 0
    }

    /// Requests the lines the shard's next record goes to (the log's tail). Most of them
    /// were never in the cache (the segment was zeroed long before), and the one the last
    /// record ends in was just flushed, which may have taken it out (clflushopt does). A
    /// store to a line not in the cache waits for the line to be read, and the next write's
    /// fence waits for that store; requested now, the lines arrive while the puts of other
    /// shards run. Fill +15-17 %, update +15-16 % (rounds alternated in one process, and
    /// alternated runs; daxkv bench, 1 M keys). A read prefetch (`prefetcht0`): a
    /// prefetch for writing compiles to the same instruction without `-mprfchw`.
    @inline(__always)
    func requestTail() { Self.requestTail(at: record(tail)) }

    /// The same for a tail at `next`: a put calls it once it has let go of the lock.
    @inline(__always)
    static func requestTail(at next: UnsafeMutableRawPointer) { requestSmallRecord(at: next) }

    /// Flushes the slot the last put or delete stored, or the slots the last batch did (no
    /// fence: the caller's comes next).
    @inline(__always)
    func flushPendingSlot() throws {
        if let position = pendingSlot {
            try index.flush(at: position, count: Format.slotSize)
            pendingSlot = nil
        }
        if !pendingBatchSlots.isEmpty {
            // Indexed, not iterated: an iterator may retain the array and release it after
            // the flushes, and a release (a locked instruction) waits for them like a fence.
            for i in 0 ..< pendingBatchSlots.count { try index.flush(at: pendingBatchSlots[i], count: Format.slotSize) }
            pendingBatchSlots.removeAll(keepingCapacity: true)
        }
    }

    /// One record in `segment` is no longer referenced.
    func release(_ offset: UInt64) {
        let segment = Format.segment(of: offset)
        segmentLive[segment] -= 1
        if segmentLive[segment] == 0 && segment != tailSegment && !damagedSegments.contains(segment) {
            addFreeSegment(segment)
        }
    }
}
