/* Private to src/vpd/ci_*.c: the kernels behind vpd_ci_forward / vpd_ci_backward and
 * accessors into the flat parameter, gradient and workspace blocks of a vpd_ci_fn. */
#ifndef VPD_CI_INTERNAL_H
#define VPD_CI_INTERNAL_H

#include "vpd/ci.h"

static inline real *ci_W(const vpd_ci_fn *ci, const vpd_ci_net *net, int k) {
    return ci->params + ci->tensors[net->first_tensor + 2 * k].offset;
}
static inline real *ci_b(const vpd_ci_fn *ci, const vpd_ci_net *net, int k) {
    return ci->params + ci->tensors[net->first_tensor + 2 * k + 1].offset;
}
static inline real *ci_dW(const vpd_ci_fn *ci, const vpd_ci_net *net, int k) {
    return ci->grads + ci->tensors[net->first_tensor + 2 * k].offset;
}
static inline real *ci_db(const vpd_ci_fn *ci, const vpd_ci_net *net, int k) {
    return ci->grads + ci->tensors[net->first_tensor + 2 * k + 1].offset;
}
/* saved activations of hidden layer k: [N_reserved rows, width] */
static inline real *ci_pre(const vpd_ci_fn *ci, const vpd_ci_net *net, int k) {
    return ci->ws + net->ws_pre[k] * (size_t)ci->N_reserved;
}
static inline real *ci_post(const vpd_ci_fn *ci, const vpd_ci_net *net, int k) {
    return ci->ws + net->ws_post[k] * (size_t)ci->N_reserved;
}
/* two scratch buffers of ws_scratch elements per row, for backward */
static inline real *ci_scratch(const vpd_ci_fn *ci, int which) {
    return ci->ws + (ci->ws_row + (size_t)which * ci->ws_scratch) * (size_t)ci->N_reserved;
}

/* ci_layerwise.c: one network per layer, over all layers — per component (mlp, vector_mlp:
 * ParallelLinear) or one dense network per layer (shared_mlp) */
vpd_status ci_parallel_forward(vpd_ci_fn *ci, real *const *z, const real *const *in, int N);
void ci_parallel_backward(vpd_ci_fn *ci, real *const *din, const real *const *dz, const real *const *in, int N);
vpd_status ci_shared_forward(vpd_ci_fn *ci, real *const *z, const real *const *in, int N);
void ci_shared_backward(vpd_ci_fn *ci, real *const *din, const real *const *dz, const real *const *in, int N);

/* ci_global.c: a dense MLP whose input is the concatenation of nblk blocks (block i:
 * x[i] [N, blk[i].d_in], rows blk[i].in_off.. of the first W) and whose output is split
 * into blocks (z[i] [N, blk[i].C], columns blk[i].c_off.. of the final W). Used by
 * shared_mlp (one block, offsets 0) and global_shared_mlp (all layers). */
void ci_dense_forward(vpd_ci_fn *ci, const vpd_ci_net *net, const vpd_ci_layer *blk, int nblk,
                      int in_total, int out_total, real *const *z, const real *const *x, int N);
void ci_dense_backward(vpd_ci_fn *ci, const vpd_ci_net *net, const vpd_ci_layer *blk, int nblk,
                       int in_total, int out_total, real *const *dx, const real *const *dz,
                       const real *const *x, int N);

/* ci_transformer.c: global_shared_transformer (its row of the ops table in ci_fn.c) */
void ci_tf_init(vpd_ci_fn *ci, uint64_t seed);
vpd_status ci_tf_forward(vpd_ci_fn *ci, real *const *z, const real *const *in, int N);
void ci_tf_backward(vpd_ci_fn *ci, real *const *din, const real *const *dz,
                    const real *const *in, int N);
vpd_status ci_tf_set_seq_len(vpd_ci_fn *ci, int S);


/* y[N, w] += b[w] on every row; db[w] += Σ_rows dy[N, w] (the bias of every CI Linear) */
static inline void vpd_ci_add_bias(real *y, const real *b, int N, int w) {
    for (int n = 0; n < N; n++) {
        real *yr = y + (size_t)n * w;
        for (int j = 0; j < w; j++) yr[j] += b[j];
    }
}
static inline void vpd_ci_colsum_add(real *db, const real *dy, int N, int w) {
    for (int n = 0; n < N; n++) {
        const real *r = dy + (size_t)n * w;
        for (int j = 0; j < w; j++) db[j] += r[j];
    }
}

#endif
