import CDaxShims
import CPMem
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What backs a heap.
public enum DeviceKind: String, Sendable {
    /// A device-dax character device, /dev/daxX.Y.
    case deviceDax = "devdax"
    /// A regular file emulating one.
    case file
}

/// How stores are made durable.
public enum PersistenceMode: String, Sendable {
    /// CPU cache flushes and a fence (libpmem's pmem_persist): device-dax, or memory
    /// libpmem reports as persistent (PMEM_IS_PMEM_FORCE=1 forces this on a file).
    case pmem
    /// msync(2) of the touched pages (libpmem's pmem_msync): a file on a normal filesystem.
    case msync
    /// Plain stores; every flush and fence is reported to a ``DurabilityObserver`` (a
    /// power-loss simulator) instead of reaching the media. Only when the caller passes one.
    case simulated
}

/// Read-only opens take a shared lock, map the device read-only and never write.
public enum AccessMode: Sendable {
    case readOnly
    case readWrite
}

/// Why a device could not be opened, created or mapped.
public enum DeviceError: Error, Equatable, Sendable {
    case notFound(path: String)
    case isDirectory(path: String)
    case unsupportedFileType(path: String, kind: String)
    case notDeviceDax(path: String, reason: String)
    case inUse(path: String)
    case sizeNotAligned(path: String, size: UInt64)
    case tooSmall(path: String, size: UInt64)
    case tooLarge(path: String, size: UInt64)
    case sizeRequired(path: String)
    case sizeFixed(path: String, deviceSize: UInt64, requested: UInt64)
    case notEmpty(path: String, what: String)
    case mappingMisaligned(path: String, address: UInt, alignment: UInt64)
    case sysfs(path: String, reason: String)
    case system(path: String, SystemCallError)
    /// The list of bad blocks could not be read.
    case badBlocksUnavailable(path: String, reason: String)
    /// A guarded access met a media error (SIGBUS) at this device offset.
    case mediaError(path: String, deviceOffset: UInt64)
}

/// The whole device, mapped once, MAP_SHARED, at an address aligned to
/// max(2 MiB, device alignment), and locked with flock until ``close()`` (or deinit).
///
/// `@unchecked Sendable`: every stored property is immutable after `init` but `isClosed`,
/// an atomic; the mapped bytes themselves are shared memory whose use the heap coordinates.
public final class MappedDevice: @unchecked Sendable {
    public let path: String
    public let kind: DeviceKind
    /// Bytes mapped: the whole device.
    public let size: UInt64
    /// The device's own alignment (sysfs `align`; 2 MiB for a file).
    public let alignment: UInt64
    public let mode: AccessMode
    public let persistence: PersistenceMode
    /// Start of the mapping.
    public let base: UnsafeMutableRawPointer
    let fd: Int32
    let mappedByLibpmem: Bool
    let syscalls: SyscallTable
    /// Told of every flush and fence when ``persistence`` is `.simulated`; nil otherwise.
    let observer: (any DurabilityObserver)?
    private let closed = Atomic<Bool>(false)

    /// The heap's granularity, and the least alignment of the mapping.
    public static let granularity: UInt64 = 2 << 20

    init(path: String, kind: DeviceKind, size: UInt64, alignment: UInt64, mode: AccessMode,
         persistence: PersistenceMode, base: UnsafeMutableRawPointer, fd: Int32, mappedByLibpmem: Bool,
         syscalls: SyscallTable, observer: (any DurabilityObserver)? = nil) {
        self.path = path
        self.kind = kind
        self.size = size
        self.alignment = alignment
        self.mode = mode
        self.persistence = persistence
        self.base = base
        self.fd = fd
        self.mappedByLibpmem = mappedByLibpmem
        self.syscalls = syscalls
        self.observer = observer
        observer?.deviceMapped(base: base, size: size)
    }

    deinit { close() }

    /// Whether ``close()`` has run.
    public var isClosed: Bool { closed.load(ordering: .acquiring) }

