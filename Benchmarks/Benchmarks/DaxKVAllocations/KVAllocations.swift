// The allocation guard for the sample key-value store (samples/daxkv, product DaxKV):
// a get into a caller's buffer allocates nothing. Kept apart from DaxHeapAllocations so
// that the heap's guard still builds while the sample changes. Thresholds:
// Thresholds/6.3/DaxKVAllocations.<name>.p90.json.
import Benchmark
import DaxHeap
import DaxKV

#if canImport(Glibc)
import Glibc
#endif

/// A store of 10,000 keys "key%013d" with 128-byte values, on a heap whose file is
/// unlinked once mapped.
final class KVFixture: Sendable {
    static let shared = KVFixture()
    static let count = 10_000

    let store: KVStore
    let keys: [[UInt8]]

    init() {
        let path = "/dev/shm/daxkv-allocations.\(getpid())"
        do {
            let heap = try Heap.create(path: path, size: 256 << 20, overwrite: true)
            unlink(path)
            store = try KVStore.open(heap: heap, name: "kv", options: .init(expectedKeys: Self.count))
            keys = (0 ..< Self.count).map { Array(String(format: "key%013d", $0).utf8) }
            let value = [UInt8](repeating: 0x5A, count: 128)
            for key in keys { try store.put(key, value) }
        } catch {
            fatalError("fixture: \(error)")
        }
    }
}

let benchmarks: @Sendable () -> Void = {
    let configuration = Benchmark.Configuration(
        metrics: [.mallocCountTotal, .wallClock],
        warmupIterations: 3,
        scalingFactor: .kilo,
        maxDuration: .milliseconds(300),
        maxIterations: 50,
        thresholds: [.mallocCountTotal: .init(absolute: [.p90: 0])]
    )

    Benchmark("KV_get_128B_into_buffer", configuration: configuration) { benchmark in
        let f = KVFixture.shared
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256, alignment: 16)
        defer { buffer.deallocate() }
        try f.keys.withUnsafeBufferPointer { keys in
            benchmark.startMeasurement()
            for i in benchmark.scaledIterations {
                let length = try keys[(i &* 7919) % KVFixture.count].withUnsafeBytes { try f.store.get($0, into: buffer) }
                blackHole(length)
            }
            benchmark.stopMeasurement()
        }
    }
}
