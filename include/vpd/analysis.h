/* vpd analysis: reading a finished run (run_load.c) and the readouts of VPD_METHOD.md §6
 * (eval.c): L0 per layer / block / total, alive subcomponents, activation densities, CI
 * histograms, the output loss and CE of the target against the model under CI masks,
 * rounded masks, stochastic, unmasked, random and zero masks, and the adversarial loss. */
#ifndef VPD_ANALYSIS_H
#define VPD_ANALYSIS_H

#include "vpd/job.h"
#include "vpd/trainer.h"

struct vpd_config;

typedef struct {
    char dir[1024], h5_path[1100];
    vpd_job job;               /* the assembly: job.cfg, job.target, job.trainer */
    struct vpd_config *root;   /* = job.root */
    vpd_decomp *d;             /* = job.d */
    int run_step; /* the step the run file records */
    bool is_checkpoint; /* opened from a checkpoint file, not run.h5 */
} vpd_run;

/* Open RUN_DIR/run.h5, or a checkpoint file (RUN_DIR/checkpoints/ckpt-*.h5: evaluation along
 * the way of a long run): its config (with optional --set overrides), target, a decomposition
 * for `batch` examples (<= 0: eval_batch_size) and the trained parameters. */
vpd_status vpd_run_open(vpd_run *r, const char *run_dir, int batch, const char *const *sets, int n_sets);
/* The same with the decomposition sized for sequences of seq_len positions (> 0; language
 * models: replaces max_seq_len, e.g. a prompt's length for vpd attrib; 0 = the config's). */
vpd_status vpd_run_open_seq(vpd_run *r, const char *run_dir, int batch, int seq_len, const char *const *sets,
                            int n_sets);
/* The same with the target's context extended to max_context positions (> n_ctx: rotary
 * models only, vpd_model_extend_context; 0 = n_ctx): prompts longer than the trained context. */
vpd_status vpd_run_open_ctx(vpd_run *r, const char *run_dir, int batch, int seq_len, int max_context,
                            const char *const *sets, int n_sets);
void vpd_run_close(vpd_run *r);

#define VPD_EVAL_MAX_ROWS 16
#define VPD_EVAL_HIST_BINS 50
typedef struct {
    char name[48];
    double D;  /* output loss vs target: KL (LM) or MSE (toy) */
    double ce; /* LM only: next-token cross-entropy (nan for toy models) */
} vpd_eval_row;

typedef struct {
    int n_batches, n_rows;          /* rows = examples·positions evaluated */
    double threshold;               /* activation-density threshold (ci_alive_threshold) */
    double *l0, *l0_thr;            /* [L] */
    int *alive;                     /* [L]: mean g > 1e-6 */
    double *mean_g, *density;       /* [ΣC] */
    int64_t *hist;                  /* [L, VPD_EVAL_HIST_BINS] histogram of g over [0, 1] */
    int n_blocks;
    char block_name[64][32];
    double block_l0[64];
    int block_alive[64];
    int n_table;
    vpd_eval_row table[VPD_EVAL_MAX_ROWS];
    int n_adv;                      /* adversarial loss at PGD step counts */
    int adv_steps[8];
    double adv_D[8], adv_ce[8];
    double adv_step_size;
    double compute_recovered;       /* fraction of target pretraining; < 0 when unknown */
} vpd_eval_result;

typedef struct {
    int n_batches;
    int pgd_steps[8];
    int n_pgd;          /* 0: no adversarial readout */
    double pgd_step_size;
} vpd_eval_opts;

vpd_status vpd_evaluate(vpd_run *r, const vpd_eval_opts *o, vpd_eval_result *res);
void vpd_eval_result_free(vpd_eval_result *res);
void vpd_eval_print(const vpd_run *r, const vpd_eval_result *res, FILE *out);
/* write /eval into run.h5 */
vpd_status vpd_eval_write(const vpd_run *r, const vpd_eval_result *res);

#endif
