/* Training a target model from scratch: the library side of `vpd pretrain` (the command,
 * src/cli/cmd_pretrain.c, parses arguments and calls include/vpd/pretrain.h). It writes the
 * model directory (config.json + model.safetensors via vpd_model_save) with the training
 * curve (training.jsonl) and the resolved config.
 *
 *   TMS        spd experiments/tms/train_tms.py: MSE between the output and |labels|
 *              (labels = inputs), AdamW (torch defaults, weight decay 0.01) on every
 *              parameter. PyTorch's tied TMS has two Parameters sharing storage
 *              (linear2.weight is a view of linear1.weightᵀ), so AdamW keeps two states
 *              and applies two updates per step; `tied_weights_adam: separate` (default)
 *              reproduces that, `summed` uses one state on the summed gradient.
 *   ResidMLP   spd experiments/resid_mlp/train_resid_mlp.py: "readoff" MSE between the
 *              model output (after W_U) and x + ReLU(c ⊙ x); W_E, W_U fixed.
 *   LM         next-token cross-entropy on random windows of a token binary; weight decay
 *              only on tensors with >= 2 dims (spd pretrain / nanoGPT); validation loss
 *              on a held-out token file every eval_freq steps (the target's validation
 *              curve that "pretraining compute recovered" reads).
 *
 * Keys follow spd's training configs (TMSTrainConfig, ResidMLPTrainConfig; the model
 * section uses config.json's field names). Unknown keys are errors. Data parallel under
 * MPI: each rank draws its slice of the global batch (layout-independent data) and
 * gradients are averaged, so any rank count trains the same model up to summation order.
 * Updates follow spd's trainers: `steps` iterations, each lr = schedule(step) then one
 * AdamW update. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpd/comm.h"
#include "vpd/config.h"
#include "vpd/core.h"
#include "vpd/data.h"
#include "vpd/io.h"
#include "vpd/models.h"
#include "vpd/nn.h"
#include "vpd/optim.h"
#include "vpd/pretrain.h"

typedef struct {
    vpd_model_config model;
    bool init_bias_to_zero;
    uint64_t seed;
    int steps, batch_size;
    /* toy data */
    double feature_probability;
    vpd_data_gen gen;
    int n_active;
    vpd_label_type label;
    bool trivial_coeffs;
    uint64_t label_fn_seed;
    /* token data */
    const char *train_tokens, *val_tokens;
    int token_width, seq_len;
    /* optimizer */
    vpd_schedule lr;
    double weight_decay, beta1, beta2, adam_eps, grad_clip; /* grad_clip <= 0: none */
    bool tied_separate;
    /* logging */
    int log_freq, eval_freq, n_eval_steps, eval_batch_size;
    const char *out_dir;
} pretrain_cfg;


/* ---- config --------------------------------------------------------------------------- */

/* A YAML scalar as JSON: quoted stays a string; null, booleans and numbers (YAML's 10_000
 * too) become JSON values, anything else a string. */
static cJSON *scalar_to_json(const vpd_config *n) {
    if (n->quoted) return cJSON_CreateString(n->value);
    if (vpd_config_node_is_null(n)) return cJSON_CreateNull();
    const char *v = n->value;
    if (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "TRUE")) return cJSON_CreateBool(1);
    if (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "FALSE")) return cJSON_CreateBool(0);
    char buf[128];
    size_t k = 0;
    for (const char *p = v; *p && k + 1 < sizeof buf; p++)
        if (*p != '_') buf[k++] = *p;
    buf[k] = 0;
    char *end = NULL;
    errno = 0;
    double d = strtod(buf, &end);
    if (k > 0 && end && *end == 0 && errno == 0 && isfinite(d)) return cJSON_CreateNumber(d);
    return cJSON_CreateString(v);
}

/* The model section -> vpd_model_config through io's config.json parser, so pretrain
 * configs and config.json accept exactly the same fields. */
