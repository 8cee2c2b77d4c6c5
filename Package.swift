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
//   DaxObjects         persistent objects in an arena: allocation, roots, transactions
//   CDaxHeap, DaxHeapC the C API (libdaxheap.so): the header daxheap.h, and its Swift implementation
import PackageDescription

/// `@_lifetime` on initializers of non-escapable types (ArenaView, ArenaViews). An
/// experimental feature the release compiler accepts, not an unsafe flag, so
/// the package stays usable as a dependency; clients that only use views need nothing.
let lifetimes: [SwiftSetting] = [.enableExperimentalFeature("Lifetimes")]

let package = Package(
    name: "DaxHeap",
    products: [
        .library(name: "DaxHeap", targets: ["DaxHeap"]),
        .library(name: "DaxObjects", targets: ["DaxObjects"]),
        .executable(name: "daxheap", targets: ["DaxHeapTool"]),
        .library(name: "DaxKV", targets: ["DaxKV"]),
        .executable(name: "daxkv", targets: ["DaxKVTool"]),
        // The C API: libDaxHeapC.so, which `make install` installs as libdaxheap.so with the
        // header Sources/CDaxHeap/include/daxheap.h (the name "daxheap" is the tool's).
        .library(name: "DaxHeapC", type: .dynamic, targets: ["DaxHeapC"]),
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
        // Persistent objects inside an arena (docs/OBJECTS.md): over the public DaxHeap API.
        .target(name: "DaxObjects", dependencies: ["DaxHeap", "CDaxShims"]),
        // The operator's tool: thin over the public DaxHeap API.
        .executableTarget(
            name: "DaxHeapTool",
            dependencies: [
                "DaxHeap", "DaxObjects",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The C API (docs/C-API.md): the hand-written header in a header-only C target, and
        // its implementation in Swift over the public DaxHeap API, checked against the header.
        .target(name: "CDaxHeap"),
        .target(
            name: "DaxHeapC",
            dependencies: ["CDaxHeap", "DaxHeap", "DaxObjects", .product(name: "Logging", package: "swift-log")]
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
        // Test-only: the child the object heap's SIGKILL test spawns (threads allocating,
        // freeing and committing transactions until killed).
        .executableTarget(name: "DaxObjectsProbe", dependencies: ["DaxObjects", "DaxHeap", "DaxTestSupport"], path: "Tests/DaxObjectsProbe"),
        .testTarget(name: "DaxObjectsTests", dependencies: ["DaxObjects", "DaxHeap", "DaxTestSupport", "DaxObjectsProbe"]),
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
        .testTarget(name: "DaxHeapToolTests", dependencies: ["DaxHeapTool", "DaxHeap", "DaxObjects", "DaxDevice", "DaxTestSupport",
                                                             .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "DaxHeapCTests", dependencies: ["DaxHeapC", "CDaxHeap", "DaxHeap", "DaxTestSupport",
                                                          .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "DaxKVTests", dependencies: ["DaxKV", "DaxKVTool", "DaxHeap", "DaxTestSupport"], path: "samples/daxkv/Tests/DaxKVTests"),
        // samples/sqlite's VFS compiled into the package only for its power-loss sweep, over
        // a heap opened in Swift with a simulator (the installed extension is built by
        // samples/sqlite/Makefile); SQLite is Debian's libsqlite3-dev.
        .systemLibrary(name: "CSQLite", path: "samples/sqlite/Tests/CSQLite", pkgConfig: "sqlite3",
                       providers: [.apt(["libsqlite3-dev"])]),
        .target(name: "DaxSQLiteVFS", dependencies: ["CDaxHeap", "CSQLite"], path: "samples/sqlite/src",
                cSettings: [.define("SQLITE_CORE"), .define("DXH_TESTING"), .define("_GNU_SOURCE")]),
        .testTarget(name: "DaxSQLiteTests", dependencies: ["DaxSQLiteVFS", "CSQLite", "DaxHeapC", "DaxHeap", "DaxTestSupport"],
                    path: "samples/sqlite/Tests/DaxSQLiteTests"),
    ],
    swiftLanguageModes: [.v6]
)

// scripts/sanitizers.sh builds the AddressSanitizer run with DAXHEAP_OPTIMIZE_CODE_UNDER_TEST=1:
// the code under test (every target but the test targets) is compiled with -O, in the
// debug configuration so that the DEBUG hooks stay, and the test targets, half the source,
// as usual: the build takes 3 minutes less than with -O everywhere, the tests 1.5 more.
// Unset (as for every user of the package), nothing changes and no unsafe flag is present.
if Context.environment["DAXHEAP_OPTIMIZE_CODE_UNDER_TEST"] == "1" {
    for target in package.targets where target.type == .regular || target.type == .executable {
        target.swiftSettings = (target.swiftSettings ?? []) + [.unsafeFlags(["-O"])]
    }
}
