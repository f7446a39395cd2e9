/* The variant tables (loss_table.h, ci.h vpd_ci_ops) and the shared L0 / alive counting
 * (ci.h): every loss kind and CI type has its own, consistent row; classnames and fn_type
 * names round-trip; the counting rule on a 3×2 block small enough to check by hand. */
#include <string.h>

#include "testutil.h"
#include "vpd/loss_table.h"

static void test_loss_table(void) {
    for (int k = 0; k < VPD_LOSS_KIND_COUNT; k++) {
        const vpd_loss_def *def = vpd_loss_def_of((vpd_loss_kind)k);
        CHECK(def->kind == (vpd_loss_kind)k, "row %d holds kind %d", k, (int)def->kind);
        CHECK(def->classname && def->classname[0], "kind %d has no classname", k);
        CHECK(def->evaluate != NULL, "%s has no evaluate", def->classname);
        CHECK(vpd_loss_def_find(def->classname) == def, "%s does not find its own row", def->classname);
        vpd_loss_kind back;
        CHECK(vpd_loss_kind_parse(def->classname, &back) == VPD_OK && back == (vpd_loss_kind)k, "%s: parse", def->classname);
        CHECK(!strcmp(vpd_loss_classname((vpd_loss_kind)k), def->classname), "%s: classname", def->classname);
        /* a row with fields has a reader of them, and a routed loss reads its routing */
        CHECK((def->fields != 0) == (def->read_config != NULL), "%s: fields 0x%x but reader %p", def->classname,
              def->fields, (void *)def->read_config);
        CHECK(!!(def->fields & VPD_LOSS_FIELDS_ROUTING) == !!(def->needs & VPD_LOSS_NEEDS_ROUTING),
              "%s: routing field and routing need disagree", def->classname);
        CHECK(!!(def->fields & VPD_LOSS_FIELDS_PGD) == !!(def->needs & VPD_LOSS_NEEDS_PGD_INIT),
              "%s: PGD fields and PGD init need disagree", def->classname);
        CHECK(def->persistent == !!(def->fields & VPD_LOSS_FIELDS_PPGD), "%s: persistent without PPGD fields",
              def->classname);
        /* mask samples are stochastic sources */
        if (def->needs & VPD_LOSS_NEEDS_MASK_SAMPLES)
            CHECK(def->masks == VPD_MASKS_SOURCES, "%s draws mask samples but its masks are not sources", def->classname);
        for (int j = 0; j < k; j++)
            CHECK(strcmp(vpd_loss_def_of((vpd_loss_kind)j)->classname, def->classname) != 0, "classname %s twice",
                  def->classname);
    }
    /* spot checks against the method (VPD_METHOD.md §4) */
    CHECK(vpd_loss_def_of(VPD_LOSS_IMPORTANCE_MINIMALITY)->over_blocks == VPD_REDUCE_SUM,
          "importance minimality must sum over component blocks");
    CHECK(vpd_loss_def_of(VPD_LOSS_STOCHASTIC_RECON)->over_blocks == VPD_REDUCE_SAME, "recon: whole value per block");
    CHECK(vpd_loss_def_of(VPD_LOSS_PPGD_RECON_SUBSET)->persistent, "PersistentPGDReconSubsetLoss keeps state");
    CHECK(vpd_loss_def_of(VPD_LOSS_STOCHASTIC_HIDDEN_ACTS_RECON)->needs & VPD_LOSS_NEEDS_HIDDEN_ACTS, "hidden acts");
    CHECK(vpd_loss_def_of(VPD_LOSS_PGD_RECON_LAYERWISE)->layerwise, "PGDReconLayerwiseLoss is layerwise");
    CHECK(vpd_loss_def_find("FaithfulLoss") == NULL, "unknown classname found");
    vpd_loss_kind k;
    CHECK(vpd_loss_kind_parse("FaithfulLoss", &k) == VPD_ERR_CONFIG && strstr(vpd_last_error(), "FaithfulnessLoss"),
          "unknown classname: the error lists the known ones: %s", vpd_last_error());
}

