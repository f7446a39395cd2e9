/* CI functions (VPD_METHOD.md §2): every kind (mlp, vector_mlp, shared_mlp,
 * global_shared_mlp) with hidden_dims [3] and [4, 3] (and [] where spd allows it) on
 * three layers of different widths:
 *   - forward against a naive per-row evaluation written from spd's module definitions,
 *   - finite differences of L = Σ w z + ½ Σ z² w.r.t. every parameter and every input,
 *   - accumulation, NULL dz / din, the tensor table (spd names, shapes, offsets),
 *   - init: determinism, independence from the other layers, variance 2/fan_in and
 *     1/fan_in on a large layer,
 *   - errors: unknown / unimplemented fn_type, unsorted global layers, empty hidden_dims,
 *     forward beyond the reserved rows. */
#include "testutil.h"
#include "vpd/ci.h"

#define L 3
#define NROWS 5
static const vpd_ci_layer_spec specs[L] = {
    {"h.0.mlp.c_fc", 5, 4},
    {"h.0.mlp.down_proj", 7, 3},
    {"h.1.attn.q_proj", 4, 6},
};

typedef struct {
    vpd_ci_fn *ci;
    real *in[L];
    real *z[L];
    real *w[L];
    int N;
} ctx_t;

static int in_width(const vpd_ci_fn *ci, int l) { return ci->layers[l].d_in; }

static double loss(void *p) {
    ctx_t *c = p;
    VPD_ASSERT(vpd_ci_forward(c->ci, c->z, (const real *const *)c->in, c->N) == VPD_OK, "forward");
    double s = 0;
    for (int l = 0; l < L; l++)
        for (int i = 0; i < c->N * specs[l].C; i++) s += (double)c->w[l][i] * c->z[l][i] + 0.5 * c->z[l][i] * c->z[l][i];
    return s;
}

static double gelu(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }

/* naive MLP on one vector: v [in] -> out through Linears k = 0..nh with W given by a
 * (possibly ParallelLinear-offset) pointer, W [in, out] row-major */
static void naive_mlp(const vpd_ci_fn *ci, int net, int comp, const double *v0, int in0, double *out) {
    double a[64], b[64];
    int w = in0;
    for (int i = 0; i < in0; i++) a[i] = v0[i];
    for (int k = 0; k <= ci->n_hidden; k++) {
        const vpd_ci_param_info *tw = &ci->tensors[ci->nets[net].first_tensor + 2 * k];
        const vpd_ci_param_info *tb = tw + 1;
        int in = (int)tw->shape[tw->ndim - 2], o = (int)tw->shape[tw->ndim - 1];
        VPD_ASSERT(in == w, "naive width");
        const real *W = ci->params + tw->offset + (tw->ndim == 3 ? (size_t)comp * in * o : 0);
        const real *B = ci->params + tb->offset + (tb->ndim == 2 ? (size_t)comp * o : 0);
        for (int j = 0; j < o; j++) {
            double s = B[j];
            for (int i = 0; i < in; i++) s += a[i] * W[(size_t)i * o + j];
            b[j] = k < ci->n_hidden ? gelu(s) : s;
        }
        w = o;
        for (int j = 0; j < o; j++) a[j] = b[j];
    }
    for (int j = 0; j < w; j++) out[j] = a[j];
}

/* reference z for all layers, row by row */
static double naive_check(ctx_t *c) {
    vpd_ci_fn *ci = c->ci;
    double maxerr = 0;
    for (int n = 0; n < c->N; n++) {
        if (ci->type == VPD_CI_GLOBAL_SHARED_MLP) {
            double v[64], out[64];
            int off = 0;
            for (int l = 0; l < L; l++)
                for (int i = 0; i < specs[l].d_in; i++) v[off++] = c->in[l][n * specs[l].d_in + i];
            naive_mlp(ci, 0, 0, v, off, out);
            off = 0;
            for (int l = 0; l < L; l++)
                for (int j = 0; j < specs[l].C; j++) maxerr = fmax(maxerr, fabs(out[off++] - c->z[l][n * specs[l].C + j]));
            continue;
        }
        for (int l = 0; l < L; l++) {
            int C = specs[l].C, D = in_width(ci, l);
            double v[64], out[64];
            if (ci->type == VPD_CI_SHARED_MLP) {
                for (int i = 0; i < D; i++) v[i] = c->in[l][n * D + i];
                naive_mlp(ci, l, 0, v, D, out);
                for (int j = 0; j < C; j++) maxerr = fmax(maxerr, fabs(out[j] - c->z[l][n * C + j]));
            } else {
                for (int comp = 0; comp < C; comp++) {
                    int w = ci->type == VPD_CI_MLP ? 1 : D;
                    if (ci->type == VPD_CI_MLP) v[0] = c->in[l][n * C + comp];
                    else
                        for (int i = 0; i < D; i++) v[i] = c->in[l][n * D + i];
                    naive_mlp(ci, l, comp, v, w, out);
                    maxerr = fmax(maxerr, fabs(out[0] - c->z[l][n * C + comp]));
                }
            }
        }
    }
    return maxerr;
}

