/* CPU model, vector ISA and measured FMA peak (include/vpd/cpuinfo.h).
 *
 * The peak kernel keeps 12 independent accumulators in flight (FMA latency 4 × 2–3 pipes on
 * Zen 3/4 and recent Intel cores) so the loop is throughput-bound; each variant is compiled
 * for its own ISA with a target attribute and chosen at run time, so a portable build still
 * measures the AVX-512 or AVX2 peak of the machine it runs on. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "vpd/cpuinfo.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "vpd/core.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define VPD_X86 1
#endif

void vpd_cpu_detect(vpd_cpu *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->model, sizeof c->model, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[8192];
        bool have_model = false, have_flags = false;
        while (fgets(line, sizeof line, f) && !(have_model && have_flags)) {
            char *colon = strchr(line, ':');
            if (!colon) continue;
            char *v = colon + 1;
            while (*v == ' ' || *v == '\t') v++;
            v[strcspn(v, "\n")] = 0;
            if (!have_model && !strncmp(line, "model name", 10)) {
                snprintf(c->model, sizeof c->model, "%s", v);
                have_model = true;
            } else if (!have_flags && !strncmp(line, "flags", 5)) {
                /* whole-word matches in the space-separated list */
                for (char *t = strtok(v, " "); t; t = strtok(NULL, " ")) {
                    if (!strcmp(t, "avx2")) c->avx2 = true;
                    else if (!strcmp(t, "fma")) c->fma = true;
                    else if (!strcmp(t, "avx512f")) c->avx512f = true;
                }
                have_flags = true;
            }
        }
        fclose(f);
    }
    snprintf(c->isa, sizeof c->isa, "%s", c->avx512f ? "avx512f" : c->avx2 && c->fma ? "avx2" : "baseline");
}

const char *vpd_build_isa(void) {
#if defined(VPD_BUILD_ISA)
#define VPD_ISA_NAME VPD_BUILD_ISA
#elif defined(__AVX512F__)
#define VPD_ISA_NAME "x86-64-v4 (avx512f)"
#elif defined(__AVX2__)
#define VPD_ISA_NAME "x86-64-v3 (avx2)"
#else
#define VPD_ISA_NAME "baseline"
#endif
    /* whether the hot element-wise loops also carry x86-64-v4 clones (src/core/hot.h) */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__AVX512F__) && \
    !defined(VPD_NO_CLONES) && !defined(__SANITIZE_ADDRESS__)
    return VPD_ISA_NAME " + x86-64-v4 clones of the hot loops";
#else
    return VPD_ISA_NAME " (no clones)";
#endif
}

#define NACC 12
#define REPS 4096 /* FMAs per accumulator per call */

#ifdef VPD_X86
__attribute__((target("avx512f"))) static float fma_512(float a, float b) {
    __m512 acc[NACC], x = _mm512_set1_ps(a), y = _mm512_set1_ps(b);
    for (int i = 0; i < NACC; i++) acc[i] = _mm512_set1_ps((float)i);
    for (int r = 0; r < REPS; r++)
        for (int i = 0; i < NACC; i++) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
    __m512 s = acc[0];
    for (int i = 1; i < NACC; i++) s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float fma_256(float a, float b) {
    __m256 acc[NACC], x = _mm256_set1_ps(a), y = _mm256_set1_ps(b);
    for (int i = 0; i < NACC; i++) acc[i] = _mm256_set1_ps((float)i);
    for (int r = 0; r < REPS; r++)
        for (int i = 0; i < NACC; i++) acc[i] = _mm256_fmadd_ps(acc[i], x, y);
    __m256 s = acc[0];
    for (int i = 1; i < NACC; i++) s = _mm256_add_ps(s, acc[i]);
    float o[8];
    _mm256_storeu_ps(o, s);
    return o[0] + o[1] + o[2] + o[3] + o[4] + o[5] + o[6] + o[7];
}
#endif

/* no FMA: mul + add on 4 lanes (counted as 2 FLOPs per lane, like an FMA) */
static float fma_scalar(float a, float b) {
    float acc[NACC][4];
    for (int i = 0; i < NACC; i++)
        for (int l = 0; l < 4; l++) acc[i][l] = (float)(i + l);
    for (int r = 0; r < REPS; r++)
        for (int i = 0; i < NACC; i++)
            for (int l = 0; l < 4; l++) acc[i][l] = acc[i][l] * a + b;
    float s = 0;
    for (int i = 0; i < NACC; i++)
        for (int l = 0; l < 4; l++) s += acc[i][l];
    return s;
}

double vpd_cpu_seconds(bool whole_process) {
    struct timespec ts;
    if (clock_gettime(whole_process ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double vpd_fma_peak_gflops(double seconds) {
    vpd_cpu c;
    vpd_cpu_detect(&c);
    float (*kernel)(float, float) = fma_scalar;
    int lanes = 4;
#ifdef VPD_X86
    __builtin_cpu_init();
    if (c.avx512f && __builtin_cpu_supports("avx512f")) kernel = fma_512, lanes = 16;
    else if (c.avx2 && c.fma && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) kernel = fma_256, lanes = 8;
#endif
    /* a = 1 - 2^-20, b = tiny: the accumulators converge and never overflow or go subnormal */
    const float a = 0.99999905f, b = 1e-3f;
    volatile float sink = 0;
    double flops_per_call = 2.0 * lanes * NACC * REPS, best = 0;
    sink += kernel(a, b); /* warm up (clock ramp, page-in) */
    int reps = 5;
    for (int k = 0; k < reps; k++) {
        long calls = 0;
        /* the calling thread's CPU time: on a host shared with other work, wall time would
         * count the slices other processes take */
        double t0 = vpd_cpu_seconds(false), t;
        do {
            for (int i = 0; i < 16; i++) sink += kernel(a, b);
            calls += 16;
            t = vpd_cpu_seconds(false) - t0;
        } while (t < seconds / reps);
        double g = flops_per_call * (double)calls / t / 1e9;
        if (g > best) best = g;
    }
    (void)sink;
    return best;
}
