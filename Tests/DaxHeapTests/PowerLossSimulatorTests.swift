// The power-loss simulator itself: which values a crash image can hold for a word, that a
// broken protocol is caught and replays from its seed, that a sound one passes, and that
// every way of flushing (offset calls, views, windows) is observed.

import DaxHeap
import Foundation
import Testing

/// A directory for crash images, removed with `removeTree`.
func tempDirectory(_ tag: String = "images") throws -> String {
    let path = tempPath(tag)
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
    return path
}

/// The first 8 bytes of arena `name` in a crash image.
private func firstWord(of name: String, in image: CrashImage) throws -> UInt64 {
    let heap = try Heap.open(path: image.path, mode: .readOnly)
    return try heap.arena(named: name).withView { try $0.load(at: 0) }
}

/// A simulator that crashes only at marked points and records, for each, the first word of
/// arena "a" in the all-old image.
private func recordingFirstWordOfAllOldImages(directory: String) -> (PowerLossSimulator, Locked<[UInt64]>) {
    let old = Locked<[UInt64]>([])
    let simulator = PowerLossSimulator(crashPoints: .marksOnly, directory: directory) { image in
        guard image.kind == .allOld else { return }
        let value = try firstWord(of: "a", in: image)
        old.withLock { $0.append(value) }
    }
    return (simulator, old)
}

@Suite struct PowerLossSimulatorTests {
    @Test func aWordTakesItsDurableFlushedOrLiveValueAndNothingElse() throws {
        let directory = try tempDirectory(), path = tempPath()
        defer { removeTree(directory); removeFile(path) }
        let seen = Locked<[String: Set<UInt64>]>([:])
        let simulator = PowerLossSimulator(crashPoints: .marksOnly, mixedImages: 16, directory: directory) { image in
            let value = try firstWord(of: "a", in: image)
            let key = switch image.kind { case .allOld: "old"; case .allNew: "new"; case .mixed: "mixed" }
            seen.withLock { _ = $0[key, default: []].insert(value) }
        }
        let heap = try Heap.create(path: path, size: 8 << 20, simulator: simulator)
        let window = try heap.createArena(named: "a", size: twoMiB).mapWindow()
        defer { window.close() }
        try window.store(1, at: 0)
        try window.persist(at: 0, count: 8)  // durable: 1
        try window.store(2, at: 0)
        try window.flush(at: 0, count: 8)    // flushed, not fenced: 2
        try window.store(3, at: 0)           // only in the cache: 3
        simulator.crashPoint("three values")
        try simulator.verify()
        let values = seen.withLock { $0 }
        #expect(values["old"] == [1])
        #expect(values["new"] == [3])
        #expect(values["mixed"] == [1, 2, 3])
        #expect(simulator.crashPointsTaken == 1)
    }

    /// Record, then flag: sound when the record is durable before the flag is stored,
    /// broken when both share one fence.
    private func publish(sound: Bool, simulator: PowerLossSimulator, path: String) throws {
        simulator.isArmed = false
        let heap = try Heap.create(path: path, size: 8 << 20, simulator: simulator)
        let window = try heap.createArena(named: "log", size: twoMiB).mapWindow()
        defer { window.close() }
        simulator.isArmed = true
        let record = pattern(256, seed: 7)
        try record.withUnsafeBytes { bytes in
            if sound {
                try window.memcpyPersist(at: 4096, from: bytes)
            } else {
                try window.memcpyNoDrain(at: 4096, from: bytes)
            }
        }
        try window.store(1, at: 0)
        try window.persist(at: 0, count: 8)
    }

    private func recordCheck(_ image: CrashImage) throws {
        let heap = try Heap.open(path: image.path, mode: .readOnly)
        let log = try heap.arena(named: "log")
        guard try log.withView({ try $0.load(at: 0) }) == 1 else { return }
        guard try log.read(at: 4096, count: 256) == pattern(256, seed: 7) else {
            throw TestFailure("the flag is set but the record is not all there")
        }
    }

