import DaxDevice
import Synchronization  // Atomic<UInt64> over the window's bytes: the 8-byte words

/// An arena mapped as one contiguous range of addresses, however many extents it spans:
/// what the kernel gives an application that mmaps a sub-divided device-dax.
///
/// ``Arena/mapWindow(reserving:)`` reserves address space once (PROT_NONE, MAP_NORESERVE:
/// address space only, no memory, no swap) at a base aligned to max(2 MiB, the device's
/// alignment), and maps every extent there, MAP_SHARED from the device, at
/// `base + arena offset`. The whole-device mapping stays; a window maps the same memory
/// again, so stores through either are seen through both.
///
/// - **The base never moves** while the window is open. Growing the arena (from any thread,
///   through any call) maps the new extents into every open window before the grow returns:
///   pointers below the old size stay valid and the new bytes are at `base + old size`.
///   A grow past the window's ``reservation`` is refused
///   (``HeapError/windowReservationExceeded(arena:size:reservation:)``).
/// - **Shrinking or destroying** a mapped arena is refused
///   (``HeapError/arenaMapped(arena:windows:)``) until its windows are closed.
/// - **A pointer** into the window is valid until ``close()``, for the arena's bytes below
///   ``size``. Closing unmaps the whole reservation, so close only once no thread uses the
///   window's addresses any more: like munmap, closing under a running access is a bug
///   that ends in SIGSEGV. Calls after close throw ``HeapError/windowClosed(arena:)``
///   (``HeapError/heapClosed(path:)`` once the heap is closed as well).
/// - **The heap** cannot be closed (``Heap/close()``) while one of its windows is open.
///
/// A window keeps its heap open until it is closed (explicitly, or when the last reference
/// to it goes). The calls below check bounds against the window's current size; `base`
/// offers plain pointers for everything else. Durability goes through the heap's
/// persistence (libpmem's flushes on persistent memory, msync of the window's pages on a
/// file): stores are not durable until flushed and drained.
public final class ArenaWindow: Sendable {
    /// The arena mapped (its handle keeps the heap open).
    public let arena: Arena
    let region: WindowRegion
    /// The heap's device, unretained: `arena` keeps the heap, and the heap the device,
    /// alive. Reference counting around a flush would put a locked instruction (the
    /// release) between the flush and its fence, which waits for the flush like a fence.
    let device: Unmanaged<MappedDevice>

    init(arena: Arena, region: WindowRegion) {
        self.arena = arena
        self.region = region
        self.device = Unmanaged.passUnretained(arena.heap.device)
    }

    deinit { close() }

    /// The address of arena byte 0. Fixed for the window's life.
    public var base: UnsafeMutableRawPointer { region.base }
    /// Bytes mapped from ``base``: the arena's size, raised by every grow.
    public var size: UInt64 { region.size.load(ordering: .acquiring) }
    /// Address space reserved from ``base``: the most the arena can grow to while mapped.
    public var reservation: UInt64 { region.reservation }
    /// Whether stores are allowed (false on a read-only heap, where the window is PROT_READ).
    public var isWritable: Bool { arena.heap.device.mode == .readWrite }
    public var isOpen: Bool { region.isOpen.load(ordering: .acquiring) }

    /// Unmaps the window's whole reservation. Idempotent; also done when the last
    /// reference to the window goes. No thread may use the window's addresses after.
    public func close() {
        arena.heap.closeWindow(region, arena: arena.id)
    }

    // MARK: - Scoped raw access (any range below the size)

    //
    // Each comes typed, for a body that throws nothing or HeapError, and untyped, for any
    // other body (see ``Arena``, "Errors of access closures").

    /// Lends `[offset, offset + count)` for reading during `body`, across extents. Do not
    /// let the pointer escape the closure (``base`` is there for code that must).
    public func withUnsafeBytes<R>(
        at offset: UInt64, count: Int, _ body: (UnsafeRawBufferPointer) throws(HeapError) -> R
    ) throws(HeapError) -> R {
        try body(UnsafeRawBufferPointer(start: try locate(offset, count), count: count))
    }

