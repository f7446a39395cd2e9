/* vpd harvest (include/vpd/harvest.h): per-subcomponent statistics over a stream of
 * held-out data, merged exactly over ranks.
 *
 * The stream. Language models: tokens [0, T) of the token file cut into windows of S =
 * max_seq_len tokens (window w = tokens [wS, wS + S), the model's whole context; T is
 * rounded down to whole windows), B windows per batch. Toy models: batch b of the
 * generator's eval stream (examples b·B … b·B + B − 1). Rank r of P takes batches
 * [r·nb/P, (r+1)·nb/P): every rank forms exactly the batches one rank would, so g and a_c
 * of every position are bitwise those of a 1-rank harvest.
 *
 * Exact merges. Counts and histograms are integers (summed). The sum of g is fixed point
 * (g rounded to 2^-32, summed as integers). The a_c histogram's range per subcomponent is
 * [−R, R] with R = 2^e the smallest power of two ≥ max |a_c| (e ≥ −20): bins of width R/25
 * fold pairwise when R doubles, which is exact, so any order of arrival gives the same
 * histogram. Top lists and reservoirs keep the best records by a total order (top: g, then
 * |a_c|, then position; reservoir: a Philox key of (subcomponent, position), then
 * position); merging the ranks' lists and keeping the best k is the list of one rank.
 *
 * Memory: the lists are O(ΣC·k) (records of 24 bytes plus a context blob of 492 bytes for
 * LMs), the dense count tables ΣC×vocab (two uint32 tables) and ΣC² (uint32 co-firing),
 * each checked against opts->max_dense_mib before the first batch. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "vpd/checkpoint.h"
#include "vpd/comm.h"
#include "vpd/data.h"
#include "vpd/harvest.h"
#include "vpd/io.h"

#define NB VPD_HARVEST_BINS
#define HW VPD_HARVEST_HALF_WINDOW
#define WIN VPD_HARVEST_WINDOW
#define NQ VPD_HARVEST_QUANTILES
#define TK VPD_HARVEST_TABLE_K
#define A_EXP_MIN (-20)
#define MERGE_CHUNK 256 /* subcomponents per gather of lists */

/* ---- top lists and reservoirs ------------------------------------------------------ */
typedef struct {
    int64_t pos; /* global position (LM: token index in the file; toy: example index) */
    float g, a;
    uint32_t key; /* reservoir key (top lists: 0) */
    int32_t unused;
} hv_rec;

typedef struct {
    int cap, n_groups;
    bool reservoir;
    size_t blob;        /* bytes of payload per record */
    hv_rec *rec;        /* [n_groups, cap] */
    unsigned char *pay; /* [n_groups, cap, blob] */
    int32_t *n;         /* [n_groups] filled */
    int32_t *worst;     /* [n_groups] index of the worst record (when full) */
} hv_list;

static bool rec_better(const hv_rec *x, const hv_rec *y, bool reservoir) {
    if (reservoir) {
        if (x->key != y->key) return x->key < y->key;
    } else {
        if (x->g != y->g) return x->g > y->g;
        float ax = fabsf(x->a), ay = fabsf(y->a);
        if (ax != ay) return ax > ay;
    }
    return x->pos < y->pos;
}

static vpd_status list_init(hv_list *l, int n_groups, int cap, bool reservoir, size_t blob) {
    memset(l, 0, sizeof *l);
    l->cap = cap;
    l->n_groups = n_groups;
    l->reservoir = reservoir;
    l->blob = blob;
    l->rec = calloc((size_t)n_groups * cap, sizeof(hv_rec));
    l->pay = calloc((size_t)n_groups * cap, blob ? blob : 1);
    l->n = calloc((size_t)n_groups, sizeof(int32_t));
    l->worst = calloc((size_t)n_groups, sizeof(int32_t));
    if (!l->rec || !l->pay || !l->n || !l->worst) return vpd_error(VPD_ERR_MEM, "harvest example lists (%d groups of %d)", n_groups, cap);
    return VPD_OK;
}

static void list_free(hv_list *l) {
    free(l->rec);
    free(l->pay);
    free(l->n);
    free(l->worst);
    memset(l, 0, sizeof *l);
}

static size_t list_bytes(int n_groups, int cap, size_t blob) { return (size_t)n_groups * cap * (sizeof(hv_rec) + blob); }

/* the slot a candidate goes to, or -1 if it does not enter group grp */
static int list_slot(hv_list *l, int grp, const hv_rec *r) {
    hv_rec *g = l->rec + (size_t)grp * l->cap;
    int n = l->n[grp];
    if (n < l->cap) return n;
    return rec_better(r, &g[l->worst[grp]], l->reservoir) ? l->worst[grp] : -1;
}

/* store r at slot (from list_slot); the caller fills the payload at list_pay(l, grp, slot) */
static void list_put(hv_list *l, int grp, int slot, const hv_rec *r) {
    hv_rec *g = l->rec + (size_t)grp * l->cap;
    g[slot] = *r;
    if (slot == l->n[grp]) l->n[grp]++;
    if (l->n[grp] == l->cap) {
        int w = 0;
        for (int i = 1; i < l->cap; i++)
            if (rec_better(&g[w], &g[i], l->reservoir)) w = i;
        l->worst[grp] = w;
    }
}

static unsigned char *list_pay(hv_list *l, int grp, int slot) {
    return l->pay + ((size_t)grp * l->cap + slot) * l->blob;
}

/* ---- the harvest state -------------------------------------------------------------- */
typedef struct {
    vpd_run *r;
    vpd_decomp *d;
    const vpd_harvest_opts *o;
    MPI_Comm comm;
    int rank, size;
    bool lm;
    int L, CS, B, S, N, V, F; /* V: vocab (LM), F: features (toy) */
    /* stream */
    vpd_tokens tok;
    bool own_tok;
    const vpd_tokens *tp;
    int64_t n_windows, n_positions_req; /* LM windows; toy: examples */
    int64_t nb, b0, b1;                 /* batches, this rank's range */
    int32_t *next;                      /* [N] next token (-1: none) */
    uint8_t *valid;                     /* [N] */
    /* per subcomponent (global index gi = c_off + c) */
    real *unorm;    /* [ΣC] ‖U_c‖ */
    real *A;        /* [ΣC·N] a_c, layer-major blocks like d->act.g_lower */
    int64_t *n_pos, *n_fire, *n_fire_next, *gsum_hi, *gsum_lo, *ghist, *ahist, *qcount;
    double *aexp, *arange, *amin, *amax; /* arange = 2^aexp */
    uint64_t *gacc; /* [ΣC] this batch's fixed-point sum of g */
    int64_t n_rows, n_rows_next; /* positions harvested, positions with a next token */
    hv_list top, quant;
    /* LM token tables [V, ΣC] (token-major: one position's firing subcomponents are neighbours) and counts [V] */
    uint32_t *tin, *tnext;
    int64_t *cnt_in, *cnt_next;
    /* toy per-feature table [ΣC, F] and feature counts [F] */
    int64_t *fcount, *feat;
    /* co-firing [ΣC, ΣC] */
    uint32_t *co;
    int32_t *firing; /* [ΣC] scratch: one row's firing subcomponents */
    double t_model, t_stats; /* seconds in the target + CI forward, in the statistics (rank 0) */
} hv;

static inline real *blk(const hv *h, real *buf, int k) { return buf + (size_t)h->N * h->d->layers[k].c_off; }

static void ahist_fold(int64_t *hist) {
    int64_t n[NB] = {0};
    for (int j = 0; j < NB / 2; j++) {
        n[NB / 2 + j / 2] += hist[NB / 2 + j];   /* positive side: bin j → j/2 */
        n[NB / 2 - 1 - j / 2] += hist[NB / 2 - 1 - j]; /* negative side, by magnitude */
    }
    memcpy(hist, n, sizeof n);
}

static inline int ahist_bin(double a, double R) {
    int j = (int)floor(fabs(a) * (NB / 2) / R);
    if (j > NB / 2 - 1) j = NB / 2 - 1;
    return a >= 0 ? NB / 2 + j : NB / 2 - 1 - j;
}

