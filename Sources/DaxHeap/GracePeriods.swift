/// Grace periods for applications: a database with lock-free readers can reclaim its own
/// memory (an old index node, a superseded page) the way the heap reclaims layouts.
///
/// A reader runs inside ``withReadSection(_:)``; a writer unlinks something, then either
/// calls ``synchronize()`` and frees it, or hands the freeing to ``retire(_:)`` and goes on.
/// Either way the free happens only after every section that could have found the thing
/// has ended. Sections cost the reader two plain stores (see `ReadSections.swift`).
extension Heap {
    /// Runs `body` inside a read section: ``synchronize()`` waits for it, and actions
    /// passed to ``retire(_:)`` after it began run only after it ends.
    ///
    /// Inside `body` a reader may read shared state, use arenas and views (their own
    /// sections nest inside this one), and call ``retire(_:)``. It must not call
    /// ``synchronize()`` (it would wait for itself: that traps), provision (create, resize,
    /// destroy, repair: a shrink or destroy of an arena it uses would wait for it), or
    /// block for long: every waiting writer waits for `body`. Nor may anything it found
    /// inside be used after `body` returns.
    public func withReadSection<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        let token = ReadSections.enter(UInt64(UInt(bitPattern: ObjectIdentifier(self))))
        defer { ReadSections.exit(token) }
        return try body()
    }

    /// Waits until every read section open now has ended: this heap's accesses, views and
    /// ``withReadSection(_:)`` sections, and those of any other heap in the process.
    /// Sections that begin meanwhile are not waited for. The wait sleeps; readers are not
    /// slowed by it. Must not be called inside a read section (that traps).
    public func synchronize() {
        ReadSections.synchronize()
    }

    /// Runs `body` once every read section open now has ended, on the heap's reclaimer
    /// thread, without waiting here. Actions run one at a time, in the order retired; keep
    /// them short and never call ``synchronize()`` from one.
    public func retire(_ body: @escaping @Sendable () -> Void) {
        ReadSections.retire(ReadSections.begin(holding: nil), body)
    }
}
