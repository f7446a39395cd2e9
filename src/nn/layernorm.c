/* LayerNorm over the last dim D (GPT-2, GPT-NeoX): with mean μ and biased variance σ²
 * of the row, y = w ⊙ (x − μ) · rstd + b, rstd = 1/sqrt(σ² + eps) (torch.nn.LayerNorm).
 * Sums are accumulated in double so the float build matches the double reference closely.
 * Backward with x̂ = (x − μ)·rstd and g = dy ⊙ w:
 *   dx = rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂)),  dw += Σ_rows dy ⊙ x̂,  db += Σ_rows dy.
 * mean[N] and rstd[N] are saved by forward for backward. */
#include <math.h>

#include "vpd/nn.h"

void layernorm_forward(real *y, real *mean, real *rstd, const real *x, const real *w, const real *b, int N, int D,
                       real eps) {
    for (int n = 0; n < N; n++) {
        const real *xn = x + (size_t)n * D;
        real *yn = y + (size_t)n * D;
        double s = 0;
        for (int d = 0; d < D; d++) s += xn[d];
        double mu = s / D, ss = 0;
        for (int d = 0; d < D; d++) {
            double c = (double)xn[d] - mu;
            ss += c * c;
        }
        real r = (real)(1.0 / sqrt(ss / D + (double)eps)), m = (real)mu;
        mean[n] = m;
        rstd[n] = r;
        for (int d = 0; d < D; d++) {
            real h = (xn[d] - m) * r;
            yn[d] = (w ? w[d] * h : h) + (b ? b[d] : 0);
        }
    }
}

void layernorm_backward(real *dx, real *dw, real *db, const real *dy, const real *x, const real *w, const real *mean,
                        const real *rstd, int N, int D) {
    for (int n = 0; n < N; n++) {
        const real *xn = x + (size_t)n * D, *dyn = dy + (size_t)n * D;
        real m = mean[n], r = rstd[n];
        if (dw && w)
            for (int d = 0; d < D; d++) dw[d] += dyn[d] * ((xn[d] - m) * r);
        if (db)
            for (int d = 0; d < D; d++) db[d] += dyn[d];
        if (!dx) continue;
        double sg = 0, sgx = 0;
        for (int d = 0; d < D; d++) {
            double g = w ? (double)dyn[d] * w[d] : dyn[d];
            sg += g;
            sgx += g * ((double)(xn[d] - m) * r);
        }
        real mg = (real)(sg / D), mgx = (real)(sgx / D);
        real *dxn = dx + (size_t)n * D;
        for (int d = 0; d < D; d++) {
            real g = w ? dyn[d] * w[d] : dyn[d];
            dxn[d] += r * (g - mg - (xn[d] - m) * r * mgx);
        }
    }
}
