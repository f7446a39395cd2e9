/* Byte-level BPE tokenizer (include/vpd/tokenizer.h): loading a Hugging Face
 * tokenizer.json, the GPT-2 pre-tokenizer pattern as a hand-written matcher over UTF-8,
 * BPE by merge rank with a word cache, decoding.
 *
 * The pipeline follows `tokenizers` step by step so the ids agree with it:
 *   1. added tokens are cut out of the text first (leftmost-longest match; lstrip/rstrip
 *      swallow neighbouring white space), as AddedVocabulary::extract_and_normalize does;
 *   2. each remaining segment gets a space in front when ByteLevel.add_prefix_space is set
 *      and it does not start with one, and is split by the GPT-2 pattern;
 *   3. each piece is BPE-encoded: all adjacent pairs go into a min-heap by (rank, position)
 *      and the lowest is merged until none is left, exactly the order of
 *      tokenizers::models::bpe::Word::merge_all (without dropout).
 * Tokens are held as raw bytes: a vocab entry whose every character is in GPT-2's
 * byte-to-unicode map is that byte string, any other entry is its UTF-8 (the rule of
 * `tokenizers`' ByteLevel decoder). */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "io/unicode_tables.h"
#include "vpd/tokenizer.h"

/* ---- byte-level map ---------------------------------------------------------------
 * GPT-2's bytes_to_unicode: printable Latin-1 bytes (! .. ~, ¡ .. ¬, ® .. ÿ) stand for
 * themselves; the other 68 bytes, in increasing order, become U+0100 .. U+0143. */
uint32_t vpd_byte_to_cp(uint8_t b) {
    if (b <= 32) return 256u + b;
    if (b >= 127 && b <= 160) return (uint32_t)b + 162u;
    if (b == 173) return 323u;
    return b;
}

int vpd_cp_to_byte(uint32_t cp) {
    if (cp < 256) return (cp <= 32 || (cp >= 127 && cp <= 160) || cp == 173) ? -1 : (int)cp;
    if (cp <= 288) return (int)(cp - 256);
    if (cp <= 322) return (int)(cp - 162);
    if (cp == 323) return 173;
    return -1;
}

size_t vpd_bytelevel_encode(const char *bytes, size_t n, char *dst, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = vpd_byte_to_cp((uint8_t)bytes[i]);
        if (cp < 0x80) {
            if (k + 1 < cap) dst[k] = (char)cp;
            k++;
        } else {
            if (k + 2 < cap) {
                dst[k] = (char)(0xC0 | (cp >> 6));
                dst[k + 1] = (char)(0x80 | (cp & 0x3F));
            }
            k += 2;
        }
    }
    if (cap) dst[k < cap ? k : cap - 1] = 0;
    return k;
}

/* ---- UTF-8 and Unicode classes ----------------------------------------------------- */
enum { UC_OTHER = 0, UC_L = 1, UC_N = 2, UC_S = 3 };

/* Decode one code point at s[i] (i < n). Invalid or truncated sequences decode as one
 * byte of class "other" (U+FFFD), so any input is split somehow and nothing is lost. */
static inline size_t utf8_next(const unsigned char *s, size_t n, size_t i, uint32_t *cp) {
    unsigned c = s[i];
    if (c < 0x80) { *cp = c; return 1; }
    size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    if (len == 0 || c > 0xF4 || i + len > n) { *cp = 0xFFFD; return 1; }
    uint32_t v = c & (0x3F >> (len - 1));
    for (size_t k = 1; k < len; k++) {
        if ((s[i + k] & 0xC0) != 0x80) { *cp = 0xFFFD; return 1; }
        v = (v << 6) | (s[i + k] & 0x3F);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min_cp[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) { *cp = 0xFFFD; return 1; }
    *cp = v;
    return len;
}

static int range_find(const vpd_uc_range *r, size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid].lo) hi = mid;
        else if (cp > r[mid].hi) lo = mid + 1;
        else return r[mid].cls;
    }
    return 0;
}

static const uint8_t ascii_class[128] = {
    /* \t \n \v \f \r */
    [9] = UC_S, [10] = UC_S, [11] = UC_S, [12] = UC_S, [13] = UC_S, [32] = UC_S,
    ['0'] = UC_N, ['1'] = UC_N, ['2'] = UC_N, ['3'] = UC_N, ['4'] = UC_N,
    ['5'] = UC_N, ['6'] = UC_N, ['7'] = UC_N, ['8'] = UC_N, ['9'] = UC_N,
    ['A'] = UC_L, ['B'] = UC_L, ['C'] = UC_L, ['D'] = UC_L, ['E'] = UC_L, ['F'] = UC_L, ['G'] = UC_L,
    ['H'] = UC_L, ['I'] = UC_L, ['J'] = UC_L, ['K'] = UC_L, ['L'] = UC_L, ['M'] = UC_L, ['N'] = UC_L,
    ['O'] = UC_L, ['P'] = UC_L, ['Q'] = UC_L, ['R'] = UC_L, ['S'] = UC_L, ['T'] = UC_L, ['U'] = UC_L,
    ['V'] = UC_L, ['W'] = UC_L, ['X'] = UC_L, ['Y'] = UC_L, ['Z'] = UC_L,
    ['a'] = UC_L, ['b'] = UC_L, ['c'] = UC_L, ['d'] = UC_L, ['e'] = UC_L, ['f'] = UC_L, ['g'] = UC_L,
    ['h'] = UC_L, ['i'] = UC_L, ['j'] = UC_L, ['k'] = UC_L, ['l'] = UC_L, ['m'] = UC_L, ['n'] = UC_L,
    ['o'] = UC_L, ['p'] = UC_L, ['q'] = UC_L, ['r'] = UC_L, ['s'] = UC_L, ['t'] = UC_L, ['u'] = UC_L,
    ['v'] = UC_L, ['w'] = UC_L, ['x'] = UC_L, ['y'] = UC_L, ['z'] = UC_L,
};

/* class of the code point at s[i]; its byte length in *len */
static inline int class_at(const unsigned char *s, size_t n, size_t i, size_t *len) {
    if (s[i] < 0x80) { *len = 1; return ascii_class[s[i]]; }
    uint32_t cp;
    *len = utf8_next(s, n, i, &cp);
    return range_find(vpd_uc_class_ranges, sizeof vpd_uc_class_ranges / sizeof vpd_uc_class_ranges[0], cp);
}

