import DaxHeap
import Dispatch  // concurrentPerform: shards recover in parallel

/// An embeddable, crash-safe key-value store on arenas of a DaxHeap heap, split by key
/// hash into shards (``KVStoreOptions/shards``). Each shard is two arenas,
/// `NAME.index` (a hash table of 8-byte slots) and `NAME.data` (a log of checksummed
/// records in 2 MiB segments), with ".N" appended for shard N > 0. See
/// samples/daxkv/README.md for the layout and the crash argument.
///
/// Thread safety: any number of threads may call `get` concurrently with each other and
/// with the writers; writers (`put`, `delete`, batches) take their key's shard's lock,
/// so writers of keys in different shards run in parallel; iteration takes every shard's.
public final class KVStore: Sendable {
    public let heap: Heap
    public let name: String
    /// The shards, `shards[i]` on the arenas of shard i. Never empty; a power of two long.
    let shards: [Shard]
    /// `shards.count - 1`: a key's shard is `shardMask` bits of its hash (`shardIndex(of:)`).
    let shardMask: UInt64
    /// The same shards, unretained (`shards` keeps them alive), for the read path: see
    /// `withShard(of:_:)`.
    let unretainedShards: [Unmanaged<Shard>]

    /// Where in a key's hash its shard number is: above the bits that pick its bucket in
    /// any table smaller than 2^38 buckets, below the 20 bits of the slot's tag. (A larger
    /// table would only see its buckets used a little unevenly.)
    static let shardShift: UInt64 = 38

    /// How long the open took, wall clock (shards recover in parallel).
    let openSeconds: Double

    init(heap: Heap, name: String, shards: [Shard], openSeconds: Double) {
        self.heap = heap
        self.name = name
        self.shards = shards
        unretainedShards = shards.map { Unmanaged.passUnretained($0) }
        shardMask = UInt64(shards.count - 1)
        self.openSeconds = openSeconds
    }

    /// The number of the shard a key of hash `hash` lives in.
    @inline(__always)
    func shardIndex(of hash: UInt64) -> Int { Int(truncatingIfNeeded: hash >> Self.shardShift & shardMask) }

    /// The number of the shard `key` lives in.
    func shardIndex(of key: [UInt8]) -> Int { shardIndex(of: key.withUnsafeBytes { hash64($0, seed: Seeds.key) }) }

    /// Calls `body` with the shard a key of hash `hash` lives in, without retaining it.
    /// What that is for: a call through `shards[i]` retains the shard and releases it
    /// after, and on x86 each is a locked instruction, which waits for every load before
    /// it to complete. So the misses a batched get means to overlap waited for each other
    /// (without: 14 % more batched gets a second, in rounds alternated within one process;
    /// single gets, whose two misses depend on each other anyway, gained nothing).
    @inline(__always)
    func withShard<R>(of hash: UInt64, _ body: (Shard) throws -> R) rethrows -> R {
        try withShard(at: shardIndex(of: hash), body)
    }

    /// Calls `body` with shard `index`, without retaining it (see `withShard(of:_:)`).
    @inline(__always)
    func withShard<R>(at index: Int, _ body: (Shard) throws -> R) rethrows -> R {
        try unretainedShards[index]._withUnsafeGuaranteedRef(body)
    }

    // MARK: - Opening and destroying

