import DaxHeap

/// What can go wrong with a store; the description is one line saying what would help.
public enum KVError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Keys are 1 to 1024 bytes.
    case invalidKeySize(Int)
    /// Values are 0 to 1 MiB.
    case invalidValueSize(Int)
    /// The heap has no room left for the store to grow and compaction cannot free enough.
    /// Nothing was changed by the call that failed.
    case storeFull(store: String, needed: UInt64, detail: String)
    /// A record failed its checksum (torn or damaged media); nothing from it is returned.
    case damagedRecord(store: String, offset: UInt64, reason: String)
    /// The arenas exist but do not hold a DaxKV store (or its headers are damaged).
    case notAStore(store: String, reason: String)
    /// The store name would make an invalid arena name.
    case invalidStoreName(String)
    /// A store's shard count must be a power of two from 1 to 64.
    case invalidShardCount(Int)
    /// The store does not exist and opening was asked not to create it.
    case noSuchStore(String)
    /// Opened read-only right after a crash: the tail of the log holds writes whose index
    /// slots did not reach the media, and replaying them needs a read-write open once.
    case needsRecovery(store: String, records: Int)
    /// A batched get was given different numbers of keys, buffers and length slots.
    case batchMismatch(keys: Int, buffers: Int, lengths: Int)
    /// A batched put was given a different number of values than keys.
    case batchPutMismatch(keys: Int, values: Int)
    /// The heap itself failed.
    case heap(HeapError)

    public var description: String {
        switch self {
        case .invalidKeySize(let n):
            "a key of \(n) bytes is not allowed; keys are 1 to 1024 bytes"
        case .invalidValueSize(let n):
            "a value of \(n) bytes is not allowed; values are 0 to 1048576 bytes (1 MiB)"
        case .storeFull(let store, let needed, let detail):
            "store \(quoted(store)) is full: \(needed) more bytes needed and \(detail); nothing was changed: delete keys, free heap space (shrink or destroy other arenas) or use a larger heap"
        case .damagedRecord(let store, let offset, let reason):
            "store \(quoted(store)): the record at data offset \(offset) is damaged (\(reason)); it is not returned: restore the key from a backup or put it again"
        case .notAStore(let store, let reason):
            "the arenas of store \(quoted(store)) do not hold a DaxKV store (\(reason)); pick another store name or destroy those arenas"
        case .invalidStoreName(let name):
            "invalid store name \(quoted(name)): use 1 to 57 bytes of UTF-8 without control characters (55 for a store of 2 to 8 shards, 54 for more)"
        case .invalidShardCount(let n):
            "a store of \(n) shards is not possible; use a power of two from 1 to 64"
        case .noSuchStore(let name):
            "there is no store \(quoted(name)) on this heap"
        case .needsRecovery(let store, let records):
            "store \(quoted(store)) needs recovery after a crash (\(records) writes at the tail of its log to apply to its index); open it read-write once (any daxkv put or delete does), then read-only opens work again"
        case .batchMismatch(let keys, let buffers, let lengths):
            "a batched get needs one buffer and one length per key; it was given \(keys) keys, \(buffers) buffers and \(lengths) lengths"
        case .batchPutMismatch(let keys, let values):
            "a batched put needs one value per key; it was given \(keys) keys and \(values) values"
        case .heap(let error):
            "\(error)"
        }
    }
}

/// A name in double quotes with anything unprintable escaped (Swift's debug spelling), so
/// that an error stays on one line whatever the name holds.
func quoted(_ name: String) -> String { String(reflecting: name) }
