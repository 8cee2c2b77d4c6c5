/* daxheap.h: the C API of DaxHeap (libdaxheap.so).
 *
 * A device-dax (/dev/daxX.Y), or a regular file emulating one, as a persistent heap of
 * named, resizable arenas. This header is the one definition of the API: the library is
 * written in Swift and the compiler checks every exported function against the
 * declarations below (`@c @implementation`). docs/C-API.md describes the ABI as a whole;
 * samples/c is a complete program.
 *
 * Build:  cc app.c $(pkg-config --cflags --libs daxheap)
 *
 * Conventions, for every function below:
 *
 * - Status. Functions returning int return DAXHEAP_OK (0) on success or a negative
 *   `enum daxheap_status` on failure. A failure sets the calling thread's one-line message
 *   (daxheap_errmsg), which says what is wrong and what would help.
 * - Nothing aborts. A NULL handle, name or out pointer, a name that is not UTF-8, a size or
 *   an offset + length that overflows: each is an error code, never a crash. (A pointer to
 *   too little memory, or a handle used after it was closed, cannot be detected: see
 *   "Handles" below.)
 * - A failed call changes nothing: no arena, no byte, no slot or object, no out parameter
 *   (`*out` and `*size` are written only on success). The exceptions: msync failing in
 *   the middle of a write on a file that is not persistent memory (DAXHEAP_EIO, see
 *   daxheap_write), and a media error met by daxheap_read, which leaves part of `dst`
 *   filled.
 * - Names are NUL-terminated UTF-8, 1 to 63 bytes, without control characters.
 * - Sizes are in bytes. Arena sizes are positive multiples of 2 MiB (2097152).
 * - Threads. Every function may be called from several threads at once, on the same handle
 *   or on different ones, except that a handle must not be closed while another thread is
 *   still using it (as with free), and that a context of the object layer serves one
 *   thread at a time (a second thread gets DAXHEAP_EBUSY). Provisioning calls (create,
 *   resize, destroy an arena) are serialized inside the library; reads, writes and window
 *   accesses run concurrently with them. Coordinating writers of the same bytes is the
 *   application's business.
 *
 * Handles:
 *
 * - `daxheap *` is an open heap, from daxheap_create or daxheap_open, released with
 *   daxheap_close. A read-write open holds an exclusive lock on the device (a second
 *   process gets DAXHEAP_EBUSY); a read-only open takes a shared lock.
 * - `daxheap_window *` is an arena mapped as one contiguous range of addresses, from
 *   daxheap_window_open, released with daxheap_window_close. An open window keeps its heap
 *   mapped, even after daxheap_close of the heap.
 * - `daxheap_objects *`, `daxheap_objctx *` and `daxheap_tx *`: the object layer, see
 *   "Objects" below.
 * - Using a handle after its close is undefined behaviour, as using memory after free is:
 *   the handle's memory is gone. Closing a handle twice is undefined too.
 *
 * Status codes: how the Swift library's errors (HeapError, ObjectError) map to them is
 * listed in docs/C-API.md. */
#ifndef DAXHEAP_H
#define DAXHEAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An open heap (opaque). */
typedef struct daxheap daxheap;
/* An arena mapped as one contiguous range of addresses (opaque). */
typedef struct daxheap_window daxheap_window;

/* Flags for daxheap_open. */
#define DAXHEAP_READ_ONLY 1  /* map read-only, take a shared lock, never write */

/* Return codes: 0 is success; every failure is negative and sets the calling thread's
 * one-line message (daxheap_errmsg). One code per kind of failure the Swift API tells apart. */
enum daxheap_status {
    DAXHEAP_OK        = 0,
    DAXHEAP_EINVAL    = -1,   /* a bad argument: NULL, a bad name, a size not a multiple of 2 MiB, unknown flags,
                                 a path that is a directory or not a device-dax or regular file, ... */
    DAXHEAP_ENOSPC    = -2,   /* not enough free space in the heap (or the arena table is full); objects: no room
                                 for the object, all roots taken, a transaction's log full */
    DAXHEAP_EEXIST    = -3,   /* an arena of that name exists; or daxheap_create found data it refuses to overwrite;
                                 or allocation into a slot that holds a reference */
    DAXHEAP_ENOENT    = -4,   /* no such arena, or no such file */
    DAXHEAP_EBUSY     = -5,   /* in use: another process holds the heap, or an arena is mapped by windows; objects:
                                 open already, contexts open, every lane taken, a context in use */
    DAXHEAP_ECORRUPT  = -6,   /* both metadata copies bad, or a re-created device */
    DAXHEAP_ENOTHEAP  = -7,   /* the path holds no DaxHeap (or an unsupported version); or the arena no object heap */
    DAXHEAP_ESIZE     = -8,   /* device size does not match the heap's metadata */
    DAXHEAP_ERANGE    = -9,   /* offset/length outside an arena or a window, or past a reservation */
    DAXHEAP_EROFS     = -10,  /* a write to a heap opened read-only */
    DAXHEAP_EIO       = -11,  /* an I/O error, a media error (poison), a failed metadata write */
    DAXHEAP_ECLOSED   = -12,  /* the heap or window was closed (from Swift, for a heap handed to C) */
    DAXHEAP_ENOTSUP   = -13   /* the device cannot do this (e.g. its alignment forbids a window); an arena id
                                 too large for object references */
};

