/* global_shared_transformer CI function (VPD_METHOD.md §2), double build:
 *   - finite differences of L = Σ w z + ½ Σ z² w.r.t. every parameter and every input,
 *     on three layers of different widths, B 2 × S 3, d_model 8, 2 heads, 2 blocks,
 *     mlp_hidden_dim [12] (and a toy case: S 1, one block, mlp_hidden_dim []),
 *   - backward accumulates; NULL din / NULL dz[l] are accepted,
 *   - attention stays inside a sequence; with S 1 rows are independent,
 *   - the tensor table (spd names, shapes), init (determinism, N(0, 2/fan_in),
 *     N(0, 1/fan_in), U(±1/√d_model), zero biases) on a larger instance,
 *   - errors: bad config, S > max_len, rows not whole sequences, plain vpd_ci_create. */
#include "testutil.h"
#include "vpd/ci.h"
#include "vpd/nn.h"

#define L 3
static const vpd_ci_layer_spec specs[L] = {
    {"h.0.attn.q_proj", 6, 4},
    {"h.0.mlp.c_fc", 5, 3},
    {"h.1.mlp.down_proj", 7, 5},
};

typedef struct {
    vpd_ci_fn *ci;
    real *in[L], *z[L], *w[L], *dz[L], *din[L];
    int N;
} ctx_t;

static double loss(void *p) {
    ctx_t *c = p;
    VPD_ASSERT(vpd_ci_forward(c->ci, c->z, (const real *const *)c->in, c->N) == VPD_OK, "forward: %s",
               vpd_last_error());
    double s = 0;
    for (int l = 0; l < L; l++)
        for (int i = 0; i < c->N * specs[l].C; i++)
            s += (double)c->w[l][i] * c->z[l][i] + 0.5 * (double)c->z[l][i] * c->z[l][i];
    return s;
}

/* forward, dz = w + z, zeroed grads and din, backward */
static void grad(ctx_t *c) {
    loss(c);
    for (int l = 0; l < L; l++) {
        for (int i = 0; i < c->N * specs[l].C; i++) c->dz[l][i] = c->w[l][i] + c->z[l][i];
        memset(c->din[l], 0, sizeof(real) * (size_t)c->N * specs[l].d_in);
    }
    vpd_ci_zero_grad(c->ci);
    CHECK(vpd_ci_backward(c->ci, c->din, (const real *const *)c->dz, (const real *const *)c->in, c->N) == VPD_OK,
          "backward: %s", vpd_last_error());
}

static void ctx_alloc(ctx_t *c, int N, unsigned seed) {
    c->N = N;
    for (int l = 0; l < L; l++) {
        size_t ni = (size_t)N * specs[l].d_in, nz = (size_t)N * specs[l].C;
        c->in[l] = vpd_malloc(sizeof(real) * ni, "in");
        c->din[l] = vpd_malloc(sizeof(real) * ni, "din");
        c->z[l] = vpd_malloc(sizeof(real) * nz, "z");
        c->w[l] = vpd_malloc(sizeof(real) * nz, "w");
        c->dz[l] = vpd_malloc(sizeof(real) * nz, "dz");
        tu_fill(c->in[l], ni, seed + 10 * l, 1.5);
        tu_fill(c->w[l], nz, seed + 10 * l + 5, 1.0);
    }
}

static void ctx_free(ctx_t *c) {
    for (int l = 0; l < L; l++) {
        vpd_free(c->in[l]);
        vpd_free(c->din[l]);
        vpd_free(c->z[l]);
        vpd_free(c->w[l]);
        vpd_free(c->dz[l]);
    }
    vpd_ci_free(c->ci);
}

/* in_limit > 0: the finite differences of the inputs on their first in_limit values only (long S);
 * h: the step (a loss summed over many rows wants a larger one against rounding) */
