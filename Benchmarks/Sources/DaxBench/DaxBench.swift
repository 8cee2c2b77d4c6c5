// DaxBench: the figures of issue 6, one line each on stdout, `name value unit`.
// Detail (per-repetition values, parameters) goes to stderr as `#` lines.
//
//   DaxBench [--dir DIR] [--bigdir DIR] [--reps N] [persist] [translate] [provision] [open] [window]
//   DaxBench [--reps ROUNDS] paired     (a diagnostic of the persist paths: PairedBench.swift)
//
// Every figure is the median of `--reps` (default 3) repetitions taken in this process.
// Heaps are sparse files under DIR (default /dev/shm); run with PMEM_IS_PMEM_FORCE=1 so
// libpmem flushes with CPU instructions (the figures are about pmem, not msync).
import DaxHeap
import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

let MiB: UInt64 = 1 << 20
let GiB: UInt64 = 1 << 30
let block: UInt64 = 2 * MiB

@inline(__always)
func nowNS() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

final class Sink: @unchecked Sendable {
    static let shared = Sink()
    var value: UInt64 = 0
}

/// Keeps a result alive so the optimizer cannot drop the work that made it.
@inline(never)
func blackHole(_ x: UInt64) { Sink.shared.value &+= x }

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func format(_ v: Double) -> String {
    if v >= 1000 { return String(format: "%.0f", v) }
    if v >= 10 { return String(format: "%.1f", v) }
    return String(format: "%.3f", v)
}

func emit(_ name: String, _ value: Double, _ unit: String) {
    print("\(name) \(format(value)) \(unit)")
    fflush(nil)
}

func note(_ line: String) {
    FileHandle.standardError.write(Data(("# " + line + "\n").utf8))
}

/// Runs `body` `reps` times, notes the values and emits their median.
func figure(_ name: String, _ unit: String, reps: Int, _ body: () throws -> Double) rethrows {
    var values: [Double] = []
    for _ in 0 ..< reps { values.append(try body()) }
    note("\(name) reps: \(values.map(format).joined(separator: " ")) \(unit)")
    emit(name, median(values), unit)
}

/// A small fast PRNG (xorshift64*), seeded, so runs draw the same offsets.
struct XorShift {
    var state: UInt64
    init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
}

func sizeName(_ bytes: Int) -> String {
    if bytes >= 1 << 20 { return "\(bytes >> 20)MiB" }
    if bytes >= 1 << 10 { return "\(bytes >> 10)KiB" }
    return "\(bytes)B"
}

/// libpmem called directly (no DaxHeap in between), on the heap's own mapping: separates
/// the cost of the API from that of the mapping. Linked with -lpmem (Package.swift).
@_silgen_name("pmem_memcpy_persist")
func c_pmem_memcpy_persist(_ dest: UnsafeMutableRawPointer, _ src: UnsafeRawPointer, _ len: Int) -> UnsafeMutableRawPointer?
@_silgen_name("pmem_persist")
func c_pmem_persist(_ addr: UnsafeRawPointer, _ len: Int)

func removeHeapFile(_ path: String) { unlink(path) }

// MARK: - 1. Persist bandwidth and latency

