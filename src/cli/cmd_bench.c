/* `vpd bench`: seconds per training step of the benchmark decompositions, against this
 * machine's measured FMA peak, the previous release's figures and the PyTorch implementation
 * users would run instead (../shared/MACHINE.md).
 *
 * For each benchmark (tms_5-2, tms_40-10, resid_mlp1, lm_tiny, lm_4L_128) it reads
 * configs/<name>.yaml, loads the target from models/<name> when that directory exists and
 * otherwise builds a target of the same sizes in memory with the random init of `vpd
 * pretrain` (the sizes below are those of configs/<name>-target.yaml; step cost does not
 * depend on the weights' values, only on their shapes). LM benchmarks read uniformly random
 * tokens from a temporary file (removed at the end) instead of the configured corpus. It
 * creates the decomposition for this rank's share of the configured batch and times full
 * training steps (vpd_trainer_step: target forward, CI, every loss with its backward,
 * allreduce, AdamW) at each requested OpenBLAS thread count, after a few untimed warm-up
 * steps. The faithfulness warmup is skipped (it is not part of a step).
 *
 * Reported per row: the median over the timed steps of the step time (each step's time
 * is the slowest rank's), the FLOPs of one step's matrix products counted analytically as
 * Σ 2·M·N·K over every vpd_gemm call of the step (element-wise work — GELU, masks, the
 * CI networks' 1→h and h→1 element-wise Linears, Adam — is not counted), the achieved
 * GFLOP/s, its % of peak (the fp32 FMA peak of one core measured at start by
 * vpd_fma_peak_gflops, src/core/cpuinfo.c, × the cores in use = ranks × threads), the
 * speed-up over the figures in --baseline (bench/baseline-<isa>.json: the previous
 * release measured on a machine of this kind; --json writes this run's figures in the same
 * format) and the PyTorch step time divided by ours (> 1: vpd is faster). */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/commands.h"
#include "vpd/comm.h"
#include "vpd/cpuinfo.h"
#include "vpd/job.h"

/* from src/core/blas.c (bench-only instrumentation, not part of include/vpd/core.h) */
double vpd_blas_flops(void);
void vpd_blas_flops_reset(void);


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
    /* configs/lm_tiny-target.yaml and configs/lm_4L_128-target.yaml */
    {"lm_tiny",
     {.kind = VPD_MODEL_LLAMA, .vocab_size = 256, .n_ctx = 64, .n_embd = 32, .n_head = 4, .n_key_value_heads = 2,
      .n_intermediate = 128, .n_layers = 2, .rms_eps = 1e-6, .rope_theta = 10000},
     {0, 0}},
    {"lm_4L_128",
     {.kind = VPD_MODEL_LLAMA, .vocab_size = 4096, .n_ctx = 128, .n_embd = 128, .n_head = 4, .n_key_value_heads = 4,
      .n_intermediate = 512, .n_layers = 4, .rms_eps = 1e-6, .rope_theta = 10000},
     {0, 0}},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static void usage(FILE *f) {
    fprintf(f,
            "usage: vpd bench [--only NAME] [--steps N] [--warmup N] [--threads 1,2]\n"
            "                 [--configs DIR] [--models DIR] [--baseline FILE] [--json FILE]\n"
            "                 [--profile] [--gemm-profile]\n\n"
            "Median seconds per decomposition training step for tms_5-2, tms_40-10, resid_mlp1,\n"
            "lm_tiny and lm_4L_128 (configs/<name>.yaml, batch as configured, split over the MPI\n"
            "ranks), at each OpenBLAS thread count; GFLOP/s of the step's matrix products (2·M·N·K\n"
            "per gemm, counted), %% of this machine's fp32 FMA peak (measured at start, per core in\n"
            "use), the speed-up over the previous release's figures and over PyTorch (MACHINE.md).\n"
            "The target is models/<name> if present, else a random target of the same sizes;\n"
            "LM benchmarks read random tokens.\n"
            "options:\n"
            "  --only NAME      one benchmark\n"
            "  --steps N        timed steps per row (default 20)\n"
            "  --warmup N       untimed steps first (default 3)\n"
            "  --threads LIST   OpenBLAS thread counts, comma-separated (default 1,2)\n"
            "  --configs DIR    default: configs\n"
            "  --models DIR     default: models\n"
            "  --baseline FILE  figures to compare with (default: bench/baseline-<isa>.json, isa =\n"
            "                   avx512f or avx2 as /proc/cpuinfo says; 'none' to skip)\n"
            "  --json FILE      write this run's figures there (the --baseline format)\n"
            "  --profile        after each row, the share of a step each phase takes (CI function,\n"
            "                   masked passes, output losses, optimiser, communication), mean of ranks\n"
            "  --gemm-profile   after each row, every matrix-product shape of the timed steps (rank 0):\n"
            "                   calls, time, GFLOP/s and %% of a large sgemm's rate measured on the spot\n"
            "                   (2048 x 2048 x 2048), sorted by time; shapes below 70 %% listed with their\n"
            "                   share of the step (timing each product adds ~0.1 %%)\n"
            "1 rank x 2 threads under mpiexec needs --bind-to none (MACHINE.md).\n");
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    const char *only, *cfg_dir, *model_dir, *base_path, *json_path;
    int steps, warmup, threads[8], n_threads;
    bool profile, gemm_profile;
} bench_opts;

