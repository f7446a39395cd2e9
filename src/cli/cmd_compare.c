/* `vpd compare [--vpd RUN_DIR]... [--tc RUN_DIR]... [--tokens FILE] [--out DIR]`: VPD
 * decompositions and transcoders spliced into the same target on the same held-out tokens —
 * ΔCE, KL, CE recovered against zero ablation, L0 and parameters touched per token under
 * the paper's three protocols, and feature splitting between dictionary sizes
 * (include/vpd/compare.h; README "vpd compare"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "vpd/comm.h"
#include "vpd/compare.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vpd compare [--vpd RUN_DIR]... [--tc RUN_DIR]... [--tokens FILE] [--n-tokens N] [--out DIR [--force]]\n"
            "                   [--batch B] [--seq S] [--target MODEL_DIR] [--mlps 0,1,..] [--taus 0,0.1,0.5] [--no-ci-masks]\n"
            "                   [--random-windows [--seed N]] [--split-cos 0.5] [--set key=value ...] [--quiet]\n\n"
            "Splice VPD runs (--vpd: masked c_fc and down_proj components, no delta; settings: CI masks and masks\n"
            "rounded at g > tau) and transcoders (--tc: PLT / CLT runs of `vpd transcoder`) into their LlamaSimpleMLP\n"
            "target in place of its MLPs, on the same held-out tokens, under three protocols:\n"
            "  error_propagating  all MLPs replaced, each replacement reads the modified residual stream\n"
            "  clean_input        all MLPs replaced, each replacement reads the target's clean MLP input\n"
            "  single_layer       one MLP at a time (per MLP and their mean)\n"
            "and report CE increase over the target, KL(target || spliced), the fraction of CE recovered against\n"
            "zero-ablating the same MLPs (mean ± standard error over batches), active subcomponents / latents\n"
            "per token (per MLP, per weight matrix or encoder, per MLP reconstruction) and parameters touched per\n"
            "token. Runs of one method at different dictionary sizes also give feature splitting: the fraction\n"
            "of the smaller run's alive objects whose output direction matches more than one alive object of the\n"
            "larger (cosine > --split-cos).\n\n"
            "  --vpd DIR          a VPD run (repeatable)\n"
            "  --tc DIR           a transcoder run with transcoder.h5 (repeatable)\n"
            "  --tokens FILE      held-out tokens (default: the first VPD run's data.eval)\n"
            "  --n-tokens N       tokens to evaluate (default 1000000, or the whole file when smaller)\n"
            "  --batch B          examples per batch (default: the VPD run's eval_batch_size, else 8)\n"
            "  --seq S            positions per example without a VPD run (default: the target's n_ctx)\n"
            "  --target DIR       the target model (default: the VPD run's, else the transcoder's)\n"
            "  --mlps LIST        MLPs to replace (default: all); 'all at once' means all of these\n"
            "  --taus LIST        rounded-mask thresholds for VPD (default 0,0.1,0.5)\n"
            "  --no-ci-masks      skip the CI-as-mask setting for VPD\n"
            "  --random-windows   draw windows as `vpd eval` does (the eval stream of --seed, default the run's\n"
            "                     seed) instead of consecutive windows from the start of the file\n"
            "  --split-cos C      feature-splitting cosine threshold (default 0.5)\n"
            "  --out DIR          write DIR/compare.csv, compare.json, splitting.csv (refuses an existing\n"
            "                     compare.json unless --force); `vpd collect --compare DIR...` gathers them\n");
}

static int parse_list(const char *s, double *out, int max) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || n == max || (*end && *end != ',')) return -1;
        out[n++] = v;
        p = *end ? end + 1 : end;
    }
    return n;
}

int vpd_cmd_compare(int argc, char **argv) {
    if (vpd_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    vpd_compare_opts o;
    vpd_compare_opts_defaults(&o);
    const char *out = NULL;
    bool force = false;
    const char *sets[64];
    int n_sets = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--vpd") || !strcmp(a, "--tc")) {
            const char *v = vpd_cli_value("compare", argc, argv, &i);
            if (!v) return 2;
            int *n = a[2] == 'v' ? &o.n_vpd : &o.n_tc;
            if (*n == VPD_CMP_MAX_RUNS) {
                fprintf(stderr, "vpd compare: more than %d %s runs\n", VPD_CMP_MAX_RUNS, a);
                return 2;
            }
            (a[2] == 'v' ? o.vpd_runs : o.tc_runs)[(*n)++] = v;
        } else if (!strcmp(a, "--tokens")) {
            if (!(o.tokens = vpd_cli_value("compare", argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--target")) {
            if (!(o.target = vpd_cli_value("compare", argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--out")) {
            if (!(out = vpd_cli_value("compare", argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--mlps")) {
            if (!(o.mlps = vpd_cli_value("compare", argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--n-tokens")) {
            const char *v = vpd_cli_value("compare", argc, argv, &i);
            long n;
            if (!v || !vpd_cli_parse_int("compare", a, v, 1, 1L << 40, &n)) return 2;
            o.n_tokens = n;
        } else if (!strcmp(a, "--seed")) {
            const char *v = vpd_cli_value("compare", argc, argv, &i);
            long n;
            if (!v || !vpd_cli_parse_int("compare", a, v, 0, 1L << 62, &n)) return 2;
            o.seed = (uint64_t)n;
            o.have_seed = true;
        } else if (!strcmp(a, "--batch")) {
            if (!vpd_cli_int_opt("compare", argc, argv, &i, 1, 1L << 20, &o.batch)) return 2;
        } else if (!strcmp(a, "--seq")) {
            if (!vpd_cli_int_opt("compare", argc, argv, &i, 1, 1L << 20, &o.seq)) return 2;
        } else if (!strcmp(a, "--taus")) {
            const char *v = vpd_cli_value("compare", argc, argv, &i);
            if (!v) return 2;
            o.n_taus = parse_list(v, o.taus, VPD_CMP_MAX_TAUS);
            if (o.n_taus < 0) {
                fprintf(stderr, "vpd compare: --taus '%s': expected a comma list of at most %d numbers, e.g. 0,0.1,0.5\n", v,
                        VPD_CMP_MAX_TAUS);
                return 2;
            }
            for (int t = 0; t < o.n_taus; t++)
                if (!(o.taus[t] >= 0 && o.taus[t] < 1)) {
                    fprintf(stderr, "vpd compare: --taus: threshold %g is outside [0, 1)\n", o.taus[t]);
                    return 2;
                }
        } else if (!strcmp(a, "--split-cos")) {
            if (!vpd_cli_double_opt("compare", argc, argv, &i, 0, 1, true, &o.split_cos)) return 2;
        } else if (!strcmp(a, "--no-ci-masks")) o.ci_masks = false;
        else if (!strcmp(a, "--random-windows")) o.random_windows = true;
        else if (!strcmp(a, "--force")) force = true;
        else if (!strcmp(a, "--quiet")) o.quiet = true;
        else if (!strcmp(a, "--set")) {
            const char *v = vpd_cli_value("compare", argc, argv, &i);
            if (!v) return 2;
            if (n_sets == 64) {
                fprintf(stderr, "vpd compare: more than 64 --set options\n");
                return 2;
            }
            sets[n_sets++] = v;
        } else {
            fprintf(stderr, "vpd compare: unexpected argument '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (o.n_vpd + o.n_tc == 0) {
        fprintf(stderr, "vpd compare: nothing to compare: give --vpd RUN_DIR and/or --tc RUN_DIR\n\n");
        usage(stderr);
        return 2;
    }
    if (o.n_vpd && !o.ci_masks && o.n_taus == 0) {
        fprintf(stderr, "vpd compare: --no-ci-masks with an empty --taus leaves no VPD setting\n");
        return 2;
    }
    if (out && !force) { /* before the evaluation, not after it */
        char p[1200];
        snprintf(p, sizeof p, "%s/compare.json", out);
        FILE *f = fopen(p, "r");
        if (f) {
            fclose(f);
            fprintf(stderr, "vpd compare: %s exists: pass --force to replace it, or choose another --out\n", p);
            return 2;
        }
    }
    o.sets = sets;
    o.n_sets = n_sets;
    vpd_compare_result res;
    vpd_status s = vpd_compare(&o, &res);
    if (s != VPD_OK) return vpd_cli_fail("compare", s);
    if (vpd_world_rank() == 0) {
        vpd_compare_print(&res, stdout);
        if (out) {
            s = vpd_compare_write(&res, out, force);
            if (s == VPD_OK) printf("\nwrote %s/compare.csv, compare.json, splitting.csv\n", out);
        }
    }
    vpd_compare_result_free(&res);
    s = vpd_all_agree(s, vpd_comm_world());
    return s == VPD_OK ? 0 : vpd_cli_fail("compare", s);
}
