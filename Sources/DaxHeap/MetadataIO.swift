import DaxDevice
import DaxMetadata
#if canImport(Glibc)
import Glibc
#endif

/// Reading, choosing and writing the two metadata copies (docs/FORMAT.md, "Update
/// protocol" and "Recovery rules").
package enum MetadataIO {
    package enum Copy: Sendable, CustomStringConvertible {
        case primary
        case secondary

        var other: Copy { self == .primary ? .secondary : .primary }
        package var description: String { self == .primary ? "primary" : "secondary" }

        /// Where the copy lives in a heap of `heapSize` bytes (the size the metadata records,
        /// which the device's may exceed: docs/FORMAT.md, "Device growth and shrink").
        func offset(heapSize: UInt64) -> UInt64 {
            self == .primary ? Geometry.primaryOffset : Geometry.secondaryOffset(deviceSize: heapSize)
        }
    }

    /// What reading one copy gave.
    enum ReadResult {
        case valid(HeapMetadata, image: [UInt8])
        case invalid(MetadataDecodeError)
        /// A media error (SIGBUS) at this device offset.
        case unreadable(deviceOffset: UInt64)
    }

    /// Reads `copy` of a heap of `heapSize` bytes.
    static func read(_ copy: Copy, heapSize: UInt64, on device: MappedDevice) -> ReadResult {
        copy == .primary ? read(at: Geometry.primaryOffset, on: device) : readSecondary(at: copy.offset(heapSize: heapSize), on: device)
    }

    /// Reads a secondary copy at `offset`: valid only if the size it records puts its
    /// secondary there (a copy is written nowhere else, so one found elsewhere is bytes
    /// that moved, not this heap's copy).
    static func readSecondary(at offset: UInt64, on device: MappedDevice) -> ReadResult {
        let result = read(at: offset, on: device)
        if case .valid(let metadata, _) = result, Geometry.secondaryOffset(deviceSize: metadata.deviceSize) != offset {
            return .invalid(.corrupt("records a heap of \(metadata.deviceSize) bytes, whose secondary copy is not at device offset \(offset)"))
        }
        return result
    }

    /// Copies the header at `offset`, then as much of the table as the header claims
    /// (bounded by the block), out of the mapping through the guarded copy, and decodes it.
    static func read(at offset: UInt64, on device: MappedDevice) -> ReadResult {
        do throws(DeviceError) {
            var header = [UInt8](repeating: 0, count: MetadataCopy.headerSize)
            try guardedRead(device, offset: offset, into: &header)
            let length = header.withUnsafeBytes { MetadataCopy.claimedTableLength(header: $0) } ?? 0
            var image = [UInt8](repeating: 0, count: MetadataCopy.headerSize + length)
            try guardedRead(device, offset: offset, into: &image)
            switch MetadataCopy.decode(image) {
            case .success(let metadata): return .valid(metadata, image: image)
            case .failure(let error): return .invalid(error)
            }
        } catch {
            if case .mediaError(_, let at) = error { return .unreadable(deviceOffset: at) }
            return .unreadable(deviceOffset: offset)
        }
    }

    private static func guardedRead(_ device: MappedDevice, offset: UInt64, into bytes: inout [UInt8]) throws(DeviceError) {
        try bytes.withUnsafeMutableBytes { raw in
            Result { () throws(DeviceError) in try device.guardedRead(offset: offset, into: raw) }
        }.get()
    }

    /// Writes a whole copy of a heap of `heapSize` bytes through the guarded copy and makes
    /// it durable before returning. `faults` (tests only) can make the write stop partway
    /// with an error.
    static func write(
        _ image: [UInt8], copy: Copy, heapSize: UInt64, on device: MappedDevice, faults: MetadataFaults? = nil
    ) throws(DeviceError) {
        let offset = copy.offset(heapSize: heapSize)
        if let faults, let fault = faults.take(copy) {
            return try write(Array(image.prefix(fault.storedBytes)), at: offset, on: device, then: fault)
        }
        try store(image, at: offset, on: device)
    }

    /// Stores the part of a copy that an injected fault lets through, then fails as the
    /// fault says (a media error at the first byte not stored, or an I/O error).
    private static func write(_ prefix: [UInt8], at offset: UInt64, on device: MappedDevice, then fault: MetadataFaults.Fault) throws(DeviceError) {
        try store(prefix, at: offset, on: device)
        switch fault.kind {
        case .media: throw .mediaError(path: device.path, deviceOffset: offset + UInt64(prefix.count))
        case .io: throw .system(path: device.path, SystemCallError("msync", errno: EIO))
        }
    }

    /// Stores bytes into a metadata block and makes them durable, counted for crash
    /// injection (docs/FORMAT.md, "Crash injection").
    private static func store(_ bytes: [UInt8], at offset: UInt64, on device: MappedDevice) throws(DeviceError) {
        try CrashInjection.counted(bytes.count) { (count) throws(DeviceError) in
            try bytes.withUnsafeBytes { raw in
                Result { () throws(DeviceError) in
                    try device.guardedMemcpyPersist(offset: offset, from: UnsafeRawBufferPointer(rebasing: raw.prefix(count)))
                }
            }.get()
        }
    }

    /// Clears the copy at `offset` so that no open takes it again: stores zero over its
    /// magic, one aligned 8-byte word, which a crash leaves either whole or untouched.
    static func clear(at offset: UInt64, on device: MappedDevice) throws(DeviceError) {
        try store([UInt8](repeating: 0, count: MetadataCopy.magic.count), at: offset, on: device)
    }

    /// The state of a copy just read, judged against the heap's current image.
    static func status(of result: ReadResult, current image: [UInt8], generation: UInt64) -> MetadataCopyStatus {
        switch result {
        case .valid(let metadata, let bytes):
            if bytes == image { return MetadataCopyStatus(state: .ok, generation: metadata.generation) }
            if metadata.generation < generation {
                return MetadataCopyStatus(state: .stale, detail: "generation \(metadata.generation), the heap is at \(generation)", generation: metadata.generation)
            }
            return MetadataCopyStatus(state: .corrupt, detail: "valid but differs from the heap's table at generation \(metadata.generation)", generation: metadata.generation)
        case .invalid(let error):
            return MetadataCopyStatus(state: .corrupt, detail: error.description)
        case .unreadable(let at):
            return MetadataCopyStatus(state: .unreadable, detail: "media error at device offset \(at)")
        }
    }

    struct Choice {
        var metadata: HeapMetadata
        var image: [UInt8]
        var primary: MetadataCopyStatus
        var secondary: MetadataCopyStatus
    }

    /// The recovery rule: a valid primary's uuid is the heap's, so a valid secondary of
    /// another uuid is corrupt ("belongs to another heap"); of two valid copies of the same
    /// heap, the higher generation wins (the primary on a tie) and the other is stale; an
    /// invalid copy is corrupt, an unreadable one unreadable; a valid secondary beside an
    /// invalid primary is used. No valid copy: not a heap, or
    /// corrupt, with both reasons.
    static func choose(primary: ReadResult, secondary: ReadResult, path: String) throws(HeapError) -> Choice {
        // A verified copy of another format version means a newer DaxHeap wrote here:
        // refuse rather than read half of it or overwrite it with this version.
        for result in [primary, secondary] {
            if case .invalid(.unsupportedVersion(let v)) = result { throw .unsupportedVersion(path: path, version: v) }
        }
        func invalid(_ result: ReadResult) -> MetadataDecodeError? {
            switch result {
            case .valid: nil
            case .invalid(let e): e
            case .unreadable(let at): .corrupt("unreadable: media error at device offset \(at)")
            }
        }
        func badStatus(_ result: ReadResult) -> MetadataCopyStatus {
            if case .unreadable(let at) = result {
                return MetadataCopyStatus(state: .unreadable, detail: "media error at device offset \(at)")
            }
            return MetadataCopyStatus(state: .corrupt, detail: invalid(result)?.description ?? "")
        }
        switch (primary, secondary) {
        case (.valid(let p, let pImage), .valid(let s, let sImage)):
            if p.uuid != s.uuid {
                // Identity first, generation second: a valid primary names the heap, and a
                // valid block of another heap (however new) is damage, never a takeover.
                return Choice(metadata: p, image: pImage, primary: .init(state: .ok, generation: p.generation),
                              secondary: .init(state: .corrupt, detail: "belongs to another heap (uuid \(s.uuid))",
                                               generation: s.generation))
            }
            if p.generation >= s.generation {
                let secondaryStatus = p.generation == s.generation && pImage == sImage
                    ? MetadataCopyStatus(state: .ok, generation: s.generation)
                    : MetadataCopyStatus(state: .stale, detail: "generation \(s.generation), the primary has \(p.generation)", generation: s.generation)
                return Choice(metadata: p, image: pImage, primary: .init(state: .ok, generation: p.generation), secondary: secondaryStatus)
            }
            return Choice(metadata: s, image: sImage,
                          primary: .init(state: .stale, detail: "generation \(p.generation), the secondary has \(s.generation)", generation: p.generation),
                          secondary: .init(state: .ok, generation: s.generation))
        case (.valid(let p, let image), _):
            return Choice(metadata: p, image: image, primary: .init(state: .ok, generation: p.generation),
                          secondary: badStatus(secondary))
        case (_, .valid(let s, let image)):
            return Choice(metadata: s, image: image, primary: badStatus(primary),
                          secondary: .init(state: .ok, generation: s.generation))
        default:
            let pe = invalid(primary)!
            let se = invalid(secondary)!
            if pe == .notADaxHeap, se == .notADaxHeap { throw .notADaxHeapDevice(path: path) }
            if case .unsupportedVersion(let v) = pe { throw .unsupportedVersion(path: path, version: v) }
            if case .unsupportedVersion(let v) = se { throw .unsupportedVersion(path: path, version: v) }
            throw .corruptMetadata(path: path, primary: pe.description, secondary: se.description)
        }
    }
}