typedef struct {
    const bench_case *bc;
    char tok_path[64]; /* random tokens for LM cases (removed by run_case) */
    vpd_status status;
} bench_ctx;

static vpd_status random_tokens(char *path, size_t cap, int vocab, size_t n);

/* a long schedule so no timed step is the last (which skips the update); LM cases read
 * random tokens of the target's vocabulary */
static void bench_schedule(vpd_decomp_config *cfg, void *ctx) {
    bench_ctx *bx = ctx;
    cfg->steps = 1 << 30;
    cfg->faithfulness_warmup_steps = 0;
    if (vpd_model_is_lm(bx->bc->mc.kind)) {
        bx->status = random_tokens(bx->tok_path, sizeof bx->tok_path, bx->bc->mc.vocab_size, (size_t)1 << 20);
        if (bx->status == VPD_OK) {
            snprintf(cfg->train_tokens, sizeof cfg->train_tokens, "%s", bx->tok_path);
            cfg->eval_tokens[0] = 0;
        }
    }
}

/* A file of n uniformly random uint16 tokens below vocab, in a fresh temporary path (each
 * rank its own); the caller removes it. */
static vpd_status random_tokens(char *path, size_t cap, int vocab, size_t n) {
    snprintf(path, cap, "/tmp/vpd-bench-tokens-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) return vpd_error(VPD_ERR_IO, "vpd bench: cannot create a temporary token file in /tmp");
    uint16_t *t = malloc(sizeof(uint16_t) * n);
    if (!t) {
        close(fd);
        unlink(path);
        return vpd_error(VPD_ERR_MEM, "bench tokens");
    }
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        t[i] = (uint16_t)(x % (uint64_t)vocab);
    }
    bool ok = write(fd, t, sizeof(uint16_t) * n) == (ssize_t)(sizeof(uint16_t) * n);
    free(t);
    close(fd);
    if (!ok) {
        unlink(path);
        return vpd_error(VPD_ERR_IO, "vpd bench: cannot write %s", path);
    }
    return VPD_OK;
}

/* the baseline's median s/step of `name` in layout `layout` ("1x2"), 0 when absent */
static double baseline_s(const cJSON *base, const char *name, const char *layout) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(base, "cases"), name);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, layout);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* GFLOP per process CPU-second of one large sgemm (2048 x 2048 x 2048, best of 3) at the
 * current thread count: the rate the step's shapes are compared with (MACHINE.md: 98–106
 * GFLOP/s on 1 Zen 4 core). CPU seconds, not wall: on a shared host they give the
 * product's own speed, as the profile's per-shape rates do. */
static double large_sgemm_gflops(void) {
    const int n = 2048;
    real *a = vpd_malloc(sizeof(real) * 3 * (size_t)n * n, "large-sgemm probe");
    if (!a) return 0;
    real *b = a + (size_t)n * n, *c = b + (size_t)n * n;
    for (size_t i = 0; i < 2 * (size_t)n * n; i++) a[i] = (real)((i * 2654435761u) % 1000) * (real)1e-3;
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t0 = vpd_cpu_seconds(true);
        vpd_gemm(false, false, n, n, n, 1, a, n, b, n, 0, c, n);
        double t = vpd_cpu_seconds(true) - t0;
        if (t < best) best = t;
    }
    vpd_free(a);
    return 2.0 * n * n * n / best / 1e9;
}

/* the phase shares of the timed steps, mean over ranks; ph = [phases..., comm, output loss,
 * step, minor page faults] */
