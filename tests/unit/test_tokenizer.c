/* Byte-level BPE tokenizer (src/io/tokenizer.c, src/io/bpe_train.c): GPT-2's byte map,
 * the pre-tokenizer pattern on hand-worked cases, BPE merge order on a hand-written
 * tokenizer.json (lowest rank first, leftmost on ties), added-token splitting, decoding,
 * errors naming the bad key, and train -> load -> encode -> decode. The comparison with
 * Hugging Face tokenizers on real text is in tests/cmake/tokenizer.cmake. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "testutil.h"
#include "vpd/tokenizer.h"

static void check_split(const char *text, const char *const *want, size_t n_want) {
    size_t ends[64];
    size_t n = vpd_pretokenize(text, strlen(text), ends, 64);
    int ok = n == n_want;
    size_t start = 0;
    for (size_t i = 0; ok && i < n; i++) {
        ok = strlen(want[i]) == ends[i] - start && !memcmp(want[i], text + start, ends[i] - start);
        start = ends[i];
    }
    CHECK(ok, "pre-tokenization of \"%s\": %zu pieces, expected %zu", text, n, n_want);
}
#define SPLIT(text, ...)                                                                 \
    do {                                                                                 \
        const char *w_[] = {__VA_ARGS__};                                                \
        check_split(text, w_, sizeof w_ / sizeof w_[0]);                                 \
    } while (0)

static int write_text(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fputs(s, f);
    fclose(f);
    return 1;
}

static int encode_is(vpd_tokenizer *t, const char *text, const int32_t *want, size_t n_want) {
    vpd_ids ids = {0};
    vpd_status s = vpd_tokenizer_encode(t, text, strlen(text), &ids);
    int ok = s == VPD_OK && ids.n == n_want && (n_want == 0 || !memcmp(ids.ids, want, n_want * sizeof *want));
    if (!ok) {
        fprintf(stderr, "encode \"%s\" ->", text);
        for (size_t i = 0; i < ids.n; i++) fprintf(stderr, " %d", ids.ids[i]);
        fprintf(stderr, "\n");
    }
    vpd_ids_free(&ids);
    return ok;
}

/* A tokenizer with the 256 bytes as ids 0..255 (no merges) and added tokens from 256 on,
 * so every expected id list can be written by hand: each byte outside an added token is
 * its own id. Flags: {content, lstrip, rstrip, normalized, special}. */
typedef struct { const char *content; int lstrip, rstrip, normalized, special; } added_spec;
static vpd_tokenizer *byte_tokenizer(const added_spec *a, int na) {
    cJSON *root = cJSON_CreateObject(), *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int b = 0; b < 256; b++) {
        char c = (char)b, sp[8];
        vpd_bytelevel_encode(&c, 1, sp, sizeof sp);
        cJSON_AddNumberToObject(vocab, sp, b);
    }
    cJSON_AddArrayToObject(model, "merges");
    cJSON *pt = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pt, "type", "ByteLevel");
    cJSON_AddBoolToObject(pt, "add_prefix_space", 0);
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int i = 0; i < na; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", 256 + i);
        cJSON_AddStringToObject(o, "content", a[i].content);
        cJSON_AddBoolToObject(o, "lstrip", a[i].lstrip);
        cJSON_AddBoolToObject(o, "rstrip", a[i].rstrip);
        cJSON_AddBoolToObject(o, "normalized", a[i].normalized);
        cJSON_AddBoolToObject(o, "special", a[i].special);
        cJSON_AddItemToArray(added, o);
    }
    char *js = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    vpd_tokenizer *t = NULL;
    if (write_text("tok_bytes.json", js) && vpd_tokenizer_load(&t, "tok_bytes.json") != VPD_OK)
        fprintf(stderr, "byte tokenizer: %s\n", vpd_last_error());
    free(js);
    return t;
}

/* Issue 17, item 5: agreement with tokenizers where the HF tests did not look. Expected ids
 * are tokenizers 0.23's on the same tokenizer (tests/tokenizer covers them against HF). */
