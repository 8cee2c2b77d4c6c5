// swift-tools-version: 6.1
//
// DaxHeap's benchmarks, kept out of the root manifest (as swift-nio and vapor do).
//
//   DaxBench              plain executable: every figure of issue 6 as `name value unit`
//                         (clock_gettime, medians of 3); driven by run.sh.
//   DaxHeapAllocations    package-benchmark suite guarding the hot paths at zero
//                         allocations per operation (Thresholds/6.3/*.p90.json):
//                         swift package benchmark thresholds check --path Thresholds/6.3
//   DaxKVAllocations      the same guard for the sample key-value store's get (product DaxKV)
import PackageDescription

let package = Package(
    name: "DaxHeapBenchmarks",
    dependencies: [
        .package(name: "DaxHeap", path: ".."),
        .package(url: "https://github.com/ordo-one/package-benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "DaxBench",
            dependencies: [.product(name: "DaxHeap", package: "DaxHeap"), .product(name: "DaxObjects", package: "DaxHeap")],
            path: "Sources/DaxBench",
            // pmem_memcpy_persist called directly on the heap's mapping, as a control.
            linkerSettings: [.linkedLibrary("pmem")]
        ),
        .executableTarget(
            name: "DaxHeapAllocations",
            dependencies: [
                .product(name: "DaxHeap", package: "DaxHeap"),
                .product(name: "DaxObjects", package: "DaxHeap"),
                .product(name: "Benchmark", package: "package-benchmark"),
            ],
            path: "Benchmarks/DaxHeapAllocations",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
        // The same guard for the sample key-value store's get (samples/daxkv, product DaxKV).
        .executableTarget(
            name: "DaxKVAllocations",
            dependencies: [
                .product(name: "DaxHeap", package: "DaxHeap"),
                .product(name: "DaxKV", package: "DaxHeap"),
                .product(name: "Benchmark", package: "package-benchmark"),
            ],
            path: "Benchmarks/DaxKVAllocations",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
