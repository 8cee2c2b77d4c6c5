// Test-only helpers for the SIGBUS tests (the DaxSignalProbe child process): a counting
// SIGBUS handler, a copy function that sends its own thread a chosen SIGBUS in the middle
// of a guarded copy, and one that waits inside a guarded copy until it is released.
#ifndef CDAXSIGNALTESTING_H
#define CDAXSIGNALTESTING_H

#include <stddef.h>
#include <sys/types.h>

/// The si_code values the tests send (glibc spells some only under _GNU_SOURCE).
#define CDaxSignalTesting_SI_USER 0
#define CDaxSignalTesting_SI_QUEUE (-1)
#define CDaxSignalTesting_SI_TKILL (-6)
#define CDaxSignalTesting_BUS_ADRERR 2
#define CDaxSignalTesting_BUS_MCEERR_AR 4
#define CDaxSignalTesting_BUS_MCEERR_AO 5

/// Installs a SIGBUS handler (SA_SIGINFO) that counts what it gets. -1 and errno on failure.
int CDaxSignalTesting_count_sigbus(void);
/// How many SIGBUS the counting handler got.
long CDaxSignalTesting_sigbus_count(void);

/// What `CDaxSignalTesting_signalling_copy` sends: SIGBUS with this si_code, si_addr and
/// si_addr_lsb (through rt_tgsigqueueinfo, which lets a thread give the signals it sends
/// itself any code), or, for CDaxSignalTesting_SI_TKILL, pthread_kill.
void CDaxSignalTesting_copy_will_send(int code, void *address, short address_lsb);
/// A copy function for CDaxShims_guarded_copy: sends its thread the SIGBUS set up by
/// `CDaxSignalTesting_copy_will_send` (delivered before the call returns), then copies
/// with memcpy; `CDaxSignalTesting_send_error` tells whether the send failed.
void *CDaxSignalTesting_signalling_copy(void *dst, const void *src, size_t length);
/// The errno of a failed send, else 0.
int CDaxSignalTesting_send_error(void);

/// A copy function for CDaxShims_guarded_copy: says it has started, waits for
/// `CDaxSignalTesting_release`, then copies with memcpy.
void *CDaxSignalTesting_waiting_copy(void *dst, const void *src, size_t length);
/// Waits until a waiting copy has started.
void CDaxSignalTesting_wait_for_copy(void);
/// Lets the waiting copy go on.
void CDaxSignalTesting_release(void);

#endif
