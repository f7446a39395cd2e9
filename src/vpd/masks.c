/* Masks, stochastic sources and subset routing (VPD_METHOD.md §3; spd
 * utils/component_utils.py `calc_stochastic_component_mask_info`, routing.py,
 * component_model.py's binomial perturbation).
 *
 * m = g + (1 − g)·r with r a stochastic (or adversarial) source; m_Δ = r_Δ. Every draw is
 * a pure function of the coordinates in vpd_draw and the element's GLOBAL index, so any
 * split of examples over data-parallel ranks, or of subcomponents over component-parallel
 * ranks, reproduces the single-process draw bit for bit (spd's torch.rand does not). */
#include "vpd/components.h"

void vpd_mask_forward(real *m, const real *g, const real *r, size_t n) {
    for (size_t i = 0; i < n; i++) m[i] = g[i] + (1 - g[i]) * r[i]; /* vectorised: mask_forward */
}

void vpd_mask_backward(real *dg, real *dr, const real *dm, const real *g, const real *r, size_t n) {
    if (dg) for (size_t i = 0; i < n; i++) dg[i] += dm[i] * (1 - r[i]); /* vectorised: mask_backward_dg */
    if (dr) for (size_t i = 0; i < n; i++) dr[i] += dm[i] * (1 - g[i]); /* vectorised: mask_backward_dr */
}

static vpd_rng draw_rng(const vpd_draw *d, uint32_t purpose, uint32_t layer_slot) {
    VPD_ASSERT(d->sample < 65536u && layer_slot < 65536u, "draw: sample %u / layer %u out of range",
               d->sample, layer_slot);
    return vpd_rng_make(d->seed, purpose, d->step, d->sample << 16 | layer_slot);
}

/* fill out[B·S, C] with uniforms at the global per-subcomponent indices of the draw */
static void fill_block(real *out, const vpd_rng *r, const vpd_draw *d) {
    const int N = d->B * d->S;
    VPD_ASSERT(d->c0 >= 0 && d->C > 0 && d->c0 + d->C <= d->C_total, "draw: block [%d, %d) of %d components",
               d->c0, d->c0 + d->C, d->C_total);
    for (int n = 0; n < N; n++) {
        uint64_t pos = (uint64_t)d->example0 * (uint64_t)d->S + (uint64_t)n; /* (example0+b)·S + s */
        vpd_rng_fill_uniform(r, pos * (uint64_t)d->C_total + (uint64_t)d->c0, (size_t)d->C, out + (size_t)n * d->C);
    }
}

void vpd_mask_source_draw(real *r, const vpd_draw *d, vpd_sampling sampling) {
    vpd_rng rng = draw_rng(d, VPD_RNG_MASK, d->layer);
    fill_block(r, &rng, d);
    if (sampling == VPD_SAMPLING_BINOMIAL) { /* Bernoulli(½) as u < ½, the same words */
        size_t n = (size_t)d->B * d->S * d->C;
        for (size_t i = 0; i < n; i++) r[i] = r[i] < (real)0.5 ? 1 : 0;
    }
}

void vpd_delta_source_draw(real *rdelta, const vpd_draw *d) {
    vpd_rng rng = draw_rng(d, VPD_RNG_DELTA_MASK, d->layer);
    vpd_rng_fill_uniform(&rng, (uint64_t)d->example0 * (uint64_t)d->S, (size_t)d->B * d->S, rdelta);
}

void vpd_binomial_perturb_forward(real *zp, const real *z, const vpd_draw *d) {
    vpd_rng rng = draw_rng(d, VPD_RNG_BINOMIAL_U, d->layer);
    const int N = d->B * d->S, C = d->C;
    real u[256];
    for (int n = 0; n < N; n++) {
        uint64_t first = ((uint64_t)d->example0 * (uint64_t)d->S + (uint64_t)n) * (uint64_t)d->C_total + (uint64_t)d->c0;
        /* chunks of a stack buffer: no allocation, and zp may alias z */
        for (int k0 = 0; k0 < C; k0 += 256) {
            int len = C - k0 < 256 ? C - k0 : 256;
            vpd_rng_fill_uniform(&rng, first + (uint64_t)k0, (size_t)len, u);
            const real *zn = z + (size_t)n * C + k0;
            real *o = zp + (size_t)n * C + k0;
            for (int k = 0; k < len; k++) o[k] = (real)1.05 * zn[k] - (real)0.05 * u[k];
        }
    }
}

void vpd_binomial_perturb_backward(real *dz, const real *dzp, size_t n) {
    for (size_t i = 0; i < n; i++) dz[i] += (real)1.05 * dzp[i]; /* vectorised: binomial_perturb_backward */
}

vpd_status vpd_routing_draw(uint8_t *route, const vpd_draw *d, int L, vpd_routing_kind kind, double p_on) {
    if (L < 1 || L > 256)
        return vpd_error(VPD_ERR_CONFIG, "subset routing over %d decomposed layers: expected 1..256", L);
    const int N = d->B * d->S;
    const uint64_t pos0 = (uint64_t)d->example0 * (uint64_t)d->S;
    switch (kind) {
    case VPD_ROUTING_ALL:
        for (size_t i = 0; i < (size_t)L * N; i++) route[i] = 1;
        return VPD_OK;
    case VPD_ROUTING_UNIFORM_K_SUBSET: {
        vpd_rng rk = draw_rng(d, VPD_RNG_ROUTING, 0), rs = draw_rng(d, VPD_RNG_ROUTING, 1);
        uint8_t sel[256];
        for (int n = 0; n < N; n++) {
            uint64_t p = pos0 + (uint64_t)n;
            int k = 1 + (int)vpd_rng_below(&rk, p, (uint32_t)L); /* k ~ U{1..L} */
            vpd_rng_k_subset(&rs, p, L, k, sel);
            for (int l = 0; l < L; l++) route[(size_t)l * N + n] = sel[l];
        }
        return VPD_OK;
    }
    case VPD_ROUTING_STATIC_PROBABILITY: {
        if (!(p_on >= 0 && p_on <= 1))
            return vpd_error(VPD_ERR_CONFIG, "routing static_probability: p = %g, expected a probability in [0, 1]", p_on);
        vpd_rng r = draw_rng(d, VPD_RNG_ROUTING, 2);
        for (int n = 0; n < N; n++)
            for (int l = 0; l < L; l++)
                route[(size_t)l * N + n] = (uint8_t)vpd_rng_bernoulli(&r, (pos0 + (uint64_t)n) * (uint64_t)L + (uint64_t)l, p_on);
        return VPD_OK;
    }
    }
    return vpd_error(VPD_ERR_CONFIG, "unknown subset routing kind %d", (int)kind);
}
