import DaxArenas
import DaxDevice
import Synchronization  // Atomic<UInt64> over the lent bytes: the 8-byte loads and stores

/// One arena's layout pinned for a run of accesses: what a database's get or put needs.
///
/// ``Arena/withUnsafeBytes(at:count:_:)`` and friends each enter and leave a read section
/// (a few plain stores: `ReadSections.swift`) and look the arena up again. A view pays that
/// once: ``Arena/withView(_:)`` enters one section, and every access through the view translates offsets with the
/// layout of that moment, checks bounds, and nothing else: no lock, no atomic
/// read-modify-write, no reference counting. So a record and its index slot can be
/// written, flushed and fenced with exactly the fences the caller asks for.
///
/// The view's layout stays valid while its closure runs: a shrink or destroy of the arena
/// publishes the new table and returns only after every view and access of this arena
/// opened before it has ended, so the view keeps the ``size`` and extents it started with.
/// (A grow, or any change to another arena, waits for nothing: it releases nothing the
/// view can reach.) Drain before the closure ends if it used ``memcpyNoDrain(at:from:)``
/// or ``flush(at:count:)``: the section ends with a plain store, which does not order
/// non-temporal stores still in flight.
/// Keep views short, and never provision from inside the closure: a change that waits
/// would wait for the closure, and the closure for it.
///
/// A view is non-escapable (`~Escapable`, SE-0446): the compiler rejects any use of it
/// after its closure returns (keeping it in a variable outside, returning it, capturing
/// it in a closure kept for later), because the section that keeps its layout valid ends
/// there; a kept view would otherwise reach whatever arena took the space next. This is
/// checked at compile time, in every build, and costs nothing at run time, which is why
/// it was chosen over a run-time check. Only unsafe code can defeat it. Nor is a view
/// `Sendable`: it stays on its thread. The bytes it lends are scoped the same way:
/// ``withBytes(at:count:_:)`` and ``withMutableBytes(at:count:_:)`` lend non-escapable
/// spans; the `withUnsafe...` pair lends raw pointers, which must not escape either.
public struct ArenaView: ~Escapable {
    @usableFromInline let snapshot: Unmanaged<ArenaSnapshot>
    @usableFromInline let device: Unmanaged<MappedDevice>
    @usableFromInline let base: UnsafeMutableRawPointer
    @usableFromInline let writable: Bool
    /// For error messages only.
    @usableFromInline let cell: Unmanaged<ArenaCell>

    /// Pins the current layout; call inside a read section, with `arena` kept alive.
    @usableFromInline @inline(__always) @_lifetime(borrow arena)
    init(_ arena: borrowing Arena) throws(HeapError) {
        guard let snapshot = arena.cell.load() else { throw arena.goneError() }
        self.init(arena, snapshot)
    }

    /// The view of entry `index` of a set of views (``ArenaViews``), which pinned its layout.
    @usableFromInline @inline(__always) @_lifetime(copy views)
    init(_ views: borrowing ArenaViews, _ index: Int) {
        self.init(views.arenas[index], views.snapshots[index])
    }

    /// Internal: the public entry points scope the view (the inits above, and closures).
    @usableFromInline @inline(__always) @_lifetime(immortal)
    init(_ arena: borrowing Arena, _ snapshot: Unmanaged<ArenaSnapshot>) {
        self.snapshot = snapshot
        self.device = Unmanaged.passUnretained(arena.heap.device)
        self.base = arena.heap.device.base
        self.writable = arena.heap.device.mode == .readWrite
        self.cell = Unmanaged.passUnretained(arena.cell)
    }

    /// The arena's size when the view was taken.
    @inlinable
    public var size: UInt64 { snapshot._withUnsafeGuaranteedRef { $0.layout.size } }

    /// The arena's name.
    public var name: String { cell._withUnsafeGuaranteedRef { $0.name } }

    // MARK: - Scoped access (one extent)
    //
    // Each comes typed, for a body that throws nothing or HeapError, and untyped, for any
    // other body (see ``Arena``, "Errors of access closures").

