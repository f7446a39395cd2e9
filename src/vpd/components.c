/* Components of one decomposed layer (VPD_METHOD.md §1; spd/models/components.py):
 * initialisation of V and U, the delta component Δ = W − (VU)ᵀ, the faithfulness term
 * ‖Δ‖²_F with its backward, and the masked forward/backward with optional delta mask and
 * per-row subset routing (§3).
 *
 * Every product is one vpd_gemm over all rows. Routing of a linear layer gathers the
 * routed-in rows and computes the component products on them only (routed-out rows give
 * no gradient to V, U, m, m_Δ); the routed-out rows get the original layer, computed on the
 * gathered rows only: W x + b exactly, not (VU)ᵀx + Δx, which differs by rounding. A routed
 * embedding zeroes the component path of routed-out rows instead (its products are gathers).
 *
 * The delta term's gradient into U and V is folded into the mask term. With
 * Δ = W − (VU)ᵀ the row gradient of y = (a⊙m)U + m_Δ(Δx) w.r.t. V is xᵀ[(dy Uᵀ)⊙m] −
 * m_Δ xᵀ(dy Uᵀ) = xᵀ[(dy Uᵀ) ⊙ (m − m_Δ)], and w.r.t. U is [a ⊙ (m − m_Δ)]ᵀ dy, so the
 * delta path costs no extra product for dU, dV; only dx and dm_Δ need dy Δ. */
#include <math.h>
#include <string.h>

#include "vpd/components.h"
#include "vpd/nn.h"

vpd_status vpd_components_setup(vpd_components *c, const char *name, int d_in, int d_out, int C,
                                bool embedding, real *V, real *U, const real *W, const real *b,
                                real *delta) {
    if (d_in <= 0 || d_out <= 0 || C <= 0)
        return vpd_error(VPD_ERR_SHAPE, "components of layer '%s': sizes d_in=%d d_out=%d C=%d, expected all > 0",
                         name ? name : "?", d_in, d_out, C);
    if (!V || !U || !W)
        return vpd_error(VPD_ERR_INTERNAL, "components of layer '%s': V, U and W must be set", name ? name : "?");
    c->d_in = d_in;
    c->d_out = d_out;
    c->C = C;
    c->c0 = 0;
    c->C_total = C;
    c->embedding = embedding;
    c->V = V;
    c->U = U;
    c->W = W;
    c->b = b;
    c->delta = delta;
    c->shared_terms = true;
    return VPD_OK;
}

vpd_shard_view vpd_components_shard(const vpd_components *c) {
    vpd_shard_view v = {.d_in = c->d_in, .d_out = c->d_out, .C = c->C, .c0 = c->c0, .C_total = c->C_total,
                        .embedding = c->embedding, .V = c->V, .U = c->U, .W = c->W};
    return v;
}

void vpd_components_init(vpd_components *c, uint64_t seed, int layer) {
    const int d_in = c->d_in, d_out = c->d_out, C = c->C;
    const uint64_t Ct = (uint64_t)c->C_total, c0 = (uint64_t)c->c0;
    vpd_rng rv = vpd_rng_make(seed, VPD_RNG_INIT, (uint32_t)layer, 1);
    vpd_rng ru = vpd_rng_make(seed, VPD_RNG_INIT, (uint32_t)layer, 2);
    /* V row i of a shard is the slice [c0, c0+C) of the full row i */
    const real sv = (real)(1.0 / sqrt((double)d_in));
    for (int i = 0; i < d_in; i++) {
        real *row = c->V + (size_t)i * C;
        vpd_rng_fill_normal(&rv, (uint64_t)i * Ct + c0, (size_t)C, row);
        vpd_scale((size_t)C, sv, row);
    }
    /* U rows [c0, c0+C) are contiguous in the full U */
    const real su = (real)(1.0 / sqrt((double)c->C_total));
    vpd_rng_fill_normal(&ru, c0 * (uint64_t)d_out, (size_t)C * d_out, c->U);
    vpd_scale((size_t)C * d_out, su, c->U);
}

void vpd_components_delta(vpd_components *c) {
    const int d_in = c->d_in, d_out = c->d_out, C = c->C;
    VPD_ASSERT(c->delta, "components_delta: no delta workspace");
    memcpy(c->delta, c->W, sizeof(real) * (size_t)d_in * d_out);
    if (c->embedding) /* Δ[vocab, d] = W − V U */
        vpd_gemm(false, false, d_in, d_out, C, -1, c->V, C, c->U, d_out, 1, c->delta, d_out);
    else /* Δ[d_out, d_in] = W − Uᵀ Vᵀ */
        vpd_gemm(true, true, d_out, d_in, C, -1, c->U, d_out, c->V, C, 1, c->delta, d_in);
}

