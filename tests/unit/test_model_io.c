/* Model directories: config.json parsing (each model type; every unsupported value is an
 * error naming config.json and the key), save/load round trips for the three models in
 * safetensors and HDF5, directories converted from .pth by tools/pth_to_model_dir.py
 * (fixtures from tests/cmake/io.cmake), tied weights stored under either name, and bad
 * weights (missing / wrong shape / NaN tensor, missing files) with named messages. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "vpd/io.h"
#include "vpd/models.h"

static real val(int i, int seed) { return (real)(((37 * i + 11 * seed) % 64) / 16.0 - 2.0); }

static void write_config(const char *dir, const char *json) {
    vpd_mkdirs(dir);
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    fputs(json, f);
    fclose(f);
}

static void test_config(void) {
    vpd_model_config c;
    write_config("cfg_tms", "{\"model_type\":\"tms\",\"n_features\":5,\"n_hidden\":2,\"n_hidden_layers\":0,"
                            "\"tied_weights\":true,\"init_bias_to_zero\":false,\"device\":\"cpu\"}");
    CHECK(vpd_model_config_read(&c, "cfg_tms") == VPD_OK, "tms: %s", vpd_last_error());
    CHECK(c.kind == VPD_MODEL_TMS && c.n_features == 5 && c.n_hidden == 2, "tms values");
    write_config("cfg_resid", "{\"model_type\":\"resid_mlp\",\"n_features\":100,\"d_embed\":1000,\"d_mlp\":50,"
                              "\"n_layers\":1,\"act_fn_name\":\"relu\",\"in_bias\":false,\"out_bias\":false}");
    CHECK(vpd_model_config_read(&c, "cfg_resid") == VPD_OK, "resid: %s", vpd_last_error());
    CHECK(c.kind == VPD_MODEL_RESID_MLP && c.n_features == 100 && c.d_embed == 1000 && c.d_mlp == 50 &&
              c.n_layers == 1,
          "resid values");
    write_config("cfg_llama", "{\"model_type\":\"llama_simple_mlp\",\"vocab_size\":50,\"n_ctx\":32,\"n_embd\":16,"
                              "\"n_head\":4,\"n_key_value_heads\":2,\"n_intermediate\":24,\"n_layer\":2,"
                              "\"rms_norm_eps\":1e-5,\"rope_theta\":500}");
    CHECK(vpd_model_config_read(&c, "cfg_llama") == VPD_OK, "llama: %s", vpd_last_error());
    CHECK(c.kind == VPD_MODEL_LLAMA && c.vocab_size == 50 && c.n_ctx == 32 && c.n_embd == 16 && c.n_head == 4 &&
              c.n_key_value_heads == 2 && c.n_intermediate == 24 && c.n_layers == 2 && c.rms_eps == 1e-5 &&
              c.rope_theta == 500,
          "llama values");
    /* the reference's own LlamaSimpleMLP config names are accepted */
    CHECK(vpd_model_config_parse(&c, "{\"model_type\":\"LlamaSimpleMLP\",\"vocab_size\":50,\"n_embd\":16,"
                                     "\"n_head\":4,\"n_key_value_heads\":2,\"n_intermediate\":24,\"n_layer\":2,"
                                     "\"rotary_base\":20000,\"block_size\":64,\"flash_attention\":true}",
                                 "ref") == VPD_OK && c.rope_theta == 20000 && c.n_ctx == 64,
          "reference names: %s", vpd_last_error());

    struct { const char *json, *key; } bad[] = {
        {"{\"model_type\":\"tms\",\"n_features\":5,\"n_hidden\":2,\"n_hidden_layers\":1}", "n_hidden_layers"},
        {"{\"model_type\":\"tms\",\"n_features\":5,\"n_hidden\":2,\"tied_weights\":false}", "tied_weights"},
        {"{\"model_type\":\"tms\",\"n_features\":5}", "n_hidden"},
        {"{\"model_type\":\"tms\",\"n_features\":5.5,\"n_hidden\":2}", "n_features"},
        {"{\"model_type\":\"resid_mlp\",\"n_features\":4,\"d_embed\":8,\"d_mlp\":3,\"n_layers\":1,"
         "\"act_fn_name\":\"gelu\"}", "act_fn_name"},
        {"{\"model_type\":\"resid_mlp\",\"n_features\":4,\"d_embed\":8,\"d_mlp\":3,\"n_layers\":1,"
         "\"in_bias\":true}", "in_bias"},
        {"{\"model_type\":\"resid_mlp\",\"n_features\":4,\"d_embed\":8,\"d_mlp\":3,\"n_layers\":1,"
         "\"out_bias\":true}", "out_bias"},
        {"{\"model_type\":\"bert\",\"n_layer\":2}", "model_type"},
        {"{\"n_features\":5}", "model_type"},
        {"{\"model_type\":\"llama_simple_mlp\",\"vocab_size\":50,\"n_embd\":16,\"n_head\":4,"
         "\"n_key_value_heads\":3,\"n_intermediate\":24,\"n_layer\":2}", "n_key_value_heads"},
        {"{\"model_type\":\"llama_simple_mlp\",\"vocab_size\":50,\"n_embd\":16,\"n_head\":4,"
         "\"n_key_value_heads\":2,\"n_intermediate\":24,\"n_layer\":2,\"mlp_bias\":true}", "mlp_bias"},
        {"{\"model_type\": \"tms\", ", "JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_config("cfg_bad", bad[i].json);
        EXPECT_FAIL(vpd_model_config_read(&c, "cfg_bad"), VPD_ERR_CONFIG, "cfg_bad/config.json", bad[i].key);
    }
    EXPECT_FAIL(vpd_model_config_read(&c, "no_such_model_dir"), VPD_ERR_IO, "no_such_model_dir/config.json");
}

