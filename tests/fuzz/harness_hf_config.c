/* Hugging Face config.json (src/models/model_io.c parse_gpt2 / parse_neox / parse_hf_llama, the
 * architecture checks in src/models/hf_gpt2.c, hf_neox.c, hf_llama.c): gpt2, gpt_neox, llama,
 * qwen2, qwen3. What parses must serialise and parse back to the same sizes; when its sizes are
 * small the model is built (the checks, the layer tables, RoPE) and run forward on a few
 * tokens, and every logit must be finite (the weights are random and small). */
#include "fuzz_util.h"
#include <math.h>

#include "vpd/io.h"
#include "vpd/models.h"

static bool small(const vpd_model_config *c) {
    /* bounds on every size that scales memory, so a build stays well under a megabyte */
    return c->vocab_size <= 512 && c->n_ctx <= 4096 && c->n_embd <= 128 && c->n_head <= 32 &&
           c->n_key_value_heads <= 32 && c->n_intermediate <= 256 && c->n_layers <= 4 && c->head_dim <= 128;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    (void)fuzz_dir();
    char *s = fuzz_cstr(data, size);
    vpd_model_config c, d;
    if (fuzz_note(vpd_model_config_parse(&c, s, "config.json"), "parse") != VPD_OK || !vpd_model_is_lm(c.kind)) {
        free(s);
        return 0;
    }
    char *j = vpd_model_config_to_json(&c);
    FUZZ_ASSERT(j != NULL, "to_json failed");
    vpd_status st = vpd_model_config_parse(&d, j, "again.json");
    FUZZ_ASSERT(st == VPD_OK, "serialised config does not parse: %s\n%s", vpd_last_error(), j);
    FUZZ_ASSERT(c.kind == d.kind && c.n_layers == d.n_layers && c.vocab_size == d.vocab_size && c.n_embd == d.n_embd &&
                    c.n_head == d.n_head && c.n_key_value_heads == d.n_key_value_heads &&
                    c.n_intermediate == d.n_intermediate && c.n_ctx == d.n_ctx,
                "round trip changed the config:\n%s", j);
    free(j);
    vpd_model m;
    if (small(&c) && fuzz_note(vpd_model_create(&m, &c), "create") == VPD_OK) {
        vpd_model_init_params(&m, 1);
        const int B = 1, S = c.n_ctx < 3 ? c.n_ctx : 3;
        if (fuzz_note(vpd_model_reserve(&m, B, S), "reserve") == VPD_OK) {
            int32_t tok[3] = {0, c.vocab_size - 1, c.vocab_size / 2};
            size_t n_out = vpd_model_out_size(&m, B, S);
            real *out = malloc(n_out * sizeof *out);
            FUZZ_ASSERT(out != NULL, "out of memory");
            vpd_model_input in = {.B = B, .S = S, .tokens = tok};
            vpd_model_forward(&m, &in, out, NULL);
            for (size_t i = 0; i < n_out; i++) FUZZ_ASSERT(isfinite(out[i]), "logit %zu is %g", i, (double)out[i]);
            free(out);
        }
        vpd_model_free(&m);
    }
    free(s);
    return 0;
}
