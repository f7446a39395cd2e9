/* Checkpoint and run.h5 readers (src/io/checkpoint.c, src/vpd/state.c): the input is an HDF5
 * file put where a checkpoint would be (RUN/checkpoints/ckpt-00000001.h5) and read the ways vpd
 * reads one: the newest-complete lookup (vpd_checkpoint_latest), the stored config and
 * provenance, the full state into a decomposition (vpd_checkpoint_read: --resume) and the
 * parameters alone (vpd_decomp_read_params: vpd eval / analysis of run.h5 or a checkpoint).
 * The decomposition is built once (every loss kind, so the state table has every kind of row,
 * including persistent-PGD sources) on a random TMS 5-2 target, on this one process.
 * VPD_FUZZ_SEED_OUT=DIR: write a valid checkpoint and run.h5 of it there (the seed corpus).
 * libhdf5 parses the container: inputs that crash libhdf5 itself go to known_libhdf5_crashes/. */
#include "fuzz_util.h"
#include "vpd/checkpoint.h"
#include "vpd/comm.h"
#include "vpd/job.h"
#include "vpd/runfile.h"

static const char CONFIG[] =
    "seed: 1\n"
    "n_mask_samples: 1\n"
    "ci_config: {mode: layerwise, fn_type: mlp, hidden_dims: [4]}\n"
    "sampling: binomial\n"
    "sigmoid_type: leaky_hard\n"
    "module_info:\n"
    "  - {module_pattern: \"linear*\", C: 4}\n"
    "use_delta_component: true\n"
    "loss_metric_configs:\n"
    "  - {classname: FaithfulnessLoss, coeff: 1.0}\n"
    "  - {classname: ImportanceMinimalityLoss, coeff: 3e-3, pnorm: 2.0}\n"
    "  - {classname: StochasticReconLoss, coeff: 1.0}\n"
    "  - classname: PersistentPGDReconLoss\n"
    "    coeff: 0.5\n"
    "    optimizer: {type: adam, lr_schedule: {start_val: 0.01, fn_type: constant, warmup_pct: 0.1}, beta1: 0.5, beta2: 0.99}\n"
    "    scope: {type: per_batch_per_position}\n"
    "    n_warmup_steps: 1\n"
    "output_loss_type: mse\n"
    "batch_size: 8\n"
    "steps: 4\n"
    "lr_schedule: {start_val: 1e-3, fn_type: constant}\n"
    "faithfulness_warmup_steps: 0\n"
    "n_eval_steps: 1\n"
    "task_config: {task_name: tms, feature_probability: 0.05, data_generation_type: at_least_zero_active}\n"
    "target: {path: no-such-model-dir}\n";

static vpd_job job;
static char ckdir[160], ckpath[200];

static void finalize(void) {
    vpd_job_close(&job);
    vpd_dist_finalize(0);
}

static void setup(void) {
    int argc = 0;
    char **argv = NULL;
    vpd_dist_init(&argc, &argv);
    snprintf(ckdir, sizeof ckdir, "%s/model", fuzz_dir()); /* fuzz_cleanup empties and removes <dir>/model */
    snprintf(ckpath, sizeof ckpath, "%s/ckpt-00000001.h5", ckdir);
    if (mkdir(ckdir, 0700) != 0) abort();
    static vpd_model_config tms;
    memset(&tms, 0, sizeof tms);
    tms.kind = VPD_MODEL_TMS;
    tms.n_features = 5;
    tms.n_hidden = 2;
    const vpd_job_opts jo = {.config_text = CONFIG, .config_name = "fuzz-checkpoint", .random_target = &tms, .local = true};
    if (vpd_job_open(&job, &jo) != VPD_OK) {
        fprintf(stderr, "fuzz_checkpoint: cannot build the decomposition: %s\n", vpd_last_error());
        abort();
    }
    atexit(finalize);
    const char *seed_out = getenv("VPD_FUZZ_SEED_OUT");
    if (seed_out) { /* a valid checkpoint and run.h5 (after one step, so every state row is set) */
        vpd_step_metrics sm;
        char *yaml = NULL;
        size_t len = 0;
        if (vpd_config_emit(job.root, &yaml, &len) != VPD_OK || vpd_trainer_step(&job.trainer, &sm) != VPD_OK ||
            vpd_checkpoint_write(seed_out, job.d, yaml, "{\"run_id\": \"fuzz\"}", NULL, NULL) != VPD_OK) {
            fprintf(stderr, "fuzz_checkpoint: seed: %s\n", vpd_last_error());
            abort();
        }
        char p[1200];
        snprintf(p, sizeof p, "%s/run.h5", seed_out);
        if (vpd_runfile_write(p, job.d, job.root, NULL) != VPD_OK) {
            fprintf(stderr, "fuzz_checkpoint: seed: %s\n", vpd_last_error());
            abort();
        }
        free(yaml);
        fprintf(stderr, "fuzz_checkpoint: wrote a checkpoint and run.h5 into %s\n", seed_out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!ckdir[0]) setup();
    fuzz_write(ckpath, data, size);
    char *text = NULL;
    if (fuzz_note(vpd_checkpoint_config(ckpath, &text), "config") == VPD_OK) vpd_free(text);
    text = NULL;
    if (fuzz_note(vpd_checkpoint_provenance(ckpath, &text), "provenance") == VPD_OK) vpd_free(text);
    char latest[400];
    int step = -1;
    if (fuzz_note(vpd_checkpoint_latest(ckdir, latest, sizeof latest, &step), "latest") == VPD_OK)
        FUZZ_ASSERT(!strcmp(latest, ckpath) && step == 1, "latest: %s step %d", latest, step);
    (void)fuzz_note(vpd_checkpoint_read(ckpath, job.d), "read (resume)");
    bool is_ckpt = false;
    (void)fuzz_note(vpd_decomp_read_params(job.d, ckpath, &is_ckpt), "read params (eval)");
    vpd_clear_error();
    return 0;
}