static void print_phases(double *ph, int steps, int world, MPI_Comm comm) {
    vpd_sum_double(ph, VPD_PHASE_N + 4, comm);
    if (vpd_world_rank() != 0) return;
    const double tot = ph[VPD_PHASE_N + 2];
    double sum = 0;
    printf("         profile (wall, mean of %d rank%s; ms/step and share of the step):\n", world, world > 1 ? "s" : "");
    for (int p = 0; p < VPD_PHASE_N; p++) {
        sum += ph[p];
        printf("           %-24s %9.2f ms %5.1f %%", vpd_step_phase_names[p], 1e3 * ph[p] / world / steps, 100 * ph[p] / tot);
        if (p == VPD_PHASE_LOSSES || p == VPD_PHASE_PPGD_WARMUP) printf("   (masked passes)");
        printf("\n");
    }
    printf("           %-24s %9.2f ms %5.1f %%\n", "other (barrier, timing)", 1e3 * (tot - sum) / world / steps,
           100 * (tot - sum) / tot);
    printf("           of which output losses     %9.2f ms %5.1f %%   (KL/MSE forward+backward inside the passes)\n",
           1e3 * ph[VPD_PHASE_N + 1] / world / steps, 100 * ph[VPD_PHASE_N + 1] / tot);
    printf("           of which communication     %9.2f ms %5.1f %%   (allreduces incl. waiting for the slower rank)\n",
           1e3 * ph[VPD_PHASE_N] / world / steps, 100 * ph[VPD_PHASE_N] / tot);
    printf("           minor page faults          %9.0f /step/rank (fresh memory touched inside the step: %.1f MiB)\n",
           ph[VPD_PHASE_N + 3] / world / steps, ph[VPD_PHASE_N + 3] / world / steps * 4096.0 / 1048576.0);
}

static int cmp_shape_key(const void *pa, const void *pb) {
    const vpd_gemm_shape *a = pa, *b = pb;
    if (a->ta != b->ta) return a->ta - b->ta;
    if (a->tb != b->tb) return a->tb - b->tb;
    if (a->N != b->N) return a->N < b->N ? -1 : 1;
    if (a->K != b->K) return a->K < b->K ? -1 : 1;
    return (a->M > b->M) - (a->M < b->M);
}

/* rank 0's GEMM shapes of the timed steps, sorted by time. Shapes that differ only in M within
 * 15 % (the routed-in row counts of a subset-routed pass change every step) are merged into
 * one row M = lo-hi. */