double vpd_faithfulness_forward(const vpd_components *c) {
    return vpd_sumsq((size_t)c->d_in * c->d_out, c->delta);
}

void vpd_faithfulness_backward(real *dV, real *dU, const vpd_components *c, real dsq) {
    const int d_in = c->d_in, d_out = c->d_out, C = c->C;
    const real s = -2 * dsq;
    if (c->embedding) {
        /* Δ = W − VU: ∂/∂V = −2ΔUᵀ, ∂/∂U = −2VᵀΔ */
        if (dV) vpd_gemm(false, true, d_in, C, d_out, s, c->delta, d_out, c->U, d_out, 1, dV, C);
        if (dU) vpd_gemm(true, false, C, d_out, d_in, s, c->V, C, c->delta, d_out, 1, dU, d_out);
    } else {
        /* Δᵀ = Wᵀ − VU: ∂/∂V = −2ΔᵀUᵀ, ∂/∂U = −2VᵀΔᵀ */
        if (dV) vpd_gemm(true, true, d_in, C, d_out, s, c->delta, d_in, c->U, d_out, 1, dV, C);
        if (dU) vpd_gemm(true, true, C, d_out, d_in, s, c->V, C, c->delta, d_in, 1, dU, d_out);
    }
}

size_t vpd_components_work_size(const vpd_components *c, int N) {
    /* backward: Q [N,C] | R [N,C] | E [N,d_in] | T [N,d_out] | X [N,d_in] | rows [N];
     * forward uses the first four and rows */
    return (size_t)N * (2 * (size_t)c->C + 2 * (size_t)c->d_in + (size_t)c->d_out + 1);
}

/* the row list of the routed-in rows (rows[j] = source row) kept at the end of work */
static int32_t *routed_rows(const vpd_components *c, int N, real *work, const uint8_t *route, int *Ni) {
    int32_t *rows = (int32_t *)(work + vpd_components_work_size(c, N) - (size_t)N);
    int k = 0;
    for (int n = 0; n < N; n++)
        if (route[n]) rows[k++] = n;
    *Ni = k;
    return rows;
}

static void gather_rows(real *dst, const real *src, const int32_t *rows, int n, int w) {
    for (int j = 0; j < n; j++) memcpy(dst + (size_t)j * w, src + (size_t)rows[j] * w, sizeof(real) * (size_t)w);
}

/* Routed linear layer, component products on the routed-in rows only (gathered): the
 * routed-out rows' component path is zero anyway, so the result is the all-rows one
 * without the products of rows that are thrown away. a of routed-out rows is set to 0. */
