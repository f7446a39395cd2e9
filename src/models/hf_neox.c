/* Hugging Face GPT-NeoX (model_type "gpt_neox", GPTNeoXForCausalLM: the Pythia models) as
 * a vpd target, on the block engine of hf_gptx.c: LayerNorms with bias, fused
 * attention.query_key_value in its interleaved per-head layout (output viewed as
 * [H][q, k, v][dh]), partial rotary (the first rotary_dim = rotary_pct · dh values of each
 * head, half-split pairs, base rotary_emb_base), biases on every linear, exact GELU
 * ("gelu"), use_parallel_residual true (x + attn(ln1 x) + mlp(ln2 x)) or false
 * (sequential), untied embed_out without bias.
 *
 * Names are the checkpoint's; decomposable layers: "gpt_neox.embed_in" (embedding), per
 * block "gpt_neox.layers.<i>.attention.query_key_value", "...attention.dense",
 * "...mlp.dense_h_to_4h", "...mlp.dense_4h_to_h", and "embed_out" (the unembedding). */
#include "models/hf_gptx.h"

static const gptx_names neox_names = {
    .wte = "gpt_neox.embed_in.weight",
    .wpe = NULL,
    .lnf_w = "gpt_neox.final_layer_norm.weight",
    .lnf_b = "gpt_neox.final_layer_norm.bias",
    .head_w = "embed_out.weight",
    .blk = {"gpt_neox.layers.%d.input_layernorm.weight", "gpt_neox.layers.%d.input_layernorm.bias",
            "gpt_neox.layers.%d.attention.query_key_value.weight", "gpt_neox.layers.%d.attention.query_key_value.bias",
            "gpt_neox.layers.%d.attention.dense.weight", "gpt_neox.layers.%d.attention.dense.bias",
            "gpt_neox.layers.%d.post_attention_layernorm.weight", "gpt_neox.layers.%d.post_attention_layernorm.bias",
            "gpt_neox.layers.%d.mlp.dense_h_to_4h.weight", "gpt_neox.layers.%d.mlp.dense_h_to_4h.bias",
            "gpt_neox.layers.%d.mlp.dense_4h_to_h.weight", "gpt_neox.layers.%d.mlp.dense_4h_to_h.bias"},
    .emb_layer = "gpt_neox.embed_in",
    .head_layer = "embed_out",
    .blk_layer = {"gpt_neox.layers.%d.attention.query_key_value", "gpt_neox.layers.%d.attention.dense",
                  "gpt_neox.layers.%d.mlp.dense_h_to_4h", "gpt_neox.layers.%d.mlp.dense_4h_to_h"},
    .qkv_per_head = true,
};

static vpd_status neox_check(const vpd_model_config *c) { return gptx_check(c, "gpt_neox", true); }

static int neox_count_params(const vpd_model_config *c) { return 4 + GP_N * c->n_layers; }

/* state_dict order of GPTNeoXForCausalLM */
static void neox_build_params(vpd_model *m) {
    const vpd_model_config *c = &m->cfg;
    int64_t V = c->vocab_size, D = c->n_embd, F = c->n_intermediate;
    model_add_param(m, true, 2, (int64_t[]){V, D}, "gpt_neox.embed_in.weight");
    for (int i = 0; i < c->n_layers; i++) {
        model_add_param(m, true, 1, (int64_t[]){D}, "gpt_neox.layers.%d.input_layernorm.weight", i);
        model_add_param(m, true, 1, (int64_t[]){D}, "gpt_neox.layers.%d.input_layernorm.bias", i);
        model_add_param(m, true, 1, (int64_t[]){D}, "gpt_neox.layers.%d.post_attention_layernorm.weight", i);
        model_add_param(m, true, 1, (int64_t[]){D}, "gpt_neox.layers.%d.post_attention_layernorm.bias", i);
        model_add_param(m, true, 2, (int64_t[]){3 * D, D}, "gpt_neox.layers.%d.attention.query_key_value.weight", i);
        model_add_param(m, true, 1, (int64_t[]){3 * D}, "gpt_neox.layers.%d.attention.query_key_value.bias", i);
        model_add_param(m, true, 2, (int64_t[]){D, D}, "gpt_neox.layers.%d.attention.dense.weight", i);
        model_add_param(m, true, 1, (int64_t[]){D}, "gpt_neox.layers.%d.attention.dense.bias", i);
        model_add_param(m, true, 2, (int64_t[]){F, D}, "gpt_neox.layers.%d.mlp.dense_h_to_4h.weight", i);
        model_add_param(m, true, 1, (int64_t[]){F}, "gpt_neox.layers.%d.mlp.dense_h_to_4h.bias", i);
        model_add_param(m, true, 2, (int64_t[]){D, F}, "gpt_neox.layers.%d.mlp.dense_4h_to_h.weight", i);
        model_add_param(m, true, 1, (int64_t[]){D}, "gpt_neox.layers.%d.mlp.dense_4h_to_h.bias", i);
    }
    model_add_param(m, true, 1, (int64_t[]){D}, "gpt_neox.final_layer_norm.weight");
    model_add_param(m, true, 1, (int64_t[]){D}, "gpt_neox.final_layer_norm.bias");
    model_add_param(m, true, 2, (int64_t[]){V, D}, "embed_out.weight");
}

static vpd_status neox_build_layers(vpd_model *m) { return gptx_build_layers(m, &neox_names); }

/* GPTNeoXPreTrainedModel._init_weights: N(0, 0.02²) matrices and embeddings, biases 0,
 * LayerNorm 1 / 0. */
static void neox_init(vpd_model *m, uint64_t seed) {
    for (int p = 0; p < m->n_pinfo; p++) {
        if (m->pinfo[p].ndim == 2) model_init_normal(m, seed, p, 0.02);
        else model_init_const(m, p, 0);
    }
    for (int i = 0; i < m->cfg.n_layers; i++) {
        model_init_const(m, gptx_pblk(m, i, GP_LN1_W), 1);
        model_init_const(m, gptx_pblk(m, i, GP_LN2_W), 1);
    }
    model_init_const(m, vpd_model_find_param(m, "gpt_neox.final_layer_norm.weight"), 1);
}

const vpd_model_ops vpd_neox_ops = {
    .check = neox_check,
    .count_params = neox_count_params,
    .count_layers = gptx_count_layers,
    .build_params = neox_build_params,
    .build_layers = neox_build_layers,
    .init = neox_init,
    .sync = gptx_sync,
    .layout = gptx_layout,
    .forward = gptx_forward,
    .backward = gptx_backward,
    .destroy = gptx_destroy,
};
