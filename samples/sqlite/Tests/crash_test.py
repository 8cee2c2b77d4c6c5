"""SIGKILL at random moments of a writer, then reopen: integrity ok, every committed
transaction there in full, none half-applied. DELETE and WAL journal modes.

    crash_test.py [--kills N] [--seed S]       (default 20 kills per mode: a few seconds)
    crash_test.py --writer HEAP MODE FIRST     (the writer, spawned by the test)

The writer commits transactions of 1-4 rows (ids txn*10 + k, each row carrying its
transaction's row count) and updates, and prints each transaction's number once its commit
has returned. A kill leaves the CPU caches intact, so this proves SQLite's protocols over the
VFS (sizes, deletes, locks, recovery at the next open) rather than power-loss durability.
"""
import os
import random
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daxtest  # noqa: E402


def writer(heap, mode, first):
    conn = daxtest.connect(heap, "db", isolation_level=None, timeout=10)
    conn.execute(f"pragma journal_mode={mode}")
    conn.execute("pragma synchronous=full")
    conn.execute("create table if not exists t(id integer primary key, txn, rows, v blob)")
    rng = random.Random(first)
    txn = first
    while True:
        rows = rng.randint(1, 4)
        conn.execute("begin")
        for k in range(rows):
            conn.execute("insert into t values (?, ?, ?, randomblob(?))", (txn * 10 + k, txn, rows, rng.randint(8, 3000)))
        if txn % 3 == 0:
            conn.execute("update t set v = randomblob(100) where id = (select min(id) from t where txn >= ?)",
                         (max(1, txn - 50),))
        conn.execute("commit")
        print(txn, flush=True)
        txn += 1


def check(heap, printed, mode):
    conn = daxtest.connect(heap, "db")
    try:
        status = conn.execute("pragma integrity_check").fetchone()[0]
        assert status == "ok", f"{mode}: integrity_check: {status}"
        have = {}
        if conn.execute("select count(*) from sqlite_master where name = 't'").fetchone()[0] == 0:
            assert not printed, f"{mode}: the table is gone after {len(printed)} commits"
            return 0
        for txn, rows, count in conn.execute("select txn, rows, count(*) from t group by txn"):
            assert rows == count, f"{mode}: transaction {txn} half applied: {count} of {rows} rows"
            have[txn] = rows
        missing = [t for t in printed if t not in have]
        assert not missing, f"{mode}: committed transactions missing after the kill: {missing[:10]}"
        return max(have, default=0)
    finally:
        conn.close()


def run(mode, kills, rng):
    heap = daxtest.new_heap(64 << 20, tag=f"crash-{mode}")
    printed = []
    last = 0
    try:
        for _ in range(kills):
            # Half the writers flush with libpmem's cache flushes, half with msync (a file).
            env = dict(os.environ, PMEM_IS_PMEM_FORCE="1" if rng.random() < 0.5 else "0")
            child = subprocess.Popen([sys.executable, __file__, "--writer", heap, mode, str(last + 1)],
                                     stdout=subprocess.PIPE, text=True, env=env)
            first = ""
            if rng.random() < 0.25:
                time.sleep(rng.uniform(0, 0.05))          # during start-up and recovery
            else:
                first = child.stdout.readline()           # the first commit has returned
                time.sleep(rng.uniform(0, 0.08))
            child.send_signal(signal.SIGKILL)
            out, _ = child.communicate()
            out = first + out
            # A line may be cut short by the kill: only whole lines count.
            lines = out.split("\n")[:-1] if not out.endswith("\n") else out.split("\n")
            printed.extend(int(x) for x in lines if x.strip())
            last = check(heap, printed, mode)
        return len(printed)
    finally:
        daxtest.remove_heap(heap)


def main(args):
    if args and args[0] == "--writer":
        writer(args[1], args[2], int(args[3]))
        return 0
    kills = int(args[args.index("--kills") + 1]) if "--kills" in args else 20
    seed = int(args[args.index("--seed") + 1]) if "--seed" in args else int(time.time())
    rng = random.Random(seed)
    start = time.monotonic()
    for mode in ("delete", "wal"):
        committed = run(mode, kills, rng)
        print(f"ok    crash_test {mode}: {kills} kills, {committed} committed transactions all present (seed {seed})")
    print(f"crash_test: passed in {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
