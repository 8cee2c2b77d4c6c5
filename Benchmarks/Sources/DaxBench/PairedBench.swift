// `DaxBench paired`: a diagnostic for the persist paths, not run by run.sh. The persist and
// window suites time each method for ~150 ms per repetition, so a ratio of two methods
// mixes in whatever the machine did in between; here each DaxHeap call and
// pmem_memcpy_persist called directly on the same mapping alternate in short rounds
// (~5 ms each, the order rotated every round) and the ratio is taken per round, so each
// pair shares the same moment. Prints, per size and method, the median ratio of latencies
// (method / direct) and its interquartile range:
//
//   arena     Arena.memcpyPersist                 / direct on the heap's mapping
//   window    ArenaWindow.memcpyPersist           / direct on the window's addresses
//   section   direct between two plain stores     / direct (what a read section's stores cost)
//
//   PMEM_IS_PMEM_FORCE=1 DaxBench paired [--reps ROUNDS]   (sizes: DAXBENCH_PERSIST_SIZES, default 64,256,4096)
import DaxHeap
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

func pairedSuite(dir: String, rounds: Int) throws {
    let arenaSize: UInt64 = 256 * MiB
    let path = dir + "/daxbench.\(getpid()).paired"
    defer { removeHeapFile(path) }
    let heap = try Heap.create(path: path, size: 2 * arenaSize + 2 * block, overwrite: true)
    guard heap.persistence == .pmem else {
        note("paired: the heap is in msync mode; set PMEM_IS_PMEM_FORCE=1")
        return
    }
    let arena = try heap.createArena(named: "paired", size: arenaSize)
    let base = try arena.withUnsafeMutableBytes(at: 0, count: Int(arenaSize)) { raw in
        memset(raw.baseAddress!, 1, raw.count)  // pre-fault
        return raw.baseAddress!  // for the direct calls only, while `heap` is open
    }
    let window = try heap.createArena(named: "paired-window", size: arenaSize).mapWindow()
    defer { window.close() }
    memset(window.base, 1, Int(arenaSize))  // pre-fault the window's own page tables
    let source = UnsafeMutableRawPointer.allocate(byteCount: Int(block), alignment: 4096)
    defer { source.deallocate() }
    memset(source, 7, Int(block))
    let sizes = ProcessInfo.processInfo.environment["DAXBENCH_PERSIST_SIZES"].map {
        $0.split(separator: ",").compactMap { Int($0) }
    } ?? [64, 256, 4096]
    let word = Atomic<UInt64>(0)
    for size in sizes {
        let src = UnsafeRawBufferPointer(start: source, count: size)
        let limit = Int(arenaSize) - size
        /// ns for `ops` copies walking sequentially through the arena from `offset` on
        /// (where the previous round of the same method stopped). Inlined with its body, so
        /// that each method's loop calls what it measures directly, as the persist suite's do.
        @inline(__always)
        func walk(_ ops: Int, _ offset: inout Int, _ body: (Int) throws -> Void) rethrows -> UInt64 {
            let start = nowNS()
            for _ in 0 ..< ops {
                try body(offset)
                offset += size
                if offset > limit { offset = 0 }
            }
            return nowNS() - start
        }
        var offsets = [Int](repeating: 0, count: 5)
        let direct = { (ops: Int) in walk(ops, &offsets[0]) { _ = c_pmem_memcpy_persist(base + $0, source, size) } }
        let windowDirect = { (ops: Int) in walk(ops, &offsets[1]) { _ = c_pmem_memcpy_persist(window.base + $0, source, size) } }
        // (name, method, its reference)
        let pairs: [(String, (Int) throws -> UInt64, (Int) throws -> UInt64)] = [
            ("arena", { ops in try walk(ops, &offsets[2]) { try arena.memcpyPersist(at: UInt64($0), from: src) } }, direct),
            ("window", { ops in try walk(ops, &offsets[3]) { try window.memcpyPersist(at: UInt64($0), from: src) } }, windowDirect),
            ("section", { ops in
                walk(ops, &offsets[4]) { offset in
                    word.store(word.load(ordering: .relaxed) &+ 1, ordering: .releasing)
                    _ = c_pmem_memcpy_persist(base + offset, source, size)
                    word.store(word.load(ordering: .relaxed) &- 1, ordering: .releasing)
                }
            }, direct),
        ]
        // ~5 ms per round for each.
        let ops = max(1, Int(5_000_000 / max(1, Double(try direct(1000)) / 1000)))
        for (_, method, reference) in pairs { _ = try method(ops); _ = try reference(ops) }
        for (name, method, reference) in pairs {
            var ratios: [Double] = [], methodNS: [Double] = [], referenceNS: [Double] = []
            for round in 0 ..< rounds {
                let m: UInt64, r: UInt64
                if round % 2 == 0 {
                    m = try method(ops); r = try reference(ops)
                } else {
                    r = try reference(ops); m = try method(ops)
                }
                ratios.append(Double(m) / Double(r))
                methodNS.append(Double(m) / Double(ops))
                referenceNS.append(Double(r) / Double(ops))
            }
            let sorted = ratios.sorted()
            emit("daxheap.paired.\(sizeName(size)).\(name).lat_ratio", median(ratios), "x")
            note("paired \(sizeName(size)) \(name): \(rounds) rounds of \(ops) ops; \(format(median(methodNS))) ns vs direct \(format(median(referenceNS))) ns; ratio IQR \(format(sorted[sorted.count / 4]))-\(format(sorted[(3 * sorted.count) / 4]))")
        }
    }
    withExtendedLifetime(heap) {}
}
