/* `vpd forward`: run a target model (a model directory: config.json + weights) on
 * inputs from a file and write its outputs to HDF5, for checking a model against
 * another implementation or looking at its predictions.
 *   LM:   --tokens FILE (flat uint16/uint32 token ids, nanoGPT .bin convention) cut into
 *         consecutive windows of S = --n-ctx (default: the model's n_ctx) tokens;
 *         output "logits" [n_windows, S, vocab]. A tail shorter than S is dropped (warned).
 *   toy:  --features FILE.f32 (raw float32, batch × n_features row-major) with --batch N;
 *         output "logits" [N, n_features].
 * Windows go through the model in chunks (bounded memory) and are written as
 * hyperslabs; the file is written under a temporary name and renamed when complete.
 * Runs on rank 0 only (the work is serial); other ranks return at once. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.h"
#include "vpd/io.h"
#include "vpd/models.h"

static const char *forward_usage =
    "usage: vpd forward MODEL_DIR --tokens FILE [--dtype uint16|uint32] [--n-ctx S] [--max-context N] --out OUT.h5\n"
    "       vpd forward MODEL_DIR --features FILE.f32 --batch N --out OUT.h5\n"
    "\n"
    "Run the target model in MODEL_DIR (config.json + model.safetensors or model.h5) and\n"
    "write its outputs to OUT.h5, dataset \"logits\" (float32).\n"
    "\n"
    "  --tokens FILE       language model input: flat little-endian token ids\n"
    "  --dtype T           uint16 (default) or uint32\n"
    "  --n-ctx S           window length (default: the model's n_ctx); the token stream is\n"
    "                      cut into floor(n_tokens / S) windows -> logits [windows, S, vocab]\n"
    "  --max-context N     allow --n-ctx up to N past the model's n_ctx (rotary models only:\n"
    "                      positions extrapolate, with a warning; refused for learned positions)\n"
    "  --features FILE     toy model input: raw float32, N x n_features row-major\n"
    "  --batch N           number of rows in the features file -> logits [N, n_features]\n"
    "  --chunk K           rows (windows or examples) per forward call (default: automatic)\n"
    "  --out OUT.h5        output file (written to a temporary name, then renamed)\n";

static vpd_status parse_int(const char *flag, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return vpd_error(VPD_ERR_ARG, "%s expects an integer in [%ld, %ld], got '%s'", flag, lo, hi, s);
    *out = v;
    return VPD_OK;
}

/* whole file into a malloc'd buffer */
static vpd_status read_file(const char *path, void **buf, size_t *bytes) {
    *buf = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return vpd_error(VPD_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0) {
        fclose(fp);
        return vpd_error(VPD_ERR_IO, "cannot stat '%s': %s", path, strerror(errno));
    }
    *bytes = (size_t)st.st_size;
    *buf = vpd_malloc(*bytes ? *bytes : 1, path);
    if (!*buf) { fclose(fp); return VPD_ERR_MEM; }
    if (fread(*buf, 1, *bytes, fp) != *bytes) {
        fclose(fp);
        vpd_free(*buf);
        *buf = NULL;
        return vpd_error(VPD_ERR_IO, "short read from '%s' (expected %zu bytes)", path, *bytes);
    }
    fclose(fp);
    return VPD_OK;
}

typedef struct {
    const char *model_dir, *tokens, *features, *out, *dtype;
    long n_ctx, batch, chunk, max_context;
} forward_args;

static vpd_status parse_args(forward_args *a, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->dtype = "uint16";
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        bool has_val = i + 1 < argc;
        if (f[0] != '-') {
            if (a->model_dir) return vpd_error(VPD_ERR_ARG, "unexpected argument '%s' (MODEL_DIR is '%s')", f, a->model_dir);
            a->model_dir = f;
            continue;
        }
        if (!has_val) return vpd_error(VPD_ERR_ARG, "option %s needs a value", f);
        const char *v = argv[++i];
        if (!strcmp(f, "--tokens")) a->tokens = v;
        else if (!strcmp(f, "--features")) a->features = v;
        else if (!strcmp(f, "--out")) a->out = v;
        else if (!strcmp(f, "--dtype")) a->dtype = v;
        else if (!strcmp(f, "--n-ctx")) VPD_TRY(parse_int(f, v, 1, INT_MAX, &a->n_ctx));
        else if (!strcmp(f, "--max-context")) VPD_TRY(parse_int(f, v, 1, 1L << 24, &a->max_context));
        else if (!strcmp(f, "--batch")) VPD_TRY(parse_int(f, v, 1, INT_MAX, &a->batch));
        else if (!strcmp(f, "--chunk")) VPD_TRY(parse_int(f, v, 1, INT_MAX, &a->chunk));
        else return vpd_error(VPD_ERR_ARG, "unknown option '%s' (see vpd forward --help)", f);
    }
    if (!a->model_dir) return vpd_error(VPD_ERR_ARG, "missing MODEL_DIR (see vpd forward --help)");
    if (!a->out) return vpd_error(VPD_ERR_ARG, "missing --out OUT.h5");
    if (!!a->tokens == !!a->features) return vpd_error(VPD_ERR_ARG, "give exactly one of --tokens (LM) or --features (toy models)");
    if (strcmp(a->dtype, "uint16") && strcmp(a->dtype, "uint32"))
        return vpd_error(VPD_ERR_ARG, "--dtype must be uint16 or uint32, got '%s'", a->dtype);
    if (a->features && !a->batch) return vpd_error(VPD_ERR_ARG, "--features needs --batch N (rows in the file)");
    return VPD_OK;
}

