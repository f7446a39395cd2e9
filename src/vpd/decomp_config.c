/* Reading a decomposition config: the reference implementation's YAML schemas mapped onto
 * one internal vpd_decomp_config.
 *
 *   spd (goodfire-ai/spd): every key at the top level, `loss_metric_configs` a list of
 *     {classname, coeff, ...}, one `lr_schedule`, `grad_clip_norm_components` /
 *     `grad_clip_norm_ci_fns`, `pretrained_model_*`, `task_config`.
 *   param-decomp (the paper's run): `pd:` (the method; `loss_metrics` a mapping
 *     {ClassName: {coeff, ...}}, `components_optimizer` / `ci_fn_optimizer` each
 *     {lr_schedule, grad_clip_norm}), `logging`, `target`, `data`, `runtime`.
 * Plus vpd's own sections: `target: {path}` (a model directory), `data` (token files),
 * `output: {dir}`, `checkpoint`, `parallel: {component_parallel}`.
 *
 * Unknown keys are errors with their line (config.h). Keys that only concern the reference
 * implementation's logging/runtime (wandb_*, device, eval plots) are accepted with a
 * one-line notice. Field defaults are spd's (spd/configs.py). */
#include <stdio.h>
#include <string.h>

#include "vpd/config.h"
#include "vpd/decomp.h"
#include "vpd/loss_table.h"

void vpd_decomp_config_defaults(vpd_decomp_config *c) {
    memset(c, 0, sizeof *c);
    c->seed = 0;
    c->n_mask_samples = 1;
    c->ci_type = VPD_CI_MLP;
    c->sampling = VPD_SAMPLING_CONTINUOUS;
    snprintf(c->sigmoid_type, sizeof c->sigmoid_type, "leaky_hard");
    c->sigmoid_lower = VPD_SIGMOID_LOWER_LEAKY_HARD;
    c->sigmoid_upper = VPD_SIGMOID_UPPER_LEAKY_HARD;
    c->use_delta_component = true;
    c->output_loss = VPD_OUT_MSE;
    c->lr_components = c->lr_ci = vpd_schedule_constant(1e-3);
    c->faithfulness_warmup_lr = 1e-3;
    c->train_log_freq = 50;
    c->eval_freq = 1000;
    c->n_eval_steps = 1;
    c->max_seq_len = 512;
    c->component_parallel = 1;
    snprintf(c->data_generation_type, sizeof c->data_generation_type, "at_least_zero_active");
}

#define TRY(x) do { vpd_status _s = (x); if (_s != VPD_OK) return _s; } while (0)

static vpd_status get_str(vpd_config *n, const char *path, char *dst, size_t size, const char *def) {
    const char *v = NULL;
    TRY(vpd_config_get_string_or_null(n, path, def, &v));
    snprintf(dst, size, "%s", v ? v : "");
    return VPD_OK;
}

/* one loss: `lm` is its mapping (classname already known); its own fields are read by its
 * row of the loss table */
static vpd_status read_loss(vpd_config *lm, vpd_loss_kind kind, vpd_loss_cfg *lc) {
    memset(lc, 0, sizeof *lc);
    lc->kind = kind;
    vpd_config_consume(lm, "classname");
    TRY(vpd_config_require(lm, "coeff"));
    TRY(vpd_config_get_double(lm, "coeff", 0, -1e30, 1e30, &lc->coeff));
    const vpd_loss_def *def = vpd_loss_def_of(kind);
    return def->read_config ? def->read_config(lm, lc) : VPD_OK;
}

static vpd_status read_losses_list(vpd_config *seq, vpd_decomp_config *c) {
    if (seq->kind != VPD_CONFIG_SEQ) return vpd_config_error(seq, "expected a list of {classname, coeff, ...}");
    seq->consumed = true;
    for (int i = 0; i < seq->n; i++) {
        vpd_config *lm = seq->items[i];
        if (c->n_losses >= VPD_MAX_LOSSES) return vpd_config_error(lm, "more than %d losses", VPD_MAX_LOSSES);
        const char *cls = NULL;
        TRY(vpd_config_require(lm, "classname"));
        TRY(vpd_config_get_string(lm, "classname", NULL, &cls));
        vpd_loss_kind k;
        if (vpd_loss_kind_parse(cls, &k) != VPD_OK) return vpd_config_error(vpd_config_find(lm, "classname"), "%s", vpd_last_error());
        TRY(read_loss(lm, k, &c->losses[c->n_losses++]));
    }
    return VPD_OK;
}

