/* vpd transcoder: per-layer (PLT) and cross-layer (CLT) transcoders on the MLPs of a
 * LlamaSimpleMLP target — the baselines of the paper's sparsity–reconstruction comparison
 * (issue 15). Training is `vpd transcoder CONFIG.yaml` (src/transcoder/train.c); this header
 * is the inference side (src/transcoder/transcoder.c) that `vpd compare` uses.
 *
 * Notation. The target has L MLPs (block i: mlp_out = down_proj(gelu(c_fc(x_i))), where
 * x_i = rms_2(resid) is the MLP's normalised input, the input of h.i.mlp.c_fc; the MLP's
 * output is the output of h.i.mlp.down_proj). Every MLP has an encoder with n_latent
 * latents:   pre_i = x_i W_enc[i]^T + b_enc[i]                       [N, n_latent]
 *            z_i   = act(pre_i)                                       [N, n_latent]
 * and the reconstruction of MLP j's output is
 *            y_j   = b_dec[j] + Σ_{i ∈ src(j)} z_i W_dec[i][j]        [N, d_model]
 * with src(j) = {j} for a PLT and {0, …, j} for a CLT (latent i writes to its own and every
 * later MLP). Decoder rows are unit norm: for a PLT each row of W_dec[i][i]; for a CLT the
 * concatenation over j ≥ i of latent r's rows W_dec[i][j][r,:] (one direction in the joint
 * output space of the MLPs the latent writes to).
 *
 * Activations at inference (the result never depends on the batch it is in):
 *   batchtopk  z = pre · [pre > θ_i] with the layer's learned scalar threshold θ_i (an
 *              exponential moving average, during training, of the smallest activation
 *              BatchTopK kept in each global batch); training used BatchTopK over the global
 *              batch (k · tokens values per layer)
 *   topk       the k largest of relu(pre) per token
 *   relu       relu(pre) (trained with an L1 penalty)
 *   jumprelu   z = pre · [pre > θ_{i,r}] with per-latent learned thresholds
 *
 * transcoder.h5 (h5py-readable; every dataset float32, row-major, PyTorch [out, in] layout):
 *   /                       attrs format = "vpd-transcoder", format_version = 1,
 *                           kind = "plt" | "clt", activation = "batchtopk" | "topk" | "relu" |
 *                           "jumprelu", n_layers, d_model, n_latent, k (topk/batchtopk, else 0),
 *                           objective = "mse" | "kl", steps, target (model dir as given),
 *                           config (the resolved YAML text)
 *   /layer_{i}/W_enc        [n_latent, d_model]
 *   /layer_{i}/b_enc        [n_latent]
 *   /layer_{i}/threshold    [n_latent]  (batchtopk: θ_i repeated; jumprelu: θ_{i,r};
 *                                        topk, relu: zeros, unused)
 *   /layer_{i}/b_dec        [d_model]   (of MLP i's reconstruction)
 *   /layer_{i}/W_dec_{j}    [n_latent, d_model] for every j in dst(i) ({i} PLT, {i..L-1} CLT)
 * i is the MLP (block) index 0..L-1. */
#ifndef VPD_TRANSCODER_H
#define VPD_TRANSCODER_H

#include "vpd/core.h"
#include "vpd/models.h"

typedef enum { VPD_TC_PLT = 0, VPD_TC_CLT = 1 } vpd_tc_kind;
typedef enum { VPD_TC_BATCHTOPK = 0, VPD_TC_TOPK = 1, VPD_TC_RELU = 2, VPD_TC_JUMPRELU = 3 } vpd_tc_act;

#define VPD_TC_MAX_LAYERS 64

typedef struct vpd_transcoder {
    vpd_tc_kind kind;
    vpd_tc_act act;
    int n_layers; /* L: one encoder per MLP of the target, MLP i = block i */
    int d_model;
    int n_latent; /* per layer */
    int k;        /* topk / batchtopk: active latents per token (per layer) */
    /* one flat block holding every parameter below (float or double as `real`) */
    real *params;
    size_t n_params;
    real *W_enc[VPD_TC_MAX_LAYERS];     /* [n_latent, d_model] */
    real *b_enc[VPD_TC_MAX_LAYERS];     /* [n_latent] */
    real *threshold[VPD_TC_MAX_LAYERS]; /* [n_latent] (see the activations above) */
    real *b_dec[VPD_TC_MAX_LAYERS];     /* [d_model] */
    /* W_dec[i * n_layers + j]: [n_latent, d_model] for j in dst(i), else NULL */
    real **W_dec;
} vpd_transcoder;

