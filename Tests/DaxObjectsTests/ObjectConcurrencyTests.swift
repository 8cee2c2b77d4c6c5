import DaxHeap
@testable import DaxObjects
import DaxTestSupport
import Foundation
import Testing

/// Two threads, each with its own context and table, allocating and freeing at random
/// (plainly and in transactions) while the other does, with frees of objects the other
/// thread allocated handed over through a shared table: no reference ends up reached
/// twice, the counts agree, the allocator's invariants hold, and a reopen finds the same.
@Suite struct ObjectConcurrencyTests {
    static let slots = 512

    @Test func twoThreadsNeverGetTheSameBlock() throws {
        var fixture = try Fixture(heapSize: 512 << 20, arenaSize: 8 << 20)
        defer { fixture.remove() }
        let objects = fixture.objects
        let setup = try objects.makeContext()
        let tables = try (0..<2).map { t in
            try setup.allocate(UInt64(Self.slots) * 8, kind: .references, into: objects.root(named: "table\(t)"))
        }
        setup.close()
        let failures = Locked<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 2) { t in
            do {
                let context = try objects.makeContext()
                defer { context.close() }
                var random = SplitMix64(seed: UInt64(t + 1))
                var full = Array(repeating: false, count: Self.slots)
                for _ in 0..<4000 {
                    let i = random.below(Self.slots)
                    let slot = ObjectSlot(in: tables[t], at: UInt64(i) * 8)
                    let size = UInt64(8 + random.below(random.below(4) == 0 ? 5000 : 200))
                    switch (full[i], random.below(2)) {
                    case (false, 0): try context.allocate(size, into: slot)
                    case (false, _): try context.transaction { tx in try tx.allocate(size, kind: .references, into: slot) }
                    case (true, 0): try context.free(from: slot)
                    case (true, _): try context.transaction { tx in try tx.free(from: slot) }
                    }
                    full[i].toggle()
                }
            } catch {
                failures.withLock { $0.append("thread \(t): \(error)") }
            }
        }
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
        func reached() throws -> [ObjectReference] {
            try tables.flatMap { table in
                try (0..<Self.slots).map { try objects.load(ObjectSlot(in: table, at: UInt64($0) * 8)) }.filter { !$0.isNull }
            }
        }
        let before = try reached()
        #expect(Set(before).count == before.count, "a block reached from two slots")
        #expect(objects.statistics().objects == before.count + 2)
        objects.checkInvariants()
        try fixture.reopen()
        #expect(fixture.objects.recovery.liveObjects == before.count + 2)
        let tablesAgain = try (0..<2).map { try fixture.objects.load(#require(fixture.objects.findRoot(named: "table\($0)"))) }
        #expect(tablesAgain == tables)
    }
}
