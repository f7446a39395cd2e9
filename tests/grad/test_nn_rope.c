/* RoPE (half-split): forward against a direct evaluation of
 *   x'_i = x_i cos θ − x_{i+h} sin θ, x'_{i+h} = x_{i+h} cos θ + x_i sin θ,
 *   θ = pos · base^(−2i/dh),
 * identity at position 0, norm preservation of every head vector, and a
 * finite-difference check of rope_backward (which maps dy to dx in place). */
#include <math.h>

#include "testutil.h"
#include "vpd/nn.h"

enum { B = 2, S = 4, H = 3, DH = 6, NX = B * S * H * DH };
static const real base = 100; /* small base: the higher pairs still rotate visibly at S = 4 */
static real x[NX], R[NX], y[NX];

static double objective(void *ctx) {
    (void)ctx;
    memcpy(y, x, sizeof y);
    rope_forward(y, B, S, H, DH, base);
    double f = 0;
    for (int i = 0; i < NX; i++) f += (double)y[i] * R[i];
    return f;
}

int main(void) {
    tu_fill(x, NX, 1, 1.0);
    tu_fill(R, NX, 2, 1.0);
    objective(NULL);

    real ref[NX];
    int half = DH / 2;
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S; s++)
            for (int h = 0; h < H; h++) {
                size_t o = (((size_t)b * S + s) * H + h) * DH;
                for (int i = 0; i < half; i++) {
                    double th = s * pow(base, -2.0 * i / DH);
                    ref[o + i] = (real)(x[o + i] * cos(th) - x[o + i + half] * sin(th));
                    ref[o + i + half] = (real)(x[o + i + half] * cos(th) + x[o + i] * sin(th));
                }
            }
    double e = tu_max_rel_err(y, ref, NX, 1e-12);
    CHECK(e < 1e-14, "rope forward vs direct: rel err %.3e", e);
    int changed = 0;
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S; s++)
            for (int h = 0; h < H; h++) {
                size_t o = (((size_t)b * S + s) * H + h) * DH;
                double n0 = 0, n1 = 0;
                for (int d = 0; d < DH; d++) {
                    n0 += (double)x[o + d] * x[o + d];
                    n1 += (double)y[o + d] * y[o + d];
                    if (s == 0) CHECK(y[o + d] == x[o + d], "rope at position 0 must be the identity");
                    else changed += y[o + d] != x[o + d];
                }
                CHECK(fabs(n0 - n1) < 1e-13 * n0, "rope changes the norm at b=%d s=%d h=%d", b, s, h);
            }
    CHECK(changed > 0, "rope did nothing at positions > 0");

    real dx[NX];
    memcpy(dx, R, sizeof dx);
    rope_backward(dx, B, S, H, DH, base);
    CHECK(tu_fd_check(objective, NULL, x, dx, NX, 1e-5, "rope dx") <= 1e-6, "rope dx");
    TEST_REPORT();
}
