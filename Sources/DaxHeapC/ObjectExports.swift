import CDaxHeap
import DaxHeap
import DaxObjects

// Object heaps: create, open, close, roots, references, statistics. Declared (and
// documented) in daxheap.h; `@c @implementation` checks each signature against it.

@c @implementation
public func daxheap_objects_create(
    _ heap: OpaquePointer?, _ arena: UnsafePointer<CChar>?, _ size: UInt64, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    status { () throws(Failure) in try createObjects(heap, arena, size, lanes: 64, logBytes: 16 << 10, out) }
}

@c @implementation
public func daxheap_objects_create_lanes(
    _ heap: OpaquePointer?, _ arena: UnsafePointer<CChar>?, _ size: UInt64, _ lanes: UInt32, _ log_bytes: UInt32,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    status { () throws(Failure) in
        guard (1...1024).contains(lanes) else {
            throw Failure(DAXHEAP_EINVAL, "lanes \(lanes) is out of range; pass 1 to 1024 (how many contexts may be open at once)")
        }
        guard log_bytes >= 1024, log_bytes <= 1 << 20, log_bytes % 64 == 0 else {
            throw Failure(DAXHEAP_EINVAL, "log_bytes \(log_bytes) is out of range; pass a multiple of 64 from 1024 to 1048576")
        }
        try createObjects(heap, arena, size, lanes: Int(lanes), logBytes: Int(log_bytes), out)
    }
}

private func createObjects(
    _ heap: OpaquePointer?, _ arena: UnsafePointer<CChar>?, _ size: UInt64, lanes: Int, logBytes: Int,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) throws(Failure) {
    let handle = try Arguments.heap(heap)
    let name = try Arguments.string(arena, "the arena name")
    let out = try Arguments.out(out, "out")
    out.pointee = try ObjectsHandle.open(handle) { () throws(ObjectError) in
        try ObjectHeap.create(in: handle.heap, arena: name, size: size, lanes: lanes, logBytes: logBytes)
    }
}

@c @implementation
public func daxheap_objects_open(_ heap: OpaquePointer?, _ arena: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    status { () throws(Failure) in
        let handle = try Arguments.heap(heap)
        let name = try Arguments.string(arena, "the arena name")
        let out = try Arguments.out(out, "out")
        out.pointee = try ObjectsHandle.open(handle) { () throws(ObjectError) in try ObjectHeap.open(in: handle.heap, arena: name) }
    }
}

@c @implementation
public func daxheap_objects_close(_ objects: OpaquePointer?) -> Int32 {
    status { () throws(Failure) in
        guard let objects else {
            throw Failure(DAXHEAP_EINVAL, "the object heap handle is NULL; pass one from daxheap_objects_open or daxheap_objects_create")
        }
        try ObjectsHandle.release(objects)
    }
}

@c @implementation
public func daxheap_objects_root(_ objects: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<UInt64>?) -> Int32 {
    status { () throws(Failure) in
        let handle = try Arguments.objects(objects)
        let name = try Arguments.string(name, "the root name")
        let out = try Arguments.out(out, "out")
        out.pointee = try objectCall { () throws(ObjectError) in try handle.objects.root(named: name) }.offset
    }
}

@c @implementation
public func daxheap_objects_find_root(_ objects: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<UInt64>?) -> Int32 {
    status { () throws(Failure) in
        let handle = try Arguments.objects(objects)
        let name = try Arguments.string(name, "the root name")
        let out = try Arguments.out(out, "out")
        guard let slot = handle.objects.findRoot(named: name) else {
            throw Failure(DAXHEAP_ENOENT, "object heap \"\(handle.objects.arena.name)\" has no root \"\(name)\"; make it with daxheap_objects_root")
        }
        out.pointee = slot.offset
    }
}

@c @implementation
public func daxheap_objects_roots(_ objects: OpaquePointer?, _ visit: daxheap_root_visitor?, _ arg: UnsafeMutableRawPointer?) -> Int32 {
    walk({ () throws(Failure) in
        let handle = try Arguments.objects(objects)
        guard visit != nil else { throw Failure(DAXHEAP_EINVAL, "the root visitor is NULL; pass a function that returns 0 to go on") }
        // Roots are never removed, so each name listed has its slot; the visitor may make roots.
        return handle.objects.rootNames.compactMap { name in handle.objects.findRoot(named: name).map { (name, $0.offset) } }
    }) { name, slot in visit!(arg, name, slot) }
}

@c @implementation
public func daxheap_objects_load(_ objects: OpaquePointer?, _ slot: UInt64, _ out: UnsafeMutablePointer<UInt64>?) -> Int32 {
    status { () throws(Failure) in
        let handle = try Arguments.objects(objects)
        let out = try Arguments.out(out, "out")
        out.pointee = try objectCall { () throws(ObjectError) in try handle.objects.load(ObjectSlot(offset: slot)) }.rawValue
    }
}

