/* The block engine of the Hugging Face GPT-2 and GPT-NeoX targets (see hf_gptx.h for the
 * model). Legend: B sequences, S positions, N = B·S tokens, D hidden, H heads, dh = D/H,
 * F MLP width, V vocabulary, L blocks, R rotary dims per head (0: no rotary).
 *
 * Activations per block (strides use the reserved capacity, as llama_simple_mlp.c):
 *   resid [2L+1][N,D]  block input at 2i, after attention at 2i+1 (parallel: x + att), out 2L
 *   ln1, ln2 [N,D] + mean/rstd [N]; qkv [N,3D] the fused output as the hook wrote it;
 *   q, k, v [N,D] split out of qkv ([N,H,dh], q and k rotated); att [B,H,S,S]; atty [N,D];
 *   fc, gel [N,F].
 * forward_from / backward_to follow llama_simple_mlp.c: a pass from layer l restarts in the
 * block of l at that layer, reusing the kept activations before it; backward to l stops
 * after l's hook (dx = NULL there). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "models/hf_gptx.h"
#include "vpd/nn.h"

typedef struct {
    int32_t *tok, *pos;          /* [N] input copy, position ids */
    real *resid, *ln1, *mean1, *rstd1, *qkv, *q, *k, *v, *att, *atty, *ln2, *mean2, *rstd2, *fc, *gel;
    real *lnf, *meanf, *rstdf, *tmp;
    real *dres, *dln1, *dln2, *dqkv, *dq, *dk, *dv, *datty, *dfc, *dgel, *dlnf;
} gptx_acts;

typedef struct {
    int B, S;
    int p_wte, p_wpe, p_lnf_w, p_lnf_b, p_head;
    int *pb; /* [L][GP_N] */
    bool qkv_per_head;
    gptx_acts a;
} gptx_impl;

static inline int l_blk(int i, int w) { return 1 + GL_N * i + w; }

vpd_status gptx_check(const vpd_model_config *c, const char *what, bool rotary) {
    if (c->vocab_size < 1 || c->n_ctx < 1 || c->n_embd < 1 || c->n_head < 1 || c->n_intermediate < 1 || c->n_layers < 1)
        return vpd_error(VPD_ERR_CONFIG, "%s: vocab_size, context, hidden size, heads, MLP width and layers must all be >= 1",
                         what);
    if (c->n_embd % c->n_head)
        return vpd_error(VPD_ERR_CONFIG, "%s: hidden size %d is not divisible by the %d heads", what, c->n_embd, c->n_head);
    if (!(c->ln_eps > 0)) return vpd_error(VPD_ERR_CONFIG, "%s: LayerNorm eps %g must be > 0", what, c->ln_eps);
    if (rotary) {
        int dh = c->n_embd / c->n_head;
        if (c->rotary_dim < 2 || c->rotary_dim > dh || c->rotary_dim % 2)
            return vpd_error(VPD_ERR_CONFIG, "%s: rotary dims per head %d (rotary_pct %g of head dim %d) must be even and in "
                             "[2, %d]", what, c->rotary_dim, c->rotary_pct, dh, dh);
        if (!(c->rope_theta > 0)) return vpd_error(VPD_ERR_CONFIG, "%s: rotary base %g must be > 0", what, c->rope_theta);
    }
    return VPD_OK;
}

static int find_fmt(const vpd_model *m, const char *fmt, int i) {
    char name[160];
    snprintf(name, sizeof name, fmt, i);
    int p = vpd_model_find_param(m, name);
    VPD_ASSERT(p >= 0, "%s: parameter '%s' missing from the table", vpd_model_kind_name(m->cfg.kind), name);
    return p;
}

