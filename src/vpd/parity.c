/* vpd parity (docs/parity.md): loss terms of a decomposition evaluated on a problem given
 * entirely by an HDF5 file, for comparison with an independent implementation (the
 * PyTorch reference tools/reference/reference_vpd.py).
 *
 * The file fixes everything the training loop would compute or draw: the components V, U,
 * the causal importances (z or g directly), and every random draw a loss takes (through the
 * vpd_fixed_draws callbacks of decomp.h). All draws a loss will ask for are read and
 * validated once before any loss runs, because the loss code treats a failing callback as
 * a broken invariant (it panics): user errors must surface here, as one message naming the
 * dataset. Each loss is then evaluated alone with its gradients zeroed before, so the
 * gradients written are those of that term (coeff·∂loss/∂·, as the trainer accumulates). */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vpd/decomp.h"
#include "vpd/loss_table.h"
#include "vpd/io.h"
#include "vpd/parity.h"

#define MAXL (VPD_MAX_MODULE_PATTERNS * 4)

typedef struct {
    vpd_h5 f;
    bool f_open;
    char path[400];
    bool toy;      /* toy target: per-row tensors are [B, ...] (S = 1), else [B, S, ...] */
    int B, S, N;
    vpd_model model;
    bool model_ok;
    vpd_decomp_config cfg;
    vpd_decomp *d;
    int n_loss;
    char loss_name[VPD_MAX_LOSSES][128];
    bool ci_direct; /* ci_lower / ci_upper given instead of z */
    real *x;
    int32_t *tok;
    real *scratch;  /* [N, max C + 1] */
} parity_ctx;

static real *blk(const vpd_decomp *d, real *buf, int k) { return buf + (size_t)d->batch.N * (size_t)d->layers[k].c_off; }

/* ---- reading helpers ------------------------------------------------------------------ */

/* per-row shape: toy [B, tail] (tail 0: [B]); LM [B, S, tail] (tail 0: [B, S]) */
static int row_shape(const parity_ctx *P, int64_t tail, int64_t *shape) {
    int n = 0;
    shape[n++] = P->B;
    if (!P->toy) shape[n++] = P->S;
    if (tail > 0) shape[n++] = tail;
    return n;
}

/* a float dataset of exactly this shape, all values finite */
static vpd_status read_real(parity_ctx *P, const char *path, real *dst, int ndim, const int64_t *shape) {
    VPD_TRY(vpd_h5_read_real(&P->f, path, dst, ndim, shape));
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return vpd_error(VPD_ERR_VALUE, "%s: dataset '%s': non-finite value %g at flat index %zu", P->path, path,
                             (double)dst[i], i);
    return VPD_OK;
}

static vpd_status attr_double(parity_ctx *P, const char *obj, const char *name, double def, double *out) {
    if (!vpd_h5_has_attr(&P->f, obj, name)) {
        *out = def;
        return VPD_OK;
    }
    VPD_TRY(vpd_h5_get_attr_double(&P->f, obj, name, out));
    if (!isfinite(*out))
        return vpd_error(VPD_ERR_VALUE, "%s: attribute '%s' of '%s' is not finite", P->path, name, obj);
    return VPD_OK;
}

static vpd_status attr_int(parity_ctx *P, const char *obj, const char *name, int64_t def, int64_t lo, int64_t hi,
                           int64_t *out) {
    if (!vpd_h5_has_attr(&P->f, obj, name)) {
        *out = def;
        return VPD_OK;
    }
    VPD_TRY(vpd_h5_get_attr_int(&P->f, obj, name, out));
    if (*out < lo || *out > hi)
        return vpd_error(VPD_ERR_VALUE, "%s: attribute '%s' of '%s' is %lld, expected %lld..%lld", P->path, name, obj,
                         (long long)*out, (long long)lo, (long long)hi);
    return VPD_OK;
}

/* string attribute into dst (def when absent); the value must be one of choices (NULL-terminated) */
static vpd_status attr_enum(parity_ctx *P, const char *obj, const char *name, const char *const *choices, int def,
                            int *out) {
    *out = def;
    if (!vpd_h5_has_attr(&P->f, obj, name)) return VPD_OK;
    char *v = NULL;
    VPD_TRY(vpd_h5_get_attr_str(&P->f, obj, name, &v));
    int hit = -1;
    for (int i = 0; choices[i]; i++)
        if (!strcmp(v, choices[i])) hit = i;
    if (hit < 0) {
        char list[256] = "";
        for (int i = 0; choices[i]; i++) {
            strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
            strncat(list, choices[i], sizeof list - strlen(list) - 1);
        }
        vpd_status s = vpd_error(VPD_ERR_VALUE, "%s: attribute '%s' of '%s' is '%s', expected one of: %s", P->path,
                                 name, obj, v, list);
        vpd_free(v);
        return s;
    }
    vpd_free(v);
    *out = hit;
    return VPD_OK;
}

