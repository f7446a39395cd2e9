/* Grouped-query attention: forward against a direct per-element evaluation, causal
 * row 0 (one visible position) equal to v, and finite-difference checks of dq, dk, dv
 * for causal and bidirectional attention with H = 4 and Hkv = 2 (grouped) or 4. */
#include <math.h>

#include "testutil.h"
#include "vpd/nn.h"

enum { B = 2, S = 5, H = 4, DH = 4, NQ = B * S * H * DH };
static int Hkv;
static bool causal;
static real q[NQ], k[NQ], v[NQ], R[NQ], out[NQ], att[B * H * S * S];

static double objective(void *ctx) {
    (void)ctx;
    attention_forward(out, att, q, k, v, B, S, H, Hkv, DH, causal);
    double f = 0;
    for (int i = 0; i < NQ; i++) f += (double)out[i] * R[i];
    return f;
}

/* Direct evaluation, one output element at a time */
static void attention_direct(real *o) {
    int group = H / Hkv;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int hk = h / group;
            for (int i = 0; i < S; i++) {
                double sc[S], mx = -INFINITY, sum = 0;
                int n = causal ? i + 1 : S;
                for (int j = 0; j < n; j++) {
                    double s = 0;
                    for (int d = 0; d < DH; d++)
                        s += (double)q[((b * S + i) * H + h) * DH + d] * k[((b * S + j) * Hkv + hk) * DH + d];
                    sc[j] = s / sqrt((double)DH);
                    if (sc[j] > mx) mx = sc[j];
                }
                for (int j = 0; j < n; j++) sum += (sc[j] = exp(sc[j] - mx));
                for (int d = 0; d < DH; d++) {
                    double acc = 0;
                    for (int j = 0; j < n; j++) acc += sc[j] / sum * v[((b * S + j) * Hkv + hk) * DH + d];
                    o[((b * S + i) * H + h) * DH + d] = (real)acc;
                }
            }
        }
}

int main(void) {
    tu_fill(R, NQ, 4, 1.0);
    for (int hkv = 0; hkv < 2; hkv++) {
        Hkv = hkv ? 4 : 2;
        int NK = B * S * Hkv * DH;
        tu_fill(q, NQ, 1, 1.5);
        tu_fill(k, NK, 2, 1.5);
        tu_fill(v, NK, 3, 1.0);
        for (int c = 0; c < 2; c++) {
            causal = c;
            char name[64];
            fprintf(stderr, "attention H=%d Hkv=%d %s\n", H, Hkv, causal ? "causal" : "bidirectional");
            objective(NULL);
            real ref[NQ];
            attention_direct(ref);
            double e = tu_max_rel_err(out, ref, NQ, 1e-12);
            CHECK(e < 1e-13, "attention forward vs direct: rel err %.3e", e);
            if (causal)
                for (int b = 0; b < B; b++)
                    for (int h = 0; h < H; h++)
                        for (int d = 0; d < DH; d++)
                            CHECK(fabs(out[(b * S * H + h) * DH + d] - v[(b * S * Hkv + h / (H / Hkv)) * DH + d]) < 1e-15,
                                  "causal row 0 must equal v (b=%d h=%d)", b, h);

            real dq[NQ], dk[NQ], dv[NQ];
            for (int i = 0; i < NQ; i++) dq[i] = dk[i] = dv[i] = 0.5;
            attention_backward(dq, dk, dv, R, att, q, k, v, B, S, H, Hkv, DH, causal);
            for (int i = 0; i < NQ; i++) { dq[i] -= 0.5; dk[i] -= 0.5; dv[i] -= 0.5; }
            snprintf(name, sizeof name, "attn dq Hkv=%d%s", Hkv, causal ? " causal" : "");
            CHECK(tu_fd_check(objective, NULL, q, dq, NQ, 1e-5, name) <= 1e-6, "%s", name);
            snprintf(name, sizeof name, "attn dk Hkv=%d%s", Hkv, causal ? " causal" : "");
            CHECK(tu_fd_check(objective, NULL, k, dk, NK, 1e-5, name) <= 1e-6, "%s", name);
            snprintf(name, sizeof name, "attn dv Hkv=%d%s", Hkv, causal ? " causal" : "");
            CHECK(tu_fd_check(objective, NULL, v, dv, NK, 1e-5, name) <= 1e-6, "%s", name);
            /* NULL gradients are allowed */
            attention_backward(NULL, dk, NULL, R, att, q, k, v, B, S, H, Hkv, DH, causal);
        }
    }
    TEST_REPORT();
}
