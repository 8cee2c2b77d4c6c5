import ArgumentParser
import DaxHeap
#if canImport(Glibc)
import Glibc
#endif

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Show what a heap does, in a few seconds, on a temporary emulated device.",
        discussion: """
        Creates a 64 MiB heap, provisions arenas, grows one into a freed gap so that it \
        becomes discontiguous, writes and reads back data across the extent boundary, \
        reopens, damages the primary metadata copy and shows it detected and repaired. \
        Without PATH it works on a file in $TMPDIR (or /tmp) and removes it afterwards; \
        with PATH it creates the heap there (refusing, like create without --force, an \
        existing non-empty file) and leaves it.
        """
    )

    @Argument(help: ArgumentHelp("Where to create the heap (default: a temporary file, removed afterwards).", valueName: "path"))
    var path: String?

    static let heapSize: UInt64 = 64 << 20
    static let arenaSize: UInt64 = 8 << 20

    func run() throws {
        try reportingFailures {
            let target = path ?? Self.temporaryPath()
            // Remove the temporary file whatever happens, once the heap was made there.
            var madeTemporary = false
            defer { if path == nil, madeTemporary { _ = unlink(target) } }

            // 1. A heap and three arenas; destroy the first; grow the middle one, which
            //    cannot grow in place (the third follows it), so it takes the freed gap.
            do {
                let heap = try HeapAccess.create(path: target, size: Self.isCharacterDevice(target) ? nil : Self.heapSize, overwrite: false)
                madeTemporary = true
                try Console.out("daxheap demo on \(target)\(path == nil ? " (a temporary emulated device, removed afterwards)" : "")")
                try Console.out("1. created a heap of \(Formatting.bytes(heap.deviceSize)): \(Formatting.bytes(heap.usableSize)) usable between the two 2 MiB metadata copies, persistence \(heap.persistence.rawValue)")
                for name in ["a", "b", "c"] { try heap.createArena(named: name, size: Self.arenaSize) }
                try Console.out("2. created arenas a, b and c of \(Formatting.bytes(Self.arenaSize)) each, side by side: \(Formatting.bytes(heap.availableSize)) available")
                let gap = try heap.arena(named: "a").info.extents[0]
                try heap.destroyArena(named: "a")
                try Console.out("3. destroyed a: a free gap of \(Formatting.bytes(gap.length)) at device offset \(Formatting.bytes(gap.deviceOffset))")
                let b = try heap.arena(named: "b")
                try b.resize(to: Self.arenaSize + (4 << 20))
                let info = try b.info
                try Console.out("4. grew b to \(Formatting.bytes(info.size)): c sits right after it, so the extra \(Formatting.bytes(4 << 20)) went first-fit into the freed gap; b is now discontiguous, \(Formatting.plural(info.extents.count, "extent")):")
                for extent in info.extents {
                    try Console.out("     arena \(Formatting.offset(extent.arenaOffset)) ..< \(Formatting.bytes(extent.arenaOffset + extent.length)) at device offset \(Formatting.bytes(extent.deviceOffset))")
                }
                guard info.extents.count > 1 else { throw ToolFailure("demo: b did not become discontiguous") }

                // 2. Data across the extent boundary.
                let boundary = info.extents[1].arenaOffset
                let data = Self.pattern
                try b.memcpyPersist(at: boundary - UInt64(data.count / 2), data)
                let back = try b.read(at: boundary - UInt64(data.count / 2), count: data.count)
                guard back == data else { throw ToolFailure("demo: the bytes read back differ from those written") }
                try Console.out("5. wrote \(Formatting.bytes(UInt64(data.count))) across b's extent boundary at arena offset \(Formatting.bytes(boundary)) (one copy, persisted) and read it back: identical")
            }

            // 3. Reopen: the arenas and the data are still there.
            do {
                let heap = try HeapAccess.openReadWrite(target)
                let b = try heap.arena(named: "b")
                let boundary = try b.info.extents[1].arenaOffset
                guard try b.read(at: boundary - UInt64(Self.pattern.count / 2), count: Self.pattern.count) == Self.pattern else {
                    throw ToolFailure("demo: the data did not survive reopening")
                }
                try Console.out("6. reopened the heap: generation \(heap.generation), \(Formatting.plural(heap.arenas.count, "arena")), the data in b intact")
            }

            // 4. Damage the primary metadata copy, behind the library's back.
            let damaged: UInt64 = 16
            try Self.flipByte(at: damaged, of: target)
            try Console.out("7. flipped one byte of the primary metadata copy (device offset \(damaged), in the heap's uuid) with pwrite")
            do {
                let heap = try HeapAccess.openReadOnly(target)
                let status = heap.metadataStatus
                guard status.primary.state != .ok else { throw ToolFailure("demo: the damage went unnoticed") }
                try Console.out("8. opened read-only, the damage is detected: primary \(Formatting.describe(status.primary)); secondary \(status.secondary.state.rawValue); nothing is written")
            }
            do {
                let heap = try Heap.open(path: target, mode: .readWrite, logger: HeapAccess.quietLogger)
                for line in heap.repairs { try Console.out("9. opened read-write, the repair: \(line)") }
                guard !heap.repairs.isEmpty, heap.check().isHealthy else { throw ToolFailure("demo: the repair did not happen") }
                try Console.out("10. check: healthy; the arenas now:")
                try Console.out(lines: Formatting.listLines(available: heap.availableSize, usable: heap.usableSize, arenas: heap.arenas).map { "    " + $0 })
            }
            if path == nil {
                try Console.out("done; removing \(target)")
            } else {
                try Console.out("done; the heap stays at \(target): try `daxheap info \(target)` and `daxheap list \(target)`")
            }
        }
    }

    /// 1 MiB of a recognisable pattern.
    static let pattern: [UInt8] = (0 ..< (1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) }

    static func temporaryPath() -> String {
        var directory = "/tmp"
        if let tmp = getenv("TMPDIR"), !String(cString: tmp).isEmpty { directory = String(cString: tmp) }
        while directory.count > 1, directory.hasSuffix("/") { directory.removeLast() }
        let tag = String(UInt64.random(in: 0 ... UInt64(UInt32.max)), radix: 16)
        return "\(directory)/daxheap-demo-\(getpid())-\(tag).heap"
    }

    static func isCharacterDevice(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFCHR
    }

    /// Flips one byte of the device with plain POSIX calls (a device-dax, which has no
    /// read or write, through a shared mapping of its first 2 MiB).
    static func flipByte(at offset: UInt64, of path: String) throws {
        let fd = open(path, O_RDWR)
        guard fd >= 0 else { throw ToolFailure("demo: cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        if isCharacterDevice(path) {
            let length = 2 << 20
            guard let base = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), base != MAP_FAILED else {
                throw ToolFailure("demo: cannot map \(path): \(String(cString: strerror(errno)))")
            }
            let byte = base.advanced(by: Int(offset)).assumingMemoryBound(to: UInt8.self)
            byte.pointee ^= 0xFF
            msync(base, length, MS_SYNC)
            munmap(base, length)
            return
        }
        var byte: UInt8 = 0
        guard pread(fd, &byte, 1, off_t(offset)) == 1 else {
            throw ToolFailure("demo: cannot read \(path): \(String(cString: strerror(errno)))")
        }
        byte ^= 0xFF
        guard pwrite(fd, &byte, 1, off_t(offset)) == 1, fsync(fd) == 0 else {
            throw ToolFailure("demo: cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}
