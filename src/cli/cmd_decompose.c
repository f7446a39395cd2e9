/* `vpd decompose CONFIG.yaml [--out RUN_DIR] [--set key=value ...]`: the main job.
 * Reads the config (either schema), loads the target, builds the decomposition for this
 * rank's share of the batch, trains, summarises, and writes the run directory:
 * config.yaml (resolved), provenance.json, metrics.jsonl, checkpoints/, run.h5.
 *
 * HPC operations (include/vpd/checkpoint.h, include/vpd/signals.h): periodic checkpoints
 * from the `checkpoint:` section; SIGTERM/SIGUSR1 make every rank checkpoint at the next
 * step boundary and exit with VPD_EXIT_REQUEUE (75); `--resume RUN_DIR` continues from the
 * newest complete checkpoint on any rank count, refusing config changes except for the
 * keys named by --allow-config-change (checkpoint.* and output.* may always change). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "vpd/job.h"
#include "vpd/signals.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vpd decompose CONFIG.yaml [--out RUN_DIR] [--set key=value ...] [--quiet] [--force]\n"
            "       vpd decompose --resume RUN_DIR [CONFIG.yaml] [--set key=value ...]\n"
            "                     [--allow-config-change KEY ...]\n\n"
            "Decompose the weights of a target model with adversarial parameter decomposition (VPD).\n"
            "CONFIG.yaml uses the reference implementation's keys (spd's flat schema or\n"
            "param-decomp's `pd:` schema) plus vpd's sections:\n"
            "  target: {path: MODEL_DIR}      model directory (config.json + model.safetensors)\n"
            "  data: {train: FILE.bin, eval: FILE.bin}   token files for language models\n"
            "  output: {dir: RUN_DIR}\n"
            "  checkpoint: {every_steps: N, every_minutes: M, keep_last: 2, keep_every: 0, dir: checkpoints,\n"
            "               watchdog_s: T}\n"
            "options:\n"
            "  --out RUN_DIR        run directory (default: output.dir, else runs/<config name>)\n"
            "  --set key=value      override a config key (dotted path; repeatable), e.g.\n"
            "                       --set steps=20 --set seed=3\n"
            "                       --set 'loss_metric_configs[ImportanceMinimalityLoss].coeff=1e-4'\n"
            "  --quiet              no progress display\n"
            "  --force              start over in a run directory that holds another run: removes\n"
            "                       its config.yaml, provenance.json, metrics.jsonl, run.h5 and\n"
            "                       checkpoints (nothing else); without it such a directory is refused\n"
            "  --resume RUN_DIR     continue from RUN_DIR's newest complete checkpoint (the config\n"
            "                       is the checkpoint's unless CONFIG.yaml is given); the result is\n"
            "                       bitwise identical to an uninterrupted run on the same ranks\n"
            "  --stop-at-step N     checkpoint and stop (status %d) once step N is reached, as a\n"
            "                       signal would (time boxing, tests)\n"
            "  --watchdog T         end the job when no step completes for T seconds (a stopped or\n"
            "                       hung rank), naming the rank that stopped; status 124. T must\n"
            "                       exceed the longest step + checkpoint write; 0 = off (default).\n"
            "                       Precedence: --watchdog, then VPD_WATCHDOG_S=T in the environment,\n"
            "                       then the config's checkpoint.watchdog_s\n"
            "  --allow-config-change KEY ...   accept these changed keys on resume (fnmatch\n"
            "                       patterns, e.g. steps 'loss_metric_configs*')\n"
            "writes RUN_DIR/config.yaml, provenance.json, metrics.jsonl, checkpoints/ and run.h5.\n"
            "Multi-rank: mpiexec -n N vpd decompose ... splits the batch over N data-parallel ranks\n"
            "and gives the single-rank result up to float summation order.\n"
            "Signals: SIGTERM or SIGUSR1 -> checkpoint at the next step, exit status %d (requeue me);\n"
            "a second signal at least VPD_SIGNAL_INSIST_S (default 2) seconds later exits at once.\n"
            "Under a bare mpirun (Open MPI) SIGTERM makes mpirun exit 1 whatever the ranks do; it\n"
            "passes TERM on after odls_base_sigkill_timeout s and SIGKILLs as long again: use\n"
            "jobscripts/vpd_run.sh, or send USR1, or raise OMPI_MCA_odls_base_sigkill_timeout\n"
            "(README \"HPC operations\").\n"
            "Environment: VPD_WATCHDOG_S=T as --watchdog T (the option wins).\n",
            VPD_EXIT_REQUEUE, VPD_EXIT_REQUEUE);
}

int vpd_cmd_decompose(int argc, char **argv) {
    const int rank = vpd_world_rank();
    if (vpd_cli_wants_help(argc, argv)) {
        if (rank == 0) usage(stdout);
        return 0;
    }
    /* handlers first: a signal during start-up must not kill the job without a checkpoint
     * decision (it is acted on at the first step boundary) */
    vpd_signals_install();
    const char *cfg_path = NULL, *out = NULL, *resume = NULL;
    bool quiet = false, force = false;
    int stop_at = 0;
    bool wd_given = false;
    double wd = 0;
    const char *sets[256], *allow[256];
    int n_sets = 0, n_allow = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out")) {
            if (!(out = vpd_cli_value("decompose", argc, argv, &i))) return 2;
        } else if (!strcmp(argv[i], "--set")) {
            const char *v = vpd_cli_value("decompose", argc, argv, &i);
            if (!v) return 2;
            if (n_sets == 256) {
                if (rank == 0) fprintf(stderr, "vpd decompose: more than 256 --set options\n");
                return 2;
            }
            sets[n_sets++] = v;
        } else if (!strcmp(argv[i], "--quiet")) quiet = true;
        else if (!strcmp(argv[i], "--force")) force = true;
        else if (!strcmp(argv[i], "--resume")) {
            if (!(resume = vpd_cli_value("decompose", argc, argv, &i))) return 2;
        } else if (!strcmp(argv[i], "--stop-at-step")) {
            if (!vpd_cli_int_opt("decompose", argc, argv, &i, 1, 1L << 30, &stop_at)) return 2;
        } else if (!strcmp(argv[i], "--watchdog")) {
            const char *v = vpd_cli_value("decompose", argc, argv, &i);
            if (!v || !vpd_cli_parse_double("decompose", "--watchdog", v, 0, 1e9, &wd)) return 2;
            wd_given = true;
        } else if (!strcmp(argv[i], "--allow-config-change")) {
            while (i + 1 < argc && argv[i + 1][0] != '-' && n_allow < 256) allow[n_allow++] = argv[++i];
        } else if (argv[i][0] == '-') {
            if (rank == 0) { fprintf(stderr, "vpd decompose: unknown option '%s'\n\n", argv[i]); usage(stderr); }
            return 2;
        } else if (!cfg_path) cfg_path = argv[i];
        else {
            if (rank == 0) fprintf(stderr, "vpd decompose: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!cfg_path && !resume) {
        if (rank == 0) usage(stderr);
        return 2;
    }
    const vpd_job_opts jo = {.config_path = cfg_path, .sets = sets, .n_sets = n_sets, .resume = resume, .allow = allow,
                             .n_allow = n_allow, .out = out, .write_run_dir = true, .force = force,
                             .watchdog_given = wd_given, .watchdog_s = wd};
    vpd_job job;
    vpd_status s = vpd_job_open(&job, &jo);
    if (s == VPD_OK) s = vpd_job_train(&job, quiet, stop_at);
    int rc;
    if (s == VPD_OK && job.stopped_by_signal) {
        rc = VPD_EXIT_REQUEUE;
    } else {
        if (s == VPD_OK) s = vpd_job_write(&job);
        rc = s == VPD_OK ? 0 : vpd_cli_fail("decompose", s);
    }
    vpd_job_close(&job);
    return rc;
}
