/* HDF5 model file: a model directory with a fixed config.json (TMS 5x2) whose model.h5
 * is the input. HDF5 parses the container; vpd must check every dataset it reads. */
#include "fuzz_util.h"
#include "vpd/io.h"
#include "vpd/models.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char dir[128], h5[160];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s/model", fuzz_dir());
        snprintf(h5, sizeof h5, "%s/model.h5", dir);
        char cfg[160];
        snprintf(cfg, sizeof cfg, "%s/config.json", dir);
        if (mkdir(dir, 0700) != 0) abort();
        const char *json = "{\"model_type\": \"tms\", \"n_features\": 5, \"n_hidden\": 2}";
        fuzz_write(cfg, (const uint8_t *)json, strlen(json));
    }
    fuzz_write(h5, data, size);
    vpd_model m;
    if (fuzz_note(vpd_model_load(&m, dir), "load") == VPD_OK) vpd_model_free(&m);
    return 0;
}
