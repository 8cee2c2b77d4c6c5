// Damaged store metadata is refused with a typed error or opens consistent: a seeded sweep
// damages a copy of a one-shard store (random words and bit flips in both arenas' headers,
// in the index table's slots and in the log's records), opens it read-write or read-only,
// and requires either a `KVError` or a store whose gets return only values the keys had,
// whose iteration and a new put work or throw `KVError`. It runs in a child process, so
// that a trap fails the test with the iteration it happened at.
// Environment (read here only): DAXKV_FUZZ_SEED, DAXKV_FUZZ_ITERATIONS.

import DaxHeap
@testable import DaxKV
import DaxTestSupport
import Foundation
import Testing

@Suite("DaxKV damaged metadata", .disabled(if: threadSanitizerIsLoaded, "single-threaded: ThreadSanitizer has no race to look for here, and the plain and AddressSanitizer runs fuzz it"))
struct DamagedStoreFuzzTests {
    enum Region: CaseIterable { case indexHeader, dataHeader, slots, records }

    /// The values each key of the image ever had: a get may return an older one only if
    /// damage sent its slot back to an older record of the same key.
    typealias Model = [[UInt8]: [[UInt8]]]

    /// A heap whose one-shard store "kv" holds 400 keys, 100 of them put twice and 40
    /// deleted: about 120 KiB of records at the start of the data arena's two segments.
    static func makeImage(_ path: String) throws -> Model {
        let heap = try Heap.create(path: path, size: 32 << 20)
        defer { try? heap.close() }
        let store = try KVStore.open(heap: heap, options: KVStoreOptions(expectedKeys: 1000).oneShard)
        var model: Model = [:]
        for i in 0 ..< 400 {
            let value = stamped(i, version: 0, count: 40 + i)
            try store.put(key(i), value)
            model[key(i)] = [value]
        }
        for i in stride(from: 0, to: 400, by: 4) {
            let value = stamped(i, version: 1, count: 100)
            try store.put(key(i), value)
            model[key(i)]!.append(value)
        }
        for i in stride(from: 1, to: 400, by: 10) { _ = try store.delete(key(i)) }
        return model
    }

