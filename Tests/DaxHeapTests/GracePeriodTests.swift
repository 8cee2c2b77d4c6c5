// Grace periods for applications (issue 11): `withReadSection`, `synchronize` and
// `retire`, as a database with lock-free readers would use them for its own memory.
//
// Serialized: threads park in sections on a 2-core machine.

import DaxHeap
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct GracePeriodTests {
    /// A thread inside `heap.withReadSection` (and, within it, a view of `arena` if given)
    /// until `release` is set; returns once it is inside.
    static func parkSection(_ heap: Heap, view arena: Arena? = nil, until release: Flag) -> TestThread {
        let entered = Flag()
        let thread = TestThread {
            heap.withReadSection {
                if let arena {
                    _ = try? arena.withView { _ in
                        entered.set()
                        while !release.isSet { usleep(1000) }
                    }
                } else {
                    entered.set()
                    while !release.isSet { usleep(1000) }
                }
            }
        }
        while !entered.isSet { usleep(1000) }
        return thread
    }

    /// Waits until `condition` holds, at most `seconds`. Generous caps (60 s): `retire` and
    /// `synchronize` wait for every section of the process open at the call, and the other
    /// suites running beside this one (sanitized, on 2 cores) hold sections for seconds.
    static func eventually(_ seconds: Double = 60, _ condition: () -> Bool) -> Bool {
        let end = monotonicSeconds() + seconds
        while !condition(), monotonicSeconds() < end { usleep(1000) }
        return condition()
    }

    @Test func retireRunsAfterTheSectionsOpenAtTheCallAndNotBefore() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 8 << 20)
        let a = try heap.createArena(named: "a", size: 2 << 20)
        let releaseFirst = Flag(), releaseSecond = Flag(), ran = Flag()
        let first = Self.parkSection(heap, view: a, until: releaseFirst)
        heap.retire { ran.set() }
        // A section that begins after the call is not waited for.
        let second = Self.parkSection(heap, until: releaseSecond)
        usleep(100_000)
        #expect(!ran.isSet, "ran while a section open at the call was still open")
        releaseFirst.set()
        #expect(Self.eventually() { ran.isSet }, "did not run once the sections open at the call had ended")
        releaseSecond.set()
        first.join()
        second.join()
    }

    @Test func synchronizeWaitsForTheSectionsOpenAtTheCallOnly() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 8 << 20)
        let releaseFirst = Flag(), releaseSecond = Flag(), synchronized = Flag(), started = Flag()
        let first = Self.parkSection(heap, until: releaseFirst)
        let writer = TestThread {
            started.set()
            heap.synchronize()
            synchronized.set()
        }
        while !started.isSet { usleep(1000) }
        usleep(50_000)
        let second = Self.parkSection(heap, until: releaseSecond)
        usleep(50_000)
        #expect(!synchronized.isSet, "synchronize returned while a section open at the call was still open")
        releaseFirst.set()
        #expect(Self.eventually() { synchronized.isSet }, "synchronize waited for a section opened after it")
        releaseSecond.set()
        writer.join()
        first.join()
        second.join()
    }

    /// The reclamation pattern under load: readers on short-lived threads (so records are
    /// registered and recycled all along) follow two pointers to live objects; writers
    /// replace them and poison and free the old ones after `synchronize` or through
    /// `retire`. A reader that ever sees poison, or (under a sanitizer) a freed object,
    /// proves a grace period too short. About a second (at most a minute on a loaded machine).
    @Test func readersNeverSeeWhatWritersReclaimed() throws {
        let path = tempPath()
        defer { removeFile(path) }
        let heap = try Heap.create(path: path, size: 8 << 20)
        let a = try heap.createArena(named: "a", size: 2 << 20)
        let live: UInt64 = 0x11FE, dead: UInt64 = 0xDEAD
        @Sendable func object() -> UInt {
            let p = UnsafeMutablePointer<UInt64>.allocate(capacity: 8)
            p.initialize(repeating: live, count: 8)
            return UInt(bitPattern: p)
        }
        @Sendable func reclaim(_ bits: UInt) {
            let p = UnsafeMutablePointer<UInt64>(bitPattern: bits)!
            p.update(repeating: dead, count: 8)  // plain stores: a sanitizer checks the ordering
            p.deallocate()
        }
        let shared = Slots(object(), object())
        let stop = Flag(), failures = Failures(), reads = Counter(), threads = Counter()

        let readers = (0 ..< 2).map { r in
            TestThread {
                while !stop.isSet {
                    // A short-lived thread: a few hundred sections, nested and not, then exit.
                    let worker = TestThread {
                        for i in 0 ..< 300 {
                            heap.withReadSection {
                                let body = {
                                    for slot in 0 ..< 2 {
                                        let p = UnsafePointer<UInt64>(bitPattern: shared.load(slot))!
                                        if p[0] != live || p[7] != live { failures.record("reader \(r) saw a reclaimed object") }
                                    }
                                    reads.next()
                                }
                                if i % 3 == 0 { _ = try? a.withView { _ in body() } } else { body() }
                            }
                        }
                    }
                    worker.join()
                    threads.next()
                }
            }
        }
        let synchronizer = TestThread {
            while !stop.isSet {
                let old = shared.exchange(0, object())
                heap.synchronize()
                reclaim(old)
            }
        }
        let retirer = TestThread {
            while !stop.isSet {
                let old = shared.exchange(1, object())
                heap.retire { reclaim(old) }
                usleep(100)
            }
        }
        // At least a second, and until the readers have done enough, whatever the load.
        usleep(1_000_000)
        _ = Self.eventually { reads.current > 1000 && threads.current > 4 }
        stop.set()
        for t in readers { t.join() }
        synchronizer.join()
        retirer.join()
        heap.synchronize()
        #expect(failures.all.isEmpty, "\(failures.all)")
        #expect(reads.current > 1000 && threads.current > 4, "reads \(reads.current), threads \(threads.current)")
        // The last two objects are still live; let the retired ones drain before the heap goes.
        let done = Flag()
        heap.retire { done.set() }
        #expect(Self.eventually() { done.isSet })
        reclaim(shared.exchange(0, 0))
        reclaim(shared.exchange(1, 0))
    }
}

/// Two pointer-sized slots readers load and writers swap.
final class Slots: Sendable {
    private let first: Atomic<UInt>
    private let second: Atomic<UInt>
    init(_ a: UInt, _ b: UInt) {
        first = Atomic(a)
        second = Atomic(b)
    }
    func load(_ i: Int) -> UInt {
        i == 0 ? first.load(ordering: .acquiring) : second.load(ordering: .acquiring)
    }
    func exchange(_ i: Int, _ value: UInt) -> UInt {
        i == 0 ? first.exchange(value, ordering: .acquiringAndReleasing) : second.exchange(value, ordering: .acquiringAndReleasing)
    }
}
