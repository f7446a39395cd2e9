/* `vpd transcoder CONFIG.yaml`: training per-layer (PLT) and cross-layer (CLT) transcoders on
 * the MLPs of a LlamaSimpleMLP target (include/vpd/transcoder.h has the model; README
 * "Transcoders" the config keys and the output).
 *
 * One step on a global batch of batch_size windows of max_seq_len tokens (data parallel:
 * rank r draws examples [r·B, (r+1)·B) of the same counter-based batches as every rank
 * count; gradients are averaged with vpd_dp_mean):
 *   objective mse  a clean target forward records every MLP's input x_i and output y_i; each
 *                  encoder and decoder is trained on mean((ŷ_j − y_j)²) summed over MLPs j
 *   objective kl   all transcoders are spliced in at once (every MLP's output replaced by its
 *                  reconstruction, encoders reading the spliced model's MLP inputs) and the
 *                  loss is KL(target ‖ spliced) of the next-token distributions, mean over
 *                  tokens; the gradient flows back through the model (hooks) into every
 *                  encoder and decoder, including through later layers' inputs
 *   sparsity       topk / batchtopk: none (k fixes L0); relu: sparsity_coeff · mean_tokens
 *                  Σ_r z_r (L1; decoder rows are unit norm); jumprelu: sparsity_coeff ·
 *                  mean_tokens Σ_r [pre_r > θ_r] (L0, through the pseudo-gradient of
 *                  tc_internal.h)
 *   AuxK           latents that fired on none of the last dead_tokens tokens are dead; per
 *                  token the aux_k largest relu(pre) among dead latents reconstruct the
 *                  residual e_j = y_j − ŷ_j (detached): aux_coeff · Σ_j mean((ê_j − e_j)²),
 *                  ê_j = Σ_{i∈src(j)} z_aux_i W_dec[i][j] (no bias); its gradient reaches the
 *                  dead latents' encoder rows and decoder rows only (x is not differentiated)
 *   update         decoder gradients lose their component along each latent's decoder
 *                  vector (tc_dec_project_grad), the whole gradient is clipped to
 *                  grad_clip_norm, Adam (β 0.9, 0.99, no weight decay) updates, decoder
 *                  vectors are renormalised, JumpReLU thresholds are clamped at >= 0
 *   BatchTopK      per MLP, the k·tokens largest positive pre-activations of the GLOBAL batch
 *                  are kept (each rank's k·tokens largest positive values are gathered on
 *                  rank 0, which picks the exact threshold and broadcasts it, so the result
 *                  is that of one rank holding the whole batch); the inference threshold θ_i
 *                  is the EMA (threshold_ema) of the per-batch threshold, initialised at the
 *                  first step's.
 * Checkpoints (RUN_DIR/checkpoint.h5: parameters, Adam moments, dead-latent counters, step)
 * every checkpoint_every steps, at --stop-after and on SIGTERM/SIGUSR1 (exit 75); --resume
 * RUN_DIR continues bit-exactly. The result is RUN_DIR/transcoder.h5. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include <errno.h>
#include <limits.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "transcoder/tc_internal.h"
#include "vpd/comm.h"
#include "vpd/config.h"
#include "vpd/data.h"
#include "vpd/io.h"
#include "vpd/models.h"
#include "vpd/nn.h"
#include "vpd/optim.h"
#include "vpd/signals.h"

typedef struct {
    vpd_tc_kind kind;
    vpd_tc_act act;
    bool kl;
    int n_latent, k, aux_k;
    double sparsity, jr_eps, jr_init, ema, aux_coeff;
    int64_t dead_tokens;
    double lr, beta1, beta2, adam_eps, clip;
    int steps, batch_size, seq_len, width;
    uint64_t seed;
    int log_freq, ckpt_every, eval_batches, eval_batch_size;
    bool b_dec_mean; /* init_b_dec: mean (of the first batch's MLP outputs) or zero */
    int dump_step; /* debug_dump_step: write that step's inputs, parameters and gradients (-1: none) */
    char target[1024], train[1024], eval[1024], dump[1024];
} tc_cfg;

#define MAXL VPD_TC_MAX_LAYERS

typedef struct {
    vpd_hook base;
    struct tc_run *r;
    bool record; /* mse: record x_i, y_i and compute as the target; kl: splice */
} tc_hook;

typedef struct tc_run {
    tc_cfg c;
    vpd_config *root;
    char *config_text;
    const vpd_tc_train_opts *o;
    vpd_model m;
    bool have_model;
    vpd_tokens train, val;
    bool have_train, have_val;
    vpd_transcoder *t;
    vpd_transcoder g; /* gradient view (own W_dec table) */
    real *grads, *mom_m, *mom_v;
    int L, d, n, B, S, N, V, rank, world;
    int64_t N_global;
    int *blk_of;
    bool *is_fc;
    /* per-MLP buffers */
    const real *X[MAXL]; /* MLP inputs: copies (mse) or the model's ln2 (kl) */
    real *Xbuf[MAXL];
    real *Y[MAXL], *Yhat[MAXL], *pre[MAXL], *z[MAXL], *dz[MAXL], *zaux[MAXL];
    real *dpre, *dy, *ehat, *scratch, *cand, *gathered;
    real last_thr[MAXL]; /* BatchTopK: this step's global threshold per MLP */
    int32_t *tok, *tgt;
    real *logits_p, *logits_q, *pp, *qp, *dlogits;
    double *prowc;
    int64_t *since_fired, *fired;
    bool *dead;
    int step;
    tc_hook hook;
    /* per-step metrics (global after the step) */
    double loss_main, loss_aux, loss_sp;
    double err2[MAXL], y2[MAXL], l0[MAXL];
    double *ysum; /* [L, d] */
    FILE *metrics;
} tc_run;

/* ---- config --------------------------------------------------------------------------- */
static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* relative to the working directory, else to the config's directory, else its parent (a
 * config in configs/ names models/… and data/… from the repository root); made absolute */
static vpd_status resolve(char *out, size_t size, const char *p, const char *cfg_path, const char *what) {
    char cand[3][2400];
    int nc = 0;
    snprintf(cand[nc++], sizeof cand[0], "%s", p);
    if (p[0] != '/') {
        char tmp[2048];
        snprintf(tmp, sizeof tmp, "%s", cfg_path);
        const char *dir = dirname(tmp);
        snprintf(cand[nc++], sizeof cand[0], "%s/%s", dir, p);
        snprintf(cand[nc++], sizeof cand[0], "%s/../%s", dir, p);
    }
    for (int i = 0; i < nc; i++)
        if (exists(cand[i])) {
            char abs[PATH_MAX + 2400];
            if (!realpath(cand[i], abs)) {
                size_t l = strnlen(cand[i], sizeof cand[i] - 1);
                memcpy(abs, cand[i], l);
                abs[l] = 0;
            }
            if (strlen(abs) >= size) return vpd_error(VPD_ERR_CONFIG, "%s path too long: %s", what, abs);
            memcpy(out, abs, strlen(abs) + 1);
            return VPD_OK;
        }
    return vpd_error(VPD_ERR_CONFIG, "%s '%s' not found (looked in the working directory, next to %s and in its parent)", what,
                     p, cfg_path);
}

