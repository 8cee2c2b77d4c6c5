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
    public init(_ value: Value) {
        self.value = .allocate(capacity: 1)
        self.value.initialize(to: value)
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
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
