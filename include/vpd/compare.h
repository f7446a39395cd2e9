/* vpd compare: one evaluation of VPD decompositions and transcoders (PLT / CLT) on the same
 * held-out tokens of a LlamaSimpleMLP target (issue 15; src/analysis/compare.c, the command
 * src/cli/cmd_compare.c). README "vpd compare" documents every definition below.
 *
 * Replacement of MLP l (block l: mlp_out = down_proj(gelu(c_fc(x_l))), x_l the MLP's
 * normalised input, the input of h.l.mlp.c_fc):
 *   vpd   c_fc and down_proj run as their masked components, y = (x V ⊙ m) U + b, WITHOUT the
 *         delta component (the paper's convention); a matrix the run did not decompose stays
 *         the target's. Masks per setting: "ci" m = g (the CI), "g>τ" m = 1[g > τ] for the
 *         rounded thresholds (default τ = 0, 0.1, 0.5). g comes from the run's CI function on
 *         the target's (clean) activations, as in training.
 *   plt / clt  the MLP's output is the transcoder's reconstruction b_dec[l] + Σ_{i∈src(l)}
 *         z_i W_dec[i][l], z_i the latents of encoder i (transcoder.h).
 *   zero  the MLP's output is 0 (the zero-ablation baseline of "fraction of CE recovered").
 * Protocols (the paper's appendix "Training and evaluation protocols"):
 *   error_propagating  every selected MLP replaced in one forward; each replacement reads the
 *                      input of THIS forward (the residual stream carries the errors of the
 *                      earlier replacements).
 *   clean_input        every selected MLP replaced in one forward; each replacement reads the
 *                      target's clean input x_l (from an unmodified forward of the same
 *                      tokens); its output is still added to the modified residual stream.
 *   single_layer       one MLP replaced at a time, the others the target's; reported per MLP
 *                      and as the mean over MLPs (layer = -1).
 * Metrics per configuration, over batches of the held-out tokens (mean and standard error
 * of the per-batch values, se = sd / sqrt(batches)):
 *   ce        next-token cross-entropy of the spliced model; delta_ce = ce − ce(target)
 *   kl        KL(target ‖ spliced) of the next-token distributions, mean over positions
 *   frac_recovered = (ce_zero − ce) / (ce_zero − ce_target), ce_zero with the same MLPs
 *             zero-ablated (per batch, then averaged)
 *   l0_mlp    active objects per token per replaced MLP: vpd: subcomponents with m > 0 in c_fc
 *             and down_proj together (g > 0 for "ci", g > τ for "g>τ"); transcoders: latents
 *             of that MLP's encoder with z ≠ 0
 *   l0_module per weight matrix / encoder: vpd l0_mlp / 2 (two matrices per MLP); transcoder
 *             l0_mlp
 *   l0_recon  objects whose output reaches one MLP's reconstruction: vpd l0_mlp; PLT l0_mlp;
 *             CLT Σ_{i ≤ l} active latents of encoder i (mean over the replaced MLPs)
 *   params    parameters touched per token, summed over the replaced MLPs: vpd d_in + d_out
 *             per active rank-one subcomponent; transcoder d_model (encoder row) + d_model per
 *             decoder row the latent writes (1 for PLT, L − i for CLT layer i)
 * Feature splitting (the paper's appendix "Confirming feature splitting"): for two runs of
 * the same method (the smaller dictionary is the source), per MLP the output directions of
 * the alive objects — vpd: down_proj's U rows (sign-free: |cos|, as u, v can both flip);
 * PLT: decoder rows; CLT: the concatenation of a latent's decoder rows over the MLPs it writes
 * to — are matched at cosine > threshold (0.5). split_frac = fraction of the source's alive
 * objects with MORE THAN ONE match among the larger run's alive objects (mean over MLPs; the
 * paper's 2.7 % VPD vs 57 % PLT); matched_frac = fraction of the larger run's alive objects
 * with at least one match in the smaller (what is not matched is a new direction). Alive:
 * vpd mean g > 1e-6 over the evaluated tokens; transcoders: fired at least once on them (in
 * the clean_input forward). */
#ifndef VPD_COMPARE_H
#define VPD_COMPARE_H

