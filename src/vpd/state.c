/* The decomposition's saved state as one table of named, sharded tensors (include/vpd/runfile.h):
 * run.h5 and checkpoints are two lists of rows over the same parameters, and the analysis
 * reader reads through the same rows. io/ writes and reads the table; this file is the only
 * place that knows which tensors a decomposition saves and how they are sharded. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vpd/comm.h"
#include "vpd/config.h"
#include "vpd/io.h"
#include "vpd/runfile.h"

#define TRY_S(x) do { if (s == VPD_OK) s = (x); } while (0)

/* the communicator spanning the whole dp × cp grid (as decomp_setup's SVD initialisation) */
static MPI_Comm grid_comm(const vpd_decomp *d) { return d->grid.cp_size > 1 ? vpd_comm_world() : d->grid.dp_comm; }

/* V [d_in, C_total] by column block and U [C_total, d_out] by row block of layer k, at
 * prefix (e.g. "/components" or "/optimizer/components/m"); V, U point to this rank's blocks */
static vpd_status add_vu(vpd_tensor_table *t, const char *prefix, const vpd_layer_state *ls, real *V, real *U) {
    char p[VPD_TABLE_NAME_MAX];
    const int64_t sv[2] = {ls->d_in, ls->C_total}, su[2] = {ls->C_total, ls->d_out};
    snprintf(p, sizeof p, "%s/%s/V", prefix, ls->name);
    VPD_TRY(vpd_table_by_component(t, p, V, VPD_TT_REAL, 2, sv, 1, ls->c0, ls->C));
    snprintf(p, sizeof p, "%s/%s/U", prefix, ls->name);
    return vpd_table_by_component(t, p, U, VPD_TT_REAL, 2, su, 0, ls->c0, ls->C);
}

static vpd_status add_params(vpd_decomp *d, vpd_tensor_table *t) {
    vpd_status s = VPD_OK;
    for (int k = 0; k < d->L && s == VPD_OK; k++) {
        const vpd_layer_state *ls = &d->layers[k];
        char g[VPD_TABLE_NAME_MAX];
        snprintf(g, sizeof g, "/components/%s", ls->name);
        TRY_S(add_vu(t, "/components", ls, ls->comp.V, ls->comp.U));
        TRY_S(vpd_table_attr_int(t, g, "C", ls->C_total, VPD_ATTR_INFO, NULL));
        TRY_S(vpd_table_attr_int(t, g, "embedding", ls->embedding, VPD_ATTR_INFO, NULL));
        if (ls->tied_to >= 0) TRY_S(vpd_table_attr_str(t, g, "tied_to", d->layers[ls->tied_to].name, VPD_ATTR_INFO, NULL));
    }
    /* the CI function's own table of named tensors, replicated */
    for (int i = 0; i < d->params.ci->n_tensors && s == VPD_OK; i++) {
        vpd_tensor tv = vpd_ci_param_view(d->params.ci, i);
        char p[VPD_TABLE_NAME_MAX];
        snprintf(p, sizeof p, "/ci_fn/%s", d->params.ci->tensors[i].name);
        TRY_S(vpd_table_replicated(t, p, tv.data, VPD_TT_REAL, tv.ndim, tv.shape));
    }
    TRY_S(vpd_table_attr_str(t, "/ci_fn", "fn_type", vpd_ci_type_name(d->params.ci->type), VPD_ATTR_CHECK,
                             "the file was made with another ci_config.fn_type"));
    return s;
}