static vpd_status read_losses_map(vpd_config *map, vpd_decomp_config *c) {
    if (map->kind != VPD_CONFIG_MAP) return vpd_config_error(map, "expected a mapping {ClassName: {coeff, ...}}");
    map->consumed = true;
    for (int i = 0; i < map->n; i++) {
        vpd_config *lm = map->items[i];
        if (c->n_losses >= VPD_MAX_LOSSES) return vpd_config_error(lm, "more than %d losses", VPD_MAX_LOSSES);
        vpd_loss_kind k;
        if (vpd_loss_kind_parse(lm->key, &k) != VPD_OK) return vpd_config_error(lm, "%s", vpd_last_error());
        TRY(read_loss(lm, k, &c->losses[c->n_losses++]));
    }
    return VPD_OK;
}

static vpd_status read_module_info(vpd_config *m, vpd_decomp_config *c) {
    vpd_config *mi = vpd_config_find(m, "module_info");
    if (!mi) return vpd_config_require(m, "module_info");
    if (mi->kind != VPD_CONFIG_SEQ) return vpd_config_error(mi, "expected a list of {module_pattern, C}");
    mi->consumed = true;
    for (int i = 0; i < mi->n; i++) {
        if (c->n_module_info >= VPD_MAX_MODULE_PATTERNS) return vpd_config_error(mi, "more than %d patterns", VPD_MAX_MODULE_PATTERNS);
        vpd_module_info *e = &c->module_info[c->n_module_info++];
        TRY(vpd_config_require(mi->items[i], "module_pattern"));
        TRY(get_str(mi->items[i], "module_pattern", e->pattern, sizeof e->pattern, NULL));
        TRY(vpd_config_require(mi->items[i], "C"));
        TRY(vpd_config_get_int(mi->items[i], "C", 1, 1, 1 << 30, &e->C));
    }
    if (vpd_config_has(m, "identity_module_info") && !vpd_config_is_null(m, "identity_module_info"))
        return vpd_config_error(vpd_config_find(m, "identity_module_info"),
                                "identity_module_info (identity insertions) is not supported by vpd yet");
    return VPD_OK;
}

static vpd_status read_ci_config(vpd_config *m, vpd_decomp_config *c) {
    vpd_config *ci = vpd_config_find(m, "ci_config");
    if (!ci) return vpd_config_require(m, "ci_config");
    const char *fn = NULL;
    vpd_config_consume(ci, "mode");
    TRY(vpd_config_require(ci, "fn_type"));
    TRY(vpd_config_get_string(ci, "fn_type", NULL, &fn));
    if (vpd_ci_type_parse(fn, &c->ci_type) != VPD_OK) return vpd_config_error(vpd_config_find(ci, "fn_type"), "%s", vpd_last_error());
    c->ci_n_hidden = 0;
    if (vpd_config_has(ci, "hidden_dims") && !vpd_config_is_null(ci, "hidden_dims"))
        TRY(vpd_config_get_int_list(ci, "hidden_dims", 0, 1 << 24, c->ci_hidden, VPD_CI_MAX_HIDDEN, &c->ci_n_hidden));
    /* global_reverse_residual's keys (that kind is not implemented): accepted when null;
     * vpd_config_is_null consumes a null key, anything else is left to the unknown-key check */
    static const char *const rr_keys[] = {"reader_hidden_dims", "d_resid_ci_fn", "block_groups", "transition_attn_config",
                                          "transition_hidden_dim", NULL};
    for (int i = 0; rr_keys[i]; i++) (void)vpd_config_is_null(ci, rr_keys[i]);
    vpd_config *tc = vpd_config_find(ci, "simple_transformer_ci_cfg");
    if (c->ci_type == VPD_CI_GLOBAL_SHARED_TRANSFORMER) {
        if (!tc || vpd_config_node_is_null(tc))
            return vpd_config_error(vpd_config_find(ci, "fn_type"),
                                    "global_shared_transformer needs ci_config.simple_transformer_ci_cfg");
        vpd_ci_transformer_cfg *t = &c->ci_transformer;
        memset(t, 0, sizeof *t);
        TRY(vpd_config_require(tc, "d_model"));
        TRY(vpd_config_get_int(tc, "d_model", 1, 1, 1 << 20, &t->d_model));
        TRY(vpd_config_require(tc, "n_blocks"));
        TRY(vpd_config_get_int(tc, "n_blocks", 1, 1, 1024, &t->n_blocks));
        t->mlp_hidden[0] = 4 * t->d_model; /* spd's default [4 d_model] */
        t->n_mlp_hidden = 1;
        if (vpd_config_has(tc, "mlp_hidden_dim") && !vpd_config_is_null(tc, "mlp_hidden_dim"))
            TRY(vpd_config_get_int_list(tc, "mlp_hidden_dim", 0, 1 << 24, t->mlp_hidden, VPD_CI_MAX_HIDDEN, &t->n_mlp_hidden));
        vpd_config *ac = vpd_config_find(tc, "attn_config");
        if (!ac) return vpd_config_require(tc, "attn_config");
        TRY(vpd_config_require(ac, "n_heads"));
        TRY(vpd_config_get_int(ac, "n_heads", 1, 1, 1 << 16, &t->n_heads));
        TRY(vpd_config_get_int(ac, "max_len", 2048, 1, 1 << 24, &t->max_len));
        TRY(vpd_config_get_double(ac, "rope_base", 10000.0, 1e-9, 1e30, &t->rope_base));
    } else if (tc && vpd_config_node_is_null(tc)) {
        vpd_config_consume(ci, "simple_transformer_ci_cfg");
    }
    return VPD_OK;
}

