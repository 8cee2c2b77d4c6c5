/* The daxheap VFS's files: copies through the arena's window, a logical size kept apart
 * from the arena's, and SQLite's locks among the connections of this process.
 *
 * Durability: a write copies into the window and flushes its lines (no fence). xSync drains
 * (one fence: every flushed write durable), then, if the size changed, stores the state word,
 * flushes it and drains again, so the bytes below a size are durable before the size is
 * (SQLITE_IOCAP_SAFE_APPEND). Deleting a file and truncating it make the new state durable
 * before they return. See ../README.md for why this is what SQLite's journal and WAL need. */
#include <string.h>

#include "dxh.h"

SQLITE_EXTENSION_INIT3

static struct dxh_node *dxh_node_of(sqlite3_file *file) {
    return ((struct dxh_file *)file)->node;
}

static uint64_t dxh_size(struct dxh_node *node) {
    return __atomic_load_n(&node->state, __ATOMIC_ACQUIRE) & DXH_SIZE_MASK;
}

/* Raises the size to end if it is below (only one connection writes a file at a time, under
 * SQLite's locks; the loop keeps a reader's view consistent anyway). */
static void dxh_extend(struct dxh_node *node, uint64_t end) {
    uint64_t state = __atomic_load_n(&node->state, __ATOMIC_ACQUIRE);
    while ((state & DXH_SIZE_MASK) < end) {
        if (__atomic_compare_exchange_n(&node->state, &state, DXH_EXISTS | end, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            break;
        }
    }
}

/* Copies src to file offset [offset, offset + length) and flushes it, no fence. */
static int dxh_copy_in(struct dxh_node *node, uint64_t offset, const void *src, uint64_t length) {
    unsigned char *at = node->base + DXH_HEADER_SIZE + offset;
    if (src != NULL) {
        memcpy(at, src, length);
    } else {
        memset(at, 0, length);
    }
    if (daxheap_window_flush(node->window, DXH_HEADER_SIZE + offset, length) != DAXHEAP_OK) {
        return dxh_error(SQLITE_IOERR_WRITE, "daxheap: cannot flush a write to \"%s\": %s", node->name,
                         daxheap_errmsg());
    }
    return SQLITE_OK;
}

static int dxh_close(sqlite3_file *file) {
    struct dxh_file *p = (struct dxh_file *)file;
    struct dxh_node *node = p->node;
    if (p->shm_mapped) {
        dxh_shm_unmap(file, 0);
    }
    file->pMethods->xUnlock(file, SQLITE_LOCK_NONE);
    if (p->delete_on_close && !p->readonly) {
        dxh_node_set_state(node, 0);
    }
    dxh_heap_release(node->heap);
    return SQLITE_OK;
}

static int dxh_read(sqlite3_file *file, void *dst, int amount, sqlite3_int64 offset) {
    struct dxh_node *node = dxh_node_of(file);
    uint64_t size = dxh_size(node);
    uint64_t want = (uint64_t)amount;
    uint64_t got = (uint64_t)offset >= size ? 0 : size - (uint64_t)offset;
    if (got > want) {
        got = want;
    }
    memcpy(dst, node->base + DXH_HEADER_SIZE + offset, got);
    if (got < want) {
        memset((unsigned char *)dst + got, 0, want - got);
        return SQLITE_IOERR_SHORT_READ;
    }
    return SQLITE_OK;
}

static int dxh_write(sqlite3_file *file, const void *src, int amount, sqlite3_int64 offset) {
    struct dxh_file *p = (struct dxh_file *)file;
    struct dxh_node *node = p->node;
    if (p->readonly) {
        return SQLITE_READONLY;
    }
    uint64_t end = (uint64_t)offset + (uint64_t)amount;
    int rc = dxh_node_reserve(node, end);
    uint64_t size = dxh_size(node);
    if (rc == SQLITE_OK && (uint64_t)offset > size) {
        rc = dxh_copy_in(node, size, NULL, (uint64_t)offset - size);   /* a gap reads as zeros */
    }
    if (rc == SQLITE_OK) {
        rc = dxh_copy_in(node, (uint64_t)offset, src, (uint64_t)amount);
    }
    if (rc == SQLITE_OK) {
        dxh_extend(node, end);
    }
    return rc;
}

static int dxh_truncate(sqlite3_file *file, sqlite3_int64 size) {
    struct dxh_file *p = (struct dxh_file *)file;
    struct dxh_node *node = p->node;
    if (p->readonly) {
        return SQLITE_READONLY;
    }
    uint64_t current = dxh_size(node);
    if ((uint64_t)size < current) {
        /* Durable at once: a journal truncated to commit must not come back. */
        return dxh_node_set_state(node, DXH_EXISTS | (uint64_t)size);
    }
    if ((uint64_t)size > current) {
        int rc = dxh_node_reserve(node, (uint64_t)size);
        if (rc == SQLITE_OK) {
            rc = dxh_copy_in(node, current, NULL, (uint64_t)size - current);
        }
        if (rc != SQLITE_OK) {
            return rc;
        }
        dxh_extend(node, (uint64_t)size);
    }
    return SQLITE_OK;
}

static int dxh_sync(sqlite3_file *file, int flags) {
    (void)flags; /* NORMAL and FULL alike: the fences are what both promise */
    struct dxh_file *p = (struct dxh_file *)file;
    return p->readonly ? SQLITE_OK : dxh_node_sync(p->node);
}

static int dxh_file_size(sqlite3_file *file, sqlite3_int64 *size) {
    *size = (sqlite3_int64)dxh_size(dxh_node_of(file));
    return SQLITE_OK;
}

/* ---- Locks: SQLite's five levels among this process's connections ----------------------- *
 * node->lock is the highest level any connection holds, node->nshared how many hold SHARED
 * or more. Only the connection holding node->lock may go above SHARED (RESERVED, PENDING,
 * EXCLUSIVE are held by one connection at most); PENDING keeps new readers out until the
 * last of the others has left. No other process can hold the heap, so no file locks. */

static int dxh_lock(sqlite3_file *file, int level) {
    struct dxh_file *p = (struct dxh_file *)file;
    struct dxh_node *node = p->node;
    if (p->lock >= level) {
        return SQLITE_OK;
    }
    int rc = SQLITE_OK;
    pthread_mutex_lock(&node->mutex);
    if (p->lock != node->lock && (node->lock >= SQLITE_LOCK_PENDING || level > SQLITE_LOCK_SHARED)) {
        rc = SQLITE_BUSY;
    } else if (level == SQLITE_LOCK_SHARED) {
        node->nshared++;
        if (node->lock < SQLITE_LOCK_SHARED) {
            node->lock = SQLITE_LOCK_SHARED;
        }
        p->lock = SQLITE_LOCK_SHARED;
    } else if (level == SQLITE_LOCK_RESERVED) {
        node->lock = SQLITE_LOCK_RESERVED;
        p->lock = SQLITE_LOCK_RESERVED;
    } else if (node->nshared > 1) {
        node->lock = SQLITE_LOCK_PENDING;
        p->lock = SQLITE_LOCK_PENDING;
        rc = SQLITE_BUSY;
    } else {
        node->lock = SQLITE_LOCK_EXCLUSIVE;
        p->lock = SQLITE_LOCK_EXCLUSIVE;
    }
    pthread_mutex_unlock(&node->mutex);
    return rc;
}

static int dxh_unlock(sqlite3_file *file, int level) {
    struct dxh_file *p = (struct dxh_file *)file;
    struct dxh_node *node = p->node;
    if (p->lock <= level) {
        return SQLITE_OK;
    }
    pthread_mutex_lock(&node->mutex);
    if (p->lock > SQLITE_LOCK_SHARED) {
        node->lock = SQLITE_LOCK_SHARED;
    }
    if (level == SQLITE_LOCK_NONE) {
        if (--node->nshared == 0) {
            node->lock = SQLITE_LOCK_NONE;
        }
    }
    p->lock = level;
    pthread_mutex_unlock(&node->mutex);
    return SQLITE_OK;
}

static int dxh_check_reserved_lock(sqlite3_file *file, int *result) {
    struct dxh_node *node = dxh_node_of(file);
    pthread_mutex_lock(&node->mutex);
    *result = node->lock > SQLITE_LOCK_SHARED;
    pthread_mutex_unlock(&node->mutex);
    return SQLITE_OK;
}

static int dxh_file_control(sqlite3_file *file, int op, void *arg) {
    struct dxh_file *p = (struct dxh_file *)file;
    switch (op) {
    case SQLITE_FCNTL_VFSNAME:
        *(char **)arg = sqlite3_mprintf("%s", DXH_VFS_NAME);
        return SQLITE_OK;
    case SQLITE_FCNTL_SIZE_HINT:
        return p->readonly ? SQLITE_OK : dxh_node_reserve(p->node, (uint64_t)*(sqlite3_int64 *)arg);
    case SQLITE_FCNTL_MMAP_SIZE: {           /* the old limit out; a new one (>= 0) in */
        sqlite3_int64 limit = *(sqlite3_int64 *)arg;
        *(sqlite3_int64 *)arg = p->mmap_limit;
        if (limit >= 0) {
            p->mmap_limit = limit;
        }
        return SQLITE_OK;
    }
    case SQLITE_FCNTL_HAS_MOVED:
        *(int *)arg = __atomic_load_n(&p->node->state, __ATOMIC_ACQUIRE) == 0;
        return SQLITE_OK;
    default:
        return SQLITE_NOTFOUND;
    }
}

static int dxh_sector_size(sqlite3_file *file) {
    (void)file;
    return 4096;
}

static int dxh_device_characteristics(sqlite3_file *file) {
    (void)file;
    /* A write changes only the lines it covers; a size becomes durable only after the bytes
     * below it (xSync drains before it stores the size). */
    return SQLITE_IOCAP_POWERSAFE_OVERWRITE | SQLITE_IOCAP_SAFE_APPEND;
}

/* Memory-mapped I/O (PRAGMA mmap_size): pages are read in place in the window, whose base
 * never moves and whose arena never shrinks, so a pointer stays good until the file closes. */
static int dxh_fetch(sqlite3_file *file, sqlite3_int64 offset, int amount, void **out) {
    struct dxh_file *p = (struct dxh_file *)file;
    uint64_t end = (uint64_t)offset + (uint64_t)amount;
    int inside = end <= dxh_size(p->node) && end <= (uint64_t)p->mmap_limit;
    *out = inside ? p->node->base + DXH_HEADER_SIZE + offset : NULL;   /* NULL: SQLite uses xRead */
    return SQLITE_OK;
}

static int dxh_unfetch(sqlite3_file *file, sqlite3_int64 offset, void *page) {
    (void)file;
    (void)offset;
    (void)page;
    return SQLITE_OK;
}

const sqlite3_io_methods dxh_io_methods = {
    .iVersion = 3,
    .xClose = dxh_close,
    .xRead = dxh_read,
    .xWrite = dxh_write,
    .xTruncate = dxh_truncate,
    .xSync = dxh_sync,
    .xFileSize = dxh_file_size,
    .xLock = dxh_lock,
    .xUnlock = dxh_unlock,
    .xCheckReservedLock = dxh_check_reserved_lock,
    .xFileControl = dxh_file_control,
    .xSectorSize = dxh_sector_size,
    .xDeviceCharacteristics = dxh_device_characteristics,
    .xShmMap = dxh_shm_map,
    .xShmLock = dxh_shm_lock,
    .xShmBarrier = dxh_shm_barrier,
    .xShmUnmap = dxh_shm_unmap,
    .xFetch = dxh_fetch,
    .xUnfetch = dxh_unfetch,
};