/* ---- The heap ---------------------------------------------------------------------- */

/* Creates a heap on `path` and opens it read-write.
 *
 * `path` is a device-dax (/dev/daxX.Y) or a regular file. A file that does not exist is
 * created sparse with `size` bytes (a multiple of 2 MiB, at least 6 MiB); an existing empty
 * file is sized to `size`. `size` 0 means the device's own size: right for a device-dax, an
 * error (DAXHEAP_EINVAL) for a file that does not exist yet. A device or file that already
 * holds data is refused (DAXHEAP_EEXIST): nothing is overwritten.
 *
 * On success stores a new handle in `*out` (release it with daxheap_close) and returns
 * DAXHEAP_OK. Errors: DAXHEAP_EINVAL (NULL path or out, a bad size, a directory, not a
 * device-dax), DAXHEAP_EEXIST, DAXHEAP_EBUSY (another process has it open), DAXHEAP_EIO. */
int  daxheap_create(const char *path, uint64_t size, daxheap **out);

/* Opens an existing heap; `flags` is 0 (read-write) or DAXHEAP_READ_ONLY.
 *
 * Both metadata copies are read and validated; read-write, a damaged or stale copy is
 * rewritten from the good one. A read-write open holds an exclusive lock until the heap
 * is closed: another process's read-write or read-only open gets DAXHEAP_EBUSY, and the
 * same path opened twice in one process gets DAXHEAP_EBUSY too (share one handle instead).
 *
 * On success stores a new handle in `*out` (release it with daxheap_close). Errors:
 * DAXHEAP_EINVAL (NULL path or out, unknown flags), DAXHEAP_ENOENT (no such file),
 * DAXHEAP_EBUSY, DAXHEAP_ENOTHEAP, DAXHEAP_ECORRUPT, DAXHEAP_ESIZE (the device was cut
 * short, or grew and the heap was not grown: open it read-only), DAXHEAP_EIO. */
int  daxheap_open(const char *path, int flags, daxheap **out);

/* Releases the handle. When none of the heap's windows is open, the heap is unmapped and
 * its lock dropped before this returns, so the path can be opened again at once. Otherwise
 * the open windows keep it mapped, and it closes when the last of them is closed
 * (daxheap_window_close). Either way `heap` is invalid afterwards. NULL does nothing.
 * Must not run while another thread is still using `heap`. */
void daxheap_close(daxheap *heap);

/* The calling thread's last error: one line, NUL-terminated, UTF-8, never NULL ("" when
 * this thread has had no error). Owned by the library; valid until this thread's next call
 * into the library. Successful calls leave it as it was. */
const char *daxheap_errmsg(void);

/* Bytes not allocated to any arena (the largest arena that could still be created, or
 * by which arenas can grow together). 0 for a NULL heap. */
uint64_t daxheap_available_size(daxheap *heap);

/* Bytes the heap can give to arenas: the device less its two 2 MiB metadata blocks.
 * 0 for a NULL heap. */
uint64_t daxheap_usable_size(daxheap *heap);

/* 1 when durability uses libpmem's CPU cache flushes (a device-dax, or a file libpmem
 * treats as persistent memory); 0 when it uses msync (a file on an ordinary file system)
 * or is simulated (a heap handed over from a Swift power-loss test). DAXHEAP_EINVAL for a
 * NULL heap. Informational: the library's own flush and persist calls do the right thing
 * in every mode. */
int  daxheap_is_pmem(daxheap *heap);

/* ---- Arenas, by name --------------------------------------------------------------- */

/* Creates the arena `name` of `size` bytes (a positive multiple of 2 MiB), reading as
 * zeros. Durable on return (both metadata copies written). Errors: DAXHEAP_EINVAL (bad
 * name or size), DAXHEAP_EEXIST (the name is taken), DAXHEAP_ENOSPC, DAXHEAP_EROFS,
 * DAXHEAP_EIO. */
int  daxheap_arena_create(daxheap *heap, const char *name, uint64_t size);

/* Grows or shrinks the arena `name` to `size` bytes (a positive multiple of 2 MiB). A grow
 * keeps every byte and adds zeros at the end, and maps the new bytes into the arena's open
 * windows; a shrink drops the end. Durable on return. Errors: DAXHEAP_EINVAL,
 * DAXHEAP_ENOENT, DAXHEAP_ENOSPC, DAXHEAP_EBUSY (a shrink of an arena with open windows),
 * DAXHEAP_ERANGE (a grow past an open window's reservation), DAXHEAP_EROFS, DAXHEAP_EIO. */
