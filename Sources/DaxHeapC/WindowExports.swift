import CDaxHeap
import DaxHeap

// Windows: an arena mapped as one contiguous range of addresses. Declared (and documented)
// in daxheap.h; `@c @implementation` checks each signature against it.

@c @implementation
public func daxheap_window_open(_ heap: OpaquePointer?, _ arena: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    status { () throws(Failure) in try openWindow(heap, arena, reservation: nil, out) }
}

@c @implementation
public func daxheap_window_open_reserving(
    _ heap: OpaquePointer?, _ arena: UnsafePointer<CChar>?, _ reservation: UInt64, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    status { () throws(Failure) in try openWindow(heap, arena, reservation: reservation, out) }
}

/// Both window opens: the window counted in its heap handle before it is mapped, so that
/// a concurrent close of the handle's last other window does not close the heap under it.
private func openWindow(
    _ heap: OpaquePointer?, _ arena: UnsafePointer<CChar>?, reservation: UInt64?, _ out: UnsafeMutablePointer<OpaquePointer?>?
) throws(Failure) {
    let handle = try Arguments.heap(heap)
    let name = try Arguments.string(arena, "the arena name")
    let out = try Arguments.out(out, "out")
    handle.windowOpening()
    let window: ArenaWindow
    do {
        window = try heapCall { () throws(HeapError) in try handle.heap.arena(named: name).mapWindow(reserving: reservation) }
    } catch {
        try? handle.windowClosed()
        throw error
    }
    out.pointee = WindowHandle(window: window, owner: handle).retainedPointer()
}

@c @implementation
public func daxheap_window_base(_ window: OpaquePointer?) -> UnsafeMutableRawPointer? {
    guard let window else { return nil }
    return WindowHandle.from(window).window.base
}

@c @implementation
public func daxheap_window_size(_ window: OpaquePointer?) -> UInt64 {
    guard let window else { return 0 }
    return WindowHandle.from(window).window.size
}

@c @implementation
public func daxheap_window_flush(_ window: OpaquePointer?, _ offset: UInt64, _ length: UInt64) -> Int32 {
    status { () throws(Failure) in
        let handle = try Arguments.window(window)
        try Arguments.range(offset: offset, length: length)
        try heapCall { () throws(HeapError) in try handle.window.flush(at: offset, count: length) }
    }
}

@c @implementation
public func daxheap_window_drain(_ window: OpaquePointer?) {
    guard let window else { return }
    WindowHandle.from(window).window.drain()
}

@c @implementation
public func daxheap_window_persist(_ window: OpaquePointer?, _ offset: UInt64, _ length: UInt64) -> Int32 {
    status { () throws(Failure) in
        let handle = try Arguments.window(window)
        try Arguments.range(offset: offset, length: length)
        try heapCall { () throws(HeapError) in try handle.window.persist(at: offset, count: length) }
    }
}

@c @implementation
public func daxheap_window_memcpy_persist(
    _ window: OpaquePointer?, _ offset: UInt64, _ src: UnsafeRawPointer?, _ length: UInt64
) -> Int32 {
    copyIn(window, offset, src, length) { (window, source) throws(HeapError) in try window.memcpyPersist(at: offset, from: source) }
}

@c @implementation
public func daxheap_window_memcpy_nodrain(
    _ window: OpaquePointer?, _ offset: UInt64, _ src: UnsafeRawPointer?, _ length: UInt64
) -> Int32 {
    copyIn(window, offset, src, length) { (window, source) throws(HeapError) in try window.memcpyNoDrain(at: offset, from: source) }
}

/// The checks of the window copies (handle, source, range), then `copy`.
private func copyIn(
    _ window: OpaquePointer?, _ offset: UInt64, _ src: UnsafeRawPointer?, _ length: UInt64,
    _ copy: (ArenaWindow, UnsafeRawBufferPointer) throws(HeapError) -> Void
) -> Int32 {
    status { () throws(Failure) in
        let handle = try Arguments.window(window)
        let source = try Arguments.source(src, length, "src")
        try Arguments.range(offset: offset, length: length)
        try heapCall { () throws(HeapError) in try copy(handle.window, source) }
    }
}

@c @implementation
public func daxheap_window_close(_ window: OpaquePointer?) -> Int32 {
    status { () throws(Failure) in
        try WindowHandle.release(Arguments.windowPointer(window))
    }
}
