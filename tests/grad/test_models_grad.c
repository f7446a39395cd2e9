/* Finite-difference checks (double build) of the three models' backward passes, and of
 * the hook protocol.
 * For each tiny model: f(θ, x) = Σ out ⊙ R with fixed random R, so dout = R.
 *  1. no hook: dparams (every tensor, tied weights summed) and dinput (toy models)
 *     against central differences of f; rel err <= 1e-6.
 *  2. a hook that behaves as the plain layer and keeps its own dW, db: hook gradients
 *     mapped back onto the parameters (TMS linear2's transposed copy onto
 *     linear1.weight) plus dparams of the non-hooked tensors equal the same FD gradient,
 *     and the hook's forward equals the plain forward.
 *  3. the hook is called exactly once per layer in forward and in backward, backward
 *     ends at the first layer, and the layer/parameter tables carry the expected
 *     PyTorch names.
 *  4. vpd_model_forward_from / vpd_model_backward_to (the masked passes' shortcut): after a
 *     plain forward and another pass from some other layer, the forward from layer l with a
 *     hook that changes the layers >= l equals the whole forward with that hook bit for bit,
 *     and the backward to l gives the same hook gradients, calling the hook for layers >= l
 *     only and with dx = NULL at l. */
#include "testutil.h"
#include "vpd/models.h"
#include "vpd/nn.h"

#define MAXL 32

typedef struct {
    vpd_hook base;
    vpd_model *m;
    real *dW[MAXL], *db[MAXL]; /* hook-owned gradients, per layer */
    int fwd_calls[MAXL], bwd_calls[MAXL];
    int last_bwd;
    int shift_from; /* layers >= shift_from add 0.1 to their output (section 4); else n_layers */
    bool dx_null[MAXL];
} plain_hook;

static void hk_fwd(vpd_hook *h, int l, const real *x, const int32_t *tok, real *y, int N) {
    plain_hook *p = (plain_hook *)h;
    const vpd_layer_info *L = &p->m->layers[l];
    p->fwd_calls[l]++;
    if (L->embedding) embedding_forward(y, tok, L->W, N, L->d_in, L->d_out);
    else linear_forward(y, x, L->W, L->b, N, L->d_in, L->d_out);
    if (l >= p->shift_from)
        for (size_t i = 0; i < (size_t)N * L->d_out; i++) y[i] += (real)0.1;
}

static void hk_bwd(vpd_hook *h, int l, const real *x, const int32_t *tok, const real *dy, real *dx, int N) {
    plain_hook *p = (plain_hook *)h;
    const vpd_layer_info *L = &p->m->layers[l];
    p->bwd_calls[l]++;
    p->last_bwd = l;
    p->dx_null[l] = dx == NULL;
    if (L->embedding) {
        CHECK(dx == NULL && x == NULL, "embedding layer %s: hook got x or dx", L->name);
        embedding_backward(p->dW[l], dy, tok, N, L->d_in, L->d_out);
    } else {
        linear_backward(dx, p->dW[l], L->b ? p->db[l] : NULL, dy, x, L->W, N, L->d_in, L->d_out);
    }
}

typedef struct {
    vpd_model *m;
    vpd_model_input in;
    real *out, *R;
    size_t n_out;
} fd_ctx;

static double f_eval(void *vctx) {
    fd_ctx *c = vctx;
    vpd_model_sync(c->m); /* the FD perturbs params directly: refresh TMS's transposed copy */
    vpd_model_forward(c->m, &c->in, c->out, NULL);
    double s = 0;
    for (size_t i = 0; i < c->n_out; i++) s += (double)c->out[i] * c->R[i];
    return s;
}

