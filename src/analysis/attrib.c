/* Attribution graphs of a prompt (include/vpd/attrib.h has the definition).
 *
 * One forward of the whole prompt (one sequence) through the masked model (masks g, Δ on)
 * keeps a = V_cᵀx of every layer. One chunk = up to `batch` target nodes at one position t:
 * a row-restricted backward of that forward (vpd_model_backward_position) with one gradient
 * copy per target, living only at row t (the model is causal, and every gradient path the
 * graph keeps stays at row t except the k/v rows s <= t that reach an o_proj target through
 * attention). Copy b is seeded at its target: the output logit through dout, a subcomponent
 * a_c = V_cᵀx of decomposed layer k by adding V[:, c] to the input gradient of layer k inside
 * the hook. The hook's backward of every decomposed layer takes ∂/∂m = (dy Uᵀ) ⊙ a, turns it
 * into the edges c' → target = ∂/∂m_c' · m_c' = (∂a/∂ã_c')·ã_c' (ã = m·a), and passes the
 * gradient on through Δ only (dx += dy Δ: it stops at the components). */
#include <stddef.h>
#define _POSIX_C_SOURCE 200809L
#include "vpd/attrib.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpd/comm.h"
#include "vpd/io.h"
#include "vpd/nn.h"

vpd_status vpd_attrib_prompt_ci(vpd_decomp *d, const int32_t *tokens, int S, real *g) {
    if (d->batch.B != 1 || d->batch.S != S || !d->batch.tok_in)
        return vpd_error(VPD_ERR_ARG, "attrib: the decomposition holds %d x %d positions; the prompt CI needs 1 x %d",
                         d->batch.B, d->batch.S, S);
    int V = vpd_model_out_dim(d->target);
    for (int s = 0; s < S; s++)
        if (tokens[s] < 0 || tokens[s] >= V)
            return vpd_error(VPD_ERR_VALUE, "attrib: token %d at position %d is outside the vocabulary [0, %d)", tokens[s],
                             s, V);
    memcpy(d->batch.tok_in, tokens, sizeof(int32_t) * (size_t)S);
    d->batch.input.tokens = d->batch.tok_in;
    d->batch.input.B = 1;
    d->batch.input.S = S;
    vpd_decomp_target_forward(d);
    VPD_TRY(vpd_decomp_ci_forward(d));
    memcpy(g, d->act.g_lower, sizeof(real) * (size_t)d->C_sum * (size_t)S);
    return VPD_OK;
}

/* ---- the hook ----------------------------------------------------------------------------- */
typedef struct edge_list edge_list;
static vpd_status edge_push(edge_list *l, int32_t src, int32_t dst, double w);
static bool kv_to_o(const char *src, const char *dst);

typedef struct {
    vpd_hook base;      /* the forward of the whole prompt: a = V_cᵀx, masks g, Δ on */
    vpd_row_hook rows;  /* the row-restricted backward of one chunk */
    vpd_decomp *d;
    int S;              /* rows of the forward (the prompt) */
    real *a;            /* [ΣC·S] layer-major (layer k's [S, C_k] block at S·c_off) */
    const real *m;      /* [ΣC·S] the masks g, same layout */
    const real *mdelta; /* [S] ones */
    real *work;
    const int32_t *idx; /* [ΣC·S] node index, -1: not a node */
    /* the chunk: copy b's target node tn[b], its layer tl[b] (-1: the output), subcomponent tc[b] */
    int Bc;
    const int *tl, *tc;
    const int32_t *tn;
    real *dmb;          /* ∂/∂m of one layer's k/v rows: [Bc, R, C] */
    real *dmt, *Ug;     /* ∂/∂m at row t of the alive subcomponents [Bc, C_alive]; their U rows [C_alive, d_out] */
    int *cols;          /* [C] the alive subcomponents at row t */
    edge_list *el;
    vpd_status st;
} attr_hook;

static real *blk(const attr_hook *h, real *buf, int k) { return buf + (size_t)h->S * (size_t)h->d->layers[k].c_off; }

static void attr_forward(vpd_hook *hk, int l, const real *x, const int32_t *tok, real *y, int N) {
    attr_hook *h = (attr_hook *)hk;
    vpd_decomp *d = h->d;
    int k = d->model_to_decomp[l];
    if (k < 0) {
        const vpd_layer_info *li = &d->target->layers[l];
        if (li->embedding) embedding_forward(y, tok, li->W, N, li->d_in, li->d_out);
        else linear_forward(y, x, li->W, li->b, N, li->d_in, li->d_out);
        return;
    }
    VPD_ASSERT(N == h->S, "attrib hook: %d rows, expected %d", N, h->S);
    vpd_layer_state *ls = &d->layers[k];
    vpd_components_forward(y, blk(h, h->a, k), &ls->comp, x, tok, h->m + (size_t)h->S * ls->c_off, h->mdelta, NULL, N,
                           h->work);
}

/* The backward of layer l for the chunk's Bc copies at row t (rows t−R+1..t for the k/v layers
 * of a block with an o_proj target): ∂/∂m = (dy Uᵀ) ⊙ a, the edges into each copy's target
 * (w = ∂/∂m · m, sources at its position, or at every position <= t for k/v → o), then the
 * gradient on through Δ only (dx += dy_t Δ: it stops at the components) plus the seeds
 * a_c = V_cᵀx of the copies whose target is in this layer. */
