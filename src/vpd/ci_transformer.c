/* The global CI function global_shared_transformer (VPD_METHOD.md §2; spd
 * GlobalSharedTransformerCiFn): every decomposed layer's CI input is RMS-normalised over
 * its own width (no weight, ε = FLT_EPSILON as spd's F.rms_norm in float32), the
 * normalised inputs are (virtually) concatenated in strcmp order of the layer names and
 * projected to d_model, n_blocks pre-norm transformer blocks attend over the S positions
 * of each sequence (bidirectional, RoPE on q and k), and out_head maps the residual
 * stream to ΣC raw CI values, split per layer. Toy models use S = 1.
 *
 * Like ci_global.c, neither concatenation is materialised: in_proj is applied as a sum
 * over layers of (normalised x_l) times its row block of W_in, and out_head writes each
 * layer's z from its column block of W_out, so the caller's per-layer buffers are read
 * and written in place. Layouts are spd's: its Linear (in_proj, block MLPs, out_head)
 * stores W [in, out] (y = x W + b), torch nn.Linear (q, k, v, out_proj) W [out, in].
 *
 * Workspace (ci->ws, sized by ci_fn.c's reserve from ci->ws_row, which this file sets
 * per S; ws_scratch = 0): per row, the residual stream before every block and after the
 * last, per-layer rstd of the inputs, and per block everything backward reads (rstd and
 * output of both norms, q and k after RoPE, v, the attention probabilities [B,H,S,S] =
 * H·S values per row (from VPD_ATTN_ROWS_MIN_S positions on only their log-sum-exp, H per
 * row: attention_rows_forward/backward recompute them, memory linear in S), the attention output before out_proj, the mid-block residual, the
 * MLP pre/post-GELU activations), then the backward scratch. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "vpd/ci_internal.h"
#include "vpd/nn.h"

#define TF_PREFIX "ci_fn._global_ci_fn"

/* per-row element offsets of one block's saved activations */
typedef struct {
    size_t rstd1, a1, q, k, v, att, o, xmid, rstd2, a2;
    size_t pre[VPD_CI_MAX_HIDDEN], post[VPD_CI_MAX_HIDDEN];
} tf_block_ws;

struct vpd_ci_tf {
    vpd_ci_transformer_cfg cfg;
    int dh;     /* d_model / n_heads */
    int max_w;  /* max(d_model, mlp hidden widths): MLP backward ping-pong width */
    int max_dl; /* widest layer input */
    /* tensor indices: in W, b = t_in, t_in+1; out W, b = t_out, t_out+1; block i:
     * q, k, v, out = t_blk0 + i*t_per_blk + 0..3, MLP Linear k W, b = + 4 + 2k, + 5 + 2k */
    int t_in, t_out, t_blk0, t_per_blk;
    /* per-row offsets (set by tf_layout for the current S) */
    size_t rstd_in, x0; /* rstd_in: L values; residual before block i at x0 + i*d_model */
    size_t dxr, da, dout, dq, dk, dv, sh1, sh2, su1, su2; /* backward / in_proj scratch */
    tf_block_ws blk[]; /* [n_blocks] */
};

/* a workspace region: per-row offset scaled by the reserved rows */
static real *ws_at(const vpd_ci_fn *ci, size_t off) { return ci->ws + off * (size_t)ci->N_reserved; }
static real *P(const vpd_ci_fn *ci, int t) { return ci->params + ci->tensors[t].offset; }
static real *G(const vpd_ci_fn *ci, int t) { return ci->grads + ci->tensors[t].offset; }

