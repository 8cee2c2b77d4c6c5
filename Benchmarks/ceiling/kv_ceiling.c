/*
 * kv_ceiling.c -- an upper bound for daxkv's design on this machine.
 *
 * usage: kv_ceiling [-r R] PATH [N]
 *
 *   PATH  file to create (must not exist; removed again), e.g. under /dev/shm
 *   N     number of keys (default 1000000)
 *   -r R  repetitions of everything (default 1); stdout gets the median,
 *         stderr a '#' line per repetition
 *
 * This is daxkv (samples/daxkv, README "On-media layout") with everything that
 * is not the design taken away: no arenas, no locks, no radix tree, no
 * compaction, no growth, no Swift. One sparse file mapped with pmem_map_file:
 *
 *   0                4 KiB index header (unused here)
 *   4 KiB            index table: 2^k buckets of 64 bytes = 8 slots of 8 bytes,
 *                    2^k the least power of two with 8 * 2^k >= 2 N (daxkv's
 *                    log2Buckets: 2^18 for N = 1 M); slot = tag << 44 |
 *                    record offset / 8, tag = top 20 bits of the key hash,
 *                    0 empty, 1 tombstone; bucket = hash & (2^k - 1), linear
 *                    probing over buckets
 *   next 2 MiB       the data "arena": 4 KiB header, then records appended
 *                    sequentially in 2 MiB segments (a record never straddles
 *                    a segment); offsets in slots are relative to this base
 *
 * record: [u64 checksum][u16 key length][u16 0][u32 value length][key][value],
 * padded to 8 bytes (160 bytes here). The key hash and the checksum are
 * daxkv's (Checksum.swift), bit for bit: the key hash is hash64, the checksum
 * version 3's four lanes over the key then the value, seeded with
 * Seeds.record ^ lengthWord (main checks it against daxkv's pinned value).
 *
 * put: hash; checksum; write the record at the log tail with plain stores;
 *      pmem_flush + pmem_drain (fence 1); find the key's slot (the first empty
 *      slot on the probe path, or the live slot whose tag matches and whose
 *      record holds the key); store the 8-byte slot; pmem_flush + pmem_drain
 *      (fence 2).
 * get: hash; probe; on a tag match read the record and compare the key; copy
 *      the value out; verify the checksum; (caller) compare with the expected
 *      value.
 *
 * Workload: ../shared/anchors/kv_common.h, exactly as lmdb_kv.c and
 * pmemobj_kv.c run it: fill N keys in the KV_SEED_FILL order (value version
 * 0), get all in the KV_SEED_READ order (every value checked), update all in
 * the KV_SEED_UPDATE order (version 1); then, untimed, every key is read back
 * and checked for version 1. Key and value generation is inside the timed
 * loops, as in the anchors.
 *
 * Variants (each on a fresh file, interleaved within every repetition):
 *   plain       as above; nothing is pre-faulted: each page of the log faults
 *               in when first written, inside the timed loops
 *   prefetch    put: __builtin_prefetch(bucket, write) right after hashing,
 *               before the record is written, so the bucket miss overlaps the
 *               record write and fence 1. get: a single get has nothing to
 *               prefetch (the record address comes from the bucket), so here
 *               the read loop prefetches the NEXT key's bucket while doing
 *               the current one: the bound for a batched (multi-key) get,
 *               which daxkv's single-key API cannot do
 *   prefaulted  as plain, but the index and the part of the log the run uses
 *               are memset to 0 before the timed phases: no page faults
 *   prefetch_prefaulted  both: the tightest bound for the two-fence design
 *   one_fence   daxkv's put since it has one fence (README "Crash argument"):
 *               prefetch the bucket; write the record; flush it and the
 *               previous put's slot; find the key's slot; pmem_drain (the
 *               only fence: the record and the previous slot are durable);
 *               store the slot, flushed by the next put. Pre-faulted, as a
 *               daxkv store sized for its workload is (its initial data
 *               arena is prefaulted when the store is created); gets as
 *               plain. The bound for daxkv's fill and update until it kept
 *               a copy of the keys (2026-12-02)
 *   key_copy    one_fence, and the writer keeps a volatile copy of each
 *               slot's key (16 bytes a slot, and a length byte a slot in an
 *               array of their own), as daxkv's KeyCache does: the put
 *               requests the bucket's copy (two lines, and the length
 *               line, read once: prefetchnta) with its bucket, a slot of
 *               the key's tag is confirmed in the copy instead of the old
 *               record, and the slot's store stores the key in the copy.
 *               The bound for daxkv's fill and update
 *
 * Micro-figures (own fresh file, pre-faulted):
 *   ceiling.fence_ns        one 64-byte store (8 x 8-byte stores) to a cache
 *                           line not touched before in the loop + pmem_flush
 *                           + pmem_drain; 10^6 distinct lines in batches of
 *                           100, median batch / 100
 *   ceiling.random_miss_ns  dependent random 8-byte loads: pointer chase
 *                           through one random cycle over all 64-byte lines
 *                           of a 176 MiB region (daxkv's index + log for 1 M
 *                           keys), 4 KiB pages, so TLB misses are included
 *   ceiling.random_miss_2m_ns  the same chase after the region is remapped
 *                           with 2 MiB pages (madvise MADV_COLLAPSE, which
 *                           tmpfs honours whatever its huge-page setting):
 *                           the page size device-dax maps with. Not printed
 *                           when the kernel refuses (before Linux 6.1, or a
 *                           file system without large folios)
 *
 * Output: ceiling.kv.<variant>.<fill|read|update> <ops/s> ops/s,
 *         ceiling.fence_ns <ns> ns, ceiling.random_miss_ns <ns> ns,
 *         ceiling.random_miss_2m_ns <ns> ns
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libpmem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kv_common.h"

#define SEED_KEY 0x6B65795F68617368ULL    /* Seeds.key */
#define SEED_RECORD 0x7265636F72645F63ULL /* Seeds.record */

