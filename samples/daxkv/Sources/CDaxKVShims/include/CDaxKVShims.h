// CDaxKVShims: what DaxKV needs from C and Swift cannot say: prefetches, for reading and for writing.
#ifndef CDAXKV_SHIMS_H
#define CDAXKV_SHIMS_H

/// Asks the CPU to bring the cache line holding `address` towards the core, for reading,
/// without waiting for it: a batched get issues the loads of every key's bucket (then
/// record) before it needs any, and a put its key's bucket before it lays out the
/// record. Unlike a load, it retires at once (the misses overlap however much work sits
/// between them) and never faults (any address will do).
static inline void daxkv_prefetch(const void *address) {
    __builtin_prefetch(address, 0, 3);
}

/// The same, for writing: the line comes in owned (exclusive), so a later store to it
/// does not wait for the line to be read first.
static inline void daxkv_prefetch_for_write(const void *address) {
    __builtin_prefetch(address, 1, 3);
}

#endif
