import ArgumentParser
import DaxHeap

struct DestroyArenaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "destroy-arena",
        abstract: "Destroy an arena, returning its space to the heap."
    )

    @Argument(help: Help.path) var path: String
    @Option(name: .long, help: Help.name) var name: String

    func run() throws {
        try reportingFailures {
            let heap = try HeapAccess.openReadWrite(path)
            let size = try heap.arena(named: name).size
            try heap.destroyArena(named: name)
            try Console.out("destroyed arena \(Formatting.quoted(name)), freeing \(Formatting.bytes(size)); \(Formatting.bytes(heap.availableSize)) available")
        }
    }
}