static void check_names(vpd_model *m, const char *const *layers, int nl, const char *const *params, int np) {
    CHECK(m->n_layers == nl, "%s: %d layers, expected %d", vpd_model_kind_name(m->cfg.kind), m->n_layers, nl);
    for (int i = 0; i < nl && i < m->n_layers; i++)
        CHECK(!strcmp(m->layers[i].name, layers[i]) && vpd_model_find_layer(m, layers[i]) == i,
              "layer %d is '%s', expected '%s'", i, m->layers[i].name, layers[i]);
    CHECK(m->n_pinfo == np, "%s: %d parameter tensors, expected %d", vpd_model_kind_name(m->cfg.kind), m->n_pinfo, np);
    for (int i = 0; i < np && i < m->n_pinfo; i++)
        CHECK(!strcmp(m->pinfo[i].name, params[i]) && vpd_model_find_param(m, params[i]) == i,
              "param %d is '%s', expected '%s'", i, m->pinfo[i].name, params[i]);
    CHECK(vpd_model_find_layer(m, "no.such.layer") == -1 && vpd_model_find_param(m, "nope") == -1, "find of a missing name");
}

/* the whole layer table and the first np of np_total parameter names */
static void check_names_prefix(vpd_model *m, const char *const *layers, int nl, const char *const *params, int np,
                               int np_total) {
    CHECK(m->n_layers == nl, "%s: %d layers, expected %d", vpd_model_kind_name(m->cfg.kind), m->n_layers, nl);
    for (int i = 0; i < nl && i < m->n_layers; i++)
        CHECK(!strcmp(m->layers[i].name, layers[i]) && vpd_model_find_layer(m, layers[i]) == i,
              "layer %d is '%s', expected '%s'", i, m->layers[i].name, layers[i]);
    CHECK(m->n_pinfo == np_total, "%s: %d parameter tensors, expected %d", vpd_model_kind_name(m->cfg.kind), m->n_pinfo,
          np_total);
    for (int i = 0; i < np && i < m->n_pinfo; i++)
        CHECK(!strcmp(m->pinfo[i].name, params[i]), "param %d is '%s', expected '%s'", i, m->pinfo[i].name, params[i]);
}

