/* vpd models: the kind-independent part of include/vpd/models.h — dispatch to the
 * per-kind operation tables (tms.c, resid_mlp.c, llama_simple_mlp.c), the parameter
 * and layer tables, the activation arena (vpd_model_reserve), parameter initialisation
 * from the counter-based RNG, and the helpers that send a decomposable layer through
 * a vpd_hook or through the target weights.
 *
 * Ownership: vpd_model_create allocates params, pinfo, layers and impl; reserve
 * allocates the activation arena; vpd_model_free releases all of them. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "models/models_internal.h"
#include "vpd/comm.h"
#include "vpd/nn.h"

static const vpd_model_ops *model_ops(vpd_model_kind k) {
    switch (k) {
    case VPD_MODEL_TMS: return &vpd_tms_ops;
    case VPD_MODEL_RESID_MLP: return &vpd_resid_mlp_ops;
    case VPD_MODEL_LLAMA: return &vpd_llama_ops;
    case VPD_MODEL_GPT2: return &vpd_gpt2_ops;
    case VPD_MODEL_GPT_NEOX: return &vpd_neox_ops;
    case VPD_MODEL_HF_LLAMA: return &vpd_hf_llama_ops;
    }
    return NULL;
}

const char *vpd_model_kind_name(vpd_model_kind k) {
    switch (k) {
    case VPD_MODEL_TMS: return "tms";
    case VPD_MODEL_RESID_MLP: return "resid_mlp";
    case VPD_MODEL_LLAMA: return "llama_simple_mlp";
    case VPD_MODEL_GPT2: return "gpt2";
    case VPD_MODEL_GPT_NEOX: return "gpt_neox";
    case VPD_MODEL_HF_LLAMA: return "llama/qwen2/qwen3";
    }
    return "unknown";
}

size_t vpd_model_out_size(const vpd_model *m, int B, int S) {
    if (vpd_model_is_lm(m->cfg.kind)) return (size_t)B * (size_t)S * (size_t)m->cfg.vocab_size;
    return (size_t)B * (size_t)m->cfg.n_features;
}

int vpd_model_out_dim(const vpd_model *m) {
    return vpd_model_is_lm(m->cfg.kind) ? m->cfg.vocab_size : m->cfg.n_features;
}

/* ---- tables ----------------------------------------------------------------------- */

int model_add_param(vpd_model *m, bool trainable, int ndim, const int64_t *shape, const char *fmt, ...) {
    int cap = model_ops(m->cfg.kind)->count_params(&m->cfg);
    VPD_ASSERT(m->n_pinfo < cap, "model_add_param: more than %d parameters", cap);
    VPD_ASSERT(ndim >= 1 && ndim <= 4, "model_add_param: ndim %d", ndim);
    vpd_param_info *p = &m->pinfo[m->n_pinfo];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    VPD_ASSERT(len > 0 && (size_t)len < sizeof p->name, "model_add_param: name too long");
    p->ndim = ndim;
    p->numel = 1;
    for (int d = 0; d < ndim; d++) {
        p->shape[d] = shape[d];
        p->numel *= (size_t)shape[d];
    }
    p->offset = m->n_params;
    p->trainable = trainable;
    m->n_params += p->numel;
    return m->n_pinfo++;
}

int model_add_layer(vpd_model *m, int d_in, int d_out, bool embedding, const real *W, const real *b,
                    const char *fmt, ...) {
    int cap = model_ops(m->cfg.kind)->count_layers(&m->cfg);
    VPD_ASSERT(m->n_layers < cap, "model_add_layer: more than %d layers", cap);
    vpd_layer_info *L = &m->layers[m->n_layers];
    memset(L, 0, sizeof *L);
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(L->name, sizeof L->name, fmt, ap);
    va_end(ap);
    VPD_ASSERT(len > 0 && (size_t)len < sizeof L->name, "model_add_layer: name too long");
    L->d_in = d_in;
    L->d_out = d_out;
    L->embedding = embedding;
    L->W = W;
    L->b = b;
    return m->n_layers++;
}

