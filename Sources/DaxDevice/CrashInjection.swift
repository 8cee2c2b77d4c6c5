import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The fault-injection point for crash tests (docs/FORMAT.md, "Crash injection"): with
/// `DAXHEAP_CRASH_AFTER_BYTES=N` in the environment, the process counts every byte it stores
/// into either metadata block, in the order stored: the metadata copies (each written
/// whole) and the zeroing of a device-dax's metadata blocks by a forced create. Once N
/// bytes are stored and persisted it sends itself SIGKILL before storing more. A process
/// that stores fewer than N bytes is never killed. Unset, it costs one load of a nil.
package final class CrashInjection: Sendable {
    package static let shared: CrashInjection? = {
        guard let text = getenv("DAXHEAP_CRASH_AFTER_BYTES"), let limit = Int(String(cString: text)), limit > 0 else {
            return nil
        }
        return CrashInjection(limit: limit)
    }()

    let limit: Int
    let stored = Atomic<Int>(0)

    init(limit: Int) { self.limit = limit }

    /// Stores `count` bytes through `store`, which stores and persists the first `n` bytes
    /// it is given: all of them, or, when the limit falls inside, as many as it allows,
    /// and then the process dies.
    package static func counted<E: Error>(_ count: Int, _ store: (_ n: Int) throws(E) -> Void) throws(E) {
        guard let injection = shared else { return try store(count) }
        let before = injection.stored.wrappingAdd(count, ordering: .relaxed).oldValue
        guard before + count >= injection.limit else { return try store(count) }
        try store(max(0, injection.limit - before))
        kill()
    }

    static func kill() -> Never {
        _ = Glibc.kill(getpid(), SIGKILL)
        fatalError("SIGKILL did not stop the process")
    }
}
