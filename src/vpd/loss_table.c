/* The loss table (loss_table.h): one row per spd loss classname, and the readers of the
 * loss-specific YAML fields (spd spd/configs.py; param-decomp's migrated names accepted). */
#include <stdio.h>
#include <string.h>

#include "vpd/config.h"
#include "vpd/loss_table.h"

#define TRY(x) do { vpd_status _s = (x); if (_s != VPD_OK) return _s; } while (0)

/* ---- field readers ---------------------------------------------------------------------- */

/* routing: {type: uniform_k_subset} | {type: static_probability, p} */
static vpd_status read_routing(vpd_config *lm, vpd_loss_cfg *lc) {
    lc->routing = VPD_ROUTING_UNIFORM_K_SUBSET;
    vpd_config *r = vpd_config_find(lm, "routing");
    if (!r) return VPD_OK;
    static const char *const types[] = {"uniform_k_subset", "static_probability", NULL};
    int t = 0;
    TRY(vpd_config_get_enum(r, "type", types, 0, &t));
    lc->routing = t == 0 ? VPD_ROUTING_UNIFORM_K_SUBSET : VPD_ROUTING_STATIC_PROBABILITY;
    if (t == 1) {
        TRY(vpd_config_require(r, "p"));
        TRY(vpd_config_get_double(r, "p", 0.5, 0.0, 1.0, &lc->routing_p));
    }
    return VPD_OK;
}

static vpd_status read_importance_minimality(vpd_config *lm, vpd_loss_cfg *lc) {
    if (vpd_config_has(lm, "pnorm_1") && !vpd_config_has(lm, "pnorm"))
        TRY(vpd_config_get_double(lm, "pnorm_1", 1, 0, 1e6, &lc->pnorm));
    else {
        TRY(vpd_config_require(lm, "pnorm"));
        TRY(vpd_config_get_double(lm, "pnorm", 1, 0, 1e6, &lc->pnorm));
        vpd_config_consume(lm, "pnorm_1");
    }
    vpd_config_consume(lm, "pnorm_2");
    if (!vpd_config_has(lm, "beta")) vpd_warn("ImportanceMinimalityLoss: beta not given, defaulting to 0.0 (as spd)");
    TRY(vpd_config_get_double(lm, "beta", 0, 0, 1e30, &lc->beta));
    TRY(vpd_config_get_double(lm, "eps", 1e-12, 0, 1e30, &lc->eps));
    TRY(vpd_config_get_double(lm, "p_anneal_start_frac", 1.0, 0, 1, &lc->p_anneal_start_frac));
    TRY(vpd_config_get_double(lm, "p_anneal_end_frac", 1.0, 0, 1, &lc->p_anneal_end_frac));
    if (vpd_config_has(lm, "p_anneal_final_p") && !vpd_config_is_null(lm, "p_anneal_final_p")) {
        lc->has_p_anneal_final_p = true;
        TRY(vpd_config_get_double(lm, "p_anneal_final_p", 0, 0, 1e6, &lc->p_anneal_final_p));
    }
    if (lc->has_p_anneal_final_p && lc->p_anneal_end_frac < lc->p_anneal_start_frac)
        return vpd_config_error(vpd_config_find(lm, "p_anneal_end_frac"),
                                "p_anneal_end_frac (%g) must be >= p_anneal_start_frac (%g)", lc->p_anneal_end_frac,
                                lc->p_anneal_start_frac);
    return VPD_OK;
}

static vpd_status read_pgd(vpd_config *lm, vpd_loss_cfg *lc) {
    static const char *const inits[] = {"random", "ones", "zeroes", NULL};
    static const char *const scopes[] = {"unique_per_datapoint", "shared_across_batch", NULL};
    int v = 0;
    TRY(vpd_config_require(lm, "init"));
    TRY(vpd_config_get_enum(lm, "init", inits, 0, &v));
    lc->pgd_init = (vpd_pgd_init)v;
    TRY(vpd_config_require(lm, "step_size"));
    TRY(vpd_config_get_double(lm, "step_size", 0.1, -1e30, 1e30, &lc->step_size));
    TRY(vpd_config_require(lm, "n_steps"));
    TRY(vpd_config_get_int(lm, "n_steps", 1, 0, 1000000, &lc->n_steps));
    TRY(vpd_config_require(lm, "mask_scope"));
    TRY(vpd_config_get_enum(lm, "mask_scope", scopes, 0, &v));
    lc->mask_scope = (vpd_pgd_scope)v;
    return VPD_OK;
}

static vpd_status read_pgd_routed(vpd_config *lm, vpd_loss_cfg *lc) {
    TRY(read_pgd(lm, lc));
    return read_routing(lm, lc);
}