int  daxheap_arena_resize(daxheap *heap, const char *name, uint64_t size);

/* Destroys the arena `name`, freeing its space. Durable on return. Errors: DAXHEAP_EINVAL,
 * DAXHEAP_ENOENT, DAXHEAP_EBUSY (it has open windows), DAXHEAP_EROFS, DAXHEAP_EIO. */
int  daxheap_arena_destroy(daxheap *heap, const char *name);

/* Stores the size in bytes of the arena `name` in `*size`. Errors: DAXHEAP_EINVAL (NULL
 * heap, name or size), DAXHEAP_ENOENT if there is no such arena. */
int  daxheap_arena_size(daxheap *heap, const char *name, uint64_t *size); /* DAXHEAP_ENOENT if missing */

/* Called by daxheap_arena_list for each arena: `name` (NUL-terminated, valid during the
 * call only) and its size in bytes. Return 0 to go on, nonzero to stop the walk. */
typedef int (*daxheap_arena_visitor)(void *arg, const char *name, uint64_t size);

/* Calls `visit(arg, name, size)` for every arena of the heap, in name order, as the arena
 * table stood at the call (the visitor may create, resize or destroy arenas: the walk does
 * not see those changes). Returns 0 once every arena is visited, or the visitor's nonzero
 * return as it is (a positive value of the caller's own, or a daxheap status passed on).
 * Errors: DAXHEAP_EINVAL (NULL heap or visitor). */
int  daxheap_arena_list(daxheap *heap, daxheap_arena_visitor visit, void *arg);

/* Copies `length` bytes from `src` to the arena `arena` at `offset`, across its extents,
 * and makes them durable before returning (libpmem's memcpy_persist; msync on a file).
 * `src` may be NULL only when `length` is 0. The range is checked first: an error before
 * the copy writes nothing. Only on a file that is not persistent memory can msync fail
 * midway (DAXHEAP_EIO): the extent pieces before the failing one are then written and
 * durable, that piece written but not known durable, the rest untouched. Errors:
 * DAXHEAP_EINVAL, DAXHEAP_ENOENT, DAXHEAP_ERANGE (past the arena's size, or
 * offset + length overflows), DAXHEAP_EROFS, DAXHEAP_EIO. */
int  daxheap_write(daxheap *heap, const char *arena, uint64_t offset, const void *src, uint64_t length); /* durable on return */

/* Copies `length` bytes of the arena `arena` from `offset` into `dst`, across its
 * extents. `dst` may be NULL only when `length` is 0. A media error (poison on a
 * device-dax) is returned as DAXHEAP_EIO naming the arena offset, with `dst` holding
 * partial data, instead of killing the process. Errors: DAXHEAP_EINVAL, DAXHEAP_ENOENT,
 * DAXHEAP_ERANGE, DAXHEAP_EIO. */
int  daxheap_read(daxheap *heap, const char *arena, uint64_t offset, void *dst, uint64_t length);

/* ---- Windows: an arena mapped as one contiguous, stable range ---------------------- */

/* Maps the arena `arena` as one contiguous range of addresses, however many extents it
 * spans, reserving the heap's usable size of address space (address space only: no
 * memory, no swap) so that any grow of the arena fits. See
 * daxheap_window_open_reserving. */
int  daxheap_window_open(daxheap *heap, const char *arena, daxheap_window **out);  /* reserves the heap's usable size */

/* Maps the arena `arena` as one contiguous range of addresses, reserving `reservation`
 * bytes of address space (a multiple of 2 MiB, at least the arena's size): the most the
 * arena can grow to while this window is open.
 *
 * The base address never moves while the window is open. A grow of the arena (from any
 * thread) maps the new bytes at base + old size before it returns; a grow past the
 * reservation is refused (DAXHEAP_ERANGE). A shrink or destroy of the arena is refused
 * (DAXHEAP_EBUSY) until its windows are closed. Stores through the window are not durable
 * until flushed and drained (daxheap_window_persist). On a read-only heap the window is
 * mapped read-only: a store through it faults (SIGSEGV).
 *
 * On success stores a new handle in `*out`; release it with daxheap_window_close. The
 * window keeps its heap mapped until then, even past daxheap_close. Errors:
 * DAXHEAP_EINVAL (a bad reservation), DAXHEAP_ENOENT, DAXHEAP_ENOTSUP (the device's
 * alignment is coarser than the arena's extents), DAXHEAP_EIO (mmap failed). */
int  daxheap_window_open_reserving(daxheap *heap, const char *arena, uint64_t reservation, daxheap_window **out);

/* The address of the arena's byte 0; fixed until daxheap_window_close. Addresses from
 * base to base + daxheap_window_size are valid until then; they are not persistent
 * (store offsets in persistent data, not addresses). NULL for a NULL window. */
void *daxheap_window_base(const daxheap_window *window);

