import CPMem2
#if canImport(Glibc)
import Glibc
#endif

/// A range of the device known to hold poisoned (unreadable) data.
public struct BadRange: Hashable, Sendable {
    public var offset: UInt64
    public var length: UInt64

    public init(offset: UInt64, length: UInt64) {
        self.offset = offset
        self.length = length
    }
}

extension MappedDevice {
    /// The device's known bad ranges, in bytes from the start of the device, merged and
    /// clipped to the device: from libpmem2's pmem2_badblock_* iterator (on device-dax it
    /// reads the region's badblocks list from sysfs; a regular file on tmpfs or a
    /// non-DAX filesystem has none), or `reported` in its place (tests: an emulated device
    /// has no bad blocks of its own).
    public func badRanges(reported: [BadRange]? = nil) throws(DeviceError) -> [BadRange] {
        var ranges: [BadRange]
        if let reported { ranges = reported } else { ranges = try libpmem2BadRanges() }
        ranges = ranges.compactMap { r in
            guard r.offset < size, r.length > 0 else { return nil }
            return BadRange(offset: r.offset, length: min(r.length, size - r.offset))
        }
        ranges.sort { $0.offset < $1.offset }
        var merged: [BadRange] = []
        for r in ranges {
            if let last = merged.last, r.offset <= last.offset + last.length {
                merged[merged.count - 1].length = max(last.offset + last.length, r.offset + r.length) - last.offset
            } else {
                merged.append(r)
            }
        }
        return merged
    }

    func libpmem2BadRanges() throws(DeviceError) -> [BadRange] {
        var source: OpaquePointer? = nil
        guard pmem2_source_from_fd(&source, fd) == 0 else {
            throw .badBlocksUnavailable(path: path, reason: String(cString: pmem2_errormsg()))
        }
        defer { pmem2_source_delete(&source) }
        var context: OpaquePointer? = nil
        guard pmem2_badblock_context_new(&context, source) == 0 else {
            throw .badBlocksUnavailable(path: path, reason: String(cString: pmem2_errormsg()))
        }
        defer { pmem2_badblock_context_delete(&context) }
        var result: [BadRange] = []
        var block = pmem2_badblock()
        while true {
            let rc = pmem2_badblock_next(context, &block)
            if rc == PMEM2_E_NO_BAD_BLOCK_FOUND { break }
            guard rc == 0 else {
                throw .badBlocksUnavailable(path: path, reason: String(cString: pmem2_errormsg()))
            }
            result.append(BadRange(offset: UInt64(block.offset), length: UInt64(block.length)))
        }
        return result
    }
}
