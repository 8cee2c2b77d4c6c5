// Seeded property tests of the decoder: random mutations of valid copies never crash it,
// and whatever it accepts re-encodes to exactly the bytes it read (the decoder is
// canonical: one table, one encoding). Random and all-zero buffers are not heaps.
//
// Reproduce a failure with the seed and iteration it prints:
//   DAXHEAP_FUZZ_SEED=<seed> swift test --filter MetadataFuzzTests
// DAXHEAP_FUZZ_ITERATIONS sets the mutations per shard (4 shards; default 30,000).

import DaxMetadata
#if canImport(Glibc)
import Glibc
#endif
import Testing
import DaxTestSupport

private func environmentNumber(_ name: String) -> UInt64? {
    guard let raw = getenv(name) else { return nil }
    let text = String(cString: raw)
    return text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
}

private let fuzzSeed: UInt64 = environmentNumber("DAXHEAP_FUZZ_SEED") ?? 0xDA7_4EA9_5EED_0001
private let iterationsPerShard = Int(environmentNumber("DAXHEAP_FUZZ_ITERATIONS") ?? 30_000)
private let shardCount = 4

/// A random valid table: up to `maxBlocks` usable blocks, cut into runs, some runs given
/// to up to `maxArenas` arenas in a random order, the rest free; random ids with gaps,
/// random unique names of 1 to 63 bytes mixing 1- to 4-byte UTF-8.
private func randomMetadata(_ rng: inout SplitMix64, maxBlocks: Int = 40, maxArenas: Int = 5) -> HeapMetadata {
    let blocks = Int.random(in: 1 ... maxBlocks, using: &rng)
    var runs: [Range<Int>] = []
    var at = 0
    while at < blocks {
        let length = min(blocks - at, Int.random(in: 1 ... 4, using: &rng))
        runs.append(at ..< at + length)
        at += length
    }
    runs.shuffle(using: &rng)
    let arenaCount = min(runs.count, Int.random(in: 0 ... maxArenas, using: &rng))
    var owned = [[Range<Int>]](repeating: [], count: arenaCount)
    for (i, run) in runs.enumerated() {
        if i < arenaCount {
            owned[i].append(run)
        } else if arenaCount > 0, Bool.random(using: &rng) {
            owned[Int.random(in: 0 ..< arenaCount, using: &rng)].append(run)
        }
    }
    let alphabet = ["a", "Z", "0", "-", "_", " ", ".", "é", "€", "😀", "ß", "日", "\u{A0}", "e\u{301}"]
    var names = Set<String>()
    var arenas: [ArenaRecord] = []
    var id = UInt64.random(in: 0 ... 3, using: &rng)
    for runs in owned {
        id += UInt64.random(in: 1 ... 3, using: &rng)
        var name = ""
        repeat {
            name = ""
            let target = Int.random(in: 1 ... 63, using: &rng)
            while true {
                let piece = alphabet.randomElement(using: &rng)!
                if name.utf8.count + piece.utf8.count > target { break }
                name += piece
            }
            if name.isEmpty { name = "n" }
        } while !names.insert(name).inserted
        var extents: [ExtentRecord] = []
        var arenaOffset: UInt64 = 0
        for run in runs.shuffled(using: &rng) {
            let length = UInt64(run.count) * blockSize
            extents.append(ExtentRecord(deviceOffset: UInt64(run.lowerBound + 1) * blockSize, arenaOffset: arenaOffset, length: length))
            arenaOffset += length
        }
        arenas.append(ArenaRecord(id: id, name: name, extents: extents))
    }
    let next = Bool.random(using: &rng) ? id + UInt64.random(in: 1 ... 3, using: &rng) : .max
    let alignments: [UInt64] = [4096, 64 << 10, 2 * MiB, 1 << 30]
    return HeapMetadata(
        uuid: HeapUUID(high: rng.next(), low: rng.next()), deviceSize: UInt64(blocks + 2) * blockSize,
        alignment: alignments.randomElement(using: &rng)!, generation: rng.next() >> UInt64.random(in: 0 ... 63, using: &rng),
        nextArenaID: next, arenas: arenas)
}

/// Values that sit on the decoder's boundaries.
private let interesting32: [UInt32] = [0, 1, 2, 3, 4, 5, 6, 15, 16, 17, 24, 63, 64, 96, 0x7F, 0x80, 0xFF, 0x100,
                                       21_844, 21_845, 87_378, 87_379, UInt32(MetadataCopy.maxTableLength),
                                       UInt32(MetadataCopy.maxTableLength) + 1, 0x7FFF_FFFF, 0x8000_0000, .max - 1, .max]
