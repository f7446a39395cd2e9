/* Kernels shared by the transcoder's inference (transcoder.c) and training (train.c), and
 * tested against finite differences in tests/grad/test_transcoder_grad.c. None of them
 * talks to MPI: BatchTopK's global threshold is chosen in train.c from the candidates
 * tc_local_topk_sorted returns. */
#ifndef VPD_TC_INTERNAL_H
#define VPD_TC_INTERNAL_H

#include "vpd/transcoder.h"

/* pre[N, n] = x[N, d] W^T + b (W [n, d]) */
void tc_pre(const real *x, const real *W, const real *b, int N, int d, int n, real *pre);
/* dW += dpre^T x, db += Σ_rows dpre, dx += dpre W (dx may be NULL) */
void tc_pre_backward(const real *dpre, const real *x, const real *W, int N, int d, int n, real *dW, real *db, real *dx);
/* y[N, d] += z[N, n] W_dec[n, d] */
void tc_dec(const real *z, const real *W, int N, int n, int d, real *y);
/* dW_dec += z^T dy; dz += dy W_dec^T (dz may be NULL) */
void tc_dec_backward(const real *dy, const real *z, const real *W, int N, int n, int d, real *dW, real *dz);

/* ---- activations. Every z is pre on its kept entries and 0 elsewhere; the backward of the
 * value path is dpre += dz on kept entries (z != 0). */
/* top-k of relu(pre) per row (ties kept in index order, at most k); scratch [n] */
void tc_topk(const real *pre, int N, int n, int k, real *z, real *scratch);
/* z = pre where pre > 0 and pre >= thr (BatchTopK with the batch's selected threshold) */
void tc_keep_ge(const real *pre, size_t cnt, real thr, real *z);
/* z = pre where pre > thr (thr >= 0: BatchTopK inference) */
void tc_keep_gt(const real *pre, size_t cnt, real thr, real *z);
/* z = relu(pre) */
void tc_relu(const real *pre, size_t cnt, real *z);
/* JumpReLU: z = pre · [pre > θ_r] with per-latent θ [n] */
void tc_jumprelu(const real *pre, int N, int n, const real *theta, real *z);
/* dpre += dz where z != 0 */
void tc_act_backward(const real *dz, const real *z, size_t cnt, real *dpre);
/* JumpReLU's threshold pseudo-gradient (Rajamanoharan et al. 2024, straight-through with a
 * rectangle kernel K(u) = [|u| < 1/2] of bandwidth eps):
 *   d z / d θ_r      := −(θ_r/eps) K((pre − θ_r)/eps)
 *   d [pre > θ_r]/dθ := −(1/eps)   K((pre − θ_r)/eps)
 * dtheta[r] += Σ_rows dz · (−θ/eps) K + l0_scale · (−1/eps) K, where l0_scale is the
 * derivative of the loss by each indicator (the L0 coefficient over the row count). */
void tc_jumprelu_theta_backward(const real *dz, const real *pre, int N, int n, const real *theta, double eps,
                                double l0_scale, real *dtheta);

/* The descending-sorted largest min(K, count) positive values of x[cnt] into out (returns
 * how many); scratch [cnt]. */
size_t tc_local_topk_sorted(const real *x, size_t cnt, size_t K, real *out, real *scratch);

/* ---- decoder norms: latent r of MLP i has the decoder vector v = (W_dec[i][j][r, :])_{j ∈
 * dst(i)} (the concatenation over the MLPs it writes to). */
/* v ← v / |v| for every latent */
void tc_dec_normalise(vpd_transcoder *t);
/* g ← g − (g·v) v for every latent, g the gradient laid out as t (gt shares t's geometry):
 * at |v| = 1 this is the gradient of the loss of v/|v| (tested in tests/grad) */
void tc_dec_project_grad(const vpd_transcoder *t, vpd_transcoder *gt);
/* parameter offsets: a transcoder-shaped view of another flat buffer of n_params values */
void tc_bind(vpd_transcoder *t, real *flat);

#endif
