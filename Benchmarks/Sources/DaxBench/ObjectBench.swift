// The object heap (issue 13) in the anchor's protocol (../shared/anchors/pmemobj_alloc.c):
// each thread owns an array of 50,000 slots that lives in the heap (a `.references`
// object under a root), allocates one object into every slot, barrier, then frees every
// slot; one untimed warm-up round, then `reps` timed rounds, median; ops/s of all
// threads together between the barriers. `alloc` and `free` are the atomic
// allocate-into-slot and free-from-slot (one fence each); `tx` wraps each in a
// transaction (its one slot store is atomic: one fence more for the allocation, whose
// object is made durable first).
//
//   daxheap.alloc.<64B|256B|1024B|4096B>.t<1|2>.<alloc|free>   ops/s
//   daxheap.tx.<size>.t1.<alloc|free>                           ops/s
//   daxheap.objects.recovery.<100k|1M>                          ms to open after a SIGKILL
import DaxHeap
import DaxObjects
import Foundation

#if canImport(Glibc)
import Glibc
#endif

let objectsPerThread = 50_000

func objectsSuite(dir: String, reps: Int) throws {
    for size in [64, 256, 1024, 4096] {
        for threads in [1, 2] { try allocationRounds(dir: dir, size: size, threads: threads, transactional: false, reps: reps) }
        try allocationRounds(dir: dir, size: size, threads: 1, transactional: true, reps: reps)
    }
    for (name, count) in [("100k", 100_000), ("1M", 1_000_000)] {
        try recoveryAfterKill(dir: dir, name: name, count: count, reps: reps)
    }
}

private final class Barrier: @unchecked Sendable {
    private var barrier = pthread_barrier_t()
    init(_ count: Int) { pthread_barrier_init(&barrier, nil, UInt32(count)) }
    func wait() { pthread_barrier_wait(&barrier) }
}

private final class Timings: @unchecked Sendable {
    var alloc: [Double] = []
    var free: [Double] = []
}

func allocationRounds(dir: String, size: Int, threads: Int, transactional: Bool, reps: Int) throws {
    let path = "\(dir)/daxbench-objects.\(getpid())"
    removeHeapFile(path)
    defer { removeHeapFile(path) }
    let heap = try Heap.create(path: path, size: 2 * GiB)
    let objects = try ObjectHeap.create(in: heap, arena: "objects", size: 64 * MiB)
    var arrays: [ObjectReference] = []
    do {
        let context = try objects.makeContext()
        for t in 0..<threads {
            arrays.append(try context.allocate(UInt64(objectsPerThread * 8), kind: .references, into: objects.root(named: "slots\(t)")))
        }
        context.close()
    }
    let barrier = Barrier(threads + 1)
    let timings = Timings()
    let failures = Locked<[String]>([])
    let rounds = max(reps, 5) + 1  // the anchor times 5 rounds after its warm-up
    let arraysCopy = arrays
    var workers: [Thread] = []
    for t in 0..<threads {
        let worker = Thread {
            defer { barrier.wait() }  // joined: the heap closes after every context
            do {
                let context = try objects.makeContext()
                defer { context.close() }
                let base = arraysCopy[t]
                for _ in 0..<rounds {
                    barrier.wait()
                    for i in 0..<objectsPerThread {
                        let slot = ObjectSlot(in: base, at: UInt64(i) * 8)
                        if transactional {
                            try context.transaction { tx in _ = try tx.allocate(UInt64(size), into: slot) }
                        } else {
                            try context.allocate(UInt64(size), into: slot)
                        }
                    }
                    barrier.wait()
                    barrier.wait()
                    for i in 0..<objectsPerThread {
                        let slot = ObjectSlot(in: base, at: UInt64(i) * 8)
                        if transactional {
                            try context.transaction { tx in try tx.free(from: slot) }
                        } else {
                            try context.free(from: slot)
                        }
                    }
                    barrier.wait()
                }
            } catch {
                failures.withLock { $0.append("\(error)") }
                for _ in 0..<(4 * rounds) { barrier.wait() }  // let the others finish (counts may not match after a failure)
            }
        }
        worker.stackSize = 1 << 20
        workers.append(worker)
        worker.start()
    }
    for round in 0..<rounds {
        barrier.wait(); let a0 = nowNS(); barrier.wait(); let a1 = nowNS()
        barrier.wait(); let f0 = nowNS(); barrier.wait(); let f1 = nowNS()
        guard round > 0 else { continue }  // warm-up
        let ops = Double(objectsPerThread * threads)
        timings.alloc.append(ops / (Double(a1 - a0) / 1e9))
        timings.free.append(ops / (Double(f1 - f0) / 1e9))
    }
    barrier.wait()
    let errors = failures.withLock { $0 }
    guard errors.isEmpty else {
        note("objects \(size)B t\(threads): failed: \(errors.first!)")
        return
    }
    let name = "daxheap.\(transactional ? "tx" : "alloc").\(size)B.t\(threads)"
    note("\(name).alloc rounds: \(timings.alloc.map(format).joined(separator: " ")) ops/s")
    note("\(name).free rounds: \(timings.free.map(format).joined(separator: " ")) ops/s")
    emit("\(name).alloc", median(timings.alloc), "ops/s")
    emit("\(name).free", median(timings.free), "ops/s")
    try objects.close()
}