/* The whole run; on failure the temporary output is removed. */
/* The model's inputs from a token file (LM: whole windows of S tokens, ids checked against
 * the vocabulary) or a float32 feature file (toy: --batch rows); *rows and *S describe them. */
static vpd_status read_inputs(const forward_args *a, const vpd_model *m, int32_t **tok, real **x, long *rows, long *S) {
    void *raw = NULL;
    size_t bytes = 0;
    vpd_status s = VPD_OK;
    if (vpd_model_is_lm(m->cfg.kind)) {
        *S = a->n_ctx ? a->n_ctx : m->cfg.n_ctx;
        if (*S > vpd_model_context(m))
            return vpd_error(VPD_ERR_ARG, "--n-ctx %ld exceeds the model's %s %d%s", *S,
                             vpd_model_context(m) > m->cfg.n_ctx ? "--max-context" : "n_ctx", vpd_model_context(m),
                             vpd_model_context(m) > m->cfg.n_ctx ? "" : " (rotary models: --max-context N extrapolates)");
        if (*S > m->cfg.n_ctx)
            vpd_warn("forward: windows of %ld tokens, but the model was trained on n_ctx = %d: positions %d to %ld "
                     "extrapolate its rotary embeddings", *S, m->cfg.n_ctx, m->cfg.n_ctx, *S - 1);
        VPD_TRY(read_file(a->tokens, &raw, &bytes));
        size_t w = strcmp(a->dtype, "uint16") ? 4 : 2, ntok = bytes / w;
        if (bytes % w) s = vpd_error(VPD_ERR_FORMAT, "'%s': %zu bytes is not a whole number of %s tokens", a->tokens, bytes, a->dtype);
        else if (ntok < (size_t)*S) s = vpd_error(VPD_ERR_FORMAT, "'%s' holds %zu tokens, fewer than one window of %ld", a->tokens, ntok, *S);
        if (s == VPD_OK) {
            *rows = (long)(ntok / (size_t)*S);
            if (ntok % (size_t)*S) vpd_warn("forward: dropping the last %zu tokens of '%s' (not a whole window of %ld)", ntok % (size_t)*S, a->tokens, *S);
            const size_t nuse = (size_t)*rows * (size_t)*S;
            if (!(*tok = vpd_malloc(nuse * sizeof **tok, "token ids"))) s = VPD_ERR_MEM;
            for (size_t i = 0; s == VPD_OK && i < nuse; i++) {
                uint32_t t;
                if (w == 2) { uint16_t u; memcpy(&u, (char *)raw + 2 * i, 2); t = u; }
                else memcpy(&t, (char *)raw + 4 * i, 4);
                if (t >= (uint32_t)m->cfg.vocab_size)
                    s = vpd_error(VPD_ERR_VALUE, "'%s': token %u at position %zu is outside the vocabulary [0, %d)%s", a->tokens, t, i,
                                  m->cfg.vocab_size, w == 2 ? "" : " (is --dtype right?)");
                else (*tok)[i] = (int32_t)t;
            }
        }
    } else {
        *S = 1;
        *rows = a->batch;
        VPD_TRY(read_file(a->features, &raw, &bytes));
        const size_t n = (size_t)*rows * m->cfg.n_features, want = n * sizeof(float);
        if (bytes != want)
            s = vpd_error(VPD_ERR_SHAPE, "'%s' has %zu bytes; --batch %ld x n_features %d float32 needs %zu", a->features, bytes, *rows, m->cfg.n_features, want);
        else if (!(*x = vpd_malloc(n * sizeof(real), "features"))) s = VPD_ERR_MEM;
        for (size_t i = 0; s == VPD_OK && i < n; i++) { float v; memcpy(&v, (char *)raw + 4 * i, 4); (*x)[i] = (real)v; }
        if (s == VPD_OK) s = vpd_check_finite(*x, n, a->features);
    }
    vpd_free(raw);
    return s;
}

