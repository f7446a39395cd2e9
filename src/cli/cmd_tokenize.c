/* vpd tokenize: text to token binaries and back with a Hugging Face tokenizer.json
 * (byte-level BPE), and training such a tokenizer on a corpus.
 *
 *   vpd tokenize --tokenizer T.json IN.txt... --out tokens.bin [--dtype uint16|uint32]
 *   vpd tokenize --tokenizer T.json --print "text"        ids and tokens of a prompt
 *   vpd tokenize --tokenizer T.json --decode tokens.bin [--dtype ...]   text to stdout
 *   vpd tokenize --train --vocab N IN.txt... --out tokenizer.json [--special TOK]...
 *                [--min-frequency F]
 *
 * The binary is the nanoGPT `.bin` convention include/vpd/data.h reads: little-endian
 * ids, nothing else. Files are streamed through a bounded buffer cut at points where the
 * pre-tokenizer cannot join pieces (vpd_tokenizer_safe_cut), so corpora larger than
 * memory work. Runs on rank 0 only (the work is serial). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "vpd/core.h"
#include "vpd/data.h"
#include "vpd/tokenizer.h"

static const char tokenize_usage[] =
    "usage:\n"
    "  vpd tokenize --tokenizer T.json IN.txt... --out tokens.bin [--dtype uint16|uint32]\n"
    "  vpd tokenize --tokenizer T.json --print \"text\"\n"
    "  vpd tokenize --tokenizer T.json --decode tokens.bin [--dtype uint16|uint32]\n"
    "  vpd tokenize --train --vocab N IN.txt... --out tokenizer.json [--special TOKEN]... [--min-frequency F]\n\n"
    "Encodes text files into a flat binary of little-endian token ids (the nanoGPT .bin\n"
    "convention; dtype defaults to uint16 when every id fits), prints the tokens of a\n"
    "prompt, decodes a binary, or trains a byte-level BPE (GPT-2 style, the algorithm of\n"
    "Hugging Face tokenizers' BpeTrainer) and writes its tokenizer.json.\n";

enum { MAX_IN = 256, MAX_SPECIAL = 64 };
#define CHUNK ((size_t)16 << 20)

static vpd_status write_ids(FILE *f, const vpd_ids *ids, int width, const char *out, size_t *written) {
    /* little-endian on disk; convert in a small buffer (no allocation per id) */
    unsigned char buf[1 << 16];
    size_t k = 0;
    for (size_t i = 0; i < ids->n; i++) {
        uint32_t v = (uint32_t)ids->ids[i];
        if (width == 2 && v > 0xFFFF)
            return vpd_error(VPD_ERR_VALUE, "%s: id %u does not fit uint16 (use --dtype uint32)", out, v);
        for (int b = 0; b < width; b++) buf[k++] = (unsigned char)(v >> (8 * b));
        if (k + 4 > sizeof buf || i + 1 == ids->n) {
            if (fwrite(buf, 1, k, f) != k) return vpd_error(VPD_ERR_IO, "writing %s failed: %s", out, strerror(errno));
            k = 0;
        }
    }
    *written += ids->n;
    return VPD_OK;
}

