/* Transcoder kernels (tc_internal.h): encoder and decoder products through BLAS, the
 * activations and their backward, JumpReLU's threshold pseudo-gradient, the local top-K
 * candidates of BatchTopK, and the unit-norm decoder constraint. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "transcoder/tc_internal.h"

void tc_pre(const real *x, const real *W, const real *b, int N, int d, int n, real *pre) {
    for (int r = 0; r < N; r++) memcpy(pre + (size_t)r * n, b, sizeof(real) * (size_t)n);
    vpd_gemm(false, true, N, n, d, 1, x, d, W, d, 1, pre, n);
}

void tc_pre_backward(const real *dpre, const real *x, const real *W, int N, int d, int n, real *dW, real *db, real *dx) {
    vpd_gemm(true, false, n, d, N, 1, dpre, n, x, d, 1, dW, d);
    for (int r = 0; r < N; r++) {
        const real *g = dpre + (size_t)r * n;
        for (int c = 0; c < n; c++) db[c] += g[c];
    }
    if (dx) vpd_gemm(false, false, N, d, n, 1, dpre, n, W, d, 1, dx, d);
}

void tc_dec(const real *z, const real *W, int N, int n, int d, real *y) {
    vpd_gemm(false, false, N, d, n, 1, z, n, W, d, 1, y, d);
}

void tc_dec_backward(const real *dy, const real *z, const real *W, int N, int n, int d, real *dW, real *dz) {
    vpd_gemm(true, false, n, d, N, 1, z, n, dy, d, 1, dW, d);
    if (dz) vpd_gemm(false, true, N, n, d, 1, dy, d, W, d, 1, dz, n);
}

/* k-th largest (1-based) of s[0..n) by quickselect, permuting s */
static real kth_select(real *s, int n, int k) {
    int lo = 0, hi = n - 1, want = k - 1; /* index in descending order */
    while (lo < hi) {
        real piv = s[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (s[i] > piv) i++;
            while (s[j] < piv) j--;
            if (i <= j) {
                real t = s[i];
                s[i] = s[j];
                s[j] = t;
                i++;
                j--;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else break;
    }
    return s[want];
}

/* the same on a scratch copy (a is not touched) */
static real kth_largest(const real *a, int n, int k, real *s) {
    memcpy(s, a, sizeof(real) * (size_t)n);
    return kth_select(s, n, k);
}

void tc_topk(const real *pre, int N, int n, int k, real *z, real *scratch) {
    if (k > n) k = n;
    for (int r = 0; r < N; r++) {
        const real *p = pre + (size_t)r * n;
        real *o = z + (size_t)r * n;
        real kth = kth_largest(p, n, k, scratch);
        int above = 0;
        for (int c = 0; c < n; c++) above += p[c] > kth;
        int ties = k - above; /* entries equal to kth still to keep, in index order */
        for (int c = 0; c < n; c++) {
            real v = p[c];
            bool keep = v > kth || (v == kth && ties-- > 0);
            o[c] = keep && v > 0 ? v : 0;
        }
    }
}

void tc_keep_ge(const real *pre, size_t cnt, real thr, real *z) {
    for (size_t i = 0; i < cnt; i++) z[i] = (pre[i] > 0 && pre[i] >= thr) ? pre[i] : 0;
}

void tc_keep_gt(const real *pre, size_t cnt, real thr, real *z) {
    for (size_t i = 0; i < cnt; i++) z[i] = (pre[i] > thr && pre[i] > 0) ? pre[i] : 0;
}

void tc_relu(const real *pre, size_t cnt, real *z) {
    for (size_t i = 0; i < cnt; i++) z[i] = pre[i] > 0 ? pre[i] : 0;
}

void tc_jumprelu(const real *pre, int N, int n, const real *theta, real *z) {
    for (int r = 0; r < N; r++) {
        const real *p = pre + (size_t)r * n;
        real *o = z + (size_t)r * n;
        for (int c = 0; c < n; c++) o[c] = p[c] > theta[c] ? p[c] : 0;
    }
}

void tc_act_backward(const real *dz, const real *z, size_t cnt, real *dpre) {
    for (size_t i = 0; i < cnt; i++) dpre[i] += z[i] != 0 ? dz[i] : 0;
}

void tc_jumprelu_theta_backward(const real *dz, const real *pre, int N, int n, const real *theta, double eps,
                                double l0_scale, real *dtheta) {
    for (int r = 0; r < N; r++) {
        const real *p = pre + (size_t)r * n;
        const real *g = dz ? dz + (size_t)r * n : NULL;
        for (int c = 0; c < n; c++) {
            double u = ((double)p[c] - (double)theta[c]) / eps;
            if (fabs(u) < 0.5) {
                double v = -l0_scale / eps;
                if (g) v += (double)g[c] * (-(double)theta[c] / eps);
                dtheta[c] += (real)v;
            }
        }
    }
}

static int cmp_desc(const void *a, const void *b) {
    real x = *(const real *)a, y = *(const real *)b;
    return (x < y) - (x > y);
}

size_t tc_local_topk_sorted(const real *x, size_t cnt, size_t K, real *out, real *scratch) {
    size_t m = 0;
    for (size_t i = 0; i < cnt; i++)
        if (x[i] > 0) scratch[m++] = x[i];
    if (m > K) {
        /* quickselect the K largest to the front, then sort those */
        real kth = kth_select(scratch, (int)m, (int)K);
        size_t w = 0;
        for (size_t i = 0; i < m && w < K; i++)
            if (scratch[i] > kth) out[w++] = scratch[i];
        while (w < K) out[w++] = kth;
        m = K;
    } else {
        memcpy(out, scratch, sizeof(real) * m);
    }
    qsort(out, m, sizeof(real), cmp_desc);
    return m;
}

/* ---- decoder norms ------------------------------------------------------------------ */
void tc_dec_normalise(vpd_transcoder *t) {
    int L = t->n_layers, n = t->n_latent, d = t->d_model;
    for (int i = 0; i < L; i++)
        for (int r = 0; r < n; r++) {
            double s = 0;
            for (int j = i; j < L; j++)
                if (vpd_tc_writes(t, i, j)) s += vpd_sumsq((size_t)d, t->W_dec[i * L + j] + (size_t)r * d);
            if (s <= 0) continue;
            real f = (real)(1.0 / sqrt(s));
            for (int j = i; j < L; j++)
                if (vpd_tc_writes(t, i, j)) vpd_scale((size_t)d, f, t->W_dec[i * L + j] + (size_t)r * d);
        }
}

void tc_dec_project_grad(const vpd_transcoder *t, vpd_transcoder *gt) {
    int L = t->n_layers, n = t->n_latent, d = t->d_model;
    for (int i = 0; i < L; i++)
        for (int r = 0; r < n; r++) {
            double gv = 0, vv = 0;
            for (int j = i; j < L; j++)
                if (vpd_tc_writes(t, i, j)) {
                    const real *v = t->W_dec[i * L + j] + (size_t)r * d;
                    gv += vpd_dot((size_t)d, gt->W_dec[i * L + j] + (size_t)r * d, v);
                    vv += vpd_sumsq((size_t)d, v);
                }
            if (vv <= 0) continue;
            real f = (real)(-gv / vv);
            for (int j = i; j < L; j++)
                if (vpd_tc_writes(t, i, j))
                    vpd_axpy((size_t)d, f, t->W_dec[i * L + j] + (size_t)r * d, gt->W_dec[i * L + j] + (size_t)r * d);
        }
}

void tc_bind(vpd_transcoder *t, real *flat) {
    int L = t->n_layers, n = t->n_latent, d = t->d_model;
    size_t off = 0;
    t->params = flat;
    for (int i = 0; i < L; i++) {
        t->W_enc[i] = flat ? flat + off : NULL;
        off += (size_t)n * d;
        t->b_enc[i] = flat ? flat + off : NULL;
        off += (size_t)n;
        t->threshold[i] = flat ? flat + off : NULL;
        off += (size_t)n;
        t->b_dec[i] = flat ? flat + off : NULL;
        off += (size_t)d;
        for (int j = 0; j < L; j++) {
            if (vpd_tc_writes(t, i, j)) {
                t->W_dec[i * L + j] = flat ? flat + off : NULL;
                off += (size_t)n * d;
            } else {
                t->W_dec[i * L + j] = NULL;
            }
        }
    }
    t->n_params = off;
}
