/* Readouts of a decomposition (VPD_METHOD.md §6), with the paper's definitions:
 *   L0: mean number of subcomponents per position with g > 0 (strict), per layer, per
 *       block (h.N / layers.N) and in total; also at ci_alive_threshold for spd parity.
 *   alive: mean g over the evaluation data > 1e-6. Activation density: fraction of
 *       positions with g_c > ci_alive_threshold. CI histograms over [0, 1].
 *   Output loss (KL for LMs, MSE for toy models) and, for LMs, next-token CE of the model
 *       with (a) CI masks, (b) rounded masks 1[g > τ] for τ = 0, 0.1, 0.5, (c) stochastic
 *       masks g + (1−g)·U(0,1), (d) m = 1, (e) m ~ U(0,1), (f) m = 0 — all WITHOUT the Δ
 *       term, as the paper's table (spd adds Δ to the stochastic row).
 *   Adversarial: PGD from random sources, step 0.1, one source shared across the batch,
 *       at the requested step counts (the paper: 20; 20…320 for the curve). Unlike the rows
 *       above this follows spd's PGDReconLoss and includes Δ when use_delta_component.
 *   Pretraining compute recovered (LMs): the fraction of the target's training (by examples
 *       seen, from its training.jsonl) at which its validation CE equals the CI-masked CE. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpd/analysis.h"
#include "vpd/io.h"
#include "vpd/nn.h"

static real *blk(const vpd_decomp *d, real *buf, int k) { return buf + (size_t)d->batch.N * (size_t)d->layers[k].c_off; }

/* one forward with masks `mask` ([ΣC·N] blocks; NULL = ones) in every layer, no Δ */
static double masked_eval(vpd_run *r, const real *mask, double *ce) {
    vpd_decomp *d = r->d;
    vpd_pass_layer spec[VPD_MAX_MODULE_PATTERNS * 4];
    memset(spec, 0, sizeof spec);
    for (int k = 0; k < d->L; k++) {
        spec[k].replaced = true;
        spec[k].m = mask ? mask + (size_t)d->batch.N * d->layers[k].c_off : NULL;
    }
    vpd_pass_opts o = {.dscale = 0.0};
    double D = vpd_masked_pass(d, spec, &o, NULL);
    *ce = NAN;
    if (r->job.trainer.lm && d->pass.q_probs)
        *ce = cross_entropy_forward(d->pass.q_probs, d->pass.out, r->job.trainer.tok_targets, d->batch.N, vpd_model_out_dim(d->target));
    return D;
}

static int block_of(vpd_eval_result *res, const char *name) {
    char b[32];
    const char *dot = strchr(name, '.');
    const char *dot2 = dot ? strchr(dot + 1, '.') : NULL;
    size_t n = dot2 ? (size_t)(dot2 - name) : strlen(name);
    if (n >= sizeof b) n = sizeof b - 1;
    memcpy(b, name, n);
    b[n] = '\0';
    for (int i = 0; i < res->n_blocks; i++)
        if (!strcmp(res->block_name[i], b)) return i;
    if (res->n_blocks >= 64) return 63;
    snprintf(res->block_name[res->n_blocks], sizeof res->block_name[0], "%s", b);
    return res->n_blocks++;
}

static double compute_recovered(const vpd_run *r, double ce) {
    char path[1200];
    snprintf(path, sizeof path, "%s/training.jsonl", r->job.cfg.target_dir);
    FILE *f = fopen(path, "r");
    if (!f || !isfinite(ce)) {
        if (f) fclose(f);
        return -1;
    }
    char line[4096];
    double prev_x = -1, prev_l = 0, last_x = 0, hit = -1;
    while (fgets(line, sizeof line, f)) {
        /* LM targets log "val_loss" and "tokens"; toy targets "eval_loss" and "examples" */
        const char *e = strstr(line, "\"val_loss\":"), *x = strstr(line, "\"tokens\":");
        if (!e) e = strstr(line, "\"eval_loss\":");
        if (!x) x = strstr(line, "\"examples\":");
        if (!e || !x) continue;
        double l = atof(strchr(e + 1, ':') + 1), ex = atof(strchr(x + 1, ':') + 1);
        last_x = ex;
        if (hit < 0 && l <= ce) {
            /* linear interpolation between the last point above and this one */
            hit = prev_x < 0 || prev_l == l ? ex : prev_x + (ex - prev_x) * (prev_l - ce) / (prev_l - l);
        }
        prev_x = ex;
        prev_l = l;
    }
    fclose(f);
    if (last_x <= 0) return -1;
    return hit < 0 ? 1.0 : hit / last_x; /* never reached: the masked CE is below the whole curve */
}

