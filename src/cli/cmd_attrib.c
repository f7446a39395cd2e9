/* `vpd attrib RUN_DIR --prompt TEXT [--target-token T] [--position t] [--out FILE.json]`:
 * the attribution graph of a prompt (include/vpd/attrib.h, VPD_METHOD.md §6) as
 * circuit-tracer graph JSON plus a Graphviz SVG of its strongest edges. Under mpiexec the
 * backward passes are spread over the ranks; the files are the same for any rank count. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "vpd/analysis.h"
#include "vpd/attrib.h"
#include "vpd/comm.h"
#include "vpd/io.h"
#include "vpd/nn.h"
#include "vpd/prompt_ci.h"
#include "vpd/tokenizer.h"


static void usage(FILE *f) {
    fprintf(f,
            "usage: vpd attrib RUN_DIR (--prompt TEXT | --token-ids I,J,...) [--target-token T] [--position t]\n"
            "                  [--out FILE.json] [--force] [--batch B] [--svg-edges K] [--tokenizer FILE]\n"
            "                  [--node-threshold X] [--edge-threshold Y] [--prune-steps N] [--max-context N]\n"
            "                  [--mem-budget MIB] [--attention full|rows|auto] [--pgd-steps n] [--pgd-lr x]\n"
            "                  [--max-in-links K]\n\n"
            "The attribution graph of a prompt (VPD_METHOD.md section 6): nodes are the subcomponents\n"
            "(layer, c, position) with CI g > 0 on the prompt and the output logit of the target token;\n"
            "edge c' -> c = d a_c / d(g a)_c' * (g a)_c' with a = V_c^T x, the model run with masks g and\n"
            "the delta term, the gradient stopped at every other subcomponent; edges stay within a\n"
            "position except k/v -> o inside an attention layer. Writes circuit-tracer graph JSON\n"
            "(metadata, nodes, links; labels from RUN_DIR/harvest.h5 when present) and FILE.svg\n"
            "(the strongest edges: Graphviz when 'dot' is installed, else drawn by vpd; FILE.dot kept).\n\n"
            "  --prompt TEXT       the prompt, encoded with the target's tokenizer.json (byte tokens\n"
            "                      for a 256-token vocabulary without one)\n"
            "  --token-ids LIST    the prompt as comma-separated token ids instead\n"
            "  --target-token T    the output token: its text (one token) or #ID; default: the\n"
            "                      target model's top prediction at the position\n"
            "  --position t        the position whose next-token logit is explained (default: last)\n"
            "  --out FILE.json     default RUN_DIR/attrib.json (refused if it exists, unless --force)\n"
            "  --batch B           target nodes per backward pass (default 32; lowered to fit --mem-budget)\n"
            "  --mem-budget MIB    memory for one backward pass's activations (default 2048): the batch is\n"
            "                      the largest that fits, so memory grows linearly with the prompt\n"
            "  --max-in-links K    every node keeps its K in-links of largest |weight| (default 512; 0 = all).\n"
            "                      Bounds the graph at K links per node: without it the k/v -> o links\n"
            "                      grow as S^2 (~1e9 at 2048 tokens). The dropped links' count and share\n"
            "                      of the total |weight| are printed and in the JSON metadata\n"
            "  --attention MODE    full: keep the S x S attention probabilities; rows: row-block attention\n"
            "                      recomputed in the backward (memory linear in S); auto (default): rows\n"
            "                      from 256 tokens on\n"
            "  --max-context N     allow prompts of up to N tokens, past the model's n_ctx (rotary models:\n"
            "                      positions extrapolate; a warning says the model was trained on n_ctx)\n"
            "  --node-threshold X  the JSON keeps the nodes of largest influence on the logit up to this\n"
            "                      fraction of the total (circuit-tracer's pruning; default 0.8; 1 = all)\n"
            "  --edge-threshold Y  then the edges among them likewise by edge influence (default 0.98)\n"
            "  --svg-edges K       edges drawn in the SVG (default 60)\n"
            "  --tokenizer FILE    tokenizer.json (default: TARGET_DIR/tokenizer.json)\n"
            "  --prune-steps N     prune by the post-hoc CI optimisation (include/vpd/prompt_ci.h), N AdamW\n"
            "                      steps; 0 = unpruned. Default 2000 when the optimisation is in this\n"
            "                      build, else 0 (and N > 0 is refused)\n"
            "  --pgd-steps n       PGD steps of the adversarial CE inside the pruning loss (default 4)\n"
            "  --pgd-lr x          their step size (default 1); more, smaller steps find stronger\n"
            "                      adversarial masks, so the pruned graph keeps more of the prediction\n");
}

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* a printable form of token `id` (malloc'd) */
static char *tok_display(const vpd_tokenizer *tk, int id) {
    size_t n = 0;
    const char *b = tk ? vpd_tokenizer_token_bytes(tk, id, &n) : NULL;
    char one;
    if (!tk && id >= 0 && id < 256) {
        one = (char)id;
        b = &one;
        n = 1;
    }
    if (!b) {
        char *s = malloc(24);
        if (s) snprintf(s, 24, "#%d", id);
        return s;
    }
    char *s = malloc(4 * n + 1), *o = s;
    if (!s) return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)b[i];
        if (ch == '\n') o += sprintf(o, "\\n");
        else if (ch < 0x20 || ch == 0x7f || (!tk && ch >= 0x80)) o += sprintf(o, "\\x%02x", ch);
        else *o++ = (char)ch;
    }
    *o = 0;
    return s;
}