static vpd_status read_config(tc_run *r) {
    vpd_config *root = r->root;
    tc_cfg *c = &r->c;
    memset(c, 0, sizeof *c);
    static const char *const kinds[] = {"plt", "clt", NULL};
    static const char *const acts[] = {"batchtopk", "topk", "relu", "jumprelu", NULL};
    static const char *const objs[] = {"mse", "kl", NULL};
    int ki, ai, oi;
    VPD_TRY(vpd_config_require(root, "kind"));
    VPD_TRY(vpd_config_get_enum(root, "kind", kinds, 0, &ki));
    VPD_TRY(vpd_config_get_enum(root, "activation", acts, 0, &ai));
    VPD_TRY(vpd_config_get_enum(root, "objective", objs, 0, &oi));
    c->kind = (vpd_tc_kind)ki;
    c->act = (vpd_tc_act)ai;
    c->kl = oi == 1;
    VPD_TRY(vpd_config_require(root, "n_latent"));
    VPD_TRY(vpd_config_get_int(root, "n_latent", 0, 1, 1 << 22, &c->n_latent));
    bool needk = c->act == VPD_TC_TOPK || c->act == VPD_TC_BATCHTOPK;
    if (needk) VPD_TRY(vpd_config_require(root, "k"));
    bool k_null = vpd_config_has(root, "k") && vpd_config_is_null(root, "k");
    if (k_null && needk) return vpd_config_error(vpd_config_find(root, "k"), "k must be a number for %s", vpd_tc_act_name(c->act));
    if (k_null) vpd_config_consume(root, "k");
    else VPD_TRY(vpd_config_get_int(root, "k", 0, needk ? 1 : 0, c->n_latent, &c->k));
    if (!needk && !k_null && vpd_config_has(root, "k"))
        return vpd_config_error(vpd_config_find(root, "k"), "k applies to topk and batchtopk only (activation is %s)",
                                vpd_tc_act_name(c->act));
    bool needsp = c->act == VPD_TC_RELU || c->act == VPD_TC_JUMPRELU;
    if (needsp) VPD_TRY(vpd_config_require(root, "sparsity_coeff"));
    VPD_TRY(vpd_config_get_double(root, "sparsity_coeff", 0, 0, 1e9, &c->sparsity));
    if (!needsp && c->sparsity != 0)
        return vpd_config_error(vpd_config_find(root, "sparsity_coeff"),
                                "sparsity_coeff applies to relu (L1) and jumprelu (L0); %s fixes L0 with k",
                                vpd_tc_act_name(c->act));
    VPD_TRY(vpd_config_get_double(root, "jumprelu_bandwidth", 1e-3, 1e-9, 1e3, &c->jr_eps));
    VPD_TRY(vpd_config_get_double(root, "jumprelu_init_threshold", 1e-3, 0, 1e3, &c->jr_init));
    VPD_TRY(vpd_config_get_double(root, "threshold_ema", 0.99, 0, 1, &c->ema));
    VPD_TRY(vpd_config_get_int(root, "aux_k", c->n_latent < 256 ? c->n_latent : 256, 1, c->n_latent, &c->aux_k));
    VPD_TRY(vpd_config_get_double(root, "aux_coeff", 1.0 / 32, 0, 1e6, &c->aux_coeff));
    VPD_TRY(vpd_config_get_int64(root, "dead_tokens", 1000000, 1, INT64_MAX / 4, &c->dead_tokens));
    VPD_TRY(vpd_config_get_double(root, "lr", 3e-4, 0, 10, &c->lr));
    double betas[2] = {0.9, 0.99};
    VPD_TRY(vpd_config_get_double_tuple(root, "betas", 0, 0.999999999, betas, 2)); /* [beta1, beta2] */
    c->beta1 = betas[0];
    c->beta2 = betas[1];
    VPD_TRY(vpd_config_get_double(root, "adam_eps", 1e-8, 0, 1, &c->adam_eps));
    VPD_TRY(vpd_config_get_double(root, "grad_clip_norm", 1, 0, 1e30, &c->clip));
    VPD_TRY(vpd_config_require(root, "steps"));
    VPD_TRY(vpd_config_get_int(root, "steps", 0, 1, 1 << 30, &c->steps));
    VPD_TRY(vpd_config_require(root, "batch_size"));
    VPD_TRY(vpd_config_get_int(root, "batch_size", 0, 1, 1 << 20, &c->batch_size));
    int64_t seed;
    VPD_TRY(vpd_config_get_int64(root, "seed", 0, 0, INT64_MAX, &seed));
    c->seed = (uint64_t)seed;
    VPD_TRY(vpd_config_get_int(root, "train_log_freq", 50, 1, 1 << 30, &c->log_freq));
    VPD_TRY(vpd_config_get_int(root, "checkpoint_every", 0, 0, 1 << 30, &c->ckpt_every));
    VPD_TRY(vpd_config_get_int(root, "eval_batches", 4, 0, 1 << 20, &c->eval_batches));
    VPD_TRY(vpd_config_get_int(root, "eval_batch_size", c->batch_size, 1, 1 << 20, &c->eval_batch_size));
    const char *tp, *trn, *ev = NULL, *dt, *dump = NULL;
    static const char *const binit[] = {"mean", "zero", NULL};
    int bi = 0;
    VPD_TRY(vpd_config_get_enum(root, "init_b_dec", binit, 0, &bi));
    c->b_dec_mean = bi == 0;
    VPD_TRY(vpd_config_get_int(root, "debug_dump_step", -1, -1, 1 << 30, &c->dump_step));
    VPD_TRY(vpd_config_get_string_or_null(root, "debug_dump_path", NULL, &dump));
    if (c->dump_step >= 0 && !dump)
        return vpd_config_error(vpd_config_find(root, "debug_dump_step"), "debug_dump_step needs debug_dump_path (an .h5 file)");
    if (dump) snprintf(c->dump, sizeof c->dump, "%s", dump);
    VPD_TRY(vpd_config_require(root, "target.model_path"));
    VPD_TRY(vpd_config_get_string(root, "target.model_path", NULL, &tp));
    VPD_TRY(vpd_config_require(root, "data.train"));
    VPD_TRY(vpd_config_get_string(root, "data.train", NULL, &trn));
    VPD_TRY(vpd_config_get_string_or_null(root, "data.eval", NULL, &ev));
    VPD_TRY(vpd_config_get_int(root, "data.max_seq_len", 128, 1, 1 << 20, &c->seq_len));
    VPD_TRY(vpd_config_get_string(root, "data.token_dtype", "uint16", &dt));
    vpd_status s = vpd_tokens_dtype_parse(dt, "data.token_dtype", &c->width);
    if (s != VPD_OK) return vpd_config_error(vpd_config_find(root, "data.token_dtype"), "%s", vpd_last_error());
    VPD_TRY(resolve(c->target, sizeof c->target, tp, r->o->config_path, "target.model_path"));
    VPD_TRY(resolve(c->train, sizeof c->train, trn, r->o->config_path, "data.train"));
    if (ev) VPD_TRY(resolve(c->eval, sizeof c->eval, ev, r->o->config_path, "data.eval"));
    static const char *const ignore[] = {"wandb_*", NULL};
    VPD_TRY(vpd_config_check_unused(root, ignore));
    /* the resolved paths go into RUN_DIR/config.yaml, so --resume finds them from anywhere */
    char as[2200];
    snprintf(as, sizeof as, "target.model_path=%s", c->target);
    VPD_TRY(vpd_config_set(root, as));
    snprintf(as, sizeof as, "data.train=%s", c->train);
    VPD_TRY(vpd_config_set(root, as));
    if (ev) {
        snprintf(as, sizeof as, "data.eval=%s", c->eval);
        VPD_TRY(vpd_config_set(root, as));
    }
    return VPD_OK;
}

/* ---- setup ------------------------------------------------------------------------------ */
static real *alloc_real(size_t n, const char *what) { return vpd_calloc(sizeof(real) * (n ? n : 1), what); }

static void hook_forward(vpd_hook *h, int l, const real *x, const int32_t *tok, real *y, int N);
static void hook_backward(vpd_hook *h, int l, const real *x, const int32_t *tok, const real *dy, real *dx, int N);

