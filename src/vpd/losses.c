/* The losses of VPD_METHOD.md §4 (spd spd/losses.py + spd/metrics/), each evaluated on the
 * current step's batch, CI and Δ, with its backward accumulated right away:
 * coeff·∂loss/∂(U, V) into the component gradient and coeff·∂loss/∂g into d->act.dg_lower
 * (masks) / d->act.dg_upper (importance minimality).
 *
 * The reconstruction family is one routine, recon_pass, parameterised by where the masks
 * come from (stochastic / given adversarial sources: m = g + (1−g) r and m_Δ = r_Δ; CI:
 * m = g, no Δ; unmasked: m = 1, no Δ), which layers are replaced (all, one at a time, or
 * routed per position) and the output loss (D against f(x), or the hidden-acts error).
 *
 * Multi-rank meaning: every reconstruction loss is the mean over this rank's rows; the
 * trainer averages gradients over data-parallel ranks, which gives the gradient of the
 * global mean. Importance minimality needs the exact global S_c: one allreduce of ΣC
 * doubles, and its local gradient is scaled by the rank count to survive the averaging. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vpd/decomp.h"
#include "vpd/loss_table.h"

static real *blk(const vpd_decomp *d, real *buf, int k) { return buf + (size_t)d->batch.N * (size_t)d->layers[k].c_off; }

/* ---- faithfulness: Σ_l ‖Δ_l‖²_F / Σ_l numel(W_l) ----------------------------------------- */
double vpd_loss_faithfulness_eval(vpd_decomp *d, int index, double dscale, bool backward) {
    (void)index;
    (void)backward; /* dscale 0: value only */
    double sum = 0, numel = 0;
    for (int k = 0; k < d->L; k++) {
        sum += vpd_faithfulness_forward(&d->layers[k].comp);
        numel += (double)d->layers[k].numel_W;
    }
    if (dscale != 0)
        for (int k = 0; k < d->L; k++)
            vpd_faithfulness_backward(d->layers[k].dV, d->layers[k].dU, &d->layers[k].comp, (real)(dscale / numel));
    return sum / numel;
}

/* ---- importance minimality ---------------------------------------------------------------- */
double vpd_im_annealed_p(const vpd_loss_cfg *lc, double frac) {
    if (!lc->has_p_anneal_final_p || lc->p_anneal_start_frac >= 1.0) return lc->pnorm;
    if (frac < lc->p_anneal_start_frac) return lc->pnorm;
    if (frac >= lc->p_anneal_end_frac) return lc->p_anneal_final_p;
    double t = (frac - lc->p_anneal_start_frac) / (lc->p_anneal_end_frac - lc->p_anneal_start_frac);
    return lc->pnorm + (lc->p_anneal_final_p - lc->pnorm) * t;
}

