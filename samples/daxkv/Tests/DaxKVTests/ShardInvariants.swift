@testable import DaxKV
import Testing

extension Shard {
    /// Checks the writer's bookkeeping against the index (in the manner of
    /// swift-collections' `_checkInvariants`): each segment's live count is the number of
    /// live slots pointing into it (compaction and the freeing of segments decide on it),
    /// and the pair count is the number of live slots. The writer's copy of the keys
    /// (`keyCache`) knows a key only at a live slot whose record holds that key.
    func checkInvariants(_ context: String, sourceLocation: SourceLocation = #_sourceLocation) {
        lock.withLock {
            var live = [Int](repeating: 0, count: segmentLive.count)
            var pairs = 0
            let table = currentTable()
            for position in table.allSlots {
                let slot = indexWord(position).load(as: UInt64.self)
                if let known = keyCache.knownKey(at: position, of: table) {
                    let held = Format.isLive(slot) ? keyOfRecord(at: Format.slotOffset(slot)) : nil
                    #expect(held == known, "\(context): the copy of the key at slot \((position - table.offset) / Format.slotSize)",
                            sourceLocation: sourceLocation)
                }
                guard Format.isLive(slot) else { continue }
                live[Format.segment(of: Format.slotOffset(slot))] += 1
                pairs += 1
            }
            #expect(segmentLive == live, "\(context): live records per segment", sourceLocation: sourceLocation)
            #expect(liveCount == pairs && count == pairs, "\(context): the pair count", sourceLocation: sourceLocation)
        }
    }

    /// The key of the record at `offset` (its length word read, nothing checked).
    func keyOfRecord(at offset: UInt64) -> [UInt8] {
        let base = record(offset)
        let lengths = base.load(fromByteOffset: Format.lengthWordOffset, as: UInt64.self)
        let count = Int(lengths >> Format.keyLengthShift & Format.keyLengthMask)
        return Array(UnsafeRawBufferPointer(start: base + Format.keyOffset, count: count))
    }
}

extension KVStore {
    /// `Shard.checkInvariants` for every shard.
    func checkInvariants(_ context: String, sourceLocation: SourceLocation = #_sourceLocation) {
        for shard in shards { shard.checkInvariants(context, sourceLocation: sourceLocation) }
    }
}