static void fd_case_n(const char *label, const vpd_ci_transformer_cfg *cfg, int B, int S, size_t in_limit, double h) {
    ctx_t c = {0};
    CHECK(vpd_ci_create_transformer(&c.ci, specs, L, cfg) == VPD_OK, "%s: create: %s", label, vpd_last_error());
    if (!c.ci) return;
    vpd_ci_init(c.ci, 7);
    /* reserve first with S = 1, then set S: the reservation must follow */
    CHECK(vpd_ci_reserve(c.ci, B * S) == VPD_OK && vpd_ci_set_seq_len(c.ci, S) == VPD_OK, "%s: reserve", label);
    /* non-zero biases and larger q/k so softmax is far from uniform and every path is live */
    for (int i = 0; i < c.ci->n_tensors; i++) {
        vpd_ci_param_info *t = &c.ci->tensors[i];
        real *p = c.ci->params + t->offset;
        if (t->is_bias) tu_fill(p, t->numel, 100 + i, 0.3);
        if (strstr(t->name, "q_proj") || strstr(t->name, "k_proj"))
            for (size_t e = 0; e < t->numel; e++) p[e] *= 4;
    }
    ctx_alloc(&c, B * S, 3);
    grad(&c);
    fprintf(stderr, "%s (B %d, S %d):\n", label, B, S);
    double worst = 0;
    for (int i = 0; i < c.ci->n_tensors; i++) {
        const vpd_ci_param_info *t = &c.ci->tensors[i];
        double e = tu_fd_check(loss, &c, c.ci->params + t->offset, c.ci->grads + t->offset, t->numel, h,
                               t->name + strlen("ci_fn._global_ci_fn."));
        CHECK(e <= 1e-6, "%s: %s: fd rel err %.3e", label, t->name, e);
        if (e > worst) worst = e;
    }
    for (int l = 0; l < L; l++) {
        char nm[64];
        snprintf(nm, sizeof nm, "input %s", specs[l].name);
        size_t n_in = (size_t)c.N * specs[l].d_in;
        if (in_limit > 0 && in_limit < n_in) n_in = in_limit;
        double e = tu_fd_check(loss, &c, c.in[l], c.din[l], n_in, h, nm);
        CHECK(e <= 1e-6, "%s: %s: fd rel err %.3e", label, nm, e);
        if (e > worst) worst = e;
    }
    fprintf(stderr, "%s: worst fd rel err %.3e\n", label, worst);

    /* accumulation: a second backward without zeroing doubles grads and din */
    grad(&c);
    real *g1 = vpd_malloc(sizeof(real) * c.ci->n_params, "g1");
    memcpy(g1, c.ci->grads, sizeof(real) * c.ci->n_params);
    real *d1 = vpd_malloc(sizeof(real) * (size_t)c.N * specs[0].d_in, "d1");
    memcpy(d1, c.din[0], sizeof(real) * (size_t)c.N * specs[0].d_in);
    CHECK(vpd_ci_backward(c.ci, c.din, (const real *const *)c.dz, (const real *const *)c.in, c.N) == VPD_OK, "bw2");
    double me = 0;
    for (size_t i = 0; i < c.ci->n_params; i++) me = fmax(me, fabs((double)c.ci->grads[i] - 2 * g1[i]));
    for (int i = 0; i < c.N * specs[0].d_in; i++) me = fmax(me, fabs((double)c.din[0][i] - 2 * d1[i]));
    CHECK(me < 1e-10, "%s: backward does not accumulate (%.3e)", label, me);
    /* NULL din, and NULL dz for one layer = that layer's dz zero */
    const real *dzp[L] = {c.dz[0], NULL, c.dz[2]};
    vpd_ci_zero_grad(c.ci);
    CHECK(vpd_ci_backward(c.ci, NULL, dzp, (const real *const *)c.in, c.N) == VPD_OK, "NULL din");
    memcpy(g1, c.ci->grads, sizeof(real) * c.ci->n_params);
    memset(c.dz[1], 0, sizeof(real) * (size_t)c.N * specs[1].C);
    vpd_ci_zero_grad(c.ci);
    CHECK(vpd_ci_backward(c.ci, NULL, (const real *const *)c.dz, (const real *const *)c.in, c.N) == VPD_OK, "zero dz");
    me = 0;
    for (size_t i = 0; i < c.ci->n_params; i++) me = fmax(me, fabs((double)c.ci->grads[i] - g1[i]));
    CHECK(me < 1e-12, "%s: NULL dz[1] differs from zero dz[1] (%.3e)", label, me);
    vpd_free(g1);
    vpd_free(d1);

    /* sequences are independent: perturbing sequence B-1 leaves sequence 0 unchanged,
     * and changes the other positions of its own sequence when S > 1 */
    loss(&c);
    real *z0 = vpd_malloc(sizeof(real) * (size_t)c.N * specs[2].C, "z0");
    memcpy(z0, c.z[2], sizeof(real) * (size_t)c.N * specs[2].C);
    c.in[0][(size_t)((B - 1) * S) * specs[0].d_in] += 0.7;
    loss(&c);
    double d_other = 0, d_own = 0;
    for (int n = 0; n < c.N; n++)
        for (int j = 0; j < specs[2].C; j++) {
            double d = fabs((double)c.z[2][(size_t)n * specs[2].C + j] - z0[(size_t)n * specs[2].C + j]);
            if (n < (B - 1) * S) d_other = fmax(d_other, d);
            else if (n > (B - 1) * S) d_own = fmax(d_own, d);
        }
    CHECK(d_other == 0, "%s: attention leaks across sequences (%.3e)", label, d_other);
    if (S > 1) CHECK(d_own > 1e-6, "%s: no attention within a sequence (%.3e)", label, d_own);
    vpd_free(z0);
    ctx_free(&c);
}