    /// Lends `[offset, offset + count)`, which must lie inside one extent, for reading
    /// during `body`, as a bounds-checked span that cannot escape.
    @inlinable
    public func withBytes<R>(at offset: UInt64, count: Int, _ body: (RawSpan) throws(HeapError) -> R) throws(HeapError) -> R {
        let bytes = UnsafeRawBufferPointer(start: try locate(offset, count), count: count)
        return try body(RawSpan(_unsafeBytes: bytes))
    }

    /// The same, for a body that throws other errors: rethrows them untyped.
    @inlinable
    public func withBytes<R>(at offset: UInt64, count: Int, _ body: (RawSpan) throws -> R) throws -> R {
        let bytes = UnsafeRawBufferPointer(start: try locate(offset, count), count: count)
        return try body(RawSpan(_unsafeBytes: bytes))
    }

    /// Lends `[offset, offset + count)`, which must lie inside one extent, for writing
    /// during `body`, as a bounds-checked span that cannot escape. Stores are not durable
    /// until flushed and drained.
    @inlinable
    public func withMutableBytes<R>(
        at offset: UInt64, count: Int, _ body: (inout MutableRawSpan) throws(HeapError) -> R
    ) throws(HeapError) -> R {
        guard writable else { throw readOnlyError() }
        let bytes = UnsafeMutableRawBufferPointer(start: try locate(offset, count), count: count)
        var span = MutableRawSpan(_unsafeBytes: bytes)
        return try body(&span)
    }

    /// The same, for a body that throws other errors: rethrows them untyped.
    @inlinable
    public func withMutableBytes<R>(at offset: UInt64, count: Int, _ body: (inout MutableRawSpan) throws -> R) throws -> R {
        guard writable else { throw readOnlyError() }
        let bytes = UnsafeMutableRawBufferPointer(start: try locate(offset, count), count: count)
        var span = MutableRawSpan(_unsafeBytes: bytes)
        return try body(&span)
    }

    /// Lends `[offset, offset + count)`, which must lie inside one extent, for reading
    /// during `body`. Do not let the pointer escape.
    @inlinable
    public func withUnsafeBytes<R>(
        at offset: UInt64, count: Int, _ body: (UnsafeRawBufferPointer) throws(HeapError) -> R
    ) throws(HeapError) -> R {
        try body(UnsafeRawBufferPointer(start: try locate(offset, count), count: count))
    }

    /// The same, for a body that throws other errors: rethrows them untyped.
    @inlinable
    public func withUnsafeBytes<R>(at offset: UInt64, count: Int, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try body(UnsafeRawBufferPointer(start: try locate(offset, count), count: count))
    }

    /// Lends `[offset, offset + count)`, which must lie inside one extent, for writing
    /// during `body`. Stores are not durable until flushed and drained.
    @inlinable
    public func withUnsafeMutableBytes<R>(
        at offset: UInt64, count: Int, _ body: (UnsafeMutableRawBufferPointer) throws(HeapError) -> R
    ) throws(HeapError) -> R {
        guard writable else { throw readOnlyError() }
        return try body(UnsafeMutableRawBufferPointer(start: try locate(offset, count), count: count))
    }

    /// The same, for a body that throws other errors: rethrows them untyped.
    @inlinable
    public func withUnsafeMutableBytes<R>(
        at offset: UInt64, count: Int, _ body: (UnsafeMutableRawBufferPointer) throws -> R
    ) throws -> R {
        guard writable else { throw readOnlyError() }
        return try body(UnsafeMutableRawBufferPointer(start: try locate(offset, count), count: count))
    }

    // MARK: - 8-byte words (the unit of failure atomicity)

    /// Loads the 8-byte word at `offset` (a multiple of 8) in one piece, with acquire
    /// ordering: bytes it points to and that were published before it are visible.
    @inlinable
    public func load(at offset: UInt64) throws(HeapError) -> UInt64 {
        let p = try word(offset)
        return p.assumingMemoryBound(to: Atomic<UInt64>.self).pointee.load(ordering: .acquiring)
    }