/* Issue 17: a huge n_layers overflowed `2 + 9 * n_layers` (signed) in the model code; every
 * size is bounded in config.json with the key and the limit named, and so is the product. */
static void test_config_limits(void) {
    vpd_model_config c;
    const char *llama = "{\"model_type\":\"llama_simple_mlp\",\"vocab_size\":%s,\"n_embd\":%s,\"n_head\":1,"
                        "\"n_key_value_heads\":1,\"n_intermediate\":%s,\"n_layer\":%s}";
    struct { const char *v, *d, *f, *l, *key, *limit; } big[] = {
        {"50", "16", "24", "2147483647", "'n_layer' = 2147483647", "4096"},
        {"50", "16", "24", "4097", "'n_layer' = 4097", "4096"},
        {"50", "16", "24", "1e300", "'n_layer'", "4096"},
        {"16777217", "16", "24", "1", "'vocab_size' = 16777217", "16777216"},
        {"50", "1048577", "24", "1", "'n_embd' = 1048577", "1048576"},
        {"50", "16", "2000000000", "1", "'n_intermediate' = 2000000000", "1048576"},
        {"50", "65536", "65536", "4096", "parameters", "reduce vocab_size, n_embd, n_intermediate, n_layer"},
    };
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        char json[512];
        snprintf(json, sizeof json, llama, big[i].v, big[i].d, big[i].f, big[i].l);
        EXPECT_FAIL(vpd_model_config_parse(&c, json, "big.json"), VPD_ERR_CONFIG, "big.json", big[i].key, big[i].limit);
    }
    EXPECT_FAIL(vpd_model_config_parse(&c, "{\"model_type\":\"resid_mlp\",\"n_features\":4,\"d_embed\":8,"
                                           "\"d_mlp\":3,\"n_layers\":100000000}", "r.json"),
                VPD_ERR_CONFIG, "'n_layers' = 100000000", "4096");
    EXPECT_FAIL(vpd_model_config_parse(&c, "{\"model_type\":\"tms\",\"n_features\":1048576,\"n_hidden\":1048576}",
                                       "t.json"), VPD_ERR_CONFIG, "parameters", "n_features, n_hidden");
    /* at the limits, a small model is still fine */
    CHECK(vpd_model_config_parse(&c, "{\"model_type\":\"resid_mlp\",\"n_features\":4,\"d_embed\":8,\"d_mlp\":3,"
                                     "\"n_layers\":4096}", "r.json") == VPD_OK, "4096 layers: %s", vpd_last_error());
}

static void fill_params(vpd_model *m) {
    for (int p = 0; p < m->n_pinfo; p++)
        for (size_t i = 0; i < m->pinfo[p].numel; i++) m->params[m->pinfo[p].offset + i] = val((int)i, p + 1);
    vpd_model_sync(m);
}

/* create, fill, save (fmt), load back, compare every parameter bit for bit */
static void roundtrip(const vpd_model_config *cfg, const char *dir, vpd_weights_format fmt) {
    vpd_model m, r;
    if (vpd_model_create(&m, cfg) != VPD_OK) {
        CHECK(0, "%s: create: %s", dir, vpd_last_error());
        return;
    }
    fill_params(&m);
    CHECK(vpd_model_save_as(&m, dir, fmt) == VPD_OK, "%s: save: %s", dir, vpd_last_error());
    vpd_status s = vpd_model_load(&r, dir);
    CHECK(s == VPD_OK, "%s: load: %s", dir, vpd_last_error());
    if (s == VPD_OK) {
        CHECK(r.cfg.kind == m.cfg.kind && r.n_params == m.n_params, "%s: config/size differ", dir);
        CHECK(r.n_params == m.n_params && memcmp(r.params, m.params, m.n_params * sizeof(real)) == 0,
              "%s: parameters differ", dir);
        vpd_model_free(&r);
    }
    vpd_model_free(&m);
}

