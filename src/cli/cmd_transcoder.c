/* `vpd transcoder CONFIG.yaml --out RUN_DIR`: train per-layer or cross-layer transcoders on a
 * LlamaSimpleMLP target's MLPs (src/transcoder/train.c; README "Transcoders"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "vpd/signals.h"
#include "vpd/transcoder.h"

#define MAX_SETS 64

static void usage(FILE *f) {
    fprintf(f,
            "usage: vpd transcoder CONFIG.yaml --out RUN_DIR [--set key=value ...] [--force] [--quiet]\n"
            "       vpd transcoder --resume RUN_DIR [--set key=value ...]\n\n"
            "Train per-layer (kind: plt) or cross-layer (kind: clt) transcoders on every MLP of a\n"
            "LlamaSimpleMLP target and write RUN_DIR/transcoder.h5 (README \"Transcoders\"), with\n"
            "config.yaml, metrics.jsonl, eval.json and checkpoint.h5.\n\n"
            "  --out DIR          run directory (refused when it holds another run)\n"
            "  --force            start over in a used run directory (removes that run's files)\n"
            "  --resume DIR       continue DIR's run from its checkpoint (its config.yaml)\n"
            "  --set key=value    override a config key, e.g. --set steps=2000 (repeatable)\n"
            "  --stop-after N     write a checkpoint after N steps and stop (resume later)\n"
            "  --quiet            no progress line\n\n"
            "Configs: configs/transcoder_4L_128_plt.yaml, configs/transcoder_4L_128_clt.yaml.\n"
            "Under mpiexec the global batch is split over ranks (the result does not depend on\n"
            "the rank count). SIGTERM/SIGUSR1 checkpoint and exit %d.\n",
            VPD_EXIT_REQUEUE);
}

int vpd_cmd_transcoder(int argc, char **argv) {
    if (vpd_cli_wants_help(argc, argv)) {
        if (vpd_log_rank() == 0) usage(stdout);
        return 0;
    }
    const char *cfg = NULL, *out = NULL, *resume = NULL, *sets[MAX_SETS];
    int n_sets = 0, stop_after = 0;
    bool force = false, quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--out")) {
            if (!(v = vpd_cli_value("transcoder", argc, argv, &i))) return VPD_ERR_ARG;
            out = v;
        } else if (!strcmp(a, "--resume")) {
            if (!(v = vpd_cli_value("transcoder", argc, argv, &i))) return VPD_ERR_ARG;
            resume = v;
        } else if (!strcmp(a, "--set")) {
            if (!(v = vpd_cli_value("transcoder", argc, argv, &i))) return VPD_ERR_ARG;
            if (n_sets >= MAX_SETS) {
                vpd_error(VPD_ERR_ARG, "more than %d --set overrides", MAX_SETS);
                return vpd_cli_fail("transcoder", VPD_ERR_ARG);
            }
            sets[n_sets++] = v;
        } else if (!strcmp(a, "--stop-after")) {
            if (!vpd_cli_int_opt("transcoder", argc, argv, &i, 1, 1 << 30, &stop_after)) return VPD_ERR_ARG;
        } else if (!strcmp(a, "--force")) {
            force = true;
        } else if (!strcmp(a, "--quiet")) {
            quiet = true;
        } else if (a[0] == '-' || cfg) {
            vpd_error(VPD_ERR_ARG, "unexpected argument '%s'", a);
            if (vpd_log_rank() == 0) usage(stderr);
            return vpd_cli_fail("transcoder", VPD_ERR_ARG);
        } else {
            cfg = a;
        }
    }
    char cfg_buf[1200];
    if (resume) {
        if (out && strcmp(out, resume)) {
            vpd_error(VPD_ERR_ARG, "--resume %s continues in that directory; drop --out %s", resume, out);
            return vpd_cli_fail("transcoder", VPD_ERR_ARG);
        }
        out = resume;
        if (!cfg) {
            snprintf(cfg_buf, sizeof cfg_buf, "%s/config.yaml", resume);
            cfg = cfg_buf;
        }
    }
    if (!cfg || !out) {
        if (vpd_log_rank() == 0) usage(stderr);
        vpd_error(VPD_ERR_ARG, "%s", !cfg ? "missing CONFIG.yaml" : "missing --out RUN_DIR");
        return vpd_cli_fail("transcoder", VPD_ERR_ARG);
    }
    vpd_tc_train_opts o = {.config_path = cfg, .run_dir = out, .sets = sets, .n_sets = n_sets, .resume = resume != NULL,
                           .force = force, .quiet = quiet, .stop_after = stop_after};
    bool interrupted = false;
    vpd_status s = vpd_transcoder_train(&o, &interrupted);
    if (s != VPD_OK) return vpd_cli_fail("transcoder", s);
    return interrupted ? VPD_EXIT_REQUEUE : 0;
}