const char *vpd_tc_kind_name(vpd_tc_kind k);      /* "plt", "clt" */
const char *vpd_tc_act_name(vpd_tc_act a);        /* "batchtopk", ... */
/* does latent i write to MLP j (PLT: j == i; CLT: j >= i) */
static inline bool vpd_tc_writes(const vpd_transcoder *t, int i, int j) {
    return t->kind == VPD_TC_PLT ? i == j : j >= i;
}

/* An all-zero transcoder with that geometry (parameters allocated in one block). */
vpd_status vpd_transcoder_create(vpd_transcoder **t, vpd_tc_kind kind, vpd_tc_act act, int n_layers, int d_model,
                                 int n_latent, int k);
/* Read RUN_DIR/transcoder.h5 (the layout above), on one rank; errors name the file and the
 * missing or misshapen dataset. */
vpd_status vpd_transcoder_load(vpd_transcoder **t, const char *path);
/* Write it (rank 0 only; the caller gives the attributes' target, objective, steps, config). */
vpd_status vpd_transcoder_save(const vpd_transcoder *t, const char *path, const char *target, const char *objective,
                               int steps, const char *config_text);
void vpd_transcoder_free(vpd_transcoder *t);

/* Latents of MLP l by the inference rule: x [N, d_model] is MLP l's normalised input (the
 * input of h.l.mlp.c_fc), z [N, n_latent] is written. */
void vpd_transcoder_encode(const vpd_transcoder *t, int l, const real *x, int N, real *z);
/* y[N, d_model] += z_{l_src} W_dec[l_src][l_dst] (the decoder bias is NOT added: add
 * t->b_dec[l_dst] once per MLP). Nothing when latent l_src does not write to l_dst. */
void vpd_transcoder_decode_add(const vpd_transcoder *t, int l_src, int l_dst, const real *z, int N, real *y);
/* The full reconstruction of MLP l_dst's output: y = b_dec[l_dst] + Σ_{i∈src(l_dst)} z_i
 * W_dec[i][l_dst], from z[i] = the latents of every MLP (z[i] may be NULL for i not in
 * src(l_dst)). */
void vpd_transcoder_reconstruct(const vpd_transcoder *t, int l_dst, const real *const *z, int N, real *y);
/* active latents (z != 0) in z[N, n_latent], summed over rows */
int64_t vpd_transcoder_count_active(const real *z, size_t n);

/* ---- splicing into the target ---------------------------------------------------------
 * A vpd_hook for vpd_model_forward on the target the transcoder was trained on: every MLP l
 * with splice[l] (all when splice is NULL) has its output replaced by the transcoder's
 * reconstruction y_l = b_dec[l] + Σ_{i∈src(l)} z_i W_dec[i][l], where z_i is encoded from the
 * MLP input x_i of THIS forward (so errors of earlier replaced MLPs propagate; a CLT's
 * encoders run for every block, spliced or not). Other layers compute as the target.
 * Inference only (no backward). After a forward, vpd_tc_hook_latents(h, i) is z_i [N,
 * n_latent] of that forward (for L0). The hook sizes its buffers for up to N_max rows. */
typedef struct vpd_tc_hook vpd_tc_hook;
vpd_status vpd_tc_hook_create(vpd_tc_hook **h, const vpd_transcoder *t, const vpd_model *m, const bool *splice, int N_max);
vpd_hook *vpd_tc_hook_base(vpd_tc_hook *h);
const real *vpd_tc_hook_latents(const vpd_tc_hook *h, int l);
void vpd_tc_hook_free(vpd_tc_hook *h);

/* ---- training (src/transcoder/train.c) ------------------------------------------------
 * `vpd transcoder CONFIG.yaml --out RUN_DIR [--resume|--force] [--set k=v]`: the command.
 * Collective over the world (data parallel). Returns the process status. */
typedef struct {
    const char *config_path;
    const char *run_dir;
    const char *const *sets;
    int n_sets;
    bool resume, force, quiet;
    int stop_after; /* > 0: checkpoint and stop after this many steps (tests of --resume) */
} vpd_tc_train_opts;
/* VPD_OK when finished (or stopped by stop_after); *interrupted set when a signal stopped it
 * after a checkpoint (the command exits VPD_EXIT_REQUEUE). */
vpd_status vpd_transcoder_train(const vpd_tc_train_opts *o, bool *interrupted);

#endif