static vpd_model_config tms_cfg(void) {
    vpd_model_config c = {0};
    c.kind = VPD_MODEL_TMS;
    c.n_features = 5;
    c.n_hidden = 2;
    return c;
}
static vpd_model_config resid_cfg(void) {
    vpd_model_config c = {0};
    c.kind = VPD_MODEL_RESID_MLP;
    c.n_features = 6;
    c.d_embed = 10;
    c.d_mlp = 4;
    c.n_layers = 2;
    return c;
}
static vpd_model_config llama_cfg(void) {
    vpd_model_config c = {0};
    c.kind = VPD_MODEL_LLAMA;
    c.vocab_size = 13;
    c.n_ctx = 16;
    c.n_embd = 8;
    c.n_head = 2;
    c.n_key_value_heads = 1;
    c.n_intermediate = 12;
    c.n_layers = 2;
    c.rms_eps = 1e-6;
    c.rope_theta = 10000;
    return c;
}

static void test_roundtrips(void) {
    vpd_model_config t = tms_cfg(), r = resid_cfg(), l = llama_cfg();
    roundtrip(&t, "vpd_tms_saved", VPD_WEIGHTS_SAFETENSORS); /* also read by io.python_reads_vpd */
    roundtrip(&t, "vpd_tms_h5", VPD_WEIGHTS_H5);
    roundtrip(&r, "vpd_resid_saved", VPD_WEIGHTS_SAFETENSORS);
    roundtrip(&r, "vpd_resid_h5", VPD_WEIGHTS_H5);
    roundtrip(&l, "vpd_llama_saved", VPD_WEIGHTS_SAFETENSORS);
    roundtrip(&l, "nested/dirs/vpd_llama_h5", VPD_WEIGHTS_H5);

    /* the saved TMS file holds linear2.weight = linear1.weight^T for PyTorch */
    vpd_safetensors st;
    if (vpd_st_open(&st, "vpd_tms_saved/model.safetensors") == VPD_OK) {
        real w1[10], w2[10];
        CHECK(vpd_st_read(&st, "linear1.weight", w1, 2, (int64_t[]){2, 5}) == VPD_OK, "%s", vpd_last_error());
        CHECK(vpd_st_read(&st, "linear2.weight", w2, 2, (int64_t[]){5, 2}) == VPD_OK, "%s", vpd_last_error());
        bool ok = true;
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 5; j++) ok = ok && w2[j * 2 + i] == w1[i * 5 + j];
        CHECK(ok, "linear2.weight is not the transpose of linear1.weight");
        CHECK(vpd_st_metadata(&st, "format") && !strcmp(vpd_st_metadata(&st, "format"), "pt"), "format metadata");
        vpd_st_close(&st);
    } else {
        CHECK(0, "%s", vpd_last_error());
    }
}

/* Rewrite dir/model.safetensors keeping every tensor except `drop`; `bad` (if non-NULL)
 * gets NaN at index 2 or, with reshape, a [numel] 1-D shape. */
static void rewrite(const char *src_dir, const char *dst_dir, const char *drop, const char *bad, bool reshape) {
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", src_dir);
    vpd_safetensors st;
    if (vpd_st_open(&st, p) != VPD_OK) {
        CHECK(0, "%s", vpd_last_error());
        return;
    }
    vpd_tensor t[64];
    real *bufs[64];
    int n = 0;
    for (int i = 0; i < st.n && n < 64; i++) {
        if (drop && !strcmp(st.entries[i].name, drop)) continue;
        int nd;
        int64_t sh[VPD_MAX_DIMS];
        if (vpd_st_read_alloc(&st, st.entries[i].name, &bufs[n], &nd, sh) != VPD_OK) continue;
        if (bad && !strcmp(bad, st.entries[i].name)) {
            if (reshape) {
                int64_t numel = 1;
                for (int d = 0; d < nd; d++) numel *= sh[d];
                nd = 1;
                sh[0] = numel;
            } else {
                bufs[n][2] = INFINITY;
            }
        }
        t[n] = vpd_tensor_view(bufs[n], st.entries[i].name, nd, sh);
        n++;
    }
    vpd_mkdirs(dst_dir);
    snprintf(p, sizeof p, "%s/model.safetensors", dst_dir);
    CHECK(vpd_st_write(p, t, n, NULL, 0) == VPD_OK, "%s", vpd_last_error());
    /* same config */
    vpd_model_config c;
    if (vpd_model_config_read(&c, src_dir) == VPD_OK) {
        char *j = vpd_model_config_to_json(&c);
        write_config(dst_dir, j);
        free(j);
    }
    for (int i = 0; i < n; i++) vpd_free(bufs[i]);
    vpd_st_close(&st);
}

