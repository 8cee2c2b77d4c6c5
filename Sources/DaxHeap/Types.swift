import DaxArenas
import DaxDevice
import DaxMetadata

/// How a heap is opened.
public enum HeapMode: Sendable {
    /// Shared lock, read-only mapping: never writes, not even a repair.
    case readOnly
    /// Exclusive lock; a bad or stale metadata copy is repaired at open.
    case readWrite
}

/// What backs a heap.
public enum HeapDeviceKind: String, Sendable {
    /// A device-dax character device (/dev/daxX.Y).
    case deviceDax = "devdax"
    /// A regular file emulating one.
    case file
}

/// How stores to the heap are made durable.
public enum Persistence: String, Sendable {
    /// CPU cache flush and fence (libpmem): device-dax, or a file libpmem treats as
    /// persistent memory (`PMEM_IS_PMEM_FORCE=1`).
    case pmem
    /// msync(2) of the touched pages: a file on an ordinary filesystem.
    case msync
    /// Nothing reaches the media by itself: a ``PowerLossSimulator`` keeps the image that
    /// flushes and fences made durable (the heap was opened with one).
    case simulated
}

/// The state of one metadata copy.
public enum MetadataCopyState: String, Sendable {
    /// Valid and current.
    case ok
    /// Damaged, inconsistent or absent (the reason says which).
    case corrupt
    /// Could not be read (a media error).
    case unreadable
    /// Valid but older than the other copy (an update was interrupted).
    case stale
}

/// One metadata copy's state and, when not ok, why.
public struct MetadataCopyStatus: Equatable, Sendable {
    public var state: MetadataCopyState
    /// Empty when ok.
    public var detail: String
    /// The copy's generation when it could be decoded.
    public var generation: UInt64?

    public init(state: MetadataCopyState, detail: String = "", generation: UInt64? = nil) {
        self.state = state
        self.detail = detail
        self.generation = generation
    }
}

/// One extent of an arena: `length` bytes at `deviceOffset` on the device holding the
/// arena's bytes from `arenaOffset`.
public struct Extent: Hashable, Sendable {
    public var deviceOffset: UInt64
    public var arenaOffset: UInt64
    public var length: UInt64

    init(_ record: ExtentRecord) {
        deviceOffset = record.deviceOffset
        arenaOffset = record.arenaOffset
        length = record.length
    }
}

/// A description of an arena at one moment.
public struct ArenaInfo: Hashable, Sendable {
    public var name: String
    /// The arena's persistent id (never reused within the heap).
    public var id: UInt64
    public var size: UInt64
    /// Ordered by arena offset.
    public var extents: [Extent]

    init(_ layout: ArenaLayout) {
        name = layout.name
        id = layout.id
        size = layout.size
        extents = layout.extents.map(Extent.init)
    }
}

/// A position in an arena that stays meaningful across processes and mappings: it names
/// the arena by its persistent id, never by address. 16 bytes, safe to store on the heap.
@frozen
public struct PersistentReference: Hashable, Sendable, BitwiseCopyable {
    public var arenaID: UInt64
    public var offset: UInt64

    public init(arenaID: UInt64, offset: UInt64) {
        self.arenaID = arenaID
        self.offset = offset
    }
}

/// A known bad (poisoned) range of the device, and what lives there.
public struct BadBlock: Hashable, Sendable, CustomStringConvertible {
    /// What the bad bytes belong to.
    public enum Location: Hashable, Sendable {
        case primaryMetadata
        case secondaryMetadata
        /// Arena `name`, from byte `offset` of the arena on.
        case arena(name: String, offset: UInt64)
        /// Space no arena holds.
        case unallocated
        /// Past the heap's end: device space the heap does not use (the device grew, or
        /// was not cut yet after a shrink).
        case pastHeapEnd
    }

    public var deviceOffset: UInt64
    public var length: UInt64
    public var location: Location

    public init(deviceOffset: UInt64, length: UInt64, location: Location) {
        self.deviceOffset = deviceOffset
        self.length = length
        self.location = location
    }

    public var description: String {
        let place = switch location {
        case .primaryMetadata: "in the primary metadata copy"
        case .secondaryMetadata: "in the secondary metadata copy"
        case .arena(let name, let offset): "in arena \(debugQuoted(name)) at offset \(offset)"
        case .unallocated: "in unallocated space"
        case .pastHeapEnd: "past the heap's end (unused device space)"
        }
        return "bad block at device offset \(deviceOffset), \(length) bytes, \(place)"
    }
}

/// What `Heap.check()` found.
public struct HeapCheckReport: Equatable, Sendable {
    public var primary: MetadataCopyStatus
    public var secondary: MetadataCopyStatus
    /// Known bad ranges, split by what they hit, in device order.
    public var badBlocks: [BadBlock]
    /// Every problem found, one line each; empty when healthy.
    public var problems: [String]
    /// Valid copies of this heap's metadata found at neither of its two places, in free
    /// space or past the heap's end (left by an interrupted grow or shrink); each is also a
    /// problem, and `Heap.repair(path:)` clears them.
    public var oldCopies: [OldMetadataCopy] = []
    public var isHealthy: Bool { problems.isEmpty }
}
