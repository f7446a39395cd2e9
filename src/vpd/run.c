/* The run loop: faithfulness warmup, then steps 0 … steps, a progress display on rank 0
 * (one rewritten line on a terminal: step, loss, L0, ETA; plain log lines otherwise) and
 * metrics.jsonl (one JSON object per logged step: every loss term, L0 per layer, lr, grad
 * norms, step time).
 *
 * HPC operations (vpd_run_training_hpc): after each step every rank contributes whether a
 * signal arrived and rank 0 whether a periodic checkpoint is due (every N steps or M
 * minutes); a max over the data- and component-parallel communicators makes the decision common, so all ranks checkpoint at the
 * same step boundary. A signal ends the loop after its checkpoint. A resumed run skips
 * the faithfulness warmup (its result is in the checkpointed parameters) and rewrites
 * metrics.jsonl without the records at or after the checkpoint's step before appending. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vpd/comm.h"
#include "vpd/io.h"
#include "vpd/runfile.h"
#include "vpd/signals.h"
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

/* After step d->step − 1: every rank contributes [0] whether a signal arrived, rank 0 [1]
 * whether a periodic checkpoint is due (its clock decides); a max over the grid makes the choice
 * common. Writes the checkpoint, prunes old ones, and on a signal asks the loop to stop. */
static vpd_status hpc_boundary(vpd_decomp *d, const vpd_run_opts *opts, vpd_run_hpc *hpc, double *t_last_ckpt,
                               bool *stop) {
    const vpd_ckpt_opts *ck = hpc->ckpt;
    int flags[2] = {vpd_signal_pending(), 0};
    if (hpc->stop_at_step > 0 && d->step >= hpc->stop_at_step && !flags[0]) flags[0] = SIGUSR1;
    if (ck && ck->every_steps > 0 && d->step % ck->every_steps == 0) flags[1] = 1;
    if (ck && vpd_log_rank() == 0 && ck->every_minutes > 0 && vpd_wtime() - *t_last_ckpt >= 60.0 * ck->every_minutes)
        flags[1] = 1;
    /* every rank of the dp × cp grid (the checkpoint is collective over all of them) */
    vpd_max_ints(flags, 2, d->grid.dp_comm);
    vpd_max_ints(flags, 2, d->grid.cp_comm);
    if (!flags[0] && !flags[1]) return VPD_OK;
    vpd_ckpt_opts fallback;
    if (!ck) { /* no checkpoint section: a signal still checkpoints into RUN_DIR/checkpoints */
        memset(&fallback, 0, sizeof fallback);
        fallback.keep_last = 2;
        snprintf(fallback.dir, sizeof fallback.dir, "%s/checkpoints", opts->run_dir ? opts->run_dir : ".");
        ck = &fallback;
    }
    double secs = 0;
    size_t bytes = 0;
    VPD_TRY(vpd_checkpoint_write(ck->dir, d, hpc->config_yaml, hpc->provenance_json, &secs, &bytes));
    hpc->checkpoints_written++;
    hpc->checkpoint_seconds += secs;
    *t_last_ckpt = vpd_wtime();
    vpd_info("checkpoint at step %d: %s/ckpt-%08d.h5, %.2f MiB written in %.3f s%s", d->step, ck->dir, d->step,
             (double)bytes / 1048576.0, secs, flags[0] ? " (signal)" : "");
    vpd_checkpoint_prune(ck);
    if (flags[0]) {
        hpc->stopped_by_signal = flags[0];
        vpd_info("stopping after signal %d; resume with: vpd decompose --resume %s", flags[0],
                 opts->run_dir ? opts->run_dir : "RUN_DIR");
        *stop = true;
    }
    return VPD_OK;
}

vpd_status vpd_run_training(vpd_trainer *t, const vpd_run_opts *opts) { return vpd_run_training_hpc(t, opts, NULL); }

/* ---- the watchdog (vpd_run_opts.watchdog_s: --watchdog, VPD_WATCHDOG_S, checkpoint.watchdog_s) ----
 * A rank that stops (SIGSTOP, a hung node, a stuck file system) leaves the others blocked in a
 * collective for ever. With a timeout T > 0 every rank runs a thread that, once a second,
 * writes its heartbeat (time, pid, host) into its 128-byte slot of RUN_DIR/.vpd-heartbeat, and
 * checks the step counter of its own rank: when no step has completed for T seconds it reads every
 * slot, names the ranks whose heartbeat is stale (a stopped process's threads stop too) and ends
 * the process (status VPD_EXIT_WATCHDOG); mpirun / srun then end the job. Off by default: T must
 * exceed the longest step and checkpoint write. Uses no MPI (the main thread may be inside a
 * collective). */
