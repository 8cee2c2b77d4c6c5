// CDaxKVShims: what DaxKV needs from C and Swift cannot say: prefetches and a pause.
#ifndef CDAXKV_SHIMS_H
#define CDAXKV_SHIMS_H

/// Asks the CPU to bring the cache line holding `address` towards the core, for reading,
/// without waiting for it: a batched get issues the loads of every key's bucket (then
/// record) before it needs any, a put its key's bucket before it lays out the record,
/// and every write the log's tail its next record goes to. Unlike a load, it retires at once (the misses overlap however much work sits
/// between them) and never faults (any address will do).
static inline void daxkv_prefetch(const void *address) {
    __builtin_prefetch(address, 0, 3);
}

/// The same as a read with no temporal locality (`prefetchnta`): the line is wanted once,
/// and should not push longer-lived lines (the index's) out of the caches.
static inline void daxkv_prefetch_once(const void *address) {
    __builtin_prefetch(address, 0, 0);
}

/// Tells the CPU that this thread is spinning on a lock word (x86 `pause`): it waits a
/// little before the next look, saving power and the other hyperthread's cycles, and
/// leaves the spin without a pipeline flush when the word changes.
static inline void daxkv_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif
