import ArgumentParser
import DaxHeap

struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the arenas and their extents (read-only).",
        discussion: """
        JSON: {available_size, arenas: [{name, size, extents: [{device_offset, arena_offset, size}]}]}, \
        arenas sorted by name, extents by arena offset.
        """
    )

    @Argument(help: Help.path) var path: String
    @Flag(name: .long, help: Help.json) var json = false

    func run() throws {
        try reportingFailures {
            let heap = try HeapAccess.openReadOnly(path)
            let arenas = heap.arenas
            if json {
                try Console.out(Formatting.listJSON(available: heap.availableSize, arenas: arenas).text)
            } else {
                try Console.out(lines: Formatting.listLines(available: heap.availableSize, usable: heap.usableSize, arenas: arenas))
            }
        }
    }
}
