/* BLAS wrappers: every matrix product in vpd goes through vpd_gemm (row-major cblas
 * sgemm/dgemm, chosen by the `real` type); vpd_gemm_naive is the slow truth for tests.
 *
 * Threading policy. OpenBLAS threads any product with M·N·K > 2^18, so the tiny products
 * of a toy decomposition (4096×20×5) were split over threads that then spin in
 * sched_yield between calls, costing more than the product. vpd_gemm runs a product
 * multi-threaded only when M·N·K ≥ VPD_BLAS_MT_MNK (default 2^22, ≈ 8 MFLOP, ~0.1 ms on
 * one core; MACHINE.md: below that two threads do not pay), else on one thread. The
 * thread count only changes when the decision changes, and OpenBLAS's idle workers go to
 * sleep instead of spinning while products run single-threaded. Thread count does not
 * change the result of a product (OpenBLAS splits the output, not the K sum). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vpd/core.h"
#include "vpd/cpuinfo.h"

extern int openblas_get_num_threads(void);
extern void openblas_set_num_threads(int);
extern char *openblas_get_corename(void);

const char *vpd_blas_core(void) { return openblas_get_corename(); }

static int blas_max_threads; /* 0: not yet read from OpenBLAS (OPENBLAS_NUM_THREADS) */
static int blas_cur_threads;
static double blas_mt_mnk = 4194304.0; /* 2^22 */

static void blas_policy_init(void) {
    blas_max_threads = openblas_get_num_threads();
    if (blas_max_threads < 1) blas_max_threads = 1;
    blas_cur_threads = blas_max_threads;
    const char *e = getenv("VPD_BLAS_MT_MNK");
    if (e && *e) {
        char *end;
        double v = strtod(e, &end);
        if (end != e && v >= 0) blas_mt_mnk = v;
    }
}

/* 2·M·N·K summed over every vpd_gemm call since the last reset: the analytic FLOP count of
 * the matrix products (read by `vpd bench`; declared there, not part of the core API). */
static double blas_flops;
double vpd_blas_flops(void) { return blas_flops; }
void vpd_blas_flops_reset(void) { blas_flops = 0; }

static void blas_choose_threads(int M, int N, int K) {
    blas_flops += 2.0 * M * N * K;
    if (!blas_max_threads) blas_policy_init();
    if (blas_max_threads == 1) return;
    int want = (double)M * N * K >= blas_mt_mnk ? blas_max_threads : 1;
    if (want != blas_cur_threads) {
        openblas_set_num_threads(want);
        blas_cur_threads = want;
    }
}

/* ---- the GEMM shape profile (`vpd bench --gemm-profile`; bench-only, declared there) ----
 * While enabled, every vpd_gemm call is timed and accounted to its shape (transposes, M, N,
 * K) in a fixed open-addressing table: no allocation, two clock reads before and after the
 * product (~0.5 µs: ~0.2 % of an LM step's GEMM time). Shapes beyond the table's
 * capacity are counted in one overflow row (M = N = K = 0). Wall and process CPU time are
 * both kept: on a host shared with other work the CPU seconds give the product's own rate.
 * Off by default: vpd_gemm then costs one branch more. */
#define GEMM_PROF_CAP 4096
static vpd_gemm_shape gemm_prof[GEMM_PROF_CAP];
static int gemm_prof_n;
static bool gemm_prof_on;

void vpd_gemm_profile_enable(bool on) { gemm_prof_on = on; }
void vpd_gemm_profile_reset(void) {
    memset(gemm_prof, 0, sizeof gemm_prof);
    gemm_prof_n = 0;
}
/* the recorded shapes in no particular order (used slots compacted to the front of a copy) */
int vpd_gemm_profile_get(vpd_gemm_shape *out, int cap) {
    int n = 0;
    for (int i = 0; i < GEMM_PROF_CAP && n < cap; i++)
        if (gemm_prof[i].calls) out[n++] = gemm_prof[i];
    return n;
}

