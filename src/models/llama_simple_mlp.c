/* LlamaSimpleMLP (spd pretrain/models/llama_simple_mlp.py, VPD_METHOD.md §7): the
 * paper's target language model.
 *   x = wte[tok]                                        wte.weight [V, D]
 *   per block i:  x += o_proj(attn(RoPE(q_proj(a)), RoPE(k_proj(a)), v_proj(a))),  a = rms_1(x)
 *                 x += down_proj(gelu_tanh(c_fc(rms_2(x))))
 *   logits = ln_f(x) wteᵀ                               lm_head tied to wte, no biases
 * RMSNorm with a learnable weight and eps rms_eps inside the root; causal attention
 * with n_key_value_heads ≤ n_head (grouped-query: query head h reads kv head
 * h / (H/Hkv), as torch's repeat_interleave), RoPE over the whole head, half-split
 * pairs, θ = pos · rope_theta^(−2i/dh).
 * Legend: B sequences, S positions, N = B·S tokens, D n_embd, H n_head, Hkv
 * n_key_value_heads, dh = D/H, KV = Hkv·dh, F n_intermediate, V vocab, L n_layer.
 *
 * Parameter names are those of the PyTorch state_dict (lm_head.weight is the same
 * tensor as wte.weight and is not listed separately). Decomposable layers, in forward
 * order: "wte" (embedding), then per block "h.<i>.attn.{q,k,v,o}_proj",
 * "h.<i>.mlp.{c_fc,down_proj}". lm_head is not a hook layer: decomposing "wte"
 * replaces the embedding lookup only, the output head keeps the target weight (as a
 * module-replacing decomposition in PyTorch would). */
#include <math.h>
#include <string.h>

#include "models/models_internal.h"
#include "vpd/nn.h"

typedef struct {
    int B, S;      /* shape of the last forward */
    int32_t *tok;  /* [N] input copy */
    real *resid;   /* [2L+1][N, D]: input of block i at 2i, after its attention at 2i+1, final at 2L */
    real *ln1;     /* [L][N, D] rms_1 output = q/k/v input */
    real *rstd1;   /* [L][N] */
    real *q;       /* [L][N, D] after RoPE */
    real *k, *v;   /* [L][N, KV] (k after RoPE) */
    real *att;     /* [L][B, H, S, S] softmax probabilities; with m->attn_rows > 0 the [L][B, H, S]
                      row log-sum-exp of attention_rows_forward instead */
    real *atty;    /* [L][N, D] attention output = o_proj input */
    real *ln2;     /* [L][N, D] rms_2 output = c_fc input */
    real *rstd2;   /* [L][N] */
    real *fc;      /* [L][N, F] c_fc output (pre-GELU) */
    real *gel;     /* [L][N, F] GELU output = down_proj input */
    real *lnf;     /* [N, D] ln_f output = lm_head input */
    real *rstdf;   /* [N] */
    real *tmp;     /* [N, D] o_proj / down_proj output before the residual add */
    /* backward */
    real *dres, *dln, *dq, *datty, *dlnf; /* [N, D] */
    real *dk, *dv;                         /* [N, KV] */
    real *dfc, *dgel;                      /* [N, F] */
    /* row-restricted backward (llama_backward_position), n copies of row t, in m->pos_acts */
    struct {
        real *dres, *dln, *datty, *dq; /* [n, D] */
        real *dk, *dv;                 /* [n, R <= S, KV] */
        real *dfc, *dgel;              /* [n, F] */
        real *gd, *ones;               /* [F] GELU'(fc of row t), ones */
        real *lnf;                     /* [D] ln_f of row t */
    } pos;
} llama_impl;

/* parameter indices, state_dict order: wte, per block (rms_1, q, k, v, o, rms_2, c_fc, down), ln_f */
enum { P_WTE = 0 };
enum { B_RMS1, B_Q, B_K, B_V, B_O, B_RMS2, B_FC, B_DOWN, B_NPARAM };
static inline int p_blk(int i, int which) { return 1 + B_NPARAM * i + which; }
static inline int p_lnf(const vpd_model *m) { return 1 + B_NPARAM * m->cfg.n_layers; }
/* layer indices: 0 = wte, then per block q, k, v, o, c_fc, down_proj */
enum { L_Q, L_K, L_V, L_O, L_FC, L_DOWN, L_NLAYER };
static inline int l_blk(int i, int which) { return 1 + L_NLAYER * i + which; }

