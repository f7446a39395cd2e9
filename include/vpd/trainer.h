/* vpd trainer: the data feeding a decomposition, one training step in the order of
 * VPD_METHOD.md §5, the faithfulness warmup, the run loop with progress and metrics,
 * and the end-of-run summary (L0, alive subcomponents, toy ground truth). */
#ifndef VPD_TRAINER_H
#define VPD_TRAINER_H

#include <stdio.h>

#include "vpd/checkpoint.h"
#include "vpd/data.h"
#include "vpd/decomp.h"

typedef struct {
    vpd_decomp *d;
    bool lm;
    vpd_toy_data toy;     /* toy models */
    real *labels;         /* [B, n_features] (unused by the decomposition) */
    vpd_tokens tokens;    /* LM: training tokens */
    vpd_tokens eval_tokens; /* LM: held-out tokens for the eval stream (data.eval), if given */
    bool have_eval_tokens;
    int32_t *tok_targets; /* [B, S] */
    real *adam_buf;
} vpd_trainer;

/* the phases of vpd_trainer_step, timed (wall seconds) into vpd_step_metrics.phase_s */
typedef enum {
    VPD_PHASE_TARGET,      /* batch and target forward (+ KL target log-softmax) */
    VPD_PHASE_CI_FWD,      /* causal importances */
    VPD_PHASE_PPGD_WARMUP, /* persistent-PGD warmup ascent (masked passes) */
    VPD_PHASE_LOSSES,      /* every loss with its backward (masked passes, masks, output losses) */
    VPD_PHASE_CI_BWD,      /* backward through the CI function, tied-weight folds */
    VPD_PHASE_GRAD_REDUCE, /* gradient means over replicas and component blocks */
    VPD_PHASE_PPGD_STEP,   /* persistent-PGD source ascent */
    VPD_PHASE_METRICS,     /* gradient norms, L0, reduced metrics */
    VPD_PHASE_UPDATE,      /* clip, AdamW, weight deltas (vpd_decomp_refresh) */
    VPD_PHASE_N
} vpd_step_phase;
extern const char *const vpd_step_phase_names[VPD_PHASE_N];

typedef struct {
    int step;
    double total;
    double losses[VPD_MAX_LOSSES];     /* each loss before its coefficient, replica mean */
    double l0[VPD_MAX_MODULE_PATTERNS * 4];     /* per layer, g > 0 */
    double l0_thr[VPD_MAX_MODULE_PATTERNS * 4]; /* per layer, g > ci_alive_threshold */
    double lr_components, lr_ci;
    double grad_norm_components, grad_norm_ci; /* before clipping */
    double im_p;
    double seconds;
    double phase_s[VPD_PHASE_N]; /* this rank's wall seconds per phase */
    double comm_s;               /* of which in reductions (vpd_comm_seconds), all phases */
    double out_loss_s;           /* of which in masked passes' output losses (vpd_output_loss_seconds) */
} vpd_step_metrics;

vpd_status vpd_trainer_init(vpd_trainer *t, vpd_decomp *d);
void vpd_trainer_free(vpd_trainer *t);
/* Fill d's input with batch `index` of data stream `stream` (0 train, 1 eval) for this rank. */
vpd_status vpd_trainer_load_batch(vpd_trainer *t, uint32_t stream, uint64_t index);
vpd_status vpd_faithfulness_warmup(vpd_decomp *d);
/* One iteration (step d->step); advances d->step. */
vpd_status vpd_trainer_step(vpd_trainer *t, vpd_step_metrics *sm);

/* ---- run loop (run.c) ------------------------------------------------------------------ */
typedef struct {
    const char *run_dir;   /* metrics.jsonl goes here (rank 0) */
    bool quiet;
    /* > 0: the watchdog (run.c): a rank on which no step completes for this many seconds ends
     * the process, naming the ranks that stopped (needs run_dir for the heartbeat file) */
    double watchdog_s;
    const char *watchdog_from; /* where watchdog_s came from, for its messages (e.g. "--watchdog") */
} vpd_run_opts;
/* faithfulness warmup, then steps 0 … steps with progress and metrics; rank 0 writes
 * metrics.jsonl lines every train_log_freq steps and at the last step */
vpd_status vpd_run_training(vpd_trainer *t, const vpd_run_opts *opts);
/* one JSON object (no newline) for a step's metrics */
void vpd_metrics_json(FILE *f, const vpd_decomp *d, const vpd_step_metrics *sm);

/* ---- the run loop with checkpoints and signals (run.c) ------------------------------------ */
typedef struct {
    const vpd_ckpt_opts *ckpt;   /* NULL: no periodic checkpoints (signals still stop) */
    bool resumed;                /* skip the faithfulness warmup; keep metrics before d->step */
    const char *config_yaml;     /* stored in each checkpoint */
    const char *provenance_json;
    int stop_at_step;            /* > 0: behave as if signalled once d->step reaches it (tests, time boxing) */
    int stopped_by_signal;       /* out: the signal that stopped the run after a checkpoint
                                    (SIGUSR1 for stop_at_step), or 0 */
    int checkpoints_written;     /* out */
    double checkpoint_seconds;   /* out: total write time */
} vpd_run_hpc;

/* vpd_run_training with checkpoints every N steps / M minutes, on SIGTERM/SIGUSR1 (all ranks
 * of the dp × cp grid agree at the step boundary, checkpoint (vpd_checkpoint_write), return
 * VPD_OK with hpc->stopped_by_signal set), and resume (no warmup; metrics.jsonl keeps the
 * records of earlier steps and appends). */
vpd_status vpd_run_training_hpc(vpd_trainer *t, const vpd_run_opts *opts, vpd_run_hpc *hpc);

/* ---- summary (summary.c) ---------------------------------------------------------------- */
typedef struct {
    double l0[VPD_MAX_MODULE_PATTERNS * 4];
    int alive[VPD_MAX_MODULE_PATTERNS * 4];
    double mmcs[VPD_MAX_MODULE_PATTERNS * 4]; /* toy ground truth; < 0 when not defined */
    int n_features;                           /* toy models: features examined */
    int features_dedicated;                   /* features captured by exactly one subcomponent, per layer min */
    int dedicated[VPD_MAX_MODULE_PATTERNS * 4];
    int captured[VPD_MAX_MODULE_PATTERNS * 4];  /* features matched by exactly one alive subcomponent */
} vpd_summary;
/* Evaluate on n_eval_steps batches of the eval stream (L0, alive = mean g > 1e-6), plus for
 * toy targets MMCS and single-feature capture; print the table on rank 0. */
vpd_status vpd_summarize(vpd_trainer *t, vpd_summary *s, FILE *out);

#endif
