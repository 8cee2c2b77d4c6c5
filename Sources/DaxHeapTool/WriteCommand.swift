import ArgumentParser
import DaxHeap

struct WriteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "write",
        abstract: "Copy standard input into an arena at OFF and make it durable.",
        discussion: """
        All of standard input is read before anything is written; if it would not fit \
        between OFF and the end of the arena, nothing is written and the command fails. \
        The bytes may cross extent boundaries.
        """
    )

    @Argument(help: Help.path) var path: String
    @Option(name: .long, help: Help.name) var name: String
    @Option(name: .long, help: ArgumentHelp("Where to start in the arena (\(ByteCount.spellings)).", valueName: "offset"))
    var offset = ByteCount(0)

    func run() throws {
        try reportingFailures {
            let heap = try HeapAccess.openReadWrite(path)
            let arena = try heap.arena(named: name)
            let size = arena.size
            guard offset.value <= size else {
                throw HeapError.outOfRange(arena: name, offset: offset.value, count: 0, arenaSize: size)
            }
            let room = size - offset.value
            guard let data = try Console.readStandardInput(limit: room) else {
                throw ToolFailure("standard input holds more than the \(Formatting.bytes(room)) (\(room) bytes) from offset \(offset.value) to the end of arena \(Formatting.quoted(name)) of \(Formatting.bytes(size)); nothing was written: resize the arena or write less")
            }
            try arena.memcpyPersist(at: offset.value, data)
            try Console.out("wrote \(Formatting.plural(data.count, "byte")) to arena \(Formatting.quoted(name)) at offset \(offset.value), persisted")
        }
    }
}
