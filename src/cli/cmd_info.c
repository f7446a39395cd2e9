/* `vpd info RUN_DIR | CHECKPOINT.h5 [--json]`: what a run is and where it came from.
 * Prints the provenance recorded at each start of the run (vpd version and git hash, MPI
 * layout and hosts, Slurm job / array ids, SHA-256 of the target weights and data files),
 * the checkpoints present (step, size, time), the progress in metrics.jsonl and whether
 * run.h5 (the finished result) exists. --json prints provenance.json as stored. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <dirent.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/commands.h"
#include "vpd/checkpoint.h"
#include "vpd/config.h"
#include "vpd/io.h"

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b) b[n] = '\0';
    fclose(f);
    return b;
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "-";
}

static void print_start(const cJSON *j, const char *title) {
    printf("%s\n", title);
    printf("  vpd            %s (git %s)\n", jstr(j, "vpd_version"), jstr(j, "git_hash"));
    printf("  started (UTC)  %s\n", jstr(j, "started_utc"));
    printf("  config         %s\n", jstr(j, "config_path"));
    printf("  working dir    %s\n", jstr(j, "cwd"));
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(j, "resumed_from");
    printf("  resumed from   %s\n", cJSON_IsString(rf) ? rf->valuestring : "(fresh start)");
    const cJSON *mpi = cJSON_GetObjectItemCaseSensitive(j, "mpi");
    if (mpi) {
        const cJSON *ws = cJSON_GetObjectItemCaseSensitive(mpi, "world_size");
        const cJSON *nh = cJSON_GetObjectItemCaseSensitive(mpi, "n_hosts");
        printf("  MPI layout     %d ranks (data parallel %d, component parallel 1) on %d host%s:",
               cJSON_IsNumber(ws) ? ws->valueint : 0, cJSON_IsNumber(ws) ? ws->valueint : 0,
               cJSON_IsNumber(nh) ? nh->valueint : 0, cJSON_IsNumber(nh) && nh->valueint == 1 ? "" : "s");
        const cJSON *h;
        int r = 0;
        cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(mpi, "hosts")) {
            if (r < 16) printf(" %s", cJSON_IsString(h) ? h->valuestring : "?");
            else if (r == 16) printf(" ...");
            r++;
        }
        printf("\n");
    }
    const cJSON *sl = cJSON_GetObjectItemCaseSensitive(j, "slurm");
    if (sl) {
        const cJSON *e;
        bool any = false;
        cJSON_ArrayForEach(e, sl) any |= cJSON_IsString(e);
        if (!any) printf("  Slurm          (not under Slurm)\n");
        else {
            printf("  Slurm          job %s  array job %s  array task %s  restarts %s\n", jstr(sl, "SLURM_JOB_ID"),
                   jstr(sl, "SLURM_ARRAY_JOB_ID"), jstr(sl, "SLURM_ARRAY_TASK_ID"), jstr(sl, "SLURM_RESTART_COUNT"));
            printf("                 name %s  partition %s  nodes %s\n", jstr(sl, "SLURM_JOB_NAME"),
                   jstr(sl, "SLURM_JOB_PARTITION"), jstr(sl, "SLURM_JOB_NODELIST"));
        }
    }
    const cJSON *fl = cJSON_GetObjectItemCaseSensitive(j, "files");
    const cJSON *f;
    cJSON_ArrayForEach(f, fl) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(f, "bytes");
        printf("  sha256         %s  %s (%.0f bytes)\n", jstr(f, "sha256"), jstr(f, "path"),
               cJSON_IsNumber(b) ? b->valuedouble : 0.0);
    }
}

static int info_provenance(const char *text, bool json) {
    if (json) {
        printf("%s\n", text);
        return 0;
    }
    cJSON *j = cJSON_Parse(text);
    if (!j) {
        fprintf(stderr, "vpd info: provenance is not valid JSON\n");
        return 1;
    }
    print_start(j, "provenance (latest start)");
    const cJSON *hist = cJSON_GetObjectItemCaseSensitive(j, "previous_starts");
    int n = cJSON_GetArraySize(hist);
    for (int i = n - 1; i >= 0; i--) {
        char title[64];
        snprintf(title, sizeof title, "earlier start %d of %d", i + 1, n);
        print_start(cJSON_GetArrayItem(hist, i), title);
    }
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "config");
    if (cJSON_IsString(c)) printf("resolved config:\n%s", c->valuestring);
    cJSON_Delete(j);
    return 0;
}

/* RUN_DIR's checkpoints (from its config's checkpoint.dir, else RUN_DIR/checkpoints) */
static void info_checkpoints(const char *target) {
    char path[1300];
    struct stat st;
    /* checkpoints: from the run's config (checkpoint.dir), else RUN_DIR/checkpoints */
    vpd_ckpt_opts o;
    memset(&o, 0, sizeof o);
    snprintf(o.dir, sizeof o.dir, "%s/checkpoints", target);
    vpd_config *root = NULL;
    snprintf(path, sizeof path, "%s/config.yaml", target);
    if (vpd_config_load(path, &root) == VPD_OK) vpd_ckpt_opts_read(root, target, &o);
    vpd_config_free(root);
    vpd_clear_error();
    printf("checkpoints in %s:\n", o.dir);
    DIR *dp = opendir(o.dir);
    struct dirent *e;
    int n = 0;
    while (dp && (e = readdir(dp))) {
        if (strncmp(e->d_name, "ckpt-", 5) && strncmp(e->d_name, ".ckpt-", 6)) continue;
        char p[1600];
        snprintf(p, sizeof p, "%s/%s", o.dir, e->d_name);
        if (stat(p, &st) != 0) continue;
        char tb[32];
        strftime(tb, sizeof tb, "%Y-%m-%d %H:%M:%S", localtime(&st.st_mtime));
        printf("  %-24s %10.2f MiB  %s%s\n", e->d_name, (double)st.st_size / 1048576.0, tb,
               e->d_name[0] == '.' ? "  (unfinished write)" : "");
        n++;
    }
    if (dp) closedir(dp);
    if (!n) printf("  (none)\n");
    char latest[1300];
    int step = -1;
    if (vpd_checkpoint_latest(o.dir, latest, sizeof latest, &step) == VPD_OK)
        printf("  newest complete: %s (resume at step %d)\n", latest, step);
    vpd_clear_error();
}