static vpd_status read_ppgd(vpd_config *lm, vpd_loss_cfg *lc) {
    vpd_config *opt = vpd_config_find(lm, "optimizer");
    if (!opt) return vpd_config_require(lm, "optimizer");
    static const char *const opts[] = {"sign", "adam", NULL};
    int t = 0;
    TRY(vpd_config_require(opt, "type"));
    TRY(vpd_config_get_enum(opt, "type", opts, 0, &t));
    lc->ppgd_opt = (vpd_ppgd_optimizer)t;
    TRY(vpd_schedule_from_config(opt, t == 0 ? "step_size" : "lr", &lc->ppgd_lr));
    if (t == 1) {
        TRY(vpd_config_get_double(opt, "beta1", 0.9, 0, 1, &lc->ppgd_beta1));
        TRY(vpd_config_get_double(opt, "beta2", 0.999, 0, 1, &lc->ppgd_beta2));
        TRY(vpd_config_get_double(opt, "eps", 1e-8, 0, 1, &lc->ppgd_eps));
    }
    /* scope: a mapping {type, n_sources} or (old configs) a bare string; old names migrate */
    vpd_config *sc = vpd_config_find(lm, "scope");
    if (!sc) return vpd_config_require(lm, "scope");
    const char *type = NULL;
    if (sc->kind == VPD_CONFIG_SCALAR) {
        TRY(vpd_config_get_string(lm, "scope", NULL, &type));
    } else {
        TRY(vpd_config_require(sc, "type"));
        TRY(vpd_config_get_string(sc, "type", NULL, &type));
    }
    if (!strcmp(type, "single_source") || !strcmp(type, "single_mask")) lc->ppgd_scope = VPD_PPGD_SINGLE_SOURCE;
    else if (!strcmp(type, "broadcast_across_batch")) lc->ppgd_scope = VPD_PPGD_BROADCAST_ACROSS_BATCH;
    else if (!strcmp(type, "repeat_across_batch") || !strcmp(type, "batch_invariant")) lc->ppgd_scope = VPD_PPGD_REPEAT_ACROSS_BATCH;
    else if (!strcmp(type, "per_batch_per_position") || !strcmp(type, "per_batch") ||
             !strcmp(type, "unique_per_batch_per_token"))
        lc->ppgd_scope = VPD_PPGD_PER_BATCH_PER_POSITION;
    else
        return vpd_config_error(sc, "unknown scope type '%s' (expected single_source, broadcast_across_batch, "
                                    "repeat_across_batch or per_batch_per_position)", type);
    if (lc->ppgd_scope == VPD_PPGD_REPEAT_ACROSS_BATCH) {
        const char *key = vpd_config_has(sc, "n_sources") ? "n_sources" : "n_masks";
        TRY(vpd_config_require(sc, key));
        TRY(vpd_config_get_int(sc, key, 1, 1, 1 << 30, &lc->ppgd_n_sources));
    }
    TRY(vpd_config_get_bool(lm, "use_sigmoid_parameterization", false, &lc->ppgd_sigmoid));
    TRY(vpd_config_get_int(lm, "n_warmup_steps", 0, 0, 1000000, &lc->ppgd_n_warmup_steps));
    return VPD_OK;
}

static vpd_status read_ppgd_routed(vpd_config *lm, vpd_loss_cfg *lc) {
    TRY(read_ppgd(lm, lc));
    return read_routing(lm, lc);
}

/* ---- the table ------------------------------------------------------------------------------
 * Reductions: the reconstruction passes sum the masked outputs over the component blocks
 * inside the pass, and Δ is summed likewise, so every block holds the whole value (SAME);
 * importance minimality sums its per-component terms over this block's components only
 * (SUM). Every replica holds the mean over its own rows (importance minimality: the same
 * global value on every replica), and the logged value is their mean (MEAN). */
#define SOURCES VPD_MASKS_SOURCES
#define CI VPD_MASKS_CI
#define NONE VPD_MASKS_NONE
#define SAME VPD_REDUCE_SAME
#define SUM VPD_REDUCE_SUM
#define MEAN VPD_REDUCE_MEAN
#define SAMPLES VPD_LOSS_NEEDS_MASK_SAMPLES
#define ROUTING VPD_LOSS_NEEDS_ROUTING
#define PGD_INIT VPD_LOSS_NEEDS_PGD_INIT
#define HIDDEN VPD_LOSS_NEEDS_HIDDEN_ACTS
#define F_IM VPD_LOSS_FIELDS_IM
#define F_ROUTING VPD_LOSS_FIELDS_ROUTING
#define F_PGD VPD_LOSS_FIELDS_PGD
#define F_PPGD VPD_LOSS_FIELDS_PPGD