double vpd_loss_importance_minimality_eval(vpd_decomp *d, int index, double dscale, bool backward) {
    (void)backward; /* dscale 0: value only */
    const vpd_loss_cfg *lc = &d->cfg->losses[index];
    const int N = d->batch.N;
    const double p = vpd_im_annealed_p(lc, d->cfg->steps > 0 ? (double)d->step / d->cfg->steps : 0.0);
    const double eps = lc->eps, beta = lc->beta;
    d->loss.im_p_current = p;
    /* S_c over the global batch: local sums, one allreduce */
    double *S = calloc((size_t)d->C_sum, sizeof(double));
    VPD_ASSERT(S, "out of memory (importance minimality sums)");
    /* (g + eps)^p; most g are exactly 0, so that power is computed once */
    const double pow0 = pow(eps, p), dpow0 = pow(eps, p - 1.0);
    if (p != 1.0 && p != 2.0 && !d->loss.im_pow) {
        d->loss.im_pow = vpd_malloc(sizeof(real) * (size_t)N * (size_t)d->C_sum, "importance-minimality powers");
        VPD_ASSERT(d->loss.im_pow, "out of memory (importance-minimality powers, %zu MiB)",
                   sizeof(real) * (size_t)N * (size_t)d->C_sum >> 20);
    }
    for (int k = 0; k < d->L; k++) {
        const int C = d->layers[k].C;
        const real *g = blk(d, d->act.g_upper, k);
        double *Sk = S + d->layers[k].c_off;
        /* p = 1 and p = 2 (the configs' common values) as separate branch-free loops that vectorise */
        if (p == 1.0)
            for (int n = 0; n < N; n++)
                for (int c = 0; c < C; c++) { /* vectorised: im_forward_p1 */
                    double v = g[(size_t)n * C + c];
                    Sk[c] += v == 0 ? pow0 : v + eps;
                }
        else if (p == 2.0)
            for (int n = 0; n < N; n++)
                for (int c = 0; c < C; c++) { /* vectorised: im_forward_p2 */
                    double v = g[(size_t)n * C + c];
                    Sk[c] += v == 0 ? pow0 : (v + eps) * (v + eps);
                }
        else { /* (g + eps)^p kept for the backward: (g + eps)^(p−1) = (g + eps)^p / (g + eps), one pow
                * per element instead of two (the pow is most of this loss's time at a general p) */
            real *pw = d->loss.im_pow + (size_t)N * d->layers[k].c_off;
            for (int n = 0; n < N; n++)
                for (int c = 0; c < C; c++) {
                    size_t i = (size_t)n * C + c;
                    double v = g[i], q = v == 0 ? pow0 : pow(v + eps, p);
                    Sk[c] += q;
                    pw[i] = (real)q;
                }
        }
    }
    vpd_sum_double(S, (size_t)d->C_sum, d->grid.dp_comm);
    const double Ng = (double)N * d->grid.dp_size;
    double loss = 0;
    for (int j = 0; j < d->C_sum; j++) loss += S[j] / Ng + beta * (S[j] / Ng) * log2(1.0 + S[j]);
    if (dscale != 0) {
        /* ∂loss/∂g = p(g+eps)^(p−1)·[1/Ng + (β/Ng)·log2(1+S_c) + β·(S_c/Ng)/((1+S_c)·ln 2)];
         * × dp_size because the trainer averages gradients over the replicas */
        const double scale = dscale * d->grid.dp_size;
        /* the per-component factor first, then the rows in memory order (row-major [N, C]) */
        for (int j = 0; j < d->C_sum; j++)
            S[j] = scale * p * (1.0 / Ng + beta / Ng * log2(1.0 + S[j]) + beta * (S[j] / Ng) / ((1.0 + S[j]) * 0.69314718055994530942));
        for (int k = 0; k < d->L; k++) {
            const int C = d->layers[k].C;
            const real *g = blk(d, d->act.g_upper, k);
            real *dg = blk(d, d->act.dg_upper, k);
            const double *fk = S + d->layers[k].c_off;
            if (p == 1.0)
                for (int n = 0; n < N; n++)
                    for (int c = 0; c < C; c++) { /* vectorised: im_backward_p1 */
                        size_t i = (size_t)n * C + c;
                        double dp = g[i] == 0 ? dpow0 : 1.0;
                        dg[i] += (real)(fk[c] * dp);
                    }
            else if (p == 2.0)
                for (int n = 0; n < N; n++)
                    for (int c = 0; c < C; c++) { /* vectorised: im_backward_p2 */
                        size_t i = (size_t)n * C + c;
                        double v = g[i];
                        double dp = v == 0 ? dpow0 : v + eps;
                        dg[i] += (real)(fk[c] * dp);
                    }
            else {
                const real *pw = d->loss.im_pow + (size_t)N * d->layers[k].c_off;
                for (int n = 0; n < N; n++)
                    for (int c = 0; c < C; c++) { /* vectorised: im_backward_p */
                        size_t i = (size_t)n * C + c;
                        double v = g[i];
                        double dp = v == 0 ? dpow0 : (double)pw[i] / (v + eps);
                        dg[i] += (real)(fk[c] * dp);
                    }
            }
        }
    }
    free(S);
    return loss;
}

/* ---- the reconstruction family --------------------------------------------------------------- */
/* One masked pass (decomp.h vpd_pass_spec): masks from ps->masks for the replaced layers,
 * the masked forward and the backward of dscale·D into dU, dV, dg_lower and dsrc. */
