/* token files (.bin of uint16/uint32 ids): byte 0 picks the width, bytes 1..2 the vocab
 * size, the rest is the file; every window the batch reader can draw is checked. */
#include "fuzz_util.h"
#include "vpd/data.h"
#include "vpd/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[128];
    if (!path[0]) snprintf(path, sizeof path, "%s/tokens.bin", fuzz_dir());
    if (size < 3) return 0;
    int width = data[0] & 1 ? 4 : 2;
    int vocab = 1 + (data[1] | data[2] << 8);
    fuzz_write(path, data + 3, size - 3);
    vpd_tokens t;
    if (fuzz_note(vpd_tokens_open(&t, path, width, vocab), "open") != VPD_OK) return 0;
    FUZZ_ASSERT(t.n_tokens >= 2 && (size_t)t.n_tokens * (size_t)width == size - 3, "token count");
    int S = t.n_tokens - 1 < 8 ? (int)t.n_tokens - 1 : 8;
    int32_t in[4 * 8], tg[4 * 8];
    (void)vpd_tokens_batch(&t, 1, 0, 0, 0, 4, S, in, tg);
    (void)vpd_tokens_batch(&t, 1, 0, 0, 0, 1, 9, in, tg); /* may not fit */
    for (int64_t s = 0; s + S < t.n_tokens && s < 64; s++) (void)vpd_tokens_window(&t, s, S, in, tg);
    vpd_tokens_close(&t);
    return 0;
}