static void test_ci_ops(void) {
    for (int t = 0; t <= (int)VPD_CI_GLOBAL_REVERSE_RESIDUAL; t++) {
        const vpd_ci_ops *o = vpd_ci_ops_of((vpd_ci_type)t);
        CHECK(o && o->type == (vpd_ci_type)t, "CI type %d: no row or the wrong one", t);
        if (!o) continue;
        vpd_ci_type back;
        CHECK(vpd_ci_type_parse(o->name, &back) == VPD_OK && back == (vpd_ci_type)t, "fn_type %s: parse", o->name);
        CHECK(!strcmp(vpd_ci_type_name((vpd_ci_type)t), o->name), "fn_type %s: name", o->name);
        CHECK(o->create != NULL, "%s has no create", o->name);
        CHECK(vpd_ci_type_is_global((vpd_ci_type)t) == o->global, "%s: global", o->name);
        if (t != VPD_CI_GLOBAL_REVERSE_RESIDUAL)
            CHECK(o->init && o->forward && o->backward, "%s: init / forward / backward missing", o->name);
    }
    CHECK(vpd_ci_ops_of((vpd_ci_type)99) == NULL, "out-of-range type has a row");
    CHECK(vpd_ci_type_takes_component_acts(VPD_CI_MLP) && !vpd_ci_type_takes_component_acts(VPD_CI_VECTOR_MLP),
          "only mlp reads component activations");
    /* the transformer needs its config; the reverse residual is refused with a clear error */
    vpd_ci_layer_spec sp = {"a", 4, 2};
    vpd_ci_fn *ci = NULL;
    CHECK(vpd_ci_create(&ci, VPD_CI_GLOBAL_SHARED_TRANSFORMER, &sp, 1, NULL, 0) == VPD_ERR_CONFIG && !ci &&
              strstr(vpd_last_error(), "vpd_ci_create_transformer"),
          "transformer without its config: %s", vpd_last_error());
    CHECK(vpd_ci_create(&ci, VPD_CI_GLOBAL_REVERSE_RESIDUAL, &sp, 1, NULL, 0) == VPD_ERR_CONFIG && !ci &&
              strstr(vpd_last_error(), "not implemented"),
          "reverse residual: %s", vpd_last_error());
    int h = 3;
    CHECK(vpd_ci_create_from(&ci, VPD_CI_VECTOR_MLP, &sp, 1, &(vpd_ci_args){.hidden = &h, .n_hidden = 1}) == VPD_OK &&
              ci && ci->ops == vpd_ci_ops_of(VPD_CI_VECTOR_MLP),
          "create_from vector_mlp: %s", vpd_last_error());
    vpd_ci_free(ci);
}

static void test_l0_alive(void) {
    /* g [N=3, C=2]: column 0 = {0, 0.5, 1}, column 1 = {0, 0, 1e-7} */
    const real g[6] = {0, 0, (real)0.5, 0, 1, (real)1e-7};
    double cnt = 0;
    vpd_ci_count_l0(g, 3, 2, 0.0, &cnt); /* 0.5, 1, 1e-7 */
    CHECK(cnt == 3, "L0 (g > 0) count %g, expected 3", cnt);
    vpd_ci_count_l0(g, 3, 2, 0.4, &cnt); /* accumulates: + 0.5, 1 */
    CHECK(cnt == 5, "L0 (g > 0.4) accumulated count %g, expected 5", cnt);
    double gsum[2] = {0, 0};
    vpd_ci_sum_g(g, 3, 2, gsum);
    CHECK(gsum[0] == 1.5 && fabs(gsum[1] - 1e-7) < 1e-12, "Σ g = {%g, %g}, expected {1.5, 1e-7}", gsum[0], gsum[1]);
    double mean[2] = {gsum[0] / 3, gsum[1] / 3}; /* 0.5, 3.3e-8: the second is dead (<= 1e-6) */
    bool alive[2] = {false, true};
    CHECK(vpd_ci_count_alive(mean, 2, alive) == 1 && alive[0] && !alive[1], "alive: 1 of 2 (mean g > 1e-6)");
    CHECK(vpd_ci_count_alive(mean, 2, NULL) == 1, "alive without flags");
}

int main(void) {
    test_loss_table();
    test_ci_ops();
    test_l0_alive();
    TEST_REPORT();
}
