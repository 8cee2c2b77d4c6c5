import DaxHeap

/// A Swift object behind an opaque C pointer: the pointer C holds is
/// `Unmanaged.passRetained(handle).toOpaque()`, owning one reference.
protocol CHandle: AnyObject {}

extension CHandle {
    /// A new C handle owning one reference.
    func retainedPointer() -> OpaquePointer {
        OpaquePointer(Unmanaged.passRetained(self).toOpaque())
    }

    /// The handle behind a C pointer (not retained: the pointer's reference keeps it).
    static func from(_ pointer: OpaquePointer) -> Self {
        unmanaged(pointer).takeUnretainedValue()
    }

    /// The C pointer's reference, to release it.
    static func unmanaged(_ pointer: OpaquePointer) -> Unmanaged<Self> {
        Unmanaged<Self>.fromOpaque(UnsafeRawPointer(pointer))
    }
}

/// What a `daxheap *` points to: a retained Swift object owning a ``Heap``.
///
/// The pointer C holds is `Unmanaged.passRetained(handle).toOpaque()`: the C side owns one
/// reference, dropped by `daxheap_close`. Each open window owns another (through its
/// ``WindowHandle``), so a heap released with windows still open stays mapped until the
/// last of them is closed, and is closed then.
final class HeapHandle: CHandle, Sendable {
    let heap: Heap
    private let state = Locked(State())

    private struct State {
        /// Windows opened through this handle and not yet closed.
        var openWindows = 0
        /// `daxheap_close` has run: close the heap when the last window closes.
        var released = false
    }

    init(_ heap: Heap) { self.heap = heap }

    /// `daxheap_close`: closes the heap now if no window of this handle is open, else
    /// when the last one closes; then drops the C side's reference.
    static func release(_ pointer: OpaquePointer) {
        let unmanaged = HeapHandle.unmanaged(pointer)
        let handle = unmanaged.takeUnretainedValue()
        let closeNow = handle.state.withLock { s in
            s.released = true
            return s.openWindows == 0
        }
        if closeNow { try? handle.closeHeap() }  // the message says why it could not
        unmanaged.release()
    }

    /// Counts a window about to be mapped; `windowClosed` undoes it.
    func windowOpening() {
        state.withLock { $0.openWindows += 1 }
    }

    /// A window of this handle was closed (or failed to open): closes the heap if the C
    /// side released it and this was its last window.
    func windowClosed() throws(Failure) {
        let closeNow = state.withLock { s in
            s.openWindows -= 1
            return s.released && s.openWindows == 0
        }
        if closeNow { try closeHeap() }
    }

    /// Heap.close(): unmaps and unlocks now. It fails only while windows opened from Swift
    /// (a heap handed over by `daxheapHandle(adopting:)`) are still open; the heap then
    /// closes when its last reference goes, and the message records why.
    private func closeHeap() throws(Failure) {
        do { try heap.close() } catch {
            let failure = Failure(error)
            ThreadMessage.set(failure.message)
            throw failure
        }
    }
}

/// What a `daxheap_window *` points to: a retained Swift object owning an ``ArenaWindow``
/// and a reference to the ``HeapHandle`` it came from.
final class WindowHandle: CHandle, Sendable {
    let window: ArenaWindow
    let owner: HeapHandle

    init(window: ArenaWindow, owner: HeapHandle) {
        self.window = window
        self.owner = owner
    }

    /// `daxheap_window_close`: unmaps, frees the handle, and closes the heap if the C side
    /// released it and this was its last window.
    static func release(_ pointer: OpaquePointer) throws(Failure) {
        let unmanaged = WindowHandle.unmanaged(pointer)
        let handle = unmanaged.takeUnretainedValue()
        handle.window.close()
        unmanaged.release()
        try handle.owner.windowClosed()
    }
}

/// Wraps a heap opened in Swift into a C `daxheap *`, for Swift code that hands a heap to
/// C, such as a test that opens one with a ``PowerLossSimulator`` and drives C code over it
/// (not exported from libdaxheap.so, not in daxheap.h).
///
/// The handle owns a reference to `heap` and behaves as one from `daxheap_open`:
/// `daxheap_close` closes the heap (``Heap/close()``) once no window of the handle is open.
/// The caller may keep its own references; calls through the handle after the heap was
/// closed from Swift fail with DAXHEAP_ECLOSED.
package func daxheapHandle(adopting heap: Heap) -> OpaquePointer {
    HeapHandle(heap).retainedPointer()
}