vpd_status vpd_evaluate(vpd_run *r, const vpd_eval_opts *o, vpd_eval_result *res) {
    vpd_decomp *d = r->d;
    const int L = d->L, N = d->batch.N, CS = d->C_sum;
    memset(res, 0, sizeof *res);
    res->threshold = r->job.cfg.ci_alive_threshold;
    res->l0 = calloc((size_t)L, sizeof(double));
    res->l0_thr = calloc((size_t)L, sizeof(double));
    res->alive = calloc((size_t)L, sizeof(int));
    res->mean_g = calloc((size_t)CS, sizeof(double));
    res->density = calloc((size_t)CS, sizeof(double));
    res->hist = calloc((size_t)L * VPD_EVAL_HIST_BINS, sizeof(int64_t));
    real *mask = vpd_malloc(sizeof(real) * (size_t)N * CS, "evaluation masks");
    if (!res->l0 || !res->l0_thr || !res->alive || !res->mean_g || !res->density || !res->hist || !mask)
        return vpd_error(VPD_ERR_MEM, "evaluation buffers");
    static const char *const row_names[] = {"target", "CI masks", "rounded g > 0", "rounded g > 0.1", "rounded g > 0.5",
                                            "stochastic", "unmasked (m = 1)", "random m ~ U(0,1)", "zero (m = 0)"};
    const int n_rows_tab = (int)(sizeof row_names / sizeof row_names[0]);
    res->n_table = n_rows_tab;
    for (int i = 0; i < n_rows_tab; i++) snprintf(res->table[i].name, sizeof res->table[i].name, "%s", row_names[i]);
    /* the adversarial readout runs as an extra PGDRecon loss appended to the config */
    int adv_index = -1;
    if (o->n_pgd > 0) {
        if (r->job.cfg.n_losses >= VPD_MAX_LOSSES) return vpd_error(VPD_ERR_CONFIG, "too many losses to add the PGD readout");
        adv_index = r->job.cfg.n_losses++;
        vpd_loss_cfg *lc = &r->job.cfg.losses[adv_index];
        memset(lc, 0, sizeof *lc);
        lc->kind = VPD_LOSS_PGD_RECON;
        lc->coeff = 1;
        lc->pgd_init = VPD_PGD_INIT_RANDOM;
        lc->step_size = o->pgd_step_size;
        lc->mask_scope = VPD_SCOPE_SHARED_ACROSS_BATCH;
        res->n_adv = o->n_pgd;
        res->adv_step_size = o->pgd_step_size;
    }
    const int V = vpd_model_out_dim(d->target);
    for (int bi = 0; bi < o->n_batches; bi++) {
        d->step = bi; /* names this batch's random draws */
        VPD_TRY(vpd_trainer_load_batch(&r->job.trainer, VPD_DATA_EVAL, (uint64_t)bi));
        vpd_decomp_target_forward(d);
        VPD_TRY(vpd_decomp_ci_forward(d));
        for (int k = 0; k < L; k++) {
            const int C = d->layers[k].C;
            const real *g = blk(d, d->act.g_lower, k);
            /* L0, L0 above the threshold and Σ g: ci.h's counting rule (shared with the trainer
             * and the summary); the per-component density and the histogram are eval's own */
            vpd_ci_count_l0(g, (size_t)N, C, 0.0, &res->l0[k]);
            vpd_ci_count_l0(g, (size_t)N, C, res->threshold, &res->l0_thr[k]);
            vpd_ci_sum_g(g, (size_t)N, C, res->mean_g + d->layers[k].c_off);
            for (int n = 0; n < N; n++)
                for (int c = 0; c < C; c++) {
                    double v = g[(size_t)n * C + c];
                    res->density[d->layers[k].c_off + c] += v > res->threshold;
                    int bin = (int)(v * VPD_EVAL_HIST_BINS);
                    bin = bin < 0 ? 0 : bin >= VPD_EVAL_HIST_BINS ? VPD_EVAL_HIST_BINS - 1 : bin;
                    res->hist[(size_t)k * VPD_EVAL_HIST_BINS + bin]++;
                }
        }
        double D, ce;
        /* target */
        res->table[0].D += 0;
        if (r->job.trainer.lm && d->pass.q_probs)
            res->table[0].ce += cross_entropy_forward(d->pass.q_probs, d->act.target_out, r->job.trainer.tok_targets, N, V);
        /* CI masks */
        D = masked_eval(r, d->act.g_lower, &ce);
        res->table[1].D += D; res->table[1].ce += ce;
        /* rounded */
        const double taus[3] = {0.0, 0.1, 0.5};
        for (int t = 0; t < 3; t++) {
            for (size_t i = 0; i < (size_t)N * CS; i++) mask[i] = d->act.g_lower[i] > taus[t] ? 1 : 0;
            D = masked_eval(r, mask, &ce);
            res->table[2 + t].D += D; res->table[2 + t].ce += ce;
        }
        /* stochastic: g + (1−g)·U(0,1), and random m ~ U(0,1) (sources from the RNG) */
        for (int k = 0; k < L; k++) {
            vpd_draw dr = vpd_decomp_draw(d, k, 60000);
            vpd_mask_source_draw(blk(d, d->pass.src, k), &dr, VPD_SAMPLING_CONTINUOUS);
        }
        vpd_mask_forward(mask, d->act.g_lower, d->pass.src, (size_t)N * CS);
        D = masked_eval(r, mask, &ce);
        res->table[5].D += D; res->table[5].ce += ce;
        D = masked_eval(r, NULL, &ce);
        res->table[6].D += D; res->table[6].ce += ce;
        for (int k = 0; k < L; k++) {
            vpd_draw dr = vpd_decomp_draw(d, k, 60001);
            vpd_mask_source_draw(blk(d, mask, k), &dr, VPD_SAMPLING_CONTINUOUS);
        }
        D = masked_eval(r, mask, &ce);
        res->table[7].D += D; res->table[7].ce += ce;
        memset(mask, 0, sizeof(real) * (size_t)N * CS);
        D = masked_eval(r, mask, &ce);
        res->table[8].D += D; res->table[8].ce += ce;
        /* adversarial */
        for (int a = 0; a < o->n_pgd; a++) {
            r->job.cfg.losses[adv_index].n_steps = o->pgd_steps[a];
            res->adv_steps[a] = o->pgd_steps[a];
            res->adv_D[a] += vpd_loss_evaluate(d, adv_index, false);
            double c2 = NAN;
            if (r->job.trainer.lm && d->pass.q_probs) c2 = cross_entropy_forward(d->pass.q_probs, d->pass.out, r->job.trainer.tok_targets, N, V);
            res->adv_ce[a] += c2;
        }
    }
    if (adv_index >= 0) r->job.cfg.n_losses--;
    d->step = r->run_step;
    vpd_free(mask);
    const double rows = (double)N * o->n_batches;
    res->n_batches = o->n_batches;
    res->n_rows = (int)rows;
    for (int i = 0; i < n_rows_tab; i++) {
        res->table[i].D /= o->n_batches;
        res->table[i].ce = r->job.trainer.lm ? res->table[i].ce / o->n_batches : NAN;
    }
    for (int a = 0; a < res->n_adv; a++) {
        res->adv_D[a] /= o->n_batches;
        res->adv_ce[a] = r->job.trainer.lm ? res->adv_ce[a] / o->n_batches : NAN;
    }
    for (int k = 0; k < L; k++) {
        res->l0[k] /= rows;
        res->l0_thr[k] /= rows;
        int b = block_of(res, d->layers[k].name);
        res->block_l0[b] += res->l0[k];
        for (int c = 0; c < d->layers[k].C; c++) {
            res->mean_g[d->layers[k].c_off + c] /= rows;
            res->density[d->layers[k].c_off + c] /= rows;
        }
        res->alive[k] = vpd_ci_count_alive(res->mean_g + d->layers[k].c_off, d->layers[k].C, NULL);
        res->block_alive[b] += res->alive[k];
    }
    res->compute_recovered = r->job.trainer.lm ? compute_recovered(r, res->table[1].ce) : -1;
    return VPD_OK;
}