static double var_of(const real *p, size_t n) {
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) s += p[i], s2 += (double)p[i] * p[i];
    return s2 / n - (s / n) * (s / n);
}

static void test_table_and_init(void) {
    static const vpd_ci_layer_spec big[2] = {{"a.x", 300, 50}, {"b.y", 212, 30}};
    vpd_ci_transformer_cfg cfg = {.d_model = 256, .n_blocks = 2, .n_heads = 4, .n_mlp_hidden = 1,
                                  .mlp_hidden = {384}, .max_len = 64, .rope_base = 10000};
    vpd_ci_fn *a = NULL, *b = NULL;
    CHECK(vpd_ci_create_transformer(&a, big, 2, &cfg) == VPD_OK && vpd_ci_create_transformer(&b, big, 2, &cfg) == VPD_OK,
          "create big: %s", vpd_last_error());
    if (!a || !b) return;
    vpd_ci_init(a, 11);
    vpd_ci_init(b, 11);
    CHECK(memcmp(a->params, b->params, sizeof(real) * a->n_params) == 0, "init not deterministic");
    vpd_ci_init(b, 12);
    CHECK(memcmp(a->params, b->params, sizeof(real) * a->n_params) != 0, "init ignores the seed");
    CHECK(a->n_tensors == 4 + 2 * (4 + 4), "n_tensors %d", a->n_tensors);
    size_t total = 0;
    for (int i = 0; i < a->n_tensors; i++) total += a->tensors[i].numel;
    CHECK(total == a->n_params, "numel sum %zu != n_params %zu", total, a->n_params);
    struct { const char *name; int ndim; int64_t s0, s1; double var; int kind; } ex[] = {
        {"ci_fn._global_ci_fn._input_projector.W", 2, 512, 256, 2.0 / 512, 0},
        {"ci_fn._global_ci_fn._input_projector.b", 1, 256, 0, 0, 2},
        {"ci_fn._global_ci_fn._output_head.W", 2, 256, 80, 1.0 / 256, 0},
        {"ci_fn._global_ci_fn._output_head.b", 1, 80, 0, 0, 2},
        {"ci_fn._global_ci_fn._blocks.0.attn.q_proj.weight", 2, 256, 256, 1.0 / (3 * 256), 1},
        {"ci_fn._global_ci_fn._blocks.1.attn.out_proj.weight", 2, 256, 256, 1.0 / (3 * 256), 1},
        {"ci_fn._global_ci_fn._blocks.1.mlp.0.W", 2, 256, 384, 2.0 / 256, 0},
        {"ci_fn._global_ci_fn._blocks.1.mlp.0.b", 1, 384, 0, 0, 2},
        {"ci_fn._global_ci_fn._blocks.0.mlp.2.W", 2, 384, 256, 1.0 / 384, 0},
        {"ci_fn._global_ci_fn._blocks.0.mlp.2.b", 1, 256, 0, 0, 2},
    };
    for (size_t k = 0; k < sizeof ex / sizeof ex[0]; k++) {
        int i = vpd_ci_find_tensor(a, ex[k].name);
        CHECK(i >= 0, "tensor %s missing", ex[k].name);
        if (i < 0) continue;
        const vpd_ci_param_info *t = &a->tensors[i];
        CHECK(t->ndim == ex[k].ndim && t->shape[0] == ex[k].s0 && (t->ndim == 1 || t->shape[1] == ex[k].s1),
              "%s: shape", ex[k].name);
        const real *p = a->params + t->offset;
        if (ex[k].kind == 2) {
            double m = 0;
            for (size_t e = 0; e < t->numel; e++) m = fmax(m, fabs((double)p[e]));
            CHECK(m == 0, "%s: bias not zero", ex[k].name);
            continue;
        }
        double v = var_of(p, t->numel);
        CHECK(fabs(v / ex[k].var - 1) < 0.05, "%s: variance %.4g, expected %.4g", ex[k].name, v, ex[k].var);
        if (ex[k].kind == 1) {
            double m = 0, bound = 1 / sqrt(256.0);
            for (size_t e = 0; e < t->numel; e++) m = fmax(m, fabs((double)p[e]));
            CHECK(m <= bound && m > 0.99 * bound, "%s: max |w| %.4g, bound %.4g", ex[k].name, m, bound);
        }
    }
    vpd_ci_free(a);
    vpd_ci_free(b);
}

