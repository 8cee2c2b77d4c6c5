import DaxArenas
import DaxDevice

/// A handle to one named arena of a ``Heap``: a byte range `0 ..< size` that may lie on
/// several discontiguous extents of the device.
///
/// Every access translates arena offsets through the arena's radix tree and runs inside a
/// read section, so it proceeds concurrently with provisioning: it sees the layout from
/// before or after a resize, never half of one, and a shrink or destroy waits for it.
/// Do not provision from inside an access closure (the change would wait for the closure).
///
/// `Arena` is `Sendable`, but the bytes are shared memory: coordinating concurrent writes
/// to the same bytes is the caller's business, as with any shared mapping.
///
/// A handle outlives what it names safely. Once its arena is destroyed, ``size`` reads 0
/// (a live arena is never empty) and every other call throws
/// ``HeapError/unknownArena(_:)``; the handle never reaches an arena that later takes the
/// same name. Once its heap is closed (``Heap/close()``), the same, with
/// ``HeapError/heapClosed(path:)``.
///
/// **Errors of access closures.** The calls that lend bytes or views to a closure
/// (``withView(_:)``, ``withViews(_:_:_:)``, ``withViews(_:_:)``, ``withUnsafeBytes(at:count:_:)``,
/// ``withTranslator(_:)``, and the like on ``ArenaView`` and ``ArenaWindow``) come in two
/// overloads. When the closure throws nothing, or only ``HeapError`` (write it
/// `{ view throws(HeapError) in ... }`: Swift infers `any Error` for a closure that
/// tries), the call throws `HeapError`, typed. Any other closure gets the untyped overload,
/// which rethrows what the closure threw and throws `HeapError` for the heap's own
/// failures, so `catch let error as HeapError` works either way. (One generic call with a
/// wrapper error, `HeapError` or the closure's, would make every caller unwrap it.)
public struct Arena: Sendable {
    /// The heap the arena lives on (kept alive by the handle).
    public let heap: Heap
    @usableFromInline let cell: ArenaCell
    /// The heap's device, unretained (`heap` keeps it alive), for the inlined data paths:
    /// no reference counting on them (a release is a locked instruction).
    @usableFromInline let device: Unmanaged<MappedDevice>

    init(heap: Heap, cell: ArenaCell) {
        self.heap = heap
        self.cell = cell
        self.device = Unmanaged.passUnretained(heap.device)
    }

    public var name: String { cell.name }
    /// The persistent id, stable across reopen.
    public var id: UInt64 { cell.id }

    /// Current size in bytes: a positive multiple of 2 MiB, or 0 once the arena is
    /// destroyed or its heap closed (then every data call throws; see ``Arena``).
    public var size: UInt64 { withLayout({ $0.size }) ?? 0 }

    /// Size and extents now.
    public var info: ArenaInfo {
        get throws(HeapError) {
            guard let info = withLayout({ ArenaInfo($0) }) else { throw goneError() }
            return info
        }
    }

    /// A reference to `offset` (at most the arena's size) that survives reopening the heap.
    public func reference(at offset: UInt64) throws(HeapError) -> PersistentReference {
        guard let size = withLayout({ $0.size }) else { throw goneError() }
        guard offset <= size else { throw .outOfRange(arena: name, offset: offset, count: 0, arenaSize: size) }
        return PersistentReference(arenaID: id, offset: offset)
    }

    /// Resizes this arena (see ``Heap/resizeArena(named:to:)``).
    public func resize(to size: UInt64) throws(HeapError) { try heap.resizeArena(id: id, name: name, to: size) }

    // MARK: - Scoped raw access (one extent)

