/* vpd compare: VPD decompositions and transcoders spliced into their target on the same
 * held-out tokens (include/vpd/compare.h has every definition; README "vpd compare").
 *
 * One hook (cmp_hook) replaces the MLPs of one forward: per MLP block it either runs the
 * target's c_fc / down_proj, or the VPD run's masked components (no delta), or a
 * transcoder's encode (at c_fc) and reconstruction (at down_proj), or zeros. Clean-input
 * replacements read the block's input from an unmodified forward of the same batch (the
 * primary model's caching forward); error-propagating ones read the input of the forward
 * itself. Every forward starts at the first layer it changes (vpd_model_forward_from).
 *
 * Batches: batch b is evaluated on rank b mod size; every per-batch value lands in one
 * [batches × slots] table summed over ranks (each entry is nonzero on one rank only, so the
 * sum is exact) and reduced in batch order: the same numbers on any rank count. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vpd/analysis.h"
#include "vpd/ci.h"
#include "vpd/comm.h"
#include "vpd/compare.h"
#include "vpd/data.h"
#include "vpd/io.h"
#include "vpd/nn.h"
#include "vpd/transcoder.h"


const char *vpd_cmp_protocol_name(vpd_cmp_protocol p) {
    switch (p) {
    case VPD_CMP_ERROR_PROPAGATING: return "error_propagating";
    case VPD_CMP_CLEAN_INPUT: return "clean_input";
    case VPD_CMP_SINGLE_LAYER: return "single_layer";
    }
    return "?";
}

void vpd_compare_opts_defaults(vpd_compare_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_taus = 3;
    o->taus[0] = 0.0;
    o->taus[1] = 0.1;
    o->taus[2] = 0.5;
    o->ci_masks = true;
    o->split_cos = 0.5;
}

/* ---- state ------------------------------------------------------------------------------ */
enum { M_TARGET = 0, M_ZERO = 1, M_VPD = 2, M_TC = 3 };
enum { ROLE_NONE = 0, ROLE_FC = 1, ROLE_DOWN = 2 };
enum { MET_CE = 0, MET_KL, MET_L0, MET_RECON, MET_PARAMS, N_MET };

typedef struct {
    vpd_run r;
    int fc_k[VPD_CMP_MAX_MLPS], down_k[VPD_CMP_MAX_MLPS]; /* decomposed layer index or -1 */
    real *mask;      /* [ΣC·N] */
    double *sum_g;   /* [L · C_down_max] Σ g of down_proj's subcomponents (alive) */
    int C_down_max;
    bool open;
} cmp_vpd;

typedef struct {
    vpd_transcoder *t;
    char dir[512];
    double *fired;   /* [L · n_latent] rows with z != 0 (alive) */
} cmp_tc;

typedef struct {
    const vpd_compare_opts *o;
    vpd_model model; /* the primary target: clean inputs, target logits, transcoder forwards */
    bool model_loaded;
    int L, B, S, N, V, D;
    int fc_layer[VPD_CMP_MAX_MLPS], down_layer[VPD_CMP_MAX_MLPS];
    int *blk_of_layer, *role_of_layer; /* [model layers] */
    bool sel[VPD_CMP_MAX_MLPS];
    int sel_list[VPD_CMP_MAX_MLPS], n_sel;
    int32_t *tok, *tgt;               /* [N] */
    real *logits_t, *p_probs, *q_probs, *out;
    double *p_rowc;
    real *clean;                      /* [L, N, D] the target's input of every c_fc */
    real *z;                          /* [L, N, max n_latent] transcoder latents */
    real *tmp;                        /* [N, D] */
    cmp_vpd vpd[VPD_CMP_MAX_RUNS];
    int n_vpd;
    cmp_tc tc[VPD_CMP_MAX_RUNS];
    int n_tc;
    vpd_tokens tokens;
    bool own_tokens;
    const vpd_tokens *tp;
    uint64_t seed;
    int n_batches;
    int64_t n_tokens_used;
} cmp_ctx;

/* ---- the splicing hook ------------------------------------------------------------------- */
typedef struct {
    vpd_hook base;
    cmp_ctx *c;
    int method;
    const bool *replaced;       /* [L] */
    bool clean;
    vpd_decomp *d;              /* VPD */
    cmp_vpd *v;
    const real *mask;           /* VPD [ΣC·N] */
    const vpd_transcoder *t;    /* TC */
    bool *need_enc;             /* [L] TC: encoders whose latents some replaced MLP reads */
    double active[VPD_CMP_MAX_MLPS]; /* VPD: Σ rows of active subcomponents (c_fc + down); TC: of encoder l */
    double params;              /* VPD: Σ rows of touched parameters */
} cmp_hook;

static void target_layer(const vpd_layer_info *li, const real *x, const int32_t *tok, real *y, int N) {
    if (li->embedding)
        embedding_forward(y, tok, li->W, N, li->d_in, li->d_out);
    else
        linear_forward(y, x, li->W, li->b, N, li->d_in, li->d_out);
}

static double count_pos(const real *m, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += m[i] > 0;
    return (double)k;
}

static void vpd_layer_forward(cmp_hook *h, int k, const vpd_layer_info *li, const real *x, real *y, int N, int b) {
    if (k < 0) { /* a matrix the run did not decompose stays the target's */
        linear_forward(y, x, li->W, li->b, N, li->d_in, li->d_out);
        return;
    }
    vpd_decomp *d = h->d;
    vpd_layer_state *ls = &d->layers[k];
    const real *m = h->mask + (size_t)N * (size_t)ls->c_off;
    vpd_components_forward(y, d->pass.a + (size_t)N * (size_t)ls->c_off, &ls->comp, x, NULL, m, NULL, NULL, N, d->pass.work);
    double a = count_pos(m, (size_t)N * (size_t)ls->C);
    h->active[b] += a;
    h->params += a * (double)(ls->d_in + ls->d_out);
}

static void hook_forward(vpd_hook *hb, int l, const real *x, const int32_t *tok, real *y, int N) {
    cmp_hook *h = (cmp_hook *)hb;
    cmp_ctx *c = h->c;
    const vpd_model *m = h->method == M_VPD ? h->d->target : &c->model;
    const vpd_layer_info *li = &m->layers[l];
    const int b = c->blk_of_layer[l], role = c->role_of_layer[l];
    if (b < 0) {
        target_layer(li, x, tok, y, N);
        return;
    }
    const bool rep = h->replaced[b];
    const real *xin = h->clean && role == ROLE_FC ? c->clean + (size_t)b * N * c->D : x;
    if (h->method == M_TC && role == ROLE_FC && h->need_enc[b]) {
        real *z = c->z + (size_t)b * N * h->t->n_latent;
        vpd_transcoder_encode(h->t, b, xin, N, z);
        h->active[b] += (double)vpd_transcoder_count_active(z, (size_t)N * h->t->n_latent);
    }
    if (!rep) {
        target_layer(li, x, tok, y, N);
        return;
    }
    const size_t ny = (size_t)N * (size_t)li->d_out;
    switch (h->method) {
    case M_ZERO: memset(y, 0, sizeof(real) * ny); break;
    case M_VPD:
        vpd_layer_forward(h, role == ROLE_FC ? h->v->fc_k[b] : h->v->down_k[b], li, xin, y, N, b);
        break;
    case M_TC:
        if (role == ROLE_FC) {
            memset(y, 0, sizeof(real) * ny); /* down_proj's output is the reconstruction */
        } else {
            const real *zs[VPD_CMP_MAX_MLPS];
            for (int i = 0; i < c->L; i++)
                zs[i] = vpd_tc_writes(h->t, i, b) ? c->z + (size_t)i * N * h->t->n_latent : NULL;
            vpd_transcoder_reconstruct(h->t, b, zs, N, y);
        }
        break;
    default: target_layer(li, x, tok, y, N);
    }
}

