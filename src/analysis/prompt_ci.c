/* The post-hoc CI optimisation on one prompt (VPD_METHOD.md §6 "Attribution graphs",
 * include/vpd/prompt_ci.h): the pruning step of an attribution graph.
 *
 * Layout: every buffer over subcomponents is the decomposition's layer-major [ΣC·T] (layer k's
 * [T, C_k] block at T·c_off[k]); the free values are a compact list over the alive
 * (position, subcomponent) pairs with their element index. One masked pass (masked_pass.c,
 * `ce` option) gives the cross-entropy of the target token at t* and, backward, ∂CE/∂m per
 * element, from which ∂/∂g = ∂CE/∂m·(1 − r) and ∂/∂r = ∂CE/∂m·(1 − g) (masks.c).
 *
 * Draws (counter-based, components.h vpd_draw): optimisation step s uses sub-stream step s,
 * samples PCI_SAMPLE_STOCH (sources r and r_Δ) and PCI_SAMPLE_PGD (PGD start); the measurement
 * uses step PCI_EVAL_STEP0 + eval_id. Nothing depends on the rank count: every rank runs the
 * same computation on its own copy. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vpd/decomp.h"
#include "vpd/optim.h"
#include "vpd/prompt_ci.h"

#define PCI_SAMPLE_STOCH 0x5100u
#define PCI_SAMPLE_PGD 0x5200u
#define PCI_SAMPLE_EVAL_PGD 0x5300u
#define PCI_EVAL_STEP0 0x40000000u
#define PCI_IM_EPS 1e-12

struct vpd_prompt_ci {
    vpd_decomp *d;
    vpd_prompt_ci_opts o;
    int T, t_star, target;
    int32_t *tok;        /* [T] */
    size_t nz;           /* ΣC·T */
    int n_free;
    int32_t *idx;        /* [n_free] element of value i in the [ΣC·T] buffers */
    real *val, *grad;    /* [n_free] free pre-sigmoid values, their gradient */
    real *adam_m, *adam_v; /* [n_free] */
    real *cg, *cgu;      /* [n_free] compact g_lower, g_upper; */
    real *cdg, *cdgu;    /* [n_free] compact ∂/∂g_lower, ∂/∂g_upper */
    real *g, *r, *m, *dm; /* [nz] g_lower (0 off the alive set), sources, masks, ∂/∂m */
    real *rdelta;        /* [L·T] */
    vpd_pass_layer *spec; /* [L] */
};

void vpd_prompt_ci_opts_defaults(vpd_prompt_ci_opts *o) {
    memset(o, 0, sizeof *o);
    o->steps = 2000;      /* the paper (§6) */
    o->lr = 0.01;         /* spd app (graphs.py: lr = 1e-2) */
    o->imp_coeff = 0.1;   /* spd app default (impMinCoeff 0.1) */
    o->pnorm = 0.3;       /* the paper / spd app */
    o->adv_coeff = 1.0;
    o->pgd_steps = 4;     /* the paper: PGD 4 steps, lr 1 */
    o->pgd_lr = 1.0;
    o->pgd_eval_steps = 20; /* §6 adversarial readout: 20 steps of 0.1 */
    o->pgd_eval_lr = 0.1;
    o->n_eval_samples = 16;
    o->seed = 0;
    o->log_every = 0;
}

int vpd_prompt_ci_n_free(const vpd_prompt_ci *p) { return p->n_free; }
real *vpd_prompt_ci_values(vpd_prompt_ci *p) { return p->val; }
const int32_t *vpd_prompt_ci_index(const vpd_prompt_ci *p) { return p->idx; }

void vpd_prompt_ci_free(vpd_prompt_ci *p) {
    if (!p) return;
    vpd_free(p->tok);
    vpd_free(p->idx);
    vpd_free(p->val);
    vpd_free(p->g);
    vpd_free(p->spec);
    free(p);
}

static vpd_draw draw_at(const vpd_prompt_ci *p, int k, uint32_t step, uint32_t sample) {
    vpd_draw dr = vpd_decomp_draw(p->d, k, sample);
    dr.seed = p->o.seed;
    dr.step = step;
    return dr;
}

/* g (and the compact g_lower / g_upper) from the free values; 0 off the alive set */
static void expand(vpd_prompt_ci *p) {
    const vpd_decomp_config *cfg = p->d->cfg;
    vpd_sigmoid_forward(cfg->sigmoid_lower, p->cg, p->val, (size_t)p->n_free);
    vpd_sigmoid_forward(cfg->sigmoid_upper, p->cgu, p->val, (size_t)p->n_free);
    memset(p->g, 0, sizeof(real) * p->nz);
    for (int i = 0; i < p->n_free; i++) p->g[p->idx[i]] = p->cg[i];
}

