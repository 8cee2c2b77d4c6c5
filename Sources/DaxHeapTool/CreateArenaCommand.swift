import ArgumentParser
import DaxHeap

struct CreateArenaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create-arena",
        abstract: "Create an arena of SIZE bytes (a positive multiple of 2 MiB); its bytes read as zero."
    )

    @Argument(help: Help.path) var path: String
    @Option(name: .long, help: Help.name) var name: String
    @Option(name: .long, help: Help.size("The arena's size, a positive multiple of 2 MiB")) var size: ByteCount

    func run() throws {
        try reportingFailures {
            let heap = try HeapAccess.openReadWrite(path)
            let info = try heap.createArena(named: name, size: size.value).info
            try Console.out("created arena \(Formatting.quoted(info.name)) of \(Formatting.bytes(info.size)) in \(Formatting.plural(info.extents.count, "extent")); \(Formatting.bytes(heap.availableSize)) available")
        }
    }
}
