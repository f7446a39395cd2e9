/* The post-hoc CI optimisation on a prompt (src/analysis/prompt_ci.c), in double precision:
 *   - finite-difference check of ∂loss/∂(free pre-sigmoid values) for the whole loss
 *     (stochastic CE with Δ + adversarial CE after PGD + importance minimality) and for each
 *     term alone, on a 1-layer LlamaSimpleMLP with every matrix and the embedding decomposed;
 *     the values are placed inside (0, 1), where the leaky-hard sigmoids are smooth (their
 *     hand-written rule at z <= 0 is not a derivative, and has its own test); PGD's final
 *     sources are piecewise constant in the values (sign steps), as the analytic gradient
 *     assumes;
 *   - the per-element ∂CE/∂m of the masked pass with the `ce` option against finite
 *     differences;
 *   - the optimisation lowers the loss, is reproducible (two runs give the same bits), keeps
 *     probabilities in [0, 1], and the exported CI holds the measured node count; bad arguments
 *     are one-line errors. */
#include <math.h>
#include <mpi.h>
#include <string.h>

#include "testutil.h"
#include "vpd/decomp.h"
#include "vpd/prompt_ci.h"

typedef struct {
    vpd_prompt_ci *p;
    int step;
} lctx;

static double f_loss(void *c) {
    lctx *l = c;
    return vpd_prompt_ci_loss(l->p, l->step, NULL, NULL);
}

static void base_config(vpd_decomp_config *c) {
    vpd_decomp_config_defaults(c);
    c->seed = 11;
    c->ci_type = VPD_CI_SHARED_MLP;
    c->ci_hidden[0] = 4;
    c->ci_n_hidden = 1;
    vpd_sigmoid_lookup("leaky_hard", &c->sigmoid_lower, &c->sigmoid_upper);
    c->n_module_info = 1;
    snprintf(c->module_info[0].pattern, sizeof c->module_info[0].pattern, "*");
    c->module_info[0].C = 4;
    c->output_loss = VPD_OUT_KL;
    c->use_delta_component = true;
    c->steps = 10;
    c->batch_size = 1;
    c->n_losses = 0;
}

/* values inside (0.15, 0.85): away from the sigmoids' kinks */
static void interior(vpd_prompt_ci *p) {
    real *v = vpd_prompt_ci_values(p);
    for (int i = 0; i < vpd_prompt_ci_n_free(p); i++) v[i] = (real)(0.15 + 0.7 * ((double)((i * 17 + 5) % 23) / 23.0));
}

static void check_grad(vpd_decomp *d, const int32_t *tok, const char *label, double imp, double adv, int pgd_steps) {
    vpd_prompt_ci_opts o;
    vpd_prompt_ci_opts_defaults(&o);
    o.imp_coeff = imp;
    o.adv_coeff = adv;
    o.pgd_steps = pgd_steps;
    o.pgd_lr = 0.3;
    vpd_prompt_ci *p = NULL;
    CHECK(vpd_prompt_ci_create(&p, d, tok, 3, 2, &o) == VPD_OK, "create: %s", vpd_last_error());
    if (!p) return;
    const int n = vpd_prompt_ci_n_free(p);
    CHECK(n > 8, "%s: only %d alive (position, subcomponent) pairs: the test needs more", label, n);
    interior(p);
    real *g = malloc(sizeof(real) * (size_t)n);
    double parts[3];
    lctx c = {p, 5};
    vpd_prompt_ci_loss(p, c.step, g, parts);
    double gn = 0;
    for (int i = 0; i < n; i++) gn += fabs((double)g[i]);
    CHECK(gn > 1e-6, "%s: zero gradient", label);
    CHECK(parts[0] > 0 && (adv == 0 || parts[1] > 0) && parts[2] > 0, "%s: loss parts %g %g %g", label, parts[0],
          parts[1], parts[2]);
    double e = tu_fd_check(f_loss, &c, vpd_prompt_ci_values(p), g, (size_t)n, 1e-6, label);
    CHECK(e < 1e-6, "%s: rel err %g", label, e);
    free(g);
    vpd_prompt_ci_free(p);
}

