/* SwiGLU, the gated MLP activation of Llama / Qwen (down_proj(silu(gate_proj x) * up_proj x)).
 * silu(g) = g σ(g), silu'(g) = σ(g) (1 + g (1 − σ(g))). Element-wise, computed in double
 * per element so the float build rounds once. */
#include <math.h>

#include "vpd/nn.h"

void swiglu_forward(real *h, const real *g, const real *u, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double gi = (double)g[i];
        h[i] = (real)(gi / (1.0 + exp(-gi)) * (double)u[i]);
    }
}

void swiglu_backward(real *dg, real *du, const real *dh, const real *g, const real *u, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double gi = (double)g[i], sg = 1.0 / (1.0 + exp(-gi)), d = (double)dh[i];
        if (dg) dg[i] += (real)(d * (double)u[i] * sg * (1.0 + gi * (1.0 - sg)));
        if (du) du[i] += (real)(d * gi * sg);
    }
}
