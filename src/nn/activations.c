/* Element-wise activations. GELU comes in the two forms the target models use:
 * exact erf GELU  y = x Φ(x) = 0.5 x (1 + erf(x/√2)), and the tanh approximation
 *   y = 0.5 x (1 + tanh(k (x + 0.044715 x³))), k = √(2/π)  (LlamaSimpleMLP, §7).
 * ReLU's derivative at exactly 0 is taken as 0 (PyTorch's convention).
 *
 * Two implementations of the transcendental parts:
 *   - the double build (VPD_DOUBLE, used by the finite-difference tests) calls libm's
 *     erf/exp/tanh in double, exactly;
 *   - the float build evaluates in double too, but with branch-free, call-free
 *     approximations the compiler vectorises (libm's erf/exp were ~45 % of a TMS step):
 *     erf(z) = z P(z²)/Q(z²) on |z| ≤ 3.95 (a (6,5) rational fitted for minimal max
 *     error: 1.5e-9 absolute; beyond 3.95 erf = ±1 to float precision), and
 *     exp(r) by range reduction r = n ln2 + s, |s| ≤ ln2/2, a degree-9 Taylor
 *     polynomial in s (relative error < 1e-11) and 2^n assembled in the exponent bits.
 *     The result is then rounded once to float, so it differs from the libm path by at
 *     most one float rounding (measured on 2M points in [-12, 12] against libm in double
 *     rounded to float: erf form |Δy| ≤ 1.3e-7·max(1, |y|), |Δy'| ≤ 1.2e-7; tanh form
 *     |Δy| ≤ 7.5e-9, |Δy'| ≤ 3.7e-9). A float-arithmetic version was 3x faster still but
 *     lost up to 7.6e-7 absolute in x Φ(x) near x = -5 (1 + erf cancels), so it is not used. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "vpd/nn.h"
#include "core/hot.h"

#define GELU_K 0.79788456080286535588     /* sqrt(2/pi) */
#define GELU_C 0.044715
#define INV_SQRT2 0.70710678118654752440
#define INV_SQRT2PI 0.39894228040143267794 /* 1/sqrt(2 pi) */

#if VPD_REAL_IS_DOUBLE

void gelu_forward(real *y, const real *x, size_t n, gelu_kind kind) {
    if (kind == GELU_TANH) {
        for (size_t i = 0; i < n; i++) {
            double v = x[i];
            y[i] = (real)(0.5 * v * (1.0 + tanh(GELU_K * (v + GELU_C * v * v * v))));
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            double v = x[i];
            y[i] = (real)(0.5 * v * (1.0 + erf(v * INV_SQRT2)));
        }
    }
}

void gelu_backward(real *dx, const real *dy, const real *x, size_t n, gelu_kind kind) {
    if (!dx) return;
    if (kind == GELU_TANH) {
        for (size_t i = 0; i < n; i++) {
            double v = x[i];
            double t = tanh(GELU_K * (v + GELU_C * v * v * v));
            /* d/dx: 0.5(1 + t) + 0.5 x (1 − t²) k (1 + 3c x²) */
            double g = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * GELU_K * (1.0 + 3.0 * GELU_C * v * v);
            dx[i] += (real)(dy[i] * g);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            double v = x[i];
            /* d/dx x Φ(x) = Φ(x) + x φ(x) */
            double g = 0.5 * (1.0 + erf(v * INV_SQRT2)) + v * INV_SQRT2PI * exp(-0.5 * v * v);
            dx[i] += (real)(dy[i] * g);
        }
    }
}

void gelu_forward_deriv(real *y, real *dydx, const real *x, size_t n, gelu_kind kind) {
    VPD_ASSERT(kind == GELU_ERF, "gelu_forward_deriv: only the erf form (the CI functions') is implemented");
    for (size_t i = 0; i < n; i++) {
        double v = x[i], e = erf(v * INV_SQRT2);
        y[i] = (real)(0.5 * v * (1.0 + e)); /* gelu_forward's and gelu_backward's expressions */
        dydx[i] = (real)(0.5 * (1.0 + e) + v * INV_SQRT2PI * exp(-0.5 * v * v));
    }
}

#else /* float build: vectorisable approximations, evaluated in double */

/* erf(z), |error| ≤ 1.5e-9; inline and branch-free so the loops below vectorise */
static inline double erf_fast(double z) {
    z = z > 3.95 ? 3.95 : z;
    z = z < -3.95 ? -3.95 : z;
    double t = z * z;
    double p = -1.347597590744293e-08;
    p = p * t + 4.7442059314593136e-06;
    p = p * t + 0.00038134898683027374;
    p = p * t + 0.0038355518646674279;
    p = p * t + 0.054301693907691635;
    p = p * t + 0.18470945667100383;
    p = p * t + 1.1283791813194493;
    double q = 6.3667085700967318e-05;
    q = q * t + 0.0013069767028672107;
    q = q * t + 0.015440785028093519;
    q = q * t + 0.11379869762977872;
    q = q * t + 0.49702802921314931;
    q = q * t + 1.0;
    return z * p / q;
}

