/* safetensors reader: open (header validation), every tensor read, metadata lookups. */
#include "fuzz_util.h"
#include "vpd/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[128];
    if (!path[0]) snprintf(path, sizeof path, "%s/f.safetensors", fuzz_dir());
    fuzz_write(path, data, size);
    vpd_safetensors st;
    if (fuzz_note(vpd_st_open(&st, path), "open") != VPD_OK) return 0;
    (void)vpd_st_metadata(&st, "format");
    (void)vpd_st_find(&st, "no such tensor");
    for (int i = 0; i < st.n; i++) {
        const vpd_st_entry *e = &st.entries[i];
        FUZZ_ASSERT(e->begin <= e->end && e->end <= st.file_size, "tensor '%s' outside the file", e->name);
        if (e->end - e->begin > (64u << 20)) continue; /* validated; reading is not the parser */
        real *x = NULL;
        int nd = 0;
        int64_t shape[VPD_MAX_DIMS];
        if (vpd_st_read_alloc(&st, e->name, &x, &nd, shape) == VPD_OK) vpd_free(x);
    }
    vpd_st_close(&st);
    return 0;
}
