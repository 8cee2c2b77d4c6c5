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
 * - A failed call changes nothing: no arena, no byte, no out parameter (`*out` and `*size`
 *   are written only on success). The exceptions: msync failing in the middle of a write
 *   on a file that is not persistent memory (DAXHEAP_EIO, see daxheap_write), and a media
 *   error met by daxheap_read, which leaves part of `dst` filled.
 * - Names are NUL-terminated UTF-8, 1 to 63 bytes, without control characters.
 * - Sizes are in bytes. Arena sizes are positive multiples of 2 MiB (2097152).
 * - Threads. Every function may be called from several threads at once, on the same handle
 *   or on different ones, except that a handle must not be closed while another thread is
 *   still using it (as with free). Provisioning calls (create, resize, destroy an arena)
 *   are serialized inside the library; reads, writes and window accesses run concurrently
 *   with them. Coordinating writers of the same bytes is the application's business.
 *
 * Handles:
 *
 * - `daxheap *` is an open heap, from daxheap_create or daxheap_open, released with
 *   daxheap_close. A read-write open holds an exclusive lock on the device (a second
 *   process gets DAXHEAP_EBUSY); a read-only open takes a shared lock.
 * - `daxheap_window *` is an arena mapped as one contiguous range of addresses, from
 *   daxheap_window_open, released with daxheap_window_close. An open window keeps its heap
 *   mapped, even after daxheap_close of the heap.
 * - Using a handle after its close is undefined behaviour, as using memory after free is:
 *   the handle's memory is gone. Closing a handle twice is undefined too.
 *
 * Status codes: how the Swift library's errors (HeapError) map to them is listed in
 * docs/C-API.md. */
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
    DAXHEAP_ENOSPC    = -2,   /* not enough free space in the heap (or the arena table is full) */
    DAXHEAP_EEXIST    = -3,   /* an arena of that name exists; or daxheap_create found data it refuses to overwrite */
    DAXHEAP_ENOENT    = -4,   /* no such arena, or no such file */
    DAXHEAP_EBUSY     = -5,   /* in use: another process holds the heap, or an arena is mapped by windows */
    DAXHEAP_ECORRUPT  = -6,   /* both metadata copies bad, or a re-created device */
    DAXHEAP_ENOTHEAP  = -7,   /* the path holds no DaxHeap (or an unsupported version) */
    DAXHEAP_ESIZE     = -8,   /* device size does not match the heap's metadata */
    DAXHEAP_ERANGE    = -9,   /* offset/length outside an arena or a window, or past a reservation */
    DAXHEAP_EROFS     = -10,  /* a write to a heap opened read-only */
    DAXHEAP_EIO       = -11,  /* an I/O error, a media error (poison), a failed metadata write */
    DAXHEAP_ECLOSED   = -12,  /* the heap or window was closed (from Swift, for a heap handed to C) */
    DAXHEAP_ENOTSUP   = -13   /* the device cannot do this (e.g. its alignment forbids a window) */
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

/* Unmaps the window and frees the handle, in every case: `window` is invalid afterwards,
 * and its addresses must no longer be used by any thread (as after munmap). If its heap
 * was released with daxheap_close and this was the heap's last open window, the heap is
 * closed now (unmapped, unlocked). Returns DAXHEAP_OK, DAXHEAP_EINVAL for a NULL window,
 * or the error of that deferred close (the handle is freed all the same). */
int  daxheap_window_close(daxheap_window *window);                      /* frees the handle in every case */

#ifdef __cplusplus
}
#endif
#endif