/* The method keys, shared by both schemas (m = root for spd, root.pd for param-decomp). */
static vpd_status read_method(vpd_config *m, vpd_decomp_config *c) {
    int64_t seed = 0;
    TRY(vpd_config_get_int64(m, "seed", 0, 0, INT64_MAX, &seed));
    c->seed = (uint64_t)seed;
    TRY(vpd_config_require(m, "n_mask_samples"));
    TRY(vpd_config_get_int(m, "n_mask_samples", 1, 1, 1000, &c->n_mask_samples));
    TRY(read_ci_config(m, c));
    static const char *const samplings[] = {"continuous", "binomial", NULL};
    int v = 0;
    TRY(vpd_config_get_enum(m, "sampling", samplings, 0, &v));
    c->sampling = (vpd_sampling)v;
    TRY(get_str(m, "sigmoid_type", c->sigmoid_type, sizeof c->sigmoid_type, "leaky_hard"));
    if (vpd_sigmoid_lookup(c->sigmoid_type, &c->sigmoid_lower, &c->sigmoid_upper) != VPD_OK)
        return vpd_config_error(vpd_config_find(m, "sigmoid_type"), "%s", vpd_last_error());
    TRY(read_module_info(m, c));
    TRY(vpd_config_get_bool(m, "use_delta_component", true, &c->use_delta_component));
    /* vpd extension: `init: random` (default, §1) or `init: svd` (ScaLAPACK SVD of each W) */
    static const char *const inits[] = {"random", "svd", NULL};
    int init = 0;
    TRY(vpd_config_get_enum(m, "init", inits, 0, &init));
    c->init_svd = init == 1;
    TRY(vpd_config_get_double(m, "svd_rest_scale", 0.1, 0.0, 1.0, &c->svd_rest_scale));
    if (vpd_config_has(m, "init_spd_checkpoint") && !vpd_config_is_null(m, "init_spd_checkpoint"))
        return vpd_config_error(vpd_config_find(m, "init_spd_checkpoint"), "initialising from an spd checkpoint is not supported");
    TRY(vpd_config_require(m, "steps"));
    TRY(vpd_config_get_int(m, "steps", 1, 1, 1 << 30, &c->steps));
    TRY(vpd_config_require(m, "batch_size"));
    TRY(vpd_config_get_int(m, "batch_size", 1, 1, 1 << 30, &c->batch_size));
    TRY(vpd_config_get_int(m, "faithfulness_warmup_steps", 0, 0, 1 << 30, &c->faithfulness_warmup_steps));
    TRY(vpd_config_get_positive_double(m, "faithfulness_warmup_lr", 1e-3, &c->faithfulness_warmup_lr));
    TRY(vpd_config_get_double(m, "faithfulness_warmup_weight_decay", 0, 0, 1e30, &c->faithfulness_warmup_weight_decay));
    static const char *const outs[] = {"mse", "kl", NULL};
    if (vpd_config_has(m, "output_loss_type")) {
        TRY(vpd_config_get_enum(m, "output_loss_type", outs, 0, &v));
        c->output_loss = (vpd_output_loss)v;
        c->output_loss_given = true;
    }
    /* bf16 autocast: accepted; vpd computes in fp32 (VPD_METHOD.md §5) */
    bool bf16 = false;
    TRY(vpd_config_get_bool(m, "autocast_bf16", false, &bf16));
    if (bf16) vpd_info("config: autocast_bf16 is accepted; vpd computes in fp32");
    return VPD_OK;
}

