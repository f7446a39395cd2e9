/* `vpd edit RUN_DIR ...`: edit the target of a finished decomposition by its subcomponents
 * (include/vpd/edit.h, src/analysis/edit.c): run-time ablations/scalings measured on
 * held-out tokens, and baked edits (ablation, the paper's overwrite) written as a new model
 * directory. Serial: rank 0 does the work. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/commands.h"
#include "vpd/edit.h"
#include "vpd/io.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vpd edit RUN_DIR [run-time edits] [baked edits --out MODEL_DIR] [--measure ...]\n\n"
            "Edit the target of a finished decomposition by its subcomponents (U_c row c of U, V_c\n"
            "column c of V, a_c = V_c^T x; README.md \"vpd edit\").\n\n"
            "Run-time edits (mask m_c for the named subcomponents, 1 for all others, Δ kept):\n"
            "    W_edit = W - sum_named (1 - m_c) U_c V_c^T      (no edit = the target exactly)\n"
            "  --ablate LAYER:c[,c...]   m_c = 0 (repeatable)\n"
            "  --scale LAYER:c=x         m_c = x (2 boosts; repeatable)\n"
            "  --where-active THR        edit a token only where the subcomponent's CI g_c > THR\n"
            "  --no-delta                run every decomposed layer as its components alone,\n"
            "                            sum_c m_c U_c V_c^T (the masked model without Δ)\n"
            "Baked edits, written into a copy of the target (needs --out):\n"
            "  --bake-ablate LAYER:c[,c...]  W <- W - U_c V_c^T\n"
            "  --overwrite LAYER:c=TOKEN     the paper's edit: U_c <- -alpha u/|u|, u the unembedding\n"
            "                                of TOKEN: W' = W - (U_c + alpha u/|u|) V_c^T; TOKEN is a\n"
            "                                token's text or #ID; LAYER must write the residual stream\n"
            "  --alpha a                     overwrite scale (default 3, the paper's figure)\n"
            "  --out MODEL_DIR               new model directory (config.json, model.safetensors,\n"
            "                                tokenizer.json, edit.json); refused if it exists.\n"
            "                                Run-time --ablate/--scale without --where-active are baked too.\n"
            "Measuring (language models; held-out windows of data.eval):\n"
            "  --measure                 P(token) where an edited subcomponent fires (g_c > threshold),\n"
            "                            KL(target || edited) there, on the +-W surrounding tokens and on\n"
            "                            all other tokens (off-target); before/after table + JSON\n"
            "  --n-tokens N              positions to measure (default 65536, whole batches)\n"
            "  --batch B                 windows per forward (default: eval_batch_size)\n"
            "  --fire-threshold T        'fires' means g_c > T (default 0.1, as harvest)\n"
            "  --window W                surrounding tokens each side (default 20)\n"
            "  --token TOKEN             token to follow (default: the overwrite's token)\n"
            "  --json FILE               write the measurement (default: MODEL_DIR/edit_measure.json\n"
            "                            with --out, else stdout)\n"
            "  --tokenizer FILE          tokenizer.json (default: the target's)\n");
}

#define MAX_ARGS 128
typedef struct {
    const char *run_dir, *out, *json, *tokenizer, *token;
    const char *ablate[MAX_ARGS], *scale[MAX_ARGS], *bake[MAX_ARGS], *overwrite[MAX_ARGS];
    int n_ablate, n_scale, n_bake, n_overwrite;
    double where_active, alpha, fire_threshold;
    bool no_delta, measure;
    long n_tokens;
    int batch, window;
} edit_args;

static int bad(const char *fmt, const char *a) {
    if (vpd_world_rank() == 0) {
        fprintf(stderr, "vpd edit: ");
        fprintf(stderr, fmt, a);
        fprintf(stderr, "\n");
    }
    return 2;
}

static int parse(edit_args *a, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->where_active = -1;
    a->alpha = 3;
    a->fire_threshold = 0.1;
    a->n_tokens = 65536;
    a->window = 20;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (f[0] != '-') {
            if (a->run_dir) return bad("unexpected argument '%s'", f);
            a->run_dir = f;
            continue;
        }
        if (!strcmp(f, "--no-delta")) { a->no_delta = true; continue; }
        if (!strcmp(f, "--measure")) { a->measure = true; continue; }
        if (!strcmp(f, "--batch")) {
            if (!vpd_cli_int_opt("edit", argc, argv, &i, 1, 1 << 20, &a->batch)) return 2;
            continue;
        }
        if (!strcmp(f, "--window")) {
            if (!vpd_cli_int_opt("edit", argc, argv, &i, 0, 1 << 20, &a->window)) return 2;
            continue;
        }
        const char *v = vpd_cli_value("edit", argc, argv, &i);
        if (!v) return 2;
        if (!strcmp(f, "--ablate") || !strcmp(f, "--scale") || !strcmp(f, "--bake-ablate") || !strcmp(f, "--overwrite")) {
            const char **list = f[2] == 'a' ? a->ablate : f[2] == 's' ? a->scale : f[2] == 'b' ? a->bake : a->overwrite;
            int *n = f[2] == 'a' ? &a->n_ablate : f[2] == 's' ? &a->n_scale : f[2] == 'b' ? &a->n_bake : &a->n_overwrite;
            if (*n >= MAX_ARGS) return bad("too many %s options", f);
            list[(*n)++] = v;
        } else if (!strcmp(f, "--where-active")) {
            if (!vpd_cli_parse_real("edit", f, v, 0, INFINITY, false, &a->where_active)) return 2;
        } else if (!strcmp(f, "--alpha")) {
            if (!vpd_cli_parse_real("edit", f, v, -INFINITY, INFINITY, false, &a->alpha)) return 2;
        } else if (!strcmp(f, "--fire-threshold")) {
            if (!vpd_cli_parse_real("edit", f, v, 0, INFINITY, false, &a->fire_threshold)) return 2;
        } else if (!strcmp(f, "--n-tokens")) {
            if (!vpd_cli_parse_int("edit", f, v, 1, 1L << 40, &a->n_tokens)) return 2;
        } else if (!strcmp(f, "--out")) a->out = v;
        else if (!strcmp(f, "--json")) a->json = v;
        else if (!strcmp(f, "--tokenizer")) a->tokenizer = v;
        else if (!strcmp(f, "--token")) a->token = v;
        else return bad("unknown option '%s' (see vpd edit --help)", f);
    }
    if (!a->run_dir) return bad("%s", "missing RUN_DIR (see vpd edit --help)");
    if (a->n_ablate + a->n_scale + a->n_bake + a->n_overwrite == 0)
        return bad("%s", "no edit given: --ablate, --scale, --bake-ablate or --overwrite");
    if ((a->n_bake || a->n_overwrite) && !a->out) return bad("%s", "--bake-ablate and --overwrite write a new model: give --out MODEL_DIR");
    if (!a->out && !a->measure) return bad("%s", "nothing to do: add --measure (run-time edits) or --out MODEL_DIR (baked edits)");
    return 0;
}

static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static vpd_status copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb");
    if (!in) return vpd_error(VPD_ERR_IO, "cannot open '%s': %s", from, strerror(errno));
    FILE *out = fopen(to, "wb");
    if (!out) {
        fclose(in);
        return vpd_error(VPD_ERR_IO, "cannot create '%s': %s", to, strerror(errno));
    }
    char buf[1 << 16];
    size_t n;
    vpd_status s = VPD_OK;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) { s = vpd_error(VPD_ERR_IO, "short write to '%s'", to); break; }
    fclose(in);
    if (fclose(out) != 0 && s == VPD_OK) s = vpd_error(VPD_ERR_IO, "cannot write '%s'", to);
    return s;
}

static vpd_status write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return vpd_error(VPD_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    fputs(text, f);
    fputc('\n', f);
    return fclose(f) == 0 ? VPD_OK : vpd_error(VPD_ERR_IO, "cannot write '%s'", path);
}

/* the new model directory: written under a temporary name, renamed when complete */
static vpd_status write_model_dir(const edit_args *a, const vpd_run *r, const vpd_model *m, const vpd_edit_set *set,
                                  const char *tok_path) {
    char tmp[1200], p[1300];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", a->out, (long)getpid());
    vpd_status s = vpd_model_save(m, tmp);
    if (s == VPD_OK && tok_path) {
        snprintf(p, sizeof p, "%s/tokenizer.json", tmp);
        s = copy_file(tok_path, p);
    }
    if (s == VPD_OK) {
        /* edit.json: what was done, from which run */
        cJSON *j = cJSON_CreateObject(), *ed = cJSON_AddArrayToObject(j, "edits");
        cJSON_AddStringToObject(j, "run_dir", r->dir);
        cJSON_AddNumberToObject(j, "run_step", r->run_step);
        cJSON_AddStringToObject(j, "target_dir", r->job.cfg.target_dir);
        cJSON_AddStringToObject(j, "formula", "mask: W - (1 - m_c) U_c V_c^T; overwrite: W - (U_c + alpha u_tok/|u_tok|) V_c^T");
        for (int i = 0; i < set->n; i++) {
            const vpd_edit *e = &set->e[i];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "kind", e->kind == VPD_EDIT_MASK ? "mask" : "overwrite");
            cJSON_AddStringToObject(o, "layer", r->d->layers[e->k].name);
            cJSON_AddNumberToObject(o, "c", e->c);
            cJSON_AddNumberToObject(o, e->kind == VPD_EDIT_MASK ? "mask" : "alpha", e->value);
            if (e->kind == VPD_EDIT_OVERWRITE) cJSON_AddNumberToObject(o, "token", e->token);
            cJSON_AddItemToArray(ed, o);
        }
        char *txt = cJSON_Print(j);
        cJSON_Delete(j);
        if (!txt) s = VPD_ERR_MEM;
        else {
            snprintf(p, sizeof p, "%s/edit.json", tmp);
            s = write_text(p, txt);
            free(txt);
        }
    }
    if (s == VPD_OK && exists(a->out)) return vpd_error(VPD_ERR_IO, "%s appeared while writing: left the edit in %s", a->out, tmp);
    if (s == VPD_OK && rename(tmp, a->out) != 0) s = vpd_error(VPD_ERR_IO, "cannot rename %s to %s: %s", tmp, a->out, strerror(errno));
    if (s != VPD_OK) { /* remove the partial temporary directory (only the files written here) */
        static const char *const names[] = {"config.json", "model.safetensors", "model.h5", "tokenizer.json", "edit.json"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            snprintf(p, sizeof p, "%s/%s", tmp, names[i]);
            unlink(p);
        }
        rmdir(tmp);
    }
    return s;
}

