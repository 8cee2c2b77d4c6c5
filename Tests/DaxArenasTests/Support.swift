// Shared helpers of the DaxArenas tests: block arithmetic over the usable region, an
// independent checker of the table's rules (not ArenaTable.invariantViolation), a
// translation checker against a linear scan, and a deterministic RNG.

import DaxArenas
import DaxMetadata
import DaxRadix
import DaxResourceTree
import Testing
import DaxTestSupport

/// The heap's granularity, 2 MiB: one "block" (and one radix page).
let unit: UInt64 = Geometry.blockSize

/// A table whose usable region holds exactly `blocks` 2 MiB blocks: the device also
/// holds the two metadata blocks, so the region is `[2 MiB, 2 MiB + blocks * 2 MiB)`.
func table(usableBlocks blocks: UInt64) -> ArenaTable {
    ArenaTable(deviceSize: (blocks + 2) * unit)
}

/// Absolute device offset of usable block `n` (block 0 starts at 2 MiB).
func dev(_ n: UInt64) -> UInt64 { unit + n * unit }

/// An extent written in blocks: at usable block `at`, arena block `off`, `len` blocks.
func extent(at: UInt64, off: UInt64, len: UInt64) -> ExtentRecord {
    ExtentRecord(deviceOffset: dev(at), arenaOffset: off * unit, length: len * unit)
}

/// A free range written in usable blocks, as absolute device offsets.
func gap(_ from: UInt64, _ to: UInt64) -> Range<UInt64> { dev(from) ..< dev(to) }

/// The extents of the arena `name` (empty if there is no such arena).
func extents(_ t: ArenaTable, _ name: String) -> [ExtentRecord] { t.arena(named: name)?.extents ?? [] }

/// Readable extents for failure messages: `[dev block +len @arena block]`.
func describe(_ extents: [ExtentRecord]) -> String {
    extents.map { e in
        "[blk \(Int64(bitPattern: e.deviceOffset / unit) - 1) +\(e.length / unit) @\(e.arenaOffset / unit)]"
    }.joined(separator: " ")
}

/// The first break of contiguity in `extents` (taken in the order given, which for an
/// arena is arena-offset order): arena offsets must run 0, len0, len0+len1, ... with no
/// hole and no overlap. Independent of ArenaTable's own invariant check.
func contiguityViolation(_ extents: [ExtentRecord]) -> String? {
    var expected: UInt64 = 0
    for (i, e) in extents.enumerated() {
        if e.arenaOffset != expected {
            return "extent \(i) at arena offset \(e.arenaOffset / unit) blocks, expected \(expected / unit)"
        }
        expected += e.length
    }
    return nil
}

/// Rules checked without ArenaTable's own code: contiguity of every arena, extents of
/// all arenas pairwise disjoint and inside the usable region, sizes and available size.
func independentViolation(_ t: ArenaTable) -> String? {
    let usable = Geometry.usableRegion(deviceSize: t.deviceSize)
    var all: [(start: UInt64, end: UInt64, name: String)] = []
    var total: UInt64 = 0
    for arena in t.arenas.values {
        if let problem = contiguityViolation(arena.extents) { return "arena \(arena.name): \(problem)" }
        let sum = arena.extents.reduce(0) { $0 + $1.length }
        if sum != arena.size { return "arena \(arena.name): size \(arena.size) != sum \(sum)" }
        total += sum
        for e in arena.extents {
            if e.length == 0 || e.deviceOffset % unit != 0 || e.length % unit != 0 {
                return "arena \(arena.name): extent \(describe([e])) empty or misaligned"
            }
            if e.deviceOffset < usable.lowerBound || e.deviceOffset + e.length > usable.upperBound {
                return "arena \(arena.name): extent \(describe([e])) leaves the usable region"
            }
            all.append((e.deviceOffset, e.deviceOffset + e.length, arena.name))
        }
    }
    let blocks = UInt64(usable.upperBound - usable.lowerBound) / unit
    if blocks <= 1 << 16 {
        // Small regions: one flag per block (a sort is slow in debug builds).
        var owner = [String?](repeating: nil, count: Int(blocks))
        for e in all {
            for b in Int((e.start - usable.lowerBound) / unit) ..< Int((e.end - usable.lowerBound) / unit) {
                if let other = owner[b] { return "extents of \(other) and \(e.name) overlap in block \(b)" }
                owner[b] = e.name
            }
        }
    } else {
        all.sort { $0.start < $1.start }
        for i in all.indices.dropFirst() where all[i - 1].end > all[i].start {
            return "extents of \(all[i - 1].name) and \(all[i].name) overlap at \(all[i].start)"
        }
    }
    if t.availableSize != usable.upperBound - usable.lowerBound - total {
        return "available \(t.availableSize) != usable \(usable.upperBound - usable.lowerBound) - used \(total)"
    }
    if t.extentCount != all.count { return "extentCount \(t.extentCount) != \(all.count)" }
    return nil
}

