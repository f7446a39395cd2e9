/* Sigmoids (VPD_METHOD.md §2): the sigmoid_type mapping, forward values, the
 * hand-written lower-leaky backward on hand-computed cases (it is deliberately not the
 * derivative of its forward at z <= 0), and finite differences wherever a function is
 * smooth (away from the kinks at 0 and 1 of the piecewise ones). */
#include "testutil.h"
#include "vpd/ci.h"

typedef struct {
    vpd_sigmoid_fn f;
    real *z;
    const real *w;
    size_t n;
} fd_ctx;

/* L = Σ w_i σ(z_i), so ∂L/∂z = the backward applied to dg = w */
static double loss(void *p) {
    fd_ctx *c = p;
    real g[16];
    vpd_sigmoid_forward(c->f, g, c->z, c->n);
    double s = 0;
    for (size_t i = 0; i < c->n; i++) s += (double)c->w[i] * g[i];
    return s;
}

/* independent spd swish_hard_sigmoid(x, beta=10, scale=0.5, xshift=0.5, yshift=0.5) */
static double ref_swish_hard(double z) {
    double x = z - 0.5;
#define SW(t) ((t) / (1.0 + exp(-10.0 * (t))))
#define USW(t) ((t) / (1.0 + exp(10.0 * (t))))
    return 0.5 + (USW(x - 0.5) - SW(x)) + (SW(x + 0.5) - USW(x));
}

