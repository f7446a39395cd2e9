/* RMSNorm over the last dim: y = w ⊙ x · rstd, rstd = 1/sqrt(mean(x²) + eps), eps
 * inside the square root (VPD_METHOD.md §7, as in PyTorch's LlamaRMSNorm). Sums are
 * accumulated in double so the float build matches the double reference closely.
 * Backward with x̂ = x·rstd and g = dy ⊙ w:
 *   dx = rstd · (g − x̂ · mean(g ⊙ x̂)),   dw += Σ_rows dy ⊙ x̂. */
#include <math.h>

#include "vpd/nn.h"

void rmsnorm_forward(real *y, real *rstd, const real *x, const real *w, int N, int D, real eps) {
    for (int n = 0; n < N; n++) {
        const real *xn = x + (size_t)n * D;
        real *yn = y + (size_t)n * D;
        double ss = 0;
        for (int d = 0; d < D; d++) ss += (double)xn[d] * xn[d];
        real r = (real)(1.0 / sqrt(ss / D + (double)eps));
        rstd[n] = r;
        if (w)
            for (int d = 0; d < D; d++) yn[d] = w[d] * (xn[d] * r);
        else
            for (int d = 0; d < D; d++) yn[d] = xn[d] * r;
    }
}

void rmsnorm_backward(real *dx, real *dw, const real *dy, const real *x, const real *w,
                      const real *rstd, int N, int D) {
    for (int n = 0; n < N; n++) {
        const real *xn = x + (size_t)n * D, *dyn = dy + (size_t)n * D;
        real r = rstd[n];
        if (dw && w)
            for (int d = 0; d < D; d++) dw[d] += dyn[d] * (xn[d] * r);
        if (!dx) continue;
        /* mean(g ⊙ x̂) = rstd · mean(g ⊙ x) */
        double gx = 0;
        for (int d = 0; d < D; d++) gx += (double)(w ? dyn[d] * w[d] : dyn[d]) * xn[d];
        real c = (real)(gx * r * r / D); /* rstd² · mean(g ⊙ x): coefficient of x inside the bracket */
        real *dxn = dx + (size_t)n * D;
        for (int d = 0; d < D; d++) {
            real g = w ? dyn[d] * w[d] : dyn[d];
            dxn[d] += r * (g - xn[d] * c);
        }
    }
}
