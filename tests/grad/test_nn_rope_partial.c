/* Partial rotary (GPT-NeoX rotary_pct): only the first R values of each head rotate, pairs
 * (i, i + R/2), θ = pos · base^(−2i/R); the rest pass through unchanged. Forward against
 * a direct evaluation, R = dh equal to rope_forward bit for bit, and a finite-difference
 * check of rope_partial_backward. */
#include <math.h>

#include "testutil.h"
#include "vpd/nn.h"

enum { B = 2, S = 4, H = 3, DH = 8, RD = 4, NX = B * S * H * DH };
static const real base = 100;
static real x[NX], R[NX], y[NX];

static double objective(void *ctx) {
    (void)ctx;
    memcpy(y, x, sizeof y);
    rope_partial_forward(y, B, S, H, DH, RD, base);
    double f = 0;
    for (int i = 0; i < NX; i++) f += (double)y[i] * R[i];
    return f;
}

int main(void) {
    tu_fill(x, NX, 1, 1.0);
    tu_fill(R, NX, 2, 1.0);
    objective(NULL);
    real ref[NX];
    memcpy(ref, x, sizeof ref);
    int half = RD / 2;
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S; s++)
            for (int h = 0; h < H; h++) {
                size_t o = (((size_t)b * S + s) * H + h) * DH;
                for (int i = 0; i < half; i++) {
                    double th = s * pow(base, -2.0 * i / RD);
                    ref[o + i] = (real)(x[o + i] * cos(th) - x[o + i + half] * sin(th));
                    ref[o + i + half] = (real)(x[o + i + half] * cos(th) + x[o + i] * sin(th));
                }
            }
    double e = tu_max_rel_err(y, ref, NX, 1e-12);
    CHECK(e < 1e-14, "partial rope forward vs direct: rel err %.3e", e);
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S; s++)
            for (int h = 0; h < H; h++)
                for (int d = RD; d < DH; d++) {
                    size_t i = (((size_t)b * S + s) * H + h) * DH + d;
                    CHECK(y[i] == x[i], "partial rope changed a pass-through value at %zu", i);
                }
    /* R = dh is the full rope */
    real a[NX], c[NX];
    memcpy(a, x, sizeof a);
    memcpy(c, x, sizeof c);
    rope_partial_forward(a, B, S, H, DH, DH, base);
    rope_forward(c, B, S, H, DH, base);
    CHECK(memcmp(a, c, sizeof a) == 0, "rope_partial_forward with R = dh differs from rope_forward");

    real g[NX];
    memcpy(g, R, sizeof g);
    rope_partial_backward(g, B, S, H, DH, RD, base);
    CHECK(tu_fd_check(objective, NULL, x, g, NX, 1e-5, "partial rope dx") <= 1e-6, "partial rope backward");
    TEST_REPORT();
}
