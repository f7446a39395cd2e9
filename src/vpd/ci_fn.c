/* The common part of the CI functions (VPD_METHOD.md §2): fn_type names, creation and
 * validation of the layer list, the table of spd-named parameter tensors laid out in
 * one flat block (and a gradient block of the same layout), the deterministic Philox
 * init, the activation workspace, and the ops table (ci.h vpd_ci_ops): one row per type
 * naming its create / init / forward / backward / set_seq_len — the layerwise kernels
 * (ci_layerwise.c), the dense network (ci_global.c) or the transformer (ci_transformer.c). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "vpd/ci.h"
#include "vpd/ci_internal.h"

#define CI_N_TYPES ((int)VPD_CI_GLOBAL_REVERSE_RESIDUAL + 1)
static const vpd_ci_ops ci_ops[CI_N_TYPES]; /* the table, at the end of this file */

const vpd_ci_ops *vpd_ci_ops_of(vpd_ci_type t) { return (int)t >= 0 && (int)t < CI_N_TYPES ? &ci_ops[t] : NULL; }

vpd_status vpd_ci_type_parse(const char *fn_type, vpd_ci_type *out) {
    for (int i = 0; fn_type && i < CI_N_TYPES; i++)
        if (strcmp(fn_type, ci_ops[i].name) == 0) {
            *out = (vpd_ci_type)i;
            return VPD_OK;
        }
    char list[256] = "";
    for (int i = 0; i < CI_N_TYPES; i++) {
        strcat(list, i == 0 ? "" : ", ");
        strcat(list, ci_ops[i].name);
    }
    return vpd_error(VPD_ERR_CONFIG, "ci_config.fn_type: unknown value '%s'; expected one of %s",
                     fn_type ? fn_type : "(null)", list);
}

const char *vpd_ci_type_name(vpd_ci_type t) {
    const vpd_ci_ops *o = vpd_ci_ops_of(t);
    return o ? o->name : "?";
}

bool vpd_ci_type_is_global(vpd_ci_type t) {
    const vpd_ci_ops *o = vpd_ci_ops_of(t);
    return o && o->global;
}

bool vpd_ci_type_takes_component_acts(vpd_ci_type t) {
    const vpd_ci_ops *o = vpd_ci_ops_of(t);
    return o && o->component_acts;
}

/* FNV-1a: names a tensor's init stream by its name, so a layer's CI init does not depend
 * on which other layers are decomposed. */
