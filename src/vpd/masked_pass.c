/* The masked model: the target's forward/backward with chosen layers replaced by their
 * components (VPD_METHOD.md §1, §3), through the model hook of include/vpd/models.h.
 *
 * Two hooks live here:
 *   - the caching hook of the target forward, which computes every layer from the target
 *     weights and keeps each decomposed layer's input (the CI function's input and the
 *     constant the losses compare against) and output (for the hidden-acts loss);
 *   - the pass hook, which for each layer either runs the target layer or the masked
 *     components (masks, delta mask, routing as the vpd_pass_layer spec says) and in
 *     backward accumulates dx, dU, dV, ∂/∂m and ∂/∂m_Δ.
 * Every loss is built from vpd_masked_pass: one forward, the output loss D against f(x),
 * and the backward of dscale·D right away (activations are reused, never stacked). */
#include <math.h>
#include <string.h>

#include "vpd/decomp.h"
#include "vpd/nn.h"

/* ---- the caching hook of the target forward ---------------------------------------- */
typedef struct {
    vpd_hook base; /* first member: the hook pointer is the struct pointer */
    vpd_decomp *d;
} cache_hook;

static void target_layer_forward(const vpd_layer_info *li, const real *x, const int32_t *tok, real *y, int N) {
    if (li->embedding)
        embedding_forward(y, tok, li->W, N, li->d_in, li->d_out);
    else
        linear_forward(y, x, li->W, li->b, N, li->d_in, li->d_out);
}

static void target_layer_backward(const vpd_layer_info *li, const real *dy, real *dx, int N) {
    if (!li->embedding && dx) linear_backward(dx, NULL, NULL, dy, NULL, li->W, N, li->d_in, li->d_out);
}

static void cache_forward(vpd_hook *h, int l, const real *x, const int32_t *tok, real *y, int N) {
    cache_hook *ch = (cache_hook *)h;
    vpd_decomp *d = ch->d;
    const vpd_layer_info *li = &d->target->layers[l];
    target_layer_forward(li, x, tok, y, N);
    int k = d->model_to_decomp[l];
    if (k < 0) return;
    vpd_layer_state *ls = &d->layers[k];
    if (!ls->embedding) memcpy(ls->x_in, x, sizeof(real) * (size_t)N * (size_t)ls->d_in);
    if (ls->y_target) memcpy(ls->y_target, y, sizeof(real) * (size_t)N * (size_t)ls->d_out);
}

static void cache_backward(vpd_hook *h, int l, const real *x, const int32_t *tok, const real *dy, real *dx, int N) {
    (void)h; (void)l; (void)x; (void)tok; (void)dy; (void)dx; (void)N;
    VPD_ASSERT(0, "the target forward is never differentiated");
}

void vpd_decomp_target_forward(vpd_decomp *d) {
    cache_hook ch = {{cache_forward, cache_backward}, d};
    d->act.ci_in_current = false; /* a new batch: the CI inputs are recomputed by vpd_decomp_ci_forward */
    vpd_model_forward(d->target, &d->batch.input, d->act.target_out, &ch.base);
    if (d->cfg->output_loss == VPD_OUT_KL) {
        int V = vpd_model_out_dim(d->target);
        kl_target_prepare(d->act.target_probs, d->act.target_rowc, d->act.target_out, d->batch.N, V); /* once per step */
    }
}

/* ---- the pass hook ---------------------------------------------------------------------- */
typedef struct {
    vpd_hook base;
    vpd_decomp *d;
    const vpd_pass_layer *spec; /* [L] */
    const vpd_pass_opts *opts;
    int first;                  /* the first model layer the pass runs: its input is the target's */
    double hidden_sq;           /* Σ squared error of replaced layers' outputs (hidden_acts) */
    double hidden_numel;
} pass_hook;