static void hook_backward(vpd_hook *h, int l, const real *x, const int32_t *tok, const real *dy, real *dx, int N) {
    (void)h; (void)l; (void)x; (void)tok; (void)dy; (void)dx; (void)N;
    VPD_ASSERT(0, "vpd compare never differentiates");
}

/* the caching forward of the primary target: logits and every MLP's clean input */
typedef struct {
    vpd_hook base;
    cmp_ctx *c;
} cache_hook;

static void cache_forward(vpd_hook *hb, int l, const real *x, const int32_t *tok, real *y, int N) {
    cmp_ctx *c = ((cache_hook *)hb)->c;
    target_layer(&c->model.layers[l], x, tok, y, N);
    int b = c->blk_of_layer[l];
    if (b >= 0 && c->role_of_layer[l] == ROLE_FC) memcpy(c->clean + (size_t)b * N * c->D, x, sizeof(real) * (size_t)N * c->D);
}

/* One spliced forward: CE, KL and the sparsity sums into met[N_MET] (per token). */
static void spliced(cmp_ctx *c, cmp_hook *h, double *met) {
    vpd_model *m = h->method == M_VPD ? h->d->target : &c->model;
    int first = m->n_layers, nrep = 0;
    for (int b = 0; b < c->L; b++) {
        bool start = h->replaced[b] || (h->method == M_TC && h->need_enc[b]);
        if (start && c->fc_layer[b] < first) first = c->fc_layer[b];
        nrep += h->replaced[b];
    }
    memset(h->active, 0, sizeof h->active);
    h->params = 0;
    vpd_model_forward_from(m, first, c->out, &h->base);
    const int N = c->N, V = c->V;
    met[MET_CE] = cross_entropy_forward(c->q_probs, c->out, c->tgt, N, V);
    met[MET_KL] = kl_forward_prepared(c->q_probs, c->p_probs, c->p_rowc, c->logits_t, c->out, N, V);
    double l0 = 0, recon = 0, params = 0;
    for (int b = 0; b < c->L; b++) {
        if (!h->replaced[b]) continue;
        l0 += h->active[b];
        if (h->method == M_TC) {
            double r = 0;
            for (int i = 0; i <= b; i++)
                if (vpd_tc_writes(h->t, i, b)) r += h->active[i];
            recon += r;
            params += r * c->D; /* the decoder rows into MLP b */
        } else {
            recon += h->active[b];
        }
    }
    if (h->method == M_TC)
        for (int i = 0; i < c->L; i++)
            if (h->need_enc[i]) params += h->active[i] * c->D; /* encoder rows */
    if (h->method == M_VPD) params = h->params;
    met[MET_L0] = nrep ? l0 / N / nrep : 0;
    met[MET_RECON] = nrep ? recon / N / nrep : 0;
    met[MET_PARAMS] = params / N;
}

/* ---- setup ---------------------------------------------------------------------------- */
static bool is_dir_with(const char *dir, const char *file) {
    char p[2400];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, file);
    return stat(p, &st) == 0;
}

/* a transcoder's target as written (relative to where it was trained): as given, else
 * relative to the run directory, its parent or grandparent */
static vpd_status tc_target_dir(const char *run, char *out, size_t n) {
    char h5[1100];
    snprintf(h5, sizeof h5, "%s/transcoder.h5", run);
    vpd_h5 f;
    VPD_TRY(vpd_h5_open(&f, h5, false));
    char *t = NULL;
    vpd_status s = vpd_h5_get_attr_str(&f, "/", "target", &t);
    vpd_h5_close(&f);
    if (s != VPD_OK) return s;
    const char *pre[] = {"", run, "..", "../.."};
    bool ok = false;
    for (int i = 0; i < 4 && !ok; i++) {
        if (t[0] == '/' && i) break;
        if (i == 0) snprintf(out, n, "%s", t);
        else if (i == 1) snprintf(out, n, "%s/%s", run, t);
        else snprintf(out, n, "%s/%s/%s", run, pre[i], t);
        ok = is_dir_with(out, "config.json");
    }
    if (!ok) s = vpd_error(VPD_ERR_IO, "%s: its target '%s' has no config.json (also tried relative to the run directory); "
                           "pass --target MODEL_DIR", h5, t);
    vpd_free(t);
    return s;
}

static vpd_status parse_mlps(cmp_ctx *c) {
    const char *s = c->o->mlps;
    if (!s) {
        for (int b = 0; b < c->L; b++) c->sel[b] = true;
    } else {
        const char *p = s;
        while (*p) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || v < 0 || v >= c->L)
                return vpd_error(VPD_ERR_ARG, "--mlps '%s': expected a comma list of MLP indices in [0, %d)", s, c->L);
            if (c->sel[v]) return vpd_error(VPD_ERR_ARG, "--mlps '%s': MLP %ld given twice", s, v);
            c->sel[v] = true;
            p = *end == ',' ? end + 1 : end;
            if (*end && *end != ',') return vpd_error(VPD_ERR_ARG, "--mlps '%s': expected a comma list of MLP indices", s);
        }
    }
    for (int b = 0; b < c->L; b++)
        if (c->sel[b]) c->sel_list[c->n_sel++] = b;
    if (!c->n_sel) return vpd_error(VPD_ERR_ARG, "--mlps selects no MLP");
    return VPD_OK;
}