static void print_gemm_profile(int steps, double large_gf, double step_s) {
    enum { CAP = 4096 };
    static vpd_gemm_shape sh[CAP];
    static int mlo[CAP];
    int n = vpd_gemm_profile_get(sh, CAP);
    qsort(sh, (size_t)n, sizeof *sh, cmp_shape_key);
    int m = 0;
    for (int i = 0; i < n; i++) {
        vpd_gemm_shape *g = m ? &sh[m - 1] : NULL;
        if (g && g->ta == sh[i].ta && g->tb == sh[i].tb && g->N == sh[i].N && g->K == sh[i].K && sh[i].M > 0 &&
            sh[i].M <= 1.15 * mlo[m - 1]) {
            g->M = sh[i].M; /* the range's top */
            g->calls += sh[i].calls;
            g->seconds += sh[i].seconds;
            g->cpu_seconds += sh[i].cpu_seconds;
            g->flops_total += sh[i].flops_total;
            continue;
        }
        mlo[m] = sh[i].M;
        sh[m++] = sh[i];
    }
    double tot = 0, fl = 0, calls = 0, cpu = 0;
    for (int i = 0; i < m; i++)
        tot += sh[i].seconds, cpu += sh[i].cpu_seconds, fl += sh[i].flops_total, calls += (double)sh[i].calls;
    static int idx[CAP]; /* rows by time (mlo stays indexed by row) */
    for (int i = 0; i < m; i++) idx[i] = i;
    for (int i = 1; i < m; i++) { /* insertion sort by seconds, descending (m is small) */
        int v = idx[i], j = i - 1;
        while (j >= 0 && sh[idx[j]].seconds < sh[v].seconds) idx[j + 1] = idx[j], j--;
        idx[j + 1] = v;
    }
    printf("         GEMM shapes (rank 0, %d steps): %.1f ms/step wall (%.1f %% of the step), %.1f ms CPU, %.0f calls,\n"
           "         %.2f GFLOP/step, %.1f GFLOP per CPU-second; large sgemm (2048^3, this thread count): %.1f\n"
           "         (rates per process CPU-second: on a shared host the products' own speed)\n",
           steps, 1e3 * tot / steps, 100 * tot / steps / step_s, 1e3 * cpu / steps, calls / steps, fl / steps / 1e9,
           fl / cpu / 1e9, large_gf);
    printf("           op        M      N      K  calls/step  ms/step  %%gemm  %%step  cpu ms  GFLOP/s  %%large\n");
    double slow_s = 0, slow_fl = 0;
    for (int r = 0; r < m; r++) {
        const vpd_gemm_shape *g = &sh[idx[r]];
        const double gf = g->cpu_seconds > 0 ? g->flops_total / g->cpu_seconds / 1e9 : 0;
        char mbuf[32];
        if (mlo[idx[r]] != g->M) snprintf(mbuf, sizeof mbuf, "%d-%d", mlo[idx[r]], g->M);
        else snprintf(mbuf, sizeof mbuf, "%d", g->M);
        if (r < 40)
            printf("           %c%c %12s %6d %6d  %10.1f %8.3f %6.1f %6.1f %7.2f %8.1f %6.1f%s\n", g->ta ? 'T' : 'N',
                   g->tb ? 'T' : 'N', mbuf, g->N, g->K, (double)g->calls / steps, 1e3 * g->seconds / steps,
                   100 * g->seconds / tot, 100 * g->seconds / steps / step_s, 1e3 * g->cpu_seconds / steps, gf, large_gf > 0 ? 100 * gf / large_gf : 0,
                   large_gf > 0 && gf < 0.7 * large_gf ? "  <70%" : "");
        if (large_gf > 0 && gf < 0.7 * large_gf) slow_s += g->cpu_seconds, slow_fl += g->flops_total;
    }
    if (m > 40) printf("           (%d more shapes)\n", m - 40);
    printf("         shapes below 70 %% of the large-sgemm rate: %.1f CPU ms/step (%.1f %% of the step's CPU time of\n"
           "         the products); at the large rate they would take %.1f ms/step\n",
           1e3 * slow_s / steps, 100 * slow_s / cpu, large_gf > 0 ? 1e3 * slow_fl / steps / (large_gf * 1e9) : 0);
}

