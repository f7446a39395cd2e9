/* Finite-difference check (double precision) of the gradient of the TOTAL VPD loss with
 * every loss term enabled, w.r.t. U, V, every CI-function parameter and the persistent-PGD
 * sources; and of the PGD inner loop's source gradient (∂D/∂r, ∂D/∂r_Δ).
 *
 * Smoothness: the sigmoid is the logistic ("normal") so g is differentiable everywhere (the
 * leaky-hard sigmoid's hand-written backward is deliberately not its derivative; it has its
 * own test); PGD's final sources are piecewise constant in the parameters (sign steps), so
 * their dependence has zero derivative almost everywhere, as the analytic gradient assumes.
 * All draws come from the counter-based RNG at a fixed step, so every evaluation of the
 * loss sees the same masks. */
#include <mpi.h>
#include <string.h>

#include "testutil.h"
#include "vpd/decomp.h"
#include "vpd/trainer.h"

typedef struct {
    vpd_decomp *d;
    int n_losses;
} ctx_t;

/* total loss with all gradients accumulated (when backward) */
static double total_loss(vpd_decomp *d, bool backward) {
    vpd_decomp_zero_grads(d, true);
    vpd_decomp_refresh(d);
    vpd_decomp_target_forward(d);
    VPD_ASSERT(vpd_decomp_ci_forward(d) == VPD_OK, "ci forward: %s", vpd_last_error());
    double total = 0;
    for (int i = 0; i < d->cfg->n_losses; i++) total += d->cfg->losses[i].coeff * vpd_loss_evaluate(d, i, backward);
    if (backward) {
        VPD_ASSERT(vpd_decomp_ci_backward(d) == VPD_OK, "ci backward: %s", vpd_last_error());
        vpd_decomp_fold_tied_grads(d);
    }
    return total;
}

static double f_total(void *c) { return total_loss(((ctx_t *)c)->d, false); }

static vpd_loss_cfg loss(vpd_loss_kind k, double coeff) {
    vpd_loss_cfg l;
    memset(&l, 0, sizeof l);
    l.kind = k;
    l.coeff = coeff;
    l.routing = VPD_ROUTING_UNIFORM_K_SUBSET;
    return l;
}

static void add_all_losses(vpd_decomp_config *c) {
    int n = 0;
    c->losses[n++] = loss(VPD_LOSS_FAITHFULNESS, 3.0);
    vpd_loss_cfg im = loss(VPD_LOSS_IMPORTANCE_MINIMALITY, 0.3);
    im.pnorm = 2.0; im.beta = 0.5; im.eps = 1e-12;
    im.p_anneal_start_frac = 0.0; im.p_anneal_end_frac = 1.0; im.has_p_anneal_final_p = true; im.p_anneal_final_p = 1.5;
    c->losses[n++] = im;
    c->losses[n++] = loss(VPD_LOSS_STOCHASTIC_RECON, 1.0);
    c->losses[n++] = loss(VPD_LOSS_STOCHASTIC_RECON_LAYERWISE, 0.7);
    c->losses[n++] = loss(VPD_LOSS_STOCHASTIC_RECON_SUBSET, 0.9);
    c->losses[n++] = loss(VPD_LOSS_CI_MASKED_RECON, 0.5);
    vpd_loss_cfg cis = loss(VPD_LOSS_CI_MASKED_RECON_SUBSET, 0.6);
    cis.routing = VPD_ROUTING_STATIC_PROBABILITY; cis.routing_p = 0.5;
    c->losses[n++] = cis;
    c->losses[n++] = loss(VPD_LOSS_CI_MASKED_RECON_LAYERWISE, 0.4);
    c->losses[n++] = loss(VPD_LOSS_UNMASKED_RECON, 0.3);
    c->losses[n++] = loss(VPD_LOSS_STOCHASTIC_HIDDEN_ACTS_RECON, 0.2);
    vpd_loss_cfg pgd = loss(VPD_LOSS_PGD_RECON, 0.8);
    pgd.pgd_init = VPD_PGD_INIT_RANDOM; pgd.step_size = 0.1; pgd.n_steps = 2; pgd.mask_scope = VPD_SCOPE_SHARED_ACROSS_BATCH;
    c->losses[n++] = pgd;
    vpd_loss_cfg pgs = pgd;
    pgs.kind = VPD_LOSS_PGD_RECON_SUBSET; pgs.mask_scope = VPD_SCOPE_UNIQUE_PER_DATAPOINT;
    c->losses[n++] = pgs;
    /* not `ones`: with every source at 1 (and Δ) the masked model equals the target exactly,
     * so ∂D/∂r is rounding noise and its sign — hence the final sources — jumps under any
     * perturbation; the loss is then not differentiable in the FD sense */
    vpd_loss_cfg pgl = pgd;
    pgl.kind = VPD_LOSS_PGD_RECON_LAYERWISE; pgl.pgd_init = VPD_PGD_INIT_ZEROES; pgl.n_steps = 1;
    c->losses[n++] = pgl;
    vpd_loss_cfg pp = loss(VPD_LOSS_PPGD_RECON, 0.5);
    pp.ppgd_opt = VPD_PPGD_ADAM; pp.ppgd_lr = vpd_schedule_constant(0.01);
    pp.ppgd_beta1 = 0.5; pp.ppgd_beta2 = 0.99; pp.ppgd_eps = 1e-8; pp.ppgd_scope = VPD_PPGD_PER_BATCH_PER_POSITION;
    c->losses[n++] = pp;
    vpd_loss_cfg ps = loss(VPD_LOSS_PPGD_RECON_SUBSET, 0.6);
    ps.ppgd_opt = VPD_PPGD_SIGN; ps.ppgd_lr = vpd_schedule_constant(0.1); ps.ppgd_scope = VPD_PPGD_REPEAT_ACROSS_BATCH;
    ps.ppgd_n_sources = 2; ps.ppgd_sigmoid = true;
    c->losses[n++] = ps;
    c->n_losses = n;
}

