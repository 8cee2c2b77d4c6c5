import ArgumentParser
import DaxHeap
import DaxObjects

struct ObjectsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "objects",
        abstract: "Show an object heap's objects, free space, size classes, roots and recovery (read-only).",
        discussion: """
        Opens the heap read-only and the object heap in ARENA as a program would (its \
        recovery runs in memory and writes nothing: a committed transaction that a crash left \
        unapplied is counted, not applied, and the figures are from before it).
        JSON: {arena, arena_size, objects, allocated_bytes, free_bytes, largest_free_block, \
        classes: [{block_size, chunks, objects}], roots: [{name, offset, size, kind}], \
        recovery: {live_objects, live_bytes, transactions_replayed, torn_logs_discarded, \
        logs_pending_read_only, chunks_freed, microseconds}}: classes by block size (only \
        those with chunks), roots in entry order, a null root's offset, size and kind null, \
        kind "data" or "references".
        """
    )

    @Argument(help: Help.path) var path: String
    @Argument(help: ArgumentHelp("The arena that holds the object heap.", valueName: "arena")) var arena: String
    @Flag(name: .long, help: Help.json) var json = false

    func run() throws {
        try reportingFailures {
            let heap = try HeapAccess.openReadOnly(path)
            let objects = try ObjectHeap.open(in: heap, arena: arena)
            defer { try? objects.close() }
            let summary = try ObjectsSummary(objects)
            if json {
                try Console.out(Formatting.objectsJSON(summary).text)
            } else {
                try Console.out(lines: Formatting.objectsLines(summary))
            }
        }
    }
}

/// What `objects` prints: an object heap's statistics, its roots and its recovery report.
struct ObjectsSummary {
    struct Root {
        var name: String
        /// nil: the root holds null.
        var object: (offset: UInt64, size: UInt64, kind: ObjectKind)?
    }

    var arena: String
    var statistics: ObjectStatistics
    var roots: [Root]
    var recovery: RecoveryReport

    init(_ objects: ObjectHeap) throws {
        arena = objects.arena.name
        statistics = objects.statistics()
        recovery = objects.recovery
        roots = []
        for name in objects.rootNames {
            guard let slot = objects.findRoot(named: name) else { continue }
            do throws(ObjectError) {
                let reference = try objects.load(slot)
                let object = reference.isNull ? nil : (reference.offset, try objects.size(of: reference), try objects.kind(of: reference))
                roots.append(Root(name: name, object: object))
            } catch {
                throw ToolFailure("the object heap in arena \(Formatting.quoted(arena)) is damaged: root \(Formatting.quoted(name)): \(error)")
            }
        }
    }
}
