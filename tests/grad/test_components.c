/* Finite-difference checks (double build) of the components of one layer
 * (src/vpd/components.c): the masked forward/backward w.r.t. x, V, U, m and m_Δ for a
 * linear layer with and without bias and routing, and for an embedding layer; the
 * faithfulness backward; and the identities m = 1, m_Δ = 1 ⇒ y = W x + b and
 * route = 0 ⇒ y = W x + b exactly. The scalar is Σ y ⊙ G for a fixed random G, so
 * dy = G; Δ is recomputed from V, U inside every evaluation, so the FD also covers the
 * delta term's gradient through Δ = W − (VU)ᵀ. */
#include "testutil.h"
#include "vpd/components.h"
#include "vpd/nn.h"

enum { N = 7, DIN = 5, DOUT = 4, CC = 6, VOCAB = 9 };

typedef struct {
    vpd_components c;
    real V[VOCAB * CC], U[CC * DOUT], W[VOCAB * DOUT], b[DOUT], delta[VOCAB * DOUT];
    real x[N * DIN], m[N * CC], md[N], G[N * DOUT];
    int32_t tok[N];
    uint8_t route[N];
    bool use_m, use_md, use_route, use_b;
    real y[N * DOUT], a[N * CC];
    real work[N * (2 * CC + VOCAB + DOUT) + 64];
} ctx_t;

static double loss_fn(void *p) {
    ctx_t *t = p;
    vpd_components_delta(&t->c);
    vpd_components_forward(t->y, t->a, &t->c, t->c.embedding ? NULL : t->x, t->c.embedding ? t->tok : NULL,
                           t->use_m ? t->m : NULL, t->use_md ? t->md : NULL, t->use_route ? t->route : NULL,
                           N, t->work);
    double s = 0;
    for (int i = 0; i < N * DOUT; i++) s += (double)t->y[i] * t->G[i];
    return s;
}

static double faith_fn(void *p) {
    ctx_t *t = p;
    vpd_components_delta(&t->c);
    return 0.37 * vpd_faithfulness_forward(&t->c);
}

static void setup(ctx_t *t, bool embedding, bool use_b, bool use_m, bool use_md, bool use_route, unsigned seed) {
    memset(t, 0, sizeof *t);
    int d_in = embedding ? VOCAB : DIN;
    vpd_status s = vpd_components_setup(&t->c, "test", d_in, DOUT, CC, embedding, t->V, t->U, t->W,
                                        use_b ? t->b : NULL, t->delta);
    CHECK(s == VPD_OK, "setup: %s", vpd_last_error());
    vpd_components_init(&t->c, 1234 + seed, 3);
    tu_fill(t->W, (size_t)d_in * DOUT, seed + 1, 1.0);
    tu_fill(t->b, DOUT, seed + 2, 0.5);
    tu_fill(t->x, N * DIN, seed + 3, 1.0);
    tu_fill(t->m, N * CC, seed + 4, 0.45);
    for (int i = 0; i < N * CC; i++) t->m[i] += (real)0.5;
    tu_fill(t->md, N, seed + 5, 0.45);
    for (int i = 0; i < N; i++) t->md[i] += (real)0.5;
    tu_fill(t->G, N * DOUT, seed + 6, 1.0);
    for (int n = 0; n < N; n++) {
        t->tok[n] = (int32_t)((n * 5 + 2) % VOCAB);
        t->route[n] = (uint8_t)(n % 3 != 1); /* rows 1 and 4 run the original layer */
    }
    t->tok[N - 1] = t->tok[0]; /* a repeated token: dV rows must accumulate */
    t->use_b = use_b; t->use_m = use_m; t->use_md = use_md; t->use_route = use_route;
}

