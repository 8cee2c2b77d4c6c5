// A seeded, model-based randomized test: thousands of random create / resize / destroy
// requests on a 1 GiB device, each checked against a simple reference model
// (name -> size) and an independent first-fit placement reference, with the table's
// invariants after every operation and a metadata round trip ("reopen") every 100.
// On the side, every grow is replayed through the seed's loop (SeedRegion): where the
// seed is expected to place the same extents it must, and the test counts how often the
// seed breaks arena-offset contiguity where ArenaTable never does.

import DaxArenas
import DaxMetadata
import DaxRadix
import DaxResourceTree
import Testing
import DaxTestSupport

/// The reference model: what the user sees of a table.
private struct Model {
    let usable: UInt64
    var sizes: [String: UInt64] = [:]
    var nextID: UInt64 = 1
    var used: UInt64 { sizes.values.reduce(0, +) }
    var available: UInt64 { usable - used }

    /// The name rule, written independently of ArenaName: 1...63 UTF-8 bytes, no Cc.
    static func isValid(_ name: String) -> Bool {
        let bytes = name.utf8.count
        return bytes >= 1 && bytes <= 63
            && !name.unicodeScalars.contains { $0.value < 0x20 || (0x7F ... 0x9F).contains($0.value) }
    }

    /// The refusal a request must get, or nil if it must succeed. `invalidName` carries
    /// an empty reason here: only the case and the name are compared.
    func refusal(create name: String, size: UInt64) -> ProvisionError? {
        if !Self.isValid(name) { return .invalidName(name, reason: "") }
        if sizes[name] != nil { return .nameTaken(name) }
        if size == 0 || size % unit != 0 { return .misalignedSize(size) }
        if size > available { return .noSpace(requested: size, available: available) }
        return nil
    }

    func refusal(resize name: String, to size: UInt64) -> ProvisionError? {
        guard let current = sizes[name] else { return .unknownArena(name) }
        if size == 0 || size % unit != 0 { return .misalignedSize(size) }
        if size > current, size - current > available {
            return .noSpace(requested: size - current, available: available)
        }
        return nil
    }

    func refusal(destroy name: String) -> ProvisionError? {
        sizes[name] == nil ? .unknownArena(name) : nil
    }
}

/// The placement the design promises for growing arena `name` (nil: a new arena) by
/// `amount`, computed from the extents alone: extend the highest-offset extent into the
/// free space right after it, then take the gaps first fit from the start of the region.
private func referenceGrow(_ t: ArenaTable, _ name: String?, by amount: UInt64) -> [ExtentRecord] {
    let usable = Geometry.usableRegion(deviceSize: t.deviceSize)
    var mine = name.flatMap { t.arena(named: $0)?.extents } ?? []
    var occupied = t.arenas.values.flatMap { $0.extents }.map { ($0.deviceOffset, $0.deviceOffset + $0.length) }
    occupied.sort { $0.0 < $1.0 }
    var size = mine.reduce(0) { $0 + $1.length }
    var left = amount
    if let last = mine.last {
        let end = last.deviceOffset + last.length
        let limit = occupied.first { $0.0 >= end }?.0 ?? usable.upperBound
        let add = min(limit - end, left)
        mine[mine.count - 1].length += add
        size += add
        left -= add
        let k = occupied.firstIndex { $0.0 == last.deviceOffset }!
        occupied[k].1 += add
    }
    var cursor = usable.lowerBound
    for (start, end) in occupied + [(usable.upperBound, usable.upperBound)] {
        if start > cursor, left > 0 {
            let take = min(start - cursor, left)
            mine.append(ExtentRecord(deviceOffset: cursor, arenaOffset: size, length: take))
            size += take
            left -= take
        }
        cursor = max(cursor, end)
    }
    return mine
}

/// dax_dev_shrink's promise: whole extents from the highest arena offset down, then a trim.
private func referenceShrink(_ extents: [ExtentRecord], by amount: UInt64) -> [ExtentRecord] {
    var mine = extents
    var left = amount
    while left > 0 {
        if left >= mine[mine.count - 1].length {
            left -= mine.removeLast().length
        } else {
            mine[mine.count - 1].length -= left
            left = 0
        }
    }
    return mine
}

/// What happened to the seed's loop on the grows of one run.
private struct SeedTally {
    var compared = 0  // grows where the seed must place exactly what ArenaTable places
    var brokeContiguity = 0  // grows where the seed's extents overlap or leave holes
    var radixCollisions = 0  // ... of which its radix reinsertion collided
    var placedDifferently = 0  // still contiguous, but elsewhere
}

private enum Operation { case create, resize, destroy }

@Suite struct RandomizedModelTests {
    static let seeds: [UInt64] = [0xDA7_4EA9, 20_161_211, 0xFEED_FACE_CAFE_BEEF]
    static let operations = 5_000

    static let validNames = ["a", "b", "c", "d", "e", "f", "g", "h", String(repeating: "ü", count: 31) + "!"]
    static let invalidNames = ["", "bad\u{0}", String(repeating: "z", count: 64), "new\nline", "\u{85}", "é\u{7F}"]

