// Power-loss simulation at cache-line granularity: a heap opened with a simulator makes
// its stores with plain copies and reports every flush and fence here; at each crash point
// the simulator writes the device images a power loss could leave and hands each to a
// checker. What it proves and what it cannot catch: docs/POWERLOSS.md.

import DaxDevice
#if canImport(Glibc)
import Glibc
#endif

/// Simulates power loss under a heap, for crash-consistency tests (the heap's own, and a
/// database's built on it).
///
/// Open or create the heap with `simulator:`; run the workload; then call ``verify()``.
/// At each crash point (see ``CrashPoints``) the simulator pauses the thread that reached
/// it, writes the all-old image, the all-new image and `mixedImages` seeded mixtures, one
/// after the other, to a file in `directory`, and calls `checker` on each. The checker
/// opens the image as a heap (never the simulated heap itself) and throws if what must hold
/// does not. Failures are collected, not thrown at the crash point (a fence cannot throw).
///
/// ```swift
/// let simulator = PowerLossSimulator(directory: dir) { image in
///     let heap = try Heap.open(path: image.path, mode: .readOnly)
///     guard heap.arenas.count <= 1 else { throw Broken.tooManyArenas }
/// }
/// let heap = try Heap.create(path: path, size: 16 << 20, simulator: simulator)
/// _ = try heap.createArena(named: "log", size: 2 << 20)
/// try simulator.verify()
/// ```
public final class PowerLossSimulator: DurabilityObserver, Sendable {
    /// Checks one crash image; throws to reject it.
    public typealias Checker = @Sendable (CrashImage) throws -> Void

    public let crashPoints: CrashPoints
    public let mixedImages: Int
    public let seed: UInt64
    /// Where images are written (and failing ones kept).
    public let directory: String
    private let checker: Checker
    private let state = Locked(State())

    private struct State {
        var media: ShadowMedia?
        var fences = 0
        var flushes = 0
        var marks = 0
        var armed = true
        var checking = false
        var pointsTaken = 0
        var imagesChecked = 0
        var failures: [PowerLossFailure] = []
    }

    /// How many failing images are kept as files.
    static let keptFailures = 4

    /// - Parameters:
    ///   - crashPoints: where to crash; every fence by default.
    ///   - mixedImages: seeded random mixtures per crash point, besides all-old and all-new.
    ///   - seed: drives the mixtures; a failure prints it, to replay.
    ///   - directory: an existing directory for the image files.
    ///   - checker: asserts what must hold in an image.
    public init(crashPoints: CrashPoints = .everyFence, mixedImages: Int = 4, seed: UInt64 = 1,
                directory: String, checker: @escaping Checker) {
        self.crashPoints = crashPoints
        self.mixedImages = mixedImages
        self.seed = seed
        self.directory = directory
        self.checker = checker
    }

    deinit { state.withLock { $0.media?.release() } }

    // MARK: - Control and results

    /// Whether crash points are taken (fences and flushes are counted either way, so that
    /// ordinals stay the same whether or not a stretch of the run is swept).
    public var isArmed: Bool {
        get { state.withLock { $0.armed } }
        set { state.withLock { $0.armed = newValue } }
    }

    /// A crash point the caller marks (taken when ``CrashPoints/marks`` is set).
    public func crashPoint(_ label: String) {
        state.withLock { s in
            s.marks += 1
            takeImagesIfDue(.mark(label, s.marks), &s)
        }
    }

    /// Fences observed so far.
    public var fenceCount: Int { state.withLock { $0.fences } }
    /// Flushes observed so far.
    public var flushCount: Int { state.withLock { $0.flushes } }
    /// Crash points at which images were taken.
    public var crashPointsTaken: Int { state.withLock { $0.pointsTaken } }
    /// Images handed to the checker.
    public var imagesChecked: Int { state.withLock { $0.imagesChecked } }
    /// Every image the checker rejected, in order.
    public var failures: [PowerLossFailure] { state.withLock { $0.failures } }

    /// Throws the first failure, if any image was rejected.
    public func verify() throws(PowerLossFailure) {
        if let first = failures.first { throw first }
    }

    // MARK: - DurabilityObserver (called by the device)

    public func deviceMapped(base: UnsafeRawPointer, size: UInt64) {
        state.withLock { s in
            // A simulator follows one device: reopened, it keeps what was durable.
            if s.media != nil {
                precondition(s.media!.size == Int(size), "a PowerLossSimulator follows one device of one size")
                s.media!.remap(base: base)
            } else {
                s.media = ShadowMedia(base: base, size: Int(size))
            }
        }
    }