static vpd_status llama_check(const vpd_model_config *c) {
    if (c->vocab_size < 1 || c->n_ctx < 1 || c->n_embd < 1 || c->n_head < 1 || c->n_key_value_heads < 1 ||
        c->n_intermediate < 1 || c->n_layers < 1)
        return vpd_error(VPD_ERR_CONFIG, "llama_simple_mlp: vocab_size, n_ctx, n_embd, n_head, n_key_value_heads, "
                         "n_intermediate, n_layer must all be >= 1");
    if (c->n_embd % c->n_head)
        return vpd_error(VPD_ERR_CONFIG, "llama_simple_mlp: n_embd %d is not divisible by n_head %d", c->n_embd, c->n_head);
    if (c->n_head % c->n_key_value_heads)
        return vpd_error(VPD_ERR_CONFIG, "llama_simple_mlp: n_head %d is not divisible by n_key_value_heads %d",
                         c->n_head, c->n_key_value_heads);
    if ((c->n_embd / c->n_head) % 2)
        return vpd_error(VPD_ERR_CONFIG, "llama_simple_mlp: head dim %d (n_embd/n_head) must be even for RoPE",
                         c->n_embd / c->n_head);
    if (!(c->rms_eps > 0) || !(c->rope_theta > 0))
        return vpd_error(VPD_ERR_CONFIG, "llama_simple_mlp: rms_norm_eps (%g) and rope_theta (%g) must be > 0",
                         c->rms_eps, c->rope_theta);
    return VPD_OK;
}
static int llama_count_params(const vpd_model_config *c) { return 2 + B_NPARAM * c->n_layers; }
static int llama_count_layers(const vpd_model_config *c) { return 1 + L_NLAYER * c->n_layers; }

static void llama_build_params(vpd_model *m) {
    const vpd_model_config *c = &m->cfg;
    int64_t V = c->vocab_size, D = c->n_embd, F = c->n_intermediate;
    int64_t KV = (int64_t)c->n_key_value_heads * (c->n_embd / c->n_head);
    model_add_param(m, true, 2, (int64_t[]){V, D}, "wte.weight");
    for (int i = 0; i < c->n_layers; i++) {
        model_add_param(m, true, 1, (int64_t[]){D}, "h.%d.rms_1.weight", i);
        model_add_param(m, true, 2, (int64_t[]){D, D}, "h.%d.attn.q_proj.weight", i);
        model_add_param(m, true, 2, (int64_t[]){KV, D}, "h.%d.attn.k_proj.weight", i);
        model_add_param(m, true, 2, (int64_t[]){KV, D}, "h.%d.attn.v_proj.weight", i);
        model_add_param(m, true, 2, (int64_t[]){D, D}, "h.%d.attn.o_proj.weight", i);
        model_add_param(m, true, 1, (int64_t[]){D}, "h.%d.rms_2.weight", i);
        model_add_param(m, true, 2, (int64_t[]){F, D}, "h.%d.mlp.c_fc.weight", i);
        model_add_param(m, true, 2, (int64_t[]){D, F}, "h.%d.mlp.down_proj.weight", i);
    }
    model_add_param(m, true, 1, (int64_t[]){D}, "ln_f.weight");
}