    /// Opens the store `name` on `heap`, creating it if it is absent (unless
    /// `options.create` is false). Recovery is, in each shard, a sequential scan of the
    /// index and a replay of the log's tail segment (at most 2 MiB); see ``recovery``. On
    /// a read-only heap, a store that needs the replay throws
    /// ``KVError/needsRecovery(store:records:)``.
    ///
    /// The store maps its arenas as windows (``Arena/mapWindow(reserving:)``) until it is
    /// released: meanwhile they cannot be shrunk or destroyed, by ``destroy(heap:name:)``
    /// either. A device whose alignment is coarser than the arenas' extents cannot map
    /// them (`HeapError.windowMisaligned`), and then the store cannot be opened.
    ///
    /// A read-write open gives the heap back space the store does not use
    /// (``KVStoreOptions/giveBackSpace``): free data segments at the arenas' ends and index
    /// space past the current tables. Not while the store is open elsewhere in this process.
    public static func open(heap: Heap, name: String = "kv", options: KVStoreOptions = .init()) throws -> KVStore {
        guard Self.isValidName(name, shards: 1) else { throw KVError.invalidStoreName(name) }
        let clock = ContinuousClock(), started = clock.now
        var opened: [Shard]
        if let count = try existingShardCount(heap: heap, name: name) {
            // The store exists, so every shard must: a missing one is damage, not
            // something to lay out anew.
            opened = try openShards(heap: heap, name: name, count: count, options: options)
        } else {
            // Absent, or a creation that never finished (shard 0's index magic is written
            // last, so no put was acknowledged): lay every shard out anew, shard 0 last.
            let count = options.shardCount(forNewStoreOn: heap)
            guard ShardPlace.isValidCount(count) else { throw KVError.invalidShardCount(count) }
            guard options.create else {
                let first = ShardPlace(index: 0, count: 1)
                let found = try wrapHeap { try heap.findArena(named: first.arenaName(name, .index)) != nil || heap.findArena(named: first.arenaName(name, .data)) != nil }
                if found { throw KVError.notAStore(store: name, reason: "its creation never finished; open it with creation allowed to start afresh") }
                throw KVError.noSuchStore(name)
            }
            guard Self.isValidName(name, shards: count) else { throw KVError.invalidStoreName(name) }
            try destroyShards(heap: heap, name: name, from: count)
            opened = try createShards(heap: heap, name: name, count: count, options: options)
        }
        // Only once every shard has opened, so that an open refused at one shard has
        // written in none: recovery's writes (tail replays, version upgrades), then the
        // space given back.
        let recovering = opened
        try inParallel(recovering.count) { try recovering[$0].recover() }
        var shards: [Shard] = []
        while !opened.isEmpty { shards.append(try Shard.givingBackSpace(opened.removeFirst(), options: options)) }
        return KVStore(heap: heap, name: name, shards: shards, openSeconds: (clock.now - started).seconds)
    }

    /// Lays out every shard of a new store, shard 0 last (its index magic says the store
    /// exists). A creation that fails (no room in the heap, or in the file system for the
    /// prefault) destroys the arenas it created, so that the heap is left as it was found;
    /// arenas of the store's names that were there before (an earlier attempt's) stay.
    static func createShards(heap: Heap, name: String, count: Int, options: KVStoreOptions) throws -> [Shard] {
        let arenas = (0 ..< count).flatMap { i in
            [ShardPlace.Kind.index, .data].map { ShardPlace(index: i, count: count).arenaName(name, $0) }
        }
        let existing = try wrapHeap { try Set(arenas.filter { try heap.findArena(named: $0) != nil }) }
        do {
            var created = try (1 ..< count).map { i in
                try Shard.open(heap: heap, name: name, place: ShardPlace(index: i, count: count), options: options, fresh: true)
            }
            created.insert(try Shard.open(heap: heap, name: name, place: ShardPlace(index: 0, count: count), options: options, fresh: true), at: 0)
            return created
        } catch {
            // The shards opened so far are released (their windows unmapped) by now.
            for arena in arenas where !existing.contains(arena) { try? heap.destroyArena(named: arena) }
            throw error
        }
    }

    /// Opens the shards of an existing store (their headers checked and indexes scanned,
    /// nothing written), as many at once as there are cores. Throws the error of the
    /// lowest-numbered shard that failed (the others are closed again).
    static func openShards(heap: Heap, name: String, count: Int, options: KVStoreOptions) throws -> [Shard] {
        try inParallel(count) { i in
            try Shard.open(heap: heap, name: name, place: ShardPlace(index: i, count: count), options: options, fresh: false)
        }
    }

    /// `body(i)` for i in 0..<count, as many at once as there are cores: each shard's
    /// recovery touches its own arenas only, and a store's open costs the sum of its
    /// shards'. Throws the error of the lowest i that failed, once all have returned.
    @discardableResult
    static func inParallel<T: Sendable>(_ count: Int, _ body: @Sendable (Int) throws -> T) throws -> [T] {
        let results = Locked([Result<T, any Error>?](repeating: nil, count: count))
        DispatchQueue.concurrentPerform(iterations: count) { i in
            let result = Result { try body(i) }
            results.withLock { $0[i] = result }
        }
        return try results.withLock { $0 }.map { try $0!.get() }
    }

