/* Model directories: config.json + model.safetensors (or model.h5), like Hugging Face's.
 *
 * config.json uses the reference implementation's field names; "model_type" picks the
 * kind (the reference's class names "TMSModel", "ResidMLP", "LlamaSimpleMLP" are
 * accepted as aliases). Values vpd does not implement (extra TMS hidden layers, untied
 * TMS weights, GELU ResidMLP, biases, adjacent-pair rotary) are refused with the file and
 * the key named, rather than silently computing a different model. Unknown keys are
 * warnings: Hugging Face configs carry bookkeeping keys we have no use for.
 *
 * Weights are looked up by PyTorch state_dict name and shape (m->pinfo from
 * vpd_model_create). Tied weights are one tensor in vpd but two names in a PyTorch
 * state_dict (TMS linear2.weight = linear1.weight^T; Llama lm_head.weight = wte.weight):
 * the loader accepts either name, checks that both agree when both are present, and the
 * writer writes both, so `model.load_state_dict(load_file(...), strict=True)` works. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <errno.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "vpd/comm.h"
#include "vpd/io.h"
#include "vpd/models.h"

#ifndef VPD_VERSION
#define VPD_VERSION "unknown"
#endif

/* ---- small file helpers -------------------------------------------------------------- */

static bool file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}


static char *read_text(const char *path, vpd_status *s) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        *s = vpd_error(VPD_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    rewind(fp);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!buf || fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        *s = vpd_error(VPD_ERR_IO, "cannot read '%s'", path);
        free(buf);
        fclose(fp);
        return NULL;
    }
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

/* write text to path atomically (temp file + rename) */
static vpd_status write_text(const char *path, const char *text) {
    char tmp[1200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return vpd_error(VPD_ERR_IO, "path too long: '%.80s...'", path);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) return vpd_error(VPD_ERR_IO, "cannot create '%s': %s", tmp, strerror(errno));
    size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, fp) == n && fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    if (fclose(fp) != 0) ok = false;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return vpd_error(VPD_ERR_IO, "writing '%s' failed: %s", path, strerror(e));
    }
    return VPD_OK;
}

/* ---- config.json --------------------------------------------------------------------- */

/* Keys accepted and ignored: bookkeeping from Hugging Face / the reference trainer, or
 * options whose only supported value is implied (flash attention is a kernel choice). */
static const char *const ignored_keys[] = {"model_type", "architectures", "torch_dtype", "transformers_version",
                                           "_name_or_path", "vpd_version", "device", "init_bias_to_zero",
                                           "flash_attention", "block_size", "use_grouped_query_attention", NULL};

/* Upper limits of the sizes in config.json: far above any model vpd can decompose, low
 * enough that no size product in the model code can overflow (a huge n_layers made
 * `2 + 9 * n_layers` wrap before anything was allocated). */
#define MAX_LAYERS 4096
#define MAX_DIM (1 << 20)
#define MAX_VOCAB (1 << 24)
#define MAX_PARAMS 2147483647.0 /* total parameters, counted in double */

static int key_limit(const char *key) {
    if (!strcmp(key, "n_layers") || !strcmp(key, "n_layer") || !strcmp(key, "n_hidden_layers") ||
        !strcmp(key, "num_hidden_layers"))
        return MAX_LAYERS;
    if (!strcmp(key, "vocab_size")) return MAX_VOCAB;
    return MAX_DIM;
}

static vpd_status get_int(const cJSON *root, const char *src, const char *key, bool required, int minv, int dflt,
                          int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v) {
        if (required) return vpd_error(VPD_ERR_CONFIG, "%s: missing key '%s' (an integer)", src, key);
        *out = dflt;
        return VPD_OK;
    }
    int maxv = key_limit(key);
    if (cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && v->valuedouble > maxv)
        return vpd_error(VPD_ERR_CONFIG, "%s: key '%s' = %.15g is larger than vpd's limit %d for it", src, key,
                         v->valuedouble, maxv);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < minv ||
        v->valuedouble > INT_MAX) {
        char *txt = cJSON_PrintUnformatted(v);
        vpd_status s = vpd_error(VPD_ERR_CONFIG, "%s: key '%s' must be an integer >= %d, found %s", src, key, minv,
                                 txt ? txt : "?");
        free(txt);
        return s;
    }
    *out = (int)v->valuedouble;
    return VPD_OK;
}

static vpd_status get_double(const cJSON *root, const char *src, const char *key, double dflt, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v) {
        *out = dflt;
        return VPD_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble <= 0)
        return vpd_error(VPD_ERR_CONFIG, "%s: key '%s' must be a positive number", src, key);
    *out = v->valuedouble;
    return VPD_OK;
}

/* A boolean key whose only supported value is `want` (absent = want). */
static vpd_status require_bool(const cJSON *root, const char *src, const char *key, bool want, const char *why) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v) return VPD_OK;
    if (!cJSON_IsBool(v)) return vpd_error(VPD_ERR_CONFIG, "%s: key '%s' must be true or false", src, key);
    if ((bool)cJSON_IsTrue(v) != want)
        return vpd_error(VPD_ERR_CONFIG, "%s: key '%s' = %s is not supported (%s)", src, key, want ? "false" : "true",
                         why);
    return VPD_OK;
}

static void warn_unknown(const cJSON *root, const char *src, const char *const *known) {
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        bool ok = false;
        for (int i = 0; known[i] && !ok; i++) ok = !strcmp(known[i], it->string);
        for (int i = 0; ignored_keys[i] && !ok; i++) ok = !strcmp(ignored_keys[i], it->string);
        if (!ok) vpd_warn("%s: unknown key '%s' ignored", src, it->string);
    }
}

/* ---- Hugging Face GPT-2 / GPT-NeoX config.json (defaults are transformers' when a key is absent) ---- */

/* an activation name: 1 tanh GELU, 0 erf GELU, -1 unsupported */
static int hf_gelu_kind(const char *a) {
    if (!strcmp(a, "gelu_new") || !strcmp(a, "gelu_pytorch_tanh") || !strcmp(a, "gelu_fast")) return 1;
    if (!strcmp(a, "gelu")) return 0;
    return -1;
}

static vpd_status hf_activation(const cJSON *root, const char *src, const char *key, const char *dflt, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    const char *a = v ? (cJSON_IsString(v) ? v->valuestring : "(not a string)") : dflt;
    int k = hf_gelu_kind(a);
    if (k < 0)
        return vpd_error(VPD_ERR_CONFIG, "%s: key '%s' = \"%s\" is not supported (vpd implements \"gelu\", \"gelu_new\", "
                         "\"gelu_pytorch_tanh\", \"gelu_fast\")", src, key, a);
    *out = k;
    return VPD_OK;
}

/* an option that must be JSON null (or absent) */
static vpd_status require_null(const cJSON *root, const char *src, const char *key, const char *what) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (v && !cJSON_IsNull(v)) return vpd_error(VPD_ERR_CONFIG, "%s: key '%s' (%s) is not supported by vpd", src, key, what);
    return VPD_OK;
}