/* one benchmark at each thread count; prints its rows on rank 0 and records them in out */
static vpd_status run_case(const bench_case *bc, const bench_opts *o, double peak_core, const cJSON *base, cJSON *out) {
    const char *cfg_dir = o->cfg_dir, *model_dir = o->model_dir;
    const int steps = o->steps, warmup = o->warmup, *threads = o->threads, n_threads = o->n_threads;
    const int rank = vpd_world_rank(), world = vpd_world_size();
    const MPI_Comm comm = vpd_comm_world();
    char path[1200], mdir[1200];
    snprintf(path, sizeof path, "%s/%s.yaml", cfg_dir, bc->name);
    snprintf(mdir, sizeof mdir, "%s/%s", model_dir, bc->name);
    /* the target is models/<name> if present, else random of the same sizes */
    vpd_job_opts jo = {.config_path = path, .target_dir = mdir, .random_target = &bc->mc, .adjust = bench_schedule};
    vpd_job job;
    double *times = NULL;
    bench_ctx bx = {bc, "", VPD_OK};
    jo.adjust_ctx = &bx;
    vpd_status s = vpd_job_open(&job, &jo);
    if (s == VPD_OK && bx.status != VPD_OK) s = bx.status;
    const vpd_decomp *d = job.d;
    vpd_trainer *tr = &job.trainer;
    const int B = job.geom.B;
    const bool random_target = job.random_target;
    if (s == VPD_OK && !(times = malloc(sizeof(double) * 2 * (size_t)steps))) s = vpd_error(VPD_ERR_MEM, "bench timings");
    double *cpu = times ? times + steps : NULL; /* process CPU seconds per step (the slowest rank's) */
    if (s == VPD_OK && rank == 0)
        printf("%-11s batch %d (%d/rank) x %d tokens, C = %d, target %s\n", bc->name, job.cfg.batch_size, B, job.geom.S, d->C_sum,
               random_target ? "random (models dir missing; same sizes)" : mdir);
    cJSON *jc = rank == 0 && out ? cJSON_AddObjectToObject(cJSON_GetObjectItemCaseSensitive(out, "cases"), bc->name) : NULL;
    for (int ti = 0; s == VPD_OK && ti < n_threads; ti++) {
        vpd_blas_set_threads(threads[ti]);
        vpd_step_metrics sm;
        for (int i = 0; s == VPD_OK && i < warmup; i++) s = vpd_trainer_step(tr, &sm);
        double flops = 0, large_gf = 0;
        double ph[VPD_PHASE_N + 4] = {0}; /* phases, comm, output loss, step, page faults: summed over the timed steps */
        if (o->gemm_profile) {
            large_gf = large_sgemm_gflops();
            vpd_gemm_profile_reset();
            vpd_gemm_profile_enable(true);
        }
        struct rusage ru0, ru1;
        getrusage(RUSAGE_SELF, &ru0);
        for (int i = 0; s == VPD_OK && i < steps; i++) {
            vpd_blas_flops_reset();
            vpd_barrier(comm);
            double t0 = vpd_wtime(), c0 = vpd_cpu_seconds(true);
            s = vpd_trainer_step(tr, &sm);
            double dt[2] = {vpd_wtime() - t0, vpd_cpu_seconds(true) - c0};
            for (int p = 0; p < VPD_PHASE_N; p++) ph[p] += sm.phase_s[p];
            ph[VPD_PHASE_N] += sm.comm_s;
            ph[VPD_PHASE_N + 1] += sm.out_loss_s;
            ph[VPD_PHASE_N + 2] += dt[0];
            vpd_max_double(dt, 2, comm);
            times[i] = dt[0];
            cpu[i] = dt[1];
            flops = vpd_blas_flops();
        }
        vpd_gemm_profile_enable(false);
        getrusage(RUSAGE_SELF, &ru1);
        ph[VPD_PHASE_N + 3] = (double)(ru1.ru_minflt - ru0.ru_minflt); /* fresh pages touched (first-touch cost) */
        if (s != VPD_OK) break;
        vpd_sum_double(&flops, 1, comm); /* all ranks' products */
        qsort(times, (size_t)steps, sizeof(double), cmp_double);
        qsort(cpu, (size_t)steps, sizeof(double), cmp_double);
        double med = steps % 2 ? times[steps / 2] : 0.5 * (times[steps / 2 - 1] + times[steps / 2]);
        double cmed = steps % 2 ? cpu[steps / 2] : 0.5 * (cpu[steps / 2 - 1] + cpu[steps / 2]);
        double gf = flops / med / 1e9;
        int cores = world * threads[ti];
        double torch = world == 1 && threads[ti] <= 2 ? bc->torch_s[threads[ti] - 1] : 0;
        char layout[32], layout_cpu[48];
        snprintf(layout, sizeof layout, "%dx%d", world, threads[ti]);
        snprintf(layout_cpu, sizeof layout_cpu, "%s cpu", layout);
        double prev = baseline_s(base, bc->name, layout), prev_cpu = baseline_s(base, bc->name, layout_cpu);
        if (rank == 0) {
            char ratio[32] = "n/a", vs_base[32] = "n/a", vs_cpu[32] = "n/a";
            if (torch > 0) snprintf(ratio, sizeof ratio, "%.2fx", torch / med);
            if (prev > 0) snprintf(vs_base, sizeof vs_base, "%.2fx", prev / med);
            if (prev_cpu > 0 && cmed > 0) snprintf(vs_cpu, sizeof vs_cpu, "%.2fx", prev_cpu / cmed);
            printf("  %5s  %9.4f s [%8.4f .. %8.4f]  %8.4f s  %9.4f GFLOP %7.2f GFLOP/s %5.1f %%  %7s %7s  %8s\n", layout,
                   med, times[0], times[steps - 1], cmed, flops / 1e9, gf, 100.0 * gf / (peak_core * cores), vs_base,
                   vs_cpu, ratio);
            fflush(stdout);
            if (jc) {
                cJSON_AddNumberToObject(jc, layout, med);
                cJSON_AddNumberToObject(jc, layout_cpu, cmed);
            }
        }
        if (o->profile) print_phases(ph, steps, world, comm);
        if (o->gemm_profile && rank == 0) print_gemm_profile(steps, large_gf, ph[VPD_PHASE_N + 2] / steps);
    }
    free(times);
    vpd_job_close(&job);
    if (bx.tok_path[0]) unlink(bx.tok_path);
    return s;
}