/* end of the run of class `k` starting at i */
static inline size_t run_end(const unsigned char *s, size_t n, size_t i, int k) {
    size_t len;
    while (i < n && class_at(s, n, i, &len) == k) i += len;
    return i;
}

/* One match of 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * at position i < n (the pattern matches every position, so pieces tile the text).
 * Alternatives are tried in order at i, as a backtracking engine does. */
static size_t pretok_match(const unsigned char *s, size_t n, size_t i) {
    if (s[i] == '\'' && i + 1 < n) {
        unsigned c = s[i + 1];
        if (c == 's' || c == 't' || c == 'm' || c == 'd') return i + 2;
        if (i + 2 < n && (((c == 'r' || c == 'v') && s[i + 2] == 'e') || (c == 'l' && s[i + 2] == 'l'))) return i + 3;
    }
    size_t len0, len1;
    int k0 = class_at(s, n, i, &len0);
    if (s[i] == ' ' && i + 1 < n) { /* " ?X+" with the space */
        int k1 = class_at(s, n, i + 1, &len1);
        if (k1 != UC_S) return run_end(s, n, i + 1 + len1, k1);
    }
    if (k0 != UC_S) return run_end(s, n, i + len0, k0);
    /* white space: \s+(?!\S) keeps the last white-space character for the next piece
     * when the run is followed by a non-space (so " word" stays together); a run of one
     * followed by a non-space is matched by the final \s+ */
    size_t j = i, last = i;
    while (j < n) {
        size_t len;
        if (class_at(s, n, j, &len) != UC_S) break;
        last = j;
        j += len;
    }
    if (j == n) return n;
    return last > i ? last : j;
}

/* The split regexes of Llama-3 and Qwen2 (their tokenizer.json pre_tokenizer is a Sequence of
 * Split(pattern, behavior Isolated) and ByteLevel(use_regex false)):
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 *   \s*[\r\n]+|\s+(?!\S)|\s+
 * (Qwen2: \p{N} instead of \p{N}{1,3}). One match at i < n; the alternatives are tried in
 * order as a backtracking engine does, so the pieces tile the text. max_digits is 3 or 1. */
static inline int is_crlf(unsigned char c) { return c == '\r' || c == '\n'; }
static size_t split_match(const unsigned char *s, size_t n, size_t i, int max_digits) {
    /* (?i:'s|'t|'re|'ve|'m|'ll|'d) */
    if (s[i] == '\'' && i + 1 < n) {
        unsigned c = (unsigned)s[i + 1] | 0x20u; /* ASCII lower case (only letters are compared) */
        if (c == 's' || c == 't' || c == 'm' || c == 'd') return i + 2;
        if (i + 2 < n) {
            unsigned c2 = (unsigned)s[i + 2] | 0x20u;
            if (((c == 'r' || c == 'v') && c2 == 'e') || (c == 'l' && c2 == 'l')) return i + 3;
        }
    }
    size_t len0, len1;
    int k0 = class_at(s, n, i, &len0);
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (k0 == UC_L) return run_end(s, n, i + len0, UC_L);
    if (k0 != UC_N && !is_crlf(s[i]) && i + len0 < n && class_at(s, n, i + len0, &len1) == UC_L)
        return run_end(s, n, i + len0 + len1, UC_L);
    /* \p{N}{1,max_digits} */
    if (k0 == UC_N) {
        size_t j = i + len0;
        for (int d = 1; d < max_digits && j < n && class_at(s, n, j, &len1) == UC_N; d++) j += len1;
        return j;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t j = i;
    if (s[i] == ' ' && i + 1 < n && class_at(s, n, i + 1, &len1) == 0) j = i + 1;
    if (class_at(s, n, j, &len1) == 0) {
        j = run_end(s, n, j + len1, 0);
        while (j < n && is_crlf(s[j])) j++;
        return j;
    }
    /* white space from here on (k0 == UC_S): the run [i, e) */
    size_t e = i, last = i, last_nl = n;
    while (e < n) {
        size_t len;
        if (class_at(s, n, e, &len) != UC_S) break;
        if (is_crlf(s[e])) last_nl = e;
        last = e;
        e += len;
    }
    /* \s*[\r\n]+: \s* backs off to the last CR/LF of the run */
    if (last_nl != n) return last_nl + 1;
    /* \s+(?!\S): all of a run at the end, else all but its last character; \s+ otherwise */
    if (e == n) return n;
    return last > i ? last : e;
}

size_t vpd_pretokenize(const char *text, size_t n, size_t *ends, size_t cap) {
    const unsigned char *s = (const unsigned char *)text;
    size_t count = 0;
    for (size_t i = 0; i < n;) {
        size_t e = pretok_match(s, n, i);
        if (count < cap) ends[count] = e;
        count++;
        i = e;
    }
    return count;
}

/* ---- hashing ------------------------------------------------------------------------ */
static inline uint64_t hash_bytes(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull ^ n;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}
static inline uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb3f97f4a7c15ull;
    return x ^ (x >> 33);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

typedef struct {
    int32_t id;
    char *content;
    size_t len;
    int lstrip, rstrip, special, normalized;
} added_token;

typedef struct {
    uint32_t hash;
    uint32_t key_len, n_ids;
    size_t key_off, ids_off;
} cache_entry;

struct vpd_tokenizer {
    char path[512];
    int n_ids;              /* 1 + max id */
    /* token id -> raw bytes and tokenizer.json spelling (len -1: no such id) */
    size_t *tok_off, *str_off;
    int32_t *tok_len;
    char *pool, *str_pool;
    /* raw bytes -> vocab id (model vocab only) */
    int32_t *vmap;
    size_t vmap_cap;
    /* merges: (a << 32 | b) -> rank, new id */
    uint64_t *mkey;
    int32_t *mrank, *mnew;
    size_t mcap;
    int32_t byte_id[256];
    int unk_id, ignore_merges;
    /* pre-tokenizer / normalizer */
    int add_prefix_space, use_regex, nfc, nfc_warned;
    /* Split pre-tokenizer before ByteLevel (Llama-3 / Qwen2): 0 none, else the longest digit
     * run of one piece (3: Llama-3's \p{N}{1,3}, 1: Qwen2's \p{N}) */
    int split_digits;
    /* added tokens, longest first within each first byte; added_first[b] has bit 1 for a
     * token starting with byte b that is matched on the raw text (normalized: false), bit 2
     * for one matched after normalization (normalized: true) */
    added_token *added;
    int n_added;
    uint8_t added_first[256];
    /* scratch and word cache (grown, never shrunk) */
    int32_t *sym, *prv, *nxt;
    uint64_t *heap;
    size_t scratch_cap;
    char *seg;
    size_t seg_cap;
    cache_entry *centries;
    uint32_t *cslots;
    size_t ccap, cn;
    unsigned char *ckeys;
    size_t ckeys_n, ckeys_cap;
    int32_t *cids;
    size_t cids_n, cids_cap;
};

void vpd_ids_free(vpd_ids *v) {
    free(v->ids);
    v->ids = NULL;
    v->n = v->cap = 0;
}

static vpd_status ids_push(vpd_ids *v, const int32_t *ids, size_t k) {
    if (k == 0) return VPD_OK; /* v->ids may still be NULL: memcpy(NULL, .., 0) is undefined */
    if (v->n + k > v->cap) {
        size_t c = v->cap ? v->cap : 1024;
        while (c < v->n + k) c *= 2;
        int32_t *p = realloc(v->ids, c * sizeof *p);
        if (!p) return vpd_error(VPD_ERR_MEM, "token ids: cannot grow to %zu ids", c);
        v->ids = p;
        v->cap = c;
    }
    memcpy(v->ids + v->n, ids, k * sizeof *ids);
    v->n += k;
    return VPD_OK;
}

static void *grow(void *p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return p;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    void *q = realloc(p, c * elem);
    if (q) *cap = c;
    return q;
}

/* ---- vocab / merge maps ----------------------------------------------------------------- */
static int32_t vmap_find(const vpd_tokenizer *t, const char *b, size_t n) {
    size_t mask = t->vmap_cap - 1, h = (size_t)hash_bytes((const unsigned char *)b, n) & mask;
    for (;; h = (h + 1) & mask) {
        int32_t id = t->vmap[h];
        if (id < 0) return -1;
        if ((size_t)t->tok_len[id] == n && !memcmp(t->pool + t->tok_off[id], b, n)) return id;
    }
}

static void vmap_insert(vpd_tokenizer *t, int32_t id) {
    const char *b = t->pool + t->tok_off[id];
    size_t n = (size_t)t->tok_len[id], mask = t->vmap_cap - 1;
    size_t h = (size_t)hash_bytes((const unsigned char *)b, n) & mask;
    for (;; h = (h + 1) & mask) {
        int32_t o = t->vmap[h];
        if (o < 0) { t->vmap[h] = id; return; }
        if ((size_t)t->tok_len[o] == n && !memcmp(t->pool + t->tok_off[o], b, n)) {
            /* duplicate spelling: keep the lower id (as a later vocab entry can't win in HF's map
             * either way, this only matters for malformed files) */
            if (id < o) t->vmap[h] = id;
            return;
        }
    }
}

static inline int merge_find(const vpd_tokenizer *t, int32_t a, int32_t b, int32_t *rank, int32_t *nw) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t mask = t->mcap - 1, h = (size_t)hash_u64(key) & mask;
    for (;; h = (h + 1) & mask) {
        if (t->mkey[h] == UINT64_MAX) return 0;
        if (t->mkey[h] == key) {
            *rank = t->mrank[h];
            *nw = t->mnew[h];
            return 1;
        }
    }
}

