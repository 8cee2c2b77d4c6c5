import DaxHeap

/// The facts the commands print, for people and as JSON.
enum Formatting {
    /// A name in double quotes, with quotes and backslashes escaped.
    static func quoted(_ name: String) -> String {
        var out = "\""
        for scalar in name.unicodeScalars {
            if scalar == "\"" || scalar == "\\" { out += "\\" }
            out.unicodeScalars.append(scalar)
        }
        return out + "\""
    }

    /// A size for people, in binary units (DaxHeap's `bytes(_:)`).
    static func bytes(_ n: UInt64) -> String { DaxHeap.bytes(n) }

    /// A library error's one-line description.
    static func describe(_ error: HeapError) -> String { error.description }

    /// An offset for people: "0", or a size in binary units.
    static func offset(_ n: UInt64) -> String { n == 0 ? "0" : bytes(n) }

    static func plural(_ n: Int, _ word: String) -> String {
        "\(n) \(word)\(n == 1 ? "" : "s")"
    }

    /// `ok`, or the state and why.
    static func describe(_ status: MetadataCopyStatus) -> String {
        var text = status.state.rawValue
        if let generation = status.generation { text += " (generation \(generation))" }
        if !status.detail.isEmpty { text += ": \(status.detail)" }
        return text
    }

    static func metadataJSON(primary: MetadataCopyState, secondary: MetadataCopyState) -> JSON {
        .object(["primary": .string(primary.rawValue), "secondary": .string(secondary.rawValue)])
    }

    // MARK: info

    static func infoJSON(_ heap: Heap) -> JSON {
        let status = heap.metadataStatus
        return .object([
            "path": .string(heap.path),
            "kind": .string(heap.kind.rawValue),
            "size": .integer(heap.deviceSize),
            "heap_size": .integer(heap.heapSize),
            "unused_device_size": .integer(heap.unusedDeviceSize),
            "align": .integer(heap.alignment),
            "usable_size": .integer(heap.usableSize),
            "available_size": .integer(heap.availableSize),
            "generation": .integer(heap.generation),
            "arena_count": .integer(UInt64(heap.arenas.count)),
            "persistence": .string(heap.persistence.rawValue),
            "metadata": metadataJSON(primary: status.primary.state, secondary: status.secondary.state),
            "device_layout": .string(heap.deviceLayoutState.rawValue),
            "device_identity": heap.deviceIdentity.map(identityJSON) ?? .null,
        ])
    }

    /// The device identity a heap records, as info --json prints it.
    static func identityJSON(_ identity: DeviceIdentity) -> JSON {
        .object([
            "region_id": identity.regionID.map(JSON.integer) ?? .null,
            "region_size": identity.regionSize.map(JSON.integer) ?? .null,
            "align": .integer(identity.alignment),
            "device_size": .integer(identity.deviceSize),
            "mapping_ranges": identity.ranges.map { ranges in
                .array(ranges.map { r in
                    .object([
                        "device_offset": .integer(r.deviceOffset), "physical_start": .integer(r.physicalStart),
                        "size": .integer(r.length),
                    ])
                })
            } ?? .null,
        ])
    }

    /// The device identity for people: "region 0, 2 MiB alignment, 2 mapping ranges".
    static func identityLine(_ identity: DeviceIdentity?) -> String {
        guard let identity else { return "none recorded" }
        let region = identity.regionID.map { "region \($0)" } ?? "region unknown"
        let ranges = identity.ranges.map { plural($0.count, "mapping range") } ?? "mapping ranges unknown"
        return "\(region), \(bytes(identity.alignment)) alignment, \(ranges)"
    }

    /// The device layout's state, and what could not be verified.
    static func layoutLine(_ state: DeviceLayoutState, unverified: [String]) -> String {
        unverified.isEmpty ? state.rawValue : "\(state.rawValue) (not verified: \(unverified.joined(separator: "; ")))"
    }

