/* The index of a sharded Hugging Face checkpoint, model.safetensors.index.json (src/models/
 * model_io.c wfile_open_sharded): the input is the index of a fixed model directory holding a
 * small random Qwen2 model (biases, untied head) as config.json and two shards; vpd_model_load reads
 * the index, opens the shards it names and loads every weight. What loads must be the model
 * itself (every parameter bitwise equal to the one saved).
 * VPD_FUZZ_SEED_OUT=FILE: write the valid index there (the seed corpus). */
#include "fuzz_util.h"
#include "vpd/io.h"
#include "vpd/models.h"

static const char CONFIG[] =
    "{\"model_type\": \"qwen2\", \"vocab_size\": 16, \"max_position_embeddings\": 8, \"hidden_size\": 8,"
    " \"intermediate_size\": 12, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1,"
    " \"hidden_act\": \"silu\", \"rms_norm_eps\": 1e-06, \"rope_theta\": 10000.0, \"tie_word_embeddings\": false}";
static const char *const SHARD[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
static char dir[160], index_path[200];
static vpd_model ref;

static void setup(void) {
    snprintf(dir, sizeof dir, "%s/model", fuzz_dir()); /* fuzz_cleanup empties and removes <dir>/model */
    snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", dir);
    vpd_model_config c;
    if (mkdir(dir, 0700) != 0 || vpd_model_config_parse(&c, CONFIG, "fuzz config") != VPD_OK ||
        vpd_model_create(&ref, &c) != VPD_OK)
        goto fail;
    vpd_model_init_params(&ref, 7);
    if (vpd_model_save_as(&ref, dir, VPD_WEIGHTS_SAFETENSORS) != VPD_OK) goto fail;
    /* split model.safetensors into two shards (alternate tensors) and an index naming them */
    char p[400];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    vpd_safetensors st;
    if (vpd_st_open(&st, p) != VPD_OK) goto fail;
    vpd_tensor *t = calloc((size_t)st.n, sizeof *t);
    real **x = calloc((size_t)st.n, sizeof *x);
    FILE *idx = fopen(getenv("VPD_FUZZ_SEED_OUT") ? getenv("VPD_FUZZ_SEED_OUT") : "/dev/null", "w");
    if (!t || !x || !idx) abort();
    fprintf(idx, "{\n  \"metadata\": {\"total_size\": 0},\n  \"weight_map\": {");
    for (int i = 0; i < st.n; i++) {
        int nd;
        int64_t shape[VPD_MAX_DIMS];
        if (vpd_st_read_alloc(&st, st.entries[i].name, &x[i], &nd, shape) != VPD_OK) goto fail;
        t[i] = vpd_tensor_view(x[i], strdup(st.entries[i].name), nd, shape);
        fprintf(idx, "%s\n    \"%s\": \"%s\"", i ? "," : "", st.entries[i].name, SHARD[i % 2]);
    }
    fprintf(idx, "\n  }\n}\n");
    fclose(idx);
    for (int k = 0; k < 2; k++) {
        vpd_tensor sub[256];
        int n = 0;
        for (int i = k; i < st.n && n < 256; i += 2) sub[n++] = t[i];
        snprintf(p, sizeof p, "%s/%s", dir, SHARD[k]);
        if (vpd_st_write(p, sub, n, NULL, 0) != VPD_OK) goto fail;
    }
    for (int i = 0; i < st.n; i++) {
        vpd_free(x[i]);
        free((char *)t[i].name);
    }
    free(x);
    free(t);
    vpd_st_close(&st);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p); /* the index is what is read */
    return;
fail:
    fprintf(stderr, "fuzz_hf_index: setup: %s\n", vpd_last_error());
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) setup();
    fuzz_write(index_path, data, size);
    vpd_model m;
    if (fuzz_note(vpd_model_load(&m, dir), "load") == VPD_OK) {
        FUZZ_ASSERT(m.n_params == ref.n_params && !memcmp(m.params, ref.params, m.n_params * sizeof(real)),
                    "the model loaded through this index is not the one saved");
        vpd_model_free(&m);
    }
    vpd_clear_error();
    return 0;
}
