import DaxHeap

/// A reference to an object, in one aligned 8-byte word: the arena's id in the high 16
/// bits, the object's offset in the arena in the low 48. Zero is the null reference.
///
/// Position-independent, like ``PersistentReference`` (which it converts to), so that it
/// can be stored on the media and followed in another process, and small enough to be
/// published with one atomic store. An object heap lives in an arena whose id is below
/// 65,536 and whose offsets are below 2^48 (256 TiB).
public struct ObjectReference: Hashable, Sendable, BitwiseCopyable, CustomStringConvertible {
    /// The word as stored on the media.
    public let rawValue: UInt64

    /// The null reference (the word 0).
    public static let null = ObjectReference(rawValue: 0)

    static let offsetBits: UInt64 = 48
    static let offsetMask: UInt64 = (1 << offsetBits) - 1

    /// The reference stored as `rawValue` (any word; ``ObjectHeap`` validates it before use).
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// The reference to `offset` in the arena with id `arenaTag` (below 65,536).
    init(arenaTag: UInt64, offset: UInt64) {
        rawValue = arenaTag << Self.offsetBits | offset
    }

    public var isNull: Bool { rawValue == 0 }
    /// The low 16 bits of the id of the arena the object lives in.
    public var arenaTag: UInt64 { rawValue >> Self.offsetBits }
    /// The object's offset in its arena.
    public var offset: UInt64 { rawValue & Self.offsetMask }
    /// The same place as a 16-byte ``PersistentReference``.
    public var persistentReference: PersistentReference { PersistentReference(arenaID: arenaTag, offset: offset) }

    public var description: String { isNull ? "null" : "object \(arenaTag):\(offset)" }
}

/// An 8-byte word of an object heap that holds an ``ObjectReference``: a root, or a field
/// of a live object. Allocation publishes into a slot and freeing empties one, so that
/// the object and the word that reaches it become durable together.
public struct ObjectSlot: Hashable, Sendable {
    /// The word's offset in the object heap's arena (a multiple of 8).
    public let offset: UInt64

    /// The slot at `offset` in the object heap's arena.
    public init(offset: UInt64) { self.offset = offset }

    /// The slot `field` bytes into `object` (a multiple of 8).
    public init(in object: ObjectReference, at field: UInt64) {
        offset = object.offset &+ field
    }
}

/// Whether an object's words may hold references, which decides what recovery scans.
///
/// Recovery finds the live objects by following references from the roots (see
/// docs/OBJECTS.md); it reads only objects of kind ``references``, and every aligned word
/// in them that decodes as a reference to an object of this heap keeps that object alive.
/// Such objects read as zero when allocated. ``data`` objects are never scanned and are
/// not cleared: their bytes are whatever the block last held until written.
public enum ObjectKind: UInt8, Sendable {
    /// Bytes only: never scanned for references; contents unspecified until written.
    case data = 0
    /// May hold references in its 8-byte words; zero when allocated.
    case references = 1
}
