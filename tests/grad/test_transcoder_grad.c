/* Finite-difference checks (double build) of the transcoder kernels (src/transcoder/tc_internal.h):
 *   - the whole forward f = Σ_j Σ R_j ⊙ ŷ_j, ŷ_j = b_dec[j] + Σ_{i∈src(j)} act(x_i W_enc[i]^T +
 *     b_enc[i]) W_dec[i][j], for PLT and CLT and each activation's differentiable part
 *     (topk, relu, batchtopk at a fixed threshold, jumprelu at fixed θ: the value path),
 *     w.r.t. x, W_enc, b_enc, W_dec, b_dec;
 *   - the decoder-norm projection: at unit decoder vectors the projected gradient is the
 *     gradient of F(W_dec / |W_dec|) (joint norm over the MLPs a CLT latent writes to);
 *   - JumpReLU's L0 pseudo-gradient: it is the exact derivative of the rectangle-smoothed
 *     step H_eps(u) = clamp(u/eps + 1/2, 0, 1) (the value part is a straight-through
 *     estimator with no function to difference; the PyTorch reference checks it);
 *   - tc_topk / tc_local_topk_sorted selections against brute force. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "transcoder/tc_internal.h"

enum { L = 3, D = 5, NL = 7, N = 4, K = 3 };

static vpd_transcoder *T;
static real X[L][N * D], R[L][N * D];
static real thr_fixed = (real)0.15;
static bool normalise_in_f = false;

/* the forward; with dpar/dx non-NULL also the backward of Σ R ⊙ ŷ */
static double run(vpd_transcoder *t, vpd_transcoder *gt, real dx[L][N * D]) {
    real pre[N * NL], z[L][N * NL], dz[L][N * NL], y[N * D], scratch[NL];
    memset(dz, 0, sizeof dz);
    for (int i = 0; i < L; i++) {
        tc_pre(X[i], t->W_enc[i], t->b_enc[i], N, D, NL, pre);
        switch (t->act) {
        case VPD_TC_TOPK: tc_topk(pre, N, NL, t->k, z[i], scratch); break;
        case VPD_TC_BATCHTOPK: tc_keep_ge(pre, (size_t)N * NL, thr_fixed, z[i]); break;
        case VPD_TC_RELU: tc_relu(pre, (size_t)N * NL, z[i]); break;
        case VPD_TC_JUMPRELU: tc_jumprelu(pre, N, NL, t->threshold[i], z[i]); break;
        }
    }
    double f = 0;
    for (int j = 0; j < L; j++) {
        for (int r = 0; r < N; r++) memcpy(y + r * D, t->b_dec[j], sizeof(real) * D);
        for (int i = 0; i <= j; i++)
            if (vpd_tc_writes(t, i, j)) tc_dec(z[i], t->W_dec[i * L + j], N, NL, D, y);
        for (int q = 0; q < N * D; q++) f += (double)y[q] * R[j][q];
        if (gt) {
            for (int r = 0; r < N; r++)
                for (int c = 0; c < D; c++) gt->b_dec[j][c] += R[j][r * D + c];
            for (int i = 0; i <= j; i++)
                if (vpd_tc_writes(t, i, j)) tc_dec_backward(R[j], z[i], t->W_dec[i * L + j], N, NL, D, gt->W_dec[i * L + j], dz[i]);
        }
    }
    if (gt)
        for (int i = 0; i < L; i++) {
            real dpre[N * NL] = {0};
            tc_act_backward(dz[i], z[i], (size_t)N * NL, dpre);
            tc_pre_backward(dpre, X[i], t->W_enc[i], N, D, NL, gt->W_enc[i], gt->b_enc[i], dx ? dx[i] : NULL);
        }
    return f;
}

static vpd_transcoder *Tn; /* scratch copy for the normalised objective */
static double objective(void *ctx) {
    (void)ctx;
    if (!normalise_in_f) return run(T, NULL, NULL);
    memcpy(Tn->params, T->params, sizeof(real) * T->n_params);
    tc_dec_normalise(Tn);
    return run(Tn, NULL, NULL);
}

