/* The process's open heaps and the arenas it uses as files.
 *
 * A heap is opened once per process (DaxHeap's flock admits one writing process) and shared
 * by every database and connection on it: a table keyed by the heap file's device and inode,
 * reference counted by open files, under dxh_heaps_mutex. Each arena used as a file gets a
 * node, shared by every connection, that holds its window, its logical size and its locks;
 * nodes stay (window mapped) until the heap closes, so a journal deleted and re-created on
 * every transaction costs no mapping and no arena provisioning.
 *
 * Lock order: dxh_heaps_mutex, then a heap's mutex, then a node's mutex. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dxh.h"

SQLITE_EXTENSION_INIT3

static pthread_mutex_t dxh_heaps_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct dxh_heap *dxh_heaps;

int dxh_rc_of(int daxheap_rc, int fallback) {
    switch (daxheap_rc) {
    case DAXHEAP_ENOSPC: return SQLITE_FULL;
    case DAXHEAP_EBUSY: return SQLITE_BUSY;
    case DAXHEAP_ENOTHEAP: return SQLITE_NOTADB;
    case DAXHEAP_ECORRUPT: return SQLITE_CORRUPT;
    case DAXHEAP_EROFS: return SQLITE_READONLY;
    default: return fallback;
    }
}

/* ---- Heaps -------------------------------------------------------------------------------- */

/* Opens the heap read-write, or read-only when the file is not writable or refuses to be
 * written (a device larger than its heap opens read-only until `daxheap grow`). */
static int dxh_heap_open(const char *path, daxheap **out, int *readonly) {
    *readonly = access(path, W_OK) != 0;
    int rc = daxheap_open(path, *readonly ? DAXHEAP_READ_ONLY : 0, out);
    if (rc == DAXHEAP_OK) {
        return SQLITE_OK;
    }
    char first[400];
    snprintf(first, sizeof first, "%s", daxheap_errmsg());
    int retry = !*readonly && rc != DAXHEAP_EBUSY && rc != DAXHEAP_ENOTHEAP && rc != DAXHEAP_ENOENT &&
                rc != DAXHEAP_ECORRUPT && rc != DAXHEAP_EINVAL;
    if (retry && daxheap_open(path, DAXHEAP_READ_ONLY, out) == DAXHEAP_OK) {
        *readonly = 1;
        return SQLITE_OK;
    }
    /* SQLite's error log keeps about 200 bytes of a message: what matters comes first. */
    if (rc == DAXHEAP_EBUSY) {
        return dxh_error(SQLITE_BUSY, "daxheap: the heap %s is in use by another process, which holds its lock "
                         "(one process opens a heap at a time): %s", path, first);
    }
    if (rc == DAXHEAP_ENOTHEAP || rc == DAXHEAP_EINVAL) {
        return dxh_error(SQLITE_NOTADB, "daxheap: not a heap (a database is HEAPPATH/NAME): %s", first);
    }
    return dxh_error(dxh_rc_of(rc, SQLITE_CANTOPEN), "daxheap: cannot open the heap: %s", first);
}

/* An open heap by the path it was opened with (no system call: SQLite asks on every
 * transaction whether a hot journal exists), else by device and inode. */
static struct dxh_heap *dxh_heap_find(const char *path, const struct stat *st) {
    for (struct dxh_heap *h = dxh_heaps; h != NULL; h = h->next) {
        if (st == NULL ? strcmp(h->path, path) == 0 : (h->dev == st->st_dev && h->ino == st->st_ino)) {
            h->refs++;
            return h;
        }
    }
    return NULL;
}

/* Makes `h` (its heap and path set) the table's entry for the file `st` describes, with one
 * reference. dxh_heaps_mutex held. */
static void dxh_heap_link(struct dxh_heap *h, const struct stat *st) {
    h->dev = st->st_dev;
    h->ino = st->st_ino;
    h->refs = 1;
    pthread_mutex_init(&h->mutex, NULL);
    h->next = dxh_heaps;
    dxh_heaps = h;
}

int dxh_heap_acquire(const char *path, struct dxh_heap **out) {
    pthread_mutex_lock(&dxh_heaps_mutex);
    *out = dxh_heap_find(path, NULL);
    pthread_mutex_unlock(&dxh_heaps_mutex);
    if (*out != NULL) {
        return SQLITE_OK;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        return dxh_error(SQLITE_CANTOPEN, "daxheap: no heap at %s (%s); make one with `daxheap create %s --size 64M`",
                         path, strerror(errno), path);
    }
    if (S_ISDIR(st.st_mode)) {
        return dxh_error(SQLITE_CANTOPEN,
                         "daxheap: %s is a directory, not a heap; a database is HEAPPATH/NAME (a heap file or "
                         "device, then a name)", path);
    }
    pthread_mutex_lock(&dxh_heaps_mutex);
    *out = dxh_heap_find(path, &st);
    if (*out != NULL) {
        pthread_mutex_unlock(&dxh_heaps_mutex);
        return SQLITE_OK;
    }
    struct dxh_heap *h = calloc(1, sizeof *h);
    char *copy = strdup(path);
    int rc = (h == NULL || copy == NULL) ? SQLITE_NOMEM : dxh_heap_open(path, &h->heap, &h->readonly);
    if (rc != SQLITE_OK) {
        pthread_mutex_unlock(&dxh_heaps_mutex);
        free(copy);
        free(h);
        return rc;
    }
    h->path = copy;
    dxh_heap_link(h, &st);
    pthread_mutex_unlock(&dxh_heaps_mutex);
    *out = h;
    return SQLITE_OK;
}