    /// Lends the bytes `[offset, offset + count)` for the duration of `body`; they must lie
    /// inside one extent (see ``contiguousBytes(at:)``). Do not let the pointer escape.
    /// Stores are not durable until persisted (``persist(at:count:)``). Typed: for a body
    /// that throws nothing or `HeapError` (see ``Arena``, "Errors of access closures").
    public func withUnsafeMutableBytes<R>(
        at offset: UInt64, count: Int, _ body: (UnsafeMutableRawBufferPointer) throws(HeapError) -> R
    ) throws(HeapError) -> R {
        guard heap.device.mode == .readWrite else { throw .readOnly(path: heap.path) }
        return try withView { view throws(HeapError) in try view.withUnsafeMutableBytes(at: offset, count: count, body) }
    }

    /// The same, for a body that throws other errors: rethrows them untyped.
    public func withUnsafeMutableBytes<R>(
        at offset: UInt64, count: Int, _ body: (UnsafeMutableRawBufferPointer) throws -> R
    ) throws -> R {
        guard heap.device.mode == .readWrite else { throw HeapError.readOnly(path: heap.path) }
        return try withView { view in try view.withUnsafeMutableBytes(at: offset, count: count, body) }
    }

    /// Lends the bytes `[offset, offset + count)`, which must lie inside one extent, for
    /// reading during `body`. Do not let the pointer escape. Typed: for a body that throws
    /// nothing or `HeapError` (see ``Arena``, "Errors of access closures").
    public func withUnsafeBytes<R>(
        at offset: UInt64, count: Int, _ body: (UnsafeRawBufferPointer) throws(HeapError) -> R
    ) throws(HeapError) -> R {
        try withView { view throws(HeapError) in try view.withUnsafeBytes(at: offset, count: count, body) }
    }

    /// The same, for a body that throws other errors: rethrows them untyped.
    public func withUnsafeBytes<R>(
        at offset: UInt64, count: Int, _ body: (UnsafeRawBufferPointer) throws -> R
    ) throws -> R {
        try withView { view in try view.withUnsafeBytes(at: offset, count: count, body) }
    }

    /// How many bytes from `offset` on lie in the same extent (0 at the end of the arena).
    public func contiguousBytes(at offset: UInt64) throws(HeapError) -> UInt64 {
        guard let result = withLayout({ layout -> (size: UInt64, contiguous: UInt64?) in
            (layout.size, offset == layout.size ? 0 : layout.translate(offset)?.contiguous)
        }) else { throw goneError() }
        guard let contiguous = result.contiguous else {
            throw .outOfRange(arena: name, offset: offset, count: 0, arenaSize: result.size)
        }
        return contiguous
    }

    // MARK: - Copying access (any range)

    /// Copies `source` into the arena at `offset`, across extents as needed. Not durable
    /// until persisted; see ``memcpyPersist(at:from:)`` for both at once.
    public func write(_ source: UnsafeRawBufferPointer, at offset: UInt64) throws(HeapError) {
        guard heap.device.mode == .readWrite else { throw .readOnly(path: heap.path) }
        try forEachPiece(offset: offset, count: UInt64(source.count)) { device, done, length throws(HeapError) in
            (heap.device.base + Int(device)).copyMemory(from: source.baseAddress! + Int(done), byteCount: Int(length))
        }
    }

    /// Copies `bytes` into the arena at `offset` (not yet durable).
    public func write(_ bytes: [UInt8], at offset: UInt64) throws(HeapError) {
        try withBytes(of: bytes) { raw throws(HeapError) in try write(raw, at: offset) }
    }