static void merge_insert(vpd_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t nw) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t mask = t->mcap - 1, h = (size_t)hash_u64(key) & mask;
    while (t->mkey[h] != UINT64_MAX && t->mkey[h] != key) h = (h + 1) & mask;
    t->mkey[h] = key; /* a repeated pair takes the later rank, as HF's HashMap collect does */
    t->mrank[h] = rank;
    t->mnew[h] = nw;
}

/* tokenizer.json spelling -> raw bytes (into dst, capacity >= strlen(s)); see file comment */
static size_t spelling_to_bytes(const char *s, char *dst) {
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = utf8_next(u, n, i, &cp);
        int b = vpd_cp_to_byte(cp);
        if (b < 0) {
            memcpy(dst, s, n);
            return n;
        }
        dst[k++] = (char)b;
        i += len;
    }
    return k;
}

/* ---- loading ------------------------------------------------------------------------------- */
void vpd_tokenizer_free(vpd_tokenizer *t) {
    if (!t) return;
    free(t->tok_off); free(t->str_off); free(t->tok_len); free(t->pool); free(t->str_pool);
    free(t->vmap); free(t->mkey); free(t->mrank); free(t->mnew);
    for (int i = 0; t->added && i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    free(t->sym); free(t->prv); free(t->nxt); free(t->heap); free(t->seg);
    free(t->centries); free(t->cslots); free(t->ckeys); free(t->cids);
    free(t);
}

static char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        vpd_error(VPD_ERR_IO, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (len < cap) break;
        char *nb = realloc(buf, 2 * cap + 1);
        if (!nb) { free(buf); buf = NULL; break; }
        buf = nb;
        cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf) { vpd_error(VPD_ERR_MEM, "reading %s: out of memory", path); return NULL; }
    if (err) { free(buf); vpd_error(VPD_ERR_IO, "reading %s failed", path); return NULL; }
    buf[len] = 0;
    *n = len;
    return buf;
}

static int json_bool(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}

static int json_is_null_or_empty(const cJSON *v) {
    return !v || cJSON_IsNull(v) || (cJSON_IsString(v) && v->valuestring[0] == 0);
}

