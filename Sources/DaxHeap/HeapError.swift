import DaxArenas
import DaxDevice
import DaxMetadata

/// Everything that can go wrong with a heap, each case saying what is wrong; the
/// ``description`` is one line that also says what would help.
///
/// What a call that throws leaves behind:
///
/// - **Provisioning** (`createArena`, `resizeArena`, `destroyArena`): the arena table as
///   it was, in memory and on the media, and every arena's bytes. The only metadata copy a
///   failed update can have reached is the one it writes first, never the last good one;
///   the current table is written back over it under a new generation (should that fail
///   too and the failed write have reached the media after all, a reopen may find the
///   update applied, as after a crash; docs/FORMAT.md, "Failed writes"). An update whose
///   second copy fails does not throw: it stands in the first copy (logged as an error).
/// - **Data writes** (`write`, `memcpyPersist`, `memsetPersist`, a view's `store`,
///   `memcpyNoDrain` and `memcpyPersist`): the read-only mode, the whole range and the
///   alignment are checked before the first byte is written, so those errors write
///   nothing. The one error possible after that, in calls that persist, is a failed
///   msync on a file that is not persistent memory (say EIO from its file system) in one
///   extent's piece of the range: the pieces before it are written and durable, that
///   piece is written but not known durable, the rest is untouched. `flush`, `persist`
///   and `prefault` stop the same way, at the piece that failed. A media error or a page a file no longer backs, met by a
///   plain store or copy, is no error but SIGBUS, as for any mapping (only `guardedRead`
///   turns it into ``mediaError(path:deviceOffset:location:)``).
/// - **Windows** (``Arena/mapWindow(reserving:)``): a window that cannot be opened leaves no
///   mapping behind. A grow refused because of a window, or failing for any reason with
///   windows open, leaves the windows as they were (the new range mapped, then unmapped).
///   A shrink or destroy of a mapped arena is refused before anything changes.
/// - **Closing** (``Heap/close()``): a refused close leaves the heap open and unchanged.
/// - **Scoped access** (`withUnsafeMutableBytes`, `withMutableBytes`): the range is checked
///   before `body` runs; what `body` stored before it threw stays stored.
public enum HeapError: Error, Equatable, Sendable, CustomStringConvertible {
    // Provisioning
    case noSpace(requested: UInt64, available: UInt64)
    case nameTaken(String)
    case unknownArena(String)
    case misalignedSize(UInt64)
    case invalidName(String, reason: String)
    case tableFull(arenas: Int, extents: Int)
    // Data plane
    case outOfRange(arena: String, offset: UInt64, count: UInt64, arenaSize: UInt64)
    case crossesExtent(arena: String, offset: UInt64, count: UInt64, contiguous: UInt64)
    case readOnly(path: String)
    case misalignedAccess(arena: String, offset: UInt64)
    case foreignArena(arena: String, heap: String)
    // Windows (``ArenaWindow``)
    /// A shrink or destroy was refused: the arena has open windows (the kernel's -EBUSY).
    case arenaMapped(arena: String, windows: Int)
    /// A grow was refused: it would pass the address space an open window reserved.
    case windowReservationExceeded(arena: String, size: UInt64, reservation: UInt64)
    /// A window was asked with a reservation that is not a positive multiple of 2 MiB of
    /// at least the arena's size.
    case invalidReservation(arena: String, reservation: UInt64, arenaSize: UInt64)
    /// The device's alignment is coarser than these arena bytes allow: device-dax maps only
    /// whole aligned ranges (e.g. 1 GiB alignment and a 2 MiB extent).
    case windowMisaligned(arena: String, arenaOffset: UInt64, deviceOffset: UInt64, length: UInt64, alignment: UInt64)
    /// A call on a window after ``ArenaWindow/close()``.
    case windowClosed(arena: String)
    /// A reference into another arena than the window's.
    case foreignReference(arena: String, referenceArenaID: UInt64)
    /// An address below the window's base or past its current size.
    case addressOutsideWindow(arena: String, address: UInt, windowSize: UInt64)
    // Closing (``Heap/close()``)
    /// A call on a heap, or on one of its arenas, after ``Heap/close()``.
    case heapClosed(path: String)
    /// ``Heap/close()`` was refused: windows onto these arenas are open (one name per window).
    case windowsOpen(path: String, arenas: [String])
    /// ``Heap/close()`` was refused: it was called inside a read section (a view, an access
    /// closure, ``Heap/withReadSection(_:)``), which it would wait for.
    case closeInsideReadSection(path: String)
    // Device and metadata
    case notFound(path: String)
    case isDirectory(path: String)
    case unsupportedFileType(path: String, kind: String)
    case notDeviceDax(path: String, reason: String)
    case deviceTooSmall(path: String, size: UInt64)
    case deviceSizeNotAligned(path: String, size: UInt64)
    case deviceTooLarge(path: String, size: UInt64)
    case sizeRequired(path: String)
    case sizeFixed(path: String, deviceSize: UInt64, requested: UInt64)
    case notEmpty(path: String, what: String)
    case notADaxHeapDevice(path: String)
    case unsupportedVersion(path: String, version: UInt32)
    case corruptMetadata(path: String, primary: String, secondary: String)
    /// The device is smaller than the heap its metadata records: it was cut short.
    case sizeMismatch(path: String, recorded: UInt64, actual: UInt64)
    case generationExhausted(path: String)
    /// A metadata copy could not be written, so an update was refused with the arena table
    /// unchanged; `reason` says what failed ("media error at device offset 8192").
    case metadataWriteFailed(path: String, copy: String, reason: String)
    case inUse(path: String)
    case mappingMisaligned(path: String, address: UInt, alignment: UInt64)
    case sysfs(path: String, reason: String)
    case io(path: String, operation: String, errno: Int32, message: String)
    /// The device's list of bad blocks could not be read.
    case badBlocksUnavailable(path: String, reason: String)
    /// A media error (poison) was met; `location` says what lives there ("the secondary
    /// metadata copy", "arena \"a\" at offset 4096").
    case mediaError(path: String, deviceOffset: UInt64, location: String)
    // Device growth and shrink (``Heap/grow(path:logger:simulator:)``, ``Heap/shrink(path:to:logger:simulator:)``)
    /// A read-write open of a device larger than its heap (grown, or not yet cut after a
    /// shrink); it opens read-only.
    case deviceLargerThanHeap(path: String, heapSize: UInt64, deviceSize: UInt64)
    /// A shrink was refused: these arenas hold bytes at or past the new usable end.
    case arenasPastNewEnd(path: String, size: UInt64, arenas: [ArenaPastEnd])
    /// A shrink to a size above the heap's.
    case sizeAboveHeap(path: String, requested: UInt64, heapSize: UInt64)
    /// A grow or shrink was refused: a metadata copy is bad even after the open's repair
    /// (a media error), and moving the heap's end needs both.
    case resizeNeedsBothCopies(path: String, copy: String, detail: String)
    // Device identity (docs/FORMAT.md, "Device identity")
    /// The device-dax's layout is not the one the heap recorded (it was destroyed and
    /// re-created): a read-write open is refused unless it accepts the new layout.
    case deviceLayoutChanged(path: String, differences: [String])

