/* The training loop of VPD (VPD_METHOD.md §5; spd spd/run_spd.py `optimize`), one banner per
 * phase in the order of the method. The loop runs step = 0 … steps (steps + 1 iterations);
 * the last does everything but the clip and the update, so there are exactly `steps`
 * updates. Data, masks and sources come from the counter-based RNG indexed by global
 * coordinates, so a run's numbers do not depend on how many ranks compute it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vpd/data.h"
#include "vpd/decomp.h"
#include "vpd/loss_table.h"
#include "vpd/runfile.h"
#include "vpd/trainer.h"

vpd_status vpd_trainer_init(vpd_trainer *t, vpd_decomp *d) {
    memset(t, 0, sizeof *t);
    t->d = d;
    const vpd_decomp_config *cfg = d->cfg;
    const vpd_model_config *mc = &d->target->cfg;
    if (vpd_model_is_lm(mc->kind)) {
        t->lm = true;
        if (!cfg->train_tokens[0])
            return vpd_error(VPD_ERR_CONFIG, "a LlamaSimpleMLP target needs token data: set data.train (a uint16/uint32 token file)");
        int width = 2;
        if (mc->vocab_size > 65535) width = 4;
        VPD_TRY(vpd_tokens_open(&t->tokens, cfg->train_tokens, width, mc->vocab_size));
        if (cfg->eval_tokens[0]) {
            VPD_TRY(vpd_tokens_open(&t->eval_tokens, cfg->eval_tokens, width, mc->vocab_size));
            t->have_eval_tokens = true;
        }
        t->tok_targets = malloc(sizeof(int32_t) * (size_t)d->batch.N);
        d->batch.tok_in = malloc(sizeof(int32_t) * (size_t)d->batch.N);
        if (!t->tok_targets || !d->batch.tok_in) return vpd_error(VPD_ERR_MEM, "token batch");
        d->batch.input.tokens = d->batch.tok_in;
    } else {
        vpd_data_gen gen;
        int n_active = 0;
        VPD_TRY(vpd_data_gen_parse(cfg->data_generation_type, "task_config.data_generation_type", &gen, &n_active));
        VPD_TRY(vpd_toy_data_init(&t->toy, mc->n_features, gen, n_active, cfg->feature_probability, cfg->seed));
        if (mc->kind == VPD_MODEL_RESID_MLP) t->toy.value_min = -1.0; /* spd ResidMLP data: U(-1, 1) */
        d->batch.x_batch = vpd_malloc(sizeof(real) * (size_t)d->batch.B * mc->n_features, "input batch");
        t->labels = vpd_malloc(sizeof(real) * (size_t)d->batch.B * mc->n_features, "label batch");
        if (!d->batch.x_batch || !t->labels) return VPD_ERR_MEM;
        d->batch.input.x = d->batch.x_batch;
    }
    /* AdamW, weight decay fixed at 0 (spd: optim.AdamW(..., weight_decay=0)) */
    t->adam_buf = vpd_calloc(sizeof(real) * 2 * (d->params.n_comp_params + d->params.ci->n_params), "AdamW moments");
    if (!t->adam_buf) return VPD_ERR_MEM;
    vpd_adamw_init(&d->opt.adam_comp, t->adam_buf, t->adam_buf + d->params.n_comp_params, d->params.n_comp_params, 0.0);
    real *ci_m = t->adam_buf + 2 * d->params.n_comp_params;
    vpd_adamw_init(&d->opt.adam_ci, ci_m, ci_m + d->params.ci->n_params, d->params.ci->n_params, 0.0);
    return VPD_OK;
}

void vpd_trainer_free(vpd_trainer *t) {
    if (t->lm) vpd_tokens_close(&t->tokens);
    if (t->have_eval_tokens) vpd_tokens_close(&t->eval_tokens);
    else vpd_toy_data_free(&t->toy);
    vpd_free(t->adam_buf);
    vpd_free(t->labels);
    free(t->tok_targets);
    if (t->d) {
        vpd_free(t->d->batch.x_batch);
        free(t->d->batch.tok_in);
        t->d->batch.x_batch = NULL;
        t->d->batch.tok_in = NULL;
    }
}

vpd_status vpd_trainer_load_batch(vpd_trainer *t, uint32_t stream, uint64_t index) {
    vpd_decomp *d = t->d;
    if (t->lm) /* the eval stream reads the held-out file when there is one */
        return vpd_tokens_batch(stream == VPD_DATA_EVAL && t->have_eval_tokens ? &t->eval_tokens : &t->tokens,
                                d->cfg->seed, stream, index, d->batch.example0, d->batch.B, d->batch.S, d->batch.tok_in, t->tok_targets);
    vpd_toy_batch(&t->toy, stream, index, d->batch.example0, d->batch.B, d->batch.x_batch, t->labels);
    return VPD_OK;
}


