import CDaxHeap
import DaxHeap
import Logging

// The heap: create, open, close, and its sizes. Declared (and documented) in daxheap.h;
// `@c @implementation` makes the compiler check each signature against that declaration.

/// The logger for heaps opened from C: warnings and errors only (an open that repaired a
/// metadata copy, an update whose second copy failed), one line each on stderr. The
/// routine info lines ("created heap", "closed heap") would be noise in a C program.
let cLogger: Logger = {
    var logger = Logger(label: "daxheap") { label in StreamLogHandler.standardError(label: label) }
    logger.logLevel = .warning
    return logger
}()

@c @implementation
public func daxheap_create(_ path: UnsafePointer<CChar>?, _ size: UInt64, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    status { () throws(Failure) in
        let path = try Arguments.string(path, "path")
        let out = try Arguments.out(out, "out")
        let heap = try heapCall { () throws(HeapError) in
            try Heap.create(path: path, size: size == 0 ? nil : size, overwrite: false, logger: cLogger)
        }
        out.pointee = HeapHandle(heap).retainedPointer()
    }
}

@c @implementation
public func daxheap_open(_ path: UnsafePointer<CChar>?, _ flags: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    status { () throws(Failure) in
        let path = try Arguments.string(path, "path")
        let out = try Arguments.out(out, "out")
        guard flags & ~DAXHEAP_READ_ONLY == 0 else {
            throw Failure(DAXHEAP_EINVAL, "unknown flags 0x\(String(UInt32(bitPattern: flags), radix: 16)) for daxheap_open; pass 0 or DAXHEAP_READ_ONLY")
        }
        let mode: HeapMode = flags & DAXHEAP_READ_ONLY != 0 ? .readOnly : .readWrite
        let heap = try heapCall { () throws(HeapError) in try Heap.open(path: path, mode: mode, logger: cLogger) }
        out.pointee = HeapHandle(heap).retainedPointer()
    }
}

@c @implementation
public func daxheap_close(_ heap: OpaquePointer?) {
    guard let heap else { return }
    HeapHandle.release(heap)
}

@c @implementation
public func daxheap_available_size(_ heap: OpaquePointer?) -> UInt64 {
    guard let handle = handleOrRecord(heap) else { return 0 }
    return handle.heap.availableSize
}

@c @implementation
public func daxheap_usable_size(_ heap: OpaquePointer?) -> UInt64 {
    guard let handle = handleOrRecord(heap) else { return 0 }
    return handle.heap.usableSize
}

@c @implementation
public func daxheap_is_pmem(_ heap: OpaquePointer?) -> Int32 {
    guard let handle = handleOrRecord(heap) else { return DAXHEAP_EINVAL.rawValue }
    return handle.heap.persistence == .pmem ? 1 : 0
}

/// The handle for the functions that return a value rather than a status: nil for NULL,
/// with the message recorded.
func handleOrRecord(_ heap: OpaquePointer?) -> HeapHandle? {
    do throws(Failure) { return try Arguments.heap(heap) } catch {
        ThreadMessage.set(error.message)
        return nil
    }
}
