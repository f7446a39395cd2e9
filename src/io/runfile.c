/* run.h5: the self-describing result of a decomposition (DESIGN.md "Files"), readable with
 * h5py alone:
 *   /                      attrs: format "vpd-run", version, git_hash, step, steps
 *   /config                attr "yaml": the resolved config
 *   /provenance            attrs: vpd version, git hash, MPI layout, host, target dir,
 *                          target model config (config.json text)
 *   /components/<layer>/V  float32 [d_in, C]   (a tied layer: materialised transpose, attr tied_to)
 *   /components/<layer>/U  float32 [C, d_out]
 *   /ci_fn/<spd state_dict key>   every CI-function tensor, spd's layout
 *   /summary               L0 / alive / MMCS per layer (when given)
 * Written by rank 0 (data-parallel ranks hold identical parameters). */
#define _POSIX_C_SOURCE 200809L
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vpd/config.h"
#include "vpd/io.h"
#include "vpd/runfile.h"

/* Component parallelism: gather every layer's V and U blocks onto cp rank 0 (collective over
 * d->cp_comm). V [d_in, C] is split by columns, U [C, d_out] by rows. Returns malloc'd full
 * copies on cp rank 0 (NULL elsewhere). */
static void gather_components(const vpd_decomp *d, const vpd_layer_state *ls, real **V, real **U) {
    const int cp = d->cp_size, C = ls->C, Ct = ls->C_total;
    MPI_Datatype t = VPD_REAL_IS_DOUBLE ? MPI_DOUBLE : MPI_FLOAT;
    *V = *U = NULL;
    real *vt = vpd_malloc(sizeof(real) * (size_t)ls->d_in * C, "component gather");
    for (int i = 0; i < ls->d_in; i++)
        for (int c = 0; c < C; c++) vt[(size_t)c * ls->d_in + i] = ls->comp.V[(size_t)i * C + c]; /* Vᵀ rows */
    real *vall = NULL, *uall = NULL;
    if (d->cp_rank == 0) {
        vall = vpd_malloc(sizeof(real) * (size_t)ls->d_in * Ct, "component gather");
        uall = vpd_malloc(sizeof(real) * (size_t)Ct * ls->d_out, "component gather");
    }
    MPI_Gather(vt, C * ls->d_in, t, vall, C * ls->d_in, t, 0, d->cp_comm);
    MPI_Gather(ls->comp.U, C * ls->d_out, t, uall, C * ls->d_out, t, 0, d->cp_comm);
    vpd_free(vt);
    (void)cp;
    if (d->cp_rank != 0) return;
    real *v = vpd_malloc(sizeof(real) * (size_t)ls->d_in * Ct, "component gather");
    for (int c = 0; c < Ct; c++)
        for (int i = 0; i < ls->d_in; i++) v[(size_t)i * Ct + c] = vall[(size_t)c * ls->d_in + i];
    vpd_free(vall);
    *V = v;
    *U = uall;
}

vpd_status vpd_runfile_write(const char *path, const vpd_decomp *d, const struct vpd_config *config,
                             const vpd_summary *summary) {
    real *fullV[VPD_MAX_MODULE_PATTERNS * 4] = {0}, *fullU[VPD_MAX_MODULE_PATTERNS * 4] = {0};
    if (d->cp_size > 1) {
        for (int k = 0; k < d->L; k++) gather_components(d, &d->layers[k], &fullV[k], &fullU[k]);
        if (d->cp_rank != 0) return VPD_OK;
    }
    vpd_status rs = vpd_runfile_write_full(path, d, config, summary, fullV, fullU);
    for (int k = 0; k < d->L; k++) {
        vpd_free(fullV[k]);
        vpd_free(fullU[k]);
    }
    return rs;
}

vpd_status vpd_runfile_write_full(const char *path, const vpd_decomp *d, const struct vpd_config *config,
                                  const vpd_summary *summary, real *const *fullV, real *const *fullU) {
    vpd_h5 f;
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid());
    VPD_TRY(vpd_h5_create(&f, tmp));
    vpd_status s = VPD_OK;
