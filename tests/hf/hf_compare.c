/* hf_compare MODEL_DIR REF.safetensors [TOL]: vpd's forward and backward of a Hugging Face
 * model directory against transformers' (tools/reference/hf_reference.py wrote REF from the
 * same weights, in float64). Loads MODEL_DIR as vpd does (config.json dispatch, sharded or
 * single safetensors, F32/F16/BF16), runs the token ids `ids` [B, S], and compares
 *   logits                       max |vpd − ref| / max |ref|             <= TOL (1e-5)
 *   grad.<param> for every param d Σ logits ⊙ R / d param, per tensor     <= TOL
 * (the reference's grad.model.embed_tokens.weight includes the input-embedding path).
 * Prints one line per comparison and the worst; exits 1 on a failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpd/io.h"
#include "vpd/models.h"

static double maxrel(const real *a, const real *b, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - (double)b[i]));
        r = fmax(r, fabs((double)b[i]));
    }
    return d / (r > 0 ? r : 1);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: hf_compare MODEL_DIR REF.safetensors [TOL]\n");
        return 2;
    }
    double tol = argc > 3 ? atof(argv[3]) : 1e-5;
    vpd_model m;
    if (vpd_model_load(&m, argv[1]) != VPD_OK) {
        fprintf(stderr, "hf_compare: %s\n", vpd_last_error());
        return 1;
    }
    vpd_safetensors ref;
    if (vpd_st_open(&ref, argv[2]) != VPD_OK) {
        fprintf(stderr, "hf_compare: %s\n", vpd_last_error());
        return 1;
    }
    real *ids = NULL, *logits = NULL, *R = NULL;
    int nd;
    int64_t sh[VPD_MAX_DIMS];
    if (vpd_st_read_alloc(&ref, "ids", &ids, &nd, sh) != VPD_OK || nd != 2) {
        fprintf(stderr, "hf_compare: %s: ids: %s\n", argv[2], vpd_last_error());
        return 1;
    }
    int B = (int)sh[0], S = (int)sh[1], V = m.cfg.vocab_size;
    int64_t lsh[3] = {B, S, V};
    size_t nout = (size_t)B * S * V;
    logits = malloc(nout * sizeof(real));
    R = malloc(nout * sizeof(real));
    real *out = malloc(nout * sizeof(real)), *dparams = calloc(m.n_params, sizeof(real));
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)B * S);
    if (vpd_st_read(&ref, "logits", logits, 3, lsh) != VPD_OK || vpd_st_read(&ref, "R", R, 3, lsh) != VPD_OK) {
        fprintf(stderr, "hf_compare: %s\n", vpd_last_error());
        return 1;
    }
    for (int i = 0; i < B * S; i++) tok[i] = (int32_t)ids[i];
    if (vpd_model_reserve(&m, B, S) != VPD_OK) {
        fprintf(stderr, "hf_compare: %s\n", vpd_last_error());
        return 1;
    }
    vpd_model_input in = {.B = B, .S = S, .tokens = tok};
    vpd_model_forward(&m, &in, out, NULL);
    int fails = 0;
    double e = maxrel(out, logits, nout);
    printf("%s: logits [%d, %d, %d] max rel diff %.3e (tol %.0e)\n", argv[1], B, S, V, e, tol);
    fails += !(e <= tol);
    vpd_model_backward(&m, R, dparams, NULL, NULL);
    double worst = 0;
    const char *worst_name = "";
    for (int p = 0; p < m.n_pinfo; p++) {
        char nm[200];
        snprintf(nm, sizeof nm, "grad.%s", m.pinfo[p].name);
        real *g = malloc(m.pinfo[p].numel * sizeof(real));
        if (vpd_st_read(&ref, nm, g, m.pinfo[p].ndim, m.pinfo[p].shape) != VPD_OK) {
            fprintf(stderr, "hf_compare: %s\n", vpd_last_error());
            return 1;
        }
        double eg = maxrel(dparams + m.pinfo[p].offset, g, m.pinfo[p].numel);
        if (eg > worst) {
            worst = eg;
            worst_name = m.pinfo[p].name;
        }
        if (!(eg <= tol)) {
            printf("  FAIL %s: max rel diff %.3e\n", nm, eg);
            fails++;
        }
        free(g);
    }
    printf("%s: %d parameter gradients, worst max rel diff %.3e (%s; tol %.0e)\n", argv[1], m.n_pinfo, worst,
           worst_name, tol);
    free(ids);
    free(logits);
    free(R);
    free(out);
    free(dparams);
    free(tok);
    vpd_st_close(&ref);
    vpd_model_free(&m);
    return fails ? 1 : 0;
}