/* member names of a group, sorted by strcmp (HDF5's name index order is the same) */
static vpd_status list_group(parity_ctx *P, const char *path, char names[][128], int max, int *n) {
    *n = 0;
    if (!vpd_h5_exists(&P->f, path)) return vpd_error(VPD_ERR_FORMAT, "%s: group '%s' not found", P->path, path);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t g = H5Gopen2((hid_t)P->f.id, path, H5P_DEFAULT);
    if (g < 0) return vpd_error(VPD_ERR_FORMAT, "%s: '%s' is not a group", P->path, path);
    H5G_info_t info;
    vpd_status s = VPD_OK;
    if (H5Gget_info(g, &info) < 0) s = vpd_error(VPD_ERR_FORMAT, "%s: cannot list group '%s'", P->path, path);
    for (hsize_t i = 0; s == VPD_OK && i < info.nlinks; i++) {
        if (*n >= max) {
            s = vpd_error(VPD_ERR_FORMAT, "%s: group '%s' has more than %d members", P->path, path, max);
            break;
        }
        ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, names[*n], 128, H5P_DEFAULT);
        if (len < 0 || len >= 128) {
            s = vpd_error(VPD_ERR_FORMAT, "%s: member %d of group '%s' has no readable name (or longer than 127)",
                          P->path, (int)i, path);
            break;
        }
        (*n)++;
    }
    H5Gclose(g);
    if (s != VPD_OK) return s;
    /* name index order is byte order for ASCII names, but sort to be explicit */
    for (int i = 1; i < *n; i++)
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char t[128];
            memcpy(t, names[j], 128);
            memcpy(names[j], names[j - 1], 128);
            memcpy(names[j - 1], t, 128);
        }
    return VPD_OK;
}

/* ---- the fixed draws ------------------------------------------------------------------ */

static vpd_status fx_stochastic(void *ctx, vpd_decomp *d, int loss, int sample) {
    parity_ctx *P = ctx;
    char path[600];
    int64_t shape[3];
    for (int k = 0; k < d->L; k++) {
        int nd = row_shape(P, d->layers[k].C, shape);
        snprintf(path, sizeof path, "losses/%s/stochastic/%d/%s/src", P->loss_name[loss], sample, d->layers[k].name);
        VPD_TRY(read_real(P, path, blk(d, d->pass.src, k), nd, shape));
        if (P->cfg.use_delta_component) {
            nd = row_shape(P, 0, shape);
            snprintf(path, sizeof path, "losses/%s/stochastic/%d/%s/delta", P->loss_name[loss], sample,
                     d->layers[k].name);
            VPD_TRY(read_real(P, path, d->pass.srcdelta + (size_t)k * d->batch.N, nd, shape));
        }
    }
    return VPD_OK;
}

static vpd_status fx_routing(void *ctx, vpd_decomp *d, int loss, int draw) {
    parity_ctx *P = ctx;
    char path[600];
    int64_t shape[3];
    int32_t *buf = (int32_t *)P->scratch; /* scratch holds at least N reals >= N int32 */
    for (int k = 0; k < d->L; k++) {
        int nd = row_shape(P, 0, shape);
        snprintf(path, sizeof path, "losses/%s/routing/%d/%s", P->loss_name[loss], draw, d->layers[k].name);
        VPD_TRY(vpd_h5_read_i32(&P->f, path, buf, nd, shape));
        for (int n = 0; n < d->batch.N; n++) {
            if (buf[n] != 0 && buf[n] != 1)
                return vpd_error(VPD_ERR_VALUE, "%s: dataset '%s': routing flags must be 0 or 1, found %d at flat index %d",
                                 P->path, path, (int)buf[n], n);
            d->pass.route[(size_t)k * d->batch.N + n] = (uint8_t)buf[n];
        }
    }
    return VPD_OK;
}

static vpd_status fx_pgd_init(void *ctx, vpd_decomp *d, int loss, int restart, real *shared) {
    parity_ctx *P = ctx;
    const vpd_loss_cfg *lc = &P->cfg.losses[loss];
    const bool delta = P->cfg.use_delta_component;
    char path[600];
    int64_t shape[3];
    for (int k = 0; k < d->L; k++) {
        if (vpd_loss_def_of(lc->kind)->layerwise && k != restart) continue;
        const int C = d->layers[k].C, Cs = C + (delta ? 1 : 0);
        snprintf(path, sizeof path, "losses/%s/pgd_init/%s", P->loss_name[loss], d->layers[k].name);
        if (lc->mask_scope == VPD_SCOPE_SHARED_ACROSS_BATCH) {
            shape[0] = Cs;
            VPD_TRY(read_real(P, path, shared + d->layers[k].c_off + k, 1, shape));
            continue;
        }
        int nd = row_shape(P, Cs, shape);
        VPD_TRY(read_real(P, path, P->scratch, nd, shape));
        real *r = blk(d, d->pass.src, k);
        for (int n = 0; n < d->batch.N; n++) {
            memcpy(r + (size_t)n * C, P->scratch + (size_t)n * Cs, sizeof(real) * (size_t)C);
            if (delta) d->pass.srcdelta[(size_t)k * d->batch.N + n] = P->scratch[(size_t)n * Cs + C];
        }
    }
    return VPD_OK;
}