/* AdamW moments of the component and CI blocks: the same rows as their parameters */
static vpd_status add_optimizer(vpd_decomp *d, vpd_tensor_table *t) {
    vpd_status s = VPD_OK;
    const char *mv[2] = {"m", "v"};
    for (int b = 0; b < 2 && s == VPD_OK; b++) {
        real *comp = b ? d->opt.adam_comp.v : d->opt.adam_comp.m, *ci = b ? d->opt.adam_ci.v : d->opt.adam_ci.m;
        char prefix[64];
        snprintf(prefix, sizeof prefix, "/optimizer/components/%s", mv[b]);
        for (int k = 0; k < d->L && s == VPD_OK; k++) {
            const vpd_layer_state *ls = &d->layers[k];
            if (ls->tied_to >= 0) continue; /* one parameter set: its source's moments */
            const size_t ov = (size_t)(ls->comp.V - d->params.comp_params), ou = (size_t)(ls->comp.U - d->params.comp_params);
            TRY_S(add_vu(t, prefix, ls, comp + ov, comp + ou));
        }
        for (int i = 0; i < d->params.ci->n_tensors && s == VPD_OK; i++) {
            const vpd_ci_param_info *pi = &d->params.ci->tensors[i];
            char p[VPD_TABLE_NAME_MAX];
            snprintf(p, sizeof p, "/optimizer/ci_fn/%s/%s", mv[b], pi->name);
            TRY_S(vpd_table_replicated(t, p, ci + pi->offset, VPD_TT_REAL, pi->ndim, pi->shape));
        }
    }
    TRY_S(vpd_table_attr_int(t, "/optimizer/components", "t", d->opt.adam_comp.t, VPD_ATTR_LOAD, NULL));
    TRY_S(vpd_table_attr_int(t, "/optimizer/ci_fn", "t", d->opt.adam_ci.t, VPD_ATTR_LOAD, NULL));
    return s;
}

/* Persistent-PGD state of loss i: flat layer blocks [rows_local, C_k (+1 with Δ)]; rows are
 * the rank's own examples' (per_batch_per_position: global row example0·S + j) or shared. */
static vpd_status add_ppgd(vpd_decomp *d, int i, vpd_tensor_table *t) {
    vpd_ppgd_state *p = d->loss.ppgd[i];
    const bool delta = d->cfg->use_delta_component, per_rank = vpd_ppgd_is_per_rank(p);
    const int64_t rows = vpd_ppgd_rows(p);
    const int64_t rows_global = per_rank ? (int64_t)d->batch.B_global * d->batch.S : rows, row0 = per_rank ? d->batch.example0 * d->batch.S : 0;
    size_t total = 0;
    for (int k = 0; k < d->L; k++) total += (size_t)rows * (size_t)(d->layers[k].C + delta);
    if (total != vpd_ppgd_numel(p))
        return vpd_error(VPD_ERR_INTERNAL, "persistent PGD state of %s: layout differs from its size",
                         vpd_loss_classname(d->cfg->losses[i].kind));
    real *bufs[3] = {vpd_ppgd_sources(p), vpd_ppgd_adam_m(p), vpd_ppgd_adam_v(p)};
    const char *names[3] = {"sources", "m", "v"};
    vpd_status s = VPD_OK;
    for (int b = 0; b < 3 && s == VPD_OK; b++) {
        size_t off = 0;
        for (int k = 0; k < d->L && s == VPD_OK; k++) {
            const vpd_layer_state *ls = &d->layers[k];
            const int64_t cols = ls->C + delta;
            vpd_table_row r;
            memset(&r, 0, sizeof r);
            snprintf(r.name, sizeof r.name, "/ppgd/%d/%s/%s", i, names[b], ls->name);
            r.data = bufs[b] + off;
            r.dtype = VPD_TT_REAL;
            r.ndim = 2;
            r.shape[0] = rows_global;
            r.shape[1] = ls->C_total;
            r.shard = VPD_SHARD_BY_COMPONENT | (per_rank ? VPD_SHARD_BY_EXAMPLE : 0);
            r.row0 = row0;
            r.nrows = rows;
            r.comp_axis = 1;
            r.c0 = ls->c0;
            r.c_local = ls->C;
            r.mem_ld = delta ? cols : 0;
            TRY_S(vpd_table_add(t, &r));
            if (delta) { /* r_Δ: one value per row, the same on every rank of the component group */
                vpd_table_row rd = r;
                snprintf(rd.name, sizeof rd.name, "/ppgd/%d/%s_delta/%s", i, names[b], ls->name);
                rd.ndim = 1;
                rd.shard = per_rank ? VPD_SHARD_BY_EXAMPLE : VPD_SHARD_REPLICATED;
                rd.mem_ld = cols;
                rd.mem_col0 = ls->C;
                TRY_S(vpd_table_add(t, &rd));
            }
            off += (size_t)rows * (size_t)cols;
        }
    }
    char g[64];
    snprintf(g, sizeof g, "/ppgd/%d", i);
    TRY_S(vpd_table_attr_int(t, g, "t", *vpd_ppgd_adam_t(p), VPD_ATTR_LOAD, NULL));
    TRY_S(vpd_table_attr_int(t, g, "per_rank", per_rank, VPD_ATTR_INFO, NULL));
    TRY_S(vpd_table_attr_str(t, g, "classname", vpd_loss_classname(d->cfg->losses[i].kind), VPD_ATTR_CHECK,
                             "the loss_metric_configs changed since the checkpoint"));
    return s;
}

