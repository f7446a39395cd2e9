/* Output losses, each a mean over rows (elements for MSE):
 *   cross-entropy  −(1/N) Σ log softmax(logits)[n, target],
 *   KL(p ‖ q)      (1/N) Σ_n Σ_v p_v (log p_v − log q_v) with p = softmax(p_logits) the
 *                  (constant) target distribution and q = softmax(q_logits) the model's,
 *   MSE            (1/n) Σ (y − t)².
 * Log-probabilities are always formed as logit − max − log Σ exp(logit − max)
 * (log-softmax), never as log(prob): a probability that underflows to 0 would give
 * −inf, while its log-softmax stays finite. Sums are in double.
 * The KL's target side is constant within a step: kl_target_prepare computes its softmax and
 * per-row log-sum-exp once, kl_forward_prepared then costs one exp per entry per pass
 * (the float build: vectorised exp_nonpos in float; every sum accumulated in double). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "vpd/nn.h"
#include "core/hot.h"
#include "rowops.h"

void cross_entropy_backward(real *dlogits, const real *probs, const int32_t *targets, int N, int V,
                            real dloss) {
    if (!dlogits) return;
    real s = dloss / (real)N;
    for (int n = 0; n < N; n++) {
        const real *p = probs + (size_t)n * V;
        real *d = dlogits + (size_t)n * V;
        for (int j = 0; j < V; j++) d[j] += s * p[j];
        d[targets[n]] -= s;
    }
}

/* softmax of one row through row_max / row_exp_sum: p_j = e_j / Σ e. c[0] = max, c[1] = log Σ e
 * (the log-sum-exp is max + c[1]), c[2] = Σ p_j over the stored p_j. The target and the model
 * rows go through this same code, so identical logits give identical rows (and KL exactly 0). */
VPD_INLINE static void softmax_row(real *p, double c[3], const real *l, int V) {
    real mx = row_max(l, V);
    double sum = row_exp_sum(p, l, mx, V);
    real inv = (real)(1.0 / sum);
    double ps[KW] = {0}, tail = 0;
    int j = 0;
    for (; j + KW <= V; j += KW) /* vectorised: softmax_row */
        for (int k = 0; k < KW; k++) {
            p[j + k] *= inv;
            ps[k] += (double)p[j + k];
        }
    for (; j < V; j++) {
        p[j] *= inv;
        tail += (double)p[j];
    }
    for (int k = 0; k < KW; k++) tail += ps[k];
    c[0] = mx;
    c[1] = log(sum);
    c[2] = tail;
}

/* Σ_j p_j (log p_j − log q_j) with log p_j = lp_j − mp − zp, log q_j = lq_j − mq − zq:
 * = Σ_j p_j (lp_j − lq_j) + ((mq − mp) + (zq − zp)) · Σ_j p_j, summed in double. */
VPD_INLINE static double kl_row(const real *p, const double cp[3], const real *lp, const double cq[3], const real *lq, int V) {
    double acc[KW] = {0}, s = 0;
    int j = 0;
    for (; j + KW <= V; j += KW) /* vectorised: kl_row */
        for (int k = 0; k < KW; k++) acc[k] += (double)p[j + k] * ((double)lp[j + k] - (double)lq[j + k]);
    for (; j < V; j++) s += (double)p[j] * ((double)lp[j] - (double)lq[j]);
    for (int k = 0; k < KW; k++) s += acc[k];
    return s + ((cq[0] - cp[0]) + (cq[1] - cp[1])) * cp[2];
}

/* −(1/N) Σ_n log softmax(logits_n)[t_n] with the rows' softmax through softmax_row (vectorised
 * exp in float, sums in double): log softmax_t = l_t − max − log Σ e. probs keeps the softmax
 * for cross_entropy_backward. */
VPD_HOT real cross_entropy_forward(real *probs, const real *logits, const int32_t *targets, int N, int V) {
    double total = 0;
    for (int n = 0; n < N; n++) {
        const real *l = logits + (size_t)n * V;
        const int32_t t = targets[n];
        VPD_ASSERT(t >= 0 && t < V, "cross_entropy_forward: target %d at row %d outside [0, %d)", (int)t, n, V);
        double c[3];
        softmax_row(probs + (size_t)n * V, c, l, V);
        total -= (double)l[t] - c[0] - c[1];
    }
    return (real)(total / N);
}

VPD_HOT void kl_target_prepare(real *p_probs, double *p_rowc, const real *p_logits, int N, int V) {
    for (int n = 0; n < N; n++) softmax_row(p_probs + (size_t)n * V, p_rowc + 3 * (size_t)n, p_logits + (size_t)n * V, V);
}

VPD_HOT real kl_forward_prepared(real *q_probs, const real *p_probs, const double *p_rowc, const real *p_logits,
                         const real *q_logits, int N, int V) {
    double total = 0;
    for (int n = 0; n < N; n++) {
        double cq[3];
        const size_t o = (size_t)n * V;
        softmax_row(q_probs + o, cq, q_logits + o, V);
        total += kl_row(p_probs + o, p_rowc + 3 * (size_t)n, p_logits + o, cq, q_logits + o, V);
    }
    return (real)(total / N);
}

real kl_forward(real *p_probs, real *q_probs, const real *p_logits, const real *q_logits, int N, int V) {
    double total = 0;
    for (int n = 0; n < N; n++) {
        double cp[3], cq[3];
        const size_t o = (size_t)n * V;
        softmax_row(p_probs + o, cp, p_logits + o, V);
        softmax_row(q_probs + o, cq, q_logits + o, V);
        total += kl_row(p_probs + o, cp, p_logits + o, cq, q_logits + o, V);
    }
    return (real)(total / N);
}

VPD_HOT void kl_backward(real *dq_logits, const real *p_probs, const real *q_probs, int N, int V, real dloss) {
    if (!dq_logits) return;
    real s = dloss / (real)N;
    size_t n = (size_t)N * V;
    for (size_t i = 0; i < n; i++) dq_logits[i] += s * (q_probs[i] - p_probs[i]); /* vectorised: kl_backward */
}

real mse_forward(const real *y, const real *t, size_t n) {
    double ss = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)y[i] - t[i];
        ss += d * d;
    }
    return (real)(ss / (double)n);
}

void mse_backward(real *dy, const real *y, const real *t, size_t n, real dloss) {
    if (!dy) return;
    real s = 2 * dloss / (real)n;
    for (size_t i = 0; i < n; i++) dy[i] += s * (y[i] - t[i]);
}