static vpd_status parse_gpt2(const cJSON *root, const char *src, vpd_model_config *cfg) {
    static const char *const known[] = {
        "vocab_size", "n_positions", "n_ctx", "n_embd", "n_layer", "n_head", "n_inner", "activation_function",
        "layer_norm_epsilon", "resid_pdrop", "embd_pdrop", "attn_pdrop", "initializer_range", "summary_type",
        "summary_use_proj", "summary_activation", "summary_proj_to_labels", "summary_first_dropout",
        "scale_attn_weights", "use_cache", "bos_token_id", "eos_token_id", "pad_token_id",
        "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention", "tie_word_embeddings",
        "task_specific_params", "n_special", "predict_special_tokens", NULL};
    vpd_status s;
    cfg->kind = VPD_MODEL_GPT2;
    if ((s = get_int(root, src, "vocab_size", false, 1, 50257, &cfg->vocab_size)) ||
        (s = get_int(root, src, "n_positions", false, 1, 1024, &cfg->n_ctx)) ||
        (s = get_int(root, src, "n_embd", false, 1, 768, &cfg->n_embd)) ||
        (s = get_int(root, src, "n_layer", false, 1, 12, &cfg->n_layers)) ||
        (s = get_int(root, src, "n_head", false, 1, 12, &cfg->n_head)) ||
        (s = get_double(root, src, "layer_norm_epsilon", 1e-5, &cfg->ln_eps)) ||
        (s = hf_activation(root, src, "activation_function", "gelu_new", &cfg->gelu_tanh)))
        return s;
    const cJSON *inner = cJSON_GetObjectItemCaseSensitive(root, "n_inner");
    if (!inner || cJSON_IsNull(inner)) cfg->n_intermediate = 4 * cfg->n_embd;
    else if ((s = get_int(root, src, "n_inner", true, 1, 0, &cfg->n_intermediate))) return s;
    if ((s = require_bool(root, src, "scale_attn_weights", true, "vpd scales attention scores by 1/sqrt(head dim)")) ||
        (s = require_bool(root, src, "scale_attn_by_inverse_layer_idx", false, "vpd does not scale by the layer index")) ||
        (s = require_bool(root, src, "add_cross_attention", false, "vpd's GPT-2 is decoder-only")) ||
        (s = require_bool(root, src, "tie_word_embeddings", true, "vpd's GPT-2 ties lm_head to transformer.wte")))
        return s;
    if (cfg->n_embd % cfg->n_head)
        return vpd_error(VPD_ERR_CONFIG, "%s: key 'n_embd' = %d is not divisible by 'n_head' = %d", src, cfg->n_embd,
                         cfg->n_head);
    cfg->n_key_value_heads = cfg->n_head;
    cfg->rope_theta = 10000.0;
    warn_unknown(root, src, known);
    return VPD_OK;
}

static vpd_status parse_neox(const cJSON *root, const char *src, vpd_model_config *cfg) {
    static const char *const known[] = {
        "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
        "rotary_pct", "rotary_emb_base", "rope_theta", "attention_dropout", "hidden_dropout", "classifier_dropout",
        "max_position_embeddings", "initializer_range", "layer_norm_eps", "use_cache", "bos_token_id", "eos_token_id",
        "pad_token_id", "tie_word_embeddings", "use_parallel_residual", "rope_scaling", "attention_bias",
        "partial_rotary_factor", NULL};
    vpd_status s;
    cfg->kind = VPD_MODEL_GPT_NEOX;
    double base_alias = 10000.0;
    if ((s = get_int(root, src, "vocab_size", true, 1, 0, &cfg->vocab_size)) ||
        (s = get_int(root, src, "hidden_size", true, 1, 0, &cfg->n_embd)) ||
        (s = get_int(root, src, "num_hidden_layers", true, 1, 0, &cfg->n_layers)) ||
        (s = get_int(root, src, "num_attention_heads", true, 1, 0, &cfg->n_head)) ||
        (s = get_int(root, src, "intermediate_size", true, 1, 0, &cfg->n_intermediate)) ||
        (s = get_int(root, src, "max_position_embeddings", false, 1, 2048, &cfg->n_ctx)) ||
        (s = get_double(root, src, "layer_norm_eps", 1e-5, &cfg->ln_eps)) ||
        (s = get_double(root, src, "rotary_pct", 0.25, &cfg->rotary_pct)) ||
        (s = get_double(root, src, "rope_theta", 10000.0, &base_alias)) ||
        (s = get_double(root, src, "rotary_emb_base", base_alias, &cfg->rope_theta)) ||
        (s = hf_activation(root, src, "hidden_act", "gelu", &cfg->gelu_tanh)))
        return s;
    if ((s = require_bool(root, src, "tie_word_embeddings", false, "vpd's GPT-NeoX has an untied embed_out")) ||
        (s = require_bool(root, src, "attention_bias", true, "vpd's GPT-NeoX has biases on query_key_value and dense")) ||
        (s = require_null(root, src, "rope_scaling", "rotary scaling")))
        return s;
    const cJSON *par = cJSON_GetObjectItemCaseSensitive(root, "use_parallel_residual");
    if (par && !cJSON_IsBool(par)) return vpd_error(VPD_ERR_CONFIG, "%s: key 'use_parallel_residual' must be true or false", src);
    cfg->parallel_residual = !par || cJSON_IsTrue(par);
    if (cfg->n_embd % cfg->n_head)
        return vpd_error(VPD_ERR_CONFIG, "%s: key 'hidden_size' = %d is not divisible by 'num_attention_heads' = %d", src,
                         cfg->n_embd, cfg->n_head);
    if (cfg->rotary_pct > 1)
        return vpd_error(VPD_ERR_CONFIG, "%s: key 'rotary_pct' = %g must be in (0, 1]", src, cfg->rotary_pct);
    cfg->rotary_dim = (int)((cfg->n_embd / cfg->n_head) * cfg->rotary_pct); /* transformers: int(head_size * rotary_pct) */
    if (cfg->rotary_dim < 2 || cfg->rotary_dim % 2)
        return vpd_error(VPD_ERR_CONFIG, "%s: key 'rotary_pct' = %g gives %d rotary dims of head dim %d; vpd needs an even "
                         "number >= 2", src, cfg->rotary_pct, cfg->rotary_dim, cfg->n_embd / cfg->n_head);
    cfg->n_key_value_heads = cfg->n_head;
    warn_unknown(root, src, known);
    return VPD_OK;
}

/* ---- Hugging Face llama / qwen2 / qwen3 config.json (src/models/hf_llama.c) ---------- */

static bool get_bool(const cJSON *root, const char *key, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsBool(v) ? (bool)cJSON_IsTrue(v) : dflt;
}

/* Hugging Face configs carry many bookkeeping keys (generation defaults, token ids, ...):
 * only keys that change the computation are read, and every value vpd does not compute
 * (another activation, rope scaling type, sliding-window attention, mixture of experts,
 * partial rotary) is refused naming the key. */
