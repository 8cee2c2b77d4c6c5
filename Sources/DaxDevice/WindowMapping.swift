// Windows: further mappings of the device, one extent at a time, into address space
// reserved once, so that an arena's discontiguous extents appear contiguous to the
// application (what the kernel gives a sub-divided device-dax's mmap). The whole-device
// mapping stays as it is; a window maps the same memory again.

import CPMem
#if canImport(Glibc)
import Glibc
#endif

extension MappedDevice {
    /// The alignment a window's base gets: max(2 MiB, the device's alignment).
    public var windowAlignment: UInt64 { max(Self.granularity, alignment) }

    /// Reserves `length` bytes of address space at an address aligned to
    /// ``windowAlignment``: PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE, which costs
    /// address space only (no memory, no swap). Release it with ``releaseWindow(_:length:)``.
    public func reserveWindow(length: UInt64) throws(DeviceError) -> UnsafeMutableRawPointer {
        let alignment = UInt(windowAlignment)
        // No address space is that large; say so as mmap would, rather than overflow Int.
        guard length <= UInt64(Int.max) - UInt64(alignment) else { throw .system(path: path, SystemCallError("mmap", errno: ENOMEM)) }
        let span = Int(length) + Int(alignment)
        let reservation = try Syscall.mmap(nil, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
            .mapError { DeviceError.system(path: path, $0) }.get()
        // Over-reserve by one alignment, keep the aligned part, give back both ends.
        let start = UInt(bitPattern: reservation)
        let aligned = (start + alignment - 1) / alignment * alignment
        if aligned > start { Syscall.munmap(reservation, Int(aligned - start)) }
        let tail = aligned + UInt(length)
        let end = start + UInt(span)
        if end > tail { Syscall.munmap(UnsafeMutableRawPointer(bitPattern: tail)!, Int(end - tail)) }
        return UnsafeMutableRawPointer(bitPattern: aligned)!
    }

    /// Maps `length` device bytes from `deviceOffset` at `address`, inside a reservation,
    /// MAP_SHARED|MAP_FIXED from the device's descriptor; PROT_READ on a read-only device.
    /// device-dax refuses private mappings and needs address, length and offset to be
    /// multiples of its alignment (the caller checks them, to say which extent is at fault).
    public func mapIntoWindow(at address: UnsafeMutableRawPointer, deviceOffset: UInt64, length: UInt64) throws(DeviceError) {
        precondition(deviceOffset <= size && length <= size - deviceOffset)
        let protection = mode == .readWrite ? PROT_READ | PROT_WRITE : PROT_READ
        _ = try Syscall.mmap(address, Int(length), protection, MAP_SHARED | MAP_FIXED, fd, Int(deviceOffset))
            .mapError { DeviceError.system(path: path, $0) }.get()
        observer?.windowMapped(at: address, deviceOffset: deviceOffset, length: length)
    }

    /// Gives `[address, address + length)` of a window back to its reservation: maps
    /// PROT_NONE anonymous memory over it again (MAP_FIXED replaces the device mapping).
    public func unmapFromWindow(at address: UnsafeMutableRawPointer, length: UInt64) throws(DeviceError) {
        observer?.windowUnmapped(at: address, length: length)
        _ = try Syscall.mmap(address, Int(length), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0)
            .mapError { DeviceError.system(path: path, $0) }.get()
    }

    /// Unmaps a whole window: its reservation and every extent mapped into it.
    public func releaseWindow(_ base: UnsafeMutableRawPointer, length: UInt64) {
        observer?.windowUnmapped(at: base, length: length)
        Syscall.munmap(base, Int(length))
    }
}