#define INDEX_HEADER 4096ULL
#define DATA_HEADER 4096ULL
#define SEGMENT_SHIFT 21
#define SEGMENT_SIZE (1ULL << SEGMENT_SHIFT)
#define SLOTS_PER_BUCKET 8
#define OFFSET_MASK ((1ULL << 44) - 1)
#define TOMBSTONE 1ULL
#define REC_HEADER 16ULL
#define REC_SIZE ((REC_HEADER + KV_KEY_SIZE + KV_VAL_SIZE + 7) & ~7ULL)
#define LENGTH_WORD ((uint64_t)KV_KEY_SIZE | (uint64_t)KV_VAL_SIZE << 32)

#define MICRO_FENCE_OPS 1000000ULL
#define MICRO_FENCE_BATCH 100ULL
#define MICRO_CHASE_BYTES (176ULL << 20)
#define MICRO_CHASE_LOADS 4000000ULL
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25 /* Linux 6.1 */
#endif

static const char *g_created; /* the file to remove if we die */

static void
die(const char *fmt, const char *arg)
{
	fprintf(stderr, "kv_ceiling: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	if (g_created != NULL)
		(void)unlink(g_created);
	exit(1);
}

static void
die_pmem(const char *what)
{
	fprintf(stderr, "kv_ceiling: %s: %s (errno %d: %s)\n", what,
			pmem_errormsg(), errno, strerror(errno));
	if (g_created != NULL)
		(void)unlink(g_created);
	exit(1);
}

/* ---- daxkv's hash64 and record checksum (samples/daxkv/Sources/DaxKV/Checksum.swift) ---- */

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL

static inline uint64_t
rotl64(uint64_t x, unsigned n)
{
	return x << n | x >> (64 - n);
}

static inline uint64_t
mix_round(uint64_t h, uint64_t w)
{
	return rotl64(h ^ (w * P2), 31) * P1;
}

static inline uint64_t
last_bytes(const uint8_t *b, size_t start, size_t end)
{
	uint64_t w = 0;
	for (unsigned shift = 0; start < end; start++, shift += 8)
		w |= (uint64_t)b[start] << shift;
	return w;
}

static inline uint64_t
avalanche(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xFF51AFD7ED558CCDULL;
	h ^= h >> 33;
	h *= 0xC4CEB9FE1A85EC53ULL;
	h ^= h >> 33;
	return h;
}

static inline uint64_t
hash64(const void *base, size_t count, uint64_t seed)
{
	const uint8_t *b = base;
	uint64_t h = seed ^ ((uint64_t)count * P1);
	size_t i = 0;
	for (; i + 8 <= count; i += 8) {
		uint64_t w;
		memcpy(&w, b + i, 8);
		h = mix_round(h, w);
	}
	if (i < count)
		h = mix_round(h, last_bytes(b, i, count));
	return avalanche(h);
}

/* version 3's four lanes: word i of a range into lane i mod 4 */
struct lanes { uint64_t a, b, c, d; };

static inline uint64_t
load64(const uint8_t *p)
{
	uint64_t w;
	memcpy(&w, p, 8);
	return w;
}

static inline void
absorb(struct lanes *l, const uint8_t *b, size_t count)
{
	size_t i = 0;
	for (; i + 32 <= count; i += 32) {
		l->a = mix_round(l->a, load64(b + i));
		l->b = mix_round(l->b, load64(b + i + 8));
		l->c = mix_round(l->c, load64(b + i + 16));
		l->d = mix_round(l->d, load64(b + i + 24));
	}
	if (i + 8 <= count) {
		l->a = mix_round(l->a, load64(b + i));
		i += 8;
		if (i + 8 <= count) {
			l->b = mix_round(l->b, load64(b + i));
			i += 8;
			if (i + 8 <= count) {
				l->c = mix_round(l->c, load64(b + i));
				i += 8;
			}
		}
	}
	if (i < count)
		l->d = mix_round(l->d, last_bytes(b, i, count));
}

static inline uint64_t
record_checksum(uint64_t lw, const void *key, size_t kl, const void *val, size_t vl)
{
	uint64_t seed = SEED_RECORD ^ lw;
	struct lanes l = { seed + P1 + P2, seed + P2, seed, seed - P1 };
	absorb(&l, key, kl);
	absorb(&l, val, vl);
	return avalanche(rotl64(l.a, 1) + rotl64(l.b, 7) + rotl64(l.c, 12) + rotl64(l.d, 18));
}

/* ---- the store ---- */

struct kv {
	uint64_t *table;     /* 2^k buckets of 8 slots */
	uint64_t mask;       /* 2^k - 1 */
	uint8_t *data;       /* data arena base */
	uint64_t data_size;  /* bytes */
	uint64_t tail;       /* arena offset of the next record */
	int prefetch;
	int one_fence;     /* daxkv's put: see the one_fence variant */
	uint64_t *pending; /* one_fence: the last put's slot, not yet flushed */
	uint8_t *keys;     /* key_copy: each slot's key, KV_KEY_SIZE bytes */
	uint8_t *key_lengths; /* key_copy: each slot's key length, 0 unknown */
};

struct layout {
	unsigned log2_buckets;
	uint64_t table_bytes;
	uint64_t data_off;   /* file offset of the data arena (2 MiB aligned) */
	uint64_t data_used;  /* bytes of the data arena fill + update touch */
	uint64_t data_size;
	uint64_t file_size;
};

static uint64_t
round_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) / a * a;
}

