import ArgumentParser
import DaxHeap
import DaxKV
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The workload of ../shared/anchors (kv_common.h): keys "key%013d", values from
/// splitmix64 of (index, version), Fisher-Yates orders from fixed seeds.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Fill, read and update N keys in random order; print ops/s per phase.",
        discussion: """
        Runs in a fresh store NAME-bench (destroyed before and after), so the store NAME is \
        never touched. Prints `daxkv.fill`, `daxkv.read`, `daxkv.update` lines, and \
        then, with --threads T (T > 1), the same three phases on a fresh store as \
        `daxkv.tT.fill` etc.: the fill and update split the keys between T threads (two \
        writers wait for each other only on keys of the same shard), the read runs T readers in parallel. Every read \
        checks the value, as the anchors do. The store is sized for the workload up front, \
        as the anchors size theirs: the index for N keys, the data arena for the 2N records \
        the fill and the update append (`initialDataSize`, prefaulted when the store is \
        created, outside the timing, as libpmemobj allocates its pool when it creates it). \
        `daxkv.update.reuse` updates every key again: the fill's segments are dead by then, \
        and this pass writes into them again (each zeroed first). \
        `daxkv.read.batch16` reads the keys 16 a call (`get(batch:)`); `daxkv.fill.batch16` \
        fills a fresh store again 16 puts a call (`put(batch:values:)`); and \
        `daxkv.fill.growing` fills a fresh store created at the default size, whose data \
        arena grows (and is prefaulted) as the fill goes.
        """
    )
    @OptionGroup var options: StoreOptions
    @Option(name: .long, help: "How many keys.") var keys = 1_000_000
    @Option(name: .long, help: "Value size in bytes (the anchors use 128).") var valueSize = 128
    @Option(name: .long, help: "Threads per phase.") var threads = 1
    @Option(name: .long, help: "Shards of the bench store (a power of two, 1 to 64; default: the library's choice for a new store).") var shards: Int?
    @Flag(name: .long, help: "Keep no DRAM copy of the keys for the writers (KVStoreOptions.keyCopy off): updates compare keys in the old records.")
    var noKeyCopy = false
    @Flag(name: .long, help: "Also reopen the store at the end and print `daxkv.open <ms> ms <slots> slots ...` (the recovery cost).")
    var measureOpen = false

    func validate() throws {
        guard keys > 0, keys <= 9_999_999_999_999 else { throw ValidationError("--keys must be between 1 and 9999999999999") }
        guard (0 ... (1 << 20)).contains(valueSize) else { throw ValidationError("--value-size must be 0 to 1048576") }
        guard (1 ... 64).contains(threads) else { throw ValidationError("--threads must be 1 to 64") }
    }

    func run() throws {
        try reportingFailures {
            let heap: Heap
            do throws(HeapError) { heap = try Heap.open(path: options.path, mode: .readWrite) } catch { throw KVError.heap(error) }
            let name = "\(options.store)-bench"
            try KVStore.destroy(heap: heap, name: name)
            defer { try? KVStore.destroy(heap: heap, name: name) }
            BenchConfig.valueSize = valueSize
            let n = keys
            let fill = Bench.permutation(n, seed: 0x1234567)
            let read = Bench.permutation(n, seed: 0x89abcdef)
            let update = Bench.permutation(n, seed: 0x13579bdf)
            // One thread first; with --threads T > 1, then again with T threads on a fresh store.
            for threads in Set([1, threads]).sorted() {
                let prefix = threads > 1 ? "daxkv.t\(threads)." : "daxkv."
                try KVStore.destroy(heap: heap, name: name)
                try singlePhases(heap: heap, name: name, threads: threads, prefix: prefix, fill: fill, read: read, update: update)
                try KVStore.destroy(heap: heap, name: name)
                try batchedFill(heap: heap, name: name, threads: threads, prefix: prefix, fill: fill)
                try KVStore.destroy(heap: heap, name: name)
                try growingFill(heap: heap, name: name, threads: threads, prefix: prefix, fill: fill)
            }
        }
    }

    /// Options for a store sized for the workload: the index for `keys`, the data arena
    /// for `records` appended records (10 % over: the keys do not split exactly evenly
    /// between the shards).
    func sized(records: Int, heap: Heap) -> KVStoreOptions {
        var options = KVStoreOptions(expectedKeys: keys, shards: shards, keyCopy: !noKeyCopy)
        options.shards = options.shardCount(forNewStoreOn: heap)  // the count the sizing assumes
        options.initialDataSize = KVStoreOptions.dataSize(forRecords: records + records / 10, keyBytes: Bench.keySize, valueBytes: valueSize, shards: options.shards!)
        return options
    }

    /// Every key put once, in `order`, with values of `version`, as phase `label` (the fill,
    /// the update): ops/s.
    func putPhase(_ label: String, into store: KVStore, order: [Int], version: UInt64, threads: Int) throws -> Double {
        try Bench.phase(label, n: keys, threads: threads) { i, key, value, _ in
            Bench.makeKey(key, order[i])
            Bench.makeValue(value, order[i], version: version)
            try store.put(UnsafeRawBufferPointer(key), UnsafeRawBufferPointer(value))
        }
    }

    /// The fill on a fresh store created at the default size: its data arena grows, and
    /// each new segment is prefaulted, inside the timing.
    func growingFill(heap: Heap, name: String, threads: Int, prefix: String, fill: [Int]) throws {
        let n = keys
        let store = try KVStore.open(heap: heap, name: name, options: KVStoreOptions(expectedKeys: keys, shards: shards, keyCopy: !noKeyCopy))
        let rate = try putPhase("fill.growing", into: store, order: fill, version: 0, threads: threads)
        print("\(prefix)fill.growing \(Int(rate)) ops/s"); fflushOut()
        guard store.count == n else { throw Failure("bench: \(store.count) keys after the growing fill, expected \(n)") }
    }

    /// Fill, read, batched read, update and a second update (into the fill's segments,
    /// reused) on a fresh store, then (with --measure-open) its reopening; the store is
    /// closed on return.
    func singlePhases(heap: Heap, name: String, threads: Int, prefix: String, fill: [Int], read: [Int], update: [Int]) throws {
        let n = keys
        let store = try KVStore.open(heap: heap, name: name, options: sized(records: 2 * n, heap: heap))
        let fillRate = try putPhase("fill", into: store, order: fill, version: 0, threads: threads)
        print("\(prefix)fill \(Int(fillRate)) ops/s"); fflushOut()
        guard store.count == n else { throw Failure("bench: \(store.count) keys after the fill, expected \(n)") }
        let readRate = try Bench.phase("read", n: n, threads: threads) { i, key, value, out in
            Bench.makeKey(key, read[i])
            guard let length = try store.get(UnsafeRawBufferPointer(key), into: out), length == value.count else {
                throw Failure("bench: key \(read[i]) is missing")
            }
            Bench.makeValue(value, read[i], version: 0)
            guard memcmp(value.baseAddress!, out.baseAddress!, value.count) == 0 else { throw Failure("bench: wrong value for key \(read[i])") }
        }
        print("\(prefix)read \(Int(readRate)) ops/s"); fflushOut()
        // The same gets, 16 at a time (`get(batch:)`): their misses overlap.
        let batchRate = try Bench.batchPhase("read.batch16", n: n, threads: threads, width: 16) { start, batch in
            for j in 0 ..< batch.count { Bench.makeKey(batch.keyBytes(j), read[start + j]) }
            try store.get(batch: batch.keys(batch.count), into: batch.outs(batch.count), lengths: batch.lengths)
            for j in 0 ..< batch.count {
                guard let length = batch.lengths[j], length == batch.value.count else { throw Failure("bench: key \(read[start + j]) is missing") }
                Bench.makeValue(batch.value, read[start + j], version: 0)
                guard memcmp(batch.value.baseAddress!, batch.outs(batch.count)[j].baseAddress!, length) == 0 else {
                    throw Failure("bench: wrong value for key \(read[start + j])")
                }
            }
        }
        print("\(prefix)read.batch16 \(Int(batchRate)) ops/s"); fflushOut()
        let updateRate = try putPhase("update", into: store, order: update, version: 1, threads: threads)
        print("\(prefix)update \(Int(updateRate)) ops/s"); fflushOut()
        guard store.count == n else { throw Failure("bench: \(store.count) keys after the update, expected \(n)") }
        // The update again: the fill's segments hold no live record now, so this pass
        // writes into them again, each zeroed before it becomes the tail, as a store under
        // steady writes does (the store is sized for two passes, not three).
        let reuseRate = try putPhase("update.reuse", into: store, order: update, version: 2, threads: threads)
        print("\(prefix)update.reuse \(Int(reuseRate)) ops/s"); fflushOut()
        guard store.count == n else { throw Failure("bench: \(store.count) keys after the second update, expected \(n)") }
        if measureOpen {
            // What a restart costs: open runs the same recovery as after a crash.
            let reopened = try KVStore.open(heap: heap, name: name, options: KVStoreOptions(create: false))
            let r = reopened.recovery
            print("daxkv.open \((r.seconds * 1e5).rounded() / 100) ms \(r.slotsScanned) slots \(r.recordHeadersRead) headers \(r.tailRecordsScanned) tail-records \(r.recordsReplayed) replayed"); fflushOut()
            guard reopened.count == n else { throw Failure("bench: \(reopened.count) keys after reopening, expected \(n)") }
        }
    }

    /// The fill again on a fresh store, 16 puts a call (`put(batch:values:)`): one fence
    /// and one flushed range per shard a batch reaches, as a group commit would.
    func batchedFill(heap: Heap, name: String, threads: Int, prefix: String, fill: [Int]) throws {
        let n = keys
        let batched = try KVStore.open(heap: heap, name: name, options: sized(records: n, heap: heap))
        let batchFillRate = try Bench.batchPhase("fill.batch16", n: n, threads: threads, width: 16) { start, batch in
            for j in 0 ..< batch.count {
                Bench.makeKey(batch.keyBytes(j), fill[start + j])
                Bench.makeValue(batch.outs(batch.count)[j], fill[start + j], version: 0)
            }
            try batched.put(batch: batch.keys(batch.count), values: batch.values(batch.count))
        }
        print("\(prefix)fill.batch16 \(Int(batchFillRate)) ops/s"); fflushOut()
        guard batched.count == n else { throw Failure("bench: \(batched.count) keys after the batched fill, expected \(n)") }
    }
}

