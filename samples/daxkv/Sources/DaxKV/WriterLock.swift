// The shard's writer lock.
import CDaxKVShims
import Synchronization  // Atomic: the lock word

#if canImport(Glibc)
import Glibc
#endif

/// A shard's writer lock: a spin lock whose release is a plain store.
///
/// Not a pthread mutex: its unlock is a locked instruction, and on x86 a locked
/// instruction waits until every store before it has reached the cache. A put's last
/// stores (its slot, the shard's counts) are to lines the other writer's core may hold, so
/// with two writers the unlock waited for those lines: 18.8 % of the second writer's
/// samples in a two-thread fill sat in `pthread_mutex_unlock`. A release store does not
/// wait; the stores drain while the writer prepares its next put.
///
/// What the plain release gives up: a locked instruction also waits for the holder's
/// cache-line flushes (`clwb`, `clflushopt`) to complete, and a release store does not. So
/// a holder fences every flush it issued before it lets go (every write path does: a
/// record's flush, and the previous write's slot, before the put's fence). The next
/// holder, on another core, could not fence them for it: a fence orders only its own
/// core's flushes.
///
/// A waiter spins (with the CPU's pause hint) about as long as a put holds the lock many
/// times over; then yields its core between looks (a holder that was preempted gets it
/// back); then, for a lock held long (an index rebuild, a compaction, an arena's growth),
/// sleeps 50 µs between looks rather than burn a core. Nobody sleeps on the word, so the
/// release need not look for sleepers to wake (that look would need the locked
/// instruction back); the price is that a sleeper notices the release up to 50 µs late,
/// only ever after a hold that long. ThreadSanitizer sees the acquiring exchange and the
/// releasing store, so the state the lock guards stays checkable.
final class WriterLock: Sendable {
    private let word = Atomic<UInt32>(0)

    /// Runs `body` holding the lock.
    @inline(__always)
    func withLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        lock()
        defer { unlock() }
        return try body()
    }

    @inline(__always)
    private func lock() {
        if word.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged { return }
        lockAfterWaiting()
    }

    private func lockAfterWaiting() {
        var backoff = Backoff()
        repeat {
            // Test, then test-and-set: waiters read the word (the line stays shared) and
            // try the exchange only when it looks free.
            while word.load(ordering: .relaxed) != 0 { backoff.wait() }
        } while !word.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged
    }

    @inline(__always)
    private func unlock() { word.store(0, ordering: .releasing) }
}

/// How a thread waits between looks at another thread's progress (the writer lock's
/// word, a zeroing ahead): pause hints, then yields of its core, then 50 µs sleeps.
struct Backoff {
    /// Pause hints before a waiter starts yielding its core (a pause is 10 to 150 cycles,
    /// by CPU; a put holds the lock for well under a microsecond), and yields before it
    /// sleeps between looks.
    private static let spinsBeforeYielding = 256
    private static let yieldsBeforeSleeping = 64
    private static let sleepBetweenLooks = timespec(tv_sec: 0, tv_nsec: 50_000)
    private var looks = 0

    mutating func wait() {
        looks += 1
        if looks <= Self.spinsBeforeYielding {
            daxkv_pause()
        } else if looks <= Self.spinsBeforeYielding + Self.yieldsBeforeSleeping {
            sched_yield()
        } else {
            var pause = Self.sleepBetweenLooks
            nanosleep(&pause, nil)
        }
    }
}