    static func infoLines(_ heap: Heap) -> [String] {
        let status = heap.metadataStatus
        var rows: [(String, String)] = [
            ("path", heap.path),
            ("kind", heap.kind == .deviceDax ? "devdax (device-dax)" : "file (emulated device)"),
            ("size", "\(bytes(heap.deviceSize)) (\(heap.deviceSize) bytes)"),
        ]
        if heap.unusedDeviceSize > 0 {
            rows += [
                ("heap size", "\(bytes(heap.heapSize)) (\(heap.heapSize) bytes)"),
                ("unused device size", unusedDevice(heap.unusedDeviceSize, path: heap.path, heapSize: heap.heapSize)),
            ]
        }
        rows += [
            ("alignment", bytes(heap.alignment)),
            ("usable size", bytes(heap.usableSize)),
            ("available size", bytes(heap.availableSize)),
            ("generation", "\(heap.generation)"),
            ("arenas", "\(heap.arenas.count)"),
            ("persistence", heap.persistence.rawValue),
            ("uuid", heap.uuid),
            ("primary copy", describe(status.primary)),
            ("secondary copy", describe(status.secondary)),
        ]
        if heap.kind == .deviceDax || heap.deviceIdentity != nil {
            rows += [
                ("device identity", identityLine(heap.deviceIdentity)),
                ("device layout", layoutLine(heap.deviceLayoutState, unverified: heap.unverifiedDeviceLayout)),
            ]
        }
        return table(rows)
    }

    /// The device's bytes past the heap, and what to do about them.
    static func unusedDevice(_ unused: UInt64, path: String, heapSize: UInt64) -> String {
        "\(bytes(unused)) (\(unused) bytes) past the heap's end: run `daxheap grow \(path)` to extend the heap over them (until then it opens read-only), or cut the device to \(heapSize) bytes"
    }

    /// `key:` padded so the values line up.
    static func table(_ rows: [(String, String)]) -> [String] {
        let width = rows.map { $0.0.count }.max() ?? 0
        return rows.map { key, value in key + ":" + String(repeating: " ", count: width - key.count + 2) + value }
    }

    // MARK: list

    static func listJSON(available: UInt64, arenas: [ArenaInfo]) -> JSON {
        .object([
            "available_size": .integer(available),
            "arenas": .array(sortedByName(arenas).map { arena in
                .object([
                    "name": .string(arena.name),
                    "size": .integer(arena.size),
                    "extents": .array(arena.extents.sorted { $0.arenaOffset < $1.arenaOffset }.map { extent in
                        .object([
                            "device_offset": .integer(extent.deviceOffset),
                            "arena_offset": .integer(extent.arenaOffset),
                            "size": .integer(extent.length),
                        ])
                    }),
                ])
            }),
        ])
    }

    /// Arenas ordered by name, byte by byte (the same order for every reader of the JSON).
    static func sortedByName(_ arenas: [ArenaInfo]) -> [ArenaInfo] {
        arenas.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
    }

    /// One line per arena, then one per extent:
    ///
    ///     b  12 MiB in 2 extents
    ///        arena 0 ..< 8 MiB       at device offset 10 MiB
    static func listLines(available: UInt64, usable: UInt64, arenas: [ArenaInfo]) -> [String] {
        var lines = ["\(plural(arenas.count, "arena")), \(bytes(available)) of \(bytes(usable)) available"]
        let sorted = sortedByName(arenas)
        let nameWidth = sorted.map { $0.name.count }.max() ?? 0
        for arena in sorted {
            let extents = arena.extents.sorted { $0.arenaOffset < $1.arenaOffset }
            let pad = String(repeating: " ", count: nameWidth - arena.name.count)
            let shape = extents.count == 1 ? "1 extent" : "\(extents.count) extents, discontiguous"
            lines.append("  \(arena.name)\(pad)  \(bytes(arena.size)) in \(shape)")
            let ranges = extents.map { "arena \(offset($0.arenaOffset)) ..< \(bytes($0.arenaOffset + $0.length))" }
            let width = ranges.map(\.count).max() ?? 0
            for (extent, range) in zip(extents, ranges) {
                lines.append("  \(String(repeating: " ", count: nameWidth))    \(range)\(String(repeating: " ", count: width - range.count))  at device offset \(bytes(extent.deviceOffset))")
            }
        }
        return lines
    }

    /// A bad block as check --json prints it.
    static func badBlockJSON(_ block: BadBlock) -> JSON {
        var arena = JSON.null
        var arenaOffset = JSON.null
        let location: String
        switch block.location {
        case .arena(let name, let offset):
            arena = .string(name)
            arenaOffset = .integer(offset)
            location = "arena"
        case .primaryMetadata: location = "metadata primary"
        case .secondaryMetadata: location = "metadata secondary"
        case .unallocated: location = "unallocated"
        case .pastHeapEnd: location = "past heap end"
        }
        return .object([
            "device_offset": .integer(block.deviceOffset), "length": .integer(block.length),
            "arena": arena, "arena_offset": arenaOffset, "location": .string(location),
        ])
    }
}
