"""The daxheap VFS driven as its users drive it: Debian's sqlite3 shell and python3's sqlite3.

    DAXHEAP_SQLITE=.../libdaxheap_sqlite.so DAXHEAP_LIB=.../libdaxheap.so python3 vfs_test.py [name ...]

Runs every test_* function (or those named), prints one line per test and a summary; exits
non-zero if any failed. test.sh sets the environment.
"""
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daxtest  # noqa: E402
from daxtest import connect, new_heap, remove_heap, Heap  # noqa: E402

MODES = ("delete", "truncate", "persist", "wal")
SHELL = "/usr/bin/sqlite3"
EXT = daxtest.EXTENSION[:-3] if daxtest.EXTENSION.endswith(".so") else daxtest.EXTENSION


def expect_error(kind, pattern, f):
    try:
        f()
    except kind as e:
        assert re.search(pattern, str(e)), f"error {e!r} does not match {pattern!r}"
        return e
    raise AssertionError(f"no {kind.__name__} matching {pattern!r}")


def shell(script, check=True):
    r = subprocess.run([SHELL, "-batch"], input=script, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise AssertionError(f"sqlite3 failed ({r.returncode}): {r.stderr}")
    return r


def fill(conn, mode, rows=200, per_txn=10):
    conn.execute(f"pragma journal_mode={mode}")
    conn.execute("create table if not exists t(id integer primary key, v text)")
    for start in range(0, rows, per_txn):
        with conn:
            conn.executemany("insert into t(v) values (?)", [(f"row {i}",) for i in range(start, start + per_txn)])


# ---- Users: the shell and python ----------------------------------------------------------

def test_shell_creates_and_reopens_in_every_mode():
    heap = new_heap()
    try:
        for mode in MODES:
            out = shell(f""".load {EXT}
.open 'file:{heap}/{mode}?vfs=daxheap'
pragma journal_mode={mode};
create table t(a integer primary key, b text);
insert into t(b) values ('one'), ('two');
begin; insert into t(b) values ('three'); commit;
""").stdout
            assert out.strip() == mode, out
            out = shell(f""".load {EXT}
.open 'file:{heap}/{mode}?vfs=daxheap'
select group_concat(b) from t;
pragma integrity_check;
pragma journal_mode;
""").stdout.split()
            assert out == ["one,two,three", "ok", mode if mode == "wal" else "delete"], out   # only WAL persists
    finally:
        remove_heap(heap)


def test_python_modes_commit_and_reopen():
    heap = new_heap()
    try:
        for mode in MODES:
            c = connect(heap, mode)
            fill(c, mode)
            with c:
                c.execute("update t set v = 'changed' where id % 7 = 0")
            with c:
                c.execute("delete from t where id % 5 = 0")
            c.execute("begin")
            c.execute("delete from t")
            c.rollback()
            c.close()
            c = connect(heap, mode)
            assert c.execute("select count(*), sum(v = 'changed') from t").fetchone() == (160, 23)
            assert c.execute("pragma integrity_check").fetchone()[0] == "ok"
            c.close()
    finally:
        remove_heap(heap)


def test_memory_mapped_reads_in_every_mode():
    heap = new_heap()
    try:
        for mode in MODES:
            c = connect(heap, mode)
            c.execute("pragma mmap_size=268435456")
            assert c.execute("pragma mmap_size").fetchone()[0] == 268435456
            fill(c, mode, rows=2000, per_txn=100)
            with c:
                c.execute("update t set v = v || '!' where id % 3 = 0")
            assert c.execute("select count(*), sum(v like '%!') from t").fetchone() == (2000, 666)
            assert c.execute("pragma integrity_check").fetchone()[0] == "ok"
            c.close()
            c = connect(heap, mode)
            assert c.execute("select count(*), sum(v like '%!') from t").fetchone() == (2000, 666)
            c.close()
    finally:
        remove_heap(heap)


def test_journal_and_wal_are_arenas_reused_not_recreated():
    heap = new_heap()
    try:
        c = connect(heap, "db")
        fill(c, "delete", rows=500, per_txn=1)     # 500 journals deleted
        c.execute("pragma journal_mode=wal")
        fill(c, "wal", rows=100, per_txn=1)
        c.execute("pragma journal_mode=delete")     # checkpoints and deletes the WAL
        c.close()
        with Heap(heap) as h:
            assert h.arena_size("db-journal") == 2 << 20
            assert h.arena_size("db-wal") == 2 << 20
            assert h.arena_size("db") % (2 << 20) == 0
        c = connect(heap, "db")
        assert c.execute("select count(*) from t").fetchone()[0] == 600
        c.close()
    finally:
        remove_heap(heap)


def test_file_grows_online_in_steps_and_vacuum_shrinks_its_size():
    heap = new_heap(128 << 20)
    try:
        c = connect(heap, "big")
        c.execute("create table b(id integer primary key, x blob)")
        with c:
            c.executemany("insert into b(x) values (zeroblob(4000))", [()] * 5000)   # ~20 MiB
        size = c.execute("pragma page_count").fetchone()[0] * c.execute("pragma page_size").fetchone()[0]
        with c:
            c.execute("delete from b where id > 100")
        c.execute("vacuum")
        small = c.execute("pragma page_count").fetchone()[0] * c.execute("pragma page_size").fetchone()[0]
        assert small < size // 10, (small, size)
        c.close()
        with Heap(heap) as h:
            arena = h.arena_size("big")
            assert arena >= size + 4096 and arena <= 2 * size + (4 << 20), (arena, size)
        c = connect(heap, "big")
        assert c.execute("select count(*) from b").fetchone()[0] == 100
        assert c.execute("pragma integrity_check").fetchone()[0] == "ok"
        c.close()
    finally:
        remove_heap(heap)


def test_connections_share_one_heap_and_lock_each_other():
    heap = new_heap()
    try:
        a = connect(heap, "db", timeout=0, isolation_level=None)
        b = connect(heap, "db", timeout=0, isolation_level=None)
        other = connect(heap, "other", isolation_level=None)   # a second database on the same heap
        a.execute("create table t(x)")
        a.execute("begin immediate")
        a.execute("insert into t values (1)")
        assert b.execute("select count(*) from t").fetchone()[0] == 0
        expect_error(sqlite3.OperationalError, "locked", lambda: b.execute("insert into t values (2)"))
        b.execute("begin")
        b.execute("select count(*) from t").fetchone()          # b holds SHARED
        expect_error(sqlite3.OperationalError, "locked", lambda: a.execute("commit"))   # PENDING, b reads
        expect_error(sqlite3.OperationalError, "locked",
                     lambda: connect(heap, "db", timeout=0).execute("select * from t").fetchall())
        b.execute("commit")
        a.execute("commit")
        assert b.execute("select count(*) from t").fetchone()[0] == 1
        other.execute("create table u(y)")
        other.execute("insert into u values (5)")
        a.execute(f"attach 'file:{heap}/other?vfs=daxheap' as o")
        a.execute("begin")
        a.execute("insert into t select y from o.u")
        a.execute("insert into o.u values (6)")          # a transaction over two databases
        a.execute("commit")
        assert a.execute("select sum(x) from t").fetchone()[0] == 6
        assert other.execute("select sum(y) from u").fetchone()[0] == 11
        for conn in (a, b, other):
            conn.close()
    finally:
        remove_heap(heap)


def test_wal_readers_keep_their_snapshot_while_a_writer_commits():
    heap = new_heap()
    try:
        w = connect(heap, "db", timeout=0, isolation_level=None)
        w.execute("pragma journal_mode=wal")
        w.execute("create table t(x)")
        w.execute("insert into t values (1)")
        r = connect(heap, "db", timeout=0, isolation_level=None)
        r.execute("begin")
        assert r.execute("select count(*) from t").fetchone()[0] == 1
        w.execute("insert into t values (2)")
        assert r.execute("select count(*) from t").fetchone()[0] == 1
        expect_error(sqlite3.OperationalError, "locked",
                     lambda: (r.execute("insert into t values (3)")))   # a stale snapshot cannot write
        r.execute("rollback")
        assert r.execute("select count(*) from t").fetchone()[0] == 2
        w2 = connect(heap, "db", timeout=0, isolation_level=None)
        w.execute("begin immediate")
        expect_error(sqlite3.OperationalError, "locked", lambda: w2.execute("begin immediate"))
        w.execute("commit")
        w.execute("pragma wal_checkpoint(truncate)")
        for conn in (w, w2, r):
            conn.close()
    finally:
        remove_heap(heap)


def test_threads_write_one_database_in_wal_mode():
    heap = new_heap()
    try:
        c = connect(heap, "db")
        c.execute("pragma journal_mode=wal")
        c.execute("create table t(thread, n)")
        c.commit()
        errors = []

        def writer(k):
            try:
                conn = connect(heap, "db", timeout=30, check_same_thread=False)
                for n in range(100):
                    with conn:
                        conn.execute("insert into t values (?, ?)", (k, n))
                conn.close()
            except Exception as e:     # reported below
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert c.execute("select count(*), count(distinct thread) from t").fetchone() == (400, 4)
        c.close()
    finally:
        remove_heap(heap)


# ---- Bad input -------------------------------------------------------------------------------

def test_a_path_that_is_not_a_heap():
    small = os.path.join(daxtest.DIR, f"daxsqlite-junk.{os.getpid()}")
    large = small + ".8M"
    junk = {small: b"not a heap\n" * 1000, large: os.urandom(8 << 20)}
    for path, data in junk.items():
        with open(path, "wb") as f:
            f.write(data)
    try:
        for path, data in junk.items():
            expect_error(sqlite3.DatabaseError, "file is not a database", lambda: connect(path, "db"))
            r = shell(f".log stderr\n.load {EXT}\n.open 'file:{path}/db?vfs=daxheap'\n", check=False)
            assert "daxheap: not a heap" in r.stderr, r.stderr
            with open(path, "rb") as f:
                assert f.read() == data
        expect_error(sqlite3.OperationalError, "unable to open", lambda: connect(small + ".missing", "db"))
        expect_error(sqlite3.OperationalError, "unable to open", lambda: connect(daxtest.DIR, "db"))
    finally:
        for path in junk:
            os.unlink(path)


def test_a_heap_in_use_by_another_process():
    heap = new_heap()
    code = f"""
import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
import daxtest
c = daxtest.connect({heap!r}, "db")
c.execute("create table t(x)"); c.execute("insert into t values (42)"); c.commit()
print("ready", flush=True)
sys.stdin.readline()
"""
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        expect_error(sqlite3.OperationalError, "database is locked", lambda: connect(heap, "db"))
        r = shell(f".log stderr\n.load {EXT}\n.open 'file:{heap}/db?vfs=daxheap'\nselect 1;\n", check=False)
        assert "in use by another process, which holds its lock" in r.stderr, r.stderr
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(timeout=30) == 0
        c = connect(heap, "db")
        assert c.execute("select x from t").fetchall() == [(42,)]
        c.close()
    finally:
        if child.poll() is None:
            child.kill()
        remove_heap(heap)


def test_a_read_only_heap_refuses_writes_and_keeps_its_data():
    heap = new_heap()
    try:
        for name in ("db", "waldb"):
            c = connect(heap, name)
            fill(c, "wal" if name == "waldb" else "delete", rows=20)
            c.close()
        # A device larger than its heap opens read-only until `daxheap grow`.
        os.truncate(heap, os.path.getsize(heap) + (2 << 20))
        for name in ("db", "waldb"):
            c = connect(heap, name)
            assert c.execute("select count(*) from t").fetchone()[0] == 20
            expect_error(sqlite3.OperationalError, "readonly", lambda: c.execute("insert into t(v) values ('x')"))
            c.close()
        expect_error(sqlite3.OperationalError, "readonly|unable to open", lambda: connect(heap, "new"))
        os.truncate(heap, os.path.getsize(heap) - (2 << 20))
        c = connect(heap, "db")
        assert c.execute("select count(*) from t").fetchone()[0] == 20
        assert c.execute("pragma integrity_check").fetchone()[0] == "ok"
        c.close()
    finally:
        remove_heap(heap)


def test_a_full_heap_fails_the_transaction_and_keeps_the_database():
    for mode in ("delete", "wal"):
        heap = new_heap(16 << 20)
        try:
            c = connect(heap, "db")
            c.execute(f"pragma journal_mode={mode}")
            c.execute("create table t(id integer primary key, x blob)")
            c.commit()
            committed = 0
            try:
                while committed < 1000:
                    with c:
                        c.execute("insert into t(x) values (randomblob(200000))")
                    committed += 1
                raise AssertionError("a 16 MiB heap held 200 MB")
            except sqlite3.OperationalError as e:
                assert "full" in str(e), e
            assert committed > 5, committed
            c.close()
            c = connect(heap, "db")
            assert c.execute("select count(*) from t").fetchone()[0] == committed
            assert c.execute("pragma integrity_check").fetchone()[0] == "ok"
            if mode == "delete":      # (a WAL that could not be checkpointed into a full heap stays full)
                with c:
                    c.execute("delete from t where id = 1")   # still writable
            c.close()
        finally:
            remove_heap(heap)


def test_names_the_heap_cannot_hold():
    heap = new_heap()
    try:
        expect_error(sqlite3.OperationalError, "unable to open", lambda: connect(heap, "n" * 56))
        c = connect(heap, "n" * 55)
        c.execute("create table t(x)")
        c.close()
        with Heap(heap) as h:
            h.create_arena("foreign", 2 << 20)
            h.write("foreign", 0, b"someone else's bytes")
        expect_error(sqlite3.DatabaseError, "not a database", lambda: connect(heap, "foreign"))
        with Heap(heap) as h:
            assert h.read("foreign", 0, 20) == b"someone else's bytes"
    finally:
        remove_heap(heap)


def test_a_damaged_size_word_is_refused_not_read_past_the_arena():
    # A file's state word (arena offset 16) holds its logical size, and reads trust it: a
    # size past the arena let a read run past the window (SQLiteDamageTests shows the
    # SIGSEGV). Opening such a file is now SQLITE_CORRUPT, one line, and changes nothing.
    heap = new_heap()
    try:
        c = connect(heap, "db")
        c.execute("create table t(x)")
        c.executemany("insert into t values (?)", [(i,) for i in range(1000)])
        c.commit()
        c.close()
        exists = 1 << 63
        with Heap(heap) as h:
            arena = h.arena_size("db")
        # One byte past what the arena holds after its 4 KiB header, the largest size, and a
        # state without the exists bit.
        states = [(exists | (arena - 4096 + 1), "says it holds"), (exists | ((1 << 63) - 1), "says it holds"),
                  (4096, "no exists bit")]
        for state, says in states:
            with Heap(heap) as h:
                h.write("db", 16, state.to_bytes(8, "little"))
                before = h.read("db", 0, arena)
            expect_error(sqlite3.DatabaseError, "malformed", lambda: connect(heap, "db").execute("select count(*) from t").fetchall())
            r = shell(f".log stderr\n.load {EXT}\n.open 'file:{heap}/db?vfs=daxheap'\nselect count(*) from t;\n", check=False)
            assert says in r.stderr and r.stderr.count("daxheap:") == 1, r.stderr
            with Heap(heap) as h:
                assert h.read("db", 0, arena) == before
    finally:
        remove_heap(heap)


def main(names):
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    if names:
        tests = [(n, f) for n, f in tests if any(x in n for x in names)]
    failed = 0
    start = time.monotonic()
    for name, f in tests:
        t0 = time.monotonic()
        try:
            f()
            print(f"ok    {name} ({time.monotonic() - t0:.2f} s)")
        except Exception:
            failed += 1
            print(f"FAIL  {name}")
            traceback.print_exc()
    print(f"vfs_test: {len(tests) - failed} of {len(tests)} passed in {time.monotonic() - start:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