/* "in: a b c | next: x y z" from harvest.h5's input/next-token precision tables */
static char **read_labels(const vpd_decomp *d, const char *path, const vpd_tokenizer *tk) {
    vpd_h5 f;
    if (!file_exists(path) || vpd_h5_open(&f, path, false) != VPD_OK) return NULL;
    char **lab = calloc((size_t)d->C_sum, sizeof *lab);
    int32_t *tin = NULL, *tnx = NULL;
    for (int k = 0; lab && k < d->L; k++) {
        const vpd_layer_state *ls = &d->layers[k];
        char p1[256], p2[256];
        snprintf(p1, sizeof p1, "/layers/%s/input_tokens/precision/token", ls->name);
        snprintf(p2, sizeof p2, "/layers/%s/next_tokens/precision/token", ls->name);
        int nd = 0;
        int64_t sh[VPD_MAX_DIMS];
        if (!vpd_h5_exists(&f, p1) || !vpd_h5_exists(&f, p2) || vpd_h5_dataset_shape(&f, p1, &nd, sh) != VPD_OK || nd != 2 ||
            sh[0] != ls->C)
            continue;
        tin = realloc(tin, sizeof(int32_t) * (size_t)(sh[0] * sh[1]));
        tnx = realloc(tnx, sizeof(int32_t) * (size_t)(sh[0] * sh[1]));
        if (!tin || !tnx || vpd_h5_read_i32(&f, p1, tin, 2, sh) != VPD_OK || vpd_h5_read_i32(&f, p2, tnx, 2, sh) != VPD_OK)
            continue;
        for (int c = 0; c < ls->C; c++) {
            char buf[512];
            size_t o = 0;
            for (int w = 0; w < 2; w++) {
                const int32_t *row = (w ? tnx : tin) + (size_t)c * sh[1];
                o += (size_t)snprintf(buf + o, sizeof buf - o, "%s", w ? " | next:" : "in:");
                for (int j = 0; j < 3 && j < sh[1] && o < sizeof buf - 1; j++) {
                    if (row[j] < 0) break;
                    char *t = tok_display(tk, row[j]);
                    o += (size_t)snprintf(buf + o, sizeof buf - o, " '%s'", t ? t : "?");
                    free(t);
                }
                if (o >= sizeof buf) o = sizeof buf - 1;
            }
            lab[ls->c_off + c] = strdup(buf);
        }
    }
    free(tin);
    free(tnx);
    vpd_h5_close(&f);
    return lab;
}

static int parse_ids(const char *s, vpd_ids *ids) {
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX) return 0;
        if (ids->n == ids->cap) {
            size_t cap = ids->cap ? 2 * ids->cap : 64;
            int32_t *n = realloc(ids->ids, sizeof(int32_t) * cap);
            if (!n) return 0;
            ids->ids = n;
            ids->cap = cap;
        }
        ids->ids[ids->n++] = (int32_t)v;
        p = end;
        if (*p == ',') p++;
        else if (*p) return 0;
    }
    return ids->n > 0;
}