/* Bytes mapped from the base: the arena's current size, which follows grows of the arena
 * (read it again after a grow, from any thread). 0 for a NULL window. */
uint64_t daxheap_window_size(const daxheap_window *window);             /* follows grows of the arena */

/* Flushes bytes [offset, offset + length) of the window from the CPU caches, without
 * waiting (libpmem's pmem_flush; msync of their pages on a file). Follow a batch of
 * flushes with one daxheap_window_drain. Length 0 does nothing. Errors: DAXHEAP_EINVAL
 * (NULL window), DAXHEAP_ERANGE (past the window's size, or overflowing), DAXHEAP_EIO
 * (msync failed, on a file). */
int  daxheap_window_flush(daxheap_window *window, uint64_t offset, uint64_t length);   /* no fence */

/* Waits until earlier flushes (of any window or arena of the calling thread) are durable:
 * the fence (pmem_drain). NULL does nothing. */
void daxheap_window_drain(daxheap_window *window);                      /* fence: earlier flushes durable */

/* Flushes and drains [offset, offset + length): those bytes are durable on return.
 * Errors as daxheap_window_flush. */
int  daxheap_window_persist(daxheap_window *window, uint64_t offset, uint64_t length);  /* flush + drain */

/* Copies `length` bytes from `src` to the window at `offset` and makes them durable
 * (pmem_memcpy_persist; msync on a file). `src` may be NULL only when `length` is 0.
 * Errors: DAXHEAP_EINVAL, DAXHEAP_ERANGE (nothing written), DAXHEAP_EROFS (a read-only
 * heap, nothing written), DAXHEAP_EIO (msync failed: written, not known durable). */
int  daxheap_window_memcpy_persist(daxheap_window *window, uint64_t offset, const void *src, uint64_t length);

/* Copies `length` bytes from `src` to the window at `offset` and flushes them, without the
 * fence (pmem_memcpy_nodrain: non-temporal stores for large copies, no read of the old
 * lines): copy several ranges, then daxheap_window_drain once. Errors as
 * daxheap_window_memcpy_persist. */
int  daxheap_window_memcpy_nodrain(daxheap_window *window, uint64_t offset, const void *src, uint64_t length);

/* Unmaps the window and frees the handle, in every case: `window` is invalid afterwards,
 * and its addresses must no longer be used by any thread (as after munmap). If its heap
 * was released with daxheap_close and this was the heap's last open window, the heap is
 * closed now (unmapped, unlocked). Returns DAXHEAP_OK, DAXHEAP_EINVAL for a NULL window,
 * or the error of that deferred close (the handle is freed all the same). */
int  daxheap_window_close(daxheap_window *window);                      /* frees the handle in every case */

/* ---- Objects: a heap of persistent objects in one arena (docs/OBJECTS.md) ----------
 *
 * An object heap turns one arena into persistent objects: allocation into slots, named
 * roots, reserve/publish, and transactions, rebuilt after a crash by following references
 * from the roots (an object is allocated after a crash if and only if a durable slot
 * reaches it: nothing leaks, nothing is allocated twice). It is the Swift module
 * DaxObjects; docs/OBJECTS.md has its layout and crash argument, docs/C-API.md how the C
 * calls map to it.
 *
 * Places in an object heap are offsets in its arena:
 *
 * - `daxheap_ref` is a reference to an object: one 8-byte word, the arena's id in the high
 *   16 bits and the object's offset in the low 48; 0 (DAXHEAP_NULL_REF) is null. Store it
 *   in persistent data as is: it means the same object in another process.
 * - `daxheap_slot` is the offset of an 8-byte word that holds a reference: a root's word
 *   (daxheap_objects_root), or an aligned word inside a live object of kind
 *   DAXHEAP_KIND_REFERENCES (daxheap_field(object, offsetof(struct ..., field)), or
 *   daxheap_objects_offset_of(objects, &node->field)). Allocation publishes into a slot
 *   and freeing empties one, so an object and the word that reaches it are durable
 *   together. The library checks every slot it is given; a word that is not a slot is
 *   DAXHEAP_EINVAL, and changes nothing.
 *
 * Handles:
 *
 * - `daxheap_objects *` is an open object heap (daxheap_objects_create or _open), shared by
 *   all threads; released with daxheap_objects_close. It maps its arena as a window: it
 *   keeps its heap mapped, like a daxheap_window, even past daxheap_close. One per arena
 *   per process (a second open is DAXHEAP_EBUSY).
 * - `daxheap_objctx *` is a context (daxheap_objctx_open): what allocates, frees and runs
 *   transactions, for one thread at a time (make one per thread: each holds a cache of
 *   free blocks and a lane, the log of its transactions; 64 lanes by default). A context
 *   used by two threads at once, or by its own transaction's body, refuses with
 *   DAXHEAP_EBUSY rather than corrupting anything. Released with daxheap_objctx_close.
 * - `daxheap_tx *` is a running transaction, valid only inside the body given to
 *   daxheap_tx_run, on the thread that runs it.
 *
 * Durability: every call that publishes or empties a slot is durable when it returns (its
 * cost in fences is listed with it). Bytes a program stores through an object's address
 * are durable after daxheap_objects_persist. Isolation: none, as in libpmemobj; serialize
 * changes of the same words from several threads (a lock around them).
 *
 * Status codes of the object layer's errors (ObjectError), beyond the heap's own:
 * DAXHEAP_ENOTHEAP the arena holds no object heap; DAXHEAP_ECORRUPT its metadata is
 * damaged; DAXHEAP_ENOSPC no room for the object (the arena cannot grow), all 64 roots
 * taken, or a transaction too large for its lane's log; DAXHEAP_EINVAL a bad size,
 * alignment, kind, root name, slot, or a reference that names no live object (a double
 * free, a stale or made-up reference, one into another arena); DAXHEAP_EEXIST allocation
 * into a slot that holds a reference already (free it first); DAXHEAP_EBUSY every lane is
 * taken, contexts are still open, the object heap is open already, a context is in use;
 * DAXHEAP_EROFS a heap opened read-only; DAXHEAP_ENOTSUP an arena id above 65535. */