func persistSuite(dir: String, reps: Int) throws {
    let arenaSize: UInt64 = GiB
    let path = dir + "/daxbench.\(getpid()).persist"
    defer { removeHeapFile(path) }
    let heap = try Heap.create(path: path, size: arenaSize + 2 * block, overwrite: true)
    guard heap.persistence == .pmem else {
        note("persist: the heap is in msync mode; set PMEM_IS_PMEM_FORCE=1 (figures skipped)")
        return
    }
    let arena = try heap.createArena(named: "persist", size: arenaSize)
    // Pre-fault the whole arena, as persist_bw.c does with its mapping.
    let t0 = nowNS()
    _ = try arena.withUnsafeMutableBytes(at: 0, count: Int(arenaSize)) { raw in
        memset(raw.baseAddress!, 1, raw.count)
    }
    note("persist: arena of \(arenaSize >> 20) MiB, one extent, pre-faulted in \(format(Double(nowNS() - t0) / 1e6)) ms")

    let maxSize = Int(block)
    let source = UnsafeMutableRawPointer.allocate(byteCount: maxSize, alignment: 4096)
    defer { source.deallocate() }
    for i in 0 ..< maxSize { source.storeBytes(of: UInt8(truncatingIfNeeded: i &* 31 &+ 7), toByteOffset: i, as: UInt8.self) }

    let sizes = ProcessInfo.processInfo.environment["DAXBENCH_PERSIST_SIZES"].map {
        $0.split(separator: ",").compactMap { Int($0) }
    } ?? [64, 256, 4096, 64 << 10, 2 << 20]
    for size in sizes {
        let src = UnsafeRawBufferPointer(start: source, count: size)
        let step = UInt64(size)
        let limit = arenaSize - step
        // Methods, each returning ns for `ops` copies walking sequentially through the arena.
        func viaArena(_ ops: Int) throws -> UInt64 {
            var offset: UInt64 = 0
            let start = nowNS()
            for _ in 0 ..< ops {
                try arena.memcpyPersist(at: offset, from: src)
                offset += step
                if offset > limit { offset = 0 }
            }
            return nowNS() - start
        }
        func writeThenPersist(_ ops: Int) throws -> UInt64 {
            var offset: UInt64 = 0
            let start = nowNS()
            for _ in 0 ..< ops {
                try arena.write(src, at: offset)
                try arena.persist(at: offset, count: step)
                offset += step
                if offset > limit { offset = 0 }
            }
            return nowNS() - start
        }
        func plainMemcpy(_ ops: Int) throws -> UInt64 {
            try arena.withUnsafeMutableBytes(at: 0, count: Int(arenaSize)) { raw -> UInt64 in
                let base = raw.baseAddress!
                var offset = 0
                let start = nowNS()
                for _ in 0 ..< ops {
                    memcpy(base + offset, source, size)
                    offset += size
                    if offset > Int(limit) { offset = 0 }
                }
                return nowNS() - start
            }
        }
        func libpmemDirect(_ ops: Int) throws -> UInt64 {
            try arena.withUnsafeMutableBytes(at: 0, count: Int(arenaSize)) { raw -> UInt64 in
                let base = raw.baseAddress!
                var offset = 0
                let start = nowNS()
                for _ in 0 ..< ops {
                    _ = c_pmem_memcpy_persist(base + offset, source, size)
                    offset += size
                    if offset > Int(limit) { offset = 0 }
                }
                return nowNS() - start
            }
        }
        // Diagnosis: the direct call wrapped in what a read section costs now, a plain
        // store in and out of a word (ReadSections.enter/exit without the membarrier's
        // other half, which only writers pay).
        let word = Atomic<UInt64>(0)
        func libpmemDirectWithSection(_ ops: Int) throws -> UInt64 {
            try arena.withUnsafeMutableBytes(at: 0, count: Int(arenaSize)) { raw -> UInt64 in
                let base = raw.baseAddress!
                var offset = 0
                let start = nowNS()
                for _ in 0 ..< ops {
                    word.store(word.load(ordering: .relaxed) &+ 1, ordering: .releasing)
                    _ = c_pmem_memcpy_persist(base + offset, source, size)
                    word.store(word.load(ordering: .relaxed) &- 1, ordering: .releasing)
                    offset += size
                    if offset > Int(limit) { offset = 0 }
                }
                return nowNS() - start
            }
        }
        var methods: [(String, (Int) throws -> UInt64)] = [
            ("daxheap.persist.\(sizeName(size))", viaArena),
            ("daxheap.persist.\(sizeName(size)).write_persist", writeThenPersist),
            ("daxheap.memcpy.\(sizeName(size))", plainMemcpy),
            ("daxheap.persist.\(sizeName(size)).libpmem_direct", libpmemDirect),
            ("daxheap.persist.\(sizeName(size)).libpmem_direct_section", libpmemDirectWithSection),
        ]
        if let only = ProcessInfo.processInfo.environment["DAXBENCH_PERSIST_ONLY"] {  // for profiling
            methods = methods.filter { $0.0.hasSuffix(only) }
        }
        // Interleaved short rounds, as for windows: a 64 B latency target of 1.05x is a
        // few nanoseconds, less than the load's drift between three 150 ms rounds.
        try measureBandwidth(methods, size: size, reps: max(reps * 5, 15), roundNS: 40_000_000)
    }
    _ = heap
}

// MARK: - 2. Translation

