import CDaxShims
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Read sections and grace periods: userspace RCU with membarrier, where the grace period
/// costs the writer and the read side costs two plain stores.
///
/// **Readers.** Each thread has a record (64 bytes, its own cache line), found through a C
/// thread-local and registered on the thread's first section. Entering a section stores
/// the section's *key* (the arena's cell, or the heap for ``Heap/withReadSection(_:)``)
/// in the record's key slot for that nesting depth, then the record's state word
/// (`sequence << 16 | depth`; the sequence counts outermost sections); leaving stores the
/// state word back. Both are plain `mov`s: no locked instruction, no fence, only compiler
/// barriers. Nested sections (two views, an access inside a view) just go one level deeper.
///
/// **Writers.** A writer that replaced what readers may hold calls ``begin(holding:)``:
/// `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` runs a full barrier on every CPU running
/// a thread of this process, so every section that began before it is visible in the
/// records, and every section that begins after it sees the replacement. The scan then
/// notes each record that is inside a section holding that key (or any section, for
/// ``Heap/synchronize()``), with its sequence and depth. The grace period is over when each
/// noted record has left that section: its depth fell below the section's level, or its
/// sequence moved on. ``wait(_:)`` spins briefly, then sleeps on a futex; a reader that
/// leaves a section a writer is waiting for (the writer stores a threshold depth in the
/// record) wakes it. No other reader is waited for, and no reader pays for the wait unless
/// it is the one waited for. ``retire(_:_:)`` does the wait on a reclaimer thread instead
/// (call_rcu): a grow frees the old layout that way and waits for nobody.
///
/// **Why not liburcu.** liburcu's urcu-memb flavour is this scheme, well kept and LGPL-2.1
/// (fine dynamically linked), but (1) its grace periods are global: it cannot wait only
/// for the readers of one arena, which is the point of part 3 of issue 11; (2) its fast
/// paths are static inline only under `_LGPL_SOURCE` (inlining LGPL code into ours, and
/// TLS access through the Swift importer), else function calls; (3) it is not
/// ThreadSanitizer-instrumented, so a TSan run of the suite would see nothing of its
/// ordering; (4) one more system package for every build. The scheme is small; it is
/// written out here, with the C shim providing only the thread-local pointer, a compiler
/// barrier and the two system calls Swift cannot make (`membarrier`, `futex`).
///
/// **When the read side needs a real fence.** Decided once per process, stored in each
/// record: (a) if the kernel lacks private expedited membarrier (query or registration
/// fails), and (b) under ThreadSanitizer (`__tsan_init` is present, or the C shim was
/// built with it): TSan does not model the barrier a system call runs on other CPUs, so
/// the ordering it relies on would be invisible to it. Then each enter and exit adds a
/// sequentially consistent fence after its store, and the writer uses a fence instead of
/// membarrier: the classic store-fence-load handshake, which TSan executes (and the
/// happens-before edges TSan checks come, in every mode, from the releasing stores of the
/// state word and the writer's acquiring loads of it). The TSan run of the suite
/// exercises this mode; no environment variable changes it (it is not a library user's
/// knob).
///
/// Limits: only the first ``keySlots`` nesting levels record their key; deeper sections
/// are taken to hold every key (a writer waits for them too). A section must not wait for
/// a grace period that includes itself: ``wait(_:)`` traps instead of hanging.
/// Non-temporal stores left undrained when a section ends are not ordered by its plain
/// store: drain before leaving a view, as ``ArenaView`` documents.
@usableFromInline
enum ReadSections {
    // Record layout: eight 8-byte atomics on one 64-byte line. Constants, not `static let`s:
    // the read side is inlined into other modules (``Arena/memcpyPersist(at:from:)``), where
    // a `static let` would be a call to its lazy initializer's accessor.
    @inlinable static var stateWord: Int { 0 }      // sequence << 16 | depth; stored only by the owning thread
    @inlinable static var thresholdWord: Int { 1 }  // 0, or 1 + the level a sleeping writer waits to see left
    @inlinable static var nextWord: Int { 2 }       // next record in the registry; set before the record is published
    @inlinable static var flagsWord: Int { 3 }      // inUse | fenced
    @inlinable static var firstKeyWord: Int { 4 }   // keys of nesting levels 0 ..< keySlots
    @inlinable static var keySlots: UInt64 { 4 }
    @inlinable static var depthMask: UInt64 { 0xFFFF }
    @inlinable static var inUse: UInt64 { 1 }
    @inlinable static var fenced: UInt64 { 2 }

