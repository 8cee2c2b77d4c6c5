// CDaxShims: the few things DaxHeap needs from C that Swift cannot express directly.
// Keep it tiny: each function is a thin, documented primitive.
#ifndef CDAXSHIMS_H
#define CDAXSHIMS_H

#include <stddef.h>
#include <stdint.h>

/// CRC-32C (Castagnoli), as used by iSCSI, ext4 and Btrfs metadata.
/// Continues from `crc` (pass 0 to start). Uses the SSE4.2 instruction when the CPU has it.
uint32_t CDaxShims_crc32c(uint32_t crc, const void *data, size_t length);

/// Major and minor numbers of a device number (glibc's major()/minor() are macros).
unsigned int CDaxShims_major(uint64_t dev);
unsigned int CDaxShims_minor(uint64_t dev);

/// fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length): the range
/// of a regular file reads as zeros afterwards and its blocks are freed. -1 and errno on failure.
int CDaxShims_punch_hole(int fd, uint64_t offset, uint64_t length);

/// A memcpy-like function: memcpy itself, or libpmem's pmem_memcpy_persist.
typedef void *(*CDaxShims_copy_function)(void *dst, const void *src, size_t length);

/// Which side of a guarded copy is the device, where media errors are caught.
typedef enum {
    CDaxShims_guard_source,       // a read from the device
    CDaxShims_guard_destination,  // a write to the device
} CDaxShims_guarded_side;

/// Runs `copy(dst, src, length)` (memcpy when `copy` is NULL) so that a media error in the
/// `side` range (a poisoned line on device-dax, a page past the end of a truncated file)
/// is caught instead of killing the process. Returns 0 when the copy completed, -1 when
/// it faulted (then `*fault_address`, if given, is the faulting address, or the start of
/// the range when a machine check's poisoned page begins before it, and `dst` holds
/// partial data), -2 when the
/// handler could not be installed (errno is set).
/// The SIGBUS handler is installed by the first call and stays; a SIGBUS that is not a
/// media error in a guarded copy (sent with kill, a notice about another page, a fault
/// elsewhere) goes to the disposition that was in place before (guarded_copy.c).
/// Safe to call from several threads at once; `copy` must be plain C code.
int CDaxShims_guarded_copy(void *dst, const void *src, size_t length, CDaxShims_copy_function copy,
                           CDaxShims_guarded_side side, void **fault_address);

// MARK: Read sections (DaxHeap/ReadSections.swift): the primitives Swift lacks.

/// This thread's read-section record (DaxHeap's, opaque here); NULL until it first enters.
/// A C thread-local, so that the read side finds it with one load and no call.
extern __thread void *CDaxShims_reader_record;

static inline void *CDaxShims_get_reader(void) { return CDaxShims_reader_record; }
static inline void CDaxShims_set_reader(void *record) { CDaxShims_reader_record = record; }

/// Forbids the compiler to move memory accesses across this point; emits no instruction.
/// With membarrier, the writer's system call supplies the CPU barrier (see ReadSections.swift).
static inline void CDaxShims_compiler_barrier(void) { __asm__ __volatile__("" ::: "memory"); }

/// A spin-wait hint (x86 `pause`).
static inline void CDaxShims_cpu_relax(void) { __builtin_ia32_pause(); }

/// 1 if this file was compiled with ThreadSanitizer, else 0.
int CDaxShims_built_with_tsan(void);

/// membarrier(2): `MEMBARRIER_CMD_QUERY`'s mask, or -1 and errno.
int CDaxShims_membarrier_query(void);
/// Registers the process for private expedited membarriers; 0, or -1 and errno.
int CDaxShims_membarrier_register(void);
/// A full memory barrier on every CPU running a thread of this process; 0, or -1 and errno.
int CDaxShims_membarrier(void);

/// futex(FUTEX_WAIT_PRIVATE): sleeps while `*word == expected`, until a wake.
void CDaxShims_futex_wait(uint32_t *word, uint32_t expected);
/// futex(FUTEX_WAKE_PRIVATE): wakes every thread waiting on `word`.
void CDaxShims_futex_wake_all(uint32_t *word);

#endif
