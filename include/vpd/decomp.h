/* vpd decomp: the decomposition of a target model (VPD_METHOD.md §1–§5).
 *
 * A vpd_decomp holds, for every decomposed layer (sorted by strcmp of its name, the
 * order global CI functions and the RNG use), its components V, U and Δ; one flat
 * block of component parameters (all V and U) with its gradient; the CI function (its
 * own flat block); and every per-step buffer, allocated once for the local batch.
 * Its fields are grouped by lifetime (as llm.c's ParameterTensors / ActivationTensors):
 *   (top level)  the model: cfg, target, layers … — read-only after create; and `step`
 *   d->params    trained parameters: flat component block + gradient, tied scratch, CI fn
 *   d->grid      this rank's dp × cp place (communicators, sizes, ranks) — fixed at create
 *   d->batch     batch geometry (fixed at create) and this step's input (every step)
 *   d->act       per-step activations: target output, CI z / g and their gradients
 *   d->pass      per-pass buffers: masks, sources, routing, masked output, workspace
 *   d->loss      state losses keep across steps (persistent PGD, annealed p)
 *   d->opt       AdamW state of the two parameter blocks (moments in the trainer's buffer)
 * (tools/dev/regroup_decomp.py rewrites code written against the old flat field names.)
 *
 * One training step (trainer.c) runs, in the order of §5: schedules → Δ → target
 * forward caching each layer's input → CI forward → PPGD warmup → losses (each a
 * forward/backward of the masked model, accumulating dU, dV and ∂/∂g) → CI backward →
 * gradient allreduce → PPGD ascent → logging → clip → AdamW.
 *
 * Legend: B local examples, S positions (1 for toy models), N = B·S rows, L decomposed
 * layers, C_l subcomponents of layer l, ΣC = Σ_l C_l. Buffers over all layers are
 * layer-major blocks: layer l's [N, C_l] block (contiguous, row stride C_l) starts at
 * element N·c_off[l]; per-layer-per-row buffers [L, N] start layer l at l·N. */
#ifndef VPD_DECOMP_H
#define VPD_DECOMP_H

#include <mpi.h>

#include "vpd/ci.h"
#include "vpd/comm.h"
#include "vpd/components.h"
#include "vpd/core.h"
#include "vpd/models.h"
#include "vpd/optim.h"

/* ---- configuration ------------------------------------------------------------------ */
typedef enum {
    VPD_LOSS_FAITHFULNESS = 0,
    VPD_LOSS_IMPORTANCE_MINIMALITY,
    VPD_LOSS_STOCHASTIC_RECON,
    VPD_LOSS_STOCHASTIC_RECON_LAYERWISE,
    VPD_LOSS_STOCHASTIC_RECON_SUBSET,
    VPD_LOSS_CI_MASKED_RECON,
    VPD_LOSS_CI_MASKED_RECON_SUBSET,
    VPD_LOSS_CI_MASKED_RECON_LAYERWISE,
    VPD_LOSS_UNMASKED_RECON,
    VPD_LOSS_STOCHASTIC_HIDDEN_ACTS_RECON,
    VPD_LOSS_PGD_RECON,
    VPD_LOSS_PGD_RECON_SUBSET,
    VPD_LOSS_PGD_RECON_LAYERWISE,
    VPD_LOSS_PPGD_RECON,
    VPD_LOSS_PPGD_RECON_SUBSET,
    VPD_LOSS_KIND_COUNT
} vpd_loss_kind;

/* spd classname of each kind ("FaithfulnessLoss", ...) and the reverse lookup */
const char *vpd_loss_classname(vpd_loss_kind k);
vpd_status vpd_loss_kind_parse(const char *classname, vpd_loss_kind *out);

typedef enum { VPD_OUT_MSE = 0, VPD_OUT_KL = 1 } vpd_output_loss;
typedef enum { VPD_PGD_INIT_RANDOM = 0, VPD_PGD_INIT_ONES, VPD_PGD_INIT_ZEROES } vpd_pgd_init;
typedef enum { VPD_SCOPE_UNIQUE_PER_DATAPOINT = 0, VPD_SCOPE_SHARED_ACROSS_BATCH } vpd_pgd_scope;
typedef enum {
    VPD_PPGD_SINGLE_SOURCE = 0,
    VPD_PPGD_BROADCAST_ACROSS_BATCH,
    VPD_PPGD_REPEAT_ACROSS_BATCH,
    VPD_PPGD_PER_BATCH_PER_POSITION
} vpd_ppgd_scope;
typedef enum { VPD_PPGD_SIGN = 0, VPD_PPGD_ADAM = 1 } vpd_ppgd_optimizer;