/* The last file closed: windows, then the heap, so another process may open it. All under
 * dxh_heaps_mutex: a thread opening the same heap meanwhile must not find it still locked. */
void dxh_heap_release(struct dxh_heap *heap) {
    pthread_mutex_lock(&dxh_heaps_mutex);
    if (--heap->refs > 0) {
        pthread_mutex_unlock(&dxh_heaps_mutex);
        return;
    }
    for (struct dxh_heap **link = &dxh_heaps; *link != NULL; link = &(*link)->next) {
        if (*link == heap) {
            *link = heap->next;
            break;
        }
    }
    struct dxh_node *node = heap->nodes;
    while (node != NULL) {
        struct dxh_node *next = node->next;
        daxheap_window_close(node->window);
        if (node->shm != NULL) {
            dxh_shm_free(node->shm);
        }
        pthread_mutex_destroy(&node->mutex);
        free(node);
        node = next;
    }
    daxheap_close(heap->heap);
    pthread_mutex_unlock(&dxh_heaps_mutex);
    pthread_mutex_destroy(&heap->mutex);
    free(heap->path);
    free(heap);
}

/* ---- Nodes -------------------------------------------------------------------------------- */

struct dxh_node *dxh_node_find(struct dxh_heap *heap, const char *name) {
    pthread_mutex_lock(&heap->mutex);
    struct dxh_node *node = heap->nodes;
    while (node != NULL && strcmp(node->name, name) != 0) {
        node = node->next;
    }
    pthread_mutex_unlock(&heap->mutex);
    return node;
}

/* Reads a file's state from its header: 0 for a header of zeros (an arena created, then a
 * crash before its header was written, or one made empty); an error for someone else's arena. */
static int dxh_header_state(const unsigned char *header, struct dxh_heap *heap, const char *name, uint64_t *state) {
    static const unsigned char zeros[DXH_STATE_OFFSET + 8];
    uint32_t version;
    memcpy(&version, header + DXH_VERSION_OFFSET, sizeof version);
    if (memcmp(header + DXH_MAGIC_OFFSET, DXH_MAGIC, 8) == 0 && version == DXH_VERSION) {
        memcpy(state, header + DXH_STATE_OFFSET, sizeof *state);
        return SQLITE_OK;
    }
    if (memcmp(header, zeros, sizeof zeros) == 0) {
        *state = 0;
        return SQLITE_OK;
    }
    return dxh_error(SQLITE_NOTADB,
                     "daxheap: the arena \"%s\" on %s is not a file of the daxheap SQLite VFS (no " DXH_MAGIC
                     " header of version %u); choose another name", name, heap->path, DXH_VERSION);
}