static void check_decomp(const char *label, vpd_model *m, vpd_decomp_config *cfg, int B, int S, double tol) {
    fprintf(stderr, "%s\n", label);
    vpd_decomp *d = NULL;
    vpd_status s = vpd_decomp_create_local(&d, cfg, m, B, S);
    CHECK(s == VPD_OK, "%s: create: %s", label, vpd_last_error());
    if (s != VPD_OK) return;
    d->step = 3;
    /* inputs */
    real *x = NULL;
    int32_t *tok = NULL;
    if (m->cfg.kind == VPD_MODEL_LLAMA) {
        tok = malloc(sizeof(int32_t) * (size_t)B * S);
        for (int i = 0; i < B * S; i++) tok[i] = (int32_t)((i * 7 + 3) % m->cfg.vocab_size);
        d->batch.input.tokens = tok;
        d->batch.tok_in = tok;
    } else {
        x = malloc(sizeof(real) * (size_t)B * m->cfg.n_features);
        tu_fill(x, (size_t)B * m->cfg.n_features, 11, 1.0);
        d->batch.input.x = x;
    }
    /* perturb V, U so the components are not just their init (and PPGD sources away from clamps) */
    tu_fill(d->params.comp_params, d->params.n_comp_params, 5, 0.6);
    real *ci_p = d->params.ci->params;
    for (size_t i = 0; i < d->params.ci->n_params; i++) ci_p[i] += (real)(0.2 * ((double)((i * 37) % 17) / 17.0 - 0.5));
    ctx_t c = {d, cfg->n_losses};
    total_loss(d, true);
    real *g_comp = malloc(sizeof(real) * d->params.n_comp_params), *g_ci = malloc(sizeof(real) * d->params.ci->n_params);
    memcpy(g_comp, d->params.comp_grads, sizeof(real) * d->params.n_comp_params);
    memcpy(g_ci, d->params.ci->grads, sizeof(real) * d->params.ci->n_params);
    double e1 = tu_fd_check(f_total, &c, d->params.comp_params, g_comp, d->params.n_comp_params, 1e-6, "total loss wrt U, V");
    double e2 = tu_fd_check(f_total, &c, d->params.ci->params, g_ci, d->params.ci->n_params, 1e-6, "total loss wrt CI params");
    CHECK(e1 < tol, "%s: U,V rel err %g", label, e1);
    CHECK(e2 < tol, "%s: CI rel err %g", label, e2);
    /* persistent PGD sources: ∂total/∂s = coeff · (source gradient of D_ppgd) */
    for (int i = 0; i < cfg->n_losses; i++) {
        if (!d->loss.ppgd[i]) continue;
        total_loss(d, true);
        size_t n = vpd_ppgd_numel(d->loss.ppgd[i]);
        real *g = malloc(sizeof(real) * n);
        for (size_t j = 0; j < n; j++) g[j] = (real)(cfg->losses[i].coeff * vpd_ppgd_source_grad(d->loss.ppgd[i])[j]);
        /* keep non-sigmoid sources inside (0, 1): the clamp is applied by the step, not the loss */
        double e = tu_fd_check(f_total, &c, vpd_ppgd_sources(d->loss.ppgd[i]), g, n, 1e-6, vpd_loss_classname(cfg->losses[i].kind));
        CHECK(e < tol, "%s: PPGD %s source rel err %g", label, vpd_loss_classname(cfg->losses[i].kind), e);
        free(g);
    }
    free(g_comp);
    free(g_ci);
    free(x);
    free(tok);
    d->batch.tok_in = NULL;
    vpd_decomp_free(d);
}