static void run_model(const char *label, const vpd_model_config *cfg, int B, int S) {
    fprintf(stderr, "%s\n", label);
    vpd_model m;
    CHECK(vpd_model_create(&m, cfg) == VPD_OK, "create %s: %s", label, vpd_last_error());
    vpd_model_init_params(&m, 7);
    /* larger, non-degenerate values than the inits: O(1) activations, no dead ReLUs
     * by construction, RMSNorm weights around 1 */
    for (int p = 0; p < m.n_pinfo; p++) {
        tu_fill(m.params + m.pinfo[p].offset, m.pinfo[p].numel, 100 + p, 0.6);
        if (m.pinfo[p].ndim == 1 && vpd_model_is_lm(cfg->kind))
            for (size_t i = 0; i < m.pinfo[p].numel; i++) m.params[m.pinfo[p].offset + i] += 1;
    }
    vpd_model_sync(&m);
    CHECK(vpd_model_reserve(&m, B, S) == VPD_OK, "reserve: %s", vpd_last_error());

    bool lm = vpd_model_is_lm(cfg->kind);
    size_t n_out = vpd_model_out_size(&m, B, S), n_in = lm ? (size_t)B * S : (size_t)B * cfg->n_features;
    real *out = calloc(n_out, sizeof(real)), *out_h = calloc(n_out, sizeof(real)), *R = calloc(n_out, sizeof(real));
    real *dparams = calloc(m.n_params, sizeof(real)), *ghook = calloc(m.n_params, sizeof(real));
    real *x = NULL, *dx = NULL, *dx_h = NULL;
    int32_t *tok = NULL;
    tu_fill(R, n_out, 3, 1.0);
    fd_ctx c = {&m, {.B = B, .S = S}, out, R, n_out};
    if (lm) {
        tok = calloc(n_in, sizeof *tok);
        for (size_t i = 0; i < n_in; i++) tok[i] = (int32_t)((i * 7 + 3) % (size_t)cfg->vocab_size);
        tok[1] = tok[0]; /* a repeated token: embedding gradients must accumulate */
        c.in.tokens = tok;
    } else {
        x = calloc(n_in, sizeof *x);
        dx = calloc(n_in, sizeof *dx);
        dx_h = calloc(n_in, sizeof *dx_h);
        tu_fill(x, n_in, 5, 1.0);
        for (size_t i = 0; i < n_in; i++) x[i] = fabs(x[i]); /* features are >= 0 */
        c.in.x = x;
    }

    /* 1. plain backward vs FD */
    f_eval(&c);
    vpd_model_backward(&m, R, dparams, dx, NULL);
    for (int p = 0; p < m.n_pinfo; p++) {
        char nm[128];
        snprintf(nm, sizeof nm, "%s %s", label, m.pinfo[p].name);
        double e = tu_fd_check(f_eval, &c, m.params + m.pinfo[p].offset, dparams + m.pinfo[p].offset,
                               m.pinfo[p].numel, 1e-5, nm);
        CHECK(e <= 1e-6, "%s: fd rel err %.3e", nm, e);
    }
    if (!lm) {
        double e = tu_fd_check(f_eval, &c, x, dx, n_in, 1e-5, "input x");
        CHECK(e <= 1e-6, "%s input: fd rel err %.3e", label, e);
    }

    /* 2. the same through a pass-through hook */
    plain_hook h = {.base = {hk_fwd, hk_bwd}, .m = &m, .last_bwd = -1, .shift_from = m.n_layers};
    VPD_ASSERT(m.n_layers <= MAXL, "too many layers for the test");
    for (int l = 0; l < m.n_layers; l++) {
        h.dW[l] = calloc((size_t)m.layers[l].d_in * m.layers[l].d_out, sizeof(real));
        h.db[l] = calloc((size_t)m.layers[l].d_out, sizeof(real));
    }
    f_eval(&c);
    vpd_model_forward(&m, &c.in, out_h, &h.base);
    CHECK(memcmp(out, out_h, n_out * sizeof(real)) == 0, "%s: hooked forward differs from the plain forward", label);
    vpd_model_backward(&m, R, ghook, dx_h, &h.base);
    for (int l = 0; l < m.n_layers; l++) {
        const vpd_layer_info *L = &m.layers[l];
        CHECK(h.fwd_calls[l] == 1 && h.bwd_calls[l] == 1, "%s layer %s: %d forward / %d backward hook calls",
              label, L->name, h.fwd_calls[l], h.bwd_calls[l]);
        int pw = -1, pb = -1;
        for (int p = 0; p < m.n_pinfo; p++) {
            if (m.params + m.pinfo[p].offset == L->W) pw = p;
            if (L->b && m.params + m.pinfo[p].offset == L->b) pb = p;
        }
        size_t nw = (size_t)L->d_in * L->d_out;
        if (pw >= 0) {
            vpd_axpy(nw, 1, h.dW[l], ghook + m.pinfo[pw].offset);
        } else {
            /* TMS linear2: W = linear1.weightᵀ, a derived copy; its gradient lands transposed */
            CHECK(cfg->kind == VPD_MODEL_TMS && l == 1, "%s layer %s: W is not a parameter", label, L->name);
            real *g1 = ghook + m.pinfo[0].offset;
            for (int o = 0; o < L->d_out; o++)
                for (int i = 0; i < L->d_in; i++) g1[(size_t)i * L->d_out + o] += h.dW[l][(size_t)o * L->d_in + i];
        }
        if (pb >= 0) vpd_axpy((size_t)L->d_out, 1, h.db[l], ghook + m.pinfo[pb].offset);
    }
    CHECK(h.last_bwd == 0, "%s: backward's last hook call was layer %d, expected 0", label, h.last_bwd);
    double e = tu_max_rel_err(ghook, dparams, m.n_params, 1e-12);
    fprintf(stderr, "  hooked gradients vs plain: max rel err %.3e\n", e);
    CHECK(e <= 1e-12, "%s: hook-path gradients differ from the plain backward (%.3e)", label, e);
    if (!lm) {
        e = tu_max_rel_err(dx_h, dx, n_in, 1e-12);
        CHECK(e <= 1e-12, "%s: hook-path input gradient differs (%.3e)", label, e);
    }

    /* 4. forward from / backward to layer l */
    {
        int nl = m.n_layers;
        real *ref = calloc(n_out, sizeof(real)), **gref = calloc((size_t)nl, sizeof(real *));
        for (int l = 0; l < nl; l++) gref[l] = calloc((size_t)m.layers[l].d_in * m.layers[l].d_out, sizeof(real));
        for (int l0 = 0; l0 < nl; l0++) {
            h.shift_from = l0;
            for (int l = 0; l < nl; l++) memset(h.dW[l], 0, sizeof(real) * (size_t)m.layers[l].d_in * m.layers[l].d_out);
            vpd_model_forward(&m, &c.in, ref, &h.base);
            vpd_model_backward(&m, R, NULL, NULL, &h.base);
            for (int l = 0; l < nl; l++) {
                memcpy(gref[l], h.dW[l], sizeof(real) * (size_t)m.layers[l].d_in * m.layers[l].d_out);
                memset(h.dW[l], 0, sizeof(real) * (size_t)m.layers[l].d_in * m.layers[l].d_out);
            }
            vpd_model_forward(&m, &c.in, out_h, NULL); /* the target forward of a step */
            int other = (l0 + nl / 2 + 1) % nl;        /* a pass from another layer overwrites some activations */
            h.shift_from = other;
            vpd_model_forward_from(&m, other, out_h, &h.base);
            h.shift_from = l0;
            vpd_model_forward_from(&m, l0, out_h, &h.base);
            CHECK(memcmp(out_h, ref, n_out * sizeof(real)) == 0,
                  "%s: forward from layer %d (after one from %d) differs from the whole forward", label, l0, other);
            memset(h.bwd_calls, 0, sizeof h.bwd_calls);
            vpd_model_backward_to(&m, R, &h.base, l0);
            for (int l = 0; l < nl; l++) {
                size_t nw = (size_t)m.layers[l].d_in * m.layers[l].d_out;
                CHECK(h.bwd_calls[l] == (l >= l0), "%s backward to %d: layer %d called %d times", label, l0, l,
                      h.bwd_calls[l]);
                if (l >= l0)
                    CHECK(memcmp(h.dW[l], gref[l], nw * sizeof(real)) == 0,
                          "%s backward to %d: layer %d's hook gradient differs from the whole backward", label, l0, l);
            }
            CHECK(h.dx_null[l0], "%s backward to %d: layer %d got a dx to accumulate", label, l0, l0);
        }
        h.shift_from = nl;
        for (int l = 0; l < nl; l++) free(gref[l]);
        free(gref);
        free(ref);
    }

    /* a smaller batch reuses the reserved buffers */
    if (B > 1) {
        vpd_model_input in1 = c.in;
        in1.B = B - 1;
        real *o1 = calloc(n_out, sizeof(real));
        vpd_model_forward(&m, &in1, o1, NULL);
        size_t n1 = vpd_model_out_size(&m, B - 1, S);
        CHECK(tu_max_rel_err(o1, out, n1, 1e-12) < 1e-12, "%s: forward of B-1 rows differs from the first rows of B", label);
        free(o1);
    }

    for (int l = 0; l < m.n_layers; l++) { free(h.dW[l]); free(h.db[l]); }
    free(out); free(out_h); free(R); free(dparams); free(ghook); free(x); free(dx); free(dx_h); free(tok);
    vpd_model_free(&m);
}