static vpd_status read_task(vpd_config *root, vpd_decomp_config *c) {
    vpd_config *t = vpd_config_find(root, "task_config");
    if (!t) return VPD_OK;
    vpd_config_consume(t, "task_name");
    TRY(vpd_config_get_double(t, "feature_probability", 0.05, 0, 1, &c->feature_probability));
    TRY(get_str(t, "data_generation_type", c->data_generation_type, sizeof c->data_generation_type, "at_least_zero_active"));
    TRY(vpd_config_get_int(t, "max_seq_len", 512, 1, 1 << 20, &c->max_seq_len));
    /* the reference implementation's dataset plumbing (HF datasets) — vpd reads token files
     * from the `data` section instead */
    static const char *const lm_keys[] = {"buffer_size", "dataset_name", "column_name", "train_data_split",
                                          "eval_data_split", "shuffle_each_epoch", "is_tokenized", "streaming",
                                          "dataset_seed", "prefix_window", NULL};
    for (int i = 0; lm_keys[i]; i++) vpd_config_consume(t, lm_keys[i]);
    return VPD_OK;
}

static vpd_status read_vpd_sections(vpd_config *root, vpd_decomp_config *c, bool pd_schema) {
    /* target: vpd's `target: {path}` or param-decomp's target.model_path; spd's
     * pretrained_model_path when it names a local directory */
    vpd_config *t = vpd_config_find(root, "target");
    if (t && !pd_schema) TRY(get_str(t, "path", c->target_dir, sizeof c->target_dir, ""));
    if (t && pd_schema) {
        if (vpd_config_has(t, "path")) TRY(get_str(t, "path", c->target_dir, sizeof c->target_dir, ""));
        else TRY(get_str(t, "model_path", c->target_dir, sizeof c->target_dir, ""));
        static const char *const k[] = {"model_class", "model_name", "output_extract", "model_path", NULL};
        for (int i = 0; k[i]; i++) vpd_config_consume(t, k[i]);
    }
    if (vpd_config_has(root, "pretrained_model_path") && !vpd_config_is_null(root, "pretrained_model_path")) {
        char p[1024];
        TRY(get_str(root, "pretrained_model_path", p, sizeof p, ""));
        if (!c->target_dir[0]) snprintf(c->target_dir, sizeof c->target_dir, "%s", p);
    }
    vpd_config *d = vpd_config_find(root, "data");
    if (d) {
        TRY(get_str(d, "train", c->train_tokens, sizeof c->train_tokens, ""));
        TRY(get_str(d, "eval", c->eval_tokens, sizeof c->eval_tokens, ""));
        if (vpd_config_has(d, "max_seq_len")) TRY(vpd_config_get_int(d, "max_seq_len", 512, 1, 1 << 20, &c->max_seq_len));
        static const char *const k[] = {"tokenizer_name", "dataset_name", "column_name", "train_split", "eval_split",
                                        "shuffle_each_epoch", "is_tokenized", "streaming", "buffer_size", NULL};
        for (int i = 0; k[i]; i++) vpd_config_consume(d, k[i]);
    }
    vpd_config *o = vpd_config_find(root, "output");
    if (o) TRY(get_str(o, "dir", c->out_dir, sizeof c->out_dir, ""));
    vpd_config *p = vpd_config_find(root, "parallel");
    if (p) TRY(vpd_config_get_int(p, "component_parallel", 1, 1, 1 << 20, &c->component_parallel));
    return VPD_OK;
}

static vpd_status read_logging(vpd_config *l, vpd_decomp_config *c) {
    TRY(vpd_config_get_int(l, "train_log_freq", 50, 1, 1 << 30, &c->train_log_freq));
    TRY(vpd_config_get_int(l, "eval_freq", 1000, 1, 1 << 30, &c->eval_freq));
    TRY(vpd_config_get_int(l, "n_eval_steps", 1, 1, 1 << 30, &c->n_eval_steps));
    TRY(vpd_config_get_int(l, "eval_batch_size", c->batch_size, 1, 1 << 30, &c->eval_batch_size));
    if (vpd_config_has(l, "save_freq") && !vpd_config_is_null(l, "save_freq"))
        TRY(vpd_config_get_int(l, "save_freq", 0, 1, 1 << 30, &c->save_freq));
    TRY(vpd_config_get_double(l, "ci_alive_threshold", 0.0, 0, 1, &c->ci_alive_threshold));
    return VPD_OK;
}

