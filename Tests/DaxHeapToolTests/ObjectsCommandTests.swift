import DaxHeap
@testable import DaxObjects
import DaxTestSupport
import Foundation
import Testing

/// `daxheap objects PATH ARENA [--json]`: an object heap made with the library, read by the
/// spawned tool, which opens it read-only and so never changes a byte of the file.
@Suite struct ObjectsCommandTests {
    static let keys: Set<String> = ["arena", "arena_size", "objects", "allocated_bytes", "free_bytes", "largest_free_block",
                                    "classes", "roots", "recovery"]
    static let recoveryKeys: Set<String> = ["live_objects", "live_bytes", "transactions_replayed", "torn_logs_discarded",
                                            "logs_pending_read_only", "chunks_freed", "microseconds"]

    /// What `make` put in the heap.
    struct Made {
        var path: String
        var list: ObjectReference
        var record: ObjectReference
        var big: ObjectReference
        var statistics: ObjectStatistics
    }

    /// A heap with arena "plain" (no object heap) and object heap "objects": root "list"
    /// reaches a 64-byte `.references` object whose first word reaches a 1000-byte `.data`
    /// record; root "big" a 3 MiB object; root "empty" nothing.
    static func make(_ scratch: Scratch) throws -> Made {
        let path = scratch.file("heap")
        let heap = try Heap.create(path: path, size: 64 << 20)
        defer { try? heap.close() }
        try heap.createArena(named: "plain", size: 2 << 20)
        let objects = try ObjectHeap.create(in: heap, arena: "objects", size: 8 << 20)
        defer { try? objects.close() }
        let context = try objects.makeContext()
        defer { context.close() }
        let list = try context.allocate(64, kind: .references, into: objects.root(named: "list"))
        let record = try context.allocate(1000, into: ObjectSlot(in: list, at: 0)) { $0.initializeMemory(as: UInt8.self, repeating: 7) }
        let big = try context.allocate(3 << 20, into: objects.root(named: "big"))
        _ = try objects.root(named: "empty")
        return Made(path: path, list: list, record: record, big: big, statistics: objects.statistics())
    }

    @Test func jsonShapeAndValues() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let made = try Self.make(scratch)
        var run: Run!
        try expectUnchanged(made.path) { run = try Tool.run(["objects", made.path, "objects", "--json"]) }
        expectSuccess(run)
        let json = try run.json()
        #expect(Set(json.keys) == Self.keys)
        #expect(json["arena"] as? String == "objects")
        #expect(number(json["objects"]) == 3)
        #expect(number(json["allocated_bytes"]) == 64 + 1024 + (4 << 20), "a 64 B block, a 1 KiB block, two 2 MiB chunks")
        #expect(number(json["arena_size"]) == made.statistics.arenaSize)
        #expect(number(json["free_bytes"]) == made.statistics.freeBytes)
        #expect(number(json["largest_free_block"]) == made.statistics.largestFreeBlock)
        for key in ["arena_size", "objects", "allocated_bytes", "free_bytes", "largest_free_block"] {
            #expect(isInteger(json[key]), "\(key) is not an integer")
        }
        let classes = try #require(json["classes"] as? [[String: Any]])
        #expect(classes.map { [number($0["block_size"]), number($0["chunks"]), number($0["objects"])] } == [[64, 1, 1], [1024, 1, 1]])
        #expect(classes.allSatisfy { Set($0.keys) == ["block_size", "chunks", "objects"] })

        let roots = try #require(json["roots"] as? [[String: Any]])
        #expect(roots.map { $0["name"] as? String } == ["list", "big", "empty"], "entry order")
        #expect(roots.allSatisfy { Set($0.keys) == ["name", "offset", "size", "kind"] })
        #expect(number(roots[0]["offset"]) == made.list.offset)
        #expect(number(roots[0]["size"]) == 64)
        #expect(roots[0]["kind"] as? String == "references")
        #expect(number(roots[1]["offset"]) == made.big.offset)
        #expect(number(roots[1]["size"]) == 4 << 20)
        #expect(roots[1]["kind"] as? String == "data")
        #expect(roots[2]["offset"] is NSNull && roots[2]["size"] is NSNull && roots[2]["kind"] is NSNull)

