/* RoPE at an offset (rope_offset_forward / rope_offset_backward): rows at positions
 * pos0 .. pos0+S-1 are rotated exactly as rope_forward rotates those positions of a longer
 * sequence (bit for bit), pos0 = 0 is rope_forward, and a finite-difference check of the
 * backward (the transpose rotation, in place on the gradient). */
#include <math.h>
#include <string.h>

#include "testutil.h"
#include "vpd/nn.h"

enum { B = 3, SL = 9, S = 2, POS0 = 6, H = 2, DH = 6, NX = B * S * H * DH, NL = SL * H * DH };
static const real base = 100;
static real x[NX], Rw[NX], y[NX];

static double objective(void *ctx) {
    (void)ctx;
    memcpy(y, x, sizeof y);
    rope_offset_forward(y, B, S, POS0, H, DH, base);
    double f = 0;
    for (int i = 0; i < NX; i++) f += (double)y[i] * Rw[i];
    return f;
}

int main(void) {
    tu_fill(x, NX, 1, 1.0);
    tu_fill(Rw, NX, 2, 1.0);
    objective(NULL);
    /* against rope_forward on a sequence of SL positions holding copy b's rows at POS0.. */
    static real longx[NL];
    for (int b = 0; b < B; b++) {
        tu_fill(longx, NL, 7, 1.0);
        memcpy(longx + (size_t)POS0 * H * DH, x + (size_t)b * S * H * DH, sizeof(real) * S * H * DH);
        rope_forward(longx, 1, SL, H, DH, base);
        CHECK(!memcmp(longx + (size_t)POS0 * H * DH, y + (size_t)b * S * H * DH, sizeof(real) * S * H * DH),
              "rope_offset_forward copy %d differs from rope_forward at positions %d..%d", b, POS0, POS0 + S - 1);
    }
    real z[NX], zr[NX];
    memcpy(z, x, sizeof z);
    memcpy(zr, x, sizeof zr);
    rope_offset_forward(z, B, S, 0, H, DH, base);
    rope_forward(zr, B, S, H, DH, base);
    CHECK(!memcmp(z, zr, sizeof z), "rope_offset_forward at pos0 0 differs from rope_forward");
    real dx[NX];
    memcpy(dx, Rw, sizeof dx);
    rope_offset_backward(dx, B, S, POS0, H, DH, base);
    CHECK(tu_fd_check(objective, NULL, x, dx, NX, 1e-5, "rope_offset dx") <= 1e-6, "rope_offset dx");
    rope_offset_backward(NULL, B, S, POS0, H, DH, base); /* NULL: nothing to do */
    TEST_REPORT();
}
