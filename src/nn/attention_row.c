/* One query row of causal attention for n gradient copies (include/vpd/nn.h
 * attention_row_forward / attention_row_backward): vpd attrib's row-restricted backward, where
 * the gradient of the attention output lives at one row t only.
 * Layout: q_t [H, dh] (one row of the forward's [S, H, dh] q), k, v [t+1, Hkv, dh] (rows 0..t,
 * row stride ldk = Hkv·dh); query head h reads kv head h / (H/Hkv); scale = 1/√dh.
 * Per head h (kv head hk), p = softmax_j≤t(scale · K q_h) [t+1] (as attention_forward:
 * max-shifted, sum in double), then for the n copies (dO [n, dh] with row stride H·dh):
 *   dP[n, t+1] = dO Vᵀ,  dS = p ⊙ (dP − rowsum(p ⊙ dP)),
 *   dq_h[n, dh] += scale · dS K,  dv_j += p_j · dO_b,  dk_j += scale · dS_bj · q_h  (j >= t−R+1).
 * dP and dq are BLAS products; the two rank-one updates are vectorised loops over dh. */
#include <math.h>

#include "vpd/nn.h"
#include "rowops.h"
#include "scratch.h"

static _Thread_local nn_scratch work;

static real *scratch(size_t n) { return nn_scratch_get(&work, n, "attention row scratch [(n+1), t+1]"); }

/* p[t+1] = softmax(scale · K q) over the keys 0..t of kv head hk */
static void row_probs(real *p, const real *qh, const real *K, int t, int ldk, int dh, real scale) {
    const int n = t + 1;
    vpd_gemm(false, true, 1, n, dh, scale, qh, dh, K, ldk, 0, p, n);
    nn_softmax_inplace(p, n);
}

void attention_row_forward(real *out, const real *q, const real *k, const real *v, int t, int H, int Hkv, int dh) {
    VPD_ASSERT(Hkv > 0 && H % Hkv == 0 && t >= 0, "attention_row: H=%d, Hkv=%d, t=%d", H, Hkv, t);
    const int group = H / Hkv, ldk = Hkv * dh;
    const real scale = (real)(1.0 / sqrt((double)dh));
    real *p = scratch((size_t)t + 1);
    for (int h = 0; h < H; h++) {
        const int hk = h / group;
        row_probs(p, q + (size_t)h * dh, k + (size_t)hk * dh, t, ldk, dh, scale);
        /* out_h[dh] = p V */
        vpd_gemm(false, false, 1, dh, t + 1, 1, p, t + 1, v + (size_t)hk * dh, ldk, 0, out + (size_t)h * dh, dh);
    }
}

void attention_row_backward(real *dq, real *dk, real *dv, const real *dout, const real *q, const real *k,
                            const real *v, int t, int n, int R, int H, int Hkv, int dh) {
    VPD_ASSERT(Hkv > 0 && H % Hkv == 0 && t >= 0 && n >= 1, "attention_row: H=%d, Hkv=%d, t=%d, n=%d", H, Hkv, t, n);
    VPD_ASSERT(R >= 1 && R <= t + 1, "attention_row: %d key rows of %d", R, t + 1);
    if (!dq && !dk && !dv) return;
    const int group = H / Hkv, ldq = H * dh, ldk = Hkv * dh, T = t + 1, j0 = T - R;
    const real scale = (real)(1.0 / sqrt((double)dh));
    real *p = scratch((size_t)T * (size_t)(n + 1)), *dS = p + T;
    for (int h = 0; h < H; h++) {
        const int hk = h / group;
        const real *qh = q + (size_t)h * dh, *K = k + (size_t)hk * dh, *Vm = v + (size_t)hk * dh;
        const real *dO = dout + (size_t)h * dh;
        row_probs(p, qh, K, t, ldk, dh, scale);
        if (dv) /* dv_j += p_j dO_b for the R last rows */
            for (int b = 0; b < n; b++) {
                const real *o = dO + (size_t)b * ldq;
                for (int r = 0; r < R; r++) {
                    real *d = dv + ((size_t)b * R + r) * ldk + (size_t)hk * dh;
                    const real pj = p[j0 + r];
                    for (int i = 0; i < dh; i++) d[i] += pj * o[i];
                }
            }
        if (!dq && !dk) continue;
        /* dP[n, T] = dO Vᵀ, then dS = p ⊙ (dP − rowsum(p ⊙ dP)) */
        vpd_gemm(false, true, n, T, dh, 1, dO, ldq, Vm, ldk, 0, dS, T);
        for (int b = 0; b < n; b++) {
            real *d = dS + (size_t)b * T;
            double dot = 0;
            for (int j = 0; j < T; j++) dot += (double)p[j] * d[j];
            const real dt = (real)dot;
            for (int j = 0; j < T; j++) d[j] = p[j] * (d[j] - dt);
        }
        /* dq_h[n, dh] += scale · dS K */
        if (dq) vpd_gemm(false, false, n, dh, T, scale, dS, T, K, ldk, 1, dq + (size_t)h * dh, ldq);
        if (dk) /* dk_j += scale · dS_bj q_h for the R last rows */
            for (int b = 0; b < n; b++)
                for (int r = 0; r < R; r++) {
                    real *d = dk + ((size_t)b * R + r) * ldk + (size_t)hk * dh;
                    const real s = scale * dS[(size_t)b * T + j0 + r];
                    for (int i = 0; i < dh; i++) d[i] += s * qh[i];
                }
    }
}
