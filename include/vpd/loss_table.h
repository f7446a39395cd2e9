/* vpd loss table: one row per loss classname (spd `loss_metric_configs`), the one place that
 * says what a loss is. Everything that used to switch on vpd_loss_kind — the config reader,
 * the loss dispatcher, the trainer's metric reduction, the persistent-PGD set-up, the buffers
 * a step must keep, and the parity tool's attribute reader and fixed draws — reads the row.
 *
 * A row holds:
 *   classname      spd's class name ("FaithfulnessLoss", ...), the YAML key and log name
 *   read_config    reader of the loss's own YAML fields (classname and coeff are read by the
 *                  caller); NULL when it has none
 *   fields         the field groups it has (VPD_LOSS_FIELDS_*): the parity tool reads the same
 *                  groups from HDF5 attributes
 *   evaluate       value and backward; the coefficient arrives ONCE, as the gradient seed
 *                  dscale (= coeff when the backward is wanted, 0 otherwise), and every
 *                  gradient the loss adds is ∂(dscale·loss)
 *   persistent     keeps state across steps (persistent PGD: d->loss.ppgd[index])
 *   over_blocks    how its value combines over the component blocks of a cp group
 *   over_replicas  how its value combines over data-parallel replicas (the logged metric)
 *   needs          what it takes from the step (VPD_LOSS_NEEDS_*: mask samples, routing, PGD
 *                  initial sources, the target's hidden activations)
 *   masks, layerwise  the variant of the reconstruction family it is (losses.c)
 *
 * Adding a loss: a vpd_loss_kind value (decomp.h), an evaluate function (losses.c, or reuse
 * one with new masks / layerwise / needs), one row in src/vpd/loss_table.c. Nothing else. */
#ifndef VPD_LOSS_TABLE_H
#define VPD_LOSS_TABLE_H

#include "vpd/decomp.h"

struct vpd_config;

/* config field groups beyond classname and coeff */
enum {
    VPD_LOSS_FIELDS_IM = 1u << 0,      /* pnorm, beta, eps, p_anneal_start_frac/end_frac/final_p */
    VPD_LOSS_FIELDS_ROUTING = 1u << 1, /* routing: {type: uniform_k_subset | static_probability, p} */
    VPD_LOSS_FIELDS_PGD = 1u << 2,     /* init, step_size, n_steps, mask_scope */
    VPD_LOSS_FIELDS_PPGD = 1u << 3,    /* optimizer, scope, use_sigmoid_parameterization, n_warmup_steps */
};

/* what a loss takes from the step besides the CI, Δ and the target output */
enum {
    VPD_LOSS_NEEDS_MASK_SAMPLES = 1u << 0, /* n_mask_samples stochastic source draws (d->pass.src, d->pass.srcdelta) */
    VPD_LOSS_NEEDS_ROUTING = 1u << 1,      /* routing draws into d->pass.route: one per mask sample when it
                                              draws mask samples, else one (draw 0) */
    VPD_LOSS_NEEDS_PGD_INIT = 1u << 2,     /* PGD initial sources: one restart, or one per layer (layerwise) */
    VPD_LOSS_NEEDS_HIDDEN_ACTS = 1u << 3,  /* the target's layer outputs (d->layers[k].y_target) */
};

/* How a value held by each block / replica becomes the reported value. */
typedef enum {
    VPD_REDUCE_SAME = 0, /* every block (replica) already holds the whole value */
    VPD_REDUCE_SUM,      /* each holds its share: summed */
    VPD_REDUCE_MEAN      /* each holds the mean over its rows: averaged */
} vpd_loss_reduce;

/* Value of loss `index` (d->cfg->losses[index]) on the step's batch. When backward: adds
 * ∂(dscale·loss)/∂(U, V) into the component gradient and ∂(dscale·loss)/∂g into d->act.dg_lower /
 * d->act.dg_upper (dscale = coeff; 0 adds nothing); a persistent loss also keeps its source
 * gradient for the ascent (even when dscale is 0). */
typedef double vpd_loss_eval_fn(vpd_decomp *d, int index, double dscale, bool backward);

typedef struct {
    vpd_loss_kind kind;
    const char *classname;
    vpd_status (*read_config)(struct vpd_config *lm, vpd_loss_cfg *lc);
    unsigned fields;
    vpd_loss_eval_fn *evaluate;
    bool persistent;
    vpd_loss_reduce over_blocks, over_replicas;
    unsigned needs;
    vpd_mask_source masks; /* reconstruction family: where the masks come from */
    bool layerwise;        /* one layer replaced at a time (the value is the mean over layers) */
} vpd_loss_def;

/* the row of a kind (a bug, not a user error, when k is out of range) */
const vpd_loss_def *vpd_loss_def_of(vpd_loss_kind k);
/* the row with that classname, or NULL */
const vpd_loss_def *vpd_loss_def_find(const char *classname);
/* true when any configured loss needs `need` (VPD_LOSS_NEEDS_*) */
bool vpd_loss_any_needs(const vpd_decomp_config *cfg, unsigned need);

/* the evaluate functions of the table's rows (losses.c, ppgd.c) */
vpd_loss_eval_fn vpd_loss_faithfulness_eval, vpd_loss_importance_minimality_eval, vpd_loss_recon_eval,
    vpd_loss_pgd_eval, vpd_loss_ppgd_eval;

#endif
