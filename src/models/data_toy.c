/* Synthetic sparse-feature batches for the toy models (TMS, ResidMLP), following spd's
 * SparseFeatureDataset / ResidMLPDataset semantics (include/vpd/data.h):
 *   at_least_zero_active  x_f = present_f ? U(min, max) : 0, present_f ~ Bernoulli(p)
 *   exactly_n_active      the n features with the smallest random sort keys (spd:
 *                         rand().argsort()[:n]) get U(min, max) values, the rest 0
 * and the label functions x (TMS), act(c ⊙ x) + x and |c ⊙ x| (ResidMLP).
 *
 * Every draw is a pure function of (seed, step, stream, global example, feature), read
 * from the Philox data stream, so a batch split over ranks equals the whole batch. */
#include <math.h>
#include <string.h>

#include "vpd/data.h"
#include "vpd/nn.h"

static const struct {
    const char *name;
    vpd_data_gen gen;
    int n;
} gen_names[] = {
    {"at_least_zero_active", VPD_GEN_AT_LEAST_ZERO_ACTIVE, 0}, {"exactly_one_active", VPD_GEN_EXACTLY_N_ACTIVE, 1},
    {"exactly_two_active", VPD_GEN_EXACTLY_N_ACTIVE, 2},       {"exactly_three_active", VPD_GEN_EXACTLY_N_ACTIVE, 3},
    {"exactly_four_active", VPD_GEN_EXACTLY_N_ACTIVE, 4},      {"exactly_five_active", VPD_GEN_EXACTLY_N_ACTIVE, 5},
};
#define N_GEN_NAMES (sizeof gen_names / sizeof gen_names[0])

vpd_status vpd_data_gen_parse(const char *s, const char *key, vpd_data_gen *gen, int *n_active) {
    for (size_t i = 0; i < N_GEN_NAMES; i++)
        if (!strcmp(s, gen_names[i].name)) {
            *gen = gen_names[i].gen;
            *n_active = gen_names[i].n;
            return VPD_OK;
        }
    return vpd_error(VPD_ERR_CONFIG,
                     "%s: unknown data_generation_type '%s' (expected at_least_zero_active or "
                     "exactly_{one,two,three,four,five}_active)", key, s);
}

const char *vpd_data_gen_name(vpd_data_gen gen, int n_active) {
    for (size_t i = 0; i < N_GEN_NAMES; i++)
        if (gen_names[i].gen == gen && (gen == VPD_GEN_AT_LEAST_ZERO_ACTIVE || gen_names[i].n == n_active))
            return gen_names[i].name;
    return "exactly_n_active";
}

vpd_status vpd_toy_data_init(vpd_toy_data *d, int n_features, vpd_data_gen gen, int n_active,
                             double feature_probability, uint64_t seed) {
    memset(d, 0, sizeof *d);
    if (n_features < 1) return vpd_error(VPD_ERR_CONFIG, "toy data: n_features must be >= 1, got %d", n_features);
    if (gen == VPD_GEN_AT_LEAST_ZERO_ACTIVE && !(feature_probability >= 0 && feature_probability <= 1))
        return vpd_error(VPD_ERR_CONFIG, "toy data: feature_probability must be in [0, 1], got %g", feature_probability);
    if (gen == VPD_GEN_EXACTLY_N_ACTIVE && (n_active < 1 || n_active > n_features))
        return vpd_error(VPD_ERR_CONFIG, "toy data: cannot activate %d features when only %d features exist",
                         n_active, n_features);
    d->n_features = n_features;
    d->feature_probability = feature_probability;
    d->gen = gen;
    d->n_active = n_active;
    d->value_min = 0.0;
    d->value_max = 1.0;
    d->label = VPD_LABEL_INPUT;
    d->act = VPD_LABEL_ACT_RELU;
    d->seed = seed;
    d->coeffs = vpd_malloc(sizeof(real) * (size_t)n_features, "toy data label coefficients");
    d->keys = vpd_malloc(sizeof(uint32_t) * (size_t)n_features, "toy data scratch");
    if (!d->coeffs || !d->keys) {
        vpd_toy_data_free(d);
        return VPD_ERR_MEM;
    }
    for (int f = 0; f < n_features; f++) d->coeffs[f] = 1;
    return VPD_OK;
}