/// Compares the radix translation (`extentIndex(containing:)`, `translate`) with the
/// binary search and with a linear scan at `offsets`; returns the first disagreement.
func translationViolation(_ layout: ArenaLayout, at offsets: [UInt64]) -> String? {
    for offset in offsets {
        let radix = layout.extentIndex(containing: offset)
        let binary = layout.extentIndexByBinarySearch(containing: offset)
        let linear = layout.extents.firstIndex { offset >= $0.arenaOffset && offset - $0.arenaOffset < $0.length }
        if radix != linear || binary != linear {
            return "\(layout.name) offset \(offset): radix \(String(describing: radix)), binary search "
                + "\(String(describing: binary)), linear scan \(String(describing: linear))"
        }
        let translated = layout.translate(offset)
        if let i = linear {
            let e = layout.extents[i]
            let within = offset - e.arenaOffset
            guard let translated, translated.deviceOffset == e.deviceOffset + within,
                  translated.contiguous == e.length - within
            else {
                return "\(layout.name) offset \(offset): translate gave \(String(describing: translated)), "
                    + "expected (\(e.deviceOffset + within), \(e.length - within))"
            }
        } else if translated != nil {
            return "\(layout.name) offset \(offset) is past the end but translates"
        }
    }
    return nil
}

/// Every 2 MiB page of the arena (its first and last byte), every extent's first and
/// last byte, and the first bytes past the end.
func everyPageProbe(_ layout: ArenaLayout) -> [UInt64] {
    var offsets: [UInt64] = []
    for page in stride(from: 0, to: layout.size, by: Int(unit)) {
        offsets += [page, page + 1, page + unit - 1]
    }
    for e in layout.extents { offsets += [e.arenaOffset, e.arenaOffset + e.length - 1] }
    offsets += [layout.size, layout.size + 1, layout.size + unit, .max]
    return offsets
}

/// Everything a table must satisfy, checked with #expect: its own invariants, the
/// independent rules, and the translation of every page of every arena.
func expectSound(_ t: ArenaTable, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(t.invariantViolation() == nil, sourceLocation: sourceLocation)
    #expect(independentViolation(t) == nil, sourceLocation: sourceLocation)
    for arena in t.arenas.values {
        #expect(translationViolation(arena, at: everyPageProbe(arena)) == nil, sourceLocation: sourceLocation)
    }
}

/// Runs a provisioning call that must be refused with exactly `expected`, and checks the
/// table is left exactly as it was (the whole value, and its radix trees).
func expectRefused(
    _ expected: ProvisionError, _ t: inout ArenaTable,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ call: (inout ArenaTable) throws(ProvisionError) -> Void
) {
    let before = t
    do {
        try call(&t)
        Issue.record("expected \(expected) but the call succeeded", sourceLocation: sourceLocation)
    } catch {
        #expect(error == expected, sourceLocation: sourceLocation)
    }
    #expect(t == before, "a refused call changed the table", sourceLocation: sourceLocation)
    for (id, arena) in before.arenas {
        #expect(t.arenas[id]?.radix == arena.radix, "a refused call changed the radix tree of \(arena.name)",
                sourceLocation: sourceLocation)
    }
}