    public var description: String {
        switch self {
        case .noSpace(let requested, let available):
            "not enough space: \(bytes(requested)) requested, \(bytes(available)) available; shrink or destroy an arena, or use a larger device"
        case .nameTaken(let name):
            "an arena named \(debugQuoted(name)) already exists; pick another name or destroy it first"
        case .unknownArena(let name):
            "no arena named \(debugQuoted(name)); list the arenas to see their names"
        case .misalignedSize(let size):
            "size \(size) is not a positive multiple of 2 MiB (2097152 bytes); round it up to the next 2 MiB"
        case .invalidName(let name, let reason):
            "invalid arena name \(debugQuoted(name)): \(reason); use 1 to 63 bytes of UTF-8 without control characters"
        case .tableFull(let arenas, let extents):
            "the arena table would not fit in its 2 MiB metadata block (\(arenas) arenas, \(extents) extents); destroy unused arenas or grow fragmented ones less often"
        case .outOfRange(let arena, let offset, let count, let size):
            "bytes \(offset)..<\(offset &+ count) are outside arena \(debugQuoted(arena)) of \(size) bytes; resize the arena or stay below its size"
        case .crossesExtent(let arena, let offset, let count, let contiguous):
            "bytes \(offset)..<\(offset &+ count) of arena \(debugQuoted(arena)) cross an extent boundary (\(contiguous) contiguous bytes from \(offset)); split the access or use the copying read/write"
        case .readOnly(let path):
            "\(printable(path)) is open read-only; open it read-write to change it"
        case .misalignedAccess(let arena, let offset):
            "offset \(offset) of arena \(debugQuoted(arena)) is not a multiple of 8; 8-byte loads and stores need an 8-byte aligned offset"
        case .foreignArena(let arena, let heap):
            "arena \(debugQuoted(arena)) belongs to another heap than \(printable(heap)); view arenas of one heap together"
        case .arenaMapped(let arena, let windows):
            "arena \(debugQuoted(arena)) is mapped by \(windows) window\(windows == 1 ? "" : "s"); close \(windows == 1 ? "it" : "them") first"
        case .windowReservationExceeded(let arena, let size, let reservation):
            "arena \(debugQuoted(arena)) cannot grow to \(bytes(size)): an open window reserved only \(bytes(reservation)) of address space for it; close the window, or map it with a larger reservation"
        case .invalidReservation(let arena, let reservation, let arenaSize):
            "a window reservation of \(reservation) bytes for arena \(debugQuoted(arena)) is not a positive multiple of 2 MiB of at least the arena's \(bytes(arenaSize)); ask for one that is, or leave it out to reserve the heap's usable size"
        case .windowMisaligned(let arena, let arenaOffset, let deviceOffset, let length, let alignment):
            "arena \(debugQuoted(arena)) cannot be mapped in a window: its \(bytes(length)) at arena offset \(arenaOffset) (device offset \(deviceOffset)) are not aligned to the device's \(bytes(alignment)) mapping alignment, which device-dax requires; use the arena's offset API, or a device with 2 MiB alignment"
        case .windowClosed(let arena):
            "the window onto arena \(debugQuoted(arena)) is closed; map a new one (Arena.mapWindow)"
        case .foreignReference(let arena, let id):
            "the reference points into arena #\(id), not into arena \(debugQuoted(arena)) of this window; resolve it (Heap.resolve) and use a window of that arena"
        case .addressOutsideWindow(let arena, let address, let windowSize):
            "address 0x\(String(address, radix: 16)) is not inside the window onto arena \(debugQuoted(arena)) (\(windowSize) bytes from its base); pass an address from this window"
        case .heapClosed(let path):
            "the heap on \(printable(path)) is closed; open it again (Heap.open) and take new handles from that heap"
        case .windowsOpen(let path, let arenas):
            "cannot close the heap on \(printable(path)): \(arenas.count) window\(arenas.count == 1 ? " is" : "s are") open onto \(Set(arenas).sorted().map(debugQuoted).joined(separator: ", ")); close \(arenas.count == 1 ? "it" : "them") first (ArenaWindow.close)"
        case .closeInsideReadSection(let path):
            "cannot close the heap on \(printable(path)) inside a view, access closure or read section, which the close would wait for; close it after the closure returns"
        case .notFound(let path):
            "\(printable(path)) does not exist; check the path"
        case .isDirectory(let path):
            "\(printable(path)) is a directory; give the path of a device-dax (/dev/daxX.Y) or of a file"
        case .unsupportedFileType(let path, let kind):
            "\(printable(path)) is \(kind); give the path of a device-dax (/dev/daxX.Y) or of a regular file"
        case .notDeviceDax(let path, let reason):
            "\(printable(path)) is a character device but not a device-dax (\(reason)); give /dev/daxX.Y or a regular file"
        case .deviceTooSmall(let path, let size):
            "\(printable(path)): a size of \(bytes(size)) is below the 6 MiB minimum (two 2 MiB metadata blocks and one data block); use a larger size"
        case .deviceSizeNotAligned(let path, let size):
            "\(printable(path)): a size of \(size) bytes is not a multiple of 2 MiB (2097152 bytes); use a size that is"
        case .deviceTooLarge(let path, let size):
            "\(printable(path)): a size of \(size) bytes is beyond what a file offset can address (8 EiB); use a smaller size"
        case .sizeRequired(let path):
            "\(printable(path)) does not exist yet and no size was given; give a size (a multiple of 2 MiB, at least 6 MiB)"
        case .sizeFixed(let path, let deviceSize, let requested):
            "\(printable(path)) is a device-dax of \(bytes(deviceSize)), its size cannot be set to \(bytes(requested)); leave the size out"
        case .notEmpty(let path, let what):
            "\(printable(path)) is \(what), not an empty device; refusing to overwrite it without force"
        case .notADaxHeapDevice(let path):
            "\(printable(path)) is not a DaxHeap device (neither metadata copy has the DaxHeap magic); create a heap on it first"
        case .unsupportedVersion(let path, let version):
            "\(printable(path)) holds DaxHeap format version \(version), which this build cannot read; use a matching DaxHeap release"
        case .corruptMetadata(let path, let primary, let secondary):
            "both metadata copies of \(printable(path)) are bad (primary: \(primary); secondary: \(secondary)); nothing was written: restore the device from a backup"
        case .sizeMismatch(let path, let recorded, let actual):
            "\(printable(path)) is \(actual) bytes but its heap was made for \(recorded) bytes (the device was cut short); restore its size to \(recorded) bytes"
        case .generationExhausted(let path):
            "the metadata generation counter of \(printable(path)) is exhausted; copy the data to a new heap"
        case .metadataWriteFailed(let path, let copy, let reason):
            "cannot write the \(copy) metadata copy of \(printable(path)) (\(reason)); the arena table is unchanged and changes are refused until that copy can be written, since the only good copy is never overwritten alone: clear the poison (e.g. ndctl clear-errors) or fix the device, then run `daxheap check --repair`"
        case .inUse(let path):
            "\(printable(path)) is in use by another process (it holds the heap's lock); close it there first"
        case .mappingMisaligned(let path, let address, let alignment):
            "\(printable(path)) was mapped at 0x\(String(address, radix: 16)), not aligned to \(bytes(alignment)); free address space and retry"
        case .sysfs(let path, let reason):
            "cannot read the device-dax attributes of \(printable(path)): \(reason)"
        case .badBlocksUnavailable(let path, let reason):
            "cannot read the bad blocks of \(printable(path)): \(reason); check that the device's region exposes badblocks (ndctl list --media-errors)"
        case .mediaError(let path, let deviceOffset, let location):
            "media error on \(printable(path)) at device offset \(deviceOffset) (\(location)); clear the poison (e.g. ndctl clear-errors), then run `daxheap check --repair`"
        case .io(let path, let operation, let errno, let message):
            "I/O error on \(printable(path)) during \(operation): \(message) (errno \(errno)); check the device and its permissions"
        case .deviceLargerThanHeap(let path, let heapSize, let deviceSize):
            "\(printable(path)) is \(deviceSize) bytes but its heap spans only the first \(heapSize) (the device grew, or was not cut after a shrink); it opens read-only: run `daxheap grow \(printable(path))` to extend the heap over the whole device, or cut the device to \(heapSize) bytes"
        case .arenasPastNewEnd(let path, let size, let arenas):
            "cannot shrink the heap on \(printable(path)) to \(bytes(size)): \(arenas.map(\.description).joined(separator: ", ")) past its new usable end (device offset \(bytes(size - Geometry.blockSize))); shrink, destroy or move \(arenas.count == 1 ? "that arena" : "those arenas") first (nothing was changed)"
        case .sizeAboveHeap(let path, let requested, let heapSize):
            "cannot shrink the heap on \(printable(path)) to \(bytes(requested)) (\(requested) bytes): it spans only \(bytes(heapSize)) (\(heapSize) bytes); give a smaller size, or run `daxheap grow \(printable(path))` to extend it over its whole device"
        case .resizeNeedsBothCopies(let path, let copy, let detail):
            "cannot move the end of the heap on \(printable(path)) while its \(copy) metadata copy is bad (\(detail)); clear the poison (e.g. ndctl clear-errors), run `daxheap check --repair`, then retry"
        case .deviceLayoutChanged(let path, let differences):
            "\(printable(path)) is not laid out as when its heap recorded it (\(differences.map(printable).joined(separator: "; "))): the device was re-created, so its bytes are not what the heap wrote; it opens read-only: if that is intended, run `daxheap check --repair --accept-new-device-layout \(printable(path))` to record the new layout"
        }
    }

