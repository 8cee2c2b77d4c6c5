// Crash sweeps over the failure paths of a metadata update and over a forced create on a
// device-dax, through DaxHeapFaultProbe (the hooks the `daxheap` tool does not have):
// DAXHEAP_CRASH_AFTER_BYTES=N kills the probe after N stored metadata bytes, for every N
// around the interesting points; afterwards the heap must open to exactly the table
// before or after the operation.

import DaxDevice
import DaxHeap
import DaxMetadata
import DaxTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

enum FaultProbe {
    static func url() throws -> URL {
        try #require(builtExecutable(named: "DaxHeapFaultProbe", override: "DAXHEAP_FAULT_PROBE"))
    }

    /// Runs the probe; `crashAfter` sets DAXHEAP_CRASH_AFTER_BYTES.
    static func run(_ arguments: [String], crashAfter: Int? = nil) throws -> (status: Int32, out: String) {
        let environment = crashAfter.map { ["DAXHEAP_CRASH_AFTER_BYTES": "\($0)"] } ?? [:]
        let result = try runToCompletion(url(), arguments, environment: environment)
        return (result.status, String(decoding: result.stdout, as: UTF8.self))
    }
}

@Suite struct FaultCrashTests {
    static let size: UInt64 = 16 << 20

    /// Names of the arenas, as the next open finds them (nil: the heap does not open).
    static func arenas(_ path: String) -> [String]? {
        (try? Heap.open(path: path, mode: .readOnly))?.arenas.map(\.name)
    }

    /// Points to crash at: every byte around the boundaries given, and a spread between.
    static func points(_ boundaries: [Int], upTo total: Int) -> [Int] {
        var points = Set(boundaries.flatMap { [$0 - 1, $0, $0 + 1] })
        points.formUnion(stride(from: 1, through: total + 1, by: max(1, total / 16)))
        return points.filter { $0 >= 1 && $0 <= total + 1 }.sorted()
    }

    /// A heap with arena "a", closed; returns its file's bytes, to start each crash from.
    static func heapWithOneArena(_ path: String) throws -> [UInt8] {
        do {
            let heap = try Heap.create(path: path, size: size)
            try heap.createArena(named: "a", size: 2 << 20)
        }
        return try fileBytes(path)
    }

    /// Bytes of one metadata copy after the probe's update adds arena "new" to it.
    static let updatedImage = MetadataCopy.tableLength(arenas: 2, extents: 2) + MetadataCopy.headerSize

    /// The primary's write fails partway with a media error: the update must not go on to
    /// the secondary (then the only intact copy). Killed anywhere, the heap opens to the
    /// table before, and repairs to a healthy heap. (Before, the update wrote the
    /// secondary, and a crash during that write left no valid copy.)
    @Test func aPrimaryThatFailsPartwayNeverLosesTheTable() throws {
        let path = tempPath("probe-primary")
        defer { removeFile(path) }
        let pristine = try Self.heapWithOneArena(path)
        let stored = 100  // bytes of the primary stored before each faulting write
        let image = Self.updatedImage
        for n in Self.points([stored, 2 * stored, stored + image], upTo: stored + 2 * image) {
            try writeFile(path, pristine)
            let run = try FaultProbe.run(["update", path, "primary:\(stored):media"], crashAfter: n)
            #expect(run.status == 1 || run.status == SIGKILL, "N=\(n): \(run)")
            #expect(Self.arenas(path) == ["a"], "N=\(n): the heap does not open to the table before")
            let heap = try Heap.open(path: path)
            #expect(heap.check().isHealthy, "N=\(n): \(heap.check().problems)")
        }
    }

    /// The secondary's write fails: the update stands in the primary (rolled forward).
    /// Killed anywhere, the heap opens to the table before or after, and after once the
    /// primary was complete.
    @Test func aSecondaryThatFailsRollsForwardAtEveryCrashPoint() throws {
        let path = tempPath("probe-secondary")
        defer { removeFile(path) }
        let pristine = try Self.heapWithOneArena(path)
        let stored = 100
        let image = Self.updatedImage
        for n in Self.points([image, image + stored], upTo: image + stored) {
            try writeFile(path, pristine)
            let run = try FaultProbe.run(["update", path, "secondary:\(stored):io"], crashAfter: n)
            #expect(run.status == (n <= image + stored ? SIGKILL : 0), "N=\(n): \(run)")
            let found = Self.arenas(path)
            #expect(found == ["a"] || found == ["a", "new"], "N=\(n): \(String(describing: found))")
            if n >= image { #expect(found == ["a", "new"], "N=\(n): a complete primary was not taken") }
            let heap = try Heap.open(path: path)
            #expect(heap.check().isHealthy, "N=\(n): \(heap.check().problems)")
        }
    }
}

extension DeviceTests {
    /// `create --force` on a device-dax zeroes both metadata blocks before writing the new
    /// copies; those stores count for DAXHEAP_CRASH_AFTER_BYTES like every other store into
    /// a metadata block, so a sweep can kill a create in the middle of the zeroing. (On the
    /// fake device, /dev/zero, nothing survives the process: what is checked is where the
    /// counter kills it.)
    @Test func theZeroingOfAForcedCreateIsCountedByTheCrashCounter() throws {
        let sysfs = FakeSysfs()
        defer { sysfs.remove() }
        try sysfs.device(1, 5, size: "8388608\n")
        let zeroing = 2 * Int(Geometry.blockSize)
        // The fake device shows neither region nor ranges: its identity record is the bare header.
        let image = MetadataCopy.tableLength(arenas: 0, extents: 0) + MetadataCopy.headerSize + DeviceIdentityRecord.headerSize
        let total = zeroing + 2 * image
        for n in [1, 4096, zeroing / 2, zeroing / 2 + 1, zeroing - 1, zeroing, zeroing + 1, total, total + 1] {
            let run = try FaultProbe.run(["create-devdax", "/dev/zero", sysfs.root], crashAfter: n)
            #expect(run.status == (n <= total ? SIGKILL : 0), "N=\(n): \(run)")
        }
        let plain = try FaultProbe.run(["create-devdax", "/dev/zero", sysfs.root])
        #expect(plain.status == 0 && plain.out == "ok\n", "\(plain)")
    }
}