static vpd_status setup(cmp_ctx *c) {
    const vpd_compare_opts *o = c->o;
    if (o->n_vpd + o->n_tc == 0) return vpd_error(VPD_ERR_ARG, "nothing to compare: give a VPD run (--vpd DIR) and/or transcoder runs (--tc DIR)");
    /* VPD runs (each with its own copy of the target, sized for the analysis batch) */
    for (int i = 0; i < o->n_vpd; i++) {
        cmp_vpd *v = &c->vpd[i];
        int batch = o->batch > 0 ? o->batch : (i ? c->B : 0);
        VPD_TRY(vpd_run_open(&v->r, o->vpd_runs[i], batch, o->sets, o->n_sets));
        v->open = true;
        c->n_vpd++;
        if (!v->r.job.trainer.lm)
            return vpd_error(VPD_ERR_CONFIG, "%s: not a language-model decomposition; vpd compare needs a LlamaSimpleMLP target", o->vpd_runs[i]);
        if (i == 0) {
            c->B = v->r.d->batch.B;
            c->S = v->r.d->batch.S;
        } else if (v->r.d->batch.S != c->S) {
            return vpd_error(VPD_ERR_CONFIG, "%s: max_seq_len %d differs from %s's %d: compare runs on one sequence length "
                             "(pass --set max_seq_len=%d)", o->vpd_runs[i], v->r.d->batch.S, o->vpd_runs[0], c->S, c->S);
        }
    }
    /* the primary target */
    char tdir[1200];
    if (o->target) snprintf(tdir, sizeof tdir, "%s", o->target);
    else if (o->n_vpd) snprintf(tdir, sizeof tdir, "%s", c->vpd[0].r.job.cfg.target_dir);
    else VPD_TRY(tc_target_dir(o->tc_runs[0], tdir, sizeof tdir));
    VPD_TRY(vpd_model_load(&c->model, tdir));
    c->model_loaded = true;
    if (c->model.cfg.kind != VPD_MODEL_LLAMA)
        return vpd_error(VPD_ERR_CONFIG, "%s: a %s target; vpd compare replaces the MLPs of a LlamaSimpleMLP", tdir,
                         vpd_model_kind_name(c->model.cfg.kind));
    c->L = c->model.cfg.n_layers;
    c->D = c->model.cfg.n_embd;
    c->V = c->model.cfg.vocab_size;
    if (c->L > VPD_CMP_MAX_MLPS) return vpd_error(VPD_ERR_CONFIG, "%s: %d MLPs, vpd compare handles %d", tdir, c->L, VPD_CMP_MAX_MLPS);
    if (!o->n_vpd) {
        c->B = o->batch > 0 ? o->batch : 8;
        c->S = o->seq > 0 ? o->seq : c->model.cfg.n_ctx;
    } else if (o->seq > 0 && o->seq != c->S) {
        return vpd_error(VPD_ERR_ARG, "--seq %d: with a VPD run the sequence length is its max_seq_len (%d); change it with "
                         "--set max_seq_len=%d", o->seq, c->S, o->seq);
    }
    if (c->S > c->model.cfg.n_ctx) return vpd_error(VPD_ERR_ARG, "sequence length %d exceeds the target's n_ctx %d", c->S, c->model.cfg.n_ctx);
    c->N = c->B * c->S;
    VPD_TRY(vpd_model_reserve(&c->model, c->B, c->S));
    c->blk_of_layer = malloc(sizeof(int) * (size_t)c->model.n_layers);
    c->role_of_layer = calloc((size_t)c->model.n_layers, sizeof(int));
    if (!c->blk_of_layer || !c->role_of_layer) return vpd_error(VPD_ERR_MEM, "compare layer tables");
    for (int k = 0; k < c->model.n_layers; k++) c->blk_of_layer[k] = -1;
    for (int b = 0; b < c->L; b++) {
        char nm[64];
        snprintf(nm, sizeof nm, "h.%d.mlp.c_fc", b);
        c->fc_layer[b] = vpd_model_find_layer(&c->model, nm);
        snprintf(nm, sizeof nm, "h.%d.mlp.down_proj", b);
        c->down_layer[b] = vpd_model_find_layer(&c->model, nm);
        if (c->fc_layer[b] < 0 || c->down_layer[b] < 0) return vpd_error(VPD_ERR_CONFIG, "%s: no layer %s", tdir, nm);
        c->blk_of_layer[c->fc_layer[b]] = b;
        c->role_of_layer[c->fc_layer[b]] = ROLE_FC;
        c->blk_of_layer[c->down_layer[b]] = b;
        c->role_of_layer[c->down_layer[b]] = ROLE_DOWN;
    }
    VPD_TRY(parse_mlps(c));
    /* every VPD run decomposes this target, with these weights */
    for (int i = 0; i < c->n_vpd; i++) {
        cmp_vpd *v = &c->vpd[i];
        const vpd_model *tm = v->r.d->target;
        if (tm->n_params != c->model.n_params || memcmp(tm->params, c->model.params, sizeof(real) * tm->n_params))
            return vpd_error(VPD_ERR_CONFIG, "%s decomposes a target with other weights than %s: compare runs on one target",
                             o->vpd_runs[i], tdir);
        if (v->r.d->batch.B != c->B)
            return vpd_error(VPD_ERR_CONFIG, "%s: batch %d differs from %d (pass --batch)", o->vpd_runs[i], v->r.d->batch.B, c->B);
        vpd_decomp *d = v->r.d;
        for (int b = 0; b < c->L; b++) {
            v->fc_k[b] = d->model_to_decomp[c->fc_layer[b]];
            v->down_k[b] = d->model_to_decomp[c->down_layer[b]];
            if (v->down_k[b] >= 0 && d->layers[v->down_k[b]].C > v->C_down_max) v->C_down_max = d->layers[v->down_k[b]].C;
        }
        bool any = false;
        for (int b = 0; b < c->L; b++) any |= v->fc_k[b] >= 0 || v->down_k[b] >= 0;
        if (!any) return vpd_error(VPD_ERR_CONFIG, "%s decomposes no MLP matrix (h.*.mlp.c_fc / down_proj): nothing to compare", o->vpd_runs[i]);
        v->mask = vpd_malloc(sizeof(real) * (size_t)c->N * (size_t)d->C_sum, "compare masks");
        v->sum_g = calloc((size_t)c->L * (size_t)(v->C_down_max > 0 ? v->C_down_max : 1), sizeof(double));
        if (!v->mask || !v->sum_g) return vpd_error(VPD_ERR_MEM, "compare VPD buffers");
    }
    /* transcoders */
    int max_lat = 1;
    for (int i = 0; i < o->n_tc; i++) {
        cmp_tc *t = &c->tc[i];
        snprintf(t->dir, sizeof t->dir, "%s", o->tc_runs[i]);
        char p[1100];
        snprintf(p, sizeof p, "%s/transcoder.h5", o->tc_runs[i]);
        VPD_TRY(vpd_transcoder_load(&t->t, p));
        c->n_tc++;
        if (t->t->n_layers != c->L || t->t->d_model != c->D)
            return vpd_error(VPD_ERR_CONFIG, "%s: a transcoder for %d MLPs of width %d; the target %s has %d of width %d", p,
                             t->t->n_layers, t->t->d_model, tdir, c->L, c->D);
        if (t->t->n_latent > max_lat) max_lat = t->t->n_latent;
        t->fired = calloc((size_t)c->L * (size_t)t->t->n_latent, sizeof(double));
        if (!t->fired) return vpd_error(VPD_ERR_MEM, "compare transcoder counts");
    }
    /* buffers */
    const size_t N = (size_t)c->N, V = (size_t)c->V, D = (size_t)c->D;
    c->tok = malloc(sizeof(int32_t) * N);
    c->tgt = malloc(sizeof(int32_t) * N);
    c->logits_t = vpd_malloc(sizeof(real) * N * V, "compare logits");
    c->p_probs = vpd_malloc(sizeof(real) * N * V, "compare target probs");
    c->q_probs = vpd_malloc(sizeof(real) * N * V, "compare probs");
    c->out = vpd_malloc(sizeof(real) * N * V, "compare logits");
    c->p_rowc = malloc(sizeof(double) * 3 * N);
    c->clean = vpd_malloc(sizeof(real) * (size_t)c->L * N * D, "compare clean inputs");
    c->z = o->n_tc ? vpd_malloc(sizeof(real) * (size_t)c->L * N * (size_t)max_lat, "compare latents") : NULL;
    if (!c->tok || !c->tgt || !c->logits_t || !c->p_probs || !c->q_probs || !c->out || !c->p_rowc || !c->clean || (o->n_tc && !c->z))
        return vpd_error(VPD_ERR_MEM, "compare buffers for %d positions, vocabulary %d", c->N, c->V);
    /* tokens */
    if (o->tokens) {
        VPD_TRY(vpd_tokens_open(&c->tokens, o->tokens, c->V > 65535 ? 4 : 2, c->V));
        c->own_tokens = true;
        c->tp = &c->tokens;
    } else if (c->n_vpd && c->vpd[0].r.job.trainer.have_eval_tokens) {
        c->tp = &c->vpd[0].r.job.trainer.eval_tokens;
    } else {
        return vpd_error(VPD_ERR_CONFIG, "no held-out tokens: pass --tokens FILE%s", c->n_vpd ? " (the VPD run's config has no data.eval)" : "");
    }
    c->seed = o->have_seed ? o->seed : (c->n_vpd ? c->vpd[0].r.job.cfg.seed : 0);
    int64_t T = o->n_tokens > 0 ? o->n_tokens : 1000000;
    const int64_t per_batch = (int64_t)c->B * c->S;
    if (o->random_windows) {
        c->n_batches = (int)((T + per_batch - 1) / per_batch);
    } else {
        int64_t windows = (c->tp->n_tokens - 1) / c->S;
        if (T / c->S < windows) windows = T / c->S;
        c->n_batches = (int)(windows / c->B);
        if (c->n_batches < 1)
            return vpd_error(VPD_ERR_VALUE, "%s (%lld tokens, %lld requested) gives %lld windows of %d (+1) tokens, fewer than "
                             "one batch of %d: lower --batch or give more tokens", c->tp->path, (long long)c->tp->n_tokens,
                             (long long)T, (long long)windows, c->S, c->B);
    }
    c->n_tokens_used = (int64_t)c->n_batches * per_batch;
    return VPD_OK;
}

