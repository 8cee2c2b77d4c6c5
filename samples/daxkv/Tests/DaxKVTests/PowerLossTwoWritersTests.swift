// daxkv under simulated power loss with two writers at once (issue 16, item 2): a store of
// four shards, two threads each running a seeded window of the one-writer sweep's
// operations (PowerLossWorkload.swift) on keys of their own, and a crash image before
// every fence either of them makes. The checker is the one-writer sweep's (PowerLossTests.swift):
// each writer's acknowledged operations are there, each writer's operation in flight is
// applied or not (a batch: in each shard, a prefix of its pairs there), and a second open
// replays and repairs nothing.
//
// What two writers add to what one writer's sweep covers: the shards' logs fill, switch
// segments and grow side by side, and a crash point taken by one writer finds the other
// anywhere in its own operation (between its flush and its fence, waiting for a shard lock
// the first holds, or in the middle of a plain store: the simulator reads the live mapping
// while it writes, which is why this test does not run under ThreadSanitizer). Batches
// span shards, so a crash point can fall between two shards' parts of one batch.
//
// The interleaving is the scheduler's, so fence numbers do not replay exactly: a failure
// names the crash point and each writer's operation in flight; DAXHEAP_POWERLOSS_SEED
// picks the workloads (default 1), DAXHEAP_POWERLOSS_OPS the operations of each writer
// (default 32), DAXHEAP_POWERLOSS_MIXED the mixed images per crash point (default 2; 1
// under AddressSanitizer, as in PowerLossTests).
// About 20 s in a debug build.
//
// Mutation that proves it can fail (made by hand in Writing.swift, swept, reverted): the
// fence of a batch's group in a shard removed (`commitPending`'s `drain()` commented out).
// 165 of 240 images fail, the first at fence 122 with writer 1 in a batch over both shards:
// "key0000020000002 holds v3 ..., not the acknowledged v48" (an earlier batch's slot
// reached the media, its record did not).

import DaxHeap
@testable import DaxKV
import DaxTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("DaxKV power loss, two writers")
struct PowerLossTwoWritersTests {
    static let operationsPerWriter = 32
    static let writers = 2
    static let fillerSize = 1 << 20
    static let options = KVStoreOptions(expectedKeys: 0, initialDataSize: 4 << 20, reclaimBeforeGrowth: 0.95, shards: 2)

    @Test("every image of every fence of two writers on two shards recovers what both acknowledged",
          .disabled(if: threadSanitizerIsLoaded, "the simulator reads the live mapping while the other writer stores to it"))
    func everyFenceOfTwoWriters() throws {
        let seed = PowerLossSettings.seed(default: 1)
        let operations = PowerLossSettings.operations(default: Self.operationsPerWriter)
        let mixedImages = PowerLossSettings.mixedImages(default: 2)
        let scratch = try Scratch()
        let expectation = Locked(Expectation())
        let checks = Locked(CheckCounts())
        let bothInFlight = Locked(0)
        let simulator = PowerLossSimulator(mixedImages: mixedImages, seed: seed, directory: scratch.path) { image in
            let expected = expectation.withLock { $0 }
            if expected.inFlight.count == Self.writers { bothInFlight.withLock { $0 += 1 } }
            try check(image, against: expected, counts: checks)
        }
        defer { if simulator.failures.isEmpty { scratch.remove() } }

        simulator.isArmed = false
        let heap = try Heap.create(path: scratch.file("heap"), size: 32 << 20, simulator: simulator)
        let store = try KVStore.open(heap: heap, options: Self.options)
        var workloads = (0 ..< Self.writers).map { Workload(seed: seed &+ UInt64($0), keyBase: ($0 + 1) * 10_000_000) }
        let model = try Self.prefill(store, &workloads)
        expectation.withLock {
            $0.acknowledged = model
            $0.gets = Set(model.keys)
        }
        let growthsBefore = store.dataGrowths + store.compactions
        let firstFence = simulator.fenceCount + 1

        simulator.isArmed = true
        let errors = Locked<[String]>([])
        let group = DispatchGroup()
        for (writer, workload) in workloads.enumerated() {
            group.enter()
            Thread.detachNewThread { [workload] in
                defer { group.leave() }
                var workload = workload
                for number in 1 ... operations {
                    let operation = workload.nextOperation()
                    expectation.withLock { $0.start(operation, number: number, writer: writer) }
                    do {
                        try operation.run(on: store)
                    } catch {
                        errors.withLock { $0.append("writer \(writer), operation \(number), \(operation): \(error)") }
                        return
                    }
                    expectation.withLock { $0.acknowledge(writer: writer) }
                }
            }
        }
        group.wait()
        simulator.isArmed = false
        let lastFence = simulator.fenceCount

        #expect(errors.withLock { $0 }.isEmpty, "\(errors.withLock { $0 })")
        let failures = simulator.failures
        let failed = failures.count
        #expect(failed == 0, """
            \(failures.count) of \(simulator.imagesChecked) crash images failed (seed \(seed); images kept in \(scratch.path)):
            \(failures.prefix(5).map { "  \($0)" }.joined(separator: "\n"))
            """)
        #expect(simulator.crashPointsTaken == lastFence - firstFence + 1, "a crash point at every fence of the window")
        // The test is about two writers at once: most crash points must find both busy.
        let both = bothInFlight.withLock { $0 }
        #expect(both * 2 > simulator.imagesChecked, "only \(both) of \(simulator.imagesChecked) images found both writers in an operation")
        #expect(store.dataGrowths + store.compactions > growthsBefore, "no shard switched to a grown or compacted segment in the window")
        let counts = checks.withLock { $0 }
        #expect(counts.notApplied > 0 && counts.applied > 0, "images should show operations in flight both applied and not (\(counts))")

        let final = expectation.withLock { $0.acknowledged }
        for (key, value) in final { #expect(same(try store.get(key), value), "\(describe(key)) after the window") }
        #expect(store.count == final.count)
        print("PowerLossTwoWritersTests: seed \(seed), \(Self.writers) writers x \(operations) operations, "
              + "fences \(firstFence)...\(lastFence), \(simulator.imagesChecked) images (\(counts); both writers busy in \(both)); "
              + "growths and compactions \(store.dataGrowths + store.compactions - growthsBefore); \(failures.count) failures")
    }

    /// Unarmed: each writer's small and A keys with small values; then, in each shard, a
    /// dead megabyte of zeros, so that the window fills the shards' first segments and each
    /// switches to a grown or compacted one. Returns what is acknowledged.
    static func prefill(_ store: KVStore, _ workloads: inout [Workload]) throws -> [[UInt8]: [UInt8]] {
        var model: [[UInt8]: [UInt8]] = [:]
        for w in workloads.indices {
            let base = workloads[w].keyBase
            let numbers = (0 ..< Workload.smallKeys).map { base + $0 } + Workload.aKeys.map { base + $0 }
            for n in numbers {
                let value = workloads[w].smallValue(of: n)
                try store.put(key(n), value)
                model[key(n)] = value
            }
            workloads[w].present = numbers
        }
        for shard in 0 ..< store.shardCount {
            let filler = key((1 ... 1000).first { store.shardIndex(of: key($0)) == shard }!)
            try store.put(filler, [UInt8](repeating: 0, count: Self.fillerSize))
            try store.delete(filler)
        }
        return model
    }
}