void vpd_eval_result_free(vpd_eval_result *res) {
    free(res->l0);
    free(res->l0_thr);
    free(res->alive);
    free(res->mean_g);
    free(res->density);
    free(res->hist);
    memset(res, 0, sizeof *res);
}

void vpd_eval_print(const vpd_run *r, const vpd_eval_result *res, FILE *out) {
    const vpd_decomp *d = r->d;
    const bool lm = r->job.trainer.lm;
    fprintf(out, "evaluation of %s at step %d: %d batches, %d positions\n\n", r->dir, r->run_step, res->n_batches, res->n_rows);
    fprintf(out, "%-28s %6s %10s %12s %8s\n", "layer", "C", "L0 (g>0)", "L0 (g>thr)", "alive");
    double tl0 = 0, tl0t = 0;
    int ta = 0;
    for (int k = 0; k < d->L; k++) {
        fprintf(out, "%-28s %6d %10.3f %12.3f %8d\n", d->layers[k].name, d->layers[k].C_total, res->l0[k], res->l0_thr[k],
                res->alive[k]);
        tl0 += res->l0[k];
        tl0t += res->l0_thr[k];
        ta += res->alive[k];
    }
    fprintf(out, "%-28s %6d %10.3f %12.3f %8d   (L0 per %s; alive: mean g > 1e-6)\n", "total", d->C_sum_total, tl0, tl0t,
            ta, lm ? "token" : "example");
    if (res->n_blocks > 1 && res->n_blocks < d->L) {
        fprintf(out, "\n%-28s %10s %8s\n", "block", "L0", "alive");
        for (int b = 0; b < res->n_blocks; b++)
            fprintf(out, "%-28s %10.3f %8d\n", res->block_name[b], res->block_l0[b], res->block_alive[b]);
    }
    fprintf(out, "\n");
    const char *dname = r->job.cfg.output_loss == VPD_OUT_KL ? "KL(target || model)" : "MSE vs target";
    if (lm) fprintf(out, "%-22s %12s %20s\n", "masks (no delta)", "CE", dname);
    else fprintf(out, "%-22s %20s\n", "masks (no delta)", dname);
    for (int i = 0; i < res->n_table; i++) {
        if (i == 0 && !lm) continue;
        if (lm) fprintf(out, "%-22s %12.4f %20.6g\n", res->table[i].name, res->table[i].ce, i == 0 ? 0.0 : res->table[i].D);
        else fprintf(out, "%-22s %20.6g\n", res->table[i].name, res->table[i].D);
    }
    for (int a = 0; a < res->n_adv; a++) {
        char nm[64];
        snprintf(nm, sizeof nm, "adversarial, %d PGD", res->adv_steps[a]);
        if (lm) fprintf(out, "%-22s %12.4f %20.6g\n", nm, res->adv_ce[a], res->adv_D[a]);
        else fprintf(out, "%-22s %20.6g\n", nm, res->adv_D[a]);
    }
    if (res->n_adv) fprintf(out, "(adversarial: PGD from random sources, step size %g, one source shared across the batch%s)\n",
                            res->adv_step_size,
                            r->job.cfg.use_delta_component ? ", with the delta component as spd's PGDReconLoss" : "");
    if (res->compute_recovered >= 0)
        fprintf(out, "pretraining compute recovered (CI masks): %.1f%% of the target's training\n", 100 * res->compute_recovered);
}