static vpd_status encode_files(vpd_tokenizer *t, char **in, int n_in, const char *out, int width) {
    char tmp[1024];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-%ld", out, (long)getpid()) >= (int)sizeof tmp)
        return vpd_error(VPD_ERR_ARG, "--out path too long: %s", out);
    FILE *fo = fopen(tmp, "wb");
    if (!fo) return vpd_error(VPD_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    char *buf = malloc(CHUNK + 1);
    vpd_ids ids = {0};
    vpd_status st = buf ? VPD_OK : vpd_error(VPD_ERR_MEM, "out of memory for a %zu-byte buffer", CHUNK);
    size_t n_tok = 0, n_bytes = 0;
    double t0 = vpd_wtime(), t_enc = 0;
    for (int i = 0; i < n_in && st == VPD_OK; i++) {
        FILE *fi = fopen(in[i], "rb");
        if (!fi) { st = vpd_error(VPD_ERR_IO, "cannot open %s: %s", in[i], strerror(errno)); break; }
        size_t have = 0;
        int eof = 0;
        char *big = NULL; /* whole-file fallback when no safe cut exists */
        while (st == VPD_OK) {
            if (!eof) {
                size_t r = fread(buf + have, 1, CHUNK - have, fi);
                have += r;
                if (have < CHUNK) eof = 1;
                if (ferror(fi)) { st = vpd_error(VPD_ERR_IO, "reading %s failed", in[i]); break; }
            }
            if (have == 0) break;
            size_t cut = eof ? have : vpd_tokenizer_safe_cut(t, buf, have, have - 1);
            if (cut == 0) { /* no safe place in a full buffer: read the rest of the file at once */
                size_t cap = 2 * CHUNK, n = have;
                big = malloc(cap);
                if (!big) { st = vpd_error(VPD_ERR_MEM, "out of memory reading %s", in[i]); break; }
                memcpy(big, buf, have);
                for (;;) {
                    n += fread(big + n, 1, cap - n, fi);
                    if (n < cap) break;
                    char *nb = realloc(big, 2 * cap);
                    if (!nb) { st = vpd_error(VPD_ERR_MEM, "out of memory reading %s", in[i]); break; }
                    big = nb;
                    cap *= 2;
                }
                if (st != VPD_OK) break;
                double te = vpd_wtime();
                ids.n = 0;
                st = vpd_tokenizer_encode(t, big, n, &ids);
                t_enc += vpd_wtime() - te;
                if (st == VPD_OK) st = write_ids(fo, &ids, width, out, &n_tok);
                n_bytes += n;
                break;
            }
            double te = vpd_wtime();
            ids.n = 0;
            st = vpd_tokenizer_encode(t, buf, cut, &ids);
            t_enc += vpd_wtime() - te;
            if (st == VPD_OK) st = write_ids(fo, &ids, width, out, &n_tok);
            n_bytes += cut;
            memmove(buf, buf + cut, have - cut);
            have -= cut;
            if (eof && have == 0) break;
        }
        free(big);
        fclose(fi);
        if (st != VPD_OK) vpd_error_context(st, "tokenizing %s", in[i]);
    }
    free(buf);
    vpd_ids_free(&ids);
    int bad = ferror(fo);
    if (fclose(fo) != 0 || bad) {
        if (st == VPD_OK) st = vpd_error(VPD_ERR_IO, "writing %s failed", tmp);
    }
    if (st == VPD_OK && n_tok < 2) st = vpd_error(VPD_ERR_VALUE, "%s: only %zu tokens (a token file needs 2)", out, n_tok);
    if (st == VPD_OK && rename(tmp, out) != 0) st = vpd_error(VPD_ERR_IO, "cannot rename %s to %s: %s", tmp, out, strerror(errno));
    if (st != VPD_OK) {
        unlink(tmp);
        return st;
    }
    vpd_info("tokenize: %zu bytes -> %zu tokens (%.3f tokens/byte) in %s (uint%d); encoding %.2f s, %.1f MB/s; total %.2f s",
             n_bytes, n_tok, n_bytes ? (double)n_tok / (double)n_bytes : 0.0, out, 8 * width, t_enc,
             t_enc > 0 ? (double)n_bytes / 1e6 / t_enc : 0.0, vpd_wtime() - t0);
    return VPD_OK;
}

static void print_token(const vpd_tokenizer *t, int32_t id) {
    size_t n;
    const char *b = vpd_tokenizer_token_bytes(t, id, &n);
    printf("%6d  \"", id);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)b[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c); /* UTF-8 bytes pass through; a split character shows as it is */
    }
    printf("\"  %s\n", vpd_tokenizer_token_str(t, id));
}

