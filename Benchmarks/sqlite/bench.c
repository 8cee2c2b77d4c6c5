/* bench.c -- SQLite on the daxheap VFS against SQLite's unix VFS (issue 14, part 3).
 *
 *   bench EXTENSION HEAP UNIXDIR [MODE ...]
 *
 * For each journal mode (delete, wal by default) and each VFS, on a fresh database with the
 * same schema and pragmas (page_size 4096, synchronous=FULL, the default cache), prints
 *
 *   sqlite.<daxheap|unix>.<mode>.insert1     single-row INSERT transactions     ops/s
 *   sqlite.<daxheap|unix>.<mode>.insert1000  rows of 1000-row transactions      rows/s
 *   sqlite.<daxheap|unix>.<mode>.select      random primary-key SELECTs         ops/s
 *                                            on SQLITE_BENCH_ROWS rows (default 1,000,000)
 *
 * each the median of SQLITE_BENCH_REPS runs (default 3), the VFSs alternating run by run so
 * that a change of the machine's load hits both. HEAP is a heap (made here, removed at the
 * end) whose arenas hold the daxheap databases; UNIXDIR a directory (/dev/shm) for the unix
 * VFS's files. Per-run figures go to stderr as '#' lines. */
#include <daxheap.h>
#include <sqlite3.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_REPS 15

static int insert1_txns = 5000;
/* 300 (0.3 s at a million rows a second): 30 timed 35-60 ms, and a transient of the host
 * (the runs before it freeing gigabytes) halved one VFS's figure in some runs and not in
 * others (daxheap 0.47-0.91 M rows/s within one run of 2026-12-02). */
static int insert1000_txns = 300;
static int select_rows = 1000000;
static int select_ops = 300000;
static int reps = 3;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void die(sqlite3 *db, const char *what) {
    fprintf(stderr, "bench: %s: %s\n", what, db ? sqlite3_errmsg(db) : "");
    exit(1);
}

static void exec(sqlite3 *db, const char *sql) {
    char *error = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &error) != SQLITE_OK) {
        fprintf(stderr, "bench: %s: %s\n", sql, error);
        exit(1);
    }
}

/* The same 48-byte value shape in both VFSs, varying by row. */
static void bind_value(sqlite3_stmt *stmt, int col, uint64_t i) {
    char value[49];
    snprintf(value, sizeof value, "%016llx-value-of-row-%018llu", (unsigned long long)(i * 0x9E3779B97F4A7C15ull),
             (unsigned long long)i);
    sqlite3_bind_text(stmt, col, value, 48, SQLITE_TRANSIENT);
}

static sqlite3 *open_db(const char *vfs, const char *path, const char *mode) {
    char uri[1200];
    snprintf(uri, sizeof uri, "file:%s?vfs=%s", path, vfs);
    sqlite3 *db;
    if (sqlite3_open_v2(uri, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, NULL) != SQLITE_OK) {
        die(db, uri);
    }
    char sql[200];
    snprintf(sql, sizeof sql, "pragma page_size=4096; pragma journal_mode=%s; pragma synchronous=full;", mode);
    exec(db, sql);
    exec(db, "create table t(id integer primary key, v text)");
    return db;
}

static void insert_rows(sqlite3 *db, sqlite3_stmt *stmt, uint64_t *next, int n) {
    for (int i = 0; i < n; i++) {
        sqlite3_bind_int64(stmt, 1, (sqlite3_int64)*next);
        bind_value(stmt, 2, *next);
        if (sqlite3_step(stmt) != SQLITE_DONE) {
            die(db, "insert");
        }
        sqlite3_reset(stmt);
        ++*next;
    }
}

struct run {
    double insert1, insert1000, select;
};

static struct run run_once(const char *vfs, const char *path, const char *mode) {
    struct run r;
    sqlite3 *db = open_db(vfs, path, mode);
    sqlite3_stmt *insert;
    if (sqlite3_prepare_v2(db, "insert into t values (?, ?)", -1, &insert, NULL) != SQLITE_OK) {
        die(db, "prepare");
    }
    uint64_t next = 1;
    double t0 = now();
    for (int i = 0; i < insert1_txns; i++) {
        insert_rows(db, insert, &next, 1); /* autocommit: one transaction each */
    }
    r.insert1 = insert1_txns / (now() - t0);

    t0 = now();
    for (int i = 0; i < insert1000_txns; i++) {
        exec(db, "begin");
        insert_rows(db, insert, &next, 1000);
        exec(db, "commit");
    }
    r.insert1000 = insert1000_txns * 1000.0 / (now() - t0);

    while (next <= (uint64_t)select_rows) { /* fill, untimed */
        int n = select_rows + 1 - (int)next < 20000 ? select_rows + 1 - (int)next : 20000;
        exec(db, "begin");
        insert_rows(db, insert, &next, n);
        exec(db, "commit");
    }
    if (strcmp(mode, "wal") == 0) {
        exec(db, "pragma wal_checkpoint(truncate)");
    }
    sqlite3_finalize(insert);
    sqlite3_stmt *select;
    if (sqlite3_prepare_v2(db, "select v from t where id = ?", -1, &select, NULL) != SQLITE_OK) {
        die(db, "prepare");
    }
    uint64_t rows = next - 1, x = 88172645463325252ull, found = 0;
    t0 = now();
    for (int i = 0; i < select_ops; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        sqlite3_bind_int64(select, 1, (sqlite3_int64)(x % rows + 1));
        found += sqlite3_step(select) == SQLITE_ROW && sqlite3_column_bytes(select, 0) == 48;
        sqlite3_reset(select);
    }
    r.select = select_ops / (now() - t0);
    sqlite3_finalize(select);
    if (found != (uint64_t)select_ops) {
        fprintf(stderr, "bench: %s/%s: %llu of %d selects found their row\n", vfs, mode, (unsigned long long)found,
                select_ops);
        exit(1);
    }
    if (sqlite3_close(db) != SQLITE_OK) {
        die(db, "close");
    }
    return r;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, compare);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void load_extension(const char *path) {
    sqlite3 *db;
    char *error = NULL;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK) {
        die(db, "open :memory:");
    }
    sqlite3_enable_load_extension(db, 1);
    if (sqlite3_load_extension(db, path, NULL, &error) != SQLITE_OK) {
        fprintf(stderr, "bench: loading %s: %s\n", path, error);
        exit(1);
    }
    sqlite3_close(db);
}

