// The allocation guard for the object heap (issue 13): allocate-into-slot and
// free-from-slot, plainly and in one-slot transactions, allocate nothing on the heap
// (a context's caches and redo buffer are made once, with the context).
import Benchmark
import DaxHeap
import DaxObjects

#if canImport(Glibc)
import Glibc
#endif

/// An object heap with a table of 1024 slots and one context, made once.
final class ObjectsFixture: @unchecked Sendable {
    // @unchecked: `context` is used by one benchmark at a time, on the benchmark's thread.
    static let shared = ObjectsFixture()

    let heap: Heap
    let objects: ObjectHeap
    let context: ObjectContext
    let slots: [ObjectSlot]

    init() {
        let path = "/dev/shm/daxheap-object-allocations.\(getpid())"
        do {
            heap = try Heap.create(path: path, size: 256 << 20, overwrite: true)
            unlink(path)
            objects = try ObjectHeap.create(in: heap, arena: "objects", size: 16 << 20)
            context = try objects.makeContext()
            let table = try context.allocate(1024 * 8, kind: .references, into: objects.root(named: "table"))
            slots = (0..<1024).map { ObjectSlot(in: table, at: UInt64($0) * 8) }
        } catch {
            fatalError("objects fixture: \(error)")
        }
    }
}

func objectBenchmarks() {
    Benchmark("Objects_allocate_free_64B", configuration: configuration()) { benchmark in
        let f = ObjectsFixture.shared
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            let slot = f.slots[i & 1023]
            try f.context.allocate(64, into: slot)
            try f.context.free(from: slot)
        }
        benchmark.stopMeasurement()
    }

    Benchmark("Objects_transaction_allocate_free_64B", configuration: configuration()) { benchmark in
        let f = ObjectsFixture.shared
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            let slot = f.slots[i & 1023]
            try f.context.transaction { tx in _ = try tx.allocate(64, into: slot) }
            try f.context.transaction { tx in try tx.free(from: slot) }
        }
        benchmark.stopMeasurement()
    }
}
