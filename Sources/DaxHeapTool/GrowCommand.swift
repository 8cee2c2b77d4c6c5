import ArgumentParser
import DaxHeap

struct GrowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grow",
        abstract: "Extend the heap over its whole device, after the device grew.",
        discussion: """
        After a file was extended (truncate -s) or a device-dax resized (daxctl \
        reconfigure-device -s, with the device disabled), the heap still ends where it did, \
        and opens read-only only. grow moves the secondary metadata copy to the device's \
        last 2 MiB block and extends the usable region up to it: the new space is free, and \
        an arena's highest extent can grow in place into it. Crash-safe: an interrupted grow \
        leaves the old or the new size. A heap that already spans its device is left as it is.
        """
    )

    @Argument(help: Help.path) var path: String

    func run() throws {
        try reportingFailures {
            let result = try HeapAccess.resize(path, to: nil)
            guard result.size != result.previousSize else {
                try Console.out("the heap on \(path) already spans its whole device (\(Formatting.bytes(result.size))); nothing to do")
                return
            }
            try Console.out("grew the heap on \(path) from \(Formatting.bytes(result.previousSize)) to \(Formatting.bytes(result.size)): \(Formatting.bytes(result.usableSize)) usable, \(Formatting.bytes(result.size - result.previousSize)) more")
        }
    }
}
