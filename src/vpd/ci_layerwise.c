/* Layerwise CI functions (VPD_METHOD.md §2; spd MLPCiFn, VectorMLPCiFn,
 * VectorSharedMLPCiFn): one network per decomposed layer.
 *
 * mlp and vector_mlp hold one small MLP per component, stored as spd's ParallelLinear
 * (W [C, in, out], b [C, out]); activations are [N, C, h] (row, component, unit), so
 * all components of a row are one contiguous strip. The scalar-input first Linear of
 * mlp (1 -> h) and the scalar-output final Linear of both (h -> 1) are element-wise
 * (a broadcast multiply and a batched dot product over the [C, h] layout) instead of C
 * matrix products with a dimension of 1. Hidden-to-hidden Linears, and vector_mlp's
 * D -> h first Linear, are one strided gemm per component (N rows each).
 * shared_mlp is the dense kernel of ci_global.c with a single block.
 *
 * The common case mlp with one hidden layer (every toy config) runs fused, one row at a
 * time: scalar -> h, bias, GELU and h -> 1 in forward, and their backward with all the
 * parameter-gradient accumulations, so a row's [C, h] strip stays in L1 instead of five
 * passes over [N, C, h] arrays. Rows are visited in order and every accumulator receives
 * the same terms in the same order as the unfused code, so results are bit-identical. */
#include <string.h>

#include "vpd/ci_internal.h"
#include "vpd/nn.h"
#include "core/hot.h"

/* mlp with one hidden layer, fused per row (see the top of the file) */
VPD_HOT static void mlp1_forward(vpd_ci_fn *ci, int l, real *z, const real *in, int N) {
    const vpd_ci_net *net = &ci->nets[l];
    const int C = ci->layers[l].C, h = ci->hidden[0];
    const size_t ld = (size_t)C * h;
    real *pre = ci_pre(ci, net, 0), *post = ci_post(ci, net, 0);
    const real *W0 = ci_W(ci, net, 0), *b0 = ci_b(ci, net, 0), *Wf = ci_W(ci, net, 1), *bf = ci_b(ci, net, 1);
    for (int n = 0; n < N; n++) {
        const real *a = in + (size_t)n * C;
        real *p = pre + (size_t)n * ld, *q = post + (size_t)n * ld, *zr = z + (size_t)n * C;
        for (int c = 0; c < C; c++) {
            const real ac = a[c], *wc = W0 + (size_t)c * h, *bc = b0 + (size_t)c * h;
            real *pc = p + (size_t)c * h;
            for (int j = 0; j < h; j++) pc[j] = ac * wc[j] + bc[j];
        }
        gelu_forward_deriv(q, p, p, ld, GELU_ERF); /* p now holds GELU'(pre) for the backward */
        for (int c = 0; c < C; c++) {
            const real *qc = q + (size_t)c * h, *wc = Wf + (size_t)c * h;
            real s = bf[c];
            for (int j = 0; j < h; j++) s += qc[j] * wc[j];
            zr[c] = s;
        }
    }
}

VPD_HOT static void mlp1_backward(vpd_ci_fn *ci, int l, real *din, const real *dz, const real *in, int N) {
    const vpd_ci_net *net = &ci->nets[l];
    const int C = ci->layers[l].C, h = ci->hidden[0];
    const size_t ld = (size_t)C * h;
    const real *pre = ci_pre(ci, net, 0), *post = ci_post(ci, net, 0);
    const real *W0 = ci_W(ci, net, 0), *Wf = ci_W(ci, net, 1);
    real *dW0 = ci_dW(ci, net, 0), *db0 = ci_db(ci, net, 0), *dWf = ci_dW(ci, net, 1), *dbf = ci_db(ci, net, 1);
    real *dq = ci_scratch(ci, 0), *dp = ci_scratch(ci, 1); /* one row of each */
    for (int n = 0; n < N; n++) {
        const real *a = in + (size_t)n * C, *g = dz + (size_t)n * C;
        const real *p = pre + (size_t)n * ld, *q = post + (size_t)n * ld;
        /* h -> 1 */
        for (int c = 0; c < C; c++) {
            const real gc = g[c], *qc = q + (size_t)c * h, *wc = Wf + (size_t)c * h;
            real *dwc = dWf + (size_t)c * h, *dqc = dq + (size_t)c * h;
            dbf[c] += gc;
            for (int j = 0; j < h; j++) {
                dwc[j] += gc * qc[j];
                dqc[j] = gc * wc[j];
            }
        }
        /* GELU, hidden bias */
        memset(dp, 0, sizeof(real) * ld);
        gelu_backward_deriv(dp, dq, p, ld);
        for (size_t j = 0; j < ld; j++) db0[j] += dp[j];
        /* 1 -> h */
        real *da = din ? din + (size_t)n * C : NULL;
        for (int c = 0; c < C; c++) {
            const real ac = a[c], *dpc = dp + (size_t)c * h, *wc = W0 + (size_t)c * h;
            real *dwc = dW0 + (size_t)c * h, s = 0;
            for (int j = 0; j < h; j++) dwc[j] += ac * dpc[j];
            for (int j = 0; j < h; j++) s += dpc[j] * wc[j];
            if (da) da[c] += s;
        }
    }
}