static vpd_status add_runfile_attrs(vpd_decomp *d, const vpd_config *config, const vpd_summary *summary,
                                    vpd_tensor_table *t) {
    vpd_status s = VPD_OK;
    TRY_S(vpd_table_attr_str(t, "/", "format", "vpd-run", VPD_ATTR_INFO, NULL));
    TRY_S(vpd_table_attr_str(t, "/", "vpd_version", VPD_VERSION, VPD_ATTR_INFO, NULL));
    TRY_S(vpd_table_attr_int(t, "/", "steps", d->cfg->steps, VPD_ATTR_INFO, NULL));
    if (config && s == VPD_OK) {
        char *yaml = NULL;
        size_t len = 0;
        s = vpd_config_emit(config, &yaml, &len);
        if (yaml) TRY_S(vpd_table_attr_str(t, "/config", "yaml", yaml, VPD_ATTR_INFO, NULL));
        free(yaml);
    }
    /* attribute values must agree over the group: the host is rank 0's */
    char host[256] = "?";
    gethostname(host, sizeof host - 1);
    char *h = vpd_bcast_string(host, 0, t->comm);
    TRY_S(vpd_table_attr_str(t, "/provenance", "vpd_version", VPD_VERSION, VPD_ATTR_INFO, NULL));
    TRY_S(vpd_table_attr_str(t, "/provenance", "git_hash", VPD_GIT_HASH, VPD_ATTR_INFO, NULL));
    TRY_S(vpd_table_attr_int(t, "/provenance", "mpi_world_size", vpd_world_size(), VPD_ATTR_INFO, NULL));
    TRY_S(vpd_table_attr_int(t, "/provenance", "data_parallel", d->grid.dp_size, VPD_ATTR_INFO, NULL));
    TRY_S(vpd_table_attr_int(t, "/provenance", "component_parallel", d->grid.cp_size, VPD_ATTR_INFO, NULL));
    TRY_S(vpd_table_attr_str(t, "/provenance", "host", h ? h : host, VPD_ATTR_INFO, NULL));
    free(h);
    TRY_S(vpd_table_attr_str(t, "/provenance", "target_dir", d->cfg->target_dir, VPD_ATTR_INFO, NULL));
    char *mj = vpd_model_config_to_json(&d->target->cfg);
    if (mj) TRY_S(vpd_table_attr_str(t, "/provenance", "target_config_json", mj, VPD_ATTR_INFO, NULL));
    free(mj);
    for (int k = 0; summary && k < d->L && s == VPD_OK; k++) {
        char p[VPD_TABLE_NAME_MAX];
        snprintf(p, sizeof p, "/summary/%s", d->layers[k].name);
        TRY_S(vpd_table_attr_double(t, p, "l0", summary->l0[k], VPD_ATTR_INFO, NULL));
        TRY_S(vpd_table_attr_int(t, p, "alive", summary->alive[k], VPD_ATTR_INFO, NULL));
        if (summary->mmcs[k] >= 0) {
            TRY_S(vpd_table_attr_double(t, p, "mmcs", summary->mmcs[k], VPD_ATTR_INFO, NULL));
            TRY_S(vpd_table_attr_int(t, p, "dedicated_features", summary->dedicated[k], VPD_ATTR_INFO, NULL));
            TRY_S(vpd_table_attr_int(t, p, "captured_features", summary->captured[k], VPD_ATTR_INFO, NULL));
        }
    }
    return s;
}

