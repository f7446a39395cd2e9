/* Hugging Face GPT-2 (model_type "gpt2", GPT2LMHeadModel) as a vpd target, on the block
 * engine of hf_gptx.c: learned positions (transformer.wpe), LayerNorm with bias, fused
 * c_attn ([q|k|v], each [H, dh]), biases on every linear, tanh GELU ("gelu_new"),
 * sequential residual, lm_head tied to transformer.wte.
 *
 * Conv1D layout: the checkpoint stores c_attn, c_proj, c_fc weights as [in, out]; vpd keeps
 * them [out, in] (PyTorch Linear, the hook contract) and marks them file_transposed, so
 * model_io.c transposes on load and save. Parameter names are the checkpoint's
 * ("transformer.h.0.attn.c_attn.weight"); decomposable layers are those names without
 * ".weight": "transformer.wte" (embedding), per block "transformer.h.<i>.attn.c_attn",
 * "transformer.h.<i>.attn.c_proj", "transformer.h.<i>.mlp.c_fc", "transformer.h.<i>.mlp.c_proj",
 * and "lm_head" (the unembedding, W = transformer.wte.weight). transformer.wpe, biases and
 * LayerNorms stay fixed. */
#include <math.h>

#include "models/hf_gptx.h"

static const gptx_names gpt2_names = {
    .wte = "transformer.wte.weight",
    .wpe = "transformer.wpe.weight",
    .lnf_w = "transformer.ln_f.weight",
    .lnf_b = "transformer.ln_f.bias",
    .head_w = "transformer.wte.weight",
    .blk = {"transformer.h.%d.ln_1.weight", "transformer.h.%d.ln_1.bias", "transformer.h.%d.attn.c_attn.weight",
            "transformer.h.%d.attn.c_attn.bias", "transformer.h.%d.attn.c_proj.weight",
            "transformer.h.%d.attn.c_proj.bias", "transformer.h.%d.ln_2.weight", "transformer.h.%d.ln_2.bias",
            "transformer.h.%d.mlp.c_fc.weight", "transformer.h.%d.mlp.c_fc.bias",
            "transformer.h.%d.mlp.c_proj.weight", "transformer.h.%d.mlp.c_proj.bias"},
    .emb_layer = "transformer.wte",
    .head_layer = "lm_head",
    .blk_layer = {"transformer.h.%d.attn.c_attn", "transformer.h.%d.attn.c_proj", "transformer.h.%d.mlp.c_fc",
                  "transformer.h.%d.mlp.c_proj"},
    .qkv_per_head = false,
};

static vpd_status gpt2_check(const vpd_model_config *c) {
    VPD_TRY(gptx_check(c, "gpt2", false));
    if (c->rotary_dim != 0 || c->parallel_residual)
        return vpd_error(VPD_ERR_CONFIG, "gpt2: rotary and parallel residual are not GPT-2 options");
    return VPD_OK;
}

static int gpt2_count_params(const vpd_model_config *c) { return 4 + GP_N * c->n_layers; }

static void gpt2_build_params(vpd_model *m) {
    const vpd_model_config *c = &m->cfg;
    int64_t V = c->vocab_size, D = c->n_embd, F = c->n_intermediate, T = c->n_ctx;
    model_add_param(m, true, 2, (int64_t[]){V, D}, "transformer.wte.weight");
    model_add_param(m, true, 2, (int64_t[]){T, D}, "transformer.wpe.weight");
    for (int i = 0; i < c->n_layers; i++) {
        model_add_param(m, true, 1, (int64_t[]){D}, "transformer.h.%d.ln_1.weight", i);
        model_add_param(m, true, 1, (int64_t[]){D}, "transformer.h.%d.ln_1.bias", i);
        int p = model_add_param(m, true, 2, (int64_t[]){3 * D, D}, "transformer.h.%d.attn.c_attn.weight", i);
        m->pinfo[p].file_transposed = true;
        model_add_param(m, true, 1, (int64_t[]){3 * D}, "transformer.h.%d.attn.c_attn.bias", i);
        p = model_add_param(m, true, 2, (int64_t[]){D, D}, "transformer.h.%d.attn.c_proj.weight", i);
        m->pinfo[p].file_transposed = true;
        model_add_param(m, true, 1, (int64_t[]){D}, "transformer.h.%d.attn.c_proj.bias", i);
        model_add_param(m, true, 1, (int64_t[]){D}, "transformer.h.%d.ln_2.weight", i);
        model_add_param(m, true, 1, (int64_t[]){D}, "transformer.h.%d.ln_2.bias", i);
        p = model_add_param(m, true, 2, (int64_t[]){F, D}, "transformer.h.%d.mlp.c_fc.weight", i);
        m->pinfo[p].file_transposed = true;
        model_add_param(m, true, 1, (int64_t[]){F}, "transformer.h.%d.mlp.c_fc.bias", i);
        p = model_add_param(m, true, 2, (int64_t[]){D, F}, "transformer.h.%d.mlp.c_proj.weight", i);
        m->pinfo[p].file_transposed = true;
        model_add_param(m, true, 1, (int64_t[]){D}, "transformer.h.%d.mlp.c_proj.bias", i);
    }
    model_add_param(m, true, 1, (int64_t[]){D}, "transformer.ln_f.weight");
    model_add_param(m, true, 1, (int64_t[]){D}, "transformer.ln_f.bias");
}

static vpd_status gpt2_build_layers(vpd_model *m) { return gptx_build_layers(m, &gpt2_names); }

/* GPT2PreTrainedModel._init_weights: N(0, 0.02²) matrices and embeddings, the residual
 * projections (attn.c_proj, mlp.c_proj) N(0, (0.02/√(2L))²), biases 0, LayerNorm 1 / 0. */
static void gpt2_init(vpd_model *m, uint64_t seed) {
    int L = m->cfg.n_layers;
    double std_res = 0.02 / sqrt(2.0 * L);
    for (int p = 0; p < m->n_pinfo; p++) model_init_const(m, p, 0);
    model_init_normal(m, seed, vpd_model_find_param(m, "transformer.wte.weight"), 0.02);
    model_init_normal(m, seed, vpd_model_find_param(m, "transformer.wpe.weight"), 0.01);
    for (int i = 0; i < L; i++) {
        model_init_const(m, gptx_pblk(m, i, GP_LN1_W), 1);
        model_init_const(m, gptx_pblk(m, i, GP_LN2_W), 1);
        model_init_normal(m, seed, gptx_pblk(m, i, GP_QKV_W), 0.02);
        model_init_normal(m, seed, gptx_pblk(m, i, GP_O_W), std_res);
        model_init_normal(m, seed, gptx_pblk(m, i, GP_FC_W), 0.02);
        model_init_normal(m, seed, gptx_pblk(m, i, GP_DOWN_W), std_res);
    }
    model_init_const(m, vpd_model_find_param(m, "transformer.ln_f.weight"), 1);
}

const vpd_model_ops vpd_gpt2_ops = {
    .check = gpt2_check,
    .count_params = gpt2_count_params,
    .count_layers = gptx_count_layers,
    .build_params = gpt2_build_params,
    .build_layers = gpt2_build_layers,
    .init = gpt2_init,
    .sync = gptx_sync,
    .layout = gptx_layout,
    .forward = gptx_forward,
    .backward = gptx_backward,
    .destroy = gptx_destroy,
};
