/* vpd tokenizer: byte-level BPE as GPT-2 and GPT-NeoX use it, read from and written to
 * Hugging Face `tokenizer.json` files.
 *
 *  - Loading: model type BPE (vocab, merges as "a b" strings or ["a", "b"] pairs,
 *    ignore_merges, unk_token), the ByteLevel pre-tokenizer (add_prefix_space, use_regex;
 *    also inside a Sequence), an NFC normalizer (vpd does not normalize: it warns once if
 *    text holds a code point NFC could change), and added tokens (special or not,
 *    lstrip/rstrip), which are split out of the text before pre-tokenization by
 *    leftmost-longest match as `tokenizers` does.
 *  - Encoding: the GPT-2 split pattern
 *      's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *    by a hand-written matcher over UTF-8 (Unicode classes in src/io/unicode_tables.h),
 *    then BPE per pre-token by merge rank (lowest rank first, leftmost on ties: the
 *    order of `tokenizers`' heap), with a cache of encoded words.
 *  - Training: `tokenizers`' BpeTrainer algorithm (src/io/bpe_train.c).
 *
 * Internally every token is its raw byte string (the byte-to-unicode map of GPT-2 is
 * undone at load and redone when writing), so decoding is concatenation. */
#ifndef VPD_TOKENIZER_H
#define VPD_TOKENIZER_H

#include <stdint.h>
#include <stdio.h>

#include "vpd/core.h"

typedef struct vpd_tokenizer vpd_tokenizer;

/* A growable array of token ids (owned; free with vpd_ids_free). */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} vpd_ids;
void vpd_ids_free(vpd_ids *v);

/* Load a tokenizer.json. VPD_ERR_IO / VPD_ERR_FORMAT naming the file and the key that is
 * missing or unsupported. On success *out owns everything; free with vpd_tokenizer_free. */
vpd_status vpd_tokenizer_load(vpd_tokenizer **out, const char *path);
void vpd_tokenizer_free(vpd_tokenizer *t);

/* 1 + the largest id (vocab and added tokens) */
int vpd_tokenizer_vocab_size(const vpd_tokenizer *t);
/* id of a token given as its raw bytes (added tokens by content), or -1 */
int vpd_tokenizer_token_id(const vpd_tokenizer *t, const char *bytes, size_t n);
/* raw bytes of token `id` (NULL and *n = 0 if unknown) */
const char *vpd_tokenizer_token_bytes(const vpd_tokenizer *t, int id, size_t *n);
/* the token as tokenizer.json spells it (byte-level unicode form, added tokens verbatim),
 * NUL-terminated, or NULL */
const char *vpd_tokenizer_token_str(const vpd_tokenizer *t, int id);

/* Append the ids of text[0..n) to out. Not thread-safe (the word cache). */
vpd_status vpd_tokenizer_encode(vpd_tokenizer *t, const char *text, size_t n, vpd_ids *out);
/* Write the bytes of ids[0..n) to f. VPD_ERR_VALUE naming the position of an unknown id. */
vpd_status vpd_tokenizer_decode(const vpd_tokenizer *t, const int32_t *ids, size_t n, FILE *f);

/* A byte offset where text[0..n) can be cut into two pieces that encode independently to
 * the same ids as the whole: just after a '\n' that has an ASCII non-space byte on each
 * side (no pre-token spans it; "  \n" at a chunk end would be one piece) and that no added
 * token crosses or strips across. Returns the largest such cut in (0, limit], or 0 if there is none
 * or the tokenizer adds a prefix space to every piece (then cuts would change the ids).
 * Used to stream big files through a bounded buffer. */
size_t vpd_tokenizer_safe_cut(const vpd_tokenizer *t, const char *text, size_t n, size_t limit);

/* Pre-tokenize text[0..n) with the GPT-2 pattern: writes the end offset of each piece to
 * ends[] (capacity `cap`), returns the number of pieces (more than cap = truncated). */
size_t vpd_pretokenize(const char *text, size_t n, size_t *ends, size_t cap);

/* ---- training (src/io/bpe_train.c) ------------------------------------------------- */
typedef struct {
    int vocab_size;              /* total, including the 256 bytes and the special tokens */
    int min_frequency;           /* pairs seen fewer times are not merged (0 = no limit) */
    const char *const *special;  /* special tokens, given ids 0..n_special-1 */
    int n_special;
    int verbose;                 /* progress lines through vpd_info */
} vpd_bpe_train_opts;

/* Train a byte-level BPE on the files as `tokenizers`' BpeTrainer does (each line,
 * with its '\n', pre-tokenized on its own; most frequent pair first, ties to the pair of
 * smallest ids; the 256 byte tokens in the order of their byte-level code points) and
 * write a tokenizer.json to out_path (atomically). Returns VPD_ERR_IO / VPD_ERR_ARG. */
vpd_status vpd_bpe_train(const char *const *paths, int n_paths, const vpd_bpe_train_opts *opts,
                         const char *out_path);

/* ---- byte-level map (GPT-2's bytes_to_unicode) ------------------------------------- */
/* code point that byte b is written as in tokenizer.json */
uint32_t vpd_byte_to_cp(uint8_t b);
/* inverse: byte for code point cp, or -1 */
int vpd_cp_to_byte(uint32_t cp);
/* Append the byte-level spelling of bytes[0..n) to dst (capacity cap, NUL-terminated);
 * returns the length it needs (up to 2 bytes per input byte). */
size_t vpd_bytelevel_encode(const char *bytes, size_t n, char *dst, size_t cap);

#endif