static vpd_status read_model(vpd_config *root, pretrain_cfg *c) {
    static const char *const sections[] = {"model", "tms_model_config", "resid_mlp_model_config"};
    static const char *const implied[] = {NULL, "tms", "resid_mlp"};
    vpd_config *sec = NULL;
    int which = -1;
    for (int i = 0; i < 3; i++) {
        vpd_config *s = vpd_config_child(root, sections[i]);
        if (!s) continue;
        if (sec) return vpd_config_error(s, "give the model once (found both '%s' and '%s')", sections[which], sections[i]);
        sec = s;
        which = i;
    }
    if (!sec) return vpd_error(VPD_ERR_CONFIG, "%s: missing required key 'model' (model_type and sizes, as in config.json)",
                               root->file);
    if (sec->kind != VPD_CONFIG_MAP) return vpd_config_error(sec, "expected a mapping of model fields");
    VPD_TRY(vpd_config_get_bool(sec, "init_bias_to_zero", false, &c->init_bias_to_zero));
    cJSON *j = cJSON_CreateObject();
    if (!j) return vpd_error(VPD_ERR_MEM, "out of memory converting the model section");
    if (implied[which] && !vpd_config_child(sec, "model_type")) cJSON_AddStringToObject(j, "model_type", implied[which]);
    for (int i = 0; i < sec->n; i++) {
        const vpd_config *it = sec->items[i];
        if (!strcmp(it->key, "init_bias_to_zero")) continue;
        if (it->kind != VPD_CONFIG_SCALAR) {
            cJSON_Delete(j);
            return vpd_config_error(it, "model fields are scalars");
        }
        cJSON_AddItemToObject(j, it->key, scalar_to_json(it));
    }
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!text) return vpd_error(VPD_ERR_MEM, "out of memory converting the model section");
    char src[600];
    snprintf(src, sizeof src, "%s:%d: %s", sec->file, sec->line, sections[which]);
    vpd_status s = vpd_model_config_parse(&c->model, text, src);
    free(text);
    if (s != VPD_OK) return s;
    /* config.json readers only warn about unknown fields (Hugging Face files carry many);
     * in a pretrain config a typo is an error. Known: the fields config.json gets for this
     * model plus the reference's names io accepts as aliases or fixed options. */
    static const char *const extra[] = {"model_type", "init_bias_to_zero", "device", "rotary_base", "rotary_dim",
                                        "rotary_adjacent_pairs", "mlp_bias", "attn_bias", "block_size",
                                        "flash_attention", "use_grouped_query_attention", NULL};
    char *canon = vpd_model_config_to_json(&c->model);
    cJSON *cj = canon ? cJSON_Parse(canon) : NULL;
    free(canon);
    if (!cj) return vpd_error(VPD_ERR_MEM, "out of memory checking the model section");
    for (int i = 0; i < sec->n && s == VPD_OK; i++) {
        const char *k = sec->items[i]->key;
        bool known = cJSON_GetObjectItemCaseSensitive(cj, k) && strcmp(k, "vpd_version") != 0;
        for (int e = 0; extra[e] && !known; e++) known = !strcmp(extra[e], k);
        if (!known) {
            char list[512] = "";
            const cJSON *it;
            cJSON_ArrayForEach(it, cj) if (strcmp(it->string, "vpd_version") && strcmp(it->string, "model_type")) {
                if (list[0]) strncat(list, ", ", sizeof list - strlen(list) - 1);
                strncat(list, it->string, sizeof list - strlen(list) - 1);
            }
            s = vpd_config_error(sec->items[i], "unknown model field '%s' (%s takes %s)", k,
                                 vpd_model_kind_name(c->model.kind), list);
        }
    }
    cJSON_Delete(cj);
    if (s != VPD_OK) return s;
    vpd_config_consume(root, sections[which]);
    if (c->init_bias_to_zero && c->model.kind != VPD_MODEL_TMS)
        return vpd_config_error(sec, "init_bias_to_zero applies to TMS only (this model has no such bias)");
    return VPD_OK;
}

/* spd options vpd implements only in their reference setting: accept that value, refuse others */
static vpd_status require_bool_key(vpd_config *root, const char *key, bool want, const char *why) {
    bool v = want;
    VPD_TRY(vpd_config_get_bool(root, key, want, &v));
    if (v != want) return vpd_config_error(vpd_config_find(root, key), "only %s is supported (%s)", want ? "true" : "false", why);
    return VPD_OK;
}
static vpd_status require_null_key(vpd_config *root, const char *key, const char *why) {
    if (!vpd_config_has(root, key) || vpd_config_is_null(root, key)) return VPD_OK;
    return vpd_config_error(vpd_config_find(root, key), "only null is supported (%s)", why);
}