/* Llama-3's and Qwen2's split patterns, as tokenizer.json spells them (JSON-decoded) */
static const char split_llama3[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char split_qwen2[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* Split(pattern, Isolated, invert false) with one of the two patterns vpd matches by hand */
static vpd_status load_split(vpd_tokenizer *t, const cJSON *sp) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(sp, "pattern");
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
    const cJSON *beh = cJSON_GetObjectItemCaseSensitive(sp, "behavior");
    if (!cJSON_IsString(re))
        return vpd_error(VPD_ERR_FORMAT, "%s: pre_tokenizer Split needs a \"pattern\": {\"Regex\": ...} (a String "
                         "pattern is not supported)", t->path);
    if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated"))
        return vpd_error(VPD_ERR_FORMAT, "%s: pre_tokenizer Split behavior \"%s\" is not supported (only Isolated)",
                         t->path, cJSON_IsString(beh) ? beh->valuestring : "?");
    if (json_bool(sp, "invert", 0))
        return vpd_error(VPD_ERR_FORMAT, "%s: pre_tokenizer Split with invert true is not supported", t->path);
    if (!strcmp(re->valuestring, split_llama3)) t->split_digits = 3;
    else if (!strcmp(re->valuestring, split_qwen2)) t->split_digits = 1;
    else
        return vpd_error(VPD_ERR_FORMAT, "%s: pre_tokenizer Split pattern \"%.120s\" is not supported: vpd has no regex "
                         "engine and matches only Llama-3's and Qwen2's split patterns (and GPT-2's ByteLevel one)",
                         t->path, re->valuestring);
    return VPD_OK;
}

static vpd_status load_pre_tokenizer(vpd_tokenizer *t, const cJSON *pt) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(pt, "type");
    if (!cJSON_IsString(type)) return vpd_error(VPD_ERR_FORMAT, "%s: pre_tokenizer has no \"type\"", t->path);
    if (!strcmp(type->valuestring, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
        int n = cJSON_GetArraySize(list);
        if (n == 1) return load_pre_tokenizer(t, cJSON_GetArrayItem(list, 0));
        const cJSON *a = cJSON_GetArrayItem(list, 0), *b = cJSON_GetArrayItem(list, 1);
        const cJSON *ta = cJSON_GetObjectItemCaseSensitive(a, "type"), *tb = cJSON_GetObjectItemCaseSensitive(b, "type");
        if (n != 2 || !cJSON_IsString(ta) || !cJSON_IsString(tb) || strcmp(ta->valuestring, "Split") ||
            strcmp(tb->valuestring, "ByteLevel"))
            return vpd_error(VPD_ERR_FORMAT, "%s: pre_tokenizer Sequence of %d pre-tokenizers: vpd supports a single "
                             "ByteLevel (GPT-2 / GPT-NeoX) or Split + ByteLevel (Llama-3 / Qwen2)", t->path, n);
        VPD_TRY(load_split(t, a));
        VPD_TRY(load_pre_tokenizer(t, b));
        if (t->use_regex || t->add_prefix_space)
            return vpd_error(VPD_ERR_FORMAT, "%s: pre_tokenizer Split followed by ByteLevel with use_regex or "
                             "add_prefix_space true is not supported (Llama-3 / Qwen2 set both false)", t->path);
        return VPD_OK;
    }
    if (strcmp(type->valuestring, "ByteLevel"))
        return vpd_error(VPD_ERR_FORMAT, "%s: pre_tokenizer type \"%s\" is not supported (expected ByteLevel, or a "
                         "Sequence of Split and ByteLevel)", t->path, type->valuestring);
    t->add_prefix_space = json_bool(pt, "add_prefix_space", 1);
    t->use_regex = json_bool(pt, "use_regex", 1);
    return VPD_OK;
}

static vpd_status load_normalizer(vpd_tokenizer *t, const cJSON *nz) {
    if (!nz || cJSON_IsNull(nz)) return VPD_OK;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(nz, "type");
    if (!cJSON_IsString(type)) return vpd_error(VPD_ERR_FORMAT, "%s: normalizer has no \"type\"", t->path);
    if (!strcmp(type->valuestring, "NFC")) { t->nfc = 1; return VPD_OK; }
    if (!strcmp(type->valuestring, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(nz, "normalizers")) VPD_TRY(load_normalizer(t, it));
        return VPD_OK;
    }
    return vpd_error(VPD_ERR_FORMAT, "%s: normalizer \"%s\" is not supported (only NFC or none)", t->path,
                     type->valuestring);
}

/* how far ids may run past the number of vocab + added entries (holes in the id space) */
#define ID_SLACK 65536

static int cmp_added(const void *a, const void *b) {
    const added_token *x = a, *y = b;
    if ((unsigned char)x->content[0] != (unsigned char)y->content[0])
        return (unsigned char)x->content[0] - (unsigned char)y->content[0];
    return x->len < y->len ? 1 : x->len > y->len ? -1 : 0; /* longest first */
}

static vpd_status load_json(vpd_tokenizer *t, cJSON *root) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return vpd_error(VPD_ERR_FORMAT, "%s: no \"model\" object", t->path);
    const cJSON *mtype = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (cJSON_IsString(mtype) && strcmp(mtype->valuestring, "BPE"))
        return vpd_error(VPD_ERR_FORMAT, "%s: model.type \"%s\" is not supported (expected BPE)", t->path,
                         mtype->valuestring);
    if (!json_is_null_or_empty(cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix")) ||
        !json_is_null_or_empty(cJSON_GetObjectItemCaseSensitive(model, "end_of_word_suffix")))
        return vpd_error(VPD_ERR_FORMAT, "%s: model.continuing_subword_prefix / end_of_word_suffix are not supported "
                         "(byte-level BPE has neither)", t->path);
    if (json_bool(model, "byte_fallback", 0))
        return vpd_error(VPD_ERR_FORMAT, "%s: model.byte_fallback is not supported (byte-level BPE needs none)", t->path);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble != 0)
        vpd_warn("%s: model.dropout %g ignored (encoding is deterministic)", t->path, dropout->valuedouble);
    t->ignore_merges = json_bool(model, "ignore_merges", 0);

    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(vocab)) return vpd_error(VPD_ERR_FORMAT, "%s: model.vocab is not an object", t->path);
    if (!cJSON_IsArray(merges)) return vpd_error(VPD_ERR_FORMAT, "%s: model.merges is not an array", t->path);
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");

    /* sizes: ids, bytes. t->n_added is set only once t->added exists: the free on an error
     * path walks it (a later invalid added token used to dereference NULL there). */
    int max_id = -1, n_added = 0, n_vocab = 0;
    size_t bytes = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 1e8 || it->valueint != it->valuedouble)
            return vpd_error(VPD_ERR_FORMAT, "%s: model.vocab[\"%s\"] is not a non-negative integer id", t->path,
                             it->string);
        if (it->valueint > max_id) max_id = it->valueint;
        bytes += strlen(it->string) + 1;
        n_vocab++;
    }
    if (added && !cJSON_IsArray(added))
        return vpd_error(VPD_ERR_FORMAT, "%s: added_tokens is not an array", t->path);
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 1e8 || id->valueint != id->valuedouble ||
            !cJSON_IsString(content) || !content->valuestring[0])
            return vpd_error(VPD_ERR_FORMAT, "%s: added_tokens[%d] needs an integer \"id\" >= 0 and a non-empty "
                             "\"content\"", t->path, n_added);
        if (json_bool(it, "single_word", 0))
            return vpd_error(VPD_ERR_FORMAT, "%s: added token \"%s\": single_word is not supported", t->path,
                             content->valuestring);
        if (id->valueint > max_id) max_id = id->valueint;
        bytes += strlen(content->valuestring) + 1;
        n_added++;
    }
    if (max_id < 0) return vpd_error(VPD_ERR_FORMAT, "%s: empty vocabulary", t->path);
    /* ids index flat tables: an id far past the number of entries (1e8 in a 50-token file
     * cost 1.5 GB) is a corrupt file, not a vocabulary */
    long long n_entries = (long long)n_vocab + n_added;
    if ((long long)max_id >= n_entries + ID_SLACK)
        return vpd_error(VPD_ERR_FORMAT, "%s: token id %d is far beyond the %lld entries of model.vocab and "
                         "added_tokens (ids must stay below entries + %d; corrupt file?)", t->path, max_id, n_entries,
                         ID_SLACK);
    t->n_ids = max_id + 1;
    size_t n = (size_t)t->n_ids;
    t->tok_off = calloc(n, sizeof *t->tok_off);
    t->str_off = calloc(n, sizeof *t->str_off);
    t->tok_len = malloc(n * sizeof *t->tok_len);
    t->pool = malloc(bytes + 1);
    t->str_pool = malloc(bytes + 1);
    t->vmap_cap = pow2_at_least(2 * n);
    t->vmap = malloc(t->vmap_cap * sizeof *t->vmap);
    t->added = calloc((size_t)n_added + 1, sizeof *t->added);
    if (!t->tok_off || !t->str_off || !t->tok_len || !t->pool || !t->str_pool || !t->vmap || !t->added)
        return vpd_error(VPD_ERR_MEM, "%s: out of memory for %zu tokens", t->path, n);
    t->n_added = n_added; /* every content pointer is NULL (calloc) until set below */
    for (size_t i = 0; i < n; i++) t->tok_len[i] = -1;
    memset(t->vmap, 0xff, t->vmap_cap * sizeof *t->vmap);

    size_t pos = 0, spos = 0;
    cJSON_ArrayForEach(it, vocab) {
        int id = it->valueint;
        if (t->tok_len[id] >= 0)
            return vpd_error(VPD_ERR_FORMAT, "%s: model.vocab has id %d twice (\"%s\")", t->path, id, it->string);
        size_t sl = strlen(it->string);
        memcpy(t->str_pool + spos, it->string, sl + 1);
        t->str_off[id] = spos;
        spos += sl + 1;
        t->tok_off[id] = pos;
        t->tok_len[id] = (int32_t)spelling_to_bytes(it->string, t->pool + pos);
        pos += (size_t)t->tok_len[id];
        vmap_insert(t, id);
    }
    int k = 0;
    cJSON_ArrayForEach(it, added) {
        added_token *a = &t->added[k++];
        const char *c = cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring;
        a->id = cJSON_GetObjectItemCaseSensitive(it, "id")->valueint;
        a->len = strlen(c);
        a->content = malloc(a->len + 1);
        if (!a->content) return vpd_error(VPD_ERR_MEM, "%s: out of memory", t->path);
        memcpy(a->content, c, a->len + 1);
        a->lstrip = json_bool(it, "lstrip", 0);
        a->rstrip = json_bool(it, "rstrip", 0);
        a->special = json_bool(it, "special", 0);
        /* tokenizers' AddedToken default: special tokens are not normalized, others are */
        a->normalized = json_bool(it, "normalized", !a->special);
        t->added_first[(unsigned char)c[0]] |= (uint8_t)(a->normalized ? 2 : 1);
        /* an added token decodes to its content (HF decodes it verbatim) */
        size_t id = (size_t)a->id;
        if (t->tok_len[id] < 0 || t->tok_len[id] != (int32_t)a->len ||
            memcmp(t->pool + t->tok_off[id], c, a->len)) {
            memcpy(t->str_pool + spos, c, a->len + 1);
            t->str_off[id] = spos;
            spos += a->len + 1;
            memcpy(t->pool + pos, c, a->len);
            t->tok_off[id] = pos;
            t->tok_len[id] = (int32_t)a->len;
            pos += a->len;
        }
    }
    qsort(t->added, (size_t)t->n_added, sizeof *t->added, cmp_added);

    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_id[b] = vmap_find(t, &c, 1);
    }
    t->unk_id = -1;
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (cJSON_IsString(unk)) {
        char tmp[256];
        if (strlen(unk->valuestring) < sizeof tmp) {
            size_t ul = spelling_to_bytes(unk->valuestring, tmp);
            t->unk_id = vmap_find(t, tmp, ul);
        }
    }

    /* merges */
    int n_merges = cJSON_GetArraySize(merges);
    t->mcap = pow2_at_least(2 * (size_t)n_merges + 2);
    t->mkey = malloc(t->mcap * sizeof *t->mkey);
    t->mrank = malloc(t->mcap * sizeof *t->mrank);
    t->mnew = malloc(t->mcap * sizeof *t->mnew);
    if (!t->mkey || !t->mrank || !t->mnew) return vpd_error(VPD_ERR_MEM, "%s: out of memory for merges", t->path);
    memset(t->mkey, 0xff, t->mcap * sizeof *t->mkey);
    int rank = 0;
    char *tmp = NULL;
    size_t tmp_cap = 0;
    cJSON_ArrayForEach(it, merges) {
        const char *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        if (cJSON_IsString(it)) {
            const char *sp = strchr(it->valuestring, ' ');
            if (sp && !strchr(sp + 1, ' ')) {
                a = it->valuestring;
                al = (size_t)(sp - a);
                b = sp + 1;
                bl = strlen(b);
            }
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
            a = cJSON_GetArrayItem(it, 0)->valuestring;
            b = cJSON_GetArrayItem(it, 1)->valuestring;
            al = strlen(a);
            bl = strlen(b);
        }
        if (!a) {
            free(tmp);
            return vpd_error(VPD_ERR_FORMAT, "%s: model.merges[%d] is neither \"a b\" nor [\"a\", \"b\"]", t->path, rank);
        }
        /* spelling buffer: a, NUL, b, NUL, a+b, NUL; then their bytes */
        size_t need = 2 * (al + bl) + 3 + 2 * (al + bl) + 3;
        if (need > tmp_cap) {
            free(tmp);
            tmp_cap = 2 * need;
            tmp = malloc(tmp_cap);
            if (!tmp) return vpd_error(VPD_ERR_MEM, "%s: out of memory", t->path);
        }
        char *sa = tmp, *sb = sa + al + 1, *sab = sb + bl + 1, *bytes_buf = sab + al + bl + 1;
        memcpy(sa, a, al); sa[al] = 0;
        memcpy(sb, b, bl); sb[bl] = 0;
        memcpy(sab, a, al); memcpy(sab + al, b, bl); sab[al + bl] = 0;
        int32_t ids[3];
        const char *sp3[3] = {sa, sb, sab};
        for (int q = 0; q < 3; q++) {
            size_t l = spelling_to_bytes(sp3[q], bytes_buf);
            ids[q] = vmap_find(t, bytes_buf, l);
            if (ids[q] < 0) {
                vpd_status s = vpd_error(VPD_ERR_FORMAT, "%s: model.merges[%d] (\"%s\" \"%s\"): token \"%s\" is not in "
                                         "model.vocab", t->path, rank, sa, sb, sp3[q]);
                free(tmp);
                return s;
            }
        }
        merge_insert(t, ids[0], ids[1], rank, ids[2]);
        rank++;
    }
    free(tmp);

    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (!pt || cJSON_IsNull(pt))
        return vpd_error(VPD_ERR_FORMAT, "%s: no pre_tokenizer (vpd reads byte-level BPE tokenizers: expected "
                         "ByteLevel)", t->path);
    VPD_TRY(load_pre_tokenizer(t, pt));
    VPD_TRY(load_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer")));
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    const cJSON *pptype = pp ? cJSON_GetObjectItemCaseSensitive(pp, "type") : NULL;
    if (cJSON_IsString(pptype) && strcmp(pptype->valuestring, "ByteLevel"))
        vpd_warn("%s: post_processor %s ignored (vpd adds no special tokens around a sequence)", t->path,
                 pptype->valuestring);
    return VPD_OK;
}

