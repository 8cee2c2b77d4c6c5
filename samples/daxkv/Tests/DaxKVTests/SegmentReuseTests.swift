import DaxHeap
@testable import DaxKV
import Foundation
import Synchronization
import Testing

/// A get loads a slot, then reads the record it points at. In between, the writer may
/// overwrite the key elsewhere, free the record's segment, reuse it (zeroed, last in first
/// out) and append another key's record exactly where the old one was: a complete record
/// with a valid checksum, which the get must not take for a tag collision (and walk on to
/// report the key absent) nor, were it the key's own unfenced append, return.
@Suite("DaxKV gets across segment reuse")
struct SegmentReuseTests {
    #if DEBUG  // the reader's pause is a hook compiled into debug builds only
    /// A reader is paused between loading the slot of `target` (its record at the first
    /// offset of segment 0) and reading the record. Meanwhile the writer overwrites the
    /// key, segment 0 is freed and becomes the tail again, and another key's record of the
    /// same length lands at that offset. With `rebuild`, the index is also rebuilt first,
    /// so the paused reader goes on probing the old table, whose slot still points there.
    @Test("a get paused while its record's segment is reused returns the key's current value", arguments: [false, true])
    func pausedReader(rebuild: Bool) throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        // Four segments from the start, so that the writer below never grows the arena:
        // the free segments, and so which one is reused next, stay as planned.
        let store = try KVStore.open(heap: try scratch.heap(), options: KVStoreOptions(initialDataSize: 4 * Format.segmentSize).oneShard)
        let target = bytes("target-key"), other = bytes("other--key")
        let filler = bytes("filler"), pad = bytes("pad")
        let value = 1000, big = Format.maxValueSize
        let recordAt = Format.segmentStart(0)  // the store's first record
        try store.put(target, stamped(1, version: 1, count: value))
        try store.put(filler, stamped(2, version: 1, count: big))

        let pause = Pause()
        store.only.afterSlotLoad = { offset in
            guard offset == recordAt, pause.armed.exchange(false, ordering: .acquiringAndReleasing) else { return }
            pause.reached.signal()
            // Bounded, so that a writer stuck behind this reader's read section cannot
            // hang the suite: the checks below then fail instead.
            _ = pause.resume.wait(timeout: .now() + 10)
        }
        let got = Locked<Result<[UInt8]?, any Error>?>(nil)
        let done = DispatchGroup()
        done.enter()
        Thread.detachNewThread {
            defer { done.leave() }
            let result = Result(catching: { try store.get(target) })
            got.withLock { $0 = result }
        }
        #expect(pause.reached.wait(timeout: .now() + 10) == .success, "the reader never loaded the slot")

