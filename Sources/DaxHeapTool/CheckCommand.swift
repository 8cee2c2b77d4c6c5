import ArgumentParser
import DaxHeap

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Verify both metadata copies and the arena table; --repair rewrites a bad or stale copy.",
        discussion: """
        Without --repair the heap is opened read-only and nothing is written. With --repair \
        a corrupt, stale or unreadable copy is rewritten from the good one.
        A device larger than its heap (grown, or not cut yet after a shrink) is no damage: \
        the bytes past the heap are reported as unused (`daxheap grow` extends the heap over \
        them), and --repair works there too.
        Exit status: 0 healthy (also after a successful repair); 3 damage was found and not \
        repaired (including both copies bad, and a device cut short, which prints one \
        error line saying what to do instead of a report); 1 the check could not run (no \
        such path, not a heap, in use, ...).
        JSON: {healthy, metadata: {primary, secondary}, problems: [..], repaired: [..], \
        unused_device_size, badblocks: [{device_offset, length, arena, arena_offset, \
        location}]}: unused_device_size is 0 unless the device is larger than its heap (and \
        when both copies are bad); metadata, \
        problems and badblocks say what was found, repaired what --repair fixed, healthy the \
        state at exit. A bad block's arena and arena_offset are null outside arenas; its \
        location is "arena", "metadata primary", "metadata secondary", "unallocated" or \
        "past heap end" (device space past the heap's end). old_metadata_copies: \
        [{device_offset, generation, heap_size}], valid copies of this heap left outside its \
        two places by an interrupted grow or shrink (each also a problem; --repair clears \
        them). device_layout: "matches", "changed" (a problem: the device-dax was re-created), \
        "not recorded" or "not applicable" (see docs/FORMAT.md, "Device identity").
        On a device-dax whose layout changed, --repair is refused unless \
        --accept-new-device-layout also says that the change was intended; it then records \
        the device's current layout as the heap's identity (on a heap that records none \
        yet, it records one).
        """
    )

    @Argument(help: Help.path) var path: String
    @Flag(name: .long, help: "Rewrite a bad or stale metadata copy from the good one.") var repair = false
    @Flag(name: .long, help: "With --repair: record the device-dax's current layout as the heap's identity, accepting a device that was re-created on purpose.")
    var acceptNewDeviceLayout = false
    @Flag(name: .long, help: Help.json) var json = false

    /// What the check found and did.
    struct Outcome {
        var primary: MetadataCopyStatus
        var secondary: MetadataCopyStatus
        var problems: [String]
        var badBlocks: [BadBlock] = []
        var repaired: [String] = []
        var healthy: Bool
        /// Whether a repair could help (one copy is good).
        var repairable: Bool
        /// The heap's size and the device's bytes past it (0 when both copies are bad).
        var heapSize: UInt64 = 0
        var unusedDeviceSize: UInt64 = 0
        var oldCopies: [OldMetadataCopy] = []
        var layout: DeviceLayoutState = .notRecorded
        var unverifiedLayout: [String] = []
    }

    func validate() throws {
        if acceptNewDeviceLayout, !repair {
            throw ValidationError("--accept-new-device-layout records the device's layout, a write: give --repair too")
        }
    }


    func run() throws {
        var outcome: Outcome!
        try reportingFailures {
            do {
                outcome = try examine()
            } catch HeapError.sizeMismatch(_, let recorded, let actual) where actual < recorded {
                // Damage, not a failure to check; but nothing past the cut can be read, so
                // there is no report, only what to do (then --repair rewrites the secondary).
                Console.error(cutShort(recorded: recorded, actual: actual))
                throw ExitCode(3)
            }
            // A changed device layout refuses every read-write open unless accepted.
            let refused = outcome.layout == .changed && !acceptNewDeviceLayout
            if repair, !refused, acceptNewDeviceLayout || (!outcome.healthy && outcome.repairable) {
                // The read-only heap is closed by now (examine returned): its shared lock
                // would otherwise stop the exclusive one.
                outcome.repaired = try HeapAccess.repair(path, acceptNewDeviceLayout: acceptNewDeviceLayout)
                let heap = try HeapAccess.openReadOnly(path)
                outcome.healthy = heap.check().isHealthy
                outcome.layout = heap.deviceLayoutState
            }
            try Console.out(lines: output(outcome))
        }
        if !outcome.healthy { throw ExitCode(3) }
    }

    /// What the check prints: the JSON object, or the human report.
    func output(_ outcome: Outcome) -> [String] {
        guard json else { return lines(outcome) }
        return [JSON.object([
            "healthy": .bool(outcome.healthy),
            "metadata": Formatting.metadataJSON(primary: outcome.primary.state, secondary: outcome.secondary.state),
            "problems": .array(outcome.problems.map(JSON.string)),
            "badblocks": .array(outcome.badBlocks.map(Formatting.badBlockJSON)),
            "repaired": .array(outcome.repaired.map(JSON.string)),
            "unused_device_size": .integer(outcome.unusedDeviceSize),
            "old_metadata_copies": .array(outcome.oldCopies.map { copy in
                .object([
                    "device_offset": .integer(copy.deviceOffset), "generation": .integer(copy.generation),
                    "heap_size": .integer(copy.recordedSize),
                ])
            }),
            "device_layout": .string(outcome.layout.rawValue),
        ]).text]
    }

    /// Opens read-only and checks; both copies bad is a finding, not a failure.
    func examine() throws(HeapError) -> Outcome {
        do throws(HeapError) {
            let heap = try HeapAccess.openReadOnly(path)
            var outcome = Outcome(heap.check(), heapSize: heap.heapSize, unusedDeviceSize: heap.unusedDeviceSize)
            outcome.layout = heap.deviceLayoutState
            outcome.unverifiedLayout = heap.unverifiedDeviceLayout
            return outcome
        } catch {
            guard case .corruptMetadata(_, let primary, let secondary) = error else { throw error }
            return Outcome(primary: MetadataCopyStatus(state: .corrupt, detail: primary),
                           secondary: MetadataCopyStatus(state: .corrupt, detail: secondary),
                           problems: ["primary metadata copy is corrupt: \(primary)",
                                      "secondary metadata copy is corrupt: \(secondary)"],
                           healthy: false, repairable: false)
        }
    }

    /// What to do about a device smaller than its heap: its last blocks, the secondary
    /// copy among them, are gone.
    func cutShort(recorded: UInt64, actual: UInt64) -> String {
        "\(path) is \(actual) bytes but its heap was made for \(recorded) bytes: it was cut short, losing "
            + "the secondary metadata copy and any arena data from byte \(actual) on; restore its size "
            + "(for a file: truncate -s \(recorded) \(path)), then run `daxheap check --repair \(path)` "
            + "to rewrite the secondary copy"
    }

    func lines(_ outcome: Outcome) -> [String] {
        let fixed = !outcome.repaired.isEmpty
        func row(_ status: MetadataCopyStatus) -> String {
            Formatting.describe(status) + (fixed && status.state != .ok ? " -> repaired" : "")
        }
        var rows = [
            ("primary metadata copy", row(outcome.primary)),
            ("secondary metadata copy", row(outcome.secondary)),
        ]
        if outcome.unusedDeviceSize > 0 {
            rows.append(("unused device size", Formatting.unusedDevice(outcome.unusedDeviceSize, path: path, heapSize: outcome.heapSize)))
        }
        if outcome.layout != .notRecorded || !outcome.unverifiedLayout.isEmpty {
            rows.append(("device layout", Formatting.layoutLine(outcome.layout, unverified: outcome.unverifiedLayout)))
        }
        var lines = Formatting.table(rows)
        if outcome.problems.isEmpty {
            lines.append("arena table: consistent")
        } else {
            lines.append("\(Formatting.plural(outcome.problems.count, "problem")) found:")
            lines += outcome.problems.map { "  \(Console.oneLine($0))" }
        }
        if !outcome.repaired.isEmpty {
            lines.append("repaired:")
            lines += outcome.repaired.map { "  \($0)" }
        }
        if outcome.healthy {
            lines.append(outcome.repaired.isEmpty ? "healthy" : "healthy after repair")
        } else if !outcome.repairable {
            lines.append("damaged: both metadata copies are bad and cannot be repaired; restore the device from a backup")
        } else if outcome.layout == .changed {
            lines.append("damaged: the device's layout changed (it was re-created); if that is intended, run `daxheap check --repair --accept-new-device-layout \(path)` to record the new layout")
        } else if repair {
            lines.append("damaged: the repair did not make the heap healthy")
        } else {
            lines.append("damaged: run `daxheap check --repair \(path)` to rewrite the bad copy from the good one")
        }
        return lines
    }
}

extension CheckCommand.Outcome {
    /// What a heap's own check found, on a heap of `heapSize` bytes.
    init(_ report: HeapCheckReport, heapSize: UInt64, unusedDeviceSize: UInt64) {
        self.init(primary: report.primary, secondary: report.secondary, problems: report.problems,
                  badBlocks: report.badBlocks, healthy: report.isHealthy,
                  repairable: report.primary.state == .ok || report.secondary.state == .ok,
                  heapSize: heapSize, unusedDeviceSize: unusedDeviceSize, oldCopies: report.oldCopies)
    }
}