    /// Unmaps the device, drops its lock and closes its descriptor now rather than at
    /// deinit, so that the path can be opened again at once. Idempotent. The caller makes
    /// sure nothing uses ``base``, or maps from the device, any more: every call that
    /// touches the mapping is then a use of unmapped memory.
    public func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        observer?.deviceUnmapped()
        if mappedByLibpmem {
            Syscall.pmemUnmap(base, Int(size))
        } else {
            Syscall.munmap(base, Int(size))
        }
        // Unlock explicitly: a child forked by any thread shares the open file description
        // until it execs, and closing our descriptor alone would leave the lock held.
        _ = Syscall.flock(fd, LOCK_UN)
        Syscall.close(fd)
    }

    // MARK: - Opening

    /// Opens and maps an existing device or emulating file.
    /// - Parameters:
    ///   - sysfsRoot: where sysfs is mounted (tests point it at a fake tree).
    ///   - observer: when given, persistence is simulated: flushes and fences go to it.
    public static func open(
        path: String, mode: AccessMode, sysfsRoot: String = "/sys", observer: (any DurabilityObserver)? = nil
    ) throws(DeviceError) -> MappedDevice {
        try open(path: path, mode: mode, sysfsRoot: sysfsRoot, syscalls: .system, observer: observer)
    }

    /// `open`, making some of its calls through `syscalls` (tests watch or fail them).
    static func open(
        path: String, mode: AccessMode, sysfsRoot: String = "/sys", syscalls: SyscallTable, observer: (any DurabilityObserver)? = nil
    ) throws(DeviceError) -> MappedDevice {
        let fd = try openAndLock(path: path, mode: mode, create: false)
        do {
            let (kind, size, alignment) = try describe(path: path, fd: fd, sysfsRoot: sysfsRoot)
            try checkGeometry(path: path, size: size)
            return try map(path: path, fd: fd, kind: kind, size: size, alignment: alignment, mode: mode, syscalls: syscalls, observer: observer)
        } catch {
            Syscall.close(fd)
            throw error
        }
    }

    /// Prepares a device for a new heap and maps it read-write.
    ///
    /// A file is created sparse at `size`, or, when it exists, must be empty unless
    /// `overwrite` (then it is cut to zero and re-extended, to `size` or its current size).
    /// A device-dax has its own size (`size` must be nil or equal) and must have blank
    /// metadata blocks unless `overwrite` (then both are zeroed).
    /// With an `observer`, persistence is simulated (see ``open(path:mode:sysfsRoot:observer:)``).
    public static func create(
        path: String, size requested: UInt64?, overwrite: Bool, sysfsRoot: String = "/sys", observer: (any DurabilityObserver)? = nil
    ) throws(DeviceError) -> MappedDevice {
        if let requested { try checkGeometry(path: path, size: requested) }
        let existed: Bool
        switch Syscall.stat(path) {
        case .success: existed = true
        case .failure(let e) where e.errno == ENOENT: existed = false
        case .failure(let e): throw .system(path: path, e)
        }
        if !existed, requested == nil { throw .sizeRequired(path: path) }
        let fd = try openAndLock(path: path, mode: .readWrite, create: !existed)
        do {
            let (kind, currentSize, alignment) = try describe(path: path, fd: fd, sysfsRoot: sysfsRoot)
            switch kind {
            case .file:
                if currentSize > 0, !overwrite { throw DeviceError.notEmpty(path: path, what: "a file of \(currentSize) bytes") }
                let size = requested ?? currentSize
                try checkGeometry(path: path, size: size)
                // Cutting to zero first discards every old byte: the new file reads as zeros.
                try Syscall.ftruncate(fd, 0).mapError { DeviceError.system(path: path, $0) }.get()
                try Syscall.ftruncate(fd, size).mapError { DeviceError.system(path: path, $0) }.get()
                return try map(path: path, fd: fd, kind: kind, size: size, alignment: alignment, mode: .readWrite, syscalls: .system, observer: observer)
            case .deviceDax:
                if let requested, requested != currentSize {
                    throw DeviceError.sizeFixed(path: path, deviceSize: currentSize, requested: requested)
                }
                try checkGeometry(path: path, size: currentSize)
                let device = try map(path: path, fd: fd, kind: kind, size: currentSize, alignment: alignment, mode: .readWrite, syscalls: .system, observer: observer)
                let blocks = [UInt64(0), currentSize - granularity]
                // A device cannot be truncated: inspect, then zero, both metadata blocks.
                if !overwrite, blocks.contains(where: { !device.isZero(offset: $0, length: granularity) }) {
                    throw DeviceError.notEmpty(path: path, what: "a device-dax whose metadata blocks hold data")
                }
                for block in blocks {
                    // Counted like every other store into a metadata block (crash tests).
                    try CrashInjection.counted(Int(granularity)) { (n) throws(DeviceError) in
                        try device.memsetPersist(offset: block, value: 0, length: UInt64(n))
                    }
                }
                return device
            }
        } catch {
            Syscall.close(fd)
            if !existed { _ = unlink(path) }
            throw error as! DeviceError
        }
    }

    static func openAndLock(path: String, mode: AccessMode, create: Bool) throws(DeviceError) -> Int32 {
        // O_NONBLOCK: a FIFO must not hang the open (it is refused once fstat sees it);
        // it changes nothing for a regular file or a device-dax, which are only mapped.
        let flags: Int32 = (mode == .readOnly ? O_RDONLY : O_RDWR) | (create ? O_CREAT | O_EXCL : 0) | O_NONBLOCK
        let fd: Int32
        switch Syscall.open(path, flags, 0o644) {
        case .success(let f): fd = f
        case .failure(let e) where e.errno == ENOENT: throw .notFound(path: path)
        case .failure(let e) where e.errno == EISDIR: throw .isDirectory(path: path)
        case .failure(let e): throw .system(path: path, e)
        }
        // One writer at a time, never blocking; readers share (flock(2) semantics).
        let operation = (mode == .readOnly ? LOCK_SH : LOCK_EX) | LOCK_NB
        switch Syscall.flock(fd, operation) {
        case .success:
            return fd
        case .failure(let e):
            Syscall.close(fd)
            if e.errno == EWOULDBLOCK { throw .inUse(path: path) }
            throw .system(path: path, e)
        }
    }

    /// Kind, size and alignment of the open file or device.
    static func describe(path: String, fd: Int32, sysfsRoot: String) throws(DeviceError) -> (DeviceKind, UInt64, UInt64) {
        let st = try Syscall.fstat(fd).mapError { DeviceError.system(path: path, $0) }.get()
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            return (.file, UInt64(st.st_size), granularity)
        case S_IFCHR:
            // device-dax has no read/write and st_size means nothing: sysfs tells size and align.
            let attributes = try DeviceDaxAttributes.read(
                major: CDaxShims_major(UInt64(st.st_rdev)), minor: CDaxShims_minor(UInt64(st.st_rdev)),
                sysfsRoot: sysfsRoot, path: path)
            return (.deviceDax, attributes.size, attributes.alignment)
        case S_IFDIR:
            throw .isDirectory(path: path)
        case S_IFBLK:
            throw .unsupportedFileType(path: path, kind: "a block device (use its device-dax namespace, /dev/daxX.Y)")
        default:
            throw .unsupportedFileType(path: path, kind: "neither a regular file nor a device-dax")
        }
    }

    static func checkGeometry(path: String, size: UInt64) throws(DeviceError) {
        guard size % granularity == 0 else { throw .sizeNotAligned(path: path, size: size) }
        guard size >= 3 * granularity else { throw .tooSmall(path: path, size: size) }
        // off_t, and the mapping's length, are signed 64-bit.
        guard size <= UInt64(Int64.max) else { throw .tooLarge(path: path, size: size) }
    }

    /// Maps the whole device. Read-write goes through libpmem (pmem_map_file); the
    /// address must be aligned to max(2 MiB, device alignment), and when libpmem's choice
    /// is not, the device is mapped again by hand at an aligned address.
    static func map(
        path: String, fd: Int32, kind: DeviceKind, size: UInt64, alignment: UInt64, mode: AccessMode,
        syscalls: SyscallTable, observer: (any DurabilityObserver)? = nil
    ) throws(DeviceError) -> MappedDevice {
        let required = max(granularity, alignment)
        if let observer {
            // Simulated persistence never asks libpmem: stores are plain, flushes reported.
            let base = try mapAligned(path: path, fd: fd, size: size, alignment: required, writable: mode == .readWrite)
            return MappedDevice(path: path, kind: kind, size: size, alignment: alignment, mode: mode, persistence: .simulated,
                                base: base, fd: fd, mappedByLibpmem: false, syscalls: syscalls, observer: observer)
        }
        if mode == .readWrite, !forceManualMapping.load(ordering: .relaxed) {
            let (base, length, isPmem) = try syscalls.pmemMapFile(path).mapError { DeviceError.system(path: path, $0) }.get()
            if UInt64(length) != size {
                Syscall.pmemUnmap(base, length)
                throw .sysfs(path: path, reason: "libpmem mapped \(length) bytes, the device has \(size)")
            }
            if UInt(bitPattern: base) % UInt(required) == 0 {
                // device-dax is always flushed with CPU instructions; msync does nothing there.
                let persistence: PersistenceMode = kind == .deviceDax || isPmem ? .pmem : .msync
                return MappedDevice(path: path, kind: kind, size: size, alignment: alignment, mode: mode,
                                    persistence: persistence, base: base, fd: fd, mappedByLibpmem: true, syscalls: syscalls)
            }
            Syscall.pmemUnmap(base, length)
        }
        let base = try mapAligned(path: path, fd: fd, size: size, alignment: required, writable: mode == .readWrite)
        let persistence: PersistenceMode = kind == .deviceDax || pmem_is_pmem(base, Int(size)) != 0 ? .pmem : .msync
        return MappedDevice(path: path, kind: kind, size: size, alignment: alignment, mode: mode,
                            persistence: persistence, base: base, fd: fd, mappedByLibpmem: false, syscalls: syscalls)
    }

    /// Test hook: when true, skip pmem_map_file so that the hand-made aligned mapping
    /// (the fallback for a misaligned libpmem mapping) is exercised.
    public static let forceManualMapping = Atomic<Bool>(false)

    /// Reserves `size + alignment` of address space, maps the device MAP_SHARED|MAP_FIXED
    /// at the first aligned address inside, and gives back the rest.
    static func mapAligned(path: String, fd: Int32, size: UInt64, alignment: UInt64, writable: Bool) throws(DeviceError) -> UnsafeMutableRawPointer {
        let span = Int(size + alignment)
        let reservation = try Syscall.mmap(nil, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
            .mapError { DeviceError.system(path: path, $0) }.get()
        let start = UInt(bitPattern: reservation)
        let aligned = (start + UInt(alignment) - 1) / UInt(alignment) * UInt(alignment)
        let protection = writable ? PROT_READ | PROT_WRITE : PROT_READ
        // MAP_SHARED only: device-dax refuses private mappings.
        switch Syscall.mmap(UnsafeMutableRawPointer(bitPattern: aligned), Int(size), protection, MAP_SHARED | MAP_FIXED, fd, 0) {
        case .success(let base):
            if aligned > start { Syscall.munmap(reservation, Int(aligned - start)) }
            let tail = aligned + UInt(size)
            let end = start + UInt(span)
            if end > tail { Syscall.munmap(UnsafeMutableRawPointer(bitPattern: tail)!, Int(end - tail)) }
            guard UInt(bitPattern: base) % UInt(alignment) == 0 else {
                Syscall.munmap(base, Int(size))
                throw .mappingMisaligned(path: path, address: UInt(bitPattern: base), alignment: alignment)
            }
            return base
        case .failure(let e):
            Syscall.munmap(reservation, span)
            throw .system(path: path, e)
        }
    }

    // MARK: - Durability

    /// Makes `[offset, offset+length)` durable.
    public func persist(offset: UInt64, length: UInt64) throws(DeviceError) {
        precondition(offset <= size && length <= size - offset)
        switch persistence {
        case .pmem: pmem_persist(base + Int(offset), Int(length))
        case .msync: try Syscall.pmemMsync(base + Int(offset), Int(length)).mapError { DeviceError.system(path: path, $0) }.get()
        case .simulated:
            observer!.flushed(base + Int(offset), length: length)
            observer!.fenced()
        }
    }

    /// Flushes the range from the CPU caches without waiting (pmem_flush); in msync mode
    /// it syncs the pages, which is already durable.
    public func flush(offset: UInt64, length: UInt64) throws(DeviceError) {
        precondition(offset <= size && length <= size - offset)
        try flush(address: base + Int(offset), length: length)
    }

    /// Maps `[offset, offset + length)` writable now (madvise MADV_POPULATE_WRITE, Linux
    /// 5.14+), widened to whole 4 KiB pages, so that first stores do not fault one page at
    /// a time: on device-dax it sets up the mappings, on a file it allocates the blocks, and
    /// a file system without room for them fails here rather than with SIGBUS at a store.
    /// Returns false, having done nothing, when the kernel lacks the call.
    public func prefault(offset: UInt64, length: UInt64) throws(DeviceError) -> Bool {
        precondition(offset <= size && length <= size - offset)
        return try prefault(address: base + Int(offset), length: length)
    }

    /// ``prefault(offset:length:)`` at an address of the whole-device mapping or of a
    /// window (each mapping has page tables of its own to fill).
    public func prefault(address: UnsafeMutableRawPointer, length: UInt64) throws(DeviceError) -> Bool {
        guard length > 0 else { return true }
        let page: UInt = 4096
        let start = UInt(bitPattern: address) & ~(page - 1)
        let end = (UInt(bitPattern: address) + UInt(length) + page - 1) & ~(page - 1)
        switch Syscall.madvise(UnsafeMutableRawPointer(bitPattern: start)!, Int(end - start), 23 /* MADV_POPULATE_WRITE */) {
        case .success: return true
        case .failure(let e) where e.errno == EINVAL: return false  // before Linux 5.14
        case .failure(let e): throw .system(path: path, e)
        }
    }

    /// Waits for earlier flushes to reach the persistence domain (pmem_drain).
    @inlinable  // a drain through DaxHeap is the fence and nothing else
    public func drain() {
        if persistence == .pmem {
            pmem_drain()
        } else {
            drainOther()
        }
    }

    @usableFromInline
    func drainOther() {
        switch persistence {
        case .pmem: pmem_drain()
        case .msync: break  // each msync was already durable
        case .simulated: observer!.fenced()
        }
    }

    /// Copies and makes the copy durable (what pmem_memcpy_persist does: the copy without
    /// draining, then one drain; memcpy + msync otherwise).
    @inlinable  // the hot path of Arena.memcpyPersist: no call between it and libpmem
    public func memcpyPersist(offset: UInt64, from source: UnsafeRawBufferPointer) throws(DeviceError) {
        if persistence == .pmem, let from = source.baseAddress {
            precondition(offset <= size && UInt64(source.count) <= size - offset)
            pmem_memcpy_persist(base + Int(offset), from, source.count)  // one call on the hot path
            return
        }
        try memcpyNoDrain(offset: offset, from: source)
        drain()
    }

    // MARK: - The fast paths of DaxHeap's durability calls
    //
    // libpmem called directly, for a caller that has checked that ``persistence`` is `.pmem`
    // (and, to store, that the mapping is writable): inlined into DaxHeap's fast paths
    // (Arena, ArenaWindow), and with them into their callers, so that a persist through
    // DaxHeap is one call to libpmem. At an offset, the range is checked against the
    // device; at an address (a window's), the caller checked it against the window.

    /// pmem_flush of `[offset, offset + length)`.
    @inlinable
    public func pmemFlush(offset: UInt64, length: UInt64) {
        precondition(persistence == .pmem && offset <= size && length <= size - offset)
        pmem_flush(base + Int(offset), Int(length))
    }

    /// pmem_memcpy_persist of `count` bytes from `source` to `offset`.
    @inlinable
    public func pmemMemcpyPersist(offset: UInt64, from source: UnsafeRawPointer, count: Int) {
        precondition(persistence == .pmem && offset <= size && UInt64(count) <= size - offset)
        pmem_memcpy_persist(base + Int(offset), source, count)
    }

    /// pmem_flush of `[address, address + length)`.
    @inlinable
    public func pmemFlush(address: UnsafeRawPointer, length: UInt64) {
        precondition(persistence == .pmem)
        pmem_flush(address, Int(length))
    }

    /// pmem_memcpy_persist of `count` bytes from `source` to `address`.
    @inlinable
    public func pmemMemcpyPersist(address: UnsafeMutableRawPointer, from source: UnsafeRawPointer, count: Int) {
        precondition(persistence == .pmem)
        pmem_memcpy_persist(address, source, count)
    }

    /// Copies and flushes without waiting (pmem_memcpy_nodrain): several copies can then
    /// share one ``drain()``. With msync the copy is synced, which is already durable.
    public func memcpyNoDrain(offset: UInt64, from source: UnsafeRawBufferPointer) throws(DeviceError) {
        precondition(offset <= size && UInt64(source.count) <= size - offset)
        try memcpyNoDrain(address: base + Int(offset), from: source)
    }

    /// Fills and makes the fill durable (pmem_memset_persist; memset + msync otherwise).
    public func memsetPersist(offset: UInt64, value: UInt8, length: UInt64) throws(DeviceError) {
        precondition(offset <= size && length <= size - offset)
        try memsetPersist(address: base + Int(offset), value: value, length: length)
    }

    // MARK: - Durability at an address (the whole-device mapping, or a window)

    // The cache lines are the device's whatever the virtual address: libpmem's flushes work
    // on any mapping of it. In msync mode pmem_msync syncs the window's own pages, which
    // any MAP_SHARED file mapping allows.

    /// Flushes `[address, address + length)` from the CPU caches without waiting
    /// (pmem_flush); in msync mode syncs its pages, which is already durable.
    public func flush(address: UnsafeRawPointer, length: UInt64) throws(DeviceError) {
        switch persistence {
        case .pmem: pmem_flush(address, Int(length))
        case .msync: try Syscall.pmemMsync(address, Int(length)).mapError { DeviceError.system(path: path, $0) }.get()
        case .simulated: observer!.flushed(address, length: length)
        }
    }

    /// Copies `source` to `address` and flushes it without the fence (pmem_memcpy_nodrain;
    /// memcpy and msync otherwise).
    public func memcpyNoDrain(address: UnsafeMutableRawPointer, from source: UnsafeRawBufferPointer) throws(DeviceError) {
        guard let from = source.baseAddress, source.count > 0 else { return }
        switch persistence {
        case .pmem:
            pmem_memcpy_nodrain(address, from, source.count)
        case .msync, .simulated:
            address.copyMemory(from: from, byteCount: source.count)
            try flush(address: address, length: UInt64(source.count))
        }
    }

    /// Copies `source` to `address` and makes it durable (pmem_memcpy_persist).
    public func memcpyPersist(address: UnsafeMutableRawPointer, from source: UnsafeRawBufferPointer) throws(DeviceError) {
        guard let from = source.baseAddress, source.count > 0 else { return }
        switch persistence {
        case .pmem:
            pmem_memcpy_persist(address, from, source.count)
        case .msync, .simulated:
            address.copyMemory(from: from, byteCount: source.count)
            try flush(address: address, length: UInt64(source.count))
            drain()
        }
    }

    /// Fills `length` bytes at `address` with `value` and makes them durable
    /// (pmem_memset_persist; memset and msync otherwise).
    public func memsetPersist(address: UnsafeMutableRawPointer, value: UInt8, length: UInt64) throws(DeviceError) {
        switch persistence {
        case .pmem:
            pmem_memset_persist(address, Int32(value), Int(length))
        case .msync, .simulated:
            memset(address, Int32(value), Int(length))
            try flush(address: address, length: length)
            drain()
        }
    }

    /// Whether free space is handled by punching holes: on a file, unless under simulated
    /// persistence, which sees only stores (and so gets what a device-dax gets).
    private var punchesHoles: Bool { kind == .file && persistence != .simulated }

    /// Durably zeroes a range nobody uses (space about to join an arena). A file gets
    /// its blocks punched out, which is quick and keeps it sparse; device-dax is memset.
    public func zero(offset: UInt64, length: UInt64) throws(DeviceError) {
        if punchesHoles {
            if case .success = syscalls.punchHole(fd, offset, length) {
                // The hole is file-system metadata: only fdatasync makes it durable, in
                // pmem mode too (fs-dax with MAP_SYNC syncs a store's block allocation at
                // its fault, never a punch), else a crash could bring the old bytes back.
                try syscalls.fdatasync(fd).mapError { DeviceError.system(path: path, $0) }.get()
                return
            }
        }
        try memsetPersist(offset: offset, value: 0, length: length)
    }

    /// Gives back the memory behind a range no arena holds any more (space a shrink or a
    /// destroy returned, once no reader can be in it): a file gets its blocks punched out,
    /// so an emulating file (on tmpfs, memory) stays about as large as its arenas. Not
    /// made durable, and best effort: the space is zeroed again, durably, before it joins
    /// an arena (`zero`). A device-dax keeps its memory; simulated persistence keeps the
    /// bytes its model tracks.
    public func release(offset: UInt64, length: UInt64) {
        guard punchesHoles, mode == .readWrite, length > 0 else { return }
        _ = syscalls.punchHole(fd, offset, length)
    }

    // MARK: - Guarded access (media errors)

    /// Copies device bytes into `destination`, surviving a media error: a fault in the
    /// device range during the copy (a poisoned line, or a page past the end of a
    /// truncated file) is returned as `.mediaError` with the faulting device offset
    /// instead of killing the process. Any other SIGBUS goes to the program's previous
    /// disposition (CDaxShims_guarded_copy).
    public func guardedRead(offset: UInt64, into destination: UnsafeMutableRawBufferPointer) throws(DeviceError) {
        precondition(offset <= size && UInt64(destination.count) <= size - offset)
        guard let to = destination.baseAddress, destination.count > 0 else { return }
        try guarded(to, base + Int(offset), destination.count, copy: nil, side: CDaxShims_guard_source, at: offset)
    }

    /// `memcpyPersist` through the same guard; on a media error the range holds partial
    /// data and `.mediaError` is thrown.
    public func guardedMemcpyPersist(offset: UInt64, from source: UnsafeRawBufferPointer) throws(DeviceError) {
        precondition(offset <= size && UInt64(source.count) <= size - offset)
        guard let from = source.baseAddress, source.count > 0 else { return }
        switch persistence {
        case .pmem:
            try guarded(base + Int(offset), from, source.count, copy: pmem_memcpy_persist, side: CDaxShims_guard_destination, at: offset)
        case .msync, .simulated:
            try guarded(base + Int(offset), from, source.count, copy: nil, side: CDaxShims_guard_destination, at: offset)
            try persist(offset: offset, length: UInt64(source.count))
        }
    }

    private func guarded(
        _ to: UnsafeMutableRawPointer, _ from: UnsafeRawPointer, _ count: Int,
        copy: CDaxShims_copy_function?, side: CDaxShims_guarded_side, at offset: UInt64
    ) throws(DeviceError) {
        var fault: UnsafeMutableRawPointer? = nil
        switch CDaxShims_guarded_copy(to, from, count, copy, side, &fault) {
        case 0:
            return
        case -1:
            let address = UInt(bitPattern: fault)
            let start = UInt(bitPattern: base)
            let faultOffset = address >= start && address < start + UInt(size) ? UInt64(address - start) : offset
            throw .mediaError(path: path, deviceOffset: faultOffset)
        default:
            throw .system(path: path, SystemCallError("sigaction", errno: errno))
        }
    }

    /// Whether every byte of the range is zero.
    public func isZero(offset: UInt64, length: UInt64) -> Bool {
        let bytes = UnsafeRawBufferPointer(start: base + Int(offset), count: Int(length))
        var i = 0
        while i + 8 <= bytes.count {
            if bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { return false }
            i += 8
        }
        return bytes[i...].allSatisfy { $0 == 0 }
    }
}