double vpd_recon_pass(vpd_decomp *d, const vpd_pass_spec *ps) {
    const vpd_mask_source ms = ps->masks;
    const int N = d->batch.N, L = d->L;
    const bool delta = d->cfg->use_delta_component && ms == VPD_MASKS_SOURCES;
    vpd_pass_layer spec[VPD_MAX_MODULE_PATTERNS * 4] = {{0}};
    VPD_ASSERT(L <= (int)(sizeof spec / sizeof spec[0]), "too many layers");
    const bool bwd = ps->dscale != 0;
    for (int k = 0; k < L; k++) {
        vpd_pass_layer *sp = &spec[k];
        memset(sp, 0, sizeof *sp);
        sp->replaced = ps->replaced ? ps->replaced[k] : true;
        if (!sp->replaced) continue;
        size_t nk = (size_t)N * d->layers[k].C;
        real *g = blk(d, d->act.g_lower, k);
        if (ms == VPD_MASKS_SOURCES) {
            real *m = blk(d, d->pass.mask, k);
            vpd_mask_forward(m, g, blk(d, d->pass.src, k), nk);
            sp->m = m;
        } else if (ms == VPD_MASKS_CI) {
            sp->m = g;
        }
        if (delta) sp->mdelta = d->pass.srcdelta + (size_t)k * N;
        sp->route = ps->route ? ps->route + (size_t)k * N : NULL;
        if (bwd && ms != VPD_MASKS_NONE) {
            sp->dm = blk(d, d->pass.dmask, k);
            memset(sp->dm, 0, sizeof(real) * nk);
        }
        if (bwd && delta && ps->grad_sources) {
            sp->dmdelta = d->pass.dsrcdelta + (size_t)k * N;
            memset(sp->dmdelta, 0, sizeof(real) * (size_t)N);
        }
    }
    vpd_pass_opts opts = {.dscale = ps->dscale, .param_grads = ps->param_grads, .hidden_acts = ps->hidden_acts};
    double D = vpd_masked_pass(d, spec, &opts, ps->numel_out);
    if (!bwd) return D;
    for (int k = 0; k < L; k++) {
        if (!spec[k].replaced || ms == VPD_MASKS_NONE) continue;
        size_t nk = (size_t)N * d->layers[k].C;
        real *dg = blk(d, d->act.dg_lower, k);
        if (ms == VPD_MASKS_CI) {
            vpd_axpy(nk, 1, spec[k].dm, dg);
        } else {
            real *dr = NULL;
            if (ps->grad_sources) {
                dr = blk(d, d->pass.dsrc, k);
                memset(dr, 0, sizeof(real) * nk);
            }
            /* the gradient into g trains the CI function only when the loss is scaled in */
            vpd_mask_backward(ps->param_grads ? dg : NULL, dr, spec[k].dm, blk(d, d->act.g_lower, k), blk(d, d->pass.src, k), nk);
        }
    }
    return D;
}

static void fixed_check(vpd_status s) {
    /* fixed draws are validated when they are loaded; a miss here is a broken file */
    if (s != VPD_OK) vpd_panic(__FILE__, __LINE__, "fixed draws: %s", vpd_last_error());
}

/* draw stochastic sources for every layer: r (continuous/binomial) and r_Δ */
static void draw_stochastic(vpd_decomp *d, int index, int s) {
    if (d->fixed) {
        fixed_check(d->fixed->stochastic(d->fixed->ctx, d, index, s));
        return;
    }
    uint32_t sample = vpd_loss_sample(index, 2 * s);
    for (int k = 0; k < d->L; k++) {
        vpd_draw dr = vpd_decomp_draw(d, k, sample);
        vpd_mask_source_draw(blk(d, d->pass.src, k), &dr, d->cfg->sampling);
        if (d->cfg->use_delta_component) vpd_delta_source_draw(d->pass.srcdelta + (size_t)k * d->batch.N, &dr);
    }
}

static void draw_routing(vpd_decomp *d, int index, int draw, uint32_t sample) {
    const vpd_loss_cfg *lc = &d->cfg->losses[index];
    if (d->fixed) {
        fixed_check(d->fixed->routing(d->fixed->ctx, d, index, draw));
        return;
    }
    vpd_draw dr = vpd_decomp_draw(d, -1, sample);
    vpd_status s = vpd_routing_draw(d->pass.route, &dr, d->L, lc->routing, lc->routing_p);
    VPD_ASSERT(s == VPD_OK, "routing draw: %s", vpd_last_error()); /* checked when the config was read */
}

/* stochastic / CI-masked / unmasked / hidden-acts, over all layers, layerwise or routed: the
 * variant is the loss's row (masks, layerwise, needs routing / hidden acts) */