static void check_forward(vpd_tc_kind kind, vpd_tc_act act) {
    fprintf(stderr, "%s %s\n", vpd_tc_kind_name(kind), vpd_tc_act_name(act));
    VPD_ASSERT(vpd_transcoder_create(&T, kind, act, L, D, NL, K) == VPD_OK, "create");
    VPD_ASSERT(vpd_transcoder_create(&Tn, kind, act, L, D, NL, K) == VPD_OK, "create");
    tu_fill(T->params, T->n_params, 11 + kind * 4 + act, 0.8);
    for (int i = 0; i < L; i++)
        for (int q = 0; q < NL; q++) T->threshold[i][q] = (real)(0.1 + 0.05 * q);
    vpd_transcoder *G = NULL;
    VPD_ASSERT(vpd_transcoder_create(&G, kind, act, L, D, NL, K) == VPD_OK, "create");
    real dx[L][N * D];
    memset(dx, 0, sizeof dx);
    normalise_in_f = false;
    run(T, G, dx);
    double h = 1e-6, tol = 1e-6;
    char nm[64];
    for (int i = 0; i < L; i++) {
        snprintf(nm, sizeof nm, "x_%d", i);
        CHECK(tu_fd_check(objective, NULL, X[i], dx[i], N * D, h, nm) <= tol, "%s", nm);
        snprintf(nm, sizeof nm, "W_enc_%d", i);
        CHECK(tu_fd_check(objective, NULL, T->W_enc[i], G->W_enc[i], (size_t)NL * D, h, nm) <= tol, "%s", nm);
        snprintf(nm, sizeof nm, "b_enc_%d", i);
        CHECK(tu_fd_check(objective, NULL, T->b_enc[i], G->b_enc[i], NL, h, nm) <= tol, "%s", nm);
        snprintf(nm, sizeof nm, "b_dec_%d", i);
        CHECK(tu_fd_check(objective, NULL, T->b_dec[i], G->b_dec[i], D, h, nm) <= tol, "%s", nm);
        for (int j = 0; j < L; j++)
            if (vpd_tc_writes(T, i, j)) {
                snprintf(nm, sizeof nm, "W_dec_%d_%d", i, j);
                CHECK(tu_fd_check(objective, NULL, T->W_dec[i * L + j], G->W_dec[i * L + j], (size_t)NL * D, h, nm) <= tol, "%s",
                      nm);
            }
    }
    /* the decoder-norm projection */
    tc_dec_normalise(T);
    memset(G->params, 0, sizeof(real) * G->n_params);
    run(T, G, NULL);
    tc_dec_project_grad(T, G);
    normalise_in_f = true;
    for (int i = 0; i < L; i++)
        for (int j = 0; j < L; j++)
            if (vpd_tc_writes(T, i, j)) {
                snprintf(nm, sizeof nm, "projected W_dec_%d_%d", i, j);
                CHECK(tu_fd_check(objective, NULL, T->W_dec[i * L + j], G->W_dec[i * L + j], (size_t)NL * D, h, nm) <= tol, "%s",
                      nm);
            }
    /* projected gradient ⟂ decoder vector, renormalised vectors unit */
    for (int i = 0; i < L; i++)
        for (int r = 0; r < NL; r++) {
            double gv = 0, vv = 0;
            for (int j = 0; j < L; j++)
                if (vpd_tc_writes(T, i, j)) {
                    gv += vpd_dot(D, G->W_dec[i * L + j] + r * D, T->W_dec[i * L + j] + r * D);
                    vv += vpd_sumsq(D, T->W_dec[i * L + j] + r * D);
                }
            CHECK(fabs(gv) < 1e-12 && fabs(vv - 1) < 1e-12, "latent %d of MLP %d: g.v %.3g, |v|^2 %.15g", r, i, gv, vv);
        }
    normalise_in_f = false;
    vpd_transcoder_free(G);
    vpd_transcoder_free(Tn);
    vpd_transcoder_free(T);
}