vpd_status vpd_tokenizer_load(vpd_tokenizer **out, const char *path) {
    *out = NULL;
    vpd_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return vpd_error(VPD_ERR_MEM, "tokenizer %s: out of memory", path);
    snprintf(t->path, sizeof t->path, "%s", path);
    size_t n = 0;
    char *text = read_file(path, &n);
    if (!text) {
        free(t);
        return vpd_error_context(VPD_ERR_IO, "loading tokenizer");
    }
    cJSON *root = cJSON_ParseWithLength(text, n);
    vpd_status s;
    if (!root) {
        const char *e = cJSON_GetErrorPtr();
        s = vpd_error(VPD_ERR_FORMAT, "%s: not valid JSON (near byte %td)", path, e ? e - text : (ptrdiff_t)-1);
    } else {
        s = load_json(t, root);
        cJSON_Delete(root);
    }
    free(text);
    if (s != VPD_OK) {
        vpd_tokenizer_free(t);
        return s;
    }
    *out = t;
    return VPD_OK;
}

int vpd_tokenizer_vocab_size(const vpd_tokenizer *t) { return t->n_ids; }

int vpd_tokenizer_token_id(const vpd_tokenizer *t, const char *bytes, size_t n) {
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && !memcmp(t->added[i].content, bytes, n)) return t->added[i].id;
    return vmap_find(t, bytes, n);
}