typedef struct {
    vpd_loss_kind kind;
    double coeff;
    /* ImportanceMinimality */
    double pnorm, beta, eps;
    double p_anneal_start_frac, p_anneal_end_frac, p_anneal_final_p;
    bool has_p_anneal_final_p;
    /* ...Subset: routing */
    vpd_routing_kind routing;
    double routing_p;
    /* PGD */
    vpd_pgd_init pgd_init;
    double step_size;
    int n_steps;
    vpd_pgd_scope mask_scope;
    /* persistent PGD */
    vpd_ppgd_optimizer ppgd_opt;
    vpd_schedule ppgd_lr;
    double ppgd_beta1, ppgd_beta2, ppgd_eps;
    vpd_ppgd_scope ppgd_scope;
    int ppgd_n_sources;
    bool ppgd_sigmoid;
    int ppgd_n_warmup_steps;
} vpd_loss_cfg;

#define VPD_MAX_LOSSES 32
#define VPD_MAX_MODULE_PATTERNS 64

typedef struct {
    char pattern[128];
    int C;
} vpd_module_info;

typedef struct {
    /* method */
    uint64_t seed;
    int n_mask_samples;
    vpd_ci_type ci_type;
    int ci_hidden[VPD_CI_MAX_HIDDEN];
    int ci_n_hidden;
    vpd_ci_transformer_cfg ci_transformer; /* global_shared_transformer only */
    vpd_sampling sampling;
    vpd_sigmoid_fn sigmoid_lower, sigmoid_upper;
    char sigmoid_type[32];
    int n_module_info;
    vpd_module_info module_info[VPD_MAX_MODULE_PATTERNS];
    bool use_delta_component;
    int n_losses;
    vpd_loss_cfg losses[VPD_MAX_LOSSES];
    vpd_output_loss output_loss;
    bool output_loss_given; /* false: chosen from the target (param-decomp's configs leave it out:
                               kl for language models, mse for toy models) */
    /* training */
    int steps, batch_size;
    vpd_schedule lr_components, lr_ci;
    double grad_clip_components, grad_clip_ci; /* <= 0: no clipping */
    int faithfulness_warmup_steps;
    double faithfulness_warmup_lr, faithfulness_warmup_weight_decay;
    /* logging / evaluation */
    int train_log_freq, eval_freq, n_eval_steps, eval_batch_size, save_freq;
    double ci_alive_threshold;
    /* task / data (toy models) */
    double feature_probability;
    char data_generation_type[48];
    /* LM data (token binaries) */
    char train_tokens[1024], eval_tokens[1024];
    int max_seq_len;
    /* initialisation of V, U: false = Kaiming-style random (§1); true = `init: svd` (vpd
     * extension): the top singular triplets of W by ScaLAPACK, the rest random × svd_rest_scale */
    bool init_svd;
    double svd_rest_scale;
    /* vpd sections */
    char target_dir[1024];
    char out_dir[1024];
    int component_parallel;
} vpd_decomp_config;

/* Defaults of the reference implementation (spd Config field defaults). */
void vpd_decomp_config_defaults(vpd_decomp_config *cfg);
/* Read either schema (spd flat / param-decomp `pd:`) from a loaded config tree; unknown keys
 * are errors with their line (decomp_config.c). */
struct vpd_config;
vpd_status vpd_decomp_config_read(struct vpd_config *root, vpd_decomp_config *cfg);

/* ---- state ---------------------------------------------------------------------------- */
typedef struct {
    char name[64];
    int model_layer;   /* index into target->layers */
    int C, d_in, d_out; /* C: subcomponents held by this rank (C_total / cp) */
    int C_total, c0;   /* the layer's C; this rank holds [c0, c0 + C) */
    int c_off_total;   /* Σ of C_total over earlier layers (the CI function's full output) */
    bool embedding;
    int c_off;         /* Σ of C over earlier layers: block offset N·c_off in [ΣC·N] buffers */
    int tied_to;       /* -1, or the decomposed layer whose parameters this one uses transposed
                          (TMS: linear2 = linear1ᵀ, so V₂ = U₁ᵀ, U₂ = V₁ᵀ) */
    size_t numel_W;    /* d_in·d_out: the faithfulness denominator counts it */
    vpd_components comp;
    real *dV, *dU;     /* gradient of this layer's V, U (for a tied layer: scratch folded
                          into its source's gradient by vpd_decomp_fold_tied_grads) */
    real *x_in;        /* [N, d_in] the target's input to this layer this step (linear) */
    real *y_target;    /* [N, d_out] the target's output of this layer (hidden-acts loss) */
} vpd_layer_state;