static void grad_case(const char *name, bool embedding, bool use_b, bool use_m, bool use_md, bool use_route, unsigned seed) {
    static ctx_t t;
    setup(&t, embedding, use_b, use_m, use_md, use_route, seed);
    int d_in = t.c.d_in;
    static real dx[N * DIN], dV[VOCAB * CC], dU[CC * DOUT], dm[N * CC], dmd[N];
    memset(dx, 0, sizeof dx); memset(dV, 0, sizeof dV); memset(dU, 0, sizeof dU);
    memset(dm, 0, sizeof dm); memset(dmd, 0, sizeof dmd);
    /* accumulate semantics: start dV from a nonzero value and subtract it after */
    for (int i = 0; i < d_in * CC; i++) dV[i] = 1;
    loss_fn(&t);
    vpd_components_backward(embedding ? NULL : dx, dV, dU, use_m ? dm : NULL, use_md ? dmd : NULL, t.G, t.a, &t.c,
                            embedding ? NULL : t.x, embedding ? t.tok : NULL, use_m ? t.m : NULL,
                            use_md ? t.md : NULL, use_route ? t.route : NULL, N, t.work);
    for (int i = 0; i < d_in * CC; i++) dV[i] -= 1;
    char buf[96];
    const double h = 1e-6, tol = 1e-6;
    if (!embedding) {
        snprintf(buf, sizeof buf, "%s dx", name);
        double e = tu_fd_check(loss_fn, &t, t.x, dx, N * DIN, h, buf);
        CHECK(e < tol, "%s: %.3e", buf, e);
    }
    snprintf(buf, sizeof buf, "%s dV", name);
    double e = tu_fd_check(loss_fn, &t, t.V, dV, (size_t)d_in * CC, h, buf);
    CHECK(e < tol, "%s: %.3e", buf, e);
    snprintf(buf, sizeof buf, "%s dU", name);
    e = tu_fd_check(loss_fn, &t, t.U, dU, CC * DOUT, h, buf);
    CHECK(e < tol, "%s: %.3e", buf, e);
    if (use_m) {
        snprintf(buf, sizeof buf, "%s dm", name);
        e = tu_fd_check(loss_fn, &t, t.m, dm, N * CC, h, buf);
        CHECK(e < tol, "%s: %.3e", buf, e);
    }
    if (use_md) {
        snprintf(buf, sizeof buf, "%s dm_delta", name);
        e = tu_fd_check(loss_fn, &t, t.md, dmd, N, h, buf);
        CHECK(e < tol, "%s: %.3e", buf, e);
    }
    if (use_route) { /* routed-out rows give nothing to m, m_Δ */
        bool zero = true;
        for (int n = 0; n < N; n++) {
            if (t.route[n]) continue;
            if (use_md && dmd[n] != 0) zero = false;
            for (int k = 0; use_m && k < CC; k++) if (dm[n * CC + k] != 0) zero = false;
        }
        CHECK(zero, "%s: routed-out rows received mask gradient", name);
    }
}

static void faith_case(const char *name, bool embedding) {
    static ctx_t t;
    setup(&t, embedding, false, false, false, false, 11);
    int d_in = t.c.d_in;
    static real dV[VOCAB * CC], dU[CC * DOUT];
    memset(dV, 0, sizeof dV); memset(dU, 0, sizeof dU);
    faith_fn(&t);
    vpd_faithfulness_backward(dV, dU, &t.c, (real)0.37);
    char buf[96];
    snprintf(buf, sizeof buf, "%s faithfulness dV", name);
    double e = tu_fd_check(faith_fn, &t, t.V, dV, (size_t)d_in * CC, 1e-6, buf);
    CHECK(e < 1e-6, "%s: %.3e", buf, e);
    snprintf(buf, sizeof buf, "%s faithfulness dU", name);
    e = tu_fd_check(faith_fn, &t, t.U, dU, CC * DOUT, 1e-6, buf);
    CHECK(e < 1e-6, "%s: %.3e", buf, e);
    /* ‖Δ‖² against a direct sum over W − (VU)ᵀ */
    double ref = 0;
    for (int o = 0; o < (embedding ? d_in : DOUT); o++)
        for (int i = 0; i < (embedding ? DOUT : d_in); i++) {
            double vu = 0;
            for (int k = 0; k < CC; k++)
                vu += embedding ? (double)t.V[o * CC + k] * t.U[k * DOUT + i] : (double)t.V[i * CC + k] * t.U[k * DOUT + o];
            double w = embedding ? t.W[o * DOUT + i] : t.W[o * d_in + i];
            ref += (w - vu) * (w - vu);
        }
    vpd_components_delta(&t.c); /* the FD left Δ at its last perturbed point */
    double got = vpd_faithfulness_forward(&t.c);
    CHECK(fabs(got - ref) <= 1e-12 * ref, "%s: ||delta||^2 %.15g vs %.15g", name, got, ref);
}