vpd_status vpd_decomp_state_table(vpd_decomp *d, vpd_state_which which, const vpd_config *config,
                                  const vpd_summary *summary, vpd_tensor_table *t) {
    if (which == VPD_STATE_RUNFILE)
        vpd_table_init(t, d->grid.cp_comm, 1, 0, d->grid.cp_size, d->grid.cp_rank);
    else
        vpd_table_init(t, grid_comm(d), d->grid.dp_size, d->grid.dp_rank, d->grid.cp_size, d->grid.cp_rank);
    t->real_as_f32 = which == VPD_STATE_RUNFILE; /* README: run.h5 holds float32 */
    vpd_status s = add_params(d, t);
    if (which == VPD_STATE_PARAMS) TRY_S(vpd_table_attr_int(t, "/", "step", d->step, VPD_ATTR_LOAD, NULL));
    if (which == VPD_STATE_RUNFILE) {
        TRY_S(vpd_table_attr_int(t, "/", "step", d->step, VPD_ATTR_INFO, NULL));
        TRY_S(add_runfile_attrs(d, config, summary, t));
    }
    if (which == VPD_STATE_CHECKPOINT) {
        TRY_S(vpd_table_attr_int(t, "/", "steps", d->cfg->steps, VPD_ATTR_INFO, NULL));
        TRY_S(vpd_table_attr_int(t, "/", "B_global", d->batch.B_global, VPD_ATTR_CHECK,
                                 "batch_size must stay the same for a resume (the data stream and per-example "
                                 "sources are indexed by it)"));
        TRY_S(vpd_table_attr_int(t, "/", "S", d->batch.S, VPD_ATTR_CHECK, "max_seq_len must stay the same for a resume"));
        TRY_S(vpd_table_attr_int(t, "/", "data_parallel", d->grid.dp_size, VPD_ATTR_INFO, NULL));
        TRY_S(vpd_table_attr_int(t, "/", "component_parallel", d->grid.cp_size, VPD_ATTR_INFO, NULL));
        TRY_S(vpd_table_attr_int(t, "/", "world_size", (int64_t)d->grid.dp_size * d->grid.cp_size, VPD_ATTR_INFO, NULL));
        TRY_S(add_optimizer(d, t));
        for (int i = 0; i < d->cfg->n_losses && s == VPD_OK; i++)
            if (d->loss.ppgd[i]) s = add_ppgd(d, i, t);
    }
    if (s != VPD_OK) vpd_table_free(t);
    return s;
}

static int64_t loaded_int(const vpd_tensor_table *t, const char *obj, const char *name, int64_t fallback) {
    const vpd_table_attr *a = vpd_table_get_attr(t, obj, name);
    return a && a->loaded ? a->i : fallback;
}

/* the step counters a file sets (the run's step, the Adam step counts t) must be what a run can
 * reach: a negative or huge one is damage (a negative Adam t makes the bias correction blow up, a
 * step beyond int is truncated); agreed over comm like every read */
static vpd_status check_counters(const vpd_tensor_table *t, MPI_Comm comm, const char *path) {
    vpd_status s = VPD_OK;
    for (int i = 0; i < t->n_attrs && s == VPD_OK; i++) {
        const vpd_table_attr *a = &t->attrs[i];
        if (!a->loaded || a->type != VPD_ATTR_INT || (strcmp(a->name, "step") && strcmp(a->name, "t"))) continue;
        if (a->i < 0 || a->i > (int64_t)1 << 30)
            s = vpd_error(VPD_ERR_FORMAT, "%s: attribute %s of %s = %lld is out of range (0 to 2^30): the file is damaged",
                          path, a->name, a->obj, (long long)a->i);
    }
    return vpd_all_agree(s, comm);
}

