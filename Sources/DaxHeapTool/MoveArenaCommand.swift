import ArgumentParser
import DaxHeap

struct MoveArenaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "move-arena",
        abstract: "Move an arena's bytes that lie past the usable end of a heap of SIZE into free space below it, so that `shrink --size SIZE` can proceed.",
        discussion: """
        SIZE is the heap size a shrink is to reach (a multiple of 2 MiB, at least 6 MiB, at \
        most the heap's size): every part of the arena at or past SIZE - 2 MiB is copied \
        first-fit into free space below it, made durable, and then one metadata update points \
        the arena at the copies. The arena keeps its name, id, size and bytes. Crash-safe: \
        interrupted at any point, the arena is where it was or where it moved, with its \
        bytes. Refused, changing nothing, when the free space below SIZE - 2 MiB is too small.
        """
    )

    @Argument(help: Help.path) var path: String
    @Option(name: .long, help: Help.name) var name: String
    @Option(name: .long, help: Help.size("The heap size the arena must fit below, a multiple of 2 MiB of at least 6 MiB")) var below: ByteCount

    func run() throws {
        try reportingFailures {
            let result = try Heap.moveArena(path: path, named: name, below: below.value, logger: HeapAccess.quietLogger)
            for line in result.repairs { Console.note(line) }
            let quoted = Formatting.quoted(name)
            guard result.movedBytes > 0 else {
                try Console.out("arena \(quoted) already lies below \(Formatting.bytes(below.value - 2 * (1 << 20))); nothing to move")
                return
            }
            try Console.out("moved \(Formatting.bytes(result.movedBytes)) of arena \(quoted) below \(Formatting.bytes(below.value - 2 * (1 << 20))), now in \(Formatting.plural(result.extents.count, "extent")); `daxheap shrink \(path) --size \(below.value)` can proceed")
        }
    }
}
