import DaxHeap
import Synchronization

/// One thread's way into an ``ObjectHeap``: a cache of free blocks per size class (so
/// that threads do not contend) and a lane, whose log holds its transactions.
///
/// Not `Sendable`: use a context from one thread at a time (make one per thread). Close
/// it when done (or let it go): its cached blocks return to the heap and its lane is free
/// for another context.
///
/// What each call costs in fences (ordering points), which is what it costs on
/// persistent memory:
/// - ``allocate(_:kind:alignment:into:)``, ``free(from:)`` of a `.data` object: one.
/// - ``free(from:)`` of a `.references` object: two (it is zeroed durably after the slot).
/// - ``allocate(_:kind:alignment:into:initializingWith:)`` and ``publish(_:into:)``: two
///   (the contents are durable before the slot).
/// - ``transaction(_:)``: see ``Transaction``.
public final class ObjectContext {
    /// The object heap this context allocates from.
    public let heap: ObjectHeap
    let lane: Int
    static let cacheCapacity = 64
    /// Per pool (`ObjectHeap.poolIndex`), `cacheCapacity` offsets of claimed, free blocks.
    let cache: UnsafeMutablePointer<UInt64>
    let cached: UnsafeMutablePointer<Int>
    var log: RedoBuffer
    private(set) var isOpen = true

    init(heap: ObjectHeap, lane: Int) {
        self.heap = heap
        self.lane = lane
        let pools = 2 * SizeClasses.count
        cache = .allocate(capacity: pools * Self.cacheCapacity)
        cached = .allocate(capacity: pools)
        cached.initialize(repeating: 0, count: pools)
        log = RedoBuffer(capacity: heap.geometry.laneLogBytes)
    }

    deinit {
        close()
        cache.deallocate()
        cached.deallocate()
        log.deallocate()
    }

    /// Returns the cached blocks to the heap and frees the lane. Idempotent.
    public func close() {
        guard isOpen else { return }
        isOpen = false
        for pool in 0..<(2 * SizeClasses.count) where cached[pool] > 0 {
            heap.giveBack(pool / 2, ObjectKind(rawValue: UInt8(pool % 2))!, cache + pool * Self.cacheCapacity, count: cached[pool])
            cached[pool] = 0
        }
        heap.releaseLane(lane)
    }

    // MARK: - Allocate into a slot, free from a slot

    /// Allocates an object of at least `size` bytes and publishes it into `slot` (which
    /// must hold null): when this returns, object and slot are durable together; after a
    /// crash before, the slot is null and the object free. One fence.
    ///
    /// A `.references` object reads as zero; a `.data` object's bytes are unspecified.
    @discardableResult
    public func allocate(_ size: UInt64, kind: ObjectKind = .data, alignment: UInt64 = 16, into slot: ObjectSlot) throws(ObjectError) -> ObjectReference {
        let word = try heap.checkSlot(slot)
        let found = word.pointee.load(ordering: .relaxed)
        guard found == 0 else { throw .slotOccupied(offset: slot.offset, holding: ObjectReference(rawValue: found)) }
        let offset = try take(size, kind, alignment)
        return try publish(offset, size: size, kind: kind, into: word, slot: slot)
    }

    /// Allocates, lets `body` fill the object, makes it durable, then publishes it into
    /// `slot`: after a crash the slot is null or reaches the whole contents. Two fences.
    /// If `body` throws, the object is freed and the slot untouched.
    @discardableResult
    public func allocate(
        _ size: UInt64, kind: ObjectKind = .data, alignment: UInt64 = 16, into slot: ObjectSlot,
        initializingWith body: (UnsafeMutableRawBufferPointer) throws -> Void
    ) throws -> ObjectReference {
        let word = try heap.checkSlot(slot)
        let found = word.pointee.load(ordering: .relaxed)
        guard found == 0 else { throw ObjectError.slotOccupied(offset: slot.offset, holding: ObjectReference(rawValue: found)) }
        let offset = try take(size, kind, alignment)
        do {
            try body(UnsafeMutableRawBufferPointer(start: heap.base + Int(offset), count: Int(size)))
            try heap.persist(offset, size)
        } catch {
            try? release(offset, kind: kind, dirty: true)
            throw error
        }
        return try publish(offset, size: size, kind: kind, into: word, slot: slot)
    }

    /// Empties `slot` and frees the object it reached: when this returns, both are
    /// durable; after a crash before, the slot still reaches the object, intact.
    public func free(from slot: ObjectSlot) throws(ObjectError) {
        let word = try heap.checkSlot(slot)
        let raw = word.pointee.load(ordering: .acquiring)
        let reference = ObjectReference(rawValue: raw)
        let block = try heap.object(reference)
        guard word.pointee.compareExchange(expected: raw, desired: 0, ordering: .acquiringAndReleasing).exchanged else {
            throw .misuse("the slot at offset \(slot.offset) changed during free(from:): another thread writes it")
        }
        do {
            try heap.persist(slot.offset, 8)
        } catch {
            word.pointee.store(raw, ordering: .releasing)
            throw error
        }
        // Only now may the block be reused: no durable slot reaches it any more.
        guard heap.tables.clearLive(block.chunk, block.index) else { return }  // freed concurrently
        try release(block.start, kind: block.info.objectKind, dirty: true, block: block)
    }

    // MARK: - Reserve, publish, cancel

    /// Allocates an object that nothing reaches yet (pmemobj_reserve): fill it, allocate
    /// into its slots if it is of kind `.references`, then ``publish(_:into:)`` or
    /// ``cancel(_:)`` it. A reservation neither published nor cancelled before a crash is
    /// free again after it.
    public func reserve(_ size: UInt64, kind: ObjectKind = .data, alignment: UInt64 = 16) throws(ObjectError) -> Reservation {
        let offset = try take(size, kind, alignment)
        return Reservation(reference: ObjectReference(arenaTag: heap.tag, offset: offset), address: heap.base + Int(offset),
                           size: size, kind: kind, lane: lane)
    }

