// The on-media format of a DaxKV store (see samples/daxkv/README.md for the full picture).
import CDaxKVShims

/// Sizes and constants shared by the two arenas.
enum Format {
    /// The data arena is cut into segments of this size: the log's unit of reuse
    /// (a segment is freed, zeroed and made the tail whole) and of the replay at open
    /// (the tail segment is read from its start). A record never straddles two segments.
    /// Extents do not matter here: the store reaches the arena through a window, one
    /// range of addresses across them.
    static let segmentSize: UInt64 = 2 << 20
    static let segmentShift: UInt64 = 21
    /// Bytes at the start of each arena holding its header (segment 0 of the data arena
    /// holds records after it).
    static let headerSize: UInt64 = 4096

    static let dataMagic: UInt64 = 0x5441_4456_4B58_4144   // "DAXKVDAT" little-endian
    static let indexMagic: UInt64 = 0x5844_4956_4B58_4144  // "DAXKVIDX"
    /// 2: one fence per put, the tail segment replayed at open, delete records, reused
    /// segments zeroed. 3: records written with a four-lane checksum (Checksum.swift).
    /// Version 1 and 2 stores are upgraded at their first read-write open.
    static let version: UInt64 = 3

    // Header words (byte offsets inside the 4 KiB header; each 8 bytes, 8-aligned).
    static let magicOffset: UInt64 = 0
    static let versionOffset: UInt64 = 8
    /// Data arena: the tail segment's index (the segment appends go to).
    static let tailSegmentOffset: UInt64 = 64
    /// Index arena: the table descriptor, (tableOffset >> tableAlignmentShift) << descriptorLog2Bits | log2(buckets).
    static let descriptorOffset: UInt64 = 64
    /// Index arena: which shard of how many this is, shardIndex << 32 | shardCount (see
    /// `ShardPlace`); 0 (a store written before shards) reads as shard 0 of 1.
    static let shardOffset: UInt64 = 72
    /// The size of a header word, a slot and a record's checksum and length word: the
    /// aligned 8-byte store is the unit of failure atomicity.
    static let wordSize: UInt64 = 8

    // Records: [checksum u64][keyLength u16][flags u16][valueLength u32] key value, padded to 8.
    // flags: 0 for a pair, `deleteFlag` for a delete record (a key, no value).
    /// Byte offsets in a record: the checksum, the length word (key length, flags, value
    /// length), the key (the value follows it).
    static let checksumOffset = 0
    static let lengthWordOffset = 8
    static let keyOffset = 16
    static let recordHeaderSize = 16
    /// The fields of the length word: bits 0..<16 the key length, 16..<32 the flags,
    /// 32..<64 the value length.
    static let keyLengthShift: UInt64 = 0
    static let flagsShift: UInt64 = 16
    static let valueLengthShift: UInt64 = 32
    static let keyLengthMask: UInt64 = 0xFFFF
    static let flagsMask: UInt64 = 0xFFFF
    static let maxKeySize = 1024
    static let maxValueSize = 1 << 20
    static let recordAlignment = 8
    /// The CPU's cache line: the unit the prefetches of records and the log's tail request.
    static let cacheLineSize = 64
    /// The bytes from a record's start that the four prefetches of a record (or of the
    /// log's tail) cover: lines at +0, +64, +128 and +191, so a small record (a 16-byte
    /// key and a 128-byte value make 160 bytes) whole, wherever in its first line it
    /// starts. (Two prefetches, the first and last lines, were 6 % slower for batched gets.)
    static let prefetchedRecordBytes = 192

    @inline(__always)
    static func recordSize(keyCount: Int, valueCount: Int) -> Int {
        (recordHeaderSize + keyCount + valueCount + recordAlignment - 1) & ~(recordAlignment - 1)
    }

    static let deleteFlag: UInt64 = 1

    /// The length word of a record header: key length, flags and value length.
    @inline(__always)
    static func lengthWord(keyCount: Int, valueCount: Int, flags: UInt64 = 0) -> UInt64 {
        UInt64(keyCount) << keyLengthShift | flags << flagsShift | UInt64(valueCount) << valueLengthShift
    }

    // Index slots: 8 bytes, [tag: 20 bits][record offset / 8: 44 bits]; 8 slots a bucket
    // (one 64-byte cache line); linear probing over buckets.
    static let slotSize: UInt64 = wordSize
    static let slotsPerBucket = 8
    static let bucketSize: UInt64 = 64
    static let emptySlot: UInt64 = 0
    /// A deleted entry: probing goes on past it; an insert may reuse it.
    static let tombstone: UInt64 = 1
    /// A slot's tag is the top `64 - tagShift` bits of the key hash, kept above the
    /// record's offset in units of `1 << offsetUnitShift` bytes (the record alignment).
    static let tagShift: UInt64 = 44
    static let offsetUnitShift: UInt64 = 3
    static let offsetMask: UInt64 = (1 << tagShift) - 1

