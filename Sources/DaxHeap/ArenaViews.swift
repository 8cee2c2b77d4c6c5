/// Views of several arenas of one heap, pinned together for one closure: what
/// ``Arena/withViews(_:_:)`` lends, for a store that keeps an index, a log and more in
/// arenas of their own.
///
/// `views[i]` is an ``ArenaView`` of the `i`th arena passed, with the layout it had when
/// the views were taken; like a view, the set is non-escapable and stays on its thread.
public struct ArenaViews: ~Escapable {
    @usableFromInline let arenas: [Arena]
    /// One per arena, in the caller's stack (withUnsafeTemporaryAllocation).
    @usableFromInline let snapshots: UnsafeMutableBufferPointer<Unmanaged<ArenaSnapshot>>

    /// Internal: ``Arena/withViews(_:_:)`` scopes it to its closure.
    @usableFromInline @inline(__always) @_lifetime(immortal)
    init(arenas: [Arena], snapshots: UnsafeMutableBufferPointer<Unmanaged<ArenaSnapshot>>) {
        self.arenas = arenas
        self.snapshots = snapshots
    }

    /// How many views: the number of arenas passed.
    @inlinable
    public var count: Int { arenas.count }

    /// `0 ..< count`.
    @inlinable
    public var indices: Range<Int> { 0 ..< arenas.count }

    /// The view of the arena passed at `index` (in `0 ..< count`; others trap, as an
    /// array's subscript does).
    @inlinable
    public subscript(index: Int) -> ArenaView {
        @_lifetime(copy self) get { ArenaView(self, index) }
    }
}

@available(*, unavailable, message: "ArenaViews live only inside their closure, on its thread")
extension ArenaViews: Sendable {}

extension Arena {
    /// Runs `body` with a view of this arena's current layout, inside one read section
    /// (see ``ArenaView``). Do not provision from inside `body`. The view cannot outlive
    /// `body`: the compiler refuses to let it escape.
    ///
    /// Typed: for a body that throws nothing or `HeapError` (`{ view throws(HeapError) in }`);
    /// see ``Arena``, "Errors of access closures". Throws ``HeapError/unknownArena(_:)``
    /// if the arena was destroyed, ``HeapError/heapClosed(path:)`` if its heap was closed.
    @inlinable
    public func withView<R>(_ body: (ArenaView) throws(HeapError) -> R) throws(HeapError) -> R {
        let token = enterSection()
        defer { exitSection(token) }
        return try body(try ArenaView(self))
    }

    /// The same, for a body that throws other errors: rethrows them untyped (the heap's
    /// own failures are still `HeapError`s).
    @inlinable
    public func withView<R>(_ body: (ArenaView) throws -> R) throws -> R {
        let token = enterSection()
        defer { exitSection(token) }
        return try body(try ArenaView(self))
    }

    /// Runs `body` with views of two arenas of the same heap under one read section: a
    /// key-value store's index and log, for example. The two may be the same arena.
    /// Typed like ``withView(_:)``.
    @inlinable
    public static func withViews<R>(
        _ first: Arena, _ second: Arena, _ body: (ArenaView, ArenaView) throws(HeapError) -> R
    ) throws(HeapError) -> R {
        guard first.heap === second.heap else { throw .foreignArena(arena: second.name, heap: first.heap.path) }
        let outer = first.enterSection()
        defer { first.exitSection(outer) }
        let inner = second.enterSection()
        defer { second.exitSection(inner) }
        return try body(try ArenaView(first), try ArenaView(second))
    }

    /// The same, for a body that throws other errors: rethrows them untyped.
    @inlinable
    public static func withViews<R>(_ first: Arena, _ second: Arena, _ body: (ArenaView, ArenaView) throws -> R) throws -> R {
        guard first.heap === second.heap else { throw HeapError.foreignArena(arena: second.name, heap: first.heap.path) }
        let outer = first.enterSection()
        defer { first.exitSection(outer) }
        let inner = second.enterSection()
        defer { second.exitSection(inner) }
        return try body(try ArenaView(first), try ArenaView(second))
    }

    /// Runs `body` with views of any number of arenas of one heap (``ArenaViews``;
    /// `views[i]` views `arenas[i]`), each pinned for the whole of `body` as
    /// ``withView(_:)`` pins one. An arena may be passed more than once: its views see the
    /// same bytes. No arena at all gives an empty set.
    ///
    /// Before `body` runs, every arena is checked: one of another heap throws
    /// ``HeapError/foreignArena(arena:heap:)``, a destroyed one
    /// ``HeapError/unknownArena(_:)`` (or ``HeapError/heapClosed(path:)``), naming the
    /// first at fault. Each arena costs one nested read section (two plain stores); past
    /// four nested sections on a thread, a shrink or destroy of any arena waits for the
    /// deeper ones as well (ReadSections.swift). Typed like ``withView(_:)``.
    @inlinable
    public static func withViews<R>(_ arenas: [Arena], _ body: (ArenaViews) throws(HeapError) -> R) throws(HeapError) -> R {
        try pinning(arenas, body).get()
    }

    /// The same, for a body that throws other errors: rethrows them untyped.
    @inlinable
    public static func withViews<R>(_ arenas: [Arena], _ body: (ArenaViews) throws -> R) throws -> R {
        try pinning(arenas, body).get()
    }

    /// Both overloads of ``withViews(_:_:)``: the heap's own failures are thrown, what
    /// `body` threw is returned, for the caller to throw typed or not.
    @usableFromInline
    static func pinning<R, E: Error>(_ arenas: [Arena], _ body: (ArenaViews) throws(E) -> R) throws(HeapError) -> Result<R, E> {
        if let heap = arenas.first?.heap, let foreign = arenas.first(where: { $0.heap !== heap }) {
            throw .foreignArena(arena: foreign.name, heap: heap.path)
        }
        guard let first = arenas.first else {
            return Result { () throws(E) in try body(ArenaViews(arenas: [], snapshots: .init(start: nil, count: 0))) }
        }
        // One section per arena, all entered before any layout is loaded. Every section
        // of a thread lives on its one record, so the first token closes them all.
        let token = first.enterSection()
        for arena in arenas.dropFirst() { _ = arena.enterSection() }
        defer { for _ in arenas { ReadSections.exit(token) } }
        return try withUnsafeTemporaryAllocation(of: Unmanaged<ArenaSnapshot>.self, capacity: arenas.count) {
            snapshots throws(HeapError) -> Result<R, E> in
            for (i, arena) in arenas.enumerated() {
                guard let snapshot = arena.cell.load() else { throw arena.goneError() }
                snapshots.initializeElement(at: i, to: snapshot)  // trivial: nothing to deinitialize
            }
            return Result { () throws(E) in try body(ArenaViews(arenas: arenas, snapshots: snapshots)) }
        }
    }

    /// A read section of this arena (``ReadSections``): two plain stores on the way in and out.
    @usableFromInline func enterSection() -> ReadSections.Token { ReadSections.enter(cell.readKey) }
    @usableFromInline func exitSection(_ token: ReadSections.Token) { ReadSections.exit(token) }
}
