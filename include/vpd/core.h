/* vpd core: the number type, status codes and error messages, logging with a rank
 * prefix, the arena allocator, non-owning tensor views, BLAS wrappers and the
 * Philox4x32-10 counter-based random number generator.
 *
 * Every numeric routine in vpd is written against `real`. The library is compiled
 * twice: libvpd with real = float (production) and libvpd64 with real = double
 * (-DVPD_DOUBLE), so finite-difference gradient checks exercise the production code
 * in double precision. */
#ifndef VPD_CORE_H
#define VPD_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef VPD_DOUBLE
typedef double real;
#define VPD_REAL_IS_DOUBLE 1
#else
typedef float real;
#define VPD_REAL_IS_DOUBLE 0
#endif

/* ---- status and errors ------------------------------------------------------
 * Functions that can fail on user input return vpd_status and leave one message
 * (naming the file / key / tensor and what was expected) in a per-process buffer.
 * Bugs (broken invariants) use VPD_ASSERT, which is always on. */
typedef enum {
    VPD_OK = 0,
    VPD_ERR_IO,      /* unreadable / unwritable file */
    VPD_ERR_FORMAT,  /* malformed file contents */
    VPD_ERR_CONFIG,  /* bad or unknown config key/value */
    VPD_ERR_SHAPE,   /* tensor shape mismatch */
    VPD_ERR_VALUE,   /* NaN/Inf or out-of-range value */
    VPD_ERR_MEM,     /* allocation failed */
    VPD_ERR_ARG,     /* bad command-line argument */
    VPD_ERR_MPI,     /* inconsistent ranks / MPI failure */
    VPD_ERR_INTERNAL
} vpd_status;

