/* Rotary embeddings from a cos/sin table: the frequencies come from the caller (the HF
 * Llama/Qwen models: rope_theta, optionally Llama-3 or linear rope scaling), the rotation is
 * rope_forward's half-split one: x'_i = x_i cos θ_i − x_{i+h} sin θ_i,
 * x'_{i+h} = x_{i+h} cos θ_i + x_i sin θ_i, θ_i = pos · inv_freq[i]. Backward rotates the
 * gradient by −θ (the transpose) in place. */
#include <math.h>

#include "vpd/nn.h"

void rope_table_fill(real *cs, const double *inv_freq, int S, int dh) {
    int half = dh / 2;
    for (int s = 0; s < S; s++)
        for (int i = 0; i < half; i++) {
            double th = (double)s * inv_freq[i];
            cs[(size_t)s * dh + i] = (real)cos(th);
            cs[(size_t)s * dh + half + i] = (real)sin(th);
        }
}

static void rotate(real *x, const real *cs, int B, int S, int H, int dh, real sign) {
    int half = dh / 2;
    VPD_ASSERT(dh % 2 == 0, "rope: head dim %d must be even", dh);
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S; s++) {
            const real *c = cs + (size_t)s * dh, *sn = c + half;
            real *row = x + ((size_t)b * S + s) * (size_t)H * dh;
            for (int h = 0; h < H; h++) {
                real *p = row + (size_t)h * dh;
                for (int i = 0; i < half; i++) {
                    real x1 = p[i], x2 = p[i + half], si = sign * sn[i];
                    p[i] = x1 * c[i] - x2 * si;
                    p[i + half] = x2 * c[i] + x1 * si;
                }
            }
        }
}

void rope_table_forward(real *x, const real *cs, int B, int S, int H, int dh) { rotate(x, cs, B, S, H, dh, 1); }

void rope_table_backward(real *dx, const real *cs, int B, int S, int H, int dh) {
    if (dx) rotate(dx, cs, B, S, H, dh, -1);
}