void vpd_decomp_state_loaded(vpd_decomp *d, const vpd_tensor_table *t, vpd_state_which which, int step) {
    d->step = step >= 0 ? step : (int)loaded_int(t, "/", "step", d->step);
    if (which == VPD_STATE_CHECKPOINT) {
        d->opt.adam_comp.t = loaded_int(t, "/optimizer/components", "t", d->opt.adam_comp.t);
        d->opt.adam_ci.t = loaded_int(t, "/optimizer/ci_fn", "t", d->opt.adam_ci.t);
        for (int i = 0; i < d->cfg->n_losses; i++) {
            if (!d->loss.ppgd[i]) continue;
            char g[64];
            snprintf(g, sizeof g, "/ppgd/%d", i);
            int64_t *pt = vpd_ppgd_adam_t(d->loss.ppgd[i]);
            *pt = loaded_int(t, g, "t", *pt);
        }
    }
    vpd_decomp_refresh(d);
}

/* ---- non-finite state ------------------------------------------------------------------------------- */
/* this rank's first non-finite row of t as an error (what: the file or action), agreed over comm */
static vpd_status check_finite(const vpd_tensor_table *t, MPI_Comm comm, const char *what, const char *hint) {
    int64_t elem = 0;
    double v = 0;
    int i = vpd_table_first_nonfinite(t, &elem, &v);
    vpd_status s = VPD_OK;
    if (i >= 0)
        s = vpd_error(VPD_ERR_VALUE, "%s: %s holds a non-finite value (%g at element %lld of this rank's block); %s", what,
                      t->rows[i].name, v, (long long)elem, hint);
    return vpd_all_agree(s, comm);
}

vpd_status vpd_decomp_find_nonfinite_grad(const vpd_decomp *d, char *where, size_t size) {
    vpd_tensor_table t;
    snprintf(where, size, "a gradient");
    VPD_TRY(vpd_decomp_state_table((vpd_decomp *)d, VPD_STATE_PARAMS, NULL, NULL, &t));
    int found = 0;
    for (int i = 0; i < t.n && !found; i++) {
        const vpd_table_row *r = &t.rows[i];
        const real *p = r->data, *g = NULL;
        if (p >= d->params.comp_params && p < d->params.comp_params + d->params.n_comp_params) g = d->params.comp_grads + (p - d->params.comp_params);
        else if (p >= d->params.ci->params && p < d->params.ci->params + d->params.ci->n_params) g = d->params.ci->grads + (p - d->params.ci->params);
        int64_t elem = 0;
        double v = 0;
        if (!g || !vpd_table_row_nonfinite(r, g, &elem, &v)) continue;
        found = 1;
        /* /components/<layer>/V: the layer is the middle part */
        char layer[VPD_TABLE_NAME_MAX] = "the CI function";
        if (!strncmp(r->name, "/components/", 12)) {
            snprintf(layer, sizeof layer, "%s", r->name + 12);
            char *sl = strrchr(layer, '/');
            if (sl) *sl = '\0';
        }
        snprintf(where, size, "the gradient of %s (layer %s) is %g at element %lld on rank %d", r->name, layer, v,
                 (long long)elem, vpd_world_rank());
    }
    vpd_table_free(&t);
    return VPD_OK;
}

