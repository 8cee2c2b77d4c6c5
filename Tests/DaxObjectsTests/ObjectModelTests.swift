import DaxHeap
@testable import DaxObjects
import DaxTestSupport
import Foundation
import Testing

/// Seeded random allocate / free / reserve-publish / cancel / transaction steps against a
/// model (which slot holds which object, with which stamp), with the allocator's
/// invariants checked as the steps go and reopens in between. DAXOBJECTS_MODEL_SEED and
/// DAXOBJECTS_MODEL_STEPS (read here only) replay or lengthen a run.
@Suite struct ObjectModelTests {
    static let slots = 256

    struct Model {
        var objects: [ObjectReference?] = Array(repeating: nil, count: ObjectModelTests.slots)
        var stamps: [UInt64] = Array(repeating: 0, count: ObjectModelTests.slots)
        var count: Int { objects.count { $0 != nil } }
    }

    struct Aborted: Error {}

    @Test(arguments: [1, 2, 3])
    func randomStepsMatchTheModel(run: Int) throws {
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["DAXOBJECTS_MODEL_SEED"].flatMap { UInt64($0) } ?? UInt64(run) &* 0x9E37_79B9
        let steps = environment["DAXOBJECTS_MODEL_STEPS"].flatMap { Int($0) } ?? 1500
        var random = SplitMix64(seed: seed)
        var fixture = try Fixture(heapSize: 96 << 20, arenaSize: 6 << 20)
        defer { fixture.remove() }
        var context = try fixture.objects.makeContext()
        var table = try context.allocate(UInt64(Self.slots) * 8, kind: .references, into: fixture.objects.root(named: "table"))
        var model = Model()
        var outOfSpace = 0

        func slot(_ i: Int) -> ObjectSlot { ObjectSlot(in: table, at: UInt64(i) * 8) }
        func size(_ random: inout SplitMix64) -> UInt64 {
            random.below(50) == 0 ? UInt64(1 << 20) + random.below(3 << 20) : 8 + random.below(random.below(2) == 0 ? 200 : 9000)
        }
        func pick(_ occupied: Bool, _ random: inout SplitMix64) -> Int? {
            let candidates = (0..<Self.slots).filter { (model.objects[$0] != nil) == occupied }
            return candidates.isEmpty ? nil : candidates[random.below(candidates.count)]
        }

        for step in 0..<steps {
            let stamp = seed &+ UInt64(step) &* 31 | 1
            let kind: ObjectKind = random.below(3) == 0 ? .references : .data
            do {
            switch random.below(10) {
            case 0...2:  // allocate, filled before publication
                guard let i = pick(false, &random) else { break }
                let reference = try context.allocate(size(&random), kind: kind, into: slot(i)) { bytes in
                    bytes.storeBytes(of: stamp, as: UInt64.self)
                }
                model.objects[i] = reference
                model.stamps[i] = stamp
            case 3...5:  // free
                guard let i = pick(true, &random) else { break }
                try context.free(from: slot(i))
                model.objects[i] = nil
            case 6:  // reserve, then publish or cancel
                guard let i = pick(false, &random) else { break }
                let reservation = try context.reserve(size(&random), kind: kind)
                reservation.address.storeBytes(of: stamp, as: UInt64.self)
                if random.below(2) == 0 {
                    let reference = reservation.reference
                    try context.publish(reservation, into: slot(i))
                    model.objects[i] = reference
                    model.stamps[i] = stamp
                } else {
                    context.cancel(reservation)
                }
            case 7...8:  // a transaction: allocate, free, rewrite a stamp; sometimes aborted
                let abort = random.below(4) == 0
                var next = model
                var objects: [ObjectReference] = []
                do {
                    try context.transaction { tx in
                        if let i = pick(false, &random) {
                            let reference: ObjectReference
                            if random.below(2) == 0 {
                                reference = try tx.allocate(size(&random), kind: kind, into: slot(i))
                                try tx.store(stamp, at: reference.offset)  // a new object: written in place
                            } else {
                                reference = try tx.allocate(size(&random), kind: kind, into: slot(i)) { bytes in
                                    bytes.storeBytes(of: stamp, as: UInt64.self)
                                }
                            }
                            objects.append(reference)
                            next.objects[i] = reference
                            next.stamps[i] = stamp
                        }
                        if let i = pick(true, &random), next.objects[i] == model.objects[i] {
                            try tx.free(from: slot(i))
                            next.objects[i] = nil
                        }
                        if let i = pick(true, &random), let reference = next.objects[i], reference == model.objects[i] {
                            var value = stamp ^ 0xFF
                            try withUnsafeBytes(of: &value) { bytes in try tx.write(bytes, at: reference.offset) }
                            next.stamps[i] = value
                        }
                        if abort { throw Aborted() }
                    }
                    model = next
                } catch is Aborted {
                    for reference in objects { #expect(throws: ObjectError.self) { try fixture.objects.address(of: reference) } }
                }
            default:  // reopen now and then
                guard random.below(15) == 0 else { break }
                context.close()
                try fixture.reopen()
                #expect(fixture.objects.recovery.liveObjects == model.count + 1, "seed \(seed) step \(step)")
                context = try fixture.objects.makeContext()
                table = try fixture.objects.load(#require(fixture.objects.findRoot(named: "table")))
            }
            } catch ObjectError.outOfSpace {
                outOfSpace += 1  // a typed error that must have changed nothing: checked below
            }
            for i in 0..<Self.slots {
                let found = try fixture.objects.load(slot(i))
                #expect(found == (model.objects[i] ?? .null), "seed \(seed) step \(step) slot \(i)")
                if let reference = model.objects[i] {
                    #expect(try fixture.objects.address(of: reference).load(as: UInt64.self) == model.stamps[i], "seed \(seed) step \(step) slot \(i) stamp")
                }
            }
            #expect(fixture.objects.statistics().objects == model.count + 1, "seed \(seed) step \(step)")
            if step % 50 == 0 { fixture.objects.checkInvariants() }
        }
        context.close()
        fixture.objects.checkInvariants()
        #expect(outOfSpace < steps / 10, "seed \(seed): \(outOfSpace) steps ran out of space")
    }
}
