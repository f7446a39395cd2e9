/* L0 and alive counting over causal importances (ci.h): the one rule the trainer's step
 * metrics, the run summary and `vpd eval` share. */
#include "vpd/ci.h"

void vpd_ci_count_l0(const real *g, size_t N, int C, double threshold, double *count) {
    size_t cnt = 0;
    const size_t n = N * (size_t)C;
    for (size_t i = 0; i < n; i++) cnt += g[i] > threshold;
    *count += (double)cnt;
}

void vpd_ci_sum_g(const real *g, size_t N, int C, double *gsum) {
    for (size_t n = 0; n < N; n++)
        for (int c = 0; c < C; c++) gsum[c] += g[n * (size_t)C + c];
}

int vpd_ci_count_alive(const double *mean_g, int C, bool *alive) {
    int n = 0;
    for (int c = 0; c < C; c++) {
        const bool a = mean_g[c] > VPD_CI_ALIVE_MEAN_G;
        if (alive) alive[c] = a;
        n += a;
    }
    return n;
}