    @inline(__always) static func tag(_ hash: UInt64) -> UInt64 { hash >> tagShift }
    @inline(__always) static func slot(tag: UInt64, offset: UInt64) -> UInt64 { tag << tagShift | offset >> offsetUnitShift }
    @inline(__always) static func slotOffset(_ slot: UInt64) -> UInt64 { (slot & offsetMask) << offsetUnitShift }
    @inline(__always) static func slotTag(_ slot: UInt64) -> UInt64 { slot >> tagShift }
    @inline(__always) static func isLive(_ slot: UInt64) -> Bool { slot > tombstone }

    /// The descriptor word: the table's offset in 4 KiB units above 8 bits of log2(buckets).
    static let tableAlignmentShift: UInt64 = 12
    static let descriptorLog2Bits: UInt64 = 8
    @inline(__always)
    static func descriptor(tableOffset: UInt64, log2Buckets: Int) -> UInt64 {
        (tableOffset >> tableAlignmentShift) << descriptorLog2Bits | UInt64(log2Buckets)
    }
    @inline(__always)
    static func decode(descriptor d: UInt64) -> (tableOffset: UInt64, log2Buckets: Int) {
        ((d >> descriptorLog2Bits) << tableAlignmentShift, Int(d & ((1 << descriptorLog2Bits) - 1)))
    }

    @inline(__always)
    static func segmentStart(_ segment: Int) -> UInt64 { segment == 0 ? headerSize : UInt64(segment) << segmentShift }
    @inline(__always)
    static func segmentEnd(_ segment: Int) -> UInt64 { UInt64(segment + 1) << segmentShift }
    @inline(__always)
    static func segment(of offset: UInt64) -> Int { Int(offset >> segmentShift) }
}

/// A record header's length word, decoded and checked: nil when no record has these
/// lengths (zero bytes past the tail, a torn or damaged header).
struct RecordLengths {
    let word: UInt64
    let keyCount: Int
    let valueCount: Int
    /// A delete record: a key and no value.
    let isDelete: Bool

    @inline(__always)
    init?(_ word: UInt64) {
        let k = Int(word >> Format.keyLengthShift & Format.keyLengthMask), n = Int(word >> Format.valueLengthShift)
        let flags = word >> Format.flagsShift & Format.flagsMask
        guard (1 ... Format.maxKeySize).contains(k), n <= Format.maxValueSize,
              flags == 0 || (flags == Format.deleteFlag && n == 0) else { return nil }
        self.word = word
        keyCount = k
        valueCount = n
        isDelete = flags == Format.deleteFlag
    }

    /// The record's size in the log, padding included.
    var size: Int { Format.recordSize(keyCount: keyCount, valueCount: valueCount) }
}

/// Requests every line of a small record at `base`, wherever in its first line it starts:
/// lines at +0, +64, +128 and +191 (`Format.prefetchedRecordBytes`). A batched get requests
/// so each record it will read, a write the log's tail it will write next.
@inline(__always)
func requestSmallRecord(at base: UnsafeRawPointer) { forEachLineOfSmallRecord(at: base) { daxkv_prefetch($0) } }

/// Requests the lines of a small record at `base` (as `requestSmallRecord`) as data read
/// once (`prefetchnta`), so that they do not push the index out of the caches. A single
/// get reads its record so: 1.13x and 1.16x the gets a second in two sets of four paired
/// rounds (every round 1.12-1.18x; the C ceiling's get gained 1.12-1.17x alike). The index
/// of 1 M keys (16 MiB) fits this machine's 32 MiB L3 and the records (160 MiB) do not;
/// read the usual way, every record's lines displaced index lines, and the next get's
/// bucket missed more often. (A put's read of the old record, the batched get's records:
/// no gain measured.)
@inline(__always)
func requestSmallRecordOnce(at base: UnsafeRawPointer) { forEachLineOfSmallRecord(at: base) { daxkv_prefetch_once($0) } }

@inline(__always)
private func forEachLineOfSmallRecord(at base: UnsafeRawPointer, _ request: (UnsafeRawPointer) -> Void) {
    request(base)
    request(base + Format.cacheLineSize)
    request(base + 2 * Format.cacheLineSize)
    request(base + Format.prefetchedRecordBytes - 1)
}