/* ∂CE(t*, y)/∂m of one masked pass with the `ce` option */
typedef struct {
    vpd_decomp *d;
    real *m, *dm;
    vpd_pass_layer spec[16];
} mctx;

static double f_mpass(void *c) {
    mctx *x = c;
    for (int k = 0; k < x->d->L; k++) x->spec[k].dm = NULL;
    const vpd_pass_opts po = {.dscale = 0, .ce = true, .ce_row = 2, .ce_token = 5};
    return vpd_masked_pass(x->d, x->spec, &po, NULL);
}

static void check_ce_pass(vpd_decomp *d) {
    const int N = d->batch.N;
    size_t nz = (size_t)N * d->C_sum;
    mctx x = {.d = d};
    x.m = malloc(sizeof(real) * nz);
    x.dm = calloc(nz, sizeof(real));
    for (size_t i = 0; i < nz; i++) x.m[i] = (real)(0.1 + 0.8 * ((double)((i * 13) % 29) / 29.0));
    CHECK(d->L <= 16, "layers");
    for (int k = 0; k < d->L; k++) {
        size_t off = (size_t)N * d->layers[k].c_off;
        x.spec[k] = (vpd_pass_layer){.replaced = true, .m = x.m + off, .dm = x.dm + off};
    }
    vpd_decomp_target_forward(d);
    const vpd_pass_opts po = {.dscale = 1.0, .ce = true, .ce_row = 2, .ce_token = 5};
    double D = vpd_masked_pass(d, x.spec, &po, NULL);
    CHECK(D > 0 && isfinite(D), "ce pass: %g", D);
    real *g = malloc(sizeof(real) * nz);
    memcpy(g, x.dm, sizeof(real) * nz);
    double e = tu_fd_check(f_mpass, &x, x.m, g, nz, 1e-6, "masked pass CE wrt m");
    CHECK(e < 1e-6, "masked pass CE rel err %g", e);
    free(g);
    free(x.m);
    free(x.dm);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    vpd_log_set_level(VPD_LOG_WARN);
    vpd_model_config lc = {0};
    lc.kind = VPD_MODEL_LLAMA;
    lc.vocab_size = 13; lc.n_ctx = 8; lc.n_embd = 8; lc.n_head = 2; lc.n_key_value_heads = 1;
    lc.n_intermediate = 12; lc.n_layers = 1; lc.rms_eps = 1e-6; lc.rope_theta = 10000;
    vpd_model lm;
    CHECK(vpd_model_create(&lm, &lc) == VPD_OK, "llama create: %s", vpd_last_error());
    vpd_model_init_params(&lm, 5);
    vpd_scale(lm.n_params, 6, lm.params); /* larger weights: a CE that depends visibly on the masks */
    vpd_model_sync(&lm);
    static vpd_decomp_config cfg;
    base_config(&cfg);
    const int T = 5;
    vpd_decomp *d = NULL;
    CHECK(vpd_decomp_create_local(&d, &cfg, &lm, 1, T) == VPD_OK, "decomp: %s", vpd_last_error());
    if (!d) TEST_REPORT();
    tu_fill(d->params.comp_params, d->params.n_comp_params, 5, 0.6);
    /* a CI function whose z is positive on most elements (bias of the final Linear up) */
    real *ci_p = d->params.ci->params;
    tu_fill(ci_p, d->params.ci->n_params, 9, 0.5);
    for (int t = 0; t < d->params.ci->n_tensors; t++) {
        const vpd_ci_param_info *pi = &d->params.ci->tensors[t];
        if (pi->is_bias && pi->linear == d->params.ci->n_hidden)
            for (size_t i = 0; i < pi->numel; i++) ci_p[pi->offset + i] += (real)0.4;
    }
    vpd_decomp_refresh(d);
    const int32_t tok[5] = {3, 7, 1, 12, 4};
    d->batch.input = (vpd_model_input){.B = 1, .S = T, .x = NULL, .tokens = tok};
    check_ce_pass(d);

    check_grad(d, tok, "whole loss", 0.3, 0.7, 2);
    check_grad(d, tok, "stochastic CE only", 0.0, 0.0, 0);
    check_grad(d, tok, "importance + stochastic", 0.5, 0.0, 0);
    check_grad(d, tok, "adversarial, no PGD steps", 0.0, 1.0, 0);

    /* the optimisation: lower loss, reproducible, probabilities in [0, 1] */
    vpd_prompt_ci_opts o;
    vpd_prompt_ci_opts_defaults(&o);
    o.steps = 60;
    o.lr = 0.05;
    o.n_eval_samples = 4;
    o.pgd_eval_steps = 5;
    vpd_prompt_ci *p1 = NULL, *p2 = NULL;
    CHECK(vpd_prompt_ci_create(&p1, d, tok, 3, 2, &o) == VPD_OK, "create: %s", vpd_last_error());
    const int n = vpd_prompt_ci_n_free(p1);
    double L0 = 0, L1 = 0;
    for (int s = 0; s < 8; s++) L0 += vpd_prompt_ci_loss(p1, 1000 + s, NULL, NULL);
    vpd_prompt_ci_probs before, after;
    vpd_prompt_ci_measure(p1, 0, &before);
    CHECK(before.n_alive == n, "unpruned node count %d, alive %d", before.n_alive, n);
    vpd_prompt_ci_run(p1);
    for (int s = 0; s < 8; s++) L1 += vpd_prompt_ci_loss(p1, 1000 + s, NULL, NULL);
    vpd_prompt_ci_measure(p1, 0, &after);
    fprintf(stderr, "  optimisation: loss %.5f -> %.5f; nodes %d -> %d; P(ci) %.4f -> %.4f, P(stoch) %.4f -> %.4f, "
                    "P(adv) %.4f -> %.4f\n", L0 / 8, L1 / 8, before.n_alive, after.n_alive, before.p_ci, after.p_ci,
            before.p_stoch, after.p_stoch, before.p_adv, after.p_adv);
    CHECK(L1 < L0, "the optimisation did not lower the loss: %g -> %g", L0 / 8, L1 / 8);
    const vpd_prompt_ci_probs *pp[2] = {&before, &after};
    for (int k = 0; k < 2; k++)
        CHECK(pp[k]->p_ci >= 0 && pp[k]->p_ci <= 1 && pp[k]->p_stoch >= 0 && pp[k]->p_stoch <= 1 && pp[k]->p_adv >= 0 &&
                  pp[k]->p_adv <= 1, "probabilities outside [0, 1]");
    CHECK(after.n_alive <= n, "more nodes than alive");
    real *v1 = malloc(sizeof(real) * (size_t)n);
    memcpy(v1, vpd_prompt_ci_values(p1), sizeof(real) * (size_t)n);
    CHECK(vpd_prompt_ci_create(&p2, d, tok, 3, 2, &o) == VPD_OK, "create: %s", vpd_last_error());
    vpd_prompt_ci_run(p2);
    CHECK(!memcmp(v1, vpd_prompt_ci_values(p2), sizeof(real) * (size_t)n), "two runs differ");
    float *ci = malloc(sizeof(float) * (size_t)T * d->C_sum_total);
    vpd_prompt_ci_export(p2, ci);
    int kept = 0;
    for (int i = 0; i < T * d->C_sum_total; i++) kept += ci[i] > 0;
    CHECK(kept == after.n_alive, "exported %d nodes, measured %d", kept, after.n_alive);
    free(ci);
    free(v1);
    vpd_prompt_ci_free(p1);
    vpd_prompt_ci_free(p2);

    /* bad arguments */
    o = (vpd_prompt_ci_opts){0};
    vpd_prompt_ci_opts_defaults(&o);
    EXPECT_FAIL(vpd_prompt_ci_create(&p1, d, tok, 5, 2, &o), VPD_ERR_ARG, "position 5 outside the prompt's 5 tokens");
    EXPECT_FAIL(vpd_prompt_ci_create(&p1, d, tok, 1, 13, &o), VPD_ERR_ARG, "target token 13 outside the vocabulary");
    const int32_t bad[5] = {3, 7, 99, 1, 2};
    EXPECT_FAIL(vpd_prompt_ci_create(&p1, d, bad, 1, 2, &o), VPD_ERR_ARG, "prompt token 99 at position 2");

    vpd_decomp_free(d);
    vpd_model_free(&lm);
    MPI_Finalize();
    TEST_REPORT();
}