static vpd_status decode_file(const vpd_tokenizer *t, const char *path, int width) {
    FILE *f = fopen(path, "rb");
    if (!f) return vpd_error(VPD_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    unsigned char buf[1 << 16];
    int32_t ids[(1 << 16) / 2];
    size_t r, pos = 0;
    vpd_status st = VPD_OK;
    while (st == VPD_OK && (r = fread(buf, 1, sizeof buf, f)) > 0) {
        if (r % (size_t)width) { st = vpd_error(VPD_ERR_FORMAT, "%s: size is not a multiple of %d bytes", path, width); break; }
        size_t n = r / (size_t)width;
        for (size_t i = 0; i < n; i++) {
            uint32_t v = 0;
            for (int b = 0; b < width; b++) v |= (uint32_t)buf[i * (size_t)width + (size_t)b] << (8 * b);
            ids[i] = (int32_t)v;
        }
        st = vpd_tokenizer_decode(t, ids, n, stdout);
        if (st != VPD_OK) vpd_error_context(st, "%s, token %zu", path, pos);
        pos += n;
    }
    fclose(f);
    return st;
}

/* --print TEXT, --decode FILE or IN.txt... --out tokens.bin with the tokenizer at tok_path */
static vpd_status tokenize_with(const char *tok_path, const char *dtype, const char *print, const char *decode, char **in,
                                int n_in, const char *out) {
    vpd_status st;
    vpd_tokenizer *t;
    st = vpd_tokenizer_load(&t, tok_path);
    if (st != VPD_OK) return st;
    int width = vpd_tokenizer_vocab_size(t) <= 65536 ? 2 : 4;
    if (dtype) st = vpd_tokens_dtype_parse(dtype, "--dtype", &width);
    if (st == VPD_OK && width == 2 && vpd_tokenizer_vocab_size(t) > 65536)
        st = vpd_error(VPD_ERR_ARG, "--dtype uint16: %s has %d ids, more than uint16 holds", tok_path,
                       vpd_tokenizer_vocab_size(t));
    if (st == VPD_OK) {
        if (print) {
            vpd_ids ids = {0};
            st = vpd_tokenizer_encode(t, print, strlen(print), &ids);
            if (st == VPD_OK) {
                printf("%zu tokens\n", ids.n);
                for (size_t i = 0; i < ids.n; i++) print_token(t, ids.ids[i]);
            }
            vpd_ids_free(&ids);
        } else if (decode) {
            st = decode_file(t, decode, width);
        } else if (out && n_in) {
            st = encode_files(t, in, n_in, out, width);
        } else {
            st = vpd_error(VPD_ERR_ARG, "nothing to do: give IN.txt... --out tokens.bin, --print TEXT or --decode FILE");
        }
    }
    vpd_tokenizer_free(t);
    return st;
}

int vpd_cmd_tokenize(int argc, char **argv) {
    const int rank = vpd_world_rank();
    if (vpd_cli_wants_help(argc, argv)) {
        if (rank == 0) fputs(tokenize_usage, stdout);
        return 0;
    }
    if (rank != 0) return 0;
    const char *tok_path = NULL, *out = NULL, *dtype = NULL, *print = NULL, *decode = NULL;
    int train = 0, vocab = 0, min_freq = 0, n_in = 0, n_special = 0;
    char *in[MAX_IN];
    const char *special[MAX_SPECIAL];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
#define NEED_VALUE()                                                                                  \
    do {                                                                                              \
        if (!has) {                                                                                   \
            vpd_error(VPD_ERR_ARG, "%s needs a value", a);                                            \
            return vpd_cli_fail("tokenize", VPD_ERR_ARG);                                             \
        }                                                                                             \
    } while (0)
        if (!strcmp(a, "--tokenizer")) { NEED_VALUE(); tok_path = argv[++i]; }
        else if (!strcmp(a, "--out") || !strcmp(a, "-o")) { NEED_VALUE(); out = argv[++i]; }
        else if (!strcmp(a, "--dtype")) { NEED_VALUE(); dtype = argv[++i]; }
        else if (!strcmp(a, "--print")) { NEED_VALUE(); print = argv[++i]; }
        else if (!strcmp(a, "--decode")) { NEED_VALUE(); decode = argv[++i]; }
        else if (!strcmp(a, "--train")) train = 1;
        else if (!strcmp(a, "--vocab") || !strcmp(a, "--min-frequency")) {
            NEED_VALUE();
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0 || v > 10000000) {
                vpd_error(VPD_ERR_ARG, "%s: '%s' is not an integer in [0, 10^7]", a, argv[i]);
                return vpd_cli_fail("tokenize", VPD_ERR_ARG);
            }
            if (a[2] == 'v') vocab = (int)v; else min_freq = (int)v;
        } else if (!strcmp(a, "--special")) {
            NEED_VALUE();
            if (n_special == MAX_SPECIAL) {
                vpd_error(VPD_ERR_ARG, "more than %d --special tokens", MAX_SPECIAL);
                return vpd_cli_fail("tokenize", VPD_ERR_ARG);
            }
            special[n_special++] = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            vpd_error(VPD_ERR_ARG, "unknown option '%s' (see vpd tokenize --help)", a);
            return vpd_cli_fail("tokenize", VPD_ERR_ARG);
        } else {
            if (n_in == MAX_IN) {
                vpd_error(VPD_ERR_ARG, "more than %d input files", MAX_IN);
                return vpd_cli_fail("tokenize", VPD_ERR_ARG);
            }
            in[n_in++] = argv[i];
        }
#undef NEED_VALUE
    }

    vpd_status st;
    if (train) {
        if (!vocab || !out || !n_in) {
            vpd_error(VPD_ERR_ARG, "--train needs --vocab N, --out tokenizer.json and input files");
            return vpd_cli_fail("tokenize", VPD_ERR_ARG);
        }
        for (int i = 0; i < n_special; i++)
            if (!special[i][0]) {
                vpd_error(VPD_ERR_ARG, "--special: empty token");
                return vpd_cli_fail("tokenize", VPD_ERR_ARG);
            }
        vpd_bpe_train_opts o = {vocab, min_freq, special, n_special, 1};
        st = vpd_bpe_train((const char *const *)in, n_in, &o, out);
        return st == VPD_OK ? 0 : vpd_cli_fail("tokenize", st);
    }
    if (!tok_path) {
        vpd_error(VPD_ERR_ARG, "--tokenizer T.json is required (or --train)");
        return vpd_cli_fail("tokenize", VPD_ERR_ARG);
    }
    st = tokenize_with(tok_path, dtype, print, decode, in, n_in, out);
    return st == VPD_OK ? 0 : vpd_cli_fail("tokenize", st);
}
