/* LayerNorm: forward against the formula w ⊙ (x − mean)/sqrt(var + eps) + b (biased
 * variance, torch.nn.LayerNorm), and finite-difference checks of dx, dw, db (with and
 * without weight/bias). A large eps (0.1) catches a misplaced eps; rows with a large
 * common offset check the mean subtraction. */
#include <math.h>

#include "testutil.h"
#include "vpd/nn.h"

enum { N = 3, D = 7 };
static real x[N * D], w[D], bb[D], R[N * D], y[N * D], mean[N], rstd[N];
static const real *wp, *bp;
static const real eps = 0.1;

static double objective(void *ctx) {
    (void)ctx;
    layernorm_forward(y, mean, rstd, x, wp, bp, N, D, eps);
    double f = 0;
    for (int i = 0; i < N * D; i++) f += (double)y[i] * R[i];
    return f;
}

int main(void) {
    tu_fill(x, N * D, 1, 1.0);
    for (int d = 0; d < D; d++) x[2 * D + d] += 3.0; /* an offset row */
    tu_fill(w, D, 2, 1.0);
    for (int i = 0; i < D; i++) w[i] += 1.0;
    tu_fill(bb, D, 4, 1.0);
    tu_fill(R, N * D, 3, 1.0);
    for (int affine = 0; affine < 2; affine++) {
        wp = affine ? w : NULL;
        bp = affine ? bb : NULL;
        fprintf(stderr, "layernorm, weight and bias %s\n", affine ? "yes" : "no");
        objective(NULL);
        real ref[N * D];
        for (int n = 0; n < N; n++) {
            double mu = 0, var = 0;
            for (int d = 0; d < D; d++) mu += (double)x[n * D + d] / D;
            for (int d = 0; d < D; d++) var += ((double)x[n * D + d] - mu) * ((double)x[n * D + d] - mu) / D;
            for (int d = 0; d < D; d++)
                ref[n * D + d] = (real)((wp ? wp[d] : 1.0) * (x[n * D + d] - mu) / sqrt(var + eps) + (bp ? bp[d] : 0.0));
        }
        double e = tu_max_rel_err(y, ref, N * D, 1e-12);
        CHECK(e < 1e-12, "layernorm forward vs formula: rel err %.3e", e);

        real dx[N * D], dw[D], db[D];
        for (int i = 0; i < N * D; i++) dx[i] = 0.5;
        for (int i = 0; i < D; i++) dw[i] = db[i] = 0.5;
        layernorm_backward(dx, affine ? dw : NULL, affine ? db : NULL, R, x, wp, mean, rstd, N, D);
        for (int i = 0; i < N * D; i++) dx[i] -= 0.5;
        for (int i = 0; i < D; i++) dw[i] -= 0.5, db[i] -= 0.5;
        CHECK(tu_fd_check(objective, NULL, x, dx, N * D, 1e-5, affine ? "layernorm dx (w, b)" : "layernorm dx") <= 1e-6,
              "layernorm dx");
        if (affine) {
            CHECK(tu_fd_check(objective, NULL, w, dw, D, 1e-5, "layernorm dw") <= 1e-6, "layernorm dw");
            CHECK(tu_fd_check(objective, NULL, bb, db, D, 1e-5, "layernorm db") <= 1e-6, "layernorm db");
        }
    }
    TEST_REPORT();
}
