/* SwiGLU and table-driven RoPE (the Hugging Face llama / qwen kernels):
 *  - swiglu_forward against silu(g) u evaluated directly; finite-difference check of
 *    swiglu_backward for both inputs, and that it accumulates.
 *  - rope_table_forward with a table from the default frequencies equals rope_forward
 *    (same rotation, same angles); with arbitrary frequencies it preserves norms; finite-
 *    difference check of rope_table_backward. */
#include <math.h>

#include "testutil.h"
#include "vpd/nn.h"

enum { N = 37, B = 2, S = 5, H = 3, DH = 8, NX = B * S * H * DH };
static real g[N], u[N], R[N], h[N];
static real x[NX], Rx[NX], y[NX], cs[S * DH];

static double f_swiglu(void *ctx) {
    (void)ctx;
    swiglu_forward(h, g, u, N);
    double f = 0;
    for (int i = 0; i < N; i++) f += (double)h[i] * R[i];
    return f;
}

static double f_rope(void *ctx) {
    (void)ctx;
    memcpy(y, x, sizeof y);
    rope_table_forward(y, cs, B, S, H, DH);
    double f = 0;
    for (int i = 0; i < NX; i++) f += (double)y[i] * Rx[i];
    return f;
}

int main(void) {
    tu_fill(g, N, 1, 3.0);
    tu_fill(u, N, 2, 1.0);
    tu_fill(R, N, 3, 1.0);
    swiglu_forward(h, g, u, N);
    for (int i = 0; i < N; i++) {
        double ref = (double)g[i] / (1 + exp(-(double)g[i])) * (double)u[i];
        CHECK(fabs(h[i] - ref) <= 1e-15 * (1 + fabs(ref)), "swiglu forward at %d: %g vs %g", i, (double)h[i], ref);
    }
    real dg[N], du[N];
    for (int i = 0; i < N; i++) dg[i] = du[i] = 0;
    swiglu_backward(dg, du, R, g, u, N);
    double e = tu_fd_check(f_swiglu, NULL, g, dg, N, 1e-6, "swiglu d/dgate");
    CHECK(e < 1e-8, "swiglu d/dgate rel err %.3e", e);
    e = tu_fd_check(f_swiglu, NULL, u, du, N, 1e-6, "swiglu d/dup");
    CHECK(e < 1e-8, "swiglu d/dup rel err %.3e", e);
    real dg2[N];
    memcpy(dg2, dg, sizeof dg2);
    swiglu_backward(dg2, NULL, R, g, u, N);
    for (int i = 0; i < N; i++) CHECK(fabs(dg2[i] - 2 * dg[i]) < 1e-14 * (1 + fabs(dg[i])), "swiglu_backward accumulates");

    /* table from the default frequencies = rope_forward */
    double inv[DH / 2];
    for (int i = 0; i < DH / 2; i++) inv[i] = pow(100.0, -2.0 * i / DH);
    rope_table_fill(cs, inv, S, DH);
    tu_fill(x, NX, 4, 1.0);
    tu_fill(Rx, NX, 5, 1.0);
    real ref[NX];
    memcpy(ref, x, sizeof ref);
    rope_forward(ref, B, S, H, DH, 100);
    f_rope(NULL);
    e = tu_max_rel_err(y, ref, NX, 1e-12);
    CHECK(e < 1e-13, "rope_table vs rope_forward: rel err %.3e", e);
    /* arbitrary frequencies (as llama3 scaling makes them) */
    for (int i = 0; i < DH / 2; i++) inv[i] = 0.3 + 0.7 * i;
    rope_table_fill(cs, inv, S, DH);
    f_rope(NULL);
    for (int r = 0; r < B * S * H; r++) {
        double n0 = 0, n1 = 0;
        for (int d = 0; d < DH; d++) {
            n0 += (double)x[r * DH + d] * x[r * DH + d];
            n1 += (double)y[r * DH + d] * y[r * DH + d];
        }
        CHECK(fabs(n0 - n1) < 1e-12 * n0, "rope_table changes a norm (row %d)", r);
    }
    real dx[NX];
    memcpy(dx, Rx, sizeof dx);
    rope_table_backward(dx, cs, B, S, H, DH);
    e = tu_fd_check(f_rope, NULL, x, dx, NX, 1e-6, "rope_table");
    CHECK(e < 1e-8, "rope_table backward rel err %.3e", e);
    TEST_REPORT();
}
