#define _GNU_SOURCE
#include "CDaxSignalTesting.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static atomic_long sigbus_count;
static atomic_int copy_started;
static atomic_int copy_released;
static int send_code;
static void *send_address;
static short send_address_lsb;
static int send_errno;

static void counting_handler(int sig, siginfo_t *info, void *context) {
    (void)sig, (void)info, (void)context;
    atomic_fetch_add(&sigbus_count, 1);
}

int CDaxSignalTesting_count_sigbus(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = counting_handler;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    return sigaction(SIGBUS, &action, NULL);
}

long CDaxSignalTesting_sigbus_count(void) { return atomic_load(&sigbus_count); }

void CDaxSignalTesting_copy_will_send(int code, void *address, short address_lsb) {
    send_code = code;
    send_address = address;
    send_address_lsb = address_lsb;
}

void *CDaxSignalTesting_signalling_copy(void *dst, const void *src, size_t length) {
    int rc;
    if (send_code == SI_TKILL) {
        rc = pthread_kill(pthread_self(), SIGBUS);
        if (rc != 0) errno = rc, rc = -1;
    } else {
        siginfo_t info;
        memset(&info, 0, sizeof info);
        info.si_signo = SIGBUS;
        info.si_code = send_code;
        info.si_addr = send_address;
        info.si_addr_lsb = send_address_lsb;
        rc = (int)syscall(SYS_rt_tgsigqueueinfo, getpid(), (pid_t)syscall(SYS_gettid), SIGBUS, &info);
    }
    if (rc != 0) send_errno = errno;
    return memcpy(dst, src, length);
}

int CDaxSignalTesting_send_error(void) { return send_errno; }

void *CDaxSignalTesting_waiting_copy(void *dst, const void *src, size_t length) {
    atomic_store(&copy_started, 1);
    while (!atomic_load(&copy_released)) sched_yield();
    return memcpy(dst, src, length);
}

void CDaxSignalTesting_wait_for_copy(void) {
    while (!atomic_load(&copy_started)) sched_yield();
}

void CDaxSignalTesting_release(void) { atomic_store(&copy_released, 1); }