static void teardown(cmp_ctx *c) {
    for (int i = 0; i < c->n_vpd; i++) {
        vpd_free(c->vpd[i].mask);
        free(c->vpd[i].sum_g);
        if (c->vpd[i].open) vpd_run_close(&c->vpd[i].r);
    }
    for (int i = 0; i < c->n_tc; i++) {
        free(c->tc[i].fired);
        vpd_transcoder_free(c->tc[i].t);
    }
    if (c->own_tokens) vpd_tokens_close(&c->tokens);
    if (c->model_loaded) vpd_model_free(&c->model);
    free(c->blk_of_layer);
    free(c->role_of_layer);
    free(c->tok);
    free(c->tgt);
    free(c->p_rowc);
    vpd_free(c->logits_t);
    vpd_free(c->p_probs);
    vpd_free(c->q_probs);
    vpd_free(c->out);
    vpd_free(c->clean);
    vpd_free(c->z);
}

/* ---- the table of per-batch values --------------------------------------------------------
 * slot 0: target CE; then zero-ablation CE for set "all" and each selected MLP; then per
 * configuration (method instance × setting) and set (error_propagating all, clean_input all,
 * single_layer per selected MLP) N_MET values. */
typedef struct {
    int method;      /* M_VPD / M_TC */
    int run;         /* index into vpd[] / tc[] */
    int setting;     /* VPD: -1 = ci masks, else index into taus */
} cmp_cfg;

static int n_sets(const cmp_ctx *c) { return 2 + c->n_sel; }

static vpd_status eval_batch(cmp_ctx *c, const cmp_cfg *cfgs, int n_cfg, int bi, double *row) {
    const vpd_compare_opts *o = c->o;
    const int N = c->N;
    if (o->random_windows) {
        VPD_TRY(vpd_tokens_batch(c->tp, c->seed, VPD_DATA_EVAL, (uint64_t)bi, 0, c->B, c->S, c->tok, c->tgt));
    } else {
        for (int e = 0; e < c->B; e++)
            VPD_TRY(vpd_tokens_window(c->tp, ((int64_t)bi * c->B + e) * c->S, c->S, c->tok + (size_t)e * c->S, c->tgt + (size_t)e * c->S));
    }
    vpd_model_input in = {c->B, c->S, NULL, c->tok};
    cache_hook ch = {{cache_forward, hook_backward}, c};
    vpd_model_forward(&c->model, &in, c->logits_t, &ch.base);
    kl_target_prepare(c->p_probs, c->p_rowc, c->logits_t, N, c->V);
    row[0] = cross_entropy_forward(c->q_probs, c->logits_t, c->tgt, N, c->V);
    bool rep[VPD_CMP_MAX_MLPS], need[VPD_CMP_MAX_MLPS];
    double met[N_MET];
    const int ns = n_sets(c);
    /* set s: 0 error-propagating all, 1 clean-input all, 2 + j single layer sel_list[j] */
#define SET_REPLACED(s)                                                                   \
    do {                                                                                  \
        for (int b_ = 0; b_ < c->L; b_++) rep[b_] = (s) < 2 ? c->sel[b_] : b_ == c->sel_list[(s) - 2]; \
    } while (0)
    /* zero ablation: "all" and each selected MLP */
    for (int s = 1; s < ns; s++) {
        SET_REPLACED(s);
        cmp_hook h = {{hook_forward, hook_backward}, c, M_ZERO, rep, false, NULL, NULL, NULL, NULL, need, {0}, 0};
        memset(need, 0, sizeof need);
        spliced(c, &h, met);
        row[s] = met[MET_CE];
    }
    int slot = ns;
    for (int ci = 0; ci < n_cfg; ci++) {
        const cmp_cfg *cf = &cfgs[ci];
        cmp_hook h = {{hook_forward, hook_backward}, c, cf->method, rep, false, NULL, NULL, NULL, NULL, need, {0}, 0};
        if (cf->method == M_VPD) {
            cmp_vpd *v = &c->vpd[cf->run];
            vpd_decomp *d = v->r.d;
            if (ci == 0 || cfgs[ci - 1].method != M_VPD || cfgs[ci - 1].run != cf->run) {
                /* the first setting of this run on this batch: its target forward and CI */
                memcpy(d->batch.tok_in, c->tok, sizeof(int32_t) * (size_t)N);
                d->step = bi; /* names this batch's random draws, as vpd eval */
                vpd_decomp_target_forward(d);
                VPD_TRY(vpd_decomp_ci_forward(d));
                for (int b = 0; b < c->L; b++) {
                    int k = v->down_k[b];
                    if (k < 0) continue;
                    vpd_ci_sum_g(d->act.g_lower + (size_t)N * d->layers[k].c_off, (size_t)N, d->layers[k].C,
                                 v->sum_g + (size_t)b * v->C_down_max);
                }
            }
            const size_t n = (size_t)N * (size_t)d->C_sum;
            if (cf->setting < 0) memcpy(v->mask, d->act.g_lower, sizeof(real) * n);
            else {
                const real tau = (real)o->taus[cf->setting];
                for (size_t i = 0; i < n; i++) v->mask[i] = d->act.g_lower[i] > tau ? 1 : 0;
            }
            h.d = d;
            h.v = v;
            h.mask = v->mask;
        } else {
            h.t = c->tc[cf->run].t;
        }
        for (int s = 0; s < ns; s++) {
            SET_REPLACED(s);
            h.clean = s == 1;
            memset(need, 0, sizeof need);
            if (cf->method == M_TC)
                for (int b = 0; b < c->L; b++)
                    if (rep[b])
                        for (int i = 0; i <= b; i++) need[i] |= vpd_tc_writes(h.t, i, b);
            spliced(c, &h, met);
            memcpy(row + slot, met, sizeof met);
            slot += N_MET;
            if (cf->method == M_TC && s == 1) { /* alive: latents that fire on the clean inputs */
                cmp_tc *t = &c->tc[cf->run];
                const int nl = t->t->n_latent;
                for (int i = 0; i < c->L; i++) {
                    if (!need[i]) continue;
                    const real *z = c->z + (size_t)i * N * nl;
                    double *f = t->fired + (size_t)i * nl;
                    for (int r = 0; r < N; r++)
                        for (int j = 0; j < nl; j++) f[j] += z[(size_t)r * nl + j] != 0;
                }
            }
        }
    }
#undef SET_REPLACED
    return VPD_OK;
}