private let interesting64: [UInt64] = [0, 1, 2, 4096, MiB, 2 * MiB, 2 * MiB + 1, 4 * MiB, 6 * MiB, 8 * MiB, 1 << 30,
                                       1 << 32, 1 << 62, 1 << 63, UInt64.max & ~(2 * MiB - 1), .max - 1, .max]

/// One random mutation of `bytes`; returns its description.
private func mutate(_ bytes: inout [UInt8], _ rng: inout SplitMix64) -> String {
    func offset() -> Int { Int.random(in: 0 ..< max(1, bytes.count), using: &rng) }
    let arenas = bytes.count >= 68 ? Int(min(bytes.le32(at: Offsets.arenaCount), 64)) : 0
    switch Int.random(in: 0 ..< 10, using: &rng) {
    case 0:
        guard !bytes.isEmpty else { return "flip (empty)" }
        let n = Int.random(in: 1 ... 4, using: &rng)
        var flipped: [Int] = []
        for _ in 0 ..< n {
            let bit = Int.random(in: 0 ..< bytes.count * 8, using: &rng)
            bytes[bit / 8] ^= 1 << UInt8(bit % 8)
            flipped.append(bit)
        }
        return "flip bits \(flipped)"
    case 1:
        guard !bytes.isEmpty else { return "overwrite (empty)" }
        let n = Int.random(in: 1 ... 8, using: &rng)
        var written: [String] = []
        for _ in 0 ..< n {
            let at = offset()
            let value = UInt8.random(in: 0 ... 255, using: &rng)
            bytes[at] = value
            written.append("\(at)=\(value)")
        }
        return "overwrite \(written)"
    case 2:
        let length = Int.random(in: 0 ... bytes.count, using: &rng)
        bytes.removeLast(bytes.count - length)
        return "truncate to \(length)"
    case 3:
        let n = Int.random(in: 1 ... 128, using: &rng)
        bytes += (0 ..< n).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
        return "extend by \(n) random bytes"
    case 4:
        // A 32-bit count or index: the table length, the counts, an arena's run.
        var fields = [Offsets.tableLength, Offsets.arenaCount, Offsets.extentCount, Offsets.version, Offsets.flags]
        for i in 0 ..< arenas { fields += [Offsets.arenaFirstExtent(i), Offsets.arenaExtentCount(i)] }
        let field = fields.randomElement(using: &rng)!
        guard field + 4 <= bytes.count else { return "count at \(field) (too short)" }
        let value = Bool.random(using: &rng)
            ? interesting32.randomElement(using: &rng)!
            : bytes.le32(at: field) &+ UInt32(bitPattern: Int32.random(in: -3 ... 3, using: &rng))
        bytes.setLE32(value, at: field)
        return "u32 at \(field) = \(value)"
    case 5:
        // A 64-bit field: header sizes, ids, arena sizes, extent fields.
        var fields = [Offsets.uuidHigh, Offsets.deviceSize, Offsets.alignment, Offsets.generation, Offsets.nextArenaID]
        for i in 0 ..< arenas { fields += [Offsets.arenaID(i), Offsets.arenaSize(i)] }
        let extents = bytes.count >= 72 ? Int(min(bytes.le32(at: Offsets.extentCount), 256)) : 0
        for e in 0 ..< extents {
            let at = Offsets.extent(e, arenaCount: arenas)
            fields += [at, at + 8, at + 16]
        }
        let field = fields.randomElement(using: &rng)!
        guard field + 8 <= bytes.count else { return "u64 at \(field) (too short)" }
        let value: UInt64 = switch Int.random(in: 0 ..< 3, using: &rng) {
        case 0: interesting64.randomElement(using: &rng)!
        case 1: bytes.le64(at: field) &+ blockSize &* UInt64(bitPattern: Int64.random(in: -2 ... 2, using: &rng))
        default: rng.next()
        }
        bytes.setLE64(value, at: field)
        return "u64 at \(field) = \(value)"
    case 6:
        guard arenas > 0 else { return "name length (no arenas)" }
        let i = Int.random(in: 0 ..< arenas, using: &rng)
        guard Offsets.arenaNameLength(i) < bytes.count else { return "name length (too short)" }
        let value = UInt8.random(in: 0 ... 255, using: &rng)
        bytes[Offsets.arenaNameLength(i)] = value
        return "name length of arena \(i) = \(value)"
    case 7:
        // A name byte set to something that keeps it printable ASCII, or not.
        guard arenas > 0 else { return "name byte (no arenas)" }
        let i = Int.random(in: 0 ..< arenas, using: &rng)
        let at = Offsets.arenaName(i) + Int.random(in: 0 ..< 63, using: &rng)
        guard at < bytes.count else { return "name byte (too short)" }
        let value = Bool.random(using: &rng) ? UInt8.random(in: 0x20 ... 0x7E, using: &rng) : UInt8.random(in: 0 ... 255, using: &rng)
        bytes[at] = value
        return "name byte at \(at) = \(value)"
    case 8:
        // Swap two 8-byte words (moves ids, offsets and lengths between entries).
        guard bytes.count >= 80 else { return "swap (too short)" }
        let a = Int.random(in: 64 ... bytes.count - 8, using: &rng)
        let b = Int.random(in: 64 ... bytes.count - 8, using: &rng)
        let wa = bytes.le64(at: a), wb = bytes.le64(at: b)
        bytes.setLE64(wb, at: a)
        bytes.setLE64(wa, at: b)
        return "swap words at \(a) and \(b)"
    default:
        // Make the header's length agree with the buffer, as a careful forger would.
        guard bytes.count >= 64 else { return "fix length (too short)" }
        bytes.setLE32(UInt32(truncatingIfNeeded: bytes.count - 64), at: Offsets.tableLength)
        return "table length = \(bytes.count - 64)"
    }
}