/* Record a message (printf-style) and return `s`. Usage: return vpd_error(VPD_ERR_IO, "...", ...); */
vpd_status vpd_error(vpd_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the current message with more context ("reading model X: <old message>"). */
vpd_status vpd_error_context(vpd_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *vpd_last_error(void);
const char *vpd_status_name(vpd_status s);
void vpd_clear_error(void);

/* Print "vpd: internal error at file:line: msg" and abort. For bugs, never for user input. */
void vpd_panic(const char *file, int line, const char *fmt, ...) __attribute__((noreturn, format(printf, 3, 4)));
#define VPD_ASSERT(cond, ...) do { if (!(cond)) vpd_panic(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define VPD_TRY(expr) do { vpd_status _s = (expr); if (_s != VPD_OK) return _s; } while (0)

/* ---- logging -----------------------------------------------------------------
 * Lines go to stderr as "[vpd r<rank>] ..." (rank prefix only when world size > 1).
 * vpd_info prints on rank 0 only; vpd_warn / vpd_log_all on every rank. */
typedef enum { VPD_LOG_DEBUG = 0, VPD_LOG_INFO = 1, VPD_LOG_WARN = 2, VPD_LOG_ERROR = 3 } vpd_log_level;
void vpd_log_set_rank(int rank, int world_size);
void vpd_log_set_level(vpd_log_level level);
int vpd_log_rank(void);
void vpd_log(vpd_log_level level, bool all_ranks, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define vpd_info(...) vpd_log(VPD_LOG_INFO, false, __VA_ARGS__)
#define vpd_debug(...) vpd_log(VPD_LOG_DEBUG, false, __VA_ARGS__)
#define vpd_warn(...) vpd_log(VPD_LOG_WARN, true, __VA_ARGS__)
#define vpd_log_all(...) vpd_log(VPD_LOG_INFO, true, __VA_ARGS__)

double vpd_wtime(void); /* monotonic seconds */

/* ---- memory ------------------------------------------------------------------
 * vpd_malloc/vpd_calloc: 64-byte aligned, return NULL and set the error on failure.
 * An arena is one block carved by bump allocation; sizes are computed first
 * (so the plan can be printed), then one allocation per lifetime. */
void *vpd_malloc(size_t bytes, const char *what);
void *vpd_calloc(size_t bytes, const char *what);
void vpd_free(void *p);

typedef struct {
    char *base;
    size_t capacity, used, peak;
    const char *name;
} vpd_arena;

vpd_status vpd_arena_init(vpd_arena *a, size_t bytes, const char *name);
/* 64-byte aligned, zero-initialised? no: contents undefined. Aborts (VPD_ASSERT) when the
 * arena is too small — sizes are computed up front, so overflow is a bug. */
void *vpd_arena_alloc(vpd_arena *a, size_t bytes);
#define vpd_arena_new(a, type, count) ((type *)vpd_arena_alloc((a), sizeof(type) * (size_t)(count)))
size_t vpd_arena_mark(const vpd_arena *a);
void vpd_arena_reset(vpd_arena *a, size_t mark);
void vpd_arena_free(vpd_arena *a);
/* bytes an allocation of `bytes` takes inside an arena (alignment rounding) */
size_t vpd_arena_size(size_t bytes);

/* ---- tensor views --------------------------------------------------------------
 * A non-owning view: pointer, shape, strides (in elements), a name for messages.
 * Used by I/O and the parameter tables; kernels take raw pointers and sizes. */
#define VPD_MAX_DIMS 4
typedef struct {
    real *data;
    int ndim;
    int64_t shape[VPD_MAX_DIMS];
    int64_t stride[VPD_MAX_DIMS];
    const char *name;
} vpd_tensor;

vpd_tensor vpd_tensor_view(real *data, const char *name, int ndim, const int64_t *shape); /* contiguous */
int64_t vpd_tensor_numel(const vpd_tensor *t);
bool vpd_tensor_is_contiguous(const vpd_tensor *t);
/* "[3, 4]" into buf */
const char *vpd_shape_str(char *buf, size_t n, int ndim, const int64_t *shape);
/* VPD_ERR_SHAPE naming t->name unless shapes are equal */
vpd_status vpd_tensor_check_shape(const vpd_tensor *t, int ndim, const int64_t *shape);
/* VPD_ERR_VALUE naming `name` and the first bad index if any element is NaN/Inf */
vpd_status vpd_check_finite(const real *x, size_t n, const char *name);

/* ---- BLAS ------------------------------------------------------------------------
 * Row-major general matrix product through cblas_sgemm/dgemm:
 *   C[M,N] = alpha * op(A)[M,K] op(B)[K,N] + beta * C
 * ta/tb: operand is stored transposed (A as [K,M], B as [N,K]). lda/ldb/ldc are the
 * row strides of the stored matrices. */
void vpd_gemm(bool ta, bool tb, int M, int N, int K, real alpha, const real *A, int lda,
              const real *B, int ldb, real beta, real *C, int ldc);
/* Same product by three nested loops in double accumulation: the slow truth for tests. */
void vpd_gemm_naive(bool ta, bool tb, int M, int N, int K, real alpha, const real *A, int lda,
                    const real *B, int ldb, real beta, real *C, int ldc);
/* The GEMM shape profile (instrumentation for `vpd bench --gemm-profile`): while enabled,
 * every vpd_gemm call is timed and accounted to its shape. get copies up to cap recorded
 * shapes (any order); a row with M = N = K = 0 holds shapes beyond the table's capacity. */
typedef struct {
    bool ta, tb;
    int M, N, K;
    long calls;
    double seconds, cpu_seconds, flops_total; /* wall, process CPU, 2·M·N·K: summed over the calls */
} vpd_gemm_shape;
void vpd_gemm_profile_enable(bool on);
void vpd_gemm_profile_reset(void);
int vpd_gemm_profile_get(vpd_gemm_shape *out, int cap);
/* y = alpha*x + y ; x.y ; sum of squares (accumulated in double) */
void vpd_axpy(size_t n, real alpha, const real *x, real *y);
double vpd_dot(size_t n, const real *x, const real *y);
double vpd_sumsq(size_t n, const real *x);
void vpd_scale(size_t n, real alpha, real *x);
int vpd_blas_threads(void);
void vpd_blas_set_threads(int n);
/* the BLAS library's kernel family as it chose it at start (OpenBLAS: openblas_get_corename,
 * e.g. "Zen" or "Haswell"; OPENBLAS_CORETYPE overrides the choice) */
const char *vpd_blas_core(void);

/* ---- Philox4x32-10 ---------------------------------------------------------------
 * Counter-based RNG (Salmon et al., SC'11; Random123). A stream is identified by a
 * key (seed, purpose) and a 128-bit counter; element i of a stream is a pure function
 * of (key, counter, i), so any rank can draw any element without drawing the others.
 * Convention: ctr = {block_lo, block_hi, c2, c3}: elements live in 4-lane blocks
 * indexed by the first 64 bits; c2, c3 name the sub-stream (e.g. step and layer). */
void vpd_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

typedef struct {
    uint32_t key[2];
    uint32_t c2, c3;
} vpd_rng;

/* purposes: one per kind of draw, so streams never collide */
typedef enum {
    VPD_RNG_INIT = 1,        /* parameter initialisation */
    VPD_RNG_DATA = 2,        /* synthetic data / data windows */
    VPD_RNG_MASK = 3,        /* stochastic mask sources */
    VPD_RNG_DELTA_MASK = 4,  /* r_Δ */
    VPD_RNG_BINOMIAL_U = 5,  /* the u of binomial sampling */
    VPD_RNG_ROUTING = 6,     /* subset routing */
    VPD_RNG_PGD_INIT = 7,    /* PGD source initialisation */
    VPD_RNG_PPGD_INIT = 8,   /* persistent PGD source initialisation */
    VPD_RNG_EVAL = 9,
    VPD_RNG_SAMPLE = 10,     /* vpd generate: sampling the next token */
    VPD_RNG_TEST = 15
} vpd_rng_purpose;

/* key = (seed low 32 bits ^ seed high 32 bits mixed, purpose), sub-stream (c2, c3) */
vpd_rng vpd_rng_make(uint64_t seed, uint32_t purpose, uint32_t c2, uint32_t c3);
uint32_t vpd_rng_u32(const vpd_rng *r, uint64_t i);
/* uniform in [0, 1): top 24 bits of the i-th word times 2^-24 (exact in float) */
real vpd_rng_uniform(const vpd_rng *r, uint64_t i);
/* standard normal by Box-Muller from words 2i and 2i+1 (uniforms in (0,1]) */
real vpd_rng_normal(const vpd_rng *r, uint64_t i);
/* 1 with probability p, else 0 (uniform_i < p) */
int vpd_rng_bernoulli(const vpd_rng *r, uint64_t i, double p);
/* fill out[0..n) with element indices first..first+n-1 (fast: one Philox call per 4) */
void vpd_rng_fill_uniform(const vpd_rng *r, uint64_t first, size_t n, real *out);
void vpd_rng_fill_normal(const vpd_rng *r, uint64_t first, size_t n, real *out);
/* integer uniform in [0, n) from word i (multiply-shift, bias < n/2^32) */
uint32_t vpd_rng_below(const vpd_rng *r, uint64_t i, uint32_t n);
/* A uniformly random k-subset of {0..n-1} for draw number `draw`, written as a 0/1
 * mask[n]. Uses words draw*n .. draw*n + n-1 of the stream (partial Fisher-Yates). */
void vpd_rng_k_subset(const vpd_rng *r, uint64_t draw, int n, int k, uint8_t *mask);

#endif
