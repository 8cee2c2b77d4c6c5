import DaxHeap
@testable import DaxKV
import Foundation
import Testing

/// The store reaches its arenas through windows (`Arena.mapWindow`), held while it is open.
@Suite("DaxKV on windows")
struct WindowTests {
    /// A mapped arena cannot be shrunk or destroyed: destroying an open store fails, says
    /// why, and leaves it working; once the store is released, destroying works.
    @Test("an open store cannot be destroyed; a released one can")
    func destroyWhileOpen() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap()
        do {
            let store = try KVStore.open(heap: heap, options: .oneShard)
            try store.put(bytes("k"), bytes("v"))
            #expect(store.only.index.arena.openWindowCount == 1 && store.only.data.arena.openWindowCount == 1)
            do {
                try KVStore.destroy(heap: heap, name: "kv")
                Issue.record("destroying an open store should fail")
            } catch let error as KVError {
                guard case .heap(.arenaMapped) = error else { Issue.record("expected arenaMapped, got \(error)"); return }
            }
            #expect(try store.get(bytes("k")) == bytes("v"))
            try store.put(bytes("k2"), bytes("v2"))
        }
        try KVStore.destroy(heap: heap, name: "kv")
        #expect(heap.arenas.isEmpty)
    }

    /// Restarting an unfinished store writes, first of all prefaulting segment 0 through the
    /// data window: on a read-only heap that must fail as read-only, not as a full store.
    @Test("restarting an unfinished store on a read-only heap fails as read-only")
    func readOnlyRestart() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        do {
            let heap = try scratch.heap()
            try heap.createArena(named: "kv.data", size: 2 << 20)  // as if creation stopped there
        }
        let heap = try Heap.open(path: scratch.file("heap"), mode: .readOnly)
        #expect(throws: KVError.heap(.readOnly(path: heap.path))) { try KVStore.open(heap: heap, options: .oneShard) }
    }

    /// Bytes past an arena's size lie in the window's reserved address space, which is not
    /// mapped: a slot damaged to point there must be reported, not followed (a SIGSEGV).
    @Test("a slot damaged to point past the data arena is reported, not followed")
    func slotPastTheDataArena() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let heap = try scratch.heap()
        let store = try KVStore.open(heap: heap, options: .oneShard)
        let victim = bytes("victim")
        try store.put(victim, bytes("value"))
        try store.put(bytes("other"), bytes("fine"))
        // The victim's slot, found by its value in the index arena (the store's first record).
        let hash = victim.withUnsafeBytes { hash64($0, seed: Seeds.key) }
        let slot = Format.slot(tag: Format.tag(hash), offset: Format.segmentStart(0))
        let table = try store.only.index.arena.read(at: 0, count: Int(store.only.index.size))
        let position = try #require(stride(from: 0, to: table.count, by: 8).first { at in
            table[at ..< at + 8].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } == slot
        })
        // Behind the store's back: the same tag, an offset 8 MiB past the arena's end.
        let past = Format.slot(tag: Format.tag(hash), offset: store.only.data.size + (8 << 20))
        try store.only.index.arena.memcpyPersist(at: UInt64(position), withUnsafeBytes(of: past) { Array($0) })
        #expect(store.only.data.size + (8 << 20) < store.only.data.reservation, "the offset should fall inside the window's reservation")
        do {
            let got = try store.get(victim)
            Issue.record("expected damagedRecord, got \(got.map { "\($0.count) bytes" } ?? "absent")")
        } catch let error as KVError {
            guard case .damagedRecord(_, let offset, _) = error else { Issue.record("expected damagedRecord, got \(error)"); return }
            #expect(offset == store.only.data.size + (8 << 20))
        }
        #expect(throws: KVError.self) { try store.pairs() }
        #expect(try store.get(bytes("other")) == bytes("fine"))
    }
}