    /// Stores `value` at `offset` (a multiple of 8) in one piece, with release ordering:
    /// a concurrent reader sees the old word or the new one, and everything stored before.
    /// An aligned 8-byte store is also what the media never tears (x86-64 persists aligned
    /// 8-byte stores whole), so a flushed word is the old or the new after a power loss.
    /// Not durable until flushed and drained (``persist(at:count:)``).
    @inlinable
    public func store(_ value: UInt64, at offset: UInt64) throws(HeapError) {
        guard writable else { throw readOnlyError() }
        let p = try word(offset)
        p.assumingMemoryBound(to: Atomic<UInt64>.self).pointee.store(value, ordering: .releasing)
    }

    /// Replaces the word at `offset` (a multiple of 8) with `desired` if it holds
    /// `expected`, in one atomic step (sequentially consistent); returns whether it did and
    /// the word found. As for ``store(_:at:)``, the word is not durable until flushed and
    /// drained, and a power loss after the flush leaves the old word or the new one.
    @inlinable
    public func compareExchange(expected: UInt64, desired: UInt64, at offset: UInt64) throws(HeapError) -> (exchanged: Bool, original: UInt64) {
        guard writable else { throw readOnlyError() }
        let p = try word(offset)
        return p.assumingMemoryBound(to: Atomic<UInt64>.self).pointee
            .compareExchange(expected: expected, desired: desired, ordering: .sequentiallyConsistent)
    }

    /// Adds `value` to the word at `offset` (a multiple of 8), wrapping, in one atomic step
    /// (sequentially consistent); returns the word before. Not durable until flushed and
    /// drained.
    @inlinable
    public func wrappingAdd(_ value: UInt64, at offset: UInt64) throws(HeapError) -> UInt64 {
        guard writable else { throw readOnlyError() }
        let p = try word(offset)
        return p.assumingMemoryBound(to: Atomic<UInt64>.self).pointee.wrappingAdd(value, ordering: .sequentiallyConsistent).oldValue
    }

    // MARK: - Durability

    /// Flushes `[offset, offset + count)` from the CPU caches without waiting
    /// (pmem_flush per extent piece; msync on a file that is not persistent memory).
    /// Follow a batch of flushes with one ``drain()``.
    @inlinable
    public func flush(at offset: UInt64, count: UInt64) throws(HeapError) {
        try forEachPiece(offset: offset, count: count) { device, _, length throws(HeapError) in try flushPiece(device, length) }
    }

    /// Waits until every earlier flush and non-temporal copy is durable (pmem_drain: one
    /// store fence). A no-op on a file synced with msync, where flushing was durable.
    @inlinable
    public func drain() { device._withUnsafeGuaranteedRef { $0.drain() } }

    /// Flushes and drains `[offset, offset + count)`.
    @inlinable
    public func persist(at offset: UInt64, count: UInt64) throws(HeapError) {
        try flush(at: offset, count: count)
        drain()
    }

    /// Copies `source` to `offset` (across extents as needed) and flushes it, without the
    /// fence (pmem_memcpy_nodrain): copy several records, then ``drain()`` once. The whole
    /// range is checked before the first byte is written; after that only a failed msync
    /// (on a file, not persistent memory) can throw, leaving the extent pieces before the
    /// failing one written (see ``HeapError``).
    @inlinable
    public func memcpyNoDrain(at offset: UInt64, from source: UnsafeRawBufferPointer) throws(HeapError) {
        guard writable else { throw readOnlyError() }
        try forEachPiece(offset: offset, count: UInt64(source.count)) { device, done, length throws(HeapError) in
            try copyPiece(device, UnsafeRawBufferPointer(start: source.baseAddress! + Int(done), count: Int(length)))
        }
    }