/* persistent PGD sources in the raw parameterisation, layer k's block [Ns, Ss, C_k (+1)] */
static vpd_status load_ppgd(parity_ctx *P, int i) {
    vpd_decomp *d = P->d;
    const vpd_loss_cfg *lc = &P->cfg.losses[i];
    const int rows = vpd_ppgd_rows(d->loss.ppgd[i]);
    int64_t Ns = 1, Ss = 1;
    switch (lc->ppgd_scope) {
    case VPD_PPGD_SINGLE_SOURCE: break;
    case VPD_PPGD_BROADCAST_ACROSS_BATCH: Ss = P->S; break;
    case VPD_PPGD_REPEAT_ACROSS_BATCH: Ns = lc->ppgd_n_sources; Ss = P->S; break;
    case VPD_PPGD_PER_BATCH_PER_POSITION: Ns = P->B; Ss = P->S; break;
    }
    VPD_ASSERT(Ns * Ss == rows, "persistent PGD rows %d vs %lld", rows, (long long)(Ns * Ss));
    real *src = vpd_ppgd_sources(d->loss.ppgd[i]);
    size_t off = 0;
    char path[600];
    for (int k = 0; k < d->L; k++) {
        const int64_t Cs = d->layers[k].C + (P->cfg.use_delta_component ? 1 : 0);
        int64_t shape[3] = {Ns, Ss, Cs};
        snprintf(path, sizeof path, "losses/%s/ppgd_sources/%s", P->loss_name[i], d->layers[k].name);
        VPD_TRY(read_real(P, path, src + off, 3, shape));
        if (!lc->ppgd_sigmoid)
            for (int64_t j = 0; j < Ns * Ss * Cs; j++)
                if (src[off + (size_t)j] < 0 || src[off + (size_t)j] > 1)
                    return vpd_error(VPD_ERR_VALUE,
                                     "%s: dataset '%s': sources must lie in [0, 1] (no sigmoid parameterisation), "
                                     "found %g at flat index %lld", P->path, path, (double)src[off + (size_t)j], (long long)j);
        off += (size_t)(Ns * Ss * Cs);
    }
    VPD_ASSERT(off == vpd_ppgd_numel(d->loss.ppgd[i]), "persistent PGD layout");
    return VPD_OK;
}

/* every draw loss i will ask for (its row's needs), read once now so that errors are user errors */
static vpd_status validate_draws(parity_ctx *P, int i) {
    vpd_decomp *d = P->d;
    const vpd_loss_def *def = vpd_loss_def_of(P->cfg.losses[i].kind);
    real shared[4096];
    real *sh = (size_t)d->C_sum + (size_t)d->L <= sizeof shared / sizeof shared[0] ? shared : NULL;
    if (def->needs & VPD_LOSS_NEEDS_MASK_SAMPLES) {
        for (int s = 0; s < P->cfg.n_mask_samples; s++) {
            VPD_TRY(fx_stochastic(P, d, i, s));
            if (def->needs & VPD_LOSS_NEEDS_ROUTING) VPD_TRY(fx_routing(P, d, i, s));
        }
    } else if (def->needs & VPD_LOSS_NEEDS_ROUTING) {
        VPD_TRY(fx_routing(P, d, i, 0));
    }
    if (def->needs & VPD_LOSS_NEEDS_PGD_INIT) {
        if (!sh) return vpd_error(VPD_ERR_SHAPE, "%s: too many subcomponents for a shared PGD source", P->path);
        for (int r = 0; r < (def->layerwise ? d->L : 1); r++) VPD_TRY(fx_pgd_init(P, d, i, r, sh));
    }
    if (def->persistent) VPD_TRY(load_ppgd(P, i));
    return VPD_OK;
}

/* ---- loading ------------------------------------------------------------------------------ */

static vpd_status load_inline_target(parity_ctx *P) {
    char *json = NULL;
    VPD_TRY(vpd_h5_get_attr_str(&P->f, "target", "config", &json));
    vpd_model_config mc;
    char src[700];
    snprintf(src, sizeof src, "%s:/target@config", P->path);
    vpd_status s = vpd_model_config_parse(&mc, json, src);
    vpd_free(json);
    VPD_TRY(s);
    VPD_TRY(vpd_model_create(&P->model, &mc));
    P->model_ok = true;
    for (int i = 0; i < P->model.n_pinfo; i++) {
        const vpd_param_info *pi = &P->model.pinfo[i];
        char path[256];
        snprintf(path, sizeof path, "target/%s", pi->name);
        VPD_TRY(read_real(P, path, P->model.params + pi->offset, pi->ndim, pi->shape));
    }
    vpd_model_sync(&P->model);
    return VPD_OK;
}

static vpd_status load_target(parity_ctx *P) {
    if (vpd_h5_has_attr(&P->f, "/", "target_dir")) {
        char *dir = NULL;
        VPD_TRY(vpd_h5_get_attr_str(&P->f, "/", "target_dir", &dir));
        char full[2048];
        if (dir[0] == '/') {
            snprintf(full, sizeof full, "%s", dir);
        } else { /* relative to the parity file's directory */
            const char *slash = strrchr(P->path, '/');
            int len = slash ? (int)(slash - P->path) : 0;
            if (len) snprintf(full, sizeof full, "%.*s/%s", len, P->path, dir);
            else snprintf(full, sizeof full, "%s", dir);
        }
        vpd_free(dir);
        vpd_status s = vpd_model_load(&P->model, full);
        if (s != VPD_OK) return vpd_error_context(s, "%s: target_dir", P->path);
        P->model_ok = true;
        return VPD_OK;
    }
    if (!vpd_h5_exists(&P->f, "target"))
        return vpd_error(VPD_ERR_FORMAT,
                         "%s: no target: expected the root attribute 'target_dir' or a group 'target' (inline "
                         "target with attribute 'config')", P->path);
    return load_inline_target(P);
}

