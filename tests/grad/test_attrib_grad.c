/* Finite-difference check (double precision) of the attribution graph's edges (vpd attrib,
 * include/vpd/attrib.h) on tiny LlamaSimpleMLP decompositions (2 blocks, grouped-query
 * attention): every edge c' -> c must equal the central difference of a_c = V_cᵀx_l (or of
 * the target logit) with respect to a_c', times a_c', where the forward is the masked model
 * (masks g, Δ term on) with every OTHER subcomponent's activation frozen at its value in the
 * unperturbed forward (the stop-gradient semantics: only direct effects, through Δ, norms,
 * attention and GELU). Pairs the graph leaves out by definition (different positions except
 * k/v -> o of one attention layer) must have no edge; pairs it keeps must match their FD
 * (0 included). The graph is also checked to be the same for two batch sizes (targets per
 * row-restricted backward) that split the positions into different chunks. Prompts of 5 to 8
 * tokens with the output node at a middle position, at position 0 and at the last position.
 * Also: vpd_model_backward_position refuses what it cannot do (other kinds, a forward of
 * several sequences, more copies than reserved). */
#include <mpi.h>
#include <string.h>

#include "testutil.h"
#include "vpd/attrib.h"
#include "vpd/decomp.h"

typedef struct {
    vpd_hook base;
    vpd_decomp *d;
    int S;
    const real *g;   /* [ΣC·S] masks */
    real *a_live;    /* [ΣC·S] V_cᵀx of this forward (the targets' a_c) */
    const real *a0;  /* [ΣC·S] frozen activations, or NULL: use the live ones */
    int src;         /* flat index of the perturbed activation, -1: none */
    double eps;
} fd_hook;

static void fd_forward(vpd_hook *hk, int l, const real *x, const int32_t *tok, real *y, int N) {
    fd_hook *h = (fd_hook *)hk;
    vpd_decomp *d = h->d;
    int k = d->model_to_decomp[l];
    const vpd_layer_info *li = &d->target->layers[l];
    if (k < 0) { /* not decomposed: the target layer */
        for (int n = 0; n < N; n++)
            for (int o = 0; o < li->d_out; o++) {
                double s = li->b ? li->b[o] : 0;
                if (li->embedding) s = li->W[(size_t)tok[n] * li->d_out + o];
                else
                    for (int i = 0; i < li->d_in; i++) s += (double)li->W[(size_t)o * li->d_in + i] * x[(size_t)n * li->d_in + i];
                y[(size_t)n * li->d_out + o] = (real)s;
            }
        return;
    }
    const vpd_components *c = &d->layers[k].comp;
    const size_t off = (size_t)h->S * d->layers[k].c_off;
    for (int n = 0; n < N; n++) {
        for (int j = 0; j < c->C; j++) {
            double a = 0;
            if (c->embedding) a = c->V[(size_t)tok[n] * c->C + j];
            else
                for (int i = 0; i < c->d_in; i++) a += (double)x[(size_t)n * c->d_in + i] * c->V[(size_t)i * c->C + j];
            h->a_live[off + (size_t)n * c->C + j] = (real)a;
        }
        for (int o = 0; o < c->d_out; o++) {
            double s = c->b ? c->b[o] : 0;
            for (int j = 0; j < c->C; j++) {
                size_t fi = off + (size_t)n * c->C + j;
                double a = h->a0 ? h->a0[fi] : h->a_live[fi];
                if ((int)fi == h->src) a += h->eps;
                s += a * h->g[fi] * c->U[(size_t)j * c->d_out + o];
            }
            if (c->embedding) s += c->delta[(size_t)tok[n] * c->d_out + o];
            else
                for (int i = 0; i < c->d_in; i++) s += (double)c->delta[(size_t)o * c->d_in + i] * x[(size_t)n * c->d_in + i];
            y[(size_t)n * c->d_out + o] = (real)s;
        }
    }
}

static bool kv_o_pair(const char *src, const char *dst) {
    const char *ps = strstr(src, "attn."), *pd = strstr(dst, "attn.");
    if (!ps || !pd || ps - src != pd - dst || strncmp(src, dst, (size_t)(ps - src))) return false;
    return (!strcmp(ps, "attn.k_proj") || !strcmp(ps, "attn.v_proj")) && !strcmp(pd, "attn.o_proj");
}

