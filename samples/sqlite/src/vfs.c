/* The daxheap VFS: database names, the sqlite3_vfs methods, errors and the entry point of
 * the loadable extension (libdaxheap_sqlite.so, entry sqlite3_daxheapsqlite_init).
 *
 * A database name HEAPPATH/NAME is the arena NAME on the heap at HEAPPATH; SQLite appends
 * "-journal" and "-wal" to it, so those files are the arenas NAME-journal and NAME-wal.
 * Temporary files (no name, or SQLite's temp and sub-journal kinds) go to the default VFS. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dxh.h"

SQLITE_EXTENSION_INIT1

sqlite3_vfs *dxh_default_vfs;

/* ---- Errors: one line per thread, also sent to SQLite's error log (sqlite3_log) ---------- */

static __thread char dxh_last_error[512];

int dxh_error(int rc, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(dxh_last_error, sizeof dxh_last_error, format, args);
    va_end(args);
    sqlite3_log(rc, "%s", dxh_last_error);
    return rc;
}

static int dxh_get_last_error(sqlite3_vfs *vfs, int n, char *out) {
    (void)vfs;
    if (n > 0 && out != NULL) {
        snprintf(out, (size_t)n, "%s", dxh_last_error);
    }
    return 0;
}

/* ---- Names ------------------------------------------------------------------------------- */

/* Splits HEAPPATH/NAME at its last '/': the heap's path into heappath, *arena points at NAME. */
int dxh_split_name(const char *path, char *heappath, size_t cap, const char **arena) {
    const char *slash = strrchr(path, '/');
    if (slash == NULL || slash == path || slash[1] == '\0') {
        return dxh_error(SQLITE_CANTOPEN,
                         "daxheap: \"%s\" is not HEAPPATH/NAME (a heap file or device, a slash, a database name)", path);
    }
    size_t length = (size_t)(slash - path);
    if (length >= cap) {
        return dxh_error(SQLITE_CANTOPEN, "daxheap: the heap path in \"%s\" is too long", path);
    }
    if (strlen(slash + 1) > DXH_ARENA_NAME_MAX) {
        return dxh_error(SQLITE_CANTOPEN, "daxheap: \"%s\" is longer than an arena name may be (%d bytes)",
                         slash + 1, DXH_ARENA_NAME_MAX);
    }
    memcpy(heappath, path, length);
    heappath[length] = '\0';
    *arena = slash + 1;
    return SQLITE_OK;
}

static int dxh_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out) {
    (void)vfs;
    int written;
    if (name[0] == '/') {
        written = snprintf(out, (size_t)n, "%s", name);
    } else {
        char cwd[DXH_MAX_PATH];
        if (getcwd(cwd, sizeof cwd) == NULL) {
            return dxh_error(SQLITE_CANTOPEN, "daxheap: cannot read the current directory: %s", strerror(errno));
        }
        written = snprintf(out, (size_t)n, "%s/%s", cwd, name);
    }
    if (written < 0 || written >= n) {
        return dxh_error(SQLITE_CANTOPEN, "daxheap: the path \"%s\" is too long", name);
    }
    return SQLITE_OK;
}

/* ---- Opening, deleting, asking ------------------------------------------------------------ */

static int dxh_is_temporary(const char *name, int flags) {
    return name == NULL || (flags & (SQLITE_OPEN_TEMP_DB | SQLITE_OPEN_TEMP_JOURNAL |
                                     SQLITE_OPEN_TRANSIENT_DB | SQLITE_OPEN_SUBJOURNAL)) != 0;
}

