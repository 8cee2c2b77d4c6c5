// Arena windows (issue 11): persist through a window beside libpmem on the same mapping,
// the time to map a window over many extents, and a grow with a window open.
import DaxHeap
import Foundation
#if canImport(Glibc)
import Glibc
#endif

func windowSuite(dir: String, reps: Int) throws {
    try windowPersist(dir: dir, reps: reps)
    try windowMap(dir: dir, reps: reps)
    try windowGrow(dir: dir, reps: reps)
}

/// `daxheap.window.persist.<size>[.write_persist|.libpmem_direct|.libpmem_direct_persist].bw|lat`:
/// the window's memcpyPersist, a memcpy through `base` then the window's persist, and their
/// controls, libpmem called directly on the window's addresses: pmem_memcpy_persist, and
/// the same memcpy then pmem_persist.
func windowPersist(dir: String, reps: Int) throws {
    let arenaSize: UInt64 = 256 * MiB
    let path = dir + "/daxbench.\(getpid()).window-persist"
    defer { removeHeapFile(path) }
    let heap = try Heap.create(path: path, size: arenaSize + 2 * block, overwrite: true)
    guard heap.persistence == .pmem else {
        note("window.persist: the heap is in msync mode; set PMEM_IS_PMEM_FORCE=1 (figures skipped)")
        return
    }
    let window = try heap.createArena(named: "w", size: arenaSize).mapWindow()
    defer { window.close() }
    memset(window.base, 1, Int(arenaSize))  // pre-fault, as the persist suite does
    let source = UnsafeMutableRawPointer.allocate(byteCount: Int(block), alignment: 4096)
    defer { source.deallocate() }
    for i in 0 ..< Int(block) { source.storeBytes(of: UInt8(truncatingIfNeeded: i &* 31 &+ 7), toByteOffset: i, as: UInt8.self) }
    for size in [64, 4096, Int(block)] {
        let src = UnsafeRawBufferPointer(start: source, count: size)
        let limit = Int(arenaSize) - size
        /// ns for `ops` copies walking sequentially through the arena.
        func walk(_ ops: Int, _ body: (Int) throws -> Void) rethrows -> UInt64 {
            var offset = 0
            let start = nowNS()
            for _ in 0 ..< ops {
                try body(offset)
                offset += size
                if offset > limit { offset = 0 }
            }
            return nowNS() - start
        }
        let methods: [(String, (Int) throws -> UInt64)] = [
            ("daxheap.window.persist.\(sizeName(size))", { ops in try walk(ops) { try window.memcpyPersist(at: UInt64($0), from: src) } }),
            ("daxheap.window.persist.\(sizeName(size)).write_persist", { ops in
                try walk(ops) { offset in
                    memcpy(window.base + offset, source, size)
                    try window.persist(at: UInt64(offset), count: UInt64(size))
                }
            }),
            ("daxheap.window.persist.\(sizeName(size)).libpmem_direct", { ops in walk(ops) { _ = c_pmem_memcpy_persist(window.base + $0, source, size) } }),
            ("daxheap.window.persist.\(sizeName(size)).libpmem_direct_persist", { ops in
                walk(ops) { offset in
                    memcpy(window.base + offset, source, size)
                    c_pmem_persist(window.base + offset, size)
                }
            }),
        ]
        // Many short interleaved rounds (median of 15 x 40 ms): one 150 ms round per method
        // let a drift of the machine's load decide a 2 % target (issue 11's note).
        try measureBandwidth(methods, size: size, reps: max(reps * 5, 15), roundNS: 40_000_000)
    }
}

