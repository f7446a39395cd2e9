/* Minimal test harness: CHECK records failures and the process exits non-zero at the end
 * (TEST_REPORT), so CTest sees every failure. Header-only; include once per test file. */
#ifndef VPD_TESTUTIL_H
#define VPD_TESTUTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpd/core.h"

static int tu_failures = 0, tu_checks = 0;

#define CHECK(cond, ...)                                                         \
    do {                                                                         \
        tu_checks++;                                                             \
        if (!(cond)) {                                                           \
            tu_failures++;                                                       \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                 \
            fprintf(stderr, __VA_ARGS__);                                        \
            fprintf(stderr, "\n");                                               \
        }                                                                        \
    } while (0)

#define TEST_REPORT()                                                            \
    do {                                                                         \
        fprintf(stderr, "%d checks, %d failures\n", tu_checks, tu_failures);     \
        return tu_failures ? 1 : 0;                                              \
    } while (0)

/* Max relative error between a and b over n values: max|a-b| / max(max|b|, floor). */
static inline double tu_max_rel_err(const real *a, const real *b, size_t n, double floor_) {
    double maxdiff = 0, maxref = floor_;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > maxdiff || d != d) maxdiff = (d != d) ? INFINITY : d;
        if (fabs((double)b[i]) > maxref) maxref = fabs((double)b[i]);
    }
    return maxdiff / maxref;
}

/* Deterministic pseudo-random fill in [-scale, scale] (test data only). */
static inline void tu_fill(real *x, size_t n, unsigned seed, double scale) {
    unsigned long long s = 0x9E3779B97F4A7C15ull * (seed + 1);
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        x[i] = (real)(scale * (2.0 * ((double)(s >> 11) / 9007199254740992.0) - 1.0));
    }
}

/* Central finite difference of a scalar function f(ctx) w.r.t. every element of p[0..n),
 * compared with the analytic gradient g. Returns the max relative error
 * max_i |fd_i - g_i| / max(max_i |g_i|, 1e-8). Only meaningful in the double build. */
typedef double (*tu_scalar_fn)(void *ctx);
static inline double tu_fd_check(tu_scalar_fn f, void *ctx, real *p, const real *g, size_t n,
                                 double h, const char *name) {
    double maxdiff = 0, maxg = 1e-8;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        real save = p[i];
        p[i] = (real)(save + h);
        double fp = f(ctx);
        p[i] = (real)(save - h);
        double fm = f(ctx);
        p[i] = save;
        double fd = (fp - fm) / (2 * h);
        double d = fabs(fd - (double)g[i]);
        if (d > maxdiff) { maxdiff = d; worst = i; }
        if (fabs((double)g[i]) > maxg) maxg = fabs((double)g[i]);
    }
    double rel = maxdiff / maxg;
    fprintf(stderr, "  fd %-28s n=%-6zu max rel err %.3e (worst index %zu)\n", name, n, rel, worst);
    return rel;
}

/* true if the last error message contains `needle` */
static inline bool has(const char *needle) { return strstr(vpd_last_error(), needle) != NULL; }

/* expr must fail with `status` and a message containing every given string */
#define EXPECT_FAIL(expr, status, ...)                                                                     \
    do {                                                                                                   \
        vpd_clear_error();                                                                                 \
        vpd_status _s = (expr);                                                                            \
        CHECK(_s == (status), "%s: status %s (%s), expected %s", #expr, vpd_status_name(_s), vpd_last_error(), \
              vpd_status_name(status));                                                                    \
        const char *_need[] = {__VA_ARGS__};                                                               \
        for (size_t _k = 0; _k < sizeof _need / sizeof _need[0]; _k++)                                     \
            CHECK(has(_need[_k]), "%s: message lacks '%s': %s", #expr, _need[_k], vpd_last_error());       \
        fprintf(stderr, "  ok (expected failure): %s\n", vpd_last_error());                                \
    } while (0)

/* st must be an error whose message is exactly `want` */
#define CHECK_MSG(st, want)                                                                        \
    do {                                                                                           \
        vpd_status _st = (st);                                                                     \
        CHECK(_st != VPD_OK, "expected an error: %s", want);                                        \
        CHECK(!strcmp(vpd_last_error(), want), "message\n   got  %s\n   want %s", vpd_last_error(), \
              want);                                                                               \
    } while (0)

#endif
