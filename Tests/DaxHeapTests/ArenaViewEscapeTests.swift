import DaxTestSupport
import Foundation
import Testing

/// An `ArenaView`, and the bytes it lends as spans, cannot outlive its closure: the
/// compiler refuses the program. Each case compiles a small client of the built DaxHeap
/// module with `swiftc` (through SIL diagnostics, where lifetimes are checked; about a
/// second each) and expects the escape error.
///
/// The first case is the bug this guards against. When `ArenaView` was an ordinary struct
/// it compiled, and the store through the kept view landed in arena b's first word.
@Suite struct ArenaViewEscapeTests {
    struct Client: Sendable, CustomTestStringConvertible {
        let name: String
        let source: String
        /// What the compiler must say; nil: it must compile without errors.
        let error: String?
        var testDescription: String { name }
    }

    static let setUp = """
        import DaxHeap
        import Dispatch

        func scenario() throws {
            let heap = try Heap.create(path: "/dev/shm/never-run.heap", size: 32 << 20)
            let a = try heap.createArena(named: "a", size: 2 << 20)

        """

    static let clients: [Client] = [
        Client(name: "kept in a variable outside the closure, used after a is destroyed and b made in its place", source: setUp + """
                var kept: ArenaView? = nil
                try a.withView { view in kept = view }
                try heap.destroyArena(named: "a")
                _ = try heap.createArena(named: "b", size: 2 << 20)
                try kept?.store(0xBAD, at: 0)
            }
            """, error: "lifetime-dependent variable 'kept' escapes its scope"),
        Client(name: "returned from the closure", source: setUp + """
                let kept: ArenaView = try a.withView { $0 }
                try kept.store(0xBAD, at: 0)
            }
            """, error: "requires that 'ArenaView' conform to 'Escapable'"),
        Client(name: "captured by a closure kept for later", source: setUp + """
                var later: (() throws -> Void)? = nil
                try a.withView { view in later = { try view.store(0xBAD, at: 0) } }
                try later?()
            }
            """, error: "lifetime-dependent variable 'view' escapes its scope"),
        Client(name: "captured by a closure run on another thread", source: setUp + """
                try a.withView { view in DispatchQueue.global().async { try? view.store(0xBAD, at: 0) } }
            }
            """, error: "capture of 'view' with non-Sendable type 'ArenaView' in a '@Sendable' closure"),
        Client(name: "a span of its bytes kept outside the closure", source: setUp + """
                var kept: RawSpan? = nil
                try a.withView { view in try view.withBytes(at: 0, count: 8) { kept = $0 } }
                _ = kept?.byteCount
            }
            """, error: "lifetime-dependent variable 'kept' escapes its scope"),
        Client(name: "a view of several arenas kept outside the closure", source: setUp + """
                var kept: ArenaView? = nil
                try Arena.withViews([a, a]) { views in kept = views[1] }
                try kept?.store(0xBAD, at: 0)
            }
            """, error: "lifetime-dependent variable 'kept' escapes its scope"),
        Client(name: "the views of several arenas returned from the closure", source: setUp + """
                let kept: ArenaViews = try Arena.withViews([a]) { $0 }
                try kept[0].store(0xBAD, at: 0)
            }
            """, error: "requires that 'ArenaViews' conform to 'Escapable'"),
        // The control: the same client using the view inside the closure compiles, so the
        // cases above fail for the escape and not for a broken command line.
        Client(name: "used inside the closure", source: setUp + """
                try a.withView { view in
                    try view.store(1, at: 0)
                    try view.withBytes(at: 0, count: 8) { _ = $0.byteCount }
                    try view.withMutableBytes(at: 8, count: 8) { $0.storeBytes(of: 2, toByteOffset: 0, as: UInt64.self) }
                }
                try Arena.withViews([a, a]) { views in
                    let view = views[1]
                    _ = try view.wrappingAdd(1, at: 0)
                }
            }
            """, error: nil),
    ]

    @Test(arguments: clients)
    func theCompilerJudgesAClientThatKeepsAView(_ client: Client) throws {
        let output = try compile(client.source)
        let errors = String(decoding: output.stderr, as: UTF8.self)
        if let expected = client.error {
            #expect(output.status != 0)
            #expect(errors.contains("error: ") && errors.contains(expected), "\(errors)")
        } else {
            #expect(output.status == 0, "\(errors)")
            #expect(!errors.contains("error:"), "\(errors)")
        }
    }

    /// Runs `swiftc -emit-sil` on `source` against the modules this test was built with.
    private func compile(_ source: String) throws -> ProcessOutput {
        let build = try #require(buildFolder(), "no Modules/DaxHeap.swiftmodule beside the test bundle")
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let folder = try makeScratchFolder(prefix: "daxheap-escape")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let file = folder + "/client.swift"
        try source.write(toFile: file, atomically: true, encoding: .utf8)
        let moduleMaps = [
            root.appendingPathComponent("Sources/CPMem/module.modulemap").path,
            root.appendingPathComponent("Sources/CPMem2/module.modulemap").path,
            build.appendingPathComponent("CDaxShims.build/module.modulemap").path,
        ]
        var arguments = ["swiftc", "-emit-sil", "-o", "/dev/null", "-swift-version", "6",
                         "-I", build.appendingPathComponent("Modules").path,
                         "-module-cache-path", build.appendingPathComponent("ModuleCache").path]
        for map in moduleMaps { arguments += ["-Xcc", "-fmodule-map-file=\(map)"] }
        return try runToCompletion(URL(fileURLWithPath: "/usr/bin/env"), arguments + [file])
    }

    /// The build folder (`.build/<triple>/debug`) holding the test executable.
    private func buildFolder() -> URL? {
        var candidates = [URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()]
        for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
            candidates.append(bundle.bundleURL.deletingLastPathComponent())
        }
        return candidates.first {
            FileManager.default.fileExists(atPath: $0.appendingPathComponent("Modules/DaxHeap.swiftmodule").path)
        }
    }
}
