/* vpd edit: editing a target model by its subcomponents (VPD_METHOD.md §6 "Model editing";
 * the paper's section "Editing a language model's parameters by hand").
 *
 * A decomposed layer W ≈ Σ_c U_c V_cᵀ + Δ (U_c = row c of U [C, d_out], V_c = column c of
 * V [d_in, C]; a_c = V_cᵀx). The edits:
 *   run time   mask value m_c for the named subcomponents (0 ablates, x scales), 1 for every
 *              other one, and the layer otherwise exactly the target's:
 *                  W_edit = W − Σ_named (1 − m_c)·U_c V_cᵀ
 *              (Δ stays: with no edit the model IS the target). Optionally per token only
 *              where the subcomponent's CI g_c > THR (`where_active`). `no_delta` instead runs
 *              every decomposed layer as its components alone, Σ_c m_c U_c V_cᵀ (the masked
 *              model without Δ of VPD_METHOD's wording; differs from the target by Δ even
 *              when nothing is edited).
 *   baked      W ← W − (1 − m_c)·U_c V_cᵀ (m_c = 0: the ablation W − U_c V_cᵀ), and the paper's
 *              overwrite: U_c replaced by −α·u/‖u‖, u the unembedding row of a token:
 *                  W′ = W − (U_c + α·u/‖u‖)·V_cᵀ
 *              (the sign: a_c < 0 where the paper's subcomponent fires, so −α·a_c·u/‖u‖
 *              raises the token's logit). Written into a copy of the target.
 * Embedding layers (wte: W [vocab, d], a_c = V[tok, c]) take run-time edits; a baked edit of
 * an embedding tied to the unembedding (LlamaSimpleMLP's wte = lm_head) is refused, as the
 * file format cannot keep the output layer unchanged. */
#ifndef VPD_EDIT_H
#define VPD_EDIT_H

#include <stdio.h>

#include "vpd/analysis.h"
#include "vpd/tokenizer.h"

#define VPD_EDIT_MAX 256

typedef enum { VPD_EDIT_MASK = 0, VPD_EDIT_OVERWRITE = 1 } vpd_edit_kind;

typedef struct {
    vpd_edit_kind kind;
    int k;        /* decomposed layer (index into d->layers) */
    int c;        /* subcomponent */
    double value; /* MASK: the mask value m_c; OVERWRITE: α */
    int token;    /* OVERWRITE: the token whose unembedding is written */
} vpd_edit;

typedef struct {
    int n;
    vpd_edit e[VPD_EDIT_MAX];
    double where_active; /* run time: edit only rows with g_c > where_active; < 0: everywhere */
    bool no_delta;       /* run time: decomposed layers run as Σ_c m_c U_c V_cᵀ (no Δ) */
} vpd_edit_set;

/* "LAYER:c[,c...]" (value `value` for each) or, with want_value, "LAYER:c=x" (x into *value
 * of the edit), appended to set as `kind`. One-line errors (VPD_ERR_ARG) naming an unknown
 * layer (with the decomposed layers listed), a c outside [0, C) or a malformed argument. */
vpd_status vpd_edit_parse(vpd_edit_set *set, const vpd_decomp *d, const char *arg, vpd_edit_kind kind, double value,
                          bool want_value);
/* "LAYER:c=TOKEN": the overwrite's target and its token: TOKEN is a token's text (its raw
 * bytes looked up in the tokenizer; tok may be NULL) or #ID. VPD_ERR_ARG when the token is
 * not one token of the vocabulary [0, vocab). */
vpd_status vpd_edit_parse_overwrite(vpd_edit_set *set, const vpd_decomp *d, const vpd_tokenizer *tok, int vocab,
                                    const char *arg, double alpha);

/* The run-time hook: vpd_model_forward(d->target, in, out, &h->base) runs the edited model.
 * With where_active it reads g from d->act.g_lower, so the input must be d's batch
 * (rows N = d->batch.N) after vpd_decomp_ci_forward. */
typedef struct {
    vpd_hook base;
    const vpd_decomp *d;
    const vpd_edit_set *set;
    real *a, *coef; /* [N, max C] and [N] scratch */
    int cap_rows, cap_c;
} vpd_edit_hook;
vpd_status vpd_edit_hook_init(vpd_edit_hook *h, const vpd_decomp *d, const vpd_edit_set *set, int max_rows);
void vpd_edit_hook_free(vpd_edit_hook *h);

/* The baked model: a copy of d->target with every edit written into its weights (run-time
 * semantics without where_active / no_delta, which cannot be baked: VPD_ERR_ARG). */
vpd_status vpd_edit_bake(vpd_model *out, const vpd_decomp *d, const vpd_edit_set *set);

/* ---- measuring an edit (--measure) ------------------------------------------------------
 * On held-out windows (data.eval): the target's and the edited model's next-token
 * distributions; positions where any edited subcomponent fires (g_c > fire_threshold) are
 * "firing"; positions within ±window of a firing position in the same window (and not firing)
 * are "surrounding"; the rest "off-target". */
typedef struct {
    int64_t n_tokens;        /* positions to evaluate (rounded up to whole batches) */
    double fire_threshold;   /* default 0.1 (harvest's "fires") */
    int window;              /* default 20 */
    int token;               /* a token to follow (P(token) at firing positions), or -1 */
} vpd_edit_measure_opts;

typedef struct {
    int64_t n_pos, n_fire, n_surround, n_off;
    double p_next_before, p_next_after;   /* mean P(actual next token) at firing positions */
    double p_tok_before, p_tok_after;     /* mean P(opts.token) at firing positions (token >= 0) */
    double top1_tok_before, top1_tok_after; /* fraction of firing positions whose argmax is the token */
    double ce_fire_before, ce_fire_after; /* next-token CE at firing positions */
    double ce_all_before, ce_all_after;   /* next-token CE over all positions */
    double kl_fire, kl_surround, kl_off;  /* mean KL(target ‖ edited) per position */
    int token;
    int n_edits;
    int64_t fire_c[VPD_EDIT_MAX];         /* per edit: positions where its subcomponent fires */
    double a_fire[VPD_EDIT_MAX];          /* per edit: mean a_c = V_cᵀx (target's x) where it fires */
} vpd_edit_measure;

/* `edited` NULL: the run-time hook on d->target; else the baked model (same config). */
vpd_status vpd_edit_measure_run(vpd_run *r, const vpd_edit_set *set, vpd_model *edited,
                                const vpd_edit_measure_opts *o, vpd_edit_measure *res);
void vpd_edit_measure_print(const vpd_edit_measure *res, const vpd_edit_set *set, const vpd_decomp *d,
                            const vpd_tokenizer *tok, FILE *f);
/* JSON object text (malloc'd; free()) */
char *vpd_edit_measure_json(const vpd_edit_measure *res, const vpd_edit_set *set, const vpd_decomp *d,
                            const vpd_edit_measure_opts *o);

#endif
