import DaxHeap
import Synchronization

/// A heap of persistent objects inside one arena: allocation, roots, atomic publication
/// and transactions, rebuilt after a crash by following references from the roots.
///
/// The arena is reached through a window, so an object of any size is contiguous and its
/// address (``address(of:)``) is valid while the object heap is open. Allocation and
/// freeing go through an ``ObjectContext``, one per thread; the object heap itself is
/// shared. The layout on the media and the crash argument are in docs/OBJECTS.md.
///
/// ```swift
/// let objects = try ObjectHeap.create(in: heap, arena: "objects", size: 64 << 20)
/// let head = try objects.root(named: "list")
/// let context = try objects.makeContext()
/// let node = try context.allocate(32, kind: .references, into: head)   // one fence
/// ```
public final class ObjectHeap: Sendable {
    /// The arena the objects live in.
    public let arena: Arena
    /// The window the objects are reached through (kept open until ``close()``).
    public let window: ArenaWindow
    /// What the open found and did (see ``RecoveryReport``).
    public var recovery: RecoveryReport { recoveryReport.withLock { $0 } }
    private let recoveryReport = Locked(RecoveryReport())

    /// The window's base: fixed while the window is open (nonisolated(unsafe): a constant
    /// address, never written after init).
    nonisolated(unsafe) let base: UnsafeMutableRawPointer
    /// The arena's id, the high 16 bits of every reference into this heap.
    let tag: UInt64
    let geometry: Geometry
    let tables: VolatileTables
    let chunks: Locked<ChunkPool>
    /// One pool per (size class, object kind): index `2 * class + kind`.
    let pools: [Locked<ClassPool>]
    let lanes: Locked<[Bool]>
    let rootsLock = Locked(())

    /// The fixed numbers of an object heap, from its header.
    struct Geometry: Sendable {
        var laneCount: Int
        var laneLogBytes: Int
        var chunkCapacity: UInt64
        var metadataChunks: UInt64
        var chunkTableOffset: UInt64 { Layout.chunkTableOffset(laneCount: laneCount, laneLogBytes: laneLogBytes) }
        var firstDataOffset: UInt64 { metadataChunks * Layout.chunkSize }
    }

    /// Makes an object heap in a new arena `name` of `size` bytes (a multiple of 2 MiB; it
    /// grows when objects need more).
    ///
    /// - Parameters:
    ///   - lanes: how many contexts may be open at once (each has its own transaction log).
    ///   - logBytes: each lane's log, the most one transaction can write (a multiple of 64).
    public static func create(
        in heap: Heap, arena name: String, size: UInt64, lanes: Int = 64, logBytes: Int = 16 << 10
    ) throws(ObjectError) -> ObjectHeap {
        guard (1...1024).contains(lanes), logBytes >= 1024, logBytes <= 1 << 20, logBytes % 64 == 0 else {
            throw .misuse("lanes must be 1...1024 and logBytes a multiple of 64 from 1024 to 1 MiB")
        }
        let capacity = heap.usableSize / Layout.chunkSize
        let metadata = Layout.metadataChunks(capacity: capacity, laneCount: lanes, laneLogBytes: logBytes)
        let arenaSize = max(size, (metadata + 1) * Layout.chunkSize)
        let arena = try wrap { () throws(HeapError) in try heap.createArena(named: name, size: arenaSize) }
        do throws(ObjectError) {
            guard arena.id < 1 << 16 else { throw ObjectError.arenaIDTooLarge(arena: name, id: arena.id) }
            let window = try wrap { () throws(HeapError) in try arena.mapWindow() }
            let header = HeaderFields(laneCount: lanes, laneLogBytes: logBytes, chunkCapacity: capacity,
                                      metadataChunks: metadata, arenaID: arena.id)
            try header.write(to: window)
            return try ObjectHeap(arena: arena, window: window, header: header)
        } catch {
            try? heap.destroyArena(named: name)
            throw error
        }
    }

    /// Opens the object heap in arena `name`, replaying a transaction that committed but
    /// was not applied, and finding the live objects from the roots (``recovery``).
    public static func open(in heap: Heap, arena name: String) throws(ObjectError) -> ObjectHeap {
        let arena = try wrap { () throws(HeapError) in try heap.arena(named: name) }
        guard arena.id < 1 << 16 else { throw .arenaIDTooLarge(arena: name, id: arena.id) }
        let window = try wrap { () throws(HeapError) in try arena.mapWindow() }
        let header = try HeaderFields.read(from: window, arena: arena)
        return try ObjectHeap(arena: arena, window: window, header: header)
    }