typedef struct vpd_ppgd_state vpd_ppgd_state;
typedef struct vpd_decomp vpd_decomp;

/* Fixed random draws (vpd parity, tests): when d->fixed is set, every draw a loss would take
 * from the RNG is asked of these callbacks instead. Each fills the same buffers the RNG
 * would and returns VPD_OK, or an error naming what is missing.
 *   stochastic(loss, sample):   d->pass.src (all layers) and d->pass.srcdelta for mask sample `sample`
 *   routing(loss, draw):        d->pass.route [L, N] for routing draw `draw` of the loss
 *   pgd_init(loss, restart):    initial adversarial sources of one PGD run: d->pass.src and
 *                               d->pass.srcdelta rows (unique_per_datapoint) or, for
 *                               shared_across_batch, `shared` ([ΣC + L]: layer k's C_k + 1
 *                               values at c_off[k] + k)
 * (restart = the replaced layer for PGDReconLayerwise, else 0). */
typedef struct {
    void *ctx;
    vpd_status (*stochastic)(void *ctx, vpd_decomp *d, int loss, int sample);
    vpd_status (*routing)(void *ctx, vpd_decomp *d, int loss, int draw);
    vpd_status (*pgd_init)(void *ctx, vpd_decomp *d, int loss, int restart, real *shared);
} vpd_fixed_draws;

/* The groups of a vpd_decomp, by lifetime (the header comment's legend: B, S, N, L, C_l, ΣC).
 * Every buffer of `act` and `pass` is carved once from d->arena for the local batch.
 *
 * params: the trained parameters — one flat block of every untied layer's V, U (per-layer
 * views in d->layers[k].comp, gradients in .dV/.dU) and the CI function (its own flat block
 * and table of named tensors). Changed only by the optimiser, warmup and checkpoint loads. */
typedef struct {
    size_t n_comp_params;
    real *comp_params, *comp_grads; /* [n_comp_params] all untied V, U / their gradient */
    real *tied_buf;                 /* materialised V, U, dV, dU of tied layers */
    vpd_ci_fn *ci;
} vpd_decomp_params;

/* grid: this rank's place in the dp × cp layout (copied from the vpd_layout given to
 * vpd_decomp_create, which owns the communicators and must outlive d). Fixed at create. */
typedef struct {
    MPI_Comm dp_comm;   /* data-parallel replicas: ranks holding the same component blocks */
    int dp_size, dp_rank;
    MPI_Comm cp_comm;   /* component-parallel group: ranks sharing a batch, each one block of
                           every layer's subcomponents (MPI_COMM_SELF when cp = 1) */
    int cp_size, cp_rank;
} vpd_decomp_grid;

/* batch: the geometry of this rank's batch (fixed at create: vpd_batch_geom's B, S, N,
 * example0, B_global) and this step's input (refilled by vpd_trainer_load_batch). */
typedef struct {
    int B, S, N;
    int64_t example0;   /* global index of the first local example */
    int B_global;
    int out_numel;      /* elements of one model output for the local batch */
    vpd_model_input input;
    real *x_batch;      /* [B, n_features] toy input */
    int32_t *tok_in;    /* [B, S] LM tokens */
} vpd_decomp_batch;

/* act: per-step activations — written once per step (target forward, CI forward) and read
 * by every loss of the step; the ∂/∂g buffers accumulate over the step's losses. */