#define W(x) do { if (s == VPD_OK) s = (x); } while (0)
    W(vpd_h5_set_attr_str(&f, "/", "format", "vpd-run"));
    W(vpd_h5_set_attr_str(&f, "/", "vpd_version", VPD_VERSION));
    W(vpd_h5_set_attr_int(&f, "/", "step", d->step));
    W(vpd_h5_set_attr_int(&f, "/", "steps", d->cfg->steps));
    if (config) {
        char *yaml = NULL;
        size_t len = 0;
        W(vpd_config_emit(config, &yaml, &len));
        if (yaml) W(vpd_h5_set_attr_str(&f, "/config", "yaml", yaml));
        free(yaml);
    }
    int world = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    char host[256] = "?";
    gethostname(host, sizeof host - 1);
    W(vpd_h5_set_attr_str(&f, "/provenance", "vpd_version", VPD_VERSION));
    W(vpd_h5_set_attr_str(&f, "/provenance", "git_hash", VPD_GIT_HASH));
    W(vpd_h5_set_attr_int(&f, "/provenance", "mpi_world_size", world));
    W(vpd_h5_set_attr_int(&f, "/provenance", "data_parallel", d->dp_size));
    W(vpd_h5_set_attr_int(&f, "/provenance", "component_parallel", d->cp_size));
    W(vpd_h5_set_attr_str(&f, "/provenance", "host", host));
    W(vpd_h5_set_attr_str(&f, "/provenance", "target_dir", d->cfg->target_dir));
    char *mj = vpd_model_config_to_json(&d->target->cfg);
    if (mj) W(vpd_h5_set_attr_str(&f, "/provenance", "target_config_json", mj));
    free(mj);
    for (int k = 0; k < d->L && s == VPD_OK; k++) {
        const vpd_layer_state *ls = &d->layers[k];
        char p[256];
        int64_t sv[2] = {ls->d_in, ls->C_total}, su[2] = {ls->C_total, ls->d_out};
        snprintf(p, sizeof p, "/components/%s/V", ls->name);
        W(vpd_h5_write_real(&f, p, fullV && fullV[k] ? fullV[k] : ls->comp.V, 2, sv));
        snprintf(p, sizeof p, "/components/%s/U", ls->name);
        W(vpd_h5_write_real(&f, p, fullU && fullU[k] ? fullU[k] : ls->comp.U, 2, su));
        snprintf(p, sizeof p, "/components/%s", ls->name);
        W(vpd_h5_set_attr_int(&f, p, "C", ls->C_total));
        W(vpd_h5_set_attr_int(&f, p, "embedding", ls->embedding));
        if (ls->tied_to >= 0) W(vpd_h5_set_attr_str(&f, p, "tied_to", d->layers[ls->tied_to].name));
    }
    for (int i = 0; i < d->ci->n_tensors && s == VPD_OK; i++) {
        vpd_tensor tv = vpd_ci_param_view(d->ci, i);
        char p[256];
        snprintf(p, sizeof p, "/ci_fn/%s", d->ci->tensors[i].name);
        W(vpd_h5_write_real(&f, p, tv.data, tv.ndim, tv.shape));
    }
    W(vpd_h5_set_attr_str(&f, "/ci_fn", "fn_type", vpd_ci_type_name(d->ci->type)));
    if (summary) {
        for (int k = 0; k < d->L && s == VPD_OK; k++) {
            char p[256];
            snprintf(p, sizeof p, "/summary/%s", d->layers[k].name);
            W(vpd_h5_set_attr_double(&f, p, "l0", summary->l0[k]));
            W(vpd_h5_set_attr_int(&f, p, "alive", summary->alive[k]));
            if (summary->mmcs[k] >= 0) {
                W(vpd_h5_set_attr_double(&f, p, "mmcs", summary->mmcs[k]));
                W(vpd_h5_set_attr_int(&f, p, "dedicated_features", summary->dedicated[k]));
                W(vpd_h5_set_attr_int(&f, p, "captured_features", summary->captured[k]));
            }
        }
    }
#undef W
    vpd_status c = vpd_h5_close(&f);
    if (s == VPD_OK) s = c;
    if (s != VPD_OK) {
        unlink(tmp);
        return s;
    }
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return vpd_error(VPD_ERR_IO, "cannot rename %s to %s", tmp, path);
    }
    return VPD_OK;
}