static vpd_status load_input(parity_ctx *P) {
    int nd;
    int64_t sh[VPD_MAX_DIMS];
    const bool lm = vpd_model_is_lm(P->model.cfg.kind);
    const char *path = lm ? "input/tokens" : "input/x";
    VPD_TRY(vpd_h5_dataset_shape(&P->f, path, &nd, sh));
    if (lm) {
        if (nd != 2 || sh[0] <= 0 || sh[1] <= 0 || sh[1] > P->model.cfg.n_ctx)
            return vpd_error(VPD_ERR_SHAPE, "%s: dataset '%s': expected shape [B, S] with 0 < S <= n_ctx (%d)", P->path,
                             path, P->model.cfg.n_ctx);
        P->B = (int)sh[0];
        P->S = (int)sh[1];
        P->toy = false;
    } else {
        if (nd != 2 || sh[0] <= 0 || sh[1] != P->model.cfg.n_features)
            return vpd_error(VPD_ERR_SHAPE, "%s: dataset '%s': expected shape [B, %d] (n_features)", P->path, path,
                             P->model.cfg.n_features);
        P->B = (int)sh[0];
        P->S = 1;
        P->toy = true;
    }
    P->N = P->B * P->S;
    if (lm) {
        P->tok = malloc(sizeof(int32_t) * (size_t)P->N);
        if (!P->tok) return vpd_error(VPD_ERR_MEM, "tokens");
        VPD_TRY(vpd_h5_read_i32(&P->f, path, P->tok, 2, sh));
        for (int n = 0; n < P->N; n++)
            if (P->tok[n] < 0 || P->tok[n] >= P->model.cfg.vocab_size)
                return vpd_error(VPD_ERR_VALUE, "%s: dataset '%s': token %d at flat index %d outside [0, %d)", P->path,
                                 path, (int)P->tok[n], n, P->model.cfg.vocab_size);
    } else {
        P->x = vpd_malloc(sizeof(real) * (size_t)sh[0] * (size_t)sh[1], "input x");
        if (!P->x) return VPD_ERR_MEM;
        VPD_TRY(read_real(P, path, P->x, 2, sh));
    }
    return VPD_OK;
}

static vpd_status read_losses(parity_ctx *P) {
    static char names[VPD_MAX_LOSSES + 1][128];
    VPD_TRY(list_group(P, "losses", names, VPD_MAX_LOSSES + 1, &P->n_loss));
    if (P->n_loss > VPD_MAX_LOSSES)
        return vpd_error(VPD_ERR_FORMAT, "%s: more than %d losses", P->path, VPD_MAX_LOSSES);
    if (P->n_loss == 0) return vpd_error(VPD_ERR_FORMAT, "%s: group 'losses' is empty", P->path);
    vpd_decomp_config *c = &P->cfg;
    c->n_losses = P->n_loss;
    for (int i = 0; i < P->n_loss; i++) {
        snprintf(P->loss_name[i], sizeof P->loss_name[i], "%.127s", names[i]);
        char obj[200];
        snprintf(obj, sizeof obj, "losses/%.127s", names[i]);
        vpd_loss_cfg *lc = &c->losses[i];
        memset(lc, 0, sizeof *lc);
        char *cls = NULL;
        VPD_TRY(vpd_h5_get_attr_str(&P->f, obj, "classname", &cls));
        vpd_status s = vpd_loss_kind_parse(cls, &lc->kind);
        vpd_free(cls);
        if (s != VPD_OK) return vpd_error_context(s, "%s: %s@classname", P->path, obj);
        VPD_TRY(attr_double(P, obj, "coeff", 1.0, &lc->coeff));
        int v = 0;
        const unsigned fields = vpd_loss_def_of(lc->kind)->fields; /* the row's field groups, as attributes */
        if (fields & VPD_LOSS_FIELDS_IM) {
            if (!vpd_h5_has_attr(&P->f, obj, "pnorm"))
                return vpd_error(VPD_ERR_FORMAT, "%s: attribute 'pnorm' of '%s' not found", P->path, obj);
            VPD_TRY(attr_double(P, obj, "pnorm", 1, &lc->pnorm));
            VPD_TRY(attr_double(P, obj, "beta", 0, &lc->beta));
            VPD_TRY(attr_double(P, obj, "eps", 1e-12, &lc->eps));
            VPD_TRY(attr_double(P, obj, "p_anneal_start_frac", 1, &lc->p_anneal_start_frac));
            VPD_TRY(attr_double(P, obj, "p_anneal_end_frac", 1, &lc->p_anneal_end_frac));
            lc->has_p_anneal_final_p = vpd_h5_has_attr(&P->f, obj, "p_anneal_final_p");
            VPD_TRY(attr_double(P, obj, "p_anneal_final_p", 0, &lc->p_anneal_final_p));
        }
        if (fields & VPD_LOSS_FIELDS_PGD) {
            static const char *const scopes[] = {"unique_per_datapoint", "shared_across_batch", NULL};
            int64_t n = 0;
            VPD_TRY(attr_enum(P, obj, "mask_scope", scopes, 0, &v));
            lc->mask_scope = (vpd_pgd_scope)v;
            VPD_TRY(attr_int(P, obj, "n_steps", 0, 0, 100000, &n));
            lc->n_steps = (int)n;
            VPD_TRY(attr_double(P, obj, "step_size", 0.1, &lc->step_size));
            lc->pgd_init = VPD_PGD_INIT_RANDOM; /* the initial sources always come from the file */
        }
        if (fields & VPD_LOSS_FIELDS_PPGD) {
            static const char *const scopes[] = {"single_source", "broadcast_across_batch", "repeat_across_batch",
                                                 "per_batch_per_position", NULL};
            int64_t n = 1, sig = 0;
            VPD_TRY(attr_enum(P, obj, "scope", scopes, 0, &v));
            lc->ppgd_scope = (vpd_ppgd_scope)v;
            VPD_TRY(attr_int(P, obj, "n_sources", 1, 1, 1 << 30, &n));
            lc->ppgd_n_sources = (int)n;
            VPD_TRY(attr_int(P, obj, "use_sigmoid_parameterization", 0, 0, 1, &sig));
            lc->ppgd_sigmoid = sig != 0;
            lc->ppgd_lr = vpd_schedule_constant(0.0);
        }
        /* routing draws come from the file; the kind only has to be valid */
        lc->routing = VPD_ROUTING_UNIFORM_K_SUBSET;
    }
    return VPD_OK;
}