typedef struct {
    real *target_out;    /* [out_numel] f(x) */
    real *target_probs;  /* [N, vocab] softmax f(x) for KL (LM) */
    double *target_rowc; /* [3N] per row max, log-sum-exp, Σ p of target_probs (kl_target_prepare) */
    /* CI buffers [ΣC·N] */
    real *ci_in;         /* [ΣC·N] CI inputs that are component activations (mlp / embeddings) */
    bool ci_in_current;  /* ci_in holds x_in·V of this step's batch and the current V: set by
                            vpd_decomp_ci_forward, cleared by vpd_decomp_target_forward and
                            vpd_decomp_refresh; masked passes then reuse it for their first layer */
    real *z, *zp;        /* [ΣC·N] pre-sigmoid (zp: binomial-perturbed input of the lower sigmoid) */
    real *g_lower, *g_upper;   /* [ΣC·N] */
    real *dg_lower, *dg_upper; /* [ΣC·N] ∂/∂g accumulated over the step's losses */
    real *dz, *dci_in;         /* [ΣC·N] */
    real *z_full, *dz_full; /* [ΣC_total·N] CI output / gradient (cp > 1 only) */
    real *tmp_dx;        /* [N, max d_in] partial input gradient (cp > 1 only) */
} vpd_decomp_act;

/* pass: per-pass buffers — overwritten by every masked forward/backward (vpd_masked_pass,
 * vpd_recon_pass) and its mask sampling. */
typedef struct {
    real *a;                    /* [ΣC·N] component activations of the current pass */
    real *mask, *dmask;         /* [ΣC·N] */
    real *src, *dsrc;           /* [ΣC·N] stochastic or adversarial sources r */
    real *srcdelta, *dsrcdelta; /* [L, N] delta sources r_Δ */
    uint8_t *route;             /* [L, N] */
    real *out, *dout;           /* [out_numel] */
    real *q_probs;              /* [N, vocab] (LM KL) */
    real *work;                 /* [work_size] components workspace */
    size_t work_size;
    real *tmp_layer;            /* [N, max d_out] scratch */
} vpd_decomp_pass;

/* loss: state the losses keep across steps. */
typedef struct {
    /* persistent PGD, one per PPGD loss (index = loss index; NULL otherwise) */
    vpd_ppgd_state *ppgd[VPD_MAX_LOSSES];
    double im_p_current; /* the importance-minimality p of this step (annealed) */
    real *im_pow;        /* [N, C_sum] (g + eps)^p of the forward, reused by its backward (allocated
                            at the first evaluation with a general p, kept; freed by vpd_decomp_free) */
} vpd_decomp_loss;

/* opt: AdamW state of the two parameter blocks (moments in the trainer's adam_buf); kept
 * here because the checkpoint table (state.c: vpd_decomp_state_table) is built from d. */
typedef struct {
    vpd_adamw adam_comp, adam_ci;
} vpd_decomp_opt;

struct vpd_decomp {
    /* model: read-only after create */
    const vpd_decomp_config *cfg;
    const vpd_fixed_draws *fixed; /* NULL: draws come from the counter-based RNG */
    vpd_model *target;
    int L;
    vpd_layer_state *layers; /* strcmp order */
    int *model_to_decomp;    /* [target->n_layers] -> decomposed index or -1 */
    int C_sum;
    int C_sum_total;         /* Σ C_total: width of the CI function's output */

    int step;                /* training step: names every random draw (vpd_decomp_draw) */

    vpd_decomp_params params;
    vpd_decomp_grid grid;
    vpd_decomp_batch batch;
    vpd_decomp_act act;
    vpd_decomp_pass pass;
    vpd_decomp_loss loss;
    vpd_decomp_opt opt;
    vpd_arena arena;         /* owns every buffer of act and pass (and layers[k].x_in, y_target) */
};

/* output_loss when the config does not name one: kl for a LlamaSimpleMLP, else mse */
void vpd_decomp_config_default_output_loss(vpd_decomp_config *cfg, const vpd_model *target);

/* Build the decomposition of `target` for this config: select layers by module_info
 * patterns (fnmatch over the target's layer names; a pattern matching nothing is an
 * error), sort them by strcmp, tie TMS's linear2 to linear1, create the CI function,
 * allocate every buffer for the local batch (geom: B examples of S positions starting at
 * global example example0, of B_global), and initialise parameters from cfg->seed.
 * Component parallelism comes from the layout (comm.h): every layer's C is split into
 * lay->cp contiguous blocks, this rank holding block lay->cp_rank (C must be divisible;
 * VPD_ERR_CONFIG naming the layer otherwise). Masked layer outputs, input gradients and Δ
 * are summed over lay->cp_comm; the CI function is replicated in the group (its gradient
 * summed over it); gradients are averaged over lay->dp_comm. The layout must outlive d. */