    init(_ error: DeviceError) {
        switch error {
        case .notFound(let path): self = .notFound(path: path)
        case .isDirectory(let path): self = .isDirectory(path: path)
        case .unsupportedFileType(let path, let kind): self = .unsupportedFileType(path: path, kind: kind)
        case .notDeviceDax(let path, let reason): self = .notDeviceDax(path: path, reason: reason)
        case .inUse(let path): self = .inUse(path: path)
        case .sizeNotAligned(let path, let size): self = .deviceSizeNotAligned(path: path, size: size)
        case .tooSmall(let path, let size): self = .deviceTooSmall(path: path, size: size)
        case .tooLarge(let path, let size): self = .deviceTooLarge(path: path, size: size)
        case .sizeRequired(let path): self = .sizeRequired(path: path)
        case .sizeFixed(let path, let deviceSize, let requested): self = .sizeFixed(path: path, deviceSize: deviceSize, requested: requested)
        case .notEmpty(let path, let what): self = .notEmpty(path: path, what: what)
        case .mappingMisaligned(let path, let address, let alignment): self = .mappingMisaligned(path: path, address: address, alignment: alignment)
        case .sysfs(let path, let reason): self = .sysfs(path: path, reason: reason)
        case .system(let path, let e): self = .io(path: path, operation: e.call, errno: e.errno, message: e.message)
        case .badBlocksUnavailable(let path, let reason): self = .badBlocksUnavailable(path: path, reason: reason)
        case .mediaError(let path, let deviceOffset): self = .mediaError(path: path, deviceOffset: deviceOffset, location: "device")
        }
    }

