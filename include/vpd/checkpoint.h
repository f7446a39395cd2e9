/* vpd checkpoint: the full training state of a decomposition in one HDF5 file, written in
 * parallel, atomically, and readable on another data-parallel layout.
 *
 * File RUN_DIR/checkpoints/ckpt-<step, 8 digits>.h5 (step = the next step to run):
 *   /                attrs format "vpd-checkpoint", version 1, step, steps, B_global, S,
 *                    world_size, vpd_version, git_hash, real_bytes, complete = 1
 *   /config          attr yaml: the resolved config the run was made with
 *   /provenance      attr json: vpd version, git hash, MPI layout, hosts, Slurm ids, SHA-256s
 *   /comp_params     [n_comp_params]   every untied V and U (the decomposition's flat block)
 *   /ci_params       [n_ci_params]     the CI function
 *   /adam_comp/{m,v} [n_comp_params]   attr t (updates taken)
 *   /adam_ci/{m,v}   [n_ci_params]     attr t
 *   /ppgd/<loss index>/{sources,m,v}/<layer>  [rows, C_l (+1 with Δ)], attr t, per_rank,
 *                    classname. Per-rank sources (scope per_batch_per_position) are the
 *                    global [B_global·S, C+1] array: rank r owns rows example0·S … so a
 *                    checkpoint maps by global example index onto any rank count.
 * Tensors are stored in the build's `real` type (float32 for the vpd binary), so a resume
 * is bitwise exact. The RNG position and the data position are functions of the step
 * (counter-based RNG), so `step` restores both.
 *
 * Writing is collective over the data-parallel communicator with MPI-IO: replicated
 * tensors are split into equal slices, one per rank; per-rank tensors are written by
 * their owners. The file goes to ".ckpt-<step>.h5.tmp", is fsync'd, renamed, and the
 * directory fsync'd, so the newest ckpt-*.h5 is always complete.
 *
 * Config section (read by vpd_ckpt_opts_read, ignored by the decomposition reader):
 *   checkpoint: {every_steps: 0, every_minutes: 0, keep_last: 2, keep_every: 0, dir: null}
 * every_steps / every_minutes 0 = off (a signal still checkpoints); keep_every M keeps in
 * addition every checkpoint whose step is a multiple of M; dir defaults to
 * RUN_DIR/checkpoints (a relative dir is taken relative to RUN_DIR). */
#ifndef VPD_CHECKPOINT_H
#define VPD_CHECKPOINT_H

#include <stdio.h>

#include "vpd/trainer.h"

struct vpd_config;

typedef struct {
    int every_steps;
    double every_minutes;
    int keep_last;
    int keep_every;
    char dir[1200]; /* resolved directory */
} vpd_ckpt_opts;

/* Read the checkpoint section of a config tree (all keys optional) and resolve dir
 * against run_dir. */
vpd_status vpd_ckpt_opts_read(struct vpd_config *root, const char *run_dir, vpd_ckpt_opts *o);

/* Collective over d->dp_comm: write the checkpoint of d's current state (d->step) into dir.
 * config_yaml and provenance_json must be the same on every rank (may be NULL).
 * On return (every rank) *seconds is the wall time and *bytes the file size. */
vpd_status vpd_checkpoint_write(const char *dir, vpd_decomp *d, const char *config_yaml,
                                const char *provenance_json, double *seconds, size_t *bytes);
/* Delete checkpoints in dir beyond the retention rule (rank 0 only; others return). */
vpd_status vpd_checkpoint_prune(const vpd_ckpt_opts *o);
/* Newest complete checkpoint in dir (files that do not open or lack complete = 1 are
 * skipped with a warning). VPD_ERR_IO naming dir if there is none. Local (no MPI). */
vpd_status vpd_checkpoint_latest(const char *dir, char *path, size_t size, int *step);
/* The config text of a checkpoint (free with vpd_free). Local. */
vpd_status vpd_checkpoint_config(const char *path, char **yaml);
/* The provenance JSON of a checkpoint (free with vpd_free; NULL when absent). Local. */
vpd_status vpd_checkpoint_provenance(const char *path, char **json);
/* Collective: load the state of a checkpoint into d (built from the same config, any rank
 * count whose batch split is compatible), then vpd_decomp_refresh. */
vpd_status vpd_checkpoint_read(const char *path, vpd_decomp *d);

/* ---- the run loop with checkpoints and signals (src/vpd/run.c) ---------------------- */
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
 * agree at the step boundary, checkpoint, return VPD_OK with hpc->stopped_by_signal set),
 * and resume (no warmup; metrics.jsonl keeps the records of earlier steps and appends). */
vpd_status vpd_run_training_hpc(vpd_trainer *t, const vpd_run_opts *opts, vpd_run_hpc *hpc);

#endif
