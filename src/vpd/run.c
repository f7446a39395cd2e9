/* The run loop: faithfulness warmup, then steps 0 … steps, a progress display on rank 0
 * (one rewritten line on a terminal: step, loss, L0, ETA; plain log lines otherwise) and
 * metrics.jsonl (one JSON object per logged step: every loss term, L0 per layer, lr, grad
 * norms, step time). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vpd/trainer.h"

static void json_num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.9g", v);
    else fprintf(f, "null");
}

void vpd_metrics_json(FILE *f, const vpd_decomp *d, const vpd_step_metrics *sm) {
    const vpd_decomp_config *cfg = d->cfg;
    fprintf(f, "{\"step\": %d, \"train/loss/total\": ", sm->step);
    json_num(f, sm->total);
    for (int i = 0; i < cfg->n_losses; i++) {
        fprintf(f, ", \"train/loss/%s\": ", vpd_loss_classname(cfg->losses[i].kind));
        json_num(f, sm->losses[i]);
    }
    for (int k = 0; k < d->L; k++) {
        fprintf(f, ", \"train/l0/%s\": ", d->layers[k].name);
        json_num(f, sm->l0[k]);
    }
    for (int k = 0; k < d->L; k++) {
        fprintf(f, ", \"train/l0_thr/%s\": ", d->layers[k].name);
        json_num(f, sm->l0_thr[k]);
    }
    fprintf(f, ", \"train/schedules/lr\": ");
    json_num(f, sm->lr_components);
    fprintf(f, ", \"train/schedules/lr_ci_fn\": ");
    json_num(f, sm->lr_ci);
    fprintf(f, ", \"train/grad_norms/components\": ");
    json_num(f, sm->grad_norm_components);
    fprintf(f, ", \"train/grad_norms/ci_fn\": ");
    json_num(f, sm->grad_norm_ci);
    fprintf(f, ", \"train/importance_minimality_p\": ");
    json_num(f, sm->im_p);
    fprintf(f, ", \"time/step_seconds\": ");
    json_num(f, sm->seconds);
    fprintf(f, "}");
}

static void fmt_eta(char *buf, size_t n, double s) {
    long t = s > 0 && s < 1e9 ? (long)(s + 0.5) : 0;
    if (t < 60) snprintf(buf, n, "%lds", t);
    else if (t < 3600) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
}

vpd_status vpd_run_training(vpd_trainer *t, const vpd_run_opts *opts) {
    vpd_decomp *d = t->d;
    const vpd_decomp_config *cfg = d->cfg;
    const bool root = vpd_log_rank() == 0;
    FILE *mf = NULL;
    if (root && opts->run_dir) {
        char path[1200];
        snprintf(path, sizeof path, "%s/metrics.jsonl", opts->run_dir);
        mf = fopen(path, "w");
        if (!mf) return vpd_error(VPD_ERR_IO, "cannot write %s", path);
    }
    VPD_TRY(vpd_faithfulness_warmup(d));
    const bool tty = root && !opts->quiet && isatty(STDERR_FILENO);
    double t_start = vpd_wtime(), t_last_print = 0;
    vpd_step_metrics sm;
    vpd_status s = VPD_OK;
    while (d->step <= cfg->steps) {
        s = vpd_trainer_step(t, &sm);
        if (s != VPD_OK) break;
        bool log_now = sm.step % cfg->train_log_freq == 0 || sm.step == cfg->steps;
        if (mf && log_now) {
            vpd_metrics_json(mf, d, &sm);
            fputc('\n', mf);
            fflush(mf);
        }
        if (!root || opts->quiet) continue;
        double l0 = 0;
        for (int k = 0; k < d->L; k++) l0 += sm.l0[k];
        double now = vpd_wtime(), el = now - t_start;
        double eta = sm.step > 0 ? el / sm.step * (cfg->steps - sm.step) : 0;
        char etas[32];
        fmt_eta(etas, sizeof etas, eta);
        if (tty) {
            if (now - t_last_print > 0.2 || sm.step == cfg->steps) {
                fprintf(stderr, "\r[vpd] step %d/%d  loss %.4e  L0 %.2f  %.1f ms/step  ETA %s   ", sm.step, cfg->steps,
                        sm.total, l0, 1e3 * el / (sm.step + 1), etas);
                t_last_print = now;
                if (sm.step == cfg->steps) fputc('\n', stderr);
            }
        } else if (log_now) {
            vpd_info("step %d/%d  loss %.4e  L0 %.2f  %.1f ms/step  ETA %s", sm.step, cfg->steps, sm.total, l0,
                     1e3 * el / (sm.step + 1), etas);
        }
    }
    if (mf) fclose(mf);
    return s;
}
