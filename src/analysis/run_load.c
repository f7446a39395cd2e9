/* Opening a finished run for analysis: the resolved config stored in run.h5 (/config
 * attribute "yaml"), the target it names, a decomposition sized for the analysis batch,
 * and the trained parameters, read through the decomposition's PARAMS rows
 * (include/vpd/runfile.h) from run.h5 or a checkpoint alike. */
#define _POSIX_C_SOURCE 200809L
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vpd/analysis.h"
#include "vpd/comm.h"
#include "vpd/config.h"
#include "vpd/io.h"
#include "vpd/job.h"
#include "vpd/runfile.h"

static void set_seq_len(vpd_decomp_config *cfg, void *ctx) { cfg->max_seq_len = *(const int *)ctx; }

vpd_status vpd_run_open(vpd_run *r, const char *run_dir, int batch, const char *const *sets, int n_sets) {
    return vpd_run_open_seq(r, run_dir, batch, 0, sets, n_sets);
}

vpd_status vpd_run_open_seq(vpd_run *r, const char *run_dir, int batch, int seq_len, const char *const *sets,
                            int n_sets) {
    return vpd_run_open_ctx(r, run_dir, batch, seq_len, 0, sets, n_sets);
}

vpd_status vpd_run_open_ctx(vpd_run *r, const char *run_dir, int batch, int seq_len, int max_context,
                            const char *const *sets, int n_sets) {
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
    /* the config the run was made with (run.h5 and checkpoints store it alike) */
    char *yaml = NULL;
    vpd_status s = vpd_checkpoint_config(r->h5_path, &yaml);
    /* the assembly of every command (job.h) on one process with the analysis batch; run
     * paths in the config are relative to where the run was started: also try the run
     * directory's parent and grandparent (runs/<name> under the project) */
    char up1[1200], up2[1200];
    snprintf(up1, sizeof up1, "%s/..", run_dir);
    snprintf(up2, sizeof up2, "%s/../..", run_dir);
    const char *ups[] = {up1, up2};
    const vpd_job_opts jo = {.config_text = yaml, .config_name = "run.h5:/config", .sets = sets, .n_sets = n_sets,
                             .search_dirs = ups, .n_search_dirs = 2, .local = true, .batch = batch,
                             .eval_batch = true, .max_context = max_context, .adjust = seq_len > 0 ? set_seq_len : NULL,
                             .adjust_ctx = &seq_len};
    if (s == VPD_OK) s = vpd_job_open(&r->job, &jo);
    vpd_free(yaml);
    if (s == VPD_OK) {
        r->root = r->job.root;
        r->d = r->job.d;
    }
    /* the trained parameters and the step, through the rows the run file was written with */
    if (s == VPD_OK) s = vpd_decomp_read_params(r->d, r->h5_path, &r->is_checkpoint);
    if (s == VPD_OK) r->run_step = r->d->step;
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
