import DaxArenas
import Synchronization

/// An immutable layout, published to readers as a whole.
@usableFromInline
final class ArenaSnapshot: Sendable {
    @usableFromInline let layout: ArenaLayout
    init(_ layout: ArenaLayout) { self.layout = layout }
}

/// Where an arena's current layout is published. One per arena for its whole life, so
/// a handle can keep it; readers load the pointer inside a read section, the provisioning
/// path swaps it and waits a grace period before freeing the old one.
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

    /// The current snapshot, for use inside a read section only. Sequentially consistent,
    /// which the grace-period argument in ``ReadSections`` relies on.
    @inline(__always)
    func load() -> Unmanaged<ArenaSnapshot>? {
        Self.unmanaged(current.load(ordering: .sequentiallyConsistent))
    }

    @inline(__always)
    static func unmanaged(_ bits: UInt) -> Unmanaged<ArenaSnapshot>? {
        UnsafeRawPointer(bitPattern: bits).map { Unmanaged.fromOpaque($0) }
    }
}
