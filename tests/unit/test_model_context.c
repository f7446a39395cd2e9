/* Sequences past the trained context and row-block attention at the model level
 * (include/vpd/models.h vpd_model_extend_context, vpd_model_set_attention_rows):
 *  - a rotary llama_simple_mlp with n_ctx 16 extended to 40 reserves and runs 40 positions
 *    (41 refused, naming the allowed context); being causal, its logits on the first 16
 *    positions equal those of the 16-token prefix;
 *  - with row-block attention (rows 8, 5, 64) the logits and every parameter gradient equal
 *    the full-attention ones; the activations shrink (no [L, B, H, S, S]);
 *  - GPT-2 (learned position embeddings) and a toy model are refused in one line;
 *    n <= n_ctx restores the trained context. */
#include "testutil.h"
#include "vpd/models.h"

enum { B = 2, S = 40, S0 = 16 };

int main(void) {
    vpd_model_config c = {.kind = VPD_MODEL_LLAMA, .vocab_size = 50, .n_ctx = S0, .n_embd = 16, .n_head = 4,
                          .n_key_value_heads = 2, .n_intermediate = 32, .n_layers = 2, .rms_eps = 1e-6,
                          .rope_theta = 10000};
    vpd_model m;
    CHECK(vpd_model_create(&m, &c) == VPD_OK, "create llama: %s", vpd_last_error());
    vpd_model_init_params(&m, 5);
    const int V = c.vocab_size;
    EXPECT_FAIL(vpd_model_reserve(&m, B, S), VPD_ERR_ARG, "sequence length 40 exceeds the model's n_ctx 16");
    CHECK(vpd_model_extend_context(&m, S) == VPD_OK && vpd_model_context(&m) == S, "extend to %d: %s", S, vpd_last_error());
    EXPECT_FAIL(vpd_model_reserve(&m, B, S + 1), VPD_ERR_ARG, "exceeds the allowed context 40 (trained n_ctx 16)");
    CHECK(vpd_model_reserve(&m, B, S) == VPD_OK, "reserve %d x %d: %s", B, S, vpd_last_error());
    const size_t full_bytes = m.acts.capacity;

    int32_t tok[B * S], tok0[B * S0];
    for (int i = 0; i < B * S; i++) tok[i] = (int32_t)((i * 7 + i / 3) % V);
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S0; s++) tok0[b * S0 + s] = tok[b * S + s];
    real *out = calloc((size_t)B * S * V, sizeof(real)), *ref = calloc((size_t)B * S * V, sizeof(real));
    real *out0 = calloc((size_t)B * S0 * V, sizeof(real)), *dout = calloc((size_t)B * S * V, sizeof(real));
    real *dp = calloc(m.n_params, sizeof(real)), *dpref = calloc(m.n_params, sizeof(real));
    tu_fill(dout, (size_t)B * S * V, 11, 1.0);
    vpd_model_input in = {B, S, NULL, tok}, in0 = {B, S0, NULL, tok0};
    vpd_model_forward(&m, &in, ref, NULL);
    vpd_model_backward(&m, dout, dpref, NULL, NULL);
    for (int i = 0; i < B * S * V; i++) CHECK(isfinite(ref[i]), "logit %d not finite past n_ctx", i);
    /* causal: the first S0 positions do not see the extrapolated ones */
    vpd_model_forward(&m, &in0, out0, NULL);
    double e = 0;
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S0; s++)
            for (int v = 0; v < V; v++)
                e = fmax(e, fabs((double)out0[((size_t)b * S0 + s) * V + v] - ref[((size_t)b * S + s) * V + v]));
    CHECK(e < 1e-5, "logits of the 16-token prefix vs the first 16 of 40 positions: max diff %.3e", e);

    const int rows_opts[3] = {8, 5, 64};
    for (int ri = 0; ri < 3; ri++) {
        CHECK(vpd_model_set_attention_rows(&m, rows_opts[ri]) == VPD_OK, "attention rows %d: %s", rows_opts[ri], vpd_last_error());
        CHECK(m.acts.capacity < full_bytes, "row-block attention activations %zu must be below the full %zu", m.acts.capacity, full_bytes);
        CHECK(m.B == B && m.S == S, "re-laid out at the same capacity");
        memset(dp, 0, sizeof(real) * m.n_params);
        vpd_model_forward(&m, &in, out, NULL);
        vpd_model_backward(&m, dout, dp, NULL, NULL);
        e = tu_max_rel_err(out, ref, (size_t)B * S * V, 1e-6);
        CHECK(e < 1e-5, "rows %d: logits vs full attention rel err %.3e", rows_opts[ri], e);
        e = tu_max_rel_err(dp, dpref, m.n_params, 1e-6);
        CHECK(e < 1e-4, "rows %d: parameter gradient vs full attention rel err %.3e", rows_opts[ri], e);
    }
    CHECK(vpd_model_set_attention_rows(&m, 0) == VPD_OK && m.acts.capacity == full_bytes, "back to full attention");
    CHECK(vpd_model_extend_context(&m, 10) == VPD_OK && vpd_model_context(&m) == S0, "n <= n_ctx restores n_ctx");
    vpd_model_free(&m);

    vpd_model_config g = {.kind = VPD_MODEL_GPT2, .vocab_size = 7, .n_ctx = 5, .n_embd = 4, .n_head = 2,
                          .n_key_value_heads = 2, .n_intermediate = 6, .n_layers = 1, .ln_eps = 1e-5, .gelu_tanh = 1,
                          .rope_theta = 10000};
    CHECK(vpd_model_create(&m, &g) == VPD_OK, "create gpt2");
    EXPECT_FAIL(vpd_model_extend_context(&m, 8), VPD_ERR_ARG, "learned position embeddings for 5 positions");
    CHECK(!strchr(vpd_last_error(), '\n'), "one line: %s", vpd_last_error());
    CHECK(vpd_model_context(&m) == 5, "gpt2 context unchanged");
    vpd_model_free(&m);
    vpd_model_config t = {.kind = VPD_MODEL_TMS, .n_features = 5, .n_hidden = 2};
    CHECK(vpd_model_create(&m, &t) == VPD_OK, "create tms");
    EXPECT_FAIL(vpd_model_extend_context(&m, 8), VPD_ERR_ARG, "not a language model");
    vpd_model_free(&m);
    free(out);
    free(ref);
    free(out0);
    free(dout);
    free(dp);
    free(dpref);
    TEST_REPORT();
}
