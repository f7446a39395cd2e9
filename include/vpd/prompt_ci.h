/* vpd prompt_ci: the post-hoc CI optimisation on one prompt that prunes an attribution
 * graph (VPD_METHOD.md §6 "Attribution graphs", issue 14).
 *
 * Given a language-model run, a prompt of T tokens, a position t* and a target token y
 * (the token predicted at t*, i.e. the logit of y at position t*):
 *   - the subcomponents alive on the prompt (g > 0 from the trained CI function, per
 *     position) are the free parameters; every other (position, subcomponent) is fixed at
 *     g = 0. U, V, W and the CI function are frozen.
 *   - the free parameters are pre-sigmoid values z, warm-started from the CI function's z;
 *     g = lower_leaky(z) for masks, upper_leaky(z) for importance minimality.
 *   - loss = CE(y at t* | stochastic masks m = g + (1 − g)·r, r ~ U(0,1), + Δ term with r_Δ)
 *          + adv_coeff · CE(y at t* | adversarial masks: PGD, pgd_steps sign-ascent steps of
 *            pgd_lr from random sources, acting only on the alive subcomponents; the sources
 *            of the non-alive ones and r_Δ are 0, so those stay fully ablated)
 *          + imp_coeff · (1/T) Σ_alive (g_upper + 1e-12)^pnorm   (spd's importance minimality
 *            for a batch of one sequence, β = 0)
 *     minimised by AdamW (β 0.9/0.999, eps 1e-8, no weight decay) with 1 % warmup and a
 *     cosine decay from lr to 0 over `steps`. Defaults: spd's app (optim_cis.py: lr 0.01,
 *     importance coefficient 0.1, p 0.3, 2000 steps) and the paper (PGD 4 steps of lr 1).
 *   - every random draw comes from the counter-based RNG keyed by (seed, step, layer,
 *     position, subcomponent), so the result does not depend on the rank count: every rank
 *     computes the same optimisation.
 * The probabilities are reported for the pruned graph (the optimised z) and for the
 * unpruned one (the CI function's z), each under CI masks (m = g, no Δ), stochastic masks
 * (m = g + (1 − g)·r with Δ, mean over n_eval_samples draws) and adversarial masks (PGD of
 * pgd_eval_steps from random sources on the alive set, maximising CE; no Δ term beyond its
 * source 0). */
#ifndef VPD_PROMPT_CI_H
#define VPD_PROMPT_CI_H

#include "vpd/analysis.h"

typedef struct {
    int steps;          /* AdamW steps (2000) */
    double lr;          /* peak AdamW lr of the cosine schedule (0.01) */
    double imp_coeff;   /* importance-minimality coefficient (0.1) */
    double pnorm;       /* importance-minimality p (0.3) */
    double adv_coeff;   /* adversarial CE coefficient (1.0) */
    int pgd_steps;      /* PGD steps of the adversarial CE in the loss (4) */
    double pgd_lr;      /* PGD sign-step size (1.0) */
    int pgd_eval_steps; /* PGD steps of the reported adversarial probability (20) */
    double pgd_eval_lr; /* its step size (0.1) */
    int n_eval_samples; /* stochastic draws averaged in the reported P(target) (16) */
    uint64_t seed;      /* names every draw (0 = the run's seed) */
    int log_every;      /* progress line on stderr every N steps (0: none) */
} vpd_prompt_ci_opts;

void vpd_prompt_ci_opts_defaults(vpd_prompt_ci_opts *o);

typedef struct {
    float p_ci, p_stoch, p_adv; /* P(target at t*) under CI, stochastic, adversarial masks */
    int n_alive;                /* (position, subcomponent) nodes with g > 0 */
} vpd_prompt_ci_probs;

/* Optimise the CI on the prompt `tokens` [T] (T <= the run's max_seq_len; the run must be a
 * language model), target `target_token` at position t_star (0 <= t_star < T).
 * ci_out [T][C_sum_total] (may be NULL): the optimised g = lower_leaky(z) of the pruned graph
 * at (position t, column c_off_total[l] + c of layer l), 0 for subcomponents not alive on the
 * prompt. pruned / unpruned (may be NULL): the probabilities table.
 * Every rank computes the same result (no communication). */
vpd_status vpd_prompt_ci_optimise(vpd_run *r, const int32_t *tokens, int T, int t_star, int target_token,
                                  const vpd_prompt_ci_opts *o, float *ci_out, vpd_prompt_ci_probs *pruned,
                                  vpd_prompt_ci_probs *unpruned);

/* ---- the optimisation's parts (tests, and callers that hold their own decomposition) ------
 * A state over a decomposition `d` made for ONE example of T positions (vpd_decomp_create_local
 * (&d, cfg, target, 1, T)) with its trained parameters: create runs the target and the CI
 * function on `tokens` [T] (copied), fixes the alive set (g_lower > 0) and warm-starts the free
 * values from the CI function's z. d must outlive the state; the state sets d's input. */
typedef struct vpd_prompt_ci vpd_prompt_ci;
vpd_status vpd_prompt_ci_create(vpd_prompt_ci **out, vpd_decomp *d, const int32_t *tokens, int t_star, int target_token,
                                const vpd_prompt_ci_opts *o);
void vpd_prompt_ci_free(vpd_prompt_ci *p);
/* the free parameters: pre-sigmoid values of the alive (position, subcomponent) pairs, in
 * layer-major order of d's [ΣC·T] buffers; idx[i] is the element index of value i there */
int vpd_prompt_ci_n_free(const vpd_prompt_ci *p);
real *vpd_prompt_ci_values(vpd_prompt_ci *p);
const int32_t *vpd_prompt_ci_index(const vpd_prompt_ci *p);
/* The loss of optimisation step `step` (its draws: stochastic sources, PGD init) at the current
 * values; grad [n_free] (may be NULL) receives ∂loss/∂values (overwritten). parts (may be NULL):
 * [0] stochastic CE, [1] adversarial CE (after the PGD steps), [2] importance minimality
 * (before their coefficients). The PGD steps' dependence on the values is not differentiated
 * (sign steps: piecewise constant), as in training. */
double vpd_prompt_ci_loss(vpd_prompt_ci *p, int step, real *grad, double parts[3]);
/* P(target) under CI, stochastic and adversarial masks at the current values (draws named
 * by eval_id, so two calls with the same id use the same draws) and the alive count. */
void vpd_prompt_ci_measure(vpd_prompt_ci *p, uint32_t eval_id, vpd_prompt_ci_probs *out);
/* run the AdamW loop for o->steps from the current values */
void vpd_prompt_ci_run(vpd_prompt_ci *p);
/* ci_out [T][C_sum_total] as in vpd_prompt_ci_optimise, at the current values */
void vpd_prompt_ci_export(const vpd_prompt_ci *p, float *ci_out);

#endif