int vpd_model_find_layer(const vpd_model *m, const char *name) {
    for (int l = 0; l < m->n_layers; l++)
        if (!strcmp(m->layers[l].name, name)) return l;
    return -1;
}

int vpd_model_find_param(const vpd_model *m, const char *name) {
    for (int p = 0; p < m->n_pinfo; p++)
        if (!strcmp(m->pinfo[p].name, name)) return p;
    return -1;
}

/* ---- lifetime ----------------------------------------------------------------------- */

/* The tables and the parameter block: private (comm == MPI_COMM_NULL: vpd_calloc) or one
 * block per node shared by its ranks (vpd_node_shared_alloc, collective over comm). */
static vpd_status model_create(vpd_model *m, const vpd_model_config *cfg_in, MPI_Comm comm, int *node_rank) {
    vpd_model_config cfg_copy = *cfg_in; /* cfg_in may point into *m */
    const vpd_model_config *cfg = &cfg_copy;
    memset(m, 0, sizeof *m);
    const vpd_model_ops *ops = model_ops(cfg->kind);
    vpd_status s = VPD_ERR_MEM;
    if (!ops) s = vpd_error(VPD_ERR_CONFIG, "unknown model kind %d (expected tms, resid_mlp or llama_simple_mlp)", (int)cfg->kind);
    else s = ops->check(cfg);
    if (comm != MPI_COMM_NULL) s = vpd_all_agree(s, comm); /* the window below is collective */
    VPD_TRY(s);
    s = VPD_ERR_MEM;
    m->cfg = *cfg;
    int np = ops->count_params(cfg), nl = ops->count_layers(cfg);
    m->pinfo = vpd_calloc(sizeof(vpd_param_info) * (size_t)np, "model parameter table");
    m->layers = vpd_calloc(sizeof(vpd_layer_info) * (size_t)nl, "model layer table");
    if (comm != MPI_COMM_NULL && vpd_all_agree(m->pinfo && m->layers ? VPD_OK : VPD_ERR_MEM, comm) != VPD_OK) goto fail;
    if (!m->pinfo || !m->layers) goto fail;
    ops->build_params(m);
    VPD_ASSERT(m->n_pinfo == np, "%s: built %d of %d parameters", vpd_model_kind_name(cfg->kind), m->n_pinfo, np);
    if (comm != MPI_COMM_NULL) {
        void *p = NULL;
        vpd_node_shared *h = NULL;
        if ((s = vpd_node_shared_alloc(m->n_params * sizeof(real), comm, &p, node_rank, &h)) != VPD_OK) goto fail;
        m->params = p;
        m->node_shared = h;
    } else {
        m->params = vpd_calloc(m->n_params * sizeof(real), "model parameters");
    }
    if (!m->params) goto fail;
    if (ops->build_layers(m) != VPD_OK) goto fail;
    VPD_ASSERT(m->n_layers == nl, "%s: built %d of %d layers", vpd_model_kind_name(cfg->kind), m->n_layers, nl);
    vpd_debug("model %s: %zu parameters in %d tensors, %d decomposable layers", vpd_model_kind_name(cfg->kind),
              m->n_params, m->n_pinfo, m->n_layers);
    return VPD_OK;
fail:;
    if (s == VPD_ERR_MEM) vpd_error_context(s, "creating %s model", vpd_model_kind_name(cfg->kind));
    vpd_model_free(m);
    return s;
}

vpd_status vpd_model_create(vpd_model *m, const vpd_model_config *cfg) {
    return model_create(m, cfg, MPI_COMM_NULL, NULL);
}

vpd_status vpd_model_create_node_shared(vpd_model *m, const vpd_model_config *cfg, MPI_Comm comm, int *node_rank) {
    return model_create(m, cfg, comm, node_rank);
}

