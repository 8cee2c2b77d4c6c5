import DaxHeap

/// An object a transaction allocated: where, what kind, and which bytes of it the
/// transaction wrote (flushed at commit, before the slot that publishes it).
struct CreatedObject {
    var offset: UInt64
    var kind: ObjectKind
    var dirtyStart: UInt64 = .max
    var dirtyEnd: UInt64 = 0
}

/// A transaction's redo log in memory, laid out as the lane's log on the media
/// (Layout, "Lane logs"), plus the objects it allocated and the slots it frees.
struct RedoBuffer {
    static let maximumObjects = 256
    let bytes: UnsafeMutableRawPointer
    let capacity: Int
    /// Bytes of entries after the log header.
    var used = 0
    var entries = 0
    /// New objects, written in place (unreachable until commit).
    let created: UnsafeMutablePointer<CreatedObject>
    var createdCount = 0
    /// Objects to free after the commit (offset).
    let freed: UnsafeMutablePointer<UInt64>
    var freedCount = 0

    init(capacity: Int) {
        self.capacity = capacity
        bytes = .allocate(byteCount: capacity, alignment: 64)
        created = .allocate(capacity: Self.maximumObjects)
        freed = .allocate(capacity: Self.maximumObjects)
    }

    func deallocate() {
        bytes.deallocate()
        created.deallocate()
        freed.deallocate()
    }

    mutating func reset() { used = 0; entries = 0; createdCount = 0; freedCount = 0 }

    var entriesStart: UnsafeMutableRawPointer { bytes + Int(Layout.logEntriesOffset) }

    /// Appends an entry: `count` bytes from `source` for `target` (arena tag and offset).
    mutating func append(target: UInt64, _ source: UnsafeRawPointer, count: Int) throws(ObjectError) {
        let padded = (count + 7) & ~7
        let needed = Int(Layout.logEntriesOffset) + used + Int(Layout.entryBytesOffset) + padded
        guard needed <= capacity else { throw .transactionTooLarge(bytes: needed, capacity: capacity) }
        let entry = entriesStart + used
        entry.storeBytes(of: target, toByteOffset: Int(Layout.entryTargetOffset), as: UInt64.self)
        entry.storeBytes(of: UInt64(count), toByteOffset: Int(Layout.entryCountOffset), as: UInt64.self)
        let data = entry + Int(Layout.entryBytesOffset)
        data.copyMemory(from: source, byteCount: count)
        (data + count).initializeMemory(as: UInt8.self, repeating: 0, count: padded - count)
        used += Int(Layout.entryBytesOffset) + padded
        entries += 1
    }

    /// The only entry, when the log is one aligned 8-byte store: (target, value).
    var singleWord: (UInt64, UInt64)? {
        guard entries == 1, used == Int(Layout.entryBytesOffset) + 8 else { return nil }
        let target = entriesStart.load(fromByteOffset: Int(Layout.entryTargetOffset), as: UInt64.self)
        guard target & 7 == 0 else { return nil }
        return (target, entriesStart.load(fromByteOffset: Int(Layout.entryBytesOffset), as: UInt64.self))
    }
}

/// The writes, allocations and frees of one ``ObjectContext/transaction(_:)``, applied
/// together and durably when its closure returns, or not at all if it throws.
///
/// - **Writes** (``write(_:at:)``, ``store(_:at:)``, ``write(_:to:at:)`` for any arena
///   of the heap) go to a redo log and reach their targets at commit: until then, reads
///   of those bytes see them as they were. Writes into an object this transaction
///   allocated go straight to it (nothing reaches it before the commit).
/// - **Allocation and freeing** into and from slots: the object is usable at once; the
///   slot changes at commit; a freed object is reused only after the commit. A new
///   object's bytes written with ``write(_:at:)`` or ``store(_:at:)``, or by the body of
///   ``allocate(_:kind:alignment:into:initializingWith:)``, are durable before the slot
///   that publishes it; bytes stored through its address otherwise are the caller's to
///   persist (as after ``ObjectContext/allocate(_:kind:alignment:into:)``).
/// - **Cost**: nothing logged, or one logged 8-byte word (the common "allocate into a
///   slot", "free from a slot"): the single store is atomic, one fence. Otherwise three:
///   the log, the writes, the log's end. One more, first, if the transaction wrote into
///   its new objects: their bytes are durable before anything publishes them. A log
///   larger than the lane's (16 KiB by default) throws
///   ``ObjectError/transactionTooLarge(bytes:capacity:)``.
/// - **Isolation**: none, as in libpmemobj. Transactions of different threads that
///   touch the same bytes must be serialized by the application (a lock around both).
public struct Transaction: ~Copyable {
    let context: ObjectContext