static void run_kind(vpd_ci_type type, const int *hidden, int nh) {
    char label[96];
    snprintf(label, sizeof label, "%s hidden[%d]", vpd_ci_type_name(type), nh);
    fprintf(stderr, "%s\n", label);
    ctx_t c = {0};
    c.N = NROWS;
    vpd_status st = vpd_ci_create(&c.ci, type, specs, L, hidden, nh);
    CHECK(st == VPD_OK, "%s: create: %s", label, vpd_last_error());
    if (st != VPD_OK) return;
    vpd_ci_fn *ci = c.ci;
    vpd_ci_init(ci, 1234);
    /* move away from the zero biases so every term of the gradient is exercised */
    real *noise = malloc(sizeof(real) * ci->n_params);
    tu_fill(noise, ci->n_params, 7, 0.3);
    for (size_t i = 0; i < ci->n_params; i++) ci->params[i] += noise[i];
    free(noise);
    CHECK(vpd_ci_reserve(ci, NROWS) == VPD_OK, "reserve");

    /* tensor table: contiguous, covering n_params */
    size_t off = 0;
    for (int i = 0; i < ci->n_tensors; i++) {
        CHECK(ci->tensors[i].offset == off, "%s: tensor %s offset %zu, expected %zu", label, ci->tensors[i].name,
              ci->tensors[i].offset, off);
        off += ci->tensors[i].numel;
    }
    CHECK(off == ci->n_params, "%s: table covers %zu of %zu params", label, off, ci->n_params);

    real *din[L], *dz[L], *zsave[L];
    for (int l = 0; l < L; l++) {
        int D = in_width(ci, l), C = specs[l].C;
        c.in[l] = malloc(sizeof(real) * NROWS * D);
        c.z[l] = malloc(sizeof(real) * NROWS * C);
        c.w[l] = malloc(sizeof(real) * NROWS * C);
        din[l] = calloc(NROWS * D, sizeof(real));
        dz[l] = malloc(sizeof(real) * NROWS * C);
        zsave[l] = malloc(sizeof(real) * NROWS * C);
        tu_fill(c.in[l], NROWS * D, 100 + l, 1.2);
        tu_fill(c.w[l], NROWS * C, 200 + l, 1.0);
    }
    loss(&c);
    double ne = naive_check(&c);
    CHECK(ne < 1e-12, "%s: forward vs naive max abs err %g", label, ne);
    for (int l = 0; l < L; l++)
        for (int i = 0; i < NROWS * specs[l].C; i++) {
            dz[l][i] = c.w[l][i] + c.z[l][i];
            zsave[l][i] = c.z[l][i];
        }
    vpd_ci_zero_grad(ci);
    CHECK(vpd_ci_backward(ci, din, (const real *const *)dz, (const real *const *)c.in, NROWS) == VPD_OK,
          "backward: %s", vpd_last_error());
    real *g1 = malloc(sizeof(real) * ci->n_params);
    memcpy(g1, ci->grads, sizeof(real) * ci->n_params);

    char name[128];
    snprintf(name, sizeof name, "%s params", label);
    double e = tu_fd_check(loss, &c, ci->params, g1, ci->n_params, 1e-6, name);
    CHECK(e < 1e-6, "%s: parameter gradient fd rel err %g", label, e);
    for (int l = 0; l < L; l++) {
        snprintf(name, sizeof name, "%s in[%d]", label, l);
        e = tu_fd_check(loss, &c, c.in[l], din[l], (size_t)NROWS * in_width(ci, l), 1e-6, name);
        CHECK(e < 1e-6, "%s: input %d gradient fd rel err %g", label, l, e);
    }

    /* accumulation: a second backward (after a fresh forward) doubles the gradient */
    loss(&c);
    CHECK(vpd_ci_backward(ci, NULL, (const real *const *)dz, (const real *const *)c.in, NROWS) == VPD_OK, "bwd2");
    double maxd = 0;
    for (size_t i = 0; i < ci->n_params; i++) maxd = fmax(maxd, fabs(ci->grads[i] - 2 * g1[i]));
    CHECK(maxd < 1e-12, "%s: backward accumulates (max dev %g)", label, maxd);

    /* a NULL dz[l] is the same as zeros */
    vpd_ci_zero_grad(ci);
    real *dz2[L] = {dz[0], NULL, dz[2]};
    CHECK(vpd_ci_backward(ci, NULL, (const real *const *)dz2, (const real *const *)c.in, NROWS) == VPD_OK, "bwd3");
    memcpy(g1, ci->grads, sizeof(real) * ci->n_params);
    memset(dz[1], 0, sizeof(real) * NROWS * specs[1].C);
    vpd_ci_zero_grad(ci);
    vpd_ci_backward(ci, NULL, (const real *const *)dz, (const real *const *)c.in, NROWS);
    maxd = 0;
    for (size_t i = 0; i < ci->n_params; i++) maxd = fmax(maxd, fabs(ci->grads[i] - g1[i]));
    CHECK(maxd == 0, "%s: NULL dz equals zero dz (max dev %g)", label, maxd);

    /* forward beyond the reservation is refused with a shape error */
    CHECK(vpd_ci_forward(ci, c.z, (const real *const *)c.in, NROWS + 1) == VPD_ERR_SHAPE, "%s: N > reserved", label);

    free(g1);
    for (int l = 0; l < L; l++) {
        free(c.in[l]); free(c.z[l]); free(c.w[l]); free(din[l]); free(dz[l]); free(zsave[l]);
    }
    vpd_ci_free(ci);
}