static void attr_rows_backward(vpd_row_hook *rh, int l, int t, int R, const real *x, const int32_t *tok, const real *dy,
                               real *dx, int n) {
    (void)x;
    (void)tok;
    attr_hook *h = (attr_hook *)((char *)rh - offsetof(attr_hook, rows));
    vpd_decomp *d = h->d;
    const int k = d->model_to_decomp[l];
    const vpd_layer_info *li = &d->target->layers[l];
    const int din = li->d_in, dout = li->d_out;
    VPD_ASSERT(n == h->Bc, "attrib hook: %d copies, expected %d", n, h->Bc);
    const real *dyt = dy + (size_t)(R - 1) * dout; /* row t of copy b at dyt + b·R·dout */
    /* the copies with gradient here: targets after this layer (a chunk's targets are in
     * forward order, so they are one range [lo, hi)) */
    int lo = n, hi = 0;
    for (int b = 0; b < n; b++)
        if ((h->tl[b] < 0 ? d->target->n_layers : d->layers[h->tl[b]].model_layer) > l) {
            if (b < lo) lo = b;
            hi = b + 1;
        }
    if (k < 0) { /* not decomposed: the target layer passes the gradient on */
        if (dx && !li->embedding && lo < hi)
            vpd_gemm(false, false, hi - lo, din, dout, 1, dyt + (size_t)lo * R * dout, R * dout, li->W, din, 1,
                     dx + (size_t)lo * din, din);
        return;
    }
    const vpd_layer_state *ls = &d->layers[k];
    const vpd_components *c = &ls->comp;
    const int C = c->C, S = h->S;
    /* ∂/∂m = (dy Uᵀ) ⊙ a where an edge needs it. Row t: only the subcomponents alive there (the
     * sources: a few percent of C), U's rows gathered, dmt[b, j] = dy_t,b · U[cols[j]]. */
    const int32_t *ixt = h->idx + (size_t)S * ls->c_off + (size_t)t * C;
    int na = 0;
    for (int cc = 0; cc < C; cc++)
        if (ixt[cc] >= 0) {
            h->cols[na] = cc;
            memcpy(h->Ug + (size_t)na * dout, c->U + (size_t)cc * dout, sizeof(real) * (size_t)dout);
            na++;
        }
    if (lo < hi && na > 0)
        vpd_gemm(false, true, hi - lo, na, dout, 1, dyt + (size_t)lo * R * dout, R * dout, h->Ug, dout, 0,
                 h->dmt + (size_t)lo * na, na);
    /* the k/v rows s <= t of the copies whose target is this block's o_proj: dmb[R, C] per copy,
     * every subcomponent (the alive ones differ by row), one product per run of such copies */
    for (int b0 = lo; b0 < hi;) {
        const bool cross = h->tl[b0] >= 0 && kv_to_o(ls->name, d->layers[h->tl[b0]].name);
        int b1 = b0 + 1;
        while (b1 < hi && (h->tl[b1] >= 0 && kv_to_o(ls->name, d->layers[h->tl[b1]].name)) == cross) b1++;
        if (cross)
            vpd_gemm(false, true, (b1 - b0) * R, C, dout, 1, dy + (size_t)b0 * R * dout, dout, c->U, dout, 0,
                     h->dmb + (size_t)b0 * R * C, C);
        b0 = b1;
    }
    const real *at = h->a + (size_t)S * ls->c_off + (size_t)t * C, *mt = h->m + (size_t)S * ls->c_off + (size_t)t * C;
    for (int b = lo; b < hi && h->st == VPD_OK; b++) {
        const int kt = h->tl[b];
        const int mlt = kt < 0 ? d->target->n_layers : d->layers[kt].model_layer;
        if (ls->model_layer >= mlt) continue; /* no gradient of this copy here */
        const bool cross = kt >= 0 && kv_to_o(ls->name, d->layers[kt].name);
        VPD_ASSERT(!cross || R == t + 1, "attrib: k/v -> o target without the k/v rows (%d of %d)", R, t + 1);
        if (!cross) { /* sources at the target's position */
            const real *row = h->dmt + (size_t)b * na;
            for (int j = 0; j < na; j++) {
                const int cc = h->cols[j];
                const double w = (double)row[j] * (double)at[cc] * (double)mt[cc];
                if (w != 0 && (h->st = edge_push(h->el, ixt[cc], h->tn[b], w)) != VPD_OK) break;
            }
            continue;
        }
        for (int r = 0; r < R && h->st == VPD_OK; r++) { /* k/v -> o: sources at every position <= t */
            const size_t s = (size_t)(t - R + 1 + r);
            const int32_t *ix = h->idx + (size_t)S * ls->c_off + s * C;
            const real *ak = h->a + (size_t)S * ls->c_off + s * C, *mk = h->m + (size_t)S * ls->c_off + s * C;
            const real *row = h->dmb + ((size_t)b * R + r) * C;
            for (int cc = 0; cc < C; cc++) {
                if (ix[cc] < 0) continue;
                const double w = (double)row[cc] * (double)ak[cc] * (double)mk[cc];
                if (w != 0 && (h->st = edge_push(h->el, ix[cc], h->tn[b], w)) != VPD_OK) break;
            }
        }
    }
    if (!dx || ls->embedding) return;
    /* the Δ path (mask 1) from row t */
    if (lo < hi)
        vpd_gemm(false, false, hi - lo, din, dout, 1, dyt + (size_t)lo * R * dout, R * dout, c->delta, din, 1,
                 dx + (size_t)lo * din, din);
    for (int b = 0; b < n; b++) /* seeds: a_c = V_cᵀx of this layer's targets */
        if (h->tl[b] == k) {
            real *drow = dx + (size_t)b * din;
            for (int i = 0; i < din; i++) drow[i] += c->V[(size_t)i * C + h->tc[b]];
        }
}

/* ---- graph ------------------------------------------------------------------------------ */
static bool kv_to_o(const char *src, const char *dst) {
    const char *ps = strstr(src, "attn."), *pd = strstr(dst, "attn.");
    if (!ps || !pd || ps - src != pd - dst || strncmp(src, dst, (size_t)(ps - src))) return false;
    return (!strcmp(ps, "attn.k_proj") || !strcmp(ps, "attn.v_proj")) && !strcmp(pd, "attn.o_proj");
}

struct edge_list {
    vpd_attrib_edge *e;
    int64_t n, cap;
};

static vpd_status edge_push(edge_list *l, int32_t src, int32_t dst, double w) {
    if (l->n == l->cap) {
        int64_t cap = l->cap ? l->cap + l->cap / 2 : 65536;
        vpd_attrib_edge *e = realloc(l->e, sizeof *e * (size_t)cap);
        if (!e) return vpd_error(VPD_ERR_MEM, "attrib: out of memory for %lld edges", (long long)cap);
        l->e = e;
        l->cap = cap;
    }
    l->e[l->n++] = (vpd_attrib_edge){src, dst, w};
    return VPD_OK;
}

/* The in-link order of the cap: |w| descending, then src ascending (a total order, so the kept
 * set does not depend on the order the links were computed in) */
static bool link_before(const vpd_attrib_edge *a, const vpd_attrib_edge *b) {
    const double wa = fabs(a->w), wb = fabs(b->w);
    return wa > wb || (wa == wb && a->src < b->src);
}

