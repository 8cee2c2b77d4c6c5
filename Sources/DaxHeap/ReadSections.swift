import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Read-side sections and grace periods: the seed's `resize_lock` without a shared
/// lock word, in the manner of sleepable RCU.
///
/// A data-plane access runs inside a section (`enter` ... `exit`); it loads an arena's
/// current layout and uses it until it exits. A writer that replaced a layout calls
/// `synchronize()`, which returns once every section that could still hold the old layout
/// has exited; only then is the old layout freed, and only then does a shrink return, so
/// no access can still reach a released range.
///
/// Sections count on one of two epochs, spread over cache-line-padded counters chosen
/// by thread, so readers on different threads rarely share a cache line.
final class ReadSections: @unchecked Sendable {
    // @unchecked: `counters` is raw memory of atomics, written only through them.
    static let slots = 64
    /// Counters are 8 bytes apart in memory; use one in 8 to give each its own 64-byte line.
    static let stride = 8

    private let epoch = Atomic<Int>(0)
    private let counters: UnsafeMutablePointer<Atomic<Int>>

    init() {
        let count = 2 * Self.slots * Self.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: count * MemoryLayout<Atomic<Int>>.stride, alignment: 64)
        counters = raw.bindMemory(to: Atomic<Int>.self, capacity: count)
        for i in 0 ..< count { (counters + i).initialize(to: Atomic(0)) }
    }

    deinit {
        let count = 2 * Self.slots * Self.stride
        counters.deinitialize(count: count)
        UnsafeMutableRawPointer(counters).deallocate()
    }

    /// Opens a section; pass the result to `exit`.
    @inline(__always)
    func enter() -> Int {
        let thread = UInt(bitPattern: Int(bitPattern: UInt(pthread_self())))
        let slot = Int(truncatingIfNeeded: (thread >> 12) ^ (thread >> 20)) & (Self.slots - 1)
        let index = ((epoch.load(ordering: .sequentiallyConsistent) & 1) * Self.slots + slot) * Self.stride
        counters[index].wrappingAdd(1, ordering: .sequentiallyConsistent)
        return index
    }

    /// Closes a section opened by `enter`.
    @inline(__always)
    func exit(_ index: Int) {
        counters[index].wrappingSubtract(1, ordering: .releasing)
    }

    /// Waits until every section that could hold something published before this call
    /// has exited. Writers call it one at a time (under the heap's provisioning lock).
    ///
    /// Both sides are drained, each right after a flip that sends new sections to the
    /// other side (so a steady stream of readers cannot starve the writer). Draining both
    /// matters: a reader may load the epoch, be delayed across a whole earlier grace
    /// period, and only then count itself on what is by now the current side.
    func synchronize() {
        for _ in 0 ..< 2 {
            let old = epoch.wrappingAdd(1, ordering: .sequentiallyConsistent).oldValue & 1
            for slot in 0 ..< Self.slots {
                let index = (old * Self.slots + slot) * Self.stride
                var spins = 0
                while counters[index].load(ordering: .sequentiallyConsistent) != 0 {
                    spins += 1
                    if spins > 100 { sched_yield() }
                }
            }
        }
    }
}