    /// Makes the reserved object's contents durable, then publishes it into `slot` (which
    /// must hold null). Two fences.
    public func publish(_ reservation: Reservation, into slot: ObjectSlot) throws(ObjectError) {
        let word = try heap.checkSlot(slot)
        let found = word.pointee.load(ordering: .relaxed)
        guard found == 0 else { throw .slotOccupied(offset: slot.offset, holding: ObjectReference(rawValue: found)) }
        let offset = reservation.reference.offset
        _ = try heap.object(reservation.reference)  // not cancelled
        try heap.persist(offset, reservation.size)
        _ = try store(reservation.reference, into: word, slot: slot)
    }

    /// Frees a reserved object.
    public func cancel(_ reservation: Reservation) {
        let offset = reservation.reference.offset
        guard let block = heap.block(at: offset), heap.tables.clearLive(block.chunk, block.index) else { return }
        try? release(offset, kind: reservation.kind, dirty: true, block: block)
    }

    // MARK: - Internals

    /// Claims a block for `size` bytes and marks it live.
    @inline(__always)
    func take(_ size: UInt64, _ kind: ObjectKind, _ alignment: UInt64) throws(ObjectError) -> UInt64 {
        guard isOpen else { throw .misuse("the context is closed") }
        guard size > 0 else { throw .invalidSize(size) }
        guard alignment > 0, alignment & (alignment - 1) == 0, alignment <= SizeClasses.maximumAlignment else {
            throw .invalidAlignment(alignment)
        }
        guard let sizeClass = SizeClasses.index(size: size, alignment: alignment) else {
            return try heap.allocateLarge(size, kind)
        }
        let pool = ObjectHeap.poolIndex(sizeClass, kind)
        let slots = cache + pool * Self.cacheCapacity
        if cached[pool] == 0 {
            cached[pool] = try heap.refill(sizeClass, kind, lane: lane, into: slots, want: Self.cacheCapacity / 2)
        }
        cached[pool] -= 1
        let offset = slots[cached[pool]]
        let index = Int((offset & (Layout.chunkSize - 1)) / SizeClasses.sizes[sizeClass])
        _ = heap.tables.setLive(Int(offset >> Layout.chunkShift), index)
        return offset
    }

    /// Stores the new object's reference into the slot (which was null) and persists it.
    @inline(__always)
    private func publish(_ offset: UInt64, size: UInt64, kind: ObjectKind, into word: UnsafeMutablePointer<Atomic<UInt64>>,
                         slot: ObjectSlot) throws(ObjectError) -> ObjectReference {
        let reference = ObjectReference(arenaTag: heap.tag, offset: offset)
        do {
            return try store(reference, into: word, slot: slot)
        } catch {
            if let block = heap.block(at: offset), heap.tables.clearLive(block.chunk, block.index) {
                try? release(offset, kind: kind, dirty: false, block: block)
            }
            throw error
        }
    }

    @inline(__always)
    private func store(_ reference: ObjectReference, into word: UnsafeMutablePointer<Atomic<UInt64>>, slot: ObjectSlot) throws(ObjectError) -> ObjectReference {
        guard word.pointee.compareExchange(expected: 0, desired: reference.rawValue, ordering: .acquiringAndReleasing).exchanged else {
            throw .slotOccupied(offset: slot.offset, holding: ObjectReference(rawValue: word.pointee.load(ordering: .relaxed)))
        }
        do {
            try heap.persist(slot.offset, 8)
        } catch {
            word.pointee.store(0, ordering: .releasing)
            throw error
        }
        return reference
    }

    /// Returns a block that is no longer live to this context's cache (or a large object's
    /// chunks to the heap). A `.references` block that may have been written is zeroed
    /// durably first, so that it reads as zero when allocated again.
    func release(_ offset: UInt64, kind: ObjectKind, dirty: Bool, block known: Block? = nil) throws(ObjectError) {
        guard let block = known ?? heap.block(at: offset) else { return }
        if kind == .references, dirty {
            (heap.base + Int(block.start)).initializeMemory(as: UInt8.self, repeating: 0, count: Int(block.size))
            try heap.persist(block.start, block.size)
        }
        if block.info.kind == .largeHead {
            try heap.giveBackChunks(block.chunk, Int(block.info.run))
            return
        }
        let pool = ObjectHeap.poolIndex(block.info.sizeClass, kind)
        let slots = cache + pool * Self.cacheCapacity
        if cached[pool] == Self.cacheCapacity {
            let half = Self.cacheCapacity / 2
            heap.giveBack(block.info.sizeClass, kind, slots + half, count: half)
            cached[pool] = half
        }
        slots[cached[pool]] = block.start
        cached[pool] += 1
    }
}

/// An object allocated but reachable from nothing yet (``ObjectContext/reserve(_:kind:alignment:)``).
/// Publish or cancel it once; dropped, it stays allocated until the heap is next opened.
/// Publishing a cancelled reservation is an error (``ObjectError/notAnObject(_:reason:)``).
public struct Reservation: Sendable {
    /// The object's reference (what ``ObjectContext/publish(_:into:)`` will store).
    public let reference: ObjectReference
    /// The object's first byte, to fill before publishing (nonisolated(unsafe): an
    /// address in the object heap's window, as ``ObjectHeap/address(of:)`` returns).
    public nonisolated(unsafe) let address: UnsafeMutableRawPointer
    /// The size asked for.
    public let size: UInt64
    public let kind: ObjectKind
    let lane: Int
}
