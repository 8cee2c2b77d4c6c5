import ArgumentParser

/// `daxheap`: the operator's tool for DaxHeap devices, thin over the public DaxHeap API.
@main
struct DaxHeapCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daxheap",
        abstract: "Create, inspect, check and use DaxHeap heaps: a device-dax or an emulating file as named, resizable arenas.",
        discussion: """
        PATH is a device-dax (/dev/daxX.Y) or a regular file emulating one.
        SIZE, OFF and LEN are \(ByteCount.spellings).

        Exit status: 0 success; 1 the operation failed (one "error: " line on standard error); \
        64 a usage error; 3 from check when damage was found and not repaired.
        Commands that only look (info, list, read, check without --repair) never write. \
        Commands that open read-write first repair a bad or stale metadata copy and say so \
        in "note: " lines on standard error.

        New here? Run `daxheap demo`.
        """,
        subcommands: [
            CreateCommand.self, InfoCommand.self, ListCommand.self,
            CreateArenaCommand.self, ResizeArenaCommand.self, DestroyArenaCommand.self, ProvisionCommand.self,
            WriteCommand.self, ReadCommand.self, CheckCommand.self, GrowCommand.self, ShrinkCommand.self, MoveArenaCommand.self,
            DemoCommand.self,
        ]
    )

    static func main() {
        bootstrapQuietLogging()
        main(nil)
    }
}

/// Help texts shared by the commands.
enum Help {
    static let path = ArgumentHelp("A device-dax (/dev/daxX.Y) or a file emulating one.", valueName: "path")
    static let name = ArgumentHelp("The arena's name: 1 to 63 bytes of UTF-8 without control characters.", valueName: "name")
    static let json = ArgumentHelp("Print JSON (stable keys, sizes in bytes) instead of text.")
    static func size(_ what: String) -> ArgumentHelp {
        ArgumentHelp("\(what) (\(ByteCount.spellings)).", valueName: "size")
    }
}
