// CDaxKVShims: what DaxKV needs from C and Swift cannot say. One thing: a prefetch.
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

#endif
