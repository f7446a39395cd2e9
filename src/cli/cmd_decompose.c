/* `vpd decompose CONFIG.yaml [--out RUN_DIR] [--set key=value ...]`: the main job.
 * Reads the config (either schema), loads the target, builds the decomposition for this
 * rank's share of the batch, trains, summarises, and writes the run directory:
 * config.yaml (resolved), metrics.jsonl, run.h5. */
#define _POSIX_C_SOURCE 200809L
#include <libgen.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "vpd/config.h"
#include "vpd/io.h"
#include "vpd/runfile.h"
#include "vpd/trainer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vpd decompose CONFIG.yaml [--out RUN_DIR] [--set key=value ...] [--quiet]\n\n"
            "Decompose the weights of a target model with adversarial parameter decomposition (VPD).\n"
            "CONFIG.yaml uses the reference implementation's keys (spd's flat schema or\n"
            "param-decomp's `pd:` schema) plus vpd's sections:\n"
            "  target: {path: MODEL_DIR}      model directory (config.json + model.safetensors)\n"
            "  data: {train: FILE.bin, eval: FILE.bin}   token files for language models\n"
            "  output: {dir: RUN_DIR}\n"
            "options:\n"
            "  --out RUN_DIR        run directory (default: output.dir, else runs/<config name>)\n"
            "  --set key=value      override a config key (dotted path; repeatable), e.g.\n"
            "                       --set steps=20 --set seed=3\n"
            "                       --set 'loss_metric_configs[ImportanceMinimalityLoss].coeff=1e-4'\n"
            "  --quiet              no progress display\n"
            "writes RUN_DIR/config.yaml, RUN_DIR/metrics.jsonl and RUN_DIR/run.h5.\n"
            "Multi-rank: mpiexec -n N vpd decompose ... splits the batch over N data-parallel ranks\n"
            "and gives the single-rank result up to float summation order.\n");
}

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* a relative path is taken from the working directory, else next to the config file */
static void resolve_path(char *p, size_t size, const char *config_path) {
    if (!p[0] || p[0] == '/' || is_dir(p)) return;
    struct stat st;
    if (stat(p, &st) == 0) return;
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", config_path);
    char alt[2200];
    snprintf(alt, sizeof alt, "%s/%s", dirname(tmp), p);
    if (strlen(alt) < size && stat(alt, &st) == 0) memcpy(p, alt, strlen(alt) + 1);
}

