import CDaxHeap
import DaxHeap

// Arenas by name: provisioning, and copying reads and writes. Declared (and documented)
// in daxheap.h; `@c @implementation` checks each signature against it.

@c @implementation
public func daxheap_arena_create(_ heap: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ size: UInt64) -> Int32 {
    status { () throws(Failure) in
        let handle = try Arguments.heap(heap)
        let name = try Arguments.string(name, "the arena name")
        _ = try heapCall { () throws(HeapError) in try handle.heap.createArena(named: name, size: size) }
    }
}

@c @implementation
public func daxheap_arena_resize(_ heap: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ size: UInt64) -> Int32 {
    status { () throws(Failure) in
        let handle = try Arguments.heap(heap)
        let name = try Arguments.string(name, "the arena name")
        try heapCall { () throws(HeapError) in try handle.heap.resizeArena(named: name, to: size) }
    }
}

@c @implementation
public func daxheap_arena_destroy(_ heap: OpaquePointer?, _ name: UnsafePointer<CChar>?) -> Int32 {
    status { () throws(Failure) in
        let handle = try Arguments.heap(heap)
        let name = try Arguments.string(name, "the arena name")
        try heapCall { () throws(HeapError) in try handle.heap.destroyArena(named: name) }
    }
}

@c @implementation
public func daxheap_arena_size(_ heap: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ size: UnsafeMutablePointer<UInt64>?) -> Int32 {
    status { () throws(Failure) in
        let handle = try Arguments.heap(heap)
        let name = try Arguments.string(name, "the arena name")
        let out = try Arguments.out(size, "size")
        let arena = try heapCall { () throws(HeapError) in try handle.heap.arena(named: name) }
        out.pointee = arena.size
    }
}

@c @implementation
public func daxheap_write(
    _ heap: OpaquePointer?, _ arena: UnsafePointer<CChar>?, _ offset: UInt64, _ src: UnsafeRawPointer?, _ length: UInt64
) -> Int32 {
    status { () throws(Failure) in
        let handle = try Arguments.heap(heap)
        let name = try Arguments.string(arena, "the arena name")
        let source = try Arguments.source(src, length, "src")
        try Arguments.range(offset: offset, length: length)
        try heapCall { () throws(HeapError) in
            try handle.heap.arena(named: name).memcpyPersist(at: offset, from: source)
        }
    }
}

@c @implementation
public func daxheap_read(
    _ heap: OpaquePointer?, _ arena: UnsafePointer<CChar>?, _ offset: UInt64, _ dst: UnsafeMutableRawPointer?, _ length: UInt64
) -> Int32 {
    status { () throws(Failure) in
        let handle = try Arguments.heap(heap)
        let name = try Arguments.string(arena, "the arena name")
        let destination = try Arguments.destination(dst, length, "dst")
        try Arguments.range(offset: offset, length: length)
        try heapCall { () throws(HeapError) in
            try handle.heap.arena(named: name).guardedRead(into: destination, at: offset).get()
        }
    }
}

@c @implementation
public func daxheap_arena_list(_ heap: OpaquePointer?, _ visit: daxheap_arena_visitor?, _ arg: UnsafeMutableRawPointer?) -> Int32 {
    walk({ () throws(Failure) in
        let handle = try Arguments.heap(heap)
        guard visit != nil else { throw Failure(DAXHEAP_EINVAL, "the arena visitor is NULL; pass a function that returns 0 to go on") }
        // A snapshot: the visitor may create, resize or destroy arenas.
        return handle.heap.arenas.map { ($0.name, $0.size) }
    }) { name, size in visit!(arg, name, size) }
}