void vpd_model_free(vpd_model *m) {
    const vpd_model_ops *ops = model_ops(m->cfg.kind);
    if (ops && m->impl) ops->destroy(m);
    vpd_arena_free(&m->acts);
    vpd_arena_free(&m->pos_acts);
    if (m->node_shared) vpd_node_shared_free((vpd_node_shared **)&m->node_shared);
    else vpd_free(m->params);
    vpd_free(m->pinfo);
    vpd_free(m->layers);
    memset(m, 0, sizeof *m);
}

void vpd_model_sync(vpd_model *m) { model_ops(m->cfg.kind)->sync(m); }

void vpd_model_init_params(vpd_model *m, uint64_t seed) {
    model_ops(m->cfg.kind)->init(m, seed);
    vpd_model_sync(m);
}

void model_init_normal(vpd_model *m, uint64_t seed, int p, double std) {
    vpd_rng r = vpd_rng_make(seed, VPD_RNG_INIT, (uint32_t)p, 0);
    real *x = m->params + m->pinfo[p].offset;
    vpd_rng_fill_normal(&r, 0, m->pinfo[p].numel, x);
    vpd_scale(m->pinfo[p].numel, (real)std, x);
}

void model_init_uniform(vpd_model *m, uint64_t seed, int p, double a) {
    vpd_rng r = vpd_rng_make(seed, VPD_RNG_INIT, (uint32_t)p, 0);
    real *x = m->params + m->pinfo[p].offset;
    size_t n = m->pinfo[p].numel;
    vpd_rng_fill_uniform(&r, 0, n, x);
    for (size_t i = 0; i < n; i++) x[i] = (real)((2.0 * x[i] - 1.0) * a);
}

void model_init_const(vpd_model *m, int p, real v) {
    real *x = m->params + m->pinfo[p].offset;
    for (size_t i = 0; i < m->pinfo[p].numel; i++) x[i] = v;
}

/* Activations are sized once for the largest (B, S) the caller will use; a smaller
 * batch reuses the same buffers (every kernel takes its sizes explicitly). */
vpd_status vpd_model_reserve(vpd_model *m, int B, int S) {
    const char *kind = vpd_model_kind_name(m->cfg.kind);
    if (B < 1 || S < 1) return vpd_error(VPD_ERR_ARG, "%s: batch %d x positions %d: both must be >= 1", kind, B, S);
    if (!vpd_model_is_lm(m->cfg.kind) && S != 1)
        return vpd_error(VPD_ERR_ARG, "%s: toy models take one position per example (S = 1), got S = %d", kind, S);
    if (vpd_model_is_lm(m->cfg.kind) && S > vpd_model_context(m)) {
        if (m->max_context > m->cfg.n_ctx)
            return vpd_error(VPD_ERR_ARG, "%s: sequence length %d exceeds the allowed context %d (trained n_ctx %d)", kind,
                             S, m->max_context, m->cfg.n_ctx);
        return vpd_error(VPD_ERR_ARG, "%s: sequence length %d exceeds the model's n_ctx %d", kind, S, m->cfg.n_ctx);
    }
    if (m->acts.base && B <= m->B && S <= m->S) return VPD_OK;
    const vpd_model_ops *ops = model_ops(m->cfg.kind);
    size_t bytes = ops->layout(m, B, S, NULL);
    vpd_arena_free(&m->acts);
    m->B = m->S = 0;
    vpd_status s = vpd_arena_init(&m->acts, bytes, "model activations");
    if (s != VPD_OK) return vpd_error_context(s, "%s activations for batch %d x %d", kind, B, S);
    size_t carved = ops->layout(m, B, S, &m->acts);
    VPD_ASSERT(carved == bytes && m->acts.used == bytes, "%s layout: %zu planned, %zu carved", kind, bytes, m->acts.used);
    m->B = B;
    m->S = S;
    m->prefix_valid = -1; /* no forward in these buffers yet */
    vpd_debug("model %s: activations for %d x %d: %.1f MiB", kind, B, S, (double)bytes / 1048576.0);
    return VPD_OK;
}

int vpd_model_context(const vpd_model *m) { return m->max_context > m->cfg.n_ctx ? m->max_context : m->cfg.n_ctx; }

