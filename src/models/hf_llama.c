/* Hugging Face Llama / Qwen2 / Qwen3 causal LMs (VPD_MODEL_HF_LLAMA; config.json model_type
 * "llama", "qwen2", "qwen3"), as transformers' LlamaForCausalLM / Qwen2ForCausalLM /
 * Qwen3ForCausalLM compute them (eager attention, no cache, no padding mask):
 *   x = embed_tokens[tok]                                   model.embed_tokens.weight [V, D]
 *   per layer i:
 *     a = input_layernorm(x)                                RMSNorm, weight [D]
 *     q = q_proj(a) [N, H·dh], k = k_proj(a), v = v_proj(a) [N, Hkv·dh]   (+ biases: qwen2,
 *                                                           llama attention_bias)
 *     qwen3: q = q_norm(q), k = k_norm(k) per head          RMSNorm over dh, weight [dh]
 *     q, k = RoPE(q), RoPE(k)                               half-split pairs, θ = pos · inv_freq
 *     x += o_proj(causal softmax(q kᵀ / √dh) v)             grouped-query: head h reads kv head
 *                                                           h / (H / Hkv)
 *     x += down_proj(silu(gate_proj(m)) ⊙ up_proj(m)),  m = post_attention_layernorm(x)
 *   logits = lm_head(norm(x))                               lm_head.weight [V, D], or
 *                                                           embed_tokens.weight when tied
 * RMSNorm: w ⊙ x / √(mean(x²) + rms_norm_eps). inv_freq_i = rope_theta^(−2i/dh), modified by
 * rope_scaling "linear" (÷ factor) or "llama3" (Llama-3.1's smooth low/high frequency
 * split), exactly as transformers' modeling_rope_utils; other scalings are refused by the
 * config reader.
 * Legend: B sequences, S positions, N = B·S, D hidden_size, H heads, Hkv kv heads, dh
 * head_dim (config head_dim, else D / H), QD = H·dh, KV = Hkv·dh, F intermediate_size,
 * V vocab, L layers.
 *
 * Parameter names are the checkpoint's (the state_dict names); decomposable layers are
 * those names without ".weight", in forward order: "model.embed_tokens", per layer
 * "model.layers.<i>.self_attn.{q,k,v,o}_proj", "model.layers.<i>.mlp.{gate,up,down}_proj",
 * then "lm_head" when untied. A tied head is not a hook layer (it reads embed_tokens'
 * target weight; decomposing "model.embed_tokens" replaces the lookup only), as in
 * llama_simple_mlp.c. Biases and norm weights stay fixed in a decomposition. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/models_internal.h"
#include "vpd/nn.h"

/* parameter slots of a block; optional ones are absent from the table when off */
enum {
    S_LN1, S_Q, S_K, S_V, S_O, S_LN2, S_GATE, S_UP, S_DOWN,
    S_QB, S_KB, S_VB, S_OB, S_GATEB, S_UPB, S_DOWNB, S_QN, S_KN, S_NSLOT
};
/* decomposable layers of a block */
enum { L_Q, L_K, L_V, L_O, L_GATE, L_UP, L_DOWN, L_NLAYER };

static bool slot_on(const vpd_model_config *c, int s) {
    switch (s) {
    case S_QB: case S_KB: case S_VB: return c->qkv_bias;
    case S_OB: return c->o_bias;
    case S_GATEB: case S_UPB: case S_DOWNB: return c->mlp_bias;
    case S_QN: case S_KN: return c->qk_norm;
    default: return true;
    }
}
static int slots_per_block(const vpd_model_config *c) {
    int n = 0;
    for (int s = 0; s < S_NSLOT; s++) n += slot_on(c, s);
    return n;
}
/* parameter index of slot s of block i, or -1 when the slot is off */
static int p_blk(const vpd_model_config *c, int i, int s) {
    if (!slot_on(c, s)) return -1;
    int r = 0;
    for (int t = 0; t < s; t++) r += slot_on(c, t);
    return 1 + slots_per_block(c) * i + r;
}
static int p_norm(const vpd_model_config *c) { return 1 + slots_per_block(c) * c->n_layers; }
static int p_head(const vpd_model_config *c) { return c->tie_embeddings ? 0 : p_norm(c) + 1; }
static inline int l_blk(int i, int w) { return 1 + L_NLAYER * i + w; }
static inline int l_head(const vpd_model_config *c) { return c->tie_embeddings ? -1 : 1 + L_NLAYER * c->n_layers; }

