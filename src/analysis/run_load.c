/* Opening a finished run for analysis: the resolved config stored in run.h5 (/config
 * attribute "yaml"), the target it names, a decomposition sized for the analysis batch,
 * and the trained parameters (/components/<layer>/{V,U}, /ci_fn/<name>). */
#define _POSIX_C_SOURCE 200809L
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vpd/analysis.h"
#include "vpd/config.h"
#include "vpd/io.h"
#include "vpd/job.h"

vpd_status vpd_run_open(vpd_run *r, const char *run_dir, int batch, const char *const *sets, int n_sets) {
    memset(r, 0, sizeof *r);
    /* RUN_DIR (its run.h5) or a checkpoint file RUN_DIR/checkpoints/ckpt-*.h5 (along the way) */
    struct stat st;
    bool file = stat(run_dir, &st) == 0 && S_ISREG(st.st_mode);
    if (file) {
        snprintf(r->h5_path, sizeof r->h5_path, "%s", run_dir);
        char tmp[1100];
        snprintf(tmp, sizeof tmp, "%s", run_dir);
        char *dir = dirname(tmp); /* .../checkpoints */
        snprintf(r->dir, sizeof r->dir, "%s/..", dir);
    } else {
        snprintf(r->dir, sizeof r->dir, "%s", run_dir);
        snprintf(r->h5_path, sizeof r->h5_path, "%s/run.h5", run_dir);
    }
    vpd_h5 f;
    VPD_TRY(vpd_h5_open(&f, r->h5_path, false));
    char *fmt = NULL;
    if (vpd_h5_has_attr(&f, "/", "format")) (void)vpd_h5_get_attr_str(&f, "/", "format", &fmt);
    r->is_checkpoint = fmt && !strcmp(fmt, "vpd-checkpoint");
    vpd_free(fmt);
    char *yaml = NULL;
    vpd_status s = vpd_h5_get_attr_str(&f, "/config", "yaml", &yaml);
    /* the assembly of every command (job.h) on one process with the analysis batch; run
     * paths in the config are relative to where the run was started: also try the run
     * directory's parent and grandparent (runs/<name> under the project) */
    char up1[1200], up2[1200];
    snprintf(up1, sizeof up1, "%s/..", run_dir);
    snprintf(up2, sizeof up2, "%s/../..", run_dir);
    const char *ups[] = {up1, up2};
    const vpd_job_opts jo = {.config_text = yaml, .config_name = "run.h5:/config", .sets = sets, .n_sets = n_sets,
                             .search_dirs = ups, .n_search_dirs = 2, .local = true, .batch = batch,
                             .eval_batch = true};
    if (s == VPD_OK) s = vpd_job_open(&r->job, &jo);
    vpd_free(yaml);
    if (s == VPD_OK) {
        r->root = r->job.root;
        r->d = r->job.d;
    }
    if (s == VPD_OK && r->is_checkpoint) { /* flat parameter blocks, as the trainer holds them */
        int64_t nc[1] = {(int64_t)r->d->n_comp_params}, nci[1] = {(int64_t)r->d->ci->n_params};
        s = vpd_h5_read_real(&f, "/comp_params", r->d->comp_params, 1, nc);
        if (s == VPD_OK) s = vpd_h5_read_real(&f, "/ci_params", r->d->ci->params, 1, nci);
    }
    for (int k = 0; s == VPD_OK && !r->is_checkpoint && k < r->d->L; k++) {
        vpd_layer_state *ls = &r->d->layers[k];
        if (ls->tied_to >= 0) continue; /* materialised from its source by refresh */
        char p[256];
        int64_t sv[2] = {ls->d_in, ls->C}, su[2] = {ls->C, ls->d_out};
        snprintf(p, sizeof p, "/components/%s/V", ls->name);
        s = vpd_h5_read_real(&f, p, ls->comp.V, 2, sv);
        snprintf(p, sizeof p, "/components/%s/U", ls->name);
        if (s == VPD_OK) s = vpd_h5_read_real(&f, p, ls->comp.U, 2, su);
    }
    for (int i = 0; s == VPD_OK && !r->is_checkpoint && i < r->d->ci->n_tensors; i++) {
        vpd_tensor tv = vpd_ci_param_view(r->d->ci, i);
        char p[256];
        snprintf(p, sizeof p, "/ci_fn/%s", r->d->ci->tensors[i].name);
        s = vpd_h5_read_real(&f, p, tv.data, tv.ndim, tv.shape);
    }
    int64_t step = 0;
    if (s == VPD_OK && vpd_h5_has_attr(&f, "/", "step")) s = vpd_h5_get_attr_int(&f, "/", "step", &step);
    vpd_h5_close(&f);
    if (s == VPD_OK) {
        r->d->step = (int)step;
        r->run_step = (int)step;
        vpd_decomp_refresh(r->d);
    }
    if (s != VPD_OK) {
        vpd_error_context(s, "opening run %s", run_dir);
        vpd_run_close(r);
    }
    return s;
}

void vpd_run_close(vpd_run *r) {
    vpd_job_close(&r->job);
    memset(r, 0, sizeof *r);
}
