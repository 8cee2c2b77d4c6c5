// The heap's fast update path, checked against the slow one: a change made in place and
// its `Undo` put the table back exactly; `MetadataCopy.applying` on the current image
// gives byte for byte what a full `MetadataCopy.encode` of the changed table gives.
// Seeded random create / resize / destroy on a small device, so that arenas fragment
// and extent counts change (runs move, `firstExtent` shifts).

import DaxArenas
import DaxMetadata
import Testing
import DaxTestSupport

@Suite struct InPlaceChangeTests {
    static let uuid = HeapUUID(high: 0x0123_4567_89AB_4CDE, low: 0x8765_4321_0FED_CBA9)
    static let names = (0 ..< 12).map { "arena-\($0)" } + [String(repeating: "ü", count: 31) + "!"]

    @Test(arguments: [UInt64(1), 0xDA7_4EA9, 0xFEED_FACE])
    func appliedImagesEqualFullEncodingsAndUndoRestores(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        var t = table(usableBlocks: 48)
        var generation: UInt64 = 1
        var image = MetadataCopy.encode(t.metadata(uuid: Self.uuid, alignment: unit, generation: generation))
        var applied = 0
        var shifted = 0
        for op in 0 ..< 3_000 {
            let name = Self.names[rng.below(Self.names.count)]
            let size = UInt64(1 + rng.below(6)) * unit
            let before = t
            let undo: ArenaTable.Undo
            do {
                if t.ids[name] == nil {
                    undo = try t.createInPlace(name: name, size: size)
                } else if rng.chance(70) {
                    undo = try t.resizeInPlace(name: name, to: size)
                } else {
                    undo = try t.destroyInPlace(name: name)
                }
            } catch {
                // Only noSpace can happen here; a refusal leaves the table as it was.
                #expect(error == .noSpace(requested: size - (before.arena(named: name)?.size ?? 0), available: before.availableSize))
                #expect(t == before, "seed \(seed) op \(op): a refused change altered the table")
                continue
            }
            let after = t
            var undone = t
            undone.undo(undo)
            #expect(undone == before, "seed \(seed) op \(op): undo did not restore the table")
            #expect(undone.invariantViolation() == nil)

            let new = t.arenas[undo.id]
            if new == undo.before { continue }  // a resize to the same size
            let index = t.position(of: undo.id)
            let record = new.map { ArenaRecord(id: $0.id, name: $0.name, extents: $0.extents) }
            let change: MetadataCopy.ArenaChange = switch (undo.before, record) {
            case (nil, let record?): .insert(record, at: index)
            case (_?, let record?): .replace(record, at: index)
            default: .remove(at: index)
            }
            if (undo.before?.extents.count ?? 0) != (new?.extents.count ?? 0), index + 1 < t.order.count { shifted += 1 }
            generation += 1
            image = MetadataCopy.applying(change, to: image, generation: generation, nextArenaID: t.nextArenaID)
            let full = MetadataCopy.encode(t.metadata(uuid: Self.uuid, alignment: unit, generation: generation))
            guard image == full else {
                Issue.record("seed \(seed) op \(op): the applied image differs from the full encoding")
                return
            }
            if case .failure(let error) = MetadataCopy.decode(image) {
                Issue.record("seed \(seed) op \(op): the applied image does not decode: \(error)")
                return
            }
            #expect(t == after)
            applied += 1
        }
        // The run must have exercised moving runs of later arenas, not only appends.
        #expect(applied > 1_000)
        #expect(shifted > 50)
    }

    @Test func undoOfADestroyInTheMiddleRefilesItInIdOrder() throws {
        var t = table(usableBlocks: 16)
        for name in ["a", "b", "c"] { try t.create(name: name, size: 2 * unit) }
        let before = t
        let undo = try t.destroyInPlace(name: "b")
        #expect(t.order == [1, 3])
        t.undo(undo)
        #expect(t == before)
        #expect(t.order == [1, 2, 3])
        #expect(t.ids["b"] == 2)
    }
}