static vpd_status parse_hf_llama(vpd_model_config *cfg, const cJSON *root, const char *src, const char *type) {
    vpd_status s;
    cfg->kind = VPD_MODEL_HF_LLAMA;
    cfg->hf_arch = !strcmp(type, "llama") ? VPD_HF_ARCH_LLAMA : !strcmp(type, "qwen2") ? VPD_HF_ARCH_QWEN2 : VPD_HF_ARCH_QWEN3;
    if ((s = get_int(root, src, "vocab_size", true, 1, 0, &cfg->vocab_size)) ||
        (s = get_int(root, src, "hidden_size", true, 1, 0, &cfg->n_embd)) ||
        (s = get_int(root, src, "intermediate_size", true, 1, 0, &cfg->n_intermediate)) ||
        (s = get_int(root, src, "num_hidden_layers", true, 1, 0, &cfg->n_layers)) ||
        (s = get_int(root, src, "num_attention_heads", true, 1, 0, &cfg->n_head)) ||
        (s = get_int(root, src, "max_position_embeddings", true, 1, 0, &cfg->n_ctx)))
        return s;
    const cJSON *kv = cJSON_GetObjectItemCaseSensitive(root, "num_key_value_heads");
    if (kv && !cJSON_IsNull(kv)) {
        if ((s = get_int(root, src, "num_key_value_heads", true, 1, 0, &cfg->n_key_value_heads))) return s;
    } else {
        cfg->n_key_value_heads = cfg->n_head;
    }
    const cJSON *hd = cJSON_GetObjectItemCaseSensitive(root, "head_dim");
    if (hd && !cJSON_IsNull(hd)) {
        if ((s = get_int(root, src, "head_dim", true, 2, 0, &cfg->head_dim))) return s;
    } else {
        if (cfg->n_embd % cfg->n_head)
            return vpd_error(VPD_ERR_CONFIG, "%s: 'hidden_size' = %d is not divisible by 'num_attention_heads' = %d "
                             "(and there is no 'head_dim')", src, cfg->n_embd, cfg->n_head);
        cfg->head_dim = cfg->n_embd / cfg->n_head;
    }
    if (cfg->n_head % cfg->n_key_value_heads)
        return vpd_error(VPD_ERR_CONFIG, "%s: 'num_attention_heads' = %d is not divisible by 'num_key_value_heads' = %d",
                         src, cfg->n_head, cfg->n_key_value_heads);
    if (cfg->head_dim % 2) return vpd_error(VPD_ERR_CONFIG, "%s: head dim %d must be even for RoPE", src, cfg->head_dim);
    if ((s = get_double(root, src, "rms_norm_eps", 1e-6, &cfg->rms_eps)) ||
        (s = get_double(root, src, "rope_theta", 10000.0, &cfg->rope_theta)))
        return s;
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu")))
        return vpd_error(VPD_ERR_CONFIG, "%s: 'hidden_act' = %s is not supported (only \"silu\", the SwiGLU MLP)", src,
                         cJSON_IsString(act) ? act->valuestring : "(not a string)");
    cfg->tie_embeddings = get_bool(root, "tie_word_embeddings", false);
    if (cfg->hf_arch == VPD_HF_ARCH_QWEN2) {
        cfg->qkv_bias = true; /* Qwen2Attention: q/k/v_proj always have biases */
    } else {
        bool ab = get_bool(root, "attention_bias", false);
        cfg->qkv_bias = ab;
        cfg->o_bias = ab && cfg->hf_arch == VPD_HF_ARCH_LLAMA; /* Llama: o_proj too; Qwen3: q/k/v only */
    }
    if (cfg->hf_arch == VPD_HF_ARCH_LLAMA) cfg->mlp_bias = get_bool(root, "mlp_bias", false);
    else if ((s = require_bool(root, src, "mlp_bias", false, "Qwen's MLP has no biases"))) return s;
    cfg->qk_norm = cfg->hf_arch == VPD_HF_ARCH_QWEN3;
    /* refused options */
    if ((s = require_bool(root, src, "use_sliding_window", false, "vpd computes full causal attention only")))
        return s;
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types"), *it;
    cJSON_ArrayForEach(it, lt) {
        if (!cJSON_IsString(it) || strcmp(it->valuestring, "full_attention"))
            return vpd_error(VPD_ERR_CONFIG, "%s: 'layer_types' holds \"%s\": only \"full_attention\" is supported "
                             "(no sliding-window attention)", src, cJSON_IsString(it) ? it->valuestring : "?");
    }
    static const char *const moe_keys[] = {"num_experts", "num_local_experts", "n_routed_experts", "moe_intermediate_size", NULL};
    for (int i = 0; moe_keys[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, moe_keys[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsNumber(v) && v->valuedouble == 0))
            return vpd_error(VPD_ERR_CONFIG, "%s: '%s' is set: mixture-of-experts models are not supported", src,
                             moe_keys[i]);
    }
    const cJSON *prf = cJSON_GetObjectItemCaseSensitive(root, "partial_rotary_factor");
    if (prf && !(cJSON_IsNumber(prf) && prf->valuedouble == 1.0))
        return vpd_error(VPD_ERR_CONFIG, "%s: 'partial_rotary_factor' other than 1 is not supported for %s", src, type);
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    cfg->rope_type = VPD_ROPE_DEFAULT;
    if (rs && !cJSON_IsNull(rs)) {
        const cJSON *rt = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
        if (!rt) rt = cJSON_GetObjectItemCaseSensitive(rs, "type");
        const char *r = cJSON_IsString(rt) ? rt->valuestring : "(missing)";
        if (!strcmp(r, "default")) cfg->rope_type = VPD_ROPE_DEFAULT;
        else if (!strcmp(r, "linear")) cfg->rope_type = VPD_ROPE_LINEAR;
        else if (!strcmp(r, "llama3")) cfg->rope_type = VPD_ROPE_LLAMA3;
        else
            return vpd_error(VPD_ERR_CONFIG, "%s: 'rope_scaling' type \"%s\" is not supported (vpd implements "
                             "\"default\", \"linear\" and \"llama3\")", src, r);
        if (cfg->rope_type != VPD_ROPE_DEFAULT && (s = get_double(rs, src, "factor", 0, &cfg->rope_factor))) return s;
        if (cfg->rope_type != VPD_ROPE_DEFAULT && !(cfg->rope_factor > 0))
            return vpd_error(VPD_ERR_CONFIG, "%s: 'rope_scaling' needs a positive 'factor'", src);
        if (cfg->rope_type == VPD_ROPE_LLAMA3) {
            if ((s = get_double(rs, src, "low_freq_factor", 1.0, &cfg->rope_low_freq_factor)) ||
                (s = get_double(rs, src, "high_freq_factor", 4.0, &cfg->rope_high_freq_factor)) ||
                (s = get_int(rs, src, "original_max_position_embeddings", true, 1, 0, &cfg->rope_original_max_pos)))
                return s;
        }
    }
    return VPD_OK;
}