static void routed_forward(real *y, real *a, const vpd_components *c, const real *x, const real *m,
                           const real *mdelta, const uint8_t *route, int N, real *work) {
    const int d_in = c->d_in, d_out = c->d_out, C = c->C;
    real *am = work;                     /* [Ni, C] */
    real *ac = work + (size_t)N * C;     /* [Ni, C] */
    real *xs = work + (size_t)N * 2 * C; /* [Ni, d_in] */
    real *t = xs + (size_t)N * d_in;     /* [Ni, d_out] */
    int Ni;
    const int32_t *rows = routed_rows(c, N, work, route, &Ni);
    if (Ni > 0) {
        gather_rows(xs, x, rows, Ni, d_in);
        vpd_gemm(false, false, Ni, C, d_in, 1, xs, d_in, c->V, C, 0, ac, C); /* a = x V */
        for (int j = 0; j < Ni; j++) {
            const real *an = ac + (size_t)j * C, *mn = m ? m + (size_t)rows[j] * C : NULL;
            real *o = am + (size_t)j * C;
            if (mn) for (int k = 0; k < C; k++) o[k] = an[k] * mn[k];
            else memcpy(o, an, sizeof(real) * C);
        }
        vpd_gemm(false, false, Ni, d_out, C, 1, am, C, c->U, d_out, 0, t, d_out);
        if (c->shared_terms && mdelta) {
            VPD_ASSERT(c->delta, "components_forward: delta mask given but no delta computed");
            for (int j = 0; j < Ni; j++) { /* xs rows scaled by m_Δ: t += (m_Δ ⊙ x) Δᵀ */
                real sc = mdelta[rows[j]], *o = xs + (size_t)j * d_in;
                for (int i = 0; i < d_in; i++) o[i] *= sc;
            }
            vpd_gemm(false, true, Ni, d_out, d_in, 1, xs, d_in, c->delta, d_in, 1, t, d_out);
        }
        if (c->shared_terms && c->b)
            for (int j = 0; j < Ni; j++) vpd_axpy((size_t)d_out, 1, c->b, t + (size_t)j * d_out);
    }
    for (int n = 0, j = 0; n < N; n++) {
        if (j < Ni && rows[j] == n) {
            memcpy(a + (size_t)n * C, ac + (size_t)j * C, sizeof(real) * C);
            memcpy(y + (size_t)n * d_out, t + (size_t)j * d_out, sizeof(real) * d_out);
            j++;
        } else {
            memset(a + (size_t)n * C, 0, sizeof(real) * C);
            memset(y + (size_t)n * d_out, 0, sizeof(real) * d_out); /* another rank's part, or W x below */
        }
    }
    if (!c->shared_terms || Ni == N) return;
    /* routed-out rows: the original layer, W x + b */
    int No = 0;
    for (int n = 0; n < N; n++)
        if (!route[n]) memcpy(xs + (size_t)(No++) * d_in, x + (size_t)n * d_in, sizeof(real) * d_in);
    linear_forward(t, xs, c->W, c->b, No, d_in, d_out);
    for (int n = 0, k = 0; n < N; n++)
        if (!route[n]) memcpy(y + (size_t)n * d_out, t + (size_t)(k++) * d_out, sizeof(real) * d_out);
}

static void routed_backward(real *dx, real *dV, real *dU, real *dm, real *dmdelta, const real *dy, const real *a,
                            const vpd_components *c, const real *x, const real *m, const real *mdelta,
                            const uint8_t *route, int N, real *work) {
    const int d_in = c->d_in, d_out = c->d_out, C = c->C;
    real *Q = work;                /* [Ni, C]  dy Uᵀ of the routed-in rows */
    real *R = Q + (size_t)N * C;   /* [Ni, C]  scratch */
    real *E = R + (size_t)N * C;   /* [Ni, d_in] */
    real *T = E + (size_t)N * d_in; /* [Ni, d_out] gathered dy */
    real *X = T + (size_t)N * d_out; /* [Ni, d_in] gathered x */
    int Ni;
    const int32_t *rows = routed_rows(c, N, work, route, &Ni);
    if (Ni > 0) {
        gather_rows(T, dy, rows, Ni, d_out);
        vpd_gemm(false, true, Ni, C, d_out, 1, T, d_out, c->U, d_out, 0, Q, C);
        if (dm)
            for (int j = 0; j < Ni; j++) {
                const real *qj = Q + (size_t)j * C, *an = a + (size_t)rows[j] * C;
                real *o = dm + (size_t)rows[j] * C;
                for (int k = 0; k < C; k++) o[k] += qj[k] * an[k];
            }
        if (dx) { /* dx += (Q ⊙ m) Vᵀ */
            for (int j = 0; j < Ni; j++) {
                const real *qj = Q + (size_t)j * C, *mn = m ? m + (size_t)rows[j] * C : NULL;
                real *o = R + (size_t)j * C;
                if (mn) for (int k = 0; k < C; k++) o[k] = qj[k] * mn[k];
                else memcpy(o, qj, sizeof(real) * C);
            }
            vpd_gemm(false, true, Ni, d_in, C, 1, R, C, c->V, C, 0, E, d_in);
            for (int j = 0; j < Ni; j++) vpd_axpy((size_t)d_in, 1, E + (size_t)j * d_in, dx + (size_t)rows[j] * d_in);
        }
        if (dU) { /* dU += [a ⊙ (m − m_Δ)]ᵀ dy */
            for (int j = 0; j < Ni; j++) {
                int n = rows[j];
                const real *an = a + (size_t)n * C, *mn = m ? m + (size_t)n * C : NULL;
                real *o = R + (size_t)j * C, md = mdelta ? mdelta[n] : 0;
                for (int k = 0; k < C; k++) o[k] = an[k] * ((mn ? mn[k] : 1) - md);
            }
            vpd_gemm(true, false, C, d_out, Ni, 1, R, C, T, d_out, 1, dU, d_out);
        }
        bool need_x = dV || (c->shared_terms && mdelta && dmdelta);
        if (need_x) gather_rows(X, x, rows, Ni, d_in);
        if (dV) { /* dV += xᵀ [Q ⊙ (m − m_Δ)] */
            for (int j = 0; j < Ni; j++) {
                int n = rows[j];
                const real *qj = Q + (size_t)j * C, *mn = m ? m + (size_t)n * C : NULL;
                real *o = R + (size_t)j * C, md = mdelta ? mdelta[n] : 0;
                for (int k = 0; k < C; k++) o[k] = qj[k] * ((mn ? mn[k] : 1) - md);
            }
            vpd_gemm(true, false, d_in, C, Ni, 1, X, d_in, R, C, 1, dV, C);
        }
        if (c->shared_terms && mdelta && (dx || dmdelta)) {
            VPD_ASSERT(c->delta, "components_backward: delta mask given but no delta computed");
            /* E = dy Δ: ∂/∂m_Δ[n] = x_n · E_n, dx_n += m_Δ[n] E_n (from Δ itself, see the full path) */
            vpd_gemm(false, false, Ni, d_in, d_out, 1, T, d_out, c->delta, d_in, 0, E, d_in);
            for (int j = 0; j < Ni; j++) {
                int n = rows[j];
                const real *en = E + (size_t)j * d_in;
                if (dmdelta) dmdelta[n] += (real)vpd_dot((size_t)d_in, X + (size_t)j * d_in, en);
                if (dx) vpd_axpy((size_t)d_in, mdelta[n], en, dx + (size_t)n * d_in);
            }
        }
    }
    if (!c->shared_terms || !dx || Ni == N) return;
    /* routed-out rows: the original layer's input gradient dy W */
    int No = 0;
    for (int n = 0; n < N; n++)
        if (!route[n]) memcpy(T + (size_t)(No++) * d_out, dy + (size_t)n * d_out, sizeof(real) * d_out);
    vpd_gemm(false, false, No, d_in, d_out, 1, T, d_out, c->W, d_in, 0, E, d_in);
    for (int n = 0, k = 0; n < N; n++)
        if (!route[n]) vpd_axpy((size_t)d_in, 1, E + (size_t)(k++) * d_in, dx + (size_t)n * d_in);
}

