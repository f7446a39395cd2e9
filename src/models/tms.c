/* TMS (toy model of superposition, spd experiments/tms/models.py, VPD_METHOD.md §7):
 *   h = linear1(x) = x W1ᵀ            W1 = linear1.weight [n_hidden, n_features], no bias
 *   y = ReLU(linear2(h)) = ReLU(h W1 + b)   linear2.weight = W1ᵀ (tied), b = linear2.bias
 * Legend: B examples, F n_features, Hd n_hidden.
 *
 * Both linears are decomposable layers ("linear1", "linear2"). The tied weight is one
 * parameter tensor; the layer table's W for linear2 is a transposed copy (W2 [F, Hd],
 * PyTorch layout) refreshed by vpd_model_sync, so a decomposition sees an ordinary
 * [d_out, d_in] matrix. Backward sums both uses' gradients into linear1.weight.
 * (spd's optional hidden layers, n_hidden_layers > 0, are not supported; config
 * loading rejects them.) */
#include <math.h>
#include <string.h>

#include "models/models_internal.h"
#include "vpd/nn.h"

typedef struct {
    real *W2;   /* [F, Hd] = W1ᵀ, owned (not an activation) */
    int B;      /* rows of the last forward */
    /* activations (arena) */
    real *x;    /* [B, F] copy of the input (linear1's input) */
    real *h;    /* [B, Hd] linear2's input */
    real *pre;  /* [B, F] pre-ReLU */
    real *dh;   /* [B, Hd] */
    real *dpre; /* [B, F] */
} tms_impl;

enum { P_W1 = 0, P_B2 = 1 };

static vpd_status tms_check(const vpd_model_config *c) {
    if (c->n_features < 1 || c->n_hidden < 1)
        return vpd_error(VPD_ERR_CONFIG, "tms: n_features (%d) and n_hidden (%d) must be >= 1", c->n_features, c->n_hidden);
    return VPD_OK;
}
static int tms_count_params(const vpd_model_config *c) { (void)c; return 2; }
static int tms_count_layers(const vpd_model_config *c) { (void)c; return 2; }

static void tms_build_params(vpd_model *m) {
    int64_t F = m->cfg.n_features, Hd = m->cfg.n_hidden;
    model_add_param(m, true, 2, (int64_t[]){Hd, F}, "linear1.weight");
    model_add_param(m, true, 1, (int64_t[]){F}, "linear2.bias");
}

static vpd_status tms_build_layers(vpd_model *m) {
    int F = m->cfg.n_features, Hd = m->cfg.n_hidden;
    tms_impl *t = vpd_calloc(sizeof *t, "tms state");
    if (!t) return VPD_ERR_MEM;
    m->impl = t;
    t->W2 = vpd_calloc(sizeof(real) * (size_t)F * Hd, "tms linear2 weight (transposed copy)");
    if (!t->W2) return VPD_ERR_MEM;
    model_add_layer(m, F, Hd, false, model_pslice(m, m->params, P_W1), NULL, "linear1");
    model_add_layer(m, Hd, F, false, t->W2, model_pslice(m, m->params, P_B2), "linear2");
    return VPD_OK;
}

/* nn.Linear's default: U(±1/√fan_in) for weight and bias; linear2's bias has fan_in Hd.
 * The bias is not zeroed (spd init_bias_to_zero = False). */
static void tms_init(vpd_model *m, uint64_t seed) {
    model_init_uniform(m, seed, P_W1, 1.0 / sqrt((double)m->cfg.n_features));
    model_init_uniform(m, seed, P_B2, 1.0 / sqrt((double)m->cfg.n_hidden));
}

static void tms_sync(vpd_model *m) {
    tms_impl *t = m->impl;
    int F = m->cfg.n_features, Hd = m->cfg.n_hidden;
    const real *W1 = model_pslice(m, m->params, P_W1);
    for (int j = 0; j < Hd; j++)
        for (int i = 0; i < F; i++) t->W2[(size_t)i * Hd + j] = W1[(size_t)j * F + i];
}

static size_t tms_layout(vpd_model *m, int B, int S, vpd_arena *a) {
    (void)S;
    int F = m->cfg.n_features, Hd = m->cfg.n_hidden;
    model_carver c = {a, 0};
    tms_impl v = {0};
    v.x = MODEL_CARVE(&c, real, (size_t)B * F);
    v.h = MODEL_CARVE(&c, real, (size_t)B * Hd);
    v.pre = MODEL_CARVE(&c, real, (size_t)B * F);
    v.dh = MODEL_CARVE(&c, real, (size_t)B * Hd);
    v.dpre = MODEL_CARVE(&c, real, (size_t)B * F);
    if (a) {
        tms_impl *t = m->impl;
        t->x = v.x; t->h = v.h; t->pre = v.pre; t->dh = v.dh; t->dpre = v.dpre;
        t->B = 0;
    }
    return c.bytes;
}

static void tms_forward(vpd_model *m, const vpd_model_input *in, real *out, vpd_hook *hook, int from) {
    tms_impl *t = m->impl;
    int F = m->cfg.n_features, Hd = m->cfg.n_hidden;
    if (from < 0) {
        VPD_ASSERT(in->x, "tms forward: input features x are NULL");
        t->B = in->B;
        memcpy(t->x, in->x, sizeof(real) * (size_t)in->B * F);
    }
    int B = t->B;
    if (from <= 0) model_layer_forward(m, hook, 0, t->x, NULL, t->h, B); /* h = linear1(x) */
    model_layer_forward(m, hook, 1, t->h, NULL, t->pre, B);              /* pre = linear2(h) */
    relu_forward(out, t->pre, (size_t)B * F);
    (void)Hd;
}

static void tms_backward(vpd_model *m, const real *dout, real *dparams, real *dinput, vpd_hook *hook, int to) {
    tms_impl *t = m->impl;
    int B = t->B, F = m->cfg.n_features, Hd = m->cfg.n_hidden;
    VPD_ASSERT(B > 0, "tms backward without a forward");
    real *dW1 = model_pslice(m, dparams, P_W1), *db2 = model_pslice(m, dparams, P_B2);
    memset(t->dpre, 0, sizeof(real) * (size_t)B * F);
    relu_backward(t->dpre, dout, t->pre, (size_t)B * F);
    memset(t->dh, 0, sizeof(real) * (size_t)B * Hd);
    /* linear2 through the hook or W2 = W1ᵀ; its weight gradient dW2 = dpreᵀ h [F, Hd] is
     * added transposed into linear1.weight: dW1 += hᵀ dpre [Hd, F]. */
    model_layer_backward(m, hook, 1, t->h, NULL, t->dpre, to == 1 ? NULL : t->dh, NULL, db2, B);
    if (to == 1) return;
    if (!(hook && hook->backward) && dW1) vpd_gemm(true, false, Hd, F, B, 1, t->h, Hd, t->dpre, F, 1, dW1, F);
    model_layer_backward(m, hook, 0, t->x, NULL, t->dh, dinput, dW1, NULL, B);
}

static void tms_destroy(vpd_model *m) {
    tms_impl *t = m->impl;
    vpd_free(t->W2);
    vpd_free(t);
    m->impl = NULL;
}

const vpd_model_ops vpd_tms_ops = {
    .check = tms_check,
    .count_params = tms_count_params,
    .count_layers = tms_count_layers,
    .build_params = tms_build_params,
    .build_layers = tms_build_layers,
    .init = tms_init,
    .sync = tms_sync,
    .layout = tms_layout,
    .forward = tms_forward,
    .backward = tms_backward,
    .destroy = tms_destroy,
};