static struct layout
layout_for(uint64_t n)
{
	struct layout l;
	/* KVStore.log2Buckets: at most half full, at least 512 buckets */
	l.log2_buckets = 9;
	while ((1ULL << l.log2_buckets) * SLOTS_PER_BUCKET < 2 * n)
		l.log2_buckets++;
	l.table_bytes = (1ULL << l.log2_buckets) * 64;
	l.data_off = round_up(INDEX_HEADER + l.table_bytes, SEGMENT_SIZE);
	/* 2 N records (fill + update, no compaction), segment by segment */
	uint64_t first = (SEGMENT_SIZE - DATA_HEADER) / REC_SIZE;
	uint64_t per = SEGMENT_SIZE / REC_SIZE;
	uint64_t recs = 2 * n;
	uint64_t segs = 1 + (recs > first ? (recs - first + per - 1) / per : 0);
	l.data_used = segs * SEGMENT_SIZE;
	/* 1 GiB as the brief suggests (sparse, so free), more if N needs it */
	l.data_size = l.data_used + SEGMENT_SIZE;
	if (l.data_size < (1ULL << 30))
		l.data_size = 1ULL << 30;
	l.file_size = l.data_off + l.data_size;
	return l;
}

static void *
map_new(const char *path, uint64_t size, int *is_pmem)
{
	size_t mapped;
	void *p = pmem_map_file(path, size,
			PMEM_FILE_CREATE | PMEM_FILE_EXCL | PMEM_FILE_SPARSE,
			0600, &mapped, is_pmem);
	if (p == NULL)
		die_pmem("pmem_map_file");
	g_created = path;
	if (mapped != size) {
		fprintf(stderr, "kv_ceiling: mapped %zu bytes, asked %llu\n",
				mapped, (unsigned long long)size);
		(void)unlink(path);
		exit(1);
	}
	return p;
}

