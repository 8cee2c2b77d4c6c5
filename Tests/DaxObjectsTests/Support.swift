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
        objects.close()
        try heap.close()
        heap = try Heap.open(path: path)
        objects = try ObjectHeap.open(in: heap, arena: "objects")
    }

    func remove() {
        objects.close()
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
                    var claimed = 0
                    for index in 0..<blocks {
                        let (word, bit) = tables.claimedWord(chunk, index)
                        let isClaimed = word.pointee & bit != 0
                        if isClaimed { claimed += 1 }
                        precondition(!tables.isLive(chunk, index) || isClaimed, "chunk \(chunk) block \(index): live but not claimed")
                    }
                    precondition(claimed == Int(tables.claimedCount[chunk]), "chunk \(chunk): claimed count")
                    precondition(tables.inPartial[chunk] == 1 || claimed == blocks, "chunk \(chunk): has room but is on no list")
                }
            }
        }
    }
}