#include <stdio.h>

#include "vpd/core.h"

#define VPD_CMP_MAX_RUNS 16
#define VPD_CMP_MAX_TAUS 8
#define VPD_CMP_MAX_MLPS 64

typedef enum { VPD_CMP_ERROR_PROPAGATING = 0, VPD_CMP_CLEAN_INPUT = 1, VPD_CMP_SINGLE_LAYER = 2 } vpd_cmp_protocol;
const char *vpd_cmp_protocol_name(vpd_cmp_protocol p);

typedef struct {
    const char *vpd_runs[VPD_CMP_MAX_RUNS]; /* VPD run directories (run.h5) */
    int n_vpd;
    const char *tc_runs[VPD_CMP_MAX_RUNS];  /* transcoder run directories (transcoder.h5) */
    int n_tc;
    const char *tokens;     /* held-out token file; NULL: the first VPD run's data.eval */
    const char *target;     /* target model dir; NULL: the first VPD run's, else the transcoder's */
    int64_t n_tokens;       /* <= 0: 1M, or the whole file when smaller */
    int batch;              /* examples per batch; <= 0: the first VPD run's eval_batch_size, else 8 */
    int seq;                /* positions per example; <= 0: the VPD run's max_seq_len, else n_ctx */
    bool random_windows;    /* windows as `vpd eval` draws them (seed, eval stream) instead of
                               consecutive windows from the file's start */
    uint64_t seed;          /* random windows: the stream's seed (default: the VPD run's seed) */
    bool have_seed;
    int n_taus;             /* rounded thresholds for VPD (default 0, 0.1, 0.5) */
    double taus[VPD_CMP_MAX_TAUS];
    bool ci_masks;          /* also the "ci" setting (m = g); default true */
    const char *mlps;       /* NULL: every MLP; else a comma list of MLP indices to replace */
    double split_cos;       /* feature-splitting cosine threshold (default 0.5) */
    const char *const *sets; /* --set overrides for the VPD runs' configs */
    int n_sets;
    bool quiet;
} vpd_compare_opts;
void vpd_compare_opts_defaults(vpd_compare_opts *o);

typedef struct {
    char method[8];     /* "vpd", "plt", "clt", "target", "zero" */
    char source[512];   /* the run directory ("" for target / zero) */
    char setting[64];   /* vpd: "ci", "g>0", …; transcoder: "<act> k=<k>" */
    int dict_size;      /* vpd: C of down_proj (per MLP, first MLP); transcoder: n_latent */
    vpd_cmp_protocol protocol;
    int layer;          /* MLP index; -1: all selected MLPs at once (single_layer: their mean) */
    double ce, ce_se, delta_ce, delta_ce_se, kl, kl_se, ce_zero, frac, frac_se;
    double l0_mlp, l0_module, l0_recon, params;
} vpd_compare_row;

typedef struct {
    char method[8];
    char small[512], large[512];
    int small_size, large_size;
    double cos_threshold;
    double split_frac, matched_frac;  /* means over MLPs */
    int small_alive, large_alive;     /* summed over MLPs */
} vpd_split_row;

typedef struct {
    int n_batches, batch, seq, n_mlps_sel;
    int64_t n_tokens;
    char tokens[512];
    double ce_target, ce_target_se;
    int n_rows, n_split;
    vpd_compare_row *rows;
    vpd_split_row *split;
} vpd_compare_result;

/* Evaluate every run on the same batches. Collective over the world: batch b runs on rank
 * b mod size; per-batch values are summed over ranks, then reduced in batch order, so the
 * result does not depend on the rank count. Every rank gets the whole result. */
vpd_status vpd_compare(const vpd_compare_opts *o, vpd_compare_result *res);
void vpd_compare_result_free(vpd_compare_result *res);
void vpd_compare_print(const vpd_compare_result *res, FILE *out);
/* DIR/compare.csv (one row per method × setting × protocol × layer, the layout `vpd collect
 * --compare` reads), DIR/compare.json (the same with the setup) and DIR/splitting.csv.
 * Refuses an existing DIR/compare.json unless force. Rank 0 only. */
vpd_status vpd_compare_write(const vpd_compare_result *res, const char *dir, bool force);

#endif