    public func deviceUnmapped() {
        state.withLock { $0.media?.unmap() }
    }

    public func windowMapped(at address: UnsafeRawPointer, deviceOffset: UInt64, length: UInt64) {
        state.withLock { $0.media?.mapWindow(at: address, deviceOffset: deviceOffset, length: length) }
    }

    public func windowUnmapped(at address: UnsafeRawPointer, length: UInt64) {
        state.withLock { $0.media?.unmapWindow(at: address, length: length) }
    }

    public func flushed(_ address: UnsafeRawPointer, length: UInt64) {
        state.withLock { s in
            s.flushes += 1
            takeImagesIfDue(.flush(s.flushes), &s)
            s.media?.flush(address, length: length, thread: UInt(pthread_self()))
        }
    }

    public func fenced() {
        state.withLock { s in
            s.fences += 1
            takeImagesIfDue(.fence(s.fences), &s)
            s.media?.fence(thread: UInt(pthread_self()))
        }
    }

    // MARK: - Taking images

    /// At a crash point: every image, checked in turn, with every other thread that
    /// flushes or fences held at the lock (stores in flight elsewhere may or may not
    /// appear, as at a real power loss).
    private func takeImagesIfDue(_ point: CrashEvent, _ s: inout State) {
        guard s.armed, !s.checking, crashPoints.includes(point), let media = s.media else { return }
        s.checking = true
        defer { s.checking = false }
        s.pointsTaken += 1
        let words = media.undeterminedWords()
        var kinds: [CrashImage.Kind] = [.allOld]
        if !words.isEmpty {
            kinds.append(.allNew)
            for index in 0..<mixedImages { kinds.append(.mixed(index: index, seed: imageSeed(point, index))) }
        }
        for kind in kinds {
            let choices = choose(words, for: kind)
            let overrides = zip(words, choices).compactMap { word, choice in
                choice == .durable ? nil : (word.deviceOffset, word.value(choice))
            }
            let path = "\(directory)/crash.img"
            let image = CrashImage(path: path, point: point, kind: kind, undeterminedWords: words.count)
            var reason = media.writeImage(to: path, overrides: overrides)
            if reason == nil {
                s.imagesChecked += 1
                do { try checker(image) } catch { reason = "\(error)" }
            }
            guard let reason else { continue }
            let mixed = zip(words, choices).filter { $0.1 != .durable }.map { (UInt64($0.0.deviceOffset), $0.1) }
            s.failures.append(PowerLossFailure(point: point, kind: kind, seed: seed, reason: reason, mixedWords: mixed,
                                               keptImage: keepImage(media, overrides, number: s.failures.count)))
        }
    }

    private func choose(_ words: [UndeterminedWord], for kind: CrashImage.Kind) -> [WordChoice] {
        switch kind {
        case .allOld: return words.map { _ in .durable }
        case .allNew: return words.map { _ in .live }
        case .mixed(_, let imageSeed):
            var random = SplitMix64(seed: imageSeed)
            return words.map { word in
                let choices = word.choices
                return choices[Int(random.next() % UInt64(choices.count))]
            }
        }
    }

    /// One seed per (crash point, image), from the simulator's seed: stable across runs.
    private func imageSeed(_ point: CrashEvent, _ index: Int) -> UInt64 {
        let code: UInt64 = switch point {
        case .fence(let n): UInt64(n) << 2
        case .flush(let n): UInt64(n) << 2 | 1
        case .mark(_, let n): UInt64(n) << 2 | 2
        }
        var mixer = SplitMix64(seed: seed ^ (code &* 0x9E37_79B9_7F4A_7C15) ^ UInt64(index))
        return mixer.next()
    }

    /// Writes the failing image again, as the checker got it: the checker may have opened
    /// the one it was given read-write, and recovery or repair changed it.
    private func keepImage(_ media: ShadowMedia, _ overrides: [(Int, UInt64)], number: Int) -> String? {
        guard number < Self.keptFailures else { return nil }
        let kept = "\(directory)/failure-\(number + 1).img"
        return media.writeImage(to: kept, overrides: overrides) == nil ? kept : nil
    }
}

/// Steele, Lea and Flood's SplitMix64: a small seeded generator whose output is the same
/// on every platform, so that a printed seed replays an image exactly.
struct SplitMix64 {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
