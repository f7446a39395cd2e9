/* `vpd bench`: seconds per training step of the toy decompositions, against the machine's
 * peak and the PyTorch implementation users would run instead (../shared/MACHINE.md).
 *
 * For each benchmark (tms_5-2, tms_40-10, resid_mlp1) it reads configs/<name>.yaml, loads
 * the target from models/<name> when that directory exists and otherwise builds a target
 * of the same sizes in memory with the random init of `vpd pretrain` (step cost does not
 * depend on the weights' values, only on their shapes), creates the decomposition for
 * this rank's share of the configured batch and times full training steps
 * (vpd_trainer_step: target forward, CI, every loss with its backward, allreduce, AdamW)
 * at each requested OpenBLAS thread count, after a few untimed warm-up steps. The
 * faithfulness warmup is skipped (it is not part of a step).
 *
 * Reported per row: the median over the timed steps of the step time (each step's time
 * is the slowest rank's), the FLOPs of one step's matrix products counted analytically as
 * Σ 2·M·N·K over every vpd_gemm call of the step (element-wise work — GELU, masks, the
 * CI networks' 1→h and h→1 element-wise Linears, Adam — is not counted), the achieved
 * GFLOP/s, its % of peak (116 GFLOP/s per core × the cores in use = ranks × threads),
 * and the PyTorch step time divided by ours (> 1: vpd is faster). */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "vpd/job.h"

/* from src/core/blas.c (bench-only instrumentation, not part of include/vpd/core.h) */
double vpd_blas_flops(void);
void vpd_blas_flops_reset(void);

#define PEAK_GFLOPS_PER_CORE 116.0

typedef struct {
    const char *name;
    vpd_model_config mc;     /* sizes of the random target used when models/<name> is missing */
    double torch_s[2];       /* PyTorch median s/step at 1 and 2 threads (MACHINE.md); 0 = none */
} bench_case;