static void test_errors(void) {
    vpd_ci_fn *ci = NULL;
    vpd_ci_transformer_cfg ok = {.d_model = 8, .n_blocks = 1, .n_heads = 2, .n_mlp_hidden = 1, .mlp_hidden = {4},
                                 .max_len = 4, .rope_base = 10000};
    vpd_ci_transformer_cfg bad = ok;
    bad.n_heads = 3;
    CHECK(vpd_ci_create_transformer(&ci, specs, L, &bad) == VPD_ERR_CONFIG && ci == NULL &&
              strstr(vpd_last_error(), "n_heads"), "n_heads 3: %s", vpd_last_error());
    bad = ok;
    bad.n_heads = 8; /* d_head 1: odd */
    CHECK(vpd_ci_create_transformer(&ci, specs, L, &bad) == VPD_ERR_CONFIG && strstr(vpd_last_error(), "even"),
          "odd d_head: %s", vpd_last_error());
    bad = ok;
    bad.mlp_hidden[0] = 0;
    CHECK(vpd_ci_create_transformer(&ci, specs, L, &bad) == VPD_ERR_CONFIG &&
              strstr(vpd_last_error(), "mlp_hidden_dim[0]"), "hidden 0: %s", vpd_last_error());
    vpd_ci_layer_spec rev[2] = {specs[1], specs[0]};
    CHECK(vpd_ci_create_transformer(&ci, rev, 2, &ok) == VPD_ERR_CONFIG && strstr(vpd_last_error(), "strcmp"),
          "unsorted: %s", vpd_last_error());
    CHECK(vpd_ci_create(&ci, VPD_CI_GLOBAL_SHARED_TRANSFORMER, specs, L, ok.mlp_hidden, 1) == VPD_ERR_CONFIG &&
              strstr(vpd_last_error(), "vpd_ci_create_transformer"), "plain create: %s", vpd_last_error());
    CHECK(vpd_ci_create_transformer(&ci, specs, L, &ok) == VPD_OK, "create ok");
    if (!ci) return;
    CHECK(vpd_ci_set_seq_len(ci, 5) == VPD_ERR_SHAPE && strstr(vpd_last_error(), "max_len"), "S > max_len: %s",
          vpd_last_error());
    CHECK(vpd_ci_set_seq_len(ci, 0) == VPD_ERR_SHAPE, "S 0");
    CHECK(vpd_ci_set_seq_len(ci, 3) == VPD_OK && vpd_ci_reserve(ci, 8) == VPD_OK, "S 3");
    ctx_t c = {0};
    ctx_alloc(&c, 8, 1);
    c.ci = ci;
    CHECK(vpd_ci_forward(ci, c.z, (const real *const *)c.in, 8) == VPD_ERR_SHAPE &&
              strstr(vpd_last_error(), "whole sequences"), "8 rows of S 3: %s", vpd_last_error());
    ctx_free(&c);
}

static void fd_case(const char *label, const vpd_ci_transformer_cfg *cfg, int B, int S) { fd_case_n(label, cfg, B, S, 0, 1e-6); }

int main(void) {
    vpd_ci_transformer_cfg cfg = {.d_model = 8, .n_blocks = 2, .n_heads = 2, .n_mlp_hidden = 1,
                                  .mlp_hidden = {12}, .max_len = 8, .rope_base = 10000};
    fd_case("lm", &cfg, 2, 3);
    cfg.rope_base = 3; /* large angles: RoPE far from the identity */
    fd_case("lm rope_base 3", &cfg, 2, 3);
    /* from VPD_ATTN_ROWS_MIN_S positions on the blocks run the row-block attention kernels
     * (log-sum-exp kept, probabilities recomputed backward, several row blocks): the same
     * finite differences through that path (inputs: the first 200 values) */
    cfg.max_len = VPD_ATTN_ROWS_MIN_S + 8;
    fd_case_n("lm row-block attention", &cfg, 1, VPD_ATTN_ROWS_MIN_S + 8, 200, 1e-4);
    cfg.max_len = 8;
    vpd_ci_transformer_cfg toy = {.d_model = 8, .n_blocks = 1, .n_heads = 2, .n_mlp_hidden = 0, .max_len = 1,
                                  .rope_base = 10000};
    fd_case("toy", &toy, 4, 1);
    test_table_and_init();
    test_errors();
    TEST_REPORT();
}
