/* Internals shared by the src/models sources: the per-kind operation table that model.c
 * dispatches through, the table builders (parameters and decomposable layers) and the
 * layer helpers that route a decomposable layer through the hook or through the target
 * weights. Not a public header. */
#ifndef VPD_MODELS_INTERNAL_H
#define VPD_MODELS_INTERNAL_H

#include "vpd/models.h"

/* One row per model kind. Called by model.c only. */
typedef struct {
    /* number of parameter tensors and decomposable layers for this config (tables are
     * allocated from these counts before `build` fills them) */
    vpd_status (*check)(const vpd_model_config *cfg);
    int (*count_params)(const vpd_model_config *cfg);
    int (*count_layers)(const vpd_model_config *cfg);
    /* fill pinfo (via model_add_param) and, after params exist, the layer table */
    void (*build_params)(vpd_model *m);
    vpd_status (*build_layers)(vpd_model *m); /* may allocate impl (e.g. TMS's W2ᵀ) */
    void (*init)(vpd_model *m, uint64_t seed);
    void (*sync)(vpd_model *m);
    /* Activation buffers for capacity (B, S): with a == NULL only measure (return the
     * arena bytes needed, impl untouched); with an arena, carve them and point impl at
     * them. One function for both so the plan and the carving cannot disagree. */
    size_t (*layout)(vpd_model *m, int B, int S, vpd_arena *a);
    /* from < 0: the whole forward of `in`. from >= 0 (in NULL): recompute from decomposable
     * layer `from` on, reusing the input and every activation computed before that layer
     * by the last forward; nothing before layer `from` is written. */
    void (*forward)(vpd_model *m, const vpd_model_input *in, real *out, vpd_hook *hook, int from);
    /* to < 0: the whole backward (dparams, dinput may be given). to >= 0 (dparams, dinput
     * NULL): stop at layer `to`: hook->backward only for layers >= to, and dx = NULL for
     * the layers whose input gradient would only flow below `to`. */
    void (*backward)(vpd_model *m, const real *dout, real *dparams, real *dinput, vpd_hook *hook, int to);
    /* Optional (NULL: vpd_model_backward_position refuses the kind). Measure-or-carve of the
     * row-restricted backward's buffers for (n copies, S positions) into a (as layout); then
     * the backward itself (model.c checked n against the reservation; the kind checks B = 1
     * and t). */
    size_t (*position_layout)(vpd_model *m, int n, int S, vpd_arena *a);
    vpd_status (*backward_position)(vpd_model *m, int t, int n, const real *dout, const bool *kv_rows, int top,
                                    vpd_row_hook *hook);
    void (*destroy)(vpd_model *m); /* free impl */
} vpd_model_ops;

extern const vpd_model_ops vpd_tms_ops;
extern const vpd_model_ops vpd_resid_mlp_ops;
extern const vpd_model_ops vpd_llama_ops;
extern const vpd_model_ops vpd_gpt2_ops; /* hf_gpt2.c */
extern const vpd_model_ops vpd_neox_ops; /* hf_neox.c */
extern const vpd_model_ops vpd_hf_llama_ops;

/* Append a parameter to m->pinfo (capacity from count_params); offsets are assigned
 * contiguously in call order. Returns its index. `name` is printf-formatted. */
int model_add_param(vpd_model *m, bool trainable, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Append a decomposable layer (forward order). Returns its index. */
int model_add_layer(vpd_model *m, int d_in, int d_out, bool embedding, const real *W, const real *b,
                    const char *fmt, ...) __attribute__((format(printf, 7, 8)));
/* pointer to parameter p inside a flat block shaped like params (params or dparams) */
static inline real *model_pslice(const vpd_model *m, real *block, int p) {
    return block ? block + m->pinfo[p].offset : NULL;
}

/* Decomposable layer l: y[N, d_out] from x[N, d_in] (or tok[N]) through the hook if
 * given, else through the target W, b of the layer table. */
void model_layer_forward(const vpd_model *m, vpd_hook *hook, int l, const real *x, const int32_t *tok,
                         real *y, int N);
/* Backward of layer l: with a hook, hook->backward (dx accumulated, the hook trains what
 * it owns); without, dx += dy W and dW, db (pointers into dparams, may be NULL) += the
 * target gradients. */
void model_layer_backward(const vpd_model *m, vpd_hook *hook, int l, const real *x, const int32_t *tok,
                          const real *dy, real *dx, real *dW, real *db, int N);

/* Measure-or-carve helper for the layout functions above. */
typedef struct {
    vpd_arena *a; /* NULL: measure only */
    size_t bytes;
} model_carver;
static inline void *model_carve(model_carver *c, size_t bytes) {
    c->bytes += vpd_arena_size(bytes);
    return c->a ? vpd_arena_alloc(c->a, bytes) : NULL;
}
#define MODEL_CARVE(c, type, count) ((type *)model_carve((c), sizeof(type) * (size_t)(count)))

/* normal(0, std) / uniform(-a, a) fill of parameter p from the init stream of `seed`
 * (sub-stream = parameter index, so each tensor's values do not depend on the others) */
void model_init_normal(vpd_model *m, uint64_t seed, int p, double std);
void model_init_uniform(vpd_model *m, uint64_t seed, int p, double a);
void model_init_const(vpd_model *m, int p, real v);

#endif