static vpd_status setup(tc_run *r) {
    const tc_cfg *c = &r->c;
    VPD_TRY(vpd_model_load(&r->m, c->target));
    r->have_model = true;
    vpd_model *m = &r->m;
    if (m->cfg.kind != VPD_MODEL_LLAMA)
        return vpd_error(VPD_ERR_CONFIG, "%s is a %s model: transcoders are trained on a LlamaSimpleMLP's MLPs", c->target,
                         vpd_model_kind_name(m->cfg.kind));
    if (c->seq_len > m->cfg.n_ctx)
        return vpd_error(VPD_ERR_CONFIG, "data.max_seq_len %d exceeds the target's n_ctx %d", c->seq_len, m->cfg.n_ctx);
    vpd_batch_geom geo;
    VPD_TRY(vpd_batch_geometry(&geo, c->batch_size, c->seq_len, r->world, r->rank, "batch_size"));
    if (c->eval_batch_size % r->world)
        return vpd_error(VPD_ERR_CONFIG, "eval_batch_size %d is not divisible by the %d ranks", c->eval_batch_size, r->world);
    r->B = geo.B;
    r->S = c->seq_len;
    int EB = c->eval_batch_size / r->world;
    int Bmax = r->B > EB ? r->B : EB;
    r->N = Bmax * r->S;
    r->N_global = (int64_t)c->batch_size * r->S;
    r->L = m->cfg.n_layers;
    r->d = m->cfg.n_embd;
    r->n = c->n_latent;
    r->V = m->cfg.vocab_size;
    if (r->L > MAXL) return vpd_error(VPD_ERR_CONFIG, "target has %d blocks; transcoders support up to %d", r->L, MAXL);
    VPD_TRY(vpd_model_reserve(m, Bmax, r->S));
    VPD_TRY(vpd_tokens_open(&r->train, c->train, c->width, r->V));
    r->have_train = true;
    if (c->eval[0]) {
        VPD_TRY(vpd_tokens_open(&r->val, c->eval, c->width, r->V));
        r->have_val = true;
    }
    VPD_TRY(vpd_transcoder_create(&r->t, c->kind, c->act, r->L, r->d, r->n, c->k));
    r->g = *r->t;
    r->g.W_dec = calloc((size_t)r->L * r->L, sizeof(real *));
    r->grads = alloc_real(r->t->n_params, "transcoder gradients");
    r->mom_m = alloc_real(r->t->n_params, "Adam m");
    r->mom_v = alloc_real(r->t->n_params, "Adam v");
    if (!r->g.W_dec || !r->grads || !r->mom_m || !r->mom_v) return vpd_error(VPD_ERR_MEM, "transcoder optimiser state");
    tc_bind(&r->g, r->grads);
    size_t Nn = (size_t)r->N * r->n, Nd = (size_t)r->N * r->d;
    size_t K = (size_t)c->k * (size_t)r->N_global;
    for (int i = 0; i < r->L; i++) {
        r->Xbuf[i] = alloc_real(Nd, "MLP inputs");
        r->Y[i] = alloc_real(Nd, "MLP outputs");
        r->Yhat[i] = alloc_real(Nd, "reconstructions");
        r->pre[i] = alloc_real(Nn, "pre-activations");
        r->z[i] = alloc_real(Nn, "latents");
        r->dz[i] = alloc_real(Nn, "latent gradients");
        r->zaux[i] = alloc_real(Nn, "aux latents");
        if (!r->Xbuf[i] || !r->Y[i] || !r->Yhat[i] || !r->pre[i] || !r->z[i] || !r->dz[i] || !r->zaux[i]) return VPD_ERR_MEM;
    }
    r->dpre = alloc_real(Nn, "dpre");
    r->dy = alloc_real(Nd, "dy");
    r->ehat = alloc_real(Nd, "aux reconstruction");
    size_t nscr = Nn > (size_t)r->n ? Nn : (size_t)r->n;
    if (nscr < K * (size_t)r->world) nscr = K * (size_t)r->world;
    r->scratch = alloc_real(nscr, "scratch");
    r->cand = alloc_real(K, "BatchTopK candidates");
    r->gathered = r->rank == 0 ? alloc_real(K * (size_t)r->world, "BatchTopK gathered candidates") : NULL;
    r->tok = vpd_calloc(sizeof(int32_t) * (size_t)r->N, "tokens");
    r->tgt = vpd_calloc(sizeof(int32_t) * (size_t)r->N, "targets");
    size_t NV = (size_t)r->N * r->V;
    r->logits_q = alloc_real(NV, "logits");
    if (c->kl) {
        r->logits_p = alloc_real(NV, "target logits");
        r->pp = alloc_real(NV, "target probabilities");
        r->qp = alloc_real(NV, "spliced probabilities");
        r->dlogits = alloc_real(NV, "logit gradients");
        r->prowc = vpd_calloc(sizeof(double) * 3 * (size_t)r->N, "KL row constants");
        if (!r->logits_p || !r->pp || !r->qp || !r->dlogits || !r->prowc) return VPD_ERR_MEM;
    }
    r->since_fired = vpd_calloc(sizeof(int64_t) * (size_t)r->L * r->n, "dead-latent counters");
    r->fired = vpd_calloc(sizeof(int64_t) * (size_t)r->L * r->n, "fire counts");
    r->dead = vpd_calloc((size_t)r->L * r->n, "dead flags");
    r->ysum = vpd_calloc(sizeof(double) * (size_t)r->L * r->d, "metric sums");
    r->blk_of = malloc(sizeof(int) * (size_t)m->n_layers);
    r->is_fc = calloc((size_t)m->n_layers, sizeof(bool));
    if (!r->dpre || !r->dy || !r->ehat || !r->scratch || !r->cand || (r->rank == 0 && !r->gathered) || !r->tok || !r->tgt ||
        !r->logits_q || !r->since_fired || !r->fired || !r->dead || !r->ysum || !r->blk_of || !r->is_fc)
        return vpd_error(VPD_ERR_MEM, "transcoder training buffers");
    for (int l = 0; l < m->n_layers; l++) r->blk_of[l] = -1;
    for (int i = 0; i < r->L; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "h.%d.mlp.c_fc", i);
        int fc = vpd_model_find_layer(m, nm);
        snprintf(nm, sizeof nm, "h.%d.mlp.down_proj", i);
        int dn = vpd_model_find_layer(m, nm);
        if (fc < 0 || dn < 0) return vpd_error(VPD_ERR_CONFIG, "target has no layer %s", nm);
        r->blk_of[fc] = r->blk_of[dn] = i;
        r->is_fc[fc] = true;
    }
    r->hook = (tc_hook){.base = {hook_forward, hook_backward}, .r = r};
    return VPD_OK;
}

/* Initial parameters from the counter-based RNG (identical on every rank): decoder vectors
 * uniform on the sphere, encoders the transposed own-MLP decoder rows (W_enc[i][r] =
 * W_dec[i][i][r]), biases 0, JumpReLU thresholds jumprelu_init_threshold. */
static void init_params(tc_run *r) {
    vpd_transcoder *t = r->t;
    int L = r->L, n = r->n, d = r->d;
    for (int i = 0; i < L; i++)
        for (int j = 0; j < L; j++)
            if (vpd_tc_writes(t, i, j)) {
                vpd_rng g = vpd_rng_make(r->c.seed, VPD_RNG_INIT, (uint32_t)i, (uint32_t)j);
                vpd_rng_fill_normal(&g, 0, (size_t)n * d, t->W_dec[i * L + j]);
            }
    tc_dec_normalise(t);
    for (int i = 0; i < L; i++) {
        memcpy(t->W_enc[i], t->W_dec[i * L + i], sizeof(real) * (size_t)n * d);
        for (int q = 0; q < n; q++) t->threshold[i][q] = t->act == VPD_TC_JUMPRELU ? (real)r->c.jr_init : 0;
    }
    /* CLT: the own-MLP part of a unit joint vector is shorter; encoder rows get unit norm */
    if (t->kind == VPD_TC_CLT)
        for (int i = 0; i < L; i++)
            for (int q = 0; q < n; q++) {
                real *w = t->W_enc[i] + (size_t)q * d;
                double s = vpd_sumsq((size_t)d, w);
                if (s > 0) vpd_scale((size_t)d, (real)(1 / sqrt(s)), w);
            }
}

static vpd_status fill_batch(tc_run *r, const vpd_tokens *tk, uint32_t stream, uint64_t step, int B);

/* init_b_dec: mean — b_dec[j] = the mean of MLP j's output over the first training batch
 * (global: summed over ranks), so training starts at FVU 1 instead of above it */
