/* Row-block attention: the same function as attention_forward/backward (attention.c) without
 * the [B, H, S, S] probabilities. Memory is linear in S: the forward keeps only the row
 * log-sum-exp lse [B, H, S]; the backward recomputes the probabilities of one block of
 * `rows` query rows at a time (flash-attention style, every product a BLAS call per block).
 * Layout as attention.c: q, out, dq [B,S,H,dh] and k, v, dk, dv [B,S,Hkv,dh] token-major, so
 * the [S,dh] matrix of one (batch, head) starts at base + b·S·ld + h·dh with row stride ld
 * (ld = H·dh for q, Hkv·dh for k, v); query head h reads kv head h / (H/Hkv).
 *
 * Per (b, h) and row block I = [i0, i1) (R = i1 − i0 rows), visible columns J = [0, n),
 * n = i1 when causal (row i sees j <= i; the rest of the block's columns are masked), else S:
 *   forward:   Sc[R,n] = scale · Q_I K_Jᵀ,  lse_i = log Σ_j exp(Sc_ij),  P = exp(Sc − lse),
 *              O_I[R,dh] = P V_J
 *   backward:  P recomputed from Q_I, K_J and lse_I;  dV_J += Pᵀ dO_I;  dP[R,n] = dO_I V_Jᵀ;
 *              dS = P ⊙ (dP − rowsum(P ⊙ dP));  dQ_I += scale · dS K_J;  dK_J += scale · dSᵀ Q_I
 * scale = 1/√dh. Work per call: two [rows, S] matrices, kept per thread and grown only when a
 * larger rows·S is seen (no allocation in a training step after the first). */
#include <math.h>

#include "vpd/nn.h"
#include "rowops.h"
#include "scratch.h"

static _Thread_local nn_scratch work;

static real *scratch(size_t n) { return nn_scratch_get(&work, n, "row-block attention scratch [2, rows, S]"); }

/* P[R, n] (row stride n) ← exp(P − lse_i) on the visible columns, 0 on the masked ones */
static void probs_from_lse(real *P, const real *lse, int i0, int R, int n, bool causal) {
    for (int r = 0; r < R; r++) {
        real *row = P + (size_t)r * n;
        const int vis = causal ? i0 + r + 1 : n;
        nn_exp_shift(row, lse[i0 + r], vis);
        for (int j = vis; j < n; j++) row[j] = 0;
    }
}

void attention_rows_forward(real *out, real *lse, const real *q, const real *k, const real *v, int B, int S, int H,
                            int Hkv, int dh, bool causal, int rows) {
    VPD_ASSERT(Hkv > 0 && H % Hkv == 0, "attention_rows: H=%d not a multiple of Hkv=%d", H, Hkv);
    if (rows < 1) rows = 1;
    if (rows > S) rows = S;
    const int group = H / Hkv, ldq = H * dh, ldk = Hkv * dh;
    const real scale = (real)(1.0 / sqrt((double)dh));
    real *P = scratch((size_t)2 * rows * S);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const int hk = h / group;
            const real *Q = q + (size_t)b * S * ldq + (size_t)h * dh;
            const real *K = k + (size_t)b * S * ldk + (size_t)hk * dh;
            const real *Vm = v + (size_t)b * S * ldk + (size_t)hk * dh;
            real *O = out + (size_t)b * S * ldq + (size_t)h * dh;
            real *L = lse + ((size_t)b * H + h) * (size_t)S;
            for (int i0 = 0; i0 < S; i0 += rows) {
                const int R = S - i0 < rows ? S - i0 : rows, n = causal ? i0 + R : S;
                /* Sc[R, n] = scale · Q_I K_Jᵀ */
                vpd_gemm(false, true, R, n, dh, scale, Q + (size_t)i0 * ldq, ldq, K, ldk, 0, P, n);
                for (int r = 0; r < R; r++) {
                    real *row = P + (size_t)r * n;
                    const int vis = causal ? i0 + r + 1 : n;
                    L[i0 + r] = (real)nn_softmax_inplace(row, vis);
                    for (int j = vis; j < n; j++) row[j] = 0;
                }
                /* O_I[R, dh] = P V_J */
                vpd_gemm(false, false, R, dh, n, 1, P, n, Vm, ldk, 0, O + (size_t)i0 * ldq, ldq);
            }
        }
}

void attention_rows_backward(real *dq, real *dk, real *dv, const real *dout, const real *lse, const real *q,
                             const real *k, const real *v, int B, int S, int H, int Hkv, int dh, bool causal, int rows) {
    VPD_ASSERT(Hkv > 0 && H % Hkv == 0, "attention_rows: H=%d not a multiple of Hkv=%d", H, Hkv);
    if (!dq && !dk && !dv) return;
    if (rows < 1) rows = 1;
    if (rows > S) rows = S;
    const int group = H / Hkv, ldq = H * dh, ldk = Hkv * dh;
    const real scale = (real)(1.0 / sqrt((double)dh));
    real *P = scratch((size_t)2 * rows * S), *dS = P + (size_t)rows * S;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const int hk = h / group;
            const real *Q = q + (size_t)b * S * ldq + (size_t)h * dh;
            const real *K = k + (size_t)b * S * ldk + (size_t)hk * dh;
            const real *Vm = v + (size_t)b * S * ldk + (size_t)hk * dh;
            const real *dO = dout + (size_t)b * S * ldq + (size_t)h * dh;
            const real *L = lse + ((size_t)b * H + h) * (size_t)S;
            for (int i0 = 0; i0 < S; i0 += rows) {
                const int R = S - i0 < rows ? S - i0 : rows, n = causal ? i0 + R : S;
                vpd_gemm(false, true, R, n, dh, scale, Q + (size_t)i0 * ldq, ldq, K, ldk, 0, P, n);
                probs_from_lse(P, L, i0, R, n, causal);
                /* dV_J[n, dh] += Pᵀ dO_I */
                if (dv) vpd_gemm(true, false, n, dh, R, 1, P, n, dO + (size_t)i0 * ldq, ldq, 1,
                                 dv + (size_t)b * S * ldk + (size_t)hk * dh, ldk);
                if (!dq && !dk) continue;
                /* dP[R, n] = dO_I V_Jᵀ, then dS = P ⊙ (dP − rowsum(P ⊙ dP)) */
                vpd_gemm(false, true, R, n, dh, 1, dO + (size_t)i0 * ldq, ldq, Vm, ldk, 0, dS, n);
                for (int r = 0; r < R; r++) {
                    const real *p = P + (size_t)r * n;
                    real *d = dS + (size_t)r * n;
                    double dot = 0;
                    for (int j = 0; j < n; j++) dot += (double)p[j] * d[j];
                    const real dt = (real)dot;
                    for (int j = 0; j < n; j++) d[j] = p[j] * (d[j] - dt); /* masked: p = 0 */
                }
                /* dQ_I[R, dh] += scale · dS K_J;  dK_J[n, dh] += scale · dSᵀ Q_I */
                if (dq) vpd_gemm(false, false, R, dh, n, scale, dS, n, K, ldk, 1,
                                 dq + (size_t)b * S * ldq + (size_t)i0 * ldq + (size_t)h * dh, ldq);
                if (dk) vpd_gemm(true, false, n, dh, R, scale, dS, n, Q + (size_t)i0 * ldq, ldq, 1,
                                 dk + (size_t)b * S * ldk + (size_t)hk * dh, ldk);
            }
        }
}
