/* Byte-level BPE training (vpd_bpe_train, include/vpd/tokenizer.h), the algorithm of
 * `tokenizers`' BpeTrainer (tokenizers/src/models/bpe/trainer.rs) step for step, so
 * that the same corpus gives the same merges:
 *   1. every line of every file (with its '\n', as train_from_files reads them) is split
 *      by the GPT-2 pattern and the pieces are counted;
 *   2. ids: the special tokens, then the 256 byte tokens in the order of the code point
 *      each byte is spelled with (the trainer sorts its alphabet by char);
 *   3. a max-heap of (pair count, pair) — ties go to the smaller (id_a, id_b) — whose
 *      entries carry the words to update; a popped entry whose count is stale is pushed
 *      back with the current count; the top pair is merged in its words, and the pairs
 *      that appear (count > 0) are pushed with the words they appeared in;
 *   4. stop when the vocabulary is full, the heap is empty, or the best count is below
 *      min_frequency.
 * A merge whose result string already exists reuses its id (as the trainer does); the
 * written merges keep the last rank of a pair merged twice (HF's merge map does). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vpd/io.h"
#include "vpd/tokenizer.h"

typedef struct {
    int64_t count;
    uint64_t pair;
    size_t pos_off; /* words to update: pos[pos_off .. pos_off + pos_len) */
    uint32_t pos_len;
} bt_merge;

typedef struct { uint64_t pair; uint32_t word; } bt_change;

/* byte-string -> int map (open addressing; keys live in the caller's pool) */
typedef struct {
    int64_t *val;
    size_t *off;
    uint32_t *len;
    uint8_t *used;
    size_t cap, n;
} bt_strmap;

static uint64_t bt_hash(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull ^ n;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h ^ (h >> 31);
}
static uint64_t bt_hash64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb3f97f4a7c15ull;
    return x ^ (x >> 33);
}

typedef struct {
    /* pool of byte strings (words and tokens) */
    unsigned char *pool;
    size_t pool_n, pool_cap;
    bt_strmap words, toks;
    /* tokens */
    size_t *tok_off;
    uint32_t *tok_len;
    size_t n_tok, tok_cap, tok_len_cap;
    /* words: symbols, lengths, counts */
    int32_t *syms;
    size_t *w_sym;
    uint32_t *w_len;
    int64_t *w_count;
    size_t n_words;
    /* pair counts: pair -> count */
    uint64_t *pkey;
    int64_t *pval;
    size_t pcap, pn;
    /* heap */
    bt_merge *heap;
    size_t hn, hcap;
    uint32_t *pos;
    size_t pos_n, pos_cap;
    bt_change *chg;
    size_t chg_n, chg_cap;
} bt_state;

static int reserve(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}
#define RESERVE(arr, cap, need) reserve((void **)&(arr), &(cap), (need), sizeof *(arr))

static int strmap_init(bt_strmap *m, size_t cap) {
    memset(m, 0, sizeof *m);
    m->cap = cap;
    m->val = malloc(cap * sizeof *m->val);
    m->off = malloc(cap * sizeof *m->off);
    m->len = malloc(cap * sizeof *m->len);
    m->used = calloc(cap, 1);
    return m->val && m->off && m->len && m->used;
}
static void strmap_free(bt_strmap *m) { free(m->val); free(m->off); free(m->len); free(m->used); }

/* slot of key (found or the empty slot where it goes) */
static size_t strmap_slot(const bt_strmap *m, const unsigned char *pool, const unsigned char *k, size_t n) {
    size_t mask = m->cap - 1, h = (size_t)bt_hash(k, n) & mask;
    while (m->used[h] && !(m->len[h] == n && !memcmp(pool + m->off[h], k, n))) h = (h + 1) & mask;
    return h;
}

static int strmap_grow(bt_strmap *m, const unsigned char *pool) {
    bt_strmap nm;
    if (!strmap_init(&nm, m->cap * 2)) { strmap_free(&nm); return 0; }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->used[i]) continue;
        size_t s = strmap_slot(&nm, pool, pool + m->off[i], m->len[i]);
        nm.used[s] = 1; nm.off[s] = m->off[i]; nm.len[s] = m->len[i]; nm.val[s] = m->val[i];
    }
    nm.n = m->n;
    strmap_free(m);
    *m = nm;
    return 1;
}