static vpd_status read_config(vpd_config *root, pretrain_cfg *c, const char *out_override) {
    memset(c, 0, sizeof *c);
    VPD_TRY(read_model(root, c));
    bool lm = c->model.kind == VPD_MODEL_LLAMA;
    int64_t seed;
    VPD_TRY(vpd_config_get_int64(root, "seed", 0, 0, INT64_MAX, &seed));
    c->seed = (uint64_t)seed;
    VPD_TRY(vpd_config_require(root, "steps"));
    VPD_TRY(vpd_config_get_int(root, "steps", 0, 1, 1 << 30, &c->steps));
    VPD_TRY(vpd_config_require(root, "batch_size"));
    VPD_TRY(vpd_config_get_int(root, "batch_size", 0, 1, 1 << 24, &c->batch_size));

    if (!lm) {
        VPD_TRY(vpd_config_require(root, "feature_probability"));
        VPD_TRY(vpd_config_get_double(root, "feature_probability", 0, 0, 1, &c->feature_probability));
        const char *gen;
        VPD_TRY(vpd_config_get_string(root, "data_generation_type", "at_least_zero_active", &gen));
        vpd_status s = vpd_data_gen_parse(gen, "data_generation_type", &c->gen, &c->n_active);
        if (s != VPD_OK) return vpd_config_error(vpd_config_find(root, "data_generation_type"), "%s", vpd_last_error());
        VPD_TRY(require_null_key(root, "synced_inputs", "vpd has no synced inputs"));
        if (c->model.kind == VPD_MODEL_TMS) {
            c->label = VPD_LABEL_INPUT;
            VPD_TRY(require_bool_key(root, "fixed_identity_hidden_layers", false, "vpd's TMS has no hidden layers"));
            VPD_TRY(require_bool_key(root, "fixed_random_hidden_layers", false, "vpd's TMS has no hidden layers"));
        } else {
            static const char *const labels[] = {"act_plus_resid", "abs", NULL};
            int lt = 0;
            VPD_TRY(vpd_config_get_enum(root, "label_type", labels, 0, &lt));
            c->label = lt == 0 ? VPD_LABEL_ACT_PLUS_RESID : VPD_LABEL_ABS;
            VPD_TRY(vpd_config_get_bool(root, "use_trivial_label_coeffs", false, &c->trivial_coeffs));
            int64_t lfs;
            VPD_TRY(vpd_config_get_int64(root, "label_fn_seed", 0, 0, INT64_MAX, &lfs));
            c->label_fn_seed = (uint64_t)lfs;
            static const char *const loss_types[] = {"readoff", NULL};
            int lt2;
            VPD_TRY(vpd_config_get_enum(root, "loss_type", loss_types, 0, &lt2));
            double imp = 1;
            if (!vpd_config_is_null(root, "importance_val")) VPD_TRY(vpd_config_get_double(root, "importance_val", 1, 1, 1, &imp));
            VPD_TRY(require_bool_key(root, "fixed_random_embedding", true, "vpd's ResidMLP has a fixed random W_E, W_U = W_E^T"));
            VPD_TRY(require_bool_key(root, "fixed_identity_embedding", false, "vpd's ResidMLP has a fixed random W_E"));
            int nb;
            VPD_TRY(vpd_config_get_int(root, "n_batches_final_losses", 10, 1, 1 << 20, &nb));
            (void)nb; /* the final eval uses n_eval_steps */
        }
    } else {
        VPD_TRY(vpd_config_require(root, "train_tokens"));
        VPD_TRY(vpd_config_get_string(root, "train_tokens", NULL, &c->train_tokens));
        VPD_TRY(vpd_config_get_string_or_null(root, "val_tokens", NULL, &c->val_tokens));
        const char *dt;
        VPD_TRY(vpd_config_get_string(root, "token_dtype", "uint16", &dt));
        vpd_status s = vpd_tokens_dtype_parse(dt, "token_dtype", &c->token_width);
        if (s != VPD_OK) return vpd_config_error(vpd_config_find(root, "token_dtype"), "%s", vpd_last_error());
        VPD_TRY(vpd_config_get_int(root, "seq_len", c->model.n_ctx, 1, c->model.n_ctx, &c->seq_len));
    }

    /* optimizer: spd's lr_schedule (or legacy lr), torch AdamW defaults */
    VPD_TRY(vpd_schedule_from_config(root, "lr", &c->lr));
    VPD_TRY(vpd_config_get_double(root, "weight_decay", 0.01, 0, 1e6, &c->weight_decay));
    double betas[2] = {0.9, 0.999};
    VPD_TRY(vpd_config_get_double_tuple(root, "betas", 0, 0.999999999, betas, 2)); /* [beta1, beta2] */
    c->beta1 = betas[0];
    c->beta2 = betas[1];
    VPD_TRY(vpd_config_get_double(root, "adam_eps", 1e-8, 0, 1, &c->adam_eps));
    c->grad_clip = 0;
    if (!vpd_config_is_null(root, "grad_clip_norm"))
        VPD_TRY(vpd_config_get_double(root, "grad_clip_norm", 0, 0, 1e30, &c->grad_clip));
    static const char *const tied[] = {"separate", "summed", NULL};
    int ti = 0;
    VPD_TRY(vpd_config_get_enum(root, "tied_weights_adam", tied, 0, &ti));
    c->tied_separate = ti == 0 && c->model.kind == VPD_MODEL_TMS;

    /* logging */
    int print_freq = 0;
    VPD_TRY(vpd_config_get_int(root, "print_freq", 0, 0, 1 << 30, &print_freq)); /* spd's name */
    VPD_TRY(vpd_config_get_int(root, "train_log_freq", print_freq ? print_freq : 100, 1, 1 << 30, &c->log_freq));
    VPD_TRY(vpd_config_get_int(root, "eval_freq", lm ? 100 : 1000, 0, 1 << 30, &c->eval_freq));
    VPD_TRY(vpd_config_get_int(root, "n_eval_steps", 10, 1, 1 << 20, &c->n_eval_steps));
    VPD_TRY(vpd_config_get_int(root, "eval_batch_size", c->batch_size, 1, 1 << 24, &c->eval_batch_size));
    VPD_TRY(vpd_config_get_string_or_null(root, "out_dir", NULL, &c->out_dir));
    if (out_override) c->out_dir = out_override;
    if (!c->out_dir) return vpd_error(VPD_ERR_CONFIG, "%s: no output directory: set out_dir in the config or pass --out DIR", root->file);

    static const char *const ignore[] = {"wandb_*", NULL};
    vpd_config_note_ignored(root, ignore);
    return vpd_config_check_unused(root, ignore);
}

