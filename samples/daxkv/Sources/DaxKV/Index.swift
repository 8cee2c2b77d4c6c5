// The index: its tables, the probe path every lookup walks, and the writer's probes.
import CDaxKVShims
import DaxHeap
import Synchronization  // Atomic: the descriptor

#if canImport(Glibc)
import Glibc
#endif

extension Shard {
    /// An index table, from the descriptor an operation loaded.
    struct Table {
        let offset: UInt64
        let mask: UInt64

        /// Inlined: every get decodes the descriptor it loaded (a batched get, twice a key).
        @inline(__always)
        init(descriptor: UInt64) {
            let (offset, log2) = Format.decode(descriptor: descriptor)
            self.offset = offset
            self.mask = (1 as UInt64) &<< UInt64(log2) &- 1  // log2 is 3 to 40 (checked at open)
        }

        init(offset: UInt64, log2Buckets: Int) {
            self.offset = offset
            self.mask = UInt64(1 << log2Buckets) - 1
        }

        var buckets: UInt64 { mask + 1 }
        var slotCount: Int { Int(buckets) * Format.slotsPerBucket }
        var byteCount: UInt64 { buckets * Format.bucketSize }

        @inline(__always) func bucketOffset(_ bucket: UInt64) -> UInt64 { offset + bucket * Format.bucketSize }
        /// Every slot's index offset, in table order (for whole-table scans).
        var allSlots: StrideTo<UInt64> { stride(from: offset, to: offset + byteCount, by: Int(Format.slotSize)) }
    }

    /// The slots a probe for a key of hash `hash` visits, in order: the slots of the key's
    /// bucket (`hash & mask`), then those of the next bucket (linear probing), every bucket
    /// once. Every path that looks a key up in a table walks this one sequence: `get`
    /// (one or a batch), the writer's `find`, compaction's `slotPointing`, the rebuild's
    /// placement. Yields index offsets.
    struct ProbePath: Sequence, IteratorProtocol {
        let table: Table
        var bucket: UInt64
        var slotInBucket: UInt64 = 0
        var bucketsLeft: UInt64

        @inline(__always)
        init(_ table: Table, hash: UInt64) {
            self.table = table
            bucket = hash & table.mask
            bucketsLeft = table.mask
        }

        @inline(__always)
        mutating func next() -> UInt64? {
            if slotInBucket == UInt64(Format.slotsPerBucket) {
                if bucketsLeft == 0 { return nil }
                bucketsLeft -= 1
                bucket = (bucket + 1) & table.mask
                slotInBucket = 0
            }
            defer { slotInBucket += 1 }
            return table.bucketOffset(bucket) + slotInBucket * Format.slotSize
        }
    }

    /// The current table. Acquiring: a table a rebuild published lies in the index window
    /// as grown before the publication, and its slots were stored before it.
    @inline(__always)
    func currentTable() -> Table { Table(descriptor: descriptor.load(ordering: .acquiring)) }

    /// Requests (a read prefetch) the bucket a probe for `hash` in `table` starts at, so
    /// that its miss overlaps other work: a put's record layout, a batch's next pairs, a
    /// batched get's other keys, compaction's earlier probes.
    @inline(__always)
    func requestBucket(_ table: Table, hash: UInt64) { daxkv_prefetch(indexWord(table.bucketOffset(hash & table.mask))) }

    /// The address of the 8-byte index word (a slot or a header word) at `offset`. Every
    /// table lies inside the index window: open checks the descriptor against the arena's
    /// size, and a rebuild publishes a table only after growing the arena to hold it.
    @inline(__always)
    func indexWord(_ offset: UInt64) -> UnsafeMutableRawPointer { indexBase + Int(offset) }

    // MARK: - The writer's probes (lock held: only the writer stores slots, so plain loads)

    /// Where `find` said the key's slot is.
    typealias Probe = (position: UInt64, old: UInt64, found: Bool)

    /// Where `key` is (found) or would go (the first tombstone or empty slot on its probe path).
    /// A slot of the key's tag is confirmed by the writer's copy of the key (`keyCache`)
    /// or, when that does not know it, by the record, and then remembered.
    func find(hash: UInt64, key: UnsafeRawBufferPointer, _ table: Table) -> Probe {
        let tag = Format.tag(hash)
        var reusable: UInt64? = nil
        keyCache.prepare(for: table)
        for position in ProbePath(table, hash: hash) {
            let slot = indexWord(position).load(as: UInt64.self)
            if slot == Format.emptySlot { return reusable.map { ($0, Format.tombstone, false) } ?? (position, slot, false) }
            if slot == Format.tombstone { if reusable == nil { reusable = position }; continue }
            guard Format.slotTag(slot) == tag else { continue }
            switch keyCache.verdict(at: position, key: key) {
            case .same: return (position, slot, true)
            case .different: continue
            case .unknown:
                recordKeyComparisons &+= 1
                if keyMatches(at: Format.slotOffset(slot), key: key) {
                    keyCache.remember(at: position, key: key)
                    return (position, slot, true)
                }
            }
        }
        guard let reusable else { fatalError("DaxKV: index table full (load factor invariant broken)") }
        return (reusable, Format.tombstone, false)
    }

    /// Whether the record at `offset` holds `key` (lengths and key bytes; no checksum).
    @inline(__always)
    func keyMatches(at offset: UInt64, key: UnsafeRawBufferPointer) -> Bool {
        guard let room = recordRoom(offset), Format.keyOffset + key.count <= room else { return false }
        let base = record(offset)
        let lengths = base.load(fromByteOffset: Format.lengthWordOffset, as: UInt64.self)
        return Int(lengths >> Format.keyLengthShift & Format.keyLengthMask) == key.count
            && memcmp(base + Format.keyOffset, key.baseAddress!, key.count) == 0
    }

    /// The first slot on the probe path of `hash` that holds its tag (emptySlot if the
    /// probe meets an empty slot first: the key is absent). Lock-free; the batched get's
    /// and a batch's early record requests.
    @inline(__always)
    func firstCandidate(_ table: Table, hash: UInt64) -> UInt64 {
        let tag = Format.tag(hash)
        for position in ProbePath(table, hash: hash) {
            let slot = atomicLoad(indexWord(position))
            if slot == Format.emptySlot { return slot }
            if Format.isLive(slot) && Format.slotTag(slot) == tag { return slot }
        }
        return Format.emptySlot
    }

    /// The slot whose record is at `offset`, found by the record's key hash.
    func slotPointing(to offset: UInt64, hash: UInt64, _ table: Table) -> (position: UInt64, slot: UInt64)? {
        let want = Format.slot(tag: Format.tag(hash), offset: offset)
        for position in ProbePath(table, hash: hash) {
            let slot = indexWord(position).load(as: UInt64.self)
            if slot == Format.emptySlot { return nil }
            if slot == want { return (position, slot) }
        }
        return nil
    }

    /// The first empty slot on the probe path of `hash` in `table` (the rebuild's
    /// placement into a table it is filling, where every slot is empty or live).
    func firstEmptySlot(hash: UInt64, _ table: Table) -> UInt64? {
        for position in ProbePath(table, hash: hash) where indexWord(position).load(as: UInt64.self) == Format.emptySlot {
            return position
        }
        return nil
    }
}