/* An open object heap (opaque). */
typedef struct daxheap_objects daxheap_objects;
/* A context: allocation, freeing and transactions for one thread at a time (opaque). */
typedef struct daxheap_objctx daxheap_objctx;
/* A transaction in progress, inside daxheap_tx_run's body (opaque). */
typedef struct daxheap_tx daxheap_tx;
/* A reference to an object: arena id << 48 | offset; 0 is null. */
typedef uint64_t daxheap_ref;
/* The offset, in the object heap's arena, of an 8-byte word holding a daxheap_ref. */
typedef uint64_t daxheap_slot;

#define DAXHEAP_NULL_REF ((daxheap_ref)0)
/* How many size classes an object heap has (16 bytes to 1 MiB; see docs/OBJECTS.md). */
#define DAXHEAP_CLASS_COUNT 60

/* What an object's words may hold, which decides what recovery reads. */
enum daxheap_kind {
    DAXHEAP_KIND_DATA       = 0,  /* bytes only: never scanned; contents unspecified until written */
    DAXHEAP_KIND_REFERENCES = 1   /* may hold references in its aligned words; zero when allocated */
};

/* What an object heap holds now (daxheap_objects_stats). */
struct daxheap_objects_stats {
    uint64_t objects;             /* live objects (allocated, reserved, or in a running transaction) */
    uint64_t allocated_bytes;     /* their blocks' bytes */
    uint64_t free_bytes;          /* free blocks in carved chunks, plus free chunks */
    uint64_t largest_free_block;  /* the largest object that fits without growing the arena */
    uint64_t arena_size;          /* the arena's size */
};

/* One size class of an object heap (daxheap_objects_class_stats): objects up to 1 MiB
 * are blocks carved from 2 MiB chunks, each chunk holding blocks of one size. */
struct daxheap_class_stats {
    uint64_t block_size;  /* the class's block size in bytes */
    uint64_t chunks;      /* 2 MiB chunks carved into blocks of this size */
    uint64_t objects;     /* live objects in them */
};

/* What opening an object heap found and did (daxheap_objects_recovery). */
struct daxheap_objects_recovery {
    uint64_t live_objects;           /* objects reachable from the roots */
    uint64_t live_bytes;             /* their blocks' bytes */
    uint64_t transactions_replayed;  /* committed but unapplied transactions, applied at open */
    uint64_t torn_logs_discarded;    /* transactions cut short by a crash before their commit */
    uint64_t logs_pending_read_only; /* committed logs left alone because the heap is read-only */
    uint64_t chunks_freed;           /* 2 MiB chunks that held no reachable object */
    double   milliseconds;           /* the recovery's wall-clock time */
};

/* Makes an object heap in a new arena `arena` of `size` bytes (a multiple of 2 MiB; raised
 * to the minimum its metadata needs; the arena grows as objects need more), with 64 lanes
 * and 16 KiB transaction logs. Durable on return. On success stores a new handle in
 * `*out` (release it with daxheap_objects_close). A failure leaves no arena behind.
 * Errors: DAXHEAP_EINVAL (NULL argument, bad name or size), DAXHEAP_EEXIST (the arena
 * exists), DAXHEAP_ENOSPC, DAXHEAP_EROFS, DAXHEAP_ENOTSUP (arena id above 65535),
 * DAXHEAP_EIO. */
int  daxheap_objects_create(daxheap *heap, const char *arena, uint64_t size, daxheap_objects **out);

/* As daxheap_objects_create, with `lanes` (1 to 1024: how many contexts may be open at
 * once) and `log_bytes` (a multiple of 64 from 1024 to 1 MiB: the most one transaction can
 * log). Both are fixed for the object heap's life. DAXHEAP_EINVAL when out of range. */