    /// The sweep runs in a child process (an exit test): a trap or a sanitizer's report
    /// there fails this test with the iteration the child had reached, instead of ending
    /// the test run. The child's failed expectations are reported here as they happen.
    @Test(.timeLimit(.minutes(2))) func damagedStoresFailTypedOrOpenConsistent() async throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        // The child's files lie in this scratch folder, removed here however the child ends.
        let progress = scratch.file("progress"), base = scratch.file("base"), path = scratch.file("heap")
        let exited = await #expect(processExitsWith: .success) { [progress = progress as String, base = base as String, path = path as String] in
            try DamagedStoreFuzzTests().sweep(SweepProgress(path: progress), base: base, path: path)
        }
        if exited == nil { Issue.record("the sweep's process died \(SweepProgress(path: progress).lastStep)") }
    }

    /// The sweep: the image made at `base`, each damaged copy written to `path`.
    func sweep(_ progress: SweepProgress, base: String, path: String) throws {
        let model = try Self.makeImage(base)
        let image = try Data(contentsOf: URL(fileURLWithPath: base))
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["DAXKV_FUZZ_SEED"].flatMap { UInt64($0) } ?? 7
        let iterations = environment["DAXKV_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? 160
        var random = SplitMix64(seed: seed)
        var outcomes: [String: Int] = [:]
        for iteration in 0 ..< iterations {
            try image.write(to: URL(fileURLWithPath: path))
            let region = Region.allCases[iteration % Region.allCases.count]
            try damage(path, region, &random)
            let readOnly = random.below(3) == 0
            let context = "seed \(seed), iteration \(iteration), \(region)\(readOnly ? ", read-only" : "")"
            progress.record(context)
            let outcome = try openAndCheck(path, model, readOnly: readOnly, context: context)
            outcomes["\(region): \(outcome)", default: 0] += 1
        }
        // The sweep must reach both outcomes: refusals, and stores that open.
        let refused = outcomes.filter { $0.key.hasSuffix("refused") }.values.reduce(0, +)
        #expect(refused > iterations / 10 && refused < iterations - iterations / 10, "seed \(seed): \(outcomes.sorted { $0.key < $1.key })")
    }

    /// The sweep's first find (seed 7 trapped, "Not enough bits to represent the passed
    /// value"): a tail-segment word past Int.max; and its twin, a descriptor whose table
    /// offset plus the table's size overflows. Both are refused as damage.
    @Test(arguments: [("kv.data", Format.tailSegmentOffset, UInt64.max, "the tail segment 18446744073709551615 is past the data arena"),
                      ("kv.index", Format.descriptorOffset, UInt64.max << Format.descriptorLog2Bits | 40, "the index descriptor is damaged")])
    func headerWordsAtTheirLimitsAreRefused(arena name: String, offset: UInt64, word: UInt64, reason: String) throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let path = scratch.file("heap")
        _ = try Self.makeImage(path)
        let heap = try Heap.open(path: path)
        defer { try? heap.close() }
        let arena = try heap.arena(named: name)
        try withUnsafeBytes(of: word) { try arena.write(Array($0), at: offset) }
        func arenas() throws -> [[UInt8]] {
            try ["kv.index", "kv.data"].map { let a = try heap.arena(named: $0); return try a.read(at: 0, count: Int(a.size)) }
        }
        let before = try arenas()
        #expect(throws: KVError.notAStore(store: "kv", reason: reason)) { try KVStore.open(heap: heap, options: .oneShard) }
        #expect(try arenas() == before, "the refused open changed nothing")
    }

    /// Damages one word or bit of `region`, through the heap's arena API.
    func damage(_ path: String, _ region: Region, _ random: inout SplitMix64) throws {
        let heap = try Heap.open(path: path)
        defer { try? heap.close() }
        let index = try heap.arena(named: "kv.index"), data = try heap.arena(named: "kv.data")
        let (arena, offset): (Arena, UInt64)
        switch region {
        case .indexHeader:
            (arena, offset) = (index, [Format.magicOffset, Format.versionOffset, Format.descriptorOffset, Format.shardOffset][random.below(4)])
        case .dataHeader:
            (arena, offset) = (data, [Format.magicOffset, Format.versionOffset, Format.tailSegmentOffset][random.below(3)])
        case .slots:
            let word = try index.read(at: Format.descriptorOffset, count: 8).withUnsafeBytes { $0.load(as: UInt64.self) }
            let table = Shard.Table(descriptor: word)
            (arena, offset) = (index, table.offset + UInt64(random.below(table.slotCount)) * Format.slotSize)
        case .records:
            // Anywhere in the data arena's two segments: the records, and the zeros after them.
            (arena, offset) = (data, Format.headerSize + UInt64(random.below(Int(2 * Format.segmentSize - Format.headerSize) / 8)) * 8)
        }
        var word = try arena.read(at: offset, count: 8).withUnsafeBytes { $0.load(as: UInt64.self) }
        switch random.below(3) {
        case 0: word = random.next()  // any value
        case 1: word ^= 1 << UInt64(random.below(64))  // one bit
        default: word = UInt64(random.below(1 << 20))  // a small value: an offset, a count, a version
        }
        try withUnsafeBytes(of: word) { try arena.write(Array($0), at: offset) }
    }

    /// Opens the damaged store; "refused" (a `KVError`) or "opened" after its checks.
    func openAndCheck(_ path: String, _ model: Model, readOnly: Bool, context: String) throws -> String {
        let heap = try Heap.open(path: path, mode: readOnly ? .readOnly : .readWrite)
        defer { try? heap.close() }
        let store: KVStore
        do {
            store = try KVStore.open(heap: heap, options: .oneShard)
        } catch let error as KVError {
            #expect(!"\(error)".contains("\n"), "\(context): a one-line error")
            return "refused"
        }
        for (k, values) in model {
            do {
                if let got = try store.get(k) { #expect(values.contains(got), "\(context): a value key \(String(decoding: k, as: UTF8.self)) never had") }
            } catch is KVError {}
        }
        do { try store.forEach { _, _ in } } catch is KVError {}
        if !readOnly {
            let k = bytes("fuzz-probe-key"), v = stamped(7, version: 7, count: 300)
            do {
                try store.put(k, v)
                #expect(try store.get(k) == v, "\(context): a put then a get")
            } catch is KVError {}
        }
        return "opened"
    }
}
