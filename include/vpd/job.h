/* vpd job: a run assembled once (src/vpd/job.c), for every command that trains or reads a
 * decomposition (decompose, bench, eval/analysis):
 *
 *   config (file, run.h5 text or a resumed checkpoint's) + --set overrides
 *   → resume lookup (newest complete checkpoint, its config and provenance; the config diff
 *     refused unless --allow-config-change names the keys)
 *   → run directory → relative paths resolved → target (loaded, or random of given sizes)
 *   → default output loss → dp × cp layout (comm.h) → batch geometry (vpd_batch_geometry)
 *   → decomposition → trainer → (resume) checkpoint state → (run dir) provenance.json
 *
 * vpd_job_open does all of it or nothing: on failure everything built so far is released
 * (vpd_job_close is idempotent and safe on a zeroed or failed job). A command then reads like
 * XSBench's main: parse, vpd_job_open, vpd_job_train, vpd_job_write, vpd_job_close.
 * Collective over the world (or the single process for opts.local). */
#ifndef VPD_JOB_H
#define VPD_JOB_H

#include <stdbool.h>

#include "vpd/checkpoint.h"
#include "vpd/comm.h"
#include "vpd/config.h"
#include "vpd/decomp.h"
#include "vpd/trainer.h"

typedef struct {
    /* where the config comes from (first that is set): config_text (named config_name in
     * messages), config_path, else the resumed checkpoint's config */
    const char *config_path;
    const char *config_text, *config_name;
    const char *const *sets; /* --set key=value overrides, applied in order */
    int n_sets;
    const char *resume; /* RUN_DIR to continue from its newest complete checkpoint, or NULL */
    const char *const *allow; /* --allow-config-change patterns */
    int n_allow;
    /* the run directory: out (--out), else output.dir, else runs/<config name>; made on
     * rank 0 with config.yaml and provenance.json only when write_run_dir */
    const char *out;
    bool write_run_dir;
    /* a fresh run (no resume) into a run directory holding another run's files (config.yaml,
     * provenance.json, metrics.jsonl, run.h5, checkpoints) is refused unless force; with force
     * those files (and only those) are removed first */
    bool force;
    /* extra directories a relative path in the config may be relative to (after the working
     * directory, the config file's directory and a resumed run's working directory) */
    const char *const *search_dirs;
    int n_search_dirs;
    /* the target: target_dir replaces the config's; random_target (when non-NULL and the
     * target directory does not exist) makes a random target of these sizes (seed 0) */
    const char *target_dir;
    const vpd_model_config *random_target;
    /* one process with the whole batch (analysis); else the world split by the config's
     * component_parallel */
    bool local;
    /* examples per step (0: the config's batch_size, or with eval_batch its eval_batch_size
     * when that is set) */
    int batch;
    bool eval_batch;
    /* > n_ctx: the target runs sequences up to this length (vpd_model_extend_context: rotary
     * models only; the caller warns that the model was trained on n_ctx); 0: n_ctx */
    int max_context;
    /* called after the target is loaded and before the decomposition is built (may edit cfg) */
    void (*adjust)(vpd_decomp_config *cfg, void *ctx);
    void *adjust_ctx;
    /* the watchdog of the run loop (seconds; 0 = off), in this order of precedence:
     * watchdog_s when watchdog_given (`--watchdog T`), else the environment's VPD_WATCHDOG_S,
     * else the config's checkpoint.watchdog_s */
    bool watchdog_given;
    double watchdog_s;
} vpd_job_opts;

typedef struct {
    vpd_config *root;            /* the resolved config tree (after --set) */
    char *config_yaml;           /* its text */
    vpd_decomp_config cfg;
    char config_path[4096];  /* the config file (a resume without CONFIG.yaml: the stored one) */
    char run_dir[1100];
    vpd_model target;
    bool random_target;          /* the target was made up (opts.random_target) */
    vpd_layout layout;
    vpd_batch_geom geom;
    vpd_decomp *d;
    vpd_trainer trainer;
    /* resume */
    bool resumed;
    char ckpt_path[1300];
    vpd_ckpt_opts ck_opts;
    double watchdog_s;           /* resolved (vpd_job_opts.watchdog_*); 0 = off */
    char watchdog_from[48];      /* "--watchdog", "VPD_WATCHDOG_S" or "checkpoint.watchdog_s" */
    char *provenance;            /* provenance.json text (write_run_dir), else NULL */
    char run_id[64];             /* the run's identity (provenance.json run_id, checkpoint attr run_id):
                                  * 128 random bits + the start time; a resume keeps it */
    /* after vpd_job_train */
    bool stopped_by_signal;
    /* what close releases */
    bool have_target, have_layout, have_trainer;
} vpd_job;

vpd_status vpd_job_open(vpd_job *j, const vpd_job_opts *opts);
/* the start-up banner, then vpd_run_training_hpc with the job's checkpoints; sets
 * j->stopped_by_signal when a signal or stop_at_step ended it early */
vpd_status vpd_job_train(vpd_job *j, bool quiet, int stop_at_step);
/* the summary (printed on rank 0) and RUN_DIR/run.h5 with the full provenance */
vpd_status vpd_job_write(vpd_job *j);
void vpd_job_close(vpd_job *j);

#endif
