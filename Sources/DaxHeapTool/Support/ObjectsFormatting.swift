import DaxHeap
import DaxObjects

/// `objects`, for people and as JSON.
extension Formatting {
    static func objectsJSON(_ summary: ObjectsSummary) -> JSON {
        let stats = summary.statistics, recovery = summary.recovery
        return .object([
            "arena": .string(summary.arena),
            "arena_size": .integer(stats.arenaSize),
            "objects": .integer(UInt64(stats.objects)),
            "allocated_bytes": .integer(stats.allocatedBytes),
            "free_bytes": .integer(stats.freeBytes),
            "largest_free_block": .integer(stats.largestFreeBlock),
            "classes": .array(stats.classes.map { entry in
                .object([
                    "block_size": .integer(entry.blockSize), "chunks": .integer(UInt64(entry.chunks)),
                    "objects": .integer(UInt64(entry.objects)),
                ])
            }),
            "roots": .array(summary.roots.map { root in
                .object([
                    "name": .string(root.name),
                    "offset": root.object.map { .integer($0.offset) } ?? .null,
                    "size": root.object.map { .integer($0.size) } ?? .null,
                    "kind": root.object.map { .string(kindName($0.kind)) } ?? .null,
                ])
            }),
            "recovery": .object([
                "live_objects": .integer(UInt64(recovery.liveObjects)),
                "live_bytes": .integer(recovery.liveBytes),
                "transactions_replayed": .integer(UInt64(recovery.transactionsReplayed)),
                "torn_logs_discarded": .integer(UInt64(recovery.tornLogsDiscarded)),
                "logs_pending_read_only": .integer(UInt64(recovery.logsPendingReadOnly)),
                "chunks_freed": .integer(UInt64(recovery.chunksFreed)),
                "microseconds": .integer(microseconds(recovery.milliseconds)),
            ]),
        ])
    }

    ///     arena:               objects
    ///     arena size:          8 MiB (8388608 bytes)
    ///     ...
    ///     size classes:
    ///       block size  chunks  objects
    ///             64 B       1        2
    ///     roots:
    ///       "list"  offset 4194304, 64 B, references
    static func objectsLines(_ summary: ObjectsSummary) -> [String] {
        let stats = summary.statistics, recovery = summary.recovery
        let exact = { (n: UInt64) in "\(bytes(n)) (\(n) bytes)" }
        var recovered = "\(plural(recovery.liveObjects, "live object")) (\(bytes(recovery.liveBytes))) reached from the roots in \(milliseconds(recovery.milliseconds)); "
            + "\(plural(recovery.transactionsReplayed, "transaction")) replayed, \(plural(recovery.tornLogsDiscarded, "torn log")) discarded, "
            + "\(plural(recovery.chunksFreed, "chunk")) found free"
        if recovery.logsPendingReadOnly > 0 {
            recovered += "; \(plural(recovery.logsPendingReadOnly, "committed transaction")) not applied (read-only: the figures are from before; a read-write open applies it)"
        }
        var lines = table([
            ("arena", quoted(summary.arena)),
            ("arena size", exact(stats.arenaSize)),
            ("objects", "\(stats.objects)"),
            ("allocated", exact(stats.allocatedBytes)),
            ("free", exact(stats.freeBytes)),
            ("largest free block", exact(stats.largestFreeBlock)),
            ("recovery", recovered),
        ])
        lines.append("size classes:" + (stats.classes.isEmpty ? " none" : ""))
        if !stats.classes.isEmpty {
            let rows = [("block size", "chunks", "objects")] + stats.classes.map { (bytes($0.blockSize), "\($0.chunks)", "\($0.objects)") }
            let widths = (rows.map(\.0.count).max()!, rows.map(\.1.count).max()!, rows.map(\.2.count).max()!)
            for row in rows {
                lines.append("  " + padLeft(row.0, widths.0) + "  " + padLeft(row.1, widths.1) + "  " + padLeft(row.2, widths.2))
            }
        }
        lines.append("roots:" + (summary.roots.isEmpty ? " none" : ""))
        let names = summary.roots.map { quoted($0.name) }
        let width = names.map(\.count).max() ?? 0
        for (root, name) in zip(summary.roots, names) {
            let target = root.object.map { "offset \($0.offset), \(bytes($0.size)), \(kindName($0.kind))" } ?? "null"
            lines.append("  " + name + String(repeating: " ", count: width - name.count) + "  " + target)
        }
        return lines
    }

    static func kindName(_ kind: ObjectKind) -> String { kind == .references ? "references" : "data" }

    static func microseconds(_ milliseconds: Double) -> UInt64 {
        milliseconds > 0 ? UInt64((milliseconds * 1000).rounded()) : 0
    }

    /// "0.214 ms".
    static func milliseconds(_ milliseconds: Double) -> String {
        let us = microseconds(milliseconds)
        let fraction = String(us % 1000)
        return "\(us / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction) ms"
    }

    static func padLeft(_ text: String, _ width: Int) -> String {
        String(repeating: " ", count: max(0, width - text.count)) + text
    }
}
