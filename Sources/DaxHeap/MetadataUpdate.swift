import DaxDevice
import DaxMetadata
import Logging

/// Writing the two metadata copies for an update, a failed update and a repair
/// (docs/FORMAT.md, "Update protocol" and "Failed writes").
extension Heap {
    /// Which copy an update writes first: the primary while both hold the current table;
    /// otherwise the one that does not. The copy that is the only good one is thus written
    /// only once the other holds the new table durably, so no crash or failed write during
    /// an update can leave the heap without a valid copy.
    static func writeOrder(primary: MetadataCopyStatus, secondary: MetadataCopyStatus) -> (first: MetadataIO.Copy, second: MetadataIO.Copy) {
        primary.state == .ok && secondary.state != .ok ? (.secondary, .primary) : (.primary, .secondary)
    }

    /// Writes the new image to both copies, each durable before the next is touched.
    ///
    /// If the first write fails, nothing was changed: the other copy still holds the current
    /// table, the failed copy is marked bad (so the next update writes it first again, and
    /// fails the same way until it can be written), the current table is put back over it
    /// under a new generation where possible, and the error is thrown. If the second write
    /// fails, the update stands (roll forward): the first copy holds it durably and, with
    /// the higher generation, wins at every open; the second is marked bad and logged.
    func commit(_ image: [UInt8], generation: UInt64, state s: inout HeapState) throws(HeapError) {
        let (first, second) = Self.writeOrder(primary: s.primary, secondary: s.secondary)
        s.highestGeneration = generation  // used up even if the write fails
        do throws(DeviceError) {
            try MetadataIO.write(image, copy: first, heapSize: s.table.deviceSize, on: device, faults: faults)
        } catch {
            s[status: first] = Self.failedWriteStatus(error)
            restoreCurrentTable(over: first, state: &s)
            throw .metadataWriteFailed(path: path, copy: first.description, reason: Self.reason(error))
        }
        s[status: first] = MetadataCopyStatus(state: .ok, generation: generation)
        do throws(DeviceError) {
            try MetadataIO.write(image, copy: second, heapSize: s.table.deviceSize, on: device, faults: faults)
            s[status: second] = MetadataCopyStatus(state: .ok, generation: generation)
        } catch {
            s[status: second] = Self.failedWriteStatus(error)
            let failure = HeapError.metadataWriteFailed(path: path, copy: second.description, reason: Self.reason(error))
            logger.error("the update stands in the \(first) metadata copy alone: \(failure)")
        }
    }

    /// After an update's first write failed, the failed copy may hold anything, even the
    /// new table durably (an msync error does not say the bytes never reached the media).
    /// Writing the current table over it under a fresh generation, then over the other
    /// copy, makes sure a change reported as failed never comes back at the next open. If
    /// that write fails too, the copy stays marked bad (and is written first next time).
    func restoreCurrentTable(over failed: MetadataIO.Copy, state s: inout HeapState) {
        let generation = s.highestGeneration + 1  // `change` keeps this from overflowing
        s.highestGeneration = generation
        let restored = MetadataCopy.restamped(s.image, generation: generation)
        do throws(DeviceError) {
            try MetadataIO.write(restored, copy: failed, heapSize: s.table.deviceSize, on: device, faults: faults)
        } catch {
            return
        }
        s.image = restored
        s.generation = generation
        s[status: failed] = MetadataCopyStatus(state: .ok, generation: generation)
        do throws(DeviceError) {
            try MetadataIO.write(restored, copy: failed.other, heapSize: s.table.deviceSize, on: device, faults: faults)
            s[status: failed.other] = MetadataCopyStatus(state: .ok, generation: generation)
        } catch {
            s[status: failed.other] = Self.failedWriteStatus(error)
        }
    }

    /// What a copy is known to be after a write of it failed.
    static func failedWriteStatus(_ error: DeviceError) -> MetadataCopyStatus {
        if case .mediaError(_, let at) = error {
            return MetadataCopyStatus(state: .unreadable, detail: "media error at device offset \(at) while updating it")
        }
        return MetadataCopyStatus(state: .corrupt, detail: "its last write failed (\(reason(error)))")
    }

    static func reason(_ error: DeviceError) -> String {
        switch error {
        case .mediaError(_, let at): "media error at device offset \(at)"
        case .system(_, let e): e.description
        default: HeapError(error).description
        }
    }

    /// Rewrites each copy (of a heap of `heapSize` bytes) whose status is not ok with
    /// `image`. A media error leaves that copy unreadable and is logged as an error; any
    /// other failure is thrown.
    static func repairCopies(
        image: [UInt8], generation: UInt64, heapSize: UInt64,
        statuses: inout (primary: MetadataCopyStatus, secondary: MetadataCopyStatus),
        device: MappedDevice, logger: Logger, faults: MetadataFaults?
    ) throws(HeapError) -> [String] {
        var repairs: [String] = []
        for copy in [MetadataIO.Copy.primary, .secondary] {
            let status = copy == .primary ? statuses.primary : statuses.secondary
            guard status.state != .ok else { continue }
            var updated = MetadataCopyStatus(state: .ok, generation: generation)
            do throws(DeviceError) {
                try MetadataIO.write(image, copy: copy, heapSize: heapSize, on: device, faults: faults)
                let line = "rewrote the \(copy) metadata copy from the \(copy.other) one (it was \(status.state.rawValue)\(status.detail.isEmpty ? "" : ": \(status.detail)"))"
                logger.warning("\(line)", metadata: ["path": "\(device.path)"])
                repairs.append(line)
            } catch {
                guard case .mediaError(_, let at) = error else { throw HeapError(error) }
                let failure = HeapError.mediaError(path: device.path, deviceOffset: at, location: "the \(copy) metadata copy")
                logger.error("could not repair the \(copy) metadata copy: \(failure)")
                updated = MetadataCopyStatus(state: .unreadable, detail: "media error at device offset \(at); rewriting it failed: clear the poison (e.g. ndctl clear-errors), then run `daxheap check --repair`")
            }
            if copy == .primary { statuses.primary = updated } else { statuses.secondary = updated }
        }
        return repairs
    }
}