    /// Copies arena bytes from `offset` into `destination`, filling it.
    public func read(into destination: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(HeapError) {
        try forEachPiece(offset: offset, count: UInt64(destination.count)) { device, done, length throws(HeapError) in
            (destination.baseAddress! + Int(done)).copyMemory(from: heap.device.base + Int(device), byteCount: Int(length))
        }
    }

    /// Like ``read(into:at:)``, but a media error (a poisoned line on device-dax: SIGBUS)
    /// becomes a `.mediaError` result naming this arena and the arena offset of the fault,
    /// instead of killing the process. `destination` then holds partial data.
    public func guardedRead(into destination: UnsafeMutableRawBufferPointer, at offset: UInt64) -> Result<Void, HeapError> {
        Result { () throws(HeapError) in
            try forEachPiece(offset: offset, count: UInt64(destination.count)) { device, done, length throws(HeapError) in
                let piece = UnsafeMutableRawBufferPointer(start: destination.baseAddress! + Int(done), count: Int(length))
                do throws(DeviceError) {
                    try heap.device.guardedRead(offset: device, into: piece)
                } catch {
                    guard case .mediaError(let path, let at) = error else { throw HeapError(error) }
                    let arenaOffset = offset + done + (at >= device ? at - device : 0)
                    throw .mediaError(path: path, deviceOffset: at, location: "arena \(debugQuoted(name)) at offset \(arenaOffset)")
                }
            }
        }
    }

    /// `count` arena bytes from `offset`.
    public func read(at offset: UInt64, count: Int) throws(HeapError) -> [UInt8] {
        guard let size = withLayout({ $0.size }) else { throw goneError() }
        guard count >= 0, offset <= size, UInt64(count) <= size - offset else {
            throw .outOfRange(arena: name, offset: offset, count: UInt64(max(count, 0)), arenaSize: size)
        }
        var result = [UInt8](repeating: 0, count: count)
        let outcome = result.withUnsafeMutableBytes { raw in
            Result { () throws(HeapError) in try read(into: raw, at: offset) }
        }
        try outcome.get()
        return result
    }

    // MARK: - Durability (libpmem; msync on a file that is not persistent memory)

    /// Makes `[offset, offset + count)` durable: flush every piece, then one drain.
    @inlinable @inline(__always)
    public func persist(at offset: UInt64, count: UInt64) throws(HeapError) {
        try flush(at: offset, count: count)
        drain()
    }

    /// Flushes the range from the CPU caches without waiting (pmem_flush). Follow a batch
    /// of flushes with one ``drain()``.
    @inlinable @inline(__always)
    public func flush(at offset: UInt64, count: UInt64) throws(HeapError) {
        // Fast path, inlined into the caller as memcpyPersist's is: the section's stores,
        // one translation, one pmem_flush. No locked instruction between a flush and the
        // caller's drain (a locked instruction waits for the flush as a fence does).
        let token = ReadSections.enter(readKey)
        if isPersistentMemory(storing: false), let at = oneExtent(offset, count) {
            device._withUnsafeGuaranteedRef { $0.pmemFlush(offset: at, length: count) }
            ReadSections.exit(token)
            return
        }
        ReadSections.exit(token)
        try flushPieces(at: offset, count: count)
    }

    /// ``flush(at:count:)`` in every other case: several extents, msync, an empty or bad
    /// range, a destroyed arena.
    @usableFromInline
    func flushPieces(at offset: UInt64, count: UInt64) throws(HeapError) {
        let mapped = heap.device
        try forEachPiece(offset: offset, count: count) { device, _, length throws(HeapError) in
            do throws(DeviceError) { try mapped.flush(offset: device, length: length) } catch { throw HeapError(error) }
        }
    }

    /// Waits for earlier flushes to be durable (pmem_drain).
    @inlinable @inline(__always)
    public func drain() { device._withUnsafeGuaranteedRef { $0.drain() } }

    /// Copies `source` to `offset` and makes it durable (pmem_memcpy_persist per extent).
    /// The range is checked before the first byte is written; a failed msync (on a file)
    /// throws with the extent pieces before the failing one written and durable.
    @inlinable @inline(__always)
    public func memcpyPersist(at offset: UInt64, from source: UnsafeRawBufferPointer) throws(HeapError) {
        // Fast path, the common case: persistent memory, writable, the whole range in one
        // extent. Inlined into the caller, where the section's stores cost least (see
        // ReadSections.enter): the stores, one translation, one libpmem call; nothing
        // retained (a release is a locked instruction), no closure, no other call but
        // the snapshot's load. Every other case takes the checked path, out of line.
        let token = ReadSections.enter(readKey)
        if isPersistentMemory(storing: true), let from = source.baseAddress,
           let at = oneExtent(offset, UInt64(source.count)) {
            device._withUnsafeGuaranteedRef { $0.pmemMemcpyPersist(offset: at, from: from, count: source.count) }
            ReadSections.exit(token)
            return
        }
        ReadSections.exit(token)
        try memcpyPersistPieces(at: offset, from: source)
    }

    /// ``memcpyPersist(at:from:)`` in every other case: several extents, msync, an empty
    /// or bad range, a read-only heap, a destroyed arena.
    @usableFromInline
    func memcpyPersistPieces(at offset: UInt64, from source: UnsafeRawBufferPointer) throws(HeapError) {
        let mapped = heap.device
        guard mapped.mode == .readWrite else { throw .readOnly(path: heap.path) }
        try forEachPiece(offset: offset, count: UInt64(source.count)) { device, done, length throws(HeapError) in
            let piece = UnsafeRawBufferPointer(start: source.baseAddress! + Int(done), count: Int(length))
            do throws(DeviceError) { try mapped.memcpyPersist(offset: device, from: piece) } catch { throw HeapError(error) }
        }
    }

    /// Copies `bytes` to `offset` and makes them durable.
    public func memcpyPersist(at offset: UInt64, _ bytes: [UInt8]) throws(HeapError) {
        try withBytes(of: bytes) { raw throws(HeapError) in try memcpyPersist(at: offset, from: raw) }
    }

    /// Fills `count` bytes at `offset` with `value` and makes them durable. Fails like
    /// ``memcpyPersist(at:from:)``: range first, then at most a failed msync midway.
    public func memsetPersist(at offset: UInt64, value: UInt8, count: UInt64) throws(HeapError) {
        guard heap.device.mode == .readWrite else { throw .readOnly(path: heap.path) }
        try forEachPiece(offset: offset, count: count) { device, _, length throws(HeapError) in
            do throws(DeviceError) { try heap.device.memsetPersist(offset: device, value: value, length: length) } catch { throw HeapError(error) }
        }
    }

    /// Maps `[offset, offset + count)` now, so that first stores to it do not take page
    /// faults (madvise MADV_POPULATE_WRITE): on device-dax the mappings are set up, on a
    /// file the blocks are allocated (the bytes stay as they are). A file system without
    /// room for them fails here, with an error, instead of with SIGBUS at a later store.
    /// Returns false, having done nothing, on kernels before Linux 5.14. An error on one
    /// extent's piece throws with the pieces before it already mapped.
    @discardableResult
    public func prefault(at offset: UInt64, count: UInt64) throws(HeapError) -> Bool {
        let mapped = heap.device
        guard mapped.mode == .readWrite else { throw .readOnly(path: heap.path) }
        var supported = true
        try forEachPiece(offset: offset, count: count) { device, _, length throws(HeapError) in
            do throws(DeviceError) {
                if supported { supported = try mapped.prefault(offset: device, length: length) }
            } catch { throw HeapError(error) }
        }
        return supported
    }

    // MARK: - Internals

    /// What a call on a handle whose layout is gone throws: the heap was closed, or else
    /// the arena destroyed. Out of line: the fast paths carry no String.
    @usableFromInline func goneError() -> HeapError {
        heap.isClosed ? .heapClosed(path: heap.path) : .unknownArena(name)
    }

    /// What a read section of this arena records: the cell's address, as
    /// `ArenaCell.readKey` (spelled out here for the inlined paths).
    @inlinable
    var readKey: UInt64 { UInt64(UInt(bitPattern: ObjectIdentifier(cell))) }

    /// The current layout, for use inside a read section of this arena (``readKey``).
    @usableFromInline
    func snapshotInSection() -> Unmanaged<ArenaSnapshot>? { cell.load() }

    /// The device offset of `[offset, offset + count)` when the arena's current layout
    /// holds all of it in one extent; nil when it spans extents, passes the end, or the
    /// arena is gone. Inside a read section of this arena only. The bounds check of the
    /// fast paths: `translate` is nil at and past the size, and its `contiguous` ends there.
    @inlinable @inline(__always)
    func oneExtent(_ offset: UInt64, _ count: UInt64) -> UInt64? {
        guard let snapshot = snapshotInSection(),
              let (at, contiguous) = snapshot._withUnsafeGuaranteedRef({ $0.layout.translate(offset) }),
              count <= contiguous else { return nil }
        return at
    }

    /// Whether the fast paths may call libpmem: the heap is on persistent memory, and
    /// writable when the call stores.
    @inlinable @inline(__always)
    func isPersistentMemory(storing: Bool) -> Bool {
        device._withUnsafeGuaranteedRef { $0.persistence == .pmem && (!storing || $0.mode == .readWrite) }
    }

    /// Runs `body` on the current layout inside a read section; nil if destroyed or closed.
    @inline(__always)
    func withLayout<R>(_ body: (ArenaLayout) -> R) -> R? {
        let token = ReadSections.enter(cell.readKey)
        defer { ReadSections.exit(token) }
        guard let snapshot = cell.load() else { return nil }
        return snapshot._withUnsafeGuaranteedRef { body($0.layout) }
    }

    /// Calls `body(deviceOffset, bytesDoneSoFar, length)` for each extent piece of the
    /// range, in arena order, inside one read section; checks the whole range first.
    /// (The view's walk; the view borrows the layout, so nothing is retained.)
    @inline(__always)
    func forEachPiece(
        offset: UInt64, count: UInt64, _ body: (UInt64, UInt64, UInt64) throws(HeapError) -> Void
    ) throws(HeapError) {
        let token = ReadSections.enter(cell.readKey)  // inlined here: no call on the way in or out
        defer { ReadSections.exit(token) }
        try ArenaView(self).forEachPiece(offset: offset, count: count, body)
    }
}

/// Lends an array's bytes to a typed-throwing body.
func withBytes<R>(of bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(HeapError) -> R) throws(HeapError) -> R {
    try bytes.withUnsafeBytes { raw in Result { () throws(HeapError) in try body(raw) } }.get()
}

/// The arena's layout at one moment, for translating many offsets at the cost of the
/// radix walk alone (see ``Arena/withTranslator(_:)``).
public struct ArenaTranslator: Sendable {
    @usableFromInline let layout: ArenaLayout

