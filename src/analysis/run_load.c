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
#include "vpd/runfile.h"

static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* run paths in the config are relative to where the run was started; also try the run
 * directory's parent and grandparent (runs/<name> under the project) */
static void resolve(char *p, size_t size, const char *run_dir) {
    if (!p[0] || p[0] == '/' || exists(p)) return;
    const char *ups[] = {"..", "../..", NULL};
    for (int i = 0; ups[i]; i++) {
        char alt[2300];
        snprintf(alt, sizeof alt, "%s/%s/%s", run_dir, ups[i], p);
        if (strlen(alt) < size && exists(alt)) {
            memcpy(p, alt, strlen(alt) + 1);
            return;
        }
    }
}

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
    /* the config the run was made with (run.h5 and checkpoints store it alike) */
    char *yaml = NULL;
    vpd_status s = vpd_checkpoint_config(r->h5_path, &yaml);
    if (s == VPD_OK) s = vpd_config_parse(yaml, strlen(yaml), "run.h5:/config", &r->root);
    vpd_free(yaml);
    for (int i = 0; s == VPD_OK && i < n_sets; i++) s = vpd_config_set(r->root, sets[i]);
    if (s == VPD_OK) s = vpd_decomp_config_read(r->root, &r->cfg);
    if (s == VPD_OK) {
        resolve(r->cfg.target_dir, sizeof r->cfg.target_dir, run_dir);
        resolve(r->cfg.train_tokens, sizeof r->cfg.train_tokens, run_dir);
        resolve(r->cfg.eval_tokens, sizeof r->cfg.eval_tokens, run_dir);
        s = vpd_model_load(&r->target, r->cfg.target_dir);
        r->have_target = s == VPD_OK;
        if (r->have_target) vpd_decomp_config_default_output_loss(&r->cfg, &r->target);
    }
    int S = 1;
    if (s == VPD_OK && r->target.cfg.kind == VPD_MODEL_LLAMA) S = r->cfg.max_seq_len;
    int B = batch > 0 ? batch : r->cfg.eval_batch_size > 0 ? r->cfg.eval_batch_size : r->cfg.batch_size;
    if (s == VPD_OK) s = vpd_decomp_create(&r->d, &r->cfg, &r->target, B, S, 0, B, vpd_comm_self());
    /* the trained parameters and the step, through the rows the run file was written with */
    if (s == VPD_OK) s = vpd_decomp_read_params(r->d, r->h5_path, &r->is_checkpoint);
    if (s == VPD_OK) {
        r->run_step = r->d->step;
        s = vpd_trainer_init(&r->trainer, r->d);
        r->have_trainer = s == VPD_OK;
    }
    if (s != VPD_OK) {
        vpd_error_context(s, "opening run %s", run_dir);
        vpd_run_close(r);
    }
    return s;
}

void vpd_run_close(vpd_run *r) {
    if (r->have_trainer) vpd_trainer_free(&r->trainer);
    vpd_decomp_free(r->d);
    if (r->have_target) vpd_model_free(&r->target);
    vpd_config_free(r->root);
    memset(r, 0, sizeof *r);
}