static void pass_forward(vpd_hook *h, int l, const real *x, const int32_t *tok, real *y, int N) {
    pass_hook *ph = (pass_hook *)h;
    vpd_decomp *d = ph->d;
    int k = d->model_to_decomp[l];
    if (k < 0 || !ph->spec[k].replaced) {
        target_layer_forward(&d->target->layers[l], x, tok, y, N);
        return;
    }
    vpd_layer_state *ls = &d->layers[k];
    const vpd_pass_layer *sp = &ph->spec[k];
    real *a = d->pass.a + (size_t)N * (size_t)ls->c_off;
    /* The pass's first layer gets the target's input x_in, so its a = x_in V is the CI
     * function's input when that is the component acts (layerwise/global MLP CI): reuse it
     * instead of recomputing the product in every pass (same product, same result). Routed
     * layers compute a on their routed-in rows only and keep doing so. */
    if (l == ph->first && d->act.ci_in_current && vpd_ci_type_takes_component_acts(d->cfg->ci_type) && !ls->embedding &&
        !sp->route)
        vpd_components_forward_known_acts(y, a, &ls->comp, x, d->act.ci_in + (size_t)N * (size_t)ls->c_off, sp->m,
                                          sp->mdelta, N, d->pass.work);
    else
        vpd_components_forward(y, a, &ls->comp, x, tok, sp->m, sp->mdelta, sp->route, N, d->pass.work);
    vpd_sum_real(y, (size_t)N * (size_t)ls->d_out, d->grid.cp_comm); /* the component blocks' partial outputs */
    if (ph->opts->hidden_acts) {
        size_t n = (size_t)N * (size_t)ls->d_out;
        double s = 0;
        for (size_t i = 0; i < n; i++) {
            double e = (double)y[i] - (double)ls->y_target[i];
            s += e * e;
        }
        ph->hidden_sq += s;
        ph->hidden_numel += (double)n;
    }
}

static void pass_backward(vpd_hook *h, int l, const real *x, const int32_t *tok, const real *dy, real *dx, int N) {
    pass_hook *ph = (pass_hook *)h;
    vpd_decomp *d = ph->d;
    int k = d->model_to_decomp[l];
    if (k < 0 || !ph->spec[k].replaced) {
        target_layer_backward(&d->target->layers[l], dy, dx, N);
        return;
    }
    vpd_layer_state *ls = &d->layers[k];
    const vpd_pass_layer *sp = &ph->spec[k];
    const real *dy_eff = dy;
    if (ph->opts->hidden_acts) {
        /* this layer's own term: ∂(dscale·Σ‖y − y_target‖²)/∂y = 2·dscale·(y − y_target);
         * y is recomputed from the saved activations instead of being stored per layer */
        size_t n = (size_t)N * (size_t)ls->d_out;
        real *yy = d->pass.tmp_layer;
        vpd_components_forward(yy, d->pass.a + (size_t)N * (size_t)ls->c_off, &ls->comp, x, tok, sp->m, sp->mdelta,
                               sp->route, N, d->pass.work);
        vpd_sum_real(yy, n, d->grid.cp_comm);
        real s = (real)(2.0 * ph->opts->dscale);
        for (size_t i = 0; i < n; i++) yy[i] = dy[i] + s * (yy[i] - ls->y_target[i]);
        dy_eff = yy;
    }
    const real *a = d->pass.a + (size_t)N * (size_t)ls->c_off;
    bool pg = ph->opts->param_grads;
    if (d->grid.cp_size == 1) {
        vpd_components_backward(dx, pg ? ls->dV : NULL, pg ? ls->dU : NULL, sp->dm, sp->dmdelta, dy_eff, a, &ls->comp,
                                x, tok, sp->m, sp->mdelta, sp->route, N, d->pass.work);
        return;
    }
    /* component parallel: each block's input gradient is partial (summed over the group);
     * ∂/∂m_Δ comes from the rank that adds Δx and is shared with the others */
    real *pdx = NULL;
    if (dx) {
        pdx = d->act.tmp_dx;
        memset(pdx, 0, sizeof(real) * (size_t)N * (size_t)ls->d_in);
    }
    vpd_components_backward(pdx, pg ? ls->dV : NULL, pg ? ls->dU : NULL, sp->dm, sp->dmdelta, dy_eff, a, &ls->comp, x,
                            tok, sp->m, sp->mdelta, sp->route, N, d->pass.work);
    if (dx) {
        vpd_sum_real(pdx, (size_t)N * (size_t)ls->d_in, d->grid.cp_comm);
        vpd_axpy((size_t)N * (size_t)ls->d_in, 1, pdx, dx);
    }
    if (sp->dmdelta) vpd_sum_real(sp->dmdelta, (size_t)N, d->grid.cp_comm); /* zero on every rank but the shared one */
}