#define VPD_EXIT_WATCHDOG 124
#define HB_SLOT 128
static struct {
    pthread_t th;
    bool on;
    int fd, rank, world;
    double timeout;
    char from[48]; /* the option / variable / key that set the timeout */
    volatile sig_atomic_t steps; /* completed steps of this rank */
    volatile sig_atomic_t stop;
    char path[1200];
} g_wd;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* wall time: comparable between the ranks' slots */
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *watchdog_main(void *arg) {
    (void)arg;
    char host[64] = "?";
    gethostname(host, sizeof host - 1);
    int last_steps = -1;
    double last_progress = now_s();
    while (!g_wd.stop) {
        char rec[HB_SLOT];
        memset(rec, 0, sizeof rec);
        double t = now_s();
        snprintf(rec, sizeof rec, "%.3f %d %d %s\n", t, (int)getpid(), (int)g_wd.steps, host);
        if (pwrite(g_wd.fd, rec, HB_SLOT, (off_t)g_wd.rank * HB_SLOT) != HB_SLOT) {} /* best effort */
        if (g_wd.steps != last_steps) {
            last_steps = g_wd.steps;
            last_progress = t;
        } else if (t - last_progress >= g_wd.timeout) {
            char msg[4096];
            int n = snprintf(msg, sizeof msg, "[vpd r%d] watchdog: no step completed for %.0f s (%s %g);", g_wd.rank,
                             t - last_progress, g_wd.from, g_wd.timeout);
            int n_stale = 0;
            for (int r = 0; r < g_wd.world && n < (int)sizeof msg - 200; r++) {
                char o[HB_SLOT + 1];
                memset(o, 0, sizeof o);
                double tr = 0;
                int pid = 0, st = 0;
                char h[64] = "?";
                if (pread(g_wd.fd, o, HB_SLOT, (off_t)r * HB_SLOT) <= 0 || sscanf(o, "%lf %d %d %63s", &tr, &pid, &st, h) != 4)
                    tr = 0;
                if (t - tr > 2.5) { /* alive threads write every second */
                    n += snprintf(msg + n, sizeof msg - (size_t)n,
                                  " rank %d (host %s, pid %d) stopped responding %.0f s ago after %d steps;", r, h, pid,
                                  tr > 0 ? t - tr : -1.0, st);
                    n_stale++;
                }
            }
            if (!n_stale)
                n += snprintf(msg + n, sizeof msg - (size_t)n,
                              " every rank is alive: a deadlock, or a step longer than the timeout (raise %s);", g_wd.from);
            snprintf(msg + n, sizeof msg - (size_t)n, " ending the job (status %d)\n", VPD_EXIT_WATCHDOG);
            ssize_t w = write(STDERR_FILENO, msg, strlen(msg));
            (void)w;
            _exit(VPD_EXIT_WATCHDOG);
        }
        struct timespec one = {1, 0};
        nanosleep(&one, NULL);
    }
    return NULL;
}

static void watchdog_start(const char *run_dir, double tmo, const char *from) {
    if (!(tmo > 0) || !run_dir) return;
    memset(&g_wd, 0, sizeof g_wd);
    snprintf(g_wd.from, sizeof g_wd.from, "%s", from && from[0] ? from : "watchdog");
    g_wd.rank = vpd_world_rank();
    g_wd.world = vpd_world_size();
    g_wd.timeout = tmo;
    snprintf(g_wd.path, sizeof g_wd.path, "%s/.vpd-heartbeat", run_dir);
    g_wd.fd = open(g_wd.path, O_RDWR | O_CREAT, 0644);
    if (g_wd.fd < 0) {
        vpd_warn("watchdog off: cannot open %s", g_wd.path);
        return;
    }
    if (pthread_create(&g_wd.th, NULL, watchdog_main, NULL) != 0) {
        close(g_wd.fd);
        vpd_warn("watchdog off: cannot start its thread");
        return;
    }
    g_wd.on = true;
    if (g_wd.rank == 0) vpd_info("watchdog (%s): a job in which no step completes for %g s ends, naming the rank that stopped",
                                g_wd.from, tmo);
}

