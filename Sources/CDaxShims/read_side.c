// System calls of DaxHeap's read sections (ReadSections.swift), which Swift cannot make
// itself (syscall(2) is variadic), and the thread-local record pointer.
#include "CDaxShims.h"
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

__thread void *CDaxShims_reader_record = 0;

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CDAXSHIMS_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define CDAXSHIMS_TSAN 1
#endif
#ifdef CDAXSHIMS_TSAN
int CDaxShims_built_with_tsan(void) { return 1; }
#else
int CDaxShims_built_with_tsan(void) { return 0; }
#endif

int CDaxShims_membarrier_query(void) { return (int)syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0); }

int CDaxShims_membarrier_register(void) {
    return (int)syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0);
}

int CDaxShims_membarrier(void) { return (int)syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0); }

void CDaxShims_futex_wait(uint32_t *word, uint32_t expected) {
    // EAGAIN (the word changed) and EINTR both just return: the caller re-checks.
    syscall(__NR_futex, word, FUTEX_WAIT_PRIVATE, expected, (void *)0, (void *)0, 0);
}

void CDaxShims_futex_wake_all(uint32_t *word) {
    syscall(__NR_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, (void *)0, (void *)0, 0);
}