static inline int row_on(const uint8_t *route, int n) { return route ? route[n] != 0 : 1; }

static void check_tokens(const int32_t *tok, int N, int V) {
    for (int n = 0; n < N; n++)
        VPD_ASSERT(tok[n] >= 0 && tok[n] < V, "components: token %d at row %d outside [0, %d)", (int)tok[n], n, V);
}

static void components_forward(real *y, real *a, const vpd_components *c, const real *x, const int32_t *tok,
                               const real *m, const real *mdelta, const uint8_t *route, int N, real *work,
                               const real *a_known);

void vpd_components_forward(real *y, real *a, const vpd_components *c, const real *x,
                            const int32_t *tok, const real *m, const real *mdelta,
                            const uint8_t *route, int N, real *work) {
    components_forward(y, a, c, x, tok, m, mdelta, route, N, work, NULL);
}

void vpd_components_forward_known_acts(real *y, real *a, const vpd_components *c, const real *x,
                                       const real *a_known, const real *m, const real *mdelta, int N,
                                       real *work) {
    VPD_ASSERT(!c->embedding && a_known, "components_forward_known_acts: a linear layer and its acts");
    components_forward(y, a, c, x, NULL, m, mdelta, NULL, N, work, a_known);
}

static void components_forward(real *y, real *a, const vpd_components *c, const real *x, const int32_t *tok,
                               const real *m, const real *mdelta, const uint8_t *route, int N, real *work,
                               const real *a_known) {
    const int d_in = c->d_in, d_out = c->d_out, C = c->C;
    real *am = work;                          /* [N, C] */
    real *xs = work + (size_t)N * 2 * C;      /* [N, d_in] */
    real *t = xs + (size_t)N * d_in;          /* [N, d_out] */
    if (route && !c->embedding) {
        VPD_ASSERT(x, "components_forward: linear layer needs x");
        routed_forward(y, a, c, x, m, mdelta, route, N, work);
        return;
    }
    if (c->embedding) {
        VPD_ASSERT(tok, "components_forward: embedding layer needs tokens");
        check_tokens(tok, N, d_in);
        for (int n = 0; n < N; n++) memcpy(a + (size_t)n * C, c->V + (size_t)tok[n] * C, sizeof(real) * C);
    } else {
        VPD_ASSERT(x, "components_forward: linear layer needs x");
        if (a_known) memcpy(a, a_known, sizeof(real) * (size_t)N * C);
        else vpd_gemm(false, false, N, C, d_in, 1, x, d_in, c->V, C, 0, a, C); /* a = x V */
    }

    /* (a ⊙ m) with routed-out rows zeroed, then y = (a ⊙ m) U */
    const real *amp = a;
    if (m || route) {
        for (int n = 0; n < N; n++) {
            const real *an = a + (size_t)n * C, *mn = m ? m + (size_t)n * C : NULL;
            real *o = am + (size_t)n * C;
            if (!row_on(route, n)) { memset(o, 0, sizeof(real) * C); continue; }
            if (mn) for (int k = 0; k < C; k++) o[k] = an[k] * mn[k];
            else memcpy(o, an, sizeof(real) * C);
        }
        amp = am;
    }
    vpd_gemm(false, false, N, d_out, C, 1, amp, C, c->U, d_out, 0, y, d_out);
    if (!c->shared_terms) return; /* another rank of the component group adds the rest */

    if (mdelta) {
        VPD_ASSERT(c->delta, "components_forward: delta mask given but no delta computed");
        if (c->embedding) {
            for (int n = 0; n < N; n++) {
                if (!row_on(route, n)) continue;
                vpd_axpy((size_t)d_out, mdelta[n], c->delta + (size_t)tok[n] * d_out, y + (size_t)n * d_out);
            }
        } else {
            /* scale the rows of x by m_Δ (0 for routed-out rows): y += (m_Δ ⊙ x) Δᵀ */
            for (int n = 0; n < N; n++) {
                real s = row_on(route, n) ? mdelta[n] : 0;
                const real *xn = x + (size_t)n * d_in;
                real *o = xs + (size_t)n * d_in;
                for (int i = 0; i < d_in; i++) o[i] = s * xn[i];
            }
            vpd_gemm(false, true, N, d_out, d_in, 1, xs, d_in, c->delta, d_in, 1, y, d_out);
        }
    }
    if (c->b)
        for (int n = 0; n < N; n++)
            if (row_on(route, n)) vpd_axpy((size_t)d_out, 1, c->b, y + (size_t)n * d_out);

    if (!route) return;
    /* routed-out rows: the original layer, W x + b */
    if (c->embedding) {
        for (int n = 0; n < N; n++) {
            if (route[n]) continue;
            real *yn = y + (size_t)n * d_out;
            memcpy(yn, c->W + (size_t)tok[n] * d_out, sizeof(real) * d_out);
            if (c->b) vpd_axpy((size_t)d_out, 1, c->b, yn);
        }
        return;
    }
    int No = 0;
    for (int n = 0; n < N; n++)
        if (!route[n]) memcpy(xs + (size_t)(No++) * d_in, x + (size_t)n * d_in, sizeof(real) * d_in);
    if (No == 0) return;
    linear_forward(t, xs, c->W, c->b, No, d_in, d_out);
    for (int n = 0, k = 0; n < N; n++)
        if (!route[n]) memcpy(y + (size_t)n * d_out, t + (size_t)(k++) * d_out, sizeof(real) * d_out);
}

