import DaxHeap

/// What can go wrong with an object heap; the description is one line that says what is
/// wrong and what would help. A call that throws changes nothing: no object is allocated
/// or freed, no slot or root is written, no transaction byte is applied.
public enum ObjectError: Error, Equatable, CustomStringConvertible {
    /// The heap beneath failed (no space to grow, read-only, closed, ...).
    case heap(HeapError)
    /// The arena holds no object heap, or one this version cannot read.
    case notAnObjectHeap(arena: String, reason: String)
    /// The object heap's metadata is damaged; `detail` says where.
    case corrupt(arena: String, detail: String)
    /// The arena's id does not fit a compact reference's 16 bits.
    case arenaIDTooLarge(arena: String, id: UInt64)
    /// No room: the arena cannot grow to hold `requested` more bytes.
    case outOfSpace(arena: String, requested: UInt64, reason: String)
    /// A size of 0, or above what one object may have.
    case invalidSize(UInt64)
    /// An alignment that is not a power of two up to 4096.
    case invalidAlignment(UInt64)
    /// A slot that is not an aligned word of a root or of a live object.
    case invalidSlot(offset: UInt64, reason: String)
    /// Allocation into a slot that already holds a reference (it would be lost).
    case slotOccupied(offset: UInt64, holding: ObjectReference)
    /// A reference that names no live object of this heap (a double free, a stale or
    /// made-up reference).
    case notAnObject(ObjectReference, reason: String)
    /// A reference into another arena than the object heap's.
    case foreignReference(ObjectReference, arena: String)
    /// A root name that is empty, too long (48 bytes of UTF-8 at most) or has a NUL.
    case invalidRootName(String)
    /// Every root entry is taken.
    case rootsFull(capacity: Int)
    /// Every lane (one per live context) is taken.
    case noFreeLane(lanes: Int)
    /// A transaction's log would pass its lane's capacity; nothing was applied.
    case transactionTooLarge(bytes: Int, capacity: Int)
    /// A transaction or reservation used after it ended, or with another context.
    case misuse(String)

    public var description: String {
        switch self {
        case .heap(let error): return error.description
        case .notAnObjectHeap(let arena, let reason):
            return "arena \"\(arena)\" holds no object heap (\(reason)); create one with ObjectHeap.create"
        case .corrupt(let arena, let detail):
            return "the object heap in arena \"\(arena)\" is damaged: \(detail)"
        case .arenaIDTooLarge(let arena, let id):
            return "arena \"\(arena)\" has id \(id), above 65535: compact references cannot name it, nor any newer arena (ids are never reused); "
                + "use an object heap or arena with a lower id"
        case .outOfSpace(let arena, let requested, let reason):
            return "object heap \"\(arena)\" is out of space for \(requested) bytes: \(reason); free objects or make room in the heap"
        case .invalidSize(let size):
            return "invalid object size \(size): it must be at least 1 byte"
        case .invalidAlignment(let alignment):
            return "invalid alignment \(alignment): it must be a power of two up to 4096"
        case .invalidSlot(let offset, let reason):
            return "offset \(offset) is not a slot: \(reason)"
        case .slotOccupied(let offset, let holding):
            return "the slot at offset \(offset) already holds \(holding); free it first, or it would be lost"
        case .notAnObject(let reference, let reason):
            return "\(reference) is not a live object: \(reason)"
        case .foreignReference(let reference, let arena):
            return "\(reference) points into another arena than \"\(arena)\""
        case .invalidRootName(let name):
            return "invalid root name \"\(name)\": 1 to 48 bytes of UTF-8 without NUL"
        case .rootsFull(let capacity):
            return "all \(capacity) roots are taken; hang further structures off an existing root"
        case .noFreeLane(let lanes):
            return "all \(lanes) lanes are taken by live contexts; close a context first"
        case .transactionTooLarge(let bytes, let capacity):
            return "the transaction needs \(bytes) bytes of log, more than its lane's \(capacity); split it"
        case .misuse(let what):
            return what
        }
    }
}