func fflushOut() { fflush(nil) }  // all output streams

enum Bench {
    /// The anchors' keys: "key" and 13 digits.
    static let keySize = 16

    static func splitmix(_ s: inout UInt64) -> UInt64 {
        s &+= 0x9E37_79B9_7F4A_7C15
        var z = s
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    static func permutation(_ n: Int, seed: UInt64) -> [Int] {
        var p = Array(0 ..< n)
        var s = seed
        var i = n - 1
        while i > 0 {
            let j = Int(splitmix(&s) % UInt64(i + 1))
            p.swapAt(i, j)
            i -= 1
        }
        return p
    }

    @inline(__always)
    static func makeKey(_ out: UnsafeMutableRawBufferPointer, _ index: Int) {
        var idx = UInt64(index)
        out[0] = UInt8(ascii: "k"); out[1] = UInt8(ascii: "e"); out[2] = UInt8(ascii: "y")
        var i = 15
        while i >= 3 { out[i] = UInt8(48 + idx % 10); idx /= 10; i -= 1 }
    }

    /// The anchors' value for (index, version), for any size (whole words, then a tail).
    @inline(__always)
    static func makeValue(_ out: UnsafeMutableRawBufferPointer, _ index: Int, version: UInt64) {
        var s = UInt64(index) &* 0x9E37_79B9_7F4A_7C15 &+ version &* 0xD1B5_4A32_D192_ED03
        var i = 0
        while i + 8 <= out.count { out.storeBytes(of: splitmix(&s), toByteOffset: i, as: UInt64.self); i += 8 }
        if i < out.count {
            var x = splitmix(&s)
            while i < out.count { out[i] = UInt8(truncatingIfNeeded: x); x >>= 8; i += 1 }
        }
    }

    /// Runs `body(i, key, value, out)` for i in 0..<n over `threads` threads, each with its
    /// own buffers (allocated once, outside the timing); returns ops/s.
    static func phase(
        _ label: String, n: Int, threads: Int,
        _ body: @escaping @Sendable (Int, UnsafeMutableRawBufferPointer, UnsafeMutableRawBufferPointer, UnsafeMutableRawBufferPointer) throws -> Void
    ) throws -> Double {
        let valueSize = BenchConfig.valueSize
        let progress = Progress(label: label)
        let failure = Locked<String?>(nil)
        let done = Atomic<Int>(0)
        let clock = ContinuousClock()
        let start = clock.now
        func work(_ t: Int) {
            let key = UnsafeMutableRawBufferPointer.allocate(byteCount: Bench.keySize, alignment: 8)
            let value = UnsafeMutableRawBufferPointer.allocate(byteCount: max(valueSize, 8), alignment: 8)
            let out = UnsafeMutableRawBufferPointer.allocate(byteCount: max(valueSize, 8), alignment: 8)
            defer { key.deallocate(); value.deallocate(); out.deallocate() }
            let v = UnsafeMutableRawBufferPointer(rebasing: value[0 ..< valueSize])
            let o = UnsafeMutableRawBufferPointer(rebasing: out[0 ..< valueSize])
            var i = t
            var local = 0
            while i < n {
                do { try body(i, key, v, o) } catch {
                    failure.withLock { $0 = "\(error)" }
                    return
                }
                i += threads
                local += 1
                if local & 0xFFFF == 0 {
                    let total = done.add(0x10000, ordering: .relaxed).newValue
                    if t == 0 { progress.update(total) }
                }
            }
        }
        if threads == 1 {
            work(0)
        } else {
            var ids: [pthread_t] = []
            for t in 1 ..< threads {
                let box = Unmanaged.passRetained(WorkBox { work(t) })
                var id = pthread_t()
                pthread_create(&id, nil, { arg in
                    let box = Unmanaged<WorkBox>.fromOpaque(arg!).takeRetainedValue()
                    box.run()
                    return nil
                }, box.toOpaque())
                ids.append(id)
            }
            work(0)
            for id in ids { pthread_join(id, nil) }
        }
        let seconds = (clock.now - start).seconds
        progress.finish()
        if let message = failure.withLock({ $0 }) { throw Failure(message) }
        return Double(n) / seconds
    }
}

/// One thread's buffers for a batched phase: `width` keys and value buffers (a batched
/// get's outputs, a batched put's values), one value.
final class BatchBuffers {
    let width: Int
    let keyStorage: UnsafeMutableRawBufferPointer
    let outStorage: UnsafeMutableRawBufferPointer
    let keyList: UnsafeMutableBufferPointer<UnsafeRawBufferPointer>
    let outList: UnsafeMutableBufferPointer<UnsafeMutableRawBufferPointer>
    /// The value buffers again, read-only: a batched put's values.
    let valueList: UnsafeMutableBufferPointer<UnsafeRawBufferPointer>
    let value: UnsafeMutableRawBufferPointer
    /// The lengths of the batch being run (`count` of them).
    private(set) var lengths: UnsafeMutableBufferPointer<Int?>
    private let lengthStorage: UnsafeMutableBufferPointer<Int?>
    /// Keys in the batch being run.
    private(set) var count = 0