static vpd_status init_b_dec(tc_run *r) {
    VPD_TRY(vpd_all_agree(fill_batch(r, &r->train, VPD_DATA_TRAIN, 0, r->B), vpd_comm_world()));
    vpd_model_input in = {.B = r->B, .S = r->S, .tokens = r->tok};
    r->hook.record = true;
    vpd_model_forward(&r->m, &in, r->logits_q, &r->hook.base);
    int N = r->B * r->S, d = r->d;
    memset(r->ysum, 0, sizeof(double) * (size_t)r->L * d);
    for (int j = 0; j < r->L; j++)
        for (int q = 0; q < N; q++)
            for (int c = 0; c < d; c++) r->ysum[(size_t)j * d + c] += r->Y[j][(size_t)q * d + c];
    vpd_sum_double(r->ysum, (size_t)r->L * d, vpd_comm_world());
    for (int j = 0; j < r->L; j++)
        for (int c = 0; c < d; c++) r->t->b_dec[j][c] = (real)(r->ysum[(size_t)j * d + c] / (double)r->N_global);
    return VPD_OK;
}

/* ---- the forward pieces --------------------------------------------------------------- */
/* BatchTopK over the global batch: the K = k·N_global-th largest positive value of pre_i
 * over all ranks (0 when fewer are positive: then every positive value is kept) */
static real global_threshold(tc_run *r, int i, int N) {
    size_t K = (size_t)r->c.k * (size_t)r->N_global;
    size_t m = tc_local_topk_sorted(r->pre[i], (size_t)N * r->n, K, r->cand, r->scratch);
    for (size_t q = m; q < K; q++) r->cand[q] = 0;
    vpd_gather_bytes(r->cand, sizeof(real) * K, r->gathered, 0, vpd_comm_world());
    real thr = 0;
    if (r->rank == 0) {
        size_t tot = K * (size_t)r->world;
        size_t got = tc_local_topk_sorted(r->gathered, tot, K, r->cand, r->scratch); /* zeros pad */
        thr = got == K ? r->cand[K - 1] : 0;
    }
    vpd_bcast(&thr, sizeof thr, 0, vpd_comm_world());
    return thr;
}

/* pre_i and z_i by the training rule from x (N rows); train: update BatchTopK's EMA */
static void encode_train(tc_run *r, int i, const real *x, int N, bool train) {
    vpd_transcoder *t = r->t;
    size_t cnt = (size_t)N * r->n;
    tc_pre(x, t->W_enc[i], t->b_enc[i], N, r->d, r->n, r->pre[i]);
    switch (t->act) {
    case VPD_TC_BATCHTOPK: {
        real thr = global_threshold(r, i, N);
        r->last_thr[i] = thr;
        tc_keep_ge(r->pre[i], cnt, thr, r->z[i]);
        if (train) {
            real *th = t->threshold[i];
            real v = r->step == 0 ? thr : (real)(r->c.ema * th[0] + (1 - r->c.ema) * thr);
            for (int q = 0; q < r->n; q++) th[q] = v;
        }
        break;
    }
    case VPD_TC_TOPK: tc_topk(r->pre[i], N, r->n, t->k, r->z[i], r->scratch); break;
    case VPD_TC_RELU: tc_relu(r->pre[i], cnt, r->z[i]); break;
    case VPD_TC_JUMPRELU: tc_jumprelu(r->pre[i], N, r->n, t->threshold[i], r->z[i]); break;
    }
}

static void decode(tc_run *r, int j, int N) {
    vpd_transcoder *t = r->t;
    const real *z[MAXL];
    for (int i = 0; i < r->L; i++) z[i] = r->z[i];
    vpd_transcoder_reconstruct(t, j, z, N, r->Yhat[j]);
}

/* dy_j -> decoder gradients and dz_i for i in src(j) */
static void decode_backward(tc_run *r, int j, const real *dy, int N) {
    vpd_transcoder *t = r->t;
    int L = r->L, d = r->d;
    for (int q = 0; q < N; q++) {
        const real *g = dy + (size_t)q * d;
        real *db = r->g.b_dec[j];
        for (int c = 0; c < d; c++) db[c] += g[c];
    }
    for (int i = 0; i <= j; i++)
        if (vpd_tc_writes(t, i, j)) tc_dec_backward(dy, r->z[i], t->W_dec[i * L + j], N, r->n, d, r->g.W_dec[i * L + j], r->dz[i]);
}

/* dz_i (complete) + sparsity -> encoder gradients, dx += ∂/∂x (dx may be NULL) */
static void encode_backward(tc_run *r, int i, const real *x, int N, real *dx, double *sp_loss) {
    vpd_transcoder *t = r->t;
    size_t cnt = (size_t)N * r->n;
    double invN = 1.0 / N;
    const real *z = r->z[i];
    if (t->act == VPD_TC_RELU && r->c.sparsity > 0) {
        /* L1: sparsity · mean_rows Σ z */
        double s = 0;
        for (size_t q = 0; q < cnt; q++) s += z[q];
        *sp_loss += r->c.sparsity * s * invN;
        real gz = (real)(r->c.sparsity * invN);
        for (size_t q = 0; q < cnt; q++) r->dz[i][q] += z[q] != 0 ? gz : 0;
    }
    if (t->act == VPD_TC_JUMPRELU) {
        int64_t act = vpd_transcoder_count_active(z, cnt);
        *sp_loss += r->c.sparsity * (double)act * invN;
        tc_jumprelu_theta_backward(r->dz[i], r->pre[i], N, r->n, t->threshold[i], r->c.jr_eps, r->c.sparsity * invN,
                                   r->g.threshold[i]);
    }
    memset(r->dpre, 0, sizeof(real) * cnt);
    tc_act_backward(r->dz[i], z, cnt, r->dpre);
    tc_pre_backward(r->dpre, x, t->W_enc[i], N, r->d, r->n, r->g.W_enc[i], r->g.b_enc[i], dx);
}

/* AuxK on the dead latents (after the main backward; uses pre, Y, Yhat) */
static double aux_loss(tc_run *r, int N) {
    vpd_transcoder *t = r->t;
    int L = r->L, n = r->n, d = r->d;
    bool any = false;
    for (size_t q = 0; q < (size_t)L * n && !any; q++) any = r->dead[q];
    size_t cnt = (size_t)N * n, Nd = (size_t)N * d;
    if (!any || r->c.aux_coeff <= 0) {
        for (int i = 0; i < L; i++) memset(r->zaux[i], 0, sizeof(real) * cnt);
        return 0;
    }
    for (int i = 0; i < L; i++) {
        /* relu(pre) on dead latents only, then top aux_k per row */
        const bool *dead = r->dead + (size_t)i * n;
        for (int q = 0; q < N; q++) {
            const real *p = r->pre[i] + (size_t)q * n;
            real *o = r->dz[i] + (size_t)q * n; /* dz is free again: reused as the masked copy */
            for (int c = 0; c < n; c++) o[c] = dead[c] && p[c] > 0 ? p[c] : 0;
        }
        tc_topk(r->dz[i], N, n, r->c.aux_k, r->zaux[i], r->scratch);
        memset(r->dz[i], 0, sizeof(real) * cnt);
    }
    double loss = 0;
    real sc = (real)(2 * r->c.aux_coeff / ((double)N * d));
    for (int j = 0; j < L; j++) {
        memset(r->ehat, 0, sizeof(real) * Nd);
        for (int i = 0; i <= j; i++)
            if (vpd_tc_writes(t, i, j)) tc_dec(r->zaux[i], t->W_dec[i * L + j], N, n, d, r->ehat);
        double s = 0;
        for (size_t q = 0; q < Nd; q++) {
            double e = (double)r->Y[j][q] - (double)r->Yhat[j][q];
            double diff = (double)r->ehat[q] - e;
            s += diff * diff;
            r->dy[q] = (real)(sc * diff);
        }
        loss += r->c.aux_coeff * s / ((double)N * d);
        for (int i = 0; i <= j; i++)
            if (vpd_tc_writes(t, i, j))
                tc_dec_backward(r->dy, r->zaux[i], t->W_dec[i * L + j], N, n, d, r->g.W_dec[i * L + j], r->dz[i]);
    }
    for (int i = 0; i < L; i++) {
        memset(r->dpre, 0, sizeof(real) * cnt);
        tc_act_backward(r->dz[i], r->zaux[i], cnt, r->dpre);
        tc_pre_backward(r->dpre, r->X[i], t->W_enc[i], N, d, n, r->g.W_enc[i], r->g.b_enc[i], NULL);
    }
    return loss;
}

