/* embedding_forward gathers rows; embedding_backward scatter-adds (a repeated token
 * accumulates both rows' gradients). Finite-difference check w.r.t. W. */
#include "testutil.h"
#include "vpd/nn.h"

enum { N = 5, V = 4, D = 3 };
static const int32_t tok[N] = {2, 0, 2, 3, 2}; /* token 1 unused, token 2 repeated */
static real W[V * D], R[N * D], y[N * D];

static double objective(void *ctx) {
    (void)ctx;
    embedding_forward(y, tok, W, N, V, D);
    double f = 0;
    for (int i = 0; i < N * D; i++) f += (double)y[i] * R[i];
    return f;
}

int main(void) {
    tu_fill(W, V * D, 1, 1.0);
    tu_fill(R, N * D, 2, 1.0);
    objective(NULL);
    for (int n = 0; n < N; n++)
        for (int d = 0; d < D; d++)
            CHECK(y[n * D + d] == W[tok[n] * D + d], "embedding row %d dim %d", n, d);
    real dW[V * D];
    for (int i = 0; i < V * D; i++) dW[i] = 0.5;
    embedding_backward(dW, R, tok, N, V, D);
    for (int i = 0; i < V * D; i++) dW[i] -= 0.5;
    for (int d = 0; d < D; d++) CHECK(dW[1 * D + d] == 0, "unused token row has gradient");
    CHECK(tu_fd_check(objective, NULL, W, dW, V * D, 1e-5, "embedding dW") <= 1e-6, "embedding dW");
    TEST_REPORT();
}
