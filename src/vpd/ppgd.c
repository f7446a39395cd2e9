/* Persistent PGD (VPD_METHOD.md §4 "Persistent PGD"; spd spd/persistent_pgd.py): adversarial
 * sources that live across training steps and take one ascent step per step (plus
 * n_warmup_steps extra ones on the step's batch before the losses).
 *
 * Sources of layer k have shape [Ns, Ss, C_k (+1 for r_Δ)] by scope:
 *   single_source (1, 1), broadcast_across_batch (1, S), repeat_across_batch (n_sources, S)
 *   — local example b uses row b mod n_sources — and per_batch_per_position (B, S).
 * They are drawn from the counter-based RNG: shared scopes draw the same numbers on every
 * rank (the reference broadcasts from rank 0; here no message is needed), and
 * per_batch_per_position indexes by the global example, so any rank layout draws the
 * single-process values. Gradients are averaged over data-parallel ranks except for
 * per_batch_per_position, whose sources are per rank. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vpd/decomp.h"
#include "vpd/loss_table.h"

struct vpd_ppgd_state {
    int loss_index;
    int L, Ns, Ss;
    bool delta, sigmoid, per_rank;
    size_t *off; /* [L] offset of layer k's block in the flat arrays */
    int *Cs;     /* [L] C_k (+1 with Δ) */
    size_t n;
    real *src;   /* raw parameterisation (s with sigmoid, else r) */
    real *grad;  /* γ = ∂D/∂(raw source) of the last loss, rank-averaged */
    real *m, *v; /* adam moments */
    int64_t t;
    double lr;
    const vpd_loss_cfg *lc;
};

size_t vpd_ppgd_numel(const vpd_ppgd_state *p) { return p->n; }
real *vpd_ppgd_sources(vpd_ppgd_state *p) { return p->src; }
real *vpd_ppgd_source_grad(vpd_ppgd_state *p) { return p->grad; }
real *vpd_ppgd_adam_m(vpd_ppgd_state *p) { return p->m; }
real *vpd_ppgd_adam_v(vpd_ppgd_state *p) { return p->v; }
int64_t *vpd_ppgd_adam_t(vpd_ppgd_state *p) { return &p->t; }
int vpd_ppgd_rows(const vpd_ppgd_state *p) { return p->Ns * p->Ss; }
bool vpd_ppgd_is_per_rank(const vpd_ppgd_state *p) { return p->per_rank; }

void vpd_ppgd_free(vpd_ppgd_state *p) {
    if (!p) return;
    free(p->off);
    free(p->Cs);
    vpd_free(p->src);
    vpd_free(p->grad);
    vpd_free(p->m);
    vpd_free(p->v);
    free(p);
}