    @usableFromInline typealias Record = UnsafeMutablePointer<Atomic<UInt64>>

    /// A section opened by ``enter(_:)``: close it with ``exit(_:)`` on the same thread.
    @usableFromInline
    struct Token {
        @usableFromInline let record: Record
        @inlinable init(record: Record) { self.record = record }
    }

    // MARK: - Read side

    /// Opens a section holding `key`. Inlinable, as are ``exit(_:)`` and ``barrier(_:)``, so
    /// that a data call inlined into another module (``Arena/memcpyPersist(at:from:)``)
    /// carries its section along: the section's stores cost about 1 ns more per call inside
    /// a called function than in the caller's own code (`DaxBench paired`).
    @inlinable @inline(__always)
    static func enter(_ key: UInt64) -> Token {
        let record = CDaxShims_get_reader().map { $0.assumingMemoryBound(to: Atomic<UInt64>.self) } ?? register()
        let state = record[stateWord].load(ordering: .relaxed)  // only this thread stores it
        let depth = state & depthMask
        precondition(depth < depthMask, "read sections nested too deeply")
        // Releasing (a plain store on x86, as are the others here): a writer that reads this
        // key where an earlier section of this level held another knows that one has ended.
        if depth < keySlots { record[firstKeyWord + Int(depth)].store(key, ordering: .releasing) }
        // A new outermost section takes a new sequence number. The key is stored first:
        // a writer that sees the depth sees the key (x86 keeps stores in order; releasing).
        let next = depth == 0 ? (state &+ (1 << 16)) | 1 : state &+ 1
        record[stateWord].store(next, ordering: .releasing)
        // Ordering rule: the store above comes before every access in the section
        // (store-load order: membarrier's job, or the fence's).
        barrier(record)
        return Token(record: record)
    }

    /// Closes a section opened by ``enter(_:)``.
    @inlinable @inline(__always)
    static func exit(_ token: Token) {
        let record = token.record
        let state = record[stateWord].load(ordering: .relaxed)
        // Releasing: every access of the section comes before the store a writer waits to see.
        record[stateWord].store(state &- 1, ordering: .releasing)
        // Ordering rule: the store above comes before the threshold load below, pairing
        // with the writer's threshold store, barrier, state load (no lost wake-up).
        barrier(record)
        if (state & depthMask) - 1 < record[thresholdWord].load(ordering: .relaxed) { wakeWriters(record) }
    }

    @inlinable @inline(__always)
    static func barrier(_ record: Record) {
        if record[flagsWord].load(ordering: .relaxed) & fenced != 0 {
            atomicMemoryFence(ordering: .sequentiallyConsistent)
        } else {
            CDaxShims_compiler_barrier()
        }
    }

    /// Whether this thread is inside a section.
    static var insideSection: Bool {
        guard let raw = CDaxShims_get_reader() else { return false }
        return raw.assumingMemoryBound(to: Atomic<UInt64>.self)[stateWord].load(ordering: .relaxed) & depthMask != 0
    }

    @usableFromInline @inline(never)
    static func wakeWriters(_ record: Record) {
        // Cleared before the wake: a writer that armed meanwhile is woken too and re-arms.
        _ = record[thresholdWord].exchange(0, ordering: .sequentiallyConsistent)
        registry.wakeups.pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
        CDaxShims_futex_wake_all(UnsafeMutableRawPointer(registry.wakeups).assumingMemoryBound(to: UInt32.self))
    }