    /// Destroys a store's arenas (no-op for those absent): shard 0's first, so that the
    /// store no longer exists even if a crash interrupts the rest (a later creation lays
    /// out every shard anew). Fails while the store is open in this process: its windows
    /// keep the arenas mapped.
    public static func destroy(heap: Heap, name: String) throws {
        try destroyShards(heap: heap, name: name, from: 0)
    }

    /// Destroys the arenas of shards `from` and up, whatever their count.
    static func destroyShards(heap: Heap, name: String, from first: Int) throws {
        for i in first ..< ShardPlace.maxCount {
            let place = ShardPlace(index: i, count: ShardPlace.maxCount)
            for arena in [place.arenaName(name, .index), place.arenaName(name, .data)] where try heap.findArena(named: arena) != nil {
                do { try heap.destroyArena(named: arena) } catch { throw KVError.heap(error) }
            }
        }
    }

    /// The shard count shard 0's index header records, or nil if there is no finished store.
    static func existingShardCount(heap: Heap, name: String) throws -> Int? {
        let header = try wrapHeap { () -> [UInt8]? in
            guard let index = try heap.findArena(named: ShardPlace(index: 0, count: 1).arenaName(name, .index)),
                  index.size >= Format.headerSize else { return nil }
            return try index.read(at: 0, count: Int(Format.shardOffset + Format.wordSize))
        }
        guard let header else { return nil }
        func word(_ offset: UInt64) -> UInt64 {
            UInt64(littleEndian: header.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: Int(offset), as: UInt64.self) })
        }
        guard word(Format.magicOffset) == Format.indexMagic else { return nil }
        let place = ShardPlace(word: word(Format.shardOffset))
        guard place.index == 0, ShardPlace.isValidCount(place.count) else {
            throw KVError.notAStore(store: name, reason: "its index header says shard \(place.index) of \(place.count)")
        }
        return place.count
    }

    /// Whether every arena name of a store `name` of `shards` shards is a valid arena name
    /// (63 bytes at most, no control characters).
    static func isValidName(_ name: String, shards: Int) -> Bool {
        let longest = ShardPlace(index: shards - 1, count: shards).arenaName(name, .index)
        return !name.isEmpty && longest.utf8.count <= 63 && !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F })
    }

    // MARK: - Facts

    /// The number of shards (fixed when the store was created).
    public var shardCount: Int { shards.count }

    /// The number of pairs.
    public var count: Int { shards.reduce(0) { $0 + $1.count } }

    /// Sizes of the arenas and how the data arenas are used, summed over the shards.
    public var usage: (indexBytes: UInt64, dataBytes: UInt64, segments: Int, freeSegments: Int, indexSlots: Int) {
        shards.reduce((0, 0, 0, 0, 0)) { sum, shard in
            let u = shard.usage
            return (sum.0 + u.indexBytes, sum.1 + u.dataBytes, sum.2 + u.segments, sum.3 + u.freeSegments, sum.4 + u.indexSlots)
        }
    }

    /// What opening the store cost: the counts summed over the shards, the time the open's.
    public var recovery: KVRecoveryStats {
        var total = KVRecoveryStats(slotsScanned: 0, recordHeadersRead: 0, seconds: openSeconds)
        for r in shards.map(\.recovery) {
            total.slotsScanned += r.slotsScanned
            total.recordHeadersRead += r.recordHeadersRead
            total.tailRecordsScanned += r.tailRecordsScanned
            total.recordsReplayed += r.recordsReplayed
        }
        return total
    }

    /// Statistics of the writers' background work, summed over the shards.
    public var compactions: Int { shards.reduce(0) { $0 + $1.compactions } }
    public var dataGrowths: Int { shards.reduce(0) { $0 + $1.dataGrowths } }
    public var indexRebuilds: Int { shards.reduce(0) { $0 + $1.indexRebuilds } }

    // MARK: - Reading

    /// Copies the value of `key` into `buffer` and returns its length, or nil if the key is
    /// absent. When the value is longer than `buffer`, nothing is copied and the length is
    /// returned (call again with a larger buffer). The value is checked against its
    /// record's checksum first: a damaged record throws ``KVError/damagedRecord``.
    ///
    /// No lock, no read section, no fence, no allocation: plain loads through the windows.
    public func get(_ key: UnsafeRawBufferPointer, into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        guard (1 ... Format.maxKeySize).contains(key.count) else { throw KVError.invalidKeySize(key.count) }
        let hash = hash64(key, seed: Seeds.key)
        return try withShard(of: hash) { try $0.get(key, hash: hash, into: buffer) }
    }

    /// The value of `key`, or nil.
    public func get(_ key: [UInt8]) throws -> [UInt8]? {
        var capacity = 256
        while true {
            var out = [UInt8](repeating: 0, count: capacity)
            let length = try key.withUnsafeBytes { k in try out.withUnsafeMutableBytes { try get(k, into: $0) } }
            guard let length else { return nil }
            if length <= capacity { out.removeSubrange(length...); return out }
            capacity = length
        }
    }

    /// Calls `body` with every pair, shard by shard in index order (every shard's writer
    /// lock is held meanwhile: a consistent snapshot). `body` must not write to this store
    /// (that would deadlock). The buffers are the records on the media: copy what you
    /// keep. Damaged records throw.
    public func forEach(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void) throws {
        try withEveryLock { for shard in shards { try shard.forEachLocked(body) } }
    }

    /// Every pair, copied (for tests and small stores).
    public func pairs() throws -> [(key: [UInt8], value: [UInt8])] {
        var out: [(key: [UInt8], value: [UInt8])] = []
        try forEach { k, v in out.append((Array(k), Array(v))) }
        return out
    }

    /// Runs `body` holding every shard's writer lock, taken in shard order (as anything
    /// that takes more than one does: no deadlock).
    func withEveryLock<R>(_ body: () throws -> R) throws -> R {
        try withLocks(ofShards: shards.count == 64 ? .max : (1 << UInt64(shards.count)) - 1, body)
    }

    /// Runs `body` holding the writer locks of the shards whose bits `mask` sets, taken in
    /// increasing shard order.
    private func withLocks<R>(ofShards mask: UInt64, _ body: () throws -> R) throws -> R {
        guard mask != 0 else { return try body() }
        let first = mask.trailingZeroBitCount
        return try shards[first].lock.withLock { try withLocks(ofShards: mask & (mask - 1), body) }
    }

    // MARK: - Writing

    /// Inserts or replaces; returns once the pair is durable. One fence: the record is
    /// durable at the tail of its shard's log, where recovery finds it should its slot
    /// store be lost; the slot is stored, then flushed and fenced by the shard's next
    /// write (or a segment switch, an index rebuild, closing the store). See README
    /// "Crash argument".
    public func put(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws {
        guard (1 ... Format.maxKeySize).contains(key.count) else { throw KVError.invalidKeySize(key.count) }
        guard value.count <= Format.maxValueSize else { throw KVError.invalidValueSize(value.count) }
        let hash = hash64(key, seed: Seeds.key)
        try withShard(of: hash) { try $0.put(key, hash: hash, value) }
    }

    public func put(_ key: [UInt8], _ value: [UInt8]) throws {
        try key.withUnsafeBytes { k in try value.withUnsafeBytes { v in try put(k, v) } }
    }

    /// Removes `key`; false if it was absent. One fence: a delete record (the key alone)
    /// is appended to its shard's log and made durable, then the slot becomes a
    /// tombstone, flushed like a put's slot (the tail replay covers it).
    @discardableResult
    public func delete(_ key: UnsafeRawBufferPointer) throws -> Bool {
        guard (1 ... Format.maxKeySize).contains(key.count) else { throw KVError.invalidKeySize(key.count) }
        let hash = hash64(key, seed: Seeds.key)
        return try withShard(of: hash) { try $0.delete(key, hash: hash) }
    }

    @discardableResult
    public func delete(_ key: [UInt8]) throws -> Bool {
        try key.withUnsafeBytes { try delete($0) }
    }
}

/// Runs `body`, reporting a heap failure as ``KVError/heap(_:)``.
func wrapHeap<R>(_ body: () throws -> R) throws -> R {
    do { return try body() } catch let error as HeapError { throw KVError.heap(error) }
}