@Suite struct MetadataFuzzTests {
    @Test func randomTablesRoundTrip() throws {
        var rng = SplitMix64(seed: fuzzSeed)
        for i in 0 ..< 2_000 {
            let metadata = randomMetadata(&rng, maxBlocks: 200, maxArenas: 30)
            let bytes = MetadataCopy.encode(metadata)
            let decoded = MetadataCopy.decode(bytes)
            #expect(decoded == .success(metadata), "seed \(fuzzSeed) table \(i)")
            if case .success(let m) = decoded { #expect(MetadataCopy.encode(m) == bytes, "seed \(fuzzSeed) table \(i)") }
        }
    }

    @Test(arguments: 0 ..< shardCount)
    func randomMutationsNeverCrashAndDecodeCanonically(shard: Int) throws {
        // Base copies, small so that many mutations run quickly.
        var baseRNG = SplitMix64(seed: fuzzSeed ^ 0xBA5E)
        let bases = (0 ..< 64).map { _ in MetadataCopy.encode(randomMetadata(&baseRNG)) }
        var accepted = 0
        var acceptedChanged = 0
        var failures = 0
        var kinds: [String: Int] = [:]
        for iteration in shard * iterationsPerShard ..< (shard + 1) * iterationsPerShard {
            // One generator per iteration, so that any iteration can be replayed alone.
            var rng = SplitMix64(seed: fuzzSeed &+ UInt64(iteration) &* 0xD1B5_4A32_D192_ED03)
            let base = bases[Int.random(in: 0 ..< bases.count, using: &rng)]
            var bytes = base
            var log: [String] = []
            for _ in 0 ..< Int.random(in: 1 ... 3, using: &rng) { log.append(mutate(&bytes, &rng)) }
            // Usually re-seal, so that the mutation reaches the semantic validation.
            if Int.random(in: 0 ..< 10, using: &rng) < 7, bytes.count >= 64 {
                let claimed = bytes.claimedTableLength
                if claimed <= MetadataCopy.maxTableLength, 64 + claimed <= bytes.count {
                    bytes.reseal()
                    log.append("reseal")
                }
            }
            let where_ = "seed \(fuzzSeed) iteration \(iteration): \(log.joined(separator: "; "))"
            switch MetadataCopy.decode(bytes) {
            case .success(let metadata):
                accepted += 1
                let copyLength = 64 + bytes.claimedTableLength
                let reencoded = MetadataCopy.encode(metadata)
                if reencoded != Array(bytes[0 ..< copyLength]) {
                    failures += 1
                    Issue.record("decoded copy does not re-encode to its own bytes; \(where_)")
                }
                if reencoded != base { acceptedChanged += 1 }
                #expect(MetadataCopy.fits(arenas: metadata.arenas.count, extents: metadata.extentCount), "\(where_)")
                #expect(metadata.arenas.allSatisfy { ArenaName.problem(with: $0.name) == nil }, "\(where_)")
            case .failure(.notADaxHeap):
                kinds["notADaxHeap", default: 0] += 1
                if bytes.count >= 64, Array(bytes[0 ..< 8]) == MetadataCopy.magic {
                    failures += 1
                    Issue.record("refused as not a heap although the magic is there; \(where_)")
                }
            case .failure(.unsupportedVersion(let v)):
                kinds["unsupportedVersion", default: 0] += 1
                if v == MetadataCopy.formatVersion || v == MetadataCopy.identityFormatVersion || v != bytes.le32(at: Offsets.version) {
                    failures += 1
                    Issue.record("unsupported version \(v) but the field holds \(bytes.le32(at: Offsets.version)); \(where_)")
                }
            case .failure(.corrupt(let why)):
                kinds[refusalKind(why), default: 0] += 1
                if why.isEmpty {
                    failures += 1
                    Issue.record("corrupt without a reason; \(where_)")
                }
            }
            if failures >= 20 {
                Issue.record("stopping after 20 failures; seed \(fuzzSeed)")
                break
            }
        }
        // The property is only worth something if mutated copies do get accepted.
        #expect(accepted > iterationsPerShard / 100, "only \(accepted) accepted; seed \(fuzzSeed) shard \(shard); refusals \(kinds)")
        #expect(acceptedChanged > iterationsPerShard / 200, "only \(acceptedChanged) changed copies accepted; seed \(fuzzSeed) shard \(shard)")
        print("metadata fuzz shard \(shard), seed \(fuzzSeed): \(iterationsPerShard) mutations, \(accepted) accepted (\(acceptedChanged) changed), refusals \(kinds.sorted { $0.value > $1.value }.prefix(12).map { "\($0.key): \($0.value)" })")
    }

    @Test func randomBytesAreNotAHeap() {
        var rng = SplitMix64(seed: fuzzSeed ^ 0x5A5A)
        for i in 0 ..< 1_000 {
            let length = i < 10 ? i * 7 : Int.random(in: 0 ... 4096, using: &rng)
            let bytes = (0 ..< length).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
            #expect(MetadataCopy.decode(bytes) == .failure(.notADaxHeap), "seed \(fuzzSeed) buffer \(i) of \(length) bytes")
        }
        // Two whole blocks of noise.
        for i in 0 ..< 2 {
            let bytes = (0 ..< Int(blockSize)).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
            #expect(MetadataCopy.decode(bytes) == .failure(.notADaxHeap), "seed \(fuzzSeed) block \(i)")
        }
    }

    /// Noise behind a correct magic (and, half the time, version): refused, never a crash.
    @Test func randomBytesBehindTheMagicAreRefused() {
        var rng = SplitMix64(seed: fuzzSeed ^ 0xA5A5)
        for i in 0 ..< 1_000 {
            let length = Int.random(in: 8 ... 4096, using: &rng)
            var bytes = MetadataCopy.magic + (8 ..< length).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
            if i % 2 == 0, bytes.count >= 12 { bytes.setLE32(1, at: Offsets.version) }
            if i % 4 == 0, bytes.count >= 64 { bytes.setLE32(UInt32(Int.random(in: 16 ... max(16, bytes.count - 64), using: &rng)), at: Offsets.tableLength) }
            switch MetadataCopy.decode(bytes) {
            case .success: Issue.record("seed \(fuzzSeed) buffer \(i) decoded")
            case .failure(.notADaxHeap): #expect(bytes.count < 64, "seed \(fuzzSeed) buffer \(i)")
            case .failure: break
            }
        }
    }

    @Test(arguments: [0, 1, 7, 8, 63, 64, 65, 80, 4096, Int(blockSize)])
    func zerosAreNotAHeap(length: Int) {
        let zeros = [UInt8](repeating: 0, count: length)
        #expect(MetadataCopy.decode(zeros) == .failure(.notADaxHeap))
        #expect(zeros.withUnsafeBytes { MetadataCopy.claimedTableLength(header: $0) } == nil)
    }

    @Test func onesAreNotAHeap() {
        #expect(MetadataCopy.decode([UInt8](repeating: 0xFF, count: Int(blockSize))) == .failure(.notADaxHeap))
    }

    /// An almost-magic: the seven letters without the NUL, or another case.
    @Test func nearMissMagicsAreNotAHeap() {
        let valid = sampleBytes()
        for magic in ["DAXHEAP ", "daxheap\0", "DAXHEA\0\0", "DAXHEAP1", "\0DAXHEAP"] {
            var bytes = valid
            bytes.replaceSubrange(0 ..< 8, with: Array(magic.utf8))
            bytes.reseal()
            #expect(MetadataCopy.decode(bytes) == .failure(.notADaxHeap), "\(magic.debugDescription)")
        }
    }
}

/// A refusal reason's first words, with the words that hold numbers or names blanked, to
/// count the reasons by kind.
private func refusalKind(_ why: String) -> String {
    why.split(separator: " ").prefix(6).map { word in
        word.contains(where: { $0.isNumber || $0 == "\"" }) ? "#" : String(word)
    }.joined(separator: " ")
}