/* smallest e >= A_EXP_MIN with |a| <= 2^e */
static int exp_for(double a) {
    int ex;
    double m = frexp(fabs(a), &ex);
    int e = m == 0.5 ? ex - 1 : ex;
    return e < A_EXP_MIN ? A_EXP_MIN : e;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0; /* Linux: KiB */
}

/* ---- setup ----------------------------------------------------------------------------- */
static vpd_status hv_setup(hv *h) {
    vpd_decomp *d = h->d;
    const vpd_model_config *mc = &d->target->cfg;
    h->L = d->L;
    h->CS = d->C_sum;
    h->B = d->batch.B;
    h->S = d->batch.S;
    h->N = d->batch.N;
    h->lm = vpd_model_is_lm(mc->kind);
    const int64_t dflt = 1000000;
    if (h->lm) {
        h->V = mc->vocab_size;
        if (h->o->tokens_path) {
            int width = h->V > 65535 ? 4 : 2;
            VPD_TRY(vpd_tokens_open(&h->tok, h->o->tokens_path, width, h->V));
            h->own_tok = true;
            h->tp = &h->tok;
        } else if (h->r->job.trainer.have_eval_tokens) {
            h->tp = &h->r->job.trainer.eval_tokens;
        } else {
            return vpd_error(VPD_ERR_CONFIG, "the run's config has no data.eval: pass --tokens FILE (held-out tokens)");
        }
        int64_t T = h->o->n_tokens > 0 ? h->o->n_tokens : dflt;
        if (T > h->tp->n_tokens) T = h->tp->n_tokens;
        h->n_windows = T / h->S;
        if (h->n_windows < 1)
            return vpd_error(VPD_ERR_VALUE, "%s: %lld tokens, fewer than one window of max_seq_len = %d", h->tp->path,
                             (long long)T, h->S);
        h->nb = (h->n_windows + h->B - 1) / h->B;
    } else {
        h->F = mc->n_features;
        h->n_positions_req = h->o->n_tokens > 0 ? h->o->n_tokens : dflt;
        h->nb = (h->n_positions_req + h->B - 1) / h->B;
    }
    h->b0 = h->nb * h->rank / h->size;
    h->b1 = h->nb * (h->rank + 1) / h->size;
    if (h->lm) { /* every id of this rank's shard against the vocabulary, before any work */
        int64_t t0 = h->b0 * h->B * h->S, t1 = h->b1 * h->B * h->S + 1;
        if (t1 > h->n_windows * h->S + 1) t1 = h->n_windows * h->S + 1;
        if (t1 > h->tp->n_tokens) t1 = h->tp->n_tokens;
        for (int64_t i = t0; i < t1; i++) {
            uint32_t id = h->tp->width == 2 ? ((const uint16_t *)h->tp->map)[i] : ((const uint32_t *)h->tp->map)[i];
            if (id >= (uint32_t)h->V)
                return vpd_error(VPD_ERR_VALUE, "%s: token %lld has id %u >= the target's vocabulary size %d: the file does "
                                 "not match this target's tokenizer", h->tp->path, (long long)i, id, h->V);
        }
    }
    const int CS = h->CS, N = h->N;
    /* dense tables: check the memory before allocating */
    double lim = h->o->max_dense_mib;
    if (h->lm && !h->o->no_token_tables) {
        double mib = 2.0 * CS * (double)h->V * 4 / 1048576.0;
        if (mib > lim)
            return vpd_error(VPD_ERR_MEM, "the input/next-token tables need %.0f MiB (2 x %d subcomponents x vocab %d x 4 bytes) "
                             "> --max-dense-mib %.0f: raise the limit or pass --no-token-tables", mib, CS, h->V, lim);
    }
    if (!h->o->no_cofire) {
        double mib = (double)CS * CS * 4 / 1048576.0;
        if (mib > lim)
            return vpd_error(VPD_ERR_MEM, "co-firing counts need %.0f MiB (%d x %d subcomponents x 4 bytes) > --max-dense-mib %.0f: "
                             "raise the limit or pass --no-cofire", mib, CS, CS, lim);
    }
    size_t blob = h->lm ? (size_t)WIN * 12 : (size_t)h->F * sizeof(float);
    double lists = (list_bytes(CS, VPD_HARVEST_TOPK, blob) + list_bytes(CS * NQ, VPD_HARVEST_PER_QUANTILE, blob)) / 1048576.0;
    double tables = (h->lm && !h->o->no_token_tables ? 2.0 * CS * h->V * 4 : 0) + (h->o->no_cofire ? 0 : (double)CS * CS * 4);
    vpd_info("harvest memory plan per rank: example lists %.1f MiB, dense tables %.1f MiB, batch buffers %.1f MiB",
             lists, tables / 1048576.0, (double)CS * N * sizeof(real) / 1048576.0);
    VPD_TRY(list_init(&h->top, CS, VPD_HARVEST_TOPK, false, blob));
    VPD_TRY(list_init(&h->quant, CS * NQ, VPD_HARVEST_PER_QUANTILE, true, blob));
    h->unorm = vpd_malloc(sizeof(real) * CS, "harvest");
    h->A = vpd_malloc(sizeof(real) * (size_t)CS * N, "harvest activations");
    h->next = calloc((size_t)N, sizeof(int32_t));
    h->valid = calloc((size_t)N, 1);
    h->n_pos = calloc((size_t)CS, 8);
    h->n_fire = calloc((size_t)CS, 8);
    h->n_fire_next = calloc((size_t)CS, 8);
    h->gsum_hi = calloc((size_t)CS, 8);
    h->gsum_lo = calloc((size_t)CS, 8);
    h->ghist = calloc((size_t)CS * NB, 8);
    h->ahist = calloc((size_t)CS * NB, 8);
    h->qcount = calloc((size_t)CS * NQ, 8);
    h->aexp = malloc(sizeof(double) * CS);
    h->amin = malloc(sizeof(double) * CS);
    h->amax = malloc(sizeof(double) * CS);
    h->arange = malloc(sizeof(double) * CS);
    h->gacc = malloc(sizeof(uint64_t) * CS);
    h->firing = malloc(sizeof(int32_t) * CS);
    if (!h->unorm || !h->A || !h->next || !h->valid || !h->n_pos || !h->n_fire || !h->n_fire_next || !h->gsum_hi ||
        !h->gsum_lo || !h->ghist || !h->ahist || !h->qcount || !h->aexp || !h->amin || !h->amax || !h->firing || !h->arange || !h->gacc)
        return vpd_error(VPD_ERR_MEM, "harvest statistics");
    for (int i = 0; i < CS; i++) {
        h->aexp[i] = A_EXP_MIN;
        h->arange[i] = ldexp(1.0, A_EXP_MIN);
        h->amin[i] = INFINITY;
        h->amax[i] = -INFINITY;
    }
    if (h->lm && !h->o->no_token_tables) {
        h->tin = calloc((size_t)CS * h->V, 4);
        h->tnext = calloc((size_t)CS * h->V, 4);
        h->cnt_in = calloc((size_t)h->V, 8);
        h->cnt_next = calloc((size_t)h->V, 8);
        if (!h->tin || !h->tnext || !h->cnt_in || !h->cnt_next) return vpd_error(VPD_ERR_MEM, "harvest token tables");
    }
    if (!h->lm) {
        h->fcount = calloc((size_t)CS * h->F, 8);
        h->feat = calloc((size_t)h->F, 8);
        if (!h->fcount || !h->feat) return vpd_error(VPD_ERR_MEM, "harvest feature tables");
    }
    if (!h->o->no_cofire) {
        h->co = calloc((size_t)CS * CS, 4);
        if (!h->co) return vpd_error(VPD_ERR_MEM, "harvest co-firing counts");
    }
    for (int k = 0; k < h->L; k++) {
        const vpd_layer_state *ls = &d->layers[k];
        for (int c = 0; c < ls->C; c++)
            h->unorm[ls->c_off + c] = (real)sqrt(vpd_sumsq((size_t)ls->d_out, ls->comp.U + (size_t)c * ls->d_out));
    }
    return VPD_OK;
}