    init(_ error: ProvisionError) {
        switch error {
        case .noSpace(let requested, let available): self = .noSpace(requested: requested, available: available)
        case .nameTaken(let name): self = .nameTaken(name)
        case .unknownArena(let name): self = .unknownArena(name)
        case .misalignedSize(let size): self = .misalignedSize(size)
        case .invalidName(let name, let reason): self = .invalidName(name, reason: reason)
        case .tableFull(let arenas, let extents): self = .tableFull(arenas: arenas, extents: extents)
        }
    }
}

/// A byte count for people: exact bytes below 1 KiB, else the largest binary unit with
/// up to two decimals ("6 MiB", "1.5 GiB").
public func bytes(_ n: UInt64) -> String {
    let units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    guard n >= 1024 else { return "\(n) B" }
    var unit = -1
    var scale: UInt64 = 1
    while unit + 1 < units.count, n / scale >= 1024 {
        scale *= 1024
        unit += 1
    }
    let whole = n / scale
    let hundredths = scale.dividingFullWidth((n % scale).multipliedFullWidth(by: 100)).quotient
    if hundredths == 0 { return "\(whole) \(units[unit])" }
    let frac = hundredths % 10 == 0 ? "\(hundredths / 10)" : (hundredths < 10 ? "0\(hundredths)" : "\(hundredths)")
    return "\(whole).\(frac) \(units[unit])"
}

/// A path with control characters escaped, so an error stays on one line.
func printable(_ s: String) -> String {
    guard s.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }) else { return s }
    let quoted = debugQuoted(s)
    return String(quoted.dropFirst().dropLast())
}

/// A name quoted with anything unprintable escaped, so an error stays on one line.
func debugQuoted(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar == "\"" || scalar == "\\" {
            out += scalar.escaped(asASCII: false)
        } else {
            out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}
