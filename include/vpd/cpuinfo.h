/* vpd cpuinfo: what this machine is (CPU model and vector ISA from /proc/cpuinfo) and its
 * measured fp32 FMA peak per core, for `vpd bench` and the build's choice of kernels. */
#ifndef VPD_CPUINFO_H
#define VPD_CPUINFO_H

#include <stdbool.h>

typedef struct {
    char model[128];  /* /proc/cpuinfo "model name" ("unknown" when absent) */
    bool avx2, fma, avx512f;
    char isa[32];     /* "avx512f", "avx2" or "baseline": the widest of the above */
} vpd_cpu;

/* Fill c from /proc/cpuinfo (cpu flags: avx2, fma, avx512f). Never fails: unknown fields
 * stay "unknown"/false. */
void vpd_cpu_detect(vpd_cpu *c);

/* Measured fp32 peak of one core in GFLOP/s: an FMA loop on independent vector accumulators
 * (the widest ISA the CPU has: 512-, 256- or 128-bit), run on the calling thread for about
 * `seconds` of its CPU time (best of several repetitions; CPU time, so other processes
 * sharing the core do not lower it). An FMA counts 2 FLOPs per lane. */
double vpd_fma_peak_gflops(double seconds);

/* The ISA this binary's element-wise kernels were compiled for ("x86-64-v3", "native", ...: the
 * compile-time macros of src/core/cpuinfo.c) and whether its hot loops carry x86-64-v4 clones
 * (src/core/hot.h), e.g. "x86-64-v3 + x86-64-v4 clones of the hot loops". */
const char *vpd_build_isa(void);

/* CPU seconds used so far by the whole process (all threads) or the calling thread */
double vpd_cpu_seconds(bool whole_process);

#endif