        // The writer, while the reader is paused. The filler's second copy does not fit
        // in segment 0: the tail moves to segment 1 (segments 3 and 2 stay free).
        try store.put(filler, stamped(2, version: 2, count: big))
        var used = UInt64(Format.recordSize(keyCount: filler.count, valueCount: big))
        if rebuild {
            // Enough inserts to pass 3/4 of the 4096 slots: a new table, no index growth.
            for i in 0 ..< 3100 { try store.put(key(i), stamped(i, version: 0, count: 8)) }
            used += 3100 * UInt64(Format.recordSize(keyCount: key(0).count, valueCount: 8))
            #expect(store.indexRebuilds == 1)
        }
        // The overwrite leaves segment 0 without a live record: it is free again, and
        // the next segment the tail takes (last in, first out).
        try store.put(target, stamped(1, version: 2, count: value))
        used += UInt64(Format.recordSize(keyCount: target.count, valueCount: value))
        // Fill segment 1 to its last byte, so that the next record starts segment 0 anew.
        let room = Format.segmentSize - used
        try store.put(pad, stamped(3, version: 1, count: Int(room) - Format.recordHeaderSize - pad.count))
        try store.put(other, stamped(4, version: 1, count: value))
        #expect(try store.only.data.arena.read(at: recordAt + UInt64(Format.keyOffset), count: other.count) == other,
                "the other key's record should have landed where the paused reader's slot points")

        pause.resume.signal()
        #expect(done.wait(timeout: .now() + 10) == .success)
        let outcome = try #require(got.withLock { $0 }, "the reader did not finish")
        let result = try #require(try outcome.get(), "the get reported the key absent")
        #expect(unstamp(result).map { "key \($0.index) version \($0.version)" } == "key 1 version 2", "the get must return the key's current value")
    }
    #endif

    /// One writer overwrites 64 always-present keys, values of one size, then one 1 MiB
    /// value: it no longer fits in the tail segment, so every round starts a segment, and
    /// with four segments each is freed and reused (last in, first out) every few rounds,
    /// its records at the same offsets as before but, the order rotating, of other keys.
    /// More readers than cores get the keys and are preempted between a slot load and the
    /// record read now and then. No get may report such a key absent, or return a value
    /// that was never put or was not current at some instant during the get.
    @Test("readers never miss an always-present key while segments are reused", arguments: [false, true])
    func readersAcrossReuse(batched: Bool) throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let dataSize = 4 * Format.segmentSize
        let store = try KVStore.open(heap: try scratch.heap(), options: KVStoreOptions(initialDataSize: dataSize).oneShard)
        let keys = 64, valueSize = 256
        let names = (0 ..< keys).map { key($0) }
        for k in 0 ..< keys { try store.put(names[k], stamped(k, version: 0, count: valueSize)) }
        // versions[k]: the newest version of key k whose put began; versions[keys + k]: the
        // newest whose put returned.
        let shared = Shared(count: 2 * keys)
        // Readers stop even when the writer throws (else they spin on, and the run never ends).
        defer { shared.stop.store(true, ordering: .releasing) }
        let readers = DispatchGroup()
        for r in 0 ..< 4 {
            readers.enter()
            Thread.detachNewThread {
                defer { readers.leave() }
                let started = shared.versions, done = shared.versions + keys
                var buffer = [UInt8](repeating: 0, count: valueSize)
                var x = UInt64(r + 1)
                while !shared.stop.load(ordering: .acquiring) {
                    x = x &* 6364136223846793005 &+ 1442695040888963407
                    let k = Int((x >> 33) % UInt64(keys))
                    if batched {
                        // Five keys from k on, looked up together with `get(batch:)`.
                        let group = (0 ..< 5).map { (k + 3 * $0) % keys }
                        let floors = group.map { done[$0].load(ordering: .acquiring) }
                        do {
                            let values = try store.get(batch: group.map { names[$0] })
                            shared.reads.add(1, ordering: .relaxed)
                            for (j, g) in group.enumerated() {
                                let ceiling = started[g].load(ordering: .acquiring)
                                guard let value = values[j], let stamp = value.withUnsafeBytes({ stampOf($0[...]) }), stamp.index == g,
                                      (floors[j] ... ceiling).contains(stamp.version) else {
                                    shared.problems.withLock { $0.append("batch: key \(g) absent, or a value never put or not current during the get") }
                                    continue
                                }
                            }
                        } catch {
                            shared.problems.withLock { $0.append("get(batch:) \(group): \(error)") }
                        }
                        continue
                    }
                    let floor = done[k].load(ordering: .acquiring)
                    do {
                        let length = try names[k].withUnsafeBytes { kb in try buffer.withUnsafeMutableBytes { try store.get(kb, into: $0) } }
                        shared.reads.add(1, ordering: .relaxed)
                        guard let length else {
                            shared.problems.withLock { $0.append("key \(k) reported absent") }
                            continue
                        }
                        let ceiling = started[k].load(ordering: .acquiring)
                        let stamp = buffer.withUnsafeBytes { stampOf($0.prefix(length)) }
                        guard let stamp, stamp.index == k, (floor ... ceiling).contains(stamp.version) else {
                            shared.problems.withLock { $0.append("key \(k): a value never put, or not current during the get") }
                            continue
                        }
                    } catch {
                        shared.problems.withLock { $0.append("get \(k): \(error)") }
                    }
                }
            }
        }
        // The writer, on a thread of its own too, for a bounded time.
        let written = Locked<(rounds: Int, error: String?)>((0, nil))
        let writer = DispatchGroup()
        writer.enter()
        Thread.detachNewThread {
            defer { writer.leave() }
            let started = shared.versions, done = shared.versions + keys
            var value = [UInt8](repeating: 0, count: valueSize)
            let jumper = bytes("jumper"), big = [UInt8](repeating: 0x4A, count: Format.maxValueSize)
            // At least 2.5 s, and on until the readers have done 1,000 gets and the
            // segments have turned over 13 times: a loaded CI machine may need longer
            // for that, a hung reader or writer is caught by the one-minute cap.
            let clock = ContinuousClock()
            let start = clock.now
            var round = 0
            func enough() -> Bool {
                let elapsed = clock.now - start
                if elapsed > .seconds(60) { return true }
                return elapsed > .milliseconds(2500) && round > 12 && shared.reads.load(ordering: .relaxed) > 1000
            }
            do {
                while !enough() {
                    round += 1
                    for i in 0 ..< keys {
                        let k = (i + 7 * round) % keys
                        value.withUnsafeMutableBytes { stamp($0, index: k, version: round) }
                        started[k].store(round, ordering: .releasing)
                        try names[k].withUnsafeBytes { kb in try value.withUnsafeBytes { try store.put(kb, $0) } }
                        done[k].store(round, ordering: .releasing)
                    }
                    try store.put(jumper, big)
                }
            } catch {
                written.withLock { $0.error = "\(error)" }
            }
            written.withLock { $0.rounds = round }
        }
        writer.wait()
        shared.stop.store(true, ordering: .releasing)
        readers.wait()
        let (rounds, error) = written.withLock { $0 }
        #expect(error == nil)
        let found = shared.problems.withLock { $0 }
        #expect(found.count == 0, "\(found.count) bad gets of \(shared.reads.load(ordering: .relaxed)), e.g. \(found.prefix(5))")
        #expect(shared.reads.load(ordering: .relaxed) > 1000)
        // A segment a round, from four: each was reused many times, and none added.
        #expect(rounds > 12)
        #expect(store.usage.segments == 4)
    }
}

