/* vpd components: the rank-one subcomponents of one decomposed layer (VPD_METHOD.md §1),
 * their masks and stochastic sources, and subset routing (§3).
 *
 * A layer with target W is replaced by V [d_in, C] and U [C, d_out], W ≈ (V U)ᵀ, plus the
 * delta component Δ = W − (V U)ᵀ. The masked forward of one layer over N rows is
 *     a = x V                                   (embedding: a = V[tok, :])
 *     y = (a ⊙ m) U + m_Δ ⊙ (Δ x) + b           (in that order; embedding: Δ[tok, :])
 * and rows that routing sends to the original layer compute y = W x + b exactly.
 * This mirrors spd `LinearComponents` / `EmbeddingComponents` (spd/models/components.py),
 * `calc_stochastic_component_mask_info` (spd/utils/component_utils.py) and spd/routing.py.
 *
 * Legend: N rows (= B·S tokens of this rank), d_in/d_out widths (embedding: d_in = vocab,
 * d_out = d_model), C subcomponents held here, L decomposed layers.
 * Conventions (nn.h): outputs, saved-for-backward, inputs, weights, sizes; every backward
 * ACCUMULATES into its gradient outputs and any gradient pointer may be NULL. */
#ifndef VPD_COMPONENTS_H
#define VPD_COMPONENTS_H

#include "vpd/core.h"
#include "vpd/dist.h"

/* ---- one layer's components ---------------------------------------------------------
 * Non-owning: V and U point into the caller's flat parameter block, W and b into the
 * frozen target, delta into a workspace of d_in·d_out reals the caller provides. */
typedef struct {
    int d_in, d_out;   /* linear: W [d_out, d_in]; embedding: W [vocab = d_in, d = d_out] */
    int C;             /* subcomponents held by this process */
    int c0, C_total;   /* this block is columns [c0, c0+C) of the layer's C_total (cp shard) */
    bool embedding;
    real *V;           /* [d_in, C] */
    real *U;           /* [C, d_out] */
    const real *W;     /* linear [d_out, d_in]; embedding [vocab, d] (the target's layout) */
    const real *b;     /* [d_out] or NULL; never trained (embeddings: NULL in all our models) */
    real *delta;       /* [same layout as W]: Δ = W − (VU)ᵀ (embedding: W − VU) */
    /* Component parallelism: a layer's output is the sum over the ranks holding its
     * component blocks. Only one of them adds the replicated terms (bias, m_Δ·Δx, and the
     * original layer on routed-out rows) and their input gradients; the others set
     * shared_terms = false and contribute (a ⊙ m) U and its gradients only. The gradients of
     * U, V through Δ use m_Δ on every rank. Default true. */
    bool shared_terms;
} vpd_components;

/* Fill the struct after checking sizes (VPD_ERR_SHAPE naming `name` on non-positive sizes).
 * The whole layer is held (c0 = 0, C_total = C); set c0/C_total afterwards for a shard. */
vpd_status vpd_components_setup(vpd_components *c, const char *name, int d_in, int d_out, int C,
                                bool embedding, real *V, real *U, const real *W, const real *b,
                                real *delta);

/* V_ij ~ N(0, 1/d_in) (embeddings: 1/vocab, i.e. d_in too), U_ij ~ N(0, 1/C_total), from
 * vpd_rng_make(seed, VPD_RNG_INIT, layer, 1) for V and (…, 2) for U, indexed by the element's
 * index in the FULL layer (V: i·C_total + c0 + c, U: (c0 + c)·d_out + j), so a component
 * shard draws exactly its block of the single-process initialisation. */
void vpd_components_init(vpd_components *c, uint64_t seed, int layer);

/* the shard as src/dist/ sees it (V, U, W, sizes; no copy) */
vpd_shard_view vpd_components_shard(const vpd_components *c);

/* c->delta = W − (VU)ᵀ (embedding W − VU), one vpd_gemm. Call after every change of U, V. */
void vpd_components_delta(vpd_components *c);

/* ‖Δ‖²_F accumulated in double (needs a current c->delta). */
double vpd_faithfulness_forward(const vpd_components *c);
/* Backward of ‖Δ‖²_F given dsq = ∂loss/∂‖Δ‖²_F (e.g. coeff / total weight entries):
 * dV += −2·dsq·Δᵀ Uᵀ, dU += −2·dsq·Vᵀ Δᵀ (embedding: Δ Uᵀ and Vᵀ Δ). */
void vpd_faithfulness_backward(real *dV, real *dU, const vpd_components *c, real dsq);

/* Reals of workspace the masked forward / backward need for N rows. */
size_t vpd_components_work_size(const vpd_components *c, int N);

/* Masked forward over N rows.
 *   y [N, d_out] out;  a [N, C] saved for backward (a = x V, or V[tok,:]; for rows with
 *   route = 0 it is unused: 0 for a linear layer, whose products skip those rows).
 *   x [N, d_in] (linear) or tok [N] (embedding; x NULL). Tokens must be in [0, vocab).
 *   m [N, C] mask or NULL (= ones); mdelta [N] or NULL (= no delta term; needs c->delta);
 *   route [N] or NULL (= all rows use components); rows with route[n] = 0 give W x + b.
 *   work: vpd_components_work_size(c, N) reals. */
void vpd_components_forward(real *y, real *a, const vpd_components *c, const real *x,
                            const int32_t *tok, const real *m, const real *mdelta,
                            const uint8_t *route, int N, real *work);
