/// Closing a heap explicitly, so that a process can open the same device again without
/// first dropping every ``Arena`` handle it gave out.
///
/// How handles fail safely afterwards: close publishes "no layout" in every arena's cell,
/// as a destroy does for one arena, then waits for a grace period (``ReadSections``) before
/// it unmaps. Every data-plane call loads its arena's layout inside a read section, so a
/// call that began before the close finishes on the mapping it started with, and a call
/// that begins after it finds no layout and throws ``HeapError/heapClosed(path:)``: it
/// never reaches unmapped memory. This costs the data plane nothing, since each call
/// already checks for a destroyed arena. Everything else that reaches the device (metadata
/// reads and writes, bad blocks, windows) checks ``Heap/isClosed`` under the lock close
/// holds while it sets it.
extension Heap {
    /// Whether ``close()`` has run.
    public var isClosed: Bool { closed.load(ordering: .acquiring) }

    /// Closes the heap now: unmaps the device and drops its lock, so that this process (or
    /// another) can ``open(path:mode:logger:)`` it again at once, even while handles to
    /// this heap are still around.
    ///
    /// Close waits for provisioning in progress and for every read section open when it
    /// starts (views, access closures, ``withReadSection(_:)``; as ``synchronize()``
    /// does, those of other heaps too), then unmaps. Afterwards:
    ///
    /// - every call of this heap and of its ``Arena`` handles that would reach the device,
    ///   hand out an arena or change the table throws ``HeapError/heapClosed(path:)``
    ///   (``check()`` reports it as its one problem); an arena's ``Arena/size`` reads 0;
    /// - the facts (``path``, ``uuid``, ``usableSize``, ``availableSize``, ``generation``,
    ///   ``arenas``...) describe the heap as it was when closed;
    /// - ``withReadSection(_:)``, ``synchronize()`` and ``retire(_:)`` keep working (they
    ///   touch no device memory).
    ///
    /// Closing a closed heap does nothing.
    ///
    /// - Throws: ``HeapError/windowsOpen(path:arenas:)`` while any ``ArenaWindow`` of the
    ///   heap is open: its addresses may be in use, and only its owner knows when they are
    ///   not; close the windows first. ``HeapError/closeInsideReadSection(path:)`` when
    ///   called inside a read section (of any heap), which the close would wait for.
    ///   Either way the heap stays open and unchanged.
    public func close() throws(HeapError) {
        if isClosed { return }
        guard !ReadSections.insideSection else { throw .closeInsideReadSection(path: path) }
        // Serializes closes: a second one returns once the first has closed the device.
        try closing.withLock { _ throws(HeapError) in
            let retired = try provisioning.withLock { _ throws(HeapError) in
                try state.withLock { s throws(HeapError) -> [Unmanaged<ArenaSnapshot>]? in
                    if isClosed { return nil }
                    var mapped: [String] = []
                    for (id, regions) in s.windows {
                        let name = s.table.arenas[id]?.name ?? "#\(id)"
                        mapped += regions.map { _ in name }
                    }
                    guard mapped.isEmpty else { throw .windowsOpen(path: path, arenas: mapped.sorted()) }
                    // Set before the layouts go: a reader that finds no layout then sees it.
                    closed.store(true, ordering: .releasing)
                    return s.cells.values.compactMap { $0.publish(nil) }
                }
            }
            guard let retired else { return }
            // Neither lock is held: every call that takes one now throws heapClosed, and a
            // reader that provisions (which it must not) fails instead of deadlocking.
            ReadSections.synchronize()
            for snapshot in retired { snapshot.release() }
            device.close()
            logger.info("closed heap", metadata: ["path": "\(path)"])
        }
    }

    /// Throws ``HeapError/heapClosed(path:)`` once the heap is closed. Callers that then
    /// use the device hold `provisioning` or `state` until they are done with it: close
    /// sets the flag holding both, so such a caller either finished before, or throws.
    func ensureOpen() throws(HeapError) {
        guard !isClosed else { throw .heapClosed(path: path) }
    }
}
