#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The allocator's state in memory, rebuilt at every open (docs/OBJECTS.md, "Recovery"):
/// per chunk what it holds, which of its blocks are live, which are claimed (live, in a
/// context's cache, or reserved), and the per-class lists of chunks with unclaimed blocks.
///
/// One anonymous mapping sized for the chunk table's capacity, reserved with
/// MAP_NORESERVE so that only the pages of chunks in use ever take memory (16 KiB of
/// bitmaps per chunk used, 8 GiB of address space per TiB of heap). Its addresses never
/// move, so no reader ever sees a table being replaced.
final class VolatileTables: @unchecked Sendable {
    // @unchecked: `info` and `live` are atomics; `claimed`, `claimedCount`, `cursor`,
    // `nextPartial` and `inPartial` of a chunk are touched only under the lock of the class
    // the chunk belongs to (ClassPools), or under the chunk lock while it belongs to none.
    static let bitmapWords = Int(Layout.chunkSize / 16 / 64)  // blocks of the 16-byte class

    let capacity: Int
    private let mapping: UnsafeMutableRawPointer
    private let mappingBytes: Int
    /// Per chunk: ChunkInfo's word (kind, class, object kind, run length or distance to head).
    let info: UnsafeMutablePointer<Atomic<UInt64>>
    let live: UnsafeMutablePointer<Atomic<UInt64>>
    let claimed: UnsafeMutablePointer<UInt64>
    let claimedCount: UnsafeMutablePointer<UInt32>
    let cursor: UnsafeMutablePointer<UInt32>
    let nextPartial: UnsafeMutablePointer<UInt32>
    let previousPartial: UnsafeMutablePointer<UInt32>
    /// The lane (plus one) of the context that last claimed from the chunk: a hint that
    /// keeps each context on chunks of its own, so that threads do not share bitmap words.
    let owner: UnsafeMutablePointer<UInt16>
    let inPartial: UnsafeMutablePointer<UInt8>

    init(capacity: Int) throws(ObjectError) {
        self.capacity = capacity
        let bitmapBytes = capacity * Self.bitmapWords * 8
        let sizes = [capacity * 8, bitmapBytes, bitmapBytes, capacity * 4, capacity * 4, capacity * 4, capacity * 4, capacity * 2, capacity]
        mappingBytes = sizes.reduce(0) { $0 + ($1 + 63) / 64 * 64 }
        let address = mmap(nil, mappingBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let address, address != MAP_FAILED else {
            throw .outOfSpace(arena: "", requested: UInt64(mappingBytes), reason: "cannot reserve memory for the allocator's tables (errno \(errno))")
        }
        mapping = address
        var at = address
        func take(_ bytes: Int) -> UnsafeMutableRawPointer {
            defer { at += (bytes + 63) / 64 * 64 }
            return at
        }
        // Anonymous memory reads as zero: every chunk starts free, nothing live or claimed.
        info = take(sizes[0]).assumingMemoryBound(to: Atomic<UInt64>.self)
        live = take(sizes[1]).assumingMemoryBound(to: Atomic<UInt64>.self)
        claimed = take(sizes[2]).assumingMemoryBound(to: UInt64.self)
        claimedCount = take(sizes[3]).assumingMemoryBound(to: UInt32.self)
        cursor = take(sizes[4]).assumingMemoryBound(to: UInt32.self)
        nextPartial = take(sizes[5]).assumingMemoryBound(to: UInt32.self)
        previousPartial = take(sizes[6]).assumingMemoryBound(to: UInt32.self)
        owner = take(sizes[7]).assumingMemoryBound(to: UInt16.self)
        inPartial = take(sizes[8]).assumingMemoryBound(to: UInt8.self)
    }

    deinit { munmap(mapping, mappingBytes) }

    @inline(__always)
    func chunkInfo(_ chunk: Int) -> ChunkInfo { ChunkInfo(word: info[chunk].load(ordering: .acquiring)) }

    func setChunkInfo(_ chunk: Int, _ value: ChunkInfo) { info[chunk].store(value.word, ordering: .releasing) }

    /// The word of chunk `chunk`'s live bitmap that holds block `block`, and the bit.
    @inline(__always)
    func liveWord(_ chunk: Int, _ block: Int) -> (UnsafeMutablePointer<Atomic<UInt64>>, UInt64) {
        (live + (chunk * Self.bitmapWords + block >> 6), 1 << UInt64(block & 63))
    }

    @inline(__always)
    func isLive(_ chunk: Int, _ block: Int) -> Bool {
        let (word, bit) = liveWord(chunk, block)
        return word.pointee.load(ordering: .relaxed) & bit != 0
    }

    /// Sets the block's live bit; false if it was set already.
    @inline(__always)
    func setLive(_ chunk: Int, _ block: Int) -> Bool {
        let (word, bit) = liveWord(chunk, block)
        return word.pointee.bitwiseOr(bit, ordering: .relaxed).oldValue & bit == 0
    }

    /// Clears the block's live bit; false if it was clear already (a double free).
    @inline(__always)
    func clearLive(_ chunk: Int, _ block: Int) -> Bool {
        let (word, bit) = liveWord(chunk, block)
        return word.pointee.bitwiseAnd(~bit, ordering: .relaxed).oldValue & bit != 0
    }

    func claimedWord(_ chunk: Int, _ block: Int) -> (UnsafeMutablePointer<UInt64>, UInt64) {
        (claimed + (chunk * Self.bitmapWords + block >> 6), 1 << UInt64(block & 63))
    }

    /// Clears a chunk's bitmaps (it is being carved for another class, or given back).
    func resetChunk(_ chunk: Int) {
        let words = Self.bitmapWords
        for i in 0..<words {
            live[chunk * words + i].store(0, ordering: .relaxed)
        }
        (claimed + chunk * words).update(repeating: 0, count: words)
        claimedCount[chunk] = 0
        cursor[chunk] = 0
    }
}

/// What a chunk holds, as the volatile tables keep it (the media's ChunkDescriptor
/// without its check): kind, size class, object kind, and for a large object's chunks the
/// run length (first chunk) or the distance back to the first chunk (later ones).
struct ChunkInfo: Equatable {
    var word: UInt64

    init(word: UInt64) { self.word = word }

    init(_ descriptor: ChunkDescriptor, distanceToHead: UInt64 = 0) {
        let run = descriptor.kind == .largeTail ? distanceToHead : descriptor.runLength
        word = UInt64(descriptor.kind.rawValue) | UInt64(descriptor.sizeClass) << 8
            | UInt64(descriptor.objectKind.rawValue) << 16 | run << 24
    }

    static let free = ChunkInfo(word: 0)

    var kind: ChunkDescriptor.Kind { ChunkDescriptor.Kind(rawValue: UInt8(word & 0xFF)) ?? .free }
    var sizeClass: Int { Int(word >> 8 & 0xFF) }
    var objectKind: ObjectKind { ObjectKind(rawValue: UInt8(word >> 16 & 0xFF)) ?? .data }
    /// Chunks of the large object (first chunk), or the distance back to its first chunk.
    var run: UInt64 { word >> 24 }
}