    /// Writes `bytes` at `offset` of the object heap's arena (inside a live object, or a
    /// root's reference word).
    public mutating func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(ObjectError) {
        guard !bytes.isEmpty else { return }
        let heap = context.heap
        if let block = heap.block(at: offset), let created = context.created(block.start) {
            let end = offset + UInt64(bytes.count)
            guard end <= block.start + block.size else {
                throw .invalidSlot(offset: offset, reason: "the write passes the end of its object")
            }
            (heap.base + Int(offset)).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            created.pointee.dirtyStart = min(created.pointee.dirtyStart, offset)
            created.pointee.dirtyEnd = max(created.pointee.dirtyEnd, end)
            return
        }
        try heap.checkWritable(offset, UInt64(bytes.count))
        try context.log.append(target: heap.tag << ObjectReference.offsetBits | offset, bytes.baseAddress!, count: bytes.count)
    }

    /// Stores the 8-byte `value` at `offset` (a multiple of 8) of the object heap's arena.
    public mutating func store(_ value: UInt64, at offset: UInt64) throws(ObjectError) {
        guard offset & 7 == 0 else { throw .invalidSlot(offset: offset, reason: "not a multiple of 8") }
        var value = value
        try withUnsafeBytes(of: &value) { raw throws(ObjectError) in try write(raw, at: offset) }
    }

    /// Writes `bytes` at `offset` of another arena of the same heap (a database's own
    /// pages, say), in the same atomic commit.
    public mutating func write(_ bytes: UnsafeRawBufferPointer, to arena: Arena, at offset: UInt64) throws(ObjectError) {
        guard arena.id != context.heap.tag else { return try write(bytes, at: offset) }
        guard arena.heap === context.heap.arena.heap else {
            throw .misuse("arena \"\(arena.name)\" is not of this object heap's heap")
        }
        guard arena.id < 1 << 16 else { throw .arenaIDTooLarge(arena: arena.name, id: arena.id) }
        guard offset <= arena.size, UInt64(bytes.count) <= arena.size - offset, offset < 1 << 48 else {
            throw .heap(.outOfRange(arena: arena.name, offset: offset, count: UInt64(bytes.count), arenaSize: arena.size))
        }
        guard !bytes.isEmpty else { return }
        try context.log.append(target: arena.id << ObjectReference.offsetBits | offset, bytes.baseAddress!, count: bytes.count)
    }

    /// Allocates an object and stores its reference into `slot` at commit.
    @discardableResult
    public mutating func allocate(_ size: UInt64, kind: ObjectKind = .data, alignment: UInt64 = 16,
                                  into slot: ObjectSlot) throws(ObjectError) -> ObjectReference {
        let heap = context.heap
        let word = try heap.checkSlot(slot)
        let found = word.pointee.load(ordering: .relaxed)
        guard found == 0 else { throw .slotOccupied(offset: slot.offset, holding: ObjectReference(rawValue: found)) }
        guard context.log.createdCount < RedoBuffer.maximumObjects else {
            throw .transactionTooLarge(bytes: RedoBuffer.maximumObjects, capacity: RedoBuffer.maximumObjects)
        }
        let offset = try context.take(size, kind, alignment)
        context.log.created[context.log.createdCount] = CreatedObject(offset: offset, kind: kind)
        context.log.createdCount += 1
        let reference = ObjectReference(arenaTag: heap.tag, offset: offset)
        try store(reference.rawValue, at: slot.offset)
        return reference
    }

    /// Allocates an object, lets `body` fill it (its bytes are durable before the slot),
    /// and stores its reference into `slot` at commit.
    @discardableResult
    public mutating func allocate(
        _ size: UInt64, kind: ObjectKind = .data, alignment: UInt64 = 16, into slot: ObjectSlot,
        initializingWith body: (UnsafeMutableRawBufferPointer) throws -> Void
    ) throws -> ObjectReference {
        let reference = try allocate(size, kind: kind, alignment: alignment, into: slot)
        try body(UnsafeMutableRawBufferPointer(start: context.heap.base + Int(reference.offset), count: Int(size)))
        let created = context.created(reference.offset)!
        created.pointee.dirtyStart = reference.offset
        created.pointee.dirtyEnd = reference.offset + size
        return reference
    }

