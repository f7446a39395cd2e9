/* ResidMLP (spd experiments/resid_mlp/models.py, VPD_METHOD.md §7): a residual stream
 * of width d_embed written by a fixed embedding and read by a fixed unembedding,
 *   r_0 = x W_E                                  W_E [n_features, d_embed]
 *   r_{i+1} = r_i + mlp_out_i(ReLU(mlp_in_i(r_i)))   mlp_in [d_mlp, d_embed], mlp_out [d_embed, d_mlp]
 *   y = r_L W_U                                  W_U [d_embed, n_features]
 * no biases (in_bias = out_bias = false, as in every spd ResidMLP config).
 * Legend: B examples, F n_features, De d_embed, Dm d_mlp, L n_layers.
 *
 * Decomposable layers: "layers.<i>.mlp_in", "layers.<i>.mlp_out" in forward order.
 * W_E and W_U are marked trainable = false: spd trains its ResidMLP targets with
 * fixed_random_embedding (W_E random unit-norm rows, W_U = W_Eᵀ, neither trained).
 * Backward still accumulates their gradients into dparams (the flag tells the
 * optimizer to leave them alone), so every tensor's gradient can be checked. */
#include <math.h>
#include <string.h>

#include "models/models_internal.h"
#include "vpd/nn.h"

typedef struct {
    int B;           /* rows of the last forward */
    real *x;         /* [B, F] input copy */
    real *resid;     /* [L+1][B, De] residual stream before each layer and at the end */
    real *pre;       /* [L][B, Dm] mlp_in outputs (pre-ReLU) */
    real *act;       /* [L][B, Dm] ReLU outputs = mlp_out inputs */
    real *tmp;       /* [B, De] mlp_out output */
    real *dres;      /* [B, De] */
    real *dact;      /* [B, Dm] */
    real *dpre;      /* [B, Dm] */
} resid_impl;

/* parameter indices in PyTorch state_dict order: W_E, W_U, then layers.i.{mlp_in, mlp_out} */
enum { P_WE = 0, P_WU = 1 };
static inline int p_in(int i) { return 2 + 2 * i; }
static inline int p_out(int i) { return 3 + 2 * i; }

static vpd_status resid_check(const vpd_model_config *c) {
    if (c->n_features < 1 || c->d_embed < 1 || c->d_mlp < 1 || c->n_layers < 1)
        return vpd_error(VPD_ERR_CONFIG, "resid_mlp: n_features (%d), d_embed (%d), d_mlp (%d), n_layers (%d) must be >= 1",
                         c->n_features, c->d_embed, c->d_mlp, c->n_layers);
    return VPD_OK;
}
static int resid_count_params(const vpd_model_config *c) { return 2 + 2 * c->n_layers; }
static int resid_count_layers(const vpd_model_config *c) { return 2 * c->n_layers; }

static void resid_build_params(vpd_model *m) {
    int64_t F = m->cfg.n_features, De = m->cfg.d_embed, Dm = m->cfg.d_mlp;
    model_add_param(m, false, 2, (int64_t[]){F, De}, "W_E");
    model_add_param(m, false, 2, (int64_t[]){De, F}, "W_U");
    for (int i = 0; i < m->cfg.n_layers; i++) {
        model_add_param(m, true, 2, (int64_t[]){Dm, De}, "layers.%d.mlp_in.weight", i);
        model_add_param(m, true, 2, (int64_t[]){De, Dm}, "layers.%d.mlp_out.weight", i);
    }
}

static vpd_status resid_build_layers(vpd_model *m) {
    int De = m->cfg.d_embed, Dm = m->cfg.d_mlp;
    resid_impl *r = vpd_calloc(sizeof *r, "resid_mlp state");
    if (!r) return VPD_ERR_MEM;
    m->impl = r;
    for (int i = 0; i < m->cfg.n_layers; i++) {
        model_add_layer(m, De, Dm, false, model_pslice(m, m->params, p_in(i)), NULL, "layers.%d.mlp_in", i);
        model_add_layer(m, Dm, De, false, model_pslice(m, m->params, p_out(i)), NULL, "layers.%d.mlp_out", i);
    }
    return VPD_OK;
}