/* The same for a linear layer without routing whose a = x V is already known (a_known
 * [N, C], e.g. the CI function's input computed from the same x and V this step): copies it
 * into a instead of recomputing the product. The result equals vpd_components_forward's. */
void vpd_components_forward_known_acts(real *y, real *a, const vpd_components *c, const real *x,
                                       const real *a_known, const real *m, const real *mdelta, int N,
                                       real *work);
/* Backward of the forward above with the same x/tok, a, m, mdelta, route. Accumulates
 * dx [N, d_in] (linear only; routed-out rows get dy W), dV [d_in, C], dU [C, d_out],
 * dm [N, C], dmdelta [N]; each may be NULL. The delta term's gradient reaches U and V
 * through Δ = W − (VU)ᵀ with products over all rows: dV −= xᵀ(m_Δ⊙dy)Uᵀ,
 * dU −= (xV)ᵀ(m_Δ⊙dy), folded into the mask term as (dy Uᵀ) ⊙ (m − m_Δ). */
void vpd_components_backward(real *dx, real *dV, real *dU, real *dm, real *dmdelta,
                             const real *dy, const real *a, const vpd_components *c,
                             const real *x, const int32_t *tok, const real *m,
                             const real *mdelta, const uint8_t *route, int N, real *work);

/* ---- masks (src/vpd/masks.c) ----------------------------------------------------------
 * m = g + (1 − g)·r over n values, and its backward dg += dm(1 − r), dr += dm(1 − g)
 * (dg, dr may be NULL). */
void vpd_mask_forward(real *m, const real *g, const real *r, size_t n);
void vpd_mask_backward(real *dg, real *dr, const real *dm, const real *g, const real *r, size_t n);

/* The coordinates of one random draw. Every random number of a mask, delta mask, binomial
 * perturbation or routing decision is a pure function of these values and the GLOBAL index
 * of the element, never of the rank layout:
 *   sub-stream  vpd_rng_make(seed, purpose, step, sample << 16 | layer)
 *   element     ((example0 + b)·S + s)·C_total + c0 + c   for per-subcomponent values,
 *               (example0 + b)·S + s                      for per-position values.
 * A rank holding examples [example0, example0 + B) and components [c0, c0 + C) of a layer
 * with C_total subcomponents therefore draws exactly its block of the single-process draw.
 * `sample` distinguishes draws within one step (mask sample, loss, PGD restart …): the
 * caller gives every independent draw of a step its own number (< 65536); `layer` is the
 * layer's index in the strcmp order of names (< 65536; unused by routing). */
typedef struct {
    uint64_t seed;
    uint32_t step;     /* training step (or an evaluation counter) */
    uint32_t sample;   /* which draw within the step */
    uint32_t layer;    /* decomposed layer index */
    int64_t example0;  /* global index of this rank's first example */
    int B, S;          /* local examples, positions per example: rows N = B·S */
    int C_total;       /* subcomponents of the layer */
    int c0, C;         /* this rank's block [c0, c0 + C) */
} vpd_draw;

typedef enum { VPD_SAMPLING_CONTINUOUS = 0, VPD_SAMPLING_BINOMIAL = 1 } vpd_sampling;

/* r [B·S, C]: continuous U(0,1) or binomial Bernoulli(½) (VPD_RNG_MASK). */
void vpd_mask_source_draw(real *r, const vpd_draw *d, vpd_sampling sampling);
/* r_Δ [B·S] ~ U(0,1) (VPD_RNG_DELTA_MASK; depends on example and position only). */
void vpd_delta_source_draw(real *rdelta, const vpd_draw *d);
/* Binomial sampling's perturbed CI input zp [B·S, C] = 1.05 z − 0.05 u, u ~ U(0,1) from
 * VPD_RNG_BINOMIAL_U (zp may alias z); backward dz += 1.05 dzp over n values. */
void vpd_binomial_perturb_forward(real *zp, const real *z, const vpd_draw *d);
void vpd_binomial_perturb_backward(real *dz, const real *dzp, size_t n);

/* ---- subset routing (src/vpd/masks.c) ---------------------------------------------------
 * route [L, B·S] (layer-major: layer l's flags are route + l·B·S, the `route` argument of
 * vpd_components_forward), 1 = the layer runs its components at that (example, position).
 * Keyed by (seed, VPD_RNG_ROUTING, step, sample), d->layer / c0 / C / C_total ignored;
 * position p = (example0 + b)·S + s.
 *   uniform_k_subset: k = 1 + below(L) from word p of sub-stream layer-slot 0, then a
 *     uniform k-subset from vpd_rng_k_subset(draw p) of sub-stream layer-slot 1.
 *   static_probability: layer l on with probability p_on (uniform < p_on), word p·L + l of
 *     sub-stream layer-slot 2 (possibly no layer on).
 * Returns VPD_ERR_CONFIG if L is outside [1, 256] or p_on outside [0, 1]. */
typedef enum { VPD_ROUTING_ALL = 0, VPD_ROUTING_UNIFORM_K_SUBSET = 1, VPD_ROUTING_STATIC_PROBABILITY = 2 } vpd_routing_kind;
vpd_status vpd_routing_draw(uint8_t *route, const vpd_draw *d, int L, vpd_routing_kind kind, double p_on);

#endif