/// The metadata round trip of the pure layer ("reopen"): table -> HeapMetadata -> table,
/// and the same through the encoded bytes. Returns the first difference.
func roundTripViolation(_ t: ArenaTable, generation: UInt64 = 1) -> String? {
    let metadata = t.metadata(uuid: HeapUUID(high: 0x0123_4567_89AB_4CDE, low: 0x8765_4321_0FED_CBA9),
                              alignment: unit, generation: generation)
    let ids = metadata.arenas.map(\.id)
    if ids != ids.sorted() { return "metadata arenas are not ordered by id: \(ids)" }
    guard MetadataCopy.fits(arenas: metadata.arenas.count, extents: metadata.extentCount) else {
        return "a table ArenaTable accepted does not fit a metadata block"
    }
    let reopened: ArenaTable
    do { reopened = try ArenaTable(metadata: metadata) } catch { return "ArenaTable(metadata:) threw \(error)" }
    if reopened != t { return "ArenaTable(metadata:) differs from the table" }
    for (id, arena) in t.arenas where reopened.arenas[id]?.radix != arena.radix {
        return "reopened radix tree of \(arena.name) differs"
    }
    if let problem = reopened.invariantViolation() { return "reopened table: \(problem)" }
    let bytes = MetadataCopy.encode(metadata)
    switch MetadataCopy.decode(bytes) {
    case .failure(let error): return "decode(encode(metadata)) failed: \(error)"
    case .success(let decoded):
        if decoded != metadata { return "decode(encode(metadata)) != metadata" }
        do {
            if try ArenaTable(metadata: decoded) != t { return "table from decoded bytes differs" }
        } catch { return "ArenaTable(metadata: decoded) threw \(error)" }
    }
    return nil
}


/// Checks `owners(of:)` on `range` against the table: the pieces tile the part of the
/// range inside the device in device order, each metadata piece lies in its block, each
/// arena piece translates back to its own start (through the radix tree) and stays in one
/// extent, and each unallocated piece touches no extent.
func ownersViolation(_ t: ArenaTable, _ range: Range<UInt64>) -> String? {
    let pieces = t.owners(of: range)
    let clipped = range.clamped(to: 0 ..< t.deviceSize)
    if clipped.isEmpty { return pieces.isEmpty ? nil : "\(range): pieces for an empty clip: \(pieces)" }
    var cursor = clipped.lowerBound
    for (piece, owner) in pieces {
        if piece.lowerBound != cursor || piece.isEmpty { return "\(range): piece \(piece) does not follow \(cursor)" }
        cursor = piece.upperBound
        switch owner {
        case .primaryMetadata:
            if piece.upperBound > unit { return "\(range): primary metadata piece \(piece)" }
        case .secondaryMetadata:
            if piece.lowerBound < t.deviceSize - unit { return "\(range): secondary metadata piece \(piece)" }
        case .arena(let name, let arenaOffset):
            guard let layout = t.arena(named: name) else { return "\(range): piece \(piece) of unknown arena \(name)" }
            guard let (device, contiguous) = layout.translate(arenaOffset), device == piece.lowerBound,
                  contiguous >= piece.upperBound - piece.lowerBound
            else { return "\(range): piece \(piece) of \(name) @\(arenaOffset) does not translate back" }
        case .unallocated:
            for arena in t.arenas.values {
                for e in arena.extents where e.deviceOffset < piece.upperBound && piece.lowerBound < e.deviceOffset + e.length {
                    return "\(range): unallocated piece \(piece) overlaps an extent of \(arena.name)"
                }
            }
            if piece.lowerBound < unit || piece.upperBound > t.deviceSize - unit {
                return "\(range): unallocated piece \(piece) outside the usable region"
            }
        }
    }
    if cursor != clipped.upperBound { return "\(range): pieces end at \(cursor), not \(clipped.upperBound)" }
    return nil
}

/// A fragmented table on a 14-block device: a [0,2) @0 + [6,8) @2, c [4,6), d [8,10);
/// free [2,4) and [10,12) (usable blocks, counted from the start of the usable region).
func fragmentedTable() throws -> ArenaTable {
    var t = table(usableBlocks: 12)
    try t.create(name: "a", size: 2 * unit)
    try t.create(name: "b", size: 2 * unit)
    try t.create(name: "c", size: 2 * unit)
    try t.resize(name: "a", to: 4 * unit)
    try t.create(name: "d", size: 2 * unit)
    try t.destroy(name: "b")
    return t
}
