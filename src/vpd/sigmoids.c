/* The sigmoids that turn a CI function's raw output z into causal importances g
 * (VPD_METHOD.md §2 "Sigmoids"; spd spd/models/sigmoids.py), and the sigmoid_type
 * config mapping to the (lower, upper) pair. All backward functions accumulate.
 *
 * LOWER_LEAKY_HARD is spd's one hand-written autograd Function: its forward is a plain
 * clamp, but for z ≤ 0 the backward passes α·γ where the incoming gradient γ is
 * negative, i.e. where the loss would like g to grow. That lets a component whose z has
 * fallen below 0 come back to life, while positive γ (a push further down) is blocked. */
#include <math.h>
#include <string.h>

#include "vpd/ci.h"
#include "core/hot.h"

#define ALPHA VPD_SIGMOID_ALPHA
/* spd swish_hard_sigmoid defaults */
#define SW_BETA 10.0
#define SW_SCALE 0.5
#define SW_XSHIFT 0.5
#define SW_YSHIFT 0.5

vpd_status vpd_sigmoid_lookup(const char *sigmoid_type, vpd_sigmoid_fn *lower, vpd_sigmoid_fn *upper) {
    static const struct {
        const char *name;
        vpd_sigmoid_fn lower, upper;
    } table[] = {
        {"leaky_hard", VPD_SIGMOID_LOWER_LEAKY_HARD, VPD_SIGMOID_UPPER_LEAKY_HARD},
        {"normal", VPD_SIGMOID_NORMAL, VPD_SIGMOID_NORMAL},
        {"hard", VPD_SIGMOID_HARD, VPD_SIGMOID_HARD},
        {"upper_leaky_hard", VPD_SIGMOID_UPPER_LEAKY_HARD, VPD_SIGMOID_UPPER_LEAKY_HARD},
        {"lower_leaky_hard", VPD_SIGMOID_LOWER_LEAKY_HARD, VPD_SIGMOID_LOWER_LEAKY_HARD},
        {"swish_hard", VPD_SIGMOID_SWISH_HARD, VPD_SIGMOID_SWISH_HARD},
    };
    for (size_t i = 0; sigmoid_type && i < sizeof table / sizeof table[0]; i++)
        if (strcmp(sigmoid_type, table[i].name) == 0) {
            *lower = table[i].lower;
            *upper = table[i].upper;
            return VPD_OK;
        }
    return vpd_error(VPD_ERR_CONFIG,
                     "sigmoid_type: unknown value '%s'; expected one of leaky_hard, normal, hard, "
                     "upper_leaky_hard, lower_leaky_hard, swish_hard",
                     sigmoid_type ? sigmoid_type : "(null)");
}

const char *vpd_sigmoid_name(vpd_sigmoid_fn f) {
    switch (f) {
    case VPD_SIGMOID_LOWER_LEAKY_HARD: return "lower_leaky_hard";
    case VPD_SIGMOID_UPPER_LEAKY_HARD: return "upper_leaky_hard";
    case VPD_SIGMOID_HARD: return "hard";
    case VPD_SIGMOID_NORMAL: return "normal";
    case VPD_SIGMOID_SWISH_HARD: return "swish_hard";
    }
    return "?";
}

static inline double logistic(double x) {
    /* stable for large |x| */
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

/* swish(x) = x σ(βx), its upside-down twin x σ(−βx), and their derivatives */
static inline double sw(double x) { return x * logistic(SW_BETA * x); }
static inline double usw(double x) { return x * logistic(-SW_BETA * x); }
static inline double dsw(double x) {
    double s = logistic(SW_BETA * x);
    return s + SW_BETA * x * s * (1.0 - s);
}
static inline double dusw(double x) {
    double s = logistic(-SW_BETA * x);
    return s - SW_BETA * x * s * (1.0 - s);
}

static inline double swish_hard(double z) {
    double x = z - SW_XSHIFT;
    return SW_YSHIFT + (usw(x - SW_SCALE) - sw(x)) + (sw(x + SW_SCALE) - usw(x));
}
static inline double dswish_hard(double z) {
    double x = z - SW_XSHIFT;
    return (dusw(x - SW_SCALE) - dsw(x)) + (dsw(x + SW_SCALE) - dusw(x));
}

static inline real clamp01(real z) { return z < 0 ? 0 : (z > 1 ? 1 : z); }

VPD_HOT void vpd_sigmoid_forward(vpd_sigmoid_fn f, real *g, const real *z, size_t n) {
    switch (f) {
    case VPD_SIGMOID_LOWER_LEAKY_HARD:
    case VPD_SIGMOID_HARD:
        for (size_t i = 0; i < n; i++) g[i] = clamp01(z[i]); /* vectorised: sigmoid_forward_hard */
        break;
    case VPD_SIGMOID_UPPER_LEAKY_HARD:
        for (size_t i = 0; i < n; i++) g[i] = z[i] > 1 ? (real)(1 + ALPHA * (z[i] - 1)) : clamp01(z[i]); /* vectorised: sigmoid_forward_upper_leaky */
        break;
    case VPD_SIGMOID_NORMAL:
        for (size_t i = 0; i < n; i++) g[i] = (real)logistic(z[i]);
        break;
    case VPD_SIGMOID_SWISH_HARD:
        for (size_t i = 0; i < n; i++) g[i] = (real)swish_hard(z[i]);
        break;
    }
}

VPD_HOT void vpd_sigmoid_backward(vpd_sigmoid_fn f, real *dz, const real *dg, const real *z, size_t n) {
    switch (f) {
    case VPD_SIGMOID_LOWER_LEAKY_HARD:
        for (size_t i = 0; i < n; i++) { /* vectorised: sigmoid_backward_lower_leaky */
            real x = z[i], gam = dg[i];
            if (x <= 0) {
                if (gam < 0) dz[i] += (real)ALPHA * gam;
            } else if (x <= 1) {
                dz[i] += gam;
            }
        }
        break;
    case VPD_SIGMOID_UPPER_LEAKY_HARD:
        /* torch.where(z > 1, leak, clamp): the clamp branch passes on [0, 1] inclusive */
        for (size_t i = 0; i < n; i++) { /* vectorised: sigmoid_backward_upper_leaky */
            real x = z[i];
            if (x > 1) dz[i] += (real)ALPHA * dg[i];
            else if (x >= 0) dz[i] += dg[i];
        }
        break;
    case VPD_SIGMOID_HARD:
        for (size_t i = 0; i < n; i++) /* vectorised: sigmoid_backward_hard */
            if (z[i] >= 0 && z[i] <= 1) dz[i] += dg[i];
        break;
    case VPD_SIGMOID_NORMAL:
        for (size_t i = 0; i < n; i++) {
            double s = logistic(z[i]);
            dz[i] += (real)(dg[i] * s * (1.0 - s));
        }
        break;
    case VPD_SIGMOID_SWISH_HARD:
        for (size_t i = 0; i < n; i++) dz[i] += (real)(dg[i] * dswish_hard(z[i]));
        break;
    }
}
