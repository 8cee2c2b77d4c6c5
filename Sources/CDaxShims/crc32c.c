#include "CDaxShims.h"

#include <pthread.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

static uint32_t table[256];
static int table_ready;

static void build_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1; /* reflected Castagnoli polynomial */
        table[i] = c;
    }
    __atomic_store_n(&table_ready, 1, __ATOMIC_RELEASE);
}

static uint32_t crc32c_soft(uint32_t crc, const unsigned char *p, size_t n) {
    if (!__atomic_load_n(&table_ready, __ATOMIC_ACQUIRE))
        build_table(); /* idempotent: racing builders write the same values */
    while (n--)
        crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
/* The crc32 instruction has a latency of three cycles and a throughput of one, so three
   independent streams over three adjacent blocks run about three times as fast as one.
   The streams are then combined: the CRC register after A||B, started from r, is the
   register after A (from r) advanced over |B| zero bytes, xor the register after B
   started from 0. Advancing over a fixed power-of-two number of zero bytes is a linear
   map of the 32-bit register, applied through four byte tables (Mark Adler's method). */
#define CRC32C_LONG 8192 /* bytes per stream in a long triple */
#define CRC32C_SHORT 256 /* bytes per stream in a short triple */

static uint32_t zeros_long[4][256];
static uint32_t zeros_short[4][256];
static pthread_once_t zeros_once = PTHREAD_ONCE_INIT;

/* mat (32 columns over GF(2)) times vec. */
static uint32_t gf2_times(const uint32_t *mat, uint32_t vec) {
    uint32_t sum = 0;
    while (vec) {
        if (vec & 1)
            sum ^= *mat;
        vec >>= 1;
        mat++;
    }
    return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat) {
    for (int n = 0; n < 32; n++)
        square[n] = gf2_times(mat, mat[n]);
}

/* The operator that advances a register over `len` zero bytes; len a power of two. */
static void zeros_operator(uint32_t *even, size_t len) {
    uint32_t odd[32];
    odd[0] = 0x82F63B78u; /* one zero bit */
    uint32_t row = 1;
    for (int n = 1; n < 32; n++) {
        odd[n] = row;
        row <<= 1;
    }
    gf2_square(even, odd); /* two zero bits */
    gf2_square(odd, even); /* four zero bits */
    do {                   /* then one byte, two bytes, ... in even, odd, even, ... */
        gf2_square(even, odd);
        len >>= 1;
        if (len == 0)
            return;
        gf2_square(odd, even);
        len >>= 1;
    } while (len);
    for (int n = 0; n < 32; n++)
        even[n] = odd[n];
}

static void zeros_table(uint32_t zeros[4][256], size_t len) {
    uint32_t op[32];
    zeros_operator(op, len);
    for (uint32_t n = 0; n < 256; n++) {
        zeros[0][n] = gf2_times(op, n);
        zeros[1][n] = gf2_times(op, n << 8);
        zeros[2][n] = gf2_times(op, n << 16);
        zeros[3][n] = gf2_times(op, n << 24);
    }
}

static void build_zeros(void) {
    zeros_table(zeros_long, CRC32C_LONG);
    zeros_table(zeros_short, CRC32C_SHORT);
}

static uint64_t shift(uint32_t zeros[4][256], uint64_t crc) {
    return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^ zeros[2][(crc >> 16) & 0xff] ^
           zeros[3][(crc >> 24) & 0xff];
}

static inline uint64_t load64(const unsigned char *p) {
    uint64_t v;
    __builtin_memcpy(&v, p, 8);
    return v;
}

/* Three streams of `block` bytes each from p, combined into crc. */
__attribute__((target("sse4.2")))
static uint64_t crc32c_triple(uint64_t crc, const unsigned char *p, size_t block, uint32_t zeros[4][256]) {
    uint64_t c1 = 0, c2 = 0;
    const unsigned char *end = p + block;
    do {
        crc = _mm_crc32_u64(crc, load64(p));
        c1 = _mm_crc32_u64(c1, load64(p + block));
        c2 = _mm_crc32_u64(c2, load64(p + 2 * block));
        p += 8;
    } while (p < end);
    crc = shift(zeros, crc) ^ c1;
    return shift(zeros, crc) ^ c2;
}

__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = crc;
    if (n >= 3 * CRC32C_SHORT) {
        pthread_once(&zeros_once, build_zeros);
        for (; n >= 3 * CRC32C_LONG; p += 3 * CRC32C_LONG, n -= 3 * CRC32C_LONG)
            c = crc32c_triple(c, p, CRC32C_LONG, zeros_long);
        for (; n >= 3 * CRC32C_SHORT; p += 3 * CRC32C_SHORT, n -= 3 * CRC32C_SHORT)
            c = crc32c_triple(c, p, CRC32C_SHORT, zeros_short);
    }
    while (n >= 8) {
        c = _mm_crc32_u64(c, load64(p));
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--)
        c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}
#endif

uint32_t CDaxShims_crc32c(uint32_t crc, const void *data, size_t length) {
    crc = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2"))
        return ~crc32c_hw(crc, data, length);
#endif
    return ~crc32c_soft(crc, data, length);
}
