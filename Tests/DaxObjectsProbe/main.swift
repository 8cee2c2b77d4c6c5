// A test-only executable: the child that ObjectKillTests kills with SIGKILL at random
// moments. Never a production path.
//
//   DaxObjectsProbe churn HEAP SEED THREADS
//
// Opens HEAP read-write and its object heap "objects", whose root "table" reaches a
// `.references` object of slots; prints "ready"; then THREADS threads, each with its own
// context and its own share of the slots (thread t: slots t*n/THREADS ..< (t+1)*n/THREADS),
// allocate into empty slots and free from full ones, plainly and in transactions, until
// killed (or 15 s pass). Every object is `.data` and holds a unique stamp in its first word.
// For each operation a thread writes, with one write(2) each (no buffering):
//
//   T N KIND A B STAMP     before it starts (KIND alloc|free|txalloc|txfree|txmove;
//                          A the slot, B the second slot of txmove, else A; STAMP of the
//                          new object, else 0)
//   T N done               after it returned: the operation is complete and durable
//
// txmove frees slot A (full) and allocates into B (empty) in one transaction, whose two
// slot writes go through the redo log. On a failure it prints "error T MESSAGE" and exits 1.

import DaxHeap
import DaxObjects
import DaxTestSupport
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

func say(_ line: String) {
    var text = line + "\n"
    text.withUTF8 { bytes in
        var at = 0
        while at < bytes.count {
            let n = write(1, bytes.baseAddress! + at, bytes.count - at)
            if n < 0 { if errno == EINTR { continue }; exit(2) }
            at += n
        }
    }
}

func fail(_ message: String) -> Never {
    say("error \(message)")
    exit(1)
}

func churn(path: String, seed: UInt64, threads: Int) throws {
    let heap = try Heap.open(path: path)
    let objects = try ObjectHeap.open(in: heap, arena: "objects")
    guard let root = objects.findRoot(named: "table") else { fail("0 no root \"table\"") }
    let table = try objects.load(root)
    let slotCount = Int(try objects.size(of: table) / 8)
    say("ready")
    let deadline = ContinuousClock.now + .seconds(15)
    DispatchQueue.concurrentPerform(iterations: threads) { t in
        do {
            let context = try objects.makeContext()
            defer { context.close() }
            let first = t * slotCount / threads, end = (t + 1) * slotCount / threads
            func slot(_ i: Int) -> ObjectSlot { ObjectSlot(in: table, at: UInt64(i) * 8) }
            var full = Array(repeating: false, count: slotCount)
            for i in first..<end { full[i] = try !objects.load(slot(i)).isNull }
            var random = SplitMix64(seed: seed &* 0x1000_0001 &+ UInt64(t))
            var number: UInt64 = 0
            while ContinuousClock.now < deadline {
                number += 1
                let stamp = seed << 40 | UInt64(t) << 32 | number
                let a = first + random.below(end - first)
                let size: UInt64 = random.below(64) == 0 ? 3 << 20 : [16, 64, 200, 1000, 5000, 40_000][random.below(6)]
                let empties = (first..<end).filter { !full[$0] }
                let b = empties.isEmpty ? a : empties[random.below(empties.count)]
                let plain = random.below(2) == 0
                let kind: String
                if !full[a] { kind = plain ? "alloc" : "txalloc" }
                else if b != a, random.below(3) == 0 { kind = "txmove" }
                else { kind = plain ? "free" : "txfree" }
                say("\(t) \(number) \(kind) \(a) \(kind == "txmove" ? b : a) \(kind.hasSuffix("alloc") || kind == "txmove" ? stamp : 0)")
                switch kind {
                case "alloc":
                    try context.allocate(size, into: slot(a)) { $0.storeBytes(of: stamp, as: UInt64.self) }
                    full[a] = true
                case "txalloc":
                    try context.transaction { tx in
                        let object = try tx.allocate(size, into: slot(a))
                        try tx.store(stamp, at: object.offset)
                    }
                    full[a] = true
                case "free":
                    try context.free(from: slot(a))
                    full[a] = false
                case "txfree":
                    try context.transaction { tx in try tx.free(from: slot(a)) }
                    full[a] = false
                default:
                    try context.transaction { tx in
                        try tx.free(from: slot(a))
                        let object = try tx.allocate(size, into: slot(b))
                        try tx.store(stamp, at: object.offset)
                    }
                    full[a] = false
                    full[b] = true
                }
                say("\(t) \(number) done")
            }
        } catch {
            fail("\(t) \(error)")
        }
    }
}

let arguments = CommandLine.arguments
guard arguments.count == 5, arguments[1] == "churn", let seed = UInt64(arguments[3]), let threads = Int(arguments[4]),
      (1...16).contains(threads) else {
    fail("0 usage: DaxObjectsProbe churn HEAP SEED THREADS")
}
do {
    try churn(path: arguments[2], seed: seed, threads: threads)
} catch {
    fail("0 \(error)")
}