/* ---- the hook: record (mse) or splice (kl) -------------------------------------------- */
static void hook_forward(vpd_hook *h, int l, const real *x, const int32_t *tok, real *y, int N) {
    tc_hook *hk = (tc_hook *)h;
    tc_run *r = hk->r;
    const vpd_layer_info *Li = &r->m.layers[l];
    int b = r->blk_of[l];
    if (Li->embedding) {
        embedding_forward(y, tok, Li->W, N, Li->d_in, Li->d_out);
        return;
    }
    linear_forward(y, x, Li->W, Li->b, N, Li->d_in, Li->d_out);
    if (b < 0) return;
    size_t Nd = (size_t)N * r->d;
    if (r->is_fc[l]) {
        if (hk->record) {
            memcpy(r->Xbuf[b], x, sizeof(real) * Nd);
            r->X[b] = r->Xbuf[b];
        } else {
            r->X[b] = x; /* the model's ln2 of block b: kept until the next forward */
            encode_train(r, b, x, N, true);
        }
    } else {
        memcpy(r->Y[b], y, sizeof(real) * Nd); /* the MLP's own output on this input */
        if (!hk->record) {
            decode(r, b, N);
            memcpy(y, r->Yhat[b], sizeof(real) * Nd);
        }
    }
}

static void hook_backward(vpd_hook *h, int l, const real *x, const int32_t *tok, const real *dy, real *dx, int N) {
    tc_hook *hk = (tc_hook *)h;
    tc_run *r = hk->r;
    const vpd_layer_info *Li = &r->m.layers[l];
    (void)tok;
    if (Li->embedding) return;
    int b = r->blk_of[l];
    if (b < 0) {
        linear_backward(dx, NULL, NULL, dy, x, Li->W, N, Li->d_in, Li->d_out);
        return;
    }
    if (!r->is_fc[l]) decode_backward(r, b, dy, N); /* the replaced output has no x-gradient */
    else encode_backward(r, b, x, N, dx, &r->loss_sp); /* dz_b is complete: every MLP >= b came first */
}

/* ---- one step ------------------------------------------------------------------------- */
static vpd_status fill_batch(tc_run *r, const vpd_tokens *tk, uint32_t stream, uint64_t step, int B) {
    return vpd_tokens_batch(tk, r->c.seed, stream, step, (int64_t)r->rank * B, B, r->S, r->tok, r->tgt);
}

/* forward and losses on this rank's B examples; grads when train (zeroed first) */
static vpd_status forward_backward(tc_run *r, bool train) {
    int N = r->B * r->S, L = r->L, d = r->d;
    size_t Nd = (size_t)N * d;
    vpd_model *m = &r->m;
    vpd_model_input in = {.B = r->B, .S = r->S, .tokens = r->tok};
    r->loss_main = r->loss_aux = r->loss_sp = 0;
    memset(r->grads, 0, sizeof(real) * r->t->n_params);
    for (int i = 0; i < L; i++) memset(r->dz[i], 0, sizeof(real) * (size_t)N * r->n);
    if (!r->c.kl) {
        r->hook.record = true;
        vpd_model_forward(m, &in, r->logits_q, &r->hook.base);
        for (int i = 0; i < L; i++) encode_train(r, i, r->X[i], N, train);
        for (int j = 0; j < L; j++) {
            decode(r, j, N);
            double s = 0;
            real sc = (real)(2.0 / (double)Nd);
            for (size_t q = 0; q < Nd; q++) {
                double e = (double)r->Yhat[j][q] - (double)r->Y[j][q];
                s += e * e;
                r->dy[q] = (real)(sc * e);
            }
            r->loss_main += s / (double)Nd;
            decode_backward(r, j, r->dy, N);
        }
        for (int i = L - 1; i >= 0; i--) encode_backward(r, i, r->X[i], N, NULL, &r->loss_sp);
    } else {
        vpd_model_forward(m, &in, r->logits_p, NULL);
        kl_target_prepare(r->pp, r->prowc, r->logits_p, N, r->V);
        r->hook.record = false;
        vpd_model_forward(m, &in, r->logits_q, &r->hook.base);
        r->loss_main = kl_forward_prepared(r->qp, r->pp, r->prowc, r->logits_p, r->logits_q, N, r->V);
        memset(r->dlogits, 0, sizeof(real) * (size_t)N * r->V);
        kl_backward(r->dlogits, r->pp, r->qp, N, r->V, 1);
        vpd_model_backward(m, r->dlogits, NULL, NULL, &r->hook.base);
    }
    r->loss_aux = aux_loss(r, N);
    /* metrics of this rank: reconstruction error, L0, fire counts */
    for (int j = 0; j < L; j++) {
        double e2 = 0, y2 = 0;
        double *ys = r->ysum + (size_t)j * d;
        memset(ys, 0, sizeof(double) * d);
        for (int q = 0; q < N; q++) {
            const real *y = r->Y[j] + (size_t)q * d, *yh = r->Yhat[j] + (size_t)q * d;
            for (int c = 0; c < d; c++) {
                double e = (double)yh[c] - (double)y[c];
                e2 += e * e;
                y2 += (double)y[c] * y[c];
                ys[c] += y[c];
            }
        }
        r->err2[j] = e2;
        r->y2[j] = y2;
        r->l0[j] = (double)vpd_transcoder_count_active(r->z[j], (size_t)N * r->n);
    }
    return VPD_OK;
}

/* sum the per-rank metrics; losses become global means (each rank's were means over N rows) */
static void reduce_metrics(tc_run *r) {
    int L = r->L, d = r->d;
    size_t nv = 3 + 3 * (size_t)L + (size_t)L * d;
    double *v = malloc(sizeof(double) * nv);
    VPD_ASSERT(v, "out of memory");
    v[0] = r->loss_main;
    v[1] = r->loss_aux;
    v[2] = r->loss_sp;
    for (int j = 0; j < L; j++) {
        v[3 + j] = r->err2[j];
        v[3 + L + j] = r->y2[j];
        v[3 + 2 * L + j] = r->l0[j];
    }
    memcpy(v + 3 + 3 * L, r->ysum, sizeof(double) * (size_t)L * d);
    vpd_sum_double(v, nv, vpd_comm_world());
    r->loss_main = v[0] / r->world;
    r->loss_aux = v[1] / r->world;
    r->loss_sp = v[2] / r->world;
    double Ng = (double)r->B * r->S * r->world;
    for (int j = 0; j < L; j++) {
        double m2 = 0;
        for (int c = 0; c < d; c++) {
            double mu = v[3 + 3 * L + (size_t)j * d + c] / Ng;
            m2 += mu * mu;
        }
        double var = v[3 + L + j] - Ng * m2;
        r->err2[j] = var > 0 ? v[3 + j] / var : NAN; /* FVU */
        r->y2[j] = v[3 + j] / (Ng * d);              /* MSE per element */
        r->l0[j] = v[3 + 2 * L + j] / Ng;
    }
    free(v);
}

static void update_dead(tc_run *r) {
    int L = r->L, n = r->n, N = r->B * r->S;
    for (int i = 0; i < L; i++) {
        int64_t *f = r->fired + (size_t)i * n;
        memset(f, 0, sizeof(int64_t) * n);
        for (int q = 0; q < N; q++) {
            const real *z = r->z[i] + (size_t)q * n;
            for (int c = 0; c < n; c++) f[c] += z[c] != 0;
        }
    }
    vpd_sum_int64(r->fired, (size_t)L * n, vpd_comm_world());
    for (size_t q = 0; q < (size_t)L * n; q++) {
        r->since_fired[q] = r->fired[q] ? 0 : r->since_fired[q] + r->N_global;
        r->dead[q] = r->since_fired[q] >= r->c.dead_tokens;
    }
}