/* Maps the arena, checks or writes its header, and makes its node (heap->mutex held). */
static int dxh_node_make(struct dxh_heap *heap, const char *name, struct dxh_node **out) {
    daxheap_window *window;
    int rc = daxheap_window_open(heap->heap, name, &window);
    if (rc != DAXHEAP_OK) {
        return dxh_error(dxh_rc_of(rc, SQLITE_CANTOPEN), "daxheap: cannot map the arena \"%s\" of %s: %s", name,
                         heap->path, daxheap_errmsg());
    }
    unsigned char *base = daxheap_window_base(window);
    uint64_t state;
    rc = dxh_header_state(base, heap, name, &state);
    /* Reads trust the logical size: one past the arena would read past the window. */
    uint64_t mapped = daxheap_window_size(window);
    uint64_t room = mapped > DXH_HEADER_SIZE ? mapped - DXH_HEADER_SIZE : 0;
    if (rc == SQLITE_OK && state != 0 && (state & DXH_EXISTS) == 0) {
        rc = dxh_error(SQLITE_CORRUPT,
                       "daxheap: the file \"%s\" on %s has a damaged header (state word 0x%llx has no exists bit); "
                       "restore it from a copy",
                       name, heap->path, (unsigned long long)state);
    } else if (rc == SQLITE_OK && (state & DXH_SIZE_MASK) > room) {
        rc = dxh_error(SQLITE_CORRUPT,
                       "daxheap: the file \"%s\" on %s says it holds %llu bytes, more than its arena's %llu "
                       "(its header is damaged); restore it from a copy",
                       name, heap->path, (unsigned long long)(state & DXH_SIZE_MASK), (unsigned long long)room);
    }
    if (rc == SQLITE_OK && state == 0 && !heap->readonly && memcmp(base, DXH_MAGIC, 8) != 0) {
        uint32_t version = DXH_VERSION;
        memcpy(base + DXH_VERSION_OFFSET, &version, sizeof version);
        memcpy(base + DXH_MAGIC_OFFSET, DXH_MAGIC, 8);
        if (daxheap_window_persist(window, 0, DXH_STATE_OFFSET + 8) != DAXHEAP_OK) {
            rc = dxh_error(SQLITE_IOERR_WRITE, "daxheap: cannot write the header of \"%s\": %s", name,
                           daxheap_errmsg());
        }
    }
    struct dxh_node *node = rc == SQLITE_OK ? calloc(1, sizeof *node) : NULL;
    if (node == NULL) {
        daxheap_window_close(window);
        return rc == SQLITE_OK ? SQLITE_NOMEM : rc;
    }
    node->heap = heap;
    snprintf(node->name, sizeof node->name, "%s", name);
    node->window = window;
    node->base = base;
    node->capacity = daxheap_window_size(window);
    node->state = state;
    node->persisted = state;
    pthread_mutex_init(&node->mutex, NULL);
    node->next = heap->nodes;
    heap->nodes = node;
    *out = node;
    return SQLITE_OK;
}

int dxh_node_get(struct dxh_heap *heap, const char *name, int create, struct dxh_node **out) {
    pthread_mutex_lock(&heap->mutex);
    for (struct dxh_node *node = heap->nodes; node != NULL; node = node->next) {
        if (strcmp(node->name, name) == 0) {
            pthread_mutex_unlock(&heap->mutex);
            *out = node;
            return SQLITE_OK;
        }
    }
    uint64_t size;
    int rc = daxheap_arena_size(heap->heap, name, &size);
    if (rc == DAXHEAP_ENOENT && !create) {
        rc = dxh_error(heap->readonly ? SQLITE_READONLY : SQLITE_CANTOPEN,
                       "daxheap: no database file \"%s\" on %s%s", name, heap->path,
                       heap->readonly ? " (the heap is open read-only: nothing can be created)" : "");
    } else if (rc == DAXHEAP_ENOENT) {
        rc = daxheap_arena_create(heap->heap, name, DXH_ARENA_UNIT);
        rc = rc == DAXHEAP_OK ? SQLITE_OK
                              : dxh_error(dxh_rc_of(rc, SQLITE_CANTOPEN), "daxheap: cannot create \"%s\" on %s: %s",
                                          name, heap->path, daxheap_errmsg());
    } else if (rc != DAXHEAP_OK) {
        rc = dxh_error(dxh_rc_of(rc, SQLITE_CANTOPEN), "daxheap: cannot look up \"%s\" on %s: %s", name,
                       heap->path, daxheap_errmsg());
    }
    if (rc == SQLITE_OK) {
        rc = dxh_node_make(heap, name, out);
    }
    pthread_mutex_unlock(&heap->mutex);
    return rc;
}

/* Grows the arena so that file bytes [0, end) fit: by at least its size (up to
 * DXH_GROW_STEP_MAX), or just enough when the heap has no more. SQLITE_FULL changes nothing. */
int dxh_node_reserve(struct dxh_node *node, uint64_t end) {
    uint64_t need = DXH_HEADER_SIZE + end;
    if (need <= __atomic_load_n(&node->capacity, __ATOMIC_ACQUIRE)) {
        return SQLITE_OK;
    }
    pthread_mutex_lock(&node->mutex);
    uint64_t capacity = node->capacity;
    int rc = DAXHEAP_OK;
    if (need > capacity) {
        uint64_t step = capacity < DXH_GROW_STEP_MAX ? capacity : DXH_GROW_STEP_MAX;
        uint64_t exact = (need + DXH_ARENA_UNIT - 1) / DXH_ARENA_UNIT * DXH_ARENA_UNIT;
        uint64_t ample = (capacity + step) > exact ? (capacity + step) : exact;
        rc = daxheap_arena_resize(node->heap->heap, node->name, ample);
        if (rc == DAXHEAP_ENOSPC && ample > exact) {
            rc = daxheap_arena_resize(node->heap->heap, node->name, exact);
        }
        if (rc == DAXHEAP_OK) {
            __atomic_store_n(&node->capacity, daxheap_window_size(node->window), __ATOMIC_RELEASE);
        }
    }
    pthread_mutex_unlock(&node->mutex);
    if (rc == DAXHEAP_ENOSPC) {
        return dxh_error(SQLITE_FULL, "daxheap: the heap %s is full: \"%s\" needs %llu bytes, %llu are free: %s",
                         node->heap->path, node->name, (unsigned long long)(need - capacity),
                         (unsigned long long)daxheap_available_size(node->heap->heap), daxheap_errmsg());
    }
    if (rc != DAXHEAP_OK) {
        return dxh_error(dxh_rc_of(rc, SQLITE_IOERR_WRITE), "daxheap: cannot grow \"%s\" on %s: %s", node->name,
                         node->heap->path, daxheap_errmsg());
    }
    return SQLITE_OK;
}