/* The PGD inner loop's source gradient: ∂D/∂r and ∂D/∂r_Δ from vpd_recon_pass. */
typedef struct { vpd_decomp *d; } pctx;
static double f_pass(void *c) {
    vpd_decomp *d = ((pctx *)c)->d;
    return vpd_recon_pass(d, &(vpd_pass_spec){.masks = VPD_MASKS_SOURCES, .dscale = 0.0});
}

static void check_pgd_source_grad(vpd_model *m, vpd_decomp_config *cfg, int B) {
    vpd_decomp *d = NULL;
    CHECK(vpd_decomp_create_local(&d, cfg, m, B, 1) == VPD_OK, "create: %s", vpd_last_error());
    if (!d) return;
    real *x = malloc(sizeof(real) * (size_t)B * m->cfg.n_features);
    tu_fill(x, (size_t)B * m->cfg.n_features, 21, 1.0);
    d->batch.input.x = x;
    tu_fill(d->params.comp_params, d->params.n_comp_params, 6, 0.6);
    vpd_decomp_refresh(d);
    vpd_decomp_target_forward(d);
    CHECK(vpd_decomp_ci_forward(d) == VPD_OK, "ci forward");
    size_t nsrc = (size_t)d->batch.N * d->C_sum, nd = (size_t)d->L * d->batch.N;
    for (size_t i = 0; i < nsrc; i++) d->pass.src[i] = (real)(0.1 + 0.8 * ((double)((i * 13) % 29) / 29.0));
    for (size_t i = 0; i < nd; i++) d->pass.srcdelta[i] = (real)(0.2 + 0.6 * ((double)((i * 7) % 11) / 11.0));
    vpd_recon_pass(d, &(vpd_pass_spec){.masks = VPD_MASKS_SOURCES, .dscale = 1.0, .grad_sources = true});
    real *gs = malloc(sizeof(real) * nsrc), *gd = malloc(sizeof(real) * nd);
    memcpy(gs, d->pass.dsrc, sizeof(real) * nsrc);
    memcpy(gd, d->pass.dsrcdelta, sizeof(real) * nd);
    pctx c = {d};
    double e1 = tu_fd_check(f_pass, &c, d->pass.src, gs, nsrc, 1e-6, "PGD dD/dr");
    double e2 = tu_fd_check(f_pass, &c, d->pass.srcdelta, gd, nd, 1e-6, "PGD dD/dr_delta");
    CHECK(e1 < 1e-6 && e2 < 1e-6, "PGD source gradient rel err %g %g", e1, e2);
    free(gs);
    free(gd);
    free(x);
    vpd_decomp_free(d);
}

