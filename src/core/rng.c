/* Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3",
 * SC'11; constants and round function of Random123) and the element-indexed helpers.
 * Element i of a stream is word i%4 of the block Philox(ctr = {i/4 lo, i/4 hi, c2, c3}, key):
 * a pure function of (key, c2, c3, i), so draws do not depend on how work is split. */
#include <math.h>

#include "vpd/core.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void vpd_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        if (r > 0) { k0 += PHILOX_W0; k1 += PHILOX_W1; }
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

vpd_rng vpd_rng_make(uint64_t seed, uint32_t purpose, uint32_t c2, uint32_t c3) {
    vpd_rng r;
    /* fold the 64-bit seed into the first key word; the purpose gets its own word so
     * streams of different purposes never share a key */
    r.key[0] = (uint32_t)seed ^ (uint32_t)(seed >> 32) * 0x85EBCA6Bu;
    r.key[1] = purpose;
    r.c2 = c2;
    r.c3 = c3;
    return r;
}

static inline void rng_block(const vpd_rng *r, uint64_t block, uint32_t out[4]) {
    uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), r->c2, r->c3};
    vpd_philox4x32_10(ctr, r->key, out);
}

uint32_t vpd_rng_u32(const vpd_rng *r, uint64_t i) {
    uint32_t out[4];
    rng_block(r, i >> 2, out);
    return out[i & 3];
}

static inline real u24(uint32_t w) { return (real)((double)(w >> 8) * (1.0 / 16777216.0)); }
/* in (0, 1]: safe for log */
static inline double u24_open0(uint32_t w) { return ((double)(w >> 8) + 1.0) * (1.0 / 16777216.0); }

real vpd_rng_uniform(const vpd_rng *r, uint64_t i) { return u24(vpd_rng_u32(r, i)); }

static inline double box_muller(uint32_t w0, uint32_t w1) {
    double u1 = u24_open0(w0), u2 = u24_open0(w1);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

real vpd_rng_normal(const vpd_rng *r, uint64_t i) {
    uint32_t out[4];
    rng_block(r, i >> 1, out);
    int lane = (int)(i & 1) * 2;
    return (real)box_muller(out[lane], out[lane + 1]);
}

int vpd_rng_bernoulli(const vpd_rng *r, uint64_t i, double p) { return (double)vpd_rng_uniform(r, i) < p; }

/* 16 consecutive Philox blocks at once, lane-parallel so the compiler vectorises the
 * rounds (32×32→64-bit multiplies); the same arithmetic as vpd_philox4x32_10 per block. */
enum { PHILOX_LANES = 16 };
static void philox_blocks16(const vpd_rng *r, uint64_t block0, uint32_t out[4][PHILOX_LANES]) {
    uint32_t c0[PHILOX_LANES], c1[PHILOX_LANES], c2[PHILOX_LANES], c3[PHILOX_LANES];
    for (int j = 0; j < PHILOX_LANES; j++) {
        uint64_t b = block0 + (uint64_t)j;
        c0[j] = (uint32_t)b;
        c1[j] = (uint32_t)(b >> 32);
        c2[j] = r->c2;
        c3[j] = r->c3;
    }
    uint32_t k0 = r->key[0], k1 = r->key[1];
    for (int rd = 0; rd < 10; rd++) {
        if (rd > 0) { k0 += PHILOX_W0; k1 += PHILOX_W1; }
        for (int j = 0; j < PHILOX_LANES; j++) {
            uint64_t p0 = (uint64_t)PHILOX_M0 * c0[j], p1 = (uint64_t)PHILOX_M1 * c2[j];
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[j] ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3[j] ^ k1;
            c1[j] = (uint32_t)p1;
            c3[j] = (uint32_t)p0;
            c0[j] = n0;
            c2[j] = n2;
        }
    }
    for (int j = 0; j < PHILOX_LANES; j++) {
        out[0][j] = c0[j];
        out[1][j] = c1[j];
        out[2][j] = c2[j];
        out[3][j] = c3[j];
    }
}

void vpd_rng_fill_uniform(const vpd_rng *r, uint64_t first, size_t n, real *out) {
    size_t k = 0;
    uint32_t w[4];
    /* bulk: whole groups of 16 blocks (64 values) once the index is block-aligned */
    while (k < n && ((first + k) & 3)) {
        uint64_t i = first + k;
        rng_block(r, i >> 2, w);
        for (unsigned lane = (unsigned)(i & 3); lane < 4 && k < n; lane++) out[k++] = u24(w[lane]);
    }
    while (n - k >= 4 * PHILOX_LANES) {
        uint32_t wb[4][PHILOX_LANES];
        philox_blocks16(r, (first + k) >> 2, wb);
        for (int j = 0; j < PHILOX_LANES; j++)
            for (int lane = 0; lane < 4; lane++) out[k + 4 * (size_t)j + lane] = u24(wb[lane][j]);
        k += 4 * PHILOX_LANES;
    }
    while (k < n) {
        uint64_t i = first + k;
        rng_block(r, i >> 2, w);
        for (unsigned lane = (unsigned)(i & 3); lane < 4 && k < n; lane++) out[k++] = u24(w[lane]);
    }
}

void vpd_rng_fill_normal(const vpd_rng *r, uint64_t first, size_t n, real *out) {
    size_t k = 0;
    uint32_t w[4];
    while (k < n) {
        uint64_t i = first + k;
        rng_block(r, i >> 1, w);
        for (unsigned pair = (unsigned)(i & 1); pair < 2 && k < n; pair++)
            out[k++] = (real)box_muller(w[2 * pair], w[2 * pair + 1]);
    }
}

uint32_t vpd_rng_below(const vpd_rng *r, uint64_t i, uint32_t n) {
    return (uint32_t)(((uint64_t)vpd_rng_u32(r, i) * n) >> 32);
}

void vpd_rng_k_subset(const vpd_rng *r, uint64_t draw, int n, int k, uint8_t *mask) {
    int idx[256];
    VPD_ASSERT(n <= 256 && k >= 0 && k <= n, "k-subset: n=%d k=%d", n, k);
    for (int j = 0; j < n; j++) { idx[j] = j; mask[j] = 0; }
    for (int j = 0; j < k; j++) { /* partial Fisher-Yates: position j gets a uniform pick of the rest */
        uint32_t pick = (uint32_t)j + vpd_rng_below(r, draw * (uint64_t)n + (uint64_t)j, (uint32_t)(n - j));
        int t = idx[j]; idx[j] = idx[pick]; idx[pick] = t;
        mask[idx[j]] = 1;
    }
}