/* layers/<name>/{V, U} and optional W, b checked against the target */
static vpd_status read_layers(parity_ctx *P, char names[][128], int *L) {
    VPD_TRY(list_group(P, "layers", names, MAXL, L));
    if (*L == 0) return vpd_error(VPD_ERR_FORMAT, "%s: group 'layers' is empty", P->path);
    vpd_decomp_config *c = &P->cfg;
    c->n_module_info = 0;
    for (int i = 0; i < *L; i++) {
        int l = vpd_model_find_layer(&P->model, names[i]);
        if (l < 0) {
            char avail[512] = "";
            for (int j = 0; j < P->model.n_layers && strlen(avail) < 400; j++) {
                strcat(avail, j ? ", " : "");
                strcat(avail, P->model.layers[j].name);
            }
            return vpd_error(VPD_ERR_FORMAT, "%s: group 'layers/%s': the %s target has no layer '%s' (layers: %s)",
                             P->path, names[i], vpd_model_kind_name(P->model.cfg.kind), names[i], avail);
        }
        if (strpbrk(names[i], "*?[\\"))
            return vpd_error(VPD_ERR_FORMAT, "%s: layer name '%s' contains a pattern character", P->path, names[i]);
        char path[256];
        int nd;
        int64_t sh[VPD_MAX_DIMS];
        snprintf(path, sizeof path, "layers/%.127s/V", names[i]);
        /* linear2 of a tied TMS pair may omit V, U: they are linear1's transposed */
        bool tied2 = P->model.cfg.kind == VPD_MODEL_TMS && !strcmp(names[i], "linear2");
        const vpd_layer_info *li = &P->model.layers[l];
        int64_t want_d_in = li->d_in;
        if (tied2 && !vpd_h5_exists(&P->f, path)) { /* C from linear1's V [d_in₁ = d_out₂, C] */
            snprintf(path, sizeof path, "layers/linear1/V");
            want_d_in = li->d_out;
        }
        VPD_TRY(vpd_h5_dataset_shape(&P->f, path, &nd, sh));
        if (nd != 2 || sh[0] != want_d_in || sh[1] <= 0)
            return vpd_error(VPD_ERR_SHAPE, "%s: dataset '%s': expected shape [d_in = %d, C] for layer '%s'", P->path,
                             path, (int)want_d_in, names[i]);
        if (c->n_module_info >= VPD_MAX_MODULE_PATTERNS)
            return vpd_error(VPD_ERR_FORMAT, "%s: more than %d layers", P->path, VPD_MAX_MODULE_PATTERNS);
        vpd_module_info *mi = &c->module_info[c->n_module_info++];
        snprintf(mi->pattern, sizeof mi->pattern, "%.127s", names[i]);
        mi->C = (int)sh[1];
    }
    return VPD_OK;
}

static vpd_status read_root(parity_ctx *P) {
    vpd_decomp_config *c = &P->cfg;
    vpd_decomp_config_defaults(c);
    c->ci_type = VPD_CI_SHARED_MLP; /* never run: the CI values come from the file */
    c->ci_n_hidden = 0;
    int64_t v;
    VPD_TRY(attr_int(P, "/", "version", 1, 1, 1, &v));
    VPD_TRY(attr_int(P, "/", "steps", 1, 1, 1 << 30, &v));
    c->steps = (int)v;
    VPD_TRY(attr_int(P, "/", "n_mask_samples", 1, 1, 1000, &v));
    c->n_mask_samples = (int)v;
    VPD_TRY(attr_int(P, "/", "use_delta_component", 1, 0, 1, &v));
    c->use_delta_component = v != 0;
    static const char *const outs[] = {"mse", "kl", NULL};
    int o = 0;
    VPD_TRY(attr_enum(P, "/", "output_loss", outs, vpd_model_is_lm(P->model.cfg.kind) ? 1 : 0, &o));
    c->output_loss = (vpd_output_loss)o;
    if (vpd_h5_has_attr(&P->f, "/", "sigmoid_type")) {
        char *st = NULL;
        VPD_TRY(vpd_h5_get_attr_str(&P->f, "/", "sigmoid_type", &st));
        snprintf(c->sigmoid_type, sizeof c->sigmoid_type, "%s", st);
        vpd_status s = vpd_sigmoid_lookup(st, &c->sigmoid_lower, &c->sigmoid_upper);
        vpd_free(st);
        if (s != VPD_OK) return vpd_error_context(s, "%s: attribute 'sigmoid_type'", P->path);
    }
    return VPD_OK;
}