const char *vpd_tokenizer_token_bytes(const vpd_tokenizer *t, int id, size_t *n) {
    if (id < 0 || id >= t->n_ids || t->tok_len[id] < 0) {
        *n = 0;
        return NULL;
    }
    *n = (size_t)t->tok_len[id];
    return t->pool + t->tok_off[id];
}

const char *vpd_tokenizer_token_str(const vpd_tokenizer *t, int id) {
    if (id < 0 || id >= t->n_ids || t->tok_len[id] < 0) return NULL;
    return t->str_pool + t->str_off[id];
}

/* ---- BPE of one word ------------------------------------------------------------------
 * Heap entries pack (rank, position) into one uint64 so the min-heap order is rank, then
 * leftmost position: the order tokenizers' BinaryHeap<Merge> pops in. */
static vpd_status scratch_reserve(vpd_tokenizer *t, size_t n) {
    if (n <= t->scratch_cap) return VPD_OK;
    size_t c = t->scratch_cap ? t->scratch_cap : 256;
    while (c < n) c *= 2;
    int32_t *a = realloc(t->sym, c * sizeof *a);
    if (a) t->sym = a;
    int32_t *b = realloc(t->prv, c * sizeof *b);
    if (b) t->prv = b;
    int32_t *d = realloc(t->nxt, c * sizeof *d);
    if (d) t->nxt = d;
    uint64_t *h = realloc(t->heap, 2 * c * sizeof *h);
    if (h) t->heap = h;
    if (!a || !b || !d || !h) return vpd_error(VPD_ERR_MEM, "tokenizer: out of memory for a %zu-byte word", n);
    t->scratch_cap = c;
    return VPD_OK;
}

static inline void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static inline uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = v;
    return top;
}

/* BPE-encode w[0..n); the resulting ids are t->sym[0..*k) */
static vpd_status bpe_word(vpd_tokenizer *t, const unsigned char *w, size_t n, size_t *k_out) {
    VPD_TRY(scratch_reserve(t, n + 1));
    int32_t *sym = t->sym, *prv = t->prv, *nxt = t->nxt;
    if (t->ignore_merges) {
        int32_t id = vmap_find(t, (const char *)w, n);
        if (id >= 0) {
            sym[0] = id;
            *k_out = 1;
            return VPD_OK;
        }
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[w[i]];
        if (id < 0) id = t->unk_id;
        if (id < 0) continue; /* HF drops a character with no token when there is no unk_token */
        sym[m++] = id;
    }
    for (size_t i = 0; i < m; i++) {
        prv[i] = (int32_t)i - 1;
        nxt[i] = i + 1 < m ? (int32_t)i + 1 : -1;
    }
    size_t hn = 0;
    int32_t rank, nw;
    for (size_t i = 0; i + 1 < m; i++)
        if (merge_find(t, sym[i], sym[i + 1], &rank, &nw)) heap_push(t->heap, &hn, ((uint64_t)rank << 32) | i);
    while (hn) {
        uint64_t top = heap_pop(t->heap, &hn);
        int32_t r = (int32_t)(top >> 32), p = (int32_t)(top & 0xffffffffu);
        if (sym[p] < 0) continue; /* merged away */
        int32_t q = nxt[p];
        if (q < 0 || !merge_find(t, sym[p], sym[q], &rank, &nw) || rank != r) continue; /* stale */
        sym[p] = nw;
        sym[q] = -1;
        nxt[p] = nxt[q];
        if (nxt[q] >= 0) prv[nxt[q]] = p;
        if (prv[p] >= 0 && merge_find(t, sym[prv[p]], sym[p], &rank, &nw))
            heap_push(t->heap, &hn, ((uint64_t)rank << 32) | (uint32_t)prv[p]);
        if (nxt[p] >= 0 && merge_find(t, sym[p], sym[nxt[p]], &rank, &nw))
            heap_push(t->heap, &hn, ((uint64_t)rank << 32) | (uint32_t)p);
    }
    size_t k = 0;
    for (int32_t p = m ? 0 : -1; p >= 0; p = nxt[p]) sym[k++] = sym[p];
    *k_out = k;
    return VPD_OK;
}