/* exp(r) for r ≤ 0 (clamped below at -700, where the result is ~1e-304: 0 in float) */
static inline double exp_neg_fast(double r) {
    r = r < -700.0 ? -700.0 : r;
    /* kd = round(r / ln2) + 1.5·2^52: the low mantissa bits of kd hold n */
    double kd = r * 1.4426950408889634 + 0x1.8p52;
    double nd = kd - 0x1.8p52;
    double s = r - nd * 0.693147180369123816490; /* ln2 split hi/lo: nd·hi is exact */
    s = s - nd * 1.90821492927058770002e-10;
    double p = 1.0 / 362880;
    p = p * s + 1.0 / 40320;
    p = p * s + 1.0 / 5040;
    p = p * s + 1.0 / 720;
    p = p * s + 1.0 / 120;
    p = p * s + 1.0 / 24;
    p = p * s + 1.0 / 6;
    p = p * s + 0.5;
    p = p * s + 1.0;
    p = p * s + 1.0;
    uint64_t bits;
    memcpy(&bits, &kd, sizeof bits);
    bits = (bits + 1023) << 52; /* 2^n; the 1.5·2^52 offset shifts out */
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* tanh(u) = sign(u) (1 − e)/(1 + e), e = exp(−2|u|); |u| clamped at 20 (tanh = ±1 there) */
static inline double tanh_fast(double u) {
    double a = u < 0 ? -u : u;
    a = a > 20.0 ? 20.0 : a;
    double e = exp_neg_fast(-2.0 * a);
    double t = (1.0 - e) / (1.0 + e);
    return u < 0 ? -t : t;
}

VPD_HOT void gelu_forward(real *y, const real *x, size_t n, gelu_kind kind) {
    if (kind == GELU_TANH) {
        for (size_t i = 0; i < n; i++) { /* vectorised: gelu_forward_tanh */
            double v = x[i];
            y[i] = (real)(0.5 * v * (1.0 + tanh_fast(GELU_K * (v + GELU_C * v * v * v))));
        }
    } else {
        for (size_t i = 0; i < n; i++) { /* vectorised: gelu_forward_erf */
            double v = x[i];
            y[i] = (real)(0.5 * v * (1.0 + erf_fast(v * INV_SQRT2)));
        }
    }
}

/* value and derivative from one erf and one exp (the backward then needs no transcendental) */
VPD_HOT void gelu_forward_deriv(real *y, real *dydx, const real *x, size_t n, gelu_kind kind) {
    VPD_ASSERT(kind == GELU_ERF, "gelu_forward_deriv: only the erf form (the CI functions') is implemented");
    for (size_t i = 0; i < n; i++) { /* vectorised: gelu_forward_deriv */
        double v = x[i], e = erf_fast(v * INV_SQRT2);
        y[i] = (real)(0.5 * v * (1.0 + e)); /* gelu_forward's and gelu_backward's expressions */
        dydx[i] = (real)(0.5 * (1.0 + e) + v * INV_SQRT2PI * exp_neg_fast(-0.5 * v * v));
    }
}

VPD_HOT void gelu_backward(real *dx, const real *dy, const real *x, size_t n, gelu_kind kind) {
    if (!dx) return;
    if (kind == GELU_TANH) {
        for (size_t i = 0; i < n; i++) { /* vectorised: gelu_backward_tanh */
            double v = x[i];
            double t = tanh_fast(GELU_K * (v + GELU_C * v * v * v));
            double g = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * GELU_K * (1.0 + 3.0 * GELU_C * v * v);
            dx[i] += (real)(dy[i] * g);
        }
    } else {
        for (size_t i = 0; i < n; i++) { /* vectorised: gelu_backward_erf */
            double v = x[i];
            double g = 0.5 * (1.0 + erf_fast(v * INV_SQRT2)) + v * INV_SQRT2PI * exp_neg_fast(-0.5 * v * v);
            dx[i] += (real)(dy[i] * g);
        }
    }
}

#endif

VPD_HOT void gelu_backward_deriv(real *dx, const real *dy, const real *dydx, size_t n) {
    if (!dx) return;
    for (size_t i = 0; i < n; i++) dx[i] += dy[i] * dydx[i]; /* vectorised: gelu_backward_deriv */
}

void relu_forward(real *y, const real *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
}

void relu_backward(real *dx, const real *dy, const real *x, size_t n) {
    if (!dx) return;
    for (size_t i = 0; i < n; i++)
        if (x[i] > 0) dx[i] += dy[i];
}