/* Makes the node's file exist (state 0 -> DXH_EXISTS | 0), or refuses as SQLite asked. */
static int dxh_open_node(struct dxh_node *node, const char *path, int flags) {
    uint64_t state = __atomic_load_n(&node->state, __ATOMIC_ACQUIRE);
    if (state != 0) {
        if ((flags & SQLITE_OPEN_EXCLUSIVE) && (flags & SQLITE_OPEN_CREATE)) {
            return dxh_error(SQLITE_CANTOPEN, "daxheap: %s exists already", path);
        }
        return SQLITE_OK;
    }
    if (!(flags & SQLITE_OPEN_CREATE)) {
        return dxh_error(SQLITE_CANTOPEN, "daxheap: no database file %s (open it with create to make one)", path);
    }
    if (node->heap->readonly) {
        return SQLITE_OK; /* reads as empty, refuses writes, creates nothing (a WAL SQLite opens to read) */
    }
    uint64_t expected = 0;
    __atomic_compare_exchange_n(&node->state, &expected, DXH_EXISTS, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    /* A new main database exists durably at once; a journal or WAL at its first xSync,
     * which is when SQLite needs it (as a directory sync after creating it). */
    return (flags & SQLITE_OPEN_MAIN_DB) ? dxh_node_sync(node) : SQLITE_OK;
}

static int dxh_open(sqlite3_vfs *vfs, const char *path, sqlite3_file *file, int flags, int *out_flags) {
    (void)vfs;
    if (dxh_is_temporary(path, flags)) {
        /* Our szOsFile is at least the default VFS's: its file lives in ours. */
        return dxh_default_vfs->xOpen(dxh_default_vfs, path, file, flags, out_flags);
    }
    struct dxh_file *p = (struct dxh_file *)file;
    memset(p, 0, sizeof *p);
    char heappath[DXH_MAX_PATH];
    const char *arena;
    int rc = dxh_split_name(path, heappath, sizeof heappath, &arena);
    if (rc != SQLITE_OK) {
        return rc;
    }
    if ((flags & SQLITE_OPEN_MAIN_DB) && strlen(arena) + DXH_JOURNAL_SUFFIX_MAX > DXH_ARENA_NAME_MAX) {
        return dxh_error(SQLITE_CANTOPEN,
                         "daxheap: database name \"%s\" is too long: at most %d bytes, so that its -journal fits "
                         "an arena name (%d bytes)", arena, DXH_ARENA_NAME_MAX - DXH_JOURNAL_SUFFIX_MAX,
                         DXH_ARENA_NAME_MAX);
    }
    struct dxh_heap *heap;
    rc = dxh_heap_acquire(heappath, &heap);
    if (rc != SQLITE_OK) {
        return rc;
    }
    struct dxh_node *node;
    int create = (flags & SQLITE_OPEN_CREATE) && !heap->readonly;
    rc = dxh_node_get(heap, arena, create, &node);
    if (rc == SQLITE_OK) {
        rc = dxh_open_node(node, path, flags);
    }
    if (rc != SQLITE_OK) {
        dxh_heap_release(heap);
        return rc;
    }
    p->node = node;
    p->readonly = heap->readonly || !(flags & SQLITE_OPEN_READWRITE);
    p->delete_on_close = (flags & SQLITE_OPEN_DELETEONCLOSE) != 0;
    if (out_flags != NULL) {
        *out_flags = flags;
        if (heap->readonly && (flags & SQLITE_OPEN_READWRITE)) {
            *out_flags = (flags & ~(SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) | SQLITE_OPEN_READONLY;
        }
    }
    p->base.pMethods = &dxh_io_methods;
    return SQLITE_OK;
}

static int dxh_delete(sqlite3_vfs *vfs, const char *path, int sync_dir) {
    (void)vfs;
    (void)sync_dir; /* deleting is durable when it returns */
    char heappath[DXH_MAX_PATH];
    const char *arena;
    int rc = dxh_split_name(path, heappath, sizeof heappath, &arena);
    if (rc != SQLITE_OK) {
        return SQLITE_IOERR_DELETE_NOENT;
    }
    struct dxh_heap *heap;
    if (dxh_heap_acquire(heappath, &heap) != SQLITE_OK) {
        return SQLITE_IOERR_DELETE;
    }
    if (heap->readonly) {
        dxh_heap_release(heap);
        return dxh_error(SQLITE_READONLY, "daxheap: cannot delete %s: the heap is open read-only", path);
    }
    struct dxh_node *node = dxh_node_find(heap, arena);
    if (node != NULL) {
        rc = __atomic_load_n(&node->state, __ATOMIC_ACQUIRE) == 0 ? SQLITE_IOERR_DELETE_NOENT
                                                                  : dxh_node_set_state(node, 0);
    } else {
        uint64_t state;
        rc = dxh_arena_peek_state(heap, arena, &state);
        if (rc == SQLITE_OK) {
            rc = state == 0 ? SQLITE_IOERR_DELETE_NOENT : dxh_arena_poke_state(heap, arena, 0);
        }
    }
    dxh_heap_release(heap);
    return rc;
}

static int dxh_access(sqlite3_vfs *vfs, const char *path, int flags, int *result) {
    (void)vfs;
    *result = 0;
    char heappath[DXH_MAX_PATH];
    const char *arena;
    struct dxh_heap *heap;
    /* A name that is no file of a usable heap does not exist; opening it says why. */
    if (dxh_split_name(path, heappath, sizeof heappath, &arena) != SQLITE_OK ||
        dxh_heap_acquire(heappath, &heap) != SQLITE_OK) {
        return SQLITE_OK;
    }
    uint64_t state = 0;
    struct dxh_node *node = dxh_node_find(heap, arena);
    if (node != NULL) {
        state = __atomic_load_n(&node->state, __ATOMIC_ACQUIRE);
    } else if (dxh_arena_peek_state(heap, arena, &state) != SQLITE_OK) {
        state = 0;
    }
    *result = state != 0 && (flags != SQLITE_ACCESS_READWRITE || !heap->readonly);
    dxh_heap_release(heap);
    return SQLITE_OK;
}

/* ---- The rest is the default VFS's ------------------------------------------------------- */

static void *dxh_dl_open(sqlite3_vfs *vfs, const char *path) {
    (void)vfs;
    return dxh_default_vfs->xDlOpen(dxh_default_vfs, path);
}

static void dxh_dl_error(sqlite3_vfs *vfs, int n, char *out) {
    (void)vfs;
    dxh_default_vfs->xDlError(dxh_default_vfs, n, out);
}

static void (*dxh_dl_sym(sqlite3_vfs *vfs, void *handle, const char *symbol))(void) {
    (void)vfs;
    return dxh_default_vfs->xDlSym(dxh_default_vfs, handle, symbol);
}

static void dxh_dl_close(sqlite3_vfs *vfs, void *handle) {
    (void)vfs;
    dxh_default_vfs->xDlClose(dxh_default_vfs, handle);
}

static int dxh_randomness(sqlite3_vfs *vfs, int n, char *out) {
    (void)vfs;
    return dxh_default_vfs->xRandomness(dxh_default_vfs, n, out);
}

static int dxh_sleep(sqlite3_vfs *vfs, int microseconds) {
    (void)vfs;
    return dxh_default_vfs->xSleep(dxh_default_vfs, microseconds);
}

static int dxh_current_time(sqlite3_vfs *vfs, double *now) {
    (void)vfs;
    return dxh_default_vfs->xCurrentTime(dxh_default_vfs, now);
}

static int dxh_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *now) {
    (void)vfs;
    if (dxh_default_vfs->iVersion >= 2 && dxh_default_vfs->xCurrentTimeInt64 != NULL) {
        return dxh_default_vfs->xCurrentTimeInt64(dxh_default_vfs, now);
    }
    double days;
    int rc = dxh_default_vfs->xCurrentTime(dxh_default_vfs, &days);
    *now = (sqlite3_int64)(days * 86400000.0);
    return rc;
}

static sqlite3_vfs dxh_vfs = {
    .iVersion = 2,
    .szOsFile = sizeof(struct dxh_file),
    .mxPathname = DXH_MAX_PATH,
    .zName = DXH_VFS_NAME,
    .xOpen = dxh_open,
    .xDelete = dxh_delete,
    .xAccess = dxh_access,
    .xFullPathname = dxh_full_pathname,
    .xDlOpen = dxh_dl_open,
    .xDlError = dxh_dl_error,
    .xDlSym = dxh_dl_sym,
    .xDlClose = dxh_dl_close,
    .xRandomness = dxh_randomness,
    .xSleep = dxh_sleep,
    .xCurrentTime = dxh_current_time,
    .xGetLastError = dxh_get_last_error,
    .xCurrentTimeInt64 = dxh_current_time_int64,
};

/* The entry point SQLite derives from the file name libdaxheap_sqlite.so. Registers the VFS
 * (not as the default) once per process and keeps the library loaded. */
__attribute__((visibility("default")))
int sqlite3_daxheapsqlite_init(sqlite3 *db, char **error, const sqlite3_api_routines *api) {
    (void)db;
    SQLITE_EXTENSION_INIT2(api);
    if (sqlite3_vfs_find(DXH_VFS_NAME) != NULL) {
        return SQLITE_OK_LOAD_PERMANENTLY;
    }
    dxh_default_vfs = sqlite3_vfs_find(NULL);
    if (dxh_default_vfs == NULL) {
        *error = sqlite3_mprintf("daxheap: SQLite has no default VFS to delegate temporary files to");
        return SQLITE_ERROR;
    }
    if (dxh_default_vfs->szOsFile > dxh_vfs.szOsFile) {
        dxh_vfs.szOsFile = dxh_default_vfs->szOsFile;
    }
    int rc = sqlite3_vfs_register(&dxh_vfs, 0);
    if (rc != SQLITE_OK) {
        *error = sqlite3_mprintf("daxheap: cannot register the VFS (%d)", rc);
        return rc;
    }
    return SQLITE_OK_LOAD_PERMANENTLY;
}
