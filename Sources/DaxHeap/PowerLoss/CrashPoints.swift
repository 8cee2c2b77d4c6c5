// What a power-loss simulation is asked for and what it reports.

/// Where a ``PowerLossSimulator`` simulates a crash: before the n-th fence or flush it
/// observes (counted from 1 over the simulator's life, all threads together), and at
/// every point the caller marks with ``PowerLossSimulator/crashPoint(_:)``.
public struct CrashPoints: Sendable {
    /// Ordinals of the fences before which to crash.
    public var fences: [ClosedRange<Int>]
    /// Ordinals of the flushes before which to crash.
    public var flushes: [ClosedRange<Int>]
    /// Whether the caller's marked points are crash points.
    public var marks: Bool

    public init(fences: [ClosedRange<Int>] = [], flushes: [ClosedRange<Int>] = [], marks: Bool = true) {
        self.fences = fences
        self.flushes = flushes
        self.marks = marks
    }

    /// Before every fence, and at every marked point.
    public static let everyFence = CrashPoints(fences: [1...Int.max])
    /// Before every flush and every fence, and at every marked point.
    public static let everyFlushAndFence = CrashPoints(fences: [1...Int.max], flushes: [1...Int.max])
    /// Only at the points the caller marks.
    public static let marksOnly = CrashPoints()
    /// Before the fences with these ordinals (a replay names one: `.fences(17...17)`).
    public static func fences(_ ordinals: ClosedRange<Int>) -> CrashPoints { CrashPoints(fences: [ordinals], marks: false) }

    func includes(_ event: CrashEvent) -> Bool {
        switch event {
        case .fence(let n): fences.contains { $0.contains(n) }
        case .flush(let n): flushes.contains { $0.contains(n) }
        case .mark: marks
        }
    }
}

/// The moment a crash image stands for.
public enum CrashEvent: Sendable, Hashable, CustomStringConvertible {
    /// Just before the n-th fence: the flushes it would have made durable may or may not be.
    case fence(Int)
    /// Just before the n-th flush.
    case flush(Int)
    /// At the caller's n-th marked point, with its label.
    case mark(String, Int)

    public var description: String {
        switch self {
        case .fence(let n): "fence \(n)"
        case .flush(let n): "flush \(n)"
        case .mark(let label, let n): "mark \(n) (\"\(label)\")"
        }
    }
}

/// One device image a crash could leave, written to a file for the checker.
public struct CrashImage: Sendable {
    /// Which of the images taken at a crash point this is.
    public enum Kind: Sendable, Hashable, CustomStringConvertible {
        /// No line that was not yet durable reached the media.
        case allOld
        /// Every store, flushed or not, reached the media.
        case allNew
        /// Each undetermined 8-byte word took one of its possible values, chosen by `seed`.
        case mixed(index: Int, seed: UInt64)

        public var description: String {
            switch self {
            case .allOld: "all-old image"
            case .allNew: "all-new image"
            case .mixed(let index, let seed): "mixed image \(index) (seed \(seed))"
            }
        }
    }

    /// The image file: a whole device, to open as a heap (`Heap.open(path:)`).
    public let path: String
    /// The crash point.
    public let point: CrashEvent
    public let kind: Kind
    /// How many aligned 8-byte words could hold more than one value at this point.
    public let undeterminedWords: Int
}

/// Which value an undetermined word took in an image.
public enum WordChoice: String, Sendable {
    /// The value that was durable (made so by an earlier fence, or there from the start).
    case durable
    /// The value the line had when it was flushed, not yet fenced.
    case flushed
    /// The value in memory at the crash, flushed or not.
    case live
}

/// A crash image its checker rejected: everything needed to replay it.
public struct PowerLossFailure: Error, Sendable, CustomStringConvertible {
    public let point: CrashEvent
    public let kind: CrashImage.Kind
    /// The simulator's seed (replay with the same seed and `CrashPoints` naming `point`).
    public let seed: UInt64
    /// What the checker threw.
    public let reason: String
    /// The words that did not take their durable value in this image (device offset, choice).
    public let mixedWords: [(deviceOffset: UInt64, choice: WordChoice)]
    /// A copy of the failing image, kept for inspection (the first few failures only).
    public let keptImage: String?

    public var description: String {
        let shown = mixedWords.prefix(8).map { "0x\(String($0.deviceOffset, radix: 16))=\($0.choice.rawValue)" }
        let more = mixedWords.count > shown.count ? ", ... (\(mixedWords.count) in all)" : ""
        let kept = keptImage.map { "; image kept at \($0)" } ?? ""
        return "power-loss check failed at \(point), \(kind), simulator seed \(seed): \(reason); "
            + "words not at their durable value: [\(shown.joined(separator: ", "))\(more)]\(kept)"
    }
}