/* FNV-1a of the tensor name: the same per-tensor init stream rule as ci_fn.c */
static uint32_t fnv1a32(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* per-row workspace layout for the current S; sets ci->ws_row (ws_scratch stays 0) */
static void tf_layout(vpd_ci_fn *ci) {
    struct vpd_ci_tf *tf = ci->tf;
    const vpd_ci_transformer_cfg *c = &tf->cfg;
    size_t D = (size_t)c->d_model, off = 0;
    int S = ci->S > 0 ? ci->S : 1;
    tf->rstd_in = off;
    off += (size_t)ci->L;
    tf->x0 = off;
    off += D * (size_t)(c->n_blocks + 1);
    for (int i = 0; i < c->n_blocks; i++) {
        tf_block_ws *b = &tf->blk[i];
        b->rstd1 = off, off += 1;
        b->a1 = off, off += D;
        b->q = off, off += D;
        b->k = off, off += D;
        b->v = off, off += D;
        /* [B,H,S,S] = N·H·S; from VPD_ATTN_ROWS_MIN_S on the row-block kernels' lse [B,H,S] = N·H */
        b->att = off, off += (size_t)c->n_heads * (S >= VPD_ATTN_ROWS_MIN_S ? 1 : (size_t)S);
        b->o = off, off += D;
        b->xmid = off, off += D;
        b->rstd2 = off, off += 1;
        b->a2 = off, off += D;
        for (int k = 0; k < c->n_mlp_hidden; k++) {
            b->pre[k] = off, off += (size_t)c->mlp_hidden[k];
            b->post[k] = off, off += (size_t)c->mlp_hidden[k];
        }
    }
    size_t *sc[] = {&tf->dxr, &tf->da, &tf->dout, &tf->dq, &tf->dk, &tf->dv};
    for (size_t j = 0; j < sizeof sc / sizeof sc[0]; j++) *sc[j] = off, off += D;
    tf->sh1 = off, off += (size_t)tf->max_w;
    tf->sh2 = off, off += (size_t)tf->max_w;
    tf->su1 = off, off += (size_t)tf->max_dl;
    tf->su2 = off, off += (size_t)tf->max_dl;
    ci->ws_row = off;
    ci->ws_scratch = 0;
}

static vpd_status tf_check_cfg(const vpd_ci_transformer_cfg *c) {
    const char *k = "ci_config.simple_transformer_ci_cfg";
    if (c->d_model < 1) return vpd_error(VPD_ERR_CONFIG, "%s.d_model = %d; expected a positive width", k, c->d_model);
    if (c->n_blocks < 1) return vpd_error(VPD_ERR_CONFIG, "%s.n_blocks = %d; expected >= 1", k, c->n_blocks);
    if (c->n_heads < 1 || c->d_model % c->n_heads != 0)
        return vpd_error(VPD_ERR_CONFIG, "%s.attn_config.n_heads = %d; expected a positive divisor of d_model = %d",
                         k, c->n_heads, c->d_model);
    if ((c->d_model / c->n_heads) % 2 != 0)
        return vpd_error(VPD_ERR_CONFIG, "%s: d_head = d_model/n_heads = %d/%d = %d must be even for RoPE", k,
                         c->d_model, c->n_heads, c->d_model / c->n_heads);
    if (c->n_mlp_hidden < 0 || c->n_mlp_hidden > VPD_CI_MAX_HIDDEN)
        return vpd_error(VPD_ERR_CONFIG, "%s.mlp_hidden_dim: %d entries; expected 0..%d", k, c->n_mlp_hidden,
                         VPD_CI_MAX_HIDDEN);
    for (int j = 0; j < c->n_mlp_hidden; j++)
        if (c->mlp_hidden[j] < 1)
            return vpd_error(VPD_ERR_CONFIG, "%s.mlp_hidden_dim[%d] = %d; expected a positive width", k, j,
                             c->mlp_hidden[j]);
    if (c->max_len < 1) return vpd_error(VPD_ERR_CONFIG, "%s.attn_config.max_len = %d; expected >= 1", k, c->max_len);
    if (!(c->rope_base > 0) || !isfinite(c->rope_base))
        return vpd_error(VPD_ERR_CONFIG, "%s.attn_config.rope_base = %g; expected a positive number", k, c->rope_base);
    return VPD_OK;
}

/* the layer checks of vpd_ci_create, for a global function */
static vpd_status tf_check_layers(const vpd_ci_layer_spec *layers, int L) {
    if (L < 1 || !layers)
        return vpd_error(VPD_ERR_CONFIG,
                         "CI function 'global_shared_transformer': no decomposed layers (module_info matched nothing)");
    for (int l = 0; l < L; l++) {
        const vpd_ci_layer_spec *s = &layers[l];
        if (!s->name || !s->name[0]) return vpd_error(VPD_ERR_CONFIG, "CI function: decomposed layer %d has no name", l);
        if (strlen(s->name) >= 96)
            return vpd_error(VPD_ERR_CONFIG, "CI function: layer name '%s' is longer than 95 characters", s->name);
        if (s->C < 1)
            return vpd_error(VPD_ERR_CONFIG, "module_info: layer '%s' has C = %d; expected C >= 1", s->name, s->C);
        if (s->d_in < 1)
            return vpd_error(VPD_ERR_SHAPE, "CI function: layer '%s' has CI input width %d; expected >= 1", s->name,
                             s->d_in);
        for (int m = 0; m < l; m++)
            if (strcmp(layers[m].name, s->name) == 0)
                return vpd_error(VPD_ERR_CONFIG, "CI function: layer '%s' is listed twice", s->name);
        if (l > 0 && strcmp(layers[l - 1].name, s->name) > 0)
            return vpd_error(VPD_ERR_CONFIG,
                             "CI function 'global_shared_transformer': layers must be given in strcmp order of "
                             "their names (the concatenation order); '%s' comes after '%s'",
                             s->name, layers[l - 1].name);
    }
    return VPD_OK;
}

/* append one tensor (ndim 1 or 2) to the table */
static void tf_add(vpd_ci_fn *ci, const char *suffix, int d0, int d1, bool is_bias, int linear, size_t *offset) {
    vpd_ci_param_info *t = &ci->tensors[ci->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s.%s", TF_PREFIX, suffix);
    t->ndim = d1 > 0 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1 > 0 ? d1 : 0;
    t->numel = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
    t->offset = *offset;
    *offset += t->numel;
    t->layer = -1;
    t->linear = linear;
    t->is_bias = is_bias;
}

vpd_status vpd_ci_create_transformer(vpd_ci_fn **out, const vpd_ci_layer_spec *layers, int L,
                                     const vpd_ci_transformer_cfg *cfg) {
    *out = NULL;
    if (!cfg) return vpd_error(VPD_ERR_CONFIG, "ci_config.simple_transformer_ci_cfg is missing (fn_type global_shared_transformer)");
    VPD_TRY(tf_check_cfg(cfg));
    VPD_TRY(tf_check_layers(layers, L));
    const int D = cfg->d_model, nb = cfg->n_blocks, nh = cfg->n_mlp_hidden;

    vpd_ci_fn *ci = vpd_calloc(sizeof *ci, "CI function");
    if (!ci) return VPD_ERR_MEM;
    ci->type = VPD_CI_GLOBAL_SHARED_TRANSFORMER;
    ci->ops = vpd_ci_ops_of(ci->type);
    ci->L = L;
    ci->S = 1;
    int per_blk = 4 + 2 * (nh + 1);
    ci->layers = vpd_calloc(sizeof *ci->layers * (size_t)L, "CI layers");
    ci->tensors = vpd_calloc(sizeof *ci->tensors * (size_t)(4 + nb * per_blk), "CI tensor table");
    ci->tf = vpd_calloc(sizeof *ci->tf + sizeof(tf_block_ws) * (size_t)nb, "CI transformer state");
    if (!ci->layers || !ci->tensors || !ci->tf) {
        vpd_ci_free(ci);
        return VPD_ERR_MEM;
    }
    struct vpd_ci_tf *tf = ci->tf;
    tf->cfg = *cfg;
    tf->dh = D / cfg->n_heads;
    tf->max_w = D;
    for (int k = 0; k < nh; k++)
        if (cfg->mlp_hidden[k] > tf->max_w) tf->max_w = cfg->mlp_hidden[k];
    for (int l = 0; l < L; l++) {
        vpd_ci_layer *ly = &ci->layers[l];
        snprintf(ly->name, sizeof ly->name, "%s", layers[l].name);
        ly->C = layers[l].C;
        ly->d_in = layers[l].d_in;
        ly->in_off = ci->D_total;
        ly->c_off = ci->C_total;
        ci->D_total += ly->d_in;
        ci->C_total += ly->C;
        if (ly->d_in > tf->max_dl) tf->max_dl = ly->d_in;
    }

    /* spd's module order: _input_projector, _output_head, _blocks */
    size_t offset = 0;
    char nm[96]; /* suffix after TF_PREFIX: fits VPD_CI_NAME_MAX with room */
    tf->t_in = ci->n_tensors;
    tf_add(ci, "_input_projector.W", ci->D_total, D, false, 0, &offset);
    tf_add(ci, "_input_projector.b", D, 0, true, 0, &offset);
    tf->t_out = ci->n_tensors;
    tf_add(ci, "_output_head.W", D, ci->C_total, false, 0, &offset);
    tf_add(ci, "_output_head.b", ci->C_total, 0, true, 0, &offset);
    tf->t_blk0 = ci->n_tensors;
    tf->t_per_blk = per_blk;
    static const char *const proj[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    for (int i = 0; i < nb; i++) {
        for (int j = 0; j < 4; j++) {
            snprintf(nm, sizeof nm, "_blocks.%d.attn.%s.weight", i, proj[j]);
            tf_add(ci, nm, D, D, false, -1, &offset);
        }
        for (int k = 0; k <= nh; k++) {
            int in = k == 0 ? D : cfg->mlp_hidden[k - 1], o = k == nh ? D : cfg->mlp_hidden[k];
            snprintf(nm, sizeof nm, "_blocks.%d.mlp.%d.W", i, 2 * k);
            tf_add(ci, nm, in, o, false, k, &offset);
            snprintf(nm, sizeof nm, "_blocks.%d.mlp.%d.b", i, 2 * k);
            tf_add(ci, nm, o, 0, true, k, &offset);
        }
    }
    ci->n_params = offset;
    ci->params = vpd_calloc(sizeof(real) * offset, "CI parameters");
    ci->grads = vpd_calloc(sizeof(real) * offset, "CI gradients");
    if (!ci->params || !ci->grads) {
        vpd_ci_free(ci);
        return VPD_ERR_MEM;
    }
    tf_layout(ci);
    *out = ci;
    return VPD_OK;
}

/* the row's set_seq_len (vpd_ci_set_seq_len checked S >= 1) */
vpd_status ci_tf_set_seq_len(vpd_ci_fn *ci, int S) {
    if (S > ci->tf->cfg.max_len)
        return vpd_error(VPD_ERR_SHAPE,
                         "CI function global_shared_transformer: sequence length %d exceeds "
                         "simple_transformer_ci_cfg.attn_config.max_len = %d",
                         S, ci->tf->cfg.max_len);
    if (S == ci->S) return VPD_OK;
    ci->S = S;
    tf_layout(ci);
    /* the per-row size changed (attention probabilities are H·S per row): re-reserve */
    int N = ci->N_reserved;
    ci->N_reserved = 0;
    ci->N_last = 0;
    return N > 0 ? vpd_ci_reserve(ci, N) : VPD_OK;
}

void ci_tf_init(vpd_ci_fn *ci, uint64_t seed) {
    const struct vpd_ci_tf *tf = ci->tf;
    for (int i = 0; i < ci->n_tensors; i++) {
        const vpd_ci_param_info *t = &ci->tensors[i];
        real *p = ci->params + t->offset;
        if (t->is_bias) {
            memset(p, 0, sizeof(real) * t->numel);
            continue;
        }
        vpd_rng r = vpd_rng_make(seed, VPD_RNG_INIT, fnv1a32(t->name), VPD_CI_RNG_TAG);
        int j = i >= tf->t_blk0 ? (i - tf->t_blk0) % tf->t_per_blk : -1;
        if (j >= 0 && j < 4) {
            /* torch nn.Linear default (kaiming_uniform a=√5): U(−1/√fan_in, 1/√fan_in) */
            double a = 1.0 / sqrt((double)tf->cfg.d_model);
            vpd_rng_fill_uniform(&r, 0, t->numel, p);
            for (size_t e = 0; e < t->numel; e++) p[e] = (real)(a * (2.0 * (double)p[e] - 1.0));
            continue;
        }
        /* spd Linear W [in, out]: fan_in = shape[0]; ReLU gain (2/fan_in) for in_proj and
         * the hidden MLP Linears, gain 1 for the last MLP Linear and out_head */
        bool relu = i == tf->t_in || (j >= 4 && t->linear < tf->cfg.n_mlp_hidden);
        double var = (relu ? 2.0 : 1.0) / (double)t->shape[0];
        vpd_rng_fill_normal(&r, 0, t->numel, p);
        vpd_scale(t->numel, (real)sqrt(var), p);
    }
}

vpd_status ci_tf_forward(vpd_ci_fn *ci, real *const *z, const real *const *in, int N) {
    const struct vpd_ci_tf *tf = ci->tf;
    const vpd_ci_transformer_cfg *c = &tf->cfg;
    const int S = ci->S, D = c->d_model, H = c->n_heads, nh = c->n_mlp_hidden;
    if (N % S != 0)
        return vpd_error(VPD_ERR_SHAPE,
                         "CI function global_shared_transformer: %d rows are not whole sequences of %d positions", N, S);
    const int B = N / S, Nr = ci->N_reserved;
    const real eps = (real)FLT_EPSILON, base = (real)c->rope_base;

    /* in_proj: h0 = Σ_l rmsnorm(x_l) W_in[rows of l] + b_in */
    real *h0 = ws_at(ci, tf->x0), *u = ws_at(ci, tf->su1);
    const real *Win = P(ci, tf->t_in);
    for (int l = 0; l < ci->L; l++) {
        const vpd_ci_layer *ly = &ci->layers[l];
        rmsnorm_forward(u, ws_at(ci, tf->rstd_in) + (size_t)l * Nr, in[l], NULL, N, ly->d_in, eps);
        vpd_gemm(false, false, N, D, ly->d_in, 1, u, ly->d_in, Win + (size_t)ly->in_off * D, D, l ? 1 : 0, h0, D);
    }
    vpd_ci_add_bias(h0, P(ci, tf->t_in + 1), N, D);

    for (int i = 0; i < c->n_blocks; i++) {
        const tf_block_ws *b = &tf->blk[i];
        int t0 = tf->t_blk0 + i * tf->t_per_blk;
        const real *x = ws_at(ci, tf->x0 + (size_t)i * D);
        real *xn = ws_at(ci, tf->x0 + (size_t)(i + 1) * D);
        real *a1 = ws_at(ci, b->a1), *q = ws_at(ci, b->q), *k = ws_at(ci, b->k), *v = ws_at(ci, b->v);
        real *o = ws_at(ci, b->o), *xmid = ws_at(ci, b->xmid), *a2 = ws_at(ci, b->a2);
        /* x_mid = x + out_proj(Attn(N(x))) */
        rmsnorm_forward(a1, ws_at(ci, b->rstd1), x, NULL, N, D, eps);
        linear_forward(q, a1, P(ci, t0 + 0), NULL, N, D, D);
        linear_forward(k, a1, P(ci, t0 + 1), NULL, N, D, D);
        linear_forward(v, a1, P(ci, t0 + 2), NULL, N, D, D);
        rope_forward(q, B, S, H, tf->dh, base);
        rope_forward(k, B, S, H, tf->dh, base);
        if (S >= VPD_ATTN_ROWS_MIN_S) attention_rows_forward(o, ws_at(ci, b->att), q, k, v, B, S, H, H, tf->dh, false, VPD_ATTN_ROWS);
        else attention_forward(o, ws_at(ci, b->att), q, k, v, B, S, H, H, tf->dh, false);
        memcpy(xmid, x, sizeof(real) * (size_t)N * D);
        vpd_gemm(false, true, N, D, D, 1, o, D, P(ci, t0 + 3), D, 1, xmid, D);
        /* x_next = x_mid + MLP(N(x_mid)) */
        rmsnorm_forward(a2, ws_at(ci, b->rstd2), xmid, NULL, N, D, eps);
        const real *hin = a2;
        int w = D;
        for (int kk = 0; kk < nh; kk++) {
            int hk = c->mlp_hidden[kk];
            real *pre = ws_at(ci, b->pre[kk]), *post = ws_at(ci, b->post[kk]);
            vpd_gemm(false, false, N, hk, w, 1, hin, w, P(ci, t0 + 4 + 2 * kk), hk, 0, pre, hk);
            vpd_ci_add_bias(pre, P(ci, t0 + 5 + 2 * kk), N, hk);
            gelu_forward_deriv(post, pre, pre, (size_t)N * hk, GELU_ERF); /* pre := GELU'(pre) */
            hin = post;
            w = hk;
        }
        memcpy(xn, xmid, sizeof(real) * (size_t)N * D);
        vpd_gemm(false, false, N, D, w, 1, hin, w, P(ci, t0 + 4 + 2 * nh), D, 1, xn, D);
        vpd_ci_add_bias(xn, P(ci, t0 + 5 + 2 * nh), N, D);
    }

    /* out_head, written per layer from its column block; no final norm (spd) */
    const real *hf = ws_at(ci, tf->x0 + (size_t)c->n_blocks * D);
    const real *Wout = P(ci, tf->t_out), *bout = P(ci, tf->t_out + 1);
    for (int l = 0; l < ci->L; l++) {
        const vpd_ci_layer *ly = &ci->layers[l];
        vpd_gemm(false, false, N, ly->C, D, 1, hf, D, Wout + ly->c_off, ci->C_total, 0, z[l], ly->C);
        vpd_ci_add_bias(z[l], bout + ly->c_off, N, ly->C);
    }
    return VPD_OK;
}

void ci_tf_backward(vpd_ci_fn *ci, real *const *din, const real *const *dz, const real *const *in, int N) {
    const struct vpd_ci_tf *tf = ci->tf;
    const vpd_ci_transformer_cfg *c = &tf->cfg;
    const int S = ci->S, D = c->d_model, H = c->n_heads, nh = c->n_mlp_hidden;
    const int B = N / S, Nr = ci->N_reserved;
    const real base = (real)c->rope_base;
    const size_t ND = (size_t)N * D;

    /* dxr: gradient w.r.t. the residual stream, walked back block by block */
    real *dxr = ws_at(ci, tf->dxr);
    memset(dxr, 0, sizeof(real) * ND);
    const real *hf = ws_at(ci, tf->x0 + (size_t)c->n_blocks * D);
    const real *Wout = P(ci, tf->t_out);
    real *dWout = G(ci, tf->t_out), *dbout = G(ci, tf->t_out + 1);
    for (int l = 0; l < ci->L; l++) {
        if (!dz[l]) continue;
        const vpd_ci_layer *ly = &ci->layers[l];
        vpd_ci_colsum_add(dbout + ly->c_off, dz[l], N, ly->C);
        vpd_gemm(true, false, D, ly->C, N, 1, hf, D, dz[l], ly->C, 1, dWout + ly->c_off, ci->C_total);
        vpd_gemm(false, true, N, D, ly->C, 1, dz[l], ly->C, Wout + ly->c_off, ci->C_total, 1, dxr, D);
    }

    real *da = ws_at(ci, tf->da), *dout = ws_at(ci, tf->dout);
    real *dq = ws_at(ci, tf->dq), *dk = ws_at(ci, tf->dk), *dv = ws_at(ci, tf->dv);
    real *sh[2] = {ws_at(ci, tf->sh1), ws_at(ci, tf->sh2)};
    for (int i = c->n_blocks - 1; i >= 0; i--) {
        const tf_block_ws *b = &tf->blk[i];
        int t0 = tf->t_blk0 + i * tf->t_per_blk;
        const real *x = ws_at(ci, tf->x0 + (size_t)i * D);
        const real *a1 = ws_at(ci, b->a1), *q = ws_at(ci, b->q), *k = ws_at(ci, b->k), *v = ws_at(ci, b->v);
        const real *o = ws_at(ci, b->o), *xmid = ws_at(ci, b->xmid), *a2 = ws_at(ci, b->a2);

        /* MLP: dxr is the gradient of its output; walk its Linears back into sh[cur] */
        const real *dy = dxr;
        int w_out = D;
        const int cur = 0;
        for (int kk = nh; kk >= 0; kk--) {
            int w_in = kk == 0 ? D : c->mlp_hidden[kk - 1];
            const real *xin = kk == 0 ? a2 : ws_at(ci, b->post[kk - 1]);
            const real *W = P(ci, t0 + 4 + 2 * kk);
            vpd_ci_colsum_add(G(ci, t0 + 5 + 2 * kk), dy, N, w_out);
            vpd_gemm(true, false, w_in, w_out, N, 1, xin, w_in, dy, w_out, 1, G(ci, t0 + 4 + 2 * kk), w_out);
            real *dxin = sh[cur];
            vpd_gemm(false, true, N, w_in, w_out, 1, dy, w_out, W, w_out, 0, dxin, w_in);
            if (kk > 0) {
                /* through the GELU before this Linear: d pre = gelu'(pre) · d post */
                real *dpre = sh[1 - cur];
                memset(dpre, 0, sizeof(real) * (size_t)N * w_in);
                gelu_backward_deriv(dpre, dxin, ws_at(ci, b->pre[kk - 1]), (size_t)N * w_in);
                /* dpre may overwrite the old dy (consumed above); dxin's buffer sh[cur]
                 * is free again, so the next Linear writes its input gradient there */
                dy = dpre;
            } else {
                dy = dxin;
            }
            w_out = w_in;
        }
        /* dy = d a2; through the norm, added to the residual gradient → d x_mid */
        rmsnorm_backward(dxr, NULL, dy, xmid, NULL, ws_at(ci, b->rstd2), N, D);

        /* attention: x_mid = x + o W_o^T */
        memset(dout, 0, sizeof(real) * ND);
        linear_backward(dout, G(ci, t0 + 3), NULL, dxr, o, P(ci, t0 + 3), N, D, D);
        memset(dq, 0, sizeof(real) * ND);
        memset(dk, 0, sizeof(real) * ND);
        memset(dv, 0, sizeof(real) * ND);
        if (S >= VPD_ATTN_ROWS_MIN_S)
            attention_rows_backward(dq, dk, dv, dout, ws_at(ci, b->att), q, k, v, B, S, H, H, tf->dh, false, VPD_ATTN_ROWS);
        else attention_backward(dq, dk, dv, dout, ws_at(ci, b->att), q, k, v, B, S, H, H, tf->dh, false);
        rope_backward(dq, B, S, H, tf->dh, base);
        rope_backward(dk, B, S, H, tf->dh, base);
        memset(da, 0, sizeof(real) * ND);
        linear_backward(da, G(ci, t0 + 0), NULL, dq, a1, P(ci, t0 + 0), N, D, D);
        linear_backward(da, G(ci, t0 + 1), NULL, dk, a1, P(ci, t0 + 1), N, D, D);
        linear_backward(da, G(ci, t0 + 2), NULL, dv, a1, P(ci, t0 + 2), N, D, D);
        rmsnorm_backward(dxr, NULL, da, x, NULL, ws_at(ci, b->rstd1), N, D);
    }

    /* in_proj: dxr = d h0 */
    vpd_ci_colsum_add(G(ci, tf->t_in + 1), dxr, N, D);
    const real *Win = P(ci, tf->t_in);
    real *dWin = G(ci, tf->t_in);
    real *u = ws_at(ci, tf->su1), *du = ws_at(ci, tf->su2);
    for (int l = 0; l < ci->L; l++) {
        const vpd_ci_layer *ly = &ci->layers[l];
        const real *rstd = ws_at(ci, tf->rstd_in) + (size_t)l * Nr;
        const int Dl = ly->d_in;
        for (int n = 0; n < N; n++)
            for (int d = 0; d < Dl; d++) u[(size_t)n * Dl + d] = in[l][(size_t)n * Dl + d] * rstd[n];
        vpd_gemm(true, false, Dl, D, N, 1, u, Dl, dxr, D, 1, dWin + (size_t)ly->in_off * D, D);
        if (din && din[l]) {
            vpd_gemm(false, true, N, Dl, D, 1, dxr, D, Win + (size_t)ly->in_off * D, D, 0, du, Dl);
            rmsnorm_backward(din[l], NULL, du, in[l], NULL, rstd, N, Dl);
        }
    }
}