/* ---- word cache: open addressing over entries; cleared when it grows past its budget ---- */
enum { CACHE_MAX_WORD = 256, CACHE_MAX_ENTRIES = 1 << 20 };

static void cache_clear(vpd_tokenizer *t) {
    t->cn = t->ckeys_n = t->cids_n = 0;
    if (t->cslots) memset(t->cslots, 0, 2 * t->ccap * sizeof *t->cslots);
}

static vpd_status encode_word(vpd_tokenizer *t, const unsigned char *w, size_t n, vpd_ids *out) {
    if (n > CACHE_MAX_WORD) {
        size_t k;
        VPD_TRY(bpe_word(t, w, n, &k));
        return ids_push(out, t->sym, k);
    }
    if (!t->cslots) {
        t->ccap = 1 << 16;
        t->cslots = calloc(2 * t->ccap, sizeof *t->cslots);
        t->centries = malloc(t->ccap * sizeof *t->centries);
        if (!t->cslots || !t->centries) return vpd_error(VPD_ERR_MEM, "tokenizer: out of memory for the word cache");
    }
    uint64_t h64 = hash_bytes(w, n);
    uint32_t h = (uint32_t)h64;
    size_t mask = 2 * t->ccap - 1, s = (size_t)(h64 >> 7) & mask;
    for (;; s = (s + 1) & mask) {
        uint32_t e = t->cslots[s];
        if (!e) break;
        const cache_entry *ce = &t->centries[e - 1];
        if (ce->hash == h && ce->key_len == n && !memcmp(t->ckeys + ce->key_off, w, n))
            return ce->n_ids ? ids_push(out, t->cids + ce->ids_off, ce->n_ids) : VPD_OK;
    }
    size_t k;
    VPD_TRY(bpe_word(t, w, n, &k));
    VPD_TRY(ids_push(out, t->sym, k));
    if (t->cn + 1 > t->ccap) { /* full (load 1/2): double up to the budget, then start over */
        if (t->ccap >= CACHE_MAX_ENTRIES) {
            cache_clear(t);
            return VPD_OK;
        }
        size_t nc = 2 * t->ccap;
        uint32_t *slots = calloc(2 * nc, sizeof *slots);
        cache_entry *ents = realloc(t->centries, nc * sizeof *ents);
        if (!slots || !ents) {
            free(slots);
            if (ents) t->centries = ents;
            cache_clear(t);
            return VPD_OK;
        }
        t->centries = ents;
        free(t->cslots);
        t->cslots = slots;
        t->ccap = nc;
        size_t m2 = 2 * nc - 1;
        for (size_t i = 0; i < t->cn; i++) {
            size_t q = (size_t)(hash_bytes(t->ckeys + ents[i].key_off, ents[i].key_len) >> 7) & m2;
            while (slots[q]) q = (q + 1) & m2;
            slots[q] = (uint32_t)i + 1;
        }
        mask = m2;
        s = (size_t)(h64 >> 7) & mask;
        while (t->cslots[s]) s = (s + 1) & mask;
    }
    unsigned char *nk = grow(t->ckeys, &t->ckeys_cap, t->ckeys_n + n, 1);
    if (!nk) { cache_clear(t); return VPD_OK; }
    t->ckeys = nk;
    if (k) { /* a word can encode to no id (bytes without a token and no unk_token) */
        int32_t *ni = grow(t->cids, &t->cids_cap, t->cids_n + k, sizeof *ni);
        if (!ni) { cache_clear(t); return VPD_OK; }
        t->cids = ni;
    }
    cache_entry *ce = &t->centries[t->cn];
    ce->hash = h;
    ce->key_len = (uint32_t)n;
    ce->n_ids = (uint32_t)k;
    ce->key_off = t->ckeys_n;
    ce->ids_off = t->cids_n;
    memcpy(t->ckeys + t->ckeys_n, w, n);
    if (k) memcpy(t->cids + t->cids_n, t->sym, k * sizeof *t->sym);
    t->ckeys_n += n;
    t->cids_n += k;
    t->cslots[s] = (uint32_t)++t->cn;
    return VPD_OK;
}

/* ---- encoding ------------------------------------------------------------------------------ */
static void nfc_check(vpd_tokenizer *t, const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        if (s[i] < 0x80) { i++; continue; }
        uint32_t cp;
        i += utf8_next(s, n, i, &cp);
        if (range_find(vpd_uc_nfc_unstable, sizeof vpd_uc_nfc_unstable / sizeof vpd_uc_nfc_unstable[0], cp)) {
            vpd_warn("%s asks for NFC normalization and the text holds U+%04X, which NFC may change; vpd does not "
                     "normalize, so ids can differ from tokenizers' here (normalize the text first)", t->path, cp);
            t->nfc_warned = 1;
            return;
        }
    }
}

static vpd_status encode_segment(vpd_tokenizer *t, const char *text, size_t n, vpd_ids *out) {
    if (n == 0) return VPD_OK;
    const unsigned char *s = (const unsigned char *)text;
    if (t->nfc && !t->nfc_warned) nfc_check(t, s, n);
    if (t->add_prefix_space && s[0] != ' ') {
        char *seg = grow(t->seg, &t->seg_cap, n + 1, 1);
        if (!seg) return vpd_error(VPD_ERR_MEM, "tokenizer: out of memory for a %zu-byte segment", n);
        t->seg = seg;
        seg[0] = ' ';
        memcpy(seg + 1, text, n);
        s = (const unsigned char *)seg;
        n++;
    }
    if (t->split_digits) {
        for (size_t i = 0; i < n;) {
            size_t e = split_match(s, n, i, t->split_digits);
            VPD_TRY(encode_word(t, s + i, e - i, out));
            i = e;
        }
        return VPD_OK;
    }
    if (!t->use_regex) return encode_word(t, s, n, out);
    for (size_t i = 0; i < n;) {
        size_t e = pretok_match(s, n, i);
        VPD_TRY(encode_word(t, s + i, e - i, out));
        i = e;
    }
    return VPD_OK;
}