/// A copy of ArenaLayout.extentIndexByBinarySearch over the public extent list, with the
/// same arithmetic as ArenaLayout.translate.
@inline(__always)
func bsearchTranslate(_ extents: [Extent], size: UInt64, _ offset: UInt64) -> (deviceOffset: UInt64, contiguous: UInt64)? {
    guard offset < size else { return nil }
    var low = 0
    var high = extents.count - 1
    while low < high {
        let mid = (low + high + 1) / 2
        if extents[mid].arenaOffset <= offset { low = mid } else { high = mid - 1 }
    }
    let extent = extents[low]
    let within = offset - extent.arenaOffset
    return (extent.deviceOffset + within, extent.length - within)
}

final class Stop: Sendable {
    let flag = Atomic<Bool>(false)
    let resizes = Atomic<Int>(0)
    let lookups = Atomic<Int>(0)
    let lookupNS = Atomic<Int>(0)
}

func translateSuite(dir: String, reps: Int) throws {
    let counts = [1, 16, 256, 4096]
    let maxExtents = counts.last!
    let path = dir + "/daxbench.\(getpid()).translate"
    defer { removeHeapFile(path) }
    // Arenas a and b grow in turn by one block, so each growth lands after the other's
    // last extent: a ends with `n` discontiguous 2 MiB extents.
    let heap = try Heap.create(path: path, size: UInt64(2 * maxExtents + 8) * block + 2 * block, overwrite: true)
    let a = try heap.createArena(named: "a", size: block)
    let b = try heap.createArena(named: "b", size: block)
    var extents = 1
    var buildNS: UInt64 = 0
    for n in counts {
        let t0 = nowNS()
        while extents < n {
            extents += 1
            try a.resize(to: UInt64(extents) * block)
            try b.resize(to: UInt64(extents) * block)
        }
        buildNS += nowNS() - t0
        let info = try a.info
        precondition(info.extents.count == n, "arena a has \(info.extents.count) extents, wanted \(n)")
        let size = info.size
        var rng = XorShift(seed: 0x1234_5678 &+ UInt64(n))
        let offsets = (0 ..< (1 << 16)).map { _ in rng.next() % size }
        let rounds = 32
        let lookups = Double(rounds * offsets.count)

        let radix = { () throws -> Double in
            try a.withTranslator { t -> Double in
                var acc: UInt64 = 0
                let start = nowNS()
                for _ in 0 ..< rounds {
                    for o in offsets { acc &+= t.translate(o)!.deviceOffset }
                }
                let ns = Double(nowNS() - start)
                blackHole(acc)
                return ns / lookups
            }
        }
        let extentList = info.extents
        let bsearch = { () -> Double in
            var acc: UInt64 = 0
            let start = nowNS()
            for _ in 0 ..< rounds {
                for o in offsets { acc &+= bsearchTranslate(extentList, size: size, o)!.deviceOffset }
            }
            let ns = Double(nowNS() - start)
            blackHole(acc)
            return ns / lookups
        }
        // The whole public path per lookup: read section, snapshot load, radix walk.
        let perCall = { () throws -> Double in
            var acc: UInt64 = 0
            let start = nowNS()
            for _ in 0 ..< rounds / 4 {
                for o in offsets { acc &+= try a.contiguousBytes(at: o) }
            }
            let ns = Double(nowNS() - start)
            blackHole(acc)
            return ns / (lookups / 4)
        }
        var r: [Double] = [], s: [Double] = [], c: [Double] = []
        _ = try radix(); _ = bsearch()  // warm
        for _ in 0 ..< reps {
            r.append(try radix())
            s.append(bsearch())
            c.append(try perCall())
        }
        for (name, values) in [("radix", r), ("bsearch", s), ("arena_call", c)] {
            note("daxheap.translate.\(n).\(name) reps: \(values.map(format).joined(separator: " ")) ns/op")
            emit("daxheap.translate.\(n).\(name)", median(values), "ns/op")
        }
    }
    note("translate: built \(maxExtents) extents (\(2 * (maxExtents - 1)) resizes) in \(format(Double(buildNS) / 1e6)) ms")

    // Concurrent lookups: 2 reader threads on arena a (4096 extents), each lookup through
    // the public per-call path, while a third thread grows and shrinks a by one block.
    let size = a.size
    func concurrent(resizing: Bool, seconds: Double) throws -> (lookupNS: Double, resizeUS: Double) {
        let stop = Stop()
        let done = DispatchSemaphore(value: 0)
        var threads: [Thread] = []
        for t in 0 ..< 2 {
            threads.append(Thread {
                var rng = XorShift(seed: 0xABCD &+ UInt64(t))
                var n = 0
                var acc: UInt64 = 0
                let start = nowNS()
                while !stop.flag.load(ordering: .relaxed) {
                    for _ in 0 ..< 256 {
                        acc &+= (try? a.contiguousBytes(at: rng.next() % size)) ?? 0
                    }
                    n += 256
                }
                let ns = nowNS() - start
                blackHole(acc)
                stop.lookups.add(n, ordering: .relaxed)
                stop.lookupNS.add(Int(ns), ordering: .relaxed)
                done.signal()
            })
        }
        if resizing {
            threads.append(Thread {
                var n = 0
                while !stop.flag.load(ordering: .relaxed) {
                    do {
                        try a.resize(to: size + block)
                        try a.resize(to: size)
                    } catch {
                        note("resize failed: \(error)")
                        break
                    }
                    n += 2
                }
                stop.resizes.add(n, ordering: .relaxed)
                done.signal()
            })
        }
        let start = nowNS()
        for thread in threads { thread.start() }
        usleep(UInt32(seconds * 1e6))
        stop.flag.store(true, ordering: .relaxed)
        for _ in threads { done.wait() }
        let wall = Double(nowNS() - start)
        let lookupNS = Double(stop.lookupNS.load(ordering: .relaxed)) / Double(stop.lookups.load(ordering: .relaxed))
        let resizes = stop.resizes.load(ordering: .relaxed)
        return (lookupNS, resizes > 0 ? wall / 1000 / Double(resizes) : 0)
    }
    var quiet: [Double] = [], busy: [Double] = [], resize: [Double] = []
    for _ in 0 ..< reps {
        quiet.append(try concurrent(resizing: false, seconds: 0.5).lookupNS)
        let r = try concurrent(resizing: true, seconds: 0.5)
        busy.append(r.lookupNS)
        resize.append(r.resizeUS)
    }
    for (name, values, unit) in [
        ("daxheap.translate.concurrent.t2.lookup", busy, "ns/op"),
        ("daxheap.translate.concurrent.t2.noresize.lookup", quiet, "ns/op"),
        ("daxheap.translate.concurrent.resize", resize, "us/op"),
    ] {
        note("\(name) reps: \(values.map(format).joined(separator: " ")) \(unit)")
        emit(name, median(values), unit)
    }
    _ = b
}

