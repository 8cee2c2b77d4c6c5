// daxkv under simulated power loss where a put frees a segment and zeroes it ahead (after
// its lock, PrefaultAhead.swift). The put's own slot store released the segment's last
// record; the zeroing must not reach the media before that slot does (invariant 3), or an
// image holds the key's old slot pointing into zeros, which recovery can neither match
// nor replace. The general sweep (PowerLossTests) zeroes ahead too, but never in this
// order: here the scene is laid out for it. Crashed before every fence of the window, with
// the checker of PowerLossTests.

import DaxHeap
@testable import DaxKV
import DaxTestSupport
import Foundation
import Testing

@Suite("DaxKV power loss, a segment zeroed ahead by the put that freed it",
       .disabled(if: threadSanitizerIsLoaded, "single-threaded: ThreadSanitizer has no race to look for here"))
struct PowerLossZeroAheadTests {
    static let target = 1, filler = 2, other = 3
    /// Dead filler: zero values (the images stay sparse), each overwriting the last.
    static let fillerRecord = 480 << 10

    static func zeros(record bytes: Int) -> [UInt8] {
        [UInt8](repeating: 0, count: bytes - Format.recordSize(keyCount: key(0).count, valueCount: 0))
    }

    @Test("a put that frees a segment and zeroes it ahead: every image of every fence recovers")
    func freedAndZeroedAhead() throws {
        let scratch = try Scratch()
        let expectation = Locked(Expectation())
        let checks = Locked(CheckCounts())
        let simulator = PowerLossSimulator(crashPoints: .everyFence, mixedImages: PowerLossSettings.mixedImages(default: 4),
                                           seed: 1, directory: scratch.path) { image in
            try check(image, against: expectation.withLock { $0 }, counts: checks)
        }
        defer { if simulator.failures.isEmpty { scratch.remove() } }

        // The scene, unarmed: segment 0 holds `target`'s record and dead filler; the tail is
        // in segment 1, a little more than the claim's distance from its end.
        simulator.isArmed = false
        let heap = try Heap.create(path: scratch.file("heap"), size: 32 << 20, simulator: simulator)
        let store = try KVStore.open(heap: heap, options: KVStoreOptions(initialDataSize: 4 * Format.segmentSize, shards: 1))
        let shard = store.only
        var model: [[UInt8]: [UInt8]] = [:]
        func put(_ n: Int, _ value: [UInt8]) throws {
            try store.put(key(n), value)
            model[key(n)] = value
        }
        try put(Self.target, stamped(Self.target, version: 1, count: 100))
        while shard.tailSegment == 0 { try put(Self.filler, Self.zeros(record: Self.fillerRecord)) }
        func room() -> Int { shard.lock.withLock { Int(Format.segmentEnd(shard.tailSegment) - shard.tail) } }
        let keep = Int(Shard.prefaultAheadRoom) + (48 << 10)
        while room() - Self.fillerRecord > keep { try put(Self.filler, Self.zeros(record: Self.fillerRecord)) }
        try put(Self.filler, Self.zeros(record: room() - keep))
        #expect(shard.segmentLive[0] == 1, "segment 0 holds the target's record alone")
        #expect(shard.zeroAheadFinished.load(ordering: .relaxed) == .max, "nothing zeroed ahead before the window")
        expectation.withLock { [model] in
            $0.acknowledged = model
            $0.gets = Set([Self.target, Self.filler, Self.other].map { key($0) })
        }

        // The window: the target's overwrite frees segment 0, comes within the claim's
        // distance of the tail segment's end, and zeroes segment 0 ahead; two more puts.
        simulator.isArmed = true
        let operations = [
            Operation(kind: .put, steps: [Step(number: Self.target, value: stamped(Self.target, version: 2, count: 64 << 10))]),
            Operation(kind: .put, steps: [Step(number: Self.other, value: stamped(Self.other, version: 3, count: 100))]),
            Operation(kind: .put, steps: [Step(number: Self.target, value: stamped(Self.target, version: 4, count: 100))]),
        ]
        for (number, operation) in operations.enumerated() {
            expectation.withLock { $0.start(operation, number: number + 1) }
            try operation.run(on: store)
            expectation.withLock { $0.acknowledge() }
            if number == 0 {
                #expect(shard.zeroAheadFinished.load(ordering: .relaxed) != .max, "the first put zeroed segment 0 ahead")
            }
        }
        simulator.isArmed = false

        let failures = simulator.failures
        #expect(failures.isEmpty, """
            \(failures.count) of \(simulator.imagesChecked) crash images failed (images kept in \(scratch.path)):
            \(failures.prefix(5).map { "  \($0)" }.joined(separator: "\n"))
            """)
        #expect(simulator.imagesChecked > 0)
        #expect(try store.get(key(Self.target)) == stamped(Self.target, version: 4, count: 100))
    }
}