vpd_status gptx_build_layers(vpd_model *m, const gptx_names *nm) {
    const vpd_model_config *c = &m->cfg;
    int V = c->vocab_size, D = c->n_embd, F = c->n_intermediate, L = c->n_layers;
    gptx_impl *t = vpd_calloc(sizeof *t, "gpt state");
    if (!t) return VPD_ERR_MEM;
    m->impl = t;
    t->pb = vpd_calloc(sizeof(int) * (size_t)L * GP_N, "gpt parameter index");
    if (!t->pb) return VPD_ERR_MEM;
    t->qkv_per_head = nm->qkv_per_head;
    t->p_wte = find_fmt(m, nm->wte, 0);
    t->p_wpe = nm->wpe ? find_fmt(m, nm->wpe, 0) : -1;
    t->p_lnf_w = find_fmt(m, nm->lnf_w, 0);
    t->p_lnf_b = find_fmt(m, nm->lnf_b, 0);
    t->p_head = find_fmt(m, nm->head_w, 0);
    for (int i = 0; i < L; i++)
        for (int s = 0; s < GP_N; s++) t->pb[i * GP_N + s] = find_fmt(m, nm->blk[s], i);
    real *P = m->params;
    char name[160];
    model_add_layer(m, V, D, true, model_pslice(m, P, t->p_wte), NULL, "%s", nm->emb_layer);
    static const int w_slot[GL_N] = {GP_QKV_W, GP_O_W, GP_FC_W, GP_DOWN_W};
    static const int b_slot[GL_N] = {GP_QKV_B, GP_O_B, GP_FC_B, GP_DOWN_B};
    const int din[GL_N] = {D, D, D, F}, dout[GL_N] = {3 * D, D, F, D};
    for (int i = 0; i < L; i++)
        for (int w = 0; w < GL_N; w++) {
            snprintf(name, sizeof name, nm->blk_layer[w], i);
            model_add_layer(m, din[w], dout[w], false, model_pslice(m, P, t->pb[i * GP_N + w_slot[w]]),
                            model_pslice(m, P, t->pb[i * GP_N + b_slot[w]]), "%s", name);
        }
    model_add_layer(m, D, V, false, model_pslice(m, P, t->p_head), NULL, "%s", nm->head_layer);
    return VPD_OK;
}

int gptx_pblk(const vpd_model *m, int i, int slot) { return ((const gptx_impl *)m->impl)->pb[i * GP_N + slot]; }

void gptx_sync(vpd_model *m) { (void)m; /* layers point at params directly */ }

void gptx_destroy(vpd_model *m) {
    gptx_impl *t = m->impl;
    if (t) vpd_free(t->pb);
    vpd_free(t);
    m->impl = NULL;
}

size_t gptx_layout(vpd_model *m, int B, int S, vpd_arena *a) {
    const vpd_model_config *c = &m->cfg;
    size_t N = (size_t)B * S, D = c->n_embd, F = c->n_intermediate, L = c->n_layers, H = c->n_head;
    model_carver cv = {a, 0};
    gptx_acts v = {0};
    v.tok = MODEL_CARVE(&cv, int32_t, N);
    v.pos = MODEL_CARVE(&cv, int32_t, N);
    v.resid = MODEL_CARVE(&cv, real, (2 * L + 1) * N * D);
    v.ln1 = MODEL_CARVE(&cv, real, L * N * D);
    v.mean1 = MODEL_CARVE(&cv, real, L * N);
    v.rstd1 = MODEL_CARVE(&cv, real, L * N);
    v.qkv = MODEL_CARVE(&cv, real, L * N * 3 * D);
    v.q = MODEL_CARVE(&cv, real, L * N * D);
    v.k = MODEL_CARVE(&cv, real, L * N * D);
    v.v = MODEL_CARVE(&cv, real, L * N * D);
    v.att = MODEL_CARVE(&cv, real, L * (size_t)B * H * S * S);
    v.atty = MODEL_CARVE(&cv, real, L * N * D);
    v.ln2 = MODEL_CARVE(&cv, real, L * N * D);
    v.mean2 = MODEL_CARVE(&cv, real, L * N);
    v.rstd2 = MODEL_CARVE(&cv, real, L * N);
    v.fc = MODEL_CARVE(&cv, real, L * N * F);
    v.gel = MODEL_CARVE(&cv, real, L * N * F);
    v.lnf = MODEL_CARVE(&cv, real, N * D);
    v.meanf = MODEL_CARVE(&cv, real, N);
    v.rstdf = MODEL_CARVE(&cv, real, N);
    v.tmp = MODEL_CARVE(&cv, real, N * D);
    v.dres = MODEL_CARVE(&cv, real, N * D);
    v.dln1 = MODEL_CARVE(&cv, real, N * D);
    v.dln2 = MODEL_CARVE(&cv, real, N * D);
    v.dqkv = MODEL_CARVE(&cv, real, N * 3 * D);
    v.dq = MODEL_CARVE(&cv, real, N * D);
    v.dk = MODEL_CARVE(&cv, real, N * D);
    v.dv = MODEL_CARVE(&cv, real, N * D);
    v.datty = MODEL_CARVE(&cv, real, N * D);
    v.dfc = MODEL_CARVE(&cv, real, N * F);
    v.dgel = MODEL_CARVE(&cv, real, N * F);
    v.dlnf = MODEL_CARVE(&cv, real, N * D);
    if (a) ((gptx_impl *)m->impl)->a = v;
    return cv.bytes;
}

