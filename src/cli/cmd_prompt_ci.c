/* `vpd prompt-ci RUN_DIR (--prompt TEXT | --tokens IDS) [--target-token T] [--position t]
 * [--steps N] [--out FILE.json] ...`: the post-hoc CI optimisation on one prompt that prunes
 * an attribution graph (src/analysis/prompt_ci.c, include/vpd/prompt_ci.h). Prints P(target)
 * under CI, stochastic and adversarial masks for the unpruned and the pruned graph and the
 * node counts; writes the kept nodes (layer, c, position, ci) as JSON. Under mpiexec every
 * rank computes the same result; rank 0 prints and writes. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "vpd/comm.h"
#include "vpd/prompt_ci.h"
#include "vpd/tokenizer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vpd prompt-ci RUN_DIR (--prompt TEXT | --tokens ID,ID,...) [--target-token T]\n"
            "                     [--position t] [--steps N] [--out FILE.json] [--tokenizer FILE]\n"
            "                     [--lr x] [--imp-coeff x] [--pnorm p] [--adv-coeff x] [--pgd-steps n]\n"
            "                     [--pgd-lr x] [--pgd-eval-steps n] [--pgd-eval-lr x] [--eval-samples n]\n"
            "                     [--seed s] [--log-every n] [--max-context N] [--force]\n\n"
            "Post-hoc causal-importance optimisation on one prompt (the pruning of an attribution\n"
            "graph, VPD_METHOD.md section 6): the subcomponents alive on the prompt (g > 0) are free,\n"
            "their pre-sigmoid values warm-started from the CI function's; the loss is the CE of\n"
            "the target token at position t under stochastic masks + adversarial CE (PGD on the\n"
            "alive set) + importance minimality; AdamW with a cosine schedule. Prints P(target)\n"
            "under CI, stochastic and adversarial masks for the unpruned and the pruned graph.\n\n"
            "  --prompt TEXT      the prompt, encoded with the tokenizer\n"
            "  --tokens IDS       the prompt as comma-separated token ids instead\n"
            "  --tokenizer FILE   tokenizer.json (default: TARGET_DIR/tokenizer.json)\n"
            "  --target-token T   token id, or a text that encodes to one token (default: the\n"
            "                     target model's top prediction at t)\n"
            "  --position t       position whose next-token prediction is explained (default: last;\n"
            "                     negative counts from the end)\n"
            "  --steps N          AdamW steps (default 2000)\n"
            "  --lr x             peak learning rate (0.01)     --imp-coeff x  importance coeff (0.1)\n"
            "  --pnorm p          importance p (0.3)            --adv-coeff x  adversarial CE coeff (1)\n"
            "  --pgd-steps n      PGD steps in the loss (4)     --pgd-lr x     their step size (1)\n"
            "  --pgd-eval-steps n PGD steps of the reported adversarial P (20)\n"
            "  --pgd-eval-lr x    their step size (0.1)         --eval-samples n  stochastic draws (16)\n"
            "  --seed s           draws (default: the run's seed)\n"
            "  --log-every n      progress line every n steps (default steps/10; 0: none)\n"
            "  --max-context N    allow prompts longer than the run's max_seq_len, up to N tokens\n"
            "                     (rotary models: positions past the trained n_ctx extrapolate; warned)\n"
            "  --out FILE.json    write the kept nodes and the table (refuses to overwrite without --force)\n");
}

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* "1,2,3" → ids; 0 after a message */
static int parse_ids(const char *s, vpd_ids *out) {
    const char *p = s;
    while (*p) {
        char *end = NULL;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "vpd prompt-ci: --tokens wants comma-separated non-negative token ids, got '%s'\n", s);
            return 0;
        }
        if (out->n == out->cap) {
            size_t cap = out->cap ? 2 * out->cap : 64;
            int32_t *q = realloc(out->ids, sizeof(int32_t) * cap);
            if (!q) return 0;
            out->ids = q;
            out->cap = cap;
        }
        out->ids[out->n++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    return 1;
}

static cJSON *probs_json(const vpd_prompt_ci_probs *p) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "p_ci", p->p_ci);
    cJSON_AddNumberToObject(o, "p_stochastic", p->p_stoch);
    cJSON_AddNumberToObject(o, "p_adversarial", p->p_adv);
    cJSON_AddNumberToObject(o, "n_nodes", p->n_alive);
    return o;
}