int vpd_cmd_decompose(int argc, char **argv) {
    int rank = 0, world = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (vpd_cli_wants_help(argc, argv)) {
        if (rank == 0) usage(stdout);
        return 0;
    }
    const char *cfg_path = NULL, *out = NULL;
    bool quiet = false;
    const char *sets[256];
    int n_sets = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--set") && i + 1 < argc && n_sets < 256) sets[n_sets++] = argv[++i];
        else if (!strcmp(argv[i], "--quiet")) quiet = true;
        else if (argv[i][0] == '-') {
            if (rank == 0) { fprintf(stderr, "vpd decompose: unknown option '%s'\n\n", argv[i]); usage(stderr); }
            return 2;
        } else if (!cfg_path) cfg_path = argv[i];
        else {
            if (rank == 0) fprintf(stderr, "vpd decompose: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!cfg_path) {
        if (rank == 0) usage(stderr);
        return 2;
    }
    vpd_config *root = NULL;
    vpd_decomp_config cfg;
    vpd_model target;
    memset(&target, 0, sizeof target);
    vpd_decomp *d = NULL;
    vpd_trainer tr;
    memset(&tr, 0, sizeof tr);
    bool have_target = false, have_trainer = false;
    vpd_status s = vpd_config_load(cfg_path, &root);
    for (int i = 0; s == VPD_OK && i < n_sets; i++) s = vpd_config_set(root, sets[i]);
    if (s == VPD_OK) s = vpd_decomp_config_read(root, &cfg);
    if (s == VPD_OK) {
        resolve_path(cfg.target_dir, sizeof cfg.target_dir, cfg_path);
        resolve_path(cfg.train_tokens, sizeof cfg.train_tokens, cfg_path);
        resolve_path(cfg.eval_tokens, sizeof cfg.eval_tokens, cfg_path);
        if (!cfg.target_dir[0])
            s = vpd_error(VPD_ERR_CONFIG, "%s: no target model: set target.path to a model directory", cfg_path);
    }
    if (s == VPD_OK && cfg.component_parallel != 1)
        s = vpd_error(VPD_ERR_CONFIG, "%s: parallel.component_parallel=%d: component parallelism is not implemented yet; "
                                      "use data parallelism (mpiexec -n N with component_parallel 1)",
                      cfg_path, cfg.component_parallel);
    if (s == VPD_OK && cfg.batch_size % world != 0)
        s = vpd_error(VPD_ERR_CONFIG, "batch_size %d is not divisible by the %d data-parallel ranks", cfg.batch_size, world);
    if (s == VPD_OK) {
        s = vpd_model_load(&target, cfg.target_dir);
        have_target = s == VPD_OK;
    }
    char run_dir[1100] = "";
    if (s == VPD_OK) {
        if (out) snprintf(run_dir, sizeof run_dir, "%s", out);
        else if (cfg.out_dir[0]) snprintf(run_dir, sizeof run_dir, "%s", cfg.out_dir);
        else {
            char tmp[1024];
            snprintf(tmp, sizeof tmp, "%s", cfg_path);
            char *base = basename(tmp), *dot = strrchr(base, '.');
            if (dot) *dot = '\0';
            snprintf(run_dir, sizeof run_dir, "runs/%s", base);
        }
        snprintf(cfg.out_dir, sizeof cfg.out_dir, "%s", run_dir);
        if (rank == 0) {
            s = vpd_mkdirs(run_dir);
            char p[1200];
            snprintf(p, sizeof p, "%s/config.yaml", run_dir);
            if (s == VPD_OK) s = vpd_config_write(root, p);
        }
    }
    int S = 1;
    if (s == VPD_OK && target.cfg.kind == VPD_MODEL_LLAMA) {
        S = cfg.max_seq_len;
        if (S > target.cfg.n_ctx)
            s = vpd_error(VPD_ERR_CONFIG, "max_seq_len %d exceeds the target's context n_ctx %d", S, target.cfg.n_ctx);
    }
    int B = cfg.batch_size / world;
    if (s == VPD_OK) s = vpd_decomp_create(&d, &cfg, &target, B, S, (int64_t)rank * B, cfg.batch_size, MPI_COMM_WORLD);
    if (s == VPD_OK) {
        s = vpd_trainer_init(&tr, d);
        have_trainer = true;
    }
    if (s == VPD_OK) {
        size_t comp = d->n_comp_params;
        vpd_info("target %s (%s), %d layers decomposed, C = %d in total; %zu component + %zu CI parameters",
                 cfg.target_dir, vpd_model_kind_name(target.cfg.kind), d->L, d->C_sum, comp, d->ci->n_params);
        vpd_info("batch %d (%d per rank x %d ranks) x %d positions; memory plan %.1f MiB per rank; run dir %s",
                 cfg.batch_size, B, world, S, (double)vpd_decomp_memory_bytes(d) / 1048576.0, run_dir);
        vpd_run_opts ro = {run_dir, quiet};
        s = vpd_run_training(&tr, &ro);
    }
    vpd_summary sum;
    if (s == VPD_OK) s = vpd_summarize(&tr, &sum, rank == 0 ? stdout : NULL);
    if (s == VPD_OK && rank == 0) {
        char p[1200];
        snprintf(p, sizeof p, "%s/run.h5", run_dir);
        s = vpd_runfile_write(p, d, root, &sum);
        if (s == VPD_OK) printf("\nwrote %s/{config.yaml, metrics.jsonl, run.h5}\n", run_dir);
    }
    int rc = s == VPD_OK ? 0 : vpd_cli_fail("decompose", s);
    if (have_trainer) vpd_trainer_free(&tr);
    vpd_decomp_free(d);
    if (have_target) vpd_model_free(&target);
    vpd_config_free(root);
    return rc;
}