    /// The same, for a body that throws other errors: rethrows them untyped.
    public func withUnsafeBytes<R>(at offset: UInt64, count: Int, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try body(UnsafeRawBufferPointer(start: try locate(offset, count), count: count))
    }

    /// Lends `[offset, offset + count)` for writing during `body`, across extents. Stores
    /// are not durable until persisted.
    public func withUnsafeMutableBytes<R>(
        at offset: UInt64, count: Int, _ body: (UnsafeMutableRawBufferPointer) throws(HeapError) -> R
    ) throws(HeapError) -> R {
        try checkWritable()
        return try body(UnsafeMutableRawBufferPointer(start: try locate(offset, count), count: count))
    }

    /// The same, for a body that throws other errors: rethrows them untyped.
    public func withUnsafeMutableBytes<R>(at offset: UInt64, count: Int, _ body: (UnsafeMutableRawBufferPointer) throws -> R) throws -> R {
        try checkWritable()
        return try body(UnsafeMutableRawBufferPointer(start: try locate(offset, count), count: count))
    }

    // MARK: - Typed values

    /// The `T` stored at `offset` (any alignment).
    public func load<T: BitwiseCopyable>(as type: T.Type, at offset: UInt64) throws(HeapError) -> T {
        try locate(offset, MemoryLayout<T>.size)!.loadUnaligned(as: T.self)
    }

    /// Stores `value` at `offset` (any alignment); not durable until persisted.
    public func storeBytes<T: BitwiseCopyable>(of value: T, at offset: UInt64) throws(HeapError) {
        try checkWritable()
        try locate(offset, MemoryLayout<T>.size)!.storeBytes(of: value, as: T.self)
    }

    // MARK: - 8-byte words (atomic; the unit the media never tears)

    /// Loads the 8-byte word at `offset` (a multiple of 8) in one piece, acquiring.
    public func load(at offset: UInt64) throws(HeapError) -> UInt64 {
        try word(offset).pointee.load(ordering: .acquiring)
    }

    /// Stores the 8-byte word at `offset` (a multiple of 8) in one piece, releasing. Not
    /// durable until flushed and drained.
    public func store(_ value: UInt64, at offset: UInt64) throws(HeapError) {
        try checkWritable()
        try word(offset).pointee.store(value, ordering: .releasing)
    }

    /// Replaces the word at `offset` with `desired` if it holds `expected` (sequentially
    /// consistent); returns whether it did and the word found.
    public func compareExchange(expected: UInt64, desired: UInt64, at offset: UInt64) throws(HeapError) -> (exchanged: Bool, original: UInt64) {
        try checkWritable()
        return try word(offset).pointee.compareExchange(expected: expected, desired: desired, ordering: .sequentiallyConsistent)
    }

    /// Adds `value` to the word at `offset`, wrapping (sequentially consistent); returns
    /// the word before.
    public func wrappingAdd(_ value: UInt64, at offset: UInt64) throws(HeapError) -> UInt64 {
        try checkWritable()
        return try word(offset).pointee.wrappingAdd(value, ordering: .sequentiallyConsistent).oldValue
    }

    // MARK: - Durability

    /// Flushes `[offset, offset + count)` from the CPU caches without waiting (pmem_flush;
    /// msync of its pages on a file). Follow a batch of flushes with one ``drain()``.
    public func flush(at offset: UInt64, count: UInt64) throws(HeapError) {
        if let at = pmemAddress(offset, count, storing: false) {
            device._withUnsafeGuaranteedRef { $0.pmemFlush(address: at, length: count) }
            return
        }
        let at = try locate(offset, count)
        guard let at else { return }
        try onDevice { (device) throws(DeviceError) in try device.flush(address: at, length: count) }
    }

    /// Waits until earlier flushes and non-temporal copies are durable (pmem_drain).
    public func drain() { device._withUnsafeGuaranteedRef { $0.drain() } }

