// SQLite through the daxheap VFS, crashed at every fence of a few transactions under the
// power-loss simulator, in DELETE and WAL journal modes. The heap is opened in Swift with a
// simulator, wrapped for C (daxheapHandle(adopting:)) and handed to the VFS, compiled into
// the package for this test (the DaxSQLiteVFS target). Each crash image is opened through
// the VFS as SQLite would open it after a power loss (a hot journal rolled back, the WAL
// recovered) and must pass PRAGMA integrity_check, hold every transaction whose COMMIT had
// returned, the one in flight whole or not at all, and nothing later.
//
// Unlike the SIGKILL test (samples/sqlite/Tests/crash_test.py), this one loses what was not
// flushed and fenced, word by word: it checks the VFS's flushes and fences themselves.
// Mutations it was seen to catch (made on purpose, then reverted; unmutated, DELETE mode
// takes 27 crash points and 137 images, WAL 17 and 92):
// - xSync without its first drain (heaps.c, dxh_node_persist_locked), so the journal's new
//   size could become durable before its records: DELETE mode, 5 of 72 images fail, fences
//   15 and 21, mixed images: "no such table: t" (the size covered the previous
//   transaction's journal, whose rollback took the database back before its table existed)
//   and integrity_check errors. WAL mode: 0 of 48, rightly: there the size is the WAL's,
//   and frames past the last durable commit fail their checksums and salts at recovery, so
//   a WAL never relies on its bytes being durable before its size (the drain after the
//   size makes both durable before the commit returns).
// - xSync without its second drain (the state word flushed, not fenced, so a delete,
//   truncate or new size is not durable when the call returns): DELETE 17 of 75, WAL 15 of
//   54, all-old and mixed images: "no such table: t", "committed transaction 1 missing".
// - The state word stored but never flushed (so neither xSync's size nor xDelete's delete is
//   durable): both modes, all-old images ("no such table: t").
// - A write copied, never flushed (memcpy for daxheap_window_memcpy_nodrain in file.c):
//   DELETE 135 of 162, WAL 85 of 102, from the first crash point: "file is not a database".

import CSQLite
import DaxHeap
import DaxHeapC
import DaxSQLiteVFS
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

struct SQLiteFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

private let vfsRegistered: Bool = {
    var error: UnsafeMutablePointer<CChar>?
    return sqlite3_daxheapsqlite_init(nil, &error, nil) & 0xFF == SQLITE_OK
}()

/// One SQLite connection, closed with `close()`.
private final class Connection {
    let db: OpaquePointer

    init(_ uri: String) throws {
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "no memory"
            sqlite3_close(db)
            throw SQLiteFailure("open \(uri): \(message) (\(rc))")
        }
        self.db = db
    }

    func close() { sqlite3_close(db) }

    func exec(_ sql: String) throws {
        var error: UnsafeMutablePointer<CChar>?
        if sqlite3_exec(db, sql, nil, nil, &error) != SQLITE_OK {
            let message = error.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(db))
            sqlite3_free(error)
            throw SQLiteFailure("\(sql.prefix(60)): \(message)")
        }
    }

    /// Every row of `sql`, each column as text.
    func rows(_ sql: String) throws -> [[String]] {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &statement, nil) == SQLITE_OK, let statement else {
            throw SQLiteFailure("\(sql): \(String(cString: sqlite3_errmsg(db)))")
        }
        defer { sqlite3_finalize(statement) }
        var rows: [[String]] = []
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { return rows }
            guard rc == SQLITE_ROW else { throw SQLiteFailure("\(sql): \(String(cString: sqlite3_errmsg(db)))") }
            rows.append((0..<sqlite3_column_count(statement)).map { column in
                sqlite3_column_text(statement, column).map { String(cString: $0) } ?? ""
            })
        }
    }
}

/// Transactions whose COMMIT returned, and the one in flight, as the checker reads them.
private let progress = Locked<(committed: Int, inFlight: Int)>((0, 0))