/* W_E: spd's fixed_random_embedding (standard normal rows scaled to unit norm), W_U = W_Eᵀ.
 * MLP weights: nn.Linear's default U(±1/√fan_in). */
static void resid_init(vpd_model *m, uint64_t seed) {
    int F = m->cfg.n_features, De = m->cfg.d_embed;
    model_init_normal(m, seed, P_WE, 1.0);
    real *WE = model_pslice(m, m->params, P_WE), *WU = model_pslice(m, m->params, P_WU);
    for (int f = 0; f < F; f++) {
        real *row = WE + (size_t)f * De;
        double nrm = sqrt(vpd_sumsq((size_t)De, row));
        vpd_scale((size_t)De, (real)(1.0 / nrm), row);
        for (int d = 0; d < De; d++) WU[(size_t)d * F + f] = row[d];
    }
    for (int i = 0; i < m->cfg.n_layers; i++) {
        model_init_uniform(m, seed, p_in(i), 1.0 / sqrt((double)De));
        model_init_uniform(m, seed, p_out(i), 1.0 / sqrt((double)m->cfg.d_mlp));
    }
}

static void resid_sync(vpd_model *m) { (void)m; /* no derived views */ }

static size_t resid_layout(vpd_model *m, int B, int S, vpd_arena *a) {
    (void)S;
    int F = m->cfg.n_features, De = m->cfg.d_embed, Dm = m->cfg.d_mlp, L = m->cfg.n_layers;
    model_carver c = {a, 0};
    resid_impl v = {0};
    v.x = MODEL_CARVE(&c, real, (size_t)B * F);
    v.resid = MODEL_CARVE(&c, real, (size_t)(L + 1) * B * De);
    v.pre = MODEL_CARVE(&c, real, (size_t)L * B * Dm);
    v.act = MODEL_CARVE(&c, real, (size_t)L * B * Dm);
    v.tmp = MODEL_CARVE(&c, real, (size_t)B * De);
    v.dres = MODEL_CARVE(&c, real, (size_t)B * De);
    v.dact = MODEL_CARVE(&c, real, (size_t)B * Dm);
    v.dpre = MODEL_CARVE(&c, real, (size_t)B * Dm);
    if (a) {
        v.B = 0;
        *(resid_impl *)m->impl = v;
    }
    return c.bytes;
}

/* per-layer slices use the reserved capacity m->B as stride, so a smaller batch still
 * finds each layer's buffer where the layout put it */
static inline real *slice(real *base, int i, int cap_B, int width) {
    return base + (size_t)i * cap_B * width;
}

static void resid_forward(vpd_model *m, const vpd_model_input *in, real *out, vpd_hook *hook, int from) {
    resid_impl *r = m->impl;
    int F = m->cfg.n_features, De = m->cfg.d_embed, Dm = m->cfg.d_mlp, L = m->cfg.n_layers;
    int cap = m->B;
    const real *WE = model_pslice(m, m->params, P_WE), *WU = model_pslice(m, m->params, P_WU);
    if (from < 0) {
        VPD_ASSERT(in->x, "resid_mlp forward: input features x are NULL");
        r->B = in->B;
        memcpy(r->x, in->x, sizeof(real) * (size_t)in->B * F);
        /* r_0[B, De] = x[B, F] W_E[F, De]: before layer 0, so reused by forward_from */
        vpd_gemm(false, false, r->B, De, F, 1, r->x, F, WE, De, 0, slice(r->resid, 0, cap, De), De);
        from = 0;
    }
    int B = r->B;
    for (int i = from / 2; i < L; i++) {
        real *ri = slice(r->resid, i, cap, De), *rn = slice(r->resid, i + 1, cap, De);
        real *pre = slice(r->pre, i, cap, Dm), *act = slice(r->act, i, cap, Dm);
        if (2 * i >= from) { /* from = 2i + 1 starts at mlp_out with this block's act kept */
            model_layer_forward(m, hook, 2 * i, ri, NULL, pre, B);
            relu_forward(act, pre, (size_t)B * Dm);
        }
        model_layer_forward(m, hook, 2 * i + 1, act, NULL, r->tmp, B);
        for (size_t k = 0; k < (size_t)B * De; k++) rn[k] = ri[k] + r->tmp[k];
    }
    /* y[B, F] = r_L[B, De] W_U[De, F] */
    vpd_gemm(false, false, B, F, De, 1, slice(r->resid, L, cap, De), De, WU, F, 0, out, F);
}