static vpd_status llama_build_layers(vpd_model *m) {
    const vpd_model_config *c = &m->cfg;
    int V = c->vocab_size, D = c->n_embd, F = c->n_intermediate;
    int KV = c->n_key_value_heads * (c->n_embd / c->n_head);
    llama_impl *t = vpd_calloc(sizeof *t, "llama_simple_mlp state");
    if (!t) return VPD_ERR_MEM;
    m->impl = t;
    real *P = m->params;
    model_add_layer(m, V, D, true, model_pslice(m, P, P_WTE), NULL, "wte");
    for (int i = 0; i < c->n_layers; i++) {
        model_add_layer(m, D, D, false, model_pslice(m, P, p_blk(i, B_Q)), NULL, "h.%d.attn.q_proj", i);
        model_add_layer(m, D, KV, false, model_pslice(m, P, p_blk(i, B_K)), NULL, "h.%d.attn.k_proj", i);
        model_add_layer(m, D, KV, false, model_pslice(m, P, p_blk(i, B_V)), NULL, "h.%d.attn.v_proj", i);
        model_add_layer(m, D, D, false, model_pslice(m, P, p_blk(i, B_O)), NULL, "h.%d.attn.o_proj", i);
        model_add_layer(m, D, F, false, model_pslice(m, P, p_blk(i, B_FC)), NULL, "h.%d.mlp.c_fc", i);
        model_add_layer(m, F, D, false, model_pslice(m, P, p_blk(i, B_DOWN)), NULL, "h.%d.mlp.down_proj", i);
    }
    return VPD_OK;
}

/* spd's LlamaSimpleMLP._init_weights: linears and the embedding N(0, 0.02²), the two
 * residual-writing projections (o_proj, down_proj) N(0, (0.02/√(2L))²), RMSNorm
 * weights 1. */
static void llama_init(vpd_model *m, uint64_t seed) {
    int L = m->cfg.n_layers;
    double std_res = 0.02 / sqrt(2.0 * L);
    model_init_normal(m, seed, P_WTE, 0.02);
    for (int i = 0; i < L; i++) {
        model_init_const(m, p_blk(i, B_RMS1), 1);
        model_init_normal(m, seed, p_blk(i, B_Q), 0.02);
        model_init_normal(m, seed, p_blk(i, B_K), 0.02);
        model_init_normal(m, seed, p_blk(i, B_V), 0.02);
        model_init_normal(m, seed, p_blk(i, B_O), std_res);
        model_init_const(m, p_blk(i, B_RMS2), 1);
        model_init_normal(m, seed, p_blk(i, B_FC), 0.02);
        model_init_normal(m, seed, p_blk(i, B_DOWN), std_res);
    }
    model_init_const(m, p_lnf(m), 1);
}

static void llama_sync(vpd_model *m) { (void)m; /* lm_head reads wte directly */ }

static size_t llama_layout(vpd_model *m, int B, int S, vpd_arena *a) {
    const vpd_model_config *c = &m->cfg;
    size_t N = (size_t)B * S, D = c->n_embd, F = c->n_intermediate, L = c->n_layers, H = c->n_head;
    size_t KV = (size_t)c->n_key_value_heads * (D / H);
    model_carver cv = {a, 0};
    llama_impl v = {0};
    v.tok = MODEL_CARVE(&cv, int32_t, N);
    v.resid = MODEL_CARVE(&cv, real, (2 * L + 1) * N * D);
    v.ln1 = MODEL_CARVE(&cv, real, L * N * D);
    v.rstd1 = MODEL_CARVE(&cv, real, L * N);
    v.q = MODEL_CARVE(&cv, real, L * N * D);
    v.k = MODEL_CARVE(&cv, real, L * N * KV);
    v.v = MODEL_CARVE(&cv, real, L * N * KV);
    v.att = MODEL_CARVE(&cv, real, L * (size_t)B * H * S * (m->attn_rows > 0 ? 1 : (size_t)S));
    v.atty = MODEL_CARVE(&cv, real, L * N * D);
    v.ln2 = MODEL_CARVE(&cv, real, L * N * D);
    v.rstd2 = MODEL_CARVE(&cv, real, L * N);
    v.fc = MODEL_CARVE(&cv, real, L * N * F);
    v.gel = MODEL_CARVE(&cv, real, L * N * F);
    v.lnf = MODEL_CARVE(&cv, real, N * D);
    v.rstdf = MODEL_CARVE(&cv, real, N);
    v.tmp = MODEL_CARVE(&cv, real, N * D);
    v.dres = MODEL_CARVE(&cv, real, N * D);
    v.dln = MODEL_CARVE(&cv, real, N * D);
    v.dq = MODEL_CARVE(&cv, real, N * D);
    v.datty = MODEL_CARVE(&cv, real, N * D);
    v.dlnf = MODEL_CARVE(&cv, real, N * D);
    v.dk = MODEL_CARVE(&cv, real, N * KV);
    v.dv = MODEL_CARVE(&cv, real, N * KV);
    v.dfc = MODEL_CARVE(&cv, real, N * F);
    v.dgel = MODEL_CARVE(&cv, real, N * F);
    if (a) {
        v.pos = ((llama_impl *)m->impl)->pos; /* the row-restricted buffers live in their own arena */
        *(llama_impl *)m->impl = v;
    }
    return cv.bytes;
}