static void
unmap_remove(const char *path, void *p, uint64_t size)
{
	if (pmem_unmap(p, size) != 0)
		die_pmem("pmem_unmap");
	if (unlink(path) != 0)
		die("unlink: %s", strerror(errno));
	g_created = NULL;
}

/* returns 1 if the key was inserted, 0 if its slot was replaced */
static inline int
kv_put(struct kv *kv, const uint8_t key[KV_KEY_SIZE],
		const uint8_t val[KV_VAL_SIZE])
{
	uint64_t h = hash64(key, KV_KEY_SIZE, SEED_KEY);
	uint64_t b = h & kv->mask;
	if (kv->prefetch)
		__builtin_prefetch(&kv->table[b * SLOTS_PER_BUCKET], 1, 3);
	if (kv->keys) {
		uint8_t *copy = kv->keys + b * SLOTS_PER_BUCKET * KV_KEY_SIZE;
		__builtin_prefetch(copy, 0, 0);
		__builtin_prefetch(copy + 64, 0, 0);
		__builtin_prefetch(kv->key_lengths + b * SLOTS_PER_BUCKET, 0, 0);
	}
	const uint64_t lw = LENGTH_WORD;
	uint64_t cs = record_checksum(lw, key, KV_KEY_SIZE, val, KV_VAL_SIZE);

	/* append: a record never straddles a segment */
	uint64_t off = kv->tail;
	if ((off >> SEGMENT_SHIFT) != ((off + REC_SIZE - 1) >> SEGMENT_SHIFT))
		off = ((off >> SEGMENT_SHIFT) + 1) << SEGMENT_SHIFT;
	if (off + REC_SIZE > kv->data_size)
		die("%s", "log full");
	uint8_t *r = kv->data + off;
	memcpy(r, &cs, 8);
	memcpy(r + 8, &lw, 8);
	memcpy(r + REC_HEADER, key, KV_KEY_SIZE);
	memcpy(r + REC_HEADER + KV_KEY_SIZE, val, KV_VAL_SIZE);
	if (REC_SIZE > REC_HEADER + KV_KEY_SIZE + KV_VAL_SIZE)
		memset(r + REC_HEADER + KV_KEY_SIZE + KV_VAL_SIZE, 0,
				REC_SIZE - (REC_HEADER + KV_KEY_SIZE +
					KV_VAL_SIZE));
	kv->tail = off + REC_SIZE;
	pmem_flush(r, REC_SIZE);
	if (kv->one_fence) {
		/* the previous put's slot, flushed now: this put's fence takes it */
		if (kv->pending)
			pmem_flush(kv->pending, 8);
	} else {
		pmem_drain(); /* fence 1: the record is durable */
	}

	/* find the slot */
	uint64_t tag = h >> 44;
	uint64_t *slot = NULL;
	int inserted = 0;
	for (uint64_t probes = 0; slot == NULL; probes++) {
		if (probes > kv->mask)
			die("%s", "index full");
		uint64_t *bk = &kv->table[b * SLOTS_PER_BUCKET];
		for (int i = 0; i < SLOTS_PER_BUCKET; i++) {
			uint64_t s = bk[i];
			if (s == 0) {
				slot = &bk[i];
				inserted = 1;
				break;
			}
			if (kv->keys && s > TOMBSTONE && (s >> 44) == tag) {
				uint64_t n = (uint64_t)(&bk[i] - kv->table);
				if (kv->key_lengths[n] == KV_KEY_SIZE &&
						memcmp(kv->keys + n * KV_KEY_SIZE,
							key, KV_KEY_SIZE) == 0) {
					slot = &bk[i];
					break;
				}
				if (kv->key_lengths[n] != 0)
					continue;
			}
			if (s > TOMBSTONE && (s >> 44) == tag) {
				const uint8_t *old = kv->data +
					((s & OFFSET_MASK) << 3);
				uint64_t olw;
				memcpy(&olw, old + 8, 8);
				if ((olw & 0xFFFF) == KV_KEY_SIZE &&
						memcmp(old + REC_HEADER, key,
							KV_KEY_SIZE) == 0) {
					slot = &bk[i];
					break;
				}
			}
		}
		b = (b + 1) & kv->mask;
	}
	if (kv->one_fence) {
		/* the only fence: the record and the previous slot are durable;
		 * the slot is stored, and flushed by the next put */
		pmem_drain();
		__atomic_store_n(slot, tag << 44 | off >> 3, __ATOMIC_RELEASE);
		if (kv->keys) {
			uint64_t n = (uint64_t)(slot - kv->table);
			memcpy(kv->keys + n * KV_KEY_SIZE, key, KV_KEY_SIZE);
			kv->key_lengths[n] = KV_KEY_SIZE;
		}
		kv->pending = slot;
		return inserted;
	}
	__atomic_store_n(slot, tag << 44 | off >> 3, __ATOMIC_RELEASE);
	pmem_flush(slot, 8);
	pmem_drain(); /* fence 2: the slot is durable */
	return inserted;
}

