import DaxHeap
@testable import DaxKV
import DaxTestSupport
import Foundation
import Synchronization
import Testing

@Suite("DaxKV concurrency")
struct ConcurrencyTests {
    /// One writer overwrites, inserts and deletes (on a small fixed heap, so compaction
    /// reuses segments and the index is rebuilt while readers run); readers check every
    /// value they get encodes its own key and a version the writer had written.
    @Test("parallel readers alongside a writer never see a torn value")
    func readersWithWriter() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: 16 << 20)
        let store = try KVStore.open(heap: heap)
        let keys = 400
        for i in 0 ..< keys { try store.put(key(i), stamped(i, version: 0, count: 2048)) }
        // versions[i]: the highest version the writer has started writing for key i.
        let shared = Shared(count: 4 * keys)  // started versions, then completed ones
        // Readers stop even when the writer throws (else they spin on, and the run never ends).
        defer { shared.stop.store(true, ordering: .releasing) }
        let versions = shared.versions
        let group = DispatchGroup()
        for r in 0 ..< 2 {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                let versions = shared.versions
                var buffer = [UInt8](repeating: 0, count: 4096)
                var i = r
                while !shared.stop.load(ordering: .acquiring) {
                    i = (i &* 1103515245 &+ 12345) & 0x7FFF_FFFF
                    let k = i % (2 * keys)
                    let floor = versions[2 * keys + k].load(ordering: .acquiring)
                    do {
                        let length = try key(k).withUnsafeBytes { kb in try buffer.withUnsafeMutableBytes { try store.get(kb, into: $0) } }
                        shared.reads.add(1, ordering: .relaxed)
                        guard let length else { continue }  // deleted, or not yet inserted
                        guard let (index, version) = unstamp(Array(buffer[0 ..< length])) else {
                            shared.problems.withLock { $0.append("torn value for key \(k)") }
                            continue
                        }
                        if index != k { shared.problems.withLock { $0.append("key \(k) returned the value of key \(index)") } }
                        // Not older than what was complete before the get, not newer than
                        // what had been started after it.
                        if version < floor || version > versions[k].load(ordering: .acquiring) {
                            shared.problems.withLock { $0.append("key \(k): version \(version) outside [\(floor), now]") }
                        }
                    } catch {
                        shared.problems.withLock { $0.append("get \(k): \(error)") }
                    }
                }
            }
        }
        // The writer.
        // Random keys each round, so segments die partly and compaction has to move
        // live records out of them while readers follow the old slots.
        var last = [(version: Int, size: Int)](repeating: (0, 2048), count: keys)
        var rng = SplitMix64(seed: 0xC0C0)
        for round in 1 ... 60 {
            for _ in 0 ..< keys {
                let k = Int.random(in: 0 ..< keys, using: &rng)
                let size = 1024 + Int.random(in: 0 ..< 2048, using: &rng)
                versions[k].store(round, ordering: .releasing)
                try store.put(key(k), stamped(k, version: round, count: size))
                versions[2 * keys + k].store(round, ordering: .releasing)
                last[k] = (round, size)
            }
            shared.awaitReads(20 * round)
            // A second key range comes and goes, growing and churning the index.
            for k in keys ..< 2 * keys where (k + round) % 3 == 0 {
                if round % 2 == 0 {
                    versions[k].store(round, ordering: .releasing)
                    try store.put(key(k), stamped(k, version: round, count: 512))
                    versions[2 * keys + k].store(round, ordering: .releasing)
                } else {
                    versions[2 * keys + k].store(0, ordering: .releasing)
                    try store.delete(key(k))
                }
            }
        }
        shared.stop.store(true, ordering: .releasing)
        group.wait()
        let found = shared.problems.withLock { $0 }
        #expect(found.isEmpty, "\(found.prefix(10))")
        #expect(store.compactions > 0, "the test should have made compaction reuse segments")
        #expect(shared.reads.load(ordering: .relaxed) > 1000)
        for i in 0 ..< keys { #expect(try store.get(key(i)) == stamped(i, version: last[i].version, count: last[i].size)) }
    }
}

