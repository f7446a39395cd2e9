/* tokenizer.json loading, and the encoder on arbitrary text. An input starting with '{'
 * is a tokenizer.json (loaded, then used on a fixed multilingual text); anything else is
 * text for a fixed tokenizer with added tokens of every flag. */
#include "fuzz_util.h"
#include "vpd/tokenizer.h"

static const char FIXED[] =
    "{\"added_tokens\": ["
    "{\"id\": 12, \"content\": \"<|s|>\", \"special\": true, \"lstrip\": true, \"rstrip\": true, \"normalized\": false},"
    "{\"id\": 13, \"content\": \"ab\", \"special\": false, \"lstrip\": false, \"rstrip\": true, \"normalized\": true},"
    "{\"id\": 14, \"content\": \"\\u3000x\", \"special\": false, \"lstrip\": true, \"rstrip\": false}],"
    " \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false},"
    " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"\\u0120\": 3, \"aa\": 4, \"ab\": 5,"
    " \"bc\": 6, \"\\u0120a\": 7, \"abc\": 8, \"\\u010a\": 9, \"\\u00e3\": 10, \"\\u0122\": 11},"
    " \"merges\": [\"a b\", \"b c\", \"a a\", \"\\u0120 a\", \"ab c\"]}}";
static const char SAMPLE[] = "Hello world, caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xd0\xbf\xd1\x80\xd0\xb8"
                             "\r\n\r\n  x\xc2\xa0y\xe3\x80\x80z\n\t<|endoftext|> 12345 it's";

static void run(vpd_tokenizer *t, const char *text, size_t n) {
    static FILE *null;
    if (!null) null = fopen("/dev/null", "wb");
    vpd_ids ids = {0};
    if (vpd_tokenizer_encode(t, text, n, &ids) == VPD_OK) {
        int V = vpd_tokenizer_vocab_size(t);
        for (size_t i = 0; i < ids.n; i++) FUZZ_ASSERT(ids.ids[i] >= 0 && ids.ids[i] < V, "id %d of %d", ids.ids[i], V);
        (void)vpd_tokenizer_decode(t, ids.ids, ids.n, null);
    }
    vpd_ids_free(&ids);
    (void)vpd_tokenizer_safe_cut(t, text, n, n / 2);
    size_t ends[64];
    (void)vpd_pretokenize(text, n, ends, 64);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[128], fixed[128];
    static vpd_tokenizer *tf;
    if (!path[0]) {
        snprintf(path, sizeof path, "%s/tokenizer.json", fuzz_dir());
        snprintf(fixed, sizeof fixed, "%s/fixed.json", fuzz_dir());
        fuzz_write(fixed, (const uint8_t *)FIXED, strlen(FIXED));
        if (vpd_tokenizer_load(&tf, fixed) != VPD_OK) {
            fprintf(stderr, "fixed tokenizer: %s\n", vpd_last_error());
            abort();
        }
    }
    if (size && data[0] == '{') {
        fuzz_write(path, data, size);
        vpd_tokenizer *t = NULL;
        if (fuzz_note(vpd_tokenizer_load(&t, path), "load") == VPD_OK) {
            run(t, SAMPLE, strlen(SAMPLE));
            for (int id = -1; id < vpd_tokenizer_vocab_size(t) && id < 4096; id++) {
                size_t n;
                (void)vpd_tokenizer_token_bytes(t, id, &n);
                (void)vpd_tokenizer_token_str(t, id);
            }
            vpd_tokenizer_free(t);
        }
        return 0;
    }
    run(tf, (const char *)data, size);
    return 0;
}