/// `stamped(index, version: version, count: bytes.count)` written in place, a word at a
/// time (the byte loop is slow in a debug build); `bytes.count` is a multiple of 8.
func stamp(_ bytes: UnsafeMutableRawBufferPointer, index: Int, version: Int) {
    let word = (UInt64(index) << 32 | UInt64(version)).littleEndian
    for at in stride(from: 0, to: bytes.count, by: 8) { bytes.storeBytes(of: word, toByteOffset: at, as: UInt64.self) }
}

/// `unstamp` of a value whose length is a multiple of 8, a word at a time.
func stampOf(_ bytes: UnsafeRawBufferPointer.SubSequence) -> (index: Int, version: Int)? {
    let value = UnsafeRawBufferPointer(rebasing: bytes)
    guard value.count >= 8, value.count % 8 == 0 else { return nil }
    let word = value.loadUnaligned(as: UInt64.self)
    for at in stride(from: 8, to: value.count, by: 8) where value.loadUnaligned(fromByteOffset: at, as: UInt64.self) != word { return nil }
    let host = UInt64(littleEndian: word)
    return (Int(host >> 32), Int(host & 0xFFFF_FFFF))
}

/// Where a test holds a reader: `reached` once it is there, `resume` to let it go.
final class Pause: Sendable {
    let armed = Atomic<Bool>(true)
    let reached = DispatchSemaphore(value: 0)
    let resume = DispatchSemaphore(value: 0)
}