/* Destroys a database's arenas once the VFS has closed the heap, so the next run starts
 * fresh in the same space. */
static void drop_arenas(const char *heap_path, const char *name) {
    daxheap *heap;
    if (daxheap_open(heap_path, 0, &heap) != DAXHEAP_OK) {
        fprintf(stderr, "bench: daxheap_open %s: %s\n", heap_path, daxheap_errmsg());
        exit(1);
    }
    const char *suffixes[] = {"", "-journal", "-wal"};
    for (int i = 0; i < 3; i++) {
        char arena[128];
        snprintf(arena, sizeof arena, "%s%s", name, suffixes[i]);
        int rc = daxheap_arena_destroy(heap, arena);
        if (rc != DAXHEAP_OK && rc != DAXHEAP_ENOENT) {
            fprintf(stderr, "bench: destroying %s: %s\n", arena, daxheap_errmsg());
            exit(1);
        }
    }
    daxheap_close(heap);
}

static int env_int(const char *name, int fallback) {
    const char *v = getenv(name);
    return v != NULL && atoi(v) > 0 ? atoi(v) : fallback;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: bench EXTENSION HEAP UNIXDIR [delete|wal ...]\n");
        return 2;
    }
    select_rows = env_int("SQLITE_BENCH_ROWS", select_rows);
    select_ops = env_int("SQLITE_BENCH_SELECTS", select_ops);
    insert1_txns = env_int("SQLITE_BENCH_INSERT1", insert1_txns);
    insert1000_txns = env_int("SQLITE_BENCH_INSERT1000", insert1000_txns);
    reps = env_int("SQLITE_BENCH_REPS", reps);
    reps = reps > MAX_REPS ? MAX_REPS : reps;
    const char *heap_path = argv[2], *unix_dir = argv[3];
    const char *default_modes[] = {"delete", "wal"};
    const char **modes = argc > 4 ? (const char **)argv + 4 : default_modes;
    int nmodes = argc > 4 ? argc - 4 : 2;

    /* A heap large enough for a database of select_rows rows and its WAL. */
    uint64_t heap_size = ((uint64_t)select_rows * 300 / (2 << 20) + 64) * (2 << 20);
    daxheap *heap;
    unlink(heap_path);
    if (daxheap_create(heap_path, heap_size, &heap) != DAXHEAP_OK) {
        fprintf(stderr, "bench: daxheap_create %s: %s\n", heap_path, daxheap_errmsg());
        return 1;
    }
    daxheap_close(heap); /* the VFS opens it; one open per process */
    load_extension(argv[1]);
    fprintf(stderr, "# sqlite %s; %d insert1 txns, %d x 1000-row txns, %d selects on %d rows, %d reps\n",
            sqlite3_libversion(), insert1_txns, insert1000_txns, select_ops, select_rows, reps);

    for (int m = 0; m < nmodes; m++) {
        double v[2][3][MAX_REPS];
        for (int rep = 0; rep < reps; rep++) {
            for (int k = 0; k < 2; k++) {
                int which = (k + rep) % 2; /* alternate which VFS goes first */
                char path[1200];
                struct run r;
                if (which == 0) {
                    snprintf(path, sizeof path, "%s/%s%d", heap_path, modes[m], rep);
                    r = run_once("daxheap", path, modes[m]);
                    drop_arenas(heap_path, strrchr(path, '/') + 1);
                } else {
                    snprintf(path, sizeof path, "%s/sqlite-bench-%d-%s.db", unix_dir, (int)getpid(), modes[m]);
                    unlink(path);
                    r = run_once("unix", path, modes[m]);
                    char extra[1300];
                    unlink(path);
                    snprintf(extra, sizeof extra, "%s-wal", path), unlink(extra);
                    snprintf(extra, sizeof extra, "%s-shm", path), unlink(extra);
                    snprintf(extra, sizeof extra, "%s-journal", path), unlink(extra);
                }
                v[which][0][rep] = r.insert1;
                v[which][1][rep] = r.insert1000;
                v[which][2][rep] = r.select;
                fprintf(stderr, "# %s %s rep %d: insert1 %.0f ops/s, insert1000 %.0f rows/s, select %.0f ops/s\n",
                        which == 0 ? "daxheap" : "unix", modes[m], rep, r.insert1, r.insert1000, r.select);
            }
        }
        for (int which = 0; which < 2; which++) {
            const char *vfs = which == 0 ? "daxheap" : "unix";
            printf("sqlite.%s.%s.insert1 %.0f ops/s\n", vfs, modes[m], median(v[which][0], reps));
            printf("sqlite.%s.%s.insert1000 %.0f rows/s\n", vfs, modes[m], median(v[which][1], reps));
            printf("sqlite.%s.%s.select %.0f ops/s\n", vfs, modes[m], median(v[which][2], reps));
            fflush(stdout);
        }
    }
    unlink(heap_path);
    return 0;
}
