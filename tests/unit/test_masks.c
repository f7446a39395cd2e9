/* Masks, stochastic sources and subset routing (src/vpd/masks.c):
 * - m = g + (1 − g) r and its backward on hand-computed values;
 * - layout independence: drawing examples [0, B/2) and [B/2, B) separately (and
 *   components [0, c) and [c, C)) gives the full draw bit for bit, for every source kind
 *   and both routing kinds;
 * - distinct (step, sample, layer) give distinct draws;
 * - uniform_k_subset: frequency of k and of each layer; static_probability: frequency
 *   per layer and of "no layer at all"; binomial sources are 0/1 with frequency ½. */
#include "testutil.h"
#include "vpd/components.h"

enum { B = 8, S = 3, CT = 10, L = 5 };

static vpd_draw mk(int64_t e0, int b, int c0, int c) {
    vpd_draw d = {.seed = 42, .step = 17, .sample = 2, .layer = 3, .example0 = e0, .B = b, .S = S,
                  .C_total = CT, .c0 = c0, .C = c};
    return d;
}

static void test_mask_arith(void) {
    real g[3] = {0.25f, 1.0f, 0.0f}, r[3] = {0.5f, 0.3f, 0.75f}, m[3];
    vpd_mask_forward(m, g, r, 3);
    /* 0.25 + 0.75·0.5 = 0.625; g = 1 ignores r; g = 0 gives r */
    CHECK(m[0] == 0.625f && m[1] == 1.0f && m[2] == 0.75f, "mask forward %g %g %g", m[0], m[1], m[2]);
    real dm[3] = {2, 2, 2}, dg[3] = {1, 1, 1}, dr[3] = {0, 0, 0};
    vpd_mask_backward(dg, dr, dm, g, r, 3);
    /* dg += 2(1 − r) = 1, 1.4, 0.5 (accumulating onto 1); dr += 2(1 − g) = 1.5, 0, 2 */
    CHECK(fabsf(dg[0] - 2.0f) < 1e-6f && fabsf(dg[1] - 2.4f) < 1e-6f && fabsf(dg[2] - 1.5f) < 1e-6f,
          "mask backward dg %g %g %g", dg[0], dg[1], dg[2]);
    CHECK(dr[0] == 1.5f && dr[1] == 0.0f && dr[2] == 2.0f, "mask backward dr %g %g %g", dr[0], dr[1], dr[2]);
}

/* full [B·S, CT] vs two example halves and vs two component blocks */
static void test_split(const char *name, int kind) {
    static real full[B * S * CT], part[B * S * CT], blk[B * S * CT];
    static real z[B * S * CT];
    tu_fill(z, B * S * CT, 9, 2.0);
    vpd_draw d = mk(0, B, 0, CT);
#define DRAW(out, dd)                                                                       \
    do {                                                                                    \
        if (kind == 0) vpd_mask_source_draw(out, &(dd), VPD_SAMPLING_CONTINUOUS);           \
        else if (kind == 1) vpd_mask_source_draw(out, &(dd), VPD_SAMPLING_BINOMIAL);       \
        else vpd_binomial_perturb_forward(out, z + (size_t)((dd).example0 * S) * CT, &(dd)); \
    } while (0)
    DRAW(full, d);
    vpd_draw h0 = mk(0, B / 2, 0, CT), h1 = mk(B / 2, B / 2, 0, CT);
    DRAW(part, h0);
    DRAW(part + (size_t)(B / 2) * S * CT, h1);
    CHECK(memcmp(full, part, sizeof full) == 0, "%s: two example halves differ from the full draw", name);
    if (kind != 2) { /* component blocks [0,4) and [4,10) (the perturbation reads z with stride CT) */
        vpd_draw c0 = mk(0, B, 0, 4), c1 = mk(0, B, 4, CT - 4);
        static real a0[B * S * 4], a1[B * S * (CT - 4)];
        DRAW(a0, c0);
        DRAW(a1, c1);
        for (int n = 0; n < B * S; n++) {
            memcpy(blk + (size_t)n * CT, a0 + n * 4, sizeof(real) * 4);
            memcpy(blk + (size_t)n * CT + 4, a1 + n * (CT - 4), sizeof(real) * (CT - 4));
        }
        CHECK(memcmp(full, blk, sizeof full) == 0, "%s: two component blocks differ from the full draw", name);
    }
#undef DRAW
}