vpd_status vpd_model_config_parse(vpd_model_config *cfg, const char *json, const char *src) {
    memset(cfg, 0, sizeof *cfg);
    cfg->rms_eps = 1e-6;
    cfg->rope_theta = 10000.0;
    const char *endp = NULL;
    cJSON *root = cJSON_ParseWithOpts(json, &endp, 0);
    if (!root) return vpd_error(VPD_ERR_CONFIG, "%s: not valid JSON (error near byte %ld)", src,
                                endp ? (long)(endp - json) : 0L);
    vpd_status s = VPD_OK;
    if (!cJSON_IsObject(root)) {
        s = vpd_error(VPD_ERR_CONFIG, "%s: expected a JSON object", src);
        goto out;
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!cJSON_IsString(mt)) {
        s = vpd_error(VPD_ERR_CONFIG, "%s: missing key 'model_type' (\"tms\", \"resid_mlp\" or \"llama_simple_mlp\")",
                      src);
        goto out;
    }
    const char *t = mt->valuestring;
    if (!strcmp(t, "tms") || !strcmp(t, "TMSModel")) {
        static const char *const known[] = {"n_features", "n_hidden", "n_hidden_layers", "tied_weights", NULL};
        cfg->kind = VPD_MODEL_TMS;
        int nhl = 0;
        if ((s = get_int(root, src, "n_features", true, 1, 0, &cfg->n_features)) ||
            (s = get_int(root, src, "n_hidden", true, 1, 0, &cfg->n_hidden)) ||
            (s = get_int(root, src, "n_hidden_layers", false, 0, 0, &nhl)))
            goto out;
        if (nhl != 0) {
            s = vpd_error(VPD_ERR_CONFIG, "%s: key 'n_hidden_layers' = %d is not supported (vpd's TMS has none)", src,
                          nhl);
            goto out;
        }
        if ((s = require_bool(root, src, "tied_weights", true, "vpd's TMS ties linear2.weight = linear1.weight^T")))
            goto out;
        warn_unknown(root, src, known);
    } else if (!strcmp(t, "resid_mlp") || !strcmp(t, "ResidMLP")) {
        static const char *const known[] = {"n_features", "d_embed", "d_mlp", "n_layers", "act_fn_name",
                                            "in_bias",    "out_bias", NULL};
        cfg->kind = VPD_MODEL_RESID_MLP;
        if ((s = get_int(root, src, "n_features", true, 1, 0, &cfg->n_features)) ||
            (s = get_int(root, src, "d_embed", true, 1, 0, &cfg->d_embed)) ||
            (s = get_int(root, src, "d_mlp", true, 1, 0, &cfg->d_mlp)) ||
            (s = get_int(root, src, "n_layers", true, 1, 0, &cfg->n_layers)))
            goto out;
        const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "act_fn_name");
        if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "relu") != 0)) {
            s = vpd_error(VPD_ERR_CONFIG, "%s: key 'act_fn_name' = %s is not supported (only \"relu\")", src,
                          cJSON_IsString(act) ? act->valuestring : "(not a string)");
            goto out;
        }
        if ((s = require_bool(root, src, "in_bias", false, "vpd's ResidMLP has no biases")) ||
            (s = require_bool(root, src, "out_bias", false, "vpd's ResidMLP has no biases")))
            goto out;
        warn_unknown(root, src, known);
    } else if (!strcmp(t, "llama_simple_mlp") || !strcmp(t, "LlamaSimpleMLP")) {
        static const char *const known[] = {"vocab_size", "n_ctx", "n_embd", "n_head", "n_key_value_heads",
                                            "n_intermediate", "n_layer", "rms_norm_eps", "rope_theta",
                                            "rotary_base", "rotary_dim", "rotary_adjacent_pairs", "mlp_bias",
                                            "attn_bias", NULL};
        cfg->kind = VPD_MODEL_LLAMA;
        int block = 1024;
        if ((s = get_int(root, src, "vocab_size", true, 1, 0, &cfg->vocab_size)) ||
            (s = get_int(root, src, "n_embd", true, 1, 0, &cfg->n_embd)) ||
            (s = get_int(root, src, "n_head", true, 1, 0, &cfg->n_head)) ||
            (s = get_int(root, src, "n_intermediate", true, 1, 0, &cfg->n_intermediate)) ||
            (s = get_int(root, src, "n_layer", true, 1, 0, &cfg->n_layers)) ||
            (s = get_int(root, src, "block_size", false, 1, 1024, &block)) ||
            (s = get_int(root, src, "n_ctx", false, 1, block, &cfg->n_ctx)))
            goto out;
        /* the reference's default is grouped-query attention with n_key_value_heads given;
         * use_grouped_query_attention=false means one kv head per query head */
        const cJSON *gqa = cJSON_GetObjectItemCaseSensitive(root, "use_grouped_query_attention");
        bool kv_required = !(gqa && cJSON_IsFalse(gqa));
        if ((s = get_int(root, src, "n_key_value_heads", kv_required, 1, cfg->n_head, &cfg->n_key_value_heads)))
            goto out;
        if (!kv_required) cfg->n_key_value_heads = cfg->n_head;
        double theta_alias;
        if ((s = get_double(root, src, "rms_norm_eps", 1e-6, &cfg->rms_eps)) ||
            (s = get_double(root, src, "rotary_base", 10000.0, &theta_alias)) ||
            (s = get_double(root, src, "rope_theta", theta_alias, &cfg->rope_theta)))
            goto out;
        if (cfg->n_embd % cfg->n_head != 0) {
            s = vpd_error(VPD_ERR_CONFIG, "%s: key 'n_embd' = %d is not divisible by 'n_head' = %d", src, cfg->n_embd,
                          cfg->n_head);
            goto out;
        }
        if (cfg->n_head % cfg->n_key_value_heads != 0) {
            s = vpd_error(VPD_ERR_CONFIG, "%s: key 'n_head' = %d is not divisible by 'n_key_value_heads' = %d", src,
                          cfg->n_head, cfg->n_key_value_heads);
            goto out;
        }
        int rdim = 0;
        if ((s = get_int(root, src, "rotary_dim", false, 1, cfg->n_embd / cfg->n_head, &rdim))) goto out;
        if (rdim != cfg->n_embd / cfg->n_head) {
            /* the reference also overrides rotary_dim with the head dim */
            vpd_warn("%s: key 'rotary_dim' = %d ignored; the rotary dimension is the head dim %d (as in the reference)",
                     src, rdim, cfg->n_embd / cfg->n_head);
        }
        if ((s = require_bool(root, src, "rotary_adjacent_pairs", false, "vpd rotates the two halves of each head")) ||
            (s = require_bool(root, src, "mlp_bias", false, "vpd's LlamaSimpleMLP has no biases")) ||
            (s = require_bool(root, src, "attn_bias", false, "vpd's LlamaSimpleMLP has no biases")))
            goto out;
        warn_unknown(root, src, known);
    } else if (!strcmp(t, "gpt2")) {
        s = parse_gpt2(root, src, cfg);
    } else if (!strcmp(t, "gpt_neox")) {
        s = parse_neox(root, src, cfg);
    } else if (!strcmp(t, "llama") || !strcmp(t, "qwen2") || !strcmp(t, "qwen3")) {
        s = parse_hf_llama(cfg, root, src, t);
    } else {
        s = vpd_error(VPD_ERR_CONFIG,
                      "%s: key 'model_type' = \"%s\" is not supported (expected \"gpt2\", \"gpt_neox\", \"llama\", "
                      "\"qwen2\", \"qwen3\", \"tms\", \"resid_mlp\" or \"llama_simple_mlp\")",
                      src, t);
    }
    if (s == VPD_OK) {
        /* each size is bounded above; their product can still be absurd: count in double */
        double np = 0;
        const char *keys = "";
        if (cfg->kind == VPD_MODEL_TMS) {
            np = 2.0 * cfg->n_features * cfg->n_hidden + cfg->n_features;
            keys = "n_features, n_hidden";
        } else if (cfg->kind == VPD_MODEL_RESID_MLP) {
            np = 2.0 * cfg->n_features * cfg->d_embed + 2.0 * cfg->n_layers * cfg->d_embed * cfg->d_mlp;
            keys = "n_features, d_embed, d_mlp, n_layers";
        } else if (cfg->kind == VPD_MODEL_GPT2 || cfg->kind == VPD_MODEL_GPT_NEOX) {
            double D = cfg->n_embd;
            np = 2.0 * cfg->vocab_size * D + (double)cfg->n_ctx * D +
                 cfg->n_layers * (4.0 * D * D + 2.0 * D * cfg->n_intermediate + 9.0 * D + cfg->n_intermediate);
            keys = "vocab_size, hidden size, intermediate size, layers, positions";
        } else if (cfg->kind == VPD_MODEL_HF_LLAMA) {
            double D = cfg->n_embd, dh = cfg->head_dim, QD = cfg->n_head * dh, KV = cfg->n_key_value_heads * dh;
            np = (2.0 - cfg->tie_embeddings) * cfg->vocab_size * D +
                 cfg->n_layers * (2.0 * D * QD + 2.0 * D * KV + 3.0 * D * cfg->n_intermediate);
            keys = "vocab_size, hidden_size, intermediate_size, num_hidden_layers";
        } else {
            double D = cfg->n_embd;
            np = 2.0 * cfg->vocab_size * D + D + cfg->n_layers * (4.0 * D * D + 3.0 * D * cfg->n_intermediate + 2.0 * D);
            keys = "vocab_size, n_embd, n_intermediate, n_layer";
        }
        if (np > MAX_PARAMS)
            s = vpd_error(VPD_ERR_CONFIG, "%s: the model would have %.3g parameters, more than vpd's limit of %.0f "
                          "(reduce %s)", src, np, MAX_PARAMS, keys);
    }
