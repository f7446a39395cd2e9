/* Row-block attention (src/nn/attention_rows.c): the forward equals attention_forward's and
 * its lse equals log Σ exp of the scaled scores; finite-difference checks of dq, dk, dv; and
 * the backward equals attention_backward's — for causal and bidirectional attention, grouped
 * (Hkv = 2) and not (Hkv = 4), and row blocks of 1, 3 (not dividing S = 7) and >= S. */
#include <math.h>

#include "testutil.h"
#include "vpd/nn.h"

enum { B = 2, S = 7, H = 4, DH = 4, NQ = B * S * H * DH };
static int Hkv, rows;
static bool causal;
static real q[NQ], k[NQ], v[NQ], R[NQ], out[NQ], lse[B * H * S], att[B * H * S * S];

static double objective(void *ctx) {
    (void)ctx;
    attention_rows_forward(out, lse, q, k, v, B, S, H, Hkv, DH, causal, rows);
    double f = 0;
    for (int i = 0; i < NQ; i++) f += (double)out[i] * R[i];
    return f;
}

int main(void) {
    tu_fill(R, NQ, 4, 1.0);
    const int row_opts[3] = {1, 3, 64};
    for (int hkv = 0; hkv < 2; hkv++) {
        Hkv = hkv ? 4 : 2;
        const int NK = B * S * Hkv * DH;
        tu_fill(q, NQ, 1, 1.5);
        tu_fill(k, NK, 2, 1.5);
        tu_fill(v, NK, 3, 1.0);
        for (int c = 0; c < 2; c++)
            for (int ro = 0; ro < 3; ro++) {
                causal = c;
                rows = row_opts[ro];
                char name[96];
                fprintf(stderr, "attention_rows H=%d Hkv=%d rows=%d %s\n", H, Hkv, rows, causal ? "causal" : "bidirectional");
                real ref[NQ];
                attention_forward(ref, att, q, k, v, B, S, H, Hkv, DH, causal);
                objective(NULL);
                double e = tu_max_rel_err(out, ref, NQ, 1e-12);
                CHECK(e < 1e-13, "attention_rows forward vs attention_forward (rows %d): rel err %.3e", rows, e);
                /* lse_i = log Σ_j exp(q_i·k_j/√dh) over the visible j */
                double lerr = 0;
                for (int b = 0; b < B; b++)
                    for (int h = 0; h < H; h++)
                        for (int i = 0; i < S; i++) {
                            const int hk = h / (H / Hkv), n = causal ? i + 1 : S;
                            double sum = 0;
                            for (int j = 0; j < n; j++) {
                                double s = 0;
                                for (int d = 0; d < DH; d++)
                                    s += (double)q[((b * S + i) * H + h) * DH + d] * k[((b * S + j) * Hkv + hk) * DH + d];
                                sum += exp(s / sqrt((double)DH));
                            }
                            lerr = fmax(lerr, fabs(log(sum) - lse[(b * H + h) * S + i]));
                        }
                CHECK(lerr < 1e-12, "attention_rows lse vs direct: abs err %.3e", lerr);

                real dq[NQ], dk[NQ], dv[NQ], rq[NQ], rk[NQ], rv[NQ];
                for (int i = 0; i < NQ; i++) dq[i] = dk[i] = dv[i] = 0.5;
                attention_rows_backward(dq, dk, dv, R, lse, q, k, v, B, S, H, Hkv, DH, causal, rows);
                for (int i = 0; i < NQ; i++) {
                    dq[i] -= 0.5;
                    dk[i] -= 0.5;
                    dv[i] -= 0.5;
                    rq[i] = rk[i] = rv[i] = 0;
                }
                attention_backward(rq, rk, rv, R, att, q, k, v, B, S, H, Hkv, DH, causal);
                e = fmax(tu_max_rel_err(dq, rq, NQ, 1e-12), fmax(tu_max_rel_err(dk, rk, NK, 1e-12), tu_max_rel_err(dv, rv, NK, 1e-12)));
                CHECK(e < 1e-12, "attention_rows backward vs attention_backward (rows %d): rel err %.3e", rows, e);
                snprintf(name, sizeof name, "attn_rows dq Hkv=%d rows=%d%s", Hkv, rows, causal ? " causal" : "");
                CHECK(tu_fd_check(objective, NULL, q, dq, NQ, 1e-5, name) <= 1e-6, "%s", name);
                snprintf(name, sizeof name, "attn_rows dk Hkv=%d rows=%d%s", Hkv, rows, causal ? " causal" : "");
                CHECK(tu_fd_check(objective, NULL, k, dk, NK, 1e-5, name) <= 1e-6, "%s", name);
                snprintf(name, sizeof name, "attn_rows dv Hkv=%d rows=%d%s", Hkv, rows, causal ? " causal" : "");
                CHECK(tu_fd_check(objective, NULL, v, dv, NK, 1e-5, name) <= 1e-6, "%s", name);
                /* NULL gradients are allowed; a lone dk equals the full call's */
                for (int i = 0; i < NQ; i++) rk[i] = 0;
                attention_rows_backward(NULL, rk, NULL, R, lse, q, k, v, B, S, H, Hkv, DH, causal, rows);
                e = tu_max_rel_err(rk, dk, NK, 1e-12);
                CHECK(e < 1e-12, "attention_rows dk alone: rel err %.3e", e);
            }
    }
    TEST_REPORT();
}
