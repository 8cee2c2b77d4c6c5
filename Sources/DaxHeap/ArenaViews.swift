/// Where a view comes from: an arena's access closures, which pin layouts for the closure
/// (``ArenaView``).
extension Arena {
    /// Runs `body` with a view of this arena's current layout, inside one read section
    /// (see ``ArenaView``). Do not provision from inside `body`. The view cannot outlive
    /// `body`: the compiler refuses to let it escape.
    ///
    /// Typed: for a body that throws nothing or `HeapError` (`{ view throws(HeapError) in }`);
    /// see ``Arena``, "Errors of access closures". Throws ``HeapError/unknownArena(_:)``
    /// if the arena was destroyed.
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

    /// A read section of this arena (``ReadSections``): two plain stores on the way in and out.
    @usableFromInline func enterSection() -> ReadSections.Token { ReadSections.enter(cell.readKey) }
    @usableFromInline func exitSection(_ token: ReadSections.Token) { ReadSections.exit(token) }
}
