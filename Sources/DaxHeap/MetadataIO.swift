import DaxDevice
import DaxMetadata
#if canImport(Glibc)
import Glibc
#endif

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
        /// A media error (SIGBUS) at this device offset.
        case unreadable(deviceOffset: UInt64)
    }

    /// Copies the header, then as much of the table as the header claims (bounded by the
    /// block), out of the mapping through the guarded copy, and decodes it.
    static func read(_ copy: Copy, on device: MappedDevice) -> ReadResult {
        let offset = copy.offset(on: device)
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

    /// Writes a whole copy through the guarded copy and makes it durable before returning.
    static func write(_ image: [UInt8], copy: Copy, on device: MappedDevice) throws(DeviceError) {
        var count = image.count
        let crash = CrashInjection.shared.map { $0.reserve(count) }
        if let crash, crash.crashAfter { count = crash.allowed }
        try image.withUnsafeBytes { bytes in
            Result { () throws(DeviceError) in
                try device.guardedMemcpyPersist(offset: copy.offset(on: device), from: UnsafeRawBufferPointer(rebasing: bytes.prefix(count)))
            }
        }.get()
        if let crash, crash.crashAfter { CrashInjection.kill() }
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

    /// The recovery rule: of the valid copies, the one with the higher generation wins
    /// (the primary on a tie); the other is stale if older, corrupt if it is invalid or
    /// belongs to another heap, unreadable on a media error. No valid copy: not a heap, or
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

/// The fault-injection point for crash tests (docs/FORMAT.md, "Crash injection"): with
/// `DAXHEAP_CRASH_AFTER_BYTES=N` in the environment, the process counts every byte it stores
/// into either metadata block, in the order stored (each copy is written whole), and once N
/// bytes are stored and persisted it sends itself SIGKILL before storing more. A process
/// that stores fewer than N bytes is never killed. Unset, it costs one load of a nil.
final class CrashInjection: Sendable {
    static let shared: CrashInjection? = {
        guard let text = getenv("DAXHEAP_CRASH_AFTER_BYTES"), let limit = Int(String(cString: text)), limit > 0 else {
            return nil
        }
        return CrashInjection(limit: limit)
    }()

    let limit: Int
    let stored = Locked<Int>(0)

    init(limit: Int) { self.limit = limit }

    /// Accounts for a store of `count` bytes: how many may be stored, and whether the
    /// process must die once they are.
    func reserve(_ count: Int) -> (allowed: Int, crashAfter: Bool) {
        stored.withLock { stored in
            if stored + count >= limit {
                let allowed = limit - stored
                stored = limit
                return (allowed, true)
            }
            stored += count
            return (count, false)
        }
    }

    static func kill() -> Never {
        _ = Glibc.kill(getpid(), SIGKILL)
        fatalError("SIGKILL did not stop the process")
    }
}