static void parallel_forward(vpd_ci_fn *ci, int l, real *z, const real *in, int N) {
    const vpd_ci_net *net = &ci->nets[l];
    int C = ci->layers[l].C, D = ci->layers[l].d_in, nh = ci->n_hidden;
    if (ci->type == VPD_CI_MLP && nh == 1) {
        mlp1_forward(ci, l, z, in, N);
        return;
    }
    for (int k = 0; k < nh; k++) {
        int h = ci->hidden[k];
        size_t ld = (size_t)C * h;
        real *pre = ci_pre(ci, net, k), *post = ci_post(ci, net, k);
        const real *W = ci_W(ci, net, k);
        if (k == 0 && ci->type == VPD_CI_MLP) {
            /* 1 -> h: pre[n, c, j] = a[n, c] W0[c, j] (+ b below) */
            for (int n = 0; n < N; n++) {
                const real *a = in + (size_t)n * C;
                real *p = pre + (size_t)n * ld;
                for (int c = 0; c < C; c++)
                    for (int j = 0; j < h; j++) p[(size_t)c * h + j] = a[c] * W[(size_t)c * h + j];
            }
        } else if (k == 0) {
            /* vector_mlp D -> h: pre[:, c, :] = x W0[c] */
            for (int c = 0; c < C; c++)
                vpd_gemm(false, false, N, h, D, 1, in, D, W + (size_t)c * D * h, h, 0, pre + (size_t)c * h, (int)ld);
        } else {
            int hp = ci->hidden[k - 1];
            const real *pp = ci_post(ci, net, k - 1);
            for (int c = 0; c < C; c++)
                vpd_gemm(false, false, N, h, hp, 1, pp + (size_t)c * hp, C * hp, W + (size_t)c * hp * h, h, 0,
                         pre + (size_t)c * h, (int)ld);
        }
        vpd_ci_add_bias(pre, ci_b(ci, net, k), N, (int)ld); /* b [C, h] is one row of the [N, C*h] layout */
        gelu_forward_deriv(post, pre, pre, (size_t)N * ld, GELU_ERF); /* pre := GELU'(pre) */
    }
    /* h -> 1: z[n, c] = Σ_j post[n, c, j] Wf[c, j] + bf[c] */
    int h = ci->hidden[nh - 1];
    const real *post = ci_post(ci, net, nh - 1), *Wf = ci_W(ci, net, nh), *bf = ci_b(ci, net, nh);
    for (int n = 0; n < N; n++) {
        const real *p = post + (size_t)n * C * h;
        real *zr = z + (size_t)n * C;
        for (int c = 0; c < C; c++) {
            const real *pc = p + (size_t)c * h, *wc = Wf + (size_t)c * h;
            real s = bf[c];
            for (int j = 0; j < h; j++) s += pc[j] * wc[j];
            zr[c] = s;
        }
    }
}