static const char *tok_str(const vpd_tokenizer *tk, int id, char *buf, size_t n) {
    if (!tk) {
        snprintf(buf, n, "#%d", id);
        return buf;
    }
    size_t len = 0;
    const char *b = vpd_tokenizer_token_bytes(tk, id, &len);
    if (!b) {
        snprintf(buf, n, "#%d", id);
        return buf;
    }
    if (len >= n) len = n - 1;
    memcpy(buf, b, len);
    buf[len] = 0;
    return buf;
}

int vpd_cmd_prompt_ci(int argc, char **argv) {
    const bool root = vpd_world_rank() == 0;
    if (vpd_cli_wants_help(argc, argv)) {
        if (root) usage(stdout);
        return 0;
    }
    const char *dir = NULL, *prompt = NULL, *ids_arg = NULL, *target_arg = NULL, *out_path = NULL, *tok_path = NULL;
    int position = -1, log_every = -1, max_context = 0;
    bool force = false, position_given = false;
    vpd_prompt_ci_opts o;
    vpd_prompt_ci_opts_defaults(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        if (!strcmp(a, "--prompt") || !strcmp(a, "--tokens") || !strcmp(a, "--target-token") || !strcmp(a, "--out") ||
            !strcmp(a, "--tokenizer") || !strcmp(a, "--lr") || !strcmp(a, "--imp-coeff") || !strcmp(a, "--pnorm") ||
            !strcmp(a, "--adv-coeff") || !strcmp(a, "--pgd-lr") || !strcmp(a, "--pgd-eval-lr")) {
            if (!(v = vpd_cli_value("prompt-ci", argc, argv, &i))) return 2;
            if (!strcmp(a, "--prompt")) prompt = v;
            else if (!strcmp(a, "--tokens")) ids_arg = v;
            else if (!strcmp(a, "--target-token")) target_arg = v;
            else if (!strcmp(a, "--out")) out_path = v;
            else if (!strcmp(a, "--tokenizer")) tok_path = v;
            else if (!strcmp(a, "--lr") && !vpd_cli_parse_real("prompt-ci", a, v, 0, INFINITY, true, &o.lr)) return 2;
            else if (!strcmp(a, "--imp-coeff") && !vpd_cli_parse_real("prompt-ci", a, v, 0, INFINITY, false, &o.imp_coeff)) return 2;
            else if (!strcmp(a, "--pnorm") && !vpd_cli_parse_real("prompt-ci", a, v, 0, INFINITY, true, &o.pnorm)) return 2;
            else if (!strcmp(a, "--adv-coeff") && !vpd_cli_parse_real("prompt-ci", a, v, 0, INFINITY, false, &o.adv_coeff)) return 2;
            else if (!strcmp(a, "--pgd-lr") && !vpd_cli_parse_real("prompt-ci", a, v, 0, INFINITY, true, &o.pgd_lr)) return 2;
            else if (!strcmp(a, "--pgd-eval-lr") && !vpd_cli_parse_real("prompt-ci", a, v, 0, INFINITY, true, &o.pgd_eval_lr)) return 2;
        } else if (!strcmp(a, "--position")) {
            if (!vpd_cli_int_opt("prompt-ci", argc, argv, &i, -(1L << 30), 1L << 30, &position)) return 2;
            position_given = true;
        } else if (!strcmp(a, "--steps")) {
            if (!vpd_cli_int_opt("prompt-ci", argc, argv, &i, 0, 1L << 30, &o.steps)) return 2;
        } else if (!strcmp(a, "--pgd-steps")) {
            if (!vpd_cli_int_opt("prompt-ci", argc, argv, &i, 0, 1000000, &o.pgd_steps)) return 2;
        } else if (!strcmp(a, "--pgd-eval-steps")) {
            if (!vpd_cli_int_opt("prompt-ci", argc, argv, &i, 0, 1000000, &o.pgd_eval_steps)) return 2;
        } else if (!strcmp(a, "--eval-samples")) {
            if (!vpd_cli_int_opt("prompt-ci", argc, argv, &i, 1, 1000000, &o.n_eval_samples)) return 2;
        } else if (!strcmp(a, "--max-context")) {
            if (!vpd_cli_int_opt("prompt-ci", argc, argv, &i, 1, 1L << 24, &max_context)) return 2;
        } else if (!strcmp(a, "--log-every")) {
            if (!vpd_cli_int_opt("prompt-ci", argc, argv, &i, 0, 1L << 30, &log_every)) return 2;
        } else if (!strcmp(a, "--seed")) {
            int seed = 0;
            if (!vpd_cli_int_opt("prompt-ci", argc, argv, &i, 1, 2147483647L, &seed)) return 2;
            o.seed = (uint64_t)seed;
        } else if (!strcmp(a, "--force")) force = true;
        else if (a[0] == '-' || dir) {
            if (root) {
                fprintf(stderr, "vpd prompt-ci: unexpected argument '%s'\n\n", a);
                usage(stderr);
            }
            return 2;
        } else dir = a;
    }
    if (!dir || (!prompt == !ids_arg)) {
        if (root) {
            if (dir) fprintf(stderr, "vpd prompt-ci: give the prompt as exactly one of --prompt TEXT or --tokens IDS\n\n");
            usage(stderr);
        }
        return 2;
    }
    o.log_every = log_every >= 0 ? log_every : (o.steps >= 10 ? o.steps / 10 : 1);
    if (!root) o.log_every = 0;
    char run_h5[1200];
    snprintf(run_h5, sizeof run_h5, "%s/run.h5", dir);
    if (!file_exists(run_h5) && !file_exists(dir)) {
        if (root) fprintf(stderr, "vpd prompt-ci: %s: no such file (RUN_DIR must be a finished run of vpd decompose)\n", run_h5);
        return 1;
    }
    if (out_path && file_exists(out_path) && !force) {
        if (root) fprintf(stderr, "vpd prompt-ci: %s exists: pass --force to overwrite it\n", out_path);
        return 1;
    }
    vpd_run r;
    vpd_status s = vpd_all_agree(vpd_run_open(&r, dir, 1, NULL, 0), vpd_comm_world());
    if (s != VPD_OK) return root ? vpd_cli_fail("prompt-ci", s) : (int)s;
    vpd_model *m = &r.job.target;
    int rc = 1;
    vpd_tokenizer *tk = NULL;
    vpd_ids ids = {0};
    float *ci = NULL;
    real *logits = NULL;
    if (m->cfg.kind != VPD_MODEL_LLAMA) {
        if (root)
            fprintf(stderr, "vpd prompt-ci: run %s decomposes a toy model (%s); a prompt needs a language model\n", dir,
                    vpd_model_kind_name(m->cfg.kind));
        goto done;
    }
    const int V = m->cfg.vocab_size;
    /* the tokenizer: given, else the target's (optional for --tokens) */
    char tk_default[1200];
    snprintf(tk_default, sizeof tk_default, "%s/tokenizer.json", r.job.cfg.target_dir);
    if (!tok_path && file_exists(tk_default)) tok_path = tk_default;
    if (tok_path) {
        if ((s = vpd_tokenizer_load(&tk, tok_path)) != VPD_OK) {
            if (root) vpd_cli_fail("prompt-ci", s);
            goto done;
        }
    } else if (prompt) {
        if (root)
            fprintf(stderr, "vpd prompt-ci: no tokenizer for --prompt: %s does not exist; pass --tokenizer FILE or --tokens IDS\n",
                    tk_default);
        goto done;
    }
    if (prompt) {
        if ((s = vpd_tokenizer_encode(tk, prompt, strlen(prompt), &ids)) != VPD_OK) {
            if (root) vpd_cli_fail("prompt-ci", s);
            goto done;
        }
    } else if (!parse_ids(ids_arg, &ids)) goto done;
    /* any length up to the model's context (n_ctx, or --max-context N past it for rotary
     * models), as vpd attrib takes: the run is opened again for exactly T positions when the
     * prompt is longer than the run's max_seq_len */
    const int T = (int)ids.n, S_max = r.d->batch.S, n_ctx = m->cfg.n_ctx;
    const int limit = max_context > n_ctx ? max_context : n_ctx;
    if (T < 1 || T > limit) {
        if (root) {
            if (T < 1) fprintf(stderr, "vpd prompt-ci: the prompt is empty\n");
            else if (max_context > n_ctx)
                fprintf(stderr, "vpd prompt-ci: the prompt has %d tokens, longer than --max-context %d\n", T, max_context);
            else
                fprintf(stderr, "vpd prompt-ci: the prompt has %d tokens, longer than the model's context n_ctx = %d "
                                "(rotary models: pass --max-context %d to extrapolate)\n", T, n_ctx, T);
        }
        goto done;
    }
    if (T > S_max) {
        vpd_run_close(&r);
        s = vpd_all_agree(vpd_run_open_ctx(&r, dir, 1, T, max_context > n_ctx ? max_context : 0, NULL, 0), vpd_comm_world());
        if (s != VPD_OK) {
            if (root) vpd_cli_fail("prompt-ci", s);
            goto done;
        }
        m = &r.job.target;
        if (root && T > n_ctx)
            fprintf(stderr, "vpd prompt-ci: warning: the prompt has %d tokens but the model was trained on n_ctx = %d: "
                            "positions %d to %d extrapolate its rotary embeddings\n", T, n_ctx, n_ctx, T - 1);
    }
    for (int t = 0; t < T; t++)
        if (ids.ids[t] >= V) {
            if (root) fprintf(stderr, "vpd prompt-ci: token id %d (position %d) is not in the model's vocabulary of %d\n",
                              (int)ids.ids[t], t, V);
            goto done;
        }
    const int t_star = !position_given ? T - 1 : position < 0 ? T + position : position;
    if (t_star < 0 || t_star >= T) {
        if (root) fprintf(stderr, "vpd prompt-ci: --position outside the prompt's %d tokens (0..%d, or -1..-%d)\n", T, T - 1, T);
        goto done;
    }
    /* the target model on the prompt: its prediction and P(target) */
    logits = vpd_malloc(sizeof(real) * (size_t)T * (size_t)V, "prompt logits");
    if (!logits) goto done;
    vpd_model_input in = {.B = 1, .S = T, .x = NULL, .tokens = ids.ids};
    vpd_model_forward(m, &in, logits, NULL);
    const real *lt = logits + (size_t)t_star * V;
    int argmax = 0;
    for (int v = 1; v < V; v++)
        if (lt[v] > lt[argmax]) argmax = v;
    int target = argmax;
    if (target_arg) {
        char *end = NULL;
        long v = strtol(target_arg, &end, 10);
        if (*target_arg && !*end) {
            if (v < 0 || v >= V) {
                if (root) fprintf(stderr, "vpd prompt-ci: --target-token %ld is not in the model's vocabulary of %d\n", v, V);
                goto done;
            }
            target = (int)v;
        } else {
            vpd_ids one = {0};
            if (!tk || vpd_tokenizer_encode(tk, target_arg, strlen(target_arg), &one) != VPD_OK || one.n != 1) {
                if (root)
                    fprintf(stderr, "vpd prompt-ci: --target-token '%s' is neither a token id nor a text of exactly one token%s\n",
                            target_arg, tk ? "" : " (no tokenizer)");
                vpd_ids_free(&one);
                goto done;
            }
            target = one.ids[0];
            vpd_ids_free(&one);
        }
    }
    double mx = lt[0], se = 0;
    for (int v = 1; v < V; v++)
        if (lt[v] > mx) mx = lt[v];
    for (int v = 0; v < V; v++) se += exp((double)lt[v] - mx);
    const double p_model = exp((double)lt[target] - mx) / se;
    const int CS = r.d->C_sum_total;
    ci = vpd_malloc(sizeof(float) * (size_t)T * (size_t)CS, "optimised CI");
    if (!ci) goto done;
    vpd_prompt_ci_probs pruned, unpruned;
    const double t0 = vpd_wtime();
    s = vpd_all_agree(vpd_prompt_ci_optimise(&r, ids.ids, T, t_star, target, &o, ci, &pruned, &unpruned),
                      vpd_comm_world());
    const double secs = vpd_wtime() - t0;
    if (s != VPD_OK) {
        if (root) vpd_cli_fail("prompt-ci", s);
        goto done;
    }
    rc = 0;
    if (!root) goto done;
    char b1[256], b2[256];
    printf("prompt: %d tokens; position %d ('%s') -> target %d ('%s'); target model P = %.4f%s\n", T, t_star,
           tok_str(tk, ids.ids[t_star], b1, sizeof b1), target, tok_str(tk, target, b2, sizeof b2), p_model,
           target == argmax ? " (its top prediction)" : "");
    printf("%-10s %8s %12s %12s %14s\n", "graph", "nodes", "P(CI mask)", "P(stoch.)", "P(adversarial)");
    printf("%-10s %8d %12.4f %12.4f %14.4f\n", "unpruned", unpruned.n_alive, unpruned.p_ci, unpruned.p_stoch, unpruned.p_adv);
    printf("%-10s %8d %12.4f %12.4f %14.4f\n", "pruned", pruned.n_alive, pruned.p_ci, pruned.p_stoch, pruned.p_adv);
    printf("%d steps in %.1f s on %d rank%s (each rank computes the whole optimisation)\n", o.steps, secs,
           vpd_world_size(), vpd_world_size() > 1 ? "s" : "");
    if (out_path) {
        cJSON *root_o = cJSON_CreateObject();
        cJSON_AddStringToObject(root_o, "run", dir);
        if (prompt) cJSON_AddStringToObject(root_o, "prompt", prompt);
        cJSON_AddItemToObject(root_o, "tokens", cJSON_CreateIntArray(ids.ids, T));
        if (tk) {
            cJSON *ts = cJSON_AddArrayToObject(root_o, "token_strs");
            for (int t = 0; t < T; t++) cJSON_AddItemToArray(ts, cJSON_CreateString(tok_str(tk, ids.ids[t], b1, sizeof b1)));
        }
        cJSON_AddNumberToObject(root_o, "position", t_star);
        cJSON_AddNumberToObject(root_o, "target_token", target);
        if (tk) cJSON_AddStringToObject(root_o, "target_str", tok_str(tk, target, b1, sizeof b1));
        cJSON_AddNumberToObject(root_o, "p_target_model", p_model);
        cJSON *oo = cJSON_AddObjectToObject(root_o, "options");
        cJSON_AddNumberToObject(oo, "steps", o.steps);
        cJSON_AddNumberToObject(oo, "lr", o.lr);
        cJSON_AddNumberToObject(oo, "imp_coeff", o.imp_coeff);
        cJSON_AddNumberToObject(oo, "pnorm", o.pnorm);
        cJSON_AddNumberToObject(oo, "adv_coeff", o.adv_coeff);
        cJSON_AddNumberToObject(oo, "pgd_steps", o.pgd_steps);
        cJSON_AddNumberToObject(oo, "pgd_lr", o.pgd_lr);
        cJSON_AddNumberToObject(oo, "pgd_eval_steps", o.pgd_eval_steps);
        cJSON_AddNumberToObject(oo, "pgd_eval_lr", o.pgd_eval_lr);
        cJSON_AddNumberToObject(oo, "n_eval_samples", o.n_eval_samples);
        cJSON_AddNumberToObject(oo, "seed", (double)(o.seed ? o.seed : r.d->cfg->seed));
        cJSON_AddItemToObject(root_o, "unpruned", probs_json(&unpruned));
        cJSON_AddItemToObject(root_o, "pruned", probs_json(&pruned));
        cJSON *nodes = cJSON_AddArrayToObject(root_o, "nodes");
        for (int k = 0; k < r.d->L; k++) {
            const vpd_layer_state *ls = &r.d->layers[k];
            for (int t = 0; t < T; t++)
                for (int c = 0; c < ls->C_total; c++) {
                    float g = ci[(size_t)t * CS + (size_t)ls->c_off_total + c];
                    if (!(g > 0)) continue;
                    cJSON *nd = cJSON_CreateObject();
                    cJSON_AddStringToObject(nd, "layer", ls->name);
                    cJSON_AddNumberToObject(nd, "c", c);
                    cJSON_AddNumberToObject(nd, "position", t);
                    cJSON_AddNumberToObject(nd, "ci", g);
                    cJSON_AddItemToArray(nodes, nd);
                }
        }
        char *txt = cJSON_Print(root_o);
        cJSON_Delete(root_o);
        FILE *f = txt ? fopen(out_path, "w") : NULL;
        if (!f || fputs(txt, f) < 0 || fputc('\n', f) < 0 || fclose(f) != 0) {
            fprintf(stderr, "vpd prompt-ci: cannot write %s\n", out_path);
            rc = 1;
        } else {
            printf("wrote %s (%d nodes)\n", out_path, pruned.n_alive);
        }
        free(txt);
    }
done:
    vpd_free(ci);
    vpd_free(logits);
    vpd_ids_free(&ids);
    vpd_tokenizer_free(tk);
    vpd_run_close(&r);
    return rc;
}
