/* config.json of a model directory: parse; what parses must serialise and parse back to
 * the same sizes. */
#include "fuzz_util.h"
#include "vpd/io.h"
#include "vpd/models.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    (void)fuzz_dir();
    char *s = fuzz_cstr(data, size);
    vpd_model_config c, d;
    if (fuzz_note(vpd_model_config_parse(&c, s, "config.json"), "parse") == VPD_OK) {
        char *j = vpd_model_config_to_json(&c);
        FUZZ_ASSERT(j != NULL, "to_json failed");
        vpd_status st = vpd_model_config_parse(&d, j, "again.json");
        FUZZ_ASSERT(st == VPD_OK, "serialised config does not parse: %s", vpd_last_error());
        FUZZ_ASSERT(c.kind == d.kind && c.n_layers == d.n_layers && c.n_features == d.n_features &&
                        c.vocab_size == d.vocab_size && c.n_embd == d.n_embd,
                    "round trip changed the config");
        free(j);
    }
    free(s);
    return 0;
}
