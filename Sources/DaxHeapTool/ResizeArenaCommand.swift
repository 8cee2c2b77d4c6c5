import ArgumentParser
import DaxHeap

struct ResizeArenaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resize-arena",
        abstract: "Grow or shrink an arena to SIZE bytes (a positive multiple of 2 MiB).",
        discussion: """
        Growth extends the arena's last extent in place if the space after it is free, then \
        takes free gaps first-fit, so the arena may become discontiguous; new bytes read as \
        zero. Shrinking releases the highest arena offsets.
        """
    )

    @Argument(help: Help.path) var path: String
    @Option(name: .long, help: Help.name) var name: String
    @Option(name: .long, help: Help.size("The arena's new size, a positive multiple of 2 MiB")) var size: ByteCount

    func run() throws {
        try reportingFailures {
            let heap = try HeapAccess.openReadWrite(path)
            let arena = try heap.arena(named: name)
            let before = arena.size
            try heap.resizeArena(named: name, to: size.value)
            let info = try arena.info
            let verb = info.size > before ? "grew" : info.size < before ? "shrank" : "kept"
            try Console.out("\(verb) arena \(Formatting.quoted(info.name)) from \(Formatting.bytes(before)) to \(Formatting.bytes(info.size)), now in \(Formatting.plural(info.extents.count, "extent")); \(Formatting.bytes(heap.availableSize)) available")
        }
    }
}
