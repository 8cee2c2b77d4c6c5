/* The daxheap SQLite VFS: declarations shared by its files (private to the extension).
 *
 *   vfs.c    the sqlite3_vfs methods, database names, errors, the extension's entry point
 *   heaps.c  the process's table of open heaps and of the arenas used as files (nodes)
 *   file.c   the sqlite3_io_methods: read, write, sync, truncate, size, locks
 *   shm.c    WAL's shared-memory index, in process memory
 *
 * The layout of a file's arena and the reasons behind each choice are in ../README.md. */
#ifndef DXH_H
#define DXH_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include <daxheap.h>
#include <sqlite3ext.h>

/* ---- On the media: a file's arena ------------------------------------------------------
 * [0, DXH_HEADER_SIZE)  header, written by this VFS only
 * [DXH_HEADER_SIZE, arena size)  the file's bytes: file offset o is arena offset
 *                       DXH_HEADER_SIZE + o; bytes at and past the logical size are garbage
 *                       and never read back. */
#define DXH_HEADER_SIZE    4096u          /* keeps file offsets page aligned in the arena */
#define DXH_MAGIC_OFFSET   0u             /* 8 bytes: DXH_MAGIC */
#define DXH_VERSION_OFFSET 8u             /* u32: DXH_VERSION; u32 at 12 reserved (zero) */
#define DXH_STATE_OFFSET   16u            /* u64: 0 = no file; else DXH_EXISTS | logical size */
#define DXH_MAGIC          "DXHSQLF"      /* with its NUL: 8 bytes */
#define DXH_VERSION        1u
#define DXH_EXISTS         (UINT64_C(1) << 63)
#define DXH_SIZE_MASK      (DXH_EXISTS - 1)

/* Arenas come in multiples of 2 MiB; a file's arena grows by at least that, by its own size
 * up to DXH_GROW_STEP_MAX at a time, so a growing file costs few metadata updates. */
#define DXH_ARENA_UNIT     (UINT64_C(2) << 20)
#define DXH_GROW_STEP_MAX  (UINT64_C(64) << 20)

#define DXH_VFS_NAME       "daxheap"
#define DXH_MAX_PATH       1024
#define DXH_ARENA_NAME_MAX 63             /* the heap's limit on arena names, in bytes */
#define DXH_JOURNAL_SUFFIX_MAX 8          /* "-journal"; "-wal" is shorter */

/* ---- WAL's shared-memory index ----------------------------------------------------------- */
struct dxh_shm {
    int refs;                             /* connections that mapped it */
    int nregion;
    char **regions;                       /* each szRegion bytes, zeroed at creation */
    int shared[SQLITE_SHM_NLOCK];         /* holders of each lock slot in shared mode */
    int exclusive[SQLITE_SHM_NLOCK];      /* 1: held exclusively */
};

/* ---- A node: one arena used as a file, shared by every connection of the process -------- */
struct dxh_heap;
struct dxh_node {
    struct dxh_heap *heap;
    struct dxh_node *next;
    char name[DXH_ARENA_NAME_MAX + 1];
    daxheap_window *window;               /* open while the heap is */
    unsigned char *base;
    uint64_t capacity;                    /* arena bytes (window size); atomic */
    uint64_t state;                       /* current DXH_EXISTS | size, or 0; atomic */
    uint64_t persisted;                   /* the state word last made durable; under mutex */
    pthread_mutex_t mutex;                /* grows, persisting the state, locks, shm */
    int lock;                             /* the highest SQLite lock any connection holds */
    int nshared;                          /* connections holding SHARED or more */
    struct dxh_shm *shm;
};

/* ---- A heap opened by this process, shared by all its databases ------------------------- */
struct dxh_heap {
    struct dxh_heap *next;
    dev_t dev;
    ino_t ino;
    char *path;
    daxheap *heap;
    int readonly;                         /* opened with DAXHEAP_READ_ONLY */
    int refs;                             /* open files and calls in flight; under dxh_heaps_mutex */
    pthread_mutex_t mutex;                /* the node list */
    struct dxh_node *nodes;
};

/* ---- An open file ------------------------------------------------------------------------- */
struct dxh_file {
    sqlite3_file base;                    /* pMethods: ours (a temp file is the default VFS's) */
    struct dxh_node *node;
    int lock;                             /* this connection's SQLite lock level */
    int readonly;
    int delete_on_close;
    int shm_mapped;
    uint16_t shm_shared;                  /* lock slots this connection holds */
    uint16_t shm_exclusive;
    sqlite3_int64 mmap_limit;             /* PRAGMA mmap_size: xFetch serves bytes below it */
};

/* vfs.c */
extern sqlite3_vfs *dxh_default_vfs;
int dxh_error(int rc, const char *format, ...) __attribute__((format(printf, 2, 3)));
int dxh_split_name(const char *path, char *heappath, size_t cap, const char **arena);

/* heaps.c */
int dxh_heap_acquire(const char *heappath, struct dxh_heap **out);
void dxh_heap_release(struct dxh_heap *heap);
int dxh_node_get(struct dxh_heap *heap, const char *name, int create, struct dxh_node **out);
struct dxh_node *dxh_node_find(struct dxh_heap *heap, const char *name);
int dxh_node_reserve(struct dxh_node *node, uint64_t end);
int dxh_node_sync(struct dxh_node *node);
int dxh_node_set_state(struct dxh_node *node, uint64_t state);
int dxh_arena_peek_state(struct dxh_heap *heap, const char *name, uint64_t *state);
int dxh_arena_poke_state(struct dxh_heap *heap, const char *name, uint64_t state);
int dxh_rc_of(int daxheap_rc, int fallback);

/* file.c */
extern const sqlite3_io_methods dxh_io_methods;

/* shm.c */
int dxh_shm_map(sqlite3_file *file, int region, int size, int extend, void volatile **out);
int dxh_shm_lock(sqlite3_file *file, int offset, int n, int flags);
void dxh_shm_barrier(sqlite3_file *file);
int dxh_shm_unmap(sqlite3_file *file, int delete_flag);
void dxh_shm_free(struct dxh_shm *shm);

#endif