    @Test(arguments: seeds)
    func randomOperationsAgreeWithTheModel(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let deviceSize: UInt64 = 1 << 30
        var t = ArenaTable(deviceSize: deviceSize)
        var model = Model(usable: deviceSize - 2 * unit)
        var tally = SeedTally()
        var counts: [String: Int] = [:]

        func fail(_ op: Int, _ what: String, _ message: String) {
            Issue.record("seed \(seed) op \(op) (\(what)): \(message)")
        }

        for op in 0 ..< Self.operations {
            let name = rng.chance(93)
                ? Self.validNames[rng.below(Self.validNames.count)]
                : Self.invalidNames[rng.below(Self.invalidNames.count)]
            let current = model.sizes[name]
            let size = Self.randomSize(&rng, current: current, usable: model.usable)
            // Mostly requests that can succeed: create absent names, resize or destroy
            // present ones; the rest exercise nameTaken and unknownArena.
            let roll = rng.below(100)
            let kind: Operation = current == nil
                ? (roll < 75 ? .create : roll < 90 ? .resize : .destroy)
                : (roll < 8 ? .create : roll < 78 ? .resize : .destroy)
            let before = t
            let expected: ProvisionError?
            var outcome: ProvisionError? = nil
            var createdID: UInt64? = nil
            let what: String
            switch kind {
            case .create:
                what = "create \(name.debugDescription) \(size)"
                expected = model.refusal(create: name, size: size)
                do { createdID = try t.create(name: name, size: size) } catch { outcome = error }
            case .resize:
                what = "resize \(name.debugDescription) \(current.map(String.init) ?? "-") -> \(size)"
                expected = model.refusal(resize: name, to: size)
                do { try t.resize(name: name, to: size) } catch { outcome = error }
            case .destroy:
                what = "destroy \(name.debugDescription)"
                expected = model.refusal(destroy: name)
                do { try t.destroy(name: name) } catch { outcome = error }
            }

            // Success or failure must be what the model expects, with the exact error.
            switch (expected, outcome) {
            case (nil, nil): break
            case (.invalidName(let n, _)?, .invalidName(let m, let reason)?) where n == m && !reason.isEmpty: break
            case (let e?, let o?) where e == o: break
            default:
                fail(op, what, "expected \(String(describing: expected)), got \(String(describing: outcome))")
                return
            }
            counts["\(what.prefix { $0 != " " }) \(outcome.map { "\($0)".prefix { $0 != "(" } } ?? "ok")", default: 0] += 1

            if outcome != nil {
                if t != before { fail(op, what, "a refused request changed the table"); return }
            } else {
                // The touched arena's extents are exactly the reference placement; all
                // other arenas are untouched.
                var touched: UInt64? = nil
                switch kind {
                case .create:
                    if createdID != model.nextID { fail(op, what, "id \(String(describing: createdID)), expected \(model.nextID)"); return }
                    touched = createdID
                    let want = referenceGrow(before, nil, by: size)
                    if extents(t, name) != want { fail(op, what, "placed \(describe(extents(t, name))), expected \(describe(want))"); return }
                    if let problem = Self.replaySeed(before, t, owner: model.nextID, to: size, tally: &tally) {
                        fail(op, what, problem); return
                    }
                    model.sizes[name] = size
                    model.nextID += 1
                case .resize:
                    let old = current!
                    touched = before.ids[name]
                    let want = size > old
                        ? referenceGrow(before, name, by: size - old)
                        : referenceShrink(extents(before, name), by: old - size)
                    if extents(t, name) != want { fail(op, what, "placed \(describe(extents(t, name))), expected \(describe(want))"); return }
                    if size == old, t != before { fail(op, what, "resizing to the same size changed the table"); return }
                    if size > old, let problem = Self.replaySeed(before, t, owner: touched!, to: size, tally: &tally) {
                        fail(op, what, problem); return
                    }
                    model.sizes[name] = size
                case .destroy:
                    touched = before.ids[name]
                    if t.arena(named: name) != nil || t.arenas[touched!] != nil { fail(op, what, "arena still there"); return }
                    model.sizes[name] = nil
                }
                for (id, layout) in before.arenas where id != touched {
                    // (Comparing radix trees is slow in debug: every 10th operation.)
                    if t.arenas[id] != layout || t.arenas[id]?.radix.entryCount != layout.radix.entryCount
                        || (op % 10 == 0 && t.arenas[id]?.radix != layout.radix) {
                        fail(op, what, "arena \(layout.name) changed as a side effect"); return
                    }
                }
            }

            // The table agrees with the model.
            if Set(t.ids.keys) != Set(model.sizes.keys) { fail(op, what, "names \(t.ids.keys.sorted()) vs model \(model.sizes.keys.sorted())"); return }
            for (n, s) in model.sizes where t.arena(named: n)?.size != s {
                fail(op, what, "arena \(n) size \(String(describing: t.arena(named: n)?.size)), model \(s)"); return
            }
            if t.availableSize != model.available { fail(op, what, "available \(t.availableSize), model \(model.available)"); return }
            if t.nextArenaID != model.nextID { fail(op, what, "next id \(t.nextArenaID), model \(model.nextID)"); return }
            if let problem = t.invariantViolation() { fail(op, what, "invariant: \(problem)"); return }
            if let problem = independentViolation(t) { fail(op, what, "independent check: \(problem)"); return }

            // Translation at random offsets (and the touched arena's extent edges).
            if !t.arenas.isEmpty {
                let layouts = t.arenas.values.sorted { $0.id < $1.id }
                let layout = t.arena(named: name) ?? layouts[rng.below(layouts.count)]
                var probes = (0 ..< 8).map { _ in rng.below(layout.size + unit) }
                for e in layout.extents { probes += [e.arenaOffset, e.arenaOffset + e.length - 1] }
                if let problem = translationViolation(layout, at: probes) { fail(op, what, "translation: \(problem)"); return }
            }

            // Every 100 operations: reopen through the metadata, and translate every page.
            if op % 100 == 99 {
                if let problem = roundTripViolation(t, generation: UInt64(op)) { fail(op, what, "round trip: \(problem)"); return }
                let lower = rng.below(deviceSize + unit)
                for range in [0 ..< deviceSize, lower ..< lower + rng.below(deviceSize)] {
                    if let problem = ownersViolation(t, range) { fail(op, what, "owners: \(problem)"); return }
                }
                for layout in t.arenas.values {
                    if let problem = translationViolation(layout, at: everyPageProbe(layout)) { fail(op, what, "translation: \(problem)"); return }
                }
            }
        }

        // The workload exercised every path.
        for key in ["create ok", "create noSpace", "create nameTaken", "create invalidName", "create misalignedSize",
                    "resize ok", "resize noSpace", "resize unknownArena", "resize misalignedSize",
                    "destroy ok", "destroy unknownArena"] {
            #expect(counts[key, default: 0] > 0, "seed \(seed): no \(key) in \(counts)")
        }
        #expect(tally.compared > 100, "seed \(seed): \(tally)")
        // The random workload runs into the seed's bug; ArenaTable never broke (checked above).
        #expect(tally.brokeContiguity > 0, "seed \(seed): \(tally)")
    }

    /// A size for a request: mostly whole blocks, sometimes around the current size, the
    /// same size, zero, misaligned or far too large.
    static func randomSize(_ rng: inout SplitMix64, current: UInt64?, usable: UInt64) -> UInt64 {
        let r = rng.below(100)
        switch r {
        case 0 ..< 3: return 0
        case 3 ..< 8:
            let odd: [UInt64] = [1, 4096, unit - 1, unit + 1, 3 << 20, .max, rng.below(40) * unit + 4096 * (1 + rng.below(511))]
            return odd[rng.below(odd.count)]
        case 8 ..< 11:
            return rng.chance(50) ? usable + (1 + rng.below(8)) * unit : UInt64.max - UInt64.max % unit
        case 11 ..< 20 where current != nil:
            return current!  // the same size
        case 20 ..< 55 where current != nil:
            let delta = (1 + rng.below(24)) * unit
            return rng.chance(50) ? current! + delta : (current! > delta ? current! - delta : unit)
        default:
            return (1 + rng.below(rng.chance(80) ? 64 : 200)) * unit
        }
    }

    /// Replays a successful grow of arena `owner` to `size` through the seed's loop on the
    /// table before it, and compares with what ArenaTable did; returns a disagreement
    /// where the seed must agree.
    private static func replaySeed(_ before: ArenaTable, _ after: ArenaTable, owner: UInt64, to size: UInt64,
                                   tally: inout SeedTally) -> String? {
        guard !before.tree.children.isEmpty else { return nil }  // the seed's loop never runs there
        var seed = SeedRegion(before, devices: [owner])
        let last = before.arenas[owner]?.extents.last
        let freeAfterLast = last.flatMap { before.tree.freeSpace(after: $0.deviceOffset) } ?? 0
        let earlierGap = last.map { l in before.tree.gaps.contains { $0.lowerBound < l.deviceOffset } } ?? false
        var failure: SeedRegion.Failure? = nil
        do { try seed.resize(owner: owner, to: size) } catch { failure = error }
        let mine = after.arenas[owner]!.extents
        if freeAfterLast == 0 || !earlierGap {
            // No in-place extension, or nothing before it: the seed places the same extents.
            tally.compared += 1
            if failure != nil || seed.extents(of: owner) != mine || seed.tree != after.tree {
                return "the seed's loop should agree: \(String(describing: failure)), seed placed "
                    + "\(describe(seed.extents(of: owner))), ArenaTable \(describe(mine))"
            }
        } else if contiguityViolation(seed.extents(of: owner)) != nil {
            tally.brokeContiguity += 1
            if case .radix(.occupied)? = failure { tally.radixCollisions += 1 }
        } else {
            tally.placedDifferently += 1
            if let failure { return "the seed's loop failed with \(failure) yet placed contiguous extents" }
        }
        return nil
    }
}