static const bench_case cases[] = {
    {"tms_5-2", {.kind = VPD_MODEL_TMS, .n_features = 5, .n_hidden = 2}, {25.6e-3, 28.5e-3}},
    {"tms_40-10", {.kind = VPD_MODEL_TMS, .n_features = 40, .n_hidden = 10}, {0, 0}},
    {"resid_mlp1",
     {.kind = VPD_MODEL_RESID_MLP, .n_features = 100, .d_embed = 1000, .d_mlp = 50, .n_layers = 1},
     {231e-3, 216e-3}},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static void usage(FILE *f) {
    fprintf(f,
            "usage: vpd bench [--only NAME] [--steps N] [--warmup N] [--threads 1,2]\n"
            "                 [--configs DIR] [--models DIR]\n\n"
            "Median seconds per decomposition training step for tms_5-2, tms_40-10 and resid_mlp1\n"
            "(configs/<name>.yaml, batch as configured, split over the MPI ranks), at each OpenBLAS\n"
            "thread count; GFLOP/s of the step's matrix products (2·M·N·K per gemm, counted),\n"
            "%% of peak (116 GFLOP/s per core in use) and the speed-up over PyTorch (MACHINE.md).\n"
            "The target is models/<name> if present, else a random target of the same sizes.\n"
            "options:\n"
            "  --only NAME      one benchmark\n"
            "  --steps N        timed steps per row (default 20)\n"
            "  --warmup N       untimed steps first (default 3)\n"
            "  --threads LIST   OpenBLAS thread counts, comma-separated (default 1,2)\n"
            "  --configs DIR    default: configs\n"
            "  --models DIR     default: models\n"
            "1 rank x 2 threads under mpiexec needs --bind-to none (MACHINE.md).\n");
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* a long schedule so no timed step is the last (which skips the update) */
static void bench_schedule(vpd_decomp_config *cfg, void *ctx) {
    (void)ctx;
    cfg->steps = 1 << 30;
    cfg->faithfulness_warmup_steps = 0;
}

/* one benchmark at each thread count; prints its rows on rank 0 */
static vpd_status run_case(const bench_case *bc, const char *cfg_dir, const char *model_dir, int steps, int warmup,
                           const int *threads, int n_threads) {
    const int rank = vpd_world_rank(), world = vpd_world_size();
    const MPI_Comm comm = vpd_comm_world();
    char path[1200], mdir[1200];
    snprintf(path, sizeof path, "%s/%s.yaml", cfg_dir, bc->name);
    snprintf(mdir, sizeof mdir, "%s/%s", model_dir, bc->name);
    /* the target is models/<name> if present, else random of the same sizes */
    const vpd_job_opts jo = {.config_path = path, .target_dir = mdir, .random_target = &bc->mc, .adjust = bench_schedule};
    vpd_job job;
    double *times = NULL;
    vpd_status s = vpd_job_open(&job, &jo);
    const vpd_decomp *d = job.d;
    vpd_trainer *tr = &job.trainer;
    const int B = job.geom.B;
    const bool random_target = job.random_target;
    if (s == VPD_OK && !(times = malloc(sizeof(double) * (size_t)steps))) s = vpd_error(VPD_ERR_MEM, "bench timings");
    if (s == VPD_OK && rank == 0)
        printf("%-11s batch %d (%d/rank), C = %d, target %s\n", bc->name, job.cfg.batch_size, B, d->C_sum,
               random_target ? "random (models dir missing; same sizes)" : mdir);
    for (int ti = 0; s == VPD_OK && ti < n_threads; ti++) {
        vpd_blas_set_threads(threads[ti]);
        vpd_step_metrics sm;
        for (int i = 0; s == VPD_OK && i < warmup; i++) s = vpd_trainer_step(tr, &sm);
        double flops = 0;
        for (int i = 0; s == VPD_OK && i < steps; i++) {
            vpd_blas_flops_reset();
            vpd_barrier(comm);
            double t0 = vpd_wtime();
            s = vpd_trainer_step(tr, &sm);
            double dt = vpd_wtime() - t0;
            vpd_max_double(&dt, 1, comm);
            times[i] = dt;
            flops = vpd_blas_flops();
        }
        if (s != VPD_OK) break;
        vpd_sum_double(&flops, 1, comm); /* all ranks' products */
        qsort(times, (size_t)steps, sizeof(double), cmp_double);
        double med = steps % 2 ? times[steps / 2] : 0.5 * (times[steps / 2 - 1] + times[steps / 2]);
        double gf = flops / med / 1e9;
        int cores = world * threads[ti];
        double torch = threads[ti] <= 2 ? bc->torch_s[threads[ti] - 1] : 0;
        if (rank == 0) {
            char ratio[32] = "n/a";
            if (torch > 0) snprintf(ratio, sizeof ratio, "%.2fx", torch / med);
            printf("  %d x %d   %9.3f ms  [%8.3f .. %8.3f]  %8.4f GFLOP  %7.2f GFLOP/s  %5.1f %%  %9s\n", world,
                   threads[ti], med * 1e3, times[0] * 1e3, times[steps - 1] * 1e3, flops / 1e9, gf,
                   100.0 * gf / (PEAK_GFLOPS_PER_CORE * cores), ratio);
            fflush(stdout);
        }
    }
    free(times);
    vpd_job_close(&job);
    return s;
}

int vpd_cmd_bench(int argc, char **argv) {
    const int rank = vpd_world_rank();
    if (vpd_cli_wants_help(argc, argv)) {
        if (rank == 0) usage(stdout);
        return 0;
    }
    const char *only = NULL, *cfg_dir = "configs", *model_dir = "models";
    int steps = 20, warmup = 3, threads[8] = {1, 2}, n_threads = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--only") && v) only = argv[++i];
        else if (!strcmp(a, "--steps") && v) steps = atoi(argv[++i]);
        else if (!strcmp(a, "--warmup") && v) warmup = atoi(argv[++i]);
        else if (!strcmp(a, "--configs") && v) cfg_dir = argv[++i];
        else if (!strcmp(a, "--models") && v) model_dir = argv[++i];
        else if (!strcmp(a, "--threads") && v) {
            n_threads = 0;
            char buf[128];
            snprintf(buf, sizeof buf, "%s", argv[++i]);
            for (char *t = strtok(buf, ","); t && n_threads < 8; t = strtok(NULL, ",")) threads[n_threads++] = atoi(t);
        } else {
            if (rank == 0) {
                fprintf(stderr, "vpd bench: unknown or incomplete option '%s'\n\n", a);
                usage(stderr);
            }
            return 2;
        }
    }
    if (steps < 1 || warmup < 0 || n_threads < 1) {
        if (rank == 0) fprintf(stderr, "vpd bench: --steps must be >= 1, --warmup >= 0, --threads a list of counts >= 1\n");
        return 2;
    }
    for (int i = 0; i < n_threads; i++)
        if (threads[i] < 1) {
            if (rank == 0) fprintf(stderr, "vpd bench: --threads: '%d' is not a thread count >= 1\n", threads[i]);
            return 2;
        }
    bool found = !only;
    for (int c = 0; c < N_CASES; c++) found |= only && !strcmp(only, cases[c].name);
    if (!found) {
        if (rank == 0) fprintf(stderr, "vpd bench: --only '%s': expected tms_5-2, tms_40-10 or resid_mlp1\n", only);
        return 2;
    }
    vpd_log_set_level(VPD_LOG_WARN); /* keep the table readable */
    cpu_set_t cs;
    int ncpu = sched_getaffinity(0, sizeof cs, &cs) == 0 ? CPU_COUNT(&cs) : -1;
    if (rank == 0) {
        printf("vpd bench: %d timed steps after %d warm-up; layout ranks x OpenBLAS threads; rank 0 may run on %d CPU%s\n",
               steps, warmup, ncpu, ncpu == 1 ? "" : "s");
        printf("peak %.0f GFLOP/s per core in use; GFLOP = Σ 2·M·N·K of one step's vpd_gemm calls (all ranks);\n"
               "vs torch = PyTorch median s/step (MACHINE.md, same thread count) / vpd's\n\n",
               PEAK_GFLOPS_PER_CORE);
        printf("  R x T   median/step  [   min   ..    max  ]     GFLOP/step    GFLOP/s  %%peak   vs torch\n");
    }
    int initial_threads = vpd_blas_threads();
    vpd_status s = VPD_OK;
    for (int c = 0; s == VPD_OK && c < N_CASES; c++) {
        if (only && strcmp(only, cases[c].name)) continue;
        s = run_case(&cases[c], cfg_dir, model_dir, steps, warmup, threads, n_threads);
        if (ncpu == 1 && rank == 0)
            for (int i = 0; i < n_threads; i++)
                if (threads[i] > 1) {
                    printf("  (note: this rank is bound to 1 CPU: rows with more threads share it; mpiexec --bind-to none)\n");
                    break;
                }
    }
    vpd_blas_set_threads(initial_threads);
    return s == VPD_OK ? 0 : vpd_cli_fail("bench", s);
}
