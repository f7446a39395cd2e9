/* `vpd pretrain CONFIG.yaml [--out MODEL_DIR] [--set key=value ...]`: train a target
 * model from scratch and write its model directory (config.json + model.safetensors via
 * vpd_model_save) with the training curve (training.jsonl) and the resolved config.
 *
 *   TMS        spd experiments/tms/train_tms.py: MSE between the output and |labels|
 *              (labels = inputs), AdamW (torch defaults, weight decay 0.01) on every
 *              parameter. PyTorch's tied TMS has two Parameters sharing storage
 *              (linear2.weight is a view of linear1.weightᵀ), so AdamW keeps two states
 *              and applies two updates per step; `tied_weights_adam: separate` (default)
 *              reproduces that, `summed` uses one state on the summed gradient.
 *   ResidMLP   spd experiments/resid_mlp/train_resid_mlp.py: "readoff" MSE between the
 *              model output (after W_U) and x + ReLU(c ⊙ x); W_E, W_U fixed.
 *   LM         next-token cross-entropy on random windows of a token binary; weight decay
 *              only on tensors with >= 2 dims (spd pretrain / nanoGPT); validation loss
 *              on a held-out token file every eval_freq steps (the target's validation
 *              curve that "pretraining compute recovered" reads).
 *
 * Keys follow spd's training configs (TMSTrainConfig, ResidMLPTrainConfig; the model
 * section uses config.json's field names). Unknown keys are errors. Data parallel under
 * MPI: each rank draws its slice of the global batch (layout-independent data) and
 * gradients are averaged, so any rank count trains the same model up to summation order.
 * Updates follow spd's trainers: `steps` iterations, each lr = schedule(step) then one
 * AdamW update. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "vpd/pretrain.h"

#define MAX_SETS 64

static void usage(FILE *f) {
    fprintf(f,
            "usage: vpd pretrain CONFIG.yaml [--out MODEL_DIR] [--set key=value ...]\n\n"
            "Train a target model (TMS, ResidMLP, LlamaSimpleMLP) from scratch and write MODEL_DIR\n"
            "(config.json, model.safetensors, training.jsonl, pretrain_config.yaml).\n\n"
            "  --out DIR        output directory (default: the config's out_dir)\n"
            "  --set key=value  override a config key (YAML value; repeatable), e.g. --set steps=2000\n\n"
            "Configs: configs/tms_5-2-target.yaml, tms_40-10-target.yaml, resid_mlp{1,2,3}-target.yaml,\n"
            "lm_tiny-target.yaml. Under mpiexec the global batch is split over ranks.\n");
}

int vpd_cmd_pretrain(int argc, char **argv) {
    if (vpd_cli_wants_help(argc, argv)) {
        if (vpd_log_rank() == 0) usage(stdout);
        return 0;
    }
    const char *cfg_path = NULL, *out = NULL, *sets[MAX_SETS];
    int n_sets = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") || !strcmp(argv[i], "--set")) {
            if (i + 1 >= argc) {
                vpd_error(VPD_ERR_ARG, "%s needs a value", argv[i]);
                return vpd_cli_fail("pretrain", VPD_ERR_ARG);
            }
            if (!strcmp(argv[i], "--out")) out = argv[++i];
            else if (n_sets < MAX_SETS) sets[n_sets++] = argv[++i];
            else {
                vpd_error(VPD_ERR_ARG, "more than %d --set overrides", MAX_SETS);
                return vpd_cli_fail("pretrain", VPD_ERR_ARG);
            }
        } else if (!strncmp(argv[i], "--out=", 6)) {
            out = argv[i] + 6;
        } else if (!strncmp(argv[i], "--set=", 6) && n_sets < MAX_SETS) {
            sets[n_sets++] = argv[i] + 6;
        } else if (argv[i][0] == '-' || cfg_path) {
            vpd_error(VPD_ERR_ARG, "unexpected argument '%s'", argv[i]);
            if (vpd_log_rank() == 0) usage(stderr);
            return vpd_cli_fail("pretrain", VPD_ERR_ARG);
        } else {
            cfg_path = argv[i];
        }
    }
    if (!cfg_path) {
        if (vpd_log_rank() == 0) usage(stderr);
        vpd_error(VPD_ERR_ARG, "missing CONFIG.yaml");
        return vpd_cli_fail("pretrain", VPD_ERR_ARG);
    }

    vpd_pretrain *p = NULL;
    vpd_status s = vpd_pretrain_open(&p, cfg_path, sets, n_sets, out);
    if (s == VPD_OK) s = vpd_pretrain_run(p);
    if (s == VPD_OK) s = vpd_pretrain_write(p);
    int rc = s == VPD_OK ? 0 : vpd_cli_fail("pretrain", s);
    vpd_pretrain_close(p);
    return rc;
}