double vpd_loss_recon_eval(vpd_decomp *d, int index, double dscale, bool backward) {
    (void)backward; /* dscale 0: value only */
    const vpd_loss_def *def = vpd_loss_def_of(d->cfg->losses[index].kind);
    const int L = d->L;
    const vpd_mask_source ms = def->masks;
    const bool layerwise = def->layerwise, subset = def->needs & VPD_LOSS_NEEDS_ROUTING,
               hidden = def->needs & VPD_LOSS_NEEDS_HIDDEN_ACTS;
    const int samples = def->needs & VPD_LOSS_NEEDS_MASK_SAMPLES ? d->cfg->n_mask_samples : 1;
    const int passes_per_sample = layerwise ? L : 1;
    double hidden_numel = 0;
    if (hidden) /* pooled over samples and layers: Σ ‖·‖² / Σ numel */
        for (int k = 0; k < L; k++) hidden_numel += (double)d->batch.N * d->layers[k].d_out;
    const double denom = hidden ? hidden_numel * samples : (double)samples * passes_per_sample;
    double total = 0;
    bool replaced[VPD_MAX_MODULE_PATTERNS * 4];
    for (int s = 0; s < samples; s++) {
        if (ms == VPD_MASKS_SOURCES) draw_stochastic(d, index, s);
        if (subset) draw_routing(d, index, s, vpd_loss_sample(index, 2 * s + 1));
        for (int p = 0; p < passes_per_sample; p++) {
            for (int k = 0; k < L; k++) replaced[k] = !layerwise || k == p;
            total += vpd_recon_pass(d, &(vpd_pass_spec){.masks = ms,
                                                        .replaced = replaced,
                                                        .route = subset ? d->pass.route : NULL,
                                                        .dscale = dscale / denom,
                                                        .param_grads = true,
                                                        .hidden_acts = hidden});
        }
    }
    return total / denom;
}

/* ---- one-shot PGD (§4 PGDRecon / Subset / Layerwise) ------------------------------------------ */
static void pgd_init_sources(vpd_decomp *d, const vpd_loss_cfg *lc, int k, uint32_t sample, real *r_shared) {
    const int N = d->batch.N, C = d->layers[k].C;
    const bool delta = d->cfg->use_delta_component;
    const int Cs = C + (delta ? 1 : 0);
    real *r = blk(d, d->pass.src, k), *rd = d->pass.srcdelta + (size_t)k * N;
    if (lc->pgd_init != VPD_PGD_INIT_RANDOM) {
        real v = lc->pgd_init == VPD_PGD_INIT_ONES ? 1 : 0;
        for (int j = 0; j < Cs; j++) r_shared[j] = v;
        for (size_t i = 0; i < (size_t)N * C; i++) r[i] = v;
        if (delta) for (int n = 0; n < N; n++) rd[n] = v;
        return;
    }
    vpd_rng rng = vpd_rng_make(d->cfg->seed, VPD_RNG_PGD_INIT, (uint32_t)d->step, sample << 16 | (uint32_t)k);
    const uint64_t Ct = (uint64_t)d->layers[k].comp.C_total + (delta ? 1 : 0);
    if (lc->mask_scope == VPD_SCOPE_SHARED_ACROSS_BATCH) {
        /* the same numbers on every rank: no broadcast needed */
        for (int j = 0; j < C; j++) r_shared[j] = vpd_rng_uniform(&rng, (uint64_t)(d->layers[k].comp.c0 + j));
        if (delta) r_shared[C] = vpd_rng_uniform(&rng, (uint64_t)d->layers[k].comp.C_total);
        return;
    }
    for (int n = 0; n < N; n++) {
        uint64_t row = (uint64_t)(d->batch.example0 * d->batch.S + n);
        vpd_rng_fill_uniform(&rng, row * Ct + (uint64_t)d->layers[k].comp.c0, (size_t)C, r + (size_t)n * C);
        if (delta) rd[n] = vpd_rng_uniform(&rng, row * Ct + (uint64_t)d->layers[k].comp.C_total);
    }
}

static void pgd_expand_shared(vpd_decomp *d, int k, const real *r_shared) {
    const int N = d->batch.N, C = d->layers[k].C;
    real *r = blk(d, d->pass.src, k);
    for (int n = 0; n < N; n++) memcpy(r + (size_t)n * C, r_shared, sizeof(real) * (size_t)C);
    if (d->cfg->use_delta_component)
        for (int n = 0; n < N; n++) d->pass.srcdelta[(size_t)k * N + n] = r_shared[C];
}

static inline real sgn(real x) { return (real)((x > 0) - (x < 0)); }

/* PGD over the layers in `replaced`: n_steps of sign ascent on the sources, then the loss at
 * the final sources with the parameter backward seeded by dscale (0: value only). Returns D. */