void vpd_toy_data_free(vpd_toy_data *d) {
    vpd_free(d->coeffs);
    vpd_free(d->keys);
    d->coeffs = NULL;
    d->keys = NULL;
}

/* The coefficient stream is its own sub-stream (step 0, stream 0xFFFFFFFF) of the data
 * key of label_fn_seed, so it never overlaps a batch. */
void vpd_toy_data_random_coeffs(vpd_toy_data *d, uint64_t label_fn_seed) {
    vpd_rng r = vpd_rng_make(label_fn_seed, VPD_RNG_DATA, 0, 0xFFFFFFFFu);
    vpd_rng_fill_uniform(&r, 0, (size_t)d->n_features, d->coeffs);
    for (int f = 0; f < d->n_features; f++) d->coeffs[f] += 1;
}

void vpd_toy_labels(const vpd_toy_data *d, const real *x, real *labels, int n) {
    int F = d->n_features;
    size_t N = (size_t)n * F;
    switch (d->label) {
    case VPD_LABEL_INPUT:
        memcpy(labels, x, sizeof(real) * N);
        break;
    case VPD_LABEL_ACT_PLUS_RESID:
        for (size_t i = 0; i < N; i++) labels[i] = d->coeffs[i % F] * x[i];
        if (d->act == VPD_LABEL_ACT_GELU) {
            gelu_forward(labels, labels, N, GELU_ERF); /* element-wise: in place is safe */
        } else {
            for (size_t i = 0; i < N; i++) labels[i] = labels[i] > 0 ? labels[i] : 0;
        }
        for (size_t i = 0; i < N; i++) labels[i] += x[i];
        break;
    case VPD_LABEL_ABS:
        for (size_t i = 0; i < N; i++) labels[i] = (real)fabs((double)(d->coeffs[i % F] * x[i]));
        break;
    }
}

/* words [first, first+n) of stream r as 24-bit integers (the numerator of
 * vpd_rng_uniform's value), one Philox call per 4 words */
static void fill_u24(const vpd_rng *r, uint64_t first, size_t n, uint32_t *out) {
    size_t k = 0;
    while (k < n) {
        uint64_t i = first + k, block = i >> 2;
        uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), r->c2, r->c3}, w[4];
        vpd_philox4x32_10(ctr, r->key, w);
        for (unsigned lane = (unsigned)(i & 3); lane < 4 && k < n; lane++) out[k++] = w[lane] >> 8;
    }
}

void vpd_toy_batch(vpd_toy_data *d, uint32_t stream, uint64_t step, int64_t e0, int B, real *x, real *labels) {
    int F = d->n_features;
    /* presence / sort-key words and value words live in two sub-streams, so a sparse batch
     * draws a value only where a feature is present (the RNG is most of the cost) */
    vpd_rng rk = vpd_rng_make(d->seed, VPD_RNG_DATA, (uint32_t)step, 2 * stream);
    vpd_rng rv = vpd_rng_make(d->seed, VPD_RNG_DATA, (uint32_t)step, 2 * stream + 1);
    real lo = (real)d->value_min, span = (real)(d->value_max - d->value_min);
    const double thr = d->feature_probability * 16777216.0; /* u < p  <=>  24-bit word < p 2^24 */
    uint32_t *u = d->keys;
    for (int b = 0; b < B; b++) {
        uint64_t w0 = (uint64_t)(e0 + b) * (uint64_t)F;
        fill_u24(&rk, w0, (size_t)F, u);
        real *row = x + (size_t)b * F;
        if (d->gen == VPD_GEN_AT_LEAST_ZERO_ACTIVE) {
            for (int f = 0; f < F; f++)
                row[f] = (double)u[f] < thr ? lo + span * vpd_rng_uniform(&rv, w0 + (uint64_t)f) : 0;
        } else {
            /* the n smallest keys (ties by index, like a stable argsort); a taken key is
             * set above every 24-bit value */
            for (int f = 0; f < F; f++) row[f] = 0;
            for (int j = 0; j < d->n_active; j++) {
                int best = 0;
                for (int f = 1; f < F; f++)
                    if (u[f] < u[best]) best = f;
                u[best] = UINT32_MAX;
                /* value j of the example goes to the j-th chosen feature (spd: random_values[..., j]) */
                row[best] = lo + span * vpd_rng_uniform(&rv, w0 + (uint64_t)j);
            }
        }
    }
    if (labels) vpd_toy_labels(d, x, labels, B);
}