/* L0 per layer: mean over rows of #{c : g_c > thr} (ci.h vpd_ci_count_l0), averaged over replicas */
static void layer_l0(const vpd_decomp *d, double thr, double *out) {
    for (int k = 0; k < d->L; k++) {
        double cnt = 0;
        vpd_ci_count_l0(d->act.g_lower + (size_t)d->batch.N * d->layers[k].c_off, (size_t)d->batch.N, d->layers[k].C, thr, &cnt);
        out[k] = cnt / d->batch.N;
    }
}

/* The step's loss values and L0 over component blocks and replicas: each loss by its row of
 * the loss table (over_blocks, over_replicas), L0 summed over blocks and averaged over
 * replicas (one message). Returns Σ coeff·value of the reduced values. */
static double reduce_metrics(vpd_decomp *d, vpd_step_metrics *sm) {
    const vpd_decomp_config *cfg = d->cfg;
    if (d->grid.cp_size > 1) {
        for (int i = 0; i < cfg->n_losses; i++) {
            const vpd_loss_reduce r = vpd_loss_def_of(cfg->losses[i].kind)->over_blocks;
            if (r == VPD_REDUCE_SUM || r == VPD_REDUCE_MEAN) vpd_sum_double(&sm->losses[i], 1, d->grid.cp_comm);
            if (r == VPD_REDUCE_MEAN) sm->losses[i] /= d->grid.cp_size;
        }
        vpd_sum_double(sm->l0, (size_t)d->L, d->grid.cp_comm);
        vpd_sum_double(sm->l0_thr, (size_t)d->L, d->grid.cp_comm);
    }
    double buf[2 * VPD_MAX_LOSSES + 4 * VPD_MAX_MODULE_PATTERNS * 4];
    int n = 0;
    for (int i = 0; i < cfg->n_losses; i++) buf[n++] = sm->losses[i];
    for (int k = 0; k < d->L; k++) buf[n++] = sm->l0[k];
    for (int k = 0; k < d->L; k++) buf[n++] = sm->l0_thr[k];
    if (d->grid.dp_size > 1) {
        vpd_sum_double(buf, (size_t)n, d->grid.dp_comm);
        for (int j = 0; j < n; j++) {
            const bool sum = j < cfg->n_losses && vpd_loss_def_of(cfg->losses[j].kind)->over_replicas == VPD_REDUCE_SUM;
            if (!sum) buf[j] /= d->grid.dp_size;
        }
    }
    n = 0;
    double total = 0;
    for (int i = 0; i < cfg->n_losses; i++) {
        const double v = buf[n++];
        if (vpd_loss_def_of(cfg->losses[i].kind)->over_replicas != VPD_REDUCE_SAME) sm->losses[i] = v;
        total += cfg->losses[i].coeff * sm->losses[i];
    }
    for (int k = 0; k < d->L; k++) sm->l0[k] = buf[n++];
    for (int k = 0; k < d->L; k++) sm->l0_thr[k] = buf[n++];
    return total;
}

/* Faithfulness warmup (§1): AdamW on U, V only, minimising the faithfulness loss. */
vpd_status vpd_faithfulness_warmup(vpd_decomp *d) {
    const vpd_decomp_config *cfg = d->cfg;
    if (cfg->faithfulness_warmup_steps <= 0) return VPD_OK;
    real *mv = vpd_calloc(sizeof(real) * 2 * d->params.n_comp_params, "faithfulness warmup moments");
    if (!mv) return VPD_ERR_MEM;
    vpd_adamw a;
    vpd_adamw_init(&a, mv, mv + d->params.n_comp_params, d->params.n_comp_params, cfg->faithfulness_warmup_weight_decay);
    vpd_loss_cfg lc;
    memset(&lc, 0, sizeof lc);
    double first = 0, last = 0, numel = 0;
    for (int k = 0; k < d->L; k++) numel += (double)d->layers[k].numel_W;
    for (int s = 0; s < cfg->faithfulness_warmup_steps; s++) {
        vpd_decomp_zero_grads(d, true);
        double sum = 0;
        for (int k = 0; k < d->L; k++) {
            sum += vpd_faithfulness_forward(&d->layers[k].comp);
            vpd_faithfulness_backward(d->layers[k].dV, d->layers[k].dU, &d->layers[k].comp, (real)(1.0 / numel));
        }
        if (s == 0) first = sum / numel;
        last = sum / numel;
        vpd_decomp_fold_tied_grads(d);
        vpd_dp_mean(d->params.comp_grads, d->params.n_comp_params, d->grid.dp_comm);
        vpd_adamw_step(&a, d->params.comp_params, d->params.comp_grads, cfg->faithfulness_warmup_lr);
        vpd_decomp_refresh(d);
    }
    vpd_free(mv);
    vpd_info("faithfulness warmup: %d steps, loss %.3e -> %.3e", cfg->faithfulness_warmup_steps, first, last);
    return VPD_OK;
}

