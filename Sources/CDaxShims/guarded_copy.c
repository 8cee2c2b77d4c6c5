// A copy that survives a media error: on device-dax a read of a poisoned line raises
// SIGBUS (BUS_MCEERR_AR) and the kernel unmaps the whole 2 MiB page; on an emulating file,
// a page past the end of a file cut short raises SIGBUS too (BUS_ADRERR). PMDK's
// pmem2_source_pread_mcsafe uses the same sigsetjmp/siglongjmp pattern.
//
// The handler is installed by the first guarded copy and stays for the life of the
// process: installing and removing it around copies would, at the last removal, put back
// the handler seen at the first installation over any installed in between. A SIGBUS is
// taken for a media error in a guarded copy only when all of these hold:
//   - the thread that gets it is inside a guarded copy (thread-local state, so a fault is
//     taken back only by the thread that was copying);
//   - it is a synchronous fault (si_code BUS_ADRERR, BUS_OBJERR or BUS_MCEERR_AR), not a
//     signal sent with kill, tkill or sigqueue (si_code <= 0) nor an action-optional
//     machine-check notice (BUS_MCEERR_AO), which tells of a page, not of this access;
//   - the faulting address lies in the device side of the copy (for a machine check,
//     which reports the poisoned page, the 2^si_addr_lsb bytes there overlap it).
// Any other SIGBUS goes to the disposition that was in place when the handler was
// installed (without its sa_mask and flags): a handler is called; SIG_IGN ignores an
// asynchronous signal; otherwise (SIG_DFL, or a fault, which the kernel never lets
// SIG_IGN ignore) the default action is put back and the process dies as it would have
// without us: a fault re-executes and faults again, an asynchronous signal is re-raised.
// A program that installs its own SIGBUS handler after the first guarded copy must
// chain to the one it replaces, or guarded copies die of media errors.
#define _GNU_SOURCE
#include "CDaxShims.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

/// The calling thread's guarded copy, as the handler sees it.
static __thread struct {
    sigjmp_buf jump;
    volatile sig_atomic_t active;
    uintptr_t start;  // the device side of the copy: media errors are caught there only
    size_t length;
    void *volatile fault_address;
} guard;

static struct sigaction previous;  // SIGBUS's disposition before ours; written once
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int install_errno;

/// A fault: returning from its handler runs the faulting instruction again.
static int is_fault(const siginfo_t *info) {
    switch (info->si_code) {
    case BUS_ADRALN: case BUS_ADRERR: case BUS_OBJERR: case BUS_MCEERR_AR: return 1;
    default: return 0;
    }
}

/// Whether this SIGBUS is a media error of the calling thread's guarded copy.
static int is_ours(const siginfo_t *info) {
    if (!guard.active) return 0;
    if (info->si_code != BUS_ADRERR && info->si_code != BUS_OBJERR && info->si_code != BUS_MCEERR_AR) return 0;
    uintptr_t address = (uintptr_t)info->si_addr;
    uintptr_t unit = 1;
    if (info->si_code == BUS_MCEERR_AR && info->si_addr_lsb > 0 && info->si_addr_lsb < 64) {
        unit = (uintptr_t)1 << info->si_addr_lsb;
        address &= ~(unit - 1);
    }
    // [address, address + unit) overlaps [start, start + length), written without overflow.
    return address >= guard.start ? address - guard.start < guard.length : guard.start - address < unit;
}

static void guard_handler(int sig, siginfo_t *info, void *context) {
    if (is_ours(info)) {
        guard.active = 0;
        // A machine check's page may start before the copy: report the copy's first byte.
        uintptr_t address = (uintptr_t)info->si_addr;
        guard.fault_address = (void *)(address < guard.start ? guard.start : address);
        siglongjmp(guard.jump, 1);
    }
    // Not ours: do what the previous disposition would have done.
    if (previous.sa_handler == SIG_IGN && !is_fault(info)) return;
    if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        if (previous.sa_flags & SA_SIGINFO) previous.sa_sigaction(sig, info, context);
        else previous.sa_handler(sig);
        return;
    }
    struct sigaction default_action;
    memset(&default_action, 0, sizeof default_action);
    default_action.sa_handler = SIG_DFL;
    sigemptyset(&default_action.sa_mask);
    sigaction(sig, &default_action, NULL);
    if (!is_fault(info)) raise(sig);  // not blocked here (SA_NODEFER): delivered at once
}

static void guard_install(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = guard_handler;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    // Read the previous disposition before installing ours, so that it is in place
    // before our handler can run.
    if (sigaction(SIGBUS, NULL, &previous) != 0 || sigaction(SIGBUS, &action, NULL) != 0) install_errno = errno;
}

static void *plain_copy(void *dst, const void *src, size_t n) { return memcpy(dst, src, n); }

int CDaxShims_guarded_copy(void *dst, const void *src, size_t length, CDaxShims_copy_function copy,
                           CDaxShims_guarded_side side, void **fault_address) {
    if (fault_address) *fault_address = NULL;
    pthread_once(&install_once, guard_install);
    if (install_errno != 0) {
        errno = install_errno;
        return -2;
    }
    if (!copy) copy = plain_copy;
    guard.start = (uintptr_t)(side == CDaxShims_guard_destination ? dst : src);
    guard.length = length;
    if (sigsetjmp(guard.jump, 1) != 0) {
        if (fault_address) *fault_address = guard.fault_address;
        return -1;
    }
    guard.active = 1;
    copy(dst, src, length);
    guard.active = 0;
    return 0;
}
