@testable import DaxKV
import Testing

extension Shard {
    /// Checks the writer's bookkeeping against the index (in the manner of
    /// swift-collections' `_checkInvariants`): each segment's live count is the number of
    /// live slots pointing into it (compaction and the freeing of segments decide on it),
    /// and the pair count is the number of live slots.
    func checkInvariants(_ context: String, sourceLocation: SourceLocation = #_sourceLocation) {
        lock.withLock {
            var live = [Int](repeating: 0, count: segmentLive.count)
            var pairs = 0
            for position in currentTable().allSlots {
                let slot = indexWord(position).load(as: UInt64.self)
                guard Format.isLive(slot) else { continue }
                live[Format.segment(of: Format.slotOffset(slot))] += 1
                pairs += 1
            }
            #expect(segmentLive == live, "\(context): live records per segment", sourceLocation: sourceLocation)
            #expect(liveCount == pairs && count == pairs, "\(context): the pair count", sourceLocation: sourceLocation)
        }
    }
}

extension KVStore {
    /// `Shard.checkInvariants` for every shard.
    func checkInvariants(_ context: String, sourceLocation: SourceLocation = #_sourceLocation) {
        for shard in shards { shard.checkInvariants(context, sourceLocation: sourceLocation) }
    }
}