static void test_delta_split(void) {
    real full[B * S], part[B * S];
    vpd_draw d = mk(0, B, 0, CT), h0 = mk(0, B / 2, 0, CT), h1 = mk(B / 2, B / 2, 0, CT);
    vpd_delta_source_draw(full, &d);
    vpd_delta_source_draw(part, &h0);
    vpd_delta_source_draw(part + (B / 2) * S, &h1);
    CHECK(memcmp(full, part, sizeof full) == 0, "delta source: halves differ from the full draw");
    /* independent of the component block */
    vpd_draw c1 = mk(0, B, 4, 3);
    vpd_delta_source_draw(part, &c1);
    CHECK(memcmp(full, part, sizeof full) == 0, "delta source depends on the component block");
    for (int i = 0; i < B * S; i++) CHECK(full[i] >= 0 && full[i] < 1, "delta source %g out of [0,1)", full[i]);
}

static void test_routing_split(vpd_routing_kind kind, const char *name) {
    static uint8_t full[L * B * S], p0[L * (B / 2) * S], p1[L * (B / 2) * S];
    vpd_draw d = mk(0, B, 0, CT), h0 = mk(0, B / 2, 0, CT), h1 = mk(B / 2, B / 2, 0, CT);
    CHECK(vpd_routing_draw(full, &d, L, kind, 0.3) == VPD_OK, "%s", vpd_last_error());
    CHECK(vpd_routing_draw(p0, &h0, L, kind, 0.3) == VPD_OK, "%s", vpd_last_error());
    CHECK(vpd_routing_draw(p1, &h1, L, kind, 0.3) == VPD_OK, "%s", vpd_last_error());
    int N = B * S, Nh = (B / 2) * S, bad = 0;
    for (int l = 0; l < L; l++)
        for (int n = 0; n < N; n++) {
            uint8_t v = n < Nh ? p0[l * Nh + n] : p1[l * Nh + n - Nh];
            if (v != full[l * N + n]) bad++;
        }
    CHECK(bad == 0, "%s routing: %d flags of the halves differ from the full draw", name, bad);
}

static void test_distinct(void) {
    static real a[B * S * CT], b[B * S * CT];
    vpd_draw d = mk(0, B, 0, CT);
    vpd_mask_source_draw(a, &d, VPD_SAMPLING_CONTINUOUS);
    vpd_draw e = d; e.step++;
    vpd_mask_source_draw(b, &e, VPD_SAMPLING_CONTINUOUS);
    CHECK(memcmp(a, b, sizeof a) != 0, "step does not change the draw");
    e = d; e.sample++;
    vpd_mask_source_draw(b, &e, VPD_SAMPLING_CONTINUOUS);
    CHECK(memcmp(a, b, sizeof a) != 0, "sample does not change the draw");
    e = d; e.layer++;
    vpd_mask_source_draw(b, &e, VPD_SAMPLING_CONTINUOUS);
    CHECK(memcmp(a, b, sizeof a) != 0, "layer does not change the draw");
    e = d; e.seed++;
    vpd_mask_source_draw(b, &e, VPD_SAMPLING_CONTINUOUS);
    CHECK(memcmp(a, b, sizeof a) != 0, "seed does not change the draw");
    /* mask and delta sources are different streams */
    real r1[B * S];
    vpd_delta_source_draw(r1, &d);
    CHECK(memcmp(r1, a, sizeof r1) != 0, "delta source equals the mask source");
    double mean = 0;
    for (int i = 0; i < B * S * CT; i++) {
        CHECK(a[i] >= 0 && a[i] < 1, "continuous source %g out of [0,1)", a[i]);
        mean += a[i];
    }
    mean /= B * S * CT; /* 240 uniforms: sd of the mean 0.019 */
    CHECK(fabs(mean - 0.5) < 0.08, "continuous source mean %g", mean);
}

static void test_binomial_stats(void) {
    enum { NB = 2000 };
    static real r[NB * CT], z[NB * CT], zp[NB * CT];
    vpd_draw d = mk(0, NB, 0, CT);
    d.S = 1;
    vpd_mask_source_draw(r, &d, VPD_SAMPLING_BINOMIAL);
    int ones = 0, other = 0;
    for (int i = 0; i < NB * CT; i++) {
        if (r[i] == 1) ones++;
        else if (r[i] != 0) other++;
    }
    CHECK(other == 0, "binomial source has %d values outside {0,1}", other);
    double f = (double)ones / (NB * CT); /* sd 0.0035 */
    CHECK(fabs(f - 0.5) < 0.02, "binomial source frequency of 1: %g", f);
    tu_fill(z, NB * CT, 4, 3.0);
    vpd_binomial_perturb_forward(zp, z, &d);
    double umean = 0, umin = 1, umax = 0;
    for (int i = 0; i < NB * CT; i++) {
        double u = (1.05 * z[i] - zp[i]) / 0.05;
        umean += u; umin = u < umin ? u : umin; umax = u > umax ? u : umax;
    }
    umean /= NB * CT;
    CHECK(umin > -1e-3 && umax < 1 + 1e-3 && fabs(umean - 0.5) < 0.02, "binomial u: min %g max %g mean %g",
          umin, umax, umean);
    real dz[2] = {1, 0}, dzp[2] = {2, -1};
    vpd_binomial_perturb_backward(dz, dzp, 2);
    CHECK(fabsf(dz[0] - 3.1f) < 1e-6f && fabsf(dz[1] + 1.05f) < 1e-6f, "binomial backward %g %g", dz[0], dz[1]);
}