out:
    cJSON_Delete(root);
    return s;
}

vpd_status vpd_model_config_read(vpd_model_config *cfg, const char *dir) {
    char path[1100];
    snprintf(path, sizeof path, "%s/config.json", dir);
    vpd_status s = VPD_OK;
    char *text = read_text(path, &s);
    if (!text) return s;
    s = vpd_model_config_parse(cfg, text, path);
    free(text);
    return s;
}

char *vpd_model_config_to_json(const vpd_model_config *c) {
    cJSON *r = cJSON_CreateObject();
    if (!r) return NULL;
    switch (c->kind) {
    case VPD_MODEL_TMS:
        cJSON_AddStringToObject(r, "model_type", "tms");
        cJSON_AddNumberToObject(r, "n_features", c->n_features);
        cJSON_AddNumberToObject(r, "n_hidden", c->n_hidden);
        cJSON_AddNumberToObject(r, "n_hidden_layers", 0);
        cJSON_AddBoolToObject(r, "tied_weights", 1);
        break;
    case VPD_MODEL_RESID_MLP:
        cJSON_AddStringToObject(r, "model_type", "resid_mlp");
        cJSON_AddNumberToObject(r, "n_features", c->n_features);
        cJSON_AddNumberToObject(r, "d_embed", c->d_embed);
        cJSON_AddNumberToObject(r, "d_mlp", c->d_mlp);
        cJSON_AddNumberToObject(r, "n_layers", c->n_layers);
        cJSON_AddStringToObject(r, "act_fn_name", "relu");
        cJSON_AddBoolToObject(r, "in_bias", 0);
        cJSON_AddBoolToObject(r, "out_bias", 0);
        break;
    case VPD_MODEL_LLAMA:
        cJSON_AddStringToObject(r, "model_type", "llama_simple_mlp");
        cJSON_AddNumberToObject(r, "vocab_size", c->vocab_size);
        cJSON_AddNumberToObject(r, "n_ctx", c->n_ctx);
        cJSON_AddNumberToObject(r, "n_embd", c->n_embd);
        cJSON_AddNumberToObject(r, "n_head", c->n_head);
        cJSON_AddNumberToObject(r, "n_key_value_heads", c->n_key_value_heads);
        cJSON_AddNumberToObject(r, "n_intermediate", c->n_intermediate);
        cJSON_AddNumberToObject(r, "n_layer", c->n_layers);
        cJSON_AddNumberToObject(r, "rms_norm_eps", c->rms_eps);
        cJSON_AddNumberToObject(r, "rope_theta", c->rope_theta);
        break;
    case VPD_MODEL_GPT2:
        cJSON_AddStringToObject(r, "model_type", "gpt2");
        cJSON_AddNumberToObject(r, "vocab_size", c->vocab_size);
        cJSON_AddNumberToObject(r, "n_positions", c->n_ctx);
        cJSON_AddNumberToObject(r, "n_embd", c->n_embd);
        cJSON_AddNumberToObject(r, "n_layer", c->n_layers);
        cJSON_AddNumberToObject(r, "n_head", c->n_head);
        cJSON_AddNumberToObject(r, "n_inner", c->n_intermediate);
        cJSON_AddStringToObject(r, "activation_function", c->gelu_tanh ? "gelu_new" : "gelu");
        cJSON_AddNumberToObject(r, "layer_norm_epsilon", c->ln_eps);
        cJSON_AddBoolToObject(r, "tie_word_embeddings", 1);
        break;
    case VPD_MODEL_GPT_NEOX:
        cJSON_AddStringToObject(r, "model_type", "gpt_neox");
        cJSON_AddNumberToObject(r, "vocab_size", c->vocab_size);
        cJSON_AddNumberToObject(r, "max_position_embeddings", c->n_ctx);
        cJSON_AddNumberToObject(r, "hidden_size", c->n_embd);
        cJSON_AddNumberToObject(r, "num_hidden_layers", c->n_layers);
        cJSON_AddNumberToObject(r, "num_attention_heads", c->n_head);
        cJSON_AddNumberToObject(r, "intermediate_size", c->n_intermediate);
        cJSON_AddStringToObject(r, "hidden_act", c->gelu_tanh ? "gelu_new" : "gelu");
        cJSON_AddNumberToObject(r, "rotary_pct", c->rotary_pct);
        cJSON_AddNumberToObject(r, "rotary_emb_base", c->rope_theta);
        cJSON_AddNumberToObject(r, "layer_norm_eps", c->ln_eps);
        cJSON_AddBoolToObject(r, "use_parallel_residual", c->parallel_residual);
        cJSON_AddBoolToObject(r, "tie_word_embeddings", 0);
        break;
    case VPD_MODEL_HF_LLAMA: {
        static const char *const arch[] = {"llama", "qwen2", "qwen3"};
        cJSON_AddStringToObject(r, "model_type", arch[c->hf_arch]);
        cJSON_AddNumberToObject(r, "vocab_size", c->vocab_size);
        cJSON_AddNumberToObject(r, "hidden_size", c->n_embd);
        cJSON_AddNumberToObject(r, "intermediate_size", c->n_intermediate);
        cJSON_AddNumberToObject(r, "num_hidden_layers", c->n_layers);
        cJSON_AddNumberToObject(r, "num_attention_heads", c->n_head);
        cJSON_AddNumberToObject(r, "num_key_value_heads", c->n_key_value_heads);
        cJSON_AddNumberToObject(r, "head_dim", c->head_dim);
        cJSON_AddNumberToObject(r, "max_position_embeddings", c->n_ctx);
        cJSON_AddNumberToObject(r, "rms_norm_eps", c->rms_eps);
        cJSON_AddNumberToObject(r, "rope_theta", c->rope_theta);
        cJSON_AddStringToObject(r, "hidden_act", "silu");
        cJSON_AddBoolToObject(r, "tie_word_embeddings", c->tie_embeddings);
        if (c->hf_arch != VPD_HF_ARCH_QWEN2) cJSON_AddBoolToObject(r, "attention_bias", c->qkv_bias);
        if (c->hf_arch == VPD_HF_ARCH_LLAMA) cJSON_AddBoolToObject(r, "mlp_bias", c->mlp_bias);
        if (c->rope_type != VPD_ROPE_DEFAULT) {
            cJSON *rs = cJSON_AddObjectToObject(r, "rope_scaling");
            cJSON_AddStringToObject(rs, "rope_type", c->rope_type == VPD_ROPE_LINEAR ? "linear" : "llama3");
            cJSON_AddNumberToObject(rs, "factor", c->rope_factor);
            if (c->rope_type == VPD_ROPE_LLAMA3) {
                cJSON_AddNumberToObject(rs, "low_freq_factor", c->rope_low_freq_factor);
                cJSON_AddNumberToObject(rs, "high_freq_factor", c->rope_high_freq_factor);
                cJSON_AddNumberToObject(rs, "original_max_position_embeddings", c->rope_original_max_pos);
            }
        }
        break;
    }
    }
    cJSON_AddStringToObject(r, "vpd_version", VPD_VERSION);
    char *txt = cJSON_Print(r);
    cJSON_Delete(r);
    if (!txt) return NULL;
    /* cJSON_Print's buffer comes from cJSON's allocator (malloc by default); append a newline */
    size_t n = strlen(txt);
    char *out = malloc(n + 2);
    if (out) {
        memcpy(out, txt, n);
        out[n] = '\n';
        out[n + 1] = '\0';
    }
    cJSON_free(txt);
    return out;
}