static cJSON *read_json(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) &&
        fread(buf, 1, (size_t)n, f) == (size_t)n)
        buf[n] = 0;
    else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    cJSON *j = buf ? cJSON_Parse(buf) : NULL;
    free(buf);
    return j;
}


/* 0: parsed; else the exit status (messages on rank 0) */
static int parse_opts(int argc, char **argv, bench_opts *o) {
    const int rank = vpd_world_rank();
    *o = (bench_opts){.cfg_dir = "configs", .model_dir = "models", .steps = 20, .warmup = 3, .threads = {1, 2}, .n_threads = 2};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const bool valued = !strcmp(a, "--only") || !strcmp(a, "--steps") || !strcmp(a, "--warmup") ||
                            !strcmp(a, "--configs") || !strcmp(a, "--models") || !strcmp(a, "--baseline") ||
                            !strcmp(a, "--json") || !strcmp(a, "--threads");
        const char *v = valued ? vpd_cli_value("bench", argc, argv, &i) : NULL;
        if (valued && !v) return 2;
        long n;
        if (!strcmp(a, "--profile")) o->profile = true;
        else if (!strcmp(a, "--gemm-profile")) o->gemm_profile = true;
        else if (!strcmp(a, "--only")) o->only = v;
        else if (!strcmp(a, "--steps")) {
            if (!vpd_cli_parse_int("bench", a, v, 1, 1L << 30, &n)) return 2;
            o->steps = (int)n;
        } else if (!strcmp(a, "--warmup")) {
            if (!vpd_cli_parse_int("bench", a, v, 0, 1L << 30, &n)) return 2;
            o->warmup = (int)n;
        } else if (!strcmp(a, "--configs")) o->cfg_dir = v;
        else if (!strcmp(a, "--models")) o->model_dir = v;
        else if (!strcmp(a, "--baseline")) o->base_path = v;
        else if (!strcmp(a, "--json")) o->json_path = v;
        else if (!strcmp(a, "--threads")) {
            o->n_threads = 0;
            char buf[128];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *t = strtok(buf, ","); t && o->n_threads < 8; t = strtok(NULL, ",")) {
                if (!vpd_cli_parse_int("bench", "--threads", t, 1, 4096, &n)) return 2;
                o->threads[o->n_threads++] = (int)n;
            }
        } else {
            if (rank == 0) {
                fprintf(stderr, "vpd bench: unknown or incomplete option '%s'\n\n", a);
                usage(stderr);
            }
            return 2;
        }
    }
    if (o->n_threads < 1) {
        if (rank == 0) fprintf(stderr, "vpd bench: --threads must be a list of counts >= 1\n");
        return 2;
    }
    bool found = !o->only;
    for (int c = 0; c < N_CASES; c++) found |= o->only && !strcmp(o->only, cases[c].name);
    if (!found) {
        if (rank == 0)
            fprintf(stderr, "vpd bench: --only '%s': expected tms_5-2, tms_40-10, resid_mlp1, lm_tiny or lm_4L_128\n", o->only);
        return 2;
    }
    return 0;
}

/* the header: CPU, ISA, measured peak, baseline and column legend (rank 0) */
static void print_header(const bench_opts *o, const vpd_cpu *cpu, int ncpu, double peak_core, const cJSON *base) {
    printf("vpd bench: %d timed steps after %d warm-up; layout ranks x OpenBLAS threads; rank 0 may run on %d CPU%s\n",
           o->steps, o->warmup, ncpu, ncpu == 1 ? "" : "s");
    printf("CPU: %s; ISA: %s%s%s; binary built for %s; OpenBLAS kernels: %s\n", cpu->model, cpu->isa,
           cpu->avx2 ? " (avx2" : " (no avx2", cpu->avx512f ? ", avx512f)" : ", no avx512f)", vpd_build_isa(),
           vpd_blas_core());
    printf("fp32 FMA peak measured: %.1f GFLOP/s per core (per CPU-second of the probe thread; %% peak = wall\n"
           "GFLOP/s / (this × cores in use))\n", peak_core);
    if (base) {
        const cJSON *bm = cJSON_GetObjectItemCaseSensitive(base, "cpu_model");
        const cJSON *bv = cJSON_GetObjectItemCaseSensitive(base, "version");
        printf("vs base = median s/step of %s (version %s, CPU %s) / this run's\n", o->base_path,
               cJSON_IsString(bv) ? bv->valuestring : "?", cJSON_IsString(bm) ? bm->valuestring : "?");
    } else
        printf("vs base: n/a (no baseline file %s)\n", o->base_path);
    printf("GFLOP = Σ 2·M·N·K of one step's vpd_gemm calls (all ranks); vs torch = PyTorch median s/step\n"
           "(MACHINE.md, same thread count) / vpd's\n\n");
    printf("cpu = median CPU seconds of the process per step (all threads; the slowest rank): on a host\n"
           "shared with other work it is the steadier figure for 1-thread rows; vs base (wall) and vs base\n"
           "(cpu) = the baseline's median / this run's\n\n");
    printf("  R x T  wall/step   [   min   ..    max  ]  cpu/step    GFLOP/step    GFLOP/s %%peak  vs base (cpu)  vs torch\n");
}