/* copies the value of key into out (capacity KV_VAL_SIZE); returns its
 * length, or -1 if the key is absent; dies on a checksum mismatch */
static inline int
kv_get_h(const struct kv *kv, const uint8_t key[KV_KEY_SIZE], uint64_t h,
		uint8_t out[KV_VAL_SIZE])
{
	uint64_t b = h & kv->mask;
	uint64_t tag = h >> 44;
	for (uint64_t probes = 0; probes <= kv->mask; probes++) {
		const uint64_t *bk = &kv->table[b * SLOTS_PER_BUCKET];
		for (int i = 0; i < SLOTS_PER_BUCKET; i++) {
			uint64_t s = __atomic_load_n(&bk[i], __ATOMIC_ACQUIRE);
			if (s == 0)
				return -1;
			if (s <= TOMBSTONE || (s >> 44) != tag)
				continue;
			const uint8_t *r = kv->data + ((s & OFFSET_MASK) << 3);
			uint64_t cs, lw;
			memcpy(&cs, r, 8);
			memcpy(&lw, r + 8, 8);
			uint64_t kl = lw & 0xFFFF, vl = lw >> 32;
			if (kl != KV_KEY_SIZE ||
					memcmp(r + REC_HEADER, key, KV_KEY_SIZE) != 0)
				continue;
			if (vl > KV_VAL_SIZE)
				die("%s", "value larger than the buffer");
			memcpy(out, r + REC_HEADER + kl, vl);
			if (record_checksum(lw, r + REC_HEADER, kl, out, vl) != cs)
				die("%s", "checksum mismatch");
			return (int)vl;
		}
		b = (b + 1) & kv->mask;
	}
	return -1;
}

/* ---- phases ---- */

static long
minflt(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		die("getrusage: %s", strerror(errno));
	return ru.ru_minflt + ru.ru_majflt;
}

static double
put_phase(struct kv *kv, const uint64_t *perm, uint64_t n, uint64_t ver,
		int expect_insert)
{
	uint8_t key[KV_KEY_SIZE], val[KV_VAL_SIZE];
	double t0 = kv_now_s();
	for (uint64_t i = 0; i < n; i++) {
		kv_make_key(key, perm[i]);
		kv_make_val(val, perm[i], ver);
		if (kv_put(kv, key, val) != expect_insert) {
			fprintf(stderr, "kv_ceiling: key %llu: expected %s\n",
					(unsigned long long)perm[i],
					expect_insert ? "insert" : "update");
			if (g_created)
				(void)unlink(g_created);
			exit(1);
		}
	}
	return kv_now_s() - t0;
}

static void
wrong_value(uint64_t idx, int len)
{
	fprintf(stderr, "kv_ceiling: %s value for key %llu\n",
			len < 0 ? "no" : "wrong", (unsigned long long)idx);
	if (g_created)
		(void)unlink(g_created);
	exit(1);
}