    @Test func aFlagPublishedInTheRecordsFenceIsCaughtAndReplaysFromItsSeed() throws {
        let directory = try tempDirectory(), path = tempPath()
        defer { removeTree(directory); removeFile(path) }
        let simulator = PowerLossSimulator(directory: directory, checker: recordCheck)
        try publish(sound: false, simulator: simulator, path: path)
        let failure = try #require(simulator.failures.first)
        #expect("\(failure)".contains("seed 1"))
        #expect("\(failure)".contains("the flag is set but the record is not all there"))
        #expect(failure.keptImage.map { FileManager.default.fileExists(atPath: $0) } == true)
        guard case .fence(let n) = failure.point else { throw TestFailure("crashed at \(failure.point), not a fence") }

        // The same seed and the one crash point reproduce exactly that image.
        let replayDirectory = try tempDirectory(), replayPath = tempPath()
        defer { removeTree(replayDirectory); removeFile(replayPath) }
        let replay = PowerLossSimulator(crashPoints: .fences(n...n), directory: replayDirectory, checker: recordCheck)
        try publish(sound: false, simulator: replay, path: replayPath)
        let again = try #require(replay.failures.first)
        #expect(again.point == failure.point && again.kind == failure.kind)
        #expect(again.mixedWords.map(\.deviceOffset) == failure.mixedWords.map(\.deviceOffset))
        #expect(again.mixedWords.map(\.choice) == failure.mixedWords.map(\.choice))
    }

    @Test func aRecordMadeDurableBeforeItsFlagPasses() throws {
        let directory = try tempDirectory(), path = tempPath()
        defer { removeTree(directory); removeFile(path) }
        let simulator = PowerLossSimulator(directory: directory, checker: recordCheck)
        try publish(sound: true, simulator: simulator, path: path)
        try simulator.verify()
        #expect(simulator.crashPointsTaken >= 2)
        #expect(simulator.imagesChecked >= 2 * 6)
    }

    @Test func flushesThroughOffsetCallsViewsAndWindowsLandAtTheirDeviceOffsets() throws {
        let directory = try tempDirectory(), path = tempPath()
        defer { removeTree(directory); removeFile(path) }
        let expected = pattern(64, seed: 3)
        let oldImageBytes = Locked<[[UInt8]]>([])
        let simulator = PowerLossSimulator(crashPoints: .marksOnly, directory: directory) { image in
            guard image.kind == .allOld else { return }
            let heap = try Heap.open(path: image.path, mode: .readOnly)
            let arena = try heap.arena(named: "d")
            // Offset call, view, window: each wrote the pattern at its own place.
            let places: [UInt64] = [0, 2 * twoMiB - 32, twoMiB - 32]
            let got = try places.map { try arena.read(at: $0, count: 64) }
            oldImageBytes.withLock { $0 = got }
        }
        let heap = try Heap.create(path: path, size: 32 << 20, simulator: simulator)
        let arena = try makeDiscontiguousArena(on: heap, named: "d", extents: 3)
        try arena.memcpyPersist(at: 0, expected)
        // A view stays inside one extent: two pieces either side of the boundary at 4 MiB.
        try arena.withView { view in
            try expected.prefix(32).withUnsafeBytes { try view.memcpyPersist(at: 2 * twoMiB - 32, from: $0) }
        }
        try arena.withView { view in
            try expected.suffix(32).withUnsafeBytes { try view.memcpyPersist(at: 2 * twoMiB, from: $0) }
        }
        let window = try arena.mapWindow()
        defer { window.close() }
        try expected.withUnsafeBytes { bytes in try window.memcpyPersist(at: twoMiB - 32, from: bytes) }
        simulator.crashPoint("all three durable")
        try simulator.verify()
        #expect(oldImageBytes.withLock { $0 } == [expected, expected, expected])
    }

    @Test func aReopenedHeapKeepsWhatWasDurableAndNothingElse() throws {
        let directory = try tempDirectory(), path = tempPath()
        defer { removeTree(directory); removeFile(path) }
        let (simulator, old) = recordingFirstWordOfAllOldImages(directory: directory)
        do {
            let heap = try Heap.create(path: path, size: 8 << 20, simulator: simulator)
            let window = try heap.createArena(named: "a", size: twoMiB).mapWindow()
            try window.store(5, at: 0)  // never flushed: a clean close does not make it durable
            window.close()
        }
        let heap = try Heap.open(path: path, simulator: simulator)
        #expect(heap.persistence == .simulated)
        simulator.crashPoint("after reopen")
        try simulator.verify()
        #expect(old.withLock { $0 } == [0])
        #expect(try heap.arena(named: "a").withView { try $0.load(at: 0) } == 5)
    }

