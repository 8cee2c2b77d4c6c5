import ArgumentParser
import DaxHeap

struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show a heap's size, space, generation, persistence and metadata copies (read-only).",
        discussion: """
        JSON keys: path, kind ("devdax" or "file"), size (the device's), heap_size, \
        unused_device_size (the device's bytes past the heap: see grow), align, usable_size, available_size, \
        generation, arena_count, persistence ("pmem" or "msync"), metadata {primary, secondary} \
        each "ok", "corrupt", "unreadable" or "stale", device_layout ("matches", "changed", \
        "not recorded" or "not applicable": see check --accept-new-device-layout), device_identity \
        (null, or {region_id, region_size, align, device_size, mapping_ranges: null or \
        [{device_offset, physical_start, size}]}: what the heap recorded of its device-dax's layout).
        """
    )

    @Argument(help: Help.path) var path: String
    @Flag(name: .long, help: Help.json) var json = false

    func run() throws {
        try reportingFailures {
            let heap = try HeapAccess.openReadOnly(path)
            if json {
                try Console.out(Formatting.infoJSON(heap).text)
            } else {
                try Console.out(lines: Formatting.infoLines(heap))
            }
        }
    }
}
