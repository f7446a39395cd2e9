/* The Split pre-tokenizer of Llama-3 and Qwen2 tokenizers (src/io/tokenizer.c split_match: the
 * two split regexes matched by hand, no regex engine) on arbitrary text. Two fixed tokenizers,
 * Split(Llama-3 pattern) + ByteLevel and Split(Qwen2 pattern) + ByteLevel, each with all 256
 * byte tokens and a few merges; the input is the text for both. Every id must be in the vocab,
 * and decode(encode(text)) must give the text back byte for byte (byte-level BPE without a
 * normalizer or added tokens loses nothing). A matcher that returned an empty piece would hang
 * here (libFuzzer's -timeout). */
#include "fuzz_util.h"
#include "vpd/tokenizer.h"

static const char LLAMA3[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| "
                             "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+";
static const char QWEN2[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| "
                            "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+";

/* a tokenizer.json: the 256 byte tokens (ids 0..255), merges "Ġ t" "h e" "1 2" "' s" "\n \n" */
static void write_tokenizer(const char *path, const char *pattern) {
    FILE *f = fopen(path, "w");
    if (!f) abort();
    fprintf(f, "{\"added_tokens\": [], \"normalizer\": null,\n \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
               "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"%s\"}, \"behavior\": \"Isolated\", \"invert\": false},"
               " {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false}]},\n"
               " \"decoder\": {\"type\": \"ByteLevel\"},\n \"model\": {\"type\": \"BPE\", \"vocab\": {",
            pattern);
    for (int b = 0; b < 256; b++) {
        char s[8];
        size_t n = vpd_bytelevel_encode((const char *)&(unsigned char){(unsigned char)b}, 1, s, sizeof s);
        s[n] = 0;
        if (b == '"' || b == '\\') fprintf(f, "%s\"\\%s\": %d", b ? ", " : "", s, b);
        else fprintf(f, "%s\"%s\": %d", b ? ", " : "", s, b);
    }
    fprintf(f, ", \"\xc4\xa0t\": 256, \"he\": 257, \"12\": 258, \"'s\": 259, \"\xc4\x8a\xc4\x8a\": 260},\n"
               " \"merges\": [\"\xc4\xa0 t\", \"h e\", \"1 2\", \"' s\", \"\xc4\x8a \xc4\x8a\"]}}\n");
    fclose(f);
}

static void check(vpd_tokenizer *t, const char *text, size_t n) {
    vpd_ids ids = {0};
    vpd_status s = vpd_tokenizer_encode(t, text, n, &ids);
    FUZZ_ASSERT(s == VPD_OK, "encode failed: %s", vpd_last_error());
    int V = vpd_tokenizer_vocab_size(t);
    for (size_t i = 0; i < ids.n; i++) FUZZ_ASSERT(ids.ids[i] >= 0 && ids.ids[i] < V, "id %d of %d", ids.ids[i], V);
    char *back = NULL;
    size_t nb = 0;
    FILE *m = open_memstream(&back, &nb);
    FUZZ_ASSERT(m != NULL, "open_memstream");
    s = vpd_tokenizer_decode(t, ids.ids, ids.n, m);
    fclose(m);
    FUZZ_ASSERT(s == VPD_OK, "decode failed: %s", vpd_last_error());
    FUZZ_ASSERT(nb == n && (n == 0 || !memcmp(back, text, n)), "decode(encode(text)) is not the text (%zu of %zu bytes)",
                nb, n);
    free(back);
    vpd_ids_free(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static vpd_tokenizer *tk[2];
    if (!tk[0]) {
        const char *pat[2] = {LLAMA3, QWEN2};
        for (int k = 0; k < 2; k++) {
            char path[160];
            snprintf(path, sizeof path, "%s/split%d.json", fuzz_dir(), k);
            write_tokenizer(path, pat[k]);
            if (vpd_tokenizer_load(&tk[k], path) != VPD_OK) {
                fprintf(stderr, "fuzz_split: fixed tokenizer %d: %s\n", k, vpd_last_error());
                abort();
            }
        }
    }
    for (int k = 0; k < 2; k++) check(tk[k], (const char *)data, size);
    return 0;
}