/* ---- The state word: written to the media only here ------------------------------------- */

/* Drains the file's flushed writes, then makes the state word durable if it changed: the
 * bytes below a size are durable before the size is (node->mutex held). */
static int dxh_node_persist_locked(struct dxh_node *node) {
    daxheap_window_drain(node->window);
    uint64_t state = __atomic_load_n(&node->state, __ATOMIC_ACQUIRE);
    if (state == node->persisted) {
        return SQLITE_OK;
    }
    __atomic_store_n((uint64_t *)(node->base + DXH_STATE_OFFSET), state, __ATOMIC_RELEASE);
    if (daxheap_window_flush(node->window, DXH_STATE_OFFSET, sizeof state) != DAXHEAP_OK) {
        return dxh_error(SQLITE_IOERR_FSYNC, "daxheap: cannot flush the size of \"%s\": %s", node->name,
                         daxheap_errmsg());
    }
    daxheap_window_drain(node->window);
    node->persisted = state;
    return SQLITE_OK;
}

int dxh_node_sync(struct dxh_node *node) {
    pthread_mutex_lock(&node->mutex);
    int rc = dxh_node_persist_locked(node);
    pthread_mutex_unlock(&node->mutex);
    return rc;
}

int dxh_node_set_state(struct dxh_node *node, uint64_t state) {
    pthread_mutex_lock(&node->mutex);
    __atomic_store_n(&node->state, state, __ATOMIC_RELEASE);
    int rc = dxh_node_persist_locked(node);
    pthread_mutex_unlock(&node->mutex);
    return rc;
}

/* The state of an arena this process has no node for, through the copying calls. */
int dxh_arena_peek_state(struct dxh_heap *heap, const char *name, uint64_t *state) {
    unsigned char header[DXH_STATE_OFFSET + 8];
    int rc = daxheap_read(heap->heap, name, 0, header, sizeof header);
    if (rc == DAXHEAP_ENOENT) {
        *state = 0;
        return SQLITE_OK;
    }
    if (rc != DAXHEAP_OK) {
        return dxh_error(SQLITE_IOERR_READ, "daxheap: cannot read the header of \"%s\": %s", name, daxheap_errmsg());
    }
    return dxh_header_state(header, heap, name, state);
}

int dxh_arena_poke_state(struct dxh_heap *heap, const char *name, uint64_t state) {
    int rc = daxheap_write(heap->heap, name, DXH_STATE_OFFSET, &state, sizeof state);
    if (rc != DAXHEAP_OK) {
        return dxh_error(SQLITE_IOERR_DELETE, "daxheap: cannot write the header of \"%s\": %s", name,
                         daxheap_errmsg());
    }
    return SQLITE_OK;
}

#ifdef DXH_TESTING
#include "include/dxh_testing.h"

/* The package's power-loss tests only (src/include/dxh_testing.h): a heap the test opened
 * with a simulator stands in for the one this process would open at `path`. */
int dxh_testing_adopt_heap(const char *path, daxheap *heap) {
    struct stat st;
    if (stat(path, &st) != 0) {
        return SQLITE_CANTOPEN;
    }
    pthread_mutex_lock(&dxh_heaps_mutex);
    struct dxh_heap *h = dxh_heap_find(path, &st);
    if (h != NULL) {
        h->refs--;
        pthread_mutex_unlock(&dxh_heaps_mutex);
        return SQLITE_BUSY;
    }
    h = calloc(1, sizeof *h);
    if (h == NULL || (h->path = strdup(path)) == NULL) {
        pthread_mutex_unlock(&dxh_heaps_mutex);
        free(h);
        return SQLITE_NOMEM;
    }
    h->heap = heap;
    dxh_heap_link(h, &st);
    pthread_mutex_unlock(&dxh_heaps_mutex);
    return SQLITE_OK;
}

void dxh_testing_release(const char *path) {
    pthread_mutex_lock(&dxh_heaps_mutex);
    struct dxh_heap *h = dxh_heap_find(path, NULL);
    pthread_mutex_unlock(&dxh_heaps_mutex);
    if (h != NULL) {
        dxh_heap_release(h); /* the reference find took */
        dxh_heap_release(h); /* the adoption's */
    }
}
#endif