static double dead_fraction(const tc_run *r, int i) {
    int64_t c = 0;
    for (int q = 0; q < r->n; q++) c += r->dead[(size_t)i * r->n + q];
    return (double)c / r->n;
}

static double optimizer_step(tc_run *r) {
    vpd_dp_mean(r->grads, r->t->n_params, vpd_comm_world());
    if (r->t->act != VPD_TC_JUMPRELU)
        for (int i = 0; i < r->L; i++) memset(r->g.threshold[i], 0, sizeof(real) * r->n);
    tc_dec_project_grad(r->t, &r->g);
    vpd_grad_range gr = {r->grads, r->t->n_params};
    double gn = r->c.clip > 0 ? vpd_clip_grad_norm(&gr, 1, r->c.clip) : vpd_grad_norm(&gr, 1);
    /* BatchTopK's EMA thresholds are not Adam's: keep them out of the update */
    real *keep = NULL;
    if (r->t->act == VPD_TC_BATCHTOPK) {
        keep = r->scratch;
        for (int i = 0; i < r->L; i++) memcpy(keep + (size_t)i * r->n, r->t->threshold[i], sizeof(real) * r->n);
    }
    vpd_adamw_update(r->t->params, r->grads, r->mom_m, r->mom_v, r->t->n_params, r->c.lr, r->c.beta1, r->c.beta2,
                     r->c.adam_eps, 0, (int64_t)r->step + 1);
    if (keep)
        for (int i = 0; i < r->L; i++) memcpy(r->t->threshold[i], keep + (size_t)i * r->n, sizeof(real) * r->n);
    tc_dec_normalise(r->t);
    if (r->t->act == VPD_TC_JUMPRELU)
        for (int i = 0; i < r->L; i++)
            for (int q = 0; q < r->n; q++)
                if (r->t->threshold[i][q] < 0) r->t->threshold[i][q] = 0;
    return gn;
}

/* ---- checkpoints ------------------------------------------------------------------------ */
static void path_in(const tc_run *r, const char *name, char *out, size_t size) {
    snprintf(out, size, "%s/%s", r->o->run_dir, name);
}

static vpd_status write_checkpoint(tc_run *r) {
    vpd_status s = VPD_OK;
    if (r->rank == 0) {
        char p[1200], tmp[1300];
        path_in(r, "checkpoint.h5", p, sizeof p);
        snprintf(tmp, sizeof tmp, "%s.tmp-%ld", p, (long)getpid());
        vpd_h5 f;
        s = vpd_h5_create(&f, tmp);
        if (s == VPD_OK) {
            int64_t np[1] = {(int64_t)r->t->n_params}, nd[1] = {(int64_t)r->L * r->n};
            s = vpd_h5_write_real(&f, "/params", r->t->params, 1, np);
            if (s == VPD_OK) s = vpd_h5_write_real(&f, "/adam_m", r->mom_m, 1, np);
            if (s == VPD_OK) s = vpd_h5_write_real(&f, "/adam_v", r->mom_v, 1, np);
            if (s == VPD_OK) s = vpd_h5_write_i64(&f, "/since_fired", r->since_fired, 1, nd);
            if (s == VPD_OK) s = vpd_h5_set_attr_int(&f, "/", "step", r->step);
            if (s == VPD_OK) s = vpd_h5_set_attr_str(&f, "/", "config", r->config_text);
            vpd_status c = vpd_h5_close(&f);
            if (s == VPD_OK) s = c;
        }
        if (s == VPD_OK && rename(tmp, p) != 0) s = vpd_error(VPD_ERR_IO, "cannot rename %s: %s", tmp, strerror(errno));
        if (s != VPD_OK) unlink(tmp);
        else vpd_info("checkpoint at step %d: %s", r->step, p);
    }
    return vpd_all_agree(s, vpd_comm_world());
}

static vpd_status read_checkpoint(tc_run *r) {
    char p[1200];
    path_in(r, "checkpoint.h5", p, sizeof p);
    vpd_h5 f;
    vpd_status s = vpd_h5_open(&f, p, false);
    if (s != VPD_OK) return vpd_error_context(s, "--resume %s: no checkpoint to continue from", r->o->run_dir);
    int64_t np[1] = {(int64_t)r->t->n_params}, nd[1] = {(int64_t)r->L * r->n}, step = 0;
    s = vpd_h5_read_real(&f, "/params", r->t->params, 1, np);
    if (s == VPD_OK) s = vpd_h5_read_real(&f, "/adam_m", r->mom_m, 1, np);
    if (s == VPD_OK) s = vpd_h5_read_real(&f, "/adam_v", r->mom_v, 1, np);
    if (s == VPD_OK) s = vpd_h5_read_i64(&f, "/since_fired", r->since_fired, 1, nd);
    if (s == VPD_OK) s = vpd_h5_get_attr_int(&f, "/", "step", &step);
    vpd_h5_close(&f);
    if (s != VPD_OK) return vpd_error_context(s, "reading checkpoint %s (does the config match the run's?)", p);
    r->step = (int)step;
    for (size_t q = 0; q < (size_t)r->L * r->n; q++) r->dead[q] = r->since_fired[q] >= r->c.dead_tokens;
    return VPD_OK;
}

/* ---- evaluation: the inference rule on eval_batches held-out batches ------------------ */
static vpd_status evaluate(tc_run *r, double *fvu, double *l0, double *mse) {
    int L = r->L, d = r->d;
    int EB = r->c.eval_batch_size / r->world, N = EB * r->S;
    double e2[MAXL] = {0}, y2[MAXL] = {0}, act[MAXL] = {0};
    double *ys = calloc((size_t)L * d, sizeof(double));
    if (!ys) return vpd_error(VPD_ERR_MEM, "eval sums");
    int saveB = r->B;
    r->B = EB;
    vpd_status s = VPD_OK;
    for (int b = 0; b < r->c.eval_batches && s == VPD_OK; b++) {
        s = fill_batch(r, &r->val, VPD_DATA_EVAL, (uint64_t)b, EB);
        if (s != VPD_OK) break;
        vpd_model_input in = {.B = EB, .S = r->S, .tokens = r->tok};
        r->hook.record = true;
        vpd_model_forward(&r->m, &in, r->logits_q, &r->hook.base);
        for (int i = 0; i < L; i++) vpd_transcoder_encode(r->t, i, r->X[i], N, r->z[i]);
        for (int j = 0; j < L; j++) {
            decode(r, j, N);
            for (size_t q = 0; q < (size_t)N * d; q++) {
                double e = (double)r->Yhat[j][q] - (double)r->Y[j][q];
                e2[j] += e * e;
                y2[j] += (double)r->Y[j][q] * r->Y[j][q];
                ys[(size_t)j * d + q % d] += r->Y[j][q];
            }
            act[j] += (double)vpd_transcoder_count_active(r->z[j], (size_t)N * r->n);
        }
    }
    r->B = saveB;
    vpd_sum_double(e2, (size_t)L, vpd_comm_world());
    vpd_sum_double(y2, (size_t)L, vpd_comm_world());
    vpd_sum_double(act, (size_t)L, vpd_comm_world());
    vpd_sum_double(ys, (size_t)L * d, vpd_comm_world());
    double Ng = (double)r->c.eval_batches * r->c.eval_batch_size * r->S;
    for (int j = 0; j < L; j++) {
        double m2 = 0;
        for (int c = 0; c < d; c++) m2 += (ys[(size_t)j * d + c] / Ng) * (ys[(size_t)j * d + c] / Ng);
        fvu[j] = e2[j] / (y2[j] - Ng * m2);
        mse[j] = e2[j] / (Ng * d);
        l0[j] = act[j] / Ng;
    }
    free(ys);
    return vpd_all_agree(s, vpd_comm_world());
}

/* ---- the run directory ---------------------------------------------------------------- */
static const char *const run_files[] = {"transcoder.h5", "checkpoint.h5", "metrics.jsonl", "eval.json", "config.yaml", NULL};

/* rank 0: metrics.jsonl, new or (resumed at r->step) without the records of steps >= r->step,
 * which the resumed run logs again */
