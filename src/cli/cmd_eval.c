/* `vpd eval RUN_DIR [--batches N] [--batch B] [--pgd-steps 20] [--pgd-curve] [--no-write]`:
 * the readouts of VPD_METHOD.md §6 on evaluation data, printed as a table laid out like the
 * paper's and written into RUN_DIR/run.h5 under /eval. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "vpd/analysis.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vpd eval RUN_DIR|CHECKPOINT.h5 [--batches N] [--batch B] [--pgd-steps K] [--pgd-curve] [--no-pgd]\n"
            "                [--set key=value ...] [--no-write]\n\n"
            "Evaluate a finished decomposition (RUN_DIR/run.h5) on evaluation data:\n"
            "  L0 (g > 0) per layer, per block and in total; alive subcomponents (mean g > 1e-6);\n"
            "  activation densities and CI histograms; the output loss (KL for language models,\n"
            "  MSE for toy models) and next-token CE with CI masks, rounded masks (g > 0, 0.1, 0.5),\n"
            "  stochastic, unmasked, random and zero masks (all without the delta term, as the\n"
            "  paper's table); the adversarial loss after K PGD steps (step 0.1, random init, one\n"
            "  source shared across the batch); pretraining compute recovered for LMs.\n\n"
            "  --batches N     evaluation batches (default: the config's n_eval_steps, at most 10)\n"
            "  --batch B       examples per batch (default: eval_batch_size)\n"
            "  --pgd-steps K   PGD steps of the adversarial readout (default 20)\n"
            "  --pgd-curve     adversarial loss at 20, 40, 80, 160, 320 steps\n"
            "  --no-pgd        skip the adversarial readout\n"
            "  --no-write      print only; do not add /eval to run.h5\n");
}

int vpd_cmd_eval(int argc, char **argv) {
    if (vpd_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *dir = NULL;
    int batches = -1, batch = 0;
    bool write = true, curve = false, no_pgd = false;
    int pgd = 20;
    const char *sets[64];
    int n_sets = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--batches")) {
            if (!vpd_cli_int_opt("eval", argc, argv, &i, 1, 1L << 30, &batches)) return 2;
        } else if (!strcmp(argv[i], "--batch")) {
            if (!vpd_cli_int_opt("eval", argc, argv, &i, 1, 1L << 30, &batch)) return 2;
        } else if (!strcmp(argv[i], "--pgd-steps")) {
            if (!vpd_cli_int_opt("eval", argc, argv, &i, 0, 1L << 30, &pgd)) return 2;
        } else if (!strcmp(argv[i], "--pgd-curve")) curve = true;
        else if (!strcmp(argv[i], "--no-pgd")) no_pgd = true;
        else if (!strcmp(argv[i], "--no-write")) write = false;
        else if (!strcmp(argv[i], "--set")) {
            const char *v = vpd_cli_value("eval", argc, argv, &i);
            if (!v) return 2;
            if (n_sets == 64) {
                fprintf(stderr, "vpd eval: more than 64 --set options\n");
                return 2;
            }
            sets[n_sets++] = v;
        }
        else if (argv[i][0] == '-' || dir) {
            fprintf(stderr, "vpd eval: unexpected argument '%s'\n\n", argv[i]);
            usage(stderr);
            return 2;
        } else dir = argv[i];
    }
    if (!dir || pgd < 0 || (batches == 0)) {
        usage(stderr);
        return 2;
    }
    vpd_run r;
    vpd_status s = vpd_run_open(&r, dir, batch, sets, n_sets);
    if (s != VPD_OK) return vpd_cli_fail("eval", s);
    vpd_eval_opts o;
    memset(&o, 0, sizeof o);
    o.n_batches = batches > 0 ? batches : (r.job.cfg.n_eval_steps < 10 ? r.job.cfg.n_eval_steps : 10);
    o.pgd_step_size = 0.1;
    if (!no_pgd) {
        if (curve) {
            const int ks[5] = {20, 40, 80, 160, 320};
            for (int i = 0; i < 5; i++) o.pgd_steps[o.n_pgd++] = ks[i];
        } else {
            o.pgd_steps[o.n_pgd++] = pgd;
        }
    }
    vpd_eval_result res;
    s = vpd_evaluate(&r, &o, &res);
    if (s == VPD_OK) vpd_eval_print(&r, &res, stdout);
    if (s == VPD_OK && !r.job.trainer.lm) { /* toy targets: the ground-truth comparison */
        vpd_summary sum;
        s = vpd_summarize(&r.job.trainer, &sum, stdout);
    }
    if (s == VPD_OK && write && r.is_checkpoint) {
        printf("\n(a checkpoint: /eval is not written into it)\n");
    } else if (s == VPD_OK && write) {
        s = vpd_eval_write(&r, &res);
        if (s == VPD_OK) printf("\nwrote /eval into %s\n", r.h5_path);
    }
    vpd_eval_result_free(&res);
    vpd_run_close(&r);
    return s == VPD_OK ? 0 : vpd_cli_fail("eval", s);
}