/* ---- the files ----------------------------------------------------------------------------------- */
vpd_status vpd_checkpoint_write(const char *dir, vpd_decomp *d, const char *config_yaml, const char *provenance_json,
                                double *seconds, size_t *bytes) {
    vpd_tensor_table t;
    VPD_TRY(vpd_all_agree(vpd_decomp_state_table(d, VPD_STATE_CHECKPOINT, NULL, NULL, &t), grid_comm(d)));
    /* never a checkpoint of non-finite state: retention would delete the last good one */
    char what[1400];
    snprintf(what, sizeof what, "step %d: not writing checkpoint %s/ckpt-%08d.h5", d->step, dir, d->step);
    vpd_status s = check_finite(&t, grid_comm(d), what,
                                "the earlier checkpoints are kept: resume from them with a lower learning rate or "
                                "gradient clipping");
    if (s != VPD_OK) {
        vpd_table_free(&t);
        return s;
    }
    s = vpd_ckpt_write_table(dir, d->step, &t, config_yaml, provenance_json, seconds, bytes);
    vpd_table_free(&t);
    return s;
}

vpd_status vpd_checkpoint_read(const char *path, vpd_decomp *d) {
    vpd_tensor_table t;
    VPD_TRY(vpd_all_agree(vpd_decomp_state_table(d, VPD_STATE_CHECKPOINT, NULL, NULL, &t), grid_comm(d)));
    int step = -1;
    vpd_status s = vpd_ckpt_read_table(path, &t, &step);
    if (s == VPD_OK) s = check_counters(&t, grid_comm(d), path);
    if (s == VPD_OK)
        s = check_finite(&t, grid_comm(d), path, "the file is damaged or the run had diverged: resume from an older checkpoint");
    if (s == VPD_OK) vpd_decomp_state_loaded(d, &t, VPD_STATE_CHECKPOINT, step);
    vpd_table_free(&t);
    return s;
}

vpd_status vpd_decomp_read_params(vpd_decomp *d, const char *path, bool *is_checkpoint) {
    /* the file's kind from its format attribute (rank 0 looks, the grid agrees) */
    MPI_Comm comm = grid_comm(d);
    int kind = 0;
    if (vpd_comm_rank(comm) == 0) {
        vpd_h5 f;
        if (vpd_h5_open(&f, path, false) == VPD_OK) {
            char *fmt = NULL;
            if (vpd_h5_has_attr(&f, "/", "format") && vpd_h5_get_attr_str(&f, "/", "format", &fmt) == VPD_OK && fmt)
                kind = !strcmp(fmt, VPD_CKPT_FORMAT);
            vpd_free(fmt);
            vpd_h5_close(&f);
        }
        vpd_clear_error(); /* a missing file is reported by the read below */
    }
    vpd_bcast(&kind, sizeof kind, 0, comm);
    *is_checkpoint = kind == 1;
    vpd_tensor_table t;
    VPD_TRY(vpd_all_agree(vpd_decomp_state_table(d, VPD_STATE_PARAMS, NULL, NULL, &t), comm));
    int step = -1;
    vpd_status s;
    if (*is_checkpoint) {
        /* the checkpoint header carries the step; the table's own step attribute is not needed */
        for (int i = 0; i < t.n_attrs; i++)
            if (!strcmp(t.attrs[i].obj, "/") && !strcmp(t.attrs[i].name, "step")) t.attrs[i].mode = VPD_ATTR_INFO;
        s = vpd_ckpt_read_table(path, &t, &step);
    } else {
        s = vpd_table_load(path, &t);
    }
    if (s == VPD_OK) s = check_counters(&t, comm, path);
    if (s == VPD_OK) s = check_finite(&t, comm, path, "the file is damaged or the run had diverged");
    if (s == VPD_OK) vpd_decomp_state_loaded(d, &t, VPD_STATE_PARAMS, step);
    vpd_table_free(&t);
    return s;
}

vpd_status vpd_runfile_write(const char *path, const vpd_decomp *d, const vpd_config *config,
                             const vpd_summary *summary) {
    vpd_tensor_table t;
    /* the rows only read from d */
    VPD_TRY(vpd_all_agree(vpd_decomp_state_table((vpd_decomp *)d, VPD_STATE_RUNFILE, config, summary, &t), d->grid.cp_comm));
    vpd_status s = vpd_table_save(path, &t);
    vpd_table_free(&t);
    return s;
}