@c @implementation
public func daxheap_objects_address(_ objects: OpaquePointer?, _ ref: UInt64, _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 {
    status { () throws(Failure) in
        let handle = try Arguments.objects(objects)
        let out = try Arguments.out(out, "out")
        out.pointee = try objectCall { () throws(ObjectError) in try handle.objects.address(of: ObjectReference(rawValue: ref)) }
    }
}

@c @implementation
public func daxheap_objects_size(_ objects: OpaquePointer?, _ ref: UInt64, _ out: UnsafeMutablePointer<UInt64>?) -> Int32 {
    status { () throws(Failure) in
        let handle = try Arguments.objects(objects)
        let out = try Arguments.out(out, "out")
        out.pointee = try objectCall { () throws(ObjectError) in try handle.objects.size(of: ObjectReference(rawValue: ref)) }
    }
}

@c @implementation
public func daxheap_objects_kind(_ objects: OpaquePointer?, _ ref: UInt64, _ out: UnsafeMutablePointer<Int32>?) -> Int32 {
    status { () throws(Failure) in
        let handle = try Arguments.objects(objects)
        let out = try Arguments.out(out, "out")
        out.pointee = Int32(try objectCall { () throws(ObjectError) in try handle.objects.kind(of: ObjectReference(rawValue: ref)) }.rawValue)
    }
}

@c @implementation
public func daxheap_objects_offset_of(_ objects: OpaquePointer?, _ address: UnsafeRawPointer?, _ out: UnsafeMutablePointer<UInt64>?) -> Int32 {
    status { () throws(Failure) in
        let handle = try Arguments.objects(objects)
        let out = try Arguments.out(out, "out")
        guard let address else { throw Failure(DAXHEAP_EINVAL, "the address is NULL; pass an address inside the object heap") }
        out.pointee = try offset(of: address, length: 0, in: handle)
    }
}

/// The arena offset of `[address, address + length)`, which must lie inside the object
/// heap's window.
private func offset(of address: UnsafeRawPointer, length: UInt64, in handle: ObjectsHandle) throws(Failure) -> UInt64 {
    let window = handle.objects.window
    let base = UInt(bitPattern: window.base)
    let at = UInt(bitPattern: address)
    let size = window.size
    guard at >= base, UInt64(at - base) < size, length <= size - UInt64(at - base) else {
        throw Failure(DAXHEAP_ERANGE, "address 0x\(String(at, radix: 16)) (\(length) bytes) is not inside object heap "
            + "\"\(handle.objects.arena.name)\" (0x\(String(base, radix: 16)), \(size) bytes); pass an address from daxheap_objects_address")
    }
    return UInt64(at - base)
}

@c @implementation
public func daxheap_field(_ object: UInt64, _ field: UInt64) -> UInt64 {
    ObjectSlot(in: ObjectReference(rawValue: object), at: field).offset
}

@c @implementation
public func daxheap_objects_persist(_ objects: OpaquePointer?, _ address: UnsafeRawPointer?, _ length: UInt64) -> Int32 {
    status { () throws(Failure) in
        let handle = try Arguments.objects(objects)
        guard length > 0 else { return }
        guard let address else {
            throw Failure(DAXHEAP_EINVAL, "the address is NULL for a length of \(length) bytes; pass an address inside the object heap")
        }
        let at = try offset(of: address, length: length, in: handle)
        try heapCall { () throws(HeapError) in try handle.objects.window.persist(at: at, count: length) }
    }
}

@c @implementation
public func daxheap_objects_stats(_ objects: OpaquePointer?, _ out: UnsafeMutablePointer<daxheap_objects_stats>?) -> Int32 {
    status { () throws(Failure) in
        let handle = try Arguments.objects(objects)
        let out = try Arguments.out(out, "out")
        let stats = handle.objects.statistics()
        out.pointee = daxheap_objects_stats(
            objects: UInt64(stats.objects), allocated_bytes: stats.allocatedBytes, free_bytes: stats.freeBytes,
            largest_free_block: stats.largestFreeBlock, arena_size: stats.arenaSize)
    }
}

@c @implementation
public func daxheap_objects_class_stats(_ objects: OpaquePointer?, _ out: UnsafeMutablePointer<daxheap_class_stats>?, _ capacity: Int,
                                        _ count: UnsafeMutablePointer<Int>?) -> Int32 {
    status { () throws(Failure) in
        let handle = try Arguments.objects(objects)
        let count = try Arguments.out(count, "count")
        guard capacity >= 0 else { throw Failure(DAXHEAP_EINVAL, "a capacity of \(UInt(bitPattern: capacity)) classes; there are at most \(DAXHEAP_CLASS_COUNT)") }
        guard capacity == 0 || out != nil else {
            throw Failure(DAXHEAP_EINVAL, "out is NULL with a capacity of \(capacity); pass capacity 0 to learn the count")
        }
        let classes = handle.objects.statistics().classes
        for (i, entry) in classes.prefix(capacity).enumerated() {
            out![i] = daxheap_class_stats(block_size: entry.blockSize, chunks: UInt64(entry.chunks), objects: UInt64(entry.objects))
        }
        count.pointee = classes.count
    }
}

@c @implementation
public func daxheap_objects_recovery(_ objects: OpaquePointer?, _ out: UnsafeMutablePointer<daxheap_objects_recovery>?) -> Int32 {
    status { () throws(Failure) in
        let handle = try Arguments.objects(objects)
        let out = try Arguments.out(out, "out")
        let report = handle.objects.recovery
        out.pointee = daxheap_objects_recovery(
            live_objects: UInt64(report.liveObjects), live_bytes: report.liveBytes,
            transactions_replayed: UInt64(report.transactionsReplayed), torn_logs_discarded: UInt64(report.tornLogsDiscarded),
            logs_pending_read_only: UInt64(report.logsPendingReadOnly), chunks_freed: UInt64(report.chunksFreed),
            milliseconds: report.milliseconds)
    }
}
