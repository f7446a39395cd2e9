/* hf_gpt_compare MODEL_DIR REF.safetensors [TOL]: vpd's GPT-2 / GPT-NeoX forward and backward
 * against transformers' (tools/reference/hf_reference.py, float64 from the same weights).
 * Runs the token ids `ids` [B, S] and compares, as max |vpd − ref| / max |ref|:
 *   logits [B, S, V]                                   <= TOL (1e-5)
 *   grad_inputs_embeds [B, S, D] = d Σ logits ⊙ R / d inputs_embeds: the dy the model hands
 *     the token-embedding layer's hook in backward     <= TOL
 *   grad.<param> for every parameter (Conv1D weights compared in the checkpoint's [in, out]
 *     layout; the tied wte's gradient includes the head and the input path) <= 10·TOL
 *     (sums over all positions, float32 rounding grows with them).
 * Also checks forward_from / backward_to against the whole passes on this model. Prints one
 * line per comparison; exits 1 on a failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpd/io.h"
#include "vpd/models.h"
#include "vpd/nn.h"

static double maxrel(const real *a, const real *b, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - (double)b[i]));
        r = fmax(r, fabs((double)b[i]));
    }
    return d / (r > 0 ? r : 1);
}

/* a pass-through hook that keeps the token-embedding layer's output gradient */
typedef struct {
    vpd_hook base;
    vpd_model *m;
    real *demb; /* [N, D] */
} cap_hook;

static void cap_fwd(vpd_hook *h, int l, const real *x, const int32_t *tok, real *y, int N) {
    const vpd_layer_info *L = &((cap_hook *)h)->m->layers[l];
    if (L->embedding) embedding_forward(y, tok, L->W, N, L->d_in, L->d_out);
    else linear_forward(y, x, L->W, L->b, N, L->d_in, L->d_out);
}

static void cap_bwd(vpd_hook *h, int l, const real *x, const int32_t *tok, const real *dy, real *dx, int N) {
    (void)tok;
    cap_hook *c = (cap_hook *)h;
    const vpd_layer_info *L = &c->m->layers[l];
    if (L->embedding) memcpy(c->demb, dy, sizeof(real) * (size_t)N * L->d_out);
    else linear_backward(dx, NULL, NULL, dy, x, L->W, N, L->d_in, L->d_out);
}

#define DIE(...) do { fprintf(stderr, "hf_gpt_compare: " __VA_ARGS__); fprintf(stderr, "\n"); return 1; } while (0)

int main(int argc, char **argv) {
    if (argc < 3) DIE("usage: hf_gpt_compare MODEL_DIR REF.safetensors [TOL]");
    double tol = argc > 3 ? atof(argv[3]) : 1e-5;
    vpd_model m;
    if (vpd_model_load(&m, argv[1]) != VPD_OK) DIE("%s", vpd_last_error());
    vpd_safetensors ref;
    if (vpd_st_open(&ref, argv[2]) != VPD_OK) DIE("%s", vpd_last_error());
    real *ids = NULL;
    int nd;
    int64_t sh[VPD_MAX_DIMS];
    if (vpd_st_read_alloc(&ref, "ids", &ids, &nd, sh) != VPD_OK || nd != 2) DIE("%s: ids: %s", argv[2], vpd_last_error());
    int B = (int)sh[0], S = (int)sh[1], V = m.cfg.vocab_size, D = m.cfg.n_embd, N = B * S;
    int64_t lsh[3] = {B, S, V}, esh[3] = {B, S, D};
    size_t nout = (size_t)N * V;
    real *logits = malloc(nout * sizeof(real)), *R = malloc(nout * sizeof(real)), *out = malloc(nout * sizeof(real));
    real *out2 = malloc(nout * sizeof(real)), *gemb = malloc(sizeof(real) * (size_t)N * D);
    real *dparams = calloc(m.n_params, sizeof(real));
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)N);
    cap_hook h = {.base = {cap_fwd, cap_bwd}, .m = &m, .demb = calloc((size_t)N * D, sizeof(real))};
    if (vpd_st_read(&ref, "logits", logits, 3, lsh) != VPD_OK || vpd_st_read(&ref, "R", R, 3, lsh) != VPD_OK ||
        vpd_st_read(&ref, "grad_inputs_embeds", gemb, 3, esh) != VPD_OK)
        DIE("%s", vpd_last_error());
    for (int i = 0; i < N; i++) tok[i] = (int32_t)ids[i];
    if (vpd_model_reserve(&m, B, S) != VPD_OK) DIE("%s", vpd_last_error());
    vpd_model_input in = {.B = B, .S = S, .tokens = tok};
    int fails = 0;

    vpd_model_forward(&m, &in, out, NULL);
    double e = maxrel(out, logits, nout);
    printf("%s: %s logits [%d, %d, %d] max rel diff %.3e (tol %.0e)\n", argv[1], vpd_model_kind_name(m.cfg.kind), B, S,
           V, e, tol);
    fails += !(e <= tol);
    vpd_model_backward(&m, R, dparams, NULL, NULL);

    vpd_model_forward(&m, &in, out2, &h.base);
    fails += memcmp(out, out2, nout * sizeof(real)) != 0;
    vpd_model_backward(&m, R, NULL, NULL, &h.base);
    e = maxrel(h.demb, gemb, (size_t)N * D);
    printf("%s: grad wrt inputs_embeds [%d, %d, %d] max rel diff %.3e (tol %.0e)\n", argv[1], B, S, D, e, tol);
    fails += !(e <= tol);

    double worst = 0;
    const char *worst_name = "";
    for (int p = 0; p < m.n_pinfo; p++) {
        const vpd_param_info *pi = &m.pinfo[p];
        char nm[200];
        snprintf(nm, sizeof nm, "grad.%s", pi->name);
        real *g = malloc(pi->numel * sizeof(real)), *mine = dparams + pi->offset, *tr = NULL;
        int64_t shp[VPD_MAX_DIMS];
        memcpy(shp, pi->shape, sizeof shp);
        if (pi->file_transposed) { /* reference [in, out]: transpose ours to compare */
            shp[0] = pi->shape[1];
            shp[1] = pi->shape[0];
            tr = malloc(pi->numel * sizeof(real));
            for (int64_t i = 0; i < pi->shape[0]; i++)
                for (int64_t j = 0; j < pi->shape[1]; j++) tr[j * pi->shape[0] + i] = mine[i * pi->shape[1] + j];
            mine = tr;
        }
        if (vpd_st_read(&ref, nm, g, pi->ndim, shp) != VPD_OK) DIE("%s", vpd_last_error());
        double eg = maxrel(mine, g, pi->numel);
        if (eg > worst) {
            worst = eg;
            worst_name = pi->name;
        }
        if (!(eg <= 10 * tol)) {
            printf("  FAIL %s: max rel diff %.3e\n", nm, eg);
            fails++;
        }
        free(g);
        free(tr);
    }
    printf("%s: %d parameter gradients, worst max rel diff %.3e (%s; tol %.0e)\n", argv[1], m.n_pinfo, worst,
           worst_name, 10 * tol);
    free(ids); free(logits); free(R); free(out); free(out2); free(gemb); free(dparams); free(tok); free(h.demb);
    vpd_st_close(&ref);
    vpd_model_free(&m);
    return fails ? 1 : 0;
}