/* ---- feature splitting ------------------------------------------------------------------ */
/* unit output directions of the alive objects of MLP b: rows [n_alive, dim] */
static real *directions(const cmp_ctx *c, int method, int run, int b, int *n_alive, int *dim) {
    *n_alive = 0;
    if (method == M_VPD) {
        const cmp_vpd *v = &c->vpd[run];
        int k = v->down_k[b];
        if (k < 0) return NULL;
        const vpd_layer_state *ls = &v->r.d->layers[k];
        const double rows = (double)c->n_batches * c->N;
        *dim = ls->d_out;
        real *out = vpd_malloc(sizeof(real) * (size_t)ls->C * (size_t)ls->d_out, "split directions");
        if (!out) return NULL;
        for (int cc = 0; cc < ls->C; cc++) {
            if (v->sum_g[(size_t)b * v->C_down_max + cc] / rows <= VPD_CI_ALIVE_MEAN_G) continue;
            const real *u = ls->comp.U + (size_t)cc * ls->d_out;
            memcpy(out + (size_t)*n_alive * ls->d_out, u, sizeof(real) * (size_t)ls->d_out);
            (*n_alive)++;
        }
        return out;
    }
    const cmp_tc *t = &c->tc[run];
    const vpd_transcoder *tr = t->t;
    int nd = 0;
    for (int j = 0; j < c->L; j++) nd += vpd_tc_writes(tr, b, j);
    *dim = nd * c->D;
    real *out = vpd_malloc(sizeof(real) * (size_t)tr->n_latent * (size_t)*dim, "split directions");
    if (!out) return NULL;
    for (int r = 0; r < tr->n_latent; r++) {
        if (t->fired[(size_t)b * tr->n_latent + r] <= 0) continue;
        real *dst = out + (size_t)*n_alive * *dim;
        int o = 0;
        for (int j = 0; j < c->L; j++)
            if (vpd_tc_writes(tr, b, j)) {
                memcpy(dst + o, tr->W_dec[b * tr->n_layers + j] + (size_t)r * c->D, sizeof(real) * (size_t)c->D);
                o += c->D;
            }
        (*n_alive)++;
    }
    return out;
}

static void normalise_rows(real *a, int n, int dim) {
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < dim; j++) s += (double)a[(size_t)i * dim + j] * a[(size_t)i * dim + j];
        real inv = s > 0 ? (real)(1.0 / sqrt(s)) : 0;
        for (int j = 0; j < dim; j++) a[(size_t)i * dim + j] *= inv;
    }
}

static vpd_status split_pair(const cmp_ctx *c, int method, int small, int large, double thr, vpd_split_row *row) {
    double sum_split = 0, sum_matched = 0;
    int layers = 0;
    row->small_alive = row->large_alive = 0;
    for (int bi = 0; bi < c->n_sel; bi++) {
        const int b = c->sel_list[bi];
        int na, nb, da, db;
        real *A = directions(c, method, small, b, &na, &da);
        real *Bm = directions(c, method, large, b, &nb, &db);
        if (!A || !Bm || da != db) {
            vpd_free(A);
            vpd_free(Bm);
            if (method == M_VPD && (!A || !Bm)) continue; /* down_proj not decomposed in one of them */
            return vpd_error(VPD_ERR_MEM, "feature splitting buffers");
        }
        row->small_alive += na;
        row->large_alive += nb;
        if (na == 0 || nb == 0) {
            vpd_free(A);
            vpd_free(Bm);
            continue;
        }
        normalise_rows(A, na, da);
        normalise_rows(Bm, nb, db);
        const int chunk = 256;
        real *cosm = vpd_malloc(sizeof(real) * (size_t)chunk * (size_t)nb, "feature splitting cosines");
        unsigned char *hit = calloc((size_t)nb, 1);
        if (!cosm || !hit) return vpd_error(VPD_ERR_MEM, "feature splitting cosines");
        int split = 0;
        for (int i0 = 0; i0 < na; i0 += chunk) {
            int m = na - i0 < chunk ? na - i0 : chunk;
            vpd_gemm(false, true, m, nb, da, 1, A + (size_t)i0 * da, da, Bm, db, 0, cosm, nb);
            for (int i = 0; i < m; i++) {
                int matches = 0;
                for (int j = 0; j < nb; j++) {
                    real v = cosm[(size_t)i * nb + j];
                    if (method == M_VPD) v = fabs(v); /* u and v of a subcomponent flip together */
                    if (v > thr) {
                        matches++;
                        hit[j] = 1;
                    }
                }
                split += matches > 1;
            }
        }
        int matched = 0;
        for (int j = 0; j < nb; j++) matched += hit[j];
        sum_split += (double)split / na;
        sum_matched += (double)matched / nb;
        layers++;
        vpd_free(cosm);
        free(hit);
        vpd_free(A);
        vpd_free(Bm);
    }
    row->split_frac = layers ? sum_split / layers : NAN;
    row->matched_frac = layers ? sum_matched / layers : NAN;
    return VPD_OK;
}