    /// Makes a reservation part of this transaction: its bytes are durable before the
    /// commit's stores, so storing its reference (``store(_:at:)``) publishes it whole. If
    /// the transaction aborts, the object is freed. Store its reference somewhere in this
    /// transaction: an object nothing reaches stays allocated until the heap is next opened.
    @discardableResult
    public mutating func publish(_ reservation: Reservation) throws(ObjectError) -> ObjectReference {
        guard reservation.lane == context.lane else { throw .misuse("a reservation is published by the context that made it") }
        _ = try context.heap.object(reservation.reference)  // not cancelled
        guard context.log.createdCount < RedoBuffer.maximumObjects else {
            throw .transactionTooLarge(bytes: RedoBuffer.maximumObjects, capacity: RedoBuffer.maximumObjects)
        }
        let offset = reservation.reference.offset
        context.log.created[context.log.createdCount] = CreatedObject(
            offset: offset, kind: reservation.kind, dirtyStart: offset, dirtyEnd: offset + reservation.size)
        context.log.createdCount += 1
        return reservation.reference
    }

    /// Empties `slot` at commit and frees the object it reaches after the commit.
    public mutating func free(from slot: ObjectSlot) throws(ObjectError) {
        let heap = context.heap
        let word = try heap.checkSlot(slot)
        let reference = ObjectReference(rawValue: word.pointee.load(ordering: .acquiring))
        let block = try heap.object(reference)
        guard context.log.freedCount < RedoBuffer.maximumObjects else {
            throw .transactionTooLarge(bytes: RedoBuffer.maximumObjects, capacity: RedoBuffer.maximumObjects)
        }
        for i in 0..<context.log.freedCount where context.log.freed[i] == block.start {
            throw .notAnObject(reference, reason: "this transaction frees it already")
        }
        try store(0, at: slot.offset)
        context.log.freed[context.log.freedCount] = block.start
        context.log.freedCount += 1
    }
}

extension ObjectContext {
    /// Runs `body` as one transaction (see ``Transaction``): when this returns, everything
    /// it did is durable; if `body` throws (or the commit fails), none of it happened
    /// and the error is rethrown. Not reentrant.
    public func transaction<R>(_ body: (inout Transaction) throws -> R) throws -> R {
        guard isOpen else { throw ObjectError.misuse("the context is closed") }
        log.reset()
        var transaction = Transaction(context: self)
        let result: R
        do {
            result = try body(&transaction)
            try commit()
        } catch {
            abort()
            throw error
        }
        return result
    }

    /// The object this transaction allocated at `offset`, if any.
    func created(_ offset: UInt64) -> UnsafeMutablePointer<CreatedObject>? {
        for i in 0..<log.createdCount where log.created[i].offset == offset { return log.created + i }
        return nil
    }

    private func abort() {
        for i in 0..<log.createdCount {
            let created = log.created[i]
            guard let block = heap.block(at: created.offset), heap.tables.clearLive(block.chunk, block.index) else { continue }
            try? release(created.offset, kind: created.kind, dirty: true, block: block)
        }
        log.reset()
    }

    private func commit() throws(ObjectError) {
        var written = false
        for i in 0..<log.createdCount where log.created[i].dirtyEnd > log.created[i].dirtyStart {
            try heap.flush(log.created[i].dirtyStart, log.created[i].dirtyEnd - log.created[i].dirtyStart)
            written = true
        }
        // New objects' bytes are durable before whatever publishes them: the slot's store,
        // or a log that open would apply (its fence alone would not order the two).
        if written { heap.window.drain() }
        if let (target, value) = log.singleWord, target >> ObjectReference.offsetBits == heap.tag {
            let offset = target & ObjectReference.offsetMask
            heap.word(offset).pointee.store(value, ordering: .releasing)
            try heap.persist(offset, 8)
        } else if log.entries > 0 {
            try heap.commitLog(lane: lane, log)
        }
        for i in 0..<log.freedCount {
            let offset = log.freed[i]
            guard let block = heap.block(at: offset), heap.tables.clearLive(block.chunk, block.index) else { continue }
            try release(offset, kind: block.info.objectKind, dirty: true, block: block)
        }
        log.reset()
    }
}