/* one masked pass with masks p->m (and r_Δ when with_delta): CE of the target at t*; backward
 * of dscale·CE into p->dm (zeroed first) when dscale != 0 */
static double pass(vpd_prompt_ci *p, bool with_delta, double dscale) {
    vpd_decomp *d = p->d;
    const int N = d->batch.N;
    for (int k = 0; k < d->L; k++) {
        size_t off = (size_t)N * (size_t)d->layers[k].c_off;
        p->spec[k] = (vpd_pass_layer){.replaced = true,
                                      .m = p->m + off,
                                      .mdelta = with_delta ? p->rdelta + (size_t)k * N : NULL,
                                      .route = NULL,
                                      .dm = dscale != 0 ? p->dm + off : NULL,
                                      .dmdelta = NULL};
    }
    if (dscale != 0) memset(p->dm, 0, sizeof(real) * p->nz);
    const vpd_pass_opts po = {.dscale = dscale, .ce = true, .ce_row = p->t_star, .ce_token = p->target};
    return vpd_masked_pass(d, p->spec, &po, NULL);
}

/* stochastic sources for all elements and r_Δ (use_delta_component) at (step, sample) */
static void draw_stochastic(vpd_prompt_ci *p, uint32_t step, uint32_t sample) {
    vpd_decomp *d = p->d;
    const int N = d->batch.N;
    for (int k = 0; k < d->L; k++) {
        vpd_draw dr = draw_at(p, k, step, sample);
        vpd_mask_source_draw(p->r + (size_t)N * d->layers[k].c_off, &dr, d->cfg->sampling);
        vpd_delta_source_draw(p->rdelta + (size_t)k * N, &dr);
    }
}

/* PGD on the alive set: sources start U(0,1) (0 elsewhere), n_steps sign-ascent steps of
 * size lr on CE, clamped to [0, 1]; leaves p->r the final sources and p->m their masks. No Δ. */
static void pgd(vpd_prompt_ci *p, uint32_t step, uint32_t sample, int n_steps, double lr) {
    vpd_decomp *d = p->d;
    const int N = d->batch.N;
    /* the start: the uniform draw of the element, kept on the alive set only */
    for (int k = 0; k < d->L; k++) {
        vpd_draw dr = draw_at(p, k, step, sample);
        vpd_mask_source_draw(p->m + (size_t)N * d->layers[k].c_off, &dr, VPD_SAMPLING_CONTINUOUS);
    }
    memset(p->r, 0, sizeof(real) * p->nz);
    for (int i = 0; i < p->n_free; i++) p->r[p->idx[i]] = p->m[p->idx[i]];
    for (int s = 0; s < n_steps; s++) {
        vpd_mask_forward(p->m, p->g, p->r, p->nz);
        pass(p, false, 1.0);
        for (int i = 0; i < p->n_free; i++) {
            const int32_t e = p->idx[i];
            const double dr = (double)p->dm[e] * (1.0 - (double)p->g[e]);
            double v = (double)p->r[e] + lr * (double)((dr > 0) - (dr < 0));
            p->r[e] = (real)(v < 0 ? 0 : v > 1 ? 1 : v);
        }
    }
    vpd_mask_forward(p->m, p->g, p->r, p->nz);
}

