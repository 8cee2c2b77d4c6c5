// A store's shards laid out and destroyed under simulated power loss (README "Shards"):
// creation lays shards 1, 2, ... out first and shard 0 last, whose index magic is the
// store's existence; `destroy` removes shard 0 first. So a crash at any fence of either
// leaves the whole store or no store, never part of one; and an open allowed to create
// then lays a store out anew, with no pair of the old store and no arena of the old
// shard count left over.
//
// The window: a store of 4 shards with pairs is destroyed, then a store of the same name
// is created with 2 shards (the old shards 2 and 3 are gone by then, so the checker's own
// creation on the images taken during the destroy is what removes them). A crash image is
// taken before every fence of both; each is checked as below.
//
// Mutations that prove the checker can fail (each made by hand, swept with these
// defaults, reverted; 40 crash points, 142 images):
//   (a) destroy removes the shards from the last one down (shard 0 last): 48 images fail,
//       the first at fence 103, all-new image: "destroying the store: ... its arena
//       "kv.index.3" (shard 3 of 4) is missing" (shard 0's magic says the store exists).
//   (b) creation lays shard 0 out first: 40 images fail, the first at fence 129, all-new
//       image: "creating the store: ... its arena "kv.index.1" (shard 1 of 2) is missing".
import DaxHeap
@testable import DaxKV
import DaxTestSupport
import Foundation
import Testing

@Suite("DaxKV shard layout under power loss", .disabled(if: threadSanitizerIsLoaded, "single-threaded: ThreadSanitizer has no race to look for here, and the plain and AddressSanitizer runs sweep it"))
struct PowerLossLayoutTests {
    static let oldShards = 4
    static let newShards = 2
    static let pairs = 48

    /// What the window was doing when an image was taken.
    enum Phase: String, Sendable { case destroying = "destroying the store", creating = "creating the store" }

    /// What the images showed.
    struct Seen: Sendable, CustomStringConvertible {
        var oldStore = 0, noStore = 0, newStore = 0
        var description: String { "\(oldStore) the old store, \(noStore) no store, \(newStore) the new store" }
    }

