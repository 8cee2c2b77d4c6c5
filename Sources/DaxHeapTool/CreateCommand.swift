import ArgumentParser
import DaxHeap

struct CreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Initialise a heap with no arenas.",
        discussion: """
        A file is created sparse at SIZE (a multiple of 2 MiB, at least 6 MiB). A device-dax \
        keeps its own size. Without --force, an existing non-empty file (heap or not) and a \
        device-dax holding a heap or other data are refused; with --force they are \
        reinitialised, at SIZE or, without it, at their current size.
        """
    )

    @Argument(help: Help.path) var path: String
    @Option(name: .long, help: Help.size("The heap's size; for a device-dax, leave it out")) var size: ByteCount?
    @Flag(name: .long, help: "Reinitialise an existing file or device, destroying its contents.") var force = false

    func run() throws {
        try reportingFailures {
            let heap = try HeapAccess.create(path: path, size: size?.value, overwrite: force)
            try Console.out("created a heap of \(Formatting.bytes(heap.deviceSize)) on \(heap.path) (\(heap.kind.rawValue)): \(Formatting.bytes(heap.usableSize)) usable, persistence \(heap.persistence.rawValue)")
        }
    }
}