/* −log softmax(out[row])[tok] in double; backward dout[row] = dscale·(softmax − onehot(tok)) */
static double ce_row_forward_backward(vpd_decomp *d, int row, int tok, double dscale) {
    const int V = vpd_model_out_dim(d->target);
    VPD_ASSERT(row >= 0 && row < d->batch.N && tok >= 0 && tok < V, "ce pass: row %d of %d, token %d of %d", row,
               d->batch.N, tok, V);
    const real *l = d->pass.out + (size_t)row * V;
    double mx = l[0];
    for (int v = 1; v < V; v++)
        if (l[v] > mx) mx = l[v];
    double se = 0;
    for (int v = 0; v < V; v++) se += exp((double)l[v] - mx);
    const double lse = mx + log(se);
    if (dscale != 0) {
        memset(d->pass.dout, 0, sizeof(real) * (size_t)d->batch.out_numel);
        real *g = d->pass.dout + (size_t)row * V;
        for (int v = 0; v < V; v++) g[v] = (real)(dscale * exp((double)l[v] - lse));
        g[tok] -= (real)dscale;
    }
    return lse - (double)l[tok];
}

/* wall seconds in the output losses of masked passes (KL/MSE/CE forward and backward), a
 * running total: the output-loss share of `vpd bench`'s step profile */
static double out_loss_seconds;
double vpd_output_loss_seconds(void) { return out_loss_seconds; }

static double output_loss_forward_backward(vpd_decomp *d, double dscale) {
    size_t n = (size_t)d->batch.out_numel;
    if (d->cfg->output_loss == VPD_OUT_MSE) {
        double D = mse_forward(d->pass.out, d->act.target_out, n);
        if (dscale != 0) {
            memset(d->pass.dout, 0, sizeof(real) * n);
            mse_backward(d->pass.dout, d->pass.out, d->act.target_out, n, (real)dscale);
        }
        return D;
    }
    int V = vpd_model_out_dim(d->target);
    double D = kl_forward_prepared(d->pass.q_probs, d->act.target_probs, d->act.target_rowc, d->act.target_out, d->pass.out, d->batch.N, V);
    if (dscale != 0) {
        memset(d->pass.dout, 0, sizeof(real) * n);
        kl_backward(d->pass.dout, d->act.target_probs, d->pass.q_probs, d->batch.N, V, (real)dscale);
    }
    return D;
}

/* The first model layer the pass replaces: every layer before it gives the target's values,
 * which the target forward of this step (vpd_decomp_target_forward) already holds — the pass
 * starts there (no embedding or prefix products) and its backward stops there (no input
 * gradients below it: the frozen target has nothing to train). */
static int first_replaced_layer(const vpd_decomp *d, const vpd_pass_layer *spec) {
    int first = d->target->n_layers;
    for (int k = 0; k < d->L; k++)
        if (spec[k].replaced && d->layers[k].model_layer < first) first = d->layers[k].model_layer;
    if (first == d->target->n_layers) /* nothing replaced: the target itself, from its first decomposed layer */
        for (int k = 0; k < d->L; k++)
            if (d->layers[k].model_layer < first) first = d->layers[k].model_layer;
    return first;
}

double vpd_masked_pass(vpd_decomp *d, const vpd_pass_layer *spec, const vpd_pass_opts *opts, double *numel_out) {
    int first = first_replaced_layer(d, spec);
    pass_hook ph = {{pass_forward, pass_backward}, d, spec, opts, first, 0, 0};
    VPD_ASSERT(d->target->prefix_valid >= 0, "vpd_masked_pass before this step's vpd_decomp_target_forward");
    vpd_model_forward_from(d->target, first, d->pass.out, &ph.base);
    double D;
    const double t_loss = vpd_wtime();
    if (opts->hidden_acts) {
        D = ph.hidden_sq;
        if (numel_out) *numel_out = ph.hidden_numel;
        if (opts->dscale != 0) memset(d->pass.dout, 0, sizeof(real) * (size_t)d->batch.out_numel);
    } else if (opts->ce) {
        D = ce_row_forward_backward(d, opts->ce_row, opts->ce_token, opts->dscale);
    } else {
        D = output_loss_forward_backward(d, opts->dscale);
    }
    out_loss_seconds += vpd_wtime() - t_loss;
    if (opts->dscale != 0) vpd_model_backward_to(d->target, d->pass.dout, &ph.base, first);
    return D;
}
