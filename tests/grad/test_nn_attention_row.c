/* One query row of causal attention (src/nn/attention_row.c): the forward equals row t of
 * attention_forward's output; finite-difference checks of dq, dk, dv for every one of n
 * gradient copies, with all key rows (R = t+1) and only the last R; and the backward equals
 * row t of attention_backward's with the output gradient at row t only. Grouped (Hkv = 2) and
 * not (Hkv = 4), t = 0, a middle row and the last. */
#include <math.h>
#include <string.h>

#include "testutil.h"
#include "vpd/nn.h"

enum { S = 7, H = 4, DH = 4, NQ = S * H * DH, NCOPY = 3 };
static int Hkv, t, cur;
static real q[NQ], k[NQ], v[NQ], R[NCOPY * H * DH], out[H * DH];

/* f_b = dout_b · out_t(q, k, v) for the copy `cur` */
static double objective(void *ctx) {
    (void)ctx;
    attention_row_forward(out, q + (size_t)t * H * DH, k, v, t, H, Hkv, DH);
    double f = 0;
    for (int i = 0; i < H * DH; i++) f += (double)out[i] * R[(size_t)cur * H * DH + i];
    return f;
}

int main(void) {
    tu_fill(R, (size_t)NCOPY * H * DH, 4, 1.0);
    const int t_opts[3] = {0, 3, S - 1};
    static real full[NQ], att[H * S * S], dO[NQ], rq[NQ], rk[NQ], rv[NQ];
    for (int hkv = 0; hkv < 2; hkv++) {
        Hkv = hkv ? 4 : 2;
        const int KV = Hkv * DH, NK = S * KV;
        tu_fill(q, NQ, 1, 1.5);
        tu_fill(k, NK, 2, 1.5);
        tu_fill(v, NK, 3, 1.0);
        attention_forward(full, att, q, k, v, 1, S, H, Hkv, DH, true);
        for (int ti = 0; ti < 3; ti++) {
            t = t_opts[ti];
            cur = 0; /* the objective reads copy cur: the loop below leaves it at NCOPY */
            objective(NULL);
            double e = tu_max_rel_err(out, full + (size_t)t * H * DH, H * DH, 1e-12);
            CHECK(e < 1e-13, "attention_row forward vs attention_forward row %d: rel err %.3e", t, e);
            const int R_opts[2] = {t + 1, t >= 2 ? 2 : 1};
            for (int ri = 0; ri < 2; ri++) {
                const int Rr = R_opts[ri];
                static real dq[NCOPY * H * DH], dk[NCOPY * S * 4 * DH], dv[NCOPY * S * 4 * DH];
                for (size_t i = 0; i < sizeof dq / sizeof *dq; i++) dq[i] = 0.5;
                for (size_t i = 0; i < (size_t)NCOPY * Rr * KV; i++) dk[i] = dv[i] = -0.25;
                attention_row_backward(dq, dk, dv, R, q + (size_t)t * H * DH, k, v, t, NCOPY, Rr, H, Hkv, DH);
                for (size_t i = 0; i < sizeof dq / sizeof *dq; i++) dq[i] -= 0.5;
                for (size_t i = 0; i < (size_t)NCOPY * Rr * KV; i++) {
                    dk[i] += 0.25;
                    dv[i] += 0.25;
                }
                for (cur = 0; cur < NCOPY; cur++) {
                    char name[96];
                    /* against attention_backward with the output gradient at row t only */
                    memset(dO, 0, sizeof dO);
                    memcpy(dO + (size_t)t * H * DH, R + (size_t)cur * H * DH, sizeof(real) * H * DH);
                    memset(rq, 0, sizeof rq);
                    memset(rk, 0, sizeof rk);
                    memset(rv, 0, sizeof rv);
                    attention_backward(rq, rk, rv, dO, att, q, k, v, 1, S, H, Hkv, DH, true);
                    const real *cq = dq + (size_t)cur * H * DH, *ck = dk + (size_t)cur * Rr * KV, *cv = dv + (size_t)cur * Rr * KV;
                    const size_t r0 = (size_t)(t + 1 - Rr) * KV;
                    e = fmax(tu_max_rel_err(cq, rq + (size_t)t * H * DH, H * DH, 1e-12),
                             fmax(tu_max_rel_err(ck, rk + r0, (size_t)Rr * KV, 1e-12), tu_max_rel_err(cv, rv + r0, (size_t)Rr * KV, 1e-12)));
                    CHECK(e < 1e-12, "attention_row backward vs attention_backward (t %d, R %d, copy %d): rel err %.3e", t, Rr,
                          cur, e);
                    snprintf(name, sizeof name, "attn_row dq Hkv=%d t=%d R=%d b=%d", Hkv, t, Rr, cur);
                    CHECK(tu_fd_check(objective, NULL, q + (size_t)t * H * DH, cq, H * DH, 1e-5, name) <= 1e-6, "%s", name);
                    snprintf(name, sizeof name, "attn_row dk Hkv=%d t=%d R=%d b=%d", Hkv, t, Rr, cur);
                    CHECK(tu_fd_check(objective, NULL, k + r0, ck, (size_t)Rr * KV, 1e-5, name) <= 1e-6, "%s", name);
                    snprintf(name, sizeof name, "attn_row dv Hkv=%d t=%d R=%d b=%d", Hkv, t, Rr, cur);
                    CHECK(tu_fd_check(objective, NULL, v + r0, cv, (size_t)Rr * KV, 1e-5, name) <= 1e-6, "%s", name);
                }
                /* NULL gradients allowed: a lone dk equals the full call's */
                static real lk[NCOPY * S * 4 * DH];
                memset(lk, 0, sizeof lk);
                attention_row_backward(NULL, lk, NULL, R, q + (size_t)t * H * DH, k, v, t, NCOPY, Rr, H, Hkv, DH);
                e = tu_max_rel_err(lk, dk, (size_t)NCOPY * Rr * KV, 1e-12);
                CHECK(e < 1e-13, "attention_row: dk alone differs (%.3e)", e);
            }
        }
    }
    TEST_REPORT();
}