/* progress: metrics.jsonl records and the last step */
static void info_metrics(const char *target) {
    char path[1300];
    snprintf(path, sizeof path, "%s/metrics.jsonl", target);
    FILE *mf = fopen(path, "r");
    if (mf) {
        char *line = NULL;
        size_t cap = 0;
        int records = 0, last = -1;
        while (getline(&line, &cap, mf) > 0) {
            int s;
            if (sscanf(line, "{\"step\": %d", &s) == 1) last = s;
            records++;
        }
        free(line);
        fclose(mf);
        printf("metrics.jsonl: %d records, last step %d\n", records, last);
    }
}

int vpd_cmd_info(int argc, char **argv) {
    if (vpd_world_rank() != 0) return 0;
    if (vpd_cli_wants_help(argc, argv) || argc < 2) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: vpd info RUN_DIR|CHECKPOINT.h5 [--json]\n\n"
                "Print a run's provenance (vpd version and git hash, resolved config, MPI layout, hosts,\n"
                "Slurm job/array ids, SHA-256 of the target weights and data files; one block per start,\n"
                "resumes included), its checkpoints and its progress. --json prints provenance.json.\n");
        return argc < 2 ? 2 : 0;
    }
    const char *target = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = true;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "vpd info: unknown option '%s'\n", argv[i]);
            return 2;
        } else target = argv[i];
    }
    if (!target) {
        fprintf(stderr, "vpd info: give a run directory or a checkpoint file\n");
        return 2;
    }
    struct stat st;
    if (stat(target, &st) != 0) {
        fprintf(stderr, "vpd info: %s: no such run directory or checkpoint\n", target);
        return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
        char *p = NULL;
        vpd_status s = vpd_checkpoint_provenance(target, &p);
        if (s != VPD_OK) return vpd_cli_fail("info", s);
        if (!p) {
            fprintf(stderr, "vpd info: %s has no provenance\n", target);
            return 1;
        }
        int rc = info_provenance(p, json);
        vpd_free(p);
        return rc;
    }
    char path[1300];
    snprintf(path, sizeof path, "%s/provenance.json", target);
    char *prov = slurp(path);
    if (json) {
        if (!prov) {
            fprintf(stderr, "vpd info: %s not found\n", path);
            return 1;
        }
        printf("%s", prov);
        free(prov);
        return 0;
    }
    printf("run %s\n", target);
    int rc = 0;
    if (prov) rc = info_provenance(prov, false);
    else printf("(no provenance.json: a run made before vpd recorded provenance)\n");
    free(prov);

    info_checkpoints(target);
    info_metrics(target);
    snprintf(path, sizeof path, "%s/run.h5", target);
    if (stat(path, &st) != 0) printf("run.h5: absent (run not finished)\n");
    else {
        /* present is not finished: it must open and be a whole vpd run file */
        vpd_h5 f;
        char *fmt = NULL;
        vpd_clear_error();
        bool ok = vpd_h5_open(&f, path, false) == VPD_OK;
        if (ok) {
            ok = vpd_h5_has_attr(&f, "/", "format") && vpd_h5_get_attr_str(&f, "/", "format", &fmt) == VPD_OK && fmt &&
                 !strcmp(fmt, "vpd-run") && vpd_h5_exists(&f, "/components");
            vpd_free(fmt);
            vpd_h5_close(&f);
        }
        if (ok) printf("run.h5: present (run finished)\n");
        else {
            printf("run.h5: DAMAGED (%lld bytes; %s): not a complete vpd run file; rerun the end of the run with "
                   "vpd decompose --resume %s\n",
                   (long long)st.st_size, vpd_last_error()[0] ? vpd_last_error() : "no format 'vpd-run' or /components",
                   target);
            vpd_clear_error();
            rc = rc ? rc : 1;
        }
    }
    return rc;
}
