// A file of the daxheap VFS whose header is damaged is refused when it is opened, before
// SQLite reads it: the VFS reads a file up to the logical size in its state word, so a size
// past the arena would read past the window.

import CSQLite
import DaxHeap
import DaxSQLiteVFS
import DaxTestSupport
import Foundation
import Testing

@Suite struct SQLiteDamageTests {
    /// A heap holding database "db" (a table of 100 rows), made through the VFS.
    static func makeDatabase(_ heap: String) throws {
        try Heap.create(path: heap, size: 32 << 20).close()
        var error: UnsafeMutablePointer<CChar>?
        #expect(sqlite3_daxheapsqlite_init(nil, &error, nil) & 0xFF == SQLITE_OK)
        var db: OpaquePointer?
        #expect(sqlite3_open_v2("file:\(heap)/db?vfs=daxheap", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, nil) == SQLITE_OK)
        defer { sqlite3_close(db) }
        #expect(sqlite3_exec(db, "create table t(x); with recursive n(i) as (select 1 union all select i + 1 from n where i < 100) insert into t select i from n;", nil, nil, nil) == SQLITE_OK)
    }

    /// The state word's size one byte past the arena's room, and the largest it can say;
    /// and a state without its exists bit. Before the fix, the open succeeded and a read
    /// below that size but past the arena faulted (SIGSEGV).
    @Test(arguments: [UInt64(1) << 63 | (2 << 20) - 4096 + 1, UInt64(1) << 63 | (UInt64(1) << 63 - 1), 4096])
    func aStateWordPastTheArenaIsRefusedAtOpen(state: UInt64) throws {
        let heap = try makeScratchFolder(prefix: "daxsqlite-damage") + "/heap"
        defer { try? FileManager.default.removeItem(atPath: (heap as NSString).deletingLastPathComponent) }
        try Self.makeDatabase(heap)
        let before: [UInt8]
        do {
            let h = try Heap.open(path: heap)
            defer { try? h.close() }
            let arena = try h.arena(named: "db")
            #expect(arena.size == 2 << 20)
            try withUnsafeBytes(of: state) { try arena.write(Array($0), at: 16) }
            before = try arena.read(at: 0, count: Int(arena.size))
        }
        let vfs = try #require(sqlite3_vfs_find("daxheap"))
        let file = UnsafeMutableRawPointer.allocate(byteCount: Int(vfs.pointee.szOsFile), alignment: 16)
        defer { file.deallocate() }
        file.initializeMemory(as: UInt8.self, repeating: 0, count: Int(vfs.pointee.szOsFile))
        let handle = file.assumingMemoryBound(to: sqlite3_file.self)
        var flags: Int32 = 0
        let rc = vfs.pointee.xOpen(vfs, "\(heap)/db", handle, SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_READWRITE, &flags)
        if rc == SQLITE_OK {
            // What the old VFS did: a read inside the size it was told, past the arena.
            var page = [UInt8](repeating: 0, count: 4096)
            _ = handle.pointee.pMethods.pointee.xRead(handle, &page, 4096, 4 << 20)
            _ = handle.pointee.pMethods.pointee.xClose(handle)
        }
        #expect(rc == SQLITE_CORRUPT)
        let h = try Heap.open(path: heap)
        defer { try? h.close() }
        #expect(try h.arena(named: "db").read(at: 0, count: 2 << 20) == before, "the refused open wrote nothing")
    }
}