    /// Gives this thread a record: a free one from the registry, else a new one.
    @usableFromInline @inline(never)
    static func register() -> Record {
        let registry = registry
        let flags = inUse | (registry.fencedReaders ? fenced : 0)
        var found: Record?
        var bits = registry.head.load(ordering: .acquiring)
        while bits != 0, found == nil {
            let candidate = record(bits)
            if candidate[flagsWord].compareExchange(expected: flags & ~inUse, desired: flags, ordering: .acquiring).exchanged {
                found = candidate
            }
            bits = UInt(candidate[nextWord].load(ordering: .relaxed))
        }
        let mine: Record
        if let found {
            mine = found
        } else {
            let raw = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
            mine = raw.bindMemory(to: Atomic<UInt64>.self, capacity: 8)
            for i in 0 ..< 8 { (mine + i).initialize(to: Atomic(0)) }
            mine[flagsWord].store(flags, ordering: .relaxed)
            var head = registry.head.load(ordering: .relaxed)
            while true {
                mine[nextWord].store(UInt64(head), ordering: .relaxed)
                // Releasing: a writer that finds the record finds it initialized.
                let (exchanged, now) = registry.head.compareExchange(
                    expected: head, desired: UInt(bitPattern: raw), ordering: .releasing)
                if exchanged { break }
                head = now
            }
        }
        CDaxShims_set_reader(UnsafeMutableRawPointer(mine))
        pthread_setspecific(registry.threadKey, UnsafeMutableRawPointer(mine))  // freed at thread exit
        return mine
    }

    static func record(_ bits: UInt) -> Record {
        UnsafeMutableRawPointer(bitPattern: bits)!.assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    // MARK: - Writer side

    /// One section a grace period waits for: `record` is inside it while its sequence is
    /// `sequence` and its depth exceeds `level`.
    struct Waited: Sendable {
        let record: UInt
        let sequence: UInt64
        let level: UInt64

        var isOver: Bool {
            let state = ReadSections.record(record)[stateWord].load(ordering: .acquiring)
            return state >> 16 != sequence || state & depthMask <= level
        }
    }

    /// Call after publishing a replacement: the sections open now that may hold `key`
    /// (nil: every open section). Sections opened later see the replacement.
    static func begin(holding key: UInt64?) -> [Waited] {
        let registry = registry
        registry.writerBarrier()
        var waited: [Waited] = []
        var bits = registry.head.load(ordering: .acquiring)
        while bits != 0 {
            let r = record(bits)
            let state = r[stateWord].load(ordering: .acquiring)
            let depth = state & depthMask
            if depth != 0, let level = level(holding: key, in: r, depth: depth) {
                waited.append(Waited(record: bits, sequence: state >> 16, level: level))
            }
            bits = UInt(r[nextWord].load(ordering: .relaxed))
        }
        return waited
    }

    /// The outermost nesting level of `record` whose section holds `key`, if any.
    private static func level(holding key: UInt64?, in record: Record, depth: UInt64) -> UInt64? {
        guard let key else { return 0 }
        for level in 0 ..< min(depth, keySlots) where record[firstKeyWord + Int(level)].load(ordering: .acquiring) == key {
            return level
        }
        return depth > keySlots ? keySlots : nil  // deeper levels kept no key: assume they hold it
    }

    /// Returns once every section in `waited` has ended: spins briefly, then sleeps.
    static func wait(_ waited: [Waited]) {
        let registry = registry
        let own = CDaxShims_get_reader().map { UInt(bitPattern: $0) } ?? 0
        for section in waited {
            precondition(section.record != own || section.isOver, "waiting inside a read section for a grace period that includes it")
            var spins = 0
            while !section.isOver {
                if spins < 200 {
                    spins += 1
                    CDaxShims_cpu_relax()
                    continue
                }
                let seen = registry.wakeups.pointee.load(ordering: .acquiring)
                arm(section)
                // Ordering rule: threshold store, barrier, state load; the reader's exit does
                // state store, barrier, threshold load. One of the two sees the other.
                registry.writerBarrier()
                if section.isOver { break }
                CDaxShims_futex_wait(UnsafeMutableRawPointer(registry.wakeups).assumingMemoryBound(to: UInt32.self), seen)
            }
        }
    }

    /// Asks the reader to wake writers once its depth falls to `section.level`. Writers
    /// waiting on one record keep the largest threshold: the reader wakes them all at the
    /// first level any of them waits for, and those still waiting arm again.
    private static func arm(_ section: Waited) {
        let threshold = record(section.record) + thresholdWord
        var current = threshold.pointee.load(ordering: .relaxed)
        while current < section.level + 1 {
            let (exchanged, now) = threshold.pointee.compareExchange(
                expected: current, desired: section.level + 1, ordering: .relaxed)
            if exchanged { break }
            current = now
        }
    }

    /// Every section open now (of any heap) has ended when this returns.
    static func synchronize() { wait(begin(holding: nil)) }

    /// Runs `action` on the reclaimer thread once every section in `waited` has ended.
    static func retire(_ waited: [Waited], _ action: @escaping @Sendable () -> Void) {
        registry.reclaimer.add(waited, action)
    }

    static let registry = Registry()
}

/// The process's reader records and how its read side orders, decided once.
final class Registry: @unchecked Sendable {
    // @unchecked: the raw pointers are written once here; what they point to is atomics.
    /// The newest record (bits of its address); records are never freed, only reused.
    let head = Atomic<UInt>(0)
    /// Bumped by every wake-up; sleeping writers wait for it to change (a futex word).
    let wakeups: UnsafeMutablePointer<Atomic<UInt32>>
    /// Marks a thread's record free when the thread exits.
    let threadKey: pthread_key_t
    /// Whether readers fence (no membarrier, or ThreadSanitizer): see ``ReadSections``.
    let fencedReaders: Bool
    let reclaimer = Reclaimer()

