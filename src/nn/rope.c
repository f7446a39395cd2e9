/* Rotary position embeddings, half-split convention (Llama / GPT-NeoX style, §7):
 * dimension i < dh/2 is paired with i + dh/2 and the pair is rotated by
 * θ = pos · base^(−2i/dh). The angle only depends on (pos, i), so each cos/sin is
 * computed once (in double) and applied to every batch row and head.
 * The rotation is orthogonal, so backward applies its transpose (rotation by −θ)
 * to the gradient in place. */
#include <math.h>

#include "vpd/nn.h"

/* sign = +1 forward, −1 backward (transpose = rotation by −θ). Only the first `rot`
 * values of each head rotate (rot = dh: the whole head; GPT-NeoX's partial rotary:
 * rot = rotary_pct · dh, pairs (i, i + rot/2), θ = pos · base^(−2i/rot)). */
static void rope_rotate(real *x, int B, int S, int pos0, int H, int dh, int rot, real base, double sign) {
    int half = rot / 2;
    VPD_ASSERT(rot % 2 == 0 && rot >= 2 && rot <= dh, "rope: rotary dim %d must be even and in [2, head dim %d]",
               rot, dh);
    for (int s = 0; s < S; s++) {
        for (int i = 0; i < half; i++) {
            double theta = (double)(pos0 + s) * pow((double)base, -2.0 * i / rot);
            real c = (real)cos(theta), sn = (real)(sign * sin(theta));
            for (int b = 0; b < B; b++) {
                real *row = x + ((size_t)b * S + s) * (size_t)H * dh;
                for (int h = 0; h < H; h++) {
                    real *p = row + (size_t)h * dh;
                    real x1 = p[i], x2 = p[i + half];
                    p[i] = x1 * c - x2 * sn;
                    p[i + half] = x2 * c + x1 * sn;
                }
            }
        }
    }
}

void rope_forward(real *x, int B, int S, int H, int dh, real base) {
    rope_rotate(x, B, S, 0, H, dh, dh, base, 1.0);
}

void rope_backward(real *dx, int B, int S, int H, int dh, real base) {
    if (dx) rope_rotate(dx, B, S, 0, H, dh, dh, base, -1.0);
}

void rope_partial_forward(real *x, int B, int S, int H, int dh, int rot, real base) {
    rope_rotate(x, B, S, 0, H, dh, rot, base, 1.0);
}

void rope_partial_backward(real *dx, int B, int S, int H, int dh, int rot, real base) {
    if (dx) rope_rotate(dx, B, S, 0, H, dh, rot, base, -1.0);
}

/* x [B, S, H, dh] holding positions pos0 .. pos0 + S − 1 (e.g. one row t of n gradient copies:
 * B = n, S = 1, pos0 = t): the same angles as rope_forward's at those positions. */
void rope_offset_forward(real *x, int B, int S, int pos0, int H, int dh, real base) {
    rope_rotate(x, B, S, pos0, H, dh, dh, base, 1.0);
}

void rope_offset_backward(real *dx, int B, int S, int pos0, int H, int dh, real base) {
    if (dx) rope_rotate(dx, B, S, pos0, H, dh, dh, base, -1.0);
}
