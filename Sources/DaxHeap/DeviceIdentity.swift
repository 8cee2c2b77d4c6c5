import DaxDevice
import DaxMetadata
import Logging

// Device identity (docs/FORMAT.md, "Device identity"): a heap on a device-dax records what
// sysfs shows of the device's physical layout; open compares it with the device's layout
// now, so that a device destroyed and re-created at the same path (whose bytes are not
// what the heap wrote) is not taken for the heap's.

/// Whether the device's layout is the one the heap recorded.
public enum DeviceLayoutState: String, Sendable {
    /// The heap records no identity: it lives on a file, or was made before format
    /// version 2 (`daxheap check --repair --accept-new-device-layout` records one).
    case notRecorded = "not recorded"
    /// The heap records one, but lives on a file now (a copy of a device-dax heap): there
    /// is no layout to compare with.
    case notApplicable = "not applicable"
    /// Every field that could be read now is as recorded.
    case matches
    /// A field differs: the device is not the one the heap was made on.
    case changed
}

/// One mapping range of a device-dax: its bytes from `deviceOffset` live at physical
/// address `physicalStart` (the device layer's type, as sysfs shows it).
public typealias DeviceMappingRange = DeviceDaxRange

/// What a heap records of its device-dax's physical layout (a field is nil when sysfs
/// did not let it be read when it was recorded).
public struct DeviceIdentity: Hashable, Sendable {
    /// The dax region's id (the X of /dev/daxX.Y).
    public var regionID: UInt64?
    /// The dax region's size.
    public var regionSize: UInt64?
    /// The device's mapping alignment.
    public var alignment: UInt64
    /// The device's size when the identity was recorded.
    public var deviceSize: UInt64
    /// The device's mapping ranges, ordered by device offset (readable by root only).
    public var ranges: [DeviceMappingRange]?

    init(_ record: DeviceIdentityRecord) {
        regionID = record.regionID
        regionSize = record.regionSize
        alignment = record.alignment
        deviceSize = record.deviceSize
        ranges = record.ranges?.map { DeviceMappingRange(deviceOffset: $0.deviceOffset, physicalStart: $0.physicalStart, length: $0.length) }
    }
}

/// What open found comparing the recorded identity with the device's layout now.
struct DeviceLayoutFinding: Sendable {
    var state: DeviceLayoutState
    /// The device's layout now (nil on a file).
    var current: DeviceDaxLayout?
    /// What differs (state `.changed`), one phrase each: "region id is 1, was 0".
    var differences: [String] = []
    /// Recorded fields that could not be compared, and why.
    var unverified: [String] = []

    static let none = DeviceLayoutFinding(state: .notRecorded, current: nil)

    /// The identity to record for the device as it is now, or nil on a file.
    var currentRecord: DeviceIdentityRecord? { current.map(DeviceLayoutFinding.record) }

    /// Reads the device's layout (a device-dax's, or `emulated`'s in tests) and compares it
    /// with `recorded`.
    static func find(recorded: DeviceIdentityRecord?, heapSize: UInt64, device: MappedDevice, sysfsRoot: String,
                     emulated: DeviceNumber?, path: String) throws(HeapError) -> DeviceLayoutFinding {
        guard let number = emulated ?? device.deviceNumber else {
            return DeviceLayoutFinding(state: recorded == nil ? .notRecorded : .notApplicable, current: nil)
        }
        let current: DeviceDaxLayout
        do {
            current = try DeviceDaxLayout.read(device: number, sysfsRoot: sysfsRoot, path: path)
        } catch {
            throw HeapError(error)
        }
        guard let recorded else { return DeviceLayoutFinding(state: .notRecorded, current: current) }
        var finding = DeviceLayoutFinding(state: .matches, current: current)
        compare(recorded, current, heapSize: heapSize, into: &finding)
        if !finding.differences.isEmpty { finding.state = .changed }
        return finding
    }

    private static func compare(_ r: DeviceIdentityRecord, _ c: DeviceDaxLayout, heapSize: UInt64, into f: inout DeviceLayoutFinding) {
        func why(_ field: String) -> String {
            c.unreadable.first { $0.hasPrefix(field) } ?? "\(field): unreadable"
        }
        func field(_ name: String, _ recorded: UInt64?, _ now: UInt64?, _ show: (UInt64) -> String) {
            guard let recorded else { return }
            guard let now else { return f.unverified.append(why(name)) }
            if now != recorded { f.differences.append("\(name) is \(show(now)), was \(show(recorded))") }
        }
        field("region id", r.regionID, c.regionID) { "\($0)" }
        field("region size", r.regionSize, c.regionSize) { "\($0) bytes" }
        field("alignment", r.alignment, c.alignment) { bytes($0) }
        guard let recordedRanges = r.ranges else { return }
        guard let currentRanges = c.ranges else { return f.unverified.append(why("mapping ranges")) }
        let was = recordedRanges.map { DeviceDaxRange(deviceOffset: $0.deviceOffset, physicalStart: $0.physicalStart, length: $0.length) }
        if let difference = firstDifference(was, currentRanges, below: min(heapSize, coverage(was))) {
            f.differences.append(difference)
        }
    }

    /// Bytes from device offset 0 that `ranges` map without a gap.
    static func coverage(_ ranges: [DeviceDaxRange]) -> UInt64 {
        var end: UInt64 = 0
        for range in ranges where range.deviceOffset == end { end += range.length }
        return end
    }

