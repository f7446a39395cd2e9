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
#include "vpd/analysis.h"
#include "vpd/edit.h"
#include "vpd/models.h"
#include "vpd/tokenizer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vpd generate MODEL_DIR --prompt TEXT [--max-new N] [--temperature T] [--seed S]\n"
            "                    [--tokenizer FILE] [--ids]\n"
            "       vpd generate RUN_DIR --prompt TEXT [--ablate LAYER:c[,c...]] [--scale LAYER:c=x] [...]\n\n"
            "Continue TEXT with the language model in MODEL_DIR (config.json + weights; e.g. the\n"
            "output of `vpd edit --out`) and print prompt and continuation. Given a decomposition's\n"
            "RUN_DIR (its run.h5) instead, the run's target generates, with run-time edits of its\n"
            "subcomponents as `vpd edit` applies them (mask m_c for the named ones, 1 elsewhere, the\n"
            "layer otherwise the target's: W - sum (1 - m_c) U_c V_c^T at every position):\n"
            "  --ablate LAYER:c[,c...]   m_c = 0 (repeatable)\n"
            "  --scale LAYER:c=x         m_c = x (repeatable)\n\n"
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
    const char *ablate[64], *scale[64];
    int n_ablate, n_scale;
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
            if (!vpd_cli_double_opt("generate", argc, argv, &i, 0, INFINITY, false, &a->temperature)) return 2;
        } else if (!strcmp(f, "--ablate") || !strcmp(f, "--scale")) {
            const char *v = vpd_cli_value("generate", argc, argv, &i);
            if (!v) return 2;
            int *n = f[2] == 'a' ? &a->n_ablate : &a->n_scale;
            if (*n >= 64) {
                fprintf(stderr, "vpd generate: at most 64 %s options\n", f);
                return 2;
            }
            (f[2] == 'a' ? a->ablate : a->scale)[(*n)++] = v;
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
    vpd_model own;
    memset(&own, 0, sizeof own);
    vpd_run r;
    memset(&r, 0, sizeof r);
    char tp[1200], rh[1200];
    struct stat st;
    snprintf(rh, sizeof rh, "%s/run.h5", a->model_dir);
    const bool run = stat(rh, &st) == 0;
    const bool edits = a->n_ablate + a->n_scale > 0;
    if (edits && !run)
        return vpd_error(VPD_ERR_ARG, "--ablate/--scale need a decomposition's RUN_DIR (with run.h5); %s has none",
                         a->model_dir);
    /* a run: its target (the edits act on its decomposed layers) and its target's tokenizer */
    if (run) VPD_TRY(vpd_run_open(&r, a->model_dir, 1, NULL, 0));
    else VPD_TRY(vpd_model_load(&own, a->model_dir));
    vpd_model *mp = run ? r.d->target : &own;
    vpd_status s = VPD_OK;
    vpd_tokenizer *tk = NULL;
    vpd_ids ids = {0};
    real *out = NULL;
    double *p = NULL;
    int32_t *ctx = NULL;
    vpd_edit_set set;
    memset(&set, 0, sizeof set);
    set.where_active = -1;
    vpd_edit_hook eh;
    memset(&eh, 0, sizeof eh);
    bool hook_ok = false;
    if (mp->cfg.kind != VPD_MODEL_LLAMA)
        s = vpd_error(VPD_ERR_ARG, "%s is a %s model: --prompt needs a language model (toy models take feature vectors)", a->model_dir,
                      vpd_model_kind_name(mp->cfg.kind));
    for (int i = 0; s == VPD_OK && i < a->n_ablate; i++) s = vpd_edit_parse(&set, r.d, a->ablate[i], VPD_EDIT_MASK, 0, false);
    for (int i = 0; s == VPD_OK && i < a->n_scale; i++) s = vpd_edit_parse(&set, r.d, a->scale[i], VPD_EDIT_MASK, 0, true);
    if (s == VPD_OK && edits) {
        s = vpd_edit_hook_init(&eh, r.d, &set, mp->cfg.n_ctx);
        hook_ok = s == VPD_OK;
    }
    if (s == VPD_OK) {
        if (a->tokenizer) snprintf(tp, sizeof tp, "%s", a->tokenizer);
        else snprintf(tp, sizeof tp, "%s/tokenizer.json", run ? r.job.cfg.target_dir : a->model_dir);
        if (!a->tokenizer && stat(tp, &st) != 0)
            s = vpd_error(VPD_ERR_ARG, "%s has no tokenizer.json: pass --tokenizer FILE", run ? r.job.cfg.target_dir : a->model_dir);
        else s = vpd_tokenizer_load(&tk, tp);
    }
    if (s == VPD_OK) s = vpd_tokenizer_encode(tk, a->prompt, strlen(a->prompt), &ids);
    const int n_ctx = mp->cfg.n_ctx, V = mp->cfg.vocab_size;
    if (s == VPD_OK && ids.n == 0) s = vpd_error(VPD_ERR_ARG, "the prompt is empty");
    if (s == VPD_OK && ids.n > (size_t)n_ctx)
        s = vpd_error(VPD_ERR_ARG, "the prompt is %zu tokens, longer than the model's context (n_ctx %d)", ids.n, n_ctx);
    for (size_t i = 0; s == VPD_OK && i < ids.n; i++)
        if (ids.ids[i] >= V)
            s = vpd_error(VPD_ERR_ARG, "prompt token %d is outside the model's vocabulary [0, %d) (wrong tokenizer?)", ids.ids[i], V);
    const size_t total = ids.n + (size_t)a->max_new;
    if (s == VPD_OK) s = vpd_model_reserve(mp, 1, n_ctx);
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
        vpd_model_forward(mp, &in, out, hook_ok ? &eh.base : NULL);
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
    if (hook_ok) vpd_edit_hook_free(&eh);
    if (run) vpd_run_close(&r);
    else vpd_model_free(&own);
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
