import ArgumentParser
import DaxHeap
#if canImport(Glibc)
import Glibc
#endif

struct ShrinkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shrink",
        abstract: "Move the heap's end down to SIZE, so that its device can then be cut to SIZE.",
        discussion: """
        SIZE is a multiple of 2 MiB, at least 6 MiB and at most the heap's size. The \
        secondary metadata copy moves to the new last 2 MiB block. Refused, changing \
        nothing, while an arena holds bytes at or past the new usable end (SIZE - 2 MiB): \
        the error names each and how many of its bytes lie there. Crash-safe: an \
        interrupted shrink leaves the old or the new size. Until the device is cut to SIZE \
        (truncate -s for a file; daxctl reconfigure-device -s for a device-dax), the heap \
        opens read-only only; `daxheap grow` takes the shrink back.
        """
    )

    @Argument(help: Help.path) var path: String
    @Option(name: .long, help: Help.size("The heap's new size, a multiple of 2 MiB of at least 6 MiB")) var size: ByteCount

    func run() throws {
        try reportingFailures {
            let result = try HeapAccess.resize(path, to: size.value)
            guard result.size != result.previousSize else {
                try Console.out("the heap on \(path) already spans \(Formatting.bytes(result.size)); nothing to do")
                return
            }
            try Console.out("shrank the heap on \(path) from \(Formatting.bytes(result.previousSize)) to \(Formatting.bytes(result.size)): \(Formatting.bytes(result.usableSize)) usable; now cut the device to \(result.size) bytes (\(cutCommand(size: result.size))); until then the heap opens read-only")
        }
    }

    /// What cuts this device to `size`.
    func cutCommand(size: UInt64) -> String {
        var st = stat()
        if stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFCHR {
            return "disable it, then daxctl reconfigure-device -s \(size) on it"
        }
        return "truncate -s \(size) \(path)"
    }
}
