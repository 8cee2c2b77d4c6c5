import DaxArenas
import Synchronization

/// An immutable layout, published to readers as a whole.
@usableFromInline
final class ArenaSnapshot: Sendable {
    @usableFromInline let layout: ArenaLayout
    init(_ layout: ArenaLayout) { self.layout = layout }
}

/// Where an arena's current layout is published. One per arena for its whole life, so
/// a handle can keep it; readers load the pointer inside a read section holding the cell's
/// ``readKey``, the provisioning path swaps it and frees the old one after a grace period.
@usableFromInline
final class ArenaCell: Sendable {
    let id: UInt64
    let name: String
    /// An `Unmanaged<ArenaSnapshot>` (+1) as bits; 0 once the arena is destroyed.
    private let current: Atomic<UInt>

    init(_ layout: ArenaLayout) {
        id = layout.id
        name = layout.name
        current = Atomic(UInt(bitPattern: Unmanaged.passRetained(ArenaSnapshot(layout)).toOpaque()))
    }

    deinit {
        if let old = Self.unmanaged(current.load(ordering: .acquiring)) { old.release() }
    }

    /// Replaces the layout (nil: the arena is destroyed) and returns the old snapshot,
    /// which the caller releases after a grace period.
    func publish(_ layout: ArenaLayout?) -> Unmanaged<ArenaSnapshot>? {
        let bits = layout.map { UInt(bitPattern: Unmanaged.passRetained(ArenaSnapshot($0)).toOpaque()) } ?? 0
        return Self.unmanaged(current.exchange(bits, ordering: .sequentiallyConsistent))
    }

    /// The current snapshot, for use inside a read section of this arena only (see
    /// ``ReadSections``: a section that loads the old snapshot began before the writer's
    /// barrier, so the writer sees it and waits for it).
    @inline(__always)
    func load() -> Unmanaged<ArenaSnapshot>? {
        Self.unmanaged(current.load(ordering: .sequentiallyConsistent))
    }

    /// What a read section of this arena records (the cell's address: unique while the
    /// cell lives, and a section's handle keeps it alive).
    @inline(__always)
    var readKey: UInt64 { UInt64(UInt(bitPattern: ObjectIdentifier(self))) }

    @inline(__always)
    static func unmanaged(_ bits: UInt) -> Unmanaged<ArenaSnapshot>? {
        UnsafeRawPointer(bitPattern: bits).map { Unmanaged.fromOpaque($0) }
    }
}