typedef struct {
    real *x, *xmid, *xout;
    real *ln1, *mean1, *rstd1, *qkv, *q, *k, *v, *att, *atty, *ln2, *mean2, *rstd2, *fc, *gel;
} gptx_block;

static gptx_block block_view(const vpd_model *m, int i) {
    const gptx_acts *t = &((const gptx_impl *)m->impl)->a;
    const vpd_model_config *c = &m->cfg;
    size_t Nc = (size_t)m->B * m->S, D = c->n_embd, F = c->n_intermediate, H = c->n_head;
    size_t Ac = (size_t)m->B * H * m->S * m->S, ii = (size_t)i;
    gptx_block b;
    b.x = t->resid + (2 * ii) * Nc * D;
    b.xmid = t->resid + (2 * ii + 1) * Nc * D;
    b.xout = t->resid + (2 * ii + 2) * Nc * D;
    b.ln1 = t->ln1 + ii * Nc * D;
    b.mean1 = t->mean1 + ii * Nc;
    b.rstd1 = t->rstd1 + ii * Nc;
    b.qkv = t->qkv + ii * Nc * 3 * D;
    b.q = t->q + ii * Nc * D;
    b.k = t->k + ii * Nc * D;
    b.v = t->v + ii * Nc * D;
    b.att = t->att + ii * Ac;
    b.atty = t->atty + ii * Nc * D;
    b.ln2 = t->ln2 + ii * Nc * D;
    b.mean2 = t->mean2 + ii * Nc;
    b.rstd2 = t->rstd2 + ii * Nc;
    b.fc = t->fc + ii * Nc * F;
    b.gel = t->gel + ii * Nc * F;
    return b;
}

/* Column offset of (part p ∈ {q,k,v}, head h) inside a fused row of 3D values. */
static inline size_t qkv_col(bool per_head, int p, int h, int D, int dh) {
    return per_head ? (size_t)h * 3 * dh + (size_t)p * dh : (size_t)p * D + (size_t)h * dh;
}

/* qkv [N,3D] -> q, k, v [N,D] (forward), or the reverse accumulation (backward) */
static void qkv_split(const gptx_impl *t, const real *qkv, real *q, real *k, real *v, int N, int D, int H) {
    int dh = D / H;
    real *dst[3] = {q, k, v};
    for (int n = 0; n < N; n++) {
        const real *row = qkv + (size_t)n * 3 * D;
        for (int p = 0; p < 3; p++)
            for (int h = 0; h < H; h++)
                memcpy(dst[p] + (size_t)n * D + (size_t)h * dh, row + qkv_col(t->qkv_per_head, p, h, D, dh),
                       sizeof(real) * (size_t)dh);
    }
}

