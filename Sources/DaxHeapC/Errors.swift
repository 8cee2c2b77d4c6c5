import CDaxHeap
import DaxHeap
import DaxObjects
#if canImport(Glibc)
import Glibc
#endif

/// A failed C call: its status code and the one-line message `daxheap_errmsg` returns.
struct Failure: Error {
    let status: daxheap_status
    let message: String

    init(_ status: daxheap_status, _ message: String) {
        self.status = status
        self.message = message
    }

    init(_ error: HeapError) {
        self.init(Failure.status(of: error), error.description)
    }

    /// The C status of each Swift error: one code per kind of failure (docs/C-API.md lists
    /// the mapping). Exhaustive on purpose: a new `HeapError` case must be mapped here.
    static func status(of error: HeapError) -> daxheap_status {
        switch error {
        case .misalignedSize, .invalidName, .misalignedAccess, .foreignArena, .invalidReservation, .foreignReference,
             .isDirectory, .unsupportedFileType, .notDeviceDax, .deviceTooSmall, .deviceSizeNotAligned, .deviceTooLarge,
             .sizeRequired, .sizeFixed, .sizeAboveHeap:
            DAXHEAP_EINVAL
        case .noSpace, .tableFull, .generationExhausted:
            DAXHEAP_ENOSPC
        case .nameTaken, .notEmpty:
            DAXHEAP_EEXIST
        case .unknownArena, .notFound:
            DAXHEAP_ENOENT
        case .inUse, .arenaMapped, .windowsOpen, .closeInsideReadSection, .arenasPastNewEnd:
            DAXHEAP_EBUSY
        case .corruptMetadata, .deviceLayoutChanged:
            DAXHEAP_ECORRUPT
        case .notADaxHeapDevice, .unsupportedVersion:
            DAXHEAP_ENOTHEAP
        case .sizeMismatch, .deviceLargerThanHeap:
            DAXHEAP_ESIZE
        case .outOfRange, .crossesExtent, .windowReservationExceeded, .addressOutsideWindow:
            DAXHEAP_ERANGE
        case .readOnly:
            DAXHEAP_EROFS
        case .io, .mediaError, .metadataWriteFailed, .sysfs, .badBlocksUnavailable, .mappingMisaligned,
             .resizeNeedsBothCopies:
            DAXHEAP_EIO
        case .heapClosed, .windowClosed:
            DAXHEAP_ECLOSED
        case .windowMisaligned:
            DAXHEAP_ENOTSUP
        }
    }
}

extension Failure {
    init(_ error: ObjectError) {
        self.init(Failure.status(of: error), error.description)
    }

    /// The C status of each object-layer error (docs/C-API.md lists the mapping).
    /// Exhaustive on purpose: a new `ObjectError` case must be mapped here.
    static func status(of error: ObjectError) -> daxheap_status {
        switch error {
        case .heap(let error):
            status(of: error)
        case .notAnObjectHeap:
            DAXHEAP_ENOTHEAP
        case .corrupt:
            DAXHEAP_ECORRUPT
        case .arenaIDTooLarge:
            DAXHEAP_ENOTSUP
        case .outOfSpace, .rootsFull, .transactionTooLarge:
            DAXHEAP_ENOSPC
        case .invalidSize, .invalidAlignment, .invalidSlot, .notAnObject, .foreignReference, .invalidRootName:
            DAXHEAP_EINVAL
        case .slotOccupied:
            DAXHEAP_EEXIST
        // `misuse` as C can reach it: the object heap open already in this process, contexts
        // still open at its close, a slot changed by another thread during a free. (The
        // other misuses, bad lanes or log size, a reservation of another context, are
        // checked by the C layer first and reported as DAXHEAP_EINVAL.)
        case .noFreeLane, .misuse:
            DAXHEAP_EBUSY
        }
    }
}

/// Runs `body`, turning an ObjectError into a Failure.
func objectCall<R>(_ body: () throws(ObjectError) -> R) throws(Failure) -> R {
    do { return try body() } catch { throw Failure(error) }
}

/// Runs the body of an exported function: DAXHEAP_OK when it returns, or the failure's
/// status with its message recorded for this thread.
func status(_ body: () throws(Failure) -> Void) -> Int32 {
    do {
        try body()
        return DAXHEAP_OK.rawValue
    } catch {
        ThreadMessage.set(error.message)
        return error.status.rawValue
    }
}

/// A list call with a C visitor (daxheap_arena_list, daxheap_objects_roots): `entries`
/// finds what to list, or fails as `status` would; then `visit` is called with each
/// (name, value), no lock held, until it returns nonzero. Returns that value as it is,
/// 0 once every entry is visited, or the failure's status.
func walk(_ entries: () throws(Failure) -> [(name: String, value: UInt64)],
          _ visit: (UnsafePointer<CChar>, UInt64) -> Int32) -> Int32 {
    var listed: [(name: String, value: UInt64)] = []
    let found = status { () throws(Failure) in listed = try entries() }
    guard found == DAXHEAP_OK.rawValue else { return found }
    for entry in listed {
        let code = entry.name.withCString { visit($0, entry.value) }
        if code != 0 { return code }
    }
    return 0
}

/// Runs `body`, turning a HeapError into a Failure.
func heapCall<R>(_ body: () throws(HeapError) -> R) throws(Failure) -> R {
    do { return try body() } catch { throw Failure(error) }
}

/// The calling thread's last error message, for `daxheap_errmsg`: a C string in memory of
/// its own per thread (a pthread key), replaced by the thread's next failure and freed
/// when the thread exits.
enum ThreadMessage {
    /// Created once, on first use (Swift initializes globals once, thread-safely).
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        let result = pthread_key_create(&key) { message in free(message) }
        precondition(result == 0, "pthread_key_create failed: \(result)")
        return key
    }()

    /// What `daxheap_errmsg` returns on a thread that has had no error.
    private static let empty: StaticString = ""

    static func set(_ message: String) {
        let copy = strdup(message)
        free(pthread_getspecific(key))
        pthread_setspecific(key, copy)
    }

    static var current: UnsafePointer<CChar> {
        if let message = pthread_getspecific(key) {
            return UnsafePointer(message.assumingMemoryBound(to: CChar.self))
        }
        return UnsafeRawPointer(empty.utf8Start).assumingMemoryBound(to: CChar.self)
    }
}

@c @implementation
public func daxheap_errmsg() -> UnsafePointer<CChar>? {
    ThreadMessage.current
}