static void hv_free(hv *h) {
    list_free(&h->top);
    list_free(&h->quant);
    if (h->own_tok) vpd_tokens_close(&h->tok);
    vpd_free(h->unorm);
    vpd_free(h->A);
    void *p[] = {h->next, h->valid, h->n_pos, h->n_fire, h->n_fire_next, h->gsum_hi, h->gsum_lo, h->ghist, h->ahist,
                 h->qcount, h->aexp, h->arange, h->gacc, h->amin, h->amax, h->firing, h->tin, h->tnext, h->cnt_in, h->cnt_next, h->fcount,
                 h->feat, h->co};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
}

/* ---- one batch ------------------------------------------------------------------------- */
static vpd_status load_batch(hv *h, int64_t b) {
    vpd_decomp *d = h->d;
    if (h->lm) {
        for (int bi = 0; bi < h->B; bi++) {
            int64_t w = b * h->B + bi;
            int32_t *in = d->batch.tok_in + (size_t)bi * h->S, *nx = h->next + (size_t)bi * h->S;
            bool ok = w < h->n_windows;
            int64_t start = ok ? w * h->S : 0;
            /* the last token of the file has no next token: read S tokens, and the next one if any */
            int avail = start + h->S < h->tp->n_tokens ? h->S : h->S - 1;
            VPD_TRY(vpd_tokens_window(h->tp, start, avail, in, nx));
            if (avail < h->S) {
                in[h->S - 1] = nx[h->S - 2];
                nx[h->S - 1] = -1;
            }
            for (int s = 0; s < h->S; s++) h->valid[(size_t)bi * h->S + s] = ok;
        }
    } else {
        vpd_toy_batch(&h->r->job.trainer.toy, VPD_DATA_EVAL, (uint64_t)b, 0, h->B, d->batch.x_batch, NULL);
        for (int bi = 0; bi < h->B; bi++) h->valid[bi] = b * h->B + bi < h->n_positions_req;
    }
    return VPD_OK;
}

/* a_c = ‖U_c‖·V_cᵀx for every layer and row */
static void activations(hv *h) {
    vpd_decomp *d = h->d;
    for (int k = 0; k < h->L; k++) {
        const vpd_layer_state *ls = &d->layers[k];
        real *A = blk(h, h->A, k);
        const real *un = h->unorm + ls->c_off;
        const int C = ls->C;
        if (ls->embedding) {
            for (int n = 0; n < h->N; n++) {
                const real *v = ls->comp.V + (size_t)d->batch.tok_in[n] * C;
                for (int c = 0; c < C; c++) A[(size_t)n * C + c] = v[c] * un[c];
            }
        } else {
            vpd_gemm(false, false, h->N, C, ls->d_in, 1, ls->x_in, ls->d_in, ls->comp.V, C, 0, A, C);
            for (int n = 0; n < h->N; n++)
                for (int c = 0; c < C; c++) A[(size_t)n * C + c] *= un[c];
        }
    }
}

/* the payload of a record: LM the ±HW window of this row's sequence (tokens, g, a of this
 * subcomponent; -1 / 0 outside the sequence); toy the example's input features */
static void fill_payload(hv *h, unsigned char *p, int k, int n, int c) {
    const vpd_decomp *d = h->d;
    const int C = d->layers[k].C;
    if (h->lm) {
        int32_t *t = (int32_t *)p;
        float *gw = (float *)(p + WIN * 4), *aw = (float *)(p + WIN * 8);
        const real *g = blk(h, d->act.g_lower, k), *A = blk(h, h->A, k);
        int bi = n / h->S, s = n % h->S;
        for (int j = 0; j < WIN; j++) {
            int s2 = s - HW + j;
            if (s2 < 0 || s2 >= h->S) {
                t[j] = -1;
                gw[j] = aw[j] = 0;
            } else {
                size_t n2 = (size_t)bi * h->S + s2;
                t[j] = d->batch.tok_in[n2];
                gw[j] = (float)g[n2 * C + c];
                aw[j] = (float)A[n2 * C + c];
            }
        }
    } else {
        float *x = (float *)p;
        for (int f = 0; f < h->F; f++) x[f] = (float)d->batch.x_batch[(size_t)n * h->F + f];
    }
}

static void batch_stats(hv *h, int64_t b) {
    vpd_decomp *d = h->d;
    const int N = h->N, CS = h->CS;
    for (int n = 0; n < N; n++) {
        if (!h->valid[n]) continue;
        h->n_rows++;
        if (h->lm) {
            if (h->cnt_in) h->cnt_in[d->batch.tok_in[n]]++;
            if (h->next[n] >= 0) {
                h->n_rows_next++;
                if (h->cnt_next) h->cnt_next[h->next[n]]++;
            }
        } else {
            for (int f = 0; f < h->F; f++) h->feat[f] += d->batch.x_batch[(size_t)n * h->F + f] != 0;
        }
    }
    /* row-major over each layer's [N, C] block (contiguous); per-subcomponent state in arrays */
    memset(h->gacc, 0, sizeof(uint64_t) * CS);
    for (int k = 0; k < h->L; k++) {
        const vpd_layer_state *ls = &d->layers[k];
        const int C = ls->C, off = ls->c_off;
        const real *g = blk(h, d->act.g_lower, k), *A = blk(h, h->A, k);
        for (int n = 0; n < N; n++) {
            if (!h->valid[n]) continue;
            const real *gr = g + (size_t)n * C, *ar = A + (size_t)n * C;
            for (int c = 0; c < C; c++) {
                const int gi = off + c;
                const double gv = gr[c], av = ar[c];
                h->n_pos[gi] += gv > 0;
                h->gacc[gi] += (uint64_t)llround(gv * 4294967296.0);
                int bin = (int)(gv * NB);
                h->ghist[(size_t)gi * NB + (bin < 0 ? 0 : bin >= NB ? NB - 1 : bin)]++;
                int64_t *ah = h->ahist + (size_t)gi * NB;
                if (fabs(av) > h->arange[gi]) {
                    int e = exp_for(av);
                    for (int i = (int)h->aexp[gi]; i < e; i++) ahist_fold(ah);
                    h->aexp[gi] = e;
                    h->arange[gi] = ldexp(1.0, e);
                }
                ah[ahist_bin(av, h->arange[gi])]++;
                if (av < h->amin[gi]) h->amin[gi] = av;
                if (av > h->amax[gi]) h->amax[gi] = av;
                if (!(gv > VPD_HARVEST_FIRE)) continue;
                /* firing */
                h->n_fire[gi]++;
                const int64_t pos = h->lm ? (b * h->B + n / h->S) * h->S + n % h->S : b * h->B + n;
                hv_rec rec = {pos, (float)gv, (float)av, 0, 0};
                int slot = list_slot(&h->top, gi, &rec);
                if (slot >= 0) {
                    list_put(&h->top, gi, slot, &rec);
                    fill_payload(h, list_pay(&h->top, gi, slot), k, n, c);
                }
                int q = (int)((gv - VPD_HARVEST_FIRE) / ((1.0 - VPD_HARVEST_FIRE) / NQ));
                q = q < 0 ? 0 : q >= NQ ? NQ - 1 : q;
                h->qcount[(size_t)gi * NQ + q]++;
                vpd_rng rng = vpd_rng_make(d->cfg->seed, VPD_RNG_EVAL, (uint32_t)gi, 0x48525653u);
                rec.key = vpd_rng_u32(&rng, (uint64_t)pos);
                slot = list_slot(&h->quant, gi * NQ + q, &rec);
                if (slot >= 0) {
                    list_put(&h->quant, gi * NQ + q, slot, &rec);
                    fill_payload(h, list_pay(&h->quant, gi * NQ + q, slot), k, n, c);
                }
                if (h->lm) {
                    if (h->tin) h->tin[(size_t)d->batch.tok_in[n] * CS + gi]++;
                    if (h->next[n] >= 0) {
                        h->n_fire_next[gi]++;
                        if (h->tnext) h->tnext[(size_t)h->next[n] * CS + gi]++;
                    }
                } else {
                    for (int f = 0; f < h->F; f++) h->fcount[(size_t)gi * h->F + f] += d->batch.x_batch[(size_t)n * h->F + f] != 0;
                }
            }
        }
    }
    for (int gi = 0; gi < CS; gi++) {
        h->gsum_hi[gi] += (int64_t)(h->gacc[gi] >> 32);
        h->gsum_lo[gi] += (int64_t)(h->gacc[gi] & 0xffffffffu);
    }
    if (h->co) { /* co-firing: upper triangle by global index, symmetrised at the end */
        for (int n = 0; n < N; n++) {
            if (!h->valid[n]) continue;
            int m = 0;
            for (int k = 0; k < h->L; k++) {
                const int C = d->layers[k].C, off = d->layers[k].c_off;
                const real *g = blk(h, d->act.g_lower, k) + (size_t)n * C;
                for (int c = 0; c < C; c++)
                    if (g[c] > VPD_HARVEST_FIRE) h->firing[m++] = off + c;
            }
            for (int i = 0; i < m; i++) {
                uint32_t *row = h->co + (size_t)h->firing[i] * CS;
                for (int j = i + 1; j < m; j++) row[h->firing[j]]++;
            }
        }
    }
}