vpd_status vpd_eval_write(const vpd_run *r, const vpd_eval_result *res) {
    vpd_h5 f;
    VPD_TRY(vpd_h5_open(&f, r->h5_path, true));
    const vpd_decomp *d = r->d;
    vpd_status s = VPD_OK;
#define W(x) do { if (s == VPD_OK) s = (x); } while (0)
    W(vpd_h5_set_attr_int(&f, "/eval", "step", r->run_step));
    W(vpd_h5_set_attr_int(&f, "/eval", "positions", res->n_rows));
    W(vpd_h5_set_attr_double(&f, "/eval", "density_threshold", res->threshold));
    W(vpd_h5_set_attr_str(&f, "/eval", "masks_note", "rows exclude the delta term (the paper's convention); adversarial follows spd's PGDReconLoss"));
    for (int k = 0; k < d->L && s == VPD_OK; k++) {
        const vpd_layer_state *ls = &d->layers[k];
        char p[256];
        snprintf(p, sizeof p, "/eval/layers/%s", ls->name);
        W(vpd_h5_set_attr_double(&f, p, "l0", res->l0[k]));
        W(vpd_h5_set_attr_double(&f, p, "l0_threshold", res->l0_thr[k]));
        W(vpd_h5_set_attr_int(&f, p, "alive", res->alive[k]));
        int64_t shc[1] = {ls->C}, shh[1] = {VPD_EVAL_HIST_BINS};
        real *tmp = vpd_malloc(sizeof(real) * (size_t)(ls->C > VPD_EVAL_HIST_BINS ? ls->C : VPD_EVAL_HIST_BINS), "eval write");
        for (int c = 0; c < ls->C; c++) tmp[c] = (real)res->mean_g[ls->c_off + c];
        snprintf(p, sizeof p, "/eval/layers/%s/mean_ci", ls->name);
        W(vpd_h5_write_real(&f, p, tmp, 1, shc));
        for (int c = 0; c < ls->C; c++) tmp[c] = (real)res->density[ls->c_off + c];
        snprintf(p, sizeof p, "/eval/layers/%s/activation_density", ls->name);
        W(vpd_h5_write_real(&f, p, tmp, 1, shc));
        snprintf(p, sizeof p, "/eval/layers/%s/ci_histogram", ls->name);
        W(vpd_h5_write_i64(&f, p, res->hist + (size_t)k * VPD_EVAL_HIST_BINS, 1, shh));
        vpd_free(tmp);
    }
    for (int i = 0; i < res->n_table && s == VPD_OK; i++) {
        char p[128];
        snprintf(p, sizeof p, "/eval/masks/%s", res->table[i].name);
        W(vpd_h5_set_attr_double(&f, p, "output_loss", res->table[i].D));
        if (isfinite(res->table[i].ce)) W(vpd_h5_set_attr_double(&f, p, "ce", res->table[i].ce));
    }
    for (int a = 0; a < res->n_adv && s == VPD_OK; a++) {
        char p[128];
        snprintf(p, sizeof p, "/eval/adversarial/pgd_%d", res->adv_steps[a]);
        W(vpd_h5_set_attr_double(&f, p, "output_loss", res->adv_D[a]));
        if (isfinite(res->adv_ce[a])) W(vpd_h5_set_attr_double(&f, p, "ce", res->adv_ce[a]));
    }
    if (res->compute_recovered >= 0) W(vpd_h5_set_attr_double(&f, "/eval", "pretraining_compute_recovered", res->compute_recovered));
#undef W
    vpd_status c = vpd_h5_close(&f);
    return s != VPD_OK ? s : c;
}