static void test_hf_agreement(void) {
    /* lstrip/rstrip take Unicode White_Space (U+3000, U+2028, U+0085, U+00A0, U+2003), not U+200B */
    added_spec x = {"<X>", 1, 1, 0, 1};
    vpd_tokenizer *t = byte_tokenizer(&x, 1);
    if (t) {
        CHECK(encode_is(t, "a\xe3\x80\x80<X>\xe2\x80\xa8" "b", (int32_t[]){97, 256, 98}, 3), "U+3000 / U+2028 stripped");
        CHECK(encode_is(t, "a\xc2\x85\xc2\xa0\xe2\x80\x83<X>\xe2\x80\x8b" "b", (int32_t[]){97, 256, 226, 128, 139, 98}, 6),
              "U+0085 U+00A0 U+2003 stripped, U+200B kept");
        CHECK(encode_is(t, "a \t<X>\r\nb", (int32_t[]){97, 256, 98}, 3), "ASCII white space stripped");
        vpd_tokenizer_free(t);
    }
    /* special (normalized: false) tokens are cut first, then the normalized ones */
    added_spec two[] = {{"b<s>", 0, 0, 0, 1}, {"ab", 0, 0, 1, 0}};
    t = byte_tokenizer(two, 2);
    if (t) {
        CHECK(encode_is(t, "ab<s>", (int32_t[]){97, 256}, 2), "'b<s>' (raw pass) wins over the earlier 'ab'");
        vpd_tokenizer_free(t);
    }
    added_spec nstrip[] = {{"ab", 1, 1, 1, 0}, {"<s>", 0, 0, 0, 1}};
    t = byte_tokenizer(nstrip, 2);
    if (t) {
        CHECK(encode_is(t, "x <s>  ab  y", (int32_t[]){120, 32, 257, 256, 121}, 5), "lstrip stops at a raw-pass token");
        vpd_tokenizer_free(t);
    }
    /* matches are found on the piece as it is, then stripped: a token inside white space an
     * rstrip took is still emitted, and the text after it again (as tokenizers does) */
    added_spec ov[] = {{"ab", 1, 1, 1, 0}, {"  ", 0, 0, 1, 0}};
    t = byte_tokenizer(ov, 2);
    if (t) {
        CHECK(encode_is(t, "ab\xe2\x80\xa8" "ab  \ntab\tx", (int32_t[]){256, 256, 257, 10, 116, 256, 120}, 7),
              "overlapping strip and match");
        vpd_tokenizer_free(t);
    }
    added_spec ls[] = {{"<s>", 1, 0, 0, 1}, {"  ", 0, 0, 1, 0}};
    t = byte_tokenizer(ls, 2);
    if (t) {
        CHECK(encode_is(t, "a    <s>", (int32_t[]){97, 256}, 2), "lstrip over a run holding a normalized token");
        vpd_tokenizer_free(t);
    }
    /* chunking: a cut is only made where both halves encode as the whole does. Before the fix
     * "  \n" at a chunk end became one pre-token: check every cut of texts built from blank
     * lines, CRLF and trailing white space against the whole (GPT-2 style merges). */
    vpd_tokenizer *tt = NULL;
    if (vpd_tokenizer_load(&tt, "tok_trained.json") != VPD_OK) {
        CHECK(0, "tok_trained.json: %s", vpd_last_error());
        return;
    }
    CHECK(vpd_tokenizer_safe_cut(tt, "a  \nb", 5, 4) == 0, "no cut after '  \\n'");
    CHECK(vpd_tokenizer_safe_cut(tt, "a\r\nb", 4, 3) == 0, "no cut after '\\r\\n'");
    CHECK(vpd_tokenizer_safe_cut(tt, "ab\ncd", 5, 4) == 3, "cut after 'b\\n'");
    static const char *const parts[] = {"a", "bc", " ", "  ", "\n", "\r\n", "\t", " \n", "\n\n", "x.", "\xe3\x80\x80",
                                        "\xc2\xa0", "'s", "12"};
    unsigned long long r = 7;
    int bad = 0, cuts = 0;
    for (int trial = 0; trial < 400; trial++) {
        char text[256];
        size_t n = 0;
        int k = 5 + (int)(trial % 20);
        for (int i = 0; i < k; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            const char *p = parts[(r >> 33) % (sizeof parts / sizeof *parts)];
            size_t l = strlen(p);
            memcpy(text + n, p, l);
            n += l;
        }
        text[n] = 0;
        for (size_t lim = 1; lim < n; lim++) {
            size_t c = vpd_tokenizer_safe_cut(tt, text, n, lim);
            if (!c) continue;
            cuts++;
            vpd_ids whole = {0}, parts2 = {0};
            vpd_tokenizer_encode(tt, text, n, &whole);
            vpd_tokenizer_encode(tt, text, c, &parts2);
            vpd_tokenizer_encode(tt, text + c, n - c, &parts2);
            if (whole.n != parts2.n || (whole.n && memcmp(whole.ids, parts2.ids, whole.n * sizeof *whole.ids))) {
                if (!bad++) fprintf(stderr, "cut at %zu of \"%s\" changes the ids\n", c, text);
            }
            vpd_ids_free(&whole);
            vpd_ids_free(&parts2);
        }
    }
    CHECK(bad == 0 && cuts > 100, "%d of %d cuts change the ids", bad, cuts);
    vpd_tokenizer_free(tt);
}