/* ---- tied duplicates ----------------------------------------------------------------- */

typedef struct {
    vpd_model_kind kind;
    const char *a, *b; /* b == a (or a^T when transpose) in the PyTorch state_dict */
    bool transpose;
} tie_rule;

static const tie_rule ties[] = {
    {VPD_MODEL_TMS, "linear1.weight", "linear2.weight", true},
    {VPD_MODEL_LLAMA, "wte.weight", "lm_head.weight", false},
    {VPD_MODEL_GPT2, "transformer.wte.weight", "lm_head.weight", false},
    {VPD_MODEL_HF_LLAMA, "model.embed_tokens.weight", "lm_head.weight", false}, /* when tie_word_embeddings */
};
#define N_TIES ((int)(sizeof ties / sizeof ties[0]))

/* If `name` is one side of a tie rule of this model, return the other side. */
static const char *tie_partner(vpd_model_kind kind, const char *name, bool *transpose) {
    for (int i = 0; i < N_TIES; i++) {
        if (ties[i].kind != kind) continue;
        *transpose = ties[i].transpose;
        if (!strcmp(ties[i].a, name)) return ties[i].b;
        if (!strcmp(ties[i].b, name)) return ties[i].a;
    }
    return NULL;
}

static void transpose2(real *dst, const real *src, int64_t rows, int64_t cols) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) dst[j * rows + i] = src[i * cols + j];
}

/* ---- a weights file, safetensors or HDF5 ------------------------------------------- */

typedef struct {
    bool is_h5;
    char path[1100]; /* the file, or the index of a sharded checkpoint (for messages) */
    int n_st;        /* safetensors files: 1, or the shards of model.safetensors.index.json */
    vpd_safetensors *st;
    vpd_h5 h5;
    int n_names;
    char **names;
    int *name_st; /* safetensors file of names[i] */
} wfile;

static herr_t h5_list_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g;
    (void)info;
    wfile *w = data;
    char **nn = realloc(w->names, (size_t)(w->n_names + 1) * sizeof(char *));
    if (!nn) return -1;
    w->names = nn;
    w->names[w->n_names++] = strdup(name);
    return 0;
}

static void wfile_close(wfile *w) {
    if (w->is_h5) vpd_h5_close(&w->h5);
    for (int i = 0; i < w->n_st; i++) vpd_st_close(&w->st[i]);
    free(w->st);
    w->st = NULL;
    w->n_st = 0;
    for (int i = 0; i < w->n_names; i++) free(w->names[i]);
    free(w->names);
    free(w->name_st);
    w->names = NULL;
    w->name_st = NULL;
    w->n_names = 0;
}

/* add every tensor of safetensors file k to the name list */
static vpd_status wfile_add_names(wfile *w, int k) {
    const vpd_safetensors *st = &w->st[k];
    char **nn = realloc(w->names, (size_t)(w->n_names + st->n + 1) * sizeof(char *));
    if (nn) w->names = nn;
    int *ns = nn ? realloc(w->name_st, (size_t)(w->n_names + st->n + 1) * sizeof(int)) : NULL;
    if (ns) w->name_st = ns;
    if (!nn || !ns) return vpd_error(VPD_ERR_MEM, "out of memory listing '%s'", st->path);
    for (int i = 0; i < st->n; i++) {
        w->name_st[w->n_names] = k;
        w->names[w->n_names] = strdup(st->entries[i].name);
        if (!w->names[w->n_names]) return vpd_error(VPD_ERR_MEM, "out of memory listing '%s'", st->path);
        w->n_names++;
    }
    return VPD_OK;
}

/* A sharded checkpoint: model.safetensors.index.json's "weight_map" names each tensor's
 * shard. Every shard named there must exist (a missing one is an error naming it); each
 * shard is opened once and lists its own tensors. */
static vpd_status wfile_open_sharded(wfile *w, const char *dir) {
    vpd_status s = VPD_OK;
    char *text = read_text(w->path, &s);
    if (!text) return s;
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *map = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(root);
        return vpd_error(VPD_ERR_FORMAT, "%s: not a safetensors index (needs a \"weight_map\" object)", w->path);
    }
    const char **files = calloc((size_t)cJSON_GetArraySize(map) + 1, sizeof(char *));
    int nf = 0;
    const cJSON *it;
    if (!files) s = vpd_error(VPD_ERR_MEM, "out of memory reading '%s'", w->path);
    cJSON_ArrayForEach(it, map) {
        if (s != VPD_OK) break;
        if (!cJSON_IsString(it) || strchr(it->valuestring, '/')) {
            s = vpd_error(VPD_ERR_FORMAT, "%s: weight_map entry '%s' must name a file in the directory", w->path,
                          it->string);
            break;
        }
        bool seen = false;
        for (int i = 0; i < nf && !seen; i++) seen = !strcmp(files[i], it->valuestring);
        if (!seen) files[nf++] = it->valuestring;
    }
    if (s == VPD_OK) {
        w->st = calloc((size_t)nf + 1, sizeof *w->st);
        if (!w->st) s = vpd_error(VPD_ERR_MEM, "out of memory reading '%s'", w->path);
    }
    for (int i = 0; s == VPD_OK && i < nf; i++) {
        char p[1400];
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        if (!file_exists(p)) {
            s = vpd_error(VPD_ERR_IO, "%s: shard '%s' is missing (listed in model.safetensors.index.json)", dir, files[i]);
            break;
        }
        if ((s = vpd_st_open(&w->st[i], p)) != VPD_OK) break;
        w->n_st = i + 1;
        s = wfile_add_names(w, i);
    }
    /* every tensor the index names must be in its shard */
    cJSON_ArrayForEach(it, map) {
        if (s != VPD_OK) break;
        int k = 0;
        while (k < nf && strcmp(files[k], it->valuestring)) k++;
        if (vpd_st_find(&w->st[k], it->string) < 0)
            s = vpd_error(VPD_ERR_FORMAT, "%s/%s: tensor '%s' (listed in model.safetensors.index.json) is not in it", dir,
                          files[k], it->string);
    }
    free(files);
    cJSON_Delete(root);
    return s;
}

