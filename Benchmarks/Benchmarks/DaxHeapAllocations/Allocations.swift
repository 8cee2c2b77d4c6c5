// The allocation guard of issue 6: the data-plane hot paths allocate nothing per
// operation. Each benchmark runs `scaledIterations` operations per iteration and its
// mallocCountTotal (malloc-interposer, package-benchmark's MallocInterposer trait) is
// checked against Thresholds/6.3/DaxHeapAllocations.<name>.p90.json, all 0:
//
//   cd Benchmarks && PMEM_IS_PMEM_FORCE=1 swift package --scratch-path .build \
//       benchmark thresholds check --path Thresholds/6.3
//
// Wall-clock figures live in DaxBench (run.sh); nothing here gates on time.
import Benchmark
import DaxHeap

#if canImport(Glibc)
import Glibc
#endif

/// One heap shared by every benchmark: an arena of 64 MiB (one extent) for data-plane
/// copies and an arena of 256 two-MiB extents for translations. The file is unlinked
/// once mapped, so nothing is left behind.
final class Fixture: Sendable {
    static let shared = Fixture()

    let heap: Heap
    let data: Arena
    let fragmented: Arena
    let offsets: [UInt64]
    let source: [UInt8]

    init() {
        let block: UInt64 = 2 << 20
        let path = "/dev/shm/daxheap-allocations.\(getpid())"
        do {
            heap = try Heap.create(path: path, size: 32 * block + 512 * block + 8 * block, overwrite: true)
            unlink(path)
            data = try heap.createArena(named: "data", size: 32 * block)
            let a = try heap.createArena(named: "fragmented", size: block)
            let b = try heap.createArena(named: "spacer", size: block)
            for n in 2 ... 256 {
                try a.resize(to: UInt64(n) * block)
                try b.resize(to: UInt64(n) * block)
            }
            fragmented = a
            var state: UInt64 = 0x9E37_79B9_7F4A_7C15
            let size = a.size
            offsets = (0 ..< 1024).map { _ in
                state ^= state >> 12; state ^= state << 25; state ^= state >> 27
                return (state &* 0x2545_F491_4F6C_DD1D) % size
            }
            source = (0 ..< 4096).map { UInt8(truncatingIfNeeded: $0) }
        } catch {
            fatalError("fixture: \(error)")
        }
    }
}

func configuration(expected: Int = 0) -> Benchmark.Configuration {
    let zeroAllocations: [BenchmarkMetric: BenchmarkThresholds] = [
        .mallocCountTotal: .init(absolute: [.p90: expected == 0 ? 0 : 2]),
    ]
    return .init(
        metrics: [.mallocCountTotal, .wallClock],
        warmupIterations: 3,
        scalingFactor: .kilo,
        maxDuration: .milliseconds(300),
        maxIterations: 50,
        thresholds: zeroAllocations
    )
}

let benchmarks: @Sendable () -> Void = {
    // The control: one allocation per operation, threshold 1000 (scalingFactor .kilo).
    // If the malloc interposer were off, mallocCountTotal would read 0 everywhere and the
    // zero gates below would pass for nothing; this one would then fail the check.
    Benchmark("Control_one_allocation_per_op", configuration: configuration(expected: 1000)) { benchmark in
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            let box = UnsafeMutablePointer<Int>.allocate(capacity: 1)
            box.initialize(to: i)
            blackHole(box.pointee)
            box.deallocate()
        }
        benchmark.stopMeasurement()
    }

    // Radix translation through ArenaTranslator, 1000 lookups in one read section.
    Benchmark("Translate_radix_256_extents", configuration: configuration()) { benchmark in
        let f = Fixture.shared
        let offsets = f.offsets
        benchmark.startMeasurement()
        let sum = try f.fragmented.withTranslator { t -> UInt64 in
            var acc: UInt64 = 0
            for i in benchmark.scaledIterations { acc &+= t.translate(offsets[i & 1023])!.deviceOffset }
            return acc
        }
        benchmark.stopMeasurement()
        blackHole(sum)
    }

    // One public call (read section + radix walk) per lookup.
    Benchmark("Translate_contiguousBytes_256_extents", configuration: configuration()) { benchmark in
        let f = Fixture.shared
        let offsets = f.offsets
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations { blackHole(try f.fragmented.contiguousBytes(at: offsets[i & 1023])) }
        benchmark.stopMeasurement()
    }

    // Scoped raw access, 16 bytes inside one extent.
    Benchmark("Arena_withUnsafeBytes_16B", configuration: configuration()) { benchmark in
        let f = Fixture.shared
        let offsets = f.offsets
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            let offset = offsets[i & 1023] & ~15
            blackHole(try f.fragmented.withUnsafeBytes(at: offset, count: 16) { $0.load(as: UInt64.self) })
        }
        benchmark.stopMeasurement()
    }

    for size in [64, 4096] {
        Benchmark("Persist_memcpyPersist_\(size)B", configuration: configuration()) { benchmark in
            let f = Fixture.shared
            try f.source.withUnsafeBytes { bytes in
                let src = UnsafeRawBufferPointer(rebasing: bytes.prefix(size))
                benchmark.startMeasurement()
                for i in benchmark.scaledIterations {
                    try f.data.memcpyPersist(at: UInt64(i * size), from: src)
                }
                benchmark.stopMeasurement()
            }
        }
    }

    objectBenchmarks()

    // Copying read across extent boundaries (forEachPiece) into a caller buffer.
    Benchmark("Arena_readInto_4KiB_across_extents", configuration: configuration()) { benchmark in
        let f = Fixture.shared
        let offsets = f.offsets
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 64)
        defer { buffer.deallocate() }
        let size = f.fragmented.size
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            let offset = min(offsets[i & 1023], size - 4096)
            try f.fragmented.read(into: buffer, at: offset)
        }
        benchmark.stopMeasurement()
    }
}