static void check_model(const char *what, const char *pattern, uint64_t seed, const int32_t *tokens, int S, int tpos,
                        int batch_a, int batch_b) {
    vpd_model_config lc = {0};
    lc.kind = VPD_MODEL_LLAMA;
    lc.vocab_size = 13; lc.n_ctx = 8; lc.n_embd = 8; lc.n_head = 2; lc.n_key_value_heads = 1;
    lc.n_intermediate = 12; lc.n_layers = 2; lc.rms_eps = 1e-6; lc.rope_theta = 10000;
    vpd_model m;
    CHECK(vpd_model_create(&m, &lc) == VPD_OK, "llama create: %s", vpd_last_error());
    vpd_model_init_params(&m, seed);
    vpd_scale(m.n_params, 10, m.params); /* weights large enough for nonlinear effects */
    vpd_model_sync(&m);
    static vpd_decomp_config cfg;
    vpd_decomp_config_defaults(&cfg);
    cfg.seed = seed;
    cfg.ci_type = VPD_CI_SHARED_MLP;
    cfg.ci_hidden[0] = 3;
    cfg.ci_n_hidden = 1;
    cfg.n_module_info = 1;
    snprintf(cfg.module_info[0].pattern, sizeof cfg.module_info[0].pattern, "%s", pattern);
    cfg.module_info[0].C = 3;
    cfg.output_loss = VPD_OUT_KL;
    cfg.batch_size = 1;
    cfg.n_losses = 0;
    const int T = 7;
    vpd_decomp *d = NULL;
    CHECK(vpd_decomp_create_local(&d, &cfg, &m, 1, S) == VPD_OK, "decomp: %s", vpd_last_error());
    if (!d) return;
    vpd_decomp_refresh(d);
    const int CS = d->C_sum, V = lc.vocab_size;
    real *g = calloc((size_t)CS * S, sizeof(real));
    vpd_rng rng = vpd_rng_make(seed, 99, 0, 0);
    for (size_t i = 0; i < (size_t)CS * S; i++) {
        double u = vpd_rng_uniform(&rng, i);
        g[i] = u < 0.2 ? 0 : (real)(0.3 + 0.7 * vpd_rng_uniform(&rng, i + 100000));
    }
    vpd_attrib_graph gr, gr1;
    CHECK(vpd_attrib_compute(d, tokens, S, g, tpos, T, batch_a, 0, MPI_COMM_SELF, &gr) == VPD_OK, "attrib: %s", vpd_last_error());
    CHECK(vpd_attrib_compute(d, tokens, S, g, tpos, T, batch_b, 0, MPI_COMM_SELF, &gr1) == VPD_OK, "attrib: %s", vpd_last_error());
    CHECK(gr.n_edges == gr1.n_edges && gr.n_nodes == gr1.n_nodes, "%s: batch %d vs %d: %lld vs %lld edges", what, batch_a,
          batch_b, (long long)gr.n_edges, (long long)gr1.n_edges);
    double wmax = 1e-30;
    for (int64_t e = 0; e < gr.n_edges; e++) wmax = fmax(wmax, fabs(gr.edges[e].w));
    double bdiff = 0;
    for (int64_t e = 0; e < gr.n_edges && gr.n_edges == gr1.n_edges; e++) {
        CHECK(gr.edges[e].src == gr1.edges[e].src && gr.edges[e].dst == gr1.edges[e].dst, "%s: edge %lld differs", what,
              (long long)e);
        bdiff = fmax(bdiff, fabs(gr.edges[e].w - gr1.edges[e].w));
    }
    CHECK(bdiff <= 1e-12 * wmax, "%s: batch %d vs %d: max |dw| %g (max |w| %g)", what, batch_a, batch_b, bdiff, wmax);
    /* the in-link cap K = 2: every node keeps exactly its 2 in-links first in (|w| desc, src asc)
     * order of the full graph (found here by counting the links before each), the rest counted */
    {
        vpd_attrib_graph gc;
        const int K = 2;
        CHECK(vpd_attrib_compute(d, tokens, S, g, tpos, T, batch_b, K, MPI_COMM_SELF, &gc) == VPD_OK, "attrib cap: %s",
              vpd_last_error());
        int64_t want = 0, e0 = 0, ic = 0;
        double wsum = 0, wdrop = 0;
        int bad = 0;
        while (e0 < gr.n_edges) { /* one dst group [e0, e1) of the full graph (sorted by dst, src) */
            int64_t e1 = e0;
            while (e1 < gr.n_edges && gr.edges[e1].dst == gr.edges[e0].dst) e1++;
            for (int64_t e = e0; e < e1; e++) {
                const double we = fabs(gr.edges[e].w);
                int before = 0;
                for (int64_t f = e0; f < e1; f++) {
                    const double wf = fabs(gr.edges[f].w);
                    before += wf > we || (wf == we && gr.edges[f].src < gr.edges[e].src);
                }
                wsum += we;
                if (before < K) { /* kept: the capped graph's next edge (same (dst, src) order) */
                    want++;
                    if (!(ic < gc.n_edges && gc.edges[ic].dst == gr.edges[e].dst && gc.edges[ic].src == gr.edges[e].src &&
                          gc.edges[ic].w == gr.edges[e].w))
                        bad++;
                    ic++;
                } else wdrop += we;
            }
            e0 = e1;
        }
        CHECK(bad == 0 && gc.n_edges == want, "%s: in-link cap %d: %d kept links differ; %lld links, expected %lld", what,
              K, bad, (long long)gc.n_edges, (long long)want);
        CHECK(gc.n_links_dropped == gr.n_edges - want, "%s: in-link cap: %lld dropped, expected %lld", what,
              (long long)gc.n_links_dropped, (long long)(gr.n_edges - want));
        CHECK(fabs(gc.w_total - wsum) <= 1e-9 * wsum && fabs(gc.w_dropped - wdrop) <= 1e-9 * (wsum + 1e-30),
              "%s: in-link cap: sum |w| %g / dropped %g, expected %g / %g", what, gc.w_total, gc.w_dropped, wsum, wdrop);
        CHECK(gr.n_edges > want, "%s: the graph has no node with more than %d in-links: the cap test tests nothing", what, K);
        vpd_attrib_graph_free(&gc);
    }
    /* node index of every flat (layer-major) activation */
    int *nid = malloc(sizeof(int) * (size_t)CS * S);
    for (size_t i = 0; i < (size_t)CS * S; i++) nid[i] = -1;
    for (int i = 0; i < gr.n_nodes - 1; i++) {
        const vpd_attrib_node *nd = &gr.nodes[i];
        nid[(size_t)S * d->layers[nd->layer].c_off + (size_t)nd->pos * d->layers[nd->layer].C + nd->c] = i;
    }
    /* the graph's edges as a dense [n_nodes, n_nodes] table (dst, src) */
    const int n = gr.n_nodes;
    double *Wd = calloc((size_t)n * n, sizeof(double));
    char *has = calloc((size_t)n * n, 1);
    for (int64_t e = 0; e < gr.n_edges; e++) {
        Wd[(size_t)gr.edges[e].dst * n + gr.edges[e].src] = gr.edges[e].w;
        has[(size_t)gr.edges[e].dst * n + gr.edges[e].src] = 1;
    }
    /* base forward: frozen activations a0, the node activations, the logit */
    real *a0 = calloc((size_t)CS * S, sizeof(real)), *ah[4], *oh[4];
    for (int q = 0; q < 4; q++) {
        ah[q] = calloc((size_t)CS * S, sizeof(real));
        oh[q] = calloc((size_t)S * V, sizeof(real));
    }
    real *out = calloc((size_t)S * V, sizeof(real));
    fd_hook h = {{fd_forward, NULL}, d, S, g, a0, NULL, -1, 0};
    vpd_model_input in = {1, S, NULL, tokens};
    vpd_model_forward(&m, &in, out, &h.base);
    for (int i = 0; i < n - 1; i++) {
        const vpd_attrib_node *nd = &gr.nodes[i];
        double a = a0[(size_t)S * d->layers[nd->layer].c_off + (size_t)nd->pos * d->layers[nd->layer].C + nd->c];
        CHECK(fabs(nd->act - a) <= 1e-10 * (1 + fabs(a)), "%s: node %d activation %g vs %g", what, i, nd->act, a);
    }
    CHECK(fabs(gr.logit - out[(size_t)tpos * V + T]) < 1e-10 * (1 + fabs(gr.logit)), "%s: logit %g vs %g", what, gr.logit,
          out[(size_t)tpos * V + T]);
    /* the 4-point stencil (error O(eps^4)): the RMSNorm of a short residual row is strongly
     * curved (the 2-point central difference is off by 1e-4 relative at eps 1e-5); eps 1e-7 */
    const double eps = 1e-7;
    static const double step[4] = {-2, -1, 1, 2}, wgt[4] = {1, -8, 8, -1};
    double maxerr = 0;
    int n_checked = 0, n_nonzero = 0, n_bad_presence = 0;
    h.a0 = a0;
    for (int j = 0; j < n - 1; j++) { /* source j */
        const vpd_attrib_node *sj = &gr.nodes[j];
        const int flat = (int)((size_t)S * d->layers[sj->layer].c_off + (size_t)sj->pos * d->layers[sj->layer].C + sj->c);
        h.src = flat;
        for (int q = 0; q < 4; q++) {
            h.eps = step[q] * eps;
            h.a_live = ah[q];
            vpd_model_forward(&m, &in, oh[q], &h.base);
        }
        const double aj = a0[flat];
        for (int i = 0; i < n; i++) { /* target i */
            const vpd_attrib_node *ti = &gr.nodes[i];
            bool out_node = ti->layer < 0;
            bool allowed;
            if (out_node) allowed = sj->pos == tpos;
            else
                allowed = sj->pos == ti->pos ||
                          (kv_o_pair(d->layers[sj->layer].name, d->layers[ti->layer].name) && sj->pos <= ti->pos);
            if (!out_node && d->layers[ti->layer].embedding) allowed = false; /* no input: no incoming edges */
            if (!allowed) {
                if (has[(size_t)i * n + j]) n_bad_presence++;
                continue;
            }
            double fd = 0;
            size_t fi = out_node ? 0 : (size_t)S * d->layers[ti->layer].c_off + (size_t)ti->pos * d->layers[ti->layer].C + ti->c;
            for (int q = 0; q < 4; q++) fd += wgt[q] * (out_node ? (double)oh[q][(size_t)tpos * V + T] : (double)ah[q][fi]);
            fd = fd / (12 * eps) * aj;
            double err = fabs(fd - Wd[(size_t)i * n + j]);
            if (err > maxerr) maxerr = err;
            if (err > 1e-6 * wmax)
                fprintf(stderr, "  %s: %s:%d@%d -> %s@%d: graph %.10g fd %.10g\n", what, d->layers[sj->layer].name, sj->c,
                        sj->pos, out_node ? "logit" : d->layers[ti->layer].name, ti->pos, Wd[(size_t)i * n + j], fd);
            n_checked++;
            n_nonzero += fabs(fd) > 1e-8 * wmax;
        }
    }
    fprintf(stderr, "%s (S %d, t* %d, batch %d/%d): %d nodes, %lld edges; %d pairs checked (%d nonzero), max |edge - fd| %.3g (max |edge| %.3g)\n", what,
            S, tpos, batch_a, batch_b, n, (long long)gr.n_edges, n_checked, n_nonzero, maxerr, wmax);
    CHECK(maxerr <= 1e-6 * wmax, "%s: max |edge - fd| %g > 1e-6 * %g", what, maxerr, wmax);
    CHECK(n_bad_presence == 0, "%s: %d edges outside the graph's definition", what, n_bad_presence);
    CHECK(n_nonzero > 50 && n_checked > 200, "%s: too few pairs (%d nonzero of %d)", what, n_nonzero, n_checked);
    /* cross-position k/v -> o edges exist */
    int n_cross = 0;
    for (int64_t e = 0; e < gr.n_edges; e++) n_cross += gr.nodes[gr.edges[e].src].pos != gr.nodes[gr.edges[e].dst].pos;
    CHECK(n_cross > 0, "%s: no cross-position k/v -> o edges", what);
    /* influence: finite, in [0, 1]-ish totals, the logit 1 */
    vpd_attrib_influence(&gr);
    CHECK(gr.nodes[n - 1].influence == 1, "%s: output influence", what);
    for (int i = 0; i < n; i++) CHECK(gr.nodes[i].influence >= 0 && isfinite(gr.nodes[i].influence), "%s: influence", what);
    free(nid);
    free(Wd);
    free(has);
    free(a0);
    for (int q = 0; q < 4; q++) {
        free(ah[q]);
        free(oh[q]);
    }
    free(out);
    free(g);
    vpd_attrib_graph_free(&gr);
    vpd_attrib_graph_free(&gr1);
    vpd_decomp_free(d);
    vpd_model_free(&m);
}