vpd_status vpd_model_extend_context(vpd_model *m, int n) {
    const char *kind = vpd_model_kind_name(m->cfg.kind);
    if (n <= m->cfg.n_ctx) {
        m->max_context = 0;
        return VPD_OK;
    }
    switch (m->cfg.kind) {
    case VPD_MODEL_LLAMA:
    case VPD_MODEL_HF_LLAMA:
    case VPD_MODEL_GPT_NEOX: /* rotary positions: computed for any position */
        m->max_context = n;
        return VPD_OK;
    case VPD_MODEL_GPT2:
        return vpd_error(VPD_ERR_ARG, "%s has learned position embeddings for %d positions: it cannot run %d; "
                                      "keep the prompt within n_ctx %d", kind, m->cfg.n_ctx, n, m->cfg.n_ctx);
    default:
        return vpd_error(VPD_ERR_ARG, "%s is not a language model: a longer context (%d) means nothing for it", kind, n);
    }
}

size_t vpd_model_activation_bytes(vpd_model *m, int B, int S) { return model_ops(m->cfg.kind)->layout(m, B, S, NULL); }

vpd_status vpd_model_set_attention_rows(vpd_model *m, int rows) {
    if (rows < 0) rows = 0;
    if (rows == m->attn_rows) return VPD_OK;
    m->attn_rows = rows;
    if (!m->acts.base) return VPD_OK;
    const int B = m->B, S = m->S;
    vpd_arena_free(&m->acts);
    m->B = m->S = 0;
    return vpd_model_reserve(m, B, S);
}

void vpd_model_forward(vpd_model *m, const vpd_model_input *in, real *out, vpd_hook *hook) {
    VPD_ASSERT(m->acts.base, "vpd_model_forward before vpd_model_reserve");
    VPD_ASSERT(in->B >= 1 && in->S >= 1 && in->B <= m->B && in->S <= m->S,
               "vpd_model_forward: input %d x %d exceeds the reserved %d x %d", in->B, in->S, m->B, m->S);
    model_ops(m->cfg.kind)->forward(m, in, out, hook, -1);
    m->prefix_valid = m->n_layers;
}

void vpd_model_forward_from(vpd_model *m, int from, real *out, vpd_hook *hook) {
    VPD_ASSERT(m->acts.base && m->prefix_valid >= 0, "vpd_model_forward_from before a vpd_model_forward");
    VPD_ASSERT(from >= 0 && from < m->n_layers, "vpd_model_forward_from: layer %d of %d", from, m->n_layers);
    if (from > m->prefix_valid) from = m->prefix_valid; /* an earlier call overwrote layers before `from` */
    model_ops(m->cfg.kind)->forward(m, NULL, out, hook, from);
    m->prefix_valid = from;
}

void vpd_model_backward_to(vpd_model *m, const real *dout, vpd_hook *hook, int to) {
    VPD_ASSERT(m->acts.base, "vpd_model_backward_to before vpd_model_reserve");
    VPD_ASSERT(to >= 0 && to < m->n_layers, "vpd_model_backward_to: layer %d of %d", to, m->n_layers);
    model_ops(m->cfg.kind)->backward(m, dout, NULL, NULL, hook, to);
}

void vpd_model_backward(vpd_model *m, const real *dout, real *dparams, real *dinput, vpd_hook *hook) {
    VPD_ASSERT(m->acts.base, "vpd_model_backward before vpd_model_reserve");
    model_ops(m->cfg.kind)->backward(m, dout, dparams, dinput, hook, -1);
}

size_t vpd_model_position_bytes(vpd_model *m, int n_copies, int S) {
    const vpd_model_ops *ops = model_ops(m->cfg.kind);
    if (!ops->position_layout) return 0;
    /* + attention_row_backward's per-thread work, (n + 1)·S values */
    return ops->position_layout(m, n_copies, S, NULL) + sizeof(real) * ((size_t)n_copies + 1) * (size_t)S;
}