static void base_config(vpd_decomp_config *c, const char *pattern, int C, vpd_ci_type ci, vpd_output_loss out) {
    vpd_decomp_config_defaults(c);
    c->seed = 7;
    c->n_mask_samples = 2;
    c->ci_type = ci;
    c->ci_hidden[0] = 3;
    c->ci_n_hidden = 1;
    vpd_sigmoid_lookup("normal", &c->sigmoid_lower, &c->sigmoid_upper);
    c->n_module_info = 1;
    snprintf(c->module_info[0].pattern, sizeof c->module_info[0].pattern, "%s", pattern);
    c->module_info[0].C = C;
    c->output_loss = out;
    c->steps = 10;
    c->batch_size = 4;
    add_all_losses(c);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    vpd_log_set_level(VPD_LOG_WARN);
    /* ResidMLP, 2 layers: 4 decomposed matrices, MSE */
    vpd_model_config rc = {0};
    rc.kind = VPD_MODEL_RESID_MLP;
    rc.n_features = 5; rc.d_embed = 6; rc.d_mlp = 4; rc.n_layers = 2;
    vpd_model rm;
    CHECK(vpd_model_create(&rm, &rc) == VPD_OK, "resid create: %s", vpd_last_error());
    vpd_model_init_params(&rm, 3);
    vpd_model_sync(&rm);
    static vpd_decomp_config c1, c2, c3, c4;
    base_config(&c1, "layers.*", 3, VPD_CI_MLP, VPD_OUT_MSE);
    if (getenv("VPD_FD_SINGLE")) { /* debugging aid: each loss alone */
        static vpd_decomp_config one;
        for (int i = 0; i < c1.n_losses; i++) {
            one = c1;
            one.losses[0] = c1.losses[i];
            one.n_losses = 1;
            check_decomp(vpd_loss_classname(c1.losses[i].kind), &rm, &one, 4, 1, 1e-6);
        }
    }
    check_decomp("resid_mlp 2L, all losses, layerwise mlp CI", &rm, &c1, 4, 1, 1e-6);
    base_config(&c2, "layers.*", 3, VPD_CI_GLOBAL_SHARED_MLP, VPD_OUT_MSE);
    c2.use_delta_component = false;
    check_decomp("resid_mlp 2L, all losses, global_shared_mlp CI, no delta", &rm, &c2, 4, 1, 1e-6);
    check_pgd_source_grad(&rm, &c1, 4);

    /* TMS with tied layers (one parameter set for linear1 and linear2ᵀ) */
    vpd_model_config tc = {0};
    tc.kind = VPD_MODEL_TMS;
    tc.n_features = 5; tc.n_hidden = 2;
    vpd_model tm;
    CHECK(vpd_model_create(&tm, &tc) == VPD_OK, "tms create: %s", vpd_last_error());
    vpd_model_init_params(&tm, 4);
    vpd_model_sync(&tm);
    base_config(&c3, "linear*", 4, VPD_CI_VECTOR_MLP, VPD_OUT_MSE);
    check_decomp("tms 5-2 tied, all losses, vector_mlp CI", &tm, &c3, 4, 1, 1e-6);

    /* LlamaSimpleMLP: embedding + every matrix, KL output */
    vpd_model_config lc = {0};
    lc.kind = VPD_MODEL_LLAMA;
    lc.vocab_size = 11; lc.n_ctx = 8; lc.n_embd = 8; lc.n_head = 2; lc.n_key_value_heads = 1;
    lc.n_intermediate = 12; lc.n_layers = 1; lc.rms_eps = 1e-6; lc.rope_theta = 10000;
    vpd_model lm;
    CHECK(vpd_model_create(&lm, &lc) == VPD_OK, "llama create: %s", vpd_last_error());
    vpd_model_init_params(&lm, 5);
    vpd_scale(lm.n_params, 10, lm.params); /* larger weights: a KL that is not vanishingly small */
    vpd_model_sync(&lm);
    base_config(&c4, "*", 3, VPD_CI_SHARED_MLP, VPD_OUT_KL);
    check_decomp("llama 1L (wte + 6 matrices), all losses, shared_mlp CI, KL", &lm, &c4, 2, 3, 1e-6);

    vpd_model_free(&rm);
    vpd_model_free(&tm);
    vpd_model_free(&lm);
    MPI_Finalize();
    TEST_REPORT();
}