    /// The object heaps open in this process, by heap (the `Heap` object: a heap file can be
    /// open read-write only once) and arena: a second ObjectHeap over the same arena would
    /// keep its own free lists and hand out the same blocks.
    private static let open = Locked(Set<String>())
    private var openKey: String { Self.key(arena) }
    private static func key(_ arena: Arena) -> String { "\(ObjectIdentifier(arena.heap))/\(arena.id)" }

    private convenience init(arena: Arena, window: ArenaWindow, header: HeaderFields) throws(ObjectError) {
        let key = Self.key(arena)
        guard Self.open.withLock({ $0.insert(key).inserted }) else {
            throw .misuse("the object heap in arena \"\(arena.name)\" is open already in this process; share that ObjectHeap")
        }
        do throws(ObjectError) {
            try self.init(registered: arena, window: window, header: header)
        } catch {
            Self.open.withLock { _ = $0.remove(key) }
            throw error
        }
    }

    private init(registered arena: Arena, window: ArenaWindow, header: HeaderFields) throws(ObjectError) {
        self.arena = arena
        self.window = window
        base = window.base
        tag = arena.id
        geometry = Geometry(laneCount: header.laneCount, laneLogBytes: header.laneLogBytes,
                            chunkCapacity: header.chunkCapacity, metadataChunks: header.metadataChunks)
        tables = try VolatileTables(capacity: Int(header.chunkCapacity))
        chunks = Locked(ChunkPool(capacity: Int(header.chunkCapacity)))
        pools = (0..<(2 * SizeClasses.count)).map { _ in Locked(ClassPool()) }
        lanes = Locked(Array(repeating: false, count: header.laneCount))
        var report = RecoveryReport()
        try Recovery(heap: self).run(&report)
        recoveryReport.withLock { $0 = report }
    }

    /// Unmaps the window; addresses of this object heap must not be used after. Refused
    /// while contexts are open (close them first): they would write to unmapped memory.
    public func close() throws(ObjectError) {
        let open = lanes.withLock { taken in taken.count { $0 } }
        guard open == 0 else { throw .misuse("\(open) contexts of object heap \"\(arena.name)\" are open; close them first") }
        if window.isOpen { Self.open.withLock { _ = $0.remove(openKey) } }
        window.close()
    }

    deinit {
        if window.isOpen { Self.open.withLock { _ = $0.remove(openKey) } }
    }

    /// A context for allocating, freeing and transactions from one thread at a time; it
    /// holds a lane until it is closed (or released).
    public func makeContext() throws(ObjectError) -> ObjectContext {
        guard window.isWritable else { throw .heap(.readOnly(path: arena.heap.path)) }
        let lane = lanes.withLock { taken -> Int? in
            guard let free = taken.firstIndex(of: false) else { return nil }
            taken[free] = true
            return free
        }
        guard let lane else { throw .noFreeLane(lanes: geometry.laneCount) }
        return ObjectContext(heap: self, lane: lane)
    }

    func releaseLane(_ lane: Int) { lanes.withLock { $0[lane] = false } }

    // MARK: - Objects

    /// The reference held by `slot`, checked to be null or a live object of this heap.
    public func load(_ slot: ObjectSlot) throws(ObjectError) -> ObjectReference {
        _ = try checkSlot(slot)
        let reference = ObjectReference(rawValue: word(slot.offset).pointee.load(ordering: .acquiring))
        if !reference.isNull { _ = try object(reference) }
        return reference
    }

    /// The address of `reference`'s first byte in ``window``: valid while the object is
    /// live and the heap open.
    public func address(of reference: ObjectReference) throws(ObjectError) -> UnsafeMutableRawPointer {
        base + Int(try object(reference).start)
    }

    /// The object's usable size: its block (at least what was asked for).
    public func size(of reference: ObjectReference) throws(ObjectError) -> UInt64 {
        try object(reference).size
    }

    /// The object's kind.
    public func kind(of reference: ObjectReference) throws(ObjectError) -> ObjectKind {
        tables.chunkInfo(try object(reference).chunk).objectKind
    }

    // MARK: - Internals

    @inline(__always)
    func word(_ offset: UInt64) -> UnsafeMutablePointer<Atomic<UInt64>> {
        (base + Int(offset)).assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    /// Flushes and drains through the window (so that the heap's persistence, and a
    /// power-loss simulator, see it).
    @inline(__always)
    func persist(_ offset: UInt64, _ count: UInt64) throws(ObjectError) {
        try flush(offset, count)
        window.drain()
    }

    @inline(__always)
    func flush(_ offset: UInt64, _ count: UInt64) throws(ObjectError) {
        do { try window.flush(at: offset, count: count) } catch { throw .heap(error) }
    }

    static func wrap<R>(_ body: () throws(HeapError) -> R) throws(ObjectError) -> R {
        do { return try body() } catch { throw .heap(error) }
    }
}