static inline int is_ascii_space(unsigned char c) { return c == ' ' || (c >= 9 && c <= 13); }

/* Unicode White_Space (Rust's char::is_whitespace, what tokenizers' lstrip/rstrip use) */
static inline int is_unicode_ws(uint32_t cp) {
    return cp == ' ' || (cp >= 9 && cp <= 13) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

/* length of the white-space character ending at s[lo..end) (0 if none) */
static size_t ws_before(const unsigned char *s, size_t lo, size_t end) {
    if (end <= lo) return 0;
    if (s[end - 1] < 0x80) return is_ascii_space(s[end - 1]) ? 1 : 0;
    size_t b = end - 1;
    while (b > lo && end - b < 4 && (s[b] & 0xC0) == 0x80) b--;
    uint32_t cp;
    size_t len = utf8_next(s, end, b, &cp);
    return b + len == end && is_unicode_ws(cp) ? len : 0;
}

/* length of the white-space character starting at s[i] (i < n; 0 if none) */
static size_t ws_at(const unsigned char *s, size_t n, size_t i) {
    if (s[i] < 0x80) return is_ascii_space(s[i]) ? 1 : 0;
    uint32_t cp;
    size_t len = utf8_next(s, n, i, &cp);
    return is_unicode_ws(cp) ? len : 0;
}

/* Cut the added tokens of one kind out of text[0..n), as tokenizers' AddedVocabulary does:
 * tokens with normalized=false are cut from the raw text first (pass 1), then those with
 * normalized=true from each piece left (pass 2), then the pre-tokenizer and BPE see the
 * rest. Within a pass the matches are leftmost-longest on the piece as it is (an
 * Aho-Corasick scan, independent of stripping); then each match, in order, takes the
 * Unicode white space before it (lstrip, not before the end of the previous match) and
 * after it (rstrip), exactly as AddedVocabulary::find_matches: a token matched inside
 * white space that an rstrip already took is still emitted, and the text after it again
 * (tokenizers 0.23 does so; ids must agree). */
static vpd_status encode_added(vpd_tokenizer *t, const char *text, size_t n, int pass, vpd_ids *out) {
    if (pass > 2) return encode_segment(t, text, n, out);
    const unsigned char *s = (const unsigned char *)text;
    const uint8_t bit = (uint8_t)pass;
    const int want_normalized = pass == 2;
    size_t start_offset = 0, ws_from = SIZE_MAX, ws_to = 0; /* [ws_to, ws_from) known white space */
    for (size_t i = 0; i < n; i++) {
        if (!(t->added_first[s[i]] & bit)) continue;
        const added_token *best = NULL;
        for (int a = 0; a < t->n_added; a++) { /* sorted by first byte, longest first */
            const added_token *at = &t->added[a];
            if ((unsigned char)at->content[0] != s[i] || at->normalized != want_normalized) continue;
            if (at->len <= n - i && !memcmp(at->content, s + i, at->len)) { best = at; break; }
        }
        if (!best) continue;
        size_t start = i, stop = i + best->len, w;
        if (best->lstrip) {
            size_t b = i;
            while (b > 0 && b != ws_from && (w = ws_before(s, 0, b)) > 0) b -= w;
            if (b == ws_from) b = ws_to; /* the rest of this run was scanned for an earlier match */
            ws_from = i;
            ws_to = b;
            start = b > start_offset ? b : start_offset;
        }
        if (best->rstrip)
            while (stop < n && (w = ws_at(s, n, stop)) > 0) stop += w;
        if (start_offset < start) VPD_TRY(encode_added(t, text + start_offset, start - start_offset, pass + 1, out));
        VPD_TRY(ids_push(out, &best->id, 1));
        start_offset = stop;
        i += best->len - 1; /* the scan goes on after the match, not after what it stripped */
    }
    return start_offset < n ? encode_added(t, text + start_offset, n - start_offset, pass + 1, out) : VPD_OK;
}

vpd_status vpd_tokenizer_encode(vpd_tokenizer *t, const char *text, size_t n, vpd_ids *out) {
    if (!t->n_added) return encode_segment(t, text, n, out);
    return encode_added(t, text, n, 1, out);
}

vpd_status vpd_tokenizer_decode(const vpd_tokenizer *t, const int32_t *ids, size_t n, FILE *f) {
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *b = vpd_tokenizer_token_bytes(t, ids[i], &len);
        if (!b) return vpd_error(VPD_ERR_VALUE, "decode: id %d at position %zu is not in %s", ids[i], i, t->path);
        if (len && fwrite(b, 1, len, f) != len) return vpd_error(VPD_ERR_IO, "decode: write failed");
    }
    return VPD_OK;
}

/* would an added token lie across a cut at p, or take white space across it (lstrip)? */
static int added_spans_cut(const vpd_tokenizer *t, const char *text, size_t n, size_t p) {
    for (int a = 0; a < t->n_added; a++) {
        const added_token *at = &t->added[a];
        if (at->lstrip && at->len <= n - p && !memcmp(at->content, text + p, at->len)) return 1;
        for (size_t k = 0; k < at->len; k++) { /* the token's own '\n' at the cut */
            if (at->content[k] != '\n' || k + 1 > p || at->len - k - 1 > n - p) continue;
            if (!memcmp(at->content, text + p - 1 - k, at->len)) return 1;
        }
    }
    return 0;
}

size_t vpd_tokenizer_safe_cut(const vpd_tokenizer *t, const char *text, size_t n, size_t limit) {
    if (t->add_prefix_space || n < 3) return 0;
    if (limit >= n) limit = n - 1;
    /* "x\ny" cut after the \n: the pattern makes "\n" one piece whether "y" follows or
     * the text ends there. Not after "  \n" (white space before the \n): at the end of
     * a chunk "  \n" would be one piece where the whole text has "  " and "\n" (issue 17). */
    for (size_t p = limit; p >= 2; p--) {
        unsigned char c = (unsigned char)text[p], b = (unsigned char)text[p - 2];
        if (text[p - 1] == '\n' && c < 0x80 && !is_ascii_space(c) && b < 0x80 && !is_ascii_space(b) &&
            !(t->n_added && added_spans_cut(t, text, n, p)))
            return p;
    }
    return 0;
}