/* e[0..n) (n > k) so that e[0..k) are the k first in link_before order (quickselect) */
static void select_top(vpd_attrib_edge *e, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const vpd_attrib_edge piv = e[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (link_before(&e[i], &piv)) i++;
            while (link_before(&piv, &e[j])) j--;
            if (i <= j) {
                const vpd_attrib_edge t = e[i];
                e[i++] = e[j];
                e[j--] = t;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

/* The in-link cap (vpd_attrib_compute's max_in_links K > 0) on one chunk's links l->e[from..n):
 * per target, the K links of largest |w| stay, the rest are dropped (their count and Σ|w| to
 * cap[0], cap[1]; Σ|w| of every computed link to cap[2]). grp: scratch for the links (grown on
 * demand, freed by the caller); slot [n_nodes]: -1 everywhere (restored on return). Bounds the
 * graph at K links per node: the k/v → o links would otherwise grow as S². */
static vpd_status cap_in_links(edge_list *l, int64_t from, int K, const int32_t *tn, int Bc, int32_t *slot,
                               double cap[3], edge_list *grp) {
    const int64_t n = l->n - from;
    vpd_attrib_edge *e = l->e + from;
    for (int64_t i = 0; i < n; i++) cap[2] += fabs(e[i].w);
    if (n <= K) return VPD_OK;
    if (grp->cap < n) {
        vpd_attrib_edge *g = realloc(grp->e, sizeof *g * (size_t)n);
        if (!g) return vpd_error(VPD_ERR_MEM, "attrib: out of memory for a chunk's %lld links", (long long)n);
        grp->e = g;
        grp->cap = n;
    }
    /* counting sort by target (the chunk's Bc targets, in tn order), then select in each group */
    int64_t start[VPD_ATTRIB_MAX_BATCH + 1] = {0};
    for (int b = 0; b < Bc; b++) slot[tn[b]] = b;
    for (int64_t i = 0; i < n; i++) start[slot[e[i].dst] + 1]++;
    for (int b = 0; b < Bc; b++) start[b + 1] += start[b];
    int64_t next[VPD_ATTRIB_MAX_BATCH];
    memcpy(next, start, sizeof(int64_t) * (size_t)Bc);
    for (int64_t i = 0; i < n; i++) grp->e[next[slot[e[i].dst]]++] = e[i];
    for (int b = 0; b < Bc; b++) slot[tn[b]] = -1;
    int64_t out = 0;
    for (int b = 0; b < Bc; b++) {
        vpd_attrib_edge *ge = grp->e + start[b];
        int64_t m = start[b + 1] - start[b];
        if (m > K) {
            select_top(ge, m, K);
            for (int64_t i = K; i < m; i++) cap[1] += fabs(ge[i].w);
            cap[0] += (double)(m - K);
            m = K;
        }
        memcpy(e + out, ge, sizeof *e * (size_t)m);
        out += m;
    }
    l->n = from + out;
    return VPD_OK;
}

static int edge_src_cmp(const void *pa, const void *pb) {
    const vpd_attrib_edge *a = pa, *b = pb;
    return (a->src > b->src) - (a->src < b->src);
}

/* One in-place bucket pass (American flag sort): e[0..n) grouped by (dst − base) >> shift into
 * nb buckets, in bucket order; start [nb + 1] gets the bucket bounds (next [nb] is work). */
static void flag_pass(vpd_attrib_edge *e, int64_t n, int32_t base, int shift, int nb, int64_t *start, int64_t *next) {
    memset(start, 0, sizeof(int64_t) * ((size_t)nb + 1));
    for (int64_t i = 0; i < n; i++) start[((e[i].dst - base) >> shift) + 1]++;
    for (int q = 0; q < nb; q++) start[q + 1] += start[q];
    memcpy(next, start, sizeof(int64_t) * (size_t)nb);
    for (int q = 0; q < nb; q++) /* fill bucket q: every misplaced edge goes to its own bucket's next slot */
        while (next[q] < start[q + 1]) {
            vpd_attrib_edge x = e[next[q]];
            int bx = (x.dst - base) >> shift;
            while (bx != q) {
                const vpd_attrib_edge y = e[next[bx]];
                e[next[bx]++] = x;
                x = y;
                bx = (x.dst - base) >> shift;
            }
            e[next[q]++] = x;
        }
}

/* e[0..n) into (dst, src) order in place, O(n) moves: two bucket passes by dst (≤ 1024 coarse
 * buckets, then each by its exact dst: few buckets live at a time, so the moves stay in cache),
 * then each node's incoming edges sorted by src. The same order as one qsort by (dst, src)
 * (the pairs are unique), without its n·log n comparisons through a function pointer. */
static vpd_status edges_sort(vpd_attrib_edge *e, int64_t n, int n_dst) {
    int shift = 0;
    while ((n_dst >> shift) >= 1024) shift++;
    const int nb1 = ((n_dst - 1) >> shift) + 1, nb2 = 1 << shift;
    int64_t *s1 = vpd_malloc(sizeof(int64_t) * ((size_t)nb1 + 1), "attrib edge buckets");
    int64_t *s2 = vpd_malloc(sizeof(int64_t) * ((size_t)nb2 + 1), "attrib edge buckets");
    int64_t *nx = vpd_malloc(sizeof(int64_t) * (size_t)(nb1 > nb2 ? nb1 : nb2), "attrib edge buckets");
    if (!s1 || !s2 || !nx) {
        vpd_free(s1);
        vpd_free(s2);
        vpd_free(nx);
        return vpd_error(VPD_ERR_MEM, "attrib: out of memory sorting %lld edges", (long long)n);
    }
    flag_pass(e, n, 0, shift, nb1, s1, nx);
    for (int q = 0; q < nb1; q++) {
        vpd_attrib_edge *eq = e + s1[q];
        flag_pass(eq, s1[q + 1] - s1[q], q << shift, 0, nb2, s2, nx);
        for (int r = 0; r < nb2; r++)
            if (s2[r + 1] - s2[r] > 1) qsort(eq + s2[r], (size_t)(s2[r + 1] - s2[r]), sizeof *e, edge_src_cmp);
    }
    vpd_free(s1);
    vpd_free(s2);
    vpd_free(nx);
    return VPD_OK;
}

/* decomposed layers in forward order */
static void forward_order(const vpd_decomp *d, int *ord) {
    for (int k = 0; k < d->L; k++) ord[k] = k;
    for (int i = 1; i < d->L; i++)
        for (int j = i; j > 0 && d->layers[ord[j]].model_layer < d->layers[ord[j - 1]].model_layer; j--) {
            int t = ord[j];
            ord[j] = ord[j - 1];
            ord[j - 1] = t;
        }
}

static bool kv_layer(const char *name) { return strstr(name, "attn.k_proj") || strstr(name, "attn.v_proj"); }

/* ∂/∂m scratch of one layer: [batch, R, C] with R = S for the k/v layers, else 1 */
static size_t dm_scratch_n(const vpd_decomp *d, int batch, int S) {
    size_t n = 1;
    for (int k = 0; k < d->L; k++) {
        size_t r = (size_t)d->layers[k].comp.C * (kv_layer(d->layers[k].name) ? (size_t)S : 1);
        if (r > n) n = r;
    }
    return n * (size_t)batch;
}

static size_t chunk_bytes(vpd_decomp *d, int b, int S) {
    /* the one-sequence forward's activations, the row-restricted backward's buffers for b
     * copies (the k/v rows, b·S·KV each, dominate) and the ∂/∂m scratch */
    return vpd_model_activation_bytes(d->target, 1, S) + vpd_model_position_bytes(d->target, b, S) +
           sizeof(real) * dm_scratch_n(d, b, S);
}

int vpd_attrib_batch_for_budget(vpd_decomp *d, int S, int batch, size_t budget_bytes, size_t *bytes) {
    int b = batch < 1 ? 1 : batch;
    while (b > 1 && chunk_bytes(d, b, S) > budget_bytes) b--;
    if (bytes) *bytes = chunk_bytes(d, b, S);
    return b;
}

vpd_status vpd_attrib_compute(vpd_decomp *d, const int32_t *tokens, int S, const real *g, int target_pos,
                              int target_token, int batch, int max_in_links, MPI_Comm comm, vpd_attrib_graph *gr) {
    memset(gr, 0, sizeof *gr);
    vpd_model *M = d->target;
    const int V = vpd_model_out_dim(M), L = d->L, CS = d->C_sum;
    if (M->cfg.kind != VPD_MODEL_LLAMA) return vpd_error(VPD_ERR_ARG, "attrib: needs a language-model target");
    if (d->grid.cp_size != 1)
        return vpd_error(VPD_ERR_ARG, "attrib: the decomposition must be held whole (component_parallel 1)");
    if (S < 1 || S > vpd_model_context(M))
        return vpd_error(VPD_ERR_ARG, "attrib: %d positions; the model takes 1 to %d (n_ctx %d; longer: --max-context)", S,
                         vpd_model_context(M), M->cfg.n_ctx);
    if (target_pos < 0 || target_pos >= S)
        return vpd_error(VPD_ERR_ARG, "attrib: position %d is outside the prompt [0, %d)", target_pos, S);
    if (target_token < 0 || target_token >= V)
        return vpd_error(VPD_ERR_ARG, "attrib: target token %d is outside the vocabulary [0, %d)", target_token, V);
    if (batch < 1) batch = 1;
    if (batch > VPD_ATTRIB_MAX_BATCH)
        return vpd_error(VPD_ERR_ARG, "attrib: batch %d (at most %d target nodes per backward)", batch, VPD_ATTRIB_MAX_BATCH);
    if (max_in_links < 0) return vpd_error(VPD_ERR_ARG, "attrib: max_in_links %d (>= 0; 0 keeps every link)", max_in_links);
    const int rank = vpd_comm_rank(comm), size = vpd_comm_size(comm);
    VPD_TRY(vpd_model_reserve(M, 1, S));
    VPD_TRY(vpd_model_reserve_position(M, batch));
    vpd_decomp_refresh(d); /* Δ = W − (VU)ᵀ of every layer */

    /* nodes: forward order of layers, then position, then c; the output last */
    int ord[256];
    if (L > 256) return vpd_error(VPD_ERR_ARG, "attrib: %d decomposed layers (at most 256)", L);
    forward_order(d, ord);
    int32_t *idx = vpd_malloc(sizeof(int32_t) * (size_t)CS * S, "attrib node index");
    if (!idx) return VPD_ERR_MEM;
    int64_t nn = 0;
    for (size_t i = 0; i < (size_t)CS * S; i++) idx[i] = -1;
    for (int oi = 0; oi < L; oi++) {
        const vpd_layer_state *ls = &d->layers[ord[oi]];
        const real *gk = g + (size_t)S * ls->c_off;
        for (int s = 0; s < S; s++)
            for (int c = 0; c < ls->C; c++)
                if (gk[(size_t)s * ls->C + c] > 0) idx[(size_t)S * ls->c_off + (size_t)s * ls->C + c] = (int32_t)nn++;
    }
    if (nn + 1 > INT32_MAX) {
        vpd_free(idx);
        return vpd_error(VPD_ERR_ARG, "attrib: %lld nodes (at most 2^31 - 1)", (long long)nn);
    }
    gr->n_nodes = (int)nn + 1;
    gr->S = S;
    gr->target_pos = target_pos;
    gr->target_token = target_token;
    gr->batch = batch;
    gr->nodes = calloc((size_t)gr->n_nodes, sizeof *gr->nodes);
    size_t work_n = 0;
    for (int k = 0; k < L; k++) {
        size_t w = vpd_components_work_size(&d->layers[k].comp, S);
        if (w > work_n) work_n = w;
    }
    real *a = vpd_malloc(sizeof(real) * (size_t)CS * S, "attrib a");
    real *ones = vpd_malloc(sizeof(real) * (size_t)S, "attrib delta mask");
    real *work = vpd_malloc(sizeof(real) * work_n, "attrib workspace");
    real *out = vpd_malloc(sizeof(real) * (size_t)S * (size_t)V, "attrib logits"); /* the whole prompt's, once */
    real *dout = vpd_calloc(sizeof(real) * (size_t)V, "attrib dlogits");          /* the output node's seed */
    real *dmb = vpd_malloc(sizeof(real) * dm_scratch_n(d, batch, S), "attrib dm");
    size_t cmax = 1, umax = 1;
    for (int k = 0; k < L; k++) {
        const vpd_components *c = &d->layers[k].comp;
        if ((size_t)c->C > cmax) cmax = (size_t)c->C;
        if ((size_t)c->C * (size_t)c->d_out > umax) umax = (size_t)c->C * (size_t)c->d_out;
    }
    real *dmt = vpd_malloc(sizeof(real) * cmax * (size_t)batch, "attrib dm");
    real *Ug = vpd_malloc(sizeof(real) * umax, "attrib U rows");
    int *cols = vpd_malloc(sizeof(int) * cmax, "attrib U rows");
    int *tl = vpd_malloc(sizeof(int) * (size_t)batch, "attrib targets"), *tc = vpd_malloc(sizeof(int) * (size_t)batch, "attrib targets");
    int32_t *tn = vpd_malloc(sizeof(int32_t) * (size_t)batch, "attrib targets");
    bool *kv_rows = vpd_calloc(sizeof(bool) * (size_t)M->n_layers, "attrib rows");
    /* the target nodes of each position: non-embedding subcomponents (an embedding has no
     * input, so no incoming edge) and the output at t* */
    int64_t *pos_start = vpd_calloc(sizeof(int64_t) * (size_t)(S + 1), "attrib targets");
    int32_t *targets = vpd_malloc(sizeof(int32_t) * (size_t)(nn + 1), "attrib targets");
    int32_t *slot = max_in_links > 0 ? vpd_malloc(sizeof(int32_t) * (size_t)(nn + 1), "attrib in-link cap") : NULL;
    edge_list el = {0}, grp = {0};
    double cap[3] = {0, 0, 0}; /* links dropped by the in-link cap, their Σ|w|, Σ|w| of every link */
    vpd_status st = VPD_OK;
    if (!gr->nodes || !a || !ones || !work || !out || !dout || !dmb || !dmt || !Ug || !cols || !tl || !tc || !tn || !kv_rows || !pos_start ||
        !targets || (max_in_links > 0 && !slot)) {
        st = vpd_error(VPD_ERR_MEM, "attrib: out of memory for %d positions (batch %d)", S, batch);
        goto done;
    }
    for (int s = 0; s < S; s++) ones[s] = 1;
    if (slot)
        for (int64_t i = 0; i <= nn; i++) slot[i] = -1;
    /* node table; targets grouped by position */
    {
        int64_t nt = 0;
        for (int s = 0; s < S; s++) {
            pos_start[s] = nt;
            for (int oi = 0; oi < L; oi++) {
                int k = ord[oi];
                const vpd_layer_state *ls = &d->layers[k];
                for (int c = 0; c < ls->C; c++) {
                    int32_t id = idx[(size_t)S * ls->c_off + (size_t)s * ls->C + c];
                    if (id < 0) continue;
                    gr->nodes[id] = (vpd_attrib_node){k, c, s, (double)g[(size_t)S * ls->c_off + (size_t)s * ls->C + c], 0, 0};
                    if (!ls->embedding) targets[nt++] = id;
                }
            }
        }
        pos_start[S] = nt;
        gr->nodes[nn] = (vpd_attrib_node){-1, target_token, target_pos, 1, 0, 0};
    }

    attr_hook h = {.base = {attr_forward, NULL}, .rows = {attr_rows_backward}, .d = d, .S = S, .a = a, .m = g,
                   .mdelta = ones, .work = work, .idx = idx, .tl = tl, .tc = tc, .tn = tn, .dmb = dmb, .dmt = dmt, .Ug = Ug, .cols = cols, .el = &el,
                   .st = VPD_OK};
    /* the whole prompt once (every rank alike): node activations, the target's logit; every
     * chunk's backward reads this forward (the model is causal: its rows <= t are those of
     * the prefix [0, t]) */
    {
        vpd_model_input in = {1, S, NULL, tokens};
        vpd_model_forward(M, &in, out, &h.base);
        for (int i = 0; i < (int)nn; i++) {
            const vpd_attrib_node *nd = &gr->nodes[i];
            int C = d->layers[nd->layer].C;
            gr->nodes[i].act = (double)blk(&h, a, nd->layer)[(size_t)nd->pos * C + nd->c];
        }
        const real *row = out + (size_t)target_pos * V;
        double mx = row[0];
        for (int v = 1; v < V; v++) mx = fmax(mx, row[v]);
        double z = 0;
        for (int v = 0; v < V; v++) z += exp((double)row[v] - mx);
        gr->logit = row[target_token];
        gr->prob = exp((double)row[target_token] - mx) / z;
        gr->nodes[nn].act = gr->logit;
    }

    /* work items, dealt round-robin: item 0 is the output node (one copy seeded through the
     * logit at t*); then (position t, chunk of <= batch subcomponent targets), positions from
     * the last down (the most keys, hence the largest k/v rows, come first). Each is one
     * row-restricted backward of Bc copies (vpd_model_backward_position). */
    int64_t item = 0, n_items = 1, done_items = 0;
    for (int t = 0; t < S; t++) n_items += (pos_start[t + 1] - pos_start[t] + batch - 1) / batch;
    const double t_start = vpd_wtime();
    double t_report = t_start;
    if (item % size == rank) {
        h.Bc = 1;
        tn[0] = (int32_t)nn;
        tl[0] = -1;
        tc[0] = target_token;
        dout[target_token] = 1;
        st = vpd_model_backward_position(M, target_pos, 1, dout, NULL, -1, &h.rows);
        if (st == VPD_OK) st = h.st;
        if (st == VPD_OK && max_in_links > 0) st = cap_in_links(&el, 0, max_in_links, tn, 1, slot, cap, &grp);
    }
    item++;
    for (int t = S - 1; t >= 0 && st == VPD_OK; t--) {
        for (int64_t c0 = pos_start[t]; c0 < pos_start[t + 1] && st == VPD_OK; c0 += batch, item++) {
            if (item % size != rank) continue;
            const int Bc = (int)((pos_start[t + 1] - c0) < batch ? (pos_start[t + 1] - c0) : batch);
            h.Bc = Bc;
            memset(kv_rows, 0, sizeof(bool) * (size_t)M->n_layers);
            int top = 0; /* the last layer with a target: no gradient after it */
            for (int b = 0; b < Bc; b++) {
                tn[b] = targets[c0 + b];
                tl[b] = gr->nodes[tn[b]].layer;
                tc[b] = gr->nodes[tn[b]].c;
                if (d->layers[tl[b]].model_layer > top) top = d->layers[tl[b]].model_layer;
                for (int k = 0; k < L; k++)
                    if (kv_to_o(d->layers[k].name, d->layers[tl[b]].name)) kv_rows[d->layers[k].model_layer] = true;
            }
            const int64_t e0 = el.n;
            st = vpd_model_backward_position(M, t, Bc, NULL, kv_rows, top, &h.rows);
            if (st == VPD_OK) st = h.st;
            if (st == VPD_OK && max_in_links > 0) st = cap_in_links(&el, e0, max_in_links, tn, Bc, slot, cap, &grp);
            done_items++;
            if (rank == 0 && vpd_wtime() - t_report > 30) { /* long prompts: progress of rank 0's share */
                t_report = vpd_wtime();
                vpd_info("attrib: %lld of ~%lld backward chunks on rank 0 (%d targets each, positions %d..%d left), "
                         "%lld edges, %.0f s", (long long)done_items, (long long)((n_items + size - 1) / size), batch, 0, t,
                         (long long)el.n, t_report - t_start);
            }
        }
    }
    gr->n_backward = item;
    const double t_chunks = vpd_wtime();
    st = vpd_all_agree(st, comm);
    if (st != VPD_OK) goto done;
    vpd_sum_double(cap, 3, comm);
    gr->max_in_links = max_in_links;
    gr->n_links_dropped = (int64_t)cap[0];
    gr->w_dropped = cap[1];
    gr->w_total = cap[2];

    /* gather on rank 0 in rank blocks padded to the largest, then one order (one rank: the
     * list itself, no second copy) */
    if (size == 1) {
        st = edges_sort(el.e, el.n, gr->n_nodes);
        gr->edges = el.e;
        gr->n_edges = el.n;
        el.e = NULL;
    } else {
        int64_t *counts = vpd_calloc(sizeof(int64_t) * (size_t)size, "attrib counts");
        double mxn = (double)el.n;
        vpd_max_double(&mxn, 1, comm);
        const int64_t maxn = (int64_t)mxn;
        /* the rank's own list, padded to the largest in place (no second copy) */
        if (st == VPD_OK && el.cap < (maxn > 0 ? maxn : 1)) {
            vpd_attrib_edge *e = realloc(el.e, sizeof *e * (size_t)(maxn > 0 ? maxn : 1));
            if (!e) st = vpd_error(VPD_ERR_MEM, "attrib: out of memory for %lld edges", (long long)maxn);
            else {
                el.e = e;
                el.cap = maxn > 0 ? maxn : 1;
            }
        }
        vpd_attrib_edge *send = el.e;
        vpd_attrib_edge *recv = rank == 0 ? vpd_malloc(sizeof(vpd_attrib_edge) * (size_t)(maxn > 0 ? maxn : 1) * size, "attrib edges") : NULL;
        if (st == VPD_OK && (!counts || !send || (rank == 0 && !recv))) st = vpd_error(VPD_ERR_MEM, "attrib: out of memory gathering %lld edges", (long long)maxn);
        st = vpd_all_agree(st, comm);
        if (st == VPD_OK) {
            int64_t mine = el.n;
            vpd_gather_bytes(&mine, sizeof mine, counts, 0, comm);
            if (el.cap > el.n) memset(send + el.n, 0, sizeof(vpd_attrib_edge) * (size_t)(el.cap - el.n));
            vpd_gather_bytes(send, sizeof(vpd_attrib_edge) * (size_t)(maxn > 0 ? maxn : 1), recv, 0, comm);
            if (rank == 0) {
                int64_t n = 0;
                for (int r = 0; r < size; r++)
                    for (int64_t i = 0; i < counts[r]; i++) recv[n++] = recv[(size_t)r * (size_t)(maxn > 0 ? maxn : 1) + (size_t)i];
                st = edges_sort(recv, n, gr->n_nodes);
                gr->edges = recv;
                gr->n_edges = n;
                recv = NULL;
            }
        }
        vpd_free(counts);
        vpd_free(recv);
    }
    if (rank == 0)
        vpd_info("attrib: %lld backward chunks in %.2f s on rank 0 (%lld edges there); gathering and sorting %lld edges "
                 "%.2f s", (long long)done_items, t_chunks - t_start, (long long)(size == 1 ? gr->n_edges : el.n),
                 (long long)gr->n_edges, vpd_wtime() - t_chunks);
done:
    free(el.e);
    free(grp.e);
    vpd_free(idx);
    vpd_free(a);
    vpd_free(ones);
    vpd_free(work);
    vpd_free(out);
    vpd_free(dout);
    vpd_free(dmb);
    vpd_free(dmt);
    vpd_free(Ug);
    vpd_free(cols);
    vpd_free(tl);
    vpd_free(tc);
    vpd_free(tn);
    vpd_free(kv_rows);
    vpd_free(pos_start);
    vpd_free(targets);
    vpd_free(slot);
    if (st != VPD_OK) vpd_attrib_graph_free(gr);
    return st;
}

void vpd_attrib_influence(vpd_attrib_graph *gr) {
    if (gr->n_nodes < 1) return;
    const int n = gr->n_nodes;
    double *rowsum = calloc((size_t)n, sizeof(double));
    if (!rowsum) return;
    for (int i = 0; i < n; i++) gr->nodes[i].influence = 0;
    for (int64_t e = 0; e < gr->n_edges; e++) rowsum[gr->edges[e].dst] += fabs(gr->edges[e].w);
    /* edges sorted by dst and every edge goes to a later node: a node's influence is final
     * when the sweep (descending dst) reaches its incoming edges */
    for (int64_t e = gr->n_edges - 1; e >= 0; e--) {
        const vpd_attrib_edge *E = &gr->edges[e];
        if (rowsum[E->dst] <= 0) continue;
        double up = (E->dst == n - 1 ? 1.0 : gr->nodes[E->dst].influence);
        gr->nodes[E->src].influence += up * fabs(E->w) / rowsum[E->dst];
    }
    gr->nodes[n - 1].influence = 1;
    free(rowsum);
}

/* The key of item i: a node's influence (key array), or an edge's influence computed from the
 * graph (no n_edges-sized key array: a long prompt's graph has 10⁸ edges). */
typedef struct {
    const double *key;            /* nodes: key[i] */
    const vpd_attrib_graph *gr;   /* edges: |w| / rowsum[dst] · influence(dst), -1 when not eligible */
    const double *rowsum;
    const bool *keep_node;
} sel_key;
static sel_key g_key;

static double key_of(int64_t i) {
    if (g_key.key) return g_key.key[i];
    const vpd_attrib_edge *E = &g_key.gr->edges[i];
    const int n = g_key.gr->n_nodes;
    const double rs = g_key.rowsum[E->dst];
    return rs > 0 ? fabs(E->w) / rs * (E->dst == n - 1 ? 1.0 : g_key.gr->nodes[E->dst].influence) : 0;
}
static bool eligible_of(int64_t i) {
    if (g_key.key) return true;
    const vpd_attrib_edge *E = &g_key.gr->edges[i];
    return g_key.keep_node[E->src] && g_key.keep_node[E->dst];
}

static int key_desc(const void *pa, const void *pb) {
    int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
    const double ka = key_of(a), kb = key_of(b);
    if (ka != kb) return ka > kb ? -1 : 1;
    return (a > b) - (a < b);
}

/* the eligible indices of [0, n) (g_key) sorted by key descending (ties by index); keep the
 * prefix whose key sum reaches frac of the total */
static vpd_status keep_top_fraction(int64_t n, double frac, bool *keep) {
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) m += eligible_of(i);
    int64_t *ord = malloc(sizeof(int64_t) * (size_t)(m > 0 ? m : 1));
    if (!ord) return vpd_error(VPD_ERR_MEM, "attrib: out of memory selecting %lld items", (long long)m);
    m = 0;
    double total = 0;
    for (int64_t i = 0; i < n; i++)
        if (eligible_of(i)) {
            ord[m++] = i;
            total += key_of(i);
        }
    qsort(ord, (size_t)m, sizeof *ord, key_desc);
    double cum = 0;
    for (int64_t j = 0; j < m; j++) {
        if (frac < 1 && total > 0 && cum >= frac * total) break;
        keep[ord[j]] = true;
        cum += key_of(ord[j]);
    }
    free(ord);
    return VPD_OK;
}

vpd_status vpd_attrib_select(const vpd_attrib_graph *gr, double node_threshold, double edge_threshold, bool *keep_node,
                             bool *keep_edge) {
    const int n = gr->n_nodes;
    memset(keep_node, 0, (size_t)n);
    memset(keep_edge, 0, (size_t)(gr->n_edges > 0 ? gr->n_edges : 0));
    if (n < 1) return VPD_OK;
    double *key = malloc(sizeof(double) * (size_t)n);
    double *rowsum = calloc((size_t)n, sizeof(double));
    vpd_status st = VPD_OK;
    if (!key || !rowsum) st = vpd_error(VPD_ERR_MEM, "attrib: out of memory selecting the graph");
    if (st == VPD_OK) {
        for (int i = 0; i < n; i++) key[i] = gr->nodes[i].influence;
        key[n - 1] = 0;
        g_key = (sel_key){key, NULL, NULL, NULL};
        st = keep_top_fraction(n - 1, node_threshold, keep_node);
        keep_node[n - 1] = true;
    }
    if (st == VPD_OK) {
        for (int64_t e = 0; e < gr->n_edges; e++) rowsum[gr->edges[e].dst] += fabs(gr->edges[e].w);
        g_key = (sel_key){NULL, gr, rowsum, keep_node};
        st = keep_top_fraction(gr->n_edges, edge_threshold, keep_edge);
    }
    g_key = (sel_key){0};
    free(key);
    free(rowsum);
    return st;
}

void vpd_attrib_graph_free(vpd_attrib_graph *gr) {
    free(gr->nodes);
    vpd_free(gr->edges);
    memset(gr, 0, sizeof *gr);
}

/* ---- files ------------------------------------------------------------------------------ */

/* forward rank of each decomposed layer (the "layer" of circuit-tracer's nodes) */
static void layer_rank(const vpd_decomp *d, int *rk) {
    int ord[256];
    forward_order(d, ord);
    for (int i = 0; i < d->L && i < 256; i++) rk[ord[i]] = i;
}

static void node_id(char *buf, size_t n, const vpd_attrib_graph *gr, const int *rk, int i, int L) {
    const vpd_attrib_node *nd = &gr->nodes[i];
    snprintf(buf, n, "%d_%d_%d", nd->layer < 0 ? L : rk[nd->layer], nd->c, nd->pos);
}

vpd_status vpd_attrib_write_json(const vpd_attrib_graph *gr, const vpd_decomp *d, const vpd_attrib_meta *meta,
                                 const char *path) {
    bool *kn = malloc((size_t)(gr->n_nodes > 0 ? gr->n_nodes : 1)), *ke = malloc((size_t)(gr->n_edges > 0 ? gr->n_edges : 1));
    vpd_status st = kn && ke ? vpd_attrib_select(gr, meta->node_threshold, meta->edge_threshold, kn, ke)
                             : vpd_error(VPD_ERR_MEM, "attrib: out of memory writing %s", path);
    FILE *f = st == VPD_OK ? fopen(path, "w") : NULL;
    if (!f) {
        free(kn);
        free(ke);
        return st != VPD_OK ? st : vpd_error(VPD_ERR_IO, "cannot write %s", path);
    }
    int kept_nodes = 0;
    int64_t kept_edges = 0;
    for (int i = 0; i < gr->n_nodes; i++) kept_nodes += kn[i];
    for (int64_t e = 0; e < gr->n_edges; e++) kept_edges += ke[e];
    int rk[256];
    layer_rank(d, rk);
    const int L = d->L;
    fprintf(f, "{\n\"metadata\": {\"slug\": \"vpd-attrib\", \"scan\": \"vpd\", \"prompt\": ");
    vpd_json_str(f, meta->prompt);
    fprintf(f, ",\n \"prompt_tokens\": [");
    for (int s = 0; s < gr->S; s++) {
        if (s) fputs(", ", f);
        vpd_json_str(f, meta->tok_str ? meta->tok_str[s] : "");
    }
    fprintf(f, "],\n \"node_threshold\": %.9g, \"edge_threshold\": %.9g, \"ci_threshold\": 0,\n", meta->node_threshold,
            meta->edge_threshold);
    fprintf(f, " \"info\": {\"generator\": \"vpd attrib\", \"run_dir\": ");
    vpd_json_str(f, meta->run_dir);
    fprintf(f, ", \"target_token\": %d, \"target_str\": ", gr->target_token);
    vpd_json_str(f, meta->target_str);
    fprintf(f, ", \"target_position\": %d, \"target_logit\": %.9g, \"p_target_ci_masks_delta\": %.9g,\n", gr->target_pos,
            gr->logit, gr->prob);
    fprintf(f, "  \"n_nodes_full\": %d, \"n_links_full\": %lld, \"n_nodes\": %d, \"n_links\": %lld, "
               "\"backward_chunks\": %lld, \"batch\": %d, \"prune_steps\": %d, \"seconds\": %.3f, \"ranks\": %d,\n",
            gr->n_nodes, (long long)gr->n_edges, kept_nodes, (long long)kept_edges, (long long)gr->n_backward, gr->batch,
            meta->prune_steps, meta->seconds, meta->n_ranks);
    fprintf(f, "  \"max_in_links\": %d, \"n_links_dropped_by_cap\": %lld, \"weight_dropped_by_cap\": %.9g, "
               "\"weight_total\": %.9g,\n",
            gr->max_in_links, (long long)gr->n_links_dropped, gr->w_dropped, gr->w_total);
    if (meta->prune_steps > 0)
        fprintf(f, "  \"p_target_pruned\": {\"ci\": %.9g, \"stochastic\": %.9g, \"adversarial\": %.9g}, "
                   "\"p_target_unpruned\": {\"ci\": %.9g, \"stochastic\": %.9g, \"adversarial\": %.9g}, \"n_alive\": %d,\n",
                meta->p_pruned[0], meta->p_pruned[1], meta->p_pruned[2], meta->p_unpruned[0], meta->p_unpruned[1],
                meta->p_unpruned[2], meta->n_alive);
    fprintf(f, "  \"edge\": \"w = d a_c / d(g a)_c' * (g a)_c', a = V_c^T x; forward: masks g, delta term mask 1 (no node); "
               "gradient stopped at every other subcomponent; within a position except k/v -> o\",\n");
    fprintf(f, "  \"layers\": [");
    for (int i = 0; i < L; i++) {
        int k = 0;
        for (int j = 0; j < L; j++)
            if (rk[j] == i) k = j;
        fprintf(f, "%s", i ? ", " : "");
        vpd_json_str(f, d->layers[k].name);
    }
    fprintf(f, "]}},\n\"qParams\": {\"pinnedIds\": [], \"supernodes\": [], \"linkType\": \"both\", \"clickedId\": \"\", "
               "\"sg_pos\": \"\"},\n\"nodes\": [\n");
    char id[64];
    int written = 0;
    for (int i = 0; i < gr->n_nodes; i++) {
        const vpd_attrib_node *nd = &gr->nodes[i];
        if (!kn[i]) continue;
        node_id(id, sizeof id, gr, rk, i, L);
        bool out = nd->layer < 0;
        fprintf(f, " {\"node_id\": \"%s\", \"jsNodeId\": \"%s\", \"feature\": %d, \"layer\": \"%d\", \"ctx_idx\": %d, "
                   "\"reverse_ctx_idx\": %d, \"feature_type\": \"%s\", \"layer_name\": ",
                id, id, nd->c, out ? L : rk[nd->layer], nd->pos, gr->S - 1 - nd->pos, out ? "logit" : "vpd subcomponent");
        vpd_json_str(f, out ? "logits" : d->layers[nd->layer].name);
        fprintf(f, ", \"g\": %.9g, \"activation\": %.9g, \"influence\": %.9g, \"is_target_logit\": %s, \"token_prob\": %.9g, "
                   "\"run_idx\": 0, \"clerp\": ",
                nd->g, nd->act, nd->influence, out ? "true" : "false", out ? gr->prob : 0.0);
        if (out) {
            char lab[256];
            snprintf(lab, sizeof lab, "output \"%s\" (p=%.4f)", meta->target_str ? meta->target_str : "", gr->prob);
            vpd_json_str(f, lab);
        } else {
            vpd_json_str(f, meta->labels ? meta->labels[d->layers[nd->layer].c_off + nd->c] : "");
        }
        fprintf(f, "}%s\n", ++written < kept_nodes ? "," : "");
    }
    fprintf(f, "],\n\"links\": [\n");
    char id2[64];
    int64_t we = 0;
    for (int64_t e = 0; e < gr->n_edges; e++) {
        if (!ke[e]) continue;
        node_id(id, sizeof id, gr, rk, gr->edges[e].src, L);
        node_id(id2, sizeof id2, gr, rk, gr->edges[e].dst, L);
        fprintf(f, " {\"source\": \"%s\", \"target\": \"%s\", \"weight\": %.9g}%s\n", id, id2, gr->edges[e].w,
                ++we < kept_edges ? "," : "");
    }
    fprintf(f, "]\n}\n");
    free(kn);
    free(ke);
    if (fclose(f) != 0) return vpd_error(VPD_ERR_IO, "error writing %s", path);
    return VPD_OK;
}

static void dot_str(FILE *f, const char *s) {
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p < 0x20) fputc(' ', f);
        else fputc(*p, f);
    }
}

