// The two hashes of the format: the key hash (index tags, shard choice) and the record
// checksum (torn or damaged records). See samples/daxkv/README.md, "Records".

/// The key hash (and the checksum of versions 1 and 2): a 64-bit hash of a byte string,
/// one multiply-rotate chain 8 bytes a step. Seeded so that the key hash and the checksum
/// differ.
@inline(__always)
func hash64(_ bytes: UnsafeRawBufferPointer, seed: UInt64) -> UInt64 {
    hash64(bytes.baseAddress, bytes.count, seed: seed)
}

@inline(__always)
func hash64(_ base: UnsafeRawPointer?, _ count: Int, seed: UInt64) -> UInt64 {
    var h = seed ^ (UInt64(count) &* HashPrimes.p1)
    var i = 0
    if let base {
        while i + 8 <= count {
            h = mixRound(h, base.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            i += 8
        }
        if i < count { h = mixRound(h, lastBytes(base, from: i, to: count)) }
    }
    return avalanche(h)
}

/// One step of a chain: a word mixed into `h` (xor, rotate, multiply).
@inline(__always)
func mixRound(_ h: UInt64, _ word: UInt64) -> UInt64 {
    ((h ^ (word &* HashPrimes.p2)).rotl(31)) &* HashPrimes.p1
}

/// The bytes `start..<end` (fewer than 8) as a little-endian word, zero-extended.
@inline(__always)
func lastBytes(_ base: UnsafeRawPointer, from start: Int, to end: Int) -> UInt64 {
    var w: UInt64 = 0
    for i in start ..< end { w |= UInt64(base.load(fromByteOffset: i, as: UInt8.self)) << (8 * UInt64(i - start)) }
    return w
}

/// murmur3's 64-bit finalizer: every input bit reaches every output bit.
@inline(__always)
func avalanche(_ x: UInt64) -> UInt64 {
    var h = x
    h ^= h >> 33
    h = h &* 0xFF51_AFD7_ED55_8CCD
    h ^= h >> 33
    h = h &* 0xC4CE_B9FE_1A85_EC53
    h ^= h >> 33
    return h
}

extension UInt64 {
    @inline(__always) func rotl(_ n: UInt64) -> UInt64 { self << n | self >> (64 - n) }
}

/// The multipliers of both hashes (xxHash64's primes 1 and 2).
enum HashPrimes {
    static let p1: UInt64 = 0x9E37_79B1_85EB_CA87
    static let p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
}

enum Seeds {
    static let key: UInt64 = 0x6B65_795F_6861_7368
    static let record: UInt64 = 0x7265_636F_7264_5F63
}

/// Four independent multiply-rotate accumulators (xxHash64's shape): word i of a range
/// goes to lane i mod 4, so the chains run side by side and a 144-byte record costs about
/// a quarter of one chain's latency. Version 3's record checksum.
struct ChecksumLanes {
    private var a: UInt64, b: UInt64, c: UInt64, d: UInt64

    @inline(__always)
    init(seed: UInt64) {
        a = seed &+ HashPrimes.p1 &+ HashPrimes.p2
        b = seed &+ HashPrimes.p2
        c = seed
        d = seed &- HashPrimes.p1
    }

    /// Mixes in `count` bytes from `base`: whole 32-byte blocks one word a lane, then up
    /// to three words into lanes a, b and c, then the last 1 to 7 bytes (zero-extended)
    /// into lane d. Where a range ends is fixed by the length word in the seed.
    @inline(__always)
    mutating func absorb(_ base: UnsafeRawPointer?, _ count: Int) {
        guard let base else { return }
        var i = 0
        while i + 32 <= count {
            a = mixRound(a, base.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            b = mixRound(b, base.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self))
            c = mixRound(c, base.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self))
            d = mixRound(d, base.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self))
            i += 32
        }
        if i + 8 <= count {
            a = mixRound(a, base.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            i += 8
            if i + 8 <= count {
                b = mixRound(b, base.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                i += 8
                if i + 8 <= count {
                    c = mixRound(c, base.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                    i += 8
                }
            }
        }
        if i < count { d = mixRound(d, lastBytes(base, from: i, to: count)) }
    }

    /// The lanes merged and avalanched (murmur3's finalizer).
    @inline(__always)
    func finish() -> UInt64 {
        avalanche(a.rotl(1) &+ b.rotl(7) &+ c.rotl(12) &+ d.rotl(18))
    }
}

/// The checksum a record is written with (version 3): over the length word (in the
/// seed), the key and the value.
@inline(__always)
func recordChecksum(lengthWord: UInt64, key: UnsafeRawPointer?, keyCount: Int, value: UnsafeRawPointer?, valueCount: Int) -> UInt64 {
    var lanes = ChecksumLanes(seed: Seeds.record ^ lengthWord)
    lanes.absorb(key, keyCount)
    lanes.absorb(value, valueCount)
    return lanes.finish()
}

/// The checksum of records written by version 1 and 2 stores: one chain over the key,
/// then one over the value. Records of an upgraded store keep it until compaction copies
/// them (copied verbatim: still this checksum) or a put replaces them.
@inline(never)
func version2RecordChecksum(lengthWord: UInt64, key: UnsafeRawPointer?, keyCount: Int, value: UnsafeRawPointer?, valueCount: Int) -> UInt64 {
    let a = hash64(key, keyCount, seed: Seeds.record ^ lengthWord)
    return hash64(value, valueCount, seed: a)
}

/// Whether `stored` is the checksum of a record with these fields: version 3's, or
/// (checked only when that fails) version 2's, which an upgraded store's older records
/// carry. A torn record thus passes with probability about 2^-63, not 2^-64.
@inline(__always)
func checksumMatches(_ stored: UInt64, lengthWord: UInt64, key: UnsafeRawPointer?, keyCount: Int, value: UnsafeRawPointer?, valueCount: Int) -> Bool {
    if recordChecksum(lengthWord: lengthWord, key: key, keyCount: keyCount, value: value, valueCount: valueCount) == stored { return true }
    return version2RecordChecksum(lengthWord: lengthWord, key: key, keyCount: keyCount, value: value, valueCount: valueCount) == stored
}

/// Whether the record at `base`, whose lengths are `lengths`, matches its checksum.
@inline(__always)
func recordIsIntact(_ base: UnsafeRawPointer, _ lengths: RecordLengths) -> Bool {
    let key = base + Format.keyOffset
    return checksumMatches(base.load(fromByteOffset: Format.checksumOffset, as: UInt64.self), lengthWord: lengths.word,
                           key: key, keyCount: lengths.keyCount, value: key + lengths.keyCount, valueCount: lengths.valueCount)
}