static void watchdog_stop(void) {
    if (!g_wd.on) return;
    g_wd.stop = 1;
    pthread_join(g_wd.th, NULL);
    close(g_wd.fd);
    if (g_wd.rank == 0) unlink(g_wd.path);
    g_wd.on = false;
}

vpd_status vpd_run_training_hpc(vpd_trainer *t, const vpd_run_opts *opts, vpd_run_hpc *hpc) {
    vpd_decomp *d = t->d;
    const vpd_decomp_config *cfg = d->cfg;
    const bool root = vpd_log_rank() == 0;
    const bool resumed = hpc && hpc->resumed;
    FILE *mf = NULL;
    vpd_status s = VPD_OK;
    if (root && opts->run_dir) {
        char path[1200];
        snprintf(path, sizeof path, "%s/metrics.jsonl", opts->run_dir);
        if (resumed) s = vpd_metrics_truncate(path, d->step);
        mf = s == VPD_OK ? fopen(path, resumed ? "a" : "w") : NULL;
        if (!mf && s == VPD_OK) s = vpd_error(VPD_ERR_IO, "cannot write %s", path);
    }
    /* every rank must learn about rank 0's failure, or the others would wait in the loop */
    int bad = vpd_max_int(vpd_max_int(s != VPD_OK, d->grid.dp_comm), d->grid.cp_comm);
    if (bad) return s != VPD_OK ? s : vpd_error(VPD_ERR_IO, "rank 0 could not open metrics.jsonl");
    if (hpc) {
        vpd_signals_install();
        hpc->stopped_by_signal = 0;
        hpc->checkpoints_written = 0;
        hpc->checkpoint_seconds = 0;
    }
    if (!resumed) {
        s = vpd_faithfulness_warmup(d);
        if (s != VPD_OK) {
            if (mf) fclose(mf);
            return s;
        }
    } else vpd_info("resume: continuing at step %d of %d (faithfulness warmup skipped)", d->step, cfg->steps);
    watchdog_start(opts->run_dir, opts->watchdog_s, opts->watchdog_from);
    const bool tty = root && !opts->quiet && isatty(STDERR_FILENO);
    const int step_first = d->step;
    double t_start = vpd_wtime(), t_last_print = 0, t_last_ckpt = vpd_wtime();
    vpd_step_metrics sm;
    while (d->step <= cfg->steps) {
        s = vpd_trainer_step(t, &sm);
        if (s != VPD_OK) break;
        g_wd.steps++;
        bool log_now = sm.step % cfg->train_log_freq == 0 || sm.step == cfg->steps;
        if (mf && log_now) {
            vpd_metrics_json(mf, d, &sm);
            fputc('\n', mf);
            fflush(mf);
        }
        if (hpc && d->step <= cfg->steps) {
            bool stop = false;
            s = hpc_boundary(d, opts, hpc, &t_last_ckpt, &stop);
            if (s != VPD_OK || stop) break;
        }
        if (!root || opts->quiet) continue;
        double l0 = 0;
        for (int k = 0; k < d->L; k++) l0 += sm.l0[k];
        double now = vpd_wtime(), el = now - t_start;
        int done = sm.step - step_first + 1;
        double eta = el / done * (cfg->steps - sm.step);
        char etas[32];
        fmt_eta(etas, sizeof etas, eta);
        if (tty) {
            if (now - t_last_print > 0.2 || sm.step == cfg->steps) {
                fprintf(stderr, "\r[vpd] step %d/%d  loss %.4e  L0 %.2f  %.1f ms/step  ETA %s   ", sm.step, cfg->steps,
                        sm.total, l0, 1e3 * el / done, etas);
                t_last_print = now;
                if (sm.step == cfg->steps) fputc('\n', stderr);
            }
        } else if (log_now) {
            vpd_info("step %d/%d  loss %.4e  L0 %.2f  %.1f ms/step  ETA %s", sm.step, cfg->steps, sm.total, l0,
                     1e3 * el / done, etas);
        }
    }
    watchdog_stop();
    if (mf) fclose(mf);
    return s;
}
