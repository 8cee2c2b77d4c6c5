import DaxHeap
import DaxObjects
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The README's persistent linked list, kept compiling and true.
@Suite struct ReadmeObjectsExampleTests {
    @Test func theListHoldsTwoNodesAfterReopen() throws {
        let path = "/dev/shm/daxobjects-readme-\(getpid()).heap"
        defer { unlink(path) }
        do {
            let heap = try Heap.create(path: path, size: 256 << 20)
            let objects = try ObjectHeap.create(in: heap, arena: "objects", size: 8 << 20)
            let context = try objects.makeContext()
            let head = try objects.root(named: "list")
            for value in [UInt64(1), 2, 3] {
                let node = try context.reserve(16, kind: .references)
                node.address.storeBytes(of: try objects.load(head).rawValue, toByteOffset: 0, as: UInt64.self)
                node.address.storeBytes(of: value, toByteOffset: 8, as: UInt64.self)
                try context.transaction { tx in
                    let reference = try tx.publish(node)
                    try tx.store(reference.rawValue, at: head.offset)
                }
            }
            try context.transaction { tx in
                let first = try objects.load(head)
                let next = try objects.address(of: first).load(as: UInt64.self)
                try tx.free(from: head)
                try tx.store(next, at: head.offset)
            }
            context.close()
            try objects.close()
            try heap.close()
        }
        let heap = try Heap.open(path: path)
        let objects = try ObjectHeap.open(in: heap, arena: "objects")
        var values: [UInt64] = []
        var node = try objects.load(#require(objects.findRoot(named: "list")))
        while !node.isNull {
            let address = try objects.address(of: node)
            values.append(address.load(fromByteOffset: 8, as: UInt64.self))
            node = ObjectReference(rawValue: address.load(as: UInt64.self))
        }
        #expect(values == [2, 1])
        #expect(objects.statistics().objects == 2)
        #expect(objects.recovery.liveObjects == 2)
        try objects.close()
        try heap.close()
    }
}