private func checkImage(_ image: CrashImage) throws {
    let (committed, inFlight) = progress.withLock { $0 }
    let db = try Connection("file:\(image.path)/db?vfs=daxheap")
    defer { db.close() }
    let status = try db.rows("pragma integrity_check")
    guard status == [["ok"]] else { throw SQLiteFailure("integrity_check: \(status)") }
    var present = Set<Int>()
    for row in try db.rows("select txn, rows, count(*) from t group by txn") {
        let txn = Int(row[0]) ?? -1
        guard row[1] == row[2] else { throw SQLiteFailure("transaction \(txn) half applied: \(row[2]) of \(row[1]) rows") }
        present.insert(txn)
    }
    if let missing = (1..<max(1, committed + 1)).first(where: { !present.contains($0) }) {
        throw SQLiteFailure("committed transaction \(missing) missing (\(committed) committed)")
    }
    if let later = present.first(where: { $0 > inFlight }) {
        throw SQLiteFailure("transaction \(later) present before it began")
    }
}

private func tempPath(_ tag: String) -> String { "/dev/shm/daxheap-sqlitetest-\(getpid())-\(tag)" }

/// Runs `transactions` small transactions on a simulated heap, armed for all of them, and
/// returns the simulator once every image passed.
private func sweep(mode: String, transactions: Int = 5) throws -> PowerLossSimulator {
    try #require(vfsRegistered)
    let path = tempPath("\(mode).heap"), directory = tempPath("\(mode).images")
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
    defer {
        unlink(path)
        try? FileManager.default.removeItem(atPath: directory)
    }
    let simulator = PowerLossSimulator(mixedImages: 4, directory: directory, checker: checkImage)
    simulator.isArmed = false
    progress.withLock { $0 = (0, 0) }
    let heap = try Heap.create(path: path, size: 16 << 20, simulator: simulator)
    try #require(dxh_testing_adopt_heap(path, daxheapHandle(adopting: heap)) == SQLITE_OK)
    defer { dxh_testing_release(path) }

    let db = try Connection("file:\(path)/db?vfs=daxheap")
    defer { db.close() }
    try db.exec("pragma journal_mode=\(mode); pragma synchronous=full; create table t(id integer primary key, txn, rows, v)")
    simulator.isArmed = true
    for txn in 1...transactions {
        progress.withLock { $0.inFlight = txn }
        let rows = txn % 3 + 1
        var sql = "begin;"
        for k in 0..<rows {
            let value = String(repeating: "t\(txn)r\(k)-", count: 100 + 300 * k)
            sql += "insert into t values (\(txn * 10 + k), \(txn), \(rows), '\(value)');"
        }
        if txn > 1 { sql += "update t set v = 'updated by \(txn)' where txn = \(txn - 1);" }
        try db.exec(sql + "commit;")
        progress.withLock { $0.committed = txn }
        if mode == "wal" && txn == 3 {
            try db.exec("pragma wal_checkpoint(truncate)")   // into the database, then the WAL cut to 0
        }
    }
    simulator.isArmed = false
    let failures = simulator.failures
    print("SQLitePowerLossTests \(mode): \(simulator.crashPointsTaken) crash points, \(simulator.imagesChecked) images, \(failures.count) failures"
          + failures.prefix(8).map { "\n  \($0.point), \($0.kind): \($0.reason)" }.joined())
    try simulator.verify()
    return simulator
}

@Suite(.serialized) struct SQLitePowerLossTests {
    @Test func everyFenceOfDeleteModeTransactionsKeepsCommittedDataWhole() throws {
        let simulator = try sweep(mode: "delete")
        // Per transaction at least: the journal's sync, the database's sync, the delete.
        #expect(simulator.crashPointsTaken >= 5 * 3)
        #expect(simulator.imagesChecked >= simulator.crashPointsTaken * 2)
    }

    @Test func everyFenceOfWALModeTransactionsKeepsCommittedDataWhole() throws {
        let simulator = try sweep(mode: "wal")
        #expect(simulator.crashPointsTaken >= 5 + 2)   // each commit's sync of the WAL, the checkpoint's
        #expect(simulator.imagesChecked >= simulator.crashPointsTaken * 2)
    }
}