/* pair counts */
static int64_t *pair_ref(bt_state *s, uint64_t pair) {
    if (2 * (s->pn + 1) > s->pcap) {
        size_t nc = s->pcap ? 2 * s->pcap : 1 << 16;
        uint64_t *k = malloc(nc * sizeof *k);
        int64_t *v = malloc(nc * sizeof *v);
        if (!k || !v) { free(k); free(v); return NULL; }
        memset(k, 0xff, nc * sizeof *k);
        for (size_t i = 0; i < s->pcap; i++) {
            if (s->pkey[i] == UINT64_MAX) continue;
            size_t h = (size_t)bt_hash64(s->pkey[i]) & (nc - 1);
            while (k[h] != UINT64_MAX) h = (h + 1) & (nc - 1);
            k[h] = s->pkey[i];
            v[h] = s->pval[i];
        }
        free(s->pkey); free(s->pval);
        s->pkey = k; s->pval = v; s->pcap = nc;
    }
    size_t mask = s->pcap - 1, h = (size_t)bt_hash64(pair) & mask;
    while (s->pkey[h] != UINT64_MAX && s->pkey[h] != pair) h = (h + 1) & mask;
    if (s->pkey[h] == UINT64_MAX) {
        s->pkey[h] = pair;
        s->pval[h] = 0;
        s->pn++;
    }
    return &s->pval[h];
}

