/* vpd runfile: what a decomposition saves — run.h5 and checkpoints — as rows of one tensor
 * table (include/vpd/tensor_table.h), exported by the decomposition (src/vpd/state.c) and
 * moved by io/ without it knowing the method.
 *
 * The rows (global shapes; C = the layer's C_total; component blocks by cp rank):
 *   PARAMS      /components/<layer>/V [d_in, C]   by component block (columns)
 *               /components/<layer>/U [C, d_out]  by component block (rows)
 *                 (every layer, tied ones materialised; group attrs C, embedding, tied_to)
 *               /ci_fn/<spd state_dict key>        replicated (the CI function's own table);
 *                 attr fn_type (checked on read)
 *               root attr step (loaded on read)
 *   RUNFILE     PARAMS + root format "vpd-run", vpd_version, steps; /config yaml;
 *               /provenance attrs; /summary/<layer> attrs. Stored float32 (README "run.h5").
 *   CHECKPOINT  PARAMS (without the step attr: the checkpoint header has it) +
 *               /optimizer/components/{m,v}/<layer>/{V,U}  (untied layers; as V, U), attr t
 *               /optimizer/ci_fn/{m,v}/<spd key>            replicated, attr t
 *               /ppgd/<loss>/{sources,m,v}/<layer>          [rows, C]: rows by example
 *                 (per_batch_per_position: [B_global·S, C]) or replicated (shared scopes),
 *                 columns by component block
 *               /ppgd/<loss>/{sources,m,v}_delta/<layer>    [rows] the Δ column (use_delta_component)
 *               attrs B_global, S (checked), steps, data_parallel, component_parallel, and
 *               per PPGD loss t (loaded), per_rank, classname (checked).
 * Layout in the file is global, so a checkpoint resumes on any dp × cp layout. */
#ifndef VPD_RUNFILE_H
#define VPD_RUNFILE_H

#include "vpd/checkpoint.h"
#include "vpd/tensor_table.h"
#include "vpd/trainer.h"

struct vpd_config;

typedef enum { VPD_STATE_PARAMS = 0, VPD_STATE_RUNFILE, VPD_STATE_CHECKPOINT } vpd_state_which;

/* The table of d's state for `which` (rows point into d). Collective only for RUNFILE (the
 * host name comes from rank 0 of the group). RUNFILE's communicator is d->grid.cp_comm (one
 * replica's component group writes run.h5); the others span the whole dp × cp grid.
 * config and summary are used by RUNFILE only (may be NULL). Free with vpd_table_free. */
vpd_status vpd_decomp_state_table(vpd_decomp *d, vpd_state_which which, const struct vpd_config *config,
                                  const vpd_summary *summary, vpd_tensor_table *t);
/* After a read of a CHECKPOINT or PARAMS table: take the loaded step counters (step: the
 * checkpoint header's; < 0 = the table's root attribute) and vpd_decomp_refresh. */
void vpd_decomp_state_loaded(vpd_decomp *d, const vpd_tensor_table *t, vpd_state_which which, int step);

/* The slow path after a non-finite gradient norm: "the gradient of <tensor> (layer <layer>) is
 * <value> at element <i> on rank <r>" for this rank's first non-finite component or CI gradient
 * ("a gradient" when this rank holds none). Local. */
vpd_status vpd_decomp_find_nonfinite_grad(const vpd_decomp *d, char *where, size_t size);

/* Collective over the dp × cp grid: write the checkpoint of d's current state (d->step) into
 * dir. config_yaml and provenance_json must be the same on every rank (may be NULL). On
 * return (every rank) *seconds is the wall time and *bytes the file size. */
vpd_status vpd_checkpoint_write(const char *dir, vpd_decomp *d, const char *config_yaml,
                                const char *provenance_json, double *seconds, size_t *bytes);
/* Non-finite state is refused: the write (nothing written, the error names the tensor) and
 * the reads below (the error names the file and the tensor). */
/* Collective: load the state of a checkpoint into d (built from the same config, on any
 * dp × cp layout whose batch split and C divide), then vpd_decomp_refresh. */
vpd_status vpd_checkpoint_read(const char *path, vpd_decomp *d);
/* Collective over d's grid: the parameters (V, U, CI function) and step of a run.h5 or a
 * checkpoint into d; *is_checkpoint says which the file was. */
vpd_status vpd_decomp_read_params(vpd_decomp *d, const char *path, bool *is_checkpoint);

/* Write run.h5 at path atomically (temporary name, then rename). summary and config may be
 * NULL. Collective over d->grid.cp_comm: with component parallelism every rank of the group calls
 * it and writes its blocks (parallel HDF5). */
vpd_status vpd_runfile_write(const char *path, const vpd_decomp *d, const struct vpd_config *config,
                             const vpd_summary *summary);

#endif
