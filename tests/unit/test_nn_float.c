/* The float build's fast element-wise kernels against double references:
 *   - KL(p ‖ q) with the vectorised float exp (kl_forward, and kl_target_prepare +
 *     kl_forward_prepared as the decomposition calls them) over a 4096-token vocabulary, for
 *     distant and for nearly equal distributions (small KL, where cancellation would show);
 *   - GELU's forward with the kept derivative (gelu_forward_deriv, gelu_backward_deriv) equal
 *     to gelu_forward and within one float rounding of gelu_backward. */
#include <math.h>
#include <stdlib.h>

#include "testutil.h"
#include "vpd/nn.h"

enum { N = 4, V = 4096 };

static double ref_kl(const real *lp, const real *lq, double *pref, double *qref) {
    double total = 0;
    for (int n = 0; n < N; n++) {
        const real *a = lp + (size_t)n * V, *b = lq + (size_t)n * V;
        double ma = a[0], mb = b[0], za = 0, zb = 0;
        for (int j = 1; j < V; j++) ma = a[j] > ma ? a[j] : ma, mb = b[j] > mb ? b[j] : mb;
        for (int j = 0; j < V; j++) za += exp(a[j] - ma), zb += exp(b[j] - mb);
        za = log(za), zb = log(zb);
        for (int j = 0; j < V; j++) {
            double la = a[j] - ma - za, lb = b[j] - mb - zb;
            pref[(size_t)n * V + j] = exp(la);
            qref[(size_t)n * V + j] = exp(lb);
            total += exp(la) * (la - lb);
        }
    }
    return total / N;
}

int main(void) {
    real *lp = malloc(sizeof(real) * N * V), *lq = malloc(sizeof(real) * N * V);
    real *pp = malloc(sizeof(real) * N * V), *qp = malloc(sizeof(real) * N * V);
    double *pref = malloc(sizeof(double) * N * V), *qref = malloc(sizeof(double) * N * V), rowc[3 * N];
    CHECK(lp && lq && pp && qp && pref && qref, "allocation");
    for (int trial = 0; trial < 2; trial++) {
        tu_fill(lp, N * V, 11, 8.0);
        tu_fill(lq, N * V, 12, trial == 0 ? 8.0 : 1e-2);
        if (trial == 1) /* q = p + a small perturbation: KL ~ 1e-5 */
            for (int i = 0; i < N * V; i++) lq[i] += lp[i];
        double ref = ref_kl(lp, lq, pref, qref);
        double kl = kl_forward(pp, qp, lp, lq, N, V);
        double tol = 2e-6 * fabs(ref) + 2e-8;
        CHECK(fabs(kl - ref) <= tol, "trial %d: KL %.9g vs double reference %.9g (tol %.2g)", trial, kl, ref, tol);
        double perr = 0, qerr = 0;
        for (int i = 0; i < N * V; i++) {
            perr = fmax(perr, fabs(pp[i] - pref[i]) / fmax(pref[i], 1e-30));
            qerr = fmax(qerr, fabs(qp[i] - qref[i]) / fmax(qref[i], 1e-30));
        }
        CHECK(perr < 2e-6 && qerr < 2e-6, "trial %d: probabilities rel err p %.3g q %.3g", trial, perr, qerr);
        kl_target_prepare(pp, rowc, lp, N, V);
        double kl2 = kl_forward_prepared(qp, pp, rowc, lp, lq, N, V);
        CHECK(kl2 == kl, "trial %d: prepared KL %.9g vs %.9g", trial, kl2, kl);
    }
    /* extreme logits below the float exp's clamp: finite, probabilities ≥ 0 and summing to 1 */
    for (int i = 0; i < V; i++) lq[i] = i == 0 ? 100.0f : -100.0f, lp[i] = 0;
    double k3 = kl_forward(pp, qp, lp, lq, 1, V);
    CHECK(isfinite(k3) && fabs(k3 - (200.0 * (V - 1) / V - log((double)V))) < 1e-4 * k3, "extreme KL %.9g", k3);

    /* GELU with the kept derivative */
    enum { G = 4099 };
    real x[G], y1[G], y2[G], d[G], dy[G], dx1[G], dx2[G];
    tu_fill(x, G, 21, 6.0);
    tu_fill(dy, G, 22, 1.0);
    for (int i = 0; i < G; i++) dx1[i] = dx2[i] = 0.25f, d[i] = x[i];
    gelu_forward(y1, x, G, GELU_ERF);
    gelu_forward_deriv(y2, d, d, G, GELU_ERF); /* in place, as the CI functions call it */
    gelu_backward(dx1, dy, x, G, GELU_ERF);
    gelu_backward_deriv(dx2, dy, d, G);
    int same = 0;
    double derr = 0;
    for (int i = 0; i < G; i++) {
        same += y1[i] == y2[i];
        derr = fmax(derr, fabs(dx1[i] - dx2[i]) / fmax(fabs(dx1[i]), 1.0));
    }
    CHECK(same == G, "gelu_forward_deriv's values equal gelu_forward's (%d of %d)", same, G);
    CHECK(derr < 3e-7, "gelu_backward_deriv within float rounding of gelu_backward: %.3g", derr);
    free(lp), free(lq), free(pp), free(qp), free(pref), free(qref);
    TEST_REPORT();
}
