/* RMSNorm: forward against the formula w ⊙ x / sqrt(mean(x²) + eps), and a
 * finite-difference check of dx (with and without weight) and dw. A large eps
 * (0.1) is used so that a misplaced eps (outside the sqrt) would be detected. */
#include <math.h>

#include "testutil.h"
#include "vpd/nn.h"

enum { N = 3, D = 6 };
static real x[N * D], w[D], R[N * D], y[N * D], rstd[N];
static const real *wp;
static const real eps = 0.1;

static double objective(void *ctx) {
    (void)ctx;
    rmsnorm_forward(y, rstd, x, wp, N, D, eps);
    double f = 0;
    for (int i = 0; i < N * D; i++) f += (double)y[i] * R[i];
    return f;
}

int main(void) {
    tu_fill(x, N * D, 1, 1.0);
    tu_fill(w, D, 2, 1.0);
    for (int i = 0; i < D; i++) w[i] += 1.0; /* weights around 1, like a trained norm */
    tu_fill(R, N * D, 3, 1.0);
    for (int weighted = 0; weighted < 2; weighted++) {
        wp = weighted ? w : NULL;
        fprintf(stderr, "rmsnorm, weight %s\n", weighted ? "yes" : "no");
        objective(NULL);
        real ref[N * D];
        for (int n = 0; n < N; n++) {
            double ms = 0;
            for (int d = 0; d < D; d++) ms += (double)x[n * D + d] * x[n * D + d] / D;
            for (int d = 0; d < D; d++)
                ref[n * D + d] = (real)((wp ? wp[d] : 1.0) * x[n * D + d] / sqrt(ms + eps));
        }
        double e = tu_max_rel_err(y, ref, N * D, 1e-12);
        CHECK(e < 1e-12, "rmsnorm forward vs formula: rel err %.3e", e);

        real dx[N * D], dw[D];
        for (int i = 0; i < N * D; i++) dx[i] = 0.5;
        for (int i = 0; i < D; i++) dw[i] = 0.5;
        rmsnorm_backward(dx, dw, R, x, wp, rstd, N, D);
        for (int i = 0; i < N * D; i++) dx[i] -= 0.5;
        for (int i = 0; i < D; i++) dw[i] -= 0.5;
        CHECK(tu_fd_check(objective, NULL, x, dx, N * D, 1e-5, weighted ? "rmsnorm dx (w)" : "rmsnorm dx (no w)") <= 1e-6,
              "rmsnorm dx");
        if (weighted) CHECK(tu_fd_check(objective, NULL, w, dw, D, 1e-5, "rmsnorm dw") <= 1e-6, "rmsnorm dw");
    }
    TEST_REPORT();
}