/* components, CI values, target forward */
static vpd_status fill_state(parity_ctx *P) {
    vpd_decomp *d = P->d;
    char path[256];
    for (int k = 0; k < d->L; k++) {
        vpd_layer_state *ls = &d->layers[k];
        int64_t shV[2] = {ls->d_in, ls->C}, shU[2] = {ls->C, ls->d_out};
        if (ls->tied_to >= 0) continue; /* materialised from its source by refresh */
        snprintf(path, sizeof path, "layers/%s/V", ls->name);
        VPD_TRY(read_real(P, path, ls->comp.V, 2, shV));
        snprintf(path, sizeof path, "layers/%s/U", ls->name);
        VPD_TRY(read_real(P, path, ls->comp.U, 2, shU));
    }
    vpd_decomp_refresh(d);
    size_t maxW = 0;
    for (int k = 0; k < d->L; k++) maxW = d->layers[k].numel_W > maxW ? d->layers[k].numel_W : maxW;
    real *tmp = vpd_malloc(sizeof(real) * (maxW > 0 ? maxW : 1), "parity check buffer");
    if (!tmp) return VPD_ERR_MEM;
    vpd_status s = VPD_OK;
    for (int k = 0; k < d->L && s == VPD_OK; k++) {
        vpd_layer_state *ls = &d->layers[k];
        const vpd_layer_info *li = &d->target->layers[ls->model_layer];
        /* tied linear2 given explicitly: must be linear1's transposes */
        if (ls->tied_to >= 0) {
            const char *which[2] = {"V", "U"};
            const real *have[2] = {ls->comp.V, ls->comp.U};
            int64_t sh[2][2] = {{ls->d_in, ls->C}, {ls->C, ls->d_out}};
            for (int t = 0; t < 2 && s == VPD_OK; t++) {
                snprintf(path, sizeof path, "layers/%s/%s", ls->name, which[t]);
                if (!vpd_h5_exists(&P->f, path)) continue;
                s = read_real(P, path, tmp, 2, sh[t]);
                size_t n = (size_t)sh[t][0] * (size_t)sh[t][1];
                double mx = 0, err = 0;
                for (size_t j = 0; s == VPD_OK && j < n; j++) {
                    mx = fmax(mx, fabs((double)have[t][j]));
                    err = fmax(err, fabs((double)tmp[j] - (double)have[t][j]));
                }
                if (s == VPD_OK && err > 1e-6 * (mx > 0 ? mx : 1))
                    s = vpd_error(VPD_ERR_VALUE,
                                  "%s: dataset '%s': TMS ties linear2 to linear1 (V2 = U1ᵀ, U2 = V1ᵀ) but it differs "
                                  "from linear1's transpose by %g; omit it or write the transpose", P->path, path, err);
            }
        }
        snprintf(path, sizeof path, "layers/%s/W", ls->name);
        if (s == VPD_OK && vpd_h5_exists(&P->f, path)) {
            int64_t sh[2] = {li->embedding ? li->d_in : li->d_out, li->embedding ? li->d_out : li->d_in};
            s = read_real(P, path, tmp, 2, sh);
            double mx = 0, err = 0;
            for (size_t j = 0; s == VPD_OK && j < ls->numel_W; j++) {
                mx = fmax(mx, fabs((double)li->W[j]));
                err = fmax(err, fabs((double)tmp[j] - (double)li->W[j]));
            }
            if (s == VPD_OK && err > 1e-6 * (mx > 0 ? mx : 1))
                s = vpd_error(VPD_ERR_VALUE, "%s: dataset '%s' differs from the target's weight of '%s' by %g", P->path,
                              path, ls->name, err);
        }
        snprintf(path, sizeof path, "layers/%s/b", ls->name);
        if (s == VPD_OK && vpd_h5_exists(&P->f, path)) {
            if (!li->b) {
                s = vpd_error(VPD_ERR_FORMAT, "%s: dataset '%s': the target's layer '%s' has no bias", P->path, path,
                              ls->name);
            } else {
                int64_t sh[1] = {li->d_out};
                s = read_real(P, path, tmp, 1, sh);
                double err = 0;
                for (int j = 0; s == VPD_OK && j < li->d_out; j++) err = fmax(err, fabs((double)tmp[j] - (double)li->b[j]));
                if (s == VPD_OK && err > 1e-6)
                    s = vpd_error(VPD_ERR_VALUE, "%s: dataset '%s' differs from the target's bias of '%s' by %g",
                                  P->path, path, ls->name, err);
            }
        }
    }
    vpd_free(tmp);
    VPD_TRY(s);

    /* input and the target forward (caches each layer's input and f(x)) */
    d->batch.input.B = P->B;
    d->batch.input.S = P->S;
    d->batch.input.x = P->x;
    d->batch.input.tokens = P->tok;
    if (P->tok) {
        d->batch.tok_in = P->tok;
    }
    vpd_decomp_target_forward(d);

    /* causal importances */
    snprintf(path, sizeof path, "layers/%s/z", d->layers[0].name);
    char path2[256];
    snprintf(path2, sizeof path2, "layers/%s/ci_lower", d->layers[0].name);
    P->ci_direct = !vpd_h5_exists(&P->f, path) && vpd_h5_exists(&P->f, path2);
    for (int k = 0; k < d->L; k++) {
        int64_t sh[3];
        int nd = row_shape(P, d->layers[k].C, sh);
        if (P->ci_direct) {
            snprintf(path, sizeof path, "layers/%s/ci_lower", d->layers[k].name);
            VPD_TRY(read_real(P, path, blk(d, d->act.g_lower, k), nd, sh));
            snprintf(path, sizeof path, "layers/%s/ci_upper", d->layers[k].name);
            VPD_TRY(read_real(P, path, blk(d, d->act.g_upper, k), nd, sh));
        } else {
            snprintf(path, sizeof path, "layers/%s/z", d->layers[k].name);
            if (!vpd_h5_exists(&P->f, path))
                return vpd_error(VPD_ERR_FORMAT,
                                 "%s: dataset '%s' not found (give z, or ci_lower and ci_upper, for every layer)",
                                 P->path, path);
            VPD_TRY(read_real(P, path, blk(d, d->act.z, k), nd, sh));
        }
    }
    size_t n = (size_t)d->batch.N * (size_t)d->C_sum;
    if (!P->ci_direct) {
        vpd_sigmoid_forward(P->cfg.sigmoid_lower, d->act.g_lower, d->act.z, n);
        vpd_sigmoid_forward(P->cfg.sigmoid_upper, d->act.g_upper, d->act.z, n);
    }
    return VPD_OK;
}

