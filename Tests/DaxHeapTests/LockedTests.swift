import DaxHeap
import Testing

@Suite struct LockedTests {
    /// Four threads add to one count, each a run of read-then-write steps that a missing
    /// exclusion would interleave and lose; the plain and the spinning (adaptive) mutex alike.
    @Test(arguments: [false, true])
    func everyIncrementCountsWithManyThreads(spinning: Bool) {
        let count = Locked(0, spinning: spinning)
        let threads = (0 ..< 4).map { _ in
            TestThread {
                for _ in 0 ..< 20_000 {
                    count.withLock { value in
                        let seen = value
                        value = seen + 1
                    }
                }
            }
        }
        for thread in threads { thread.join() }
        #expect(count.withLock { $0 } == 80_000)
    }
}