    init(width: Int, valueSize: Int) {
        self.width = width
        keyStorage = .allocate(byteCount: Bench.keySize * width, alignment: 8)
        outStorage = .allocate(byteCount: max(valueSize, 8) * width, alignment: 8)
        keyList = .allocate(capacity: width)
        outList = .allocate(capacity: width)
        valueList = .allocate(capacity: width)
        lengthStorage = .allocate(capacity: width)
        lengthStorage.initialize(repeating: nil)
        lengths = lengthStorage
        value = .allocate(byteCount: max(valueSize, 8), alignment: 8)
        for j in 0 ..< width {
            keyList[j] = UnsafeRawBufferPointer(rebasing: keyStorage[Bench.keySize * j ..< Bench.keySize * (j + 1)])
            outList[j] = UnsafeMutableRawBufferPointer(rebasing: outStorage[valueSize * j ..< valueSize * (j + 1)])
            valueList[j] = UnsafeRawBufferPointer(outList[j])
        }
    }

    deinit {
        keyStorage.deallocate(); outStorage.deallocate(); keyList.deallocate(); outList.deallocate(); valueList.deallocate()
        lengthStorage.deallocate(); value.deallocate()
    }

    func begin(count: Int) {
        self.count = count
        lengths = UnsafeMutableBufferPointer(rebasing: lengthStorage[0 ..< count])
    }