static int abs_w_desc(const void *pa, const void *pb) {
    double a = fabs((*(const vpd_attrib_edge *const *)pa)->w), b = fabs((*(const vpd_attrib_edge *const *)pb)->w);
    if (a != b) return a > b ? -1 : 1;
    const vpd_attrib_edge *x = *(const vpd_attrib_edge *const *)pa, *y = *(const vpd_attrib_edge *const *)pb;
    if (x->dst != y->dst) return x->dst < y->dst ? -1 : 1;
    return (x->src > y->src) - (x->src < y->src);
}

/* the k (<= top) edges of largest |weight| into sel, in abs_w_desc order: a heap of k entries
 * over one pass of the edges (no n_edges-sized copy: the graph of a long prompt has 10⁸ edges) */
static int64_t top_by_abs(const vpd_attrib_graph *gr, int top, const vpd_attrib_edge **sel) {
    int64_t k = 0;
    if (top <= 0) return 0;
    for (int64_t e = 0; e < gr->n_edges; e++) {
        const vpd_attrib_edge *E = &gr->edges[e];
        int64_t i;
        if (k < top) { /* sift up: the root is the worst kept (last in abs_w_desc order) */
            i = k++;
            while (i > 0 && abs_w_desc(&E, &sel[(i - 1) / 2]) > 0) {
                sel[i] = sel[(i - 1) / 2];
                i = (i - 1) / 2;
            }
            sel[i] = E;
            continue;
        }
        if (abs_w_desc(&E, &sel[0]) >= 0) continue; /* not better than the worst kept */
        i = 0; /* replace the root, sift down */
        for (;;) {
            int64_t c = 2 * i + 1;
            if (c >= k) break;
            if (c + 1 < k && abs_w_desc(&sel[c + 1], &sel[c]) > 0) c++;
            if (abs_w_desc(&sel[c], &E) <= 0) break;
            sel[i] = sel[c];
            i = c;
        }
        sel[i] = E;
    }
    qsort(sel, (size_t)k, sizeof *sel, abs_w_desc);
    return k;
}