static int vpd_dict(const cmp_ctx *c, int i) {
    const cmp_vpd *v = &c->vpd[i];
    for (int bi = 0; bi < c->n_sel; bi++) {
        int k = v->down_k[c->sel_list[bi]];
        if (k >= 0) return v->r.d->layers[k].C;
    }
    for (int bi = 0; bi < c->n_sel; bi++) {
        int k = v->fc_k[c->sel_list[bi]];
        if (k >= 0) return v->r.d->layers[k].C;
    }
    return 0;
}

static vpd_status splitting(const cmp_ctx *c, vpd_compare_result *res) {
    int cap = (c->n_vpd * c->n_vpd + c->n_tc * c->n_tc) / 2 + 1;
    res->split = calloc((size_t)cap, sizeof(vpd_split_row));
    if (!res->split) return vpd_error(VPD_ERR_MEM, "feature splitting rows");
    for (int method = M_VPD; method <= M_TC; method++) {
        int n = method == M_VPD ? c->n_vpd : c->n_tc;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                int si = method == M_VPD ? vpd_dict(c, i) : c->tc[i].t->n_latent;
                int sj = method == M_VPD ? vpd_dict(c, j) : c->tc[j].t->n_latent;
                if (si >= sj) continue; /* source: the smaller dictionary */
                /* transcoders: a pair differs in dictionary size only (same kind, activation, k) */
                if (method == M_TC && (c->tc[i].t->kind != c->tc[j].t->kind || c->tc[i].t->act != c->tc[j].t->act ||
                                       c->tc[i].t->k != c->tc[j].t->k))
                    continue;
                vpd_split_row *r = &res->split[res->n_split++];
                snprintf(r->method, sizeof r->method, "%s", method == M_VPD ? "vpd" : vpd_tc_kind_name(c->tc[i].t->kind));
                snprintf(r->small, sizeof r->small, "%s", method == M_VPD ? c->o->vpd_runs[i] : c->tc[i].dir);
                snprintf(r->large, sizeof r->large, "%s", method == M_VPD ? c->o->vpd_runs[j] : c->tc[j].dir);
                r->small_size = si;
                r->large_size = sj;
                r->cos_threshold = c->o->split_cos;
                VPD_TRY(split_pair(c, method, i, j, c->o->split_cos, r));
            }
    }
    return VPD_OK;
}