    @Test("a power loss while a store of several shards is destroyed or created leaves all of it or none")
    func destroyThenCreate() throws {
        let scratch = try Scratch()
        let phase = Locked(Phase.destroying)
        let seen = Locked(Seen())
        let model = Dictionary(uniqueKeysWithValues: (0 ..< Self.pairs).map { (key($0), stamped($0, version: 1, count: 100)) })
        let simulator = PowerLossSimulator(crashPoints: .everyFence, mixedImages: PowerLossSettings.mixedImages(default: 2), seed: PowerLossSettings.seed(default: 23), directory: scratch.path) { image in
            let phase = phase.withLock { $0 }
            do { try Self.check(image, model: model, seen: seen) } catch { throw PowerLossCheckFailure("\(phase.rawValue): \(error)") }
        }
        defer { if simulator.failures.isEmpty { scratch.remove() } }

        // The scene, unarmed: a store of 4 shards holding pairs in each.
        simulator.isArmed = false
        let heap = try Heap.create(path: scratch.file("heap"), size: 64 << 20, simulator: simulator)
        do {
            let store = try KVStore.open(heap: heap, options: KVStoreOptions(initialDataSize: 2 << 20, shards: Self.oldShards))
            for (k, v) in model { try store.put(k, v) }
            #expect(Set(model.keys.map(store.shardIndex(of:))).count == Self.oldShards, "the pairs should fill every shard")
        }  // released: a store's windows keep its arenas from being destroyed

        simulator.isArmed = true
        try KVStore.destroy(heap: heap, name: "kv")
        let destroyFences = simulator.crashPointsTaken
        phase.withLock { $0 = .creating }
        let store = try KVStore.open(heap: heap, options: KVStoreOptions(initialDataSize: 2 << 20, shards: Self.newShards))
        simulator.isArmed = false

        #expect(store.shardCount == Self.newShards && store.count == 0)
        #expect(destroyFences > 0 && simulator.crashPointsTaken > destroyFences, "crash points in both the destroy and the creation")
        #expect(simulator.failures.isEmpty, """
            \(simulator.failures.count) of \(simulator.imagesChecked) images failed (images kept in \(scratch.path)):
            \(simulator.failures.prefix(5).map { "  \($0)" }.joined(separator: "\n"))
            """)
        let counts = seen.withLock { $0 }
        #expect(counts.oldStore > 0 && counts.noStore > 0 && counts.newStore > 0, "the images should show each state (\(counts))")
        print("PowerLossLayoutTests: \(simulator.crashPointsTaken) crash points (\(destroyFences) in the destroy), "
              + "\(simulator.imagesChecked) images (\(counts)), \(simulator.failures.count) failures")
    }

    /// The image holds the old store whole (every pair, its 4 shards), no store, or the
    /// new store (2 shards, empty); and an open allowed to create then finds that store or
    /// lays out a new empty one, and leaves exactly its shards' arenas.
    static func check(_ image: CrashImage, model: [[UInt8]: [UInt8]], seen: Locked<Seen>) throws {
        let found: Int?  // the shard count of the store found, nil if none
        do {
            let store = try KVStore.open(heap: try Heap.open(path: image.path), options: KVStoreOptions(create: false))
            switch store.shardCount {
            case oldShards:
                for (k, v) in model where try store.get(k) != v { throw PowerLossCheckFailure("the old store's \(describe(k)) holds \(describe(try store.get(k)))") }
                guard store.count == model.count else { throw PowerLossCheckFailure("the old store has \(store.count) pairs, not \(model.count)") }
                seen.withLock { $0.oldStore += 1 }
            case newShards:
                guard store.count == 0 else { throw PowerLossCheckFailure("the new store has \(store.count) pairs") }
                seen.withLock { $0.newStore += 1 }
            default:
                throw PowerLossCheckFailure("a store of \(store.shardCount) shards")
            }
            found = store.shardCount
        } catch KVError.noSuchStore {
            found = nil
        } catch KVError.notAStore(_, let reason) where reason.contains("creation never finished") {
            found = nil
        }
        if found == nil { seen.withLock { $0.noStore += 1 } }

        // Creation allowed: the store found, or a new one laid out over whatever is left.
        let heap = try Heap.open(path: image.path)
        let store = try KVStore.open(heap: heap, options: KVStoreOptions(initialDataSize: 2 << 20, shards: newShards))
        let shards = found ?? newShards
        guard store.shardCount == shards else { throw PowerLossCheckFailure("opened with creation allowed: \(store.shardCount) shards, not \(shards)") }
        let expectedArenas = Set((0 ..< shards).flatMap { i in
            [ShardPlace.Kind.index, .data].map { ShardPlace(index: i, count: shards).arenaName("kv", $0) }
        })
        let arenas = Set(heap.arenas.map(\.name))
        guard arenas == expectedArenas else {
            throw PowerLossCheckFailure("arenas \(arenas.sorted()) after the open, expected \(expectedArenas.sorted())")
        }
        if found == nil {
            guard store.count == 0 else { throw PowerLossCheckFailure("a store laid out anew holds \(store.count) pairs") }
            for k in model.keys where try store.get(k) != nil { throw PowerLossCheckFailure("a store laid out anew holds the old \(describe(k))") }
        }
        // And it works: a pair in each shard, read back.
        let fresh = (1000 ..< 1016).map { (key($0), stamped($0, version: 2, count: 100)) }
        for (k, v) in fresh { try store.put(k, v) }
        for (k, v) in fresh where try store.get(k) != v { throw PowerLossCheckFailure("\(describe(k)) put after the open reads \(describe(try store.get(k)))") }
    }
}
