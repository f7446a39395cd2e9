/* Row kernels shared by the softmax-like loops of src/nn (losses.c, attention.c,
 * attention_rows.c, attention_row.c): a vectorisable exp for non-positive arguments, a row's
 * max and exp-sum in blocked lanes. Static inline: each VPD_HOT caller gets them inlined into
 * its AVX2 and AVX-512 clones. Sums are accumulated in double. */
#ifndef VPD_NN_ROWOPS_H
#define VPD_NN_ROWOPS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "vpd/nn.h"
#include "core/hot.h"

/* exp(x) for x ≤ 0 in `real`, inline and branch-free so the loops below vectorise. The float
 * build: range reduction x = n ln2 + r, |r| ≤ ln2/2, a degree-7 Taylor polynomial (truncation
 * 5e-9 relative) and 2^n built in the exponent bits: ≤ 2 ulp from expf. x is clamped at −87
 * (exp = 1.6e-38, i.e. 0 next to a row's largest term 1). The double build calls libm. */
static inline real exp_nonpos(real x) {
#if VPD_REAL_IS_DOUBLE
    return exp(x);
#else
    x = x < -87.0f ? -87.0f : x;
    float kf = x * 1.44269504f + 12582912.0f; /* 1.5·2^23: the low mantissa bits hold round(x/ln2) */
    float n = kf - 12582912.0f;
    float r = x - n * 0.693145752f; /* ln2 split hi/lo: n·hi is exact */
    r = r - n * 1.42860677e-6f;
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t bits;
    memcpy(&bits, &kf, sizeof bits);
    bits = (bits + 127u) << 23; /* 2^n; the 1.5·2^23 offset shifts out */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
#endif
}

#define KW 16 /* lanes of the blocked reductions: partial sums the compiler keeps in vectors */

/* max of a row. The float build compares the floats as integers (the sign-magnitude bits
 * mapped to a two's-complement order), which vectorises without -ffinite-math-only: a float
 * `a > m ? a : m` reduction does not. NaN logits propagate as NaN losses either way. */
#if VPD_REAL_IS_DOUBLE
VPD_INLINE static real row_max(const real *l, int V) {
    real mx = l[0];
    for (int j = 1; j < V; j++) mx = l[j] > mx ? l[j] : mx;
    return mx;
}
#else
static inline int32_t float_key(float x) {
    int32_t i;
    memcpy(&i, &x, sizeof i);
    return i ^ ((i >> 31) & 0x7fffffff); /* an involution: it also maps a key back */
}
VPD_INLINE static real row_max(const real *l, int V) {
    int32_t m = float_key(l[0]);
    for (int j = 1; j < V; j++) { /* vectorised: row_max */
        int32_t k = float_key(l[j]);
        m = k > m ? k : m;
    }
    m = m ^ ((m >> 31) & 0x7fffffff);
    float mx;
    memcpy(&mx, &m, sizeof mx);
    return mx;
}
#endif

/* e_j = exp(l_j − mx) into e; returns Σ e_j (double) */
VPD_INLINE static double row_exp_sum(real *e, const real *l, real mx, int V) {
    double acc[KW] = {0};
    int j = 0;
    for (; j + KW <= V; j += KW)
        for (int k = 0; k < KW; k++) { /* vectorised: row_exp_sum */
            e[j + k] = exp_nonpos(l[j + k] - mx);
            acc[k] += (double)e[j + k];
        }
    double sum = 0;
    for (; j < V; j++) {
        e[j] = exp_nonpos(l[j] - mx);
        sum += (double)e[j];
    }
    for (int k = 0; k < KW; k++) sum += acc[k];
    return sum;
}

/* Out-of-line (VPD_HOT, src/nn/rowops.c) for the attention kernels:
 * nn_softmax_inplace: row[0..n) ← softmax(row[0..n)); returns the log-sum-exp (max + log Σ).
 * nn_exp_shift: row[0..n) ← exp(row[0..n) − l), the probabilities from a stored log-sum-exp. */
double nn_softmax_inplace(real *row, int n);
void nn_exp_shift(real *row, real l, int n);

#endif