static void gemm_prof_add(bool ta, bool tb, int M, int N, int K, double sec, double cpu) {
    uint64_t h = ((uint64_t)(unsigned)M * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)(unsigned)N * 0xC2B2AE3D27D4EB4Full) ^
                 ((uint64_t)(unsigned)K * 0x165667B19E3779F9ull) ^ ((uint64_t)(ta * 2 + tb) << 61);
    size_t i = (size_t)(h >> 20) % GEMM_PROF_CAP;
    for (int probe = 0; probe < GEMM_PROF_CAP; probe++, i = (i + 1) % GEMM_PROF_CAP) {
        vpd_gemm_shape *e = &gemm_prof[i];
        if (e->calls && e->ta == ta && e->tb == tb && e->M == M && e->N == N && e->K == K) {
            e->calls++;
            e->seconds += sec;
            e->cpu_seconds += cpu;
            e->flops_total += 2.0 * M * N * K;
            return;
        }
        if (!e->calls) {
            if (gemm_prof_n >= GEMM_PROF_CAP - 1) break; /* keep one slot free: the overflow row */
            *e = (vpd_gemm_shape){.ta = ta, .tb = tb, .M = M, .N = N, .K = K, .calls = 1, .seconds = sec,
                                  .cpu_seconds = cpu, .flops_total = 2.0 * M * N * K};
            gemm_prof_n++;
            return;
        }
    }
    for (i = 0; i < GEMM_PROF_CAP; i++) /* overflow: one row of shape 0 x 0 x 0 holding the rest */
        if (!gemm_prof[i].calls || (!gemm_prof[i].M && !gemm_prof[i].N)) {
            vpd_gemm_shape *e = &gemm_prof[i];
            e->M = e->N = e->K = 0;
            e->calls++;
            e->seconds += sec;
            e->cpu_seconds += cpu;
            e->flops_total += 2.0 * M * N * K;
            return;
        }
}

static void gemm_call(bool ta, bool tb, int M, int N, int K, real alpha, const real *A, int lda, const real *B,
                      int ldb, real beta, real *C, int ldc) {
#if VPD_REAL_IS_DOUBLE
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, lda, B, ldb, beta, C, ldc);
#else
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

void vpd_gemm(bool ta, bool tb, int M, int N, int K, real alpha, const real *A, int lda,
              const real *B, int ldb, real beta, real *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    blas_choose_threads(M, N, K);
    if (K <= 0) { /* empty sum: C = beta*C (BLAS would also do this, but avoid lda checks) */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0 ? 0 : beta * C[(size_t)i * ldc + j];
        return;
    }
    if (!gemm_prof_on) {
        gemm_call(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    double t0 = vpd_wtime(), c0 = vpd_cpu_seconds(true);
    gemm_call(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    gemm_prof_add(ta, tb, M, N, K, vpd_wtime() - t0, vpd_cpu_seconds(true) - c0);
}

void vpd_gemm_naive(bool ta, bool tb, int M, int N, int K, real alpha, const real *A, int lda,
                    const real *B, int ldb, real beta, real *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) {
                double a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                double b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += a * b;
            }
            real *c = &C[(size_t)i * ldc + j];
            *c = (real)(alpha * s + (beta == 0 ? 0.0 : (double)beta * (double)*c));
        }
}

void vpd_axpy(size_t n, real alpha, const real *x, real *y) {
    for (size_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

double vpd_dot(size_t n, const real *x, const real *y) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * (double)y[i];
    return s;
}

double vpd_sumsq(size_t n, const real *x) { return vpd_dot(n, x, x); }

void vpd_scale(size_t n, real alpha, real *x) {
    for (size_t i = 0; i < n; i++) x[i] *= alpha;
}

/* OpenBLAS thread control (declared above: Debian's cblas.h is OpenBLAS's and has them,
 * but keep the dependency explicit). vpd_blas_threads is the most threads a large product
 * may use; vpd_blas_set_threads changes it (n < 1 means 1). */
int vpd_blas_threads(void) {
    if (!blas_max_threads) blas_policy_init();
    return blas_max_threads;
}
void vpd_blas_set_threads(int n) {
    if (!blas_max_threads) blas_policy_init();
    if (n < 1) n = 1;
    openblas_set_num_threads(n);
    blas_max_threads = blas_cur_threads = n;
}