vpd_status vpd_attrib_write_dot(const vpd_attrib_graph *gr, const vpd_decomp *d, const vpd_attrib_meta *meta,
                                int top_edges, const char *path) {
    const vpd_attrib_edge **sel = malloc(sizeof *sel * (size_t)(top_edges > 0 ? top_edges : 1));
    bool *used = calloc((size_t)gr->n_nodes, 1);
    if (!sel || !used) {
        free(sel);
        free(used);
        return vpd_error(VPD_ERR_MEM, "attrib: out of memory for the dot file");
    }
    const int64_t ne = top_by_abs(gr, top_edges, sel);
    double wmax = ne > 0 ? fabs(sel[0]->w) : 1;
    for (int64_t e = 0; e < ne; e++) used[sel[e]->src] = used[sel[e]->dst] = true;
    used[gr->n_nodes - 1] = true;
    FILE *f = fopen(path, "w");
    if (!f) {
        free(sel);
        free(used);
        return vpd_error(VPD_ERR_IO, "cannot write %s", path);
    }
    int rk[256];
    layer_rank(d, rk);
    fprintf(f, "digraph attrib {\n  rankdir=BT; node [shape=box, fontsize=10, style=filled, fillcolor=\"#f4f4f4\"];\n");
    fprintf(f, "  labelloc=t; label=\"vpd attrib: ");
    dot_str(f, meta->prompt);
    fprintf(f, " -> '");
    dot_str(f, meta->target_str);
    fprintf(f, "' (p=%.4f, CI masks + delta); %d nodes, %lld links; top %lld by |weight|\";\n", gr->prob, gr->n_nodes,
            (long long)gr->n_edges, (long long)ne);
    char id[64];
    for (int li = -1; li < d->L; li++) { /* one rank per decomposed layer, the output on top */
        fprintf(f, "  { rank=same;");
        for (int i = 0; i < gr->n_nodes; i++) {
            const vpd_attrib_node *nd = &gr->nodes[i];
            if (!used[i] || (li < 0 ? nd->layer >= 0 : (nd->layer < 0 || rk[nd->layer] != li))) continue;
            node_id(id, sizeof id, gr, rk, i, d->L);
            fprintf(f, " \"%s\" [label=\"", id);
            if (nd->layer < 0) {
                fprintf(f, "logit '");
                dot_str(f, meta->target_str);
                fprintf(f, "' @%d\\np=%.3f\", fillcolor=\"#ffe08a\"];", nd->pos, gr->prob);
                continue;
            }
            dot_str(f, d->layers[nd->layer].name);
            fprintf(f, ":%d @%d '", nd->c, nd->pos);
            dot_str(f, meta->tok_str ? meta->tok_str[nd->pos] : "");
            fprintf(f, "'\\ng=%.2f a=%.3g infl=%.3f", nd->g, nd->act, nd->influence);
            const char *lab = meta->labels ? meta->labels[d->layers[nd->layer].c_off + nd->c] : NULL;
            if (lab && lab[0]) {
                fprintf(f, "\\n");
                dot_str(f, lab);
            }
            fprintf(f, "\"];");
        }
        fprintf(f, " }\n");
    }
    char id2[64];
    for (int64_t e = 0; e < ne; e++) {
        node_id(id, sizeof id, gr, rk, sel[e]->src, d->L);
        node_id(id2, sizeof id2, gr, rk, sel[e]->dst, d->L);
        double r = fabs(sel[e]->w) / (wmax > 0 ? wmax : 1);
        fprintf(f, "  \"%s\" -> \"%s\" [color=\"%s\", penwidth=%.2f, tooltip=\"%.4g\"];\n", id, id2,
                sel[e]->w >= 0 ? "#1f5fbf" : "#c0392b", 0.5 + 4.5 * r, sel[e]->w);
    }
    fprintf(f, "}\n");
    free(sel);
    free(used);
    if (fclose(f) != 0) return vpd_error(VPD_ERR_IO, "error writing %s", path);
    return VPD_OK;
}

