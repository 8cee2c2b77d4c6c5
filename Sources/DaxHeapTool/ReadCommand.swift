import ArgumentParser
import DaxHeap

struct ReadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "read",
        abstract: "Copy arena bytes to standard output (read-only).",
        discussion: """
        Without --length, reads from OFF to the end of the arena (nothing when OFF is the \
        arena's size). Any byte past the end is out of range, and then nothing is printed.
        """
    )

    @Argument(help: Help.path) var path: String
    @Option(name: .long, help: Help.name) var name: String
    @Option(name: .long, help: ArgumentHelp("Where to start in the arena (\(ByteCount.spellings)).", valueName: "offset"))
    var offset = ByteCount(0)
    @Option(name: .long, help: ArgumentHelp("How many bytes to read, spelled like the offset (default: to the end of the arena).", valueName: "length"))
    var length: ByteCount?

    /// Bytes copied per step: large arenas are streamed, never held whole.
    static let chunk = 1 << 20

    func run() throws {
        try reportingFailures {
            let heap = try HeapAccess.openReadOnly(path)
            let arena = try heap.arena(named: name)
            let size = arena.size
            let start = offset.value
            guard start <= size else {
                throw HeapError.outOfRange(arena: name, offset: start, count: length?.value ?? 0, arenaSize: size)
            }
            let count = length?.value ?? size - start
            guard count <= size - start else {
                throw HeapError.outOfRange(arena: name, offset: start, count: count, arenaSize: size)
            }
            var buffer = [UInt8](repeating: 0, count: Int(min(count, UInt64(Self.chunk))))
            var done: UInt64 = 0
            while done < count {
                let step = Int(min(count - done, UInt64(Self.chunk)))
                try buffer.withUnsafeMutableBytes { raw in
                    let piece = UnsafeMutableRawBufferPointer(rebasing: raw[0 ..< step])
                    try arena.read(into: piece, at: start + done)
                    try Console.write(UnsafeRawBufferPointer(piece), to: 1)
                }
                done += UInt64(step)
            }
        }
    }
}
