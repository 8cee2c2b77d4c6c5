/// What an object heap holds now (``ObjectHeap/statistics()``).
public struct ObjectStatistics: Sendable, Equatable {
    /// Live objects (allocated, reserved, or allocated by a transaction in progress).
    public var objects = 0
    /// Their blocks' bytes.
    public var allocatedBytes: UInt64 = 0
    /// Bytes of free blocks in carved chunks plus free chunks.
    public var freeBytes: UInt64 = 0
    /// The largest object that fits without growing the arena: the longest run of free
    /// chunks, or else the largest free small block.
    public var largestFreeBlock: UInt64 = 0
    /// The arena's size.
    public var arenaSize: UInt64 = 0
    /// Per size class with chunks: block size, chunks, live objects.
    public var classes: [ClassStatistics] = []

    public struct ClassStatistics: Sendable, Equatable {
        public var blockSize: UInt64
        public var chunks: Int
        public var objects: Int
    }
}

extension ObjectHeap {
    /// Counts what the heap holds (a walk over the chunk table: O(chunks), for tools and
    /// tests, not for hot paths).
    public func statistics() -> ObjectStatistics {
        var stats = ObjectStatistics()
        stats.arenaSize = window.size
        var perClass = Array(repeating: (chunks: 0, objects: 0), count: SizeClasses.count)
        chunks.withLock { pool in
            var run = 0
            var chunk = Int(geometry.metadataChunks)
            while chunk < pool.count {
                let info = tables.chunkInfo(chunk)
                run = pool.isFree(chunk) ? run + 1 : 0
                stats.largestFreeBlock = max(stats.largestFreeBlock, UInt64(run) << Layout.chunkShift)
                switch info.kind {
                case .free:
                    stats.freeBytes += Layout.chunkSize
                case .largeHead:
                    if tables.isLive(chunk, 0) { stats.objects += 1; stats.allocatedBytes += info.run << Layout.chunkShift }
                case .largeTail:
                    break
                case .small:
                    let size = SizeClasses.sizes[info.sizeClass]
                    let blocks = Int(Layout.chunkSize / size)
                    var live = 0
                    for w in 0..<((blocks + 63) / 64) {
                        live += tables.live[chunk * VolatileTables.bitmapWords + w].load(ordering: .relaxed).nonzeroBitCount
                    }
                    stats.objects += live
                    stats.allocatedBytes += UInt64(live) * size
                    stats.freeBytes += UInt64(blocks - live) * size
                    if live < blocks { stats.largestFreeBlock = max(stats.largestFreeBlock, size) }
                    perClass[info.sizeClass].chunks += 1
                    perClass[info.sizeClass].objects += live
                }
                chunk += 1
            }
        }
        stats.classes = perClass.enumerated().compactMap { index, entry in
            entry.chunks == 0 ? nil : .init(blockSize: SizeClasses.sizes[index], chunks: entry.chunks, objects: entry.objects)
        }
        return stats
    }
}