/* ---- merging and writing ------------------------------------------------------------- */
typedef struct {
    vpd_h5 f;
    vpd_status s;
} hv_out;

#define W(x) do { if (out->s == VPD_OK) out->s = (x); } while (0)

static void write_real_arr(hv_out *out, const char *path, const double *x, size_t n, int ndim, const int64_t *shape) {
    real *t = vpd_malloc(sizeof(real) * (n ? n : 1), "harvest output");
    if (!t) {
        W(VPD_ERR_MEM);
        return;
    }
    for (size_t i = 0; i < n; i++) t[i] = (real)x[i];
    W(vpd_h5_write_real(&out->f, path, t, ndim, shape));
    vpd_free(t);
}

static int cmp_rec_top(const void *x, const void *y) {
    return rec_better(x, y, false) ? -1 : rec_better(y, x, false) ? 1 : 0;
}
static int cmp_rec_res(const void *x, const void *y) { return rec_better(x, y, true) ? -1 : rec_better(y, x, true) ? 1 : 0; }

typedef struct {
    hv_rec r;
    const unsigned char *p;
} hv_cand;
static int cmp_cand_top(const void *x, const void *y) { return cmp_rec_top(&((const hv_cand *)x)->r, &((const hv_cand *)y)->r); }
static int cmp_cand_res(const void *x, const void *y) { return cmp_rec_res(&((const hv_cand *)x)->r, &((const hv_cand *)y)->r); }

/* Merge groups [g0, g0 + ng) of list l over the ranks; on rank 0 the merged, sorted lists
 * go to out_rec [ng, cap] / out_pay [ng, cap, blob] and out_n [ng]. */
static vpd_status merge_groups(hv *h, hv_list *l, int g0, int ng, hv_rec *out_rec, unsigned char *out_pay, int32_t *out_n) {
    const size_t per_group = sizeof(int32_t) + (size_t)l->cap * (sizeof(hv_rec) + l->blob);
    const size_t bytes = per_group * ng;
    unsigned char *send = malloc(bytes), *recv = h->rank == 0 ? malloc(bytes * h->size) : NULL;
    hv_cand *cand = h->rank == 0 ? malloc(sizeof(hv_cand) * (size_t)l->cap * h->size) : NULL;
    if (!send || (h->rank == 0 && (!recv || !cand))) {
        free(send), free(recv), free(cand);
        return vpd_error(VPD_ERR_MEM, "harvest list merge");
    }
    for (int i = 0; i < ng; i++) {
        unsigned char *p = send + per_group * i;
        memcpy(p, &l->n[g0 + i], sizeof(int32_t));
        memcpy(p + sizeof(int32_t), l->rec + (size_t)(g0 + i) * l->cap, sizeof(hv_rec) * l->cap);
        memcpy(p + sizeof(int32_t) + sizeof(hv_rec) * l->cap, l->pay + (size_t)(g0 + i) * l->cap * l->blob, l->blob * l->cap);
    }
    vpd_gather_bytes(send, bytes, recv, 0, h->comm);
    if (h->rank == 0) {
        for (int i = 0; i < ng; i++) {
            int nc = 0;
            for (int q = 0; q < h->size; q++) {
                const unsigned char *p = recv + bytes * q + per_group * i;
                int32_t n;
                memcpy(&n, p, sizeof n);
                for (int j = 0; j < n; j++) {
                    memcpy(&cand[nc].r, p + sizeof(int32_t) + sizeof(hv_rec) * j, sizeof(hv_rec));
                    cand[nc].p = p + sizeof(int32_t) + sizeof(hv_rec) * l->cap + l->blob * j;
                    nc++;
                }
            }
            qsort(cand, (size_t)nc, sizeof *cand, l->reservoir ? cmp_cand_res : cmp_cand_top);
            int keep = nc < l->cap ? nc : l->cap;
            out_n[i] = keep;
            for (int j = 0; j < l->cap; j++) {
                hv_rec *o = &out_rec[(size_t)i * l->cap + j];
                unsigned char *op = out_pay + ((size_t)i * l->cap + j) * l->blob;
                if (j < keep) {
                    *o = cand[j].r;
                    memcpy(op, cand[j].p, l->blob);
                } else {
                    memset(o, 0, sizeof *o);
                    o->pos = -1;
                    if (h->lm) { /* empty slot: tokens -1 */
                        for (int t = 0; t < WIN; t++) ((int32_t *)op)[t] = -1;
                        memset(op + WIN * 4, 0, WIN * 8);
                    } else {
                        memset(op, 0, l->blob);
                    }
                }
            }
        }
    }
    free(send);
    free(recv);
    free(cand);
    return VPD_OK;
}

/* write a merged list of one layer: prefix/{n, position, g, a, context_*|x} */
static void write_list(hv *h, hv_out *out, const char *prefix, const hv_rec *rec, const unsigned char *pay,
                       const int32_t *n, int C, int groups, int cap, size_t blob) {
    char p[700];
    const size_t nr = (size_t)C * groups * cap;
    int64_t shn[2] = {C, groups}, shr[3] = {C, groups, cap}, shw[4] = {C, groups, cap, h->lm ? WIN : h->F};
    int ndn = groups > 1 ? 2 : 1, ndr = groups > 1 ? 3 : 2;
    if (groups == 1) shr[1] = cap, shw[1] = cap, shw[2] = shw[3];
    int ndw = ndr + 1;
    int64_t *pos = malloc(sizeof(int64_t) * nr);
    double *g = malloc(sizeof(double) * nr), *a = malloc(sizeof(double) * nr);
    size_t wn = nr * (h->lm ? WIN : (size_t)h->F);
    int32_t *ct = h->lm ? malloc(sizeof(int32_t) * wn) : NULL;
    double *cg = malloc(sizeof(double) * wn), *ca = h->lm ? malloc(sizeof(double) * wn) : NULL;
    if (!pos || !g || !a || !cg || (h->lm && (!ct || !ca))) {
        W(vpd_error(VPD_ERR_MEM, "harvest output"));
        goto done;
    }
    for (size_t i = 0; i < nr; i++) {
        pos[i] = rec[i].pos;
        g[i] = rec[i].g;
        a[i] = rec[i].a;
        const unsigned char *pp = pay + i * blob;
        if (h->lm) {
            memcpy(ct + i * WIN, pp, WIN * 4);
            for (int j = 0; j < WIN; j++) {
                float fg, fa;
                memcpy(&fg, pp + WIN * 4 + 4 * j, 4);
                memcpy(&fa, pp + WIN * 8 + 4 * j, 4);
                cg[i * WIN + j] = fg;
                ca[i * WIN + j] = fa;
            }
        } else {
            for (int f = 0; f < h->F; f++) {
                float x;
                memcpy(&x, pp + 4 * f, 4);
                cg[i * h->F + f] = x;
            }
        }
    }
    snprintf(p, sizeof p, "%s/n", prefix);
    W(vpd_h5_write_i32(&out->f, p, n, ndn, shn));
    snprintf(p, sizeof p, "%s/position", prefix);
    W(vpd_h5_write_i64(&out->f, p, pos, ndr, shr));
    snprintf(p, sizeof p, "%s/g", prefix);
    write_real_arr(out, p, g, nr, ndr, shr);
    snprintf(p, sizeof p, "%s/a", prefix);
    write_real_arr(out, p, a, nr, ndr, shr);
    if (h->lm) {
        snprintf(p, sizeof p, "%s/context_tokens", prefix);
        W(vpd_h5_write_i32(&out->f, p, ct, ndw, shw));
        snprintf(p, sizeof p, "%s/context_g", prefix);
        write_real_arr(out, p, cg, wn, ndw, shw);
        snprintf(p, sizeof p, "%s/context_a", prefix);
        write_real_arr(out, p, ca, wn, ndw, shw);
    } else {
        snprintf(p, sizeof p, "%s/x", prefix);
        write_real_arr(out, p, cg, wn, ndw, shw);
    }
done:
    free(pos), free(g), free(a), free(ct), free(cg), free(ca);
}