static vpd_status open_metrics(tc_run *r) {
    char p[1200];
    path_in(r, "metrics.jsonl", p, sizeof p);
    if (r->o->resume) VPD_TRY(vpd_metrics_truncate(p, r->step));
    r->metrics = fopen(p, r->o->resume ? "a" : "w");
    if (!r->metrics) return vpd_error(VPD_ERR_IO, "cannot write %s: %s", p, strerror(errno));
    return VPD_OK;
}

static vpd_status prepare_run_dir(tc_run *r) {
    vpd_status s = VPD_OK;
    if (r->rank == 0) {
        s = vpd_mkdirs(r->o->run_dir);
        char list[1024] = "", p[1200];
        for (int i = 0; s == VPD_OK && run_files[i]; i++) {
            path_in(r, run_files[i], p, sizeof p);
            if (exists(p)) {
                if (list[0]) strncat(list, ", ", sizeof list - strlen(list) - 1);
                strncat(list, run_files[i], sizeof list - strlen(list) - 1);
            }
        }
        if (s == VPD_OK && list[0] && !r->o->resume) {
            if (!r->o->force)
                s = vpd_error(VPD_ERR_CONFIG,
                              "run directory %s already holds a run (%s): use --resume %s to continue it, --force to start over "
                              "(removes those files), or another --out",
                              r->o->run_dir, list, r->o->run_dir);
            else {
                vpd_warn("--force: removing the earlier run's files from %s: %s", r->o->run_dir, list);
                for (int i = 0; run_files[i]; i++) {
                    path_in(r, run_files[i], p, sizeof p);
                    unlink(p);
                }
            }
        }
        if (s == VPD_OK && !r->o->resume) {
            path_in(r, "config.yaml", p, sizeof p);
            s = vpd_config_write(r->root, p);
        }
        if (s == VPD_OK && !r->o->resume) s = open_metrics(r);
    }
    return vpd_all_agree(s, vpd_comm_world());
}

static void fmt_eta(char *buf, size_t n, double s) {
    long t = s > 0 && s < 1e9 ? (long)(s + 0.5) : 0;
    if (t < 60) snprintf(buf, n, "%lds", t);
    else if (t < 3600) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
}

static void write_metrics(tc_run *r, double gn, double secs) {
    FILE *f = r->metrics;
    if (!f) return;
    fprintf(f, "{\"step\": %d, \"train/loss/total\": %.9g, \"train/loss/%s\": %.9g, \"train/loss/aux\": %.9g, "
               "\"train/loss/sparsity\": %.9g",
            r->step, r->loss_main + r->loss_aux + r->loss_sp, r->c.kl ? "kl" : "mse", r->loss_main, r->loss_aux, r->loss_sp);
    for (int j = 0; j < r->L; j++)
        fprintf(f, ", \"train/fvu/h.%d.mlp\": %.9g, \"train/l0/h.%d.mlp\": %.9g, \"train/dead/h.%d.mlp\": %.9g", j, r->err2[j],
                j, r->l0[j], j, dead_fraction(r, j));
    fprintf(f, ", \"train/grad_norm\": %.9g, \"train/lr\": %.9g, \"time/step_seconds\": %.6g}\n", gn, r->c.lr, secs);
    fflush(f);
}

/* ---- the command ------------------------------------------------------------------------ */
static void run_free(tc_run *r) {
    if (r->metrics) fclose(r->metrics);
    if (r->have_train) vpd_tokens_close(&r->train);
    if (r->have_val) vpd_tokens_close(&r->val);
    if (r->have_model) vpd_model_free(&r->m);
    vpd_transcoder_free(r->t);
    free(r->g.W_dec);
    vpd_free(r->grads); vpd_free(r->mom_m); vpd_free(r->mom_v);
    for (int i = 0; i < MAXL; i++) {
        vpd_free(r->Xbuf[i]); vpd_free(r->Y[i]); vpd_free(r->Yhat[i]); vpd_free(r->pre[i]);
        vpd_free(r->z[i]); vpd_free(r->dz[i]); vpd_free(r->zaux[i]);
    }
    vpd_free(r->dpre); vpd_free(r->dy); vpd_free(r->ehat); vpd_free(r->scratch); vpd_free(r->cand); vpd_free(r->gathered);
    vpd_free(r->tok); vpd_free(r->tgt); vpd_free(r->logits_p); vpd_free(r->logits_q); vpd_free(r->pp); vpd_free(r->qp);
    vpd_free(r->dlogits); vpd_free(r->prowc); vpd_free(r->since_fired); vpd_free(r->fired); vpd_free(r->dead);
    vpd_free(r->ysum);
    free(r->blk_of);
    free(r->is_fc);
    free(r->config_text);
    vpd_config_free(r->root);
}

/* debug_dump_step (one rank): the step's tokens, MLP inputs and outputs (objective kl: those
 * of the spliced forward), the dead mask it used, the parameters before and after its update,
 * the raw gradients and the loss terms, for tools/reference/reference_transcoder.py */
static vpd_status dump_begin(tc_run *r, vpd_h5 *f) {
    int N = r->B * r->S;
    int64_t np[1] = {(int64_t)r->t->n_params}, nd[2] = {N, r->d}, nl[1] = {(int64_t)r->L * r->n};
    VPD_TRY(vpd_h5_create(f, r->c.dump));
    VPD_TRY(vpd_h5_write_real(f, "/params_before", r->t->params, 1, np));
    VPD_TRY(vpd_h5_write_real(f, "/adam_m_before", r->mom_m, 1, np));
    VPD_TRY(vpd_h5_write_real(f, "/adam_v_before", r->mom_v, 1, np));
    int32_t *dead = malloc(sizeof(int32_t) * (size_t)nl[0]);
    if (!dead) return vpd_error(VPD_ERR_MEM, "dump");
    for (int64_t q = 0; q < nl[0]; q++) dead[q] = r->dead[q];
    vpd_status s = vpd_h5_write_i32(f, "/dead", dead, 1, nl);
    free(dead);
    VPD_TRY(s);
    (void)nd;
    return VPD_OK;
}

static vpd_status dump_end(tc_run *r, vpd_h5 *f, const real *grads) {
    int N = r->B * r->S;
    int64_t np[1] = {(int64_t)r->t->n_params}, nd[2] = {N, r->d}, nL[1] = {r->L};
    for (int i = 0; i < r->L; i++) {
        char p[64];
        snprintf(p, sizeof p, "/x_%d", i);
        VPD_TRY(vpd_h5_write_real(f, p, r->X[i], 2, nd));
        snprintf(p, sizeof p, "/y_%d", i);
        VPD_TRY(vpd_h5_write_real(f, p, r->Y[i], 2, nd));
        int64_t nz[2] = {N, r->n};
        snprintf(p, sizeof p, "/z_%d", i);
        VPD_TRY(vpd_h5_write_real(f, p, r->z[i], 2, nz));
        snprintf(p, sizeof p, "/zaux_%d", i);
        VPD_TRY(vpd_h5_write_real(f, p, r->zaux[i], 2, nz));
    }
    int64_t nt[2] = {r->B, r->S};
    VPD_TRY(vpd_h5_write_i32(f, "/tokens", r->tok, 2, nt));
    VPD_TRY(vpd_h5_write_real(f, "/grads", grads, 1, np));
    VPD_TRY(vpd_h5_write_real(f, "/batch_threshold", r->last_thr, 1, nL));
    VPD_TRY(vpd_h5_write_real(f, "/params_after", r->t->params, 1, np));
    VPD_TRY(vpd_h5_set_attr_double(f, "/", "loss_main", r->loss_main));
    VPD_TRY(vpd_h5_set_attr_double(f, "/", "loss_aux", r->loss_aux));
    VPD_TRY(vpd_h5_set_attr_double(f, "/", "loss_sparsity", r->loss_sp));
    VPD_TRY(vpd_h5_set_attr_int(f, "/", "step", r->step));
    VPD_TRY(vpd_h5_set_attr_str(f, "/", "config", r->config_text));
    return vpd_h5_close(f);
}