static const vpd_loss_def loss_table[VPD_LOSS_KIND_COUNT] = {
    /* kind, classname, read_config, fields, evaluate, persistent, over_blocks, over_replicas, needs, masks, layerwise */
    {VPD_LOSS_FAITHFULNESS, "FaithfulnessLoss", NULL, 0, vpd_loss_faithfulness_eval, false, SAME, MEAN, 0, NONE, false},
    {VPD_LOSS_IMPORTANCE_MINIMALITY, "ImportanceMinimalityLoss", read_importance_minimality, F_IM,
     vpd_loss_importance_minimality_eval, false, SUM, MEAN, 0, NONE, false},
    {VPD_LOSS_STOCHASTIC_RECON, "StochasticReconLoss", NULL, 0, vpd_loss_recon_eval, false, SAME, MEAN, SAMPLES, SOURCES, false},
    {VPD_LOSS_STOCHASTIC_RECON_LAYERWISE, "StochasticReconLayerwiseLoss", NULL, 0, vpd_loss_recon_eval, false, SAME, MEAN,
     SAMPLES, SOURCES, true},
    {VPD_LOSS_STOCHASTIC_RECON_SUBSET, "StochasticReconSubsetLoss", read_routing, F_ROUTING, vpd_loss_recon_eval, false,
     SAME, MEAN, SAMPLES | ROUTING, SOURCES, false},
    {VPD_LOSS_CI_MASKED_RECON, "CIMaskedReconLoss", NULL, 0, vpd_loss_recon_eval, false, SAME, MEAN, 0, CI, false},
    {VPD_LOSS_CI_MASKED_RECON_SUBSET, "CIMaskedReconSubsetLoss", read_routing, F_ROUTING, vpd_loss_recon_eval, false, SAME,
     MEAN, ROUTING, CI, false},
    {VPD_LOSS_CI_MASKED_RECON_LAYERWISE, "CIMaskedReconLayerwiseLoss", NULL, 0, vpd_loss_recon_eval, false, SAME, MEAN, 0,
     CI, true},
    {VPD_LOSS_UNMASKED_RECON, "UnmaskedReconLoss", NULL, 0, vpd_loss_recon_eval, false, SAME, MEAN, 0, NONE, false},
    {VPD_LOSS_STOCHASTIC_HIDDEN_ACTS_RECON, "StochasticHiddenActsReconLoss", NULL, 0, vpd_loss_recon_eval, false, SAME,
     MEAN, SAMPLES | HIDDEN, SOURCES, false},
    {VPD_LOSS_PGD_RECON, "PGDReconLoss", read_pgd, F_PGD, vpd_loss_pgd_eval, false, SAME, MEAN, PGD_INIT, SOURCES, false},
    {VPD_LOSS_PGD_RECON_SUBSET, "PGDReconSubsetLoss", read_pgd_routed, F_PGD | F_ROUTING, vpd_loss_pgd_eval, false, SAME,
     MEAN, PGD_INIT | ROUTING, SOURCES, false},
    {VPD_LOSS_PGD_RECON_LAYERWISE, "PGDReconLayerwiseLoss", read_pgd, F_PGD, vpd_loss_pgd_eval, false, SAME, MEAN,
     PGD_INIT, SOURCES, true},
    {VPD_LOSS_PPGD_RECON, "PersistentPGDReconLoss", read_ppgd, F_PPGD, vpd_loss_ppgd_eval, true, SAME, MEAN, 0, SOURCES,
     false},
    {VPD_LOSS_PPGD_RECON_SUBSET, "PersistentPGDReconSubsetLoss", read_ppgd_routed, F_PPGD | F_ROUTING,
     vpd_loss_ppgd_eval, true, SAME, MEAN, ROUTING, SOURCES, false},
};

const vpd_loss_def *vpd_loss_def_of(vpd_loss_kind k) {
    VPD_ASSERT((unsigned)k < VPD_LOSS_KIND_COUNT && loss_table[k].kind == k, "loss kind %d has no row in the loss table",
               (int)k);
    return &loss_table[k];
}

const vpd_loss_def *vpd_loss_def_find(const char *classname) {
    for (int k = 0; k < VPD_LOSS_KIND_COUNT; k++)
        if (!strcmp(classname, loss_table[k].classname)) return &loss_table[k];
    return NULL;
}

bool vpd_loss_any_needs(const vpd_decomp_config *cfg, unsigned need) {
    for (int i = 0; i < cfg->n_losses; i++)
        if (vpd_loss_def_of(cfg->losses[i].kind)->needs & need) return true;
    return false;
}

const char *vpd_loss_classname(vpd_loss_kind k) {
    return (unsigned)k < VPD_LOSS_KIND_COUNT ? loss_table[k].classname : "?";
}

vpd_status vpd_loss_kind_parse(const char *classname, vpd_loss_kind *out) {
    const vpd_loss_def *def = vpd_loss_def_find(classname);
    if (def) {
        *out = def->kind;
        return VPD_OK;
    }
    char list[1024] = "";
    for (int k = 0; k < VPD_LOSS_KIND_COUNT; k++) {
        strcat(list, k ? ", " : "");
        strcat(list, loss_table[k].classname);
    }
    return vpd_error(VPD_ERR_CONFIG, "unknown loss classname '%s' (known: %s)", classname, list);
}