static void check_names(void) {
    int h[2] = {4, 3};
    vpd_ci_fn *ci;
    CHECK(vpd_ci_create(&ci, VPD_CI_MLP, specs, L, h, 2) == VPD_OK, "create mlp");
    int i = vpd_ci_find_tensor(ci, "ci_fn._ci_fns.h-0-mlp-c_fc.layers.0.W");
    CHECK(i >= 0 && ci->tensors[i].ndim == 3 && ci->tensors[i].shape[0] == 4 && ci->tensors[i].shape[1] == 1 &&
              ci->tensors[i].shape[2] == 4, "mlp first W is ParallelLinear [C, 1, h0]");
    i = vpd_ci_find_tensor(ci, "ci_fn._ci_fns.h-1-attn-q_proj.layers.4.b");
    CHECK(i >= 0 && ci->tensors[i].ndim == 2 && ci->tensors[i].shape[0] == 6 && ci->tensors[i].shape[1] == 1,
          "mlp final b is [C, 1]");
    vpd_tensor t = vpd_ci_param_view(ci, 0);
    CHECK(t.data == ci->params && strcmp(t.name, ci->tensors[0].name) == 0, "param view");
    vpd_ci_free(ci);
    CHECK(vpd_ci_create(&ci, VPD_CI_GLOBAL_SHARED_MLP, specs, L, h, 1) == VPD_OK, "create global");
    i = vpd_ci_find_tensor(ci, "ci_fn._global_ci_fn.layers.0.W");
    CHECK(i >= 0 && ci->tensors[i].shape[0] == 16 && ci->tensors[i].shape[1] == 4, "global first W [ΣD, h]");
    i = vpd_ci_find_tensor(ci, "ci_fn._global_ci_fn.layers.2.W");
    CHECK(i >= 0 && ci->tensors[i].shape[0] == 4 && ci->tensors[i].shape[1] == 13, "global final W [h, ΣC]");
    CHECK(ci->n_tensors == 4 && ci->n_params == 16 * 4 + 4 + 4 * 13 + 13, "global n_params %zu", ci->n_params);
    vpd_ci_free(ci);
}

static void check_errors(void) {
    int h[1] = {3};
    vpd_ci_fn *ci = (vpd_ci_fn *)1;
    vpd_ci_type t;
    CHECK(vpd_ci_type_parse("global_shared_mlp", &t) == VPD_OK && t == VPD_CI_GLOBAL_SHARED_MLP, "parse");
    CHECK(vpd_ci_type_parse("global_mlp", &t) == VPD_ERR_CONFIG && strstr(vpd_last_error(), "global_mlp"),
          "unknown fn_type: %s", vpd_last_error());
    CHECK(vpd_ci_create(&ci, VPD_CI_GLOBAL_SHARED_TRANSFORMER, specs, L, h, 1) == VPD_ERR_CONFIG &&
              strstr(vpd_last_error(), "not implemented") && ci == NULL,
          "transformer: %s", vpd_last_error());
    CHECK(vpd_ci_create(&ci, VPD_CI_GLOBAL_REVERSE_RESIDUAL, specs, L, h, 1) == VPD_ERR_CONFIG &&
              strstr(vpd_last_error(), "not implemented"), "reverse residual: %s", vpd_last_error());
    vpd_ci_layer_spec bad[2] = {{"h.2.mlp.c_fc", 3, 2}, {"h.10.mlp.c_fc", 3, 2}}; /* "h.10" < "h.2" */
    CHECK(vpd_ci_create(&ci, VPD_CI_GLOBAL_SHARED_MLP, bad, 2, h, 1) == VPD_ERR_CONFIG &&
              strstr(vpd_last_error(), "strcmp"), "unsorted global: %s", vpd_last_error());
    CHECK(vpd_ci_create(&ci, VPD_CI_SHARED_MLP, bad, 2, h, 1) == VPD_OK, "layerwise accepts any order");
    vpd_ci_free(ci);
    CHECK(vpd_ci_create(&ci, VPD_CI_MLP, specs, L, NULL, 0) == VPD_ERR_CONFIG, "mlp without hidden dims: %s",
          vpd_last_error());
    vpd_ci_layer_spec zc[1] = {{"linear1", 3, 0}};
    CHECK(vpd_ci_create(&ci, VPD_CI_SHARED_MLP, zc, 1, h, 1) == VPD_ERR_CONFIG && strstr(vpd_last_error(), "linear1"),
          "C = 0: %s", vpd_last_error());
}