/* test hooks (tests/hpc/nonfinite.sh): the step of an injected NaN, -1 = none */
static int test_step(const char *name, int *cache) {
    if (*cache == -2) {
        const char *e = getenv(name);
        *cache = e && e[0] ? atoi(e) : -1;
    }
    return *cache;
}
static int test_nan_grad_step(void) {
    static int v = -2;
    return test_step("VPD_TEST_NAN_GRAD_STEP", &v);
}
static int test_nan_param_step(void) {
    static int v = -2;
    return test_step("VPD_TEST_NAN_PARAM_STEP", &v);
}

const char *const vpd_step_phase_names[VPD_PHASE_N] = {
    "target forward", "CI forward", "PPGD warmup passes", "losses (masked passes)", "CI backward",
    "gradient reduce", "PPGD ascent", "metrics", "clip + AdamW + deltas"};

/* closes the phase that started at *t (wall seconds) and starts the next */
static void phase_end(vpd_step_metrics *sm, vpd_step_phase p, double *t) {
    const double now = vpd_wtime();
    sm->phase_s[p] += now - *t;
    *t = now;
}

vpd_status vpd_trainer_step(vpd_trainer *t, vpd_step_metrics *sm) {
    vpd_decomp *d = t->d;
    const vpd_decomp_config *cfg = d->cfg;
    const int step = d->step;
    double t0 = vpd_wtime(), tp = t0;
    const double comm0 = vpd_comm_seconds(), loss0 = vpd_output_loss_seconds();
    memset(sm, 0, sizeof *sm);
    sm->step = step;

    /* --- 1. schedules --- */
    sm->lr_components = vpd_schedule_value(&cfg->lr_components, step, cfg->steps);
    sm->lr_ci = vpd_schedule_value(&cfg->lr_ci, step, cfg->steps);
    for (int i = 0; i < cfg->n_losses; i++)
        if (d->loss.ppgd[i]) vpd_ppgd_set_lr(d->loss.ppgd[i], step, cfg->steps);

    /* --- 2. weight deltas (kept current by vpd_decomp_refresh after every update) --- */
    vpd_decomp_zero_grads(d, true);

    /* --- 3. target forward on the batch, caching layer inputs --- */
    VPD_TRY(vpd_trainer_load_batch(t, 0, (uint64_t)step));
    vpd_decomp_target_forward(d);
    phase_end(sm, VPD_PHASE_TARGET, &tp);

    /* --- 4. causal importances --- */
    VPD_TRY(vpd_decomp_ci_forward(d));
    phase_end(sm, VPD_PHASE_CI_FWD, &tp);

    /* --- 5. persistent-PGD warmup ascent --- */
    for (int i = 0; i < cfg->n_losses; i++)
        if (d->loss.ppgd[i]) vpd_ppgd_warmup(d, d->loss.ppgd[i], i);
    phase_end(sm, VPD_PHASE_PPGD_WARMUP, &tp);

    /* --- 6–7. every loss with its coefficient (PPGD source gradients from the same pass) --- */
    double total = 0;
    for (int i = 0; i < cfg->n_losses; i++) {
        sm->losses[i] = vpd_loss_evaluate(d, i, true);
        total += cfg->losses[i].coeff * sm->losses[i];
    }
    phase_end(sm, VPD_PHASE_LOSSES, &tp);

    /* --- 8. backward into the CI function; gradients averaged over replicas --- */
    VPD_TRY(vpd_decomp_ci_backward(d));
    vpd_decomp_fold_tied_grads(d);
    phase_end(sm, VPD_PHASE_CI_BWD, &tp);
    /* test hook: a NaN in rank 0's first component gradient at step $VPD_TEST_NAN_GRAD_STEP
     * (before the replica mean, as a NaN from the backward pass would be) */
    if (test_nan_grad_step() == step && vpd_world_rank() == 0 && d->params.n_comp_params) d->params.comp_grads[0] = (real)NAN;
    vpd_dp_mean(d->params.comp_grads, d->params.n_comp_params, d->grid.dp_comm);
    vpd_sum_real(d->params.ci->grads, d->params.ci->n_params, d->grid.cp_comm); /* each component block's share of the CI gradient */
    vpd_dp_mean(d->params.ci->grads, d->params.ci->n_params, d->grid.dp_comm);
    phase_end(sm, VPD_PHASE_GRAD_REDUCE, &tp);

    /* --- 9. PPGD ascent --- */
    for (int i = 0; i < cfg->n_losses; i++)
        if (d->loss.ppgd[i]) vpd_ppgd_step(d, d->loss.ppgd[i]);
    phase_end(sm, VPD_PHASE_PPGD_STEP, &tp);

    /* --- 10. metrics (gradient norms before clipping), reduced over replicas --- */
    vpd_grad_range rc = {d->params.comp_grads, d->params.n_comp_params}, rf = {d->params.ci->grads, d->params.ci->n_params};
    double comp_sq = vpd_grad_sumsq(&rc, 1); /* over all component blocks of the group */
    vpd_sum_double(&comp_sq, 1, d->grid.cp_comm);
    sm->grad_norm_components = sqrt(comp_sq);
    sm->grad_norm_ci = vpd_grad_norm(&rf, 1);
    layer_l0(d, 0.0, sm->l0);
    layer_l0(d, cfg->ci_alive_threshold, sm->l0_thr);
    total = reduce_metrics(d, sm);
    sm->total = total;
    sm->im_p = d->loss.im_p_current;
    phase_end(sm, VPD_PHASE_METRICS, &tp);
    for (int i = 0; i < cfg->n_losses; i++)
        if (!isfinite(sm->losses[i]))
            return vpd_error(VPD_ERR_VALUE, "step %d: loss %s is %g (non-finite); lower the learning rate or check the target",
                             step, vpd_loss_classname(cfg->losses[i].kind), sm->losses[i]);
    /* a non-finite gradient makes its (already reduced, replicated) norm non-finite: no extra
     * pass; only then look for the tensor (each rank its own blocks; the lowest rank that
     * holds one names it) */
    if (!isfinite(sm->grad_norm_components) || !isfinite(sm->grad_norm_ci)) {
        const MPI_Comm grid = d->grid.cp_size > 1 ? vpd_comm_world() : d->grid.dp_comm;
        const int me = vpd_comm_rank(grid);
        char where[768];
        vpd_decomp_find_nonfinite_grad(d, where, sizeof where);
        const bool mine = strcmp(where, "a gradient") != 0;
        const int first = vpd_min_int(mine ? me : 1 << 30, grid);
        vpd_status s = VPD_OK;
        if (first == 1 << 30)
            s = vpd_error(VPD_ERR_VALUE, "step %d: non-finite gradient norm (components %g, CI function %g)", step,
                          sm->grad_norm_components, sm->grad_norm_ci);
        else if (mine)
            s = vpd_error(VPD_ERR_VALUE,
                          "step %d: non-finite gradient with finite losses: %s (gradient norms: components %g, CI "
                          "function %g); nothing was applied or checkpointed: lower the learning rate or set gradient "
                          "clipping, then resume from the last checkpoint",
                          step, where, sm->grad_norm_components, sm->grad_norm_ci);
        return vpd_all_agree(s, grid);
    }

    /* --- 11. clip and update (not on the last iteration) --- */
    if (step != cfg->steps) {
        if (cfg->grad_clip_components > 0)
            vpd_grad_scale(&rc, 1, vpd_clip_coef(sm->grad_norm_components, cfg->grad_clip_components));
        if (cfg->grad_clip_ci > 0) vpd_clip_grad_norm(&rf, 1, cfg->grad_clip_ci);
        vpd_adamw_step(&d->opt.adam_comp, d->params.comp_params, d->params.comp_grads, sm->lr_components);
        vpd_adamw_step(&d->opt.adam_ci, d->params.ci->params, d->params.ci->grads, sm->lr_ci);
        /* test hook: a NaN parameter after the update of step $VPD_TEST_NAN_PARAM_STEP (rank 0) */
        if (test_nan_param_step() == step && vpd_world_rank() == 0 && d->params.n_comp_params) d->params.comp_params[0] = (real)NAN;
        vpd_decomp_refresh(d);
    }
    phase_end(sm, VPD_PHASE_UPDATE, &tp);
    sm->seconds = vpd_wtime() - t0;
    sm->comm_s = vpd_comm_seconds() - comm0;
    sm->out_loss_s = vpd_output_loss_seconds() - loss0;
    d->step++;
    return VPD_OK;
}