    /// The device was unmapped (the heap closed) before the crash point: the images are
    /// still built from what memory held, not read from the unmapped range.
    @Test func aCrashPointAfterTheHeapIsClosedUsesWhatMemoryHeld() throws {
        let directory = try tempDirectory(), path = tempPath()
        defer { removeTree(directory); removeFile(path) }
        let (simulator, old) = recordingFirstWordOfAllOldImages(directory: directory)
        do {
            let heap = try Heap.create(path: path, size: 8 << 20, simulator: simulator)
            let window = try heap.createArena(named: "a", size: twoMiB).mapWindow()
            try window.store(7, at: 0)  // never flushed
            window.close()
            try heap.close()
        }
        simulator.crashPoint("after close")
        try simulator.verify()
        #expect(old.withLock { $0 } == [0])
        #expect(simulator.imagesChecked > 1, "the unflushed word is undetermined: all-new and mixed images too")
    }

    @Test func aFenceMakesDurableOnlyItsOwnThreadsFlushes() throws {
        let directory = try tempDirectory(), path = tempPath()
        defer { removeTree(directory); removeFile(path) }
        let (simulator, old) = recordingFirstWordOfAllOldImages(directory: directory)
        let heap = try Heap.create(path: path, size: 8 << 20, simulator: simulator)
        let window = try heap.createArena(named: "a", size: twoMiB).mapWindow()
        defer { window.close() }
        try window.store(9, at: 0)
        try window.flush(at: 0, count: 8)
        let other = Thread { window.drain() }  // another thread's fence orders its own flushes only
        other.start()
        while !other.isFinished { usleep(1000) }
        simulator.crashPoint("flushed here, fenced there")
        window.drain()
        simulator.crashPoint("fenced here")
        try simulator.verify()
        #expect(old.withLock { $0 } == [0, 9])
    }

    @Test func fencesAndFlushesAreCountedWhetherOrNotArmed() throws {
        let directory = try tempDirectory(), path = tempPath()
        defer { removeTree(directory); removeFile(path) }
        let simulator = PowerLossSimulator(crashPoints: .everyFlushAndFence, directory: directory) { _ in }
        simulator.isArmed = false
        let heap = try Heap.create(path: path, size: 8 << 20, simulator: simulator)
        let (fences, flushes) = (simulator.fenceCount, simulator.flushCount)
        #expect(fences >= 2)  // both metadata copies
        #expect(simulator.crashPointsTaken == 0)
        simulator.isArmed = true
        _ = try heap.createArena(named: "a", size: twoMiB)
        #expect(simulator.crashPointsTaken == (simulator.fenceCount - fences) + (simulator.flushCount - flushes))
    }

    /// A checker that opens its image read-write may change it (a recovery, a repair): the
    /// image kept for a failure is the crash image itself, not what the checker left.
    @Test func aKeptImageIsTheCrashImageNotWhatTheCheckerLeft() throws {
        let directory = try tempDirectory(), path = tempPath()
        defer { removeTree(directory); removeFile(path) }
        let simulator = PowerLossSimulator(crashPoints: .marksOnly, mixedImages: 0, directory: directory) { image in
            let heap = try Heap.open(path: image.path)
            try heap.arena(named: "a").withView { view in
                try view.store(99, at: 0)
                try view.persist(at: 0, count: 8)
            }
            throw TestFailure("rejected after writing to the image")
        }
        let heap = try Heap.create(path: path, size: 8 << 20, simulator: simulator)
        let window = try heap.createArena(named: "a", size: twoMiB).mapWindow()
        defer { window.close() }
        try window.store(5, at: 0)
        try window.persist(at: 0, count: 8)
        simulator.crashPoint("5 is durable")
        let failure = try #require(simulator.failures.first)
        let kept = try #require(failure.keptImage)
        let word = try Heap.open(path: kept, mode: .readOnly).arena(named: "a").withView { try $0.load(at: 0) }
        #expect(word == 5, "the kept image holds what the checker wrote, not the crash image")
    }
}