static void test_ties_and_errors(void) {
    vpd_model a, b;
    /* Llama with only lm_head.weight stored: wte.weight comes from the tie */
    rewrite("vpd_llama_saved", "llama_lm_head_only", "wte.weight", NULL, false);
    CHECK(vpd_model_load(&a, "vpd_llama_saved") == VPD_OK, "%s", vpd_last_error());
    vpd_status s = vpd_model_load(&b, "llama_lm_head_only");
    CHECK(s == VPD_OK, "lm_head only: %s", vpd_last_error());
    if (s == VPD_OK) {
        CHECK(memcmp(a.params, b.params, a.n_params * sizeof(real)) == 0, "lm_head-only load differs");
        vpd_model_free(&b);
    }
    vpd_model_free(&a);
    /* TMS with only linear2.weight: linear1.weight is its transpose */
    rewrite("vpd_tms_saved", "tms_linear2_only", "linear1.weight", NULL, false);
    CHECK(vpd_model_load(&a, "vpd_tms_saved") == VPD_OK, "%s", vpd_last_error());
    s = vpd_model_load(&b, "tms_linear2_only");
    CHECK(s == VPD_OK, "linear2 only: %s", vpd_last_error());
    if (s == VPD_OK) {
        CHECK(memcmp(a.params, b.params, a.n_params * sizeof(real)) == 0, "linear2-only load differs");
        vpd_model_free(&b);
    }
    vpd_model_free(&a);

    /* extra tensors and a disagreeing tied duplicate: warnings, the load succeeds */
    {
        real w1[10], w2[10], b2[5], foo[3] = {1, 2, 3};
        for (int i = 0; i < 10; i++) w1[i] = val(i, 3), w2[i] = val(i, 4);
        for (int i = 0; i < 5; i++) b2[i] = val(i, 5);
        vpd_tensor t[4] = {vpd_tensor_view(w1, "linear1.weight", 2, (int64_t[]){2, 5}),
                           vpd_tensor_view(w2, "linear2.weight", 2, (int64_t[]){5, 2}),
                           vpd_tensor_view(b2, "linear2.bias", 1, (int64_t[]){5}),
                           vpd_tensor_view(foo, "foo.extra", 1, (int64_t[]){3})};
        write_config("tms_extra", "{\"model_type\":\"tms\",\"n_features\":5,\"n_hidden\":2,\"note\":1}");
        CHECK(vpd_st_write("tms_extra/model.safetensors", t, 4, NULL, 0) == VPD_OK, "%s", vpd_last_error());
        fprintf(stderr, "  (three warnings expected next: unknown key 'note', tied linear2.weight differs, foo.extra)\n");
        s = vpd_model_load(&a, "tms_extra");
        CHECK(s == VPD_OK, "tms_extra: %s", vpd_last_error());
        if (s == VPD_OK) {
            int p = vpd_model_find_param(&a, "linear1.weight");
            CHECK(p >= 0 && memcmp(a.params + a.pinfo[p].offset, w1, sizeof w1) == 0, "linear1.weight wins the tie");
            vpd_model_free(&a);
        }
    }

    /* missing / wrong-shaped / non-finite tensors name the file and the tensor */
    rewrite("vpd_resid_saved", "resid_missing", "W_U", NULL, false);
    EXPECT_FAIL(vpd_model_load(&a, "resid_missing"), VPD_ERR_FORMAT, "resid_missing/model.safetensors", "'W_U'",
                "W_E");
    rewrite("vpd_resid_saved", "resid_shape", NULL, "layers.1.mlp_in.weight", true);
    EXPECT_FAIL(vpd_model_load(&a, "resid_shape"), VPD_ERR_SHAPE, "resid_shape/model.safetensors",
                "layers.1.mlp_in.weight", "[4, 10]", "[40]");
    rewrite("vpd_llama_saved", "llama_inf", NULL, "h.1.attn.k_proj.weight", false);
    EXPECT_FAIL(vpd_model_load(&a, "llama_inf"), VPD_ERR_VALUE, "llama_inf/model.safetensors",
                "h.1.attn.k_proj.weight", "flat index 2");
    write_config("no_weights", "{\"model_type\":\"tms\",\"n_features\":5,\"n_hidden\":2}");
    EXPECT_FAIL(vpd_model_load(&a, "no_weights"), VPD_ERR_IO, "no_weights", "model.safetensors", "model.h5");
    /* a config that disagrees with the weights: shape error, not garbage */
    write_config("tms_wrong_cfg", "{\"model_type\":\"tms\",\"n_features\":6,\"n_hidden\":2}");
    rewrite("vpd_tms_saved", "tms_wrong_cfg_tmp", NULL, NULL, false);
    rename("tms_wrong_cfg_tmp/model.safetensors", "tms_wrong_cfg/model.safetensors");
    EXPECT_FAIL(vpd_model_load(&a, "tms_wrong_cfg"), VPD_ERR_SHAPE, "tms_wrong_cfg/model.safetensors",
                "linear1.weight", "[2, 6]", "[2, 5]");
    /* HDF5 weights with a missing dataset */
    vpd_h5 f;
    if (vpd_h5_open(&f, "vpd_tms_h5/model.h5", true) == VPD_OK) {
        vpd_h5_close(&f);
        vpd_model_config c = tms_cfg();
        c.n_hidden = 3;
        vpd_model m;
        vpd_model_create(&m, &c);
        fill_params(&m);
        vpd_model_save_as(&m, "tms_h5_bad", VPD_WEIGHTS_H5);
        vpd_model_free(&m);
        write_config("tms_h5_bad", "{\"model_type\":\"tms\",\"n_features\":5,\"n_hidden\":2}");
        EXPECT_FAIL(vpd_model_load(&a, "tms_h5_bad"), VPD_ERR_SHAPE, "tms_h5_bad/model.h5", "/linear1.weight",
                    "[2, 5]", "[3, 5]");
    }
}