vpd_status vpd_ppgd_create(vpd_ppgd_state **out, vpd_decomp *d, int loss_index) {
    const vpd_loss_cfg *lc = &d->cfg->losses[loss_index];
    vpd_ppgd_state *p = calloc(1, sizeof *p);
    if (!p) return vpd_error(VPD_ERR_MEM, "persistent PGD state");
    p->loss_index = loss_index;
    p->lc = lc;
    p->L = d->L;
    p->delta = d->cfg->use_delta_component;
    p->sigmoid = lc->ppgd_sigmoid;
    p->per_rank = lc->ppgd_scope == VPD_PPGD_PER_BATCH_PER_POSITION;
    switch (lc->ppgd_scope) {
    case VPD_PPGD_SINGLE_SOURCE: p->Ns = 1; p->Ss = 1; break;
    case VPD_PPGD_BROADCAST_ACROSS_BATCH: p->Ns = 1; p->Ss = d->batch.S; break;
    case VPD_PPGD_REPEAT_ACROSS_BATCH:
        p->Ns = lc->ppgd_n_sources;
        p->Ss = d->batch.S;
        if (p->Ns <= 0 || d->batch.B % p->Ns != 0) {
            free(p);
            return vpd_error(VPD_ERR_CONFIG,
                             "%s: scope repeat_across_batch n_sources=%d must divide the per-rank batch size %d "
                             "(batch_size / data-parallel ranks); adjust n_sources or batch_size",
                             vpd_loss_classname(lc->kind), lc->ppgd_n_sources, d->batch.B);
        }
        break;
    case VPD_PPGD_PER_BATCH_PER_POSITION: p->Ns = d->batch.B; p->Ss = d->batch.S; break;
    }
    p->off = malloc(sizeof(size_t) * (size_t)d->L);
    p->Cs = malloc(sizeof(int) * (size_t)d->L);
    if (!p->off || !p->Cs) {
        vpd_ppgd_free(p);
        return vpd_error(VPD_ERR_MEM, "persistent PGD tables");
    }
    size_t n = 0;
    for (int k = 0; k < d->L; k++) {
        p->Cs[k] = d->layers[k].C + (p->delta ? 1 : 0);
        p->off[k] = n;
        n += (size_t)p->Ns * p->Ss * p->Cs[k];
    }
    p->n = n;
    p->src = vpd_malloc(sizeof(real) * n, "persistent PGD sources");
    p->grad = vpd_calloc(sizeof(real) * n, "persistent PGD source gradients");
    p->m = vpd_calloc(sizeof(real) * n, "persistent PGD adam m");
    p->v = vpd_calloc(sizeof(real) * n, "persistent PGD adam v");
    if (!p->src || !p->grad || !p->m || !p->v) {
        vpd_ppgd_free(p);
        return VPD_ERR_MEM;
    }
    /* init: r ~ U(0,1), or s ~ N(0,1) with the sigmoid parameterisation */
    for (int k = 0; k < d->L; k++) {
        vpd_rng rng = vpd_rng_make(d->cfg->seed, VPD_RNG_PPGD_INIT, (uint32_t)loss_index, (uint32_t)k);
        real *s = p->src + p->off[k];
        const int Cs = p->Cs[k], C = d->layers[k].C;
        /* element index in the full layer: C_total components (+ r_Δ at C_total) per row, so a
         * component block draws its slice of the single-process sources */
        const uint64_t Ct = (uint64_t)d->layers[k].C_total + (p->delta ? 1 : 0), c0 = (uint64_t)d->layers[k].c0;
        for (int row = 0; row < p->Ns * p->Ss; row++) {
            /* per_batch_per_position rows are global (example, position); others are shared */
            uint64_t grow = p->per_rank ? (uint64_t)(d->batch.example0 * d->batch.S + row) : (uint64_t)row;
            real *o = s + (size_t)row * Cs;
            if (p->sigmoid) {
                vpd_rng_fill_normal(&rng, grow * Ct + c0, (size_t)C, o);
                if (p->delta) o[C] = vpd_rng_normal(&rng, grow * Ct + (uint64_t)d->layers[k].C_total);
            } else {
                vpd_rng_fill_uniform(&rng, grow * Ct + c0, (size_t)C, o);
                if (p->delta) o[C] = vpd_rng_uniform(&rng, grow * Ct + (uint64_t)d->layers[k].C_total);
            }
        }
    }
    p->lr = lc->ppgd_lr.start_val;
    *out = p;
    return VPD_OK;
}

void vpd_ppgd_set_lr(vpd_ppgd_state *p, int step, int steps) { p->lr = vpd_schedule_value(&p->lc->ppgd_lr, step, steps); }

static inline real eff(const vpd_ppgd_state *p, real s) { return p->sigmoid ? (real)(1.0 / (1.0 + exp(-(double)s))) : s; }

/* source row of local row n = b·S + pos */
static inline int src_row(const vpd_ppgd_state *p, const vpd_decomp *d, int n) {
    int b = n / d->batch.S, pos = n % d->batch.S;
    return (b % p->Ns) * p->Ss + (p->Ss == 1 ? 0 : pos);
}

/* write the effective sources into d->pass.src / d->pass.srcdelta for every row */
static void expand(vpd_ppgd_state *p, vpd_decomp *d) {
    const int N = d->batch.N;
    for (int k = 0; k < d->L; k++) {
        const int C = d->layers[k].C, Cs = p->Cs[k];
        const real *s = p->src + p->off[k];
        real *r = d->pass.src + (size_t)N * d->layers[k].c_off;
        for (int n = 0; n < N; n++) {
            const real *row = s + (size_t)src_row(p, d, n) * Cs;
            for (int c = 0; c < C; c++) r[(size_t)n * C + c] = eff(p, row[c]);
            if (p->delta) d->pass.srcdelta[(size_t)k * N + n] = eff(p, row[C]);
        }
    }
}

/* reduce d->pass.dsrc / d->pass.dsrcdelta (∂(scale·D)/∂r per row) into p->grad = ∂D/∂(raw source) */
static void gather_grad(vpd_ppgd_state *p, vpd_decomp *d, double inv_scale) {
    const int N = d->batch.N;
    memset(p->grad, 0, sizeof(real) * p->n);
    for (int k = 0; k < d->L; k++) {
        const int C = d->layers[k].C, Cs = p->Cs[k];
        real *g = p->grad + p->off[k];
        const real *dr = d->pass.dsrc + (size_t)N * d->layers[k].c_off;
        for (int n = 0; n < N; n++) {
            real *row = g + (size_t)src_row(p, d, n) * Cs;
            for (int c = 0; c < C; c++) row[c] += dr[(size_t)n * C + c];
            if (p->delta) row[C] += d->pass.dsrcdelta[(size_t)k * N + n];
        }
    }
    if (p->sigmoid)
        for (size_t i = 0; i < p->n; i++) {
            real r = eff(p, p->src[i]);
            p->grad[i] *= r * (1 - r);
        }
    /* per-rank sources: the gradient of the GLOBAL mean loss, which is the local mean's
     * divided by the replica count — so the ascent (and the Adam moments) are the same on
     * any number of ranks as in one process */
    if (p->per_rank && d->grid.dp_size > 1) inv_scale /= d->grid.dp_size;
    if (inv_scale != 1.0) vpd_scale(p->n, (real)inv_scale, p->grad);
    if (!p->per_rank && d->grid.dp_size > 1) {
        vpd_dp_mean(p->grad, p->n, d->grid.dp_comm);
    }
}