static void test_routing_stats(void) {
    enum { NP = 40000 };
    static uint8_t route[L * NP];
    vpd_draw d = mk(0, NP, 0, CT);
    d.S = 1;
    CHECK(vpd_routing_draw(route, &d, L, VPD_ROUTING_UNIFORM_K_SUBSET, 0) == VPD_OK, "%s", vpd_last_error());
    int kcount[L + 1] = {0}, lcount[L] = {0};
    for (int n = 0; n < NP; n++) {
        int k = 0;
        for (int l = 0; l < L; l++) { k += route[l * NP + n]; lcount[l] += route[l * NP + n]; }
        kcount[k]++;
    }
    CHECK(kcount[0] == 0, "uniform_k_subset: %d positions route no layer", kcount[0]);
    /* P(k) = 1/L = 0.2 (sd 0.002); P(layer on) = Σ_k (1/L)(k/L) = (L+1)/(2L) = 0.6 (sd 0.0025) */
    for (int k = 1; k <= L; k++) {
        double f = (double)kcount[k] / NP;
        CHECK(fabs(f - 1.0 / L) < 0.012, "uniform_k_subset: P(k=%d) = %g, expected %g", k, f, 1.0 / L);
    }
    for (int l = 0; l < L; l++) {
        double f = (double)lcount[l] / NP;
        CHECK(fabs(f - 0.6) < 0.015, "uniform_k_subset: P(layer %d) = %g, expected 0.6", l, f);
    }

    CHECK(vpd_routing_draw(route, &d, L, VPD_ROUTING_STATIC_PROBABILITY, 0.3) == VPD_OK, "%s", vpd_last_error());
    int none = 0;
    for (int l = 0; l < L; l++) lcount[l] = 0;
    for (int n = 0; n < NP; n++) {
        int k = 0;
        for (int l = 0; l < L; l++) { k += route[l * NP + n]; lcount[l] += route[l * NP + n]; }
        none += k == 0;
    }
    for (int l = 0; l < L; l++) {
        double f = (double)lcount[l] / NP; /* sd 0.0023 */
        CHECK(fabs(f - 0.3) < 0.015, "static_probability: P(layer %d) = %g, expected 0.3", l, f);
    }
    double fn = (double)none / NP, pn = pow(0.7, L); /* 0.168, sd 0.0019 */
    CHECK(fabs(fn - pn) < 0.012, "static_probability: P(no layer) = %g, expected %g", fn, pn);

    CHECK(vpd_routing_draw(route, &d, L, VPD_ROUTING_ALL, 0) == VPD_OK && route[0] == 1 && route[L * NP - 1] == 1,
          "routing all");
    /* bad configuration is an error, not a crash */
    CHECK(vpd_routing_draw(route, &d, 0, VPD_ROUTING_UNIFORM_K_SUBSET, 0) == VPD_ERR_CONFIG, "L = 0 accepted");
    CHECK(vpd_routing_draw(route, &d, 300, VPD_ROUTING_UNIFORM_K_SUBSET, 0) == VPD_ERR_CONFIG, "L = 300 accepted");
    CHECK(vpd_routing_draw(route, &d, L, VPD_ROUTING_STATIC_PROBABILITY, 1.5) == VPD_ERR_CONFIG, "p = 1.5 accepted");
}

int main(void) {
    test_mask_arith();
    test_split("continuous", 0);
    test_split("binomial", 1);
    test_split("binomial perturbation", 2);
    test_delta_split();
    test_routing_split(VPD_ROUTING_UNIFORM_K_SUBSET, "uniform_k_subset");
    test_routing_split(VPD_ROUTING_STATIC_PROBABILITY, "static_probability");
    test_distinct();
    test_binomial_stats();
    test_routing_stats();
    TEST_REPORT();
}