int main(void) {
    vpd_model_config tms = {.kind = VPD_MODEL_TMS, .n_features = 5, .n_hidden = 3};
    vpd_model m;
    CHECK(vpd_model_create(&m, &tms) == VPD_OK, "create tms");
    check_names(&m, (const char *const[]){"linear1", "linear2"}, 2,
                (const char *const[]){"linear1.weight", "linear2.bias"}, 2);
    vpd_model_free(&m);
    run_model("tms", &tms, 4, 1);

    vpd_model_config rm = {.kind = VPD_MODEL_RESID_MLP, .n_features = 6, .d_embed = 5, .d_mlp = 4, .n_layers = 2};
    CHECK(vpd_model_create(&m, &rm) == VPD_OK, "create resid_mlp");
    check_names(&m, (const char *const[]){"layers.0.mlp_in", "layers.0.mlp_out", "layers.1.mlp_in", "layers.1.mlp_out"}, 4,
                (const char *const[]){"W_E", "W_U", "layers.0.mlp_in.weight", "layers.0.mlp_out.weight",
                                      "layers.1.mlp_in.weight", "layers.1.mlp_out.weight"}, 6);
    CHECK(!m.pinfo[0].trainable && m.pinfo[2].trainable, "resid_mlp: W_E fixed, MLP weights trainable");
    vpd_model_free(&m);
    run_model("resid_mlp", &rm, 3, 1);

    vpd_model_config lm = {.kind = VPD_MODEL_LLAMA, .vocab_size = 11, .n_ctx = 8, .n_embd = 8, .n_head = 2,
                           .n_key_value_heads = 1, .n_intermediate = 12, .n_layers = 2, .rms_eps = 1e-6,
                           .rope_theta = 10000};
    CHECK(vpd_model_create(&m, &lm) == VPD_OK, "create llama");
    {
        const char *ln[] = {"wte", "h.0.attn.q_proj", "h.0.attn.k_proj", "h.0.attn.v_proj", "h.0.attn.o_proj",
                            "h.0.mlp.c_fc", "h.0.mlp.down_proj", "h.1.attn.q_proj", "h.1.attn.k_proj",
                            "h.1.attn.v_proj", "h.1.attn.o_proj", "h.1.mlp.c_fc", "h.1.mlp.down_proj"};
        const char *pn[] = {"wte.weight", "h.0.rms_1.weight", "h.0.attn.q_proj.weight", "h.0.attn.k_proj.weight",
                            "h.0.attn.v_proj.weight", "h.0.attn.o_proj.weight", "h.0.rms_2.weight",
                            "h.0.mlp.c_fc.weight", "h.0.mlp.down_proj.weight", "h.1.rms_1.weight",
                            "h.1.attn.q_proj.weight", "h.1.attn.k_proj.weight", "h.1.attn.v_proj.weight",
                            "h.1.attn.o_proj.weight", "h.1.rms_2.weight", "h.1.mlp.c_fc.weight",
                            "h.1.mlp.down_proj.weight", "ln_f.weight"};
        check_names(&m, ln, 13, pn, 18);
        CHECK(m.layers[0].embedding && m.layers[0].d_in == 11 && m.layers[0].d_out == 8, "wte layer is [V, D] embedding");
        CHECK(m.layers[2].d_out == 4 && m.layers[2].d_in == 8, "k_proj is [Hkv*dh, D] = [4, 8]");
        CHECK(vpd_model_reserve(&m, 1, 9) != VPD_OK, "S > n_ctx must be refused");
    }
    vpd_model_free(&m);
    run_model("llama_gqa", &lm, 2, 4);
    lm.n_key_value_heads = 2;
    run_model("llama_mha", &lm, 2, 4);

    /* Hugging Face llama / qwen2 / qwen3 (hf_llama.c): every optional piece switched on
     * somewhere: GQA and MQA, head_dim != hidden/heads, untied head (a hook layer), all
     * biases, qwen3's per-head q/k norms, llama3 rope scaling */
    {
        vpd_model_config h = {.kind = VPD_MODEL_HF_LLAMA, .hf_arch = VPD_HF_ARCH_LLAMA, .vocab_size = 11, .n_ctx = 8,
                              .n_embd = 8, .n_head = 2, .n_key_value_heads = 1, .head_dim = 6, .n_intermediate = 10,
                              .n_layers = 2, .rms_eps = 1e-6, .rope_theta = 10000, .qkv_bias = true, .o_bias = true,
                              .mlp_bias = true, .rope_type = VPD_ROPE_LLAMA3, .rope_factor = 8,
                              .rope_low_freq_factor = 1, .rope_high_freq_factor = 4, .rope_original_max_pos = 4};
        CHECK(vpd_model_create(&m, &h) == VPD_OK, "create hf llama: %s", vpd_last_error());
        CHECK(m.n_layers == 16 && !strcmp(m.layers[15].name, "lm_head") &&
              !strcmp(m.layers[1].name, "model.layers.0.self_attn.q_proj") && m.layers[1].d_out == 12 &&
              m.layers[4].d_in == 12 && m.layers[1].b && !strcmp(m.layers[0].name, "model.embed_tokens"),
              "hf llama layer table");
        CHECK(vpd_model_find_param(&m, "model.layers.1.mlp.down_proj.bias") >= 0 &&
              vpd_model_find_param(&m, "model.norm.weight") >= 0 && vpd_model_find_param(&m, "lm_head.weight") >= 0,
              "hf llama parameter names");
        vpd_model_free(&m);
        run_model("hf_llama_untied_biases_llama3rope", &h, 2, 4);
        vpd_model_config q3 = {.kind = VPD_MODEL_HF_LLAMA, .hf_arch = VPD_HF_ARCH_QWEN3, .vocab_size = 11, .n_ctx = 8,
                               .n_embd = 8, .n_head = 4, .n_key_value_heads = 2, .head_dim = 4, .n_intermediate = 10,
                               .n_layers = 2, .rms_eps = 1e-6, .rope_theta = 1e6, .tie_embeddings = true,
                               .qk_norm = true};
        CHECK(vpd_model_create(&m, &q3) == VPD_OK, "create hf qwen3: %s", vpd_last_error());
        CHECK(m.n_layers == 15 && vpd_model_find_param(&m, "model.layers.1.self_attn.k_norm.weight") >= 0 &&
              vpd_model_find_param(&m, "lm_head.weight") < 0, "hf qwen3 tables");
        vpd_model_free(&m);
        run_model("hf_qwen3_tied_qknorm", &q3, 2, 4);
        vpd_model_config q2 = q3;
        q2.hf_arch = VPD_HF_ARCH_QWEN2;
        q2.qk_norm = false;
        q2.qkv_bias = true;
        q2.head_dim = 2;
        q2.n_key_value_heads = 1;
        q2.rope_type = VPD_ROPE_LINEAR;
        q2.rope_factor = 2;
        run_model("hf_qwen2_mqa_linear_rope", &q2, 2, 4);
    }

    /* init: a pure function of the seed; spd's LlamaSimpleMLP init (RMSNorm weights 1,
     * N(0, 0.02²) linears, residual projections 0.02/√(2L)) */
    {
        vpd_model a, b;
        CHECK(vpd_model_create(&a, &lm) == VPD_OK && vpd_model_create(&b, &lm) == VPD_OK, "create for init");
        vpd_model_init_params(&a, 11);
        vpd_model_init_params(&b, 11);
        CHECK(memcmp(a.params, b.params, a.n_params * sizeof(real)) == 0, "same seed, same init");
        vpd_model_init_params(&b, 12);
        CHECK(memcmp(a.params, b.params, a.n_params * sizeof(real)) != 0, "other seed, other init");
        const vpd_param_info *rms = &a.pinfo[vpd_model_find_param(&a, "h.1.rms_2.weight")];
        CHECK(a.params[rms->offset] == 1 && a.params[rms->offset + rms->numel - 1] == 1, "RMSNorm weights init to 1");
        const vpd_param_info *fc = &a.pinfo[vpd_model_find_param(&a, "h.0.mlp.c_fc.weight")];
        const vpd_param_info *dn = &a.pinfo[vpd_model_find_param(&a, "h.0.mlp.down_proj.weight")];
        double sfc = sqrt(vpd_sumsq(fc->numel, a.params + fc->offset) / fc->numel);
        double sdn = sqrt(vpd_sumsq(dn->numel, a.params + dn->offset) / dn->numel);
        fprintf(stderr, "init std: c_fc %.4f (0.02), down_proj %.4f (%.4f)\n", sfc, sdn, 0.02 / 2);
        CHECK(fabs(sfc - 0.02) < 0.006 && fabs(sdn - 0.01) < 0.003, "init std c_fc %.4f, down_proj %.4f", sfc, sdn);
        CHECK(vpd_model_out_dim(&a) == 11 && vpd_model_out_size(&a, 2, 3) == 66, "LM output size B*S*V");
        vpd_model_free(&a);
        vpd_model_free(&b);
        vpd_model_config t = tms;
        CHECK(vpd_model_create(&a, &t) == VPD_OK, "create tms for init");
        vpd_model_init_params(&a, 1);
        /* linear2's layer W is linear1.weightᵀ after init (sync) */
        CHECK(a.layers[1].W[1 * 3 + 2] == a.params[2 * 5 + 1], "tms linear2 W[1][2] = linear1.weight[2][1]");
        CHECK(vpd_model_out_size(&a, 4, 1) == 20, "toy output size B*n_features");
        CHECK(vpd_model_reserve(&a, 4, 2) != VPD_OK, "toy models refuse S > 1");
        vpd_model_free(&a);
    }

    /* Hugging Face GPT-2: learned positions, fused c_attn, Conv1D weights kept [out, in],
     * tied lm_head (a hook layer whose W is transformer.wte.weight) */
    vpd_model_config g2 = {.kind = VPD_MODEL_GPT2, .vocab_size = 11, .n_ctx = 6, .n_embd = 8, .n_head = 2,
                           .n_key_value_heads = 2, .n_intermediate = 12, .n_layers = 2, .ln_eps = 1e-5,
                           .gelu_tanh = 1, .rope_theta = 10000};
    CHECK(vpd_model_create(&m, &g2) == VPD_OK, "create gpt2: %s", vpd_last_error());
    {
        const char *ln[] = {"transformer.wte", "transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj",
                            "transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.c_proj", "transformer.h.1.attn.c_attn",
                            "transformer.h.1.attn.c_proj", "transformer.h.1.mlp.c_fc", "transformer.h.1.mlp.c_proj",
                            "lm_head"};
        const char *pn[] = {"transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.ln_1.weight",
                            "transformer.h.0.ln_1.bias", "transformer.h.0.attn.c_attn.weight",
                            "transformer.h.0.attn.c_attn.bias", "transformer.h.0.attn.c_proj.weight",
                            "transformer.h.0.attn.c_proj.bias", "transformer.h.0.ln_2.weight",
                            "transformer.h.0.ln_2.bias", "transformer.h.0.mlp.c_fc.weight",
                            "transformer.h.0.mlp.c_fc.bias", "transformer.h.0.mlp.c_proj.weight",
                            "transformer.h.0.mlp.c_proj.bias"};
        check_names_prefix(&m, ln, 10, pn, 14, 28); /* 4 + 12 per block */
    }
    vpd_model_free(&m);
    run_model("gpt2", &g2, 2, 5);

    /* GPT-NeoX: interleaved fused query_key_value, partial rotary, parallel and sequential residual */
    vpd_model_config nx = {.kind = VPD_MODEL_GPT_NEOX, .vocab_size = 13, .n_ctx = 8, .n_embd = 12, .n_head = 2,
                           .n_key_value_heads = 2, .n_intermediate = 10, .n_layers = 2, .ln_eps = 1e-5,
                           .gelu_tanh = 0, .rope_theta = 100, .rotary_pct = 0.5, .rotary_dim = 2,
                           .parallel_residual = true};
    CHECK(vpd_model_create(&m, &nx) == VPD_OK, "create gpt_neox: %s", vpd_last_error());
    CHECK(m.n_layers == 10 && !strcmp(m.layers[1].name, "gpt_neox.layers.0.attention.query_key_value") &&
          !strcmp(m.layers[9].name, "embed_out") && !strcmp(m.layers[0].name, "gpt_neox.embed_in") &&
          m.layers[1].d_out == 36 && m.layers[9].d_in == 12 && m.layers[9].d_out == 13,
          "gpt_neox layer table");
    vpd_model_free(&m);
    run_model("gpt_neox_parallel", &nx, 2, 5);
    nx.parallel_residual = false;
    nx.rotary_dim = 6; /* the whole head */
    nx.gelu_tanh = 1;
    run_model("gpt_neox_sequential", &nx, 2, 5);
    nx.rotary_dim = 3;
    CHECK(vpd_model_create(&m, &nx) == VPD_ERR_CONFIG, "odd rotary dim must be refused");

    /* bad configs are errors, not crashes */
    vpd_model_config bad = lm;
    bad.n_head = 3;
    CHECK(vpd_model_create(&m, &bad) == VPD_ERR_CONFIG, "n_embd %% n_head != 0 must be refused");
    bad = lm;
    bad.n_key_value_heads = 3;
    CHECK(vpd_model_create(&m, &bad) == VPD_ERR_CONFIG, "n_head %% n_kv != 0 must be refused");
    TEST_REPORT();
}
