/* VPD_HOT: gcc function multiversioning for the few hot element-wise kernels. The portable
 * build (-march=x86-64-v3, CMakeLists.txt) runs AVX2 code everywhere; a function marked
 * VPD_HOT is also compiled for x86-64-v4 (AVX-512) and the loader picks that clone on CPUs
 * that have it (an ifunc resolved once at start). Both clones compute the same values: no
 * FP contraction (ISO C mode), only the vector width differs. Empty for -march=native builds
 * that already have AVX-512, for compilers other than gcc, off x86-64, and with
 * -DVPD_NO_CLONES. */
#ifndef VPD_HOT_H
#define VPD_HOT_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__AVX512F__) && \
    !defined(VPD_NO_CLONES) && !defined(__SANITIZE_ADDRESS__)
#define VPD_HOT __attribute__((target_clones("arch=x86-64-v4", "default")))
#define VPD_INLINE __attribute__((always_inline)) inline /* helpers inlined into each clone */
#else
#define VPD_HOT
#define VPD_INLINE inline
#endif

#endif
