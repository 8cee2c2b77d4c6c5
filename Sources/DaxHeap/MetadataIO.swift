import DaxDevice
import DaxMetadata

/// Reading, choosing and writing the two metadata copies (docs/FORMAT.md, "Update
/// protocol" and "Recovery rules").
enum MetadataIO {
    enum Copy: CustomStringConvertible {
        case primary
        case secondary

        var other: Copy { self == .primary ? .secondary : .primary }
        var description: String { self == .primary ? "primary" : "secondary" }

        func offset(on device: MappedDevice) -> UInt64 {
            self == .primary ? Geometry.primaryOffset : Geometry.secondaryOffset(deviceSize: device.size)
        }
    }

    /// What reading one copy gave.
    enum ReadResult {
        case valid(HeapMetadata, image: [UInt8])
        case invalid(MetadataDecodeError)
    }

    /// Copies the header, then as much of the table as the header claims (bounded by the
    /// block), out of the mapping, and decodes it.
    static func read(_ copy: Copy, on device: MappedDevice) -> ReadResult {
        let start = device.base + Int(copy.offset(on: device))
        let header = UnsafeRawBufferPointer(start: start, count: MetadataCopy.headerSize)
        let length = MetadataCopy.claimedTableLength(header: header) ?? 0
        let image = Array(UnsafeRawBufferPointer(start: start, count: MetadataCopy.headerSize + length))
        switch MetadataCopy.decode(image) {
        case .success(let metadata): return .valid(metadata, image: image)
        case .failure(let error): return .invalid(error)
        }
    }

    /// Writes a whole copy and makes it durable before returning.
    static func write(_ image: [UInt8], copy: Copy, on device: MappedDevice) throws(DeviceError) {
        try image.withUnsafeBytes { bytes in
            Result { () throws(DeviceError) in try device.memcpyPersist(offset: copy.offset(on: device), from: bytes) }
        }.get()
    }

    struct Choice {
        var metadata: HeapMetadata
        var image: [UInt8]
        var primary: MetadataCopyStatus
        var secondary: MetadataCopyStatus
    }

    /// The recovery rule: of the valid copies, the one with the higher generation wins
    /// (the primary on a tie); the other is stale if older, corrupt if it is invalid or
    /// belongs to another heap. No valid copy: not a heap, or corrupt, with both reasons.
    static func choose(primary: ReadResult, secondary: ReadResult, path: String) throws(HeapError) -> Choice {
        switch (primary, secondary) {
        case (.valid(let p, let pImage), .valid(let s, let sImage)):
            if p.uuid != s.uuid {
                let (winner, image) = p.generation >= s.generation ? (p, pImage) : (s, sImage)
                let loser = MetadataCopyStatus(state: .corrupt, detail: "belongs to another heap (uuid \(p.generation >= s.generation ? s.uuid : p.uuid))",
                                               generation: p.generation >= s.generation ? s.generation : p.generation)
                let ok = MetadataCopyStatus(state: .ok, generation: winner.generation)
                return p.generation >= s.generation
                    ? Choice(metadata: winner, image: image, primary: ok, secondary: loser)
                    : Choice(metadata: winner, image: image, primary: loser, secondary: ok)
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
        case (.valid(let p, let image), .invalid(let e)):
            return Choice(metadata: p, image: image, primary: .init(state: .ok, generation: p.generation),
                          secondary: .init(state: .corrupt, detail: e.description))
        case (.invalid(let e), .valid(let s, let image)):
            return Choice(metadata: s, image: image, primary: .init(state: .corrupt, detail: e.description),
                          secondary: .init(state: .ok, generation: s.generation))
        case (.invalid(let pe), .invalid(let se)):
            if pe == .notADaxHeap, se == .notADaxHeap { throw .notADaxHeapDevice(path: path) }
            if case .unsupportedVersion(let v) = pe { throw .unsupportedVersion(path: path, version: v) }
            if case .unsupportedVersion(let v) = se { throw .unsupportedVersion(path: path, version: v) }
            throw .corruptMetadata(path: path, primary: pe.description, secondary: se.description)
        }
    }
}
