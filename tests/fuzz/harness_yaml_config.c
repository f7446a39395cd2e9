/* YAML config tree: parse, the unknown-key walk, emit and re-parse (what is emitted must
 * load again: a run is resumed from it), and the input as a --set assignment. */
#include "fuzz_util.h"
#include "vpd/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    (void)fuzz_dir();
    vpd_config *c = NULL;
    if (fuzz_note(vpd_config_parse((const char *)data, size, "fuzz.yaml", &c), "parse") == VPD_OK) {
        int v;
        const char *s;
        (void)vpd_config_get_int(c, "seed", 0, 0, 1 << 30, &v);
        (void)vpd_config_get_string(c, "module_info.0.module_pattern", "x", &s);
        (void)vpd_config_find(c, "loss_metric_configs[StochasticReconLoss].coeff");
        const char *ign[] = {"wandb_*", NULL};
        (void)vpd_config_note_ignored(c, ign);
        (void)vpd_config_check_unused(c, ign);
        char *y = NULL;
        size_t yl = 0;
        if (vpd_config_emit(c, &y, &yl) == VPD_OK) {
            vpd_config *d = NULL;
            vpd_status st = vpd_config_parse(y, yl, "emitted.yaml", &d);
            FUZZ_ASSERT(st == VPD_OK, "emitted config does not load again: %s", vpd_last_error());
            vpd_config_free(d);
            free(y);
        }
        vpd_config_free(c);
    }
    /* the same bytes as `--set` on a small tree; a tree that took it must still emit and load */
    char *a = fuzz_cstr(data, size);
    const char *base = "a: 1\nb: {c: [1, 2], d: x}\nl: [{classname: K, v: 1}]\n";
    if (vpd_config_parse(base, strlen(base), "base.yaml", &c) == VPD_OK) {
        if (fuzz_note(vpd_config_set(c, a), "--set") == VPD_OK) {
            char *y = NULL;
            size_t yl = 0;
            if (vpd_config_emit(c, &y, &yl) == VPD_OK) {
                vpd_config *d = NULL;
                vpd_status st = vpd_config_parse(y, yl, "emitted.yaml", &d);
                FUZZ_ASSERT(st == VPD_OK, "config after --set does not load again: %s", vpd_last_error());
                vpd_config_free(d);
                free(y);
            }
        }
        vpd_config_free(c);
    }
    free(a);
    return 0;
}