/* ---- TMS with two AdamW states for the tied weight (as PyTorch) -------------------------
 * A hook computes both linears exactly as the target does but keeps the weight gradient of
 * each use apart: g1 [Hd, F] for linear1.weight, g2 [F, Hd] for linear2.weight (the view). */
typedef struct {
    vpd_hook base;
    vpd_model *m;
    real *g[2]; /* per-layer weight gradients */
    real *gb;   /* linear2.bias gradient */
} split_hook;

static void split_forward(vpd_hook *h, int l, const real *x, const int32_t *tok, real *y, int N) {
    const vpd_layer_info *L = &((split_hook *)h)->m->layers[l];
    (void)tok;
    linear_forward(y, x, L->W, L->b, N, L->d_in, L->d_out);
}
static void split_backward(vpd_hook *h, int l, const real *x, const int32_t *tok, const real *dy, real *dx, int N) {
    split_hook *s = (split_hook *)h;
    const vpd_layer_info *L = &s->m->layers[l];
    (void)tok;
    linear_backward(dx, s->g[l], L->b ? s->gb : NULL, dy, x, L->W, N, L->d_in, L->d_out);
}

/* ---- optimizer groups -----------------------------------------------------------------
 * One AdamW state per group over a flat range of the gradient block. A group with
 * `transposed` updates params viewed as the transpose of a [rows, cols] tensor (the TMS
 * linear2.weight view), through a scratch copy. */
typedef struct {
    real *p, *g, *m, *v;
    size_t n;
    double wd;
    int rows, cols; /* transposed: p is [rows, cols], the update acts on its transpose */
    bool transposed;
} opt_group;

static void transpose(real *dst, const real *src, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
}

/* ---- the run ---------------------------------------------------------------------------- */

struct vpd_pretrain {
    vpd_config *root; /* the config tree (c's strings point into it) */
    pretrain_cfg c;
    int rank, world;
    vpd_model m;
    vpd_toy_data toy;
    bool have_toy;
    vpd_tokens train, val;
    bool have_train, have_val;
    int B, EB; /* per-rank train / eval batch */
    int S;
    real *x, *labels, *out, *dout, *probs; /* batch buffers */
    int32_t *tok, *tgt;
    real *grads; /* flat gradient block */
    size_t n_grads;
    real *moments; /* m and v for every group */
    real *scratch; /* transposed view for TMS */
    opt_group groups[64];
    int n_groups;
    split_hook hook;
    bool use_hook;
    FILE *jsonl;
    double final_train, final_eval;
};
typedef struct vpd_pretrain run_state;