static size_t llama_position_layout(vpd_model *m, int n, int S, vpd_arena *a) {
    const vpd_model_config *c = &m->cfg;
    size_t D = c->n_embd, F = c->n_intermediate, KV = (size_t)c->n_key_value_heads * (D / c->n_head);
    model_carver cv = {a, 0};
    llama_impl *t = m->impl, v;
    v.pos.dres = MODEL_CARVE(&cv, real, (size_t)n * D);
    v.pos.dln = MODEL_CARVE(&cv, real, (size_t)n * D);
    v.pos.datty = MODEL_CARVE(&cv, real, (size_t)n * D);
    v.pos.dq = MODEL_CARVE(&cv, real, (size_t)n * D);
    v.pos.dk = MODEL_CARVE(&cv, real, (size_t)n * S * KV);
    v.pos.dv = MODEL_CARVE(&cv, real, (size_t)n * S * KV);
    v.pos.dfc = MODEL_CARVE(&cv, real, (size_t)n * F);
    v.pos.dgel = MODEL_CARVE(&cv, real, (size_t)n * F);
    v.pos.gd = MODEL_CARVE(&cv, real, F);
    v.pos.ones = MODEL_CARVE(&cv, real, F);
    v.pos.lnf = MODEL_CARVE(&cv, real, D);
    if (a) t->pos = v.pos;
    return cv.bytes;
}

/* Per-block views of the activation stacks. Strides use the reserved capacity
 * (m->B · m->S tokens), so a smaller batch finds every buffer where layout put it. */
typedef struct {
    real *x, *xmid, *xout; /* residual in, after attention, out */
    real *ln1, *rstd1, *q, *k, *v, *att, *atty, *ln2, *rstd2, *fc, *gel;
} llama_block;

static llama_block block_view(const vpd_model *m, int i) {
    const llama_impl *t = m->impl;
    const vpd_model_config *c = &m->cfg;
    size_t Nc = (size_t)m->B * m->S, D = c->n_embd, F = c->n_intermediate, H = c->n_head;
    size_t KV = (size_t)c->n_key_value_heads * (D / H), Ac = (size_t)m->B * H * m->S * (m->attn_rows > 0 ? 1 : (size_t)m->S);
    llama_block b;
    b.x = t->resid + (2 * (size_t)i) * Nc * D;
    b.xmid = t->resid + (2 * (size_t)i + 1) * Nc * D;
    b.xout = t->resid + (2 * (size_t)i + 2) * Nc * D;
    b.ln1 = t->ln1 + i * Nc * D;
    b.rstd1 = t->rstd1 + i * Nc;
    b.q = t->q + i * Nc * D;
    b.k = t->k + i * Nc * KV;
    b.v = t->v + i * Nc * KV;
    b.att = t->att + i * Ac;
    b.atty = t->atty + i * Nc * D;
    b.ln2 = t->ln2 + i * Nc * D;
    b.rstd2 = t->rstd2 + i * Nc;
    b.fc = t->fc + i * Nc * F;
    b.gel = t->gel + i * Nc * F;
    return b;
}

