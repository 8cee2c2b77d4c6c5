import CDaxHeap
import DaxHeap

/// Checking what C hands in before any of it reaches the Swift API, which traps on what C
/// can pass and Swift cannot (a NULL pointer, bytes that are not UTF-8, a length past
/// `Int.max`). Each check fails with DAXHEAP_EINVAL or DAXHEAP_ERANGE and a message naming
/// the argument.
enum Arguments {
    /// A NUL-terminated UTF-8 string argument (`what` names it in the message).
    static func string(_ pointer: UnsafePointer<CChar>?, _ what: String) throws(Failure) -> String {
        guard let pointer else { throw Failure(DAXHEAP_EINVAL, "\(what) is NULL; pass a NUL-terminated UTF-8 string") }
        guard let string = String(validatingCString: pointer) else {
            throw Failure(DAXHEAP_EINVAL, "\(what) is not valid UTF-8; pass a NUL-terminated UTF-8 string")
        }
        return string
    }

    /// A heap handle argument.
    static func heap(_ pointer: OpaquePointer?) throws(Failure) -> HeapHandle {
        guard let pointer else { throw Failure(DAXHEAP_EINVAL, "the heap handle is NULL; pass one from daxheap_open or daxheap_create") }
        return HeapHandle.from(pointer)
    }

    /// A window handle argument.
    static func window(_ pointer: OpaquePointer?) throws(Failure) -> WindowHandle {
        WindowHandle.from(try windowPointer(pointer))
    }

    /// A window handle argument, as the pointer (for closing it).
    static func windowPointer(_ pointer: OpaquePointer?) throws(Failure) -> OpaquePointer {
        guard let pointer else { throw Failure(DAXHEAP_EINVAL, "the window handle is NULL; pass one from daxheap_window_open") }
        return pointer
    }

    /// An out-pointer argument (`what` names it).
    static func out<T>(_ pointer: UnsafeMutablePointer<T>?, _ what: String) throws(Failure) -> UnsafeMutablePointer<T> {
        guard let pointer else { throw Failure(DAXHEAP_EINVAL, "\(what) is NULL; pass the address of a variable to receive the result") }
        return pointer
    }

    /// `[offset, offset + length)` must not wrap around 2^64.
    static func range(offset: UInt64, length: UInt64) throws(Failure) {
        guard length <= UInt64.max - offset else {
            throw Failure(DAXHEAP_ERANGE, "offset \(offset) + length \(length) overflows 64 bits; pass a range inside the arena")
        }
    }

    /// A buffer of `length` bytes at `pointer`, for copying from: NULL only for length 0,
    /// and a length that fits in a Swift buffer (Int.max bytes).
    static func source(_ pointer: UnsafeRawPointer?, _ length: UInt64, _ what: String) throws(Failure) -> UnsafeRawBufferPointer {
        let count = try bufferCount(pointer, length, what)
        return UnsafeRawBufferPointer(start: count == 0 ? nil : pointer, count: count)
    }

    /// A buffer of `length` bytes at `pointer`, for copying into.
    static func destination(_ pointer: UnsafeMutableRawPointer?, _ length: UInt64, _ what: String) throws(Failure) -> UnsafeMutableRawBufferPointer {
        let count = try bufferCount(pointer.map { UnsafeRawPointer($0) }, length, what)
        return UnsafeMutableRawBufferPointer(start: count == 0 ? nil : pointer, count: count)
    }

    private static func bufferCount(_ pointer: UnsafeRawPointer?, _ length: UInt64, _ what: String) throws(Failure) -> Int {
        guard length <= UInt64(Int.max) else {
            throw Failure(DAXHEAP_ERANGE, "length \(length) is larger than any buffer (at most \(Int.max) bytes); copy less at a time")
        }
        guard pointer != nil || length == 0 else {
            throw Failure(DAXHEAP_EINVAL, "\(what) is NULL for a length of \(length) bytes; pass a buffer, or length 0")
        }
        return Int(length)
    }
}