static vpd_status wfile_open(wfile *w, const char *dir) {
    memset(w, 0, sizeof *w);
    w->h5.id = -1;
    snprintf(w->path, sizeof w->path, "%s/model.safetensors", dir);
    if (file_exists(w->path)) {
        w->st = calloc(1, sizeof *w->st);
        if (!w->st) return vpd_error(VPD_ERR_MEM, "out of memory opening '%s'", w->path);
        VPD_TRY(vpd_st_open(&w->st[0], w->path));
        w->n_st = 1;
        return wfile_add_names(w, 0);
    }
    snprintf(w->path, sizeof w->path, "%s/model.safetensors.index.json", dir);
    if (file_exists(w->path)) return wfile_open_sharded(w, dir);
    snprintf(w->path, sizeof w->path, "%s/model.h5", dir);
    if (!file_exists(w->path))
        return vpd_error(VPD_ERR_IO, "model directory '%s' has neither model.safetensors, "
                         "model.safetensors.index.json nor model.h5", dir);
    w->is_h5 = true;
    VPD_TRY(vpd_h5_open(&w->h5, w->path, false));
    hsize_t idx = 0;
    H5Literate((hid_t)w->h5.id, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, h5_list_cb, w);
    return VPD_OK;
}

static int wfile_index(const wfile *w, const char *name) {
    for (int i = 0; i < w->n_names; i++)
        if (!strcmp(w->names[i], name)) return i;
    return -1;
}
static bool wfile_has(const wfile *w, const char *name) { return wfile_index(w, name) >= 0; }

/* read a tensor by its name with the expected shape (converted to real: F32, F64, F16 and
 * BF16 files), checking finiteness */
static vpd_status wfile_read(wfile *w, const char *name, real *out, int ndim, const int64_t *shape) {
    if (!w->is_h5) {
        int i = wfile_index(w, name);
        if (i < 0 && w->n_st == 1) return vpd_st_read(&w->st[0], name, out, ndim, shape); /* its message lists the file's */
        if (i < 0)
            return vpd_error(VPD_ERR_FORMAT, "%s: no tensor '%s' (needed by this model's config.json)", w->path, name);
        return vpd_st_read(&w->st[w->name_st[i]], name, out, ndim, shape);
    }
    char p[256];
    snprintf(p, sizeof p, "/%s", name);
    VPD_TRY(vpd_h5_read_real(&w->h5, p, out, ndim, shape));
    size_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (size_t)shape[d];
    vpd_status s = vpd_check_finite(out, n, name);
    if (s != VPD_OK) return vpd_error_context(s, "%s", w->path);
    return VPD_OK;
}

/* ---- load / save ------------------------------------------------------------------- */

static const vpd_param_info *find_pinfo(const vpd_model *m, const char *name) {
    for (int i = 0; i < m->n_pinfo; i++)
        if (!strcmp(m->pinfo[i].name, name)) return &m->pinfo[i];
    return NULL;
}

/* GPT-2 checkpoints saved from GPT2Model (the Hub's "gpt2") name tensors without the
 * "transformer." prefix GPT2LMHeadModel uses: accept both. */
static const char *gpt2_bare(const vpd_model *m, const char *name) {
    return m->cfg.kind == VPD_MODEL_GPT2 && !strncmp(name, "transformer.", 12) ? name + 12 : NULL;
}

static vpd_status load_weights(vpd_model *m, wfile *w) {
    /* 1. every parameter by name (or from its tied partner when only that is stored) */
    for (int i = 0; i < m->n_pinfo; i++) {
        const vpd_param_info *p = &m->pinfo[i];
        real *dst = m->params + p->offset;
        const char *bare = gpt2_bare(m, p->name);
        const char *fname = !wfile_has(w, p->name) && bare && wfile_has(w, bare) ? bare : p->name;
        if (p->file_transposed) { /* Conv1D: [in, out] in the file, [out, in] in vpd */
            int64_t tshape[2] = {p->shape[1], p->shape[0]};
            real *tmp = vpd_malloc(p->numel * sizeof(real), fname);
            if (!tmp) return VPD_ERR_MEM;
            vpd_status s = wfile_read(w, fname, tmp, 2, tshape);
            if (s == VPD_OK) transpose2(dst, tmp, tshape[0], tshape[1]);
            vpd_free(tmp);
            VPD_TRY(s);
            continue;
        }
        if (fname != p->name) {
            VPD_TRY(wfile_read(w, fname, dst, p->ndim, p->shape));
            continue;
        }
        bool tr = false;
        const char *partner = tie_partner(m->cfg.kind, p->name, &tr);
        if (wfile_has(w, p->name) || !partner || find_pinfo(m, partner) || !wfile_has(w, partner)) {
            VPD_TRY(wfile_read(w, p->name, dst, p->ndim, p->shape));
            continue;
        }
        if (!tr) {
            VPD_TRY(wfile_read(w, partner, dst, p->ndim, p->shape));
            continue;
        }
        int64_t tshape[2] = {p->shape[1], p->shape[0]};
        real *tmp = vpd_malloc(p->numel * sizeof(real), partner);
        if (!tmp) return VPD_ERR_MEM;
        vpd_status s = wfile_read(w, partner, tmp, 2, tshape);
        if (s == VPD_OK) transpose2(dst, tmp, tshape[0], tshape[1]);
        vpd_free(tmp);
        VPD_TRY(s);
    }
    /* 2. extra names: tied duplicates must agree with what we loaded; others are reported */
    for (int k = 0; k < w->n_names; k++) {
        const char *name = w->names[k];
        if (find_pinfo(m, name)) continue;
        if (m->cfg.kind == VPD_MODEL_GPT2) { /* a prefix-less GPT-2 name read in step 1 */
            char full[300];
            snprintf(full, sizeof full, "transformer.%s", name);
            if (find_pinfo(m, full)) continue;
        }
        bool tr = false;
        const char *partner = tie_partner(m->cfg.kind, name, &tr);
        const vpd_param_info *p = partner ? find_pinfo(m, partner) : NULL;
        if (!p) {
            vpd_warn("%s: tensor '%s' is not a parameter of this %s model; ignored", w->path, name,
                     vpd_model_kind_name(m->cfg.kind));
            continue;
        }
        int64_t shape[2] = {tr ? p->shape[1] : p->shape[0], tr ? p->shape[0] : p->shape[1]};
        real *dup = vpd_malloc(p->numel * sizeof(real), name);
        if (!dup) return VPD_ERR_MEM;
        vpd_status s = wfile_read(w, name, dup, p->ndim, p->ndim == 2 ? shape : p->shape);
        if (s == VPD_OK) {
            const real *ref = m->params + p->offset;
            double maxd = 0, maxr = 0;
            for (size_t i = 0; i < p->numel; i++) {
                size_t j = tr ? (size_t)((int64_t)(i % (size_t)shape[1]) * shape[0] + (int64_t)(i / (size_t)shape[1])) : i;
                double d = fabs((double)dup[i] - (double)ref[j]);
                if (d > maxd) maxd = d;
                if (fabs((double)ref[j]) > maxr) maxr = fabs((double)ref[j]);
            }
            if (maxd > 1e-6 * (maxr > 1 ? maxr : 1))
                vpd_warn("%s: tied tensor '%s' differs from %s'%s' (max |diff| %.3g); using '%s'", w->path, name,
                         tr ? "the transpose of " : "", partner, maxd, partner);
        }
        vpd_free(dup);
        VPD_TRY(s);
    }
    return VPD_OK;
}