typedef struct {
    int idx;
    double v;
    int64_t cnt;
} hv_top;

/* insert (idx, v, cnt) into a best-first list of k (ties: larger count, then smaller index) */
static void top_insert(hv_top *t, int *n, int k, int idx, double v, int64_t cnt, bool largest) {
    int i = *n < k ? (*n)++ : k;
    if (i == k) {
        const hv_top *w = &t[k - 1];
        bool better = largest ? (v > w->v) : (v < w->v);
        if (v == w->v) better = cnt > w->cnt || (cnt == w->cnt && idx < w->idx);
        if (!better) return;
        i = k - 1;
    }
    while (i > 0) {
        const hv_top *p = &t[i - 1];
        bool better = largest ? (v > p->v) : (v < p->v);
        if (v == p->v) better = cnt > p->cnt || (cnt == p->cnt && idx < p->idx);
        if (!better) break;
        t[i] = t[i - 1];
        i--;
    }
    t[i] = (hv_top){idx, v, cnt};
}

/* write k-lists [C, k]: prefix/{index-name, value, count} */
static void write_tops(hv_out *out, const char *prefix, const char *idx_name, const hv_top *t, const int *nt, int C, int k) {
    int32_t *id = malloc(sizeof(int32_t) * (size_t)C * k);
    double *v = malloc(sizeof(double) * (size_t)C * k);
    int64_t *cn = malloc(sizeof(int64_t) * (size_t)C * k);
    if (!id || !v || !cn) {
        W(vpd_error(VPD_ERR_MEM, "harvest output"));
    } else {
        for (int c = 0; c < C; c++)
            for (int j = 0; j < k; j++) {
                size_t i = (size_t)c * k + j;
                bool have = j < nt[c];
                id[i] = have ? t[i].idx : -1;
                v[i] = have ? t[i].v : NAN;
                cn[i] = have ? t[i].cnt : 0;
            }
        char p[800];
        int64_t sh[2] = {C, k};
        snprintf(p, sizeof p, "%s/%s", prefix, idx_name);
        W(vpd_h5_write_i32(&out->f, p, id, 2, sh));
        snprintf(p, sizeof p, "%s/value", prefix);
        write_real_arr(out, p, v, (size_t)C * k, 2, sh);
        if (cn) {
            snprintf(p, sizeof p, "%s/count", prefix);
            W(vpd_h5_write_i64(&out->f, p, cn, 2, sh));
        }
    }
    free(id), free(v), free(cn);
}

/* reduce rows [r0, r0+nr) of a uint32 [rows, cols] table over the ranks into int64 out */
static vpd_status reduce_rows(hv *h, const uint32_t *tab, int r0, int nr, int cols, int64_t *out) {
    for (size_t i = 0; i < (size_t)nr * cols; i++) out[i] = tab[(size_t)r0 * cols + i];
    vpd_sum_int64(out, (size_t)nr * cols, h->comm);
    return VPD_OK;
}

