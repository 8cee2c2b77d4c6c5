/// A test hook, visible inside this package only: makes metadata writes fail partway, as
/// a damaged device would, so that the update protocol's failure paths can be exercised
/// (and crash-swept) where no real fault can be had (block 0 of a file cannot be cut off).
///
/// Production code never creates one; ``Heap`` takes it through a package-only parameter.
package final class MetadataFaults: Sendable {
    package enum Kind: Sendable {
        /// A media error (SIGBUS) at the first byte not stored.
        case media
        /// An I/O error from the persist call (msync's EIO); the bytes may or may not be durable.
        case io
    }

    package struct Fault: Sendable {
        package var copy: MetadataIO.Copy
        /// How many leading bytes of the copy are stored before it fails.
        package var storedBytes: Int
        package var kind: Kind
        /// How many writes of that copy fail, from the next one on.
        package var times: Int

        package init(copy: MetadataIO.Copy, storedBytes: Int, kind: Kind, times: Int = .max) {
            self.copy = copy
            self.storedBytes = storedBytes
            self.kind = kind
            self.times = times
        }
    }

    private let faults: Locked<[Fault]>

    package init(_ faults: [Fault]) { self.faults = Locked(faults) }

    /// The fault the next write of `copy` meets, if any, counting it.
    func take(_ copy: MetadataIO.Copy) -> Fault? {
        faults.withLock { faults in
            guard let i = faults.firstIndex(where: { $0.copy == copy && $0.times > 0 }) else { return nil }
            faults[i].times -= 1
            return faults[i]
        }
    }
}