static void parallel_backward(vpd_ci_fn *ci, int l, real *din, const real *dz, const real *in, int N) {
    const vpd_ci_net *net = &ci->nets[l];
    int C = ci->layers[l].C, D = ci->layers[l].d_in, nh = ci->n_hidden;
    if (ci->type == VPD_CI_MLP && nh == 1) {
        mlp1_backward(ci, l, din, dz, in, N);
        return;
    }
    real *dpost = ci_scratch(ci, 0), *dpre = ci_scratch(ci, 1);

    /* final h -> 1 */
    int h = ci->hidden[nh - 1];
    const real *post = ci_post(ci, net, nh - 1), *Wf = ci_W(ci, net, nh);
    real *dWf = ci_dW(ci, net, nh), *dbf = ci_db(ci, net, nh);
    for (int n = 0; n < N; n++) {
        const real *p = post + (size_t)n * C * h, *g = dz + (size_t)n * C;
        real *dp = dpost + (size_t)n * C * h;
        for (int c = 0; c < C; c++) {
            real gc = g[c];
            dbf[c] += gc;
            for (int j = 0; j < h; j++) {
                dWf[(size_t)c * h + j] += gc * p[(size_t)c * h + j];
                dp[(size_t)c * h + j] = gc * Wf[(size_t)c * h + j];
            }
        }
    }
    for (int k = nh - 1; k >= 0; k--) {
        h = ci->hidden[k];
        size_t ld = (size_t)C * h;
        memset(dpre, 0, sizeof(real) * (size_t)N * ld);
        gelu_backward_deriv(dpre, dpost, ci_pre(ci, net, k), (size_t)N * ld);
        vpd_ci_colsum_add(ci_db(ci, net, k), dpre, N, (int)ld);
        const real *W = ci_W(ci, net, k);
        real *dW = ci_dW(ci, net, k);
        if (k > 0) {
            int hp = ci->hidden[k - 1];
            const real *pp = ci_post(ci, net, k - 1);
            for (int c = 0; c < C; c++) {
                const real *Wc = W + (size_t)c * hp * h;
                vpd_gemm(true, false, hp, h, N, 1, pp + (size_t)c * hp, C * hp, dpre + (size_t)c * h, (int)ld, 1,
                         dW + (size_t)c * hp * h, h);
                vpd_gemm(false, true, N, hp, h, 1, dpre + (size_t)c * h, (int)ld, Wc, h, 0, dpost + (size_t)c * hp,
                         C * hp);
            }
        } else if (ci->type == VPD_CI_MLP) {
            for (int n = 0; n < N; n++) {
                const real *a = in + (size_t)n * C, *dp = dpre + (size_t)n * ld;
                real *da = din ? din + (size_t)n * C : NULL;
                for (int c = 0; c < C; c++) {
                    const real *dpc = dp + (size_t)c * h, *wc = W + (size_t)c * h;
                    real *dwc = dW + (size_t)c * h, s = 0;
                    for (int j = 0; j < h; j++) {
                        dwc[j] += a[c] * dpc[j];
                        s += dpc[j] * wc[j];
                    }
                    if (da) da[c] += s;
                }
            }
        } else {
            for (int c = 0; c < C; c++) {
                const real *Wc = W + (size_t)c * D * h;
                vpd_gemm(true, false, D, h, N, 1, in, D, dpre + (size_t)c * h, (int)ld, 1, dW + (size_t)c * D * h, h);
                if (din) vpd_gemm(false, true, N, D, h, 1, dpre + (size_t)c * h, (int)ld, Wc, h, 1, din, D);
            }
        }
    }
}

vpd_status ci_parallel_forward(vpd_ci_fn *ci, real *const *z, const real *const *in, int N) {
    for (int l = 0; l < ci->L; l++) parallel_forward(ci, l, z[l], in[l], N);
    return VPD_OK;
}

void ci_parallel_backward(vpd_ci_fn *ci, real *const *din, const real *const *dz, const real *const *in, int N) {
    for (int l = 0; l < ci->L; l++) {
        if (!dz[l]) continue; /* no loss reached this layer's z */
        parallel_backward(ci, l, din ? din[l] : NULL, dz[l], in[l], N);
    }
}

vpd_status ci_shared_forward(vpd_ci_fn *ci, real *const *z, const real *const *in, int N) {
    for (int l = 0; l < ci->L; l++)
        ci_dense_forward(ci, &ci->nets[l], &ci->layers[l], 1, ci->layers[l].d_in, ci->layers[l].C, &z[l], &in[l], N);
    return VPD_OK;
}

void ci_shared_backward(vpd_ci_fn *ci, real *const *din, const real *const *dz, const real *const *in, int N) {
    for (int l = 0; l < ci->L; l++) {
        if (!dz[l]) continue; /* no loss reached this layer's z */
        real *dx = din ? din[l] : NULL;
        ci_dense_backward(ci, &ci->nets[l], &ci->layers[l], 1, ci->layers[l].d_in, ci->layers[l].C, &dx, &dz[l],
                          &in[l], N);
    }
}