    init() {
        wakeups = .allocate(capacity: 1)
        wakeups.initialize(to: Atomic(0))
        var key = pthread_key_t()
        let made = pthread_key_create(&key) { raw in
            // The thread is outside every section (they are scoped), so the record is idle.
            guard let raw else { return }
            CDaxShims_set_reader(nil)
            let record = raw.assumingMemoryBound(to: Atomic<UInt64>.self)
            let flags = record[ReadSections.flagsWord].load(ordering: .relaxed)
            record[ReadSections.flagsWord].store(flags & ~ReadSections.inUse, ordering: .releasing)
        }
        precondition(made == 0, "pthread_key_create failed")
        threadKey = key
        let underTSan = CDaxShims_built_with_tsan() != 0 || dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__tsan_init") != nil
        let expedited: Int32 = 1 << 3  // MEMBARRIER_CMD_PRIVATE_EXPEDITED
        let query = CDaxShims_membarrier_query()
        let membarrier = query >= 0 && query & expedited != 0 && CDaxShims_membarrier_register() == 0
        fencedReaders = underTSan || !membarrier
    }

    /// The writer's half of every handshake with readers.
    func writerBarrier() {
        if fencedReaders {
            atomicMemoryFence(ordering: .sequentiallyConsistent)
        } else {
            // Cannot fail once registration succeeded (the kernel supports it).
            let result = CDaxShims_membarrier()
            precondition(result == 0, "membarrier failed: errno \(errno)")
        }
    }
}

/// Runs retired actions once their grace period has passed, on a thread of its own
/// (started on first use), so that the writer that retired them waits for nobody.
final class Reclaimer: @unchecked Sendable {
    // @unchecked: `pending` is behind its lock; the semaphore and thread are set up once.
    private let pending = Locked<[(waited: [ReadSections.Waited], action: @Sendable () -> Void)]>([])
    private let work: UnsafeMutablePointer<sem_t>
    private let started = Atomic<Bool>(false)

    init() {
        work = .allocate(capacity: 1)
        sem_init(work, 0, 0)
    }

    func add(_ waited: [ReadSections.Waited], _ action: @escaping @Sendable () -> Void) {
        pending.withLock { $0.append((waited, action)) }
        if !started.exchange(true, ordering: .acquiringAndReleasing) {
            var thread = pthread_t()
            let made = pthread_create(&thread, nil, { _ in ReadSections.registry.reclaimer.run() }, nil)
            precondition(made == 0, "cannot start the reclaimer thread")
            pthread_detach(thread)
        }
        sem_post(work)
    }

    /// The reclaimer thread: takes what is pending, in order, waits for each, runs it.
    private func run() -> Never {
        while true {
            while sem_wait(work) != 0 {}  // EINTR
            let batch = pending.withLock { items in
                defer { items.removeAll() }
                return items
            }
            for item in batch {
                ReadSections.wait(item.waited)
                item.action()
            }
        }
    }
}