static void llama_forward(vpd_model *m, const vpd_model_input *in, real *out, vpd_hook *hook, int from) {
    llama_impl *t = m->impl;
    const vpd_model_config *c = &m->cfg;
    if (from < 0) {
        VPD_ASSERT(in->tokens, "llama forward: tokens are NULL");
        t->B = in->B;
        t->S = in->S;
        memcpy(t->tok, in->tokens, sizeof(int32_t) * (size_t)in->B * (size_t)in->S);
        from = 0;
    }
    int B = t->B, S = t->S, N = B * S, D = c->n_embd, F = c->n_intermediate, V = c->vocab_size;
    int H = c->n_head, Hkv = c->n_key_value_heads, dh = D / H;
    real eps = (real)c->rms_eps, theta = (real)c->rope_theta;
    const real *P = m->params;
    if (from == 0) model_layer_forward(m, hook, 0, NULL, t->tok, t->resid, N); /* x = wte[tok] */
    /* starting inside block i0: the attention sub-block's q/k/v/o are recomputed from its
     * kept ln1; from c_fc on, the MLP sub-block from its kept ln2 (gel for down_proj) */
    int i0 = from == 0 ? 0 : (from - 1) / L_NLAYER, w0 = from == 0 ? -1 : (from - 1) % L_NLAYER;
    for (int i = i0; i < c->n_layers; i++) {
        llama_block b = block_view(m, i);
        bool first = i == i0;
        if (!first || w0 <= L_O) {
            /* attention sub-block */
            if (!first || w0 < 0) rmsnorm_forward(b.ln1, b.rstd1, b.x, P + m->pinfo[p_blk(i, B_RMS1)].offset, N, D, eps);
            model_layer_forward(m, hook, l_blk(i, L_Q), b.ln1, NULL, b.q, N);
            model_layer_forward(m, hook, l_blk(i, L_K), b.ln1, NULL, b.k, N);
            model_layer_forward(m, hook, l_blk(i, L_V), b.ln1, NULL, b.v, N);
            rope_forward(b.q, B, S, H, dh, theta);
            rope_forward(b.k, B, S, Hkv, dh, theta);
            if (m->attn_rows > 0) attention_rows_forward(b.atty, b.att, b.q, b.k, b.v, B, S, H, Hkv, dh, true, m->attn_rows);
            else attention_forward(b.atty, b.att, b.q, b.k, b.v, B, S, H, Hkv, dh, true);
            model_layer_forward(m, hook, l_blk(i, L_O), b.atty, NULL, t->tmp, N);
            for (size_t j = 0; j < (size_t)N * D; j++) b.xmid[j] = b.x[j] + t->tmp[j];
        }
        /* MLP sub-block */
        if (!first || w0 <= L_O) rmsnorm_forward(b.ln2, b.rstd2, b.xmid, P + m->pinfo[p_blk(i, B_RMS2)].offset, N, D, eps);
        if (!first || w0 <= L_FC) {
            model_layer_forward(m, hook, l_blk(i, L_FC), b.ln2, NULL, b.fc, N);
            gelu_forward(b.gel, b.fc, (size_t)N * F, GELU_TANH);
        }
        model_layer_forward(m, hook, l_blk(i, L_DOWN), b.gel, NULL, t->tmp, N);
        for (size_t j = 0; j < (size_t)N * D; j++) b.xout[j] = b.xmid[j] + t->tmp[j];
    }
    const real *xL = t->resid + (2 * (size_t)c->n_layers) * ((size_t)m->B * m->S) * D;
    if (!out) return; /* the caller needs the hooks' layers only (attrib): no ln_f, no logits */
    rmsnorm_forward(t->lnf, t->rstdf, xL, P + m->pinfo[p_lnf(m)].offset, N, D, eps);
    linear_forward(out, t->lnf, P + m->pinfo[P_WTE].offset, NULL, N, D, V); /* tied lm_head */
}

