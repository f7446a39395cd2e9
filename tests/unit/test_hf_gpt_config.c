/* GPT-2 / GPT-NeoX config.json parsing (transformers' defaults for absent keys, unsupported
 * options refused with the key named) and the Conv1D layout: a GPT-2 saved by vpd stores
 * c_attn/c_proj/c_fc weights [in, out] as transformers does, and loads back unchanged. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "vpd/io.h"
#include "vpd/models.h"

static void expect_error(const char *json, const char *needle) {
    vpd_model_config c;
    vpd_status s = vpd_model_config_parse(&c, json, "config.json");
    CHECK(s == VPD_ERR_CONFIG && strstr(vpd_last_error(), needle), "'%s': expected an error naming '%s', got %d '%s'",
          json, needle, (int)s, s ? vpd_last_error() : "");
}

int main(void) {
    vpd_model_config c;
    /* GPT2Config() defaults: gpt2-small shape, n_inner null -> 4 d, gelu_new */
    CHECK(vpd_model_config_parse(&c, "{\"model_type\": \"gpt2\", \"n_inner\": null}", "config.json") == VPD_OK, "gpt2 defaults: %s",
          vpd_last_error());
    CHECK(c.kind == VPD_MODEL_GPT2 && c.vocab_size == 50257 && c.n_ctx == 1024 && c.n_embd == 768 && c.n_layers == 12 &&
          c.n_head == 12 && c.n_intermediate == 3072 && c.gelu_tanh == 1 && c.ln_eps == 1e-5,
          "gpt2 defaults parsed wrong");
    CHECK(vpd_model_config_parse(&c,
                                 "{\"model_type\": \"gpt_neox\", \"vocab_size\": 50304, \"hidden_size\": 768, "
                                 "\"num_hidden_layers\": 12, \"num_attention_heads\": 12, \"intermediate_size\": 3072, "
                                 "\"rotary_pct\": 0.25, \"use_parallel_residual\": true, \"max_position_embeddings\": 2048}",
                                 "config.json") == VPD_OK,
          "pythia-160m: %s", vpd_last_error());
    CHECK(c.kind == VPD_MODEL_GPT_NEOX && c.rotary_dim == 16 && c.parallel_residual && c.gelu_tanh == 0 &&
          c.rope_theta == 10000, "pythia-160m parsed wrong (rotary dim %d)", c.rotary_dim);
    expect_error("{\"model_type\": \"gpt2\", \"activation_function\": \"relu\"}", "activation_function");
    expect_error("{\"model_type\": \"gpt2\", \"add_cross_attention\": true}", "add_cross_attention");
    expect_error("{\"model_type\": \"gpt2\", \"scale_attn_by_inverse_layer_idx\": true}", "scale_attn_by_inverse_layer_idx");
    expect_error("{\"model_type\": \"gpt_neox\", \"vocab_size\": 10, \"hidden_size\": 8, \"num_hidden_layers\": 1, "
                 "\"num_attention_heads\": 2, \"intermediate_size\": 8, \"rope_scaling\": {\"type\": \"linear\"}}",
                 "rope_scaling");
    expect_error("{\"model_type\": \"gpt_neox\", \"vocab_size\": 10, \"hidden_size\": 8, \"num_hidden_layers\": 1, "
                 "\"num_attention_heads\": 2, \"intermediate_size\": 8, \"rotary_pct\": 0.25}", "rotary_pct");
    expect_error("{\"model_type\": \"gpt_neox\", \"vocab_size\": 10, \"hidden_size\": 8, \"num_hidden_layers\": 1, "
                 "\"num_attention_heads\": 2, \"intermediate_size\": 8, \"tie_word_embeddings\": true}", "tie_word_embeddings");
    expect_error("{\"model_type\": \"mixtral\"}", "mixtral");

    /* Conv1D layout through save / load */
    vpd_model_config g = {.kind = VPD_MODEL_GPT2, .vocab_size = 7, .n_ctx = 5, .n_embd = 4, .n_head = 2,
                          .n_key_value_heads = 2, .n_intermediate = 6, .n_layers = 1, .ln_eps = 1e-5, .gelu_tanh = 1,
                          .rope_theta = 10000};
    vpd_model m, m2;
    CHECK(vpd_model_create(&m, &g) == VPD_OK, "create gpt2");
    vpd_model_init_params(&m, 3);
    char dir[] = "/tmp/vpd_hf_gpt_cfg_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    CHECK(vpd_model_save(&m, dir) == VPD_OK, "save: %s", vpd_last_error());
    char path[200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    vpd_safetensors st;
    CHECK(vpd_st_open(&st, path) == VPD_OK, "open saved");
    real w[4 * 12];
    CHECK(vpd_st_read(&st, "transformer.h.0.attn.c_attn.weight", w, 2, (int64_t[]){4, 12}) == VPD_OK,
          "c_attn.weight stored [in 4, out 12]: %s", vpd_last_error());
    int p = vpd_model_find_param(&m, "transformer.h.0.attn.c_attn.weight");
    const real *W = m.params + m.pinfo[p].offset; /* [12, 4] */
    CHECK(w[1 * 12 + 7] == W[7 * 4 + 1], "file [i][o] = vpd [o][i]");
    real lm[7 * 4];
    CHECK(vpd_st_read(&st, "lm_head.weight", lm, 2, (int64_t[]){7, 4}) == VPD_OK, "tied lm_head.weight written");
    vpd_st_close(&st);
    CHECK(vpd_model_load(&m2, dir) == VPD_OK, "load: %s", vpd_last_error());
    CHECK(m2.n_params == m.n_params && memcmp(m2.params, m.params, m.n_params * sizeof(real)) == 0, "round trip");
    vpd_model_free(&m2);
    vpd_model_free(&m);
    snprintf(path, sizeof path, "rm -rf %s", dir);
    CHECK(system(path) == 0, "cleanup");
    TEST_REPORT();
}
