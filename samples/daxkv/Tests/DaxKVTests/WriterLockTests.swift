@testable import DaxKV
import Foundation
import Testing

@Suite("DaxKV writer lock")
struct WriterLockTests {
    /// State only the lock guards: plain loads and stores, so a second holder at once
    /// loses increments (and ThreadSanitizer reports the race).
    final class Guarded: @unchecked Sendable {
        var count = 0
        var holderInside = false
        var overlaps = 0
    }

    @Test("one holder at a time: four threads' increments all count")
    func holdersExcludeEachOther() {
        let lock = WriterLock(), state = Guarded()
        let threads = 4, rounds = 20_000
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            for _ in 0 ..< rounds {
                lock.withLock {
                    if state.holderInside { state.overlaps += 1 }
                    state.holderInside = true
                    state.count += 1
                    state.holderInside = false
                }
            }
        }
        #expect(state.overlaps == 0)
        #expect(state.count == threads * rounds)
    }

    /// A hold of 30 ms takes a waiter through all three ways of waiting (spinning,
    /// yielding, sleeping between looks); it gets the lock once it is released, and sees
    /// what the holder stored.
    @Test("a waiter gets the lock after a long hold and sees what the holder wrote")
    func aWaiterOutlastsALongHold() throws {
        let lock = WriterLock(), state = Guarded()
        let held = DispatchSemaphore(value: 0), finished = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            lock.withLock {
                held.signal()
                Thread.sleep(forTimeInterval: 0.03)
                state.count = 1
            }
        }
        held.wait()
        let waitedFrom = Date()
        Thread.detachNewThread {
            lock.withLock { state.count += 1 }
            finished.signal()
        }
        #expect(finished.wait(timeout: .now() + 10) == .success)
        #expect(Date().timeIntervalSince(waitedFrom) >= 0.02)
        lock.withLock { #expect(state.count == 2) }
    }

    /// A body that throws releases the lock: the next caller gets it.
    @Test("a body that throws leaves the lock free")
    func aThrowingBodyReleases() {
        struct Refused: Error {}
        let lock = WriterLock()
        #expect(throws: Refused.self) { try lock.withLock { () throws(Refused) in throw Refused() } }
        let finished = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            lock.withLock {}
            finished.signal()
        }
        #expect(finished.wait(timeout: .now() + 10) == .success)
    }
}