        let recovery = try #require(json["recovery"] as? [String: Any])
        #expect(Set(recovery.keys) == Self.recoveryKeys)
        #expect(recovery.values.allSatisfy(isInteger))
        #expect(number(recovery["live_objects"]) == 3, "the record is reached through the list")
        #expect(number(recovery["live_bytes"]) == 64 + 1024 + (4 << 20))
        #expect(number(recovery["transactions_replayed"]) == 0)
        #expect(number(recovery["logs_pending_read_only"]) == 0)
    }

    @Test func forPeople() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let made = try Self.make(scratch)
        var run: Run!
        try expectUnchanged(made.path) { run = try Tool.run(["objects", made.path, "objects"]) }
        expectSuccess(run)
        let lines = run.out.split(separator: "\n").map(String.init)
        for fragment in ["arena:", "\"objects\"", "objects:", "3", "allocated:", "4 MiB", "(\(64 + 1024 + (4 << 20)) bytes)",
                         "free:", "largest free block:", "recovery:", "3 live objects", "0 transactions replayed"] {
            #expect(run.out.contains(fragment), "lacks \(fragment): \(run.out)")
        }
        #expect(lines.contains("size classes:"))
        #expect(lines.contains { $0.hasPrefix("  block size") && $0.hasSuffix("objects") })
        #expect(lines.contains { $0.hasSuffix("64 B       1        1") }, "\(run.out)")
        #expect(lines.contains { $0.hasSuffix("1 KiB       1        1") }, "\(run.out)")
        #expect(lines.contains("roots:"))
        #expect(lines.contains("  \"list\"   offset \(made.list.offset), 64 B, references"), "\(run.out)")
        #expect(lines.contains("  \"big\"    offset \(made.big.offset), 4 MiB, data"), "\(run.out)")
        #expect(lines.contains("  \"empty\"  null"), "\(run.out)")
    }

    /// A transaction whose log committed but was not applied (made by hand in lane 0): the
    /// read-only tool counts it and changes nothing; a read-write open then applies it.
    @Test func aCommittedLogIsReportedNotApplied() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let made = try Self.make(scratch)
        let target = made.record.offset + 8
        do {
            let heap = try Heap.open(path: made.path)
            defer { try? heap.close() }
            let objects = try ObjectHeap.open(in: heap, arena: "objects")
            defer { try? objects.close() }
            let lane = Layout.laneOffset(0, laneLogBytes: objects.geometry.laneLogBytes)
            let entries = objects.base + Int(lane + Layout.logEntriesOffset)
            entries.storeBytes(of: objects.tag << ObjectReference.offsetBits | target, toByteOffset: 0, as: UInt64.self)
            entries.storeBytes(of: UInt64(8), toByteOffset: 8, as: UInt64.self)
            entries.storeBytes(of: UInt64(0x1234_5678), toByteOffset: 16, as: UInt64.self)
            objects.word(lane + Layout.logChecksumOffset).pointee.store(UInt64(ObjectHeap.logChecksum(24, entries)), ordering: .relaxed)
            objects.word(lane + Layout.logLengthOffset).pointee.store(24, ordering: .relaxed)
            try objects.persist(lane, 64 + 24)
        }
        var json: Run!, people: Run!
        try expectUnchanged(made.path) {
            json = try Tool.run(["objects", made.path, "objects", "--json"])
            people = try Tool.run(["objects", made.path, "objects"])
        }
        expectSuccess(json)
        expectSuccess(people)
        let recovery = try #require(try json.json()["recovery"] as? [String: Any])
        #expect(number(recovery["logs_pending_read_only"]) == 1)
        #expect(number(recovery["transactions_replayed"]) == 0)
        #expect(people.out.contains("1 committed transaction not applied (read-only"), "\(people.out)")

        let heap = try Heap.open(path: made.path)
        defer { try? heap.close() }
        let objects = try ObjectHeap.open(in: heap, arena: "objects")
        defer { try? objects.close() }
        #expect(objects.recovery.transactionsReplayed == 1)
        #expect(try objects.address(of: made.record).load(fromByteOffset: 8, as: UInt64.self) == 0x1234_5678)
    }

    @Test func errorsAreOneLine() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let made = try Self.make(scratch)
        let zeros = scratch.file("zeros")
        try Data(count: 8 * MiB).write(to: URL(fileURLWithPath: zeros))
        try expectUnchanged(zeros) {
            expectFailure(try Tool.run(["objects", zeros, "objects"]), "is not a DaxHeap device")
        }
        try expectUnchanged(made.path) {
            expectFailure(try Tool.run(["objects", made.path, "nosuch"]), "no arena named \"nosuch\"")
            expectFailure(try Tool.run(["objects", made.path, "plain", "--json"]), "arena \"plain\" holds no object heap")
        }
        expectFailure(try Tool.run(["objects", scratch.file("missing"), "objects"]), "missing")
        expectUsageError(try Tool.run(["objects", made.path]))
    }

    /// Damage in the header, a chunk table entry, a root reaching no object: one line each.
    @Test func aDamagedObjectHeapIsOneLine() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let made = try Self.make(scratch)
        let original = try contents(made.path)
        let chunkTable = Layout.chunkTableOffset(laneCount: 64, laneLogBytes: 16 << 10)
        let rootList = Layout.rootsOffset + Layout.rootReferenceOffset
        let cases: [(offset: UInt64, word: UInt64, fragment: String)] = [
            (UInt64(Layout.laneCountOffset), 3, "the header's checksum does not match"),
            (chunkTable + 8 * (made.list.offset >> Layout.chunkShift), 0xDEAD_BEEF, "chunk table entry"),
            (rootList, made.list.rawValue + 8, "root \"list\""),
        ]
        for (offset, word, fragment) in cases {
            try original.write(to: URL(fileURLWithPath: made.path))
            do {
                let heap = try Heap.open(path: made.path)
                defer { try? heap.close() }
                try heap.arena(named: "objects").write(withUnsafeBytes(of: word) { Array($0) }, at: offset)
            }
            try expectUnchanged(made.path) {
                for arguments in [["objects", made.path, "objects"], ["objects", made.path, "objects", "--json"]] {
                    expectFailure(try Tool.run(arguments), "the object heap in arena \"objects\" is damaged", fragment)
                }
            }
        }
    }
}

