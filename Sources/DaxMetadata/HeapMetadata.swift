// The arena table as it is kept on the media (docs/FORMAT.md), in memory.

/// The fixed geometry of every DaxHeap device.
public enum Geometry {
    /// The heap's granularity: every extent starts and ends on a multiple of this, and each
    /// metadata copy owns one block of this size (the device-dax PMD fault size).
    public static let blockSize: UInt64 = 2 << 20
    /// Two metadata blocks and one data block.
    public static let minimumDeviceSize: UInt64 = 3 * blockSize

    /// Device offset of the primary copy: the first block.
    public static let primaryOffset: UInt64 = 0
    /// Device offset of the secondary copy: the last block, as far from the primary as
    /// the device allows (one localized media error cannot take both).
    public static func secondaryOffset(deviceSize: UInt64) -> UInt64 { deviceSize - blockSize }
    /// The usable region between the two metadata blocks: the root resource.
    public static func usableRegion(deviceSize: UInt64) -> Range<UInt64> {
        blockSize ..< deviceSize - blockSize
    }

    /// Bytes in a device range (`Range.count` is an Int, which traps beyond 2^63).
    public static func length(of range: Range<UInt64>) -> UInt64 { range.upperBound - range.lowerBound }

    /// Whether `value` is a multiple of the block size.
    public static func isAligned(_ value: UInt64) -> Bool { value % blockSize == 0 }
}

/// A random identity given to a heap when it is created; both copies carry it.
public struct HeapUUID: Hashable, Sendable, CustomStringConvertible {
    public var bytes: (UInt64, UInt64)

    public init(high: UInt64, low: UInt64) { bytes = (high, low) }

    /// A new random (version 4) UUID.
    public static func random() -> HeapUUID {
        var rng = SystemRandomNumberGenerator()
        var high = rng.next() as UInt64
        var low = rng.next() as UInt64
        high = (high & ~0xF000) | 0x4000  // version 4
        low = (low & ~(0xC000 << 48)) | (0x8000 << 48)  // RFC 4122 variant
        return HeapUUID(high: high, low: low)
    }

    public static func == (a: HeapUUID, b: HeapUUID) -> Bool { a.bytes == b.bytes }
    public func hash(into hasher: inout Hasher) {
        hasher.combine(bytes.0)
        hasher.combine(bytes.1)
    }

    public var description: String {
        let h = String(bytes.0, radix: 16).leftPadded(to: 16)
        let l = String(bytes.1, radix: 16).leftPadded(to: 16)
        let s = Array(h + l)
        return [s[0..<8], s[8..<12], s[12..<16], s[16..<20], s[20..<32]].map { String($0) }.joined(separator: "-")
    }
}

extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

/// One extent of an arena: `length` bytes at `deviceOffset`, holding the arena's bytes
/// `[arenaOffset, arenaOffset + length)`.
public struct ExtentRecord: Hashable, Sendable {
    public var deviceOffset: UInt64
    public var arenaOffset: UInt64
    public var length: UInt64

    public init(deviceOffset: UInt64, arenaOffset: UInt64, length: UInt64) {
        self.deviceOffset = deviceOffset
        self.arenaOffset = arenaOffset
        self.length = length
    }
}

/// One arena: a persistent id, a unique name, and its extents ordered by arena offset.
public struct ArenaRecord: Hashable, Sendable {
    /// Never reused within a heap, so a stale handle cannot reach a newer arena of the same name.
    public var id: UInt64
    public var name: String
    public var extents: [ExtentRecord]

    public init(id: UInt64, name: String, extents: [ExtentRecord]) {
        self.id = id
        self.name = name
        self.extents = extents
    }

    /// Sum of the extents' lengths.
    public var size: UInt64 { extents.reduce(0) { $0 + $1.length } }
}

/// Everything one metadata copy holds.
public struct HeapMetadata: Hashable, Sendable {
    public var uuid: HeapUUID
    /// Size of the whole device in bytes, both metadata blocks included.
    public var deviceSize: UInt64
    /// The device's mapping alignment when the heap was created (2 MiB for a file).
    public var alignment: UInt64
    /// Incremented by every update; the valid copy with the higher value wins.
    public var generation: UInt64
    /// The id the next created arena gets.
    public var nextArenaID: UInt64
    /// Arenas ordered by id.
    public var arenas: [ArenaRecord]
    /// What identified the device-dax's physical layout when the heap recorded it; nil for
    /// a file, or a heap made before format version 2. A copy holding one is version 2.
    public var identity: DeviceIdentityRecord?

    public init(
        uuid: HeapUUID, deviceSize: UInt64, alignment: UInt64, generation: UInt64,
        nextArenaID: UInt64 = 1, arenas: [ArenaRecord] = [], identity: DeviceIdentityRecord? = nil
    ) {
        self.identity = identity
        self.uuid = uuid
        self.deviceSize = deviceSize
        self.alignment = alignment
        self.generation = generation
        self.nextArenaID = nextArenaID
        self.arenas = arenas
    }

    /// Total number of extents over all arenas.
    public var extentCount: Int { arenas.reduce(0) { $0 + $1.extents.count } }
}