    /// Flushes and drains `[offset, offset + count)`.
    public func persist(at offset: UInt64, count: UInt64) throws(HeapError) {
        try flush(at: offset, count: count)
        drain()
    }

    /// Copies `source` to `offset` and flushes it, without the fence
    /// (pmem_memcpy_nodrain): copy several, then ``drain()`` once.
    public func memcpyNoDrain(at offset: UInt64, from source: UnsafeRawBufferPointer) throws(HeapError) {
        try checkWritable()
        guard let at = try locate(offset, source.count) else { return }
        try onDevice { (device) throws(DeviceError) in try device.memcpyNoDrain(address: at, from: source) }
    }

    /// Copies `source` to `offset` and makes it durable (pmem_memcpy_persist).
    public func memcpyPersist(at offset: UInt64, from source: UnsafeRawBufferPointer) throws(HeapError) {
        if let from = source.baseAddress, let at = pmemAddress(offset, UInt64(source.count), storing: true) {
            device._withUnsafeGuaranteedRef { $0.pmemMemcpyPersist(address: at, from: from, count: source.count) }
            return
        }
        try checkWritable()
        guard let at = try locate(offset, source.count) else { return }
        try onDevice { (device) throws(DeviceError) in try device.memcpyPersist(address: at, from: source) }
    }

    /// Copies `bytes` to `offset` and makes them durable.
    public func memcpyPersist(at offset: UInt64, _ bytes: [UInt8]) throws(HeapError) {
        try withBytes(of: bytes) { raw throws(HeapError) in try memcpyPersist(at: offset, from: raw) }
    }

    /// Fills `count` bytes at `offset` with `value` and makes them durable (pmem_memset_persist).
    public func memsetPersist(at offset: UInt64, value: UInt8, count: UInt64) throws(HeapError) {
        try checkWritable()
        guard let at = try locate(offset, count) else { return }
        try onDevice { (device) throws(DeviceError) in try device.memsetPersist(address: at, value: value, length: count) }
    }

    /// Fills the window's page tables for `[offset, offset + count)` now (madvise
    /// MADV_POPULATE_WRITE, whole 4 KiB pages), so that first stores through the window do
    /// not fault one page at a time; on a file the blocks are allocated, and a file system
    /// without room fails here with an error instead of with SIGBUS at a store. A window
    /// has page tables of its own: ``Arena/prefault(at:count:)`` does not fill them.
    /// Returns false, having done nothing, on kernels before Linux 5.14.
    @discardableResult
    public func prefault(at offset: UInt64, count: UInt64) throws(HeapError) -> Bool {
        try checkWritable()
        guard let at = try locate(offset, count) else { return true }
        return try onDevice { (device) throws(DeviceError) in try device.prefault(address: at, length: count) }
    }

    /// The address of `[offset, offset + count)` when a durability call can go straight to
    /// libpmem: the heap on persistent memory (and writable, to store), the window open,
    /// the range not empty and below the size. Otherwise nil, and the call takes its
    /// checked path, which throws or does nothing. The fast paths (`flush`, `persist`,
    /// `memcpyPersist`) are the checks and one libpmem call inlined through the
    /// unretained device: no closure, no call of DaxDevice, no reference counting.
    @inline(__always)
    private func pmemAddress(_ offset: UInt64, _ count: UInt64, storing: Bool) -> UnsafeMutableRawPointer? {
        let pmem = device._withUnsafeGuaranteedRef { $0.persistence == .pmem && (!storing || $0.mode == .readWrite) }
        guard pmem, count > 0, isOpen else { return nil }
        let size = self.size
        guard offset <= size, count <= size - offset else { return nil }
        return base + Int(offset)
    }

    /// Runs a call on the unretained device (see ``device``), its error as a HeapError.
    private func onDevice<R>(_ call: (MappedDevice) throws(DeviceError) -> R) throws(HeapError) -> R {
        let result = device._withUnsafeGuaranteedRef { device in Result { () throws(DeviceError) in try call(device) } }
        switch result {
        case .success(let value): return value
        case .failure(let error): throw HeapError(error)
        }
    }