double vpd_prompt_ci_loss(vpd_prompt_ci *p, int step, real *grad, double parts[3]) {
    const vpd_decomp_config *cfg = p->d->cfg;
    const vpd_prompt_ci_opts *o = &p->o;
    const int n = p->n_free;
    const bool bw = grad != NULL;
    expand(p);
    memset(p->cdg, 0, sizeof(real) * (size_t)n);
    /* stochastic: m = g + (1 − g)·r everywhere, with the Δ term */
    draw_stochastic(p, (uint32_t)step, PCI_SAMPLE_STOCH);
    vpd_mask_forward(p->m, p->g, p->r, p->nz);
    const double ce_s = pass(p, cfg->use_delta_component, bw ? 1.0 : 0.0);
    if (bw)
        for (int i = 0; i < n; i++) p->cdg[i] += p->dm[p->idx[i]] * (1 - p->r[p->idx[i]]);
    /* adversarial: PGD on the alive set, then the CE at its final sources */
    double ce_a = 0;
    if (o->adv_coeff != 0) {
        pgd(p, (uint32_t)step, PCI_SAMPLE_PGD, o->pgd_steps, o->pgd_lr);
        ce_a = pass(p, false, bw ? o->adv_coeff : 0.0);
        if (bw)
            for (int i = 0; i < n; i++) p->cdg[i] += p->dm[p->idx[i]] * (1 - p->r[p->idx[i]]);
    }
    /* importance minimality over the alive set: (1/T) Σ (g_upper + eps)^p */
    double im = 0;
    const double inv_T = 1.0 / (double)p->T;
    for (int i = 0; i < n; i++) {
        const double gu = (double)p->cgu[i] + PCI_IM_EPS;
        const double gp = pow(gu, o->pnorm);
        im += gp;
        p->cdgu[i] = (real)(o->imp_coeff * o->pnorm * gp / gu * inv_T);
    }
    im *= inv_T;
    if (bw) {
        memset(grad, 0, sizeof(real) * (size_t)n);
        vpd_sigmoid_backward(cfg->sigmoid_lower, grad, p->cdg, p->val, (size_t)n);
        vpd_sigmoid_backward(cfg->sigmoid_upper, grad, p->cdgu, p->val, (size_t)n);
    }
    if (parts) {
        parts[0] = ce_s;
        parts[1] = ce_a;
        parts[2] = im;
    }
    return ce_s + o->adv_coeff * ce_a + o->imp_coeff * im;
}

void vpd_prompt_ci_measure(vpd_prompt_ci *p, uint32_t eval_id, vpd_prompt_ci_probs *out) {
    const vpd_decomp_config *cfg = p->d->cfg;
    const vpd_prompt_ci_opts *o = &p->o;
    const uint32_t step = PCI_EVAL_STEP0 + eval_id;
    expand(p);
    int alive = 0;
    for (int i = 0; i < p->n_free; i++) alive += p->cg[i] > 0;
    /* CI masks, no Δ */
    memcpy(p->m, p->g, sizeof(real) * p->nz);
    const double p_ci = exp(-pass(p, false, 0.0));
    /* stochastic, with Δ: mean of P over the draws */
    double p_st = 0;
    const int ns = o->n_eval_samples > 0 ? o->n_eval_samples : 1;
    for (int s = 0; s < ns; s++) {
        draw_stochastic(p, step, PCI_SAMPLE_STOCH + (uint32_t)s);
        vpd_mask_forward(p->m, p->g, p->r, p->nz);
        p_st += exp(-pass(p, cfg->use_delta_component, 0.0));
    }
    p_st /= ns;
    /* adversarial: PGD on the alive set, P at the final sources */
    pgd(p, step, PCI_SAMPLE_EVAL_PGD, o->pgd_eval_steps, o->pgd_eval_lr);
    const double p_adv = exp(-pass(p, false, 0.0));
    out->p_ci = (float)p_ci;
    out->p_stoch = (float)p_st;
    out->p_adv = (float)p_adv;
    out->n_alive = alive;
}

void vpd_prompt_ci_run(vpd_prompt_ci *p) {
    const vpd_prompt_ci_opts *o = &p->o;
    const vpd_schedule sch = {.start_val = o->lr, .fn_type = VPD_SCHED_COSINE, .warmup_pct = 0.01, .final_val_frac = 0.0};
    memset(p->adam_m, 0, sizeof(real) * (size_t)p->n_free);
    memset(p->adam_v, 0, sizeof(real) * (size_t)p->n_free);
    const double t0 = vpd_wtime();
    for (int step = 0; step < o->steps; step++) {
        double parts[3];
        const double L = vpd_prompt_ci_loss(p, step, p->grad, parts);
        const double lr = vpd_schedule_value(&sch, step, o->steps);
        vpd_adamw_update(p->val, p->grad, p->adam_m, p->adam_v, (size_t)p->n_free, lr, 0.9, 0.999, 1e-8, 0.0,
                         (int64_t)step + 1);
        if (o->log_every > 0 && (step % o->log_every == 0 || step == o->steps - 1)) {
            int alive = 0;
            for (int i = 0; i < p->n_free; i++) alive += p->cg[i] > 0;
            fprintf(stderr,
                    "prompt-ci step %5d/%d: loss %.5f (stochastic CE %.5f, adversarial CE %.5f, importance %.4f) "
                    "alive %d of %d, lr %.3g, %.1f s\n",
                    step, o->steps, L, parts[0], parts[1], parts[2], alive, p->n_free, lr, vpd_wtime() - t0);
        }
    }
}