static vpd_status forward_run(const forward_args *a) {
    vpd_model m;
    memset(&m, 0, sizeof m);
    VPD_TRY(vpd_model_load(&m, a->model_dir));
    const bool lm = vpd_model_is_lm(m.cfg.kind);
    vpd_status s = VPD_OK;
    int32_t *tok = NULL;
    real *x = NULL, *out = NULL;
    vpd_h5 f = {.id = -1};
    vpd_h5_rows w = {.ds = -1, .fspace = -1};
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", a->out, (int)getpid());
    long rows = 0, S = 1, D = vpd_model_out_dim(&m);
    if (a->tokens && !lm) s = vpd_error(VPD_ERR_ARG, "--tokens given but %s is a %s model (use --features)", a->model_dir, vpd_model_kind_name(m.cfg.kind));
    else if (a->features && lm) s = vpd_error(VPD_ERR_ARG, "--features given but %s is a language model (use --tokens)", a->model_dir);
    if (s == VPD_OK && a->max_context > 0) {
        s = vpd_model_extend_context(&m, (int)a->max_context);
        if (s != VPD_OK) vpd_error_context(s, "--max-context %ld", a->max_context);
    }
    if (s == VPD_OK) s = read_inputs(a, &m, &tok, &x, &rows, &S);
    /* chunk: about 64 MiB of outputs per forward unless given */
    long chunk = a->chunk;
    if (!chunk) {
        const size_t per = (size_t)S * D * sizeof(real);
        chunk = (long)((64u << 20) / (per ? per : 1));
        if (chunk < 1) chunk = 1;
    }
    if (chunk > rows) chunk = rows;
    if (s == VPD_OK) s = vpd_model_reserve(&m, (int)chunk, (int)S);
    if (s == VPD_OK && !(out = vpd_malloc(vpd_model_out_size(&m, (int)chunk, (int)S) * sizeof(real), "forward outputs"))) s = VPD_ERR_MEM;
    if (s == VPD_OK) s = vpd_h5_create(&f, tmp);
    const int64_t dims[3] = {rows, lm ? S : D, D};
    if (s == VPD_OK) s = vpd_h5_rows_create(&w, &f, "logits", lm ? 3 : 2, dims);
    for (long r0 = 0; s == VPD_OK && r0 < rows; r0 += chunk) {
        const int nb = (int)(rows - r0 < chunk ? rows - r0 : chunk);
        vpd_model_input in = {.B = nb, .S = (int)S,
                              .x = x ? x + (size_t)r0 * m.cfg.n_features : NULL,
                              .tokens = tok ? tok + (size_t)r0 * S : NULL};
        vpd_model_forward(&m, &in, out, NULL);
        s = vpd_h5_rows_write(&w, r0, nb, out);
    }
    vpd_h5_rows_close(&w);
    if (s == VPD_OK) s = vpd_h5_set_attr_str(&f, "/", "model_kind", vpd_model_kind_name(m.cfg.kind));
    if (s == VPD_OK) s = vpd_h5_set_attr_str(&f, "/", "model_dir", a->model_dir);
    if (s == VPD_OK && lm) s = vpd_h5_write_i32(&f, "tokens", tok, 2, (int64_t[]){rows, S});
    if (f.id >= 0) {
        vpd_status c = vpd_h5_close(&f);
        if (s == VPD_OK) s = c;
    }
    if (s == VPD_OK && rename(tmp, a->out) != 0) s = vpd_error(VPD_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, a->out, strerror(errno));
    if (s == VPD_OK) vpd_info("forward: %s model, %ld %s -> %s", vpd_model_kind_name(m.cfg.kind), rows, lm ? "windows" : "examples", a->out);
    else unlink(tmp);
    vpd_free(tok);
    vpd_free(x);
    vpd_free(out);
    vpd_model_free(&m);
    return s;
}

int vpd_cmd_forward(int argc, char **argv) {
    if (vpd_cli_wants_help(argc, argv)) {
        if (vpd_world_rank() == 0) fputs(forward_usage, stdout);
        return 0;
    }
    if (vpd_world_rank() != 0) return 0; /* serial command: rank 0 does the work */
    forward_args a;
    vpd_status s = parse_args(&a, argc, argv);
    if (s != VPD_OK) {
        fputs(forward_usage, stderr);
        return vpd_cli_fail("forward", s);
    }
    s = forward_run(&a);
    return s == VPD_OK ? 0 : vpd_cli_fail("forward", s);
}
