import DaxHeap
@testable import DaxKV
import DaxTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A scratch folder on /dev/shm (or $TMPDIR), removed by `remove()`.
struct Scratch {
    let path: String

    init() throws { path = try makeScratchFolder(prefix: "daxkv-tests") }

    func file(_ name: String) -> String { "\(path)/\(name)" }
    func remove() { try? FileManager.default.removeItem(atPath: path) }

    /// A new heap file of `size` bytes.
    func heap(_ name: String = "heap", size: UInt64 = 64 << 20) throws -> Heap {
        try Heap.create(path: file(name), size: size)
    }
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Fills what is left of `heap` with 2 MiB arenas and destroys every other one, so that
/// arenas created or grown afterwards land in 2 MiB holes: an arena of more than 2 MiB
/// is then discontiguous, and any range of it longer than 2 MiB crosses an extent boundary.
func fragment(_ heap: Heap) throws {
    var pads: [String] = []
    while heap.availableSize >= 2 << 20 {
        let name = "pad\(pads.count)"
        try heap.createArena(named: name, size: 2 << 20)
        pads.append(name)
    }
    for (i, name) in pads.enumerated() where i % 2 == 0 { try heap.destroyArena(named: name) }
}

/// Deterministic value bytes for (key index, version): every 8-byte word holds
/// index << 32 | version, so a torn or mixed value is evident.
func stamped(_ index: Int, version: Int, count: Int) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count)
    let word = UInt64(index) << 32 | UInt64(version)
    for i in 0 ..< count { out[i] = UInt8(truncatingIfNeeded: word >> (8 * UInt64(i % 8))) }
    return out
}

/// The (index, version) a stamped value holds, or nil if its words disagree (torn).
func unstamp(_ value: [UInt8]) -> (index: Int, version: Int)? {
    guard value.count >= 8 else { return nil }
    var word: UInt64 = 0
    for i in 0 ..< 8 { word |= UInt64(value[i]) << (8 * UInt64(i)) }
    for i in 0 ..< value.count where value[i] != UInt8(truncatingIfNeeded: word >> (8 * UInt64(i % 8))) { return nil }
    return (Int(word >> 32), Int(word & 0xFFFF_FFFF))
}

func key(_ i: Int) -> [UInt8] { bytes("key\(String(i).leftPadded(to: 13))") }

extension String {
    func leftPadded(to n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

/// Runs the built `daxkv` (beside the test bundle, or its parent, or DAXKV_BIN).
enum KVTool {
    static let executable: URL? = builtExecutable(named: "daxkv", override: "DAXKV_BIN")

    static func url() throws -> URL {
        try #require(executable, "the daxkv executable was not found beside the test bundle; build it first (swift build --build-tests) or set DAXKV_BIN")
    }

    struct Run { var status: Int32; var out: String; var err: String }

    /// Runs `daxkv ARGS` to completion with `stdin`.
    static func run(_ arguments: [String], stdin: Data = Data()) throws -> Run {
        let done = try runToCompletion(try url(), arguments, stdin: stdin)
        return Run(status: done.status, out: String(decoding: done.stdout, as: UTF8.self), err: String(decoding: done.stderr, as: UTF8.self))
    }
}

/// Where a byte string first occurs in a file.
func find(_ needle: [UInt8], in path: String) throws -> Int? {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    return data.withUnsafeBytes { raw -> Int? in
        let n = needle.count
        guard raw.count >= n else { return nil }
        var i = 0
        while i <= raw.count - n {
            if raw[i] == needle[0], memcmp(raw.baseAddress! + i, needle, n) == 0 { return i }
            i += 1
        }
        return nil
    }
}


extension KVStore {
    /// The store's one shard, for tests of a single shard's internals and arenas (the
    /// store opened with `.oneShard` options).
    var only: Shard {
        precondition(shards.count == 1, "this test needs a store of one shard (open it with .oneShard options)")
        return shards[0]
    }
}

extension KVStoreOptions {
    /// Default options, for a store of one shard (`kv.index`, `kv.data`).
    static var oneShard: KVStoreOptions { KVStoreOptions(shards: 1) }

    /// These options, for a store of one shard.
    var oneShard: KVStoreOptions {
        var options = self
        options.shards = 1
        return options
    }
}

/// The 8 bytes of `word` as the media holds it (little-endian).
func littleEndianBytes(_ word: UInt64) -> [UInt8] { (0 ..< 8).map { UInt8(truncatingIfNeeded: word >> (8 * $0)) } }

/// The first offset of `needle` in `arena`.
func findInArena(_ arena: Arena, _ needle: [UInt8]) throws -> UInt64? {
    let bytes = Data(try arena.read(at: 0, count: Int(arena.size)))
    return bytes.range(of: Data(needle)).map { UInt64($0.lowerBound) }
}