static uint32_t fnv1a32(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* Append the W and b of Linear k of one network to the tensor table. */
static vpd_status add_linear(vpd_ci_fn *ci, const char *prefix, int layer, int k, int C_par,
                             int in, int out, size_t *offset) {
    for (int isb = 0; isb < 2; isb++) {
        vpd_ci_param_info *t = &ci->tensors[ci->n_tensors];
        int n = snprintf(t->name, sizeof t->name, "%s.layers.%d.%s", prefix, 2 * k, isb ? "b" : "W");
        if (n < 0 || (size_t)n >= sizeof t->name)
            return vpd_error(VPD_ERR_CONFIG, "CI function: parameter name '%s.layers...' longer than %d characters",
                             prefix, VPD_CI_NAME_MAX - 1);
        t->ndim = 0;
        if (C_par > 0) t->shape[t->ndim++] = C_par; /* ParallelLinear: leading C */
        if (!isb) t->shape[t->ndim++] = in;
        t->shape[t->ndim++] = out;
        t->numel = 1;
        for (int d = 0; d < t->ndim; d++) t->numel *= (size_t)t->shape[d];
        t->offset = *offset;
        *offset += t->numel;
        t->layer = layer;
        t->linear = k;
        t->is_bias = isb;
        ci->n_tensors++;
    }
    return VPD_OK;
}

/* create for the MLP kinds (mlp, vector_mlp, shared_mlp, global_shared_mlp) */
static vpd_status ci_mlp_create(vpd_ci_fn **out, const vpd_ci_ops *ops, const vpd_ci_layer_spec *layers, int L,
                                const vpd_ci_args *args) {
    const vpd_ci_type type = ops->type;
    const char *const tname = ops->name;
    const int *hidden_dims = args->hidden;
    const int n_hidden = args->n_hidden;
    if (L < 1 || !layers)
        return vpd_error(VPD_ERR_CONFIG, "CI function '%s': no decomposed layers (module_info matched nothing)",
                         tname);
    if (n_hidden < 0 || n_hidden > VPD_CI_MAX_HIDDEN || (n_hidden > 0 && !hidden_dims))
        return vpd_error(VPD_ERR_CONFIG, "ci_config.hidden_dims: %d entries; expected 0..%d", n_hidden,
                         VPD_CI_MAX_HIDDEN);
    if (n_hidden == 0 && ops->parallel)
        return vpd_error(VPD_ERR_CONFIG, "ci_config.hidden_dims is empty; fn_type '%s' needs at least one hidden width",
                         tname);
    for (int k = 0; k < n_hidden; k++)
        if (hidden_dims[k] < 1)
            return vpd_error(VPD_ERR_CONFIG, "ci_config.hidden_dims[%d] = %d; expected a positive width", k,
                             hidden_dims[k]);
    const bool global = ops->global;
    for (int l = 0; l < L; l++) {
        const vpd_ci_layer_spec *s = &layers[l];
        if (!s->name || !s->name[0])
            return vpd_error(VPD_ERR_CONFIG, "CI function: decomposed layer %d has no name", l);
        if (strlen(s->name) >= 96)
            return vpd_error(VPD_ERR_CONFIG, "CI function: layer name '%s' is longer than 95 characters", s->name);
        if (s->C < 1)
            return vpd_error(VPD_ERR_CONFIG, "module_info: layer '%s' has C = %d; expected C >= 1", s->name, s->C);
        if (!ops->component_acts && s->d_in < 1)
            return vpd_error(VPD_ERR_SHAPE, "CI function: layer '%s' has CI input width %d; expected >= 1",
                             s->name, s->d_in);
        for (int m = 0; m < l; m++)
            if (strcmp(layers[m].name, s->name) == 0)
                return vpd_error(VPD_ERR_CONFIG, "CI function: layer '%s' is listed twice", s->name);
        if (global && l > 0 && strcmp(layers[l - 1].name, s->name) > 0)
            return vpd_error(VPD_ERR_CONFIG,
                             "CI function '%s': layers must be given in strcmp order of their names "
                             "(the concatenation order); '%s' comes after '%s'",
                             tname, s->name, layers[l - 1].name);
    }

    vpd_ci_fn *ci = vpd_calloc(sizeof *ci, "CI function");
    if (!ci) return VPD_ERR_MEM;
    ci->type = type;
    ci->ops = ops;
    ci->L = L;
    ci->S = 1; /* vpd_ci_set_seq_len */
    ci->n_hidden = n_hidden;
    for (int k = 0; k < n_hidden; k++) ci->hidden[k] = hidden_dims[k];
    ci->n_nets = global ? 1 : L;
    int n_lin = n_hidden + 1;
    ci->layers = vpd_calloc(sizeof *ci->layers * (size_t)L, "CI layers");
    ci->nets = vpd_calloc(sizeof *ci->nets * (size_t)ci->n_nets, "CI nets");
    ci->tensors = vpd_calloc(sizeof *ci->tensors * (size_t)(2 * n_lin * ci->n_nets), "CI tensor table");
    if (!ci->layers || !ci->nets || !ci->tensors) {
        vpd_ci_free(ci);
        return VPD_ERR_MEM;
    }
    for (int l = 0; l < L; l++) {
        vpd_ci_layer *ly = &ci->layers[l];
        snprintf(ly->name, sizeof ly->name, "%s", layers[l].name);
        ly->C = layers[l].C;
        ly->d_in = ops->component_acts ? layers[l].C : layers[l].d_in;
        /* offsets into the concatenations exist only for the global function */
        ly->in_off = global ? ci->D_total : 0;
        ly->c_off = global ? ci->C_total : 0;
        ci->D_total += ly->d_in;
        ci->C_total += ly->C;
    }

    /* tensor table, flat offsets and per-row workspace offsets */
    size_t offset = 0, ws_row = 0, scratch = 1;
    for (int n = 0; n < ci->n_nets; n++) {
        vpd_ci_net *net = &ci->nets[n];
        net->first_tensor = ci->n_tensors;
        char prefix[VPD_CI_NAME_MAX];
        int in_w, out_w, C_par = 0;
        if (global) {
            snprintf(prefix, sizeof prefix, "ci_fn._global_ci_fn");
            in_w = ci->D_total;
            out_w = ci->C_total;
        } else {
            /* spd stores layerwise CI fns in a ModuleDict keyed by the name with '.' -> '-' */
            /* names were checked to be < 96 characters, so the prefix fits */
            int len = snprintf(prefix, sizeof prefix, "ci_fn._ci_fns.");
            for (const char *p = ci->layers[n].name; *p && len < (int)sizeof prefix - 1; p++)
                prefix[len++] = *p == '.' ? '-' : *p;
            prefix[len] = 0;
            in_w = ops->component_acts ? 1 : ci->layers[n].d_in;
            out_w = ops->parallel ? 1 : ci->layers[n].C;
            if (ops->parallel) C_par = ci->layers[n].C;
        }
        for (int k = 0; k < n_lin; k++) {
            int in = k == 0 ? in_w : hidden_dims[k - 1];
            int o = k == n_hidden ? out_w : hidden_dims[k];
            vpd_status st = add_linear(ci, prefix, global ? -1 : n, k, C_par, in, o, &offset);
            if (st != VPD_OK) {
                vpd_ci_free(ci);
                return st;
            }
        }
        for (int k = 0; k < n_hidden; k++) {
            int w = hidden_dims[k] * (C_par > 0 ? C_par : 1);
            net->width[k] = w;
            net->ws_pre[k] = ws_row;
            ws_row += (size_t)w;
            net->ws_post[k] = ws_row;
            ws_row += (size_t)w;
            if ((size_t)w > scratch) scratch = (size_t)w;
        }
    }
    ci->n_params = offset;
    ci->ws_row = ws_row;
    ci->ws_scratch = scratch;
    ci->params = vpd_calloc(sizeof(real) * (offset ? offset : 1), "CI parameters");
    ci->grads = vpd_calloc(sizeof(real) * (offset ? offset : 1), "CI gradients");
    if (!ci->params || !ci->grads) {
        vpd_ci_free(ci);
        return VPD_ERR_MEM;
    }
    *out = ci;
    return VPD_OK;
}

void vpd_ci_free(vpd_ci_fn *ci) {
    if (!ci) return;
    vpd_free(ci->layers);
    vpd_free(ci->nets);
    vpd_free(ci->tensors);
    vpd_free(ci->params);
    vpd_free(ci->grads);
    vpd_free(ci->ws);
    vpd_free(ci->tf); /* transformer state: one allocation */
    vpd_free(ci);
}

void vpd_ci_init(vpd_ci_fn *ci, uint64_t seed) { ci->ops->init(ci, seed); }

/* init of the MLP kinds */
static void ci_mlp_init(vpd_ci_fn *ci, uint64_t seed) {
    for (int i = 0; i < ci->n_tensors; i++) {
        const vpd_ci_param_info *t = &ci->tensors[i];
        real *p = ci->params + t->offset;
        if (t->is_bias) {
            memset(p, 0, sizeof(real) * t->numel);
            continue;
        }
        /* fan_in is the Linear's input width (the second-to-last dim); hidden Linears feed
         * a GELU and get Kaiming's ReLU gain (variance 2/fan_in), the final one gain 1 */
        double fan_in = (double)t->shape[t->ndim - 2];
        double var = (t->linear < ci->n_hidden ? 2.0 : 1.0) / fan_in;
        vpd_rng r = vpd_rng_make(seed, VPD_RNG_INIT, fnv1a32(t->name), VPD_CI_RNG_TAG);
        vpd_rng_fill_normal(&r, 0, t->numel, p);
        vpd_scale(t->numel, (real)sqrt(var), p);
    }
}

size_t vpd_ci_workspace_bytes(const vpd_ci_fn *ci, int N) {
    return sizeof(real) * (ci->ws_row + 2 * ci->ws_scratch) * (size_t)(N > 0 ? N : 0);
}

vpd_status vpd_ci_reserve(vpd_ci_fn *ci, int N) {
    if (N < 1) return vpd_error(VPD_ERR_SHAPE, "CI function: reserve for %d rows; expected >= 1", N);
    if (N <= ci->N_reserved) return VPD_OK;
    vpd_free(ci->ws);
    ci->N_reserved = 0;
    ci->N_last = 0;
    ci->ws = vpd_malloc(vpd_ci_workspace_bytes(ci, N), "CI activation workspace");
    if (!ci->ws) return VPD_ERR_MEM;
    ci->N_reserved = N;
    return VPD_OK;
}

void vpd_ci_zero_grad(vpd_ci_fn *ci) { memset(ci->grads, 0, sizeof(real) * ci->n_params); }

vpd_status vpd_ci_forward(vpd_ci_fn *ci, real *const *z, const real *const *in, int N) {
    if (N < 1 || N > ci->N_reserved)
        return vpd_error(VPD_ERR_SHAPE,
                         "CI function: forward on %d rows but the workspace holds %d (call vpd_ci_reserve)",
                         N, ci->N_reserved);
    VPD_ASSERT(z && in, "vpd_ci_forward: NULL z or input array");
    for (int l = 0; l < ci->L; l++)
        VPD_ASSERT(z[l] && in[l], "vpd_ci_forward: NULL z or input for layer %s", ci->layers[l].name);
    VPD_TRY(ci->ops->forward(ci, z, in, N));
    ci->N_last = N;
    return VPD_OK;
}

vpd_status vpd_ci_backward(vpd_ci_fn *ci, real *const *din, const real *const *dz,
                           const real *const *in, int N) {
    if (N != ci->N_last)
        return vpd_error(VPD_ERR_SHAPE, "CI function: backward on %d rows after a forward on %d", N, ci->N_last);
    VPD_ASSERT(dz && in, "vpd_ci_backward: NULL dz or input array");
    ci->ops->backward(ci, din, dz, in, N);
    return VPD_OK;
}

vpd_tensor vpd_ci_param_view(const vpd_ci_fn *ci, int i) {
    const vpd_ci_param_info *t = &ci->tensors[i];
    return vpd_tensor_view(ci->params + t->offset, t->name, t->ndim, t->shape);
}

vpd_tensor vpd_ci_grad_view(const vpd_ci_fn *ci, int i) {
    const vpd_ci_param_info *t = &ci->tensors[i];
    return vpd_tensor_view(ci->grads + t->offset, t->name, t->ndim, t->shape);
}

int vpd_ci_find_tensor(const vpd_ci_fn *ci, const char *name) {
    for (int i = 0; i < ci->n_tensors; i++)
        if (strcmp(ci->tensors[i].name, name) == 0) return i;
    return -1;
}

vpd_status vpd_ci_set_seq_len(vpd_ci_fn *ci, int S) {
    if (S < 1) return vpd_error(VPD_ERR_SHAPE, "CI function: sequence length %d; expected >= 1", S);
    if (ci->ops->set_seq_len) return ci->ops->set_seq_len(ci, S);
    ci->S = S; /* only recorded: this kind treats every row on its own */
    return VPD_OK;
}

/* ---- the ops table ---------------------------------------------------------------------- */

vpd_status vpd_ci_create_from(vpd_ci_fn **out, vpd_ci_type type, const vpd_ci_layer_spec *layers, int L,
                              const vpd_ci_args *args) {
    *out = NULL;
    const vpd_ci_ops *ops = vpd_ci_ops_of(type);
    if (!ops) return vpd_error(VPD_ERR_CONFIG, "ci_config.fn_type: invalid type %d", (int)type);
    static const vpd_ci_args none = {0};
    return ops->create(out, ops, layers, L, args ? args : &none);
}

vpd_status vpd_ci_create(vpd_ci_fn **out, vpd_ci_type type, const vpd_ci_layer_spec *layers, int L,
                         const int *hidden_dims, int n_hidden) {
    return vpd_ci_create_from(out, type, layers, L, &(vpd_ci_args){.hidden = hidden_dims, .n_hidden = n_hidden});
}

static vpd_status ci_tf_create(vpd_ci_fn **out, const vpd_ci_ops *ops, const vpd_ci_layer_spec *layers, int L,
                               const vpd_ci_args *args) {
    if (!args->transformer) /* needs its config */
        return vpd_error(VPD_ERR_CONFIG,
                         "ci_config.fn_type '%s' is not implemented by vpd_ci_create: it needs "
                         "simple_transformer_ci_cfg; call vpd_ci_create_transformer", ops->name);
    return vpd_ci_create_transformer(out, layers, L, args->transformer);
}

static vpd_status ci_unavailable_create(vpd_ci_fn **out, const vpd_ci_ops *ops, const vpd_ci_layer_spec *layers, int L,
                                        const vpd_ci_args *args) {
    (void)out, (void)layers, (void)L, (void)args;
    return vpd_error(VPD_ERR_CONFIG,
                     "ci_config.fn_type '%s' is not implemented in this build; use mlp, "
                     "vector_mlp, shared_mlp or global_shared_mlp", ops->name);
}

/* global_shared_mlp: one dense network over the concatenation of every layer's input */
static vpd_status ci_global_forward(vpd_ci_fn *ci, real *const *z, const real *const *in, int N) {
    ci_dense_forward(ci, &ci->nets[0], ci->layers, ci->L, ci->D_total, ci->C_total, z, in, N);
    return VPD_OK;
}
static void ci_global_backward(vpd_ci_fn *ci, real *const *din, const real *const *dz, const real *const *in, int N) {
    ci_dense_backward(ci, &ci->nets[0], ci->layers, ci->L, ci->D_total, ci->C_total, din, dz, in, N);
}

static const vpd_ci_ops ci_ops[CI_N_TYPES] = {
    /* type, fn_type, global, component_acts, parallel, create, init, forward, backward, set_seq_len */
    {VPD_CI_MLP, "mlp", false, true, true, ci_mlp_create, ci_mlp_init, ci_parallel_forward, ci_parallel_backward, NULL},
    {VPD_CI_VECTOR_MLP, "vector_mlp", false, false, true, ci_mlp_create, ci_mlp_init, ci_parallel_forward,
     ci_parallel_backward, NULL},
    {VPD_CI_SHARED_MLP, "shared_mlp", false, false, false, ci_mlp_create, ci_mlp_init, ci_shared_forward,
     ci_shared_backward, NULL},
    {VPD_CI_GLOBAL_SHARED_MLP, "global_shared_mlp", true, false, false, ci_mlp_create, ci_mlp_init, ci_global_forward,
     ci_global_backward, NULL},
    {VPD_CI_GLOBAL_SHARED_TRANSFORMER, "global_shared_transformer", true, false, false, ci_tf_create, ci_tf_init,
     ci_tf_forward, ci_tf_backward, ci_tf_set_seq_len},
    {VPD_CI_GLOBAL_REVERSE_RESIDUAL, "global_reverse_residual", true, false, false, ci_unavailable_create, NULL, NULL,
     NULL, NULL},
};