static vpd_status edit_run(const edit_args *a) {
    vpd_run r;
    VPD_TRY(vpd_run_open(&r, a->run_dir, a->batch, NULL, 0));
    vpd_status s = VPD_OK;
    vpd_tokenizer *tk = NULL;
    char tok_path[1200] = "";
    if (a->tokenizer) snprintf(tok_path, sizeof tok_path, "%s", a->tokenizer);
    else {
        snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", r.job.cfg.target_dir);
        if (!exists(tok_path)) tok_path[0] = '\0';
    }
    if (tok_path[0] && r.job.trainer.lm) s = vpd_tokenizer_load(&tk, tok_path);
    const vpd_decomp *d = r.d;
    const int vocab = r.job.trainer.lm ? r.job.target.cfg.vocab_size : 0;
    vpd_edit_set *set = calloc(1, sizeof *set);
    if (!set) s = VPD_ERR_MEM;
    else {
        set->where_active = a->where_active;
        set->no_delta = a->no_delta;
    }
    for (int i = 0; s == VPD_OK && i < a->n_ablate; i++) s = vpd_edit_parse(set, d, a->ablate[i], VPD_EDIT_MASK, 0.0, false);
    for (int i = 0; s == VPD_OK && i < a->n_scale; i++) s = vpd_edit_parse(set, d, a->scale[i], VPD_EDIT_MASK, 0.0, true);
    for (int i = 0; s == VPD_OK && i < a->n_bake; i++) s = vpd_edit_parse(set, d, a->bake[i], VPD_EDIT_MASK, 0.0, false);
    for (int i = 0; s == VPD_OK && i < a->n_overwrite; i++) {
        if (!r.job.trainer.lm) s = vpd_error(VPD_ERR_ARG, "--overwrite writes a token's unembedding: the target is a %s model, not a language model",
                                            vpd_model_kind_name(r.job.target.cfg.kind));
        else s = vpd_edit_parse_overwrite(set, d, tk, vocab, a->overwrite[i], a->alpha);
    }
    int token = -1;
    if (s == VPD_OK && a->token) {
        if (!r.job.trainer.lm) s = vpd_error(VPD_ERR_ARG, "--token: the target is not a language model");
        else {
            /* reuse the overwrite parser for "TOKEN" / "#ID" */
            vpd_edit_set tmp;
            memset(&tmp, 0, sizeof tmp);
            char buf[512];
            snprintf(buf, sizeof buf, "%s:0=%s", d->layers[0].name, a->token);
            s = vpd_edit_parse_overwrite(&tmp, d, tk, vocab, buf, 0);
            if (s == VPD_OK) token = tmp.e[0].token;
        }
    }
    for (int i = 0; s == VPD_OK && token < 0 && i < set->n; i++)
        if (set->e[i].kind == VPD_EDIT_OVERWRITE) token = set->e[i].token;
    vpd_model baked;
    memset(&baked, 0, sizeof baked);
    bool have_baked = false;
    if (s == VPD_OK && a->out) {
        s = vpd_edit_bake(&baked, d, set);
        have_baked = s == VPD_OK;
        if (s == VPD_OK) s = write_model_dir(a, &r, &baked, set, tok_path[0] ? tok_path : NULL);
        if (s == VPD_OK) printf("wrote %s (%d edit%s of %s)\n", a->out, set->n, set->n == 1 ? "" : "s", a->run_dir);
    }
    if (s == VPD_OK && a->measure) {
        vpd_edit_measure_opts mo = {.n_tokens = a->n_tokens, .fire_threshold = a->fire_threshold, .window = a->window, .token = token};
        vpd_edit_measure res;
        s = vpd_edit_measure_run(&r, set, have_baked ? &baked : NULL, &mo, &res);
        if (s == VPD_OK) {
            printf("edit of %s (%s, %s):\n", a->run_dir, have_baked ? "baked" : "run time",
                   set->where_active >= 0 ? "where g > threshold" : "everywhere");
            vpd_edit_measure_print(&res, set, d, tk, stdout);
            char *js = vpd_edit_measure_json(&res, set, d, &mo);
            char jp[1300];
            const char *path = a->json;
            if (!path && a->out) {
                snprintf(jp, sizeof jp, "%s/edit_measure.json", a->out);
                path = jp;
            }
            if (!js) s = VPD_ERR_MEM;
            else if (path) {
                s = write_text(path, js);
                if (s == VPD_OK) printf("wrote %s\n", path);
            } else printf("%s\n", js);
            free(js);
        }
    }
    if (have_baked) vpd_model_free(&baked);
    free(set);
    if (tk) vpd_tokenizer_free(tk);
    vpd_run_close(&r);
    return s;
}

int vpd_cmd_edit(int argc, char **argv) {
    if (vpd_cli_wants_help(argc, argv)) {
        if (vpd_world_rank() == 0) usage(stdout);
        return 0;
    }
    if (vpd_world_rank() != 0) return 0; /* serial command */
    edit_args a;
    int rc = parse(&a, argc, argv);
    if (rc) return rc;
    char run_h5[1200];
    snprintf(run_h5, sizeof run_h5, "%s/run.h5", a.run_dir);
    if (!exists(run_h5)) {
        fprintf(stderr, "vpd edit: %s: no such file (RUN_DIR must be a finished run of vpd decompose)\n", run_h5);
        return 1;
    }
    if (a.out && exists(a.out)) {
        fprintf(stderr, "vpd edit: %s exists: the edited model goes to a NEW directory (nothing was written)\n", a.out);
        return 1;
    }
    vpd_status s = edit_run(&a);
    return s == VPD_OK ? 0 : vpd_cli_fail("edit", s);
}