/* vpd_model_backward_position's refusals: one-line VPD_ERR_ARG, no crash */
static void check_refusals(void) {
    vpd_model_config tc = {0};
    tc.kind = VPD_MODEL_TMS;
    tc.n_features = 5;
    tc.n_hidden = 2;
    vpd_model tm;
    CHECK(vpd_model_create(&tm, &tc) == VPD_OK && vpd_model_reserve(&tm, 2, 1) == VPD_OK, "tms: %s", vpd_last_error());
    CHECK(vpd_model_reserve_position(&tm, 1) == VPD_ERR_ARG, "tms: reserve_position must refuse");
    CHECK(vpd_model_backward_position(&tm, 0, 1, NULL, NULL, -1, NULL) == VPD_ERR_ARG, "tms: backward_position must refuse");
    vpd_model_free(&tm);
    vpd_model_config lc = {0};
    lc.kind = VPD_MODEL_LLAMA;
    lc.vocab_size = 13; lc.n_ctx = 8; lc.n_embd = 8; lc.n_head = 2; lc.n_key_value_heads = 1;
    lc.n_intermediate = 12; lc.n_layers = 1; lc.rms_eps = 1e-6; lc.rope_theta = 10000;
    vpd_model m;
    CHECK(vpd_model_create(&m, &lc) == VPD_OK && vpd_model_reserve(&m, 2, 4) == VPD_OK, "llama: %s", vpd_last_error());
    vpd_model_init_params(&m, 3);
    CHECK(vpd_model_backward_position(&m, 0, 1, NULL, NULL, -1, NULL) == VPD_ERR_ARG, "llama: backward_position before a forward");
    CHECK(vpd_model_reserve_position(&m, 2) == VPD_OK, "llama reserve_position: %s", vpd_last_error());
    const int32_t tok[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    vpd_model_input in2 = {2, 4, NULL, tok}, in1 = {1, 4, NULL, tok};
    vpd_model_forward(&m, &in2, NULL, NULL);
    CHECK(vpd_model_backward_position(&m, 1, 1, NULL, NULL, -1, NULL) == VPD_ERR_ARG, "llama: a forward of 2 sequences");
    vpd_model_forward(&m, &in1, NULL, NULL);
    CHECK(vpd_model_backward_position(&m, 1, 1, NULL, NULL, -1, NULL) == VPD_OK, "llama: %s", vpd_last_error());
    CHECK(vpd_model_backward_position(&m, 4, 1, NULL, NULL, -1, NULL) == VPD_ERR_ARG, "llama: row 4 of 4");
    CHECK(vpd_model_backward_position(&m, 1, 3, NULL, NULL, -1, NULL) == VPD_ERR_ARG, "llama: 3 copies of 2 reserved");
    vpd_model_free(&m);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    vpd_log_set_level(VPD_LOG_WARN);
    const int32_t p5[5] = {3, 11, 0, 7, 5}, p8[8] = {12, 1, 1, 4, 9, 0, 2, 6}, p6[6] = {5, 5, 10, 3, 8, 1};
    check_model("llama 2L, wte + all 12 matrices", "*", 5, p5, 5, 3, 3, 1);
    check_model("llama 2L, the 12 matrices (wte the target's)", "h.*", 6, p5, 5, 3, 3, 1);
    /* several chunks per position (about 30 targets at each), the output at the ends */
    check_model("llama 2L, all, 8 tokens, output at the last position", "*", 7, p8, 8, 7, 2, 5);
    check_model("llama 2L, all, 8 tokens, output at position 0", "*", 8, p8, 8, 0, 5, 1);
    check_model("llama 2L, the 12 matrices, 6 tokens, output at the last position", "h.*", 9, p6, 6, 5, 4, 7);
    check_refusals();
    MPI_Finalize();
    TEST_REPORT();
}