static void resid_backward(vpd_model *m, const real *dout, real *dparams, real *dinput, vpd_hook *hook, int to) {
    resid_impl *r = m->impl;
    int B = r->B, F = m->cfg.n_features, De = m->cfg.d_embed, Dm = m->cfg.d_mlp, L = m->cfg.n_layers;
    int cap = m->B;
    VPD_ASSERT(B > 0, "resid_mlp backward without a forward");
    const real *WE = model_pslice(m, m->params, P_WE), *WU = model_pslice(m, m->params, P_WU);
    real *dWE = model_pslice(m, dparams, P_WE), *dWU = model_pslice(m, dparams, P_WU);
    /* dr_L = dy W_Uᵀ ; dW_U += r_Lᵀ dy */
    vpd_gemm(false, true, B, De, F, 1, dout, F, WU, F, 0, r->dres, De);
    if (dWU) vpd_gemm(true, false, De, F, B, 1, slice(r->resid, L, cap, De), De, dout, F, 1, dWU, F);
    int lo = to < 0 ? 0 : to / 2;
    for (int i = L - 1; i >= lo; i--) {
        /* r_{i+1} = r_i + f(r_i): dres already holds the identity path; f's input
         * gradient is accumulated onto it once mlp_out's backward has used it. */
        real *ri = slice(r->resid, i, cap, De);
        real *pre = slice(r->pre, i, cap, Dm), *act = slice(r->act, i, cap, Dm);
        bool last = i == lo && to >= 0; /* input gradients of this block only flow below `to` */
        if (last && to == 2 * i + 1) {
            model_layer_backward(m, hook, 2 * i + 1, act, NULL, r->dres, NULL, NULL, NULL, B);
            return;
        }
        memset(r->dact, 0, sizeof(real) * (size_t)B * Dm);
        model_layer_backward(m, hook, 2 * i + 1, act, NULL, r->dres, r->dact, model_pslice(m, dparams, p_out(i)), NULL, B);
        memset(r->dpre, 0, sizeof(real) * (size_t)B * Dm);
        relu_backward(r->dpre, r->dact, pre, (size_t)B * Dm);
        model_layer_backward(m, hook, 2 * i, ri, NULL, r->dpre, last ? NULL : r->dres, model_pslice(m, dparams, p_in(i)),
                             NULL, B);
    }
    if (to >= 0) return;
    /* dx += dr_0 W_Eᵀ ; dW_E += xᵀ dr_0 */
    if (dinput) vpd_gemm(false, true, B, F, De, 1, r->dres, De, WE, De, 1, dinput, F);
    if (dWE) vpd_gemm(true, false, F, De, B, 1, r->x, F, r->dres, De, 1, dWE, De);
}

static void resid_destroy(vpd_model *m) {
    vpd_free(m->impl);
    m->impl = NULL;
}

const vpd_model_ops vpd_resid_mlp_ops = {
    .check = resid_check,
    .count_params = resid_count_params,
    .count_layers = resid_count_layers,
    .build_params = resid_build_params,
    .build_layers = resid_build_layers,
    .init = resid_init,
    .sync = resid_sync,
    .layout = resid_layout,
    .forward = resid_forward,
    .backward = resid_backward,
    .destroy = resid_destroy,
};
