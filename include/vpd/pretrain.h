/* vpd pretrain: train a target model (TMS, ResidMLP, LlamaSimpleMLP) from scratch
 * (src/models/pretrain.c; the command is src/cli/cmd_pretrain.c). Data parallel over the
 * world: each rank draws its slice of the global batch and gradients are averaged
 * (vpd_dp_mean), so any rank count trains the same model up to summation order. */
#ifndef VPD_PRETRAIN_H
#define VPD_PRETRAIN_H

#include "vpd/core.h"

typedef struct vpd_pretrain vpd_pretrain;

/* Read CONFIG.yaml (spd's training-config keys; --set overrides applied in order; out_dir
 * replaces the config's out_dir when non-NULL), build the model, data and optimiser, print
 * the plan, and (rank 0) create the output directory with training.jsonl. Collective: a
 * failure on any rank fails every rank. */
vpd_status vpd_pretrain_open(vpd_pretrain **p, const char *cfg_path, const char *const *sets, int n_sets,
                             const char *out_dir);
/* the training loop (evaluations every eval_freq steps and at the end) */
vpd_status vpd_pretrain_run(vpd_pretrain *p);
/* rank 0 writes the model directory: config.json, model.safetensors, pretrain_config.yaml
 * (and label_coeffs.json for ResidMLP) */
vpd_status vpd_pretrain_write(vpd_pretrain *p);
void vpd_pretrain_close(vpd_pretrain *p);

#endif
