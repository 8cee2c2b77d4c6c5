import ArgumentParser
import DaxHeap
import Logging

/// Opening heaps the way every command does, and turning failures into exit statuses.
enum HeapAccess {
    /// The library logs through swift-log; the tool reports for itself (`error:` and
    /// `note:` lines), so the library's own messages are dropped.
    static var quietLogger: Logger {
        var logger = Logger(label: "daxheap")
        logger.logLevel = .critical
        return logger
    }

    /// Opens read-only: a shared lock, a read-only mapping, never a write.
    static func openReadOnly(_ path: String) throws(HeapError) -> Heap {
        try Heap.open(path: path, mode: .readOnly, logger: quietLogger)
    }

    /// Opens read-write. Opening repairs a bad or stale metadata copy; each repair is
    /// reported as a `note:` line on standard error.
    static func openReadWrite(_ path: String) throws(HeapError) -> Heap {
        let heap = try Heap.open(path: path, mode: .readWrite, logger: quietLogger)
        for line in heap.repairs { Console.note(line) }
        return heap
    }

    /// Rewrites every bad or stale metadata copy (on a device larger than its heap too),
    /// reporting each repair as a `note:` line; returns them.
    static func repair(_ path: String, acceptNewDeviceLayout: Bool = false) throws(HeapError) -> [String] {
        let repairs = try Heap.repair(path: path, acceptNewDeviceLayout: acceptNewDeviceLayout, logger: quietLogger)
        for line in repairs { Console.note(line) }
        return repairs
    }

    /// Grows (`size` nil) or shrinks the heap; what the open repaired first and what went
    /// wrong without undoing the resize are `note:` lines.
    static func resize(_ path: String, to size: UInt64?) throws(HeapError) -> HeapResize {
        let result = if let size {
            try Heap.shrink(path: path, to: size, logger: quietLogger)
        } else {
            try Heap.grow(path: path, logger: quietLogger)
        }
        for line in result.repairs + result.warnings { Console.note(line) }
        return result
    }

    /// Creates a heap.
    static func create(path: String, size: UInt64?, overwrite: Bool) throws -> Heap {
        try Heap.create(path: path, size: size, overwrite: overwrite, logger: quietLogger)
    }
}

/// Runs a command body: a library or tool failure becomes one `error:` line on standard
/// error and exit status 1; an `ExitCode` passes through.
func reportingFailures(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as HeapError {
        Console.error(Formatting.describe(error))
        throw ExitCode.failure
    } catch let error as ToolFailure {
        Console.error(error.description)
        throw ExitCode.failure
    } catch let error as ExitCode {
        throw error
    } catch {
        Console.error(String(describing: error))
        throw ExitCode.failure
    }
}

/// Drops the library's log messages below .critical in case any logger is made without
/// the tool's (the tool passes its own to every call; this is the safety net).
func bootstrapQuietLogging() {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = .critical
        return handler
    }
}