/* token tables of layer k: prefix/{precision,recall,pmi}/{token,value,count} */
static void token_tables(hv *h, hv_out *out, int k, const uint32_t *tab, const int64_t *tok_count, const int64_t *nfire,
                         int64_t total, const char *prefix) {
    const vpd_layer_state *ls = &h->d->layers[k];
    const int C = ls->C, V = h->V, chunk = (int)(4194304 / V > 0 ? 4194304 / V : 1);
    int64_t *buf = malloc(sizeof(int64_t) * (size_t)(chunk < C ? chunk : C) * V);
    hv_top *tp[3];
    int *nt[3];
    for (int m = 0; m < 3; m++) {
        tp[m] = calloc((size_t)C * TK, sizeof(hv_top));
        nt[m] = calloc((size_t)C, sizeof(int));
    }
    if (!buf || !tp[0] || !tp[1] || !tp[2] || !nt[0] || !nt[1] || !nt[2]) {
        W(vpd_error(VPD_ERR_MEM, "harvest token tables"));
        goto done;
    }
    for (int c0 = 0; c0 < C; c0 += chunk) {
        int nc = C - c0 < chunk ? C - c0 : chunk;
        for (int t = 0; t < V; t++) /* the chunk's columns of the [V, ΣC] table, as rows [nc, V] */
            for (int i = 0; i < nc; i++) buf[(size_t)i * V + t] = tab[(size_t)t * h->CS + ls->c_off + c0 + i];
        vpd_sum_int64(buf, (size_t)nc * V, h->comm);
        if (h->rank != 0) continue;
        for (int i = 0; i < nc; i++) {
            const int c = c0 + i;
            const double nc_f = (double)nfire[ls->c_off + c];
            for (int t = 0; t < V; t++) {
                int64_t n = buf[(size_t)i * V + t];
                if (n <= 0) continue;
                double prec = n / nc_f, rec = (double)n / tok_count[t];
                double pmi = log((double)n * (double)total / (nc_f * (double)tok_count[t]));
                top_insert(tp[0] + (size_t)c * TK, &nt[0][c], TK, t, prec, n, true);
                top_insert(tp[1] + (size_t)c * TK, &nt[1][c], TK, t, rec, n, true);
                top_insert(tp[2] + (size_t)c * TK, &nt[2][c], TK, t, pmi, n, true);
            }
        }
    }
    if (h->rank == 0) {
        const char *names[3] = {"precision", "recall", "pmi"};
        for (int m = 0; m < 3; m++) {
            char p[700];
            snprintf(p, sizeof p, "%s/%s", prefix, names[m]);
            write_tops(out, p, "token", tp[m], nt[m], C, TK);
        }
    }
done:
    free(buf);
    for (int m = 0; m < 3; m++) free(tp[m]), free(nt[m]);
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static const real *param(const vpd_model *m, const char *name) {
    int i = vpd_model_find_param(m, name);
    return i < 0 ? NULL : m->params + m->pinfo[i].offset;
}

/* logit lens of a residual writer: logits_c = wte · (ln_f.weight ⊙ U_c) */
static void logit_lens(hv *h, hv_out *out, int k, const char *lp) {
    const vpd_layer_state *ls = &h->d->layers[k];
    const vpd_model *m = h->d->target;
    const real *wte = param(m, "wte.weight"), *lnf = param(m, "ln_f.weight");
    const int C = ls->C, D = ls->d_out, V = h->V, chunk = 64;
    if (!wte || !lnf || D != m->cfg.n_embd) return;
    real *u = vpd_malloc(sizeof(real) * (size_t)chunk * D, "logit lens"), *lg = vpd_malloc(sizeof(real) * (size_t)chunk * V, "logit lens");
    hv_top *tp = calloc((size_t)C * TK, sizeof(hv_top)), *bt = calloc((size_t)C * TK, sizeof(hv_top));
    int *nt = calloc((size_t)C, sizeof(int)), *nb = calloc((size_t)C, sizeof(int));
    if (!u || !lg || !tp || !bt || !nt || !nb) {
        W(vpd_error(VPD_ERR_MEM, "logit lens"));
        goto done;
    }
    for (int c0 = 0; c0 < C; c0 += chunk) {
        int nc = C - c0 < chunk ? C - c0 : chunk;
        for (int i = 0; i < nc; i++)
            for (int j = 0; j < D; j++) u[(size_t)i * D + j] = ls->comp.U[(size_t)(c0 + i) * D + j] * lnf[j];
        vpd_gemm(false, true, nc, V, D, 1, u, D, wte, D, 0, lg, V);
        for (int i = 0; i < nc; i++)
            for (int t = 0; t < V; t++) {
                double v = lg[(size_t)i * V + t];
                top_insert(tp + (size_t)(c0 + i) * TK, &nt[c0 + i], TK, t, v, 0, true);
                top_insert(bt + (size_t)(c0 + i) * TK, &nb[c0 + i], TK, t, v, 0, false);
            }
    }
    char p[700];
    snprintf(p, sizeof p, "%s/logit_lens/promoted", lp);
    write_tops(out, p, "token", tp, nt, C, TK);
    snprintf(p, sizeof p, "%s/logit_lens/suppressed", lp);
    write_tops(out, p, "token", bt, nb, C, TK);
done:
    vpd_free(u), vpd_free(lg);
    free(tp), free(bt), free(nt), free(nb);
}

/* attention: block index and projection ('q', 'k', 'v', 'o') of "h.<i>.attn.<p>_proj" */
static bool attn_layer(const char *name, int *block, char *proj) {
    int b;
    char p;
    if (sscanf(name, "h.%d.attn.%c_proj", &b, &p) != 2 || !strchr("qkvo", p) || !ends_with(name, "_proj")) return false;
    *block = b;
    *proj = p;
    return true;
}

static void head_shares(hv *h, hv_out *out, int k, const char *lp) {
    const vpd_layer_state *ls = &h->d->layers[k];
    const vpd_model_config *mc = &h->d->target->cfg;
    int blkno;
    char proj;
    if (!attn_layer(ls->name, &blkno, &proj)) return;
    const int dh = mc->n_embd / mc->n_head;
    const int H = proj == 'k' || proj == 'v' ? mc->n_key_value_heads : mc->n_head;
    const int C = ls->C;
    double *sh = malloc(sizeof(double) * (size_t)C * H);
    if (!sh) {
        W(vpd_error(VPD_ERR_MEM, "head shares"));
        return;
    }
    for (int c = 0; c < C; c++) {
        double tot = 0;
        for (int hh = 0; hh < H; hh++) {
            double s = 0;
            for (int i = 0; i < dh; i++) {
                int e = hh * dh + i;
                double x = proj == 'o' ? ls->comp.V[(size_t)e * C + c] : ls->comp.U[(size_t)c * ls->d_out + e];
                s += x * x;
            }
            sh[(size_t)c * H + hh] = s;
            tot += s;
        }
        for (int hh = 0; hh < H; hh++) sh[(size_t)c * H + hh] = tot > 0 ? sh[(size_t)c * H + hh] / tot : 0;
    }
    char p[700];
    int64_t shp[2] = {C, H};
    snprintf(p, sizeof p, "%s/head_share", lp);
    write_real_arr(out, p, sh, (size_t)C * H, 2, shp);
    free(sh);
}

/* q/k static interaction of one block: I[δ, cq, ck] = Σ_h U_q[cq, h]ᵀ R(−δ) U_k[ck, kv(h)] / √d_head */
static void qk_interaction(hv *h, hv_out *out, int kq, int kk, int blkno) {
    const vpd_layer_state *q = &h->d->layers[kq], *kl = &h->d->layers[kk];
    const vpd_model_config *mc = &h->d->target->cfg;
    const int H = mc->n_head, Hkv = mc->n_key_value_heads, dh = mc->n_embd / H, half = dh / 2;
    const int Cq = q->C, Ck = kl->C, ND = VPD_HARVEST_QK_OFFSETS;
    real *kr = vpd_malloc(sizeof(real) * (size_t)Ck * dh, "qk"), *S = vpd_malloc(sizeof(real) * (size_t)ND * Cq * Ck, "qk");
    double *prev = malloc(sizeof(double) * (size_t)Cq * Ck);
    if (!kr || !S || !prev) {
        W(vpd_error(VPD_ERR_MEM, "q/k interaction"));
        goto done;
    }
    for (int dl = 0; dl < ND; dl++) {
        real *Sd = S + (size_t)dl * Cq * Ck;
        for (int hh = 0; hh < H; hh++) {
            const int hk = hh / (H / Hkv);
            for (int c = 0; c < Ck; c++) {
                const real *ku = kl->comp.U + (size_t)c * kl->d_out + (size_t)hk * dh;
                real *o = kr + (size_t)c * dh;
                for (int i = 0; i < half; i++) { /* rotate by −δ·θ_i (rope.c's angle) */
                    double th = -(double)dl * pow(mc->rope_theta, -2.0 * i / dh);
                    double cs = cos(th), sn = sin(th);
                    o[i] = (real)(ku[i] * cs - ku[i + half] * sn);
                    o[i + half] = (real)(ku[i + half] * cs + ku[i] * sn);
                }
            }
            vpd_gemm(false, true, Cq, Ck, dh, (real)(1.0 / sqrt((double)dh)), q->comp.U + (size_t)hh * dh, q->d_out, kr, dh,
                     hh == 0 ? 0 : 1, Sd, Ck);
        }
    }
    for (size_t i = 0; i < (size_t)Cq * Ck; i++) {
        double mx = 0, other = -INFINITY;
        for (int dl = 0; dl < ND; dl++) {
            double v = S[(size_t)dl * Cq * Ck + i];
            if (fabs(v) > mx) mx = fabs(v);
            if (dl != 1 && v > other) other = v;
        }
        prev[i] = mx > 0 ? (S[(size_t)Cq * Ck + i] - other) / mx : 0;
    }
    char p[700];
    int64_t s3[3] = {ND, Cq, Ck}, s2[2] = {Cq, Ck};
    snprintf(p, sizeof p, "/attention/h.%d/qk_interaction", blkno);
    W(vpd_h5_write_real(&out->f, p, S, 3, s3));
    snprintf(p, sizeof p, "/attention/h.%d/prev_token_score", blkno);
    write_real_arr(out, p, prev, (size_t)Cq * Ck, 2, s2);
    snprintf(p, sizeof p, "/attention/h.%d", blkno);
    W(vpd_h5_set_attr_str(&out->f, p, "q_layer", q->name));
    W(vpd_h5_set_attr_str(&out->f, p, "k_layer", kl->name));
done:
    vpd_free(kr), vpd_free(S);
    free(prev);
}

/* co-firing of layer k's subcomponents with every other one: top Jaccard */
static void cofire(hv *h, hv_out *out, int k, const int64_t *nfire, const char *lp) {
    const vpd_layer_state *ls = &h->d->layers[k];
    const int C = ls->C, CS = h->CS, K = VPD_HARVEST_COFIRE_K, chunk = 4194304 / CS > 0 ? 4194304 / CS : 1;
    int64_t *buf = malloc(sizeof(int64_t) * (size_t)(chunk < C ? chunk : C) * CS);
    hv_top *tp = calloc((size_t)C * K, sizeof(hv_top));
    int *nt = calloc((size_t)C, sizeof(int));
    if (!buf || !tp || !nt) {
        W(vpd_error(VPD_ERR_MEM, "co-firing"));
        goto done;
    }
    for (int c0 = 0; c0 < C; c0 += chunk) {
        int nc = C - c0 < chunk ? C - c0 : chunk;
        reduce_rows(h, h->co, ls->c_off + c0, nc, CS, buf);
        if (h->rank != 0) continue;
        for (int i = 0; i < nc; i++) {
            const int gi = ls->c_off + c0 + i;
            for (int j = 0; j < CS; j++) {
                int64_t n = buf[(size_t)i * CS + j];
                if (j == gi || n <= 0) continue;
                double jac = (double)n / (double)(nfire[gi] + nfire[j] - n);
                top_insert(tp + (size_t)(c0 + i) * K, &nt[c0 + i], K, j, jac, n, true);
            }
        }
    }
    if (h->rank == 0) {
        char p[700];
        snprintf(p, sizeof p, "%s/cofire", lp);
        write_tops(out, p, "subcomponent", tp, nt, C, K);
    }
done:
    free(buf), free(tp), free(nt);
}

static vpd_status hv_finish(hv *h, const char *out_path, double t0) {
    vpd_decomp *d = h->d;
    const int CS = h->CS;
    const double t_merge = vpd_wtime();
    /* global sums: every rank gets them (needed for the tables' denominators) */
    int64_t rows[2] = {h->n_rows, h->n_rows_next};
    vpd_sum_int64(rows, 2, h->comm);
    vpd_sum_int64(h->n_pos, CS, h->comm);
    vpd_sum_int64(h->n_fire, CS, h->comm);
    vpd_sum_int64(h->n_fire_next, CS, h->comm);
    vpd_sum_int64(h->gsum_hi, CS, h->comm);
    vpd_sum_int64(h->gsum_lo, CS, h->comm);
    vpd_sum_int64(h->ghist, (size_t)CS * NB, h->comm);
    vpd_sum_int64(h->qcount, (size_t)CS * NQ, h->comm);
    double *e_loc = malloc(sizeof(double) * CS);
    if (!e_loc) return vpd_error(VPD_ERR_MEM, "harvest merge");
    memcpy(e_loc, h->aexp, sizeof(double) * CS);
    vpd_max_double(h->aexp, CS, h->comm);
    for (int i = 0; i < CS; i++)
        for (int e = (int)e_loc[i]; e < (int)h->aexp[i]; e++) ahist_fold(h->ahist + (size_t)i * NB);
    free(e_loc);
    vpd_sum_int64(h->ahist, (size_t)CS * NB, h->comm);
    vpd_min_double(h->amin, CS, h->comm);
    vpd_max_double(h->amax, CS, h->comm);
    if (h->cnt_in) {
        vpd_sum_int64(h->cnt_in, (size_t)h->V, h->comm);
        vpd_sum_int64(h->cnt_next, (size_t)h->V, h->comm);
    }
    if (h->feat) {
        vpd_sum_int64(h->feat, (size_t)h->F, h->comm);
        vpd_sum_int64(h->fcount, (size_t)CS * h->F, h->comm);
    }
    if (h->co) /* symmetrise the upper triangle */
        for (int i = 0; i < CS; i++)
            for (int j = i + 1; j < CS; j++) h->co[(size_t)j * CS + i] = h->co[(size_t)i * CS + j];

    hv_out o = {.s = VPD_OK}, *out = &o;
    vpd_status s = VPD_OK;
    if (h->rank == 0) s = vpd_h5_create(&o.f, out_path);
    s = vpd_all_agree(s, h->comm);
    if (s != VPD_OK) return s;
    if (h->rank == 0) {
        W(vpd_h5_set_attr_str(&o.f, "/", "format", "vpd-harvest"));
        W(vpd_h5_set_attr_str(&o.f, "/", "run", h->r->dir));
        W(vpd_h5_set_attr_int(&o.f, "/", "run_step", h->r->run_step));
        { /* the run's identity: its resolved config text (run.h5 /config@yaml); vpd report
           * refuses a harvest.h5 whose run_config differs from the run.h5 beside it */
            char *yaml = NULL;
            W(vpd_checkpoint_config(h->r->h5_path, &yaml));
            if (yaml) W(vpd_h5_set_attr_str(&o.f, "/", "run_config", yaml));
            vpd_free(yaml);
        }
        W(vpd_h5_set_attr_str(&o.f, "/", "target", vpd_model_kind_name(d->target->cfg.kind)));
        W(vpd_h5_set_attr_int(&o.f, "/", "positions", rows[0]));
        W(vpd_h5_set_attr_int(&o.f, "/", "positions_with_next", rows[1]));
        W(vpd_h5_set_attr_double(&o.f, "/", "fire_threshold", VPD_HARVEST_FIRE));
        W(vpd_h5_set_attr_int(&o.f, "/", "batch", h->B));
        W(vpd_h5_set_attr_int(&o.f, "/", "n_layers", h->L));
        W(vpd_h5_set_attr_int(&o.f, "/", "n_subcomponents", CS));
        if (h->lm) {
            W(vpd_h5_set_attr_str(&o.f, "/", "tokens", h->tp->path));
            W(vpd_h5_set_attr_int(&o.f, "/", "seq_len", h->S));
            W(vpd_h5_set_attr_int(&o.f, "/", "windows", h->n_windows));
            W(vpd_h5_set_attr_int(&o.f, "/", "vocab_size", h->V));
            W(vpd_h5_set_attr_int(&o.f, "/", "half_window", HW));
        } else {
            W(vpd_h5_set_attr_str(&o.f, "/", "data", "the generator's eval stream (config seed, stream 1)"));
            W(vpd_h5_set_attr_int(&o.f, "/", "n_features", h->F));
            int64_t sf[1] = {h->F};
            W(vpd_h5_write_i64(&o.f, "/feature_count", h->feat, 1, sf));
        }
        char names[8192] = "";
        for (int k = 0; k < h->L; k++) {
            if (k) strncat(names, "\n", sizeof names - strlen(names) - 1);
            strncat(names, d->layers[k].name, sizeof names - strlen(names) - 1);
        }
        W(vpd_h5_set_attr_str(&o.f, "/", "layers", names));
        if (h->cnt_in) {
            int64_t sv[1] = {h->V};
            W(vpd_h5_write_i64(&o.f, "/token_count", h->cnt_in, 1, sv));
            W(vpd_h5_write_i64(&o.f, "/next_token_count", h->cnt_next, 1, sv));
        }
    }
    int qk_q[64], qk_k[64], n_qk = 0; /* per block: decomposed q and k layers */
    for (int i = 0; i < 64; i++) qk_q[i] = qk_k[i] = -1;
    for (int k = 0; k < h->L && o.s == VPD_OK; k++) {
        const vpd_layer_state *ls = &d->layers[k];
        const int C = ls->C, off = ls->c_off;
        char lp[200], p[300];
        snprintf(lp, sizeof lp, "/layers/%s", ls->name);
        if (h->rank == 0) {
            W(vpd_h5_set_attr_int(&o.f, lp, "index", k));
            W(vpd_h5_set_attr_int(&o.f, lp, "c_offset", off));
            W(vpd_h5_set_attr_int(&o.f, lp, "C", C));
            W(vpd_h5_set_attr_int(&o.f, lp, "d_in", ls->d_in));
            W(vpd_h5_set_attr_int(&o.f, lp, "d_out", ls->d_out));
            double *x = malloc(sizeof(double) * (size_t)C * NB);
            if (!x) return vpd_error(VPD_ERR_MEM, "harvest output");
            int64_t s1[1] = {C}, s2[2] = {C, NB}, sq[2] = {C, NQ};
            for (int c = 0; c < C; c++) x[c] = (double)h->n_pos[off + c] / (double)rows[0];
            snprintf(p, sizeof p, "%s/density_pos", lp);
            write_real_arr(out, p, x, C, 1, s1);
            for (int c = 0; c < C; c++) x[c] = (double)h->n_fire[off + c] / (double)rows[0];
            snprintf(p, sizeof p, "%s/density", lp);
            write_real_arr(out, p, x, C, 1, s1);
            for (int c = 0; c < C; c++) {
                int64_t hi = h->gsum_hi[off + c] + (h->gsum_lo[off + c] >> 32), lo = h->gsum_lo[off + c] & 0xffffffff;
                x[c] = ((double)hi + ldexp((double)lo, -32)) / (double)rows[0];
            }
            snprintf(p, sizeof p, "%s/mean_g", lp);
            write_real_arr(out, p, x, C, 1, s1);
            snprintf(p, sizeof p, "%s/count_pos", lp);
            W(vpd_h5_write_i64(&o.f, p, h->n_pos + off, 1, s1));
            snprintf(p, sizeof p, "%s/count_fire", lp);
            W(vpd_h5_write_i64(&o.f, p, h->n_fire + off, 1, s1));
            snprintf(p, sizeof p, "%s/g_hist", lp);
            W(vpd_h5_write_i64(&o.f, p, h->ghist + (size_t)off * NB, 2, s2));
            snprintf(p, sizeof p, "%s/a_hist", lp);
            W(vpd_h5_write_i64(&o.f, p, h->ahist + (size_t)off * NB, 2, s2));
            for (int c = 0; c < C; c++) x[c] = ldexp(1.0, (int)h->aexp[off + c]);
            snprintf(p, sizeof p, "%s/a_hist_range", lp);
            write_real_arr(out, p, x, C, 1, s1);
            snprintf(p, sizeof p, "%s/a_min", lp);
            write_real_arr(out, p, h->amin + off, C, 1, s1);
            snprintf(p, sizeof p, "%s/a_max", lp);
            write_real_arr(out, p, h->amax + off, C, 1, s1);
            snprintf(p, sizeof p, "%s/quantiles/count", lp);
            W(vpd_h5_write_i64(&o.f, p, h->qcount + (size_t)off * NQ, 2, sq));
            if (!h->lm) {
                int64_t sf[2] = {C, h->F};
                const int F = h->F;
                snprintf(p, sizeof p, "%s/features/count", lp);
                W(vpd_h5_write_i64(&o.f, p, h->fcount + (size_t)off * F, 2, sf));
                double *pr = malloc(sizeof(double) * (size_t)C * F), *rc = malloc(sizeof(double) * (size_t)C * F);
                if (pr && rc) {
                    for (int c = 0; c < C; c++)
                        for (int f = 0; f < F; f++) {
                            double n = (double)h->fcount[(size_t)(off + c) * F + f];
                            pr[(size_t)c * F + f] = h->n_fire[off + c] ? n / h->n_fire[off + c] : 0;
                            rc[(size_t)c * F + f] = h->feat[f] ? n / h->feat[f] : 0;
                        }
                    snprintf(p, sizeof p, "%s/features/precision", lp);
                    write_real_arr(out, p, pr, (size_t)C * F, 2, sf);
                    snprintf(p, sizeof p, "%s/features/recall", lp);
                    write_real_arr(out, p, rc, (size_t)C * F, 2, sf);
                } else {
                    W(vpd_error(VPD_ERR_MEM, "harvest feature tables"));
                }
                free(pr), free(rc);
            }
            free(x);
        }
        /* example lists, merged in chunks of subcomponents */
        for (int li = 0; li < 2; li++) {
            hv_list *l = li == 0 ? &h->top : &h->quant;
            const int gpc = li == 0 ? 1 : NQ; /* groups per subcomponent */
            const size_t ng = (size_t)C * gpc;
            hv_rec *rec = NULL;
            unsigned char *pay = NULL;
            int32_t *n = NULL;
            if (h->rank == 0) {
                rec = malloc(sizeof(hv_rec) * ng * l->cap);
                pay = malloc(l->blob * ng * l->cap);
                n = malloc(sizeof(int32_t) * ng);
                if (!rec || !pay || !n) o.s = vpd_error(VPD_ERR_MEM, "harvest list output");
            }
            for (int c0 = 0; c0 < C && vpd_all_agree(o.s, h->comm) == VPD_OK; c0 += MERGE_CHUNK) {
                int nc = C - c0 < MERGE_CHUNK ? C - c0 : MERGE_CHUNK;
                size_t g0 = (size_t)c0 * gpc;
                vpd_status ms = merge_groups(h, l, (off + c0) * gpc, nc * gpc, rec ? rec + g0 * l->cap : NULL,
                                             pay ? pay + g0 * l->cap * l->blob : NULL, n ? n + g0 : NULL);
                if (o.s == VPD_OK) o.s = ms;
            }
            if (h->rank == 0) {
                snprintf(p, sizeof p, "%s/%s", lp, li == 0 ? "top" : "quantiles");
                write_list(h, out, p, rec, pay, n, C, gpc, l->cap, l->blob);
            }
            free(rec), free(pay), free(n);
        }
        if (h->tin) {
            snprintf(p, sizeof p, "%s/input_tokens", lp);
            token_tables(h, out, k, h->tin, h->cnt_in, h->n_fire, rows[0], p);
            snprintf(p, sizeof p, "%s/next_tokens", lp);
            token_tables(h, out, k, h->tnext, h->cnt_next, h->n_fire_next, rows[1], p);
        }
        if (h->co) cofire(h, out, k, h->n_fire, lp);
        if (h->rank == 0) {
            if (h->lm && (ends_with(ls->name, "o_proj") || ends_with(ls->name, "down_proj") || !strcmp(ls->name, "wte")))
                logit_lens(h, out, k, lp);
            head_shares(h, out, k, lp);
        }
        int bno;
        char pr;
        if (attn_layer(ls->name, &bno, &pr) && bno >= 0 && bno < 64) {
            if (pr == 'q') qk_q[bno] = k;
            if (pr == 'k') qk_k[bno] = k;
        }
        o.s = vpd_all_agree(o.s, h->comm);
    }
    if (h->rank == 0)
        for (int b = 0; b < 64 && o.s == VPD_OK; b++)
            if (qk_q[b] >= 0 && qk_k[b] >= 0) {
                qk_interaction(h, out, qk_q[b], qk_k[b], b);
                n_qk++;
            }
    if (h->rank == 0) {
        W(vpd_h5_set_attr_int(&o.f, "/", "qk_blocks", n_qk));
        vpd_status c = vpd_h5_close(&o.f);
        if (o.s == VPD_OK) o.s = c;
    }
    s = vpd_all_agree(o.s, h->comm);
    /* benchmark line: streaming and merging, from the first batch to the closed file */
    const double seconds = vpd_wtime() - t0;
    double rss = peak_rss_mib(), rss_max = rss;
    vpd_max_double(&rss_max, 1, h->comm);
    if (s == VPD_OK)
        vpd_info("harvest: %lld %s in %.2f s: %.0f %s/s on %d rank%s; peak RSS %.1f MiB (rank 0), %.1f MiB (max over ranks); "
                 "rank 0: model + CI %.2f s, statistics %.2f s, merge + write %.2f s, CPU time %.2f s",
                 (long long)rows[0], h->lm ? "tokens" : "examples", seconds, rows[0] / (seconds > 0 ? seconds : 1e-9),
                 h->lm ? "tokens" : "examples", h->size, h->size > 1 ? "s" : "", rss, rss_max, h->t_model, h->t_stats,
                 vpd_wtime() - t_merge, cpu_seconds());
    return s;
}
#undef W

vpd_status vpd_harvest(vpd_run *r, const vpd_harvest_opts *o, const char *out_path, MPI_Comm comm) {
    hv h;
    memset(&h, 0, sizeof h);
    h.r = r;
    h.d = r->d;
    h.o = o;
    h.comm = comm;
    h.rank = vpd_comm_rank(comm);
    h.size = vpd_comm_size(comm);
    vpd_status s = hv_setup(&h);
    s = vpd_all_agree(s, comm);
    if (s != VPD_OK) {
        hv_free(&h);
        return s;
    }
    if (h.lm)
        vpd_info("harvest: %lld windows of %d tokens from %s (%lld batches of %d over %d rank%s)", (long long)h.n_windows, h.S,
                 h.tp->path, (long long)h.nb, h.B, h.size, h.size > 1 ? "s" : "");
    else
        vpd_info("harvest: %lld examples of the eval stream (%lld batches of %d over %d rank%s)", (long long)h.n_positions_req,
                 (long long)h.nb, h.B, h.size, h.size > 1 ? "s" : "");
    const double t0 = vpd_wtime();
    double last = t0;
    for (int64_t b = h.b0; b < h.b1 && s == VPD_OK; b++) {
        s = load_batch(&h, b);
        if (s != VPD_OK) break;
        h.d->step = (int)b; /* names the batch's random draws (binomial CI input) */
        double ta = vpd_wtime();
        vpd_decomp_target_forward(h.d);
        s = vpd_decomp_ci_forward(h.d);
        if (s != VPD_OK) break;
        activations(&h);
        double tb = vpd_wtime();
        batch_stats(&h, b);
        double now = vpd_wtime();
        h.t_model += tb - ta;
        h.t_stats += now - tb;
        if (o->progress && h.rank == 0 && (now - last > 2 || b + 1 == h.b1)) {
            fprintf(stderr, "harvest: batch %lld/%lld on rank 0, %.0f positions/s%s", (long long)(b - h.b0 + 1),
                    (long long)(h.b1 - h.b0), h.n_rows / (now - t0), isatty(2) ? "   \r" : "\n");
            last = now;
        }
    }
    if (o->progress && h.rank == 0 && isatty(2)) fprintf(stderr, "\n");
    h.d->step = r->run_step;
    s = vpd_all_agree(s, comm);
    if (s == VPD_OK) s = hv_finish(&h, out_path, t0);
    hv_free(&h);
    return s;
}