/* ---- evaluation and output ------------------------------------------------------------------ */


static vpd_status write_grads(parity_ctx *P, vpd_h5 *out, int i) {
    vpd_decomp *d = P->d;
    vpd_decomp_fold_tied_grads(d);
    size_t n = (size_t)d->batch.N * (size_t)d->C_sum;
    if (!P->ci_direct) { /* dz = σ_lower'·dg_lower + σ_upper'·dg_upper (continuous sampling) */
        memset(d->act.dz, 0, sizeof(real) * n);
        vpd_sigmoid_backward(P->cfg.sigmoid_lower, d->act.dz, d->act.dg_lower, d->act.z, n);
        vpd_sigmoid_backward(P->cfg.sigmoid_upper, d->act.dz, d->act.dg_upper, d->act.z, n);
    }
    char path[600];
    for (int k = 0; k < d->L; k++) {
        vpd_layer_state *ls = &d->layers[k];
        if (ls->tied_to >= 0) continue; /* folded into its source */
        int64_t shV[2] = {ls->d_in, ls->C}, shU[2] = {ls->C, ls->d_out};
        snprintf(path, sizeof path, "losses/%s/grad/%s/dV", P->loss_name[i], ls->name);
        VPD_TRY(vpd_h5_write_real(out, path, ls->dV, 2, shV));
        snprintf(path, sizeof path, "losses/%s/grad/%s/dU", P->loss_name[i], ls->name);
        VPD_TRY(vpd_h5_write_real(out, path, ls->dU, 2, shU));
    }
    for (int k = 0; k < d->L; k++) {
        vpd_layer_state *ls = &d->layers[k];
        int64_t sh[3];
        int nd = row_shape(P, ls->C, sh);
        if (P->ci_direct) {
            snprintf(path, sizeof path, "losses/%s/grad/%s/dci_lower", P->loss_name[i], ls->name);
            VPD_TRY(vpd_h5_write_real(out, path, blk(d, d->act.dg_lower, k), nd, sh));
            snprintf(path, sizeof path, "losses/%s/grad/%s/dci_upper", P->loss_name[i], ls->name);
            VPD_TRY(vpd_h5_write_real(out, path, blk(d, d->act.dg_upper, k), nd, sh));
        } else {
            snprintf(path, sizeof path, "losses/%s/grad/%s/dz", P->loss_name[i], ls->name);
            VPD_TRY(vpd_h5_write_real(out, path, blk(d, d->act.dz, k), nd, sh));
        }
    }
    return VPD_OK;
}