/// Fills an object heap with `count` live 64 B objects in a child (this program, run as
/// `DaxBench objects-fill PATH COUNT`), which kills itself with SIGKILL; then times the
/// open (heap and object heap, with its recovery) here.
func recoveryAfterKill(dir: String, name: String, count: Int, reps: Int) throws {
    let path = "\(dir)/daxbench-recovery.\(getpid())"
    removeHeapFile(path)
    defer { removeHeapFile(path) }
    let child = Process()
    child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
    child.arguments = ["objects-fill", path, String(count)]
    try child.run()
    child.waitUntilExit()
    guard child.terminationReason == .uncaughtSignal, child.terminationStatus == SIGKILL else {
        note("objects recovery \(name): the filling child did not die of SIGKILL (status \(child.terminationStatus))")
        return
    }
    try figure("daxheap.objects.recovery.\(name)", "ms", reps: reps) {
        let start = nowNS()
        let heap = try Heap.open(path: path)
        let objects = try ObjectHeap.open(in: heap, arena: "objects")
        let elapsed = Double(nowNS() - start) / 1e6
        let expected = count + (count + 4095) / 4096 + 1
        guard objects.recovery.liveObjects == expected else {
            note("recovery found \(objects.recovery.liveObjects) objects, expected \(expected)")
            return .nan
        }
        note("recovery \(name): \(objects.recovery.milliseconds) ms inside ObjectHeap.open")
        try objects.close()
        try heap.close()
        return elapsed
    }
}

/// The child of `recoveryAfterKill`: a table of tables (4096 slots each) reaching `count`
/// objects of 64 B, then SIGKILL.
func fillAndDie(path: String, count: Int) throws -> Never {
    let heap = try Heap.create(path: path, size: 4 * GiB)
    let objects = try ObjectHeap.create(in: heap, arena: "objects", size: 256 * MiB)
    let context = try objects.makeContext()
    let tables = (count + 4095) / 4096
    let top = try context.allocate(UInt64(tables * 8), kind: .references, into: objects.root(named: "top"))
    var left = count
    for t in 0..<tables {
        let table = try context.allocate(4096 * 8, kind: .references, into: ObjectSlot(in: top, at: UInt64(t) * 8))
        for i in 0..<min(4096, left) { try context.allocate(64, into: ObjectSlot(in: table, at: UInt64(i) * 8)) }
        left -= 4096
    }
    kill(getpid(), SIGKILL)
    fatalError("SIGKILL returned")
}