void vpd_prompt_ci_export(const vpd_prompt_ci *p, float *ci_out) {
    const vpd_decomp *d = p->d;
    const int T = p->T, CS = d->C_sum_total;
    memset(ci_out, 0, sizeof(float) * (size_t)T * (size_t)CS);
    const vpd_decomp_config *cfg = d->cfg;
    for (int i = 0; i < p->n_free; i++) {
        const int32_t e = p->idx[i];
        /* element e → layer k, position t, c */
        int k = d->L - 1;
        while (k > 0 && (size_t)e < (size_t)T * (size_t)d->layers[k].c_off) k--;
        const int C = d->layers[k].C;
        const int32_t rel = e - (int32_t)((size_t)T * (size_t)d->layers[k].c_off);
        const int t = rel / C, c = rel % C;
        real g;
        vpd_sigmoid_forward(cfg->sigmoid_lower, &g, &p->val[i], 1);
        ci_out[(size_t)t * CS + (size_t)d->layers[k].c_off_total + d->layers[k].c0 + c] = (float)g;
    }
}

vpd_status vpd_prompt_ci_create(vpd_prompt_ci **out, vpd_decomp *d, const int32_t *tokens, int t_star, int target_token,
                                const vpd_prompt_ci_opts *o) {
    *out = NULL;
    if (d->target->cfg.kind != VPD_MODEL_LLAMA)
        return vpd_error(VPD_ERR_ARG, "prompt-ci: the target is a toy model (%s); a prompt needs a language model",
                         vpd_model_kind_name(d->target->cfg.kind));
    if (d->batch.B != 1)
        return vpd_error(VPD_ERR_ARG, "prompt-ci: the decomposition must hold one example, it holds %d", d->batch.B);
    if (d->grid.cp_size != 1)
        return vpd_error(VPD_ERR_ARG, "prompt-ci: needs every subcomponent on this rank (component_parallel 1)");
    const int T = d->batch.S, V = d->target->cfg.vocab_size;
    if (t_star < 0 || t_star >= T)
        return vpd_error(VPD_ERR_ARG, "prompt-ci: position %d outside the prompt's %d tokens (0..%d)", t_star, T, T - 1);
    if (target_token < 0 || target_token >= V)
        return vpd_error(VPD_ERR_ARG, "prompt-ci: target token %d outside the vocabulary (0..%d)", target_token, V - 1);
    for (int t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= V)
            return vpd_error(VPD_ERR_ARG, "prompt-ci: prompt token %d at position %d outside the vocabulary (0..%d)",
                             (int)tokens[t], t, V - 1);
    if (!(o->steps >= 0 && o->lr > 0 && o->pnorm > 0 && o->imp_coeff >= 0 && o->adv_coeff >= 0 && o->pgd_steps >= 0 &&
          o->pgd_eval_steps >= 0))
        return vpd_error(VPD_ERR_ARG, "prompt-ci: options out of range (steps >= 0, lr > 0, pnorm > 0, coefficients "
                                      ">= 0, PGD steps >= 0)");
    const size_t nz = (size_t)d->C_sum * (size_t)T;
    if (nz > (size_t)INT32_MAX)
        return vpd_error(VPD_ERR_ARG, "prompt-ci: %d positions x %d subcomponents is too many (limit 2^31)", T, d->C_sum);
    vpd_prompt_ci *p = calloc(1, sizeof *p);
    if (!p) return vpd_error(VPD_ERR_MEM, "prompt-ci state");
    p->d = d;
    p->o = *o;
    if (p->o.seed == 0) p->o.seed = d->cfg->seed;
    p->T = T;
    p->t_star = t_star;
    p->target = target_token;
    p->nz = nz;
    p->tok = vpd_malloc(sizeof(int32_t) * (size_t)T, "prompt tokens");
    p->g = vpd_malloc(sizeof(real) * (4 * nz + (size_t)d->L * T), "prompt-ci buffers");
    p->spec = vpd_calloc(sizeof(vpd_pass_layer) * (size_t)d->L, "prompt-ci pass spec");
    if (!p->tok || !p->g || !p->spec) {
        vpd_prompt_ci_free(p);
        return VPD_ERR_MEM;
    }
    p->r = p->g + nz;
    p->m = p->r + nz;
    p->dm = p->m + nz;
    p->rdelta = p->dm + nz;
    memcpy(p->tok, tokens, sizeof(int32_t) * (size_t)T);
    d->batch.input.B = 1;
    d->batch.input.S = T;
    d->batch.input.tokens = p->tok;
    d->batch.input.x = NULL;
    d->batch.tok_in = p->tok;
    /* the target and the trained CI function on the prompt */
    vpd_decomp_refresh(d);
    vpd_decomp_target_forward(d);
    vpd_status s = vpd_decomp_ci_forward(d);
    if (s != VPD_OK) {
        vpd_prompt_ci_free(p);
        return vpd_error_context(s, "prompt-ci: CI function on the prompt");
    }
    int n = 0;
    for (size_t e = 0; e < nz; e++) n += d->act.g_lower[e] > 0;
    p->n_free = n;
    const size_t nf = n > 0 ? (size_t)n : 1;
    p->idx = vpd_malloc(sizeof(int32_t) * nf, "prompt-ci alive index");
    p->val = vpd_malloc(sizeof(real) * 8 * nf, "prompt-ci free values");
    if (!p->idx || !p->val) {
        vpd_prompt_ci_free(p);
        return VPD_ERR_MEM;
    }
    p->grad = p->val + nf;
    p->adam_m = p->grad + nf;
    p->adam_v = p->adam_m + nf;
    p->cg = p->adam_v + nf;
    p->cgu = p->cg + nf;
    p->cdg = p->cgu + nf;
    p->cdgu = p->cdg + nf;
    n = 0;
    for (size_t e = 0; e < nz; e++)
        if (d->act.g_lower[e] > 0) {
            p->idx[n] = (int32_t)e;
            p->val[n] = d->act.z[e]; /* warm start: the CI function's pre-sigmoid value */
            n++;
        }
    *out = p;
    return VPD_OK;
}