/* Issue 17: hostile tokenizer.json files give one clear error, no crash, no huge allocation. */
static void test_hostile(void) {
    const char *head = "{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false},"
                       " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": []},"
                       " \"added_tokens\": [{\"id\": 2, \"content\": \"<s>\", \"special\": true}, ";
    struct { const char *tail, *want; } bad[] = {
        /* a later added token that is invalid: the error path freed t->added[0] through NULL */
        {"{\"id\": 3, \"content\": \"<t>\", \"single_word\": true}]}", "single_word is not supported"},
        {"{\"id\": 3, \"content\": \"\"}]}", "added_tokens[1] needs an integer \"id\" >= 0 and a non-empty \"content\""},
        {"{\"id\": 3}]}", "added_tokens[1]"},
        {"{\"id\": -1, \"content\": \"x\"}]}", "added_tokens[1]"},
        {"{\"id\": 3.5, \"content\": \"x\"}]}", "added_tokens[1]"},
        {"{\"id\": \"3\", \"content\": \"x\"}]}", "added_tokens[1]"},
        /* an id of 1e8 made the id tables 1.5 GB */
        {"{\"id\": 100000000, \"content\": \"<big>\"}]}", "token id 100000000 is far beyond the 4 entries"},
        {"{\"id\": 65540, \"content\": \"<big>\"}]}", "token id 65540 is far beyond"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char json[1024];
        snprintf(json, sizeof json, "%s%s", head, bad[i].tail);
        CHECK(write_text("tok_hostile.json", json), "write");
        vpd_tokenizer *t = NULL;
        EXPECT_FAIL(vpd_tokenizer_load(&t, "tok_hostile.json"), VPD_ERR_FORMAT, "tok_hostile.json", bad[i].want);
        CHECK(t == NULL, "no tokenizer on failure");
    }
    const char *vocab_big = "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\","
                            " \"vocab\": {\"a\": 0, \"b\": 99999999}, \"merges\": []}}";
    CHECK(write_text("tok_hostile.json", vocab_big), "write");
    vpd_tokenizer *t = NULL;
    EXPECT_FAIL(vpd_tokenizer_load(&t, "tok_hostile.json"), VPD_ERR_FORMAT, "token id 99999999");
    const char *not_array = "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\","
                            " \"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": {\"id\": 1}}";
    CHECK(write_text("tok_hostile.json", not_array), "write");
    EXPECT_FAIL(vpd_tokenizer_load(&t, "tok_hostile.json"), VPD_ERR_FORMAT, "added_tokens is not an array");
    /* ids with a few holes are fine; the last added token is valid */
    char ok[1024];
    snprintf(ok, sizeof ok, "%s%s", head, "{\"id\": 1000, \"content\": \"<t>\", \"lstrip\": true}]}");
    CHECK(write_text("tok_hostile.json", ok), "write");
    CHECK(vpd_tokenizer_load(&t, "tok_hostile.json") == VPD_OK && vpd_tokenizer_vocab_size(t) == 1001, "holes: %s",
          vpd_last_error());
    if (t) {
        /* a word whose bytes have no token and no unk_token encodes to nothing: no memcpy(NULL, .., 0) */
        CHECK(encode_is(t, "c", NULL, 0), "'c' has no token: no ids");
        CHECK(encode_is(t, "cc", NULL, 0), "'cc' (cached empty word): no ids");
        CHECK(encode_is(t, "", NULL, 0), "empty text");
        CHECK(vpd_tokenizer_safe_cut(t, "", 0, 0) == 0 && vpd_tokenizer_safe_cut(t, "a", 1, 5) == 0, "safe_cut on tiny text");
        vpd_tokenizer_free(t);
    }
}

int main(void) {
    /* GPT-2 byte map: a bijection onto 256 code points, printable ones unchanged */
    int seen[324] = {0}, bij = 1;
    for (int b = 0; b < 256; b++) {
        uint32_t cp = vpd_byte_to_cp((uint8_t)b);
        if (cp >= 324 || seen[cp]++ || vpd_cp_to_byte(cp) != b) bij = 0;
    }
    CHECK(bij, "byte map is not a bijection with its inverse");
    CHECK(vpd_byte_to_cp(' ') == 0x120 && vpd_byte_to_cp('\n') == 0x10A && vpd_byte_to_cp('A') == 'A',
          "byte map: space -> U+0120 (Ġ), newline -> U+010A (Ċ), A -> A");
    char buf[16];
    CHECK(vpd_bytelevel_encode(" a", 2, buf, sizeof buf) == 3 && !strcmp(buf, "\xc4\xa0" "a"), "spelling of \" a\"");

    /* the GPT-2 pattern */
    SPLIT("Hello world", "Hello", " world");
    SPLIT("it's they'll I'M", "it", "'s", " they", "'ll", " I", "'", "M");
    SPLIT("  end  ", " ", " end", "  ");
    SPLIT("x\n\ny", "x", "\n", "\n", "y");
    SPLIT("123abc 45", "123", "abc", " 45");
    SPLIT("a?!b ?c", "a", "?!", "b", " ?", "c");
    SPLIT("\xe6\x97\xa5\xe6\x9c\xac \xe8\xaa\x9e", "\xe6\x97\xa5\xe6\x9c\xac", " \xe8\xaa\x9e"); /* 日本 語 */
    SPLIT("a\xc2\xa0" "b", "a", "\xc2\xa0", "b");  /* NBSP is \s but not ' ': no " ?" */
    SPLIT("x \t\ty", "x", " \t", "\t", "y");
    SPLIT("'x", "'", "x");

    /* a hand-written tokenizer.json: bytes a b c, space (Ġ), merges in rank order */
    const char *json =
        "{\"added_tokens\": [{\"id\": 9, \"content\": \"<X>\", \"special\": true}],"
        " \"normalizer\": null,"
        " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true},"
        " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"\\u0120\": 3, \"aa\": 4,"
        " \"ab\": 5, \"bc\": 6, \"\\u0120a\": 7, \"abc\": 8},"
        " \"merges\": [\"a b\", [\"b\", \"c\"], \"a a\", \"\\u0120 a\", \"ab c\"]}}";
    CHECK(write_text("tok_unit.json", json), "cannot write tok_unit.json");
    vpd_tokenizer *t = NULL;
    vpd_status s = vpd_tokenizer_load(&t, "tok_unit.json");
    CHECK(s == VPD_OK, "load: %s", vpd_last_error());
    if (t) {
        CHECK(vpd_tokenizer_vocab_size(t) == 10, "vocab size %d, expected 10", vpd_tokenizer_vocab_size(t));
        CHECK(encode_is(t, "aaa", (int32_t[]){4, 0}, 2), "aaa -> aa a (leftmost first)");
        CHECK(encode_is(t, "abc", (int32_t[]){8}, 1), "abc -> ab (rank 0) then ab c");
        CHECK(encode_is(t, "bcab", (int32_t[]){6, 5}, 2), "bcab -> bc ab");
        CHECK(encode_is(t, "a<X>b aa", (int32_t[]){0, 9, 1, 3, 4}, 5), "added token split out; \" aa\": a a (rank 2) before \u0120 a");
        CHECK(encode_is(t, "b ab", (int32_t[]){1, 3, 5}, 3), "\" ab\": a b (rank 0) before \\u0120 a (rank 3)");
        CHECK(encode_is(t, "a<X", (int32_t[]){0}, 1), "partial added token: '<' and 'X' have no token (dropped)");
        size_t n;
        const char *b = vpd_tokenizer_token_bytes(t, 7, &n);
        CHECK(b && n == 2 && !memcmp(b, " a", 2), "token 7 is \" a\"");
        CHECK(vpd_tokenizer_token_id(t, "<X>", 3) == 9, "added token id");
        CHECK(!strcmp(vpd_tokenizer_token_str(t, 3), "\xc4\xa0"), "spelling of token 3");
        int32_t bad[] = {0, 42};
        FILE *dn = fopen("/dev/null", "wb");
        s = vpd_tokenizer_decode(t, bad, 2, dn);
        if (dn) fclose(dn);
        CHECK(s == VPD_ERR_VALUE && strstr(vpd_last_error(), "position 1"), "decode of an unknown id: %s",
              vpd_last_error());
        vpd_tokenizer_free(t);
    }

    /* errors name the key */
    CHECK(write_text("tok_bad.json", "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\","
                                     " \"vocab\": {\"a\": 0}, \"merges\": [\"a z\"]}}"), "write");
    s = vpd_tokenizer_load(&t, "tok_bad.json");
    CHECK(s == VPD_ERR_FORMAT && strstr(vpd_last_error(), "merges[0]") && strstr(vpd_last_error(), "\"z\""),
          "missing merge token: %s", vpd_last_error());
    CHECK(write_text("tok_bad2.json", "{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"model\": {\"type\": \"BPE\","
                                      " \"vocab\": {\"a\": 0}, \"merges\": []}}"), "write");
    s = vpd_tokenizer_load(&t, "tok_bad2.json");
    CHECK(s == VPD_ERR_FORMAT && strstr(vpd_last_error(), "Whitespace"), "unsupported pre-tokenizer: %s",
          vpd_last_error());
    CHECK(write_text("tok_bad3.json", "{\"model\": "), "write");
    s = vpd_tokenizer_load(&t, "tok_bad3.json");
    CHECK(s == VPD_ERR_FORMAT && strstr(vpd_last_error(), "tok_bad3.json"), "truncated JSON: %s", vpd_last_error());

    /* train -> load -> encode -> decode */
    const char *corpus = "the cat sat on the mat.\nthe cat ate the rat!\n\n  indented   line\n"
                         "caf\xc3\xa9 na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac\n";
    CHECK(write_text("tok_corpus.txt", corpus), "write");
    const char *special[] = {"<|endoftext|>"};
    vpd_bpe_train_opts o = {300, 0, special, 1, 0};
    const char *paths[] = {"tok_corpus.txt"};
    s = vpd_bpe_train(paths, 1, &o, "tok_trained.json");
    CHECK(s == VPD_OK, "train: %s", vpd_last_error());
    s = vpd_tokenizer_load(&t, "tok_trained.json");
    CHECK(s == VPD_OK, "load trained: %s", vpd_last_error());
    if (s == VPD_OK) {
        CHECK(vpd_tokenizer_vocab_size(t) == 300, "trained vocab %d, expected 300", vpd_tokenizer_vocab_size(t));
        CHECK(vpd_tokenizer_token_id(t, " the", 4) >= 257, "\" the\" was learned");
        vpd_ids ids = {0};
        const char *text = "the cat<|endoftext|> sat on the mat.\n";
        s = vpd_tokenizer_encode(t, text, strlen(text), &ids);
        CHECK(s == VPD_OK && ids.n < strlen(text) - 12, "trained tokenizer compresses (%zu ids)", ids.n);
        int has_eot = 0;
        for (size_t i = 0; i < ids.n; i++) has_eot |= ids.ids[i] == 0;
        CHECK(has_eot, "<|endoftext|> encoded as id 0");
        char out[256] = {0};
        FILE *mf = fmemopen(out, sizeof out, "wb");
        if (mf) {
            vpd_tokenizer_decode(t, ids.ids, ids.n, mf);
            fclose(mf);
        }
        CHECK(!strcmp(out, text), "decode(encode(x)) = \"%s\"", out);
        vpd_ids_free(&ids);
        vpd_tokenizer_free(t);
    }
    vpd_bpe_train_opts small = {100, 0, NULL, 0, 0};
    s = vpd_bpe_train(paths, 1, &small, "tok_x.json");
    CHECK(s == VPD_ERR_ARG, "vocab below 256 refused");
    const char *missing[] = {"no_such_corpus.txt"};
    s = vpd_bpe_train(missing, 1, &o, "tok_x.json");
    CHECK(s == VPD_ERR_IO && strstr(vpd_last_error(), "no_such_corpus.txt"), "missing corpus: %s", vpd_last_error());
    test_hostile();
    test_hf_agreement();
    TEST_REPORT();
}