int main(void) {
    vpd_sigmoid_fn lo, up;
    CHECK(vpd_sigmoid_lookup("leaky_hard", &lo, &up) == VPD_OK && lo == VPD_SIGMOID_LOWER_LEAKY_HARD &&
              up == VPD_SIGMOID_UPPER_LEAKY_HARD, "leaky_hard -> (lower, upper) leaky");
    CHECK(vpd_sigmoid_lookup("normal", &lo, &up) == VPD_OK && lo == VPD_SIGMOID_NORMAL && up == VPD_SIGMOID_NORMAL,
          "normal -> logistic for both");
    CHECK(vpd_sigmoid_lookup("hard", &lo, &up) == VPD_OK && lo == VPD_SIGMOID_HARD && up == VPD_SIGMOID_HARD, "hard");
    CHECK(vpd_sigmoid_lookup("upper_leaky_hard", &lo, &up) == VPD_OK && lo == VPD_SIGMOID_UPPER_LEAKY_HARD &&
              up == VPD_SIGMOID_UPPER_LEAKY_HARD, "upper_leaky_hard for both");
    CHECK(vpd_sigmoid_lookup("swish_hard", &lo, &up) == VPD_OK && lo == VPD_SIGMOID_SWISH_HARD, "swish_hard");
    CHECK(vpd_sigmoid_lookup("leaky", &lo, &up) == VPD_ERR_CONFIG && strstr(vpd_last_error(), "'leaky'"),
          "unknown sigmoid_type is a config error naming it: %s", vpd_last_error());

    /* forward values */
    real z[8] = {-2.0, -0.3, 0.0, 0.25, 1.0, 1.5, 3.0, 0.75}, g[8];
    vpd_sigmoid_forward(VPD_SIGMOID_LOWER_LEAKY_HARD, g, z, 8);
    CHECK(g[0] == 0 && g[1] == 0 && g[2] == 0 && g[3] == 0.25 && g[4] == 1 && g[5] == 1 && g[6] == 1,
          "lower leaky forward is clamp(z, 0, 1)");
    vpd_sigmoid_forward(VPD_SIGMOID_UPPER_LEAKY_HARD, g, z, 8);
    CHECK(g[0] == 0 && g[3] == 0.25 && g[4] == 1 && fabs(g[5] - 1.005) < 1e-12 && fabs(g[6] - 1.02) < 1e-12,
          "upper leaky forward: 1 + 0.01 (z - 1) above 1: %g %g", (double)g[5], (double)g[6]);
    vpd_sigmoid_forward(VPD_SIGMOID_NORMAL, g, z, 8);
    CHECK(fabs(g[2] - 0.5) < 1e-15 && fabs(g[0] - 1 / (1 + exp(2.0))) < 1e-15, "logistic forward");
    vpd_sigmoid_forward(VPD_SIGMOID_SWISH_HARD, g, z, 8);
    double maxd = 0;
    for (int i = 0; i < 8; i++) maxd = fmax(maxd, fabs(g[i] - ref_swish_hard(z[i])));
    CHECK(maxd < 1e-14, "swish_hard forward vs spd formula: %g", maxd);
    CHECK(fabs(g[0]) < 1e-6 && fabs(g[6] - 1) < 1e-6, "swish_hard saturates at 0 and 1: %g %g", (double)g[0],
          (double)g[6]);

    /* lower-leaky backward by hand: z ≤ 0 leaks α γ only for γ < 0; (0, 1] passes; > 1 blocks.
     * Accumulates onto dz = 1. */
    {
        real zz[8] = {-0.5, -0.5, 0.0, 0.0, 0.3, 1.0, 1.5, 1.5};
        real gam[8] = {-2.0, 3.0, -1.0, 1.0, 0.7, 0.4, -5.0, 5.0};
        real want[8] = {1 - 0.02, 1, 1 - 0.01, 1, 1.7, 1.4, 1, 1};
        real dz[8];
        for (int i = 0; i < 8; i++) dz[i] = 1;
        vpd_sigmoid_backward(VPD_SIGMOID_LOWER_LEAKY_HARD, dz, gam, zz, 8);
        double e = tu_max_rel_err(dz, want, 8, 1.0);
        CHECK(e < 1e-15, "lower leaky backward on hand cases: rel err %g", e);
        /* upper leaky: 0 below 0, 1 on [0, 1], α above 1 */
        real zu[5] = {-0.5, 0.0, 0.5, 1.0, 2.0}, gu[5] = {2, 2, 2, 2, 2}, du[5] = {0}, wu[5] = {0, 2, 2, 2, 0.02};
        vpd_sigmoid_backward(VPD_SIGMOID_UPPER_LEAKY_HARD, du, gu, zu, 5);
        e = tu_max_rel_err(du, wu, 5, 1.0);
        CHECK(e < 1e-15, "upper leaky backward on hand cases: rel err %g", e);
        real dh[5] = {0}, wh[5] = {0, 2, 2, 2, 0};
        vpd_sigmoid_backward(VPD_SIGMOID_HARD, dh, gu, zu, 5);
        e = tu_max_rel_err(dh, wh, 5, 1.0);
        CHECK(e < 1e-15, "hard backward on hand cases: rel err %g", e);
    }

    /* finite differences where smooth */
    struct {
        vpd_sigmoid_fn f;
        int n;
        real z[8];
    } cases[] = {
        {VPD_SIGMOID_LOWER_LEAKY_HARD, 5, {0.1, 0.45, 0.9, 1.3, 2.5}}, /* z > 0 only: see header */
        {VPD_SIGMOID_UPPER_LEAKY_HARD, 7, {-1.2, -0.1, 0.1, 0.45, 0.9, 1.3, 2.5}},
        {VPD_SIGMOID_HARD, 7, {-1.2, -0.1, 0.1, 0.45, 0.9, 1.3, 2.5}},
        {VPD_SIGMOID_NORMAL, 8, {-3.0, -1.2, -0.1, 0.0, 0.1, 0.9, 1.3, 4.0}},
        {VPD_SIGMOID_SWISH_HARD, 8, {-1.0, -0.2, 0.0, 0.1, 0.5, 0.95, 1.1, 1.6}},
    };
    real w[8] = {0.7, -1.3, 0.4, 2.0, -0.6, 1.1, -0.9, 0.3};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        fd_ctx c = {cases[k].f, cases[k].z, w, (size_t)cases[k].n};
        real dz[8] = {0};
        vpd_sigmoid_backward(c.f, dz, w, c.z, c.n);
        double e = tu_fd_check(loss, &c, c.z, dz, c.n, 1e-6, vpd_sigmoid_name(c.f));
        CHECK(e < 1e-6, "%s: fd rel err %g", vpd_sigmoid_name(c.f), e);
    }
    /* the hand-written rule really differs from the forward's derivative at z < 0 */
    {
        real zz[1] = {-0.4}, gg[1] = {-1.0}, dz[1] = {0};
        vpd_sigmoid_backward(VPD_SIGMOID_LOWER_LEAKY_HARD, dz, gg, zz, 1);
        CHECK(dz[0] == (real)-0.01, "lower leaky leaks for negative gradient below 0: %g", (double)dz[0]);
    }
    TEST_REPORT();
}
