/* Finite-difference check of linear_backward (dx, dW, db) with and without bias,
 * objective f = Σ y ⊙ R for fixed random R; forward checked against a direct loop.
 * Gradients start at a non-zero offset to check that backward accumulates. */
#include "testutil.h"
#include "vpd/nn.h"

enum { N = 3, DIN = 4, DOUT = 5 };
static real x[N * DIN], W[DOUT * DIN], b[DOUT], R[N * DOUT], y[N * DOUT];
static const real *bias;

static double objective(void *ctx) {
    (void)ctx;
    linear_forward(y, x, W, bias, N, DIN, DOUT);
    double f = 0;
    for (int i = 0; i < N * DOUT; i++) f += (double)y[i] * R[i];
    return f;
}

int main(void) {
    tu_fill(x, N * DIN, 1, 1.0);
    tu_fill(W, DOUT * DIN, 2, 0.5);
    tu_fill(b, DOUT, 3, 0.3);
    tu_fill(R, N * DOUT, 4, 1.0);
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        bias = with_bias ? b : NULL;
        fprintf(stderr, "linear, bias %s\n", with_bias ? "yes" : "no");
        /* forward vs direct sum */
        objective(NULL);
        real ref[N * DOUT];
        for (int n = 0; n < N; n++)
            for (int o = 0; o < DOUT; o++) {
                double s = bias ? bias[o] : 0;
                for (int i = 0; i < DIN; i++) s += (double)x[n * DIN + i] * W[o * DIN + i];
                ref[n * DOUT + o] = (real)s;
            }
        double e = tu_max_rel_err(y, ref, N * DOUT, 1e-12);
        CHECK(e < 1e-12, "linear forward vs direct: rel err %.3e", e);

        real dx[N * DIN], dW[DOUT * DIN], db[DOUT];
        const real off = 0.25; /* backward must add onto this */
        for (int i = 0; i < N * DIN; i++) dx[i] = off;
        for (int i = 0; i < DOUT * DIN; i++) dW[i] = off;
        for (int i = 0; i < DOUT; i++) db[i] = off;
        linear_backward(dx, dW, with_bias ? db : NULL, R, x, W, N, DIN, DOUT);
        for (int i = 0; i < N * DIN; i++) dx[i] -= off;
        for (int i = 0; i < DOUT * DIN; i++) dW[i] -= off;
        for (int i = 0; i < DOUT; i++) db[i] -= off;
        CHECK(tu_fd_check(objective, NULL, x, dx, N * DIN, 1e-5, "linear dx") <= 1e-6, "linear dx");
        CHECK(tu_fd_check(objective, NULL, W, dW, DOUT * DIN, 1e-5, "linear dW") <= 1e-6, "linear dW");
        if (with_bias)
            CHECK(tu_fd_check(objective, NULL, b, db, DOUT, 1e-5, "linear db") <= 1e-6, "linear db");
        else
            for (int i = 0; i < DOUT; i++) CHECK(db[i] == 0, "db touched although NULL was passed");
    }
    TEST_REPORT();
}
