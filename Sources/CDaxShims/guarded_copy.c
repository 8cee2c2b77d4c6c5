// A copy that survives a media error: on device-dax a read of a poisoned line raises
// SIGBUS (BUS_MCEERR_AR) and the kernel unmaps the whole 2 MiB page; on an emulating file,
// a page past the end of a file cut short raises SIGBUS too. PMDK's
// pmem2_source_pread_mcsafe uses the same sigsetjmp/siglongjmp pattern.
//
// Thread safety: the jump buffer and the "inside a guarded copy" flag are thread-local, so a
// fault is taken back only by the thread that was copying. The handler is installed when
// the first guarded copy starts and the previous disposition is restored when the last one
// ends (a count under a mutex), so outside guarded copies SIGBUS behaves as it did before.
// A SIGBUS on a thread that is not in a guarded copy goes to the previous handler.
#define _GNU_SOURCE
#include "CDaxShims.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>

static __thread sigjmp_buf guard_jump;
static __thread volatile sig_atomic_t guard_active;
static __thread void *volatile guard_fault_address;

static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER;
static int guard_users;
static struct sigaction guard_previous;

static void guard_handler(int sig, siginfo_t *info, void *context) {
    if (guard_active) {
        guard_active = 0;
        guard_fault_address = info ? info->si_addr : NULL;
        siglongjmp(guard_jump, 1);
    }
    // Not ours: behave as the previous disposition would.
    if (guard_previous.sa_flags & SA_SIGINFO) {
        if (guard_previous.sa_sigaction) {
            guard_previous.sa_sigaction(sig, info, context);
            return;
        }
    } else if (guard_previous.sa_handler != SIG_DFL && guard_previous.sa_handler != SIG_IGN) {
        guard_previous.sa_handler(sig);
        return;
    }
    // Default action: let the faulting instruction run again without us, and die of it.
    signal(sig, SIG_DFL);
}

static int guard_install(void) {
    int rc = 0;
    pthread_mutex_lock(&guard_lock);
    if (guard_users++ == 0) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_sigaction = guard_handler;
        action.sa_flags = SA_SIGINFO | SA_NODEFER;
        sigemptyset(&action.sa_mask);
        rc = sigaction(SIGBUS, &action, &guard_previous);
        if (rc != 0) guard_users--;
    }
    pthread_mutex_unlock(&guard_lock);
    return rc;
}

static void guard_remove(void) {
    pthread_mutex_lock(&guard_lock);
    if (--guard_users == 0) sigaction(SIGBUS, &guard_previous, NULL);
    pthread_mutex_unlock(&guard_lock);
}

static void *plain_copy(void *dst, const void *src, size_t n) { return memcpy(dst, src, n); }

int CDaxShims_guarded_copy(void *dst, const void *src, size_t length, CDaxShims_copy_function copy,
                           void **fault_address) {
    if (fault_address) *fault_address = NULL;
    if (guard_install() != 0) return -2;
    if (!copy) copy = plain_copy;
    int faulted = 0;
    if (sigsetjmp(guard_jump, 1) == 0) {
        guard_active = 1;
        copy(dst, src, length);
        guard_active = 0;
    } else {
        faulted = 1;
        if (fault_address) *fault_address = guard_fault_address;
    }
    guard_remove();
    return faulted ? -1 : 0;
}