static vpd_status setup(run_state *r) {
    pretrain_cfg *c = &r->c;
    if (c->batch_size % r->world || c->eval_batch_size % r->world)
        return vpd_error(VPD_ERR_CONFIG, "batch_size %d and eval_batch_size %d must be divisible by the %d ranks",
                         c->batch_size, c->eval_batch_size, r->world);
    r->B = c->batch_size / r->world;
    r->EB = c->eval_batch_size / r->world;
    VPD_TRY(vpd_model_create(&r->m, &c->model));
    vpd_model_init_params(&r->m, c->seed);
    if (c->init_bias_to_zero) {
        int p = vpd_model_find_param(&r->m, "linear2.bias");
        VPD_ASSERT(p >= 0, "tms without linear2.bias");
        memset(r->m.params + r->m.pinfo[p].offset, 0, sizeof(real) * r->m.pinfo[p].numel);
        vpd_model_sync(&r->m);
    }
    bool lm = c->model.kind == VPD_MODEL_LLAMA;
    r->S = lm ? c->seq_len : 1;
    int Bmax = r->B > r->EB ? r->B : r->EB;
    VPD_TRY(vpd_model_reserve(&r->m, Bmax, r->S));
    size_t out_n = vpd_model_out_size(&r->m, Bmax, r->S);
    r->out = vpd_malloc(sizeof(real) * out_n, "pretrain outputs");
    r->dout = vpd_malloc(sizeof(real) * out_n, "pretrain output gradients");
    if (!r->out || !r->dout) return VPD_ERR_MEM;
    if (lm) {
        VPD_TRY(vpd_tokens_open(&r->train, c->train_tokens, c->token_width, c->model.vocab_size));
        r->have_train = true;
        if (c->val_tokens) {
            VPD_TRY(vpd_tokens_open(&r->val, c->val_tokens, c->token_width, c->model.vocab_size));
            r->have_val = true;
        }
        size_t nt = (size_t)Bmax * r->S;
        r->tok = vpd_malloc(sizeof(int32_t) * nt, "pretrain tokens");
        r->tgt = vpd_malloc(sizeof(int32_t) * nt, "pretrain targets");
        r->probs = vpd_malloc(sizeof(real) * out_n, "pretrain probabilities");
        if (!r->tok || !r->tgt || !r->probs) return VPD_ERR_MEM;
    } else {
        int F = c->model.n_features;
        VPD_TRY(vpd_toy_data_init(&r->toy, F, c->gen, c->n_active, c->feature_probability, c->seed));
        r->have_toy = true;
        if (c->model.kind == VPD_MODEL_RESID_MLP) {
            r->toy.value_min = -1; /* ResidMLPDataset: value_range (-1, 1) */
            r->toy.label = c->label;
            r->toy.act = VPD_LABEL_ACT_RELU; /* the model's act_fn_name */
            if (!c->trivial_coeffs) vpd_toy_data_random_coeffs(&r->toy, c->label_fn_seed);
        }
        r->x = vpd_malloc(sizeof(real) * (size_t)Bmax * F, "pretrain inputs");
        r->labels = vpd_malloc(sizeof(real) * (size_t)Bmax * F, "pretrain labels");
        if (!r->x || !r->labels) return VPD_ERR_MEM;
    }

    /* gradient block and optimizer groups */
    vpd_model *m = &r->m;
    if (c->tied_separate) {
        int F = c->model.n_features, Hd = c->model.n_hidden;
        int pw = vpd_model_find_param(m, "linear1.weight"), pb = vpd_model_find_param(m, "linear2.bias");
        VPD_ASSERT(pw >= 0 && pb >= 0, "tms parameters missing");
        r->n_grads = 2 * (size_t)F * Hd + (size_t)F;
        r->grads = vpd_calloc(sizeof(real) * r->n_grads, "pretrain gradients");
        r->scratch = vpd_malloc(sizeof(real) * (size_t)F * Hd, "pretrain tied-weight scratch");
        if (!r->grads || !r->scratch) return VPD_ERR_MEM;
        real *W1 = m->params + m->pinfo[pw].offset;
        /* PyTorch's parameter order: linear1.weight, linear2.weight (view), linear2.bias */
        r->groups[0] = (opt_group){.p = W1, .g = r->grads, .n = (size_t)F * Hd, .wd = c->weight_decay};
        r->groups[1] = (opt_group){.p = W1, .g = r->grads + (size_t)F * Hd, .n = (size_t)F * Hd, .wd = c->weight_decay,
                                   .rows = Hd, .cols = F, .transposed = true};
        r->groups[2] = (opt_group){.p = m->params + m->pinfo[pb].offset, .g = r->grads + 2 * (size_t)F * Hd,
                                   .n = (size_t)F, .wd = c->weight_decay};
        r->n_groups = 3;
        r->hook = (split_hook){.base = {split_forward, split_backward}, .m = m,
                               .g = {r->groups[0].g, r->groups[1].g}, .gb = r->groups[2].g};
        r->use_hook = true;
    } else {
        r->n_grads = m->n_params;
        r->grads = vpd_calloc(sizeof(real) * r->n_grads, "pretrain gradients");
        if (!r->grads) return VPD_ERR_MEM;
        for (int p = 0; p < m->n_pinfo; p++) {
            const vpd_param_info *pi = &m->pinfo[p];
            if (!pi->trainable) continue; /* ResidMLP's fixed W_E, W_U */
            VPD_ASSERT(r->n_groups < 64, "more than 64 parameter tensors");
            /* LM: nanoGPT / spd pretrain decay only matrices and embeddings */
            double wd = (lm && pi->ndim < 2) ? 0 : c->weight_decay;
            r->groups[r->n_groups++] = (opt_group){.p = m->params + pi->offset, .g = r->grads + pi->offset, .n = pi->numel, .wd = wd};
        }
    }
    size_t nm = 0;
    for (int i = 0; i < r->n_groups; i++) nm += r->groups[i].n;
    r->moments = vpd_calloc(sizeof(real) * 2 * nm, "AdamW moments");
    if (!r->moments) return VPD_ERR_MEM;
    size_t off = 0;
    for (int i = 0; i < r->n_groups; i++) {
        r->groups[i].m = r->moments + off;
        r->groups[i].v = r->moments + nm + off;
        off += r->groups[i].n;
    }
    return VPD_OK;
}