    /// The physical address of device offset `offset`, or nil where no range maps it.
    static func physical(_ offset: UInt64, in ranges: [DeviceDaxRange]) -> UInt64? {
        guard let r = ranges.first(where: { offset >= $0.deviceOffset && offset - $0.deviceOffset < $0.length }) else { return nil }
        return r.physicalStart + (offset - r.deviceOffset)
    }

    /// Where the two maps of device offsets to physical addresses first differ below
    /// `limit`, said for people, or nil. Both are linear between the starts and ends of
    /// their ranges, so comparing them at those points compares them everywhere.
    static func firstDifference(_ was: [DeviceDaxRange], _ now: [DeviceDaxRange], below limit: UInt64) -> String? {
        let points = Set([0] + (was + now).flatMap { [$0.deviceOffset, $0.deviceOffset + $0.length] }).filter { $0 < limit }
        for offset in points.sorted() {
            let before = physical(offset, in: was)
            let after = physical(offset, in: now)
            guard before != after else { continue }
            func place(_ p: UInt64?) -> String { p.map { "physical 0x\(String($0, radix: 16))" } ?? "no mapping range" }
            return "device offset \(offset) is at \(place(after)), was at \(place(before))"
        }
        return nil
    }

    /// The record of a layout read from sysfs.
    static func record(_ layout: DeviceDaxLayout) -> DeviceIdentityRecord {
        DeviceIdentityRecord(
            regionID: layout.regionID, regionSize: layout.regionSize, alignment: layout.alignment, deviceSize: layout.size,
            ranges: layout.ranges?.map { MappingRangeRecord(deviceOffset: $0.deviceOffset, physicalStart: $0.physicalStart, length: $0.length) })
    }

    /// The identity to record when the heap's end moves (grow, shrink): the fields
    /// readable now as they are now (they matched, or the open was refused), the others as
    /// recorded. Nil, like the recorded one, for a heap that records none.
    func refreshed(_ recorded: DeviceIdentityRecord?) -> DeviceIdentityRecord? {
        guard var merged = recorded, let now = currentRecord else { return recorded }
        merged.alignment = now.alignment
        merged.deviceSize = now.deviceSize
        merged.regionID = now.regionID ?? merged.regionID
        merged.regionSize = now.regionSize ?? merged.regionSize
        merged.ranges = now.ranges ?? merged.ranges
        return merged
    }

    /// The error a read-write open throws, and a read-only one reports, for a changed layout.
    func change(path: String) -> HeapError? {
        state == .changed ? .deviceLayoutChanged(path: path, differences: differences) : nil
    }
}

extension Heap {
    /// What the device's layout is, compared with the identity the heap records
    /// (docs/FORMAT.md, "Device identity"). After an accepted change it is `.matches`.
    public var deviceLayoutState: DeviceLayoutState { state.withLock { $0.layout.state } }

    /// The identity the heap records, or nil (a file, or a heap made before format version 2).
    public var deviceIdentity: DeviceIdentity? { state.withLock { $0.identity.map(DeviceIdentity.init) } }

    /// On a read-only heap whose device's layout differs from the recorded identity, the
    /// error a read-write open throws (``HeapError/deviceLayoutChanged(path:differences:)``),
    /// naming what differs; nil otherwise.
    public var deviceLayoutChange: HeapError? { state.withLock { $0.layout.change(path: path) } }

    /// Recorded fields of the identity that could not be compared at open (sysfs did not
    /// let them be read, e.g. the mapping ranges without root), one line each with why.
    public var unverifiedDeviceLayout: [String] { state.withLock { $0.layout.unverified } }

    /// The line a read-write open that accepts the device's layout adds to ``repairs``, or
    /// nil when there is nothing to record (a file, or the identity is already as now).
    static func acceptLine(_ finding: DeviceLayoutFinding, recorded: DeviceIdentityRecord?) -> String? {
        guard let now = finding.currentRecord, now != recorded else { return nil }
        switch finding.state {
        case .changed:
            return "recorded the device's current layout as the heap's identity (it differed: \(finding.differences.joined(separator: "; ")))"
        case .notRecorded:
            return "recorded the device's layout as the heap's identity (none was recorded; the metadata is format version 2 from now on)"
        case .matches, .notApplicable:
            return "recorded the device's layout as the heap's identity again (more of it could be read than before)"
        }
    }

    /// Writes the device's current layout as the heap's identity: one metadata update
    /// (both copies, as any update, under the next generation).
    func recordDeviceLayout(_ finding: DeviceLayoutFinding) throws(HeapError) {
        guard let record = finding.currentRecord else { return }
        try provisioning.withLock { _ throws(HeapError) in
            try state.withLock { s throws(HeapError) in
                guard s.highestGeneration < UInt64.max - 1 else { throw .generationExhausted(path: path) }
                guard case .success(var metadata) = MetadataCopy.decode(s.image) else {
                    throw .corruptMetadata(path: path, primary: "the heap's own table does not decode", secondary: "not used")
                }
                guard MetadataCopy.tableLength(arenas: metadata.arenas.count, extents: metadata.extentCount) + record.encodedLength
                    <= MetadataCopy.maxTableLength
                else {
                    throw .tableFull(arenas: metadata.arenas.count, extents: metadata.extentCount)
                }
                let generation = s.highestGeneration + 1
                metadata.identity = record
                metadata.generation = generation
                let image = MetadataCopy.encode(metadata)
                try commit(image, generation: generation, state: &s)
                s.image = image
                s.generation = generation
                s.identity = record
                s.layout = DeviceLayoutFinding(state: .matches, current: finding.current)
                logger.warning("recorded the device's layout as the heap's identity", metadata: ["path": "\(path)"])
            }
        }
    }
}