/* the --json record's header fields (its "cases" are filled by run_case) */
static cJSON *json_record(const bench_opts *o, const vpd_cpu *cpu, double peak_core) {
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "cpu_model", cpu->model);
    cJSON_AddStringToObject(out, "isa", cpu->isa);
    cJSON_AddStringToObject(out, "build_isa", vpd_build_isa());
    cJSON_AddStringToObject(out, "blas_core", vpd_blas_core());
    cJSON_AddStringToObject(out, "version", VPD_GIT_HASH);
    cJSON_AddNumberToObject(out, "fma_peak_gflops_per_core", peak_core);
    cJSON_AddNumberToObject(out, "steps", o->steps);
    cJSON_AddStringToObject(out, "layout", "RxT = MPI ranks x OpenBLAS threads: median wall s/step; 'RxT cpu': median process CPU s/step");
    cJSON_AddObjectToObject(out, "cases");
    return out;
}

static vpd_status write_json(cJSON *out, const char *path) {
    char *text = cJSON_Print(out);
    FILE *f = text ? fopen(path, "w") : NULL;
    vpd_status s = VPD_OK;
    if (!f || fputs(text, f) < 0 || fputc('\n', f) < 0) s = vpd_error(VPD_ERR_IO, "vpd bench: cannot write --json %s", path);
    if (f) fclose(f);
    free(text);
    return s;
}

int vpd_cmd_bench(int argc, char **argv) {
    const int rank = vpd_world_rank();
    if (vpd_cli_wants_help(argc, argv)) {
        if (rank == 0) usage(stdout);
        return 0;
    }
    bench_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc;
    vpd_log_set_level(VPD_LOG_WARN); /* keep the table readable */
    cpu_set_t cs;
    int ncpu = sched_getaffinity(0, sizeof cs, &cs) == 0 ? CPU_COUNT(&cs) : -1;
    vpd_cpu cpu;
    vpd_cpu_detect(&cpu);
    /* every rank probes its own core at once (the peak of the cores in use), rank 0's is quoted */
    vpd_barrier(vpd_comm_world());
    double peak_core = vpd_fma_peak_gflops(0.5);
    vpd_bcast(&peak_core, sizeof peak_core, 0, vpd_comm_world());
    char default_base[96];
    snprintf(default_base, sizeof default_base, "bench/baseline-%s.json", cpu.isa);
    if (!o.base_path) o.base_path = default_base;
    cJSON *base = strcmp(o.base_path, "none") ? read_json(o.base_path) : NULL;
    cJSON *out = rank == 0 && o.json_path ? json_record(&o, &cpu, peak_core) : NULL;
    if (rank == 0) print_header(&o, &cpu, ncpu, peak_core, base);
    int initial_threads = vpd_blas_threads();
    vpd_status s = VPD_OK;
    for (int c = 0; s == VPD_OK && c < N_CASES; c++) {
        if (o.only && strcmp(o.only, cases[c].name)) continue;
        s = run_case(&cases[c], &o, peak_core, base, out);
        bool multi = false;
        for (int i = 0; i < o.n_threads; i++) multi |= o.threads[i] > 1;
        if (ncpu == 1 && rank == 0 && multi)
            printf("  (note: this rank is bound to 1 CPU: rows with more threads share it; mpiexec --bind-to none)\n");
    }
    vpd_blas_set_threads(initial_threads);
    if (out) {
        vpd_status w = write_json(out, o.json_path);
        if (s == VPD_OK) s = w;
        cJSON_Delete(out);
    }
    cJSON_Delete(base);
    return s == VPD_OK ? 0 : vpd_cli_fail("bench", s);
}