/* Fill the per-rank batch of `step` of `stream` (B examples starting at global example
 * rank·B) and run the forward; *loss = this rank's mean loss. With `grad`, also writes
 * d(loss)/d(out) into r->dout for the backward. */
static vpd_status forward_loss(run_state *r, uint32_t stream, uint64_t step, int B, bool grad, double *loss) {
    vpd_model *m = &r->m;
    int64_t e0 = (int64_t)r->rank * B;
    vpd_model_input in = {.B = B, .S = r->S};
    size_t n_out = vpd_model_out_size(m, B, r->S);
    if (m->cfg.kind == VPD_MODEL_LLAMA) {
        const vpd_tokens *t = stream == VPD_DATA_TRAIN ? &r->train : &r->val;
        VPD_TRY(vpd_tokens_batch(t, r->c.seed, stream, step, e0, B, r->S, r->tok, r->tgt));
        in.tokens = r->tok;
        vpd_model_forward(m, &in, r->out, r->use_hook ? &r->hook.base : NULL);
        int N = B * r->S, V = m->cfg.vocab_size;
        *loss = cross_entropy_forward(r->probs, r->out, r->tgt, N, V);
        if (grad) {
            memset(r->dout, 0, sizeof(real) * n_out);
            cross_entropy_backward(r->dout, r->probs, r->tgt, N, V, 1);
        }
    } else {
        vpd_toy_batch(&r->toy, stream, step, e0, B, r->x, r->labels);
        in.x = r->x;
        vpd_model_forward(m, &in, r->out, r->use_hook ? &r->hook.base : NULL);
        /* TMS: spd's loss is mean((|labels| - out)²); labels are >= 0 there, so |.| is a no-op
         * we still apply. ResidMLP readoff: mean((out - labels)²) with importances 1. */
        if (m->cfg.kind == VPD_MODEL_TMS)
            for (size_t i = 0; i < n_out; i++) r->labels[i] = (real)fabs((double)r->labels[i]);
        *loss = mse_forward(r->out, r->labels, n_out);
        if (grad) {
            memset(r->dout, 0, sizeof(real) * n_out);
            mse_backward(r->dout, r->out, r->labels, n_out, 1);
        }
    }
    return VPD_OK;
}

static double allreduce_mean(double v, int world) {
    if (world == 1) return v;
    vpd_sum_double(&v, 1, vpd_comm_world());
    return v / world;
}

/* mean loss over n_eval_steps fixed batches of the eval stream (the same batches at every
 * evaluation, so the curve compares like with like) */
static vpd_status evaluate(run_state *r, double *loss) {
    double sum = 0;
    for (int k = 0; k < r->c.n_eval_steps; k++) {
        double l;
        VPD_TRY(forward_loss(r, VPD_DATA_EVAL, (uint64_t)k, r->EB, false, &l));
        sum += l;
    }
    *loss = allreduce_mean(sum / r->c.n_eval_steps, r->world);
    return VPD_OK;
}

static void optimizer_step(run_state *r, double lr, int64_t t) {
    const pretrain_cfg *c = &r->c;
    for (int i = 0; i < r->n_groups; i++) {
        opt_group *g = &r->groups[i];
        if (g->transposed) {
            transpose(r->scratch, g->p, g->rows, g->cols);
            vpd_adamw_update(r->scratch, g->g, g->m, g->v, g->n, lr, c->beta1, c->beta2, c->adam_eps, g->wd, t);
            transpose(g->p, r->scratch, g->cols, g->rows);
        } else {
            vpd_adamw_update(g->p, g->g, g->m, g->v, g->n, lr, c->beta1, c->beta2, c->adam_eps, g->wd, t);
        }
    }
    vpd_model_sync(&r->m);
}