int  daxheap_objects_create_lanes(daxheap *heap, const char *arena, uint64_t size, uint32_t lanes, uint32_t log_bytes,
                                  daxheap_objects **out);

/* Opens the object heap in arena `arena`: replays a transaction that committed but was
 * not applied, and finds the live objects from the roots (daxheap_objects_recovery says
 * what it did). Works on a heap opened read-only (no context can be opened then). On
 * success stores a new handle in `*out`. Errors: DAXHEAP_EINVAL, DAXHEAP_ENOENT (no such
 * arena), DAXHEAP_ENOTHEAP (the arena holds no object heap), DAXHEAP_ECORRUPT,
 * DAXHEAP_EBUSY (open already in this process: share that handle), DAXHEAP_EIO. */
int  daxheap_objects_open(daxheap *heap, const char *arena, daxheap_objects **out);

/* Unmaps the object heap and frees the handle; its addresses must not be used afterwards
 * (by any thread). Refused with DAXHEAP_EBUSY while contexts of it are open (close them
 * first): nothing changes and the handle stays valid. If its heap was released with
 * daxheap_close and this was the last window or object heap keeping it, the heap is
 * closed now (its error, if any, is returned; the handle is freed all the same).
 * DAXHEAP_EINVAL for NULL. */
int  daxheap_objects_close(daxheap_objects *objects);

/* Stores in `*out` the slot of the root `name` (1 to 48 bytes of UTF-8), making the root
 * (empty: it holds DAXHEAP_NULL_REF) if there is none yet: the fixed entry point from which
 * a program finds its structures again after a reopen. Making one costs two fences; at most
 * 64 roots (then DAXHEAP_ENOSPC). Errors: DAXHEAP_EINVAL (NULL, bad name), DAXHEAP_ENOSPC,
 * DAXHEAP_EROFS (a new root on a read-only heap), DAXHEAP_EIO. */
int  daxheap_objects_root(daxheap_objects *objects, const char *name, daxheap_slot *out);

/* Stores in `*out` the slot of the existing root `name`; DAXHEAP_ENOENT if there is none
 * (nothing is made). Errors: DAXHEAP_EINVAL, DAXHEAP_ENOENT. */
int  daxheap_objects_find_root(daxheap_objects *objects, const char *name, daxheap_slot *out);

/* Called by daxheap_objects_roots for each root: its `name` (NUL-terminated, valid during
 * the call only) and its slot. Return 0 to go on, nonzero to stop the walk. */
typedef int (*daxheap_root_visitor)(void *arg, const char *name, daxheap_slot slot);

/* Calls `visit(arg, name, slot)` for every root, in the order they were made (roots are
 * never removed; one made during the walk may or may not be visited). Returns 0 once every
 * root is visited, or the visitor's nonzero return as it is. Errors: DAXHEAP_EINVAL (NULL
 * object heap or visitor). */
int  daxheap_objects_roots(daxheap_objects *objects, daxheap_root_visitor visit, void *arg);

/* Stores in `*out` the reference `slot` holds (an acquiring load), checked to be null or a
 * live object. Errors: DAXHEAP_EINVAL (NULL, not a slot, or the word names no live
 * object). */
int  daxheap_objects_load(daxheap_objects *objects, daxheap_slot slot, daxheap_ref *out);

/* Stores in `*out` the address of the object's first byte. Valid while the object is live
 * and the object heap open (addresses are not persistent: store references). Errors:
 * DAXHEAP_EINVAL (NULL, or `ref` names no live object of this heap). */
int  daxheap_objects_address(daxheap_objects *objects, daxheap_ref ref, void **out);

/* Stores in `*out` the object's usable size: its block's, at least what was asked for.
 * Errors as daxheap_objects_address. */
int  daxheap_objects_size(daxheap_objects *objects, daxheap_ref ref, uint64_t *out);

/* Stores in `*out` the object's kind (enum daxheap_kind). Errors as daxheap_objects_address. */
int  daxheap_objects_kind(daxheap_objects *objects, daxheap_ref ref, int *out);

/* Stores in `*out` the arena offset of `address`, an address inside the object heap (from
 * daxheap_objects_address, plus a field's offset): what daxheap_alloc and the transaction
 * calls take. Errors: DAXHEAP_EINVAL (NULL), DAXHEAP_ERANGE (not inside the object heap's
 * mapping). */
int  daxheap_objects_offset_of(daxheap_objects *objects, const void *address, uint64_t *out);

/* The slot (arena offset) `field` bytes into `object`: daxheap_field(node, offsetof(struct
 * node, next)). Pure arithmetic; the calls that take the slot check it. */
daxheap_slot daxheap_field(daxheap_ref object, uint64_t field);

/* Makes the `length` bytes at `address` (inside the object heap's mapping) durable: flush
 * and fence (msync on a file). For bytes stored through an object's address. Length 0
 * does nothing. Errors: DAXHEAP_EINVAL (NULL with a length), DAXHEAP_ERANGE (outside the
 * mapping), DAXHEAP_EIO. */