vpd_status vpd_decomp_create(vpd_decomp **out, const vpd_decomp_config *cfg, vpd_model *target, const vpd_layout *lay,
                             const vpd_batch_geom *geom);
/* The same on one process with the whole batch (B examples of S positions from example 0):
 * tests, parity, analysis. */
vpd_status vpd_decomp_create_local(vpd_decomp **out, const vpd_decomp_config *cfg, vpd_model *target, int B, int S);
void vpd_decomp_free(vpd_decomp *d);
/* Bytes of every buffer of the decomposition (the memory plan printed at start-up). */
size_t vpd_decomp_memory_bytes(const vpd_decomp *d);

/* After the component parameters change: materialise tied layers and recompute Δ. */
void vpd_decomp_refresh(vpd_decomp *d);
/* Zero the component gradients (incl. tied scratch), ∂/∂g buffers and, if ci_params, the CI
 * function's gradient: the start of every step. */
void vpd_decomp_zero_grads(vpd_decomp *d, bool ci_params);
/* Fold the scratch gradients of tied layers into their sources (dV₁ += dU₂ᵀ, dU₁ += dV₂ᵀ). */
void vpd_decomp_fold_tied_grads(vpd_decomp *d);

/* Run the target on d->batch.input, caching each decomposed layer's input (and output) and the
 * target output f(x) (and its softmax for KL). */
void vpd_decomp_target_forward(vpd_decomp *d);

/* Random draws of a step are named by a `sample` number (components.h vpd_draw): loss i
 * uses samples i·1024 + j (j < 1024: its mask samples, PGD inits, routing draws …); the
 * binomial perturbation of the CI uses VPD_SAMPLE_BINOMIAL_U. */
#define VPD_SAMPLE_BINOMIAL_U 0xFFFFu
static inline uint32_t vpd_loss_sample(int loss_index, int j) { return (uint32_t)(loss_index * 1024 + j); }
/* the draw coordinates of decomposed layer k (k < 0: per-position draws such as routing) */
vpd_draw vpd_decomp_draw(const vpd_decomp *d, int k, uint32_t sample);

/* CI: z from the cached inputs, then g_lower / g_upper (binomial: 1.05 z − 0.05 u, u drawn
 * at (step, sample 0xFFFF)). */
vpd_status vpd_decomp_ci_forward(vpd_decomp *d);
/* Backward of the CI from d->act.dg_lower / d->act.dg_upper into the CI gradient and (mlp, and
 * embeddings) into dV. */
vpd_status vpd_decomp_ci_backward(vpd_decomp *d);

/* ---- the masked model --------------------------------------------------------------------
 * One forward of the model with some layers replaced by their components, the output loss
 * D against f(x), and (dscale != 0) the backward of dscale·D. */
typedef struct {
    bool replaced;
    const real *m;         /* [N, C] or NULL = ones */
    const real *mdelta;    /* [N] or NULL: no delta term */
    const uint8_t *route;  /* [N] or NULL: every row uses components */
    real *dm;              /* accumulate ∂/∂m (NULL: not needed) */
    real *dmdelta;         /* accumulate ∂/∂m_Δ (NULL: not needed) */
} vpd_pass_layer;

typedef struct {
    double dscale;      /* backward of dscale·D; 0 = forward only */
    bool param_grads;   /* accumulate dU, dV of replaced layers */
    bool hidden_acts;   /* D = pooled squared error of the replaced layers' outputs against the
                           target's (StochasticHiddenActsRecon) instead of the output loss */
    bool ce;            /* LM only: D = −log softmax(out[ce_row])[ce_token], the cross-entropy of
                           one token at one row (prompt_ci.c), instead of the output loss */
    int ce_row, ce_token;
} vpd_pass_opts;

/* wall seconds spent in masked passes' output losses (KL/MSE/CE, forward and backward) since
 * the process started: the output-loss share of a step's profile (`vpd bench`) */
double vpd_output_loss_seconds(void);
/* Returns D (the output loss: mse mean over elements; kl mean over positions of Σ_vocab).
 * For hidden_acts, returns the SUM of squared errors and sets *numel_out to the pooled count. */
double vpd_masked_pass(vpd_decomp *d, const vpd_pass_layer *spec, const vpd_pass_opts *opts,
                       double *numel_out);