// MARK: - 3. Provisioning

func provisionSuite(dir: String, reps: Int) throws {
    for arenas in [1, 100, 1000] {
        let path = dir + "/daxbench.\(getpid()).provision"
        defer { removeHeapFile(path) }
        let heap = try Heap.create(path: path, size: UInt64(arenas + 8) * block + 2 * block, overwrite: true)
        for i in 0 ..< arenas - 1 { try heap.createArena(named: String(format: "bg%05d", i), size: block) }
        let cycles = 100
        var create: [Double] = [], grow: [Double] = [], shrink: [Double] = [], destroy: [Double] = []
        // warm-up cycle
        try heap.createArena(named: "x", size: block)
        try heap.destroyArena(named: "x")
        for _ in 0 ..< reps {
            var tc: UInt64 = 0, tg: UInt64 = 0, ts: UInt64 = 0, td: UInt64 = 0
            for _ in 0 ..< cycles {
                let t0 = nowNS()
                try heap.createArena(named: "x", size: block)
                let t1 = nowNS()
                try heap.resizeArena(named: "x", to: 2 * block)
                let t2 = nowNS()
                try heap.resizeArena(named: "x", to: block)
                let t3 = nowNS()
                try heap.destroyArena(named: "x")
                let t4 = nowNS()
                tc += t1 - t0; tg += t2 - t1; ts += t3 - t2; td += t4 - t3
            }
            let us = { (ns: UInt64) in Double(ns) / 1000 / Double(cycles) }
            create.append(us(tc)); grow.append(us(tg)); shrink.append(us(ts)); destroy.append(us(td))
        }
        let resize = zip(grow, shrink).map { ($0 + $1) / 2 }
        for (name, values) in [("create", create), ("resize", resize), ("resize.grow", grow),
                               ("resize.shrink", shrink), ("destroy", destroy)] {
            note("daxheap.provision.\(name).\(arenas) reps: \(values.map(format).joined(separator: " ")) us/op")
            emit("daxheap.provision.\(name).\(arenas)", median(values), "us/op")
        }
        note("provision: \(arenas) arenas on the heap (including the one provisioned), generation \(heap.generation)")
    }
}

