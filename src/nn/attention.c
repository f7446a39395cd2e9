/* Scaled dot-product attention with grouped-query heads (query head h reads kv head
 * h / (H/Hkv)), causal or bidirectional. q, out are [B,S,H,dh] and k, v [B,S,Hkv,dh]
 * in token-major layout, so the [S,dh] matrix of one (batch, head) is strided: its rows
 * start at base + (b*S)*H*dh + h*dh with row stride H*dh. vpd_gemm takes that stride
 * as lda, so every product runs on the original buffers without copies.
 *
 * Forward per (b, h):  P = softmax(Q K^T / √dh  [masked j > i when causal]),  O = P V.
 * Backward per (b, h), with dP = dO V^T and dS = P ⊙ (dP − rowsum(P ⊙ dP)):
 *   dQ += dS K / √dh,  dK += dS^T Q / √dh,  dV += P^T dO.
 * Masked entries have P = 0, hence dS = 0, so no extra masking is needed backward.
 * Query heads sharing a kv head accumulate into the same dK, dV rows. */
#include <math.h>

#include "vpd/nn.h"
#include "rowops.h"
#include "scratch.h"

/* One [S,S] work matrix for dP/dS, kept per thread and grown only when a larger S is
 * seen, so the training step does no allocation after the first call. */
static _Thread_local nn_scratch work;

static real *attention_scratch(size_t n) { return nn_scratch_get(&work, n, "attention_backward scratch [S,S]"); }

void attention_forward(real *out, real *att, const real *q, const real *k, const real *v,
                       int B, int S, int H, int Hkv, int dh, bool causal) {
    VPD_ASSERT(Hkv > 0 && H % Hkv == 0, "attention: H=%d not a multiple of Hkv=%d", H, Hkv);
    int group = H / Hkv;
    int ldq = H * dh, ldk = Hkv * dh;
    real scale = (real)(1.0 / sqrt((double)dh));
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            int hk = h / group;
            const real *Q = q + (size_t)b * S * ldq + (size_t)h * dh;
            const real *K = k + (size_t)b * S * ldk + (size_t)hk * dh;
            const real *Vm = v + (size_t)b * S * ldk + (size_t)hk * dh;
            real *O = out + (size_t)b * S * ldq + (size_t)h * dh;
            real *P = att + ((size_t)b * H + h) * (size_t)S * S;
            /* P[S,S] = scale · Q K^T (the masked upper triangle is computed and then overwritten) */
            vpd_gemm(false, true, S, S, dh, scale, Q, ldq, K, ldk, 0, P, S);
            for (int i = 0; i < S; i++) {
                real *row = P + (size_t)i * S;
                int n = causal ? i + 1 : S;
                nn_softmax_inplace(row, n);
                for (int j = n; j < S; j++) row[j] = 0;
            }
            /* O[S,dh] = P V */
            vpd_gemm(false, false, S, dh, S, 1, P, S, Vm, ldk, 0, O, ldq);
        }
    }
}

void attention_backward(real *dq, real *dk, real *dv, const real *dout, const real *att,
                        const real *q, const real *k, const real *v,
                        int B, int S, int H, int Hkv, int dh, bool causal) {
    VPD_ASSERT(Hkv > 0 && H % Hkv == 0, "attention: H=%d not a multiple of Hkv=%d", H, Hkv);
    int group = H / Hkv;
    int ldq = H * dh, ldk = Hkv * dh;
    real scale = (real)(1.0 / sqrt((double)dh));
    real *dS = (dq || dk) ? attention_scratch((size_t)S * S) : NULL;
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            int hk = h / group;
            const real *Q = q + (size_t)b * S * ldq + (size_t)h * dh;
            const real *K = k + (size_t)b * S * ldk + (size_t)hk * dh;
            const real *Vm = v + (size_t)b * S * ldk + (size_t)hk * dh;
            const real *dO = dout + (size_t)b * S * ldq + (size_t)h * dh;
            const real *P = att + ((size_t)b * H + h) * (size_t)S * S;
            /* dV[S,dh] += P^T dO */
            if (dv) vpd_gemm(true, false, S, dh, S, 1, P, S, dO, ldq, 1,
                             dv + (size_t)b * S * ldk + (size_t)hk * dh, ldk);
            if (!dS) continue;
            /* dP[S,S] = dO V^T, then the softmax Jacobian row by row */
            vpd_gemm(false, true, S, S, dh, 1, dO, ldq, Vm, ldk, 0, dS, S);
            for (int i = 0; i < S; i++) {
                const real *p = P + (size_t)i * S;
                real *d = dS + (size_t)i * S;
                int n = causal ? i + 1 : S;
                double dot = 0;
                for (int j = 0; j < n; j++) dot += (double)p[j] * d[j];
                for (int j = 0; j < n; j++) d[j] = p[j] * (d[j] - (real)dot);
                for (int j = n; j < S; j++) d[j] = 0;
            }
            /* dQ[S,dh] += scale · dS K ;  dK[S,dh] += scale · dS^T Q */
            if (dq) vpd_gemm(false, false, S, dh, S, scale, dS, S, K, ldk, 1,
                             dq + (size_t)b * S * ldq + (size_t)h * dh, ldq);
            if (dk) vpd_gemm(true, false, S, dh, S, scale, dS, S, Q, ldq, 1,
                             dk + (size_t)b * S * ldk + (size_t)hk * dh, ldk);
        }
    }
}
