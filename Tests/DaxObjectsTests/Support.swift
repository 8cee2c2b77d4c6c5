import DaxHeap
@testable import DaxObjects
import Foundation
import Synchronization

private let counter = Atomic<Int>(0)

/// A fresh path under /dev/shm, unique per process and call.
func tempPath(_ tag: String = "objects") -> String {
    "/dev/shm/daxobjects-test-\(getpid())-\(counter.wrappingAdd(1, ordering: .relaxed).oldValue)-\(tag)"
}

func removeFile(_ path: String) { unlink(path) }

/// A heap file with an object heap "objects" in it.
struct Fixture {
    let path: String
    var heap: Heap
    var objects: ObjectHeap

    init(heapSize: UInt64 = 256 << 20, arenaSize: UInt64 = 8 << 20) throws {
        path = tempPath()
        heap = try Heap.create(path: path, size: heapSize)
        objects = try ObjectHeap.create(in: heap, arena: "objects", size: arenaSize)
    }

    /// Closes everything and opens it again, as a new process would.
    mutating func reopen() throws {
        try objects.close()
        try heap.close()
        heap = try Heap.open(path: path)
        objects = try ObjectHeap.open(in: heap, arena: "objects")
    }

    func remove() {
        try? objects.close()
        try? heap.close()
        removeFile(path)
    }
}

extension ObjectHeap {
    /// Checks the allocator's invariants (in the manner of swift-collections'
    /// `_checkInvariants`): every live block is claimed; every chunk's claimed count equals
    /// its claimed bits; a chunk on a class list has unclaimed blocks and belongs to it.
    func checkInvariants() {
        chunks.withLock { pool in
            for chunk in Int(geometry.metadataChunks)..<pool.count {
                let info = tables.chunkInfo(chunk)
                precondition(pool.isFree(chunk) == (info.kind == .free), "chunk \(chunk): free bit and kind disagree")
                guard info.kind == .small else { continue }
                let blocks = Int(Layout.chunkSize / SizeClasses.sizes[info.sizeClass])
                pools[ObjectHeap.poolIndex(info.sizeClass, info.objectKind)].withLock { _ in
                    // Word by word: live is a subset of claimed; the count is the claimed bits.
                    var claimed = 0
                    for w in 0..<((blocks + 63) / 64) {
                        let at = chunk * VolatileTables.bitmapWords + w
                        let claimedBits = tables.claimed[at], liveBits = tables.live[at].load(ordering: .relaxed)
                        precondition(liveBits & ~claimedBits == 0, "chunk \(chunk) word \(w): live but not claimed")
                        precondition(w < blocks / 64 || claimedBits >> UInt64(blocks % 64) == 0, "chunk \(chunk): bits past the last block")
                        claimed += claimedBits.nonzeroBitCount
                    }
                    precondition(claimed == Int(tables.claimedCount[chunk]), "chunk \(chunk): claimed count")
                    precondition(tables.inPartial[chunk] == 1 || claimed == blocks, "chunk \(chunk): has room but is on no list")
                }
            }
        }
    }
}
