/* global_shared_transformer CI function against PyTorch (float build).
 * tests/ci_transformer/make_ref.py (run by tests/cmake/ci_transformer.cmake before this
 * test) re-implements spd's GlobalSharedTransformerCiFn, draws float32 weights and
 * inputs and writes them with the float64 outputs to ci_transformer/ref.h5 (relative to
 * the fixtures directory, the working directory of the test). For each case (lm: B 2,
 * S 5; wide: 3 blocks, 4 heads, two hidden widths, rope_base 100, S 7; toy: S 1, no
 * hidden width) this test builds the function from the stored config, loads every
 * tensor by its spd name (the parameter counts must match, so the two tensor sets are
 * the same), runs the forward and requires max |z − z_torch| / max |z_torch| ≤ 1e-5. */
#include "testutil.h"
#include "vpd/ci.h"
#include "vpd/io.h"

#define L 3
static const vpd_ci_layer_spec specs[L] = {
    {"h.0.attn.q_proj", 6, 4},
    {"h.0.mlp.c_fc", 5, 3},
    {"h.1.mlp.down_proj", 7, 5},
};

static void run_case(vpd_h5 *f, const char *cs) {
    char p[512];
    int nd;
    int64_t shp[VPD_MAX_DIMS];
    snprintf(p, sizeof p, "/%s/cfg", cs);
    if (vpd_h5_dataset_shape(f, p, &nd, shp) != VPD_OK || nd != 1 || shp[0] < 7 || shp[0] > 7 + VPD_CI_MAX_HIDDEN) {
        CHECK(0, "%s: bad cfg dataset: %s", cs, vpd_last_error());
        return;
    }
    int32_t cf[7 + VPD_CI_MAX_HIDDEN];
    double rb;
    int64_t one = 1;
    real rbr;
    CHECK(vpd_h5_read_i32(f, p, cf, 1, shp) == VPD_OK, "%s: read cfg", cs);
    snprintf(p, sizeof p, "/%s/rope_base", cs);
    CHECK(vpd_h5_read_real(f, p, &rbr, 1, &one) == VPD_OK, "%s: read rope_base", cs);
    rb = (double)rbr;
    vpd_ci_transformer_cfg cfg = {.d_model = cf[0], .n_blocks = cf[1], .n_heads = cf[2], .max_len = cf[3],
                                  .n_mlp_hidden = cf[6], .rope_base = rb};
    for (int k = 0; k < cf[6]; k++) cfg.mlp_hidden[k] = cf[7 + k];
    int B = cf[4], S = cf[5], N = B * S;
    vpd_ci_fn *ci = NULL;
    if (vpd_ci_create_transformer(&ci, specs, L, &cfg) != VPD_OK) {
        CHECK(0, "%s: create: %s", cs, vpd_last_error());
        return;
    }
    CHECK(vpd_ci_set_seq_len(ci, S) == VPD_OK && vpd_ci_reserve(ci, N) == VPD_OK, "%s: reserve", cs);
    int64_t np;
    snprintf(p, sizeof p, "/%s/n_params", cs);
    CHECK(vpd_h5_read_i64(f, p, &np, 1, &one) == VPD_OK && np == (int64_t)ci->n_params,
          "%s: %zu parameters in vpd, %lld in torch", cs, ci->n_params, (long long)np);
    for (int i = 0; i < ci->n_tensors; i++) {
        const vpd_ci_param_info *t = &ci->tensors[i];
        snprintf(p, sizeof p, "/%s/params/%s", cs, t->name);
        CHECK(vpd_h5_read_real(f, p, ci->params + t->offset, t->ndim, t->shape) == VPD_OK, "%s: tensor %s: %s", cs,
              t->name, vpd_last_error());
    }
    real *in[L], *z[L], *zr[L];
    for (int l = 0; l < L; l++) {
        int64_t si[2] = {N, specs[l].d_in}, sz[2] = {N, specs[l].C};
        in[l] = vpd_malloc(sizeof(real) * (size_t)N * specs[l].d_in, "in");
        z[l] = vpd_malloc(sizeof(real) * (size_t)N * specs[l].C, "z");
        zr[l] = vpd_malloc(sizeof(real) * (size_t)N * specs[l].C, "zr");
        snprintf(p, sizeof p, "/%s/in/%s", cs, specs[l].name);
        CHECK(vpd_h5_read_real(f, p, in[l], 2, si) == VPD_OK, "%s: %s", cs, vpd_last_error());
        snprintf(p, sizeof p, "/%s/z/%s", cs, specs[l].name);
        CHECK(vpd_h5_read_real(f, p, zr[l], 2, sz) == VPD_OK, "%s: %s", cs, vpd_last_error());
    }
    CHECK(vpd_ci_forward(ci, z, (const real *const *)in, N) == VPD_OK, "%s: forward: %s", cs, vpd_last_error());
    for (int l = 0; l < L; l++) {
        double e = tu_max_rel_err(z[l], zr[l], (size_t)N * specs[l].C, 1e-6);
        fprintf(stderr, "  %-5s %-18s max rel err vs torch %.3e (z[0] %.6f ref %.6f)\n", cs, specs[l].name, e,
                (double)z[l][0], (double)zr[l][0]);
        CHECK(e <= 1e-5, "%s: layer %s: max rel err %.3e > 1e-5", cs, specs[l].name, e);
        vpd_free(in[l]);
        vpd_free(z[l]);
        vpd_free(zr[l]);
    }
    vpd_ci_free(ci);
}

int main(void) {
    vpd_h5 f;
    if (vpd_h5_open(&f, "ci_transformer/ref.h5", false) != VPD_OK) {
        CHECK(0, "cannot open ci_transformer/ref.h5 (written by tests/ci_transformer/make_ref.py): %s",
              vpd_last_error());
        TEST_REPORT();
    }
    const char *cases[] = {"lm", "wide", "toy"};
    for (int i = 0; i < 3; i++) run_case(&f, cases[i]);
    vpd_h5_close(&f);
    TEST_REPORT();
}