    /// Copies `source` to `offset` and makes it durable (one fence).
    @inlinable
    public func memcpyPersist(at offset: UInt64, from source: UnsafeRawBufferPointer) throws(HeapError) {
        try memcpyNoDrain(at: offset, from: source)
        drain()
    }

    // MARK: - Internals

    /// The mapped address of `[offset, offset + count)`, checked to lie in one extent; nil
    /// for an empty range.
    @inlinable
    func locate(_ offset: UInt64, _ count: Int) throws(HeapError) -> UnsafeMutableRawPointer? {
        let size = self.size
        guard count >= 0, offset <= size, UInt64(count) <= size - offset else { throw outOfRangeError(offset, UInt64(max(count, 0))) }
        if count == 0 { return nil }
        let (at, contiguous) = translated(offset)
        guard UInt64(count) <= contiguous else { throw crossesExtentError(offset, count, contiguous) }
        return base + Int(at)
    }

    /// The address of an aligned 8-byte word. Extents start on 2 MiB boundaries of the
    /// device, so an arena offset aligned to 8 is a device address aligned to 8.
    @inlinable
    func word(_ offset: UInt64) throws(HeapError) -> UnsafeMutableRawPointer {
        guard offset & 7 == 0 else { throw misalignedError(offset) }
        return try locate(offset, 8)!
    }

    /// Calls `body(deviceOffset, bytesDoneSoFar, length)` for each extent piece of
    /// `[offset, offset + count)`, in arena order, after checking the whole range: when it
    /// throws for the range, `body` has not run.
    @inlinable
    func forEachPiece(offset: UInt64, count: UInt64, _ body: (UInt64, UInt64, UInt64) throws(HeapError) -> Void) throws(HeapError) {
        let size = self.size
        guard offset <= size, count <= size - offset else { throw outOfRangeError(offset, count) }
        var done: UInt64 = 0
        while done < count {
            let (device, contiguous) = translated(offset + done)
            let length = min(contiguous, count - done)
            try body(device, done, length)
            done += length
        }
    }

    /// Device offset and contiguous bytes of an offset already checked to be below the size.
    @inlinable
    func translated(_ offset: UInt64) -> (UInt64, UInt64) {
        snapshot._withUnsafeGuaranteedRef { $0.layout.translate(offset)! }
    }

    /// Device calls, one per extent piece (out of line: the device stays unretained).
    @usableFromInline func flushPiece(_ deviceOffset: UInt64, _ length: UInt64) throws(HeapError) {
        let result = device._withUnsafeGuaranteedRef { device in
            Result { () throws(DeviceError) in try device.flush(offset: deviceOffset, length: length) }
        }
        if case .failure(let error) = result { throw HeapError(error) }
    }
    @usableFromInline func copyPiece(_ deviceOffset: UInt64, _ piece: UnsafeRawBufferPointer) throws(HeapError) {
        let result = device._withUnsafeGuaranteedRef { device in
            Result { () throws(DeviceError) in try device.memcpyNoDrain(offset: deviceOffset, from: piece) }
        }
        if case .failure(let error) = result { throw HeapError(error) }
    }

    // Errors are built out of line: the fast path carries no String.
    @usableFromInline func outOfRangeError(_ offset: UInt64, _ count: UInt64) -> HeapError {
        .outOfRange(arena: name, offset: offset, count: count, arenaSize: size)
    }
    @usableFromInline func crossesExtentError(_ offset: UInt64, _ count: Int, _ contiguous: UInt64) -> HeapError {
        .crossesExtent(arena: name, offset: offset, count: UInt64(count), contiguous: contiguous)
    }
    @usableFromInline func misalignedError(_ offset: UInt64) -> HeapError { .misalignedAccess(arena: name, offset: offset) }
    @usableFromInline func readOnlyError() -> HeapError { .readOnly(path: device._withUnsafeGuaranteedRef { $0.path }) }
}

@available(*, unavailable, message: "an ArenaView lives only inside its closure, on its thread")
extension ArenaView: Sendable {}