static void qkv_merge(const gptx_impl *t, real *dqkv, const real *dq, const real *dk, const real *dv, int N, int D, int H) {
    int dh = D / H;
    const real *src[3] = {dq, dk, dv};
    for (int n = 0; n < N; n++) {
        real *row = dqkv + (size_t)n * 3 * D;
        for (int p = 0; p < 3; p++)
            for (int h = 0; h < H; h++)
                memcpy(row + qkv_col(t->qkv_per_head, p, h, D, dh), src[p] + (size_t)n * D + (size_t)h * dh,
                       sizeof(real) * (size_t)dh);
    }
}

static inline void add3(real *y, const real *a, const real *b, size_t n) {
    for (size_t j = 0; j < n; j++) y[j] = a[j] + b[j];
}

void gptx_forward(vpd_model *m, const vpd_model_input *in, real *out, vpd_hook *hook, int from) {
    gptx_impl *t = m->impl;
    gptx_acts *A = &t->a;
    const vpd_model_config *c = &m->cfg;
    if (from < 0) {
        VPD_ASSERT(in->tokens, "%s forward: tokens are NULL", vpd_model_kind_name(c->kind));
        t->B = in->B;
        t->S = in->S;
        memcpy(A->tok, in->tokens, sizeof(int32_t) * (size_t)in->B * (size_t)in->S);
        for (int b = 0; b < in->B; b++)
            for (int s = 0; s < in->S; s++) A->pos[b * in->S + s] = s;
        from = 0;
    }
    int B = t->B, S = t->S, N = B * S, D = c->n_embd, F = c->n_intermediate, H = c->n_head, dh = D / H;
    int L = c->n_layers, l_head = 1 + GL_N * L;
    real eps = (real)c->ln_eps, theta = (real)c->rope_theta;
    gelu_kind gk = c->gelu_tanh ? GELU_TANH : GELU_ERF;
    const real *P = m->params;
    size_t ND = (size_t)N * D;
#define W(p) (P + m->pinfo[(p)].offset)
#define PB(i, s) W(t->pb[(i) * GP_N + (s)])
    if (from == 0) {
        model_layer_forward(m, hook, 0, NULL, A->tok, A->resid, N); /* x = wte[tok] */
        if (t->p_wpe >= 0) { /* + wpe[pos] (fixed, not a hook layer) */
            const real *wpe = W(t->p_wpe);
            for (int n = 0; n < N; n++) {
                real *xr = A->resid + (size_t)n * D;
                const real *pr = wpe + (size_t)A->pos[n] * D;
                for (int d = 0; d < D; d++) xr[d] += pr[d];
            }
        }
    }
    if (from < l_head) {
        int i0 = from == 0 ? 0 : (from - 1) / GL_N, w0 = from == 0 ? -1 : (from - 1) % GL_N;
        for (int i = i0; i < L; i++) {
            gptx_block b = block_view(m, i);
            bool first = i == i0;
            if (!first || w0 <= GL_O) {
                if (!first || w0 <= GL_QKV) {
                    if (!first || w0 < 0) layernorm_forward(b.ln1, b.mean1, b.rstd1, b.x, PB(i, GP_LN1_W), PB(i, GP_LN1_B), N, D, eps);
                    model_layer_forward(m, hook, l_blk(i, GL_QKV), b.ln1, NULL, b.qkv, N);
                    qkv_split(t, b.qkv, b.q, b.k, b.v, N, D, H);
                    if (c->rotary_dim > 0) {
                        rope_partial_forward(b.q, B, S, H, dh, c->rotary_dim, theta);
                        rope_partial_forward(b.k, B, S, H, dh, c->rotary_dim, theta);
                    }
                    attention_forward(b.atty, b.att, b.q, b.k, b.v, B, S, H, H, dh, true);
                }
                model_layer_forward(m, hook, l_blk(i, GL_O), b.atty, NULL, A->tmp, N);
                add3(b.xmid, b.x, A->tmp, ND);
                const real *ln2_in = c->parallel_residual ? b.x : b.xmid;
                layernorm_forward(b.ln2, b.mean2, b.rstd2, ln2_in, PB(i, GP_LN2_W), PB(i, GP_LN2_B), N, D, eps);
            }
            if (!first || w0 <= GL_FC) {
                model_layer_forward(m, hook, l_blk(i, GL_FC), b.ln2, NULL, b.fc, N);
                gelu_forward(b.gel, b.fc, (size_t)N * F, gk);
            }
            model_layer_forward(m, hook, l_blk(i, GL_DOWN), b.gel, NULL, A->tmp, N);
            add3(b.xout, b.xmid, A->tmp, ND);
        }
        const real *xL = A->resid + (2 * (size_t)L) * ((size_t)m->B * m->S) * D;
        layernorm_forward(A->lnf, A->meanf, A->rstdf, xL, W(t->p_lnf_w), W(t->p_lnf_b), N, D, eps);
    }
    model_layer_forward(m, hook, l_head, A->lnf, NULL, out, N);
#undef PB
#undef W
}