/* keys that only matter to the reference implementation's runtime and logging */
static const char *const ignored_keys[] = {
    "wandb_*", "eval_metric_configs", "eval_metric_configs.*", "slow_eval_freq", "slow_eval_on_first_step",
    "pretrained_model_class", "pretrained_model_name", "pretrained_model_output_attr", "tokenizer_name",
    "dist_backend", "out_dir", "driver_path", "runtime", "runtime.*", "logging.eval_metrics", "logging.eval_metrics.*",
    "logging.slow_eval_freq", "logging.slow_eval_on_first_step", "logging.wandb_*", "checkpoint", "checkpoint.*",
    NULL};

void vpd_decomp_config_default_output_loss(vpd_decomp_config *c, const vpd_model *target) {
    if (!c->output_loss_given) c->output_loss = vpd_model_is_lm(target->cfg.kind) ? VPD_OUT_KL : VPD_OUT_MSE;
}

vpd_status vpd_decomp_config_read(vpd_config *root, vpd_decomp_config *c) {
    vpd_decomp_config_defaults(c);
    vpd_config *pd = vpd_config_find(root, "pd");
    if (pd) {
        TRY(read_method(pd, c));
        vpd_config *lm = vpd_config_find(pd, "loss_metrics");
        if (!lm) return vpd_config_require(pd, "loss_metrics");
        TRY(read_losses_map(lm, c));
        vpd_config *co = vpd_config_find(pd, "components_optimizer"), *fo = vpd_config_find(pd, "ci_fn_optimizer");
        if (!co) return vpd_config_require(pd, "components_optimizer");
        TRY(vpd_schedule_from_config(co, NULL, &c->lr_components));
        if (vpd_config_has(co, "grad_clip_norm") && !vpd_config_is_null(co, "grad_clip_norm"))
            TRY(vpd_config_get_positive_double(co, "grad_clip_norm", 1, &c->grad_clip_components));
        c->lr_ci = c->lr_components;
        if (fo) {
            TRY(vpd_schedule_from_config(fo, NULL, &c->lr_ci));
            if (vpd_config_has(fo, "grad_clip_norm") && !vpd_config_is_null(fo, "grad_clip_norm"))
                TRY(vpd_config_get_positive_double(fo, "grad_clip_norm", 1, &c->grad_clip_ci));
        }
        vpd_config *lg = vpd_config_find(root, "logging");
        c->eval_batch_size = c->batch_size;
        if (lg) TRY(read_logging(lg, c));
        if (vpd_config_has(pd, "ci_alive_threshold")) TRY(vpd_config_get_double(pd, "ci_alive_threshold", 0, 0, 1, &c->ci_alive_threshold));
        vpd_config *data = vpd_config_find(root, "data");
        if (data && vpd_config_has(data, "max_seq_len")) TRY(vpd_config_get_int(data, "max_seq_len", 512, 1, 1 << 20, &c->max_seq_len));
        TRY(read_vpd_sections(root, c, true));
        if (vpd_config_has(root, "task_config")) TRY(read_task(root, c));
    } else {
        TRY(read_method(root, c));
        vpd_config *lm = vpd_config_find(root, "loss_metric_configs");
        if (lm) TRY(read_losses_list(lm, c));
        TRY(vpd_schedule_from_config(root, "lr", &c->lr_components));
        c->lr_ci = c->lr_components;
        const char *clip = vpd_config_has(root, "grad_clip_norm_components") ? "grad_clip_norm_components" : "grad_clip_norm";
        if (vpd_config_has(root, clip) && !vpd_config_is_null(root, clip))
            TRY(vpd_config_get_positive_double(root, clip, 1, &c->grad_clip_components));
        if (vpd_config_has(root, "grad_clip_norm_ci_fns") && !vpd_config_is_null(root, "grad_clip_norm_ci_fns"))
            TRY(vpd_config_get_positive_double(root, "grad_clip_norm_ci_fns", 1, &c->grad_clip_ci));
        c->eval_batch_size = c->batch_size;
        TRY(read_logging(root, c));
        TRY(read_task(root, c));
        TRY(read_vpd_sections(root, c, false));
    }
    if (c->n_losses == 0) return vpd_error(VPD_ERR_CONFIG, "%s: no losses configured (loss_metric_configs / pd.loss_metrics)", root->file);
    vpd_config_note_ignored(root, ignored_keys);
    return vpd_config_check_unused(root, ignored_keys);
}