/* ---- the whole evaluation ------------------------------------------------------------------ */
static void mean_se(const double *x, int n, double *mean, double *se) {
    double s = 0;
    for (int i = 0; i < n; i++) s += x[i];
    double m = s / n, v = 0;
    for (int i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    *mean = m;
    *se = n > 1 ? sqrt(v / (n - 1) / n) : NAN;
}

vpd_status vpd_compare(const vpd_compare_opts *o, vpd_compare_result *res) {
    memset(res, 0, sizeof *res);
    MPI_Comm world = vpd_comm_world();
    const int rank = vpd_comm_rank(world), size = vpd_comm_size(world);
    cmp_ctx *c = calloc(1, sizeof *c);
    if (!c) return vpd_error(VPD_ERR_MEM, "compare state");
    c->o = o;
    vpd_status s = vpd_all_agree(setup(c), world);
    cmp_cfg cfgs[VPD_CMP_MAX_RUNS * (VPD_CMP_MAX_TAUS + 1) + VPD_CMP_MAX_RUNS];
    int n_cfg = 0;
    for (int i = 0; i < c->n_vpd; i++) {
        if (o->ci_masks) cfgs[n_cfg++] = (cmp_cfg){M_VPD, i, -1};
        for (int t = 0; t < o->n_taus; t++) cfgs[n_cfg++] = (cmp_cfg){M_VPD, i, t};
    }
    for (int i = 0; i < c->n_tc; i++) cfgs[n_cfg++] = (cmp_cfg){M_TC, i, 0};
    const int ns = n_sets(c);
    const size_t n_slots = (size_t)ns + (size_t)n_cfg * ns * N_MET;
    double *tab = NULL;
    if (s == VPD_OK) {
        tab = calloc((size_t)c->n_batches * n_slots, sizeof(double));
        if (!tab) s = vpd_error(VPD_ERR_MEM, "compare table (%d batches × %zu values)", c->n_batches, n_slots);
        s = vpd_all_agree(s, world);
    }
    if (s == VPD_OK) {
        if (!o->quiet)
            vpd_info("compare: %d batches of %d × %d tokens (%lld) from %s (%s windows), %d VPD run(s), %d transcoder(s), %d rank(s)",
                     c->n_batches, c->B, c->S, (long long)c->n_tokens_used, c->tp->path, o->random_windows ? "random" : "consecutive",
                     c->n_vpd, c->n_tc, size);
        double t0 = vpd_wtime(), last = t0;
        for (int bi = rank; bi < c->n_batches && s == VPD_OK; bi += size) {
            s = eval_batch(c, cfgs, n_cfg, bi, tab + (size_t)bi * n_slots);
            double now = vpd_wtime();
            if (!o->quiet && rank == 0 && now - last > 30) {
                vpd_info("compare: batch %d of %d, %.0f s", bi + 1, c->n_batches, now - t0);
                last = now;
            }
        }
        s = vpd_all_agree(s, world);
    }
    if (s == VPD_OK) {
        vpd_sum_double(tab, (size_t)c->n_batches * n_slots, world);
        for (int i = 0; i < c->n_vpd; i++)
            vpd_sum_double(c->vpd[i].sum_g, (size_t)c->L * (size_t)(c->vpd[i].C_down_max > 0 ? c->vpd[i].C_down_max : 1), world);
        for (int i = 0; i < c->n_tc; i++) vpd_sum_double(c->tc[i].fired, (size_t)c->L * c->tc[i].t->n_latent, world);
    }
    if (s == VPD_OK) {
        const int nb = c->n_batches;
        res->n_batches = nb;
        res->batch = c->B;
        res->seq = c->S;
        res->n_tokens = c->n_tokens_used;
        res->n_mlps_sel = c->n_sel;
        snprintf(res->tokens, sizeof res->tokens, "%s", c->tp->path);
        double *x = malloc(sizeof(double) * (size_t)nb * 4);
        res->rows = calloc((size_t)(1 + ns) + (size_t)n_cfg * (ns + 1), sizeof(vpd_compare_row));
        if (!x || !res->rows) s = vpd_error(VPD_ERR_MEM, "compare rows");
#define COL(j) (tab[(size_t)bb * n_slots + (j)])
        if (s == VPD_OK) {
            for (int bb = 0; bb < nb; bb++) x[bb] = COL(0);
            mean_se(x, nb, &res->ce_target, &res->ce_target_se);
            /* zero-ablation rows */
            for (int z = 1; z < ns; z++) {
                vpd_compare_row *r = &res->rows[res->n_rows++];
                snprintf(r->method, sizeof r->method, "zero");
                snprintf(r->setting, sizeof r->setting, "mlp out = 0");
                r->protocol = z == 1 ? VPD_CMP_ERROR_PROPAGATING : VPD_CMP_SINGLE_LAYER;
                r->layer = z == 1 ? -1 : c->sel_list[z - 2];
                for (int bb = 0; bb < nb; bb++) x[bb] = COL(z);
                mean_se(x, nb, &r->ce, &r->ce_se);
                for (int bb = 0; bb < nb; bb++) x[bb] = COL(z) - COL(0);
                mean_se(x, nb, &r->delta_ce, &r->delta_ce_se);
                r->ce_zero = r->ce;
                r->kl = r->kl_se = NAN;
                r->frac = 0;
                r->frac_se = 0;
            }
            for (int ci = 0; ci < n_cfg; ci++) {
                const cmp_cfg *cf = &cfgs[ci];
                for (int sI = 0; sI <= ns; sI++) { /* sI == ns: the single-layer mean */
                    if (sI == ns && c->n_sel < 1) continue;
                    vpd_compare_row *r = &res->rows[res->n_rows++];
                    if (cf->method == M_VPD) {
                        snprintf(r->method, sizeof r->method, "vpd");
                        snprintf(r->source, sizeof r->source, "%s", o->vpd_runs[cf->run]);
                        if (cf->setting < 0) snprintf(r->setting, sizeof r->setting, "ci");
                        else snprintf(r->setting, sizeof r->setting, "g>%g", o->taus[cf->setting]);
                        r->dict_size = vpd_dict(c, cf->run);
                    } else {
                        const vpd_transcoder *t = c->tc[cf->run].t;
                        snprintf(r->method, sizeof r->method, "%s", vpd_tc_kind_name(t->kind));
                        snprintf(r->source, sizeof r->source, "%s", c->tc[cf->run].dir);
                        if (t->act == VPD_TC_TOPK || t->act == VPD_TC_BATCHTOPK)
                            snprintf(r->setting, sizeof r->setting, "%s k=%d", vpd_tc_act_name(t->act), t->k);
                        else snprintf(r->setting, sizeof r->setting, "%s", vpd_tc_act_name(t->act));
                        r->dict_size = t->n_latent;
                    }
                    r->protocol = sI == 0 ? VPD_CMP_ERROR_PROPAGATING : sI == 1 ? VPD_CMP_CLEAN_INPUT : VPD_CMP_SINGLE_LAYER;
                    r->layer = sI >= 2 && sI < ns ? c->sel_list[sI - 2] : -1;
                    /* per batch: this set's values, or for the mean row the mean over the single-layer sets */
                    const size_t base = (size_t)ns + (size_t)ci * ns * N_MET;
                    const int s0 = sI == ns ? 2 : sI, s1 = sI == ns ? ns : sI + 1;
                    double acc[N_MET + 3];
                    double *cols[N_MET + 3];
                    double *bufs = malloc(sizeof(double) * (size_t)nb * (N_MET + 3));
                    if (!bufs) {
                        s = vpd_error(VPD_ERR_MEM, "compare rows");
                        break;
                    }
                    for (int j = 0; j < N_MET + 3; j++) cols[j] = bufs + (size_t)j * nb;
                    for (int bb = 0; bb < nb; bb++) {
                        memset(acc, 0, sizeof acc);
                        for (int ss = s0; ss < s1; ss++) {
                            const double *mv = &COL(base + (size_t)ss * N_MET);
                            const double zero = COL(ss == 0 ? 1 : ss); /* sets 0, 1 share the "all" ablation */
                            for (int j = 0; j < N_MET; j++) acc[j] += mv[j];
                            acc[N_MET] += mv[MET_CE] - COL(0);
                            acc[N_MET + 1] += zero;
                            acc[N_MET + 2] += (zero - mv[MET_CE]) / (zero - COL(0));
                        }
                        for (int j = 0; j < N_MET + 3; j++) cols[j][bb] = acc[j] / (s1 - s0);
                    }
                    double dummy;
                    mean_se(cols[MET_CE], nb, &r->ce, &r->ce_se);
                    mean_se(cols[MET_KL], nb, &r->kl, &r->kl_se);
                    mean_se(cols[MET_L0], nb, &r->l0_mlp, &dummy);
                    mean_se(cols[MET_RECON], nb, &r->l0_recon, &dummy);
                    mean_se(cols[MET_PARAMS], nb, &r->params, &dummy);
                    mean_se(cols[N_MET], nb, &r->delta_ce, &r->delta_ce_se);
                    mean_se(cols[N_MET + 1], nb, &r->ce_zero, &dummy);
                    mean_se(cols[N_MET + 2], nb, &r->frac, &r->frac_se);
                    r->l0_module = cf->method == M_VPD ? r->l0_mlp / 2 : r->l0_mlp;
                    free(bufs);
                }
            }
        }
#undef COL
        free(x);
    }
    if (s == VPD_OK) s = splitting(c, res);
    free(tab);
    teardown(c);
    free(c);
    if (s != VPD_OK) vpd_compare_result_free(res);
    return s;
}

void vpd_compare_result_free(vpd_compare_result *res) {
    free(res->rows);
    free(res->split);
    memset(res, 0, sizeof *res);
}

/* ---- output --------------------------------------------------------------------------------- */
static void layer_name(const vpd_compare_row *r, char *out, size_t n) {
    if (r->layer >= 0) snprintf(out, n, "%d", r->layer);
    else snprintf(out, n, "%s", r->protocol == VPD_CMP_SINGLE_LAYER ? "mean" : "all");
}

void vpd_compare_print(const vpd_compare_result *res, FILE *out) {
    fprintf(out, "vpd compare: %lld tokens (%d batches of %d × %d) from %s; MLPs replaced: %d\n", (long long)res->n_tokens,
            res->n_batches, res->batch, res->seq, res->tokens, res->n_mlps_sel);
    fprintf(out, "target CE %.4f ± %.4f (± = standard error over batches)\n\n", res->ce_target, res->ce_target_se);
    fprintf(out, "%-5s %-16s %6s %-18s %5s %16s %9s %14s %8s %8s %8s %10s\n", "meth", "setting", "dict", "protocol", "mlp",
            "dCE", "KL", "CE recovered", "L0/mlp", "L0/mod", "L0/rec", "params/tok");
    for (int i = 0; i < res->n_rows; i++) {
        const vpd_compare_row *r = &res->rows[i];
        char ln[16];
        layer_name(r, ln, sizeof ln);
        fprintf(out, "%-5s %-16s %6d %-18s %5s %8.4f±%-7.4f %9.4f %7.3f±%-6.3f %8.2f %8.2f %8.2f %10.0f\n", r->method, r->setting,
                r->dict_size, vpd_cmp_protocol_name(r->protocol), ln, r->delta_ce, r->delta_ce_se, r->kl, r->frac, r->frac_se,
                r->l0_mlp, r->l0_module, r->l0_recon, r->params);
    }
    if (res->n_split) {
        fprintf(out, "\nfeature splitting (cosine of output directions > threshold; source = smaller dictionary)\n");
        fprintf(out, "%-5s %8s %8s %6s %12s %14s %8s %8s\n", "meth", "small", "large", "cos>", "split_frac", "matched_frac",
                "alive_s", "alive_l");
        for (int i = 0; i < res->n_split; i++) {
            const vpd_split_row *r = &res->split[i];
            fprintf(out, "%-5s %8d %8d %6.2f %11.1f%% %13.1f%% %8d %8d\n", r->method, r->small_size, r->large_size,
                    r->cos_threshold, 100 * r->split_frac, 100 * r->matched_frac, r->small_alive, r->large_alive);
        }
    }
}

static void json_num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.10g", v);
    else fprintf(f, "null");
}