int  daxheap_objects_persist(daxheap_objects *objects, const void *address, uint64_t length);

/* Fills `*out` with what the object heap holds now: a walk over its chunk table (for tools
 * and tests, not hot paths). Errors: DAXHEAP_EINVAL (NULL). */
int  daxheap_objects_stats(daxheap_objects *objects, struct daxheap_objects_stats *out);

/* Fills `out[0]` to `out[capacity - 1]` with the size classes that have chunks now, in
 * increasing block size, and stores in `*count` how many there are (which may exceed
 * `capacity`: call with capacity 0 and out NULL to learn it; DAXHEAP_CLASS_COUNT always
 * suffices). A walk over the chunk table, as daxheap_objects_stats. Errors: DAXHEAP_EINVAL
 * (NULL object heap or count, or NULL out with a capacity). */
int  daxheap_objects_class_stats(daxheap_objects *objects, struct daxheap_class_stats *out, size_t capacity, size_t *count);

/* Fills `*out` with what opening the object heap found and did. Errors: DAXHEAP_EINVAL. */
int  daxheap_objects_recovery(daxheap_objects *objects, struct daxheap_objects_recovery *out);

/* Opens a context on the object heap: it holds one lane until closed. On success stores a
 * new handle in `*out` (release it with daxheap_objctx_close). Errors: DAXHEAP_EINVAL,
 * DAXHEAP_EBUSY (every lane is taken: close a context first), DAXHEAP_EROFS. */
int  daxheap_objctx_open(daxheap_objects *objects, daxheap_objctx **out);

/* Cancels the context's reservations that were neither published nor cancelled, returns
 * its cached blocks to the object heap, frees its lane and the handle. Refused with
 * DAXHEAP_EBUSY while the context is in use (by another thread, or from inside its own
 * transaction's body): nothing changes. DAXHEAP_EINVAL for NULL. */
int  daxheap_objctx_close(daxheap_objctx *ctx);

/* Allocates an object of at least `size` bytes of `kind` (enum daxheap_kind), aligned to
 * `alignment` (a power of two up to 4096; 0 means 16), and publishes it into `slot`, which
 * must hold null: when this returns, object and slot are durable together; after a crash
 * before, the slot is null and the object free. One fence. A DAXHEAP_KIND_REFERENCES object
 * reads as zero; a DAXHEAP_KIND_DATA object's bytes are unspecified until written (write
 * them, then daxheap_objects_persist; or reserve, fill, and publish for two fences and an
 * object that is never seen unfilled). Stores the reference in `*out` unless `out` is NULL.
 * Errors: DAXHEAP_EINVAL (size 0, bad kind, alignment or slot), DAXHEAP_EEXIST (the slot
 * holds a reference), DAXHEAP_ENOSPC, DAXHEAP_EBUSY (context in use), DAXHEAP_EIO. */
int  daxheap_alloc(daxheap_objctx *ctx, uint64_t size, int kind, uint64_t alignment, daxheap_slot slot, daxheap_ref *out);

/* Empties `slot` and frees the object it reached: when this returns both are durable;
 * after a crash before, the slot still reaches the object, intact. One fence (two for a
 * DAXHEAP_KIND_REFERENCES object, which is zeroed after the slot). Errors: DAXHEAP_EINVAL
 * (not a slot, or it holds no live object: null, or freed already), DAXHEAP_EBUSY,
 * DAXHEAP_EIO. */
int  daxheap_free(daxheap_objctx *ctx, daxheap_slot slot);

/* Allocates an object that nothing reaches yet (pmemobj_reserve): fill it through its
 * address, then daxheap_publish it into a slot (or daxheap_tx_publish it in a
 * transaction), or daxheap_cancel it. Nothing durable: a reservation neither published nor
 * cancelled before a crash is free again after it. Stores the reference in `*out`, and the
 * address in `*address` unless `address` is NULL. Errors as daxheap_alloc, less EEXIST. */
int  daxheap_reserve(daxheap_objctx *ctx, uint64_t size, int kind, uint64_t alignment, daxheap_ref *out, void **address);

/* Makes the reserved object's contents durable, then publishes it into `slot` (which must
 * hold null): after a crash the slot is null or reaches the whole contents. Two fences.
 * Errors: DAXHEAP_EINVAL (`reservation` is not an open reservation of this context, or not
 * a slot), DAXHEAP_EEXIST (the slot holds a reference; the reservation stays open),
 * DAXHEAP_EBUSY, DAXHEAP_EIO. */
int  daxheap_publish(daxheap_objctx *ctx, daxheap_ref reservation, daxheap_slot slot);

/* Frees a reserved object. Errors: DAXHEAP_EINVAL (not an open reservation of this
 * context), DAXHEAP_EBUSY. */
int  daxheap_cancel(daxheap_objctx *ctx, daxheap_ref reservation);