static inline int hdim(const vpd_model_config *c) { return c->head_dim > 0 ? c->head_dim : c->n_embd / c->n_head; }

typedef struct {
    int B, S;
    double *inv_freq; /* [dh/2] */
    int32_t *tok;     /* [N] */
    real *cs;         /* [S_reserved, dh] rope cos | sin */
    real *resid;      /* [2L+1][N, D]: block i input at 2i, after attention 2i+1, final 2L */
    real *ln1, *rstd1, *qp, *kp, *qrstd, *krstd, *q, *k, *v, *att, *atty, *ln2, *rstd2, *gate, *up, *act;
    real *lnf, *rstdf, *tmp;
    /* backward */
    real *dres, *dln, *dlnf, *dq, *dqp, *datty, *dk, *dkp, *dv, *dgate, *dup, *dact;
} hf_impl;

static vpd_status hf_check(const vpd_model_config *c) {
    if (c->vocab_size < 1 || c->n_ctx < 1 || c->n_embd < 1 || c->n_head < 1 || c->n_key_value_heads < 1 ||
        c->n_intermediate < 1 || c->n_layers < 1)
        return vpd_error(VPD_ERR_CONFIG, "llama/qwen: vocab_size, max_position_embeddings, hidden_size, "
                         "num_attention_heads, num_key_value_heads, intermediate_size, num_hidden_layers must be >= 1");
    if (c->head_dim <= 0 && c->n_embd % c->n_head)
        return vpd_error(VPD_ERR_CONFIG, "llama/qwen: hidden_size %d is not divisible by num_attention_heads %d "
                         "(and no head_dim is given)", c->n_embd, c->n_head);
    if (c->n_head % c->n_key_value_heads)
        return vpd_error(VPD_ERR_CONFIG, "llama/qwen: num_attention_heads %d is not divisible by num_key_value_heads %d",
                         c->n_head, c->n_key_value_heads);
    if (hdim(c) % 2)
        return vpd_error(VPD_ERR_CONFIG, "llama/qwen: head dim %d must be even for RoPE", hdim(c));
    if (!(c->rms_eps > 0) || !(c->rope_theta > 0))
        return vpd_error(VPD_ERR_CONFIG, "llama/qwen: rms_norm_eps (%g) and rope_theta (%g) must be > 0", c->rms_eps,
                         c->rope_theta);
    if (c->rope_type != VPD_ROPE_DEFAULT && !(c->rope_factor > 0))
        return vpd_error(VPD_ERR_CONFIG, "llama/qwen: rope_scaling factor must be > 0");
    if (c->rope_type == VPD_ROPE_LLAMA3 &&
        (!(c->rope_high_freq_factor > c->rope_low_freq_factor) || !(c->rope_low_freq_factor > 0) ||
         c->rope_original_max_pos < 1))
        return vpd_error(VPD_ERR_CONFIG, "llama/qwen: rope_scaling llama3 needs high_freq_factor > low_freq_factor > 0 "
                         "and original_max_position_embeddings >= 1");
    return VPD_OK;
}
static int hf_count_params(const vpd_model_config *c) { return 2 + slots_per_block(c) * c->n_layers + !c->tie_embeddings; }
static int hf_count_layers(const vpd_model_config *c) { return 1 + L_NLAYER * c->n_layers + !c->tie_embeddings; }