static void csv_num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.10g", v);
}

vpd_status vpd_compare_write(const vpd_compare_result *res, const char *dir, bool force) {
    char p[1200];
    snprintf(p, sizeof p, "%s/compare.json", dir);
    struct stat st;
    if (stat(p, &st) == 0 && !force)
        return vpd_error(VPD_ERR_IO, "%s exists: a compare output is there already; pass --force to replace it or choose another --out", p);
    VPD_TRY(vpd_mkdirs(dir));
    static const char *const cols[] = {"method", "source", "setting", "dict_size", "protocol", "layer", "n_tokens", "ce_target",
                                       "ce", "ce_se", "delta_ce", "delta_ce_se", "kl", "kl_se", "ce_zero", "frac_recovered",
                                       "frac_recovered_se", "l0_mlp", "l0_module", "l0_recon", "params_per_token"};
    const int nc = (int)(sizeof cols / sizeof cols[0]);
    snprintf(p, sizeof p, "%s/compare.csv", dir);
    FILE *f = fopen(p, "w");
    if (!f) return vpd_error(VPD_ERR_IO, "cannot write %s", p);
    for (int j = 0; j < nc; j++) fprintf(f, "%s%s", cols[j], j + 1 < nc ? "," : "\n");
    for (int i = 0; i < res->n_rows; i++) {
        const vpd_compare_row *r = &res->rows[i];
        char ln[16];
        layer_name(r, ln, sizeof ln);
        fprintf(f, "%s,\"%s\",\"%s\",%d,%s,%s,%lld,", r->method, r->source, r->setting, r->dict_size,
                vpd_cmp_protocol_name(r->protocol), ln, (long long)res->n_tokens);
        const double v[] = {res->ce_target, r->ce, r->ce_se, r->delta_ce, r->delta_ce_se, r->kl, r->kl_se, r->ce_zero,
                            r->frac, r->frac_se, r->l0_mlp, r->l0_module, r->l0_recon, r->params};
        const int nv = (int)(sizeof v / sizeof v[0]);
        for (int j = 0; j < nv; j++) {
            csv_num(f, v[j]);
            fputc(j + 1 < nv ? ',' : '\n', f);
        }
    }
    if (fclose(f)) return vpd_error(VPD_ERR_IO, "writing %s", p);
    snprintf(p, sizeof p, "%s/splitting.csv", dir);
    f = fopen(p, "w");
    if (!f) return vpd_error(VPD_ERR_IO, "cannot write %s", p);
    fprintf(f, "method,small,large,small_size,large_size,cos_threshold,split_frac,matched_frac,small_alive,large_alive\n");
    for (int i = 0; i < res->n_split; i++) {
        const vpd_split_row *r = &res->split[i];
        fprintf(f, "%s,\"%s\",\"%s\",%d,%d,%g,", r->method, r->small, r->large, r->small_size, r->large_size, r->cos_threshold);
        csv_num(f, r->split_frac);
        fputc(',', f);
        csv_num(f, r->matched_frac);
        fprintf(f, ",%d,%d\n", r->small_alive, r->large_alive);
    }
    if (fclose(f)) return vpd_error(VPD_ERR_IO, "writing %s", p);
    snprintf(p, sizeof p, "%s/compare.json", dir);
    f = fopen(p, "w");
    if (!f) return vpd_error(VPD_ERR_IO, "cannot write %s", p);
    fprintf(f, "{\"tokens\": ");
    vpd_json_str(f, res->tokens);
    fprintf(f, ", \"n_tokens\": %lld, \"n_batches\": %d, \"batch\": %d, \"seq\": %d, \"n_mlps\": %d, \"ce_target\": ",
            (long long)res->n_tokens, res->n_batches, res->batch, res->seq, res->n_mlps_sel);
    json_num(f, res->ce_target);
    fprintf(f, ", \"ce_target_se\": ");
    json_num(f, res->ce_target_se);
    fprintf(f, ",\n \"rows\": [");
    for (int i = 0; i < res->n_rows; i++) {
        const vpd_compare_row *r = &res->rows[i];
        char ln[16];
        layer_name(r, ln, sizeof ln);
        fprintf(f, "%s\n  {\"method\": \"%s\", \"source\": ", i ? "," : "", r->method);
        vpd_json_str(f, r->source);
        fprintf(f, ", \"setting\": ");
        vpd_json_str(f, r->setting);
        fprintf(f, ", \"dict_size\": %d, \"protocol\": \"%s\", \"layer\": \"%s\"", r->dict_size, vpd_cmp_protocol_name(r->protocol), ln);
        const char *names[] = {"ce", "ce_se", "delta_ce", "delta_ce_se", "kl", "kl_se", "ce_zero", "frac_recovered",
                               "frac_recovered_se", "l0_mlp", "l0_module", "l0_recon", "params_per_token"};
        const double v[] = {r->ce, r->ce_se, r->delta_ce, r->delta_ce_se, r->kl, r->kl_se, r->ce_zero, r->frac, r->frac_se,
                            r->l0_mlp, r->l0_module, r->l0_recon, r->params};
        for (size_t j = 0; j < sizeof v / sizeof v[0]; j++) {
            fprintf(f, ", \"%s\": ", names[j]);
            json_num(f, v[j]);
        }
        fputc('}', f);
    }
    fprintf(f, "],\n \"splitting\": [");
    for (int i = 0; i < res->n_split; i++) {
        const vpd_split_row *r = &res->split[i];
        fprintf(f, "%s\n  {\"method\": \"%s\", \"small\": ", i ? "," : "", r->method);
        vpd_json_str(f, r->small);
        fprintf(f, ", \"large\": ");
        vpd_json_str(f, r->large);
        fprintf(f, ", \"small_size\": %d, \"large_size\": %d, \"cos_threshold\": %g, \"split_frac\": ", r->small_size,
                r->large_size, r->cos_threshold);
        json_num(f, r->split_frac);
        fprintf(f, ", \"matched_frac\": ");
        json_num(f, r->matched_frac);
        fprintf(f, ", \"small_alive\": %d, \"large_alive\": %d}", r->small_alive, r->large_alive);
    }
    fprintf(f, "]}\n");
    if (fclose(f)) return vpd_error(VPD_ERR_IO, "writing %s", p);
    return VPD_OK;
}