// MARK: - 4. Open

func openMedian(path: String, reps: Int) throws -> [Double] {
    _ = try Heap.open(path: path)  // warm the page cache
    var values: [Double] = []
    for _ in 0 ..< reps {
        let t0 = nowNS()
        let heap = try Heap.open(path: path)
        let t1 = nowNS()
        withExtendedLifetime(heap) {}
        values.append(Double(t1 - t0) / 1e6)
    }
    return values
}

func openSuite(dir: String, bigDir: String, reps: Int) throws {
    for (name, size) in [("1GiB", GiB), ("64GiB", 64 * GiB), ("1TiB", 1024 * GiB)] {
        var where_ = dir
        var path = where_ + "/daxbench.\(getpid()).open"
        do {
            _ = try Heap.create(path: path, size: size, overwrite: true)
        } catch {
            removeHeapFile(path)
            note("open: cannot create \(name) under \(dir) (\(error)); using \(bigDir)")
            where_ = bigDir
            path = where_ + "/daxbench.\(getpid()).open"
            _ = try Heap.create(path: path, size: size, overwrite: true)
        }
        defer { removeHeapFile(path) }
        do {
            let heap = try Heap.open(path: path)
            try heap.createArena(named: "one", size: block)
        }
        let values = try openMedian(path: path, reps: max(reps, 5))
        note("daxheap.open.\(name) (\(where_)) reps: \(values.map(format).joined(separator: " ")) ms")
        emit("daxheap.open.\(name)", median(values), "ms")
    }
    for arenas in [1, 100, 1000] {
        let path = dir + "/daxbench.\(getpid()).open"
        defer { removeHeapFile(path) }
        do {
            let heap = try Heap.create(path: path, size: UInt64(arenas + 4) * block + 2 * block, overwrite: true)
            for i in 0 ..< arenas { try heap.createArena(named: String(format: "a%05d", i), size: block) }
        }
        let values = try openMedian(path: path, reps: max(reps, 5))
        note("daxheap.open.arenas.\(arenas) reps: \(values.map(format).joined(separator: " ")) ms")
        emit("daxheap.open.arenas.\(arenas)", median(values), "ms")
    }
}

// MARK: - Main

@main
struct DaxBench {
    static func main() throws {
        var args = Array(CommandLine.arguments.dropFirst())
        if args.first == "mkheap", args.count == 3, let size = UInt64(args[2]) {
            // A fresh heap for daxkv bench (run.sh), as `daxheap create PATH --size` would.
            _ = try Heap.create(path: args[1], size: size, overwrite: true)
            return
        }
        if args.first == "objects-fill", args.count == 3, let count = Int(args[2]) {
            try fillAndDie(path: args[1], count: count)  // the child of the objects suite's recovery figures
        }
        var dir = "/dev/shm"
        var bigDir = "/var/tmp"
        var reps = 3
        var suites: [String] = []
        while !args.isEmpty {
            let a = args.removeFirst()
            switch a {
            case "--dir": dir = args.removeFirst()
            case "--bigdir": bigDir = args.removeFirst()
            case "--reps": reps = Int(args.removeFirst())!
            default: suites.append(a)
            }
        }
        if suites.isEmpty || suites == ["all"] { suites = ["persist", "translate", "provision", "open", "window"] }
        note("DaxBench dir=\(dir) bigdir=\(bigDir) reps=\(reps) PMEM_IS_PMEM_FORCE=\(ProcessInfo.processInfo.environment["PMEM_IS_PMEM_FORCE"] ?? "(unset)")")
        for suite in suites {
            let t0 = nowNS()
            switch suite {
            case "persist": try persistSuite(dir: dir, reps: reps)
            case "translate": try translateSuite(dir: dir, reps: reps)
            case "provision": try provisionSuite(dir: dir, reps: reps)
            case "open": try openSuite(dir: dir, bigDir: bigDir, reps: reps)
            case "window": try windowSuite(dir: dir, reps: reps)
            case "objects": try objectsSuite(dir: dir, reps: reps)
            case "paired": try pairedSuite(dir: dir, rounds: max(reps, 41))  // a diagnostic; run.sh does not run it
            default:
                note("unknown suite \(suite)")
                exit(64)
            }
            note("suite \(suite) took \(format(Double(nowNS() - t0) / 1e9)) s")
        }
    }
}