static void hf_build_params(vpd_model *m) {
    const vpd_model_config *c = &m->cfg;
    int64_t V = c->vocab_size, D = c->n_embd, F = c->n_intermediate, dh = hdim(c);
    int64_t QD = c->n_head * dh, KV = c->n_key_value_heads * dh;
    static const char *const proj[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                       "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    model_add_param(m, true, 2, (int64_t[]){V, D}, "model.embed_tokens.weight");
    for (int i = 0; i < c->n_layers; i++) {
        /* in slot order (p_blk relies on it) */
        int64_t wshape[7][2] = {{QD, D}, {KV, D}, {KV, D}, {D, QD}, {F, D}, {F, D}, {D, F}};
        for (int s = 0; s < S_NSLOT; s++) {
            if (!slot_on(c, s)) continue;
            if (s == S_LN1) model_add_param(m, true, 1, (int64_t[]){D}, "model.layers.%d.input_layernorm.weight", i);
            else if (s == S_LN2)
                model_add_param(m, true, 1, (int64_t[]){D}, "model.layers.%d.post_attention_layernorm.weight", i);
            else if (s >= S_Q && s <= S_O)
                model_add_param(m, true, 2, wshape[s - S_Q], "model.layers.%d.%s.weight", i, proj[s - S_Q]);
            else if (s >= S_GATE && s <= S_DOWN)
                model_add_param(m, true, 2, wshape[s - S_GATE + 4], "model.layers.%d.%s.weight", i, proj[s - S_GATE + 4]);
            else if (s >= S_QB && s <= S_DOWNB)
                model_add_param(m, true, 1, (int64_t[]){wshape[s - S_QB][0]}, "model.layers.%d.%s.bias", i,
                                proj[s - S_QB]);
            else if (s == S_QN) model_add_param(m, true, 1, (int64_t[]){dh}, "model.layers.%d.self_attn.q_norm.weight", i);
            else model_add_param(m, true, 1, (int64_t[]){dh}, "model.layers.%d.self_attn.k_norm.weight", i);
        }
    }
    model_add_param(m, true, 1, (int64_t[]){D}, "model.norm.weight");
    if (!c->tie_embeddings) model_add_param(m, true, 2, (int64_t[]){V, D}, "lm_head.weight");
}

/* transformers' modeling_rope_utils: default, linear and llama3 inverse frequencies */
static void fill_inv_freq(double *inv, const vpd_model_config *c) {
    int dh = hdim(c), half = dh / 2;
    for (int i = 0; i < half; i++) {
        double f = 1.0 / pow(c->rope_theta, (2.0 * i) / dh);
        if (c->rope_type == VPD_ROPE_LINEAR) f /= c->rope_factor;
        if (c->rope_type == VPD_ROPE_LLAMA3) {
            double old = c->rope_original_max_pos, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
            double low_wl = old / lo, high_wl = old / hi, wl = 2.0 * 3.14159265358979323846 / f;
            double g = wl > low_wl ? f / c->rope_factor : f;
            if (!(wl < high_wl) && !(wl > low_wl)) {
                double sm = (old / wl - lo) / (hi - lo);
                g = (1.0 - sm) * g / c->rope_factor + sm * g;
            }
            f = g;
        }
        inv[i] = f;
    }
}

static vpd_status hf_build_layers(vpd_model *m) {
    const vpd_model_config *c = &m->cfg;
    int V = c->vocab_size, D = c->n_embd, F = c->n_intermediate, dh = hdim(c);
    int QD = c->n_head * dh, KV = c->n_key_value_heads * dh;
    hf_impl *t = vpd_calloc(sizeof *t, "llama/qwen state");
    if (!t) return VPD_ERR_MEM;
    m->impl = t;
    t->inv_freq = vpd_malloc(sizeof(double) * (size_t)(dh / 2), "rope frequencies");
    if (!t->inv_freq) return VPD_ERR_MEM;
    fill_inv_freq(t->inv_freq, c);
    real *P = m->params;
#define PW(i, s) model_pslice(m, P, p_blk(c, (i), (s)))
#define PB(i, s) (slot_on(c, (s)) ? PW((i), (s)) : NULL)
    model_add_layer(m, V, D, true, model_pslice(m, P, 0), NULL, "model.embed_tokens");
    for (int i = 0; i < c->n_layers; i++) {
        model_add_layer(m, D, QD, false, PW(i, S_Q), PB(i, S_QB), "model.layers.%d.self_attn.q_proj", i);
        model_add_layer(m, D, KV, false, PW(i, S_K), PB(i, S_KB), "model.layers.%d.self_attn.k_proj", i);
        model_add_layer(m, D, KV, false, PW(i, S_V), PB(i, S_VB), "model.layers.%d.self_attn.v_proj", i);
        model_add_layer(m, QD, D, false, PW(i, S_O), PB(i, S_OB), "model.layers.%d.self_attn.o_proj", i);
        model_add_layer(m, D, F, false, PW(i, S_GATE), PB(i, S_GATEB), "model.layers.%d.mlp.gate_proj", i);
        model_add_layer(m, D, F, false, PW(i, S_UP), PB(i, S_UPB), "model.layers.%d.mlp.up_proj", i);
        model_add_layer(m, F, D, false, PW(i, S_DOWN), PB(i, S_DOWNB), "model.layers.%d.mlp.down_proj", i);
    }
    if (!c->tie_embeddings) model_add_layer(m, D, V, false, model_pslice(m, P, p_head(c)), NULL, "lm_head");
#undef PW
#undef PB
    return VPD_OK;
}

/* transformers' _init_weights: normal(0, initializer_range 0.02) for linears and the
 * embedding, zero biases, unit norms (used by tests; real targets are loaded) */
static void hf_init(vpd_model *m, uint64_t seed) {
    for (int p = 0; p < m->n_pinfo; p++) {
        const char *nm = m->pinfo[p].name;
        size_t n = strlen(nm);
        if (n > 5 && !strcmp(nm + n - 5, ".bias")) model_init_const(m, p, 0);
        else if (m->pinfo[p].ndim == 1) model_init_const(m, p, 1);
        else model_init_normal(m, seed, p, 0.02);
    }
}

static void hf_sync(vpd_model *m) { (void)m; }

static size_t hf_layout(vpd_model *m, int B, int S, vpd_arena *a) {
    const vpd_model_config *c = &m->cfg;
    size_t N = (size_t)B * S, D = c->n_embd, F = c->n_intermediate, L = c->n_layers, H = c->n_head;
    size_t Hkv = c->n_key_value_heads, dh = hdim(c), QD = H * dh, KV = Hkv * dh;
    model_carver cv = {a, 0};
    hf_impl v = {0};
    v.tok = MODEL_CARVE(&cv, int32_t, N);
    v.cs = MODEL_CARVE(&cv, real, (size_t)S * dh);
    v.resid = MODEL_CARVE(&cv, real, (2 * L + 1) * N * D);
    v.ln1 = MODEL_CARVE(&cv, real, L * N * D);
    v.rstd1 = MODEL_CARVE(&cv, real, L * N);
    if (c->qk_norm) {
        v.qp = MODEL_CARVE(&cv, real, L * N * QD);
        v.kp = MODEL_CARVE(&cv, real, L * N * KV);
        v.qrstd = MODEL_CARVE(&cv, real, L * N * H);
        v.krstd = MODEL_CARVE(&cv, real, L * N * Hkv);
        v.dqp = MODEL_CARVE(&cv, real, N * QD);
        v.dkp = MODEL_CARVE(&cv, real, N * KV);
    }
    v.q = MODEL_CARVE(&cv, real, L * N * QD);
    v.k = MODEL_CARVE(&cv, real, L * N * KV);
    v.v = MODEL_CARVE(&cv, real, L * N * KV);
    v.att = MODEL_CARVE(&cv, real, L * (size_t)B * H * S * S);
    v.atty = MODEL_CARVE(&cv, real, L * N * QD);
    v.ln2 = MODEL_CARVE(&cv, real, L * N * D);
    v.rstd2 = MODEL_CARVE(&cv, real, L * N);
    v.gate = MODEL_CARVE(&cv, real, L * N * F);
    v.up = MODEL_CARVE(&cv, real, L * N * F);
    v.act = MODEL_CARVE(&cv, real, L * N * F);
    v.lnf = MODEL_CARVE(&cv, real, N * D);
    v.rstdf = MODEL_CARVE(&cv, real, N);
    v.tmp = MODEL_CARVE(&cv, real, N * D);
    v.dres = MODEL_CARVE(&cv, real, N * D);
    v.dln = MODEL_CARVE(&cv, real, N * D);
    v.dlnf = MODEL_CARVE(&cv, real, N * D);
    v.dq = MODEL_CARVE(&cv, real, N * QD);
    v.datty = MODEL_CARVE(&cv, real, N * QD);
    v.dk = MODEL_CARVE(&cv, real, N * KV);
    v.dv = MODEL_CARVE(&cv, real, N * KV);
    v.dgate = MODEL_CARVE(&cv, real, N * F);
    v.dup = MODEL_CARVE(&cv, real, N * F);
    v.dact = MODEL_CARVE(&cv, real, N * F);
    if (a) {
        hf_impl *t = m->impl;
        v.inv_freq = t->inv_freq;
        *t = v;
        rope_table_fill(t->cs, t->inv_freq, S, (int)dh);
    }
    return cv.bytes;
}

typedef struct {
    real *x, *xmid, *xout;
    real *ln1, *rstd1, *qp, *kp, *qrstd, *krstd, *q, *k, *v, *att, *atty, *ln2, *rstd2, *gate, *up, *act;
} hf_block;

/* per-block views; strides from the reserved capacity m->B · m->S */
static hf_block block_view(const vpd_model *m, int i) {
    const hf_impl *t = m->impl;
    const vpd_model_config *c = &m->cfg;
    size_t Nc = (size_t)m->B * m->S, D = c->n_embd, F = c->n_intermediate, H = c->n_head, Hkv = c->n_key_value_heads;
    size_t dh = hdim(c), QD = H * dh, KV = Hkv * dh, Ac = (size_t)m->B * H * m->S * m->S, I = (size_t)i;
    hf_block b;
    b.x = t->resid + 2 * I * Nc * D;
    b.xmid = t->resid + (2 * I + 1) * Nc * D;
    b.xout = t->resid + (2 * I + 2) * Nc * D;
    b.ln1 = t->ln1 + I * Nc * D;
    b.rstd1 = t->rstd1 + I * Nc;
    b.qp = c->qk_norm ? t->qp + I * Nc * QD : NULL;
    b.kp = c->qk_norm ? t->kp + I * Nc * KV : NULL;
    b.qrstd = c->qk_norm ? t->qrstd + I * Nc * H : NULL;
    b.krstd = c->qk_norm ? t->krstd + I * Nc * Hkv : NULL;
    b.q = t->q + I * Nc * QD;
    b.k = t->k + I * Nc * KV;
    b.v = t->v + I * Nc * KV;
    b.att = t->att + I * Ac;
    b.atty = t->atty + I * Nc * QD;
    b.ln2 = t->ln2 + I * Nc * D;
    b.rstd2 = t->rstd2 + I * Nc;
    b.gate = t->gate + I * Nc * F;
    b.up = t->up + I * Nc * F;
    b.act = t->act + I * Nc * F;
    return b;
}

#define W_(p) (m->params + m->pinfo[(p)].offset)

static void hf_forward(vpd_model *m, const vpd_model_input *in, real *out, vpd_hook *hook, int from) {
    hf_impl *t = m->impl;
    const vpd_model_config *c = &m->cfg;
    if (from < 0) {
        VPD_ASSERT(in->tokens, "llama/qwen forward: tokens are NULL");
        t->B = in->B;
        t->S = in->S;
        memcpy(t->tok, in->tokens, sizeof(int32_t) * (size_t)in->B * (size_t)in->S);
        from = 0;
    }
    int B = t->B, S = t->S, N = B * S, D = c->n_embd, F = c->n_intermediate, V = c->vocab_size;
    int H = c->n_head, Hkv = c->n_key_value_heads, dh = hdim(c);
    real eps = (real)c->rms_eps;
    size_t ND = (size_t)N * D, NF = (size_t)N * F;
    if (from == 0) model_layer_forward(m, hook, 0, NULL, t->tok, t->resid, N);
    /* from inside block i0: the whole block is recomputed from its input (the layers before
     * `from` give what they gave, by the caller's promise); from = lm_head: only the head */
    int i0 = from == 0 ? 0 : from == l_head(c) ? c->n_layers : (from - 1) / L_NLAYER;
    for (int i = i0; i < c->n_layers; i++) {
        hf_block b = block_view(m, i);
        rmsnorm_forward(b.ln1, b.rstd1, b.x, W_(p_blk(c, i, S_LN1)), N, D, eps);
        model_layer_forward(m, hook, l_blk(i, L_Q), b.ln1, NULL, c->qk_norm ? b.qp : b.q, N);
        model_layer_forward(m, hook, l_blk(i, L_K), b.ln1, NULL, c->qk_norm ? b.kp : b.k, N);
        model_layer_forward(m, hook, l_blk(i, L_V), b.ln1, NULL, b.v, N);
        if (c->qk_norm) {
            rmsnorm_forward(b.q, b.qrstd, b.qp, W_(p_blk(c, i, S_QN)), N * H, dh, eps);
            rmsnorm_forward(b.k, b.krstd, b.kp, W_(p_blk(c, i, S_KN)), N * Hkv, dh, eps);
        }
        rope_table_forward(b.q, t->cs, B, S, H, dh);
        rope_table_forward(b.k, t->cs, B, S, Hkv, dh);
        attention_forward(b.atty, b.att, b.q, b.k, b.v, B, S, H, Hkv, dh, true);
        model_layer_forward(m, hook, l_blk(i, L_O), b.atty, NULL, t->tmp, N);
        for (size_t j = 0; j < ND; j++) b.xmid[j] = b.x[j] + t->tmp[j];
        rmsnorm_forward(b.ln2, b.rstd2, b.xmid, W_(p_blk(c, i, S_LN2)), N, D, eps);
        model_layer_forward(m, hook, l_blk(i, L_GATE), b.ln2, NULL, b.gate, N);
        model_layer_forward(m, hook, l_blk(i, L_UP), b.ln2, NULL, b.up, N);
        swiglu_forward(b.act, b.gate, b.up, NF);
        model_layer_forward(m, hook, l_blk(i, L_DOWN), b.act, NULL, t->tmp, N);
        for (size_t j = 0; j < ND; j++) b.xout[j] = b.xmid[j] + t->tmp[j];
    }
    const real *xL = t->resid + (2 * (size_t)c->n_layers) * ((size_t)m->B * m->S) * D;
    if (i0 < c->n_layers || from == 0) rmsnorm_forward(t->lnf, t->rstdf, xL, W_(p_norm(c)), N, D, eps);
    if (c->tie_embeddings) linear_forward(out, t->lnf, W_(0), NULL, N, D, V);
    else model_layer_forward(m, hook, l_head(c), t->lnf, NULL, out, N);
}

static void hf_backward(vpd_model *m, const real *dout, real *dparams, real *dinput, vpd_hook *hook, int to) {
    (void)dinput;
    hf_impl *t = m->impl;
    const vpd_model_config *c = &m->cfg;
    int B = t->B, S = t->S, N = B * S, D = c->n_embd, F = c->n_intermediate, V = c->vocab_size;
    int H = c->n_head, Hkv = c->n_key_value_heads, dh = hdim(c);
    size_t ND = (size_t)N * D, NF = (size_t)N * F, NQ = (size_t)N * H * dh, NK = (size_t)N * Hkv * dh;
    VPD_ASSERT(N > 0, "llama/qwen backward without a forward");
#define DP(p) ((p) >= 0 ? model_pslice(m, dparams, (p)) : NULL)
#define LB(i, w, x, dy, dx, sw, sb) \
    model_layer_backward(m, hook, l_blk((i), (w)), (x), NULL, (dy), (dx), DP(p_blk(c, (i), (sw))), DP(p_blk(c, (i), (sb))), N)
    memset(t->dlnf, 0, sizeof(real) * ND);
    if (c->tie_embeddings) {
        linear_backward(t->dlnf, DP(0), NULL, dout, t->lnf, W_(0), N, D, V);
    } else {
        if (to == l_head(c)) {
            model_layer_backward(m, hook, to, t->lnf, NULL, dout, NULL, NULL, NULL, N);
            return;
        }
        model_layer_backward(m, hook, l_head(c), t->lnf, NULL, dout, t->dlnf, DP(p_head(c)), NULL, N);
    }
    const real *xL = t->resid + (2 * (size_t)c->n_layers) * ((size_t)m->B * m->S) * D;
    memset(t->dres, 0, sizeof(real) * ND);
    rmsnorm_backward(t->dres, DP(p_norm(c)), t->dlnf, xL, W_(p_norm(c)), t->rstdf, N, D);
    int i0 = to <= 0 ? 0 : (to - 1) / L_NLAYER, w0 = to <= 0 ? -1 : (to - 1) % L_NLAYER;
    for (int i = c->n_layers - 1; i >= i0; i--) {
        hf_block b = block_view(m, i);
        bool last = i == i0 && w0 >= 0;
        /* MLP: xout = xmid + down(silu(gate(ln2)) ⊙ up(ln2)); dres is d xout */
        if (last && w0 == L_DOWN) {
            LB(i, L_DOWN, b.act, t->dres, NULL, -1, -1);
            return;
        }
        memset(t->dact, 0, sizeof(real) * NF);
        LB(i, L_DOWN, b.act, t->dres, t->dact, S_DOWN, S_DOWNB);
        memset(t->dgate, 0, sizeof(real) * NF);
        memset(t->dup, 0, sizeof(real) * NF);
        swiglu_backward(t->dgate, t->dup, t->dact, b.gate, b.up, NF);
        if (last && w0 >= L_GATE) {
            for (int w = w0; w <= L_UP; w++)
                model_layer_backward(m, hook, l_blk(i, w), b.ln2, NULL, w == L_GATE ? t->dgate : t->dup, NULL, NULL,
                                     NULL, N);
            return;
        }
        memset(t->dln, 0, sizeof(real) * ND);
        LB(i, L_GATE, b.ln2, t->dgate, t->dln, S_GATE, S_GATEB);
        LB(i, L_UP, b.ln2, t->dup, t->dln, S_UP, S_UPB);
        rmsnorm_backward(t->dres, DP(p_blk(c, i, S_LN2)), t->dln, b.xmid, W_(p_blk(c, i, S_LN2)), b.rstd2, N, D);
        /* attention: xmid = x + o(attn(rope(norm?(q(ln1))), rope(norm?(k(ln1))), v(ln1))) */
        if (last && w0 == L_O) {
            LB(i, L_O, b.atty, t->dres, NULL, -1, -1);
            return;
        }
        memset(t->datty, 0, sizeof(real) * NQ);
        LB(i, L_O, b.atty, t->dres, t->datty, S_O, S_OB);
        memset(t->dq, 0, sizeof(real) * NQ);
        memset(t->dk, 0, sizeof(real) * NK);
        memset(t->dv, 0, sizeof(real) * NK);
        attention_backward(t->dq, t->dk, t->dv, t->datty, b.att, b.q, b.k, b.v, B, S, H, Hkv, dh, true);
        rope_table_backward(t->dq, t->cs, B, S, H, dh);
        rope_table_backward(t->dk, t->cs, B, S, Hkv, dh);
        real *gq = t->dq, *gk = t->dk;
        if (c->qk_norm) {
            memset(t->dqp, 0, sizeof(real) * NQ);
            memset(t->dkp, 0, sizeof(real) * NK);
            rmsnorm_backward(t->dqp, DP(p_blk(c, i, S_QN)), t->dq, b.qp, W_(p_blk(c, i, S_QN)), b.qrstd, N * H, dh);
            rmsnorm_backward(t->dkp, DP(p_blk(c, i, S_KN)), t->dk, b.kp, W_(p_blk(c, i, S_KN)), b.krstd, N * Hkv, dh);
            gq = t->dqp;
            gk = t->dkp;
        }
        if (last) { /* w0 is q, k or v: their input gradient only reaches ln1 and below */
            for (int w = w0; w <= L_V; w++)
                model_layer_backward(m, hook, l_blk(i, w), b.ln1, NULL, w == L_Q ? gq : w == L_K ? gk : t->dv, NULL, NULL,
                                     NULL, N);
            return;
        }
        memset(t->dln, 0, sizeof(real) * ND);
        LB(i, L_Q, b.ln1, gq, t->dln, S_Q, S_QB);
        LB(i, L_K, b.ln1, gk, t->dln, S_K, S_KB);
        LB(i, L_V, b.ln1, t->dv, t->dln, S_V, S_VB);
        rmsnorm_backward(t->dres, DP(p_blk(c, i, S_LN1)), t->dln, b.x, W_(p_blk(c, i, S_LN1)), b.rstd1, N, D);
    }
    if (w0 >= 0) return;
    model_layer_backward(m, hook, 0, NULL, t->tok, t->dres, NULL, DP(0), NULL, N);
#undef LB
#undef DP
}
#undef W_

static void hf_destroy(vpd_model *m) {
    hf_impl *t = m->impl;
    vpd_free(t->inv_freq);
    vpd_free(t);
    m->impl = NULL;
}

const vpd_model_ops vpd_hf_llama_ops = {
    .check = hf_check,
    .count_params = hf_count_params,
    .count_layers = hf_count_layers,
    .build_params = hf_build_params,
    .build_layers = hf_build_layers,
    .init = hf_init,
    .sync = hf_sync,
    .layout = hf_layout,
    .forward = hf_forward,
    .backward = hf_backward,
    .destroy = hf_destroy,
};