    func keyBytes(_ j: Int) -> UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(rebasing: keyStorage[Bench.keySize * j ..< Bench.keySize * (j + 1)]) }
    func keys(_ n: Int) -> UnsafeBufferPointer<UnsafeRawBufferPointer> { UnsafeBufferPointer(rebasing: keyList[0 ..< n]) }
    func outs(_ n: Int) -> UnsafeBufferPointer<UnsafeMutableRawBufferPointer> { UnsafeBufferPointer(rebasing: outList[0 ..< n]) }
    func values(_ n: Int) -> UnsafeBufferPointer<UnsafeRawBufferPointer> { UnsafeBufferPointer(rebasing: valueList[0 ..< n]) }
}

extension Bench {
    /// Runs `body(start, buffers)` for batches of `width` consecutive indices of 0..<n
    /// (buffers.count of them) over `threads` threads (batch b on thread b % threads),
    /// each with its own buffers allocated outside the timing; returns ops/s.
    static func batchPhase(_ label: String, n: Int, threads: Int, width: Int,
                           _ body: @escaping @Sendable (Int, BatchBuffers) throws -> Void) throws -> Double {
        let valueSize = BenchConfig.valueSize
        let buffers = (0 ..< threads).map { _ in BatchBuffers(width: width, valueSize: valueSize) }
        let batches = (n + width - 1) / width
        let shared = UncheckedBox(buffers)
        // Thread t runs batches t, t + threads, ...: the buffers of batch b are its own.
        let batchRate = try phase(label, n: batches, threads: threads) { b, _, _, _ in
            let mine = shared.value[b % threads]
            let start = b * width
            mine.begin(count: min(width, n - start))
            try body(start, mine)
        }
        return batchRate * Double(n) / Double(batches)
    }
}

final class UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

final class WorkBox: @unchecked Sendable {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// The value size of the running bench (set once before the phases).
enum BenchConfig {
    nonisolated(unsafe) static var valueSize = 128
}