/* routing of PPGD forward `draw` (0: the loss, 1 + w: warmup step w) */
static const uint8_t *route_for(vpd_decomp *d, const vpd_loss_cfg *lc, int loss_index, int draw) {
    if (!(vpd_loss_def_of(lc->kind)->needs & VPD_LOSS_NEEDS_ROUTING)) return NULL;
    if (d->fixed) {
        vpd_status s = d->fixed->routing(d->fixed->ctx, d, loss_index, draw);
        VPD_ASSERT(s == VPD_OK, "fixed draws: %s", vpd_last_error());
        return d->pass.route;
    }
    uint32_t sample = vpd_loss_sample(loss_index, draw);
    vpd_draw dr = vpd_decomp_draw(d, -1, sample);
    vpd_status s = vpd_routing_draw(d->pass.route, &dr, d->L, lc->routing, lc->routing_p);
    VPD_ASSERT(s == VPD_OK, "routing draw: %s", vpd_last_error());
    return d->pass.route;
}

void vpd_ppgd_step(vpd_decomp *d, vpd_ppgd_state *p) {
    (void)d;
    const vpd_loss_cfg *lc = p->lc;
    if (lc->ppgd_opt == VPD_PPGD_SIGN) {
        for (size_t i = 0; i < p->n; i++) p->src[i] += (real)p->lr * (real)((p->grad[i] > 0) - (p->grad[i] < 0)); /* vectorised: ppgd_sign_step */
    } else {
        p->t++;
        const double b1 = lc->ppgd_beta1, b2 = lc->ppgd_beta2;
        const double bc1 = 1 - pow(b1, (double)p->t), bc2 = 1 - pow(b2, (double)p->t);
        for (size_t i = 0; i < p->n; i++) { /* vectorised: ppgd_adam_step */
            double g = p->grad[i];
            double m = b1 * p->m[i] + (1 - b1) * g, v = b2 * p->v[i] + (1 - b2) * g * g;
            p->m[i] = (real)m;
            p->v[i] = (real)v;
            p->src[i] += (real)(p->lr * (m / bc1) / (sqrt(v / bc2) + lc->ppgd_eps));
        }
    }
    if (!p->sigmoid)
        for (size_t i = 0; i < p->n; i++) p->src[i] = p->src[i] < 0 ? 0 : p->src[i] > 1 ? 1 : p->src[i]; /* vectorised: ppgd_clamp */
}

void vpd_ppgd_warmup(vpd_decomp *d, vpd_ppgd_state *p, int loss_index) {
    for (int w = 0; w < p->lc->ppgd_n_warmup_steps; w++) {
        expand(p, d);
        const uint8_t *route = route_for(d, p->lc, loss_index, 1 + w);
        vpd_recon_pass(d, &(vpd_pass_spec){.masks = VPD_MASKS_SOURCES, .route = route, .dscale = 1.0, .grad_sources = true});
        gather_grad(p, d, 1.0);
        vpd_ppgd_step(d, p);
    }
}

double vpd_ppgd_loss(vpd_decomp *d, vpd_ppgd_state *p, int loss_index, double dscale, bool backward) {
    expand(p, d);
    const uint8_t *route = route_for(d, p->lc, loss_index, 0);
    /* one backward serves both: the parameters get dscale·∂D, the sources ∂D (divide back);
     * with dscale 0 the pass is seeded by 1 for the sources alone */
    const double seed = backward ? (dscale != 0 ? dscale : 1.0) : 0.0;
    double D = vpd_recon_pass(d, &(vpd_pass_spec){.masks = VPD_MASKS_SOURCES,
                                                  .route = route,
                                                  .dscale = seed,
                                                  .param_grads = backward && dscale != 0,
                                                  .grad_sources = backward});
    if (backward) gather_grad(p, d, 1.0 / seed);
    return D;
}

/* the row's evaluate: the loss's persistent state is d->loss.ppgd[index] */
double vpd_loss_ppgd_eval(vpd_decomp *d, int index, double dscale, bool backward) {
    return vpd_ppgd_loss(d, d->loss.ppgd[index], index, dscale, backward);
}
