// swift-tools-version: 6.2
//
// DaxHeap: a whole device-dax (or a file emulating one) as a persistent heap of named,
// resizable arenas. One module per concern; the folder layout is the architecture:
//
//   CPMem, CPMem2,     C: libpmem and libpmem2 (bad blocks) through pkg-config,
//   CDaxShims          and a few tiny shims
//   DaxDevice          the device: detection, sysfs, the one 2 MiB-aligned mapping, locks, flushing
//   DaxResourceTree    the kernel's resource tree semantics over the usable region
//   DaxRadix           multi-order radix tree: arena page offset -> extent
//   DaxMetadata        the on-media format (docs/FORMAT.md): two checksummed copies
//   DaxArenas          provisioning: arenas, extents, grow/shrink, no I/O
//   DaxHeap            the public API: Heap, Arena, windows, HeapError, PersistentReference,
//                      and the power-loss simulator (PowerLoss/)
import PackageDescription

/// `@_lifetime` on initializers of non-escapable types (ArenaView, ArenaViews). An
/// experimental feature the release compiler accepts, not an unsafe flag, so
/// the package stays usable as a dependency; clients that only use views need nothing.
let lifetimes: [SwiftSetting] = [.enableExperimentalFeature("Lifetimes")]

let package = Package(
    name: "DaxHeap",
    products: [
        .library(name: "DaxHeap", targets: ["DaxHeap"]),
        .executable(name: "daxheap", targets: ["DaxHeapTool"]),
        .library(name: "DaxKV", targets: ["DaxKV"]),
        .executable(name: "daxkv", targets: ["DaxKVTool"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CPMem",
            pkgConfig: "libpmem",
            providers: [.apt(["libpmem-dev"])]
        ),
        .systemLibrary(
            name: "CPMem2",
            pkgConfig: "libpmem2",
            providers: [.apt(["libpmem2-dev"])]
        ),
        .target(name: "CDaxShims"),
        .target(name: "DaxDevice", dependencies: ["CPMem", "CPMem2", "CDaxShims"]),
        .target(name: "DaxResourceTree"),
        .target(name: "DaxRadix"),
        .target(name: "DaxMetadata", dependencies: ["CDaxShims"]),
        .target(name: "DaxArenas", dependencies: ["DaxResourceTree", "DaxRadix", "DaxMetadata"]),
        .target(
            name: "DaxHeap",
            dependencies: [
                "DaxDevice", "DaxArenas", "DaxMetadata", "DaxRadix", "DaxResourceTree", "CDaxShims",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: lifetimes
        ),
        // The operator's tool: thin over the public DaxHeap API.
        .executableTarget(
            name: "DaxHeapTool",
            dependencies: [
                "DaxHeap",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The sample key-value store (samples/daxkv): uses the public DaxHeap API only.
        .target(name: "CDaxKVShims", path: "samples/daxkv/Sources/CDaxKVShims"),
        .target(name: "DaxKV", dependencies: ["DaxHeap", "CDaxKVShims"], path: "samples/daxkv/Sources/DaxKV"),
        .executableTarget(
            name: "DaxKVTool",
            dependencies: ["DaxKV", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "samples/daxkv/Sources/daxkv"
        ),

        // Seeded randomness shared by the randomized tests.
        .target(name: "DaxTestSupport", path: "Tests/DaxTestSupport"),
        .testTarget(name: "DaxResourceTreeTests", dependencies: ["DaxResourceTree", "DaxTestSupport"]),
        .testTarget(name: "DaxRadixTests", dependencies: ["DaxRadix", "DaxTestSupport"]),
        .testTarget(name: "DaxMetadataTests", dependencies: ["DaxMetadata", "DaxTestSupport"]),
        .testTarget(name: "DaxArenasTests", dependencies: ["DaxArenas", "DaxMetadata", "DaxRadix", "DaxResourceTree", "DaxTestSupport"]),
        // Test-only: children the crash and SIGBUS tests spawn (package-only fault hooks;
        // signal scenarios whose right outcome may be death), and the latter's C helpers.
        .executableTarget(
            name: "DaxHeapFaultProbe",
            dependencies: ["DaxHeap", "DaxDevice", .product(name: "Logging", package: "swift-log")],
            path: "Tests/DaxHeapFaultProbe"
        ),
        .target(name: "CDaxSignalTesting", path: "Tests/CDaxSignalTesting"),
        .executableTarget(name: "DaxSignalProbe", dependencies: ["DaxHeap", "CDaxShims", "CDaxSignalTesting"], path: "Tests/DaxSignalProbe"),
        .testTarget(
            name: "DaxHeapTests",
            dependencies: ["DaxHeap", "DaxDevice", "DaxMetadata", "DaxArenas", "DaxTestSupport", "DaxHeapFaultProbe", "DaxSignalProbe",
                           .product(name: "Logging", package: "swift-log")]
        ),
        // Drives the built `daxheap` executable as a user would.
        .testTarget(name: "DaxHeapToolTests", dependencies: ["DaxHeapTool", "DaxHeap", "DaxDevice", "DaxTestSupport",
                                                             .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "DaxKVTests", dependencies: ["DaxKV", "DaxKVTool", "DaxHeap", "DaxTestSupport"], path: "samples/daxkv/Tests/DaxKVTests"),
    ],
    swiftLanguageModes: [.v6]
)