static vpd_status train_loop(tc_run *r, int stop_after, bool *stopped) {
    const tc_cfg *c = &r->c;
    bool tty = r->rank == 0 && !r->o->quiet && isatty(STDERR_FILENO);
    int first = r->step;
    double t0 = vpd_wtime(), t_print = 0;
    *stopped = false;
    while (r->step < c->steps) {
        double ts = vpd_wtime();
        VPD_TRY(vpd_all_agree(fill_batch(r, &r->train, VPD_DATA_TRAIN, (uint64_t)r->step, r->B), vpd_comm_world()));
        bool dump = r->step == c->dump_step;
        if (dump && r->world != 1)
            return vpd_error(VPD_ERR_CONFIG, "debug_dump_step: run it on one rank (no mpiexec), not %d", r->world);
        vpd_h5 df;
        if (dump) VPD_TRY(dump_begin(r, &df));
        VPD_TRY(forward_backward(r, true));
        reduce_metrics(r);
        real *graw = NULL;
        if (dump) {
            graw = vpd_malloc(sizeof(real) * r->t->n_params, "dump gradients");
            if (!graw) return VPD_ERR_MEM;
            memcpy(graw, r->grads, sizeof(real) * r->t->n_params);
        }
        double total = r->loss_main + r->loss_aux + r->loss_sp;
        if (!isfinite(total))
            return vpd_error(VPD_ERR_VALUE, "transcoder: loss is %g at step %d: lower lr (now %g)", total, r->step, c->lr);
        double gn = optimizer_step(r);
        if (dump) {
            vpd_status ds = dump_end(r, &df, graw);
            vpd_free(graw);
            VPD_TRY(ds);
        }
        update_dead(r);
        double secs = vpd_wtime() - ts;
        bool log_now = r->step % c->log_freq == 0 || r->step == c->steps - 1;
        if (log_now) write_metrics(r, gn, secs);
        r->step++;
        if (r->rank == 0 && !r->o->quiet) {
            double l0 = 0;
            for (int j = 0; j < r->L; j++) l0 += r->l0[j];
            double now = vpd_wtime(), el = now - t0;
            int done = r->step - first;
            char etas[32];
            fmt_eta(etas, sizeof etas, el / done * (c->steps - r->step));
            if (tty) {
                if (now - t_print > 0.2 || r->step == c->steps) {
                    fprintf(stderr, "\r[vpd] step %d/%d  loss %.4e  L0 %.2f  %.1f ms/step  ETA %s   ", r->step - 1, c->steps, total,
                            l0, 1e3 * el / done, etas);
                    t_print = now;
                    if (r->step == c->steps) fputc('\n', stderr);
                }
            } else if (log_now) {
                vpd_info("step %d/%d  loss %.4e  L0 %.2f  %.1f ms/step  ETA %s", r->step - 1, c->steps, total, l0, 1e3 * el / done,
                         etas);
            }
        }
        int sig = vpd_max_int(vpd_signal_pending(), vpd_comm_world());
        bool stop = sig != 0 || (stop_after > 0 && r->step >= stop_after && r->step < c->steps);
        if (stop || (c->ckpt_every > 0 && r->step % c->ckpt_every == 0 && r->step < c->steps)) VPD_TRY(write_checkpoint(r));
        if (stop) {
            *stopped = true;
            vpd_info("stopped at step %d of %d (%s): continue with --resume %s", r->step, c->steps,
                     sig ? "signal" : "--stop-after", r->o->run_dir);
            return VPD_OK;
        }
    }
    double dt = vpd_wtime() - t0;
    if (r->step > first) vpd_info("trained %d steps in %.2f s (%.3f s/step)", r->step - first, dt, dt / (r->step - first));
    return VPD_OK;
}

vpd_status vpd_transcoder_train(const vpd_tc_train_opts *o, bool *interrupted) {
    *interrupted = false;
    tc_run *r = calloc(1, sizeof *r);
    if (!r) return vpd_error(VPD_ERR_MEM, "transcoder run");
    r->o = o;
    r->rank = vpd_world_rank();
    r->world = vpd_world_size();
    vpd_status s = vpd_config_load(o->config_path, &r->root);
    for (int i = 0; s == VPD_OK && i < o->n_sets; i++) s = vpd_config_set(r->root, o->sets[i]);
    if (s == VPD_OK) s = read_config(r);
    size_t len = 0;
    if (s == VPD_OK) s = vpd_config_emit(r->root, &r->config_text, &len);
    if (s == VPD_OK) s = setup(r);
    s = vpd_all_agree(s, vpd_comm_world());
    if (s == VPD_OK) s = prepare_run_dir(r);
    if (s == VPD_OK) {
        init_params(r);
        if (o->resume) {
            s = read_checkpoint(r);
            if (s == VPD_OK && r->rank == 0) s = open_metrics(r);
        } else if (r->c.b_dec_mean) s = init_b_dec(r);
        s = vpd_all_agree(s, vpd_comm_world());
    }
    if (s == VPD_OK) {
        const tc_cfg *c = &r->c;
        char act[96];
        if (c->act == VPD_TC_TOPK || c->act == VPD_TC_BATCHTOPK) snprintf(act, sizeof act, "%s k=%d", vpd_tc_act_name(c->act), c->k);
        else snprintf(act, sizeof act, "%s coeff %g", vpd_tc_act_name(c->act), c->sparsity);
        vpd_info("transcoder %s on %d MLPs of %s: %d latents each (%zu parameters), %s, objective %s, %d steps x %d x %d tokens "
                 "(%d rank%s), lr %g, seed %llu%s",
                 vpd_tc_kind_name(c->kind), r->L, c->target, c->n_latent, r->t->n_params, act, c->kl ? "kl" : "mse", c->steps,
                 c->batch_size, r->S, r->world, r->world > 1 ? "s" : "", c->lr, (unsigned long long)c->seed,
                 o->resume ? " (resumed)" : "");
        if (o->resume) vpd_info("resume: continuing at step %d of %d", r->step, c->steps);
        vpd_signals_install();
        bool stopped = false;
        s = train_loop(r, o->stop_after, &stopped);
        s = vpd_all_agree(s, vpd_comm_world());
        if (s == VPD_OK && stopped) {
            *interrupted = vpd_max_int(vpd_signal_pending() != 0, vpd_comm_world()) != 0;
            run_free(r);
            free(r);
            return VPD_OK;
        }
    }
    if (s == VPD_OK && r->have_val && r->c.eval_batches > 0) {
        double fvu[MAXL], l0[MAXL], mse[MAXL];
        s = evaluate(r, fvu, l0, mse);
        if (s == VPD_OK && r->rank == 0) {
            char p[1200];
            path_in(r, "eval.json", p, sizeof p);
            FILE *f = fopen(p, "w");
            if (f) {
                fprintf(f, "{\"tokens\": %lld", (long long)r->c.eval_batches * r->c.eval_batch_size * r->S);
                for (int j = 0; j < r->L; j++) {
                    fprintf(f, ", \"fvu/h.%d.mlp\": %.9g, \"mse/h.%d.mlp\": %.9g, \"l0/h.%d.mlp\": %.9g, \"dead/h.%d.mlp\": %.9g", j,
                            fvu[j], j, mse[j], j, l0[j], j, dead_fraction(r, j));
                    vpd_info("eval h.%d.mlp: FVU %.4f  MSE %.4e  L0 %.2f  dead %.3f (inference rule, %d held-out tokens)", j, fvu[j],
                             mse[j], l0[j], dead_fraction(r, j), r->c.eval_batches * r->c.eval_batch_size * r->S);
                }
                fprintf(f, "}\n");
                fclose(f);
            }
        }
    }
    if (s == VPD_OK && r->rank == 0) {
        char p[1200];
        path_in(r, "transcoder.h5", p, sizeof p);
        s = vpd_transcoder_save(r->t, p, r->c.target, r->c.kl ? "kl" : "mse", r->step, r->config_text);
        if (s == VPD_OK) vpd_info("wrote %s", p);
    }
    s = vpd_all_agree(s, vpd_comm_world());
    run_free(r);
    free(r);
    return s;
}
