#if canImport(Glibc)
import Glibc
#endif

/// A value behind a pthread mutex: what the heap guards its state with, public so that
/// code embedding DaxHeap can do the same and stay checkable with ThreadSanitizer.
///
/// Not `Synchronization.Mutex`: on Linux that one waits on a futex inside the standard
/// library, where ThreadSanitizer cannot see the ordering it provides and so reports every
/// access under it as a race. pthread mutexes are intercepted, so the suite stays checkable.
public final class Locked<Value>: @unchecked Sendable {
    // @unchecked: `value` is only reached through `withLock`, under `mutex`. It lives in
    // memory of its own rather than in a stored property, so that no exclusivity check on
    // a property (which ThreadSanitizer also reports) can be placed outside the lock.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let value: UnsafeMutablePointer<Value>

    /// A lock around `value`.
    ///
    /// - Parameter spinning: when the mutex is held, spin for a while before sleeping
    ///   (glibc's adaptive mutex). For locks held for well under a microsecond by threads
    ///   that each have a core: a waiter that sleeps pays a futex wait and wake-up, several
    ///   microseconds, for a lock that would have been free in a few hundred nanoseconds.
    public init(_ value: Value, spinning: Bool = false) {
        self.value = .allocate(capacity: 1)
        self.value.initialize(to: value)
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        guard spinning else {
            pthread_mutex_init(mutex, nil)
            return
        }
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_ADAPTIVE_NP))
        pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        value.deinitialize(count: 1)
        value.deallocate()
    }

    /// Runs `body` with the value, holding the mutex.
    public func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value.pointee)
    }
}