vpd_status vpd_model_reserve_position(vpd_model *m, int n_copies) {
    const char *kind = vpd_model_kind_name(m->cfg.kind);
    const vpd_model_ops *ops = model_ops(m->cfg.kind);
    if (!ops->position_layout)
        return vpd_error(VPD_ERR_ARG, "%s has no row-restricted backward (vpd_model_backward_position): "
                                      "only llama_simple_mlp targets have it", kind);
    if (!m->acts.base) return vpd_error(VPD_ERR_ARG, "vpd_model_reserve_position before vpd_model_reserve");
    if (n_copies < 1) return vpd_error(VPD_ERR_ARG, "vpd_model_reserve_position: %d copies (>= 1)", n_copies);
    if (m->pos_acts.base && n_copies <= m->pos_n && m->S <= m->pos_S) return VPD_OK;
    const size_t bytes = ops->position_layout(m, n_copies, m->S, NULL);
    vpd_arena_free(&m->pos_acts);
    m->pos_n = m->pos_S = 0;
    vpd_status s = vpd_arena_init(&m->pos_acts, bytes, "row-restricted backward");
    if (s != VPD_OK) return vpd_error_context(s, "%s row-restricted backward for %d copies x %d positions", kind, n_copies, m->S);
    ops->position_layout(m, n_copies, m->S, &m->pos_acts);
    m->pos_n = n_copies;
    m->pos_S = m->S;
    return VPD_OK;
}

vpd_status vpd_model_backward_position(vpd_model *m, int t, int n_copies, const real *dout, const bool *kv_rows, int top,
                                       vpd_row_hook *hook) {
    const char *kind = vpd_model_kind_name(m->cfg.kind);
    const vpd_model_ops *ops = model_ops(m->cfg.kind);
    if (!ops->backward_position)
        return vpd_error(VPD_ERR_ARG, "%s has no row-restricted backward (vpd_model_backward_position): "
                                      "only llama_simple_mlp targets have it", kind);
    if (!m->acts.base || m->prefix_valid < 0) return vpd_error(VPD_ERR_ARG, "vpd_model_backward_position before a forward");
    if (hook && !hook->backward) return vpd_error(VPD_ERR_ARG, "vpd_model_backward_position: the hook has no backward");
    if (!m->pos_acts.base || n_copies < 1 || n_copies > m->pos_n || m->pos_S < m->S)
        return vpd_error(VPD_ERR_ARG, "vpd_model_backward_position: %d copies, %d reserved for %d positions "
                                      "(vpd_model_reserve_position after vpd_model_reserve)", n_copies, m->pos_n, m->pos_S);
    if (dout || top < 0 || top >= m->n_layers) top = m->n_layers - 1;
    return ops->backward_position(m, t, n_copies, dout, kv_rows, top, hook);
}

/* ---- decomposable layers through the hook or the target weights ---------------------- */

void model_layer_forward(const vpd_model *m, vpd_hook *hook, int l, const real *x, const int32_t *tok,
                         real *y, int N) {
    const vpd_layer_info *L = &m->layers[l];
    if (hook && hook->forward) {
        hook->forward(hook, l, L->embedding ? NULL : x, tok, y, N);
    } else if (L->embedding) {
        embedding_forward(y, tok, L->W, N, L->d_in, L->d_out);
    } else {
        linear_forward(y, x, L->W, L->b, N, L->d_in, L->d_out);
    }
}

void model_layer_backward(const vpd_model *m, vpd_hook *hook, int l, const real *x, const int32_t *tok,
                          const real *dy, real *dx, real *dW, real *db, int N) {
    const vpd_layer_info *L = &m->layers[l];
    if (hook && hook->backward) {
        hook->backward(hook, l, L->embedding ? NULL : x, tok, dy, L->embedding ? NULL : dx, N);
    } else if (L->embedding) {
        embedding_backward(dW, dy, tok, N, L->d_in, L->d_out);
    } else {
        linear_backward(dx, dW, db, dy, x, L->W, N, L->d_in, L->d_out);
    }
}
