/* Token embedding: a row gather from W [V, D] forward, a scatter-add into dW backward
 * (repeated tokens accumulate). Token ids are validated where they are read
 * (token files, tokenizer); an id outside [0, V) here is a broken invariant. */
#include "vpd/nn.h"

void embedding_forward(real *y, const int32_t *tok, const real *W, int N, int V, int D) {
    for (int n = 0; n < N; n++) {
        int32_t t = tok[n];
        VPD_ASSERT(t >= 0 && t < V, "embedding_forward: token %d at row %d outside [0, %d)", (int)t, n, V);
        const real *w = W + (size_t)t * D;
        real *yn = y + (size_t)n * D;
        for (int d = 0; d < D; d++) yn[d] = w[d];
    }
}

void embedding_backward(real *dW, const real *dy, const int32_t *tok, int N, int V, int D) {
    if (!dW) return;
    for (int n = 0; n < N; n++) {
        int32_t t = tok[n];
        VPD_ASSERT(t >= 0 && t < V, "embedding_backward: token %d at row %d outside [0, %d)", (int)t, n, V);
        real *dw = dW + (size_t)t * D;
        const real *dyn = dy + (size_t)n * D;
        for (int d = 0; d < D; d++) dw[d] += dyn[d];
    }
}