void vpd_components_backward(real *dx, real *dV, real *dU, real *dm, real *dmdelta,
                             const real *dy, const real *a, const vpd_components *c,
                             const real *x, const int32_t *tok, const real *m,
                             const real *mdelta, const uint8_t *route, int N, real *work) {
    const int d_in = c->d_in, d_out = c->d_out, C = c->C;
    real *Q = work;                            /* [N, C]   dy Uᵀ (0 on routed-out rows) */
    real *R = Q + (size_t)N * C;               /* [N, C]   scratch for the three products */
    real *E = R + (size_t)N * C;               /* [N, d_in] dy Δ */
    real *T = E + (size_t)N * d_in;            /* [N, d_out] gathered dy of routed-out rows */
    VPD_ASSERT(!(c->embedding && dx), "components_backward: no dx for an embedding layer");
    if (route && !c->embedding) {
        routed_backward(dx, dV, dU, dm, dmdelta, dy, a, c, x, m, mdelta, route, N, work);
        return;
    }
    if (c->embedding) check_tokens(tok, N, d_in);

    /* Q = dy Uᵀ = ∂y/∂(a⊙m), zero on routed-out rows: they give no gradient to V, U, m */
    vpd_gemm(false, true, N, C, d_out, 1, dy, d_out, c->U, d_out, 0, Q, C);
    if (route)
        for (int n = 0; n < N; n++)
            if (!route[n]) memset(Q + (size_t)n * C, 0, sizeof(real) * C);

    if (dm) /* ∂/∂m = Q ⊙ a */
        for (size_t i = 0; i < (size_t)N * C; i++) dm[i] += Q[i] * a[i];

    if (dx) { /* dx += (Q ⊙ m) Vᵀ */
        const real *P = Q;
        if (m) {
            for (size_t i = 0; i < (size_t)N * C; i++) R[i] = Q[i] * m[i];
            P = R;
        }
        vpd_gemm(false, true, N, d_in, C, 1, P, C, c->V, C, 1, dx, d_in);
    }

    /* the mask term and the delta term's path through Δ = W − (VU)ᵀ together:
     * per-row coefficient (m − m_Δ); m_Δ = 0 on routed-out rows is implied by zero rows */
    if (dU) { /* dU += [a ⊙ (m − m_Δ) ⊙ route]ᵀ dy */
        for (int n = 0; n < N; n++) {
            const real *an = a + (size_t)n * C, *mn = m ? m + (size_t)n * C : NULL;
            real *o = R + (size_t)n * C;
            if (!row_on(route, n)) { memset(o, 0, sizeof(real) * C); continue; }
            real md = mdelta ? mdelta[n] : 0;
            for (int k = 0; k < C; k++) o[k] = an[k] * ((mn ? mn[k] : 1) - md);
        }
        vpd_gemm(true, false, C, d_out, N, 1, R, C, dy, d_out, 1, dU, d_out);
    }
    if (dV) { /* dV += xᵀ [Q ⊙ (m − m_Δ)]  (embedding: scatter rows to V[tok]) */
        for (int n = 0; n < N; n++) {
            const real *qn = Q + (size_t)n * C, *mn = m ? m + (size_t)n * C : NULL;
            real *o = R + (size_t)n * C;
            real md = mdelta ? mdelta[n] : 0;
            for (int k = 0; k < C; k++) o[k] = qn[k] * ((mn ? mn[k] : 1) - md);
        }
        if (c->embedding)
            for (int n = 0; n < N; n++)
                vpd_axpy((size_t)C, 1, R + (size_t)n * C, dV + (size_t)tok[n] * C);
        else
            vpd_gemm(true, false, d_in, C, N, 1, x, d_in, R, C, 1, dV, C);
    }

    if (!c->shared_terms) return; /* Δ·x, dm_Δ and routed-out rows: the shared rank's part */

    if (mdelta && (dx || dmdelta)) {
        VPD_ASSERT(c->delta, "components_backward: delta mask given but no delta computed");
        if (c->embedding) { /* ∂/∂m_Δ[n] = dy_n · Δ[tok_n] */
            for (int n = 0; n < N; n++)
                if (row_on(route, n))
                    dmdelta[n] += (real)vpd_dot((size_t)d_out, dy + (size_t)n * d_out, c->delta + (size_t)tok[n] * d_out);
        } else {
            /* E = dy Δ: ∂/∂m_Δ[n] = x_n · E_n, dx_n += m_Δ[n] E_n. Computed from Δ itself,
             * not as dy W − Q Vᵀ, which would cancel catastrophically once Δ is small. */
            vpd_gemm(false, false, N, d_in, d_out, 1, dy, d_out, c->delta, d_in, 0, E, d_in);
            for (int n = 0; n < N; n++) {
                if (!row_on(route, n)) continue;
                const real *en = E + (size_t)n * d_in;
                if (dmdelta) dmdelta[n] += (real)vpd_dot((size_t)d_in, x + (size_t)n * d_in, en);
                if (dx) vpd_axpy((size_t)d_in, mdelta[n], en, dx + (size_t)n * d_in);
            }
        }
    }

    /* routed-out rows: the original layer's input gradient dy W */
    if (route && dx) {
        int No = 0;
        for (int n = 0; n < N; n++)
            if (!route[n]) memcpy(T + (size_t)(No++) * d_out, dy + (size_t)n * d_out, sizeof(real) * d_out);
        if (No > 0) {
            vpd_gemm(false, false, No, d_in, d_out, 1, T, d_out, c->W, d_in, 0, E, d_in);
            for (int n = 0, k = 0; n < N; n++)
                if (!route[n]) vpd_axpy((size_t)d_in, 1, E + (size_t)(k++) * d_in, dx + (size_t)n * d_in);
        }
    }
}