/* heap order: larger count first, then smaller pair */
static inline int merge_before(const bt_merge *a, const bt_merge *b) {
    return a->count != b->count ? a->count > b->count : a->pair < b->pair;
}
static int heap_push(bt_state *s, bt_merge m) {
    if (!RESERVE(s->heap, s->hcap, s->hn + 1)) return 0;
    size_t i = s->hn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!merge_before(&m, &s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = m;
    return 1;
}
static bt_merge heap_pop(bt_state *s) {
    bt_merge top = s->heap[0], v = s->heap[--s->hn];
    size_t i = 0, n = s->hn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && merge_before(&s->heap[c + 1], &s->heap[c])) c++;
        if (!merge_before(&s->heap[c], &v)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = v;
    return top;
}

static int cmp_change(const void *a, const void *b) {
    const bt_change *x = a, *y = b;
    if (x->pair != y->pair) return x->pair < y->pair ? -1 : 1;
    return x->word < y->word ? -1 : x->word > y->word;
}

/* Sort the recorded (pair, word) appearances and push one heap entry per pair with a
 * positive count, carrying its distinct words (where_to_update.drain() in the trainer). */
static vpd_status push_changes(bt_state *s) {
    qsort(s->chg, s->chg_n, sizeof *s->chg, cmp_change);
    for (size_t i = 0; i < s->chg_n;) {
        size_t j = i;
        uint64_t pair = s->chg[i].pair;
        size_t off = s->pos_n;
        while (j < s->chg_n && s->chg[j].pair == pair) {
            if (j == i || s->chg[j].word != s->chg[j - 1].word) {
                if (!RESERVE(s->pos, s->pos_cap, s->pos_n + 1)) return vpd_error(VPD_ERR_MEM, "bpe train: out of memory");
                s->pos[s->pos_n++] = s->chg[j].word;
            }
            j++;
        }
        int64_t *cp = pair_ref(s, pair);
        if (!cp) return vpd_error(VPD_ERR_MEM, "bpe train: out of memory");
        int64_t c = *cp;
        if (c > 0) {
            bt_merge m = {c, pair, off, (uint32_t)(s->pos_n - off)};
            if (!heap_push(s, m)) return vpd_error(VPD_ERR_MEM, "bpe train: out of memory");
        } else {
            s->pos_n = off;
        }
        i = j;
    }
    s->chg_n = 0;
    return VPD_OK;
}

static int record(bt_state *s, uint64_t pair, uint32_t w, int64_t delta) {
    int64_t *c = pair_ref(s, pair);
    if (!c) return 0;
    *c += delta * s->w_count[w];
    if (delta > 0) {
        if (!RESERVE(s->chg, s->chg_cap, s->chg_n + 1)) return 0;
        s->chg[s->chg_n].pair = pair;
        s->chg[s->chg_n].word = w;
        s->chg_n++;
    }
    return 1;
}
#define PAIR(a, b) (((uint64_t)(uint32_t)(a) << 32) | (uint32_t)(b))

/* tokenizers' Word::merge: left to right, replace each (a, b) by nw, report the pairs
 * that disappear (-1) and appear (+1) around it; the merged pair itself is not counted
 * down (the trainer never looks at it again) */
static int word_merge(bt_state *s, uint32_t w, int32_t a, int32_t b, int32_t nw) {
    int32_t *x = s->syms + s->w_sym[w];
    uint32_t n = s->w_len[w];
    for (uint32_t i = 0; i + 1 < n; i++) {
        if (x[i] != a || x[i + 1] != b) continue;
        if (i > 0) {
            if (!record(s, PAIR(x[i - 1], a), w, -1) || !record(s, PAIR(x[i - 1], nw), w, 1)) return 0;
        }
        x[i] = nw;
        memmove(x + i + 1, x + i + 2, (n - i - 2) * sizeof *x);
        n--;
        if (i + 1 < n) {
            if (!record(s, PAIR(b, x[i + 1]), w, -1) || !record(s, PAIR(nw, x[i + 1]), w, 1)) return 0;
        }
    }
    s->w_len[w] = n;
    return 1;
}

static int64_t add_token(bt_state *s, const unsigned char *bytes, size_t n) {
    size_t slot = strmap_slot(&s->toks, s->pool, bytes, n);
    if (s->toks.used[slot]) return s->toks.val[slot];
    if (!RESERVE(s->pool, s->pool_cap, s->pool_n + n) || !RESERVE(s->tok_off, s->tok_cap, s->n_tok + 1) ||
        !RESERVE(s->tok_len, s->tok_len_cap, s->n_tok + 1))
        return -1;
    /* bytes may point into the pool (a concatenation); copy via memmove after the reserve */
    memmove(s->pool + s->pool_n, bytes, n);
    s->tok_off[s->n_tok] = s->pool_n;
    s->tok_len[s->n_tok] = (uint32_t)n;
    s->pool_n += n;
    slot = strmap_slot(&s->toks, s->pool, s->pool + s->tok_off[s->n_tok], n);
    s->toks.used[slot] = 1;
    s->toks.off[slot] = s->tok_off[s->n_tok];
    s->toks.len[slot] = (uint32_t)n;
    s->toks.val[slot] = (int64_t)s->n_tok;
    s->toks.n++;
    if (2 * s->toks.n > s->toks.cap && !strmap_grow(&s->toks, s->pool)) return -1;
    return (int64_t)s->n_tok++;
}

static vpd_status count_file(bt_state *s, const char *path, size_t **ends, size_t *ends_cap) {
    FILE *f = fopen(path, "rb");
    if (!f) return vpd_error(VPD_ERR_IO, "bpe train: cannot open %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    vpd_status st = VPD_OK;
    while ((len = getline(&line, &lcap, f)) > 0) {
        size_t k = vpd_pretokenize(line, (size_t)len, *ends, *ends_cap);
        if (k > *ends_cap) {
            if (!RESERVE(*ends, *ends_cap, k)) { st = vpd_error(VPD_ERR_MEM, "bpe train: out of memory"); break; }
            vpd_pretokenize(line, (size_t)len, *ends, *ends_cap);
        }
        size_t start = 0;
        for (size_t i = 0; i < k; i++) {
            const unsigned char *w = (const unsigned char *)line + start;
            size_t n = (*ends)[i] - start;
            start = (*ends)[i];
            size_t slot = strmap_slot(&s->words, s->pool, w, n);
            if (s->words.used[slot]) { s->words.val[slot]++; continue; }
            if (!RESERVE(s->pool, s->pool_cap, s->pool_n + n)) { st = vpd_error(VPD_ERR_MEM, "bpe train: out of memory"); break; }
            memcpy(s->pool + s->pool_n, w, n);
            s->words.used[slot] = 1;
            s->words.off[slot] = s->pool_n;
            s->words.len[slot] = (uint32_t)n;
            s->words.val[slot] = 1;
            s->words.n++;
            s->pool_n += n;
            if (2 * s->words.n > s->words.cap && !strmap_grow(&s->words, s->pool)) {
                st = vpd_error(VPD_ERR_MEM, "bpe train: out of memory");
                break;
            }
        }
        if (st != VPD_OK) break;
    }
    if (st == VPD_OK && ferror(f)) st = vpd_error(VPD_ERR_IO, "bpe train: reading %s failed", path);
    free(line);
    fclose(f);
    return st;
}

/* ---- tokenizer.json writer ---------------------------------------------------------------- */

static void token_spelling(const bt_state *s, size_t id, int n_special, const vpd_bpe_train_opts *o, char *buf,
                           size_t cap, const char **out, size_t *n) {
    if ((int)id < n_special) {
        *out = o->special[id];
        *n = strlen(o->special[id]);
        return;
    }
    *n = vpd_bytelevel_encode((const char *)s->pool + s->tok_off[id], s->tok_len[id], buf, cap);
    *out = buf;
}

static int cmp_u64pair(const void *a, const void *b) {
    const uint64_t *x = a, *y = b;
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

/* skip[m] = 1 when pair m is merged again later: a pair merged twice keeps its last rank
 * (HF collects merges into a map). NULL when out of memory (then nothing is skipped). */
static unsigned char *later_duplicates(const uint64_t *merges, size_t n) {
    uint64_t *idx = malloc(2 * n * sizeof *idx + 1);
    unsigned char *skip = calloc(n + 1, 1);
    if (!idx || !skip) { free(idx); free(skip); return NULL; }
    for (size_t i = 0; i < n; i++) { idx[2 * i] = merges[i]; idx[2 * i + 1] = i; }
    qsort(idx, n, 2 * sizeof *idx, cmp_u64pair);
    for (size_t i = 0; i + 1 < n; i++)
        if (idx[2 * i] == idx[2 * i + 2]) skip[idx[2 * i + 1]] = 1;
    free(idx);
    return skip;
}

static vpd_status write_json(const bt_state *s, const vpd_bpe_train_opts *o, const uint64_t *merges, size_t n_merges,
                             const char *out_path) {
    char tmp[1024];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-%ld", out_path, (long)getpid()) >= (int)sizeof tmp)
        return vpd_error(VPD_ERR_ARG, "output path too long: %s", out_path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return vpd_error(VPD_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    size_t maxlen = 0;
    for (size_t i = 0; i < s->n_tok; i++) if (s->tok_len[i] > maxlen) maxlen = s->tok_len[i];
    size_t cap = 2 * maxlen + 1;
    char *b1 = malloc(cap), *b2 = malloc(cap);
    if (!b1 || !b2) {
        free(b1); free(b2); fclose(f); unlink(tmp);
        return vpd_error(VPD_ERR_MEM, "bpe train: out of memory");
    }
    fputs("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [", f);
    for (int i = 0; i < o->n_special; i++) {
        fprintf(f, "%s\n    {\"id\": %d, \"content\": ", i ? "," : "", i);
        vpd_json_strn(f, o->special[i], strlen(o->special[i]));
        fputs(", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}",
              f);
    }
    fputs(o->n_special ? "\n  ],\n" : "],\n", f);
    fputs("  \"normalizer\": null,\n"
          "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, "
          "\"use_regex\": true},\n"
          "  \"post_processor\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": false, "
          "\"use_regex\": true},\n"
          "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, "
          "\"use_regex\": true},\n"
          "  \"model\": {\n    \"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, "
          "\"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, \"fuse_unk\": false, "
          "\"byte_fallback\": false, \"ignore_merges\": false,\n    \"vocab\": {",
          f);
    for (size_t i = 0; i < s->n_tok; i++) {
        const char *sp;
        size_t n;
        token_spelling(s, i, o->n_special, o, b1, cap, &sp, &n);
        fputs(i ? ",\n      " : "\n      ", f);
        vpd_json_strn(f, sp, n);
        fprintf(f, ": %zu", i);
    }
    fputs("\n    },\n    \"merges\": [", f);
    unsigned char *skip = later_duplicates(merges, n_merges);
    int first = 1;
    for (size_t m = 0; m < n_merges; m++) {
        if (skip && skip[m]) continue;
        const char *sa, *sb;
        size_t na, nb;
        token_spelling(s, (size_t)(merges[m] >> 32), o->n_special, o, b1, cap, &sa, &na);
        token_spelling(s, (size_t)(merges[m] & 0xffffffffu), o->n_special, o, b2, cap, &sb, &nb);
        fputs(first ? "\n      [" : ",\n      [", f);
        first = 0;
        vpd_json_strn(f, sa, na);
        fputs(", ", f);
        vpd_json_strn(f, sb, nb);
        fputc(']', f);
    }
    fputs("\n    ]\n  }\n}\n", f);
    free(skip);
    free(b1);
    free(b2);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        unlink(tmp);
        return vpd_error(VPD_ERR_IO, "writing %s failed", tmp);
    }
    if (rename(tmp, out_path) != 0) {
        int e = errno;
        unlink(tmp);
        return vpd_error(VPD_ERR_IO, "cannot rename %s to %s: %s", tmp, out_path, strerror(e));
    }
    return VPD_OK;
}

static void state_free(bt_state *s) {
    free(s->pool); strmap_free(&s->words); strmap_free(&s->toks);
    free(s->tok_off); free(s->tok_len); free(s->syms); free(s->w_sym); free(s->w_len); free(s->w_count);
    free(s->pkey); free(s->pval); free(s->heap); free(s->pos); free(s->chg);
}

vpd_status vpd_bpe_train(const char *const *paths, int n_paths, const vpd_bpe_train_opts *o, const char *out_path) {
    if (o->vocab_size < 256 + o->n_special)
        return vpd_error(VPD_ERR_ARG, "bpe train: vocab size %d is below 256 bytes + %d special tokens", o->vocab_size,
                         o->n_special);
    if (n_paths < 1) return vpd_error(VPD_ERR_ARG, "bpe train: no input files");
    bt_state s;
    memset(&s, 0, sizeof s);
    vpd_status st = VPD_OK;
    size_t *ends = NULL, ends_cap = 0;
    uint64_t *merges = NULL;
    size_t n_merges = 0, merges_cap = 0;
    double t0 = vpd_wtime();
    if (!strmap_init(&s.words, 1 << 16) || !strmap_init(&s.toks, 1 << 12)) {
        st = vpd_error(VPD_ERR_MEM, "bpe train: out of memory");
        goto done;
    }
    for (int i = 0; i < n_paths && st == VPD_OK; i++) st = count_file(&s, paths[i], &ends, &ends_cap);
    if (st != VPD_OK) goto done;
    if (o->verbose) vpd_info("bpe train: %zu distinct words (%.1f s)", s.words.n, vpd_wtime() - t0);

    /* ids: special tokens, then bytes by the code point that spells them */
    for (int i = 0; i < o->n_special; i++) {
        /* special tokens are not byte strings of the model; give them a key no word has */
        unsigned char key[8] = {0xff, 0xfe, (unsigned char)i, (unsigned char)(i >> 8), 0xfd, 0, 0, 0};
        if (add_token(&s, key, 5) < 0) { st = vpd_error(VPD_ERR_MEM, "bpe train: out of memory"); goto done; }
    }
    int32_t byte_id[256];
    for (uint32_t cp = 0; cp < 324; cp++) {
        int b = vpd_cp_to_byte(cp);
        if (b < 0) continue;
        unsigned char c = (unsigned char)b;
        int64_t id = add_token(&s, &c, 1);
        if (id < 0) { st = vpd_error(VPD_ERR_MEM, "bpe train: out of memory"); goto done; }
        byte_id[b] = (int32_t)id;
    }

    /* words as symbol arrays */
    s.n_words = s.words.n;
    size_t total = 0;
    for (size_t i = 0; i < s.words.cap; i++) if (s.words.used[i]) total += s.words.len[i];
    s.syms = malloc((total + 1) * sizeof *s.syms);
    s.w_sym = malloc((s.n_words + 1) * sizeof *s.w_sym);
    s.w_len = malloc((s.n_words + 1) * sizeof *s.w_len);
    s.w_count = malloc((s.n_words + 1) * sizeof *s.w_count);
    if (!s.syms || !s.w_sym || !s.w_len || !s.w_count) { st = vpd_error(VPD_ERR_MEM, "bpe train: out of memory"); goto done; }
    size_t w = 0, at = 0;
    for (size_t i = 0; i < s.words.cap; i++) {
        if (!s.words.used[i]) continue;
        const unsigned char *p = s.pool + s.words.off[i];
        s.w_sym[w] = at;
        s.w_len[w] = s.words.len[i];
        s.w_count[w] = s.words.val[i];
        for (uint32_t k = 0; k < s.words.len[i]; k++) s.syms[at++] = byte_id[p[k]];
        w++;
    }
    /* initial pairs */
    for (size_t i = 0; i < s.n_words; i++) {
        const int32_t *x = s.syms + s.w_sym[i];
        for (uint32_t k = 0; k + 1 < s.w_len[i]; k++)
            if (!record(&s, PAIR(x[k], x[k + 1]), (uint32_t)i, 1)) { st = vpd_error(VPD_ERR_MEM, "bpe train: out of memory"); goto done; }
    }
    st = push_changes(&s);
    if (st != VPD_OK) goto done;

    unsigned char *joined = NULL;
    size_t joined_cap = 0;
    while ((int)s.n_tok < o->vocab_size && s.hn) {
        bt_merge top = heap_pop(&s);
        int64_t *curp = pair_ref(&s, top.pair);
        if (!curp) { st = vpd_error(VPD_ERR_MEM, "bpe train: out of memory"); break; }
        int64_t cur = *curp;
        if (top.count != cur) {
            top.count = cur;
            if (!heap_push(&s, top)) { st = vpd_error(VPD_ERR_MEM, "bpe train: out of memory"); break; }
            continue;
        }
        if (top.count < 1 || o->min_frequency > top.count) break;
        int32_t a = (int32_t)(top.pair >> 32), b = (int32_t)(top.pair & 0xffffffffu);
        size_t la = s.tok_len[a], lb = s.tok_len[b];
        if (!RESERVE(joined, joined_cap, la + lb)) { st = vpd_error(VPD_ERR_MEM, "bpe train: out of memory"); break; }
        memcpy(joined, s.pool + s.tok_off[a], la);
        memcpy(joined + la, s.pool + s.tok_off[b], lb);
        int64_t nw = add_token(&s, joined, la + lb);
        if (nw < 0 || !RESERVE(merges, merges_cap, n_merges + 1)) { st = vpd_error(VPD_ERR_MEM, "bpe train: out of memory"); break; }
        merges[n_merges++] = top.pair;
        for (uint32_t q = 0; q < top.pos_len; q++)
            if (!word_merge(&s, s.pos[top.pos_off + q], a, b, (int32_t)nw)) { st = vpd_error(VPD_ERR_MEM, "bpe train: out of memory"); break; }
        if (st != VPD_OK) break;
        st = push_changes(&s);
        if (st != VPD_OK) break;
        if (o->verbose && n_merges % 1000 == 0)
            vpd_info("bpe train: %zu merges, vocab %zu (%.1f s)", n_merges, s.n_tok, vpd_wtime() - t0);
    }
    free(joined);
    if (st != VPD_OK) goto done;
    if ((int)s.n_tok < o->vocab_size)
        vpd_warn("bpe train: the corpus supports only %zu tokens (asked for %d)", s.n_tok, o->vocab_size);
    st = write_json(&s, o, merges, n_merges, out_path);
    if (st == VPD_OK && o->verbose)
        vpd_info("bpe train: wrote %s: %zu tokens, %zu merges (%.1f s)", out_path, s.n_tok, n_merges, vpd_wtime() - t0);
done:
    free(ends);
    free(merges);
    state_free(&s);
    return st;
}
