/* Cross-entropy, KL(p ‖ q) and MSE: forward against direct formulas (including
 * extreme logits where a probability underflows), and finite-difference checks of
 * each backward, scaled by dloss = 0.7, w.r.t. the model's logits / outputs. */
#include <math.h>

#include "testutil.h"
#include "vpd/nn.h"

enum { N = 3, V = 6 };
static const real dloss = 0.7;
static real lq[N * V], lp[N * V], pp[N * V], qp[N * V], y[N * V], t[N * V];
static const int32_t tgt[N] = {2, 0, 5};

static double ce_obj(void *ctx) { (void)ctx; return dloss * cross_entropy_forward(qp, lq, tgt, N, V); }
static double kl_obj(void *ctx) { (void)ctx; return dloss * kl_forward(pp, qp, lp, lq, N, V); }
static double mse_obj(void *ctx) { (void)ctx; return dloss * mse_forward(y, t, N * V); }

static double log_softmax(const real *l, int j) {
    double z = 0;
    for (int i = 0; i < V; i++) z += exp((double)l[i]);
    return l[j] - log(z);
}

int main(void) {
    tu_fill(lq, N * V, 1, 3.0);
    tu_fill(lp, N * V, 2, 3.0);
    tu_fill(y, N * V, 3, 1.0);
    tu_fill(t, N * V, 4, 1.0);

    /* ---- cross-entropy */
    double ref = 0;
    for (int n = 0; n < N; n++) ref -= log_softmax(lq + n * V, tgt[n]) / N;
    double ce = cross_entropy_forward(qp, lq, tgt, N, V);
    CHECK(fabs(ce - ref) < 1e-14 * fabs(ref), "CE %.17g vs direct %.17g", ce, ref);
    real g[N * V];
    for (int i = 0; i < N * V; i++) g[i] = 0.5;
    cross_entropy_backward(g, qp, tgt, N, V, dloss);
    for (int i = 0; i < N * V; i++) g[i] -= 0.5;
    CHECK(tu_fd_check(ce_obj, NULL, lq, g, N * V, 1e-5, "cross-entropy dlogits") <= 1e-6, "CE dlogits");

    /* ---- KL(p ‖ q), gradient w.r.t. q's logits */
    ref = 0;
    for (int n = 0; n < N; n++)
        for (int j = 0; j < V; j++) {
            double a = log_softmax(lp + n * V, j), b = log_softmax(lq + n * V, j);
            ref += exp(a) * (a - b) / N;
        }
    double kl = kl_forward(pp, qp, lp, lq, N, V);
    CHECK(fabs(kl - ref) < 1e-13 * fabs(ref), "KL %.17g vs direct %.17g", kl, ref);
    CHECK(kl_forward(pp, qp, lq, lq, N, V) == 0, "KL(q ‖ q) must be 0");
    {
        /* the target side prepared once (the decomposition's per-step cache) gives the same
         * loss and probabilities, bit for bit */
        real pp2[N * V], qp2[N * V];
        double rowc[3 * N];
        kl_target_prepare(pp2, rowc, lp, N, V);
        double kl2 = kl_forward_prepared(qp2, pp2, rowc, lp, lq, N, V);
        kl_forward(pp, qp, lp, lq, N, V);
        CHECK(kl2 == kl, "prepared KL %.17g vs %.17g", kl2, kl);
        for (int i = 0; i < N * V; i++) CHECK(pp2[i] == pp[i] && qp2[i] == qp[i], "prepared KL probabilities at %d", i);
    }
    for (int i = 0; i < N * V; i++) g[i] = 0.5;
    kl_forward(pp, qp, lp, lq, N, V);
    kl_backward(g, pp, qp, N, V, dloss);
    for (int i = 0; i < N * V; i++) g[i] -= 0.5;
    CHECK(tu_fd_check(kl_obj, NULL, lq, g, N * V, 1e-5, "KL dq_logits") <= 1e-6, "KL dq_logits");

    /* extreme logits: q puts ~e^-2000 on a token p favours; log(prob) would be -inf,
     * log-softmax gives the exact finite answer KL = Σ p (log p − log q) */
    {
        real ep[2] = {0, 0}, eq[2] = {1000, -1000}, epp[2], eqp[2];
        double k2 = kl_forward(epp, eqp, ep, eq, 1, 2);
        /* p = (1/2, 1/2); log q = (0 − log(1+e^-2000), −2000 − ...) ≈ (0, −2000) */
        double expect = 0.5 * (log(0.5) - 0) + 0.5 * (log(0.5) + 2000);
        CHECK(isfinite(k2) && fabs(k2 - expect) < 1e-12 * expect, "KL with extreme logits %.17g, expected %.17g", k2, expect);
        real ce_l[3] = {-1000, 1000, 0};
        int32_t ce_t = 0;
        real ce_p[3];
        double c2 = cross_entropy_forward(ce_p, ce_l, &ce_t, 1, 3);
        CHECK(isfinite(c2) && fabs(c2 - 2000) < 1e-12 * 2000, "CE with extreme logits %.17g, expected 2000", c2);
    }

    /* ---- MSE */
    ref = 0;
    for (int i = 0; i < N * V; i++) ref += ((double)y[i] - t[i]) * ((double)y[i] - t[i]) / (N * V);
    double m = mse_forward(y, t, N * V);
    CHECK(fabs(m - ref) < 1e-14 * ref, "MSE %.17g vs direct %.17g", m, ref);
    for (int i = 0; i < N * V; i++) g[i] = 0.5;
    mse_backward(g, y, t, N * V, dloss);
    for (int i = 0; i < N * V; i++) g[i] -= 0.5;
    CHECK(tu_fd_check(mse_obj, NULL, y, g, N * V, 1e-5, "MSE dy") <= 1e-6, "MSE dy");
    TEST_REPORT();
}