static double pgd_run(vpd_decomp *d, int index, const bool *replaced, const uint8_t *route, double dscale,
                      int restart, uint32_t sample) {
    const vpd_loss_cfg *lc = &d->cfg->losses[index];
    const int N = d->batch.N, L = d->L;
    const bool delta = d->cfg->use_delta_component;
    const bool shared = lc->mask_scope == VPD_SCOPE_SHARED_ACROSS_BATCH;
    real *shared_src = NULL, *shared_grad = NULL;
    size_t n_shared = (size_t)d->C_sum + (size_t)L;
    if (shared) {
        shared_src = calloc(n_shared, sizeof(real));
        shared_grad = calloc(n_shared, sizeof(real));
        VPD_ASSERT(shared_src && shared_grad, "out of memory (PGD sources)");
    }
#define SH(k) (shared_src + d->layers[k].c_off + (k))
#define SHG(k) (shared_grad + d->layers[k].c_off + (k))
    if (d->fixed) fixed_check(d->fixed->pgd_init(d->fixed->ctx, d, index, restart, shared_src));
    for (int k = 0; k < L; k++) {
        if (replaced && !replaced[k]) continue;
        if (!d->fixed) pgd_init_sources(d, lc, k, sample, shared ? SH(k) : NULL);
        if (shared) pgd_expand_shared(d, k, SH(k));
    }
    for (int it = 0; it < lc->n_steps; it++) {
        vpd_recon_pass(d, &(vpd_pass_spec){.masks = VPD_MASKS_SOURCES, .replaced = replaced, .route = route,
                                           .dscale = 1.0, .grad_sources = true});
        if (shared) {
            memset(shared_grad, 0, sizeof(real) * n_shared);
            for (int k = 0; k < L; k++) {
                if (replaced && !replaced[k]) continue;
                const int C = d->layers[k].C;
                const real *dr = blk(d, d->pass.dsrc, k);
                for (int n = 0; n < N; n++)
                    for (int c = 0; c < C; c++) SHG(k)[c] += dr[(size_t)n * C + c];
                if (delta)
                    for (int n = 0; n < N; n++) SHG(k)[C] += d->pass.dsrcdelta[(size_t)k * N + n];
            }
            vpd_dp_mean(shared_grad, n_shared, d->grid.dp_comm);
            for (int k = 0; k < L; k++) {
                if (replaced && !replaced[k]) continue;
                const int Cs = d->layers[k].C + (delta ? 1 : 0);
                for (int j = 0; j < Cs; j++) {
                    real v = SH(k)[j] + (real)lc->step_size * sgn(SHG(k)[j]);
                    SH(k)[j] = v < 0 ? 0 : v > 1 ? 1 : v;
                }
                pgd_expand_shared(d, k, SH(k));
            }
        } else {
            for (int k = 0; k < L; k++) {
                if (replaced && !replaced[k]) continue;
                size_t nk = (size_t)N * d->layers[k].C;
                real *r = blk(d, d->pass.src, k);
                const real *dr = blk(d, d->pass.dsrc, k);
                for (size_t i = 0; i < nk; i++) {
                    real v = r[i] + (real)lc->step_size * sgn(dr[i]);
                    r[i] = v < 0 ? 0 : v > 1 ? 1 : v;
                }
                if (delta)
                    for (int n = 0; n < N; n++) {
                        real *v = &d->pass.srcdelta[(size_t)k * N + n];
                        real w = *v + (real)lc->step_size * sgn(d->pass.dsrcdelta[(size_t)k * N + n]);
                        *v = w < 0 ? 0 : w > 1 ? 1 : w;
                    }
            }
        }
    }
#undef SH
#undef SHG
    free(shared_src);
    free(shared_grad);
    return vpd_recon_pass(d, &(vpd_pass_spec){.masks = VPD_MASKS_SOURCES, .replaced = replaced, .route = route,
                                              .dscale = dscale, .param_grads = true});
}

double vpd_loss_pgd_eval(vpd_decomp *d, int index, double dscale, bool backward) {
    (void)backward; /* dscale 0: value only */
    const vpd_loss_def *def = vpd_loss_def_of(d->cfg->losses[index].kind);
    const int L = d->L;
    if (def->layerwise) {
        bool replaced[VPD_MAX_MODULE_PATTERNS * 4];
        double total = 0;
        for (int p = 0; p < L; p++) {
            for (int k = 0; k < L; k++) replaced[k] = k == p;
            total += pgd_run(d, index, replaced, NULL, dscale / L, p, vpd_loss_sample(index, p));
        }
        return total / L;
    }
    const uint8_t *route = NULL;
    if (def->needs & VPD_LOSS_NEEDS_ROUTING) {
        draw_routing(d, index, 0, vpd_loss_sample(index, 1023)); /* once per call, held fixed */
        route = d->pass.route;
    }
    return pgd_run(d, index, NULL, route, dscale, 0, vpd_loss_sample(index, 0));
}

/* the dispatcher: the loss's row, the coefficient passed once as the gradient seed */
double vpd_loss_evaluate(vpd_decomp *d, int index, bool backward) {
    const vpd_loss_cfg *lc = &d->cfg->losses[index];
    return vpd_loss_def_of(lc->kind)->evaluate(d, index, backward ? lc->coeff : 0.0, backward);
}