static vpd_status evaluate(parity_ctx *P, const vpd_parity_opts *o) {
    vpd_decomp *d = P->d;
    vpd_h5 out;
    bool out_open = false;
    if (o->out_path) {
        VPD_TRY(vpd_h5_create(&out, o->out_path));
        out_open = true;
    }
    vpd_status s = VPD_OK;
    if (out_open) {
        s = vpd_h5_set_attr_str(&out, "/", "source", P->path);
        if (s == VPD_OK) s = vpd_h5_set_attr_int(&out, "/", "has_grad", o->grad ? 1 : 0);
        if (s == VPD_OK) s = vpd_h5_set_attr_str(&out, "/", "ci_input", P->ci_direct ? "ci" : "z");
    }
    if (o->report) {
        fprintf(o->report, "vpd parity: %s: %s target, B=%d S=%d, %d layers, %d losses%s\n", P->path,
                vpd_model_kind_name(P->model.cfg.kind), P->B, P->S, d->L, P->n_loss,
                d->L == 2 && d->layers[1].tied_to == 0 ? " (linear2 tied to linear1)" : "");
        fprintf(o->report, "  %-28s %-30s %12s %20s\n", "loss", "classname", "coeff", "value");
    }
    double total = 0;
    for (int i = 0; i < P->n_loss && s == VPD_OK; i++) {
        const vpd_loss_cfg *lc = &P->cfg.losses[i];
        vpd_decomp_zero_grads(d, false);
        if (vpd_loss_def_of(lc->kind)->persistent) s = load_ppgd(P, i);
        if (s != VPD_OK) break;
        double v = vpd_loss_evaluate(d, i, o->grad);
        if (!isfinite(v)) {
            s = vpd_error(VPD_ERR_VALUE, "%s: loss '%s' (%s) is not finite", P->path, P->loss_name[i],
                          vpd_loss_classname(lc->kind));
            break;
        }
        total += lc->coeff * v;
        if (o->report)
            fprintf(o->report, "  %-28s %-30s %12.6g %20.12e\n", P->loss_name[i], vpd_loss_classname(lc->kind), lc->coeff,
                    v);
        if (out_open) {
            char obj[300];
            snprintf(obj, sizeof obj, "losses/%s", P->loss_name[i]);
            s = vpd_h5_make_groups(&out, obj);
            if (s == VPD_OK) s = vpd_h5_set_attr_str(&out, obj, "classname", vpd_loss_classname(lc->kind));
            if (s == VPD_OK) s = vpd_h5_set_attr_double(&out, obj, "coeff", lc->coeff);
            if (s == VPD_OK) s = vpd_h5_set_attr_double(&out, obj, "value", v);
            if (s == VPD_OK && o->grad) s = write_grads(P, &out, i);
        }
    }
    if (s == VPD_OK && o->report) fprintf(o->report, "  %-28s %-30s %12s %20.12e\n", "total", "Σ coeff·value", "", total);
    if (s == VPD_OK && out_open) s = vpd_h5_set_attr_double(&out, "/", "total", total);
    if (out_open) {
        vpd_status c = vpd_h5_close(&out);
        if (s == VPD_OK) s = c;
    }
    return s;
}

vpd_status vpd_parity_run(const vpd_parity_opts *o) {
    parity_ctx *P = calloc(1, sizeof *P);
    if (!P) return vpd_error(VPD_ERR_MEM, "parity state");
    snprintf(P->path, sizeof P->path, "%s", o->in_path);
    static char layer_names[MAXL][128];
    int L = 0;
    vpd_status s = vpd_h5_open(&P->f, o->in_path, false);
    if (s == VPD_OK) P->f_open = true;
    if (s == VPD_OK) s = load_target(P);
    if (s == VPD_OK) s = read_root(P);
    if (s == VPD_OK) s = load_input(P);
    if (s == VPD_OK) s = read_losses(P);
    if (s == VPD_OK) s = read_layers(P, layer_names, &L);
    if (s == VPD_OK) {
        P->cfg.batch_size = P->B;
        s = vpd_decomp_create_local(&P->d, &P->cfg, &P->model, P->B, P->S);
        if (s != VPD_OK) s = vpd_error_context(s, "%s", P->path);
    }
    if (s == VPD_OK) {
        P->d->step = 0;
        int64_t step = 0;
        s = attr_int(P, "/", "step", 0, 0, P->cfg.steps, &step);
        P->d->step = (int)step;
    }
    if (s == VPD_OK) {
        int maxC = 1;
        for (int k = 0; k < P->d->L; k++) maxC = P->d->layers[k].C + 1 > maxC ? P->d->layers[k].C + 1 : maxC;
        P->scratch = vpd_malloc(sizeof(real) * (size_t)P->N * (size_t)maxC, "parity scratch");
        if (!P->scratch) s = VPD_ERR_MEM;
    }
    if (s == VPD_OK) s = fill_state(P);
    static vpd_fixed_draws fx;
    fx.ctx = P;
    fx.stochastic = fx_stochastic;
    fx.routing = fx_routing;
    fx.pgd_init = fx_pgd_init;
    for (int i = 0; s == VPD_OK && i < P->n_loss; i++) {
        s = validate_draws(P, i);
        if (s != VPD_OK) s = vpd_error_context(s, "loss '%s' (%s)", P->loss_name[i], vpd_loss_classname(P->cfg.losses[i].kind));
    }
    if (s == VPD_OK) {
        P->d->fixed = &fx;
        s = evaluate(P, o);
    }
    if (P->d) vpd_decomp_free(P->d);
    if (P->model_ok) vpd_model_free(&P->model);
    if (P->f_open) vpd_h5_close(&P->f);
    vpd_free(P->x);
    free(P->tok);
    vpd_free(P->scratch);
    free(P);
    return s;
}