static void llama_backward(vpd_model *m, const real *dout, real *dparams, real *dinput, vpd_hook *hook, int to) {
    (void)dinput; /* token inputs have no gradient */
    llama_impl *t = m->impl;
    const vpd_model_config *c = &m->cfg;
    int B = t->B, S = t->S, N = B * S, D = c->n_embd, F = c->n_intermediate, V = c->vocab_size;
    int H = c->n_head, Hkv = c->n_key_value_heads, dh = D / H, KV = Hkv * dh;
    real theta = (real)c->rope_theta;
    VPD_ASSERT(N > 0, "llama backward without a forward");
    const real *P = m->params;
    size_t ND = (size_t)N * D;
#define DP(p) model_pslice(m, dparams, (p))
#define W(p) (P + m->pinfo[(p)].offset)
    /* lm_head (tied to wte) and ln_f; dout NULL = zero (the gradient enters through the hook) */
    memset(t->dres, 0, sizeof(real) * ND);
    if (dout) {
        memset(t->dlnf, 0, sizeof(real) * ND);
        linear_backward(t->dlnf, DP(P_WTE), NULL, dout, t->lnf, W(P_WTE), N, D, V);
        const real *xL = t->resid + (2 * (size_t)c->n_layers) * ((size_t)m->B * m->S) * D;
        rmsnorm_backward(t->dres, DP(p_lnf(m)), t->dlnf, xL, W(p_lnf(m)), t->rstdf, N, D);
    }
    /* to >= 1: stop in block i0 at layer w0 (input gradients that only flow below it skipped) */
    int i0 = to <= 0 ? 0 : (to - 1) / L_NLAYER, w0 = to <= 0 ? -1 : (to - 1) % L_NLAYER;
    for (int i = c->n_layers - 1; i >= i0; i--) {
        llama_block b = block_view(m, i);
        bool last = i == i0 && w0 >= 0;
        /* MLP sub-block: xout = xmid + down(gelu(c_fc(rms_2(xmid)))); dres is d xout and,
         * through the identity path, already the first term of d xmid. */
        if (last && w0 == L_DOWN) {
            model_layer_backward(m, hook, l_blk(i, L_DOWN), b.gel, NULL, t->dres, NULL, NULL, NULL, N);
            return;
        }
        memset(t->dgel, 0, sizeof(real) * (size_t)N * F);
        model_layer_backward(m, hook, l_blk(i, L_DOWN), b.gel, NULL, t->dres, t->dgel, DP(p_blk(i, B_DOWN)), NULL, N);
        memset(t->dfc, 0, sizeof(real) * (size_t)N * F);
        gelu_backward(t->dfc, t->dgel, b.fc, (size_t)N * F, GELU_TANH);
        if (last && w0 == L_FC) {
            model_layer_backward(m, hook, l_blk(i, L_FC), b.ln2, NULL, t->dfc, NULL, NULL, NULL, N);
            return;
        }
        memset(t->dln, 0, sizeof(real) * ND);
        model_layer_backward(m, hook, l_blk(i, L_FC), b.ln2, NULL, t->dfc, t->dln, DP(p_blk(i, B_FC)), NULL, N);
        rmsnorm_backward(t->dres, DP(p_blk(i, B_RMS2)), t->dln, b.xmid, W(p_blk(i, B_RMS2)), b.rstd2, N, D);
        /* attention sub-block: xmid = x + o(attn(...)) */
        if (last && w0 == L_O) {
            model_layer_backward(m, hook, l_blk(i, L_O), b.atty, NULL, t->dres, NULL, NULL, NULL, N);
            return;
        }
        memset(t->datty, 0, sizeof(real) * ND);
        model_layer_backward(m, hook, l_blk(i, L_O), b.atty, NULL, t->dres, t->datty, DP(p_blk(i, B_O)), NULL, N);
        memset(t->dq, 0, sizeof(real) * ND);
        memset(t->dk, 0, sizeof(real) * (size_t)N * KV);
        memset(t->dv, 0, sizeof(real) * (size_t)N * KV);
        if (m->attn_rows > 0)
            attention_rows_backward(t->dq, t->dk, t->dv, t->datty, b.att, b.q, b.k, b.v, B, S, H, Hkv, dh, true, m->attn_rows);
        else attention_backward(t->dq, t->dk, t->dv, t->datty, b.att, b.q, b.k, b.v, B, S, H, Hkv, dh, true);
        rope_backward(t->dq, B, S, H, dh, theta);
        rope_backward(t->dk, B, S, Hkv, dh, theta);
        if (last) { /* w0 is q, k or v: their input gradient only reaches ln1 and below */
            for (int w = w0; w <= L_V; w++)
                model_layer_backward(m, hook, l_blk(i, w), b.ln1, NULL, w == L_Q ? t->dq : w == L_K ? t->dk : t->dv, NULL,
                                     NULL, NULL, N);
            return;
        }
        memset(t->dln, 0, sizeof(real) * ND);
        model_layer_backward(m, hook, l_blk(i, L_Q), b.ln1, NULL, t->dq, t->dln, DP(p_blk(i, B_Q)), NULL, N);
        model_layer_backward(m, hook, l_blk(i, L_K), b.ln1, NULL, t->dk, t->dln, DP(p_blk(i, B_K)), NULL, N);
        model_layer_backward(m, hook, l_blk(i, L_V), b.ln1, NULL, t->dv, t->dln, DP(p_blk(i, B_V)), NULL, N);
        rmsnorm_backward(t->dres, DP(p_blk(i, B_RMS1)), t->dln, b.x, W(p_blk(i, B_RMS1)), b.rstd1, N, D);
    }
    if (w0 >= 0) return; /* not reached: block i0 returns */
    model_layer_backward(m, hook, 0, NULL, t->tok, t->dres, NULL, DP(P_WTE), NULL, N);
#undef DP
#undef W
}