/* JumpReLU L0 pseudo-gradient vs the smoothed step */
static real pre_j[N * NL], theta_j[NL];
static const double EPS = 0.3, SCALE = 0.7;
static double smooth_l0(void *ctx) {
    (void)ctx;
    double f = 0;
    for (int r = 0; r < N; r++)
        for (int c = 0; c < NL; c++) {
            double u = ((double)pre_j[r * NL + c] - theta_j[c]) / EPS + 0.5;
            f += SCALE * (u < 0 ? 0 : u > 1 ? 1 : u);
        }
    return f;
}

int main(void) {
    for (int i = 0; i < L; i++) {
        tu_fill(X[i], N * D, 100 + i, 1.0);
        tu_fill(R[i], N * D, 200 + i, 1.0);
    }
    for (int kind = 0; kind < 2; kind++)
        for (int act = 0; act < 4; act++) check_forward((vpd_tc_kind)kind, (vpd_tc_act)act);

    fprintf(stderr, "jumprelu L0 pseudo-gradient\n");
    tu_fill(pre_j, N * NL, 300, 0.6);
    for (int c = 0; c < NL; c++) theta_j[c] = (real)(0.05 * c);
    real dth[NL] = {0};
    tc_jumprelu_theta_backward(NULL, pre_j, N, NL, theta_j, EPS, SCALE, dth);
    CHECK(tu_fd_check(smooth_l0, NULL, theta_j, dth, NL, 1e-6, "theta (L0)") <= 1e-6, "jumprelu L0 pseudo-gradient");
    /* value part: the documented formula −θ/eps·K per row, summed with dz */
    real dz[N * NL], dth2[NL] = {0};
    tu_fill(dz, N * NL, 301, 1.0);
    tc_jumprelu_theta_backward(dz, pre_j, N, NL, theta_j, EPS, 0, dth2);
    for (int c = 0; c < NL; c++) {
        double want = 0;
        for (int r = 0; r < N; r++)
            if (fabs(((double)pre_j[r * NL + c] - theta_j[c]) / EPS) < 0.5) want += dz[r * NL + c] * (-(double)theta_j[c] / EPS);
        CHECK(fabs(want - dth2[c]) < 1e-12, "jumprelu value pseudo-gradient latent %d: %g vs %g", c, dth2[c], want);
    }

    /* selections against brute force */
    real p[64], z[64], s[64], out[64], s2[64];
    tu_fill(p, 64, 400, 1.0);
    p[5] = p[9] = (real)0.77; /* a tie */
    tc_topk(p, 4, 16, 5, z, s);
    for (int r = 0; r < 4; r++) {
        int kept = 0;
        for (int c = 0; c < 16; c++) {
            int bigger = 0;
            for (int q = 0; q < 16; q++) bigger += p[r * 16 + q] > p[r * 16 + c] || (p[r * 16 + q] == p[r * 16 + c] && q < c);
            bool want = bigger < 5 && p[r * 16 + c] > 0;
            CHECK((z[r * 16 + c] != 0) == want, "topk row %d col %d", r, c);
            kept += z[r * 16 + c] != 0;
        }
        CHECK(kept <= 5, "topk kept %d > 5", kept);
    }
    size_t m = tc_local_topk_sorted(p, 64, 10, out, s2);
    int npos = 0;
    for (int q = 0; q < 64; q++) npos += p[q] > 0;
    CHECK(m == (size_t)(npos < 10 ? npos : 10), "local topk count %zu", m);
    for (size_t q = 0; q < m; q++) {
        int bigger = 0;
        for (int c = 0; c < 64; c++) bigger += p[c] > out[q];
        CHECK(bigger <= (int)q, "local topk value %zu (%g) has %d larger", q, (double)out[q], bigger);
        if (q) CHECK(out[q] <= out[q - 1], "local topk not descending at %zu", q);
    }
    TEST_REPORT();
}