extension ConcurrencyTests {
    /// Readers look up keys while the writer's inserts rebuild the index (a new table
    /// further into a grown index arena) and grow the data arena: a reader whose view
    /// predates a growth must look again, never fail or miss a key that was there before
    /// its get began.
    @Test("readers keep finding every key while the index is rebuilt and the log grows")
    func readersDuringGrowth() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap(size: 64 << 20)
        let store = try KVStore.open(heap: heap, options: KVStoreOptions(initialDataSize: 2 << 20))
        let total = 24_000
        let inserted = Atomic<Int>(0)  // keys 0 ..< inserted are durable
        let shared = Shared(count: 1)
        // Readers stop even when the writer throws (else they spin on, and the run never ends).
        defer { shared.stop.store(true, ordering: .releasing) }
        let group = DispatchGroup()
        for r in 0 ..< 2 {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                var buffer = [UInt8](repeating: 0, count: 512)
                var x = UInt64(r + 1)
                while !shared.stop.load(ordering: .acquiring) {
                    let known = inserted.load(ordering: .acquiring)
                    guard known > 0 else { continue }
                    x = x &* 6364136223846793005 &+ 1442695040888963407
                    let k = Int((x >> 33) % UInt64(known))
                    do {
                        let length = try key(k).withUnsafeBytes { kb in try buffer.withUnsafeMutableBytes { try store.get(kb, into: $0) } }
                        shared.reads.add(1, ordering: .relaxed)
                        if length == nil {
                            shared.problems.withLock { $0.append("key \(k) missing (\(known) inserted before the get)") }
                        } else if unstamp(Array(buffer[0 ..< length!])).map({ $0.index == k && $0.version == 1 }) != true {
                            shared.problems.withLock { $0.append("key \(k): wrong value") }
                        }
                    } catch {
                        shared.problems.withLock { $0.append("get \(k): \(error)") }
                    }
                }
            }
        }
        for k in 0 ..< total {
            try store.put(key(k), stamped(k, version: 1, count: 300))
            inserted.store(k + 1, ordering: .releasing)
            if k % 500 == 0 { shared.awaitReads(k / 20) }
        }
        shared.stop.store(true, ordering: .releasing)
        group.wait()
        let found = shared.problems.withLock { $0 }
        #expect(found.isEmpty, "\(found.prefix(10))")
        #expect(store.indexRebuilds >= 2, "the test should have rebuilt the index while readers ran")
        #expect(store.dataGrowths >= 2, "the test should have grown the data arena while readers ran")
        #expect(shared.reads.load(ordering: .relaxed) > 1000)
        #expect(store.count == total)
    }
}

extension ConcurrencyTests {
    /// The statistics are public and read by anyone; the writer changes them under its
    /// lock, which readers do not take. ThreadSanitizer (swift test --sanitize=thread)
    /// reports it if they are plain properties; here, the values only ever go up.
    @Test("statistics can be read while the writer compacts")
    func statisticsWhileCompacting() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let store = try KVStore.open(heap: try scratch.heap(size: 16 << 20))
        let shared = Shared(count: 0)
        // Readers stop even when the writer throws (else they spin on, and the run never ends).
        defer { shared.stop.store(true, ordering: .releasing) }
        let group = DispatchGroup()
        group.enter()
        Thread.detachNewThread {
            defer { group.leave() }
            var last = (compactions: 0, growths: 0, rebuilds: 0)
            while !shared.stop.load(ordering: .acquiring) {
                let now = (compactions: store.compactions, growths: store.dataGrowths, rebuilds: store.indexRebuilds)
                if now.compactions < last.compactions || now.growths < last.growths || now.rebuilds < last.rebuilds {
                    shared.problems.withLock { $0.append("statistics went back from \(last) to \(now)") }
                }
                last = now
                shared.reads.add(1, ordering: .relaxed)
            }
        }
        // Overwrites of random keys on a heap that cannot hold them all: segments die
        // partly, the log grows, then compacts.
        var rng = SplitMix64(seed: 9)
        var puts = 0
        while store.compactions < 3 && puts < 40_000 {
            let k = Int.random(in: 0 ..< 600, using: &rng)
            try store.put(key(k), stamped(k, version: puts, count: 3000))
            puts += 1
        }
        shared.stop.store(true, ordering: .releasing)
        group.wait()
        #expect(store.compactions >= 3)
        #expect(store.dataGrowths >= 1)
        let found = shared.problems.withLock { $0 }
        #expect(found.isEmpty, "\(found.prefix(5))")
        #expect(shared.reads.load(ordering: .relaxed) > 0)
    }
}

final class Shared: @unchecked Sendable {
    let versions: UnsafeMutablePointer<Atomic<Int>>
    let count: Int
    let stop = Atomic<Bool>(false)
    let reads = Atomic<Int>(0)
    let problems = Locked<[String]>([])

    init(count: Int) {
        self.count = count
        versions = .allocate(capacity: count)
        for i in 0 ..< count { (versions + i).initialize(to: Atomic(0)) }
    }

    /// Waits (yielding) until the readers have done `count` gets in all, or 30 s have
    /// passed: the writer calls it as it goes so that readers run during its work on a
    /// loaded machine too, and the final `reads > 1000` check fails only for a hung reader.
    func awaitReads(_ count: Int) {
        let clock = ContinuousClock(), start = clock.now
        while reads.load(ordering: .relaxed) < count, clock.now - start < .seconds(30) { sched_yield() }
    }

    deinit {
        versions.deinitialize(count: count)
        versions.deallocate()
    }
}