static void write_json_line(run_state *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void write_json_line(run_state *r, const char *fmt, ...) {
    if (!r->jsonl) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(r->jsonl, fmt, ap);
    va_end(ap);
    fputc('\n', r->jsonl);
    fflush(r->jsonl);
}

static vpd_status train(run_state *r, double *final_train, double *final_eval) {
    const pretrain_cfg *c = &r->c;
    vpd_model *m = &r->m;
    bool lm = m->cfg.kind == VPD_MODEL_LLAMA;
    bool have_eval = !lm || r->have_val;
    double per_example = lm ? (double)r->S : 1.0; /* tokens or examples */
    const char *unit = lm ? "tok/s" : "ex/s";
    vpd_grad_range ranges[64];
    for (int i = 0; i < r->n_groups; i++) ranges[i] = (vpd_grad_range){r->groups[i].g, r->groups[i].n};
    double t0 = vpd_wtime(), t_log = t0;
    int64_t log_step = 0;
    double last_loss = NAN;
    for (int step = 0; step < c->steps; step++) {
        double lr = vpd_schedule_value(&c->lr, step, c->steps);
        if (have_eval && c->eval_freq > 0 && step % c->eval_freq == 0) {
            double ev;
            VPD_TRY(evaluate(r, &ev));
            write_json_line(r, "{\"step\": %d, \"%s\": %.9g, \"%s\": %lld}", step, lm ? "val_loss" : "eval_loss", ev,
                            lm ? "tokens" : "examples", (long long)((double)step * c->batch_size * per_example));
            vpd_info("step %d: %s %.6g", step, lm ? "val loss" : "eval loss", ev);
        }
        double loss;
        VPD_TRY(forward_loss(r, VPD_DATA_TRAIN, (uint64_t)step, r->B, true, &loss));
        memset(r->grads, 0, sizeof(real) * r->n_grads);
        vpd_model_backward(m, r->dout, r->use_hook ? NULL : r->grads, NULL, r->use_hook ? &r->hook.base : NULL);
        /* average: each rank's loss is the mean over its equal slice */
        vpd_dp_mean(r->grads, r->n_grads, vpd_comm_world());
        loss = allreduce_mean(loss, r->world);
        if (!isfinite(loss))
            return vpd_error(VPD_ERR_VALUE, "pretrain: loss is %g at step %d (lr %.3g): lower the learning rate", loss, step, lr);
        double gnorm = c->grad_clip > 0 ? vpd_clip_grad_norm(ranges, r->n_groups, c->grad_clip) : vpd_grad_norm(ranges, r->n_groups);
        optimizer_step(r, lr, (int64_t)step + 1);
        last_loss = loss;
        if (step % c->log_freq == 0 || step == c->steps - 1) {
            double now = vpd_wtime();
            double rate = (double)(step + 1 - log_step) * c->batch_size * per_example / fmax(now - t_log, 1e-9);
            vpd_info("step %d/%d | loss %.6g | lr %.3e | grad norm %.3e | %.3g %s", step, c->steps, loss, lr, gnorm, rate, unit);
            write_json_line(r, "{\"step\": %d, \"train_loss\": %.9g, \"lr\": %.9g, \"grad_norm\": %.6g, \"%s\": %lld}", step,
                            loss, lr, gnorm, lm ? "tokens" : "examples",
                            (long long)((double)(step + 1) * c->batch_size * per_example));
            t_log = now;
            log_step = step + 1;
        }
    }
    *final_train = last_loss;
    *final_eval = NAN;
    if (have_eval) {
        VPD_TRY(evaluate(r, final_eval));
        write_json_line(r, "{\"step\": %d, \"%s\": %.9g, \"%s\": %lld}", c->steps, lm ? "val_loss" : "eval_loss", *final_eval,
                        lm ? "tokens" : "examples", (long long)((double)c->steps * c->batch_size * per_example));
    }
    double dt = vpd_wtime() - t0;
    vpd_info("trained %d steps in %.2f s (%.3g ms/step); final train loss %.6g%s", c->steps, dt, 1e3 * dt / c->steps, last_loss,
             have_eval ? "" : " (no val_tokens: no validation loss)");
    if (have_eval) vpd_info("final %s %.6g (%d batches of %d)", lm ? "val loss" : "eval loss", *final_eval, c->n_eval_steps,
                            c->eval_batch_size);
    if (m->cfg.kind == VPD_MODEL_TMS) {
        /* TMS training is finicky: a feature whose ReLU died early stays unrepresented.
         * Say so, rather than hand a decomposition a target stuck in a local minimum. */
        int F = m->cfg.n_features, Hd = m->cfg.n_hidden, p = vpd_model_find_param(m, "linear1.weight"), alive = 0;
        const real *W1 = m->params + m->pinfo[p].offset;
        for (int f = 0; f < F; f++) {
            double n2 = 0;
            for (int h = 0; h < Hd; h++) n2 += (double)W1[(size_t)h * F + f] * W1[(size_t)h * F + f];
            alive += sqrt(n2) > 0.5;
        }
        if (alive < F && F <= 2 * Hd + 1)
            vpd_warn("tms: only %d of %d features are represented (|w_f| > 0.5): a local minimum; try another seed", alive, F);
        else
            vpd_info("tms: %d of %d features represented (|w_f| > 0.5)", alive, F);
    }
    return VPD_OK;
}

static vpd_status write_extras(run_state *r, vpd_config *root, const char *dir) {
    char path[1200];
    snprintf(path, sizeof path, "%s/pretrain_config.yaml", dir);
    VPD_TRY(vpd_config_write(root, path));
    if (r->c.model.kind == VPD_MODEL_RESID_MLP) {
        /* spd's ResidMLPTargetRunInfo reads label_coeffs.json next to the weights */
        snprintf(path, sizeof path, "%s/label_coeffs.json", dir);
        FILE *f = fopen(path, "w");
        if (!f) return vpd_error(VPD_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        fputc('[', f);
        for (int i = 0; i < r->toy.n_features; i++) fprintf(f, "%s%.9g", i ? ", " : "", (double)r->toy.coeffs[i]);
        fputs("]\n", f);
        if (fclose(f) != 0) return vpd_error(VPD_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    }
    return VPD_OK;
}

static void run_free(run_state *r) {
    if (r->jsonl) fclose(r->jsonl);
    if (r->have_toy) vpd_toy_data_free(&r->toy);
    if (r->have_train) vpd_tokens_close(&r->train);
    if (r->have_val) vpd_tokens_close(&r->val);
    vpd_free(r->x); vpd_free(r->labels); vpd_free(r->out); vpd_free(r->dout); vpd_free(r->probs);
    vpd_free(r->tok); vpd_free(r->tgt); vpd_free(r->grads); vpd_free(r->moments); vpd_free(r->scratch);
    if (r->m.params) vpd_model_free(&r->m);
}

/* ---- the library entry points (include/vpd/pretrain.h) ------------------------------------- */
vpd_status vpd_pretrain_open(vpd_pretrain **out, const char *cfg_path, const char *const *sets, int n_sets,
                             const char *out_dir) {
    *out = NULL;
    run_state *r = calloc(1, sizeof *r);
    if (!r) return vpd_error(VPD_ERR_MEM, "pretrain state");
    r->rank = vpd_world_rank();
    r->world = vpd_world_size();
    r->final_train = r->final_eval = NAN;
    vpd_status s = vpd_config_load(cfg_path, &r->root);
    for (int i = 0; s == VPD_OK && i < n_sets; i++) s = vpd_config_set(r->root, sets[i]);
    if (s == VPD_OK) s = read_config(r->root, &r->c, out_dir);
    if (s == VPD_OK) s = setup(r);
    const char *dir = r->c.out_dir;
    if (s == VPD_OK) {
        const pretrain_cfg *c = &r->c;
        size_t n_train = 0;
        for (int i = 0; i < r->n_groups; i++) n_train += r->groups[i].n;
        vpd_info("pretrain %s: %zu parameters (%zu in AdamW state), %d steps x batch %d (%d rank%s), lr %s %.3g "
                 "(warmup %.3g, final x%.3g), weight decay %.3g, seed %llu",
                 vpd_model_kind_name(c->model.kind), r->m.n_params, n_train, c->steps, c->batch_size, r->world,
                 r->world > 1 ? "s" : "", vpd_sched_fn_name(c->lr.fn_type), c->lr.start_val, c->lr.warmup_pct,
                 c->lr.final_val_frac, c->weight_decay, (unsigned long long)c->seed);
        if (c->model.kind != VPD_MODEL_LLAMA)
            vpd_info("data: %s, feature_probability %g, values in [%g, %g)", vpd_data_gen_name(c->gen, c->n_active),
                     c->feature_probability, r->toy.value_min, r->toy.value_max);
        else
            vpd_info("data: %s (%lld tokens), val %s, windows of %d+1", c->train_tokens, (long long)r->train.n_tokens,
                     c->val_tokens ? c->val_tokens : "none", r->S);
    }
    /* rank 0 creates the directory and streams the curve into it */
    if (s == VPD_OK && r->rank == 0) {
        s = vpd_mkdirs(dir);
        if (s == VPD_OK) {
            char path[1200];
            snprintf(path, sizeof path, "%s/training.jsonl", dir);
            r->jsonl = fopen(path, "w");
            if (!r->jsonl) s = vpd_error(VPD_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        }
    }
    /* every rank learns whether any rank failed before the collective training loop */
    const int any_bad = vpd_max_int(s != VPD_OK, vpd_comm_world());
    if (s == VPD_OK && any_bad) s = vpd_error(VPD_ERR_MPI, "another rank failed during setup");
    if (s != VPD_OK) {
        vpd_pretrain_close(r);
        return s;
    }
    *out = r;
    return VPD_OK;
}

vpd_status vpd_pretrain_run(vpd_pretrain *r) { return train(r, &r->final_train, &r->final_eval); }

vpd_status vpd_pretrain_write(vpd_pretrain *r) {
    if (r->rank != 0) return VPD_OK;
    const char *dir = r->c.out_dir;
    VPD_TRY(vpd_model_save(&r->m, dir));
    VPD_TRY(write_extras(r, r->root, dir));
    vpd_info("wrote %s (config.json, model.safetensors, training.jsonl, pretrain_config.yaml%s)", dir,
             r->c.model.kind == VPD_MODEL_RESID_MLP ? ", label_coeffs.json" : "");
    return VPD_OK;
}

void vpd_pretrain_close(vpd_pretrain *r) {
    if (!r) return;
    run_free(r);
    vpd_config_free(r->root);
    free(r);
}