/// Calibrates each method to about `roundNS` per repetition, interleaves the repetitions
/// and emits `<name>.bw` (GB/s) and `<name>.lat` (ns/op) medians.
func measureBandwidth(_ methods: [(String, (Int) throws -> UInt64)], size: Int, reps: Int, roundNS: Double = 150_000_000) throws {
    let target = roundNS
    var opsFor: [Int] = []
    for (_, run) in methods {
        var ops = size >= 1 << 20 ? 8 : 1024
        while true {
            let ns = try run(ops)
            if ns >= 20_000_000 || ops >= 1 << 28 {
                opsFor.append(max(1, Int(Double(ops) * target / Double(max(ns, 1)))))
                break
            }
            ops *= 4
        }
    }
    var bw = Array(repeating: [Double](), count: methods.count)
    var lat = Array(repeating: [Double](), count: methods.count)
    for _ in 0 ..< reps {
        for (m, (_, run)) in methods.enumerated() {
            let ns = Double(try run(opsFor[m]))
            bw[m].append(Double(opsFor[m]) * Double(size) / ns)
            lat[m].append(ns / Double(opsFor[m]))
        }
    }
    for (m, (name, _)) in methods.enumerated() {
        note("\(name) ops/rep=\(opsFor[m]) GB/s \(bw[m].map(format).joined(separator: " ")) ns/op \(lat[m].map(format).joined(separator: " "))")
        emit("\(name).bw", median(bw[m]), "GB/s")
        emit("\(name).lat", median(lat[m]), "ns/op")
    }
}

/// `daxheap.window.map.<n>`: µs to open a window over an arena of `n` discontiguous
/// extents (reserve, one mmap per extent, register). Goal at 4096: ≤ 50,000 µs.
func windowMap(dir: String, reps: Int) throws {
    let counts = [1, 4096]
    let path = dir + "/daxbench.\(getpid()).window-map"
    defer { removeHeapFile(path) }
    // Arenas a and b grow in turn, as in the translate suite: a ends with n extents.
    let heap = try Heap.create(path: path, size: UInt64(2 * counts.last! + 8) * block + 2 * block, overwrite: true)
    let a = try heap.createArena(named: "a", size: block)
    let b = try heap.createArena(named: "b", size: block)
    var extents = 1
    for n in counts {
        let t0 = nowNS()
        while extents < n {
            extents += 1
            try a.resize(to: UInt64(extents) * block)
            try b.resize(to: UInt64(extents) * block)
        }
        let count = try a.info.extents.count
        precondition(count == n, "arena a has \(count) extents, wanted \(n)")
        note("window.map: arena of \(n) extents built in \(format(Double(nowNS() - t0) / 1e6)) ms")
        var close: [Double] = []
        try figure("daxheap.window.map.\(n)", "us", reps: reps) {
            let start = nowNS()
            let window = try a.mapWindow()
            let mapped = nowNS()
            window.close()
            close.append(Double(nowNS() - mapped) / 1000)
            return Double(mapped - start) / 1000
        }
        note("daxheap.window.map.\(n) close: \(close.map(format).joined(separator: " ")) us")
    }
}

/// `daxheap.window.grow.<arenas>`: µs for a grow by one 2 MiB extent with one window open,
/// on a heap of that many arenas; beside it, the same grow with no window. Goal at 1000:
/// ≤ 60 µs.
func windowGrow(dir: String, reps: Int) throws {
    let grows = 100
    for arenas in [1, 1000] {
        let path = dir + "/daxbench.\(getpid()).window-grow"
        defer { removeHeapFile(path) }
        let heap = try Heap.create(path: path, size: UInt64(arenas + grows + 8) * block + 2 * block, overwrite: true)
        for i in 0 ..< arenas - 1 { try heap.createArena(named: String(format: "bg%05d", i), size: block) }
        let x = try heap.createArena(named: "x", size: block)
        /// µs per grow, `grows` grows from one block; then back to one block.
        func growAll(windowed: Bool) throws -> Double {
            let window = windowed ? try x.mapWindow() : nil
            var ns: UInt64 = 0
            for g in 1 ... grows {
                let t0 = nowNS()
                try x.resize(to: UInt64(g + 1) * block)
                ns += nowNS() - t0
            }
            window?.close()
            try x.resize(to: block)
            return Double(ns) / 1000 / Double(grows)
        }
        _ = try growAll(windowed: true)  // warm-up
        var bare: [Double] = []
        try figure("daxheap.window.grow.\(arenas)", "us", reps: reps) {
            bare.append(try growAll(windowed: false))
            return try growAll(windowed: true)
        }
        note("daxheap.window.grow.\(arenas) without a window: \(bare.map(format).joined(separator: " ")) us (median \(format(median(bare))))")
    }
}