static void identity_checks(bool embedding) {
    static ctx_t t;
    setup(&t, embedding, !embedding, true, true, false, 21);
    int d_in = t.c.d_in;
    static real ref[N * DOUT];
    /* the target's own output: linear_forward, or a row gather (+ bias) for embeddings */
    if (embedding) {
        for (int n = 0; n < N; n++)
            for (int j = 0; j < DOUT; j++) ref[n * DOUT + j] = t.W[t.tok[n] * DOUT + j];
    } else {
        linear_forward(ref, t.x, t.W, t.b, N, d_in, DOUT);
    }
    /* m = 1, m_Δ = 1: (VU)ᵀx + Δx + b = W x + b up to rounding */
    for (int i = 0; i < N * CC; i++) t.m[i] = 1;
    for (int i = 0; i < N; i++) t.md[i] = 1;
    loss_fn(&t);
    double e = tu_max_rel_err(t.y, ref, N * DOUT, 1e-12);
    CHECK(e < 1e-12, "%s m=1, m_delta=1: y vs W x + b rel err %.3e", embedding ? "embedding" : "linear", e);
    /* all rows routed to the original layer: bit-for-bit W x + b */
    tu_fill(t.m, N * CC, 3, 0.5);
    for (int n = 0; n < N; n++) t.route[n] = 0;
    t.use_route = true;
    loss_fn(&t);
    CHECK(memcmp(t.y, ref, sizeof(real) * N * DOUT) == 0, "%s route=0: y differs from W x + b",
          embedding ? "embedding" : "linear");
    /* mixed routing: routed-out rows are W x + b (gemm over a row subset: rounding only),
     * and the routed-in rows are exactly what the unrouted forward gives */
    static real yfull[N * DOUT];
    t.use_route = false;
    loss_fn(&t);
    memcpy(yfull, t.y, sizeof yfull);
    for (int n = 0; n < N; n++) t.route[n] = (uint8_t)(n % 2);
    t.use_route = true;
    loss_fn(&t);
    double eo = 0, ei = 0;
    for (int n = 0; n < N; n++)
        for (int j = 0; j < DOUT; j++) {
            double d = fabs((double)t.y[n * DOUT + j] - (t.route[n] ? yfull[n * DOUT + j] : ref[n * DOUT + j]));
            if (t.route[n]) ei = d > ei ? d : ei; else eo = d > eo ? d : eo;
        }
    CHECK(eo < 1e-13 && ei < 1e-13, "%s mixed routing: out rows err %.3e, in rows err %.3e",
          embedding ? "embedding" : "linear", eo, ei);
}

int main(void) {
    CHECK(VPD_REAL_IS_DOUBLE, "grad tests need the double build");
    grad_case("linear bias m md", false, true, true, true, false, 1);
    grad_case("linear m md route", false, false, true, true, true, 2);
    grad_case("linear bias m md route", false, true, true, true, true, 3);
    grad_case("linear m only", false, true, true, false, false, 4);
    grad_case("linear no masks route", false, false, false, false, true, 5);
    grad_case("linear md only route", false, true, false, true, true, 6);
    grad_case("embedding m md", true, false, true, true, false, 7);
    grad_case("embedding m md route", true, false, true, true, true, 8);
    grad_case("embedding bias m route", true, true, true, false, true, 9);
    faith_case("linear", false);
    faith_case("embedding", true);
    identity_checks(false);
    identity_checks(true);
    TEST_REPORT();
}