    /// The arena's size in this layout.
    public var size: UInt64 { layout.size }

    /// The device offset holding arena byte `offset`, and how many bytes from there on
    /// stay in the same extent; nil past the end. O(radix tree height).
    @inlinable
    public func translate(_ offset: UInt64) -> (deviceOffset: UInt64, contiguous: UInt64)? {
        layout.translate(offset)
    }
}

extension Arena {
    /// Runs `body` with a translator of the arena's current layout, inside one read
    /// section: a shrink or destroy waits until `body` returns, so the device offsets it
    /// hands out stay the arena's meanwhile. Do not keep the translator beyond `body`.
    /// Typed: for a body that throws nothing or `HeapError` (see ``Arena``, "Errors of
    /// access closures").
    public func withTranslator<R>(_ body: (ArenaTranslator) throws(HeapError) -> R) throws(HeapError) -> R {
        let token = ReadSections.enter(cell.readKey)
        defer { ReadSections.exit(token) }
        guard let snapshot = cell.load() else { throw goneError() }
        return try body(ArenaTranslator(layout: snapshot._withUnsafeGuaranteedRef { $0.layout }))
    }

    /// The same, for a body that throws other errors: rethrows them untyped.
    public func withTranslator<R>(_ body: (ArenaTranslator) throws -> R) throws -> R {
        let token = ReadSections.enter(cell.readKey)
        defer { ReadSections.exit(token) }
        guard let snapshot = cell.load() else { throw goneError() }
        return try body(ArenaTranslator(layout: snapshot._withUnsafeGuaranteedRef { $0.layout }))
    }
}