vpd_status vpd_attrib_write_svg(const vpd_attrib_graph *gr, const vpd_decomp *d, const vpd_attrib_meta *meta,
                                int top_edges, const char *path) {
    const int n = gr->n_nodes;
    const vpd_attrib_edge **sel = malloc(sizeof *sel * (size_t)(top_edges > 0 ? top_edges : 1));
    bool *used = calloc((size_t)n, 1);
    double *x = calloc((size_t)n, sizeof(double)), *y = calloc((size_t)n, sizeof(double));
    int *cell = calloc((size_t)(d->L + 1) * (size_t)gr->S, sizeof(int));
    FILE *f = NULL;
    vpd_status st = VPD_OK;
    if (!sel || !used || !x || !y || !cell) {
        st = vpd_error(VPD_ERR_MEM, "attrib: out of memory for the svg");
        goto out;
    }
    const int64_t ne = top_by_abs(gr, top_edges, sel);
    double wmax = ne > 0 ? fabs(sel[0]->w) : 1;
    for (int64_t e = 0; e < ne; e++) used[sel[e]->src] = used[sel[e]->dst] = true;
    used[n - 1] = true;
    int rk[256];
    layer_rank(d, rk);
    const double colw = 150, rowh = 110, x0 = 150, sp = 16;
    const int L = d->L;
    /* rows: layer rank L-1 .. 0 from the top, the output above them */
    for (int i = 0; i < n; i++) {
        if (!used[i]) continue;
        const vpd_attrib_node *nd = &gr->nodes[i];
        int r = nd->layer < 0 ? L : rk[nd->layer];
        int k = cell[(size_t)r * gr->S + nd->pos]++;
        x[i] = x0 + colw * nd->pos + 10 + sp * (k % 8);
        y[i] = 60 + rowh * (L - r) + 14 * (k / 8) + 20;
    }
    f = fopen(path, "w");
    if (!f) {
        st = vpd_error(VPD_ERR_IO, "cannot write %s", path);
        goto out;
    }
    double W = x0 + colw * gr->S + 20, H = 60 + rowh * (L + 1) + 60;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" "
               "font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H);
    fprintf(f, "<text x=\"10\" y=\"20\" font-size=\"14\">vpd attrib: ");
    for (const char *p = meta->prompt ? meta->prompt : ""; *p; p++) {
        if (*p == '<') fputs("&lt;", f);
        else if (*p == '&') fputs("&amp;", f);
        else if (*p == '>') fputs("&gt;", f);
        else fputc(*p, f);
    }
    fprintf(f, " -&gt; target #%d at position %d, p=%.4f (CI masks + delta); %d nodes, %lld links; top %lld by |weight| "
               "(blue +, red -)</text>\n", gr->target_token, gr->target_pos, gr->prob, n, (long long)gr->n_edges, (long long)ne);
    for (int r = 0; r <= L; r++) {
        const char *name = "output";
        for (int k = 0; k < L; k++)
            if (r < L && rk[k] == r) name = d->layers[k].name;
        fprintf(f, "<text x=\"6\" y=\"%.0f\" fill=\"#555\">%s</text>\n", 60 + rowh * (L - r) + 24, name);
    }
    for (int s = 0; s < gr->S; s++) {
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" fill=\"#333\">%d ", x0 + colw * s + 10, H - 20, s);
        for (const char *p = meta->tok_str ? meta->tok_str[s] : ""; *p; p++) {
            if (*p == '<') fputs("&lt;", f);
            else if (*p == '&') fputs("&amp;", f);
            else if (*p == '>') fputs("&gt;", f);
            else fputc(*p, f);
        }
        fprintf(f, "</text>\n");
    }
    for (int64_t e = ne - 1; e >= 0; e--) {
        double r = fabs(sel[e]->w) / (wmax > 0 ? wmax : 1);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-opacity=\"0.6\" "
                   "stroke-width=\"%.2f\"><title>%.4g</title></line>\n",
                x[sel[e]->src], y[sel[e]->src], x[sel[e]->dst], y[sel[e]->dst], sel[e]->w >= 0 ? "#1f5fbf" : "#c0392b",
                0.5 + 4.5 * r, sel[e]->w);
    }
    for (int i = 0; i < n; i++) {
        if (!used[i]) continue;
        const vpd_attrib_node *nd = &gr->nodes[i];
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\" stroke=\"#333\"><title>", x[i], y[i],
                nd->layer < 0 ? "#f1c40f" : "#ddd");
        if (nd->layer < 0) fprintf(f, "logit #%d @%d p=%.4f", nd->c, nd->pos, gr->prob);
        else {
            fprintf(f, "%s:%d @%d g=%.3f a=%.4g influence=%.4f", d->layers[nd->layer].name, nd->c, nd->pos, nd->g, nd->act,
                    nd->influence);
            const char *lab = meta->labels ? meta->labels[d->layers[nd->layer].c_off + nd->c] : NULL;
            if (lab)
                for (const char *p = lab; *p; p++) {
                    if (*p == '<') fputs(" &lt;", f);
                    else if (*p == '&') fputs("&amp;", f);
                    else if (*p == '>') fputs("&gt;", f);
                    else fputc(*p, f);
                }
        }
        fprintf(f, "</title></circle>\n");
        if (nd->layer >= 0) fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"8\" fill=\"#444\">%d</text>\n", x[i] - 4, y[i] - 7, nd->c);
    }
    fprintf(f, "</svg>\n");
    if (fclose(f) != 0) st = vpd_error(VPD_ERR_IO, "error writing %s", path);
out:
    free(sel);
    free(used);
    free(x);
    free(y);
    free(cell);
    return st;
}