    // MARK: - References and addresses

    /// The address in this window of `reference`, which must point into this arena, at
    /// most at its current size.
    public func address(of reference: PersistentReference) throws(HeapError) -> UnsafeMutableRawPointer {
        guard reference.arenaID == arena.id else { throw .foreignReference(arena: arena.name, referenceArenaID: reference.arenaID) }
        try checkOpen()
        let size = self.size
        guard reference.offset <= size else { throw .outOfRange(arena: arena.name, offset: reference.offset, count: 0, arenaSize: size) }
        return base + Int(reference.offset)
    }

    /// The persistent reference of an address in this window (from ``base`` to
    /// `base + size`, inclusive), to be stored and resolved in another process.
    public func reference(at address: UnsafeRawPointer) throws(HeapError) -> PersistentReference {
        try checkOpen()
        let start = UInt(bitPattern: base)
        let at = UInt(bitPattern: address)
        let size = self.size
        guard at >= start, UInt64(at - start) <= size else {
            throw .addressOutsideWindow(arena: arena.name, address: at, windowSize: size)
        }
        return PersistentReference(arenaID: arena.id, offset: UInt64(at - start))
    }

    // MARK: - Internals

    /// The address of `[offset, offset + count)`, checked to lie below the current size;
    /// nil for an empty range.
    func locate<N: BinaryInteger>(_ offset: UInt64, _ count: N) throws(HeapError) -> UnsafeMutableRawPointer? {
        try checkOpen()
        let size = self.size
        guard count >= 0, offset <= size, UInt64(count) <= size - offset else {
            throw .outOfRange(arena: arena.name, offset: offset, count: count < 0 ? 0 : UInt64(count), arenaSize: size)
        }
        return count == 0 ? nil : base + Int(offset)
    }

    /// The aligned 8-byte word at `offset`. The base is 2 MiB aligned, so an offset
    /// aligned to 8 is an address aligned to 8.
    func word(_ offset: UInt64) throws(HeapError) -> UnsafeMutablePointer<Atomic<UInt64>> {
        guard offset & 7 == 0 else { throw .misalignedAccess(arena: arena.name, offset: offset) }
        return try locate(offset, 8)!.assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    /// A closed window's calls fail with `windowClosed`, or `heapClosed` once the heap is
    /// closed too (a heap closes only after its windows).
    func checkOpen() throws(HeapError) {
        guard isOpen else {
            throw arena.heap.isClosed ? .heapClosed(path: arena.heap.path) : .windowClosed(arena: arena.name)
        }
    }

    func checkWritable() throws(HeapError) {
        guard isWritable else { throw .readOnly(path: arena.heap.path) }
    }
}

extension Arena {
    /// Maps the arena as one contiguous range of addresses (see ``ArenaWindow``).
    ///
    /// - Parameter reservation: address space to reserve, a multiple of 2 MiB of at least
    ///   the arena's size: the most the arena can grow to while this window is open.
    ///   Default: the heap's usable size, so that any grow fits. Reserving costs address
    ///   space only (PROT_NONE, MAP_NORESERVE: no memory, no swap, no page tables).
    /// - Throws: ``HeapError/windowMisaligned(arena:arenaOffset:deviceOffset:length:alignment:)``
    ///   when the device's alignment is coarser than an extent (the offset API keeps
    ///   working), ``HeapError/invalidReservation(arena:reservation:arenaSize:)``, or an
    ///   mmap failure as ``HeapError/io(path:operation:errno:message:)``.
    public func mapWindow(reserving reservation: UInt64? = nil) throws(HeapError) -> ArenaWindow {
        ArenaWindow(arena: self, region: try heap.openWindow(arena: self, reserving: reservation))
    }

    /// How many windows are open onto this arena now.
    public var openWindowCount: Int { heap.openWindows(arena: id) }
}