static void test_from_python(void) {
    vpd_model m;
    vpd_status s = vpd_model_load(&m, "tms_from_pth");
    CHECK(s == VPD_OK, "tms_from_pth (io.fixtures must run first): %s", vpd_last_error());
    if (s == VPD_OK) {
        const vpd_param_info *w1 = &m.pinfo[vpd_model_find_param(&m, "linear1.weight")];
        const vpd_param_info *b2 = &m.pinfo[vpd_model_find_param(&m, "linear2.bias")];
        bool ok = m.cfg.n_features == 5 && m.cfg.n_hidden == 2;
        for (size_t i = 0; i < w1->numel; i++) ok = ok && m.params[w1->offset + i] == val((int)i, 7);
        for (size_t i = 0; i < b2->numel; i++) ok = ok && m.params[b2->offset + i] == val((int)i, 8);
        CHECK(ok, "tms_from_pth values");
        vpd_model_free(&m);
    }
    s = vpd_model_load(&m, "llama_from_pth");
    CHECK(s == VPD_OK, "llama_from_pth: %s", vpd_last_error());
    if (s == VPD_OK) {
        /* the fixture's seed of each tensor: 20 + its position in the Python dict */
        const char *order[] = {"wte.weight", "h.0.rms_1.weight", "h.0.attn.q_proj.weight", "h.0.attn.k_proj.weight",
                               "h.0.attn.v_proj.weight", "h.0.attn.o_proj.weight", "h.0.rms_2.weight",
                               "h.0.mlp.c_fc.weight", "h.0.mlp.down_proj.weight", "ln_f.weight"};
        CHECK(m.n_pinfo == 10, "llama pinfo %d", m.n_pinfo);
        for (int k = 0; k < 10; k++) {
            int p = vpd_model_find_param(&m, order[k]);
            CHECK(p >= 0, "param %s missing", order[k]);
            if (p < 0) continue;
            bool ok = true;
            for (size_t i = 0; i < m.pinfo[p].numel; i++)
                ok = ok && m.params[m.pinfo[p].offset + i] == val((int)i, 20 + k);
            CHECK(ok, "llama_from_pth %s values", order[k]);
        }
        CHECK(m.cfg.n_head == 2 && m.cfg.n_key_value_heads == 1 && m.cfg.n_ctx == 16 && m.cfg.vocab_size == 11,
              "llama_from_pth config");
        vpd_model_free(&m);
    }
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    test_config();
    test_config_limits();
    test_roundtrips();
    test_ties_and_errors();
    test_from_python();
    MPI_Finalize();
    TEST_REPORT();
}
