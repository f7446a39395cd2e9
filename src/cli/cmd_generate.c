/* `vpd generate MODEL_DIR --prompt TEXT`: continue a prompt with a language model (a target,
 * or an edited model written by `vpd edit --out`), to see what an edit does. Greedy by
 * default; with --temperature T > 0 the next token is drawn from softmax(logits / T) with
 * the counter-based RNG (key (seed, VPD_RNG_SAMPLE), word i for the i-th new token), so a
 * seed reproduces a generation exactly. No KV cache: every step recomputes the forward of
 * the whole context (fine for the small models vpd decomposes). When the context reaches
 * n_ctx tokens it slides: the oldest token is dropped and the model sees the last n_ctx
 * tokens (positions renumbered from 0). Serial: rank 0 does the work. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "vpd/models.h"
#include "vpd/tokenizer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vpd generate MODEL_DIR --prompt TEXT [--max-new N] [--temperature T] [--seed S]\n"
            "                    [--tokenizer FILE] [--ids]\n\n"
            "Continue TEXT with the language model in MODEL_DIR (config.json + weights; e.g. the\n"
            "output of `vpd edit --out`) and print prompt and continuation.\n\n"
            "  --prompt TEXT      the prompt (encoded with the tokenizer; at most n_ctx tokens)\n"
            "  --max-new N        tokens to generate (default 50)\n"
            "  --temperature T    0 (default): greedy; T > 0: sample from softmax(logits / T)\n"
            "  --seed S           sampling seed (default 0); the same seed gives the same text\n"
            "  --tokenizer FILE   tokenizer.json (default: MODEL_DIR/tokenizer.json)\n"
            "  --ids              also print the prompt's and the generated token ids\n\n"
            "No KV cache: each new token recomputes the whole context (fine for small models).\n"
            "Past n_ctx tokens the context slides: the model sees the last n_ctx tokens.\n");
}

typedef struct {
    const char *model_dir, *prompt, *tokenizer;
    int max_new;
    double temperature;
    long seed;
    bool ids;
} gen_args;

static int parse(gen_args *a, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->max_new = 50;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (f[0] != '-') {
            if (a->model_dir) {
                fprintf(stderr, "vpd generate: unexpected argument '%s'\n", f);
                return 2;
            }
            a->model_dir = f;
        } else if (!strcmp(f, "--ids")) a->ids = true;
        else if (!strcmp(f, "--max-new")) {
            if (!vpd_cli_int_opt("generate", argc, argv, &i, 0, 1 << 24, &a->max_new)) return 2;
        } else if (!strcmp(f, "--seed")) {
            const char *v = vpd_cli_value("generate", argc, argv, &i);
            if (!v || !vpd_cli_parse_int("generate", f, v, 0, 1L << 62, &a->seed)) return 2;
        } else if (!strcmp(f, "--temperature")) {
            const char *v = vpd_cli_value("generate", argc, argv, &i);
            if (!v) return 2;
            char *end;
            a->temperature = strtod(v, &end);
            if (end == v || *end || !(a->temperature >= 0) || !isfinite(a->temperature)) {
                fprintf(stderr, "vpd generate: --temperature wants a number >= 0, got '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(f, "--prompt") || !strcmp(f, "--tokenizer")) {
            const char *v = vpd_cli_value("generate", argc, argv, &i);
            if (!v) return 2;
            if (f[2] == 'p') a->prompt = v;
            else a->tokenizer = v;
        } else {
            fprintf(stderr, "vpd generate: unknown option '%s' (see vpd generate --help)\n", f);
            return 2;
        }
    }
    if (!a->model_dir || !a->prompt) {
        fprintf(stderr, "vpd generate: %s\n", !a->model_dir ? "missing MODEL_DIR" : "missing --prompt TEXT");
        return 2;
    }
    return 0;
}

static vpd_status generate(const gen_args *a) {
    vpd_model m;
    memset(&m, 0, sizeof m);
    VPD_TRY(vpd_model_load(&m, a->model_dir));
    vpd_status s = VPD_OK;
    vpd_tokenizer *tk = NULL;
    vpd_ids ids = {0};
    real *out = NULL;
    double *p = NULL;
    int32_t *ctx = NULL;
    char tp[1200];
    struct stat st;
    if (m.cfg.kind != VPD_MODEL_LLAMA)
        s = vpd_error(VPD_ERR_ARG, "%s is a %s model: --prompt needs a language model (toy models take feature vectors)", a->model_dir,
                      vpd_model_kind_name(m.cfg.kind));
    if (s == VPD_OK) {
        if (a->tokenizer) snprintf(tp, sizeof tp, "%s", a->tokenizer);
        else snprintf(tp, sizeof tp, "%s/tokenizer.json", a->model_dir);
        if (!a->tokenizer && stat(tp, &st) != 0)
            s = vpd_error(VPD_ERR_ARG, "%s has no tokenizer.json: pass --tokenizer FILE", a->model_dir);
        else s = vpd_tokenizer_load(&tk, tp);
    }
    if (s == VPD_OK) s = vpd_tokenizer_encode(tk, a->prompt, strlen(a->prompt), &ids);
    const int n_ctx = m.cfg.n_ctx, V = m.cfg.vocab_size;
    if (s == VPD_OK && ids.n == 0) s = vpd_error(VPD_ERR_ARG, "the prompt is empty");
    if (s == VPD_OK && ids.n > (size_t)n_ctx)
        s = vpd_error(VPD_ERR_ARG, "the prompt is %zu tokens, longer than the model's context (n_ctx %d)", ids.n, n_ctx);
    for (size_t i = 0; s == VPD_OK && i < ids.n; i++)
        if (ids.ids[i] >= V)
            s = vpd_error(VPD_ERR_ARG, "prompt token %d is outside the model's vocabulary [0, %d) (wrong tokenizer?)", ids.ids[i], V);
    const size_t total = ids.n + (size_t)a->max_new;
    if (s == VPD_OK) s = vpd_model_reserve(&m, 1, n_ctx);
    if (s == VPD_OK && !(out = vpd_malloc(sizeof(real) * (size_t)n_ctx * V, "logits"))) s = VPD_ERR_MEM;
    if (s == VPD_OK && !(p = vpd_malloc(sizeof(double) * (size_t)V, "probabilities"))) s = VPD_ERR_MEM;
    if (s == VPD_OK && !(ctx = vpd_malloc(sizeof(int32_t) * total, "tokens"))) s = VPD_ERR_MEM;
    if (s == VPD_OK) {
        memcpy(ctx, ids.ids, sizeof(int32_t) * ids.n);
        s = vpd_tokenizer_decode(tk, ctx, ids.n, stdout);
        fflush(stdout);
    }
    const vpd_rng rng = vpd_rng_make((uint64_t)a->seed, VPD_RNG_SAMPLE, 0, 0);
    size_t len = ids.n;
    for (int i = 0; s == VPD_OK && i < a->max_new; i++) {
        const int S = len > (size_t)n_ctx ? n_ctx : (int)len;
        vpd_model_input in = {.B = 1, .S = S, .x = NULL, .tokens = ctx + len - (size_t)S};
        vpd_model_forward(&m, &in, out, NULL);
        const real *z = out + (size_t)(S - 1) * V;
        int next = 0;
        if (a->temperature == 0) {
            for (int v = 1; v < V; v++)
                if (z[v] > z[next]) next = v;
        } else {
            double mx = -INFINITY, sum = 0;
            for (int v = 0; v < V; v++) mx = fmax(mx, z[v] / a->temperature);
            for (int v = 0; v < V; v++) sum += (p[v] = exp(z[v] / a->temperature - mx));
            const double u = (double)vpd_rng_uniform(&rng, (uint64_t)i) * sum;
            double acc = 0;
            next = V - 1;
            for (int v = 0; v < V; v++) {
                acc += p[v];
                if (u < acc) { next = v; break; }
            }
        }
        ctx[len++] = next;
        s = vpd_tokenizer_decode(tk, &ctx[len - 1], 1, stdout);
        fflush(stdout);
    }
    if (s == VPD_OK) {
        printf("\n");
        if (a->ids) {
            printf("prompt ids:");
            for (size_t i = 0; i < ids.n; i++) printf(" %d", ctx[i]);
            printf("\ngenerated ids:");
            for (size_t i = ids.n; i < len; i++) printf(" %d", ctx[i]);
            printf("\n");
        }
    }
    vpd_free(ctx);
    vpd_free(p);
    vpd_free(out);
    vpd_ids_free(&ids);
    if (tk) vpd_tokenizer_free(tk);
    vpd_model_free(&m);
    return s;
}

int vpd_cmd_generate(int argc, char **argv) {
    if (vpd_cli_wants_help(argc, argv)) {
        if (vpd_world_rank() == 0) usage(stdout);
        return 0;
    }
    if (vpd_world_rank() != 0) return 0;
    gen_args a;
    int rc = parse(&a, argc, argv);
    if (rc) return rc;
    vpd_status s = generate(&a);
    return s == VPD_OK ? 0 : vpd_cli_fail("generate", s);
}