void gptx_backward(vpd_model *m, const real *dout, real *dparams, real *dinput, vpd_hook *hook, int to) {
    (void)dinput; /* token inputs have no gradient */
    gptx_impl *t = m->impl;
    gptx_acts *A = &t->a;
    const vpd_model_config *c = &m->cfg;
    int B = t->B, S = t->S, N = B * S, D = c->n_embd, F = c->n_intermediate, H = c->n_head, dh = D / H;
    int L = c->n_layers, l_head = 1 + GL_N * L;
    real theta = (real)c->rope_theta;
    gelu_kind gk = c->gelu_tanh ? GELU_TANH : GELU_ERF;
    bool par = c->parallel_residual;
    VPD_ASSERT(N > 0, "%s backward without a forward", vpd_model_kind_name(c->kind));
    const real *P = m->params;
    size_t ND = (size_t)N * D, NF = (size_t)N * F;
#define DP(p) model_pslice(m, dparams, (p))
#define W(p) (P + m->pinfo[(p)].offset)
#define PI(i, s) (t->pb[(i) * GP_N + (s)])
    /* head and LNf */
    if (to == l_head) {
        model_layer_backward(m, hook, l_head, A->lnf, NULL, dout, NULL, NULL, NULL, N);
        return;
    }
    memset(A->dlnf, 0, sizeof(real) * ND);
    model_layer_backward(m, hook, l_head, A->lnf, NULL, dout, A->dlnf, DP(t->p_head), NULL, N);
    const real *xL = A->resid + (2 * (size_t)L) * ((size_t)m->B * m->S) * D;
    memset(A->dres, 0, sizeof(real) * ND);
    layernorm_backward(A->dres, DP(t->p_lnf_w), DP(t->p_lnf_b), A->dlnf, xL, W(t->p_lnf_w), A->meanf, A->rstdf, N, D);
    int i0 = to <= 0 ? 0 : (to - 1) / GL_N, w0 = to <= 0 ? -1 : (to - 1) % GL_N;
    for (int i = L - 1; i >= i0; i--) {
        gptx_block b = block_view(m, i);
        bool last = i == i0 && w0 >= 0;
        /* MLP: xout = xmid + down(gelu(fc(ln2))); dres is d xout = (identity path) d xmid */
        if (last && w0 == GL_DOWN) {
            model_layer_backward(m, hook, l_blk(i, GL_DOWN), b.gel, NULL, A->dres, NULL, NULL, NULL, N);
            return;
        }
        memset(A->dgel, 0, sizeof(real) * NF);
        model_layer_backward(m, hook, l_blk(i, GL_DOWN), b.gel, NULL, A->dres, A->dgel, DP(PI(i, GP_DOWN_W)),
                             DP(PI(i, GP_DOWN_B)), N);
        memset(A->dfc, 0, sizeof(real) * NF);
        gelu_backward(A->dfc, A->dgel, b.fc, NF, gk);
        /* parallel: fc's input gradient only reaches x (below this block's o/qkv) */
        if (last && (w0 == GL_FC || par)) {
            model_layer_backward(m, hook, l_blk(i, GL_FC), b.ln2, NULL, A->dfc, NULL, NULL, NULL, N);
            if (w0 == GL_FC) return;
        } else {
            memset(A->dln2, 0, sizeof(real) * ND);
            model_layer_backward(m, hook, l_blk(i, GL_FC), b.ln2, NULL, A->dfc, A->dln2, DP(PI(i, GP_FC_W)),
                                 DP(PI(i, GP_FC_B)), N);
            /* sequential: LN2's input is xmid, its gradient joins d xmid before attention's
             * backward; parallel: LN2's input is x, added after attention (below) */
            if (!par)
                layernorm_backward(A->dres, DP(PI(i, GP_LN2_W)), DP(PI(i, GP_LN2_B)), A->dln2, b.xmid,
                                   W(PI(i, GP_LN2_W)), b.mean2, b.rstd2, N, D);
        }
        /* attention: xmid = x + o(attn(...)), d att out = d xmid = dres */
        if (last && w0 == GL_O) {
            model_layer_backward(m, hook, l_blk(i, GL_O), b.atty, NULL, A->dres, NULL, NULL, NULL, N);
            return;
        }
        memset(A->datty, 0, sizeof(real) * ND);
        model_layer_backward(m, hook, l_blk(i, GL_O), b.atty, NULL, A->dres, A->datty, DP(PI(i, GP_O_W)),
                             DP(PI(i, GP_O_B)), N);
        memset(A->dq, 0, sizeof(real) * ND);
        memset(A->dk, 0, sizeof(real) * ND);
        memset(A->dv, 0, sizeof(real) * ND);
        attention_backward(A->dq, A->dk, A->dv, A->datty, b.att, b.q, b.k, b.v, B, S, H, H, dh, true);
        if (c->rotary_dim > 0) {
            rope_partial_backward(A->dq, B, S, H, dh, c->rotary_dim, theta);
            rope_partial_backward(A->dk, B, S, H, dh, c->rotary_dim, theta);
        }
        qkv_merge(t, A->dqkv, A->dq, A->dk, A->dv, N, D, H);
        if (last) { /* w0 == GL_QKV */
            model_layer_backward(m, hook, l_blk(i, GL_QKV), b.ln1, NULL, A->dqkv, NULL, NULL, NULL, N);
            return;
        }
        memset(A->dln1, 0, sizeof(real) * ND);
        model_layer_backward(m, hook, l_blk(i, GL_QKV), b.ln1, NULL, A->dqkv, A->dln1, DP(PI(i, GP_QKV_W)),
                             DP(PI(i, GP_QKV_B)), N);
        if (par)
            layernorm_backward(A->dres, DP(PI(i, GP_LN2_W)), DP(PI(i, GP_LN2_B)), A->dln2, b.x, W(PI(i, GP_LN2_W)),
                               b.mean2, b.rstd2, N, D);
        layernorm_backward(A->dres, DP(PI(i, GP_LN1_W)), DP(PI(i, GP_LN1_B)), A->dln1, b.x, W(PI(i, GP_LN1_W)),
                           b.mean1, b.rstd1, N, D);
    }
    if (w0 >= 0) return; /* not reached: block i0 returns */
    if (t->p_wpe >= 0 && dparams) embedding_backward(DP(t->p_wpe), A->dres, A->pos, N, c->n_ctx, D);
    model_layer_backward(m, hook, 0, NULL, A->tok, A->dres, NULL, DP(t->p_wte), NULL, N);
#undef DP
#undef W
#undef PI
}
