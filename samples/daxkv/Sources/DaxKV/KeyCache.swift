// The writer's copy of short keys, slot by slot, in DRAM: an update tells its key's slot
// without reading the old record.
import CDaxKVShims

#if canImport(Glibc)
import Glibc
#endif

/// A volatile copy of the key each slot of the current index table points at, for keys of
/// up to ``maxKeyBytes`` bytes, kept by the shard's writer (lock held) and used by it
/// alone. Nothing of it is on the media: it starts empty at every open, and the writer
/// fills it as it stores slots and confirms keys; an index rebuild fills the new table's
/// copy with every key it places (it reads each record's key for the placement anyway).
///
/// Why: a slot holds 20 bits of its key's hash, so a put that meets a slot of its tag must
/// compare the key itself. In the record, that is a second cache miss that depends on the
/// first (the slot gives the record's address), and an update always pays it: 160-170 ns
/// here, about half of an update. This copy lies at an address the key's hash gives, so a
/// put requests it together with the bucket, at its start, and the two misses overlap.
/// `daxkv bench` with and without it (`--no-key-copy`), three paired rounds: updates 1.50x,
/// fills 0.79x (an insert requests the copy's lines too, stores its key there, and faults
/// the copy in). The lines are requested as read once (`prefetchnta`): read the usual way
/// they pushed the index out of the L3, and fills were 1.3x slower still.
///
/// Cost: 17 bytes of DRAM a slot (the table has at least two slots a key, so 34 MiB for
/// 1 M keys), allocated as the table is first used, backed as the writer touches it, and
/// given back when the table or the shard goes. (Huge pages, `MADV_HUGEPAGE`, made the
/// C ceiling's fill 0.8x here: a fault that must find 2 MiB may compact memory first.)
///
/// Exactness: an entry is known (length 1 to ``maxKeyBytes``) only when the writer wrote
/// that key to that slot or read it from the slot's record; every slot store that changes
/// the key a slot points at remembers the new one or forgets the old one (`publish`,
/// the tombstones of `delete` and the replay, the rebuild's placement). A verdict of `.same` or `.different` is
/// therefore as exact as comparing the record; `.unknown` sends the writer to the record.
final class KeyCache {
    /// Keys up to this many bytes are kept; longer ones are always compared in their records.
    static let maxKeyBytes = 16

    enum Verdict { case same, different, unknown }

    // Touched only by the writer, lock held (as the shard's writer state, so without
    // Swift's dynamic exclusivity checks).
    /// The table this copy describes (`Shard.Table.offset` and its mask); `.max` for none.
    @exclusivity(unchecked) private var tableOffset: UInt64 = .max
    @exclusivity(unchecked) private var mask: UInt64 = 0
    @exclusivity(unchecked) private var slotCount = 0
    /// `slotCount` keys of `maxKeyBytes` each (a bucket's eight keys in two cache lines),
    /// then `slotCount` length bytes (0: not known). Nil when the mapping failed: then
    /// every verdict is `.unknown`.
    @exclusivity(unchecked) private var keys: UnsafeMutableRawPointer? = nil
    @exclusivity(unchecked) private var lengths: UnsafeMutablePointer<UInt8>? = nil
    @exclusivity(unchecked) private var byteCount = 0

    /// Whether the copy is kept (`KVStoreOptions.keyCopy`); if not, every verdict is `.unknown`.
    let enabled: Bool

    init(enabled: Bool = true) { self.enabled = enabled }

    deinit { unmap() }

    /// Makes the copy describe `table`: unchanged if it does, else a new empty one (the
    /// first use, or a table a rebuild published).
    @inline(__always)
    func prepare(for table: Shard.Table) {
        if table.offset != tableOffset || table.mask != mask { reset(for: table) }
    }

    private func reset(for table: Shard.Table) {
        unmap()
        tableOffset = table.offset
        mask = table.mask
        slotCount = table.slotCount
        guard enabled else { return }
        let size = slotCount * (Self.maxKeyBytes + 1)
        // Anonymous memory reads as zero (every length unknown) and is backed as it is
        // touched; NORESERVE, so a large table's copy takes only what its keys use.
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              p != MAP_FAILED else { return }
        keys = p
        lengths = (p + slotCount * Self.maxKeyBytes).assumingMemoryBound(to: UInt8.self)
        byteCount = size
    }

    /// Makes the copy describe `table`, empty, whatever it described before (an index
    /// rebuild's new table, which may lie where a table before it lay, at its size).
    func start(for table: Shard.Table) { reset(for: table) }

    private func unmap() {
        if let keys { munmap(keys, byteCount) }
        keys = nil
        lengths = nil
        byteCount = 0
    }

    /// The slot number of the slot at index offset `position` of the prepared table.
    @inline(__always)
    private func slot(_ position: UInt64) -> Int { Int((position &- tableOffset) / Format.slotSize) }

    /// Requests (read prefetches) the keys and lengths of the bucket a probe for `hash`
    /// starts at, so that their misses overlap the bucket's and the put's record layout.
    @inline(__always)
    func request(hash: UInt64) {
        guard let keys, let lengths else { return }
        let first = Int(hash & mask) * Format.slotsPerBucket
        daxkv_prefetch_once(keys + first * Self.maxKeyBytes)
        daxkv_prefetch_once(keys + first * Self.maxKeyBytes + Format.cacheLineSize)
        daxkv_prefetch_once(lengths + first)
    }

    /// Whether the slot at `position` points at a record of `key`, as far as this copy knows.
    @inline(__always)
    func verdict(at position: UInt64, key: UnsafeRawBufferPointer) -> Verdict {
        guard let keys, let lengths else { return .unknown }
        let s = slot(position)
        let length = Int(lengths[s])
        if length == 0 { return .unknown }
        return length == key.count && memcmp(keys + s * Self.maxKeyBytes, key.baseAddress!, length) == 0 ? .same : .different
    }

    /// The slot at `position` now points at a record of `key` (forgotten if it is too long).
    @inline(__always)
    func remember(at position: UInt64, key: UnsafeRawBufferPointer) {
        guard let keys, let lengths else { return }
        let s = slot(position)
        guard key.count <= Self.maxKeyBytes else { lengths[s] = 0; return }
        (keys + s * Self.maxKeyBytes).copyMemory(from: key.baseAddress!, byteCount: key.count)
        lengths[s] = UInt8(key.count)
    }

    /// The slot at `position` no longer points at the key it did (a tombstone).
    @inline(__always)
    func forget(at position: UInt64) {
        guard let lengths else { return }
        lengths[slot(position)] = 0
    }

    /// The key the copy holds for the slot at `position` of `table`, or nil when it holds
    /// none (or describes another table). For the tests' invariant checks.
    func knownKey(at position: UInt64, of table: Shard.Table) -> [UInt8]? {
        guard let keys, let lengths, table.offset == tableOffset, table.mask == mask else { return nil }
        let s = slot(position)
        let length = Int(lengths[s])
        return length == 0 ? nil : Array(UnsafeRawBufferPointer(start: keys + s * Self.maxKeyBytes, count: length))
    }
}