/* One pass of the reconstruction family (losses.c), described by a named spec:
 *   vpd_recon_pass(d, &(vpd_pass_spec){.masks = VPD_MASKS_SOURCES, .route = route,
 *                                      .dscale = 1.0, .grad_sources = true});
 * Masks from sources (m = g + (1−g)·r over d->pass.src, m_Δ = d->pass.srcdelta when
 * use_delta_component), from the CI (m = g, no Δ) or none (m = 1, no Δ), for the layers in
 * `replaced` (NULL = all) with optional routing [L, N]. Backward of dscale·D (dscale 0:
 * forward only): dU, dV and ∂/∂g into d->act.dg_lower when param_grads; when grad_sources,
 * ∂D/∂r into d->pass.dsrc and ∂D/∂r_Δ into d->pass.dsrcdelta. Returns D (hidden_acts: the sum of
 * squared errors, its pooled count in *numel_out). Fields left out are 0 / NULL / false. */
typedef enum { VPD_MASKS_SOURCES = 0, VPD_MASKS_CI = 1, VPD_MASKS_NONE = 2 } vpd_mask_source;
typedef struct {
    vpd_mask_source masks;
    const bool *replaced;  /* [L] layers replaced by their components; NULL = all */
    const uint8_t *route;  /* [L, N] per-row routing; NULL = every row uses components */
    double dscale;         /* backward of dscale·D; 0 = forward only */
    bool param_grads;      /* accumulate dU, dV and ∂/∂g */
    bool grad_sources;     /* ∂D/∂r into d->pass.dsrc, ∂D/∂r_Δ into d->pass.dsrcdelta (zeroed first) */
    bool hidden_acts;      /* D = the hidden-activations error (StochasticHiddenActsRecon) */
    double *numel_out;     /* hidden_acts: the pooled element count (NULL: not wanted) */
} vpd_pass_spec;
double vpd_recon_pass(vpd_decomp *d, const vpd_pass_spec *ps);

/* ---- losses ----------------------------------------------------------------------------
 * What each loss is lives in one table (loss_table.h). vpd_loss_evaluate runs loss `index`
 * (its position in cfg->losses, which names its random draws) through its row: the value
 * (before the coefficient) and, when backward, coeff·∂loss/∂(U, V) into the component
 * gradient and coeff·∂loss/∂g into d->act.dg_lower / d->act.dg_upper — the coefficient passed once,
 * as the gradient seed. */
double vpd_loss_evaluate(vpd_decomp *d, int index, bool backward);

/* Persistent PGD (ppgd.c) */
vpd_status vpd_ppgd_create(vpd_ppgd_state **out, vpd_decomp *d, int loss_index);
void vpd_ppgd_free(vpd_ppgd_state *p);
void vpd_ppgd_set_lr(vpd_ppgd_state *p, int step, int steps);
/* the warmup ascent steps (§5 item 5) */
void vpd_ppgd_warmup(vpd_decomp *d, vpd_ppgd_state *p, int loss_index);
/* the loss (§5 item 6) with the parameter backward seeded by dscale (= coeff) and, when
 * backward, its source gradient (item 7) kept for the step */
double vpd_ppgd_loss(vpd_decomp *d, vpd_ppgd_state *p, int loss_index, double dscale, bool backward);
/* the ascent step with the gradient of the last vpd_ppgd_loss (item 9) */
void vpd_ppgd_step(vpd_decomp *d, vpd_ppgd_state *p);
/* flat views for checkpoints and parity: sources (raw parameterisation), adam m, v */
size_t vpd_ppgd_numel(const vpd_ppgd_state *p);
real *vpd_ppgd_sources(vpd_ppgd_state *p);
real *vpd_ppgd_source_grad(vpd_ppgd_state *p);
/* the rest of the state a checkpoint needs: adam moments [numel] and the shared step
 * counter; rows = Ns·Ss source rows per layer; per-rank sources (per_batch_per_position)
 * differ between data-parallel ranks (each rank's rows are its own examples) */
real *vpd_ppgd_adam_m(vpd_ppgd_state *p);
real *vpd_ppgd_adam_v(vpd_ppgd_state *p);
int64_t *vpd_ppgd_adam_t(vpd_ppgd_state *p);
int vpd_ppgd_rows(const vpd_ppgd_state *p);
bool vpd_ppgd_is_per_rank(const vpd_ppgd_state *p);

/* importance minimality p at a fraction of training */
double vpd_im_annealed_p(const vpd_loss_cfg *lc, double frac);

#endif