static void check_init(void) {
    /* one big layer: first W [2000, 256] ~ N(0, 2/2000), final W [256, 100] ~ N(0, 1/256) */
    vpd_ci_layer_spec big[1] = {{"h.0.mlp.c_fc", 2000, 100}};
    int h[1] = {256};
    vpd_ci_fn *a, *b;
    CHECK(vpd_ci_create(&a, VPD_CI_GLOBAL_SHARED_MLP, big, 1, h, 1) == VPD_OK, "create big");
    vpd_ci_init(a, 42);
    for (int i = 0; i < a->n_tensors; i++) {
        const vpd_ci_param_info *t = &a->tensors[i];
        const real *p = a->params + t->offset;
        double s = 0, s2 = 0;
        for (size_t j = 0; j < t->numel; j++) { s += p[j]; s2 += (double)p[j] * p[j]; }
        double mean = s / t->numel, var = s2 / t->numel - mean * mean;
        if (t->is_bias) {
            CHECK(s2 == 0, "%s is zero", t->name);
            continue;
        }
        double want = (t->linear == 0 ? 2.0 : 1.0) / (double)t->shape[0];
        fprintf(stderr, "  init %s numel %zu var %.4e want %.4e (ratio %.4f) mean %.2e\n", t->name, t->numel, var,
                want, var / want, mean);
        CHECK(fabs(var / want - 1) < 0.03, "%s variance %g, want %g", t->name, var, want);
        CHECK(fabs(mean) < 4 * sqrt(want / t->numel), "%s mean %g", t->name, mean);
    }
    /* same seed -> same numbers; another seed -> different */
    CHECK(vpd_ci_create(&b, VPD_CI_GLOBAL_SHARED_MLP, big, 1, h, 1) == VPD_OK, "create big 2");
    vpd_ci_init(b, 42);
    CHECK(memcmp(a->params, b->params, sizeof(real) * a->n_params) == 0, "init deterministic");
    vpd_ci_init(b, 43);
    CHECK(memcmp(a->params, b->params, sizeof(real) * a->n_params) != 0, "seed changes init");
    vpd_ci_free(a);
    vpd_ci_free(b);
    /* a layer's layerwise CI init does not depend on which other layers are decomposed */
    int h2[2] = {4, 3};
    CHECK(vpd_ci_create(&a, VPD_CI_VECTOR_MLP, specs, L, h2, 2) == VPD_OK, "create 3 layers");
    CHECK(vpd_ci_create(&b, VPD_CI_VECTOR_MLP, specs + 1, 1, h2, 2) == VPD_OK, "create 1 layer");
    vpd_ci_init(a, 9);
    vpd_ci_init(b, 9);
    int ia = vpd_ci_find_tensor(a, "ci_fn._ci_fns.h-0-mlp-down_proj.layers.2.W");
    int ib = vpd_ci_find_tensor(b, "ci_fn._ci_fns.h-0-mlp-down_proj.layers.2.W");
    CHECK(ia >= 0 && ib >= 0 &&
              memcmp(a->params + a->tensors[ia].offset, b->params + b->tensors[ib].offset,
                     sizeof(real) * a->tensors[ia].numel) == 0,
          "init independent of the other layers");
    vpd_ci_free(a);
    vpd_ci_free(b);
}

int main(void) {
    int h1[1] = {3}, h2[2] = {4, 3};
    vpd_ci_type kinds[4] = {VPD_CI_MLP, VPD_CI_VECTOR_MLP, VPD_CI_SHARED_MLP, VPD_CI_GLOBAL_SHARED_MLP};
    for (int k = 0; k < 4; k++) {
        run_kind(kinds[k], h1, 1);
        run_kind(kinds[k], h2, 2);
    }
    run_kind(VPD_CI_SHARED_MLP, NULL, 0);
    run_kind(VPD_CI_GLOBAL_SHARED_MLP, NULL, 0);
    check_names();
    check_errors();
    check_init();
    TEST_REPORT();
}