vpd_status vpd_model_load(vpd_model *m, const char *dir) {
    memset(m, 0, sizeof *m);
    vpd_model_config cfg;
    VPD_TRY(vpd_model_config_read(&cfg, dir));
    vpd_status s = vpd_model_create(m, &cfg);
    if (s != VPD_OK) return vpd_error_context(s, "%s/config.json", dir);
    wfile w;
    s = wfile_open(&w, dir);
    if (s == VPD_OK) {
        s = load_weights(m, &w);
        wfile_close(&w);
    }
    if (s != VPD_OK) {
        vpd_model_free(m);
        return s;
    }
    vpd_model_sync(m);
    return VPD_OK;
}

vpd_status vpd_model_load_node_shared(vpd_model *m, const char *dir, MPI_Comm comm) {
    memset(m, 0, sizeof *m);
    vpd_model_config cfg;
    vpd_status s = vpd_all_agree(vpd_model_config_read(&cfg, dir), comm);
    VPD_TRY(s);
    int node_rank = 0;
    s = vpd_model_create_node_shared(m, &cfg, comm, &node_rank);
    if (s != VPD_OK) return vpd_error_context(s, "%s/config.json", dir);
    if (node_rank == 0) { /* one reader per node */
        wfile w;
        s = wfile_open(&w, dir);
        if (s == VPD_OK) {
            s = load_weights(m, &w);
            wfile_close(&w);
        }
    }
    s = vpd_all_agree(s, comm);
    vpd_node_shared_sync(m->node_shared);
    if (s != VPD_OK) {
        vpd_model_free(m);
        return s;
    }
    vpd_model_sync(m);
    return VPD_OK;
}

vpd_status vpd_model_save_as(const vpd_model *m, const char *dir, vpd_weights_format fmt) {
    VPD_TRY(vpd_mkdirs(dir));
    /* the tensor list: every parameter plus each tied duplicate not held separately */
    int cap = m->n_pinfo + N_TIES, n = 0;
    vpd_tensor *t = calloc((size_t)cap, sizeof *t);
    real *extra[N_TIES] = {NULL};
    int n_extra = 0;
    vpd_status s = VPD_OK;
    if (!t) return vpd_error(VPD_ERR_MEM, "out of memory saving model to '%s'", dir);
    real **tbuf = calloc((size_t)m->n_pinfo + 1, sizeof *tbuf); /* Conv1D weights written [in, out] */
    if (!tbuf) {
        free(t);
        return vpd_error(VPD_ERR_MEM, "out of memory saving model to '%s'", dir);
    }
    for (int i = 0; i < m->n_pinfo; i++) {
        const vpd_param_info *p = &m->pinfo[i];
        if (p->file_transposed) {
            tbuf[i] = vpd_malloc(p->numel * sizeof(real), p->name);
            if (!tbuf[i]) {
                s = VPD_ERR_MEM;
                goto out;
            }
            transpose2(tbuf[i], m->params + p->offset, p->shape[0], p->shape[1]);
            t[n++] = vpd_tensor_view(tbuf[i], p->name, 2, (int64_t[]){p->shape[1], p->shape[0]});
        } else {
            t[n++] = vpd_tensor_view(m->params + p->offset, p->name, p->ndim, p->shape);
        }
    }
    for (int r = 0; r < N_TIES; r++) {
        if (ties[r].kind != m->cfg.kind) continue;
        const vpd_param_info *a = find_pinfo(m, ties[r].a), *b = find_pinfo(m, ties[r].b);
        if ((a != NULL) == (b != NULL)) continue; /* both held, or neither: nothing to add */
        const vpd_param_info *have = a ? a : b;
        const char *dup_name = a ? ties[r].b : ties[r].a;
        real *buf = vpd_malloc(have->numel * sizeof(real), dup_name);
        if (!buf) {
            s = VPD_ERR_MEM;
            goto out;
        }
        extra[n_extra++] = buf;
        const real *src = m->params + have->offset;
        int64_t shape[VPD_MAX_DIMS];
        memcpy(shape, have->shape, sizeof shape);
        if (ties[r].transpose && have->ndim == 2) {
            transpose2(buf, src, have->shape[0], have->shape[1]);
            shape[0] = have->shape[1];
            shape[1] = have->shape[0];
        } else {
            memcpy(buf, src, have->numel * sizeof(real));
        }
        t[n++] = vpd_tensor_view(buf, dup_name, have->ndim, shape);
    }
    char path[1100];
    if (fmt == VPD_WEIGHTS_H5) {
        char tmp[1200];
        snprintf(path, sizeof path, "%s/model.h5", dir);
        snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
        vpd_h5 f;
        if ((s = vpd_h5_create(&f, tmp)) != VPD_OK) goto out;
        for (int i = 0; i < n && s == VPD_OK; i++) {
            char p[256];
            snprintf(p, sizeof p, "/%s", t[i].name);
            s = vpd_h5_write_real(&f, p, t[i].data, t[i].ndim, t[i].shape);
        }
        if (s == VPD_OK) s = vpd_h5_set_attr_str(&f, "/", "vpd_version", VPD_VERSION);
        vpd_status sc = vpd_h5_close(&f);
        if (s == VPD_OK) s = sc;
        if (s == VPD_OK && rename(tmp, path) != 0)
            s = vpd_error(VPD_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        if (s != VPD_OK) unlink(tmp);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        const char *meta[] = {"format", "pt", "producer", "vpd " VPD_VERSION, "model_type",
                              vpd_model_kind_name(m->cfg.kind)};
        s = vpd_st_write(path, t, n, meta, 3);
    }
    if (s != VPD_OK) goto out;
    char *json = vpd_model_config_to_json(&m->cfg);
    if (!json) {
        s = vpd_error(VPD_ERR_MEM, "out of memory writing config.json");
        goto out;
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    s = write_text(path, json);
    free(json);
out:
    for (int i = 0; i < n_extra; i++) vpd_free(extra[i]);
    for (int i = 0; i < m->n_pinfo; i++) vpd_free(tbuf[i]);
    free(tbuf);
    free(t);
    return s;
}

vpd_status vpd_model_save(const vpd_model *m, const char *dir) { return vpd_model_save_as(m, dir, VPD_WEIGHTS_SAFETENSORS); }