/* Layer l of the row-restricted backward: through the hook, else dx += dy_t W (dy_t: row t of
 * each copy, the last of its R rows). */
static void pos_layer_backward(const vpd_model *m, vpd_row_hook *hook, int l, int t, int R, const real *x,
                               const int32_t *tok, const real *dy, real *dx, int n) {
    const vpd_layer_info *L = &m->layers[l];
    if (hook) {
        hook->backward(hook, l, t, R, L->embedding ? NULL : x, tok, dy, L->embedding ? NULL : dx, n);
        return;
    }
    if (L->embedding || !dx) return;
    vpd_gemm(false, false, n, L->d_in, L->d_out, 1, dy + (size_t)(R - 1) * L->d_out, R * L->d_out, L->W, L->d_in, 1, dx,
             L->d_in);
}

/* vpd_model_backward_position: llama_backward restricted to row t of n gradient copies. Every
 * row-wise operation (RMSNorm, GELU, the residual adds, the linear layers) runs on [n, width]
 * rows whose forward values are row t's; attention is attention_row_backward (q at row t, k/v
 * at the last R rows: R = t+1 for a block whose k or v layer is in kv_rows, else 1). The blocks
 * after layer `top`'s carry no gradient and are skipped. */
static vpd_status llama_backward_position(vpd_model *m, int t, int n, const real *dout, const bool *kv_rows, int top,
                                          vpd_row_hook *hook) {
    llama_impl *T = m->impl;
    const vpd_model_config *c = &m->cfg;
    if (T->B != 1)
        return vpd_error(VPD_ERR_ARG, "vpd_model_backward_position: the last forward ran %d sequences (one only)", T->B);
    if (t < 0 || t >= T->S) return vpd_error(VPD_ERR_ARG, "vpd_model_backward_position: row %d outside [0, %d)", t, T->S);
    const int D = c->n_embd, F = c->n_intermediate, V = c->vocab_size, H = c->n_head, Hkv = c->n_key_value_heads;
    const int dh = D / H, KV = Hkv * dh;
    const real theta = (real)c->rope_theta;
    const real *P = m->params;
    const size_t nD = (size_t)n * D, nF = (size_t)n * F;
#define W(p) (P + m->pinfo[(p)].offset)
    real *dres = T->pos.dres, *dln = T->pos.dln;
    memset(dres, 0, sizeof(real) * nD);
    if (dout) { /* logits = ln_f(x_L) wteᵀ at row t */
        const real *xL = T->resid + (2 * (size_t)c->n_layers) * ((size_t)m->B * m->S) * D + (size_t)t * D;
        real rstd;
        rmsnorm_forward(T->pos.lnf, &rstd, xL, W(p_lnf(m)), 1, D, (real)c->rms_eps);
        memset(dln, 0, sizeof(real) * nD);
        linear_backward(dln, NULL, NULL, dout, NULL, W(P_WTE), n, D, V);
        for (int b = 0; b < n; b++)
            rmsnorm_backward(dres + (size_t)b * D, NULL, dln + (size_t)b * D, xL, W(p_lnf(m)), &rstd, 1, D);
    }
    /* no gradient enters after layer `top` (model.c made it the last layer when dout is given) */
    const int i_top = top <= 0 ? 0 : (top - 1) / L_NLAYER;
    for (int i = i_top; i >= 0; i--) {
        llama_block k = block_view(m, i);
        /* MLP sub-block */
        memset(T->pos.dgel, 0, sizeof(real) * nF);
        pos_layer_backward(m, hook, l_blk(i, L_DOWN), t, 1, k.gel + (size_t)t * F, NULL, dres, T->pos.dgel, n);
        /* GELU' of row t once (gelu_backward of ones), then dfc = dgel ⊙ GELU' for every copy */
        for (int j = 0; j < F; j++) T->pos.ones[j] = 1;
        memset(T->pos.gd, 0, sizeof(real) * (size_t)F);
        gelu_backward(T->pos.gd, T->pos.ones, k.fc + (size_t)t * F, (size_t)F, GELU_TANH);
        for (int b = 0; b < n; b++) {
            real *dfc = T->pos.dfc + (size_t)b * F;
            const real *dg = T->pos.dgel + (size_t)b * F, *gd = T->pos.gd;
            for (int j = 0; j < F; j++) dfc[j] = dg[j] * gd[j];
        }
        memset(dln, 0, sizeof(real) * nD);
        pos_layer_backward(m, hook, l_blk(i, L_FC), t, 1, k.ln2 + (size_t)t * D, NULL, T->pos.dfc, dln, n);
        for (int b = 0; b < n; b++)
            rmsnorm_backward(dres + (size_t)b * D, NULL, dln + (size_t)b * D, k.xmid + (size_t)t * D, W(p_blk(i, B_RMS2)),
                             k.rstd2 + t, 1, D);
        /* attention sub-block */
        memset(T->pos.datty, 0, sizeof(real) * nD);
        pos_layer_backward(m, hook, l_blk(i, L_O), t, 1, k.atty + (size_t)t * D, NULL, dres, T->pos.datty, n);
        const int R = kv_rows && (kv_rows[l_blk(i, L_K)] || kv_rows[l_blk(i, L_V)]) ? t + 1 : 1, s0 = t + 1 - R;
        memset(T->pos.dq, 0, sizeof(real) * nD);
        memset(T->pos.dk, 0, sizeof(real) * (size_t)n * R * KV);
        memset(T->pos.dv, 0, sizeof(real) * (size_t)n * R * KV);
        attention_row_backward(T->pos.dq, T->pos.dk, T->pos.dv, T->pos.datty, k.q + (size_t)t * D, k.k, k.v, t, n, R, H,
                               Hkv, dh);
        rope_offset_backward(T->pos.dq, n, 1, t, H, dh, theta);
        rope_offset_backward(T->pos.dk, n, R, s0, Hkv, dh, theta);
        memset(dln, 0, sizeof(real) * nD);
        pos_layer_backward(m, hook, l_blk(i, L_Q), t, 1, k.ln1 + (size_t)t * D, NULL, T->pos.dq, dln, n);
        pos_layer_backward(m, hook, l_blk(i, L_K), t, R, k.ln1 + (size_t)s0 * D, NULL, T->pos.dk, dln, n);
        pos_layer_backward(m, hook, l_blk(i, L_V), t, R, k.ln1 + (size_t)s0 * D, NULL, T->pos.dv, dln, n);
        for (int b = 0; b < n; b++)
            rmsnorm_backward(dres + (size_t)b * D, NULL, dln + (size_t)b * D, k.x + (size_t)t * D, W(p_blk(i, B_RMS1)),
                             k.rstd1 + t, 1, D);
    }
    pos_layer_backward(m, hook, 0, t, 1, NULL, T->tok + t, dres, NULL, n);
#undef W
    return VPD_OK;
}

static void llama_destroy(vpd_model *m) {
    vpd_free(m->impl);
    m->impl = NULL;
}

const vpd_model_ops vpd_llama_ops = {
    .check = llama_check,
    .count_params = llama_count_params,
    .count_layers = llama_count_layers,
    .build_params = llama_build_params,
    .build_layers = llama_build_layers,
    .init = llama_init,
    .sync = llama_sync,
    .layout = llama_layout,
    .forward = llama_forward,
    .backward = llama_backward,
    .position_layout = llama_position_layout,
    .backward_position = llama_backward_position,
    .destroy = llama_destroy,
};
