// Issue 13's fourth proof: fuzzed allocator metadata is rejected cleanly at open. A seeded
// sweep damages a copy of an object heap's metadata -- random bits, bytes and words of the
// header, the roots, the lane logs and the chunk table (Layout's offsets), plus forged
// lane logs and chunk table entries whose checksums are right (what random damage cannot
// make, and what reaches the code past the checksums) -- then opens it read-only or
// read-write. Each open must either fail with an ObjectError (typed: the signature says
// so) or succeed with the allocator's invariants holding, its roots loadable or refused
// with an error, a second open agreeing with the first, and allocation working. It runs in
// a child process, so that a crash fails the test with the iteration it happened at; a hang
// runs into the time limit.
// Environment (read here only): DAXOBJECTS_FUZZ_SEED, DAXOBJECTS_FUZZ_ITERATIONS (a longer
// sweep: raise the time limit's share accordingly, about 50 ms an iteration in debug).

import DaxHeap
@testable import DaxObjects
import DaxTestSupport
import Foundation
import Testing

@Suite(.disabled(if: threadSanitizerIsLoaded, "single-threaded: ThreadSanitizer has no race to look for here, and the plain and AddressSanitizer runs fuzz it")) struct ObjectMetadataFuzzTests {
    static let lanes = 4
    static let logBytes = 4096

    /// A heap file whose object heap "objects" holds a table of 32 slots under root
    /// "table" (objects of several classes, `.references` ones with children, a large
    /// one), a second root "leaf", and holes left by frees; and arena "pages".
    static func makeImage(_ path: String) throws {
        let heap = try Heap.create(path: path, size: 32 << 20)
        defer { try? heap.close() }
        try heap.createArena(named: "pages", size: 2 << 20)
        let objects = try ObjectHeap.create(in: heap, arena: "objects", size: 8 << 20, lanes: lanes, logBytes: logBytes)
        defer { try? objects.close() }
        let context = try objects.makeContext()
        defer { context.close() }
        let table = try context.allocate(32 * 8, kind: .references, into: objects.root(named: "table"))
        var random = SplitMix64(seed: 99)
        for i in 0..<32 {
            let slot = ObjectSlot(in: table, at: UInt64(i) * 8)
            let size: UInt64 = i == 5 ? 3 << 20 : [16, 100, 700, 5000][random.below(4)]
            let object = try context.allocate(size, kind: i % 3 == 0 ? .references : .data, into: slot)
            if i % 3 == 0, i != 0 {
                try context.allocate(48, into: ObjectSlot(in: object, at: 0)) { $0.storeBytes(of: UInt64(i), as: UInt64.self) }
            }
        }
        for i in stride(from: 1, to: 32, by: 4) { try context.free(from: ObjectSlot(in: table, at: UInt64(i) * 8)) }
        try context.allocate(64, into: objects.root(named: "leaf"))
    }

    enum Region: CaseIterable { case header, roots, logs, chunkTable, forgedLog, forgedChunkEntry }

    /// The sweep runs in a child process (an exit test): a trap or a sanitizer's report
    /// there fails this test with the iteration the child had reached, instead of ending
    /// the test run. The child's failed expectations are reported here as they happen.
    @Test(.timeLimit(.minutes(2))) func damagedMetadataFailsTypedOrOpensConsistent() async throws {
        // The child's files lie in this folder, removed here however the child ends.
        let directory = try makeScratchFolder(prefix: "daxobjects-fuzz")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let progress = directory + "/progress", base = directory + "/base", path = directory + "/heap"
        let exited = await #expect(processExitsWith: .success) { [progress = progress as String, base = base as String, path = path as String] in
            try ObjectMetadataFuzzTests().sweep(SweepProgress(path: progress), base: base, path: path)
        }
        if exited == nil { Issue.record("the sweep's process died \(SweepProgress(path: progress).lastStep)") }
    }

    /// The sweep: the image made at `base`, each damaged copy written to `path`.
    func sweep(_ progress: SweepProgress, base: String, path: String) throws {
        try Self.makeImage(base)
        let image = try Data(contentsOf: URL(fileURLWithPath: base))
        let chunkTable = Layout.chunkTableOffset(laneCount: Self.lanes, laneLogBytes: Self.logBytes)
        let chunkCount: UInt64 = try {
            let heap = try Heap.open(path: base, mode: .readOnly)
            defer { try? heap.close() }
            return try heap.arena(named: "objects").size >> Layout.chunkShift
        }()

        let environment = ProcessInfo.processInfo.environment
        let seed = environment["DAXOBJECTS_FUZZ_SEED"].flatMap { UInt64($0) } ?? 4
        let iterations = environment["DAXOBJECTS_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? 120
        var random = SplitMix64(seed: seed)
        var outcomes = [String: Int]()
        for iteration in 0..<iterations {
            try image.write(to: URL(fileURLWithPath: path))
            let region = Region.allCases[iteration % Region.allCases.count]
            try damage(path, region, &random, chunkTable: chunkTable, chunkCount: chunkCount)
            let readOnly = random.below(3) == 0
            let context = "seed \(seed), iteration \(iteration), \(region)\(readOnly ? ", read-only" : "")"
            progress.record(context)
            let outcome = try openAndCheck(path, readOnly: readOnly, context: context)
            outcomes["\(region): \(outcome)", default: 0] += 1
        }
        // The sweep must bite and must not only refuse: both outcomes in the regions that
        // random damage can pass (a damaged root word or free log reads as valid).
        let refused = outcomes.filter { !$0.key.hasSuffix("opened") }.values.reduce(0, +)
        let opened = outcomes.filter { $0.key.hasSuffix("opened") }.values.reduce(0, +)
        #expect(refused > iterations / 8 && opened > iterations / 8, "seed \(seed): \(outcomes.sorted { $0.key < $1.key })")
    }

    /// The sweep's first find (it crashed the process before the fix, "Not enough bits to
    /// represent the passed value" in applyLog): a committed log whose checksum holds but
    /// whose entry's count is beyond Int.max, or runs past the log. Refused as damage, read
    /// only or read-write, and nothing applied.
    @Test(arguments: [1 << 63, .max, 4096, 9]) func aCommittedLogWithAnEntryPastItsEndIsDamage(count: UInt64) throws {
        var fixture = try Fixture()
        defer { fixture.remove() }
        let context = try fixture.objects.makeContext()
        let object = try context.allocate(64, into: fixture.objects.root(named: "r")) { $0.storeBytes(of: UInt64(7), as: UInt64.self) }
        context.close()
        let target = fixture.objects.tag << ObjectReference.offsetBits | object.offset
        try Self.commitLog(fixture.objects, lane: 1, [target, 8, 99, target, count, 99])
        try fixture.objects.close()
        try fixture.heap.close()
        for mode in [HeapMode.readOnly, .readWrite] {
            let heap = try Heap.open(path: fixture.path, mode: mode)
            #expect(throws: ObjectError.corrupt(arena: "objects", detail: "lane 1's committed log has an entry that runs past its end")) {
                try ObjectHeap.open(in: heap, arena: "objects")
            }
            let first = try heap.arena(named: "objects").read(at: object.offset, count: 8)
            #expect(first == [7, 0, 0, 0, 0, 0, 0, 0], "nothing of the log applied")
            try heap.close()
        }
        fixture.heap = try Heap.open(path: fixture.path)
    }

    /// Writes `entries` (target, count, bytes as words) as lane `lane`'s committed log, its
    /// checksum right: what a crash between a transaction's commit and its apply leaves.
    static func commitLog(_ objects: ObjectHeap, lane: Int, _ entries: [UInt64]) throws {
        let at = Layout.laneOffset(lane, laneLogBytes: objects.geometry.laneLogBytes)
        let bytes = entries.withUnsafeBytes { Array($0) }
        let sum = bytes.withUnsafeBytes { UInt64(ObjectHeap.logChecksum(UInt64(bytes.count), $0.baseAddress!)) }
        try objects.window.memcpyPersist(at: at + Layout.logEntriesOffset, bytes)
        objects.word(at + Layout.logChecksumOffset).pointee.store(sum, ordering: .relaxed)
        objects.word(at + Layout.logLengthOffset).pointee.store(UInt64(bytes.count), ordering: .relaxed)
        try objects.persist(at, 16)
    }

    enum LaterDamage: CaseIterable { case illFormedLogInALaterLane, invalidChunkTableEntry, logWritingTheChunkTable }

    /// An open refused for damage found after a committed log (in a later lane, or in the
    /// chunk table) has replayed nothing: before the fix, lane 0's log was applied and
    /// ended before lane 1's or the chunk table's damage was found, so a refused open had
    /// written to the arena. A log that would write the chunk table (or the header, or the
    /// logs) is damage too, refused before anything is written.
    @Test(arguments: LaterDamage.allCases) func anOpenRefusedForDamageWritesNothing(damage: LaterDamage) throws {
        var fixture = try Fixture()
        defer { fixture.remove() }
        let context = try fixture.objects.makeContext()
        let object = try context.allocate(64, into: fixture.objects.root(named: "r")) { $0.storeBytes(of: UInt64(7), as: UInt64.self) }
        context.close()
        let objects = fixture.objects
        let target = objects.tag << ObjectReference.offsetBits | object.offset
        try Self.commitLog(objects, lane: 0, [target, 8, 99])
        let detail: String
        switch damage {
        case .illFormedLogInALaterLane:
            try Self.commitLog(objects, lane: 1, [target, 4096, 99])
            detail = "lane 1's committed log has an entry that runs past its end"
        case .invalidChunkTableEntry:
            let chunk = Int(objects.geometry.metadataChunks) + 2
            objects.word(objects.chunkEntryOffset(chunk)).pointee.store(.max, ordering: .relaxed)
            try objects.persist(objects.chunkEntryOffset(chunk), 8)
            detail = "chunk table entry \(chunk) is not valid (0xffffffffffffffff)"
        case .logWritingTheChunkTable:
            // A forged log whose checksum holds (the fuzz sweep's seeds 11 and 12 made one):
            // replayed after the table was read, it left an entry the next open refused.
            let entry = objects.chunkEntryOffset(Int(objects.geometry.metadataChunks) + 2)
            try Self.commitLog(objects, lane: 1, [objects.tag << ObjectReference.offsetBits | entry, 8, 0x100_0000])
            detail = "lane 1's committed log writes the allocator's own metadata (offset \(entry))"
        }
        try fixture.objects.close()
        try fixture.heap.close()
        let before = try Data(contentsOf: URL(fileURLWithPath: fixture.path))
        let heap = try Heap.open(path: fixture.path)
        #expect(throws: ObjectError.corrupt(arena: "objects", detail: detail)) {
            try ObjectHeap.open(in: heap, arena: "objects")
        }
        #expect(try heap.arena(named: "objects").read(at: object.offset, count: 8) == [7, 0, 0, 0, 0, 0, 0, 0], "lane 0's log not replayed")
        try heap.close()
        #expect(try Data(contentsOf: URL(fileURLWithPath: fixture.path)) == before, "the refused open wrote nothing")
        fixture.heap = try Heap.open(path: fixture.path)
    }

    /// The sweep's second find: damage in the reference word of an unused root entry
    /// (read by nobody) became the value of the next root made there, so that a new root
    /// reached garbage, or another root's object. A new root is null.
    @Test func aNewRootIsNullWhateverItsEntryHeld() throws {
        var fixture = try Fixture()
        defer { fixture.remove() }
        let context = try fixture.objects.makeContext()
        let object = try context.allocate(64, into: fixture.objects.root(named: "first"))
        context.close()
        let unused = fixture.objects.rootOffset(1) + Layout.rootReferenceOffset
        for garbage in [object.rawValue, 51200, UInt64.max] {
            fixture.objects.word(unused).pointee.store(garbage, ordering: .relaxed)
            try fixture.objects.persist(unused, 8)
            try fixture.reopen()
            let slot = try fixture.objects.root(named: "second")
            #expect(slot.offset == unused)
            #expect(try fixture.objects.load(slot) == .null)
            try fixture.reopen()
            #expect(fixture.objects.recovery.liveObjects == 1, "the first root's object, once")
            #expect(try fixture.objects.load(#require(fixture.objects.findRoot(named: "second"))) == .null)
            // Unmake "second" by hand (roots are never removed through the API) for the next value.
            fixture.objects.word(fixture.objects.rootOffset(1) + Layout.rootNameLengthOffset).pointee.store(0, ordering: .relaxed)
            try fixture.objects.persist(fixture.objects.rootOffset(1), 64)
        }
    }

    /// Writes the damage through the heap (so the image stays a valid heap).
    func damage(_ path: String, _ region: Region, _ random: inout SplitMix64, chunkTable: UInt64, chunkCount: UInt64) throws {
        let heap = try Heap.open(path: path)
        defer { try? heap.close() }
        let arena = try heap.arena(named: "objects")
        func word(_ random: inout SplitMix64) -> UInt64 {
            [0, .max, UInt64(random.below(4096)), random.next(), 1 << UInt64(random.below(64))][random.below(5)]
        }
        func put(_ value: UInt64, at offset: UInt64) throws { try arena.write(withUnsafeBytes(of: value) { Array($0) }, at: offset) }
        let lanesEnd = Layout.laneOffset(Self.lanes, laneLogBytes: Self.logBytes)
        switch region {
        case .header, .roots, .logs, .chunkTable:
            let (start, length): (UInt64, UInt64) = switch region {
            case .header: (0, 64)
            case .roots: (Layout.rootsOffset, 3 * Layout.rootEntryBytes)  // the entries in use, and one more
            case .logs: (Layout.lanesOffset, lanesEnd - Layout.lanesOffset)
            default: (chunkTable, chunkCount * 8)
            }
            for _ in 0..<(1 + random.below(3)) {
                let offset = start + UInt64(random.below(Int(length)))
                switch random.below(3) {
                case 0:  // one bit
                    var byte = try arena.read(at: offset, count: 1)
                    byte[0] ^= 1 << UInt8(random.below(8))
                    try arena.write(byte, at: offset)
                case 1: try arena.write([UInt8(truncatingIfNeeded: random.next())], at: offset)
                default: try put(word(&random), at: offset & ~7)
                }
            }
        case .forgedLog:
            // Entries with targets here, in another arena, nowhere; counts small, past the
            // log, and beyond Int.max; a valid length and checksum.
            let lane = Layout.laneOffset(random.below(Self.lanes), laneLogBytes: Self.logBytes)
            var entries: [UInt64] = []
            for _ in 0..<(1 + random.below(4)) {
                let arenaID = [arena.id, try heap.arena(named: "pages").id, UInt64(random.below(1 << 16))][random.below(3)]
                let offset = [UInt64(random.below(Int(chunkCount << Layout.chunkShift))), random.next() & ObjectReference.offsetMask,
                              chunkTable + UInt64(random.below(Int(chunkCount))) * 8][random.below(3)]
                let count = [UInt64(random.below(64)), UInt64(Self.logBytes) + UInt64(random.below(64)), random.next(), 1 << 63][random.below(4)]
                entries += [arenaID << ObjectReference.offsetBits | offset, count]
                entries += (0..<(min(count, 64) + 7) / 8).map { _ in word(&random) }
            }
            let bytes = entries.withUnsafeBytes { Array($0) }
            let length = UInt64(bytes.count)
            let sum = bytes.withUnsafeBytes { UInt64(ObjectHeap.logChecksum(length, $0.baseAddress!)) }
            try arena.write(bytes, at: lane + Layout.logEntriesOffset)
            try put(sum, at: lane + Layout.logChecksumOffset)
            try put(length, at: lane + Layout.logLengthOffset)
        case .forgedChunkEntry:
            // Entries that pass their check: any kind, class, object kind, run length.
            for _ in 0..<(1 + random.below(2)) {
                let chunk = UInt64(random.below(Int(chunkCount) + 1))
                let kind = ChunkDescriptor.Kind(rawValue: UInt8(1 + random.below(3)))!
                var descriptor = ChunkDescriptor(kind: kind, objectKind: random.below(2) == 0 ? .data : .references)
                if kind == .small { descriptor.sizeClass = random.below(SizeClasses.count) }
                if kind == .largeHead { descriptor.runLength = [1, 2, 3, chunkCount, (1 << 24) - 1][random.below(5)] }
                guard chunk < chunkCount else { continue }
                try put(descriptor.encoded(chunk: chunk), at: chunkTable + chunk * 8)
            }
        }
    }

    /// Opens the damaged heap: "refused: ..." with the error's kind, or "opened" once the
    /// object heap proved consistent.
    func openAndCheck(_ path: String, readOnly: Bool, context: String) throws -> String {
        let heap = try Heap.open(path: path, mode: readOnly ? .readOnly : .readWrite)
        defer { try? heap.close() }
        let first: ObjectHeap
        do throws(ObjectError) {
            first = try ObjectHeap.open(in: heap, arena: "objects")
        } catch {
            #expect(!error.description.contains("\n"), "\(context): a two-line error: \(error)")
            switch error {
            case .corrupt: return "refused: corrupt"
            case .notAnObjectHeap: return "refused: not an object heap"
            default: return "refused: \(error)"
            }
        }
        first.checkInvariants()
        let live = first.recovery.liveObjects
        #expect(first.statistics().objects == live, "\(context): statistics and recovery disagree")
        for name in first.rootNames {
            if let slot = first.findRoot(named: name) { _ = try? first.load(slot) }
        }
        try first.close()
        guard !readOnly else { return "opened" }
        let second = try ObjectHeap.open(in: heap, arena: "objects")
        defer { try? second.close() }
        #expect(second.recovery.liveObjects == live, "\(context): a second open finds \(second.recovery.liveObjects) live objects, the first \(live)")
        second.checkInvariants()
        let objects = second
        let objectsContext = try objects.makeContext()
        defer { objectsContext.close() }
        let spare = try objects.root(named: "fuzz-spare")
        if try objects.load(spare).isNull {
            for size: UInt64 in [16, 100, 5000, 3 << 20] {
                do throws(ObjectError) {
                    try objectsContext.allocate(size, into: spare)
                    try objectsContext.free(from: spare)
                } catch {
                    // Out of space when damage took the chunks: typed, and nothing changed.
                    guard case .outOfSpace = error else { throw error }
                }
            }
        }
        objects.checkInvariants()
        return "opened"
    }
}