static double
get_phase(const struct kv *kv, const uint64_t *perm, uint64_t n, uint64_t ver,
		int lookahead)
{
	uint8_t key[2][KV_KEY_SIZE], out[KV_VAL_SIZE], expect[KV_VAL_SIZE];
	double t0 = kv_now_s();
	if (!lookahead) {
		for (uint64_t i = 0; i < n; i++) {
			kv_make_key(key[0], perm[i]);
			int len = kv_get_h(kv, key[0],
					hash64(key[0], KV_KEY_SIZE, SEED_KEY), out);
			kv_make_val(expect, perm[i], ver);
			if (len != KV_VAL_SIZE ||
					memcmp(out, expect, KV_VAL_SIZE) != 0)
				wrong_value(perm[i], len);
		}
	} else {
		kv_make_key(key[0], perm[0]);
		uint64_t h = hash64(key[0], KV_KEY_SIZE, SEED_KEY);
		for (uint64_t i = 0; i < n; i++) {
			uint8_t *cur = key[i & 1], *next = key[(i + 1) & 1];
			uint64_t hn = 0;
			if (i + 1 < n) {
				kv_make_key(next, perm[i + 1]);
				hn = hash64(next, KV_KEY_SIZE, SEED_KEY);
				__builtin_prefetch(&kv->table[(hn & kv->mask) *
						SLOTS_PER_BUCKET], 0, 3);
			}
			int len = kv_get_h(kv, cur, h, out);
			kv_make_val(expect, perm[i], ver);
			if (len != KV_VAL_SIZE ||
					memcmp(out, expect, KV_VAL_SIZE) != 0)
				wrong_value(perm[i], len);
			h = hn;
		}
	}
	return kv_now_s() - t0;
}

enum { V_PLAIN, V_PREFETCH, V_PREFAULTED, V_BOTH, V_ONE_FENCE, V_KEY_COPY, NVARIANTS };
static const char *variant_names[NVARIANTS] = {"plain", "prefetch", "prefaulted",
	"prefetch_prefaulted", "one_fence", "key_copy"};
enum { P_FILL, P_READ, P_UPDATE, NPHASES };
static const char *phase_names[NPHASES] = {"fill", "read", "update"};

struct perms {
	uint64_t *fill, *read, *update;
};

