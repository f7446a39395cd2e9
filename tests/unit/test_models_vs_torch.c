/* The three target models in float against PyTorch (llm.c's test_gpt2 pattern).
 * tools/reference/reference_models.py writes model directories with a reference.h5 holding the
 * input, PyTorch's logits (computed in double on the float32 weights), the loss, its
 * gradient w.r.t. the logits and w.r.t. every parameter and the input. For each fixture
 * directory (argv, else the four that tests/cmake/models.cmake generates under the
 * working directory) this loads the model with vpd_model_load, runs forward and
 * backward (seeded with the reference dlogits) and checks
 *   logits max rel err <= 1e-5, loss and dlogits (through vpd's loss layers) <= 1e-5,
 *   every parameter gradient and the input gradient <= 1e-4,
 * printing each measured error. A forward through a pass-through hook must equal the
 * plain forward bit for bit. */
#include "testutil.h"
#include "vpd/io.h"
#include "vpd/models.h"
#include "vpd/nn.h"

/* pass-through hook: the target layer itself (what a decomposition with exact weights
 * and all masks at 1 must reproduce) */
typedef struct {
    vpd_hook base;
    const vpd_model *m;
    int calls;
} plain_hook;

static void plain_fwd(vpd_hook *h, int l, const real *x, const int32_t *tok, real *y, int N) {
    plain_hook *p = (plain_hook *)h;
    const vpd_layer_info *L = &p->m->layers[l];
    p->calls++;
    if (L->embedding) embedding_forward(y, tok, L->W, N, L->d_in, L->d_out);
    else linear_forward(y, x, L->W, L->b, N, L->d_in, L->d_out);
}

static double check_tensor(const char *dir, const char *what, const real *got, const real *ref, size_t n, double tol) {
    double e = tu_max_rel_err(got, ref, n, 1e-6);
    fprintf(stderr, "  %-12s %-34s n=%-6zu max rel err %.3e %s\n", dir, what, n, e, e <= tol ? "" : "  <-- FAIL");
    CHECK(e <= tol, "%s: %s max rel err %.3e > %.0e", dir, what, e, tol);
    return e;
}

