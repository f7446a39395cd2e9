/* BLAS wrappers: every matrix product in vpd goes through vpd_gemm (row-major cblas
 * sgemm/dgemm, chosen by the `real` type); vpd_gemm_naive is the slow truth for tests. */
#include <cblas.h>
#include <math.h>

#include "vpd/core.h"

void vpd_gemm(bool ta, bool tb, int M, int N, int K, real alpha, const real *A, int lda,
              const real *B, int ldb, real beta, real *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* empty sum: C = beta*C (BLAS would also do this, but avoid lda checks) */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0 ? 0 : beta * C[(size_t)i * ldc + j];
        return;
    }
#if VPD_REAL_IS_DOUBLE
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, lda, B, ldb, beta, C, ldc);
#else
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, lda, B, ldb, beta, C, ldc);
#endif
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

/* OpenBLAS thread control (declared here: Debian's cblas.h is OpenBLAS's and has them,
 * but keep the dependency explicit). */
extern int openblas_get_num_threads(void);
extern void openblas_set_num_threads(int);
int vpd_blas_threads(void) { return openblas_get_num_threads(); }
void vpd_blas_set_threads(int n) { openblas_set_num_threads(n); }
