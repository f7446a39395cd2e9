/* vpd checkpoint: the checkpoint FILE — a tensor table (include/vpd/tensor_table.h) written
 * in parallel, atomically, with a header; the newest-complete lookup, retention, and the
 * config / provenance texts. No method here: what goes into the table is the owner's
 * (src/vpd/state.c, vpd_decomp_state_table; the decomposition's wrappers
 * vpd_checkpoint_write / vpd_checkpoint_read are in include/vpd/runfile.h).
 *
 * File RUN_DIR/checkpoints/ckpt-<step, 8 digits>.h5 (step = the next step to run), format
 * version 2 (version 1, the flat /comp_params layout of earlier vpd builds, is refused with
 * a message saying so):
 *   /                attrs format "vpd-checkpoint", version 2, step, real_bytes, vpd_version,
 *                    git_hash, run_id (the provenance's "run_id": the run's identity),
 *                    complete = 1 (written last), and the owner's attributes
 *                    (the decomposition: steps, B_global, S, data_parallel, component_parallel)
 *   /config          attr yaml: the resolved config the run was made with
 *   /provenance      attr json: vpd version, git hash, MPI layout, hosts, Slurm ids, SHA-256s
 *   the owner's rows; for a decomposition (state.c):
 *   /components/<layer>/V [d_in, C], /U [C, d_out]    as in run.h5 (component blocks)
 *   /ci_fn/<spd state_dict key>                      as in run.h5
 *   /optimizer/components/{m,v}/<layer>/{V,U}        AdamW moments (untied layers), attr t
 *   /optimizer/ci_fn/{m,v}/<spd key>                 attr t
 *   /ppgd/<loss index>/{sources,m,v}/<layer>         [rows, C] persistent-PGD state, and
 *   /ppgd/<loss index>/{sources,m,v}_delta/<layer>   [rows] its Δ column (use_delta_component);
 *                    attrs t, per_rank, classname. Per-rank sources (scope
 *                    per_batch_per_position) are the global [B_global·S, C] array: rank r owns
 *                    rows example0·S …; shared ones are [n_sources·S, C].
 * Every array is stored in its global shape, each rank writing its hyperslab (component
 * blocks by cp rank, example rows by dp rank, replicated tensors in equal slices), so a
 * checkpoint resumes on any dp × cp layout whose batch split and C divide. Tensors are stored
 * in the build's `real` type (float32 for the vpd binary), so a resume on the same layout is
 * bitwise exact. The RNG and data positions are functions of the step (counter-based RNG).
 *
 * Writing is collective over the table's communicator with MPI-IO. The file goes to
 * ".ckpt-<step>.h5.tmp", is fsync'd, renamed, and the directory fsync'd, so the newest
 * ckpt-*.h5 is always complete.
 *
 * Config section (read by vpd_ckpt_opts_read, ignored by the decomposition reader):
 *   checkpoint: {every_steps: 0, every_minutes: 0, keep_last: 2, keep_every: 0, dir: null,
 *                watchdog_s: 0}
 * every_steps / every_minutes 0 = off (a signal still checkpoints); keep_every M keeps in
 * addition every checkpoint whose step is a multiple of M; dir defaults to
 * RUN_DIR/checkpoints (a relative dir is taken relative to RUN_DIR). watchdog_s T > 0 ends a
 * job in which no step completes for T seconds, naming the rank that stopped (the run loop's
 * watchdog, src/vpd/run.c; `vpd decompose --watchdog T` and VPD_WATCHDOG_S=T take precedence).
 * Like every checkpoint.* key it may change on --resume. */
#ifndef VPD_CHECKPOINT_H
#define VPD_CHECKPOINT_H

#include <stdio.h>

#include "vpd/core.h"
#include "vpd/tensor_table.h"

struct vpd_config;

#define VPD_CKPT_FORMAT "vpd-checkpoint"
#define VPD_CKPT_VERSION 2

typedef struct {
    int every_steps;
    double every_minutes;
    int keep_last;
    int keep_every;
    char dir[1200]; /* resolved directory */
    double watchdog_s; /* checkpoint.watchdog_s (0 = off) */
    /* the run's identity (not a config key): when set, retention only counts and deletes
     * checkpoints whose root attribute run_id is this one (another run's are never touched) */
    char run_id[64];
} vpd_ckpt_opts;

/* Read the checkpoint section of a config tree (all keys optional) and resolve dir
 * against run_dir. */
vpd_status vpd_ckpt_opts_read(struct vpd_config *root, const char *run_dir, vpd_ckpt_opts *o);

/* Collective over t->comm: write DIR/ckpt-<step>.h5 from the table (atomically, see above).
 * config_yaml and provenance_json must be the same on every rank (may be NULL). On return
 * (every rank) *seconds is the wall time and *bytes the file size (either may be NULL). */
vpd_status vpd_ckpt_write_table(const char *dir, int step, const vpd_tensor_table *t, const char *config_yaml,
                                const char *provenance_json, double *seconds, size_t *bytes);
/* Collective over t->comm: check the header (format, version), read the table, return the
 * checkpoint's step. */
vpd_status vpd_ckpt_read_table(const char *path, vpd_tensor_table *t, int *step);
/* Delete checkpoints in dir beyond the retention rule (rank 0 only; others return). Only
 * checkpoints of o->run_id (root attribute run_id, written from the provenance's "run_id")
 * are counted and deleted when o->run_id is set. */
vpd_status vpd_checkpoint_prune(const vpd_ckpt_opts *o);
/* Newest complete checkpoint in dir (files that do not open or lack complete = 1 are
 * skipped with a warning). VPD_ERR_IO naming dir if there is none. Local (no MPI). */
vpd_status vpd_checkpoint_latest(const char *dir, char *path, size_t size, int *step);
/* the same among the checkpoints with step < before (before < 0: all) — the fallback when the
 * newest one turns out to be damaged on reading */
vpd_status vpd_checkpoint_latest_before(const char *dir, int before, char *path, size_t size, int *step);
/* The config text of a checkpoint (free with vpd_free). Local. */
vpd_status vpd_checkpoint_config(const char *path, char **yaml);
/* The provenance JSON of a checkpoint (free with vpd_free; NULL when absent). Local. */
vpd_status vpd_checkpoint_provenance(const char *path, char **json);

#endif