/* one variant on a fresh file; ops/s of each phase into out[] */
static void
run_variant(const char *path, uint64_t n, int variant, const struct perms *pp,
		int rep, double out[NPHASES])
{
	struct layout l = layout_for(n);
	int is_pmem;
	uint8_t *base = map_new(path, l.file_size, &is_pmem);
	if (rep == 0 && variant == 0)
		fprintf(stderr, "# kv_ceiling: N=%llu buckets=2^%u (%llu MiB) "
				"record=%llu B log used=%llu MiB file=%llu MiB "
				"is_pmem=%d PMEM_IS_PMEM_FORCE=%s\n",
				(unsigned long long)n, l.log2_buckets,
				(unsigned long long)(l.table_bytes >> 20),
				(unsigned long long)REC_SIZE,
				(unsigned long long)(l.data_used >> 20),
				(unsigned long long)(l.file_size >> 20), is_pmem,
				getenv("PMEM_IS_PMEM_FORCE") ?
				getenv("PMEM_IS_PMEM_FORCE") : "(unset)");
	int prefetch = variant == V_PREFETCH || variant == V_BOTH;
	int one_fence = variant == V_ONE_FENCE || variant == V_KEY_COPY;
	if (variant == V_PREFAULTED || variant == V_BOTH || one_fence)
		memset(base, 0, l.data_off + l.data_used);
	/* key_copy: the copy of the keys in DRAM, as daxkv maps it (backed as
	 * it is touched) */
	uint64_t slots = l.table_bytes / 8;
	size_t copy_bytes = slots * (KV_KEY_SIZE + 1);
	uint8_t *copy = NULL;
	if (variant == V_KEY_COPY) {
		copy = mmap(NULL, copy_bytes, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (copy == MAP_FAILED)
			die("mmap: %s", strerror(errno));
	}

	struct kv kv = {
		.table = (uint64_t *)(base + INDEX_HEADER),
		.mask = (1ULL << l.log2_buckets) - 1,
		.data = base + l.data_off,
		.data_size = l.data_size,
		.tail = DATA_HEADER,
		.prefetch = prefetch || one_fence,
		.one_fence = one_fence,
		.keys = copy,
		.key_lengths = copy ? copy + slots * KV_KEY_SIZE : NULL,
	};
	long f[NPHASES];
	long f0 = minflt();
	double t = put_phase(&kv, pp->fill, n, 0, 1);
	out[P_FILL] = (double)n / t;
	f[P_FILL] = minflt() - f0;
	f0 = minflt();
	t = get_phase(&kv, pp->read, n, 0, prefetch);
	out[P_READ] = (double)n / t;
	f[P_READ] = minflt() - f0;
	f0 = minflt();
	t = put_phase(&kv, pp->update, n, 1, 0);
	if (kv.pending) {
		pmem_persist(kv.pending, 8); /* the last slot (a close would) */
		kv.pending = NULL;
	}
	out[P_UPDATE] = (double)n / t;
	f[P_UPDATE] = minflt() - f0;
	/* untimed: every key holds its updated value */
	(void)get_phase(&kv, pp->fill, n, 1, 0);

	fprintf(stderr, "# rep %d %s: fill %.0f read %.0f update %.0f ops/s; "
			"page faults %ld / %ld / %ld; log tail %llu MiB\n",
			rep + 1, variant_names[variant], out[P_FILL],
			out[P_READ], out[P_UPDATE], f[P_FILL], f[P_READ],
			f[P_UPDATE], (unsigned long long)(kv.tail >> 20));
	unmap_remove(path, base, l.file_size);
	if (copy && munmap(copy, copy_bytes) != 0)
		die("munmap: %s", strerror(errno));
}

/* ---- micro-figures ---- */

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double
median(double *v, size_t n)
{
	qsort(v, n, sizeof(double), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Follows the chase from `p` MICRO_CHASE_LOADS times (after a warm-up of
 * `warm` loads: the TLB, the walk); returns ns per load. */
static double
chase(void *p, uint64_t warm)
{
	void *volatile sink;
	for (uint64_t i = 0; i < warm; i++)
		p = *(void **)p;
	double t0 = kv_now_s();
	for (uint64_t i = 0; i < MICRO_CHASE_LOADS; i++)
		p = *(void **)p;
	double ns = (kv_now_s() - t0) * 1e9 / MICRO_CHASE_LOADS;
	sink = p;
	(void)sink;
	return ns;
}

static void
run_micro(const char *path, int rep, double *fence_ns, double *miss_ns,
		double *miss_2m_ns)
{
	const uint64_t fence_bytes = MICRO_FENCE_OPS * 64;
	const uint64_t size = round_up(fence_bytes, SEGMENT_SIZE) +
		MICRO_CHASE_BYTES;
	int is_pmem;
	uint8_t *base = map_new(path, size, &is_pmem);
	memset(base, 0, size); /* pre-fault everything */

	/* fence: store 64 bytes, flush, drain; distinct lines */
	const uint64_t nb = MICRO_FENCE_OPS / MICRO_FENCE_BATCH;
	double *bt = malloc(nb * sizeof(double));
	if (bt == NULL)
		die("%s", "out of memory");
	uint64_t *line = (uint64_t *)base;
	for (uint64_t b = 0; b < nb; b++) {
		double t0 = kv_now_s();
		for (uint64_t i = 0; i < MICRO_FENCE_BATCH; i++) {
			uint64_t x = b * MICRO_FENCE_BATCH + i;
			uint64_t *p = line + x * 8;
			for (int w = 0; w < 8; w++)
				p[w] = x + (uint64_t)w;
			pmem_flush(p, 64);
			pmem_drain();
		}
		bt[b] = (kv_now_s() - t0) * 1e9 / MICRO_FENCE_BATCH;
	}
	*fence_ns = median(bt, nb);
	free(bt);

	/* random miss: one random cycle (Sattolo) over the region's lines */
	uint8_t *region = base + round_up(fence_bytes, SEGMENT_SIZE);
	const uint64_t nl = MICRO_CHASE_BYTES / 64;
	uint32_t *order = malloc(nl * sizeof(uint32_t));
	if (order == NULL)
		die("%s", "out of memory");
	for (uint64_t i = 0; i < nl; i++)
		order[i] = (uint32_t)i;
	uint64_t s = 0x5eed0000ULL + (uint64_t)rep;
	for (uint64_t i = nl - 1; i > 0; i--) {
		uint64_t j = kv_splitmix64(&s) % i; /* j < i: one cycle */
		uint32_t t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (uint64_t i = 0; i < nl; i++) {
		uint8_t *from = region + (uint64_t)order[i] * 64;
		uint8_t *to = region + (uint64_t)order[(i + 1) % nl] * 64;
		memcpy(from, &to, sizeof(to));
	}
	free(order);
	*miss_ns = chase(region, nl / 4);
	/* The region starts 2 MiB into the file; pmem_map_file maps at a 2 MiB
	 * aligned address when it can, so its blocks can be mapped huge. */
	*miss_2m_ns = -1;
	if ((uintptr_t)region % SEGMENT_SIZE == 0 &&
			madvise(region, MICRO_CHASE_BYTES, MADV_COLLAPSE) == 0)
		*miss_2m_ns = chase(region, nl / 4);

	fprintf(stderr, "# rep %d micro: fence %.1f ns, random miss %.1f ns "
			"(2 MiB pages: %.1f ns) (is_pmem=%d)\n", rep + 1, *fence_ns,
			*miss_ns, *miss_2m_ns, is_pmem);
	unmap_remove(path, base, size);
}

int
main(int argc, char *argv[])
{
	int reps = 1, opt;
	{
		/* ChecksumTests.pinned: key "key0000000000042", value bytes 0..127 */
		uint8_t k[16], v[128];
		memcpy(k, "key0000000000042", 16);
		for (int i = 0; i < 128; i++)
			v[i] = (uint8_t)i;
		if (record_checksum(16ULL | 128ULL << 32, k, 16, v, 128) != 0xB1294A6BD18B6365ULL) {
			fprintf(stderr, "kv_ceiling: the checksum differs from daxkv's\n");
			return 1;
		}
	}
	while ((opt = getopt(argc, argv, "r:")) != -1) {
		if (opt == 'r') {
			uint64_t r = kv_parse_u64(optarg, "-r");
			if (r < 1 || r > 100) {
				fprintf(stderr, "kv_ceiling: -r must be 1..100\n");
				return 2;
			}
			reps = (int)r;
		} else {
			fprintf(stderr, "usage: kv_ceiling [-r R] PATH [N]\n");
			return 2;
		}
	}
	if (argc - optind < 1 || argc - optind > 2) {
		fprintf(stderr, "usage: kv_ceiling [-r R] PATH [N]\n");
		return 2;
	}
	const char *path = argv[optind];
	uint64_t n = argc - optind == 2 ? kv_parse_u64(argv[optind + 1], "N")
		: 1000000;
	if (n == 0 || n > 9999999999999ULL || n > (1ULL << 40) / REC_SIZE) {
		fprintf(stderr, "kv_ceiling: N out of range\n");
		return 2;
	}
	struct stat st;
	if (stat(path, &st) == 0) {
		fprintf(stderr, "kv_ceiling: %s exists; remove it first\n", path);
		return 1;
	}
	if (getenv("PMEM_IS_PMEM_FORCE") == NULL)
		fprintf(stderr, "# kv_ceiling: warning: PMEM_IS_PMEM_FORCE "
				"unset; daxkv's figures are taken with =1\n");

	struct perms pp = {
		kv_permutation(n, KV_SEED_FILL),
		kv_permutation(n, KV_SEED_READ),
		kv_permutation(n, KV_SEED_UPDATE),
	};
	double *res = malloc((size_t)reps * NVARIANTS * NPHASES * sizeof(double));
	double *fence = malloc((size_t)reps * sizeof(double));
	double *miss = malloc((size_t)reps * sizeof(double));
	double *miss_2m = malloc((size_t)reps * sizeof(double));
	double *tmp = malloc((size_t)reps * sizeof(double));
	if (res == NULL || fence == NULL || miss == NULL || miss_2m == NULL ||
			tmp == NULL)
		die("%s", "out of memory");

	for (int r = 0; r < reps; r++) {
		for (int v = 0; v < NVARIANTS; v++)
			run_variant(path, n, v, &pp, r,
					&res[((size_t)r * NVARIANTS + v) * NPHASES]);
		run_micro(path, r, &fence[r], &miss[r], &miss_2m[r]);
	}

	for (int v = 0; v < NVARIANTS; v++)
		for (int ph = 0; ph < NPHASES; ph++) {
			for (int r = 0; r < reps; r++)
				tmp[r] = res[((size_t)r * NVARIANTS + v) * NPHASES + ph];
			printf("ceiling.kv.%s.%s %.0f ops/s\n", variant_names[v],
					phase_names[ph], median(tmp, reps));
		}
	printf("ceiling.fence_ns %.1f ns\n", median(fence, reps));
	printf("ceiling.random_miss_ns %.1f ns\n", median(miss, reps));
	int collapsed = 1;
	for (int r = 0; r < reps; r++)
		collapsed = collapsed && miss_2m[r] >= 0;
	if (collapsed)
		printf("ceiling.random_miss_2m_ns %.1f ns\n", median(miss_2m, reps));

	free(pp.fill);
	free(pp.read);
	free(pp.update);
	free(res);
	free(fence);
	free(miss);
	free(miss_2m);
	free(tmp);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "kv_ceiling: writing results to stdout failed\n");
		return 1;
	}
	return 0;
}
