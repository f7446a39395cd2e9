/* Output losses, each a mean over rows (elements for MSE):
 *   cross-entropy  −(1/N) Σ log softmax(logits)[n, target],
 *   KL(p ‖ q)      (1/N) Σ_n Σ_v p_v (log p_v − log q_v) with p = softmax(p_logits) the
 *                  (constant) target distribution and q = softmax(q_logits) the model's,
 *   MSE            (1/n) Σ (y − t)².
 * Log-probabilities are always formed as logit − max − log Σ exp(logit − max)
 * (log-softmax), never as log(prob): a probability that underflows to 0 would give
 * −inf, while its log-softmax stays finite. Sums are in double. */
#include <math.h>

#include "vpd/nn.h"

/* max and log Σ exp(l − max) of one row: log_softmax(l)_j = l_j − max − lse */
static void row_max_lse(const real *l, int V, double *mx_out, double *lse_out) {
    double mx = l[0];
    for (int j = 1; j < V; j++) if (l[j] > mx) mx = l[j];
    double sum = 0;
    for (int j = 0; j < V; j++) sum += exp((double)l[j] - mx);
    *mx_out = mx;
    *lse_out = log(sum);
}

real cross_entropy_forward(real *probs, const real *logits, const int32_t *targets, int N, int V) {
    double total = 0;
    for (int n = 0; n < N; n++) {
        const real *l = logits + (size_t)n * V;
        real *p = probs + (size_t)n * V;
        int32_t t = targets[n];
        VPD_ASSERT(t >= 0 && t < V, "cross_entropy_forward: target %d at row %d outside [0, %d)", (int)t, n, V);
        double mx, lse;
        row_max_lse(l, V, &mx, &lse);
        for (int j = 0; j < V; j++) p[j] = (real)exp((double)l[j] - mx - lse);
        total -= (double)l[t] - mx - lse;
    }
    return (real)(total / N);
}

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

real kl_forward(real *p_probs, real *q_probs, const real *p_logits, const real *q_logits, int N, int V) {
    double total = 0;
    for (int n = 0; n < N; n++) {
        const real *lp = p_logits + (size_t)n * V, *lq = q_logits + (size_t)n * V;
        real *pp = p_probs + (size_t)n * V, *qp = q_probs + (size_t)n * V;
        double mp, zp, mq, zq;
        row_max_lse(lp, V, &mp, &zp);
        row_max_lse(lq, V, &mq, &zq);
        double row = 0;
        for (int j = 0; j < V; j++) {
            double logp = (double)lp[j] - mp - zp, logq = (double)lq[j] - mq - zq;
            double pj = exp(logp);
            pp[j] = (real)pj;
            qp[j] = (real)exp(logq);
            row += pj * (logp - logq);
        }
        total += row;
    }
    return (real)(total / N);
}

void kl_backward(real *dq_logits, const real *p_probs, const real *q_probs, int N, int V, real dloss) {
    if (!dq_logits) return;
    real s = dloss / (real)N;
    size_t n = (size_t)N * V;
    for (size_t i = 0; i < n; i++) dq_logits[i] += s * (q_probs[i] - p_probs[i]);
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
