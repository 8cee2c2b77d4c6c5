// Recovery at open: the index scan, then the replay of the log's tail segment.
import DaxHeap
import Synchronization  // Atomic: the counts readers load

extension Shard {
    /// What recovery's first half, the index scan, found.
    struct IndexScan {
        var slots = 0
        var pairs = 0
        var tombstones = 0
        var headersRead = 0
        /// Live records per segment.
        var segmentLive: [Int]
        /// Where appends restart: after the last record a slot references in the tail segment.
        var tail: UInt64
    }

    /// Recovery's first half: one sequential pass over the index table (which the window
    /// shows as one range however many extents hold it), counting pairs, tombstones and
    /// live records per segment, and finding where the tail restarts: after the last
    /// record a slot references in the tail segment (anything after it is unreferenced,
    /// an unacknowledged put, and may be overwritten).
    static func scanIndex(_ index: ArenaWindow, _ data: ArenaWindow, _ table: Table, segments: Int, tailSegment: Int,
                          store name: String) throws -> IndexScan {
        var scan = IndexScan(slots: table.slotCount, segmentLive: [Int](repeating: 0, count: segments),
                             tail: Format.segmentStart(tailSegment))
        var tailOffsets: [UInt64] = []
        for position in table.allSlots {
            let slot = index.base.load(fromByteOffset: Int(position), as: UInt64.self)
            if slot == Format.emptySlot { continue }
            if slot == Format.tombstone { scan.tombstones += 1; continue }
            let offset = Format.slotOffset(slot)
            let segment = Format.segment(of: offset)
            guard offset >= Format.headerSize, segment < segments,
                  offset + UInt64(Format.recordHeaderSize) <= Format.segmentEnd(segment) else {
                throw KVError.notAStore(store: name, reason: "index slot at \(position) points outside the data arena")
            }
            scan.segmentLive[segment] += 1
            scan.pairs += 1
            if segment == tailSegment { tailOffsets.append(offset) }
        }
        for offset in tailOffsets {
            scan.headersRead += 1
            let word = data.base.load(fromByteOffset: Int(offset) + Format.lengthWordOffset, as: UInt64.self)
            if let lengths = RecordLengths(word), !lengths.isDelete, offset + UInt64(lengths.size) <= Format.segmentEnd(tailSegment) {
                scan.tail = max(scan.tail, offset + UInt64(lengths.size))
            } else {
                scan.tail = Format.segmentEnd(tailSegment)  // damaged header: never append into this segment again
            }
        }
        return scan
    }

    /// A record of the tail segment, as the replay collects them.
    struct TailRecord { var offset: UInt64; var keyCount: Int; var hash: UInt64; var isDelete: Bool }

    /// Both headers made to say `Format.version`, before anything of that version is
    /// written: a version 3 record in a store an older build still opens would read as
    /// damaged there. Data first; a crash between leaves the index's older version, and
    /// the next open upgrades again.
    func writeVersion() throws {
        try data.store(Format.version, at: Format.versionOffset)
        try data.persist(at: Format.versionOffset, count: Format.wordSize)
        try index.store(Format.version, at: Format.versionOffset)
        try index.persist(at: Format.versionOffset, count: Format.wordSize)
    }

    /// Recovery's second half (README, "Crash argument"): the tail segment's records, in
    /// log order, applied to the index wherever a slot store or tombstone did not reach the
    /// media. Only the tail can need it: every slot flushed before a segment switch was made
    /// durable by the switch. Returns the records scanned and replayed.
    func recoverTail(upgrading: Bool) throws -> (scanned: Int, replayed: Int) {
        let segment = tailSegment
        let end = Format.segmentEnd(segment)
        let writable = heap.mode == .readWrite
        if upgrading {
            // Version 1 fenced every slot (nothing to replay) but did not zero reused
            // segments, so stale records may follow the tail. Zero them, then say the current version.
            guard writable else { return (0, 0) }
            if tail < end { try data.memsetPersist(at: tail, value: 0, count: end - tail) }
            try writeVersion()
            return (0, 0)
        }
        // The valid records from the segment's start; the first that fails its checks ends
        // the log (zero bytes past the tail, by invariant 4, or a torn append).
        // The last record of each key in the tail is the key's newest state: a put the
        // slot must point at, or a delete the key must be absent after. (Records are in
        // log order, and anything outside the tail is older: compaction copies into a new
        // tail, never into the current one.)
        var records: [TailRecord] = []
        var last: [[UInt8]: Int] = [:]  // key -> its last record in `records`
        var at = Format.segmentStart(segment)
        while at + UInt64(Format.recordHeaderSize) <= end {
            let base = record(at)
            guard let lengths = RecordLengths(base.load(fromByteOffset: Format.lengthWordOffset, as: UInt64.self)),
                  at + UInt64(lengths.size) <= end, recordIsIntact(base, lengths) else { break }
            let key = UnsafeRawBufferPointer(start: base + Format.keyOffset, count: lengths.keyCount)
            last[Array(key)] = records.count
            records.append(TailRecord(offset: at, keyCount: lengths.keyCount, hash: hash64(key, seed: Seeds.key), isDelete: lengths.isDelete))
            at += UInt64(lengths.size)
        }
        // `tail` is where the index scan put it: after the last record a slot references
        // here (the segment's end if such a record's header was damaged). A referenced
        // record past the first invalid one is damage, not a torn append: replay what
        // precedes it and never append into this segment again.
        let damaged = tail > at
        tail = damaged ? end : at
        // Where the index disagrees with a key's last record, a slot store or tombstone was
        // lost: apply it again. Comparing final states keeps this idempotent.
        let finals = last.values.sorted().map { records[$0] }
        func key(of r: TailRecord) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(start: record(r.offset) + Format.keyOffset, count: r.keyCount)
        }
        func lost(_ r: TailRecord) -> Probe? {
            let probe = find(hash: r.hash, key: key(of: r), currentTable())
            let agrees = r.isDelete ? !probe.found : probe.found && Format.slotOffset(probe.old) == r.offset
            return agrees ? nil : probe
        }
        guard writable else {
            let outstanding = finals.filter { lost($0) != nil }.count
            if outstanding > 0 { throw KVError.needsRecovery(store: name, records: outstanding) }
            return (records.count, 0)
        }
        var replayed = 0
        for r in finals {
            if !r.isDelete { try ensureIndexRoom(adding: 1) }  // before the probe: a rebuild moves every slot
            guard let probe = lost(r) else { continue }
            replayed += 1
            if r.isDelete {
                atomicStore(indexWord(probe.position), Format.tombstone)
                keyCache.forget(at: probe.position)
                try index.flush(at: probe.position, count: Format.slotSize)
                release(Format.slotOffset(probe.old))
                tombstones += 1
                liveCount -= 1
            } else {
                _ = try publish(probe, hash: r.hash, key: key(of: r), offset: r.offset, flush: true)
            }
        }
        index.drain()  // the replayed slots are durable
        countInserts()
        live.store(liveCount, ordering: .releasing)
        // Restore invariant 4 after a torn append: zero from the new tail on.
        if !damaged && tail < end && !isZero(UnsafeRawBufferPointer(start: record(tail), count: Int(end - tail))) {
            try data.memsetPersist(at: tail, value: 0, count: end - tail)
        }
        return (records.count, replayed)
    }
}
