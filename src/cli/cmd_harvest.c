/* `vpd harvest RUN_DIR [--tokens FILE] [--n-tokens N] [--batch B] [--force] ...`: what each
 * subcomponent does, from held-out data, into RUN_DIR/harvest.h5 (src/analysis/harvest.c;
 * README.md "harvest.h5" documents the file). Under mpiexec each rank takes a contiguous
 * shard of the stream; the file is the same for any rank count. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.h"
#include "vpd/comm.h"
#include "vpd/harvest.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vpd harvest RUN_DIR [--tokens FILE] [--n-tokens N] [--batch B] [--force]\n"
            "                   [--max-dense-mib M] [--no-cofire] [--no-token-tables] [--quiet]\n\n"
            "Stream held-out data through the target with the CI function and record, per\n"
            "subcomponent of every decomposed layer: firing densities (g > 0, g > 0.1), mean g,\n"
            "histograms of g and of a_c = |U_c| V_c^T x, the top 30 activating contexts (+-20\n"
            "tokens) and 10 g-quantile groups of 5, input- and next-token tables (precision,\n"
            "recall, PMI; toy models: per-feature tables), the logit lens of o_proj / down_proj /\n"
            "wte, the 10 most co-firing subcomponents (Jaccard), head shares of q/k/v/o and the\n"
            "q/k interaction under RoPE. Output: RUN_DIR/harvest.h5 (README.md describes it).\n\n"
            "  --tokens FILE      held-out tokens (.bin or FILE.h5[:/dataset]; default: data.eval)\n"
            "  --n-tokens N       tokens to harvest (toy models: examples); default 1M or the file\n"
            "  --batch B          windows (toy: examples) per forward (default: eval_batch_size)\n"
            "  --force            overwrite an existing harvest.h5\n"
            "  --max-dense-mib M  limit for each dense count table (default 4096)\n"
            "  --no-cofire        skip the co-firing counts (ΣC² memory)\n"
            "  --no-token-tables  skip the token tables (2·ΣC·vocab memory)\n"
            "  --quiet            no progress line\n");
}

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

int vpd_cmd_harvest(int argc, char **argv) {
    const bool root = vpd_world_rank() == 0;
    if (vpd_cli_wants_help(argc, argv)) {
        if (root) usage(stdout);
        return 0;
    }
    const char *dir = NULL;
    vpd_harvest_opts o;
    memset(&o, 0, sizeof o);
    o.max_dense_mib = 4096;
    o.progress = true;
    int batch = 0;
    bool force = false;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        const bool valued = !strcmp(argv[i], "--tokens") || !strcmp(argv[i], "--n-tokens") ||
                            !strcmp(argv[i], "--batch") || !strcmp(argv[i], "--max-dense-mib");
        if (valued && i + 1 >= argc) {
            vpd_cli_value("harvest", argc, argv, &i); /* "missing value for ..." */
            return 2;
        }
        if (!strcmp(argv[i], "--tokens") && i + 1 < argc) o.tokens_path = argv[++i];
        else if (!strcmp(argv[i], "--n-tokens") && i + 1 < argc) {
            o.n_tokens = strtoll(argv[++i], &end, 10);
            if (*end || o.n_tokens <= 0) {
                if (root) fprintf(stderr, "vpd harvest: --n-tokens wants a positive integer, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
            if (!vpd_cli_int_opt("harvest", argc, argv, &i, 1, 1L << 30, &batch)) return 2;
        } else if (!strcmp(argv[i], "--max-dense-mib") && i + 1 < argc) {
            if (!vpd_cli_double_opt("harvest", argc, argv, &i, 0, INFINITY, true, &o.max_dense_mib)) return 2;
        } else if (!strcmp(argv[i], "--force")) force = true;
        else if (!strcmp(argv[i], "--no-cofire")) o.no_cofire = true;
        else if (!strcmp(argv[i], "--no-token-tables")) o.no_token_tables = true;
        else if (!strcmp(argv[i], "--quiet")) o.progress = false;
        else if (argv[i][0] == '-' || dir) {
            if (root) {
                fprintf(stderr, "vpd harvest: unexpected argument '%s'\n\n", argv[i]);
                usage(stderr);
            }
            return 2;
        } else dir = argv[i];
    }
    if (!dir) {
        if (root) usage(stderr);
        return 2;
    }
    char run_h5[1200], out[1200], tmp[1300];
    snprintf(run_h5, sizeof run_h5, "%s/run.h5", dir);
    snprintf(out, sizeof out, "%s/harvest.h5", dir);
    if (!file_exists(run_h5)) {
        if (root) fprintf(stderr, "vpd harvest: %s: no such file (RUN_DIR must be a finished run of vpd decompose)\n", run_h5);
        return 1;
    }
    if (file_exists(out) && !force) {
        if (root) fprintf(stderr, "vpd harvest: %s exists: pass --force to overwrite it\n", out);
        return 1;
    }
    if (o.tokens_path && !file_exists(o.tokens_path) && !strchr(o.tokens_path, ':')) {
        if (root) fprintf(stderr, "vpd harvest: %s: no such token file\n", o.tokens_path);
        return 1;
    }
    vpd_run r;
    vpd_status s = vpd_run_open(&r, dir, batch, NULL, 0);
    s = vpd_all_agree(s, vpd_comm_world());
    if (s != VPD_OK) return root ? vpd_cli_fail("harvest", s) : (int)s;
    if (o.tokens_path && !r.job.trainer.lm) {
        if (root)
            fprintf(stderr, "vpd harvest: %s: a %s target has no token contexts (--tokens applies to language models; toy "
                    "targets harvest their data generator)\n", o.tokens_path, vpd_model_kind_name(r.job.target.cfg.kind));
        vpd_run_close(&r);
        return 1;
    }
    /* rank 0 writes a temporary name and renames it when complete: an existing harvest.h5
     * stays intact until then */
    long pid = root ? (long)getpid() : 0;
    vpd_bcast(&pid, sizeof pid, 0, vpd_comm_world());
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", out, pid);
    s = vpd_harvest(&r, &o, tmp, vpd_comm_world());
    if (root) {
        if (s == VPD_OK && rename(tmp, out) != 0) s = vpd_error(VPD_ERR_IO, "cannot rename %s to %s", tmp, out);
        if (s != VPD_OK) unlink(tmp);
        if (s == VPD_OK) printf("wrote %s\n", out);
    }
    s = vpd_all_agree(s, vpd_comm_world());
    vpd_run_close(&r);
    return s == VPD_OK ? 0 : root ? vpd_cli_fail("harvest", s) : (int)s;
}
