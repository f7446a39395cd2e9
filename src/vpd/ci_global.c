/* The global CI function global_shared_mlp (VPD_METHOD.md §2; spd GlobalSharedMLPCiFn)
 * and the dense MLP kernel it shares with the layerwise shared_mlp.
 *
 * The MLP's input is the concatenation of all layers' CI inputs and its output the
 * concatenation of all layers' z. Neither concatenation is materialised: the first
 * Linear's W [ΣD, h] is applied as a sum of products of each layer's input with its
 * row block, and the final W [h, ΣC] writes each layer's z from its column block, so
 * the caller's per-layer buffers are read and written in place (no copies, and the
 * input gradient lands directly in each layer's din). spd's Linear layout is kept:
 * y = x W + b with W [in, out]. */
#include <string.h>

#include "vpd/ci_internal.h"
#include "vpd/nn.h"

/* Input blocks of the final Linear: the concatenated layer inputs when there is no
 * hidden layer, else the last hidden activation as a single block. */
typedef struct {
    int n;
    const real *const *x; /* used when the blocks are the layer inputs */
    const real *post;     /* used for the single hidden block */
    int h;
    const vpd_ci_layer *blk;
} in_blocks;

static const real *ib_ptr(const in_blocks *ib, int i) { return ib->post ? ib->post : ib->x[i]; }
static int ib_w(const in_blocks *ib, int i) { return ib->post ? ib->h : ib->blk[i].d_in; }
static int ib_off(const in_blocks *ib, int i) { return ib->post ? 0 : ib->blk[i].in_off; }

void ci_dense_forward(vpd_ci_fn *ci, const vpd_ci_net *net, const vpd_ci_layer *blk, int nblk,
                      int in_total, int out_total, real *const *z, const real *const *x, int N) {
    (void)in_total;
    int nh = ci->n_hidden;
    for (int k = 0; k < nh; k++) {
        int h = ci->hidden[k];
        real *pre = ci_pre(ci, net, k), *post = ci_post(ci, net, k);
        const real *W = ci_W(ci, net, k);
        if (k == 0) {
            /* pre = Σ_blocks x_i W[rows of block i] */
            for (int i = 0; i < nblk; i++)
                vpd_gemm(false, false, N, h, blk[i].d_in, 1, x[i], blk[i].d_in, W + (size_t)blk[i].in_off * h, h,
                         i == 0 ? 0 : 1, pre, h);
        } else {
            int hp = ci->hidden[k - 1];
            vpd_gemm(false, false, N, h, hp, 1, ci_post(ci, net, k - 1), hp, W, h, 0, pre, h);
        }
        vpd_ci_add_bias(pre, ci_b(ci, net, k), N, h);
        gelu_forward_deriv(post, pre, pre, (size_t)N * h, GELU_ERF); /* pre := GELU'(pre) */
    }
    in_blocks ib = {nh ? 1 : nblk, x, nh ? ci_post(ci, net, nh - 1) : NULL, nh ? ci->hidden[nh - 1] : 0, blk};
    const real *Wf = ci_W(ci, net, nh), *bf = ci_b(ci, net, nh);
    for (int o = 0; o < nblk; o++) {
        int C = blk[o].C;
        for (int i = 0; i < ib.n; i++)
            vpd_gemm(false, false, N, C, ib_w(&ib, i), 1, ib_ptr(&ib, i), ib_w(&ib, i),
                     Wf + (size_t)ib_off(&ib, i) * out_total + blk[o].c_off, out_total, i == 0 ? 0 : 1, z[o], C);
        vpd_ci_add_bias(z[o], bf + blk[o].c_off, N, C);
    }
}

void ci_dense_backward(vpd_ci_fn *ci, const vpd_ci_net *net, const vpd_ci_layer *blk, int nblk,
                       int in_total, int out_total, real *const *dx, const real *const *dz,
                       const real *const *x, int N) {
    (void)in_total;
    int nh = ci->n_hidden;
    in_blocks ib = {nh ? 1 : nblk, x, nh ? ci_post(ci, net, nh - 1) : NULL, nh ? ci->hidden[nh - 1] : 0, blk};
    const real *Wf = ci_W(ci, net, nh);
    real *dWf = ci_dW(ci, net, nh), *dbf = ci_db(ci, net, nh);
    real *dpost = ci_scratch(ci, 0), *dpre = ci_scratch(ci, 1);
    if (nh) memset(dpost, 0, sizeof(real) * (size_t)N * ib.h);

    /* final Linear: dWf[rows i, cols o] += in_i^T dz_o; d(in_i) += dz_o Wf[rows i, cols o]^T */
    for (int o = 0; o < nblk; o++) {
        if (!dz[o]) continue;
        int C = blk[o].C;
        vpd_ci_colsum_add(dbf + blk[o].c_off, dz[o], N, C);
        for (int i = 0; i < ib.n; i++) {
            int w = ib_w(&ib, i);
            size_t woff = (size_t)ib_off(&ib, i) * out_total + blk[o].c_off;
            vpd_gemm(true, false, w, C, N, 1, ib_ptr(&ib, i), w, dz[o], C, 1, dWf + woff, out_total);
            real *d = nh ? dpost : (dx ? dx[i] : NULL);
            if (d) vpd_gemm(false, true, N, w, C, 1, dz[o], C, Wf + woff, out_total, 1, d, w);
        }
    }
    for (int k = nh - 1; k >= 0; k--) {
        int h = ci->hidden[k];
        memset(dpre, 0, sizeof(real) * (size_t)N * h);
        gelu_backward_deriv(dpre, dpost, ci_pre(ci, net, k), (size_t)N * h);
        vpd_ci_colsum_add(ci_db(ci, net, k), dpre, N, h);
        const real *W = ci_W(ci, net, k);
        real *dW = ci_dW(ci, net, k);
        if (k > 0) {
            int hp = ci->hidden[k - 1];
            vpd_gemm(true, false, hp, h, N, 1, ci_post(ci, net, k - 1), hp, dpre, h, 1, dW, h);
            vpd_gemm(false, true, N, hp, h, 1, dpre, h, W, h, 0, dpost, hp);
        } else {
            for (int i = 0; i < nblk; i++) {
                int w = blk[i].d_in;
                size_t roff = (size_t)blk[i].in_off * h;
                vpd_gemm(true, false, w, h, N, 1, x[i], w, dpre, h, 1, dW + roff, h);
                if (dx && dx[i]) vpd_gemm(false, true, N, w, h, 1, dpre, h, W + roff, h, 1, dx[i], w);
            }
        }
    }
}