typedef struct {
    const char *dir, *prompt, *token_ids, *target, *out, *tokenizer;
    int position, batch, svg_edges, prune_steps, max_context, attention; /* attention: -1 auto, 0 full, 1 rows */
    int max_in_links;
    double node_thr, edge_thr, mem_budget_mib, pgd_lr;
    int pgd_steps;
    bool force;
} attrib_args;

#define FAIL(...)                                                                                                         \
    do {                                                                                                              \
        if (root) {                                                                                                   \
            fprintf(stderr, "vpd attrib: ");                                                                          \
            fprintf(stderr, __VA_ARGS__);                                                                             \
            fputc('\n', stderr);                                                                                      \
        }                                                                                                             \
        rc = 1;                                                                                                       \
        goto done;                                                                                                    \
    } while (0)

int vpd_cmd_attrib(int argc, char **argv) {
    const bool root = vpd_world_rank() == 0;
    if (vpd_cli_wants_help(argc, argv)) {
        if (root) usage(stdout);
        return 0;
    }
    attrib_args A = {.position = -1, .batch = 32, .svg_edges = 60, .node_thr = 0.8, .edge_thr = 0.98, .prune_steps = -1,
                     .mem_budget_mib = 2048, .attention = -1, .pgd_lr = -1, .pgd_steps = -1,
                     .max_in_links = 512};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--prompt") || !strcmp(o, "--token-ids") || !strcmp(o, "--target-token") || !strcmp(o, "--out") ||
            !strcmp(o, "--tokenizer")) {
            const char *v = vpd_cli_value("attrib", argc, argv, &i);
            if (!v) return 2;
            if (!strcmp(o, "--prompt")) A.prompt = v;
            else if (!strcmp(o, "--token-ids")) A.token_ids = v;
            else if (!strcmp(o, "--target-token")) A.target = v;
            else if (!strcmp(o, "--out")) A.out = v;
            else A.tokenizer = v;
        } else if (!strcmp(o, "--position")) {
            if (!vpd_cli_int_opt("attrib", argc, argv, &i, 0, 1L << 30, &A.position)) return 2;
        } else if (!strcmp(o, "--max-in-links")) {
            if (!vpd_cli_int_opt("attrib", argc, argv, &i, 0, 1L << 30, &A.max_in_links)) return 2;
        } else if (!strcmp(o, "--batch")) {
            if (!vpd_cli_int_opt("attrib", argc, argv, &i, 1, 4096, &A.batch)) return 2;
        } else if (!strcmp(o, "--max-context")) {
            if (!vpd_cli_int_opt("attrib", argc, argv, &i, 1, 1L << 24, &A.max_context)) return 2;
        } else if (!strcmp(o, "--pgd-steps")) {
            if (!vpd_cli_int_opt("attrib", argc, argv, &i, 0, 1000000, &A.pgd_steps)) return 2;
        } else if (!strcmp(o, "--pgd-lr")) {
            if (!vpd_cli_double_opt("attrib", argc, argv, &i, 0, 1e6, true, &A.pgd_lr)) return 2;
        } else if (!strcmp(o, "--mem-budget")) { /* MiB */
            if (!vpd_cli_double_opt("attrib", argc, argv, &i, 0, 1e9, true, &A.mem_budget_mib)) return 2;
        } else if (!strcmp(o, "--attention")) {
            const char *v = vpd_cli_value("attrib", argc, argv, &i);
            if (!v) return 2;
            if (!strcmp(v, "full")) A.attention = 0;
            else if (!strcmp(v, "rows")) A.attention = 1;
            else if (!strcmp(v, "auto")) A.attention = -1;
            else {
                if (root) fprintf(stderr, "vpd attrib: --attention wants full, rows or auto, got '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(o, "--svg-edges")) {
            if (!vpd_cli_int_opt("attrib", argc, argv, &i, 0, 1L << 20, &A.svg_edges)) return 2;
        } else if (!strcmp(o, "--prune-steps")) {
            if (!vpd_cli_int_opt("attrib", argc, argv, &i, 0, 1L << 24, &A.prune_steps)) return 2;
        } else if (!strcmp(o, "--node-threshold") || !strcmp(o, "--edge-threshold")) {
            if (!vpd_cli_double_opt("attrib", argc, argv, &i, 0, 1, true, !strcmp(o, "--node-threshold") ? &A.node_thr : &A.edge_thr))
                return 2;
        } else if (!strcmp(o, "--force")) A.force = true;
        else if (o[0] == '-' || A.dir) {
            if (root) {
                fprintf(stderr, "vpd attrib: unexpected argument '%s'\n\n", o);
                usage(stderr);
            }
            return 2;
        } else A.dir = o;
    }
    if (!A.dir || (!A.prompt && !A.token_ids) || (A.prompt && A.token_ids)) {
        if (root) {
            fprintf(stderr, "vpd attrib: give RUN_DIR and one of --prompt TEXT or --token-ids LIST\n\n");
            usage(stderr);
        }
        return 2;
    }
    int rc = 0;
    vpd_status s = VPD_OK;
    vpd_run r;
    memset(&r, 0, sizeof r);
    bool opened = false;
    vpd_tokenizer *tk = NULL;
    vpd_ids ids = {0};
    char **tok_str = NULL, **labels = NULL, *target_str = NULL;
    const char *svg_by = "";
    real *g = NULL;
    float *gopt = NULL;
    vpd_attrib_graph gr;
    memset(&gr, 0, sizeof gr);
    char out[1200], base[1200], dot[1300], svg[1300], run_h5[1200], hv[1200];
    snprintf(run_h5, sizeof run_h5, "%s/run.h5", A.dir);
    if (A.out) snprintf(out, sizeof out, "%s", A.out);
    else snprintf(out, sizeof out, "%s/attrib.json", A.dir);
    snprintf(base, sizeof base, "%s", out);
    size_t bl = strlen(base);
    if (bl > 5 && !strcmp(base + bl - 5, ".json")) base[bl - 5] = 0;
    snprintf(dot, sizeof dot, "%s.dot", base);
    snprintf(svg, sizeof svg, "%s.svg", base);
    snprintf(hv, sizeof hv, "%s/harvest.h5", A.dir);
    if (!file_exists(run_h5)) FAIL("%s: no such file (RUN_DIR must be a finished run of vpd decompose)", run_h5);
    if (file_exists(out) && !A.force) FAIL("%s exists: pass --force to overwrite it", out);
    if (A.prune_steps < 0) A.prune_steps = 2000; /* default: pruned by the post-hoc CI optimisation */

    /* the run as stored: the target kind, its context, the tokenizer */
    s = vpd_all_agree(vpd_run_open(&r, A.dir, 1, NULL, 0), vpd_comm_world());
    if (s != VPD_OK) {
        rc = root ? vpd_cli_fail("attrib", s) : (int)s;
        goto done;
    }
    opened = true;
    const vpd_model_config mc = r.job.target.cfg;
    if (mc.kind != VPD_MODEL_LLAMA)
        FAIL("%s: the target is a %s model; attribution graphs need a language model (llama_simple_mlp) and a prompt",
             A.dir, vpd_model_kind_name(mc.kind));
    char tkp[1200];
    if (A.tokenizer) snprintf(tkp, sizeof tkp, "%s", A.tokenizer);
    else snprintf(tkp, sizeof tkp, "%s/tokenizer.json", r.job.cfg.target_dir);
    if (file_exists(tkp)) {
        s = vpd_tokenizer_load(&tk, tkp);
        if (s != VPD_OK) {
            rc = root ? vpd_cli_fail("attrib", s) : (int)s;
            goto done;
        }
    } else if (A.tokenizer) FAIL("%s: no such tokenizer file", A.tokenizer);
    else if (A.prompt && mc.vocab_size != 256)
        FAIL("no tokenizer: %s does not exist and the vocabulary (%d) is not bytes; pass --tokenizer FILE or --token-ids",
             tkp, mc.vocab_size);
    if (A.token_ids) {
        if (!parse_ids(A.token_ids, &ids)) FAIL("--token-ids wants comma-separated non-negative integers, got '%s'", A.token_ids);
    } else if (tk) {
        s = vpd_tokenizer_encode(tk, A.prompt, strlen(A.prompt), &ids);
        if (s != VPD_OK) {
            rc = root ? vpd_cli_fail("attrib", s) : (int)s;
            goto done;
        }
    } else {
        for (const unsigned char *p = (const unsigned char *)A.prompt; *p; p++) {
            if (ids.n == ids.cap) {
                size_t cap = ids.cap ? 2 * ids.cap : 64;
                int32_t *n = realloc(ids.ids, sizeof(int32_t) * cap);
                if (!n) FAIL("out of memory for the prompt");
                ids.ids = n;
                ids.cap = cap;
            }
            ids.ids[ids.n++] = *p;
        }
    }
    const int S = (int)ids.n;
    if (S < 1) FAIL("the prompt is empty");
    if (S > mc.n_ctx && A.max_context < S) {
        if (A.max_context > 0)
            FAIL("the prompt has %d tokens, longer than --max-context %d", S, A.max_context);
        FAIL("the prompt has %d tokens, longer than the model's context n_ctx = %d (rotary models: pass --max-context %d "
             "to extrapolate)", S, mc.n_ctx, S);
    }
    if (A.max_context > mc.n_ctx) {
        s = vpd_all_agree(vpd_model_extend_context(&r.job.target, A.max_context), vpd_comm_world());
        if (s != VPD_OK) FAIL("--max-context %d: %s", A.max_context, vpd_last_error());
        if (root && S > mc.n_ctx)
            fprintf(stderr, "vpd attrib: warning: the prompt has %d tokens but the model was trained on n_ctx = %d: "
                            "positions %d to %d extrapolate its rotary embeddings\n", S, mc.n_ctx, mc.n_ctx, S - 1);
    }
    for (int i = 0; i < S; i++)
        if (ids.ids[i] >= mc.vocab_size)
            FAIL("token id %d at position %d is outside the vocabulary [0, %d)", ids.ids[i], i, mc.vocab_size);
    if (A.position >= S) FAIL("--position %d is outside the prompt's %d tokens (0 to %d)", A.position, S, S - 1);
    const int tpos = A.position < 0 ? S - 1 : A.position;
    int target = -1;
    if (A.target) {
        if (A.target[0] == '#' && A.target[1]) {
            char *end;
            long v = strtol(A.target + 1, &end, 10);
            if (*end || v < 0 || v >= mc.vocab_size)
                FAIL("--target-token %s: not a token id of the vocabulary [0, %d)", A.target, mc.vocab_size);
            target = (int)v;
        } else if (tk) {
            vpd_ids t1 = {0};
            s = vpd_tokenizer_encode(tk, A.target, strlen(A.target), &t1);
            bool one = s == VPD_OK && t1.n == 1;
            if (one) target = t1.ids[0];
            size_t nt = t1.n;
            vpd_ids_free(&t1);
            if (!one)
                FAIL("--target-token '%s' is not one token of the vocabulary (it encodes to %zu tokens); give its text "
                     "exactly or #ID", A.target, nt);
        } else {
            if (strlen(A.target) != 1)
                FAIL("--target-token '%s' is not one token of the byte vocabulary; give one byte or #ID", A.target);
            target = (unsigned char)A.target[0];
        }
        if (target >= mc.vocab_size)
            FAIL("--target-token '%s' (id %d) is outside the model's vocabulary [0, %d)", A.target, target, mc.vocab_size);
    }
    vpd_run_close(&r);
    opened = false;

    /* the decomposition for exactly this prompt: its CI on the prompt */
    const double t0 = vpd_wtime();
    s = vpd_all_agree(vpd_run_open_ctx(&r, A.dir, 1, S, A.max_context > mc.n_ctx ? A.max_context : 0, NULL, 0),
                      vpd_comm_world());
    if (s != VPD_OK) {
        rc = root ? vpd_cli_fail("attrib", s) : (int)s;
        goto done;
    }
    opened = true;
    vpd_decomp *d = r.d;
    /* attention without the S x S probabilities where they would dominate (long prompts) */
    const int attn_rows = A.attention == 1 || (A.attention < 0 && S >= VPD_ATTN_ROWS_MIN_S) ? VPD_ATTN_ROWS : 0;
    s = vpd_all_agree(vpd_model_set_attention_rows(d->target, attn_rows), vpd_comm_world());
    if (s != VPD_OK) {
        rc = root ? vpd_cli_fail("attrib", s) : (int)s;
        goto done;
    }
    g = vpd_malloc(sizeof(real) * (size_t)d->C_sum * S, "attrib CI");
    s = g ? vpd_attrib_prompt_ci(d, ids.ids, S, g) : VPD_ERR_MEM;
    s = vpd_all_agree(s, vpd_comm_world());
    if (s != VPD_OK) {
        rc = root ? vpd_cli_fail("attrib", s) : (int)s;
        goto done;
    }
    /* the target model's prediction at the position */
    const int V = mc.vocab_size;
    const real *row = d->act.target_out + (size_t)tpos * V;
    double mx = row[0], z = 0;
    int top = 0;
    for (int v = 1; v < V; v++)
        if (row[v] > mx) mx = row[top = v];
    for (int v = 0; v < V; v++) z += exp((double)row[v] - mx);
    if (target < 0) target = top;
    const double p_target_model = exp((double)row[target] - mx) / z;
    int n_alive = 0;
    for (size_t i = 0; i < (size_t)d->C_sum * S; i++) n_alive += g[i] > 0;

    vpd_prompt_ci_probs pr_pruned = {0}, pr_unpruned = {0};
    if (A.prune_steps > 0) {
        vpd_prompt_ci_opts po;
        vpd_prompt_ci_opts_defaults(&po);
        po.steps = A.prune_steps;
        if (A.pgd_steps >= 0) po.pgd_steps = A.pgd_steps;
        if (A.pgd_lr > 0) po.pgd_lr = A.pgd_lr;
        gopt = malloc(sizeof(float) * (size_t)S * d->C_sum_total);
        /* rank 0 optimises, the others receive its result: the optimisation is the same on
         * every rank, and running it once leaves shared cores to other work */
        s = !gopt ? vpd_error(VPD_ERR_MEM, "out of memory for the optimised CI")
            : root ? vpd_prompt_ci_optimise(&r, ids.ids, S, tpos, target, &po, gopt, &pr_pruned, &pr_unpruned)
                   : VPD_OK;
        s = vpd_all_agree(s, vpd_comm_world());
        if (s != VPD_OK) {
            rc = root ? vpd_cli_fail("attrib", s) : (int)s;
            goto done;
        }
        vpd_bcast(gopt, sizeof(float) * (size_t)S * d->C_sum_total, 0, vpd_comm_world());
        vpd_bcast(&pr_pruned, sizeof pr_pruned, 0, vpd_comm_world());
        vpd_bcast(&pr_unpruned, sizeof pr_unpruned, 0, vpd_comm_world());
        if (root) {
            int kept = 0;
            for (size_t i = 0; i < (size_t)S * d->C_sum_total; i++) kept += gopt[i] > 0;
            printf("pruned: %d of %d nodes alive after %d steps (%.2f s since the run was opened)\n", kept, n_alive,
                   A.prune_steps, vpd_wtime() - t0);
            fflush(stdout);
        }
        /* [T][ΣC_total] position-major -> the layer-major masks */
        for (int k = 0; k < d->L; k++) {
            const vpd_layer_state *ls = &d->layers[k];
            for (int t = 0; t < S; t++)
                for (int c = 0; c < ls->C; c++)
                    g[(size_t)S * ls->c_off + (size_t)t * ls->C + c] = (real)gopt[(size_t)t * d->C_sum_total + ls->c_off_total + c];
        }
    }

    size_t chunk_mem = 0;
    const size_t budget = (size_t)(A.mem_budget_mib * 1048576.0);
    const int batch = vpd_attrib_batch_for_budget(d, S, A.batch, budget, &chunk_mem);
    if (root && batch < A.batch)
        printf("batch: %d targets per backward (of --batch %d) fit --mem-budget %g MiB at %d positions (%.3g MiB%s)\n",
               batch, A.batch, A.mem_budget_mib, S, (double)chunk_mem / 1048576.0,
               chunk_mem > budget ? ": one target alone exceeds the budget" : "");
    const double t_prune = vpd_wtime() - t0;
    s = vpd_attrib_compute(d, ids.ids, S, g, tpos, target, batch, A.max_in_links, vpd_comm_world(), &gr);
    s = vpd_all_agree(s, vpd_comm_world());
    if (s != VPD_OK) {
        rc = root ? vpd_cli_fail("attrib", s) : (int)s;
        goto done;
    }
    const double secs = vpd_wtime() - t0;
    if (root) {
        vpd_attrib_influence(&gr);
        tok_str = calloc((size_t)S, sizeof *tok_str);
        for (int i = 0; tok_str && i < S; i++) tok_str[i] = tok_display(tk, ids.ids[i]);
        target_str = tok_display(tk, target);
        labels = read_labels(d, hv, tk);
        vpd_attrib_meta meta = {A.prompt, (const char *const *)tok_str, target_str, (const char *const *)labels, A.dir,
                                secs, vpd_world_size(), A.prune_steps,
                                {pr_pruned.p_ci, pr_pruned.p_stoch, pr_pruned.p_adv},
                                {pr_unpruned.p_ci, pr_unpruned.p_stoch, pr_unpruned.p_adv}, n_alive, A.node_thr, A.edge_thr};
        s = vpd_attrib_write_json(&gr, d, &meta, out);
        if (s == VPD_OK) s = vpd_attrib_write_dot(&gr, d, &meta, A.svg_edges, dot);
        if (s == VPD_OK) { /* Graphviz when installed, else vpd's own layered drawing */
            char cmd[3000];
            snprintf(cmd, sizeof cmd, "command -v dot >/dev/null 2>&1 && dot -Tsvg '%s' -o '%s' 2>/dev/null", dot, svg);
            svg_by = "graphviz";
            if (strchr(dot, '\'') || strchr(svg, '\'') || system(cmd) != 0) {
                s = vpd_attrib_write_svg(&gr, d, &meta, A.svg_edges, svg);
                svg_by = "vpd (no Graphviz 'dot' on PATH)";
            }
        }
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        if (s == VPD_OK) {
            printf("prompt: %d tokens; target '%s' (#%d) at position %d: P = %.4f (target model), %.4f (CI masks + delta)\n",
                   S, target_str ? target_str : "?", target, tpos, p_target_model, gr.prob);
            if (A.prune_steps > 0)
                printf("pruning (%d steps): P(target) pruned CI %.4f stochastic %.4f adversarial %.4f (%d nodes); "
                       "unpruned CI %.4f stochastic %.4f adversarial %.4f (%d nodes)\n",
                       A.prune_steps, pr_pruned.p_ci, pr_pruned.p_stoch, pr_pruned.p_adv, gr.n_nodes - 1, pr_unpruned.p_ci,
                       pr_unpruned.p_stoch, pr_unpruned.p_adv, n_alive);
            printf("graph: %d nodes (%d subcomponents alive on the prompt + the logit), %lld links, %lld backward chunks of "
                   "<= %d targets\n",
                   gr.n_nodes, gr.n_nodes - 1, (long long)gr.n_edges, (long long)gr.n_backward, gr.batch);
            if (gr.max_in_links > 0)
                printf("in-link cap %d: %lld links dropped (%.3g %% of the total |weight| %.4g)\n", gr.max_in_links,
                       (long long)gr.n_links_dropped, gr.w_total > 0 ? 100.0 * gr.w_dropped / gr.w_total : 0.0,
                       gr.w_total);
            printf("attrib: %.2f s on %d rank%s; peak RSS %.1f MiB (rank 0); CI + pruning %.2f s, edges %.2f s; "
                   "attention %s\n", secs, vpd_world_size(), vpd_world_size() > 1 ? "s" : "", (double)ru.ru_maxrss / 1024.0,
                   t_prune, secs - t_prune, attn_rows > 0 ? "row blocks" : "full");
            printf("wrote %s (%s), %s, %s (drawn by %s)\n", out,
                   A.node_thr >= 1 && A.edge_thr >= 1 ? "the whole graph" : "pruned by influence", dot, svg, svg_by);
        }
    }
    s = vpd_all_agree(s, vpd_comm_world());
    if (s != VPD_OK) rc = root ? vpd_cli_fail("attrib", s) : (int)s;
done:
    if (labels) {
        for (int i = 0; opened && i < r.d->C_sum; i++) free(labels[i]);
        free(labels);
    }
    if (tok_str) {
        for (int i = 0; i < (int)ids.n; i++) free(tok_str[i]);
        free(tok_str);
    }
    free(target_str);
    free(gopt);
    vpd_free(g);
    vpd_attrib_graph_free(&gr);
    vpd_ids_free(&ids);
    if (tk) vpd_tokenizer_free(tk);
    if (opened) vpd_run_close(&r);
    return rc;
}