static void run_fixture(const char *dir) {
    char path[1024];
    vpd_model m;
    vpd_status s = vpd_model_load(&m, dir);
    CHECK(s == VPD_OK, "vpd_model_load(%s): %s", dir, vpd_last_error());
    if (s != VPD_OK) return;
    snprintf(path, sizeof path, "%s/reference.h5", dir);
    vpd_h5 f;
    s = vpd_h5_open(&f, path, false);
    CHECK(s == VPD_OK, "open %s: %s", path, vpd_last_error());
    if (s != VPD_OK) { vpd_model_free(&m); return; }
    bool lm = m.cfg.kind == VPD_MODEL_LLAMA;
    fprintf(stderr, "%s: %s, %zu parameters in %d tensors, %d decomposable layers\n", dir,
            vpd_model_kind_name(m.cfg.kind), m.n_params, m.n_pinfo, m.n_layers);

    int nd;
    int64_t shp[VPD_MAX_DIMS];
    s = vpd_h5_dataset_shape(&f, lm ? "tokens" : "x", &nd, shp);
    CHECK(s == VPD_OK && nd == 2, "%s: input dataset: %s", path, vpd_last_error());
    if (s != VPD_OK || nd != 2) { vpd_h5_close(&f); vpd_model_free(&m); return; }
    int B = (int)shp[0], S = lm ? (int)shp[1] : 1, D = vpd_model_out_dim(&m);
    size_t n_in = (size_t)shp[0] * shp[1], n_out = vpd_model_out_size(&m, B, S);

    real *x = NULL, *tx = NULL, *gin = NULL, *dinput = NULL;
    int32_t *tok = NULL, *ttok = NULL;
    real *out = calloc(n_out, sizeof(real)), *out2 = calloc(n_out, sizeof(real));
    real *ref = calloc(n_out, sizeof(real)), *dref = calloc(n_out, sizeof(real));
    real *dlog = calloc(n_out, sizeof(real)), *probs = calloc(n_out, sizeof(real));
    real *dparams = calloc(m.n_params, sizeof(real)), *gbuf = calloc(m.n_params, sizeof(real));
    real loss_ref = 0;
    CHECK(vpd_h5_read_real(&f, "logits", ref, lm ? 3 : 2, lm ? (int64_t[]){B, S, D} : (int64_t[]){B, D}) == VPD_OK,
          "%s logits: %s", path, vpd_last_error());
    CHECK(vpd_h5_read_real(&f, "dlogits", dref, lm ? 3 : 2, lm ? (int64_t[]){B, S, D} : (int64_t[]){B, D}) == VPD_OK,
          "%s dlogits: %s", path, vpd_last_error());
    CHECK(vpd_h5_read_real(&f, "loss", &loss_ref, 1, (int64_t[]){1}) == VPD_OK, "%s loss: %s", path, vpd_last_error());
    vpd_model_input in = {.B = B, .S = S};
    if (lm) {
        tok = calloc(n_in, sizeof *tok);
        ttok = calloc(n_in, sizeof *ttok);
        CHECK(vpd_h5_read_i32(&f, "tokens", tok, 2, shp) == VPD_OK, "%s tokens: %s", path, vpd_last_error());
        CHECK(vpd_h5_read_i32(&f, "targets", ttok, 2, shp) == VPD_OK, "%s targets: %s", path, vpd_last_error());
        in.tokens = tok;
    } else {
        x = calloc(n_in, sizeof *x);
        tx = calloc(n_in, sizeof *tx);
        gin = calloc(n_in, sizeof *gin);
        dinput = calloc(n_in, sizeof *dinput);
        CHECK(vpd_h5_read_real(&f, "x", x, 2, shp) == VPD_OK, "%s x: %s", path, vpd_last_error());
        CHECK(vpd_h5_read_real(&f, "targets", tx, 2, shp) == VPD_OK, "%s targets: %s", path, vpd_last_error());
        CHECK(vpd_h5_read_real(&f, "grad_input", gin, 2, shp) == VPD_OK, "%s grad_input: %s", path, vpd_last_error());
        in.x = x;
    }

    CHECK(vpd_model_reserve(&m, B, S) == VPD_OK, "reserve: %s", vpd_last_error());
    vpd_model_forward(&m, &in, out, NULL);
    check_tensor(dir, "logits", out, ref, n_out, 1e-5);

    /* loss and its gradient through vpd's loss layers, against PyTorch's */
    real loss;
    if (lm) {
        loss = cross_entropy_forward(probs, out, ttok, B * S, D);
        cross_entropy_backward(dlog, probs, ttok, B * S, D, 1);
    } else {
        loss = mse_forward(out, tx, n_out);
        mse_backward(dlog, out, tx, n_out, 1);
    }
    check_tensor(dir, "loss", &loss, &loss_ref, 1, 1e-5);
    check_tensor(dir, "dlogits", dlog, dref, n_out, 1e-5);

    /* backward seeded with PyTorch's dlogits: the model's own backward in isolation */
    vpd_model_backward(&m, dref, dparams, dinput, NULL);
    for (int p = 0; p < m.n_pinfo; p++) {
        const vpd_param_info *pi = &m.pinfo[p];
        char name[160];
        snprintf(name, sizeof name, "grad/%s", pi->name);
        s = vpd_h5_read_real(&f, name, gbuf, pi->ndim, pi->shape);
        CHECK(s == VPD_OK, "%s %s: %s", path, name, vpd_last_error());
        if (s == VPD_OK) check_tensor(dir, name, dparams + pi->offset, gbuf, pi->numel, 1e-4);
    }
    if (!lm) check_tensor(dir, "grad_input", dinput, gin, n_in, 1e-4);

    /* a pass-through hook gives the same logits exactly, and is called once per layer */
    plain_hook h = {{plain_fwd, NULL}, &m, 0};
    vpd_model_forward(&m, &in, out2, &h.base);
    CHECK(memcmp(out, out2, n_out * sizeof(real)) == 0, "%s: forward through a pass-through hook differs", dir);
    CHECK(h.calls == m.n_layers, "%s: hook called %d times for %d layers", dir, h.calls, m.n_layers);

    free(out); free(out2); free(ref); free(dref); free(dlog); free(probs); free(dparams); free(gbuf);
    free(x); free(tx); free(gin); free(dinput); free(tok); free(ttok);
    vpd_h5_close(&f);
    vpd_model_free(&m);
}

int main(int argc, char **argv) {
    static const char *defaults[] = {"models/tms", "models/resid_mlp", "models/llama_gqa", "models/llama_mha"};
    int n = argc > 1 ? argc - 1 : 4;
    for (int i = 0; i < n; i++) run_fixture(argc > 1 ? argv[i + 1] : defaults[i]);
    TEST_REPORT();
}