/* ---- Transactions ------------------------------------------------------------------ */

/* A transaction's body: returns 0 to commit, anything else to abort. */
typedef int (*daxheap_tx_body)(daxheap_tx *tx, void *arg);

/* Runs `body(tx, arg)` as one transaction on the calling thread: the writes, allocations
 * and frees it makes through `tx` happen together and durably when it returns 0, or not at
 * all when it returns anything else (or the commit fails).
 *
 * - Writes (daxheap_tx_write, _store64, _write_arena) go to the context's redo log and
 *   reach their targets at commit: until then, reads see the old bytes. Writes into an
 *   object this transaction allocated go straight to it (nothing reaches it yet).
 * - daxheap_tx_alloc and daxheap_tx_free: the object is usable at once; the slot changes at
 *   commit; a freed object is reused only after the commit.
 * - Cost: nothing logged, or one logged 8-byte word of this arena (a lone alloc or free):
 *   one fence. Otherwise three. One more, first, if it wrote into an object it allocated
 *   (those bytes are durable before anything publishes the object). The log holds
 *   `log_bytes` (16 KiB by default) and 256 allocations or frees; past that a call
 *   returns DAXHEAP_ENOSPC.
 * - A failed daxheap_tx_* call changes nothing, and the transaction goes on: the body
 *   decides whether to commit what succeeded (return 0) or abort (return its status).
 *
 * Returns DAXHEAP_OK when committed. When the body returns nonzero, returns that value
 * unchanged, so a body can pass on the status of the call that failed: a negative value
 * leaves the thread's message as the body left it; a positive one (an application's own
 * code, never a library status) sets the message to say the body aborted. Otherwise the
 * commit's error (DAXHEAP_EIO, ...), nothing applied. Errors before the body runs:
 * DAXHEAP_EINVAL (NULL ctx or body), DAXHEAP_EBUSY (the context is in use: by another
 * thread, or this is a nested daxheap_tx_run from inside a body).
 *
 * Inside the body use `tx` only, on this thread: calls on the same context return
 * DAXHEAP_EBUSY. `tx` is invalid after the body returns. Do not longjmp out of the body.
 * Isolation: none; serialize transactions that touch the same bytes. */
int  daxheap_tx_run(daxheap_objctx *ctx, daxheap_tx_body body, void *arg);

/* Writes `length` bytes from `src` at arena offset `offset` of the object heap, inside one
 * live object (or a root's 8-byte word), at commit. Errors: DAXHEAP_EINVAL (NULL tx, no
 * transaction running, `src` NULL with a length, the range not inside one live object),
 * DAXHEAP_ERANGE (offset + length overflows), DAXHEAP_ENOSPC (the log is full). */
int  daxheap_tx_write(daxheap_tx *tx, uint64_t offset, const void *src, uint64_t length);

/* Stores the 8-byte `value` at `offset` (a multiple of 8: a slot, or a word of a live
 * object) at commit. Storing a reference this way is how a transaction links objects.
 * Errors as daxheap_tx_write. */
int  daxheap_tx_store64(daxheap_tx *tx, uint64_t offset, uint64_t value);

/* Writes `length` bytes from `src` at `offset` of another arena `arena` of the same heap (a
 * database's own pages, say), in the same atomic commit. Errors: DAXHEAP_EINVAL,
 * DAXHEAP_ENOENT (no such arena), DAXHEAP_ERANGE (past the arena's size), DAXHEAP_ENOSPC,
 * DAXHEAP_ENOTSUP (the arena's id is above 65535). */
int  daxheap_tx_write_arena(daxheap_tx *tx, const char *arena, uint64_t offset, const void *src, uint64_t length);

/* Allocates an object (as daxheap_alloc) and stores its reference into `slot` at commit;
 * freed again if the transaction aborts. Stores the reference in `*out` unless NULL.
 * Errors as daxheap_alloc; DAXHEAP_ENOSPC also for a full log. */
int  daxheap_tx_alloc(daxheap_tx *tx, uint64_t size, int kind, uint64_t alignment, daxheap_slot slot, daxheap_ref *out);

/* Makes the context's reservation part of the transaction: its bytes are durable before
 * the commit's stores, so a daxheap_tx_store64 of its reference publishes it whole. It
 * stops being an open reservation: committed, it is the application's (store its
 * reference somewhere in this transaction, or it stays allocated until the next open);
 * aborted, it is freed. Errors: DAXHEAP_EINVAL (not an open reservation of the context),
 * DAXHEAP_ENOSPC. */
int  daxheap_tx_publish(daxheap_tx *tx, daxheap_ref reservation);

/* Empties `slot` at commit and frees the object it reaches after the commit. Errors:
 * DAXHEAP_EINVAL (not a slot, no live object in it, or freed already by this
 * transaction), DAXHEAP_ENOSPC. */
int  daxheap_tx_free(daxheap_tx *tx, daxheap_slot slot);

#ifdef __cplusplus
}
#endif
#endif