vpd_status vpd_prompt_ci_optimise(vpd_run *r, const int32_t *tokens, int T, int t_star, int target_token,
                                  const vpd_prompt_ci_opts *o, float *ci_out, vpd_prompt_ci_probs *pruned,
                                  vpd_prompt_ci_probs *unpruned) {
    vpd_model *target = &r->job.target;
    if (target->cfg.kind != VPD_MODEL_LLAMA)
        return vpd_error(VPD_ERR_ARG, "prompt-ci: run %s decomposes a toy model (%s); a prompt needs a language model",
                         r->dir, vpd_model_kind_name(target->cfg.kind));
    const int S_max = r->d->batch.S;
    if (T < 1 || T > S_max)
        return vpd_error(VPD_ERR_ARG, "prompt-ci: the prompt has %d tokens; the run takes 1..%d (its max_seq_len)", T,
                         S_max);
    vpd_decomp *d = NULL;
    VPD_TRY(vpd_decomp_create_local(&d, r->d->cfg, target, 1, T));
    /* the trained parameters of the run (same config, one process: identical layouts) */
    VPD_ASSERT(d->params.n_comp_params == r->d->params.n_comp_params &&
                   d->params.ci->n_params == r->d->params.ci->n_params,
               "prompt-ci: parameter layouts differ");
    memcpy(d->params.comp_params, r->d->params.comp_params, sizeof(real) * d->params.n_comp_params);
    memcpy(d->params.ci->params, r->d->params.ci->params, sizeof(real) * d->params.ci->n_params);
    d->step = r->d->step;
    vpd_prompt_ci *p = NULL;
    const double t0 = vpd_wtime();
    vpd_status s = vpd_prompt_ci_create(&p, d, tokens, t_star, target_token, o);
    if (s == VPD_OK) {
        const double t1 = vpd_wtime();
        vpd_prompt_ci_probs un;
        vpd_prompt_ci_measure(p, 0, &un);
        if (unpruned) *unpruned = un;
        const double t2 = vpd_wtime();
        vpd_prompt_ci_run(p);
        const double t3 = vpd_wtime();
        vpd_prompt_ci_probs pr;
        vpd_prompt_ci_measure(p, 0, &pr);
        if (pruned) *pruned = pr;
        if (ci_out) vpd_prompt_ci_export(p, ci_out);
        /* where the time goes: a step is 2 + pgd_steps masked passes (forward + backward) of the
         * whole prompt; each P(target) measurement 2 + eval samples + PGD eval steps passes */
        const int meas = 2 + (o->n_eval_samples > 0 ? o->n_eval_samples : 1) + o->pgd_eval_steps;
        vpd_info("prompt-ci: %d positions: CI %.2f s; P(target) of the unpruned graph %.2f s (%d passes); %d steps "
                 "%.2f s (%d passes each, %.3f s per step); P(target) of the pruned graph %.2f s",
                 T, t1 - t0, t2 - t1, meas, o->steps, t3 - t2, 2 + o->pgd_steps,
                 o->steps > 0 ? (t3 - t2) / o->steps : 0.0, vpd_wtime() - t3);
    }
    vpd_prompt_ci_free(p);
    vpd_decomp_free(d);
    return s;
}
