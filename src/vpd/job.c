/* A run assembled once (include/vpd/job.h): config → resume → run directory → paths →
 * target → output loss → layout → geometry → decomposition → trainer → provenance, for every
 * command. The checkpoint, run-file and run-loop calls of a command live here, in one place. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vpd/checkpoint.h"
#include "vpd/config.h"
#include "vpd/io.h"
#include "vpd/job.h"
#include "vpd/runfile.h"
#include "vpd/sha256.h"

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* a relative path is taken from the working directory, else next to the config file, else
 * from the working directory of the run being resumed, else from the extra search dirs */
static void resolve_path(char *p, size_t size, const char *config_path, const char *old_cwd,
                         const char *const *dirs, int n_dirs) {
    if (!p[0] || p[0] == '/' || is_dir(p)) return;
    struct stat st;
    if (stat(p, &st) == 0) return;
    char alt[2400];
    if (config_path && config_path[0]) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s", config_path);
        snprintf(alt, sizeof alt, "%s/%s", dirname(tmp), p);
        if (strlen(alt) < size && stat(alt, &st) == 0) {
            memcpy(p, alt, strlen(alt) + 1);
            return;
        }
    }
    if (old_cwd && old_cwd[0]) {
        snprintf(alt, sizeof alt, "%s/%s", old_cwd, p);
        if (strlen(alt) < size && stat(alt, &st) == 0) {
            memcpy(p, alt, strlen(alt) + 1);
            return;
        }
    }
    for (int i = 0; i < n_dirs; i++) {
        snprintf(alt, sizeof alt, "%s/%s", dirs[i], p);
        if (strlen(alt) < size && stat(alt, &st) == 0) {
            memcpy(p, alt, strlen(alt) + 1);
            return;
        }
    }
}

/* ---- config comparison on resume ------------------------------------------------------ */
typedef struct {
    char list[4096];
    int n;
    const char *const *allow;
    int n_allow;
} cfg_diffs;

static bool key_allowed(const cfg_diffs *df, const char *path) {
    if (!strncmp(path, "checkpoint", 10) || !strncmp(path, "output", 6)) return true;
    for (int i = 0; i < df->n_allow; i++) {
        size_t l = strlen(df->allow[i]);
        if (!fnmatch(df->allow[i], path, 0)) return true;
        /* a key also allows everything below it */
        if (!strncmp(df->allow[i], path, l) && (path[l] == '.' || path[l] == '[')) return true;
    }
    return false;
}

static void diff_add(cfg_diffs *df, const char *path) {
    if (key_allowed(df, path)) return;
    size_t l = strlen(df->list);
    snprintf(df->list + l, sizeof df->list - l, "%s%s", df->n ? ", " : "", path);
    df->n++;
}

static const vpd_config *map_get(const vpd_config *m, const char *key) {
    for (int i = 0; i < m->n; i++)
        if (m->items[i]->key && !strcmp(m->items[i]->key, key)) return m->items[i];
    return NULL;
}

static const char *classname_of(const vpd_config *n) {
    if (n->kind != VPD_CONFIG_MAP) return NULL;
    const vpd_config *c = map_get(n, "classname");
    return c && c->kind == VPD_CONFIG_SCALAR ? c->value : NULL;
}

static void cfg_diff(const vpd_config *a, const vpd_config *b, const char *path, cfg_diffs *df) {
    if (a->kind != b->kind) {
        diff_add(df, path[0] ? path : "(root)");
        return;
    }
    char sub[512];
    if (a->kind == VPD_CONFIG_SCALAR) {
        bool an = vpd_config_node_is_null(a), bn = vpd_config_node_is_null(b);
        if (an != bn || (!an && strcmp(a->value, b->value))) diff_add(df, path);
    } else if (a->kind == VPD_CONFIG_MAP) {
        for (int i = 0; i < a->n; i++) {
            snprintf(sub, sizeof sub, "%s%s%s", path, path[0] ? "." : "", a->items[i]->key);
            const vpd_config *o = map_get(b, a->items[i]->key);
            if (!o) diff_add(df, sub);
            else cfg_diff(a->items[i], o, sub, df);
        }
        for (int i = 0; i < b->n; i++)
            if (!map_get(a, b->items[i]->key)) {
                snprintf(sub, sizeof sub, "%s%s%s", path, path[0] ? "." : "", b->items[i]->key);
                diff_add(df, sub);
            }
    } else {
        if (a->n != b->n) {
            diff_add(df, path);
            return;
        }
        for (int i = 0; i < a->n; i++) {
            const char *ca = classname_of(a->items[i]);
            if (ca) snprintf(sub, sizeof sub, "%s[%s]", path, ca);
            else snprintf(sub, sizeof sub, "%s.%d", path, i);
            cfg_diff(a->items[i], b->items[i], sub, df);
        }
    }
}

/* ---- provenance ------------------------------------------------------------------------- */
static void add_sha(cJSON *files, const char *path) {
    char hex[65];
    if (!path || !path[0]) return;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return;
    cJSON *o = cJSON_CreateObject();
    char abs[PATH_MAX];
    cJSON_AddStringToObject(o, "path", realpath(path, abs) ? abs : path);
    cJSON_AddNumberToObject(o, "bytes", (double)st.st_size);
    if (vpd_sha256_file(path, hex) == VPD_OK) cJSON_AddStringToObject(o, "sha256", hex);
    else cJSON_AddStringToObject(o, "sha256", "unreadable");
    cJSON_AddItemToArray(files, o);
}

static void add_env(cJSON *o, const char *name) {
    const char *v = getenv(name);
    if (v) cJSON_AddStringToObject(o, name, v);
    else cJSON_AddNullToObject(o, name);
}

/* Collective: gather host names; rank 0 builds the JSON, every rank gets the same text
 * (malloc'd). previous: the run's earlier provenance.json (resume), kept as history. */
static char *build_provenance(const vpd_decomp_config *cfg, const char *cfg_path, const char *run_dir,
                              const char *resumed_from, const char *config_yaml, const char *run_id) {
    const int rank = vpd_world_rank(), world = vpd_world_size();
    const int prov_cp = cfg->component_parallel > 0 && world % cfg->component_parallel == 0 ? cfg->component_parallel : 1;
    char host[64] = "?";
    gethostname(host, sizeof host - 1);
    char *hosts = rank == 0 ? calloc((size_t)world, 64) : NULL;
    vpd_gather_bytes(host, 64, hosts, 0, vpd_comm_world());
    char *text = NULL;
    if (rank == 0) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "format", "vpd-provenance");
        cJSON_AddStringToObject(j, "vpd_version", VPD_VERSION);
        cJSON_AddStringToObject(j, "git_hash", VPD_GIT_HASH);
        cJSON_AddStringToObject(j, "run_id", run_id);
        char tbuf[64];
        time_t now = time(NULL);
        strftime(tbuf, sizeof tbuf, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
        cJSON_AddStringToObject(j, "started_utc", tbuf);
        char cwd[PATH_MAX] = "", abs[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) cwd[0] = '\0';
        cJSON_AddStringToObject(j, "cwd", cwd);
        cJSON_AddStringToObject(j, "config_path", realpath(cfg_path, abs) ? abs : cfg_path);
        cJSON_AddStringToObject(j, "run_dir", realpath(run_dir, abs) ? abs : run_dir);
        if (resumed_from) cJSON_AddStringToObject(j, "resumed_from", resumed_from);
        else cJSON_AddNullToObject(j, "resumed_from");
        cJSON *mpi = cJSON_AddObjectToObject(j, "mpi");
        cJSON_AddNumberToObject(mpi, "world_size", world);
        cJSON_AddNumberToObject(mpi, "data_parallel", world / prov_cp);
        cJSON_AddNumberToObject(mpi, "component_parallel", prov_cp);
        cJSON *hl = cJSON_AddArrayToObject(mpi, "hosts");
        int n_unique = 0;
        for (int r = 0; r < world; r++) {
            cJSON_AddItemToArray(hl, cJSON_CreateString(hosts + 64 * r));
            bool seen = false;
            for (int q = 0; q < r; q++) seen |= !strcmp(hosts + 64 * q, hosts + 64 * r);
            n_unique += !seen;
        }
        cJSON_AddNumberToObject(mpi, "n_hosts", n_unique);
        cJSON *sl = cJSON_AddObjectToObject(j, "slurm");
        const char *envs[] = {"SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT",
                              "SLURM_JOB_NAME", "SLURM_JOB_PARTITION", "SLURM_JOB_NODELIST", "SLURM_NTASKS"};
        for (size_t i = 0; i < sizeof envs / sizeof envs[0]; i++) add_env(sl, envs[i]);
        cJSON *files = cJSON_AddArrayToObject(j, "files");
        char p[1200];
        snprintf(p, sizeof p, "%s/config.json", cfg->target_dir);
        add_sha(files, p);
        snprintf(p, sizeof p, "%s/model.safetensors", cfg->target_dir);
        add_sha(files, p);
        snprintf(p, sizeof p, "%s/model.h5", cfg->target_dir);
        add_sha(files, p);
        add_sha(files, cfg->train_tokens);
        add_sha(files, cfg->eval_tokens);
        cJSON_AddStringToObject(j, "config", config_yaml ? config_yaml : "");
        /* the earlier starts of this run (resume): their provenance, newest last */
        cJSON *hist = cJSON_AddArrayToObject(j, "previous_starts");
        snprintf(p, sizeof p, "%s/provenance.json", run_dir);
        FILE *f = resumed_from ? fopen(p, "rb") : NULL;
        if (f) {
            fseek(f, 0, SEEK_END);
            long n = ftell(f);
            fseek(f, 0, SEEK_SET);
            char *buf = n > 0 ? malloc((size_t)n + 1) : NULL;
            if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n) {
                buf[n] = '\0';
                cJSON *old = cJSON_Parse(buf);
                if (old) {
                    cJSON *oh = cJSON_DetachItemFromObject(old, "previous_starts");
                    cJSON *e;
                    if (oh) {
                        while ((e = cJSON_DetachItemFromArray(oh, 0))) cJSON_AddItemToArray(hist, e);
                        cJSON_Delete(oh);
                    }
                    cJSON_DeleteItemFromObject(old, "config");
                    cJSON_AddItemToArray(hist, old);
                }
            }
            free(buf);
            fclose(f);
        }
        text = cJSON_Print(j);
        cJSON_Delete(j);
    }
    free(hosts);
    /* (an allocation failure loses the provenance text, never the run) */
    char *all = vpd_bcast_string(rank == 0 ? (text ? text : "") : NULL, 0, vpd_comm_world());
    free(text);
    return all;
}

static vpd_status write_text(const char *path, const char *text) {
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return vpd_error(VPD_ERR_IO, "cannot write %s", tmp);
    fputs(text, f);
    fputc('\n', f);
    if (fclose(f) != 0 || rename(tmp, path) != 0) return vpd_error(VPD_ERR_IO, "cannot write %s", path);
    return VPD_OK;
}

/* rank 0 finds the newest complete checkpoint (before step `before` when >= 0) and broadcasts it */
static vpd_status find_checkpoint(const char *dir, int before, char *path, size_t size, int *step) {
    const int rank = vpd_world_rank();
    const MPI_Comm world = vpd_comm_world();
    vpd_status s = VPD_OK;
    char msg[1024] = "";
    if (rank == 0) {
        s = vpd_checkpoint_latest_before(dir, before, path, size, step);
        if (s != VPD_OK) snprintf(msg, sizeof msg, "%s", vpd_last_error());
    }
    int st[2] = {(int)s, *step};
    vpd_bcast(st, sizeof st, 0, world);
    vpd_bcast(path, size, 0, world);
    vpd_bcast(msg, sizeof msg, 0, world);
    *step = st[1];
    if (st[0] != VPD_OK && rank != 0) return vpd_error((vpd_status)st[0], "%s", msg);
    return (vpd_status)st[0];
}

/* a JSON string field of a provenance text (malloc'd) or NULL */
static char *json_field(const char *json, const char *key) {
    if (!json) return NULL;
    cJSON *j = cJSON_Parse(json);
    const cJSON *v = j ? cJSON_GetObjectItemCaseSensitive(j, key) : NULL;
    char *out = cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
    cJSON_Delete(j);
    return out;
}


/* ---- the job ------------------------------------------------------------------------------ */
typedef struct {
    vpd_config *ck_root;
    char *ck_yaml, *ck_prov, *old_cwd;
} resume_state;

/* --resume: the newest complete checkpoint of RUN_DIR, its config and provenance */
static vpd_status open_resume(vpd_job *j, const vpd_job_opts *o, resume_state *rs) {
    vpd_status s = VPD_OK;
    /* the run dir's own checkpoint settings may name another directory */
    snprintf(j->run_dir, sizeof j->run_dir, "%s", o->resume);
    vpd_config *rc = NULL;
    char p[1200];
    snprintf(p, sizeof p, "%s/config.yaml", j->run_dir);
    if (vpd_config_load(p, &rc) == VPD_OK) s = vpd_ckpt_opts_read(rc, j->run_dir, &j->ck_opts);
    else {
        vpd_clear_error();
        snprintf(j->ck_opts.dir, sizeof j->ck_opts.dir, "%s/checkpoints", j->run_dir);
    }
    vpd_config_free(rc);
    int ck_step = -1;
    if (s == VPD_OK) s = find_checkpoint(j->ck_opts.dir, -1, j->ckpt_path, sizeof j->ckpt_path, &ck_step);
    if (s == VPD_OK) s = vpd_checkpoint_config(j->ckpt_path, &rs->ck_yaml);
    if (s == VPD_OK) s = vpd_checkpoint_provenance(j->ckpt_path, &rs->ck_prov);
    if (s == VPD_OK) s = vpd_config_parse(rs->ck_yaml, strlen(rs->ck_yaml), j->ckpt_path, &rs->ck_root);
    if (s == VPD_OK) {
        rs->old_cwd = json_field(rs->ck_prov, "cwd");
        char *cp = json_field(rs->ck_prov, "config_path");
        if (!o->config_path) snprintf(j->config_path, sizeof j->config_path, "%s", cp ? cp : p);
        free(cp);
    }
    return s;
}

/* the config tree: the given text or file, else the checkpoint's; --set; the resume diff */
static vpd_status read_config(vpd_job *j, const vpd_job_opts *o, const resume_state *rs) {
    if (o->config_text)
        VPD_TRY(vpd_config_parse(o->config_text, strlen(o->config_text), o->config_name ? o->config_name : "config",
                                 &j->root));
    else if (o->resume && !o->config_path) /* a resume without CONFIG.yaml takes the checkpoint's text */
        VPD_TRY(vpd_config_parse(rs->ck_yaml, strlen(rs->ck_yaml), "checkpoint config", &j->root));
    else VPD_TRY(vpd_config_load(j->config_path, &j->root));
    for (int i = 0; i < o->n_sets; i++) VPD_TRY(vpd_config_set(j->root, o->sets[i]));
    if (o->resume) {
        cfg_diffs df;
        memset(&df, 0, sizeof df);
        df.allow = o->allow;
        df.n_allow = o->n_allow;
        cfg_diff(rs->ck_root, j->root, "", &df);
        if (df.n)
            return vpd_error(VPD_ERR_CONFIG,
                             "--resume %s: the config differs from the checkpoint's (%s) in: %s; "
                             "name the keys with --allow-config-change to accept",
                             j->run_dir, j->ckpt_path, df.list);
    }
    return VPD_OK;
}

/* --out, else output.dir, else runs/<config name> (a resume keeps its run dir) */
static void choose_run_dir(vpd_job *j, const vpd_job_opts *o) {
    if (o->resume) return;
    const char *od = NULL;
    vpd_config *on = vpd_config_find(j->root, "output.dir");
    if (on && on->kind == VPD_CONFIG_SCALAR && !vpd_config_node_is_null(on)) od = on->value;
    if (o->out) snprintf(j->run_dir, sizeof j->run_dir, "%s", o->out);
    else if (od && od[0]) snprintf(j->run_dir, sizeof j->run_dir, "%s", od);
    else {
        char tmp[sizeof j->config_path];
        snprintf(tmp, sizeof tmp, "%s", j->config_path);
        char *base = basename(tmp), *dot = strrchr(base, '.');
        if (dot) *dot = '\0';
        snprintf(j->run_dir, sizeof j->run_dir, "runs/%s", base);
    }
}

static vpd_status load_target(vpd_job *j, const vpd_job_opts *o) {
    if (o->random_target && !is_dir(j->cfg.target_dir)) {
        VPD_TRY(vpd_model_create(&j->target, o->random_target));
        vpd_model_init_params(&j->target, 0);
        j->random_target = true;
    } else {
        /* the target's weights: read once per node, one copy shared by the node's ranks of the
         * job's layout (a local job — one process, e.g. rank 0 alone in `vpd generate` — keeps
         * its own copy: a collective over the world would wait for ranks that never come) */
        VPD_TRY(vpd_model_load_node_shared(&j->target, j->cfg.target_dir, j->layout.comm));
    }
    j->have_target = true;
    vpd_decomp_config_default_output_loss(&j->cfg, &j->target); /* param-decomp leaves it out */
    return VPD_OK;
}

/* ---- the run's identity and a used run directory ------------------------------------------ */
/* 128 random bits (/dev/urandom) and the start time: "<32 hex>-<YYYYmmddTHHMMSSZ>" (rank 0's,
 * broadcast) */
static void make_run_id(char *id, size_t size) {
    char buf[64] = "";
    if (vpd_world_rank() == 0) {
        unsigned char r[16] = {0};
        int fd = open("/dev/urandom", O_RDONLY);
        ssize_t got = fd >= 0 ? read(fd, r, sizeof r) : -1;
        if (fd >= 0) close(fd);
        if (got != (ssize_t)sizeof r) { /* no /dev/urandom: time and pid still tell runs apart */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
            for (int i = 0; i < 16; i++) r[i] = (unsigned char)(x >> (8 * (i % 8))) ^ (unsigned char)(i * 37);
        }
        int n = 0;
        for (int i = 0; i < 16; i++) n += snprintf(buf + n, sizeof buf - (size_t)n, "%02x", r[i]);
        time_t now = time(NULL);
        strftime(buf + n, sizeof buf - (size_t)n, "-%Y%m%dT%H%M%SZ", gmtime(&now));
    }
    vpd_bcast(buf, sizeof buf, 0, vpd_comm_world());
    snprintf(id, size, "%s", buf);
}

/* vpd's own files of a run directory (the checkpoint directory is j->ck_opts.dir) */
static const char *const run_files[] = {"config.yaml", "provenance.json", "metrics.jsonl", "run.h5"};

static bool is_ckpt_name(const char *n) {
    size_t l = strlen(n);
    return (!strncmp(n, "ckpt-", 5) && l > 3 && !strcmp(n + l - 3, ".h5")) ||
           (!strncmp(n, ".ckpt-", 6) && l > 4 && !strcmp(n + l - 4, ".tmp"));
}

/* rank 0: what of a run is in the run directory (list for the message, count returned);
 * with clean, remove it (only those files; the checkpoint directory only if left empty) */
static int run_dir_contents(const vpd_job *j, bool clean, char *list, size_t size, vpd_status *s) {
    int n = 0;
    list[0] = '\0';
    char p[1600];
    for (size_t i = 0; i < sizeof run_files / sizeof run_files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", j->run_dir, run_files[i]);
        struct stat st;
        if (lstat(p, &st) != 0) continue;
        size_t l = strlen(list);
        snprintf(list + l, size - l, "%s%s", n++ ? ", " : "", run_files[i]);
        if (clean && unlink(p) != 0 && *s == VPD_OK) *s = vpd_error(VPD_ERR_IO, "--force: cannot remove %s: %s", p, strerror(errno));
    }
    DIR *dp = opendir(j->ck_opts.dir);
    int n_ck = 0;
    struct dirent *e;
    while (dp && (e = readdir(dp))) {
        if (!is_ckpt_name(e->d_name)) continue;
        n_ck++;
        snprintf(p, sizeof p, "%s/%s", j->ck_opts.dir, e->d_name);
        if (clean && unlink(p) != 0 && *s == VPD_OK) *s = vpd_error(VPD_ERR_IO, "--force: cannot remove %s: %s", p, strerror(errno));
    }
    if (dp) closedir(dp);
    if (n_ck) {
        size_t l = strlen(list);
        snprintf(list + l, size - l, "%s%d checkpoint file%s in %s", n++ ? ", " : "", n_ck, n_ck > 1 ? "s" : "",
                 j->ck_opts.dir);
        if (clean) rmdir(j->ck_opts.dir); /* only when nothing else is in it */
    }
    return n;
}

/* A fresh run must not mix with another run's results: refuse a used run directory unless
 * force, which removes vpd's files of that run first. Every rank learns the outcome. */
static vpd_status check_run_dir(const vpd_job *j, bool force) {
    vpd_status s = VPD_OK;
    if (vpd_world_rank() == 0) {
        char list[2048];
        int n = run_dir_contents(j, false, list, sizeof list, &s);
        if (n && !force)
            s = vpd_error(VPD_ERR_CONFIG,
                          "run directory %s already holds a run (%s): use --resume %s to continue it, --force to "
                          "start over (removes those files), or another --out",
                          j->run_dir, list, j->run_dir);
        else if (n) {
            vpd_warn("--force: removing the earlier run's files from %s: %s", j->run_dir, list);
            run_dir_contents(j, true, list, sizeof list, &s);
        }
    }
    return vpd_all_agree(s, vpd_comm_world());
}

/* rank 0 makes the run directory and writes the resolved config.yaml; every rank learns the outcome */
static vpd_status make_run_dir(vpd_job *j) {
    vpd_status s = VPD_OK;
    const size_t n = strlen(j->run_dir);
    if (n >= sizeof j->cfg.out_dir)
        return vpd_error(VPD_ERR_CONFIG, "run directory %s: path longer than %zu characters", j->run_dir,
                         sizeof j->cfg.out_dir - 1);
    memcpy(j->cfg.out_dir, j->run_dir, n + 1);
    if (j->layout.rank == 0) {
        s = vpd_mkdirs(j->run_dir);
        char p[1200];
        snprintf(p, sizeof p, "%s/config.yaml", j->run_dir);
        if (s == VPD_OK) s = vpd_config_write(j->root, p);
    }
    return vpd_all_agree(s, j->layout.comm);
}

static vpd_status write_provenance(vpd_job *j) {
    j->provenance = build_provenance(&j->cfg, j->config_path, j->run_dir, j->resumed ? j->ckpt_path : NULL,
                                     j->config_yaml, j->run_id);
    if (j->layout.rank != 0 || !j->provenance) return VPD_OK;
    char p[1200];
    snprintf(p, sizeof p, "%s/provenance.json", j->run_dir);
    return write_text(p, j->provenance);
}

/* the watchdog timeout: --watchdog, else VPD_WATCHDOG_S, else checkpoint.watchdog_s */
static vpd_status resolve_watchdog(vpd_job *j, const vpd_job_opts *o) {
    const char *e = getenv("VPD_WATCHDOG_S");
    if (o->watchdog_given) {
        j->watchdog_s = o->watchdog_s;
        snprintf(j->watchdog_from, sizeof j->watchdog_from, "--watchdog");
    } else if (e && e[0]) {
        char *end = NULL;
        errno = 0;
        double v = strtod(e, &end);
        if (end == e || *end || errno == ERANGE || !(v >= 0 && v <= 1e9))
            return vpd_error(VPD_ERR_CONFIG,
                             "VPD_WATCHDOG_S='%s' is not a number of seconds from 0 to 1e9 (0 = no watchdog); "
                             "fix or unset it, or give --watchdog SECONDS",
                             e);
        j->watchdog_s = v;
        snprintf(j->watchdog_from, sizeof j->watchdog_from, "VPD_WATCHDOG_S");
    } else {
        j->watchdog_s = j->ck_opts.watchdog_s;
        snprintf(j->watchdog_from, sizeof j->watchdog_from, "checkpoint.watchdog_s");
    }
    return VPD_OK;
}

vpd_status vpd_job_open(vpd_job *j, const vpd_job_opts *o) {
    memset(j, 0, sizeof *j);
    resume_state rs;
    memset(&rs, 0, sizeof rs);
    vpd_status s = VPD_OK;
    if (o->config_path) snprintf(j->config_path, sizeof j->config_path, "%s", o->config_path);
    j->resumed = o->resume != NULL;
    if (o->resume && (s = open_resume(j, o, &rs)) != VPD_OK) goto done;
    if ((s = read_config(j, o, &rs)) != VPD_OK) goto done;
    if (o->write_run_dir || o->resume) {
        /* needed by the checkpoint section, read before the decomposition reader (which
         * ignores checkpoint.*) */
        choose_run_dir(j, o);
        if ((s = vpd_ckpt_opts_read(j->root, j->run_dir, &j->ck_opts)) != VPD_OK) goto done;
        if ((s = resolve_watchdog(j, o)) != VPD_OK) goto done;
        size_t len = 0;
        if ((s = vpd_config_emit(j->root, &j->config_yaml, &len)) != VPD_OK) goto done;
    }
    if (o->write_run_dir) {
        /* a resume continues the run's identity; a fresh run gets a new one and a clean dir */
        char *id = o->resume ? json_field(rs.ck_prov, "run_id") : NULL;
        if (id && id[0]) snprintf(j->run_id, sizeof j->run_id, "%s", id);
        else make_run_id(j->run_id, sizeof j->run_id);
        free(id);
        snprintf(j->ck_opts.run_id, sizeof j->ck_opts.run_id, "%s", j->run_id);
        if (!o->resume && (s = check_run_dir(j, o->force)) != VPD_OK) goto done;
    }
    if ((s = vpd_decomp_config_read(j->root, &j->cfg)) != VPD_OK) goto done;
    if (o->target_dir) snprintf(j->cfg.target_dir, sizeof j->cfg.target_dir, "%s", o->target_dir);
    else resolve_path(j->cfg.target_dir, sizeof j->cfg.target_dir, j->config_path, rs.old_cwd, o->search_dirs, o->n_search_dirs);
    resolve_path(j->cfg.train_tokens, sizeof j->cfg.train_tokens, j->config_path, rs.old_cwd, o->search_dirs,
                 o->n_search_dirs);
    resolve_path(j->cfg.eval_tokens, sizeof j->cfg.eval_tokens, j->config_path, rs.old_cwd, o->search_dirs,
                 o->n_search_dirs);
    if (!j->cfg.target_dir[0] && !o->random_target) {
        s = vpd_error(VPD_ERR_CONFIG, "%s: no target model: set target.path to a model directory",
                      o->config_text ? (o->config_name ? o->config_name : "config") : j->config_path);
        goto done;
    }
    /* the dp × cp layout (rank r: data-parallel replica r / cp, component block r % cp) */
    if (o->local) vpd_layout_self(&j->layout);
    else if ((s = vpd_layout_create(&j->layout, vpd_comm_world(), j->cfg.component_parallel)) != VPD_OK) goto done;
    j->have_layout = true;
    const int B = o->batch > 0                             ? o->batch
                  : o->eval_batch && j->cfg.eval_batch_size > 0 ? j->cfg.eval_batch_size
                                                                : j->cfg.batch_size;
    /* the batch split, checked before the target is read (S follows from the target) */
    if ((s = vpd_batch_geometry(&j->geom, B, 1, j->layout.dp, j->layout.dp_rank, "batch_size")) != VPD_OK) goto done;
    if ((s = load_target(j, o)) != VPD_OK) goto done;
    if (o->max_context > 0 && (s = vpd_model_extend_context(&j->target, o->max_context)) != VPD_OK) goto done;
    if (o->adjust) o->adjust(&j->cfg, o->adjust_ctx);
    /* the transformer CI function's positions are rotary as well: its max_len follows */
    if (o->max_context > j->cfg.ci_transformer.max_len && j->cfg.ci_transformer.max_len > 0)
        j->cfg.ci_transformer.max_len = o->max_context;
    if (o->write_run_dir && (s = make_run_dir(j)) != VPD_OK) goto done;
    int S = 1;
    if (vpd_model_is_lm(j->target.cfg.kind)) {
        S = j->cfg.max_seq_len;
        if (S > vpd_model_context(&j->target)) {
            s = vpd_model_context(&j->target) > j->target.cfg.n_ctx
                    ? vpd_error(VPD_ERR_CONFIG, "max_seq_len %d exceeds the allowed context %d (trained n_ctx %d)", S,
                                vpd_model_context(&j->target), j->target.cfg.n_ctx)
                    : vpd_error(VPD_ERR_CONFIG, "max_seq_len %d exceeds the target's context n_ctx %d", S, j->target.cfg.n_ctx);
            goto done;
        }
    }
    if ((s = vpd_batch_geometry(&j->geom, B, S, j->layout.dp, j->layout.dp_rank, "batch_size")) != VPD_OK) goto done;
    if ((s = vpd_decomp_create(&j->d, &j->cfg, &j->target, &j->layout, &j->geom)) != VPD_OK) goto done;
    s = vpd_trainer_init(&j->trainer, j->d);
    j->have_trainer = true;
    if (s != VPD_OK) goto done;
    if (o->resume) {
        double t0 = vpd_wtime();
        /* a checkpoint that looked complete but does not read (a missing or damaged dataset):
         * fall back to the next older one, naming the skipped file. Non-finite state
         * (VPD_ERR_VALUE) is not damage: it is refused. */
        while ((s = vpd_checkpoint_read(j->ckpt_path, j->d)) != VPD_OK && s != VPD_ERR_VALUE) {
            char why[1024], older[sizeof j->ckpt_path];
            snprintf(why, sizeof why, "%s", vpd_last_error());
            int step = -1, before = -1;
            if (sscanf(strrchr(j->ckpt_path, '/') ? strrchr(j->ckpt_path, '/') + 1 : j->ckpt_path, "ckpt-%8d.h5",
                       &before) != 1 ||
                find_checkpoint(j->ck_opts.dir, before, older, sizeof older, &step) != VPD_OK) {
                s = vpd_error(s, "%s (and no older complete checkpoint to fall back to)", why);
                break;
            }
            vpd_warn("resume: skipping %s, it does not read: %s; trying the older %s", j->ckpt_path, why, older);
            memcpy(j->ckpt_path, older, sizeof older);
        }
        if (s != VPD_OK) goto done;
        const int world = j->layout.size;
        vpd_info("resume: loaded %s (step %d) in %.3f s on %d rank%s", j->ckpt_path, j->d->step, vpd_wtime() - t0, world,
                 world > 1 ? "s" : "");
    }
    if (o->write_run_dir) s = write_provenance(j);
done:
    vpd_config_free(rs.ck_root);
    vpd_free(rs.ck_yaml);
    vpd_free(rs.ck_prov);
    free(rs.old_cwd);
    if (s != VPD_OK) vpd_job_close(j);
    return s;
}

vpd_status vpd_job_train(vpd_job *j, bool quiet, int stop_at_step) {
    const vpd_decomp *d = j->d;
    const vpd_decomp_config *cfg = &j->cfg;
    const vpd_ckpt_opts *ck = &j->ck_opts;
    vpd_info("target %s (%s), %d layers decomposed, C = %d in total; %zu component + %zu CI parameters; "
             "output loss %s%s",
             cfg->target_dir, vpd_model_kind_name(j->target.cfg.kind), d->L, d->C_sum_total, d->params.n_comp_params,
             d->params.ci->n_params, cfg->output_loss == VPD_OUT_KL ? "kl" : "mse", cfg->output_loss_given ? "" : " (from the target kind)");
    vpd_info("batch %d (%d per replica x %d data-parallel replicas; %d component block%s) x %d positions; "
             "memory plan %.1f MiB per rank + target weights %.1f MiB %s; run dir %s",
             cfg->batch_size, j->geom.B, j->layout.dp, j->layout.cp, j->layout.cp > 1 ? "s" : "", j->geom.S,
             (double)vpd_decomp_memory_bytes(d) / 1048576.0, (double)j->target.n_params * sizeof(real) / 1048576.0,
             j->target.node_shared ? "per node (shared by its ranks)" : "per rank", j->run_dir);
    if (ck->every_steps > 0 || ck->every_minutes > 0)
        vpd_info("checkpoints every %d steps / %g minutes into %s (keep last %d, every %d-th step)", ck->every_steps,
                 ck->every_minutes, ck->dir, ck->keep_last, ck->keep_every);
    vpd_run_opts ro = {.run_dir = j->run_dir, .quiet = quiet, .watchdog_s = j->watchdog_s, .watchdog_from = j->watchdog_from};
    vpd_run_hpc hpc;
    memset(&hpc, 0, sizeof hpc);
    hpc.ckpt = ck;
    hpc.resumed = j->resumed;
    hpc.stop_at_step = stop_at_step;
    hpc.config_yaml = j->config_yaml;
    hpc.provenance_json = j->provenance;
    vpd_status s = vpd_run_training_hpc(&j->trainer, &ro, &hpc);
    if (s == VPD_OK && hpc.checkpoints_written)
        vpd_info("%d checkpoint%s written, %.3f s in total", hpc.checkpoints_written, hpc.checkpoints_written > 1 ? "s" : "",
                 hpc.checkpoint_seconds);
    j->stopped_by_signal = s == VPD_OK && hpc.stopped_by_signal;
    return s;
}

vpd_status vpd_job_write(vpd_job *j) {
    const int rank = j->layout.rank;
    vpd_summary sum;
    VPD_TRY(vpd_summarize(&j->trainer, &sum, rank == 0 ? stdout : NULL));
    if (j->layout.dp_rank != 0) return VPD_OK; /* the first replica's component group (rank 0 writes) */
    char p[1200];
    snprintf(p, sizeof p, "%s/run.h5", j->run_dir);
    VPD_TRY(vpd_runfile_write(p, j->d, j->root, &sum));
    if (rank == 0 && j->provenance) { /* the full provenance (hashes, Slurm ids, hosts) */
        vpd_h5 f;
        VPD_TRY(vpd_h5_open(&f, p, true));
        vpd_status s = vpd_h5_set_attr_str(&f, "/provenance", "json", j->provenance);
        vpd_status c = vpd_h5_close(&f);
        VPD_TRY(s);
        VPD_TRY(c);
    }
    if (rank == 0) printf("\nwrote %s/{config.yaml, provenance.json, metrics.jsonl, run.h5}\n", j->run_dir);
    return VPD_OK;
}

void vpd_job_close(vpd_job *j) {
    if (j->have_trainer) vpd_trainer_free(&j->trainer);
    vpd_decomp_free(j->d);
    if (j->have_target) vpd_model_free(&j->target);
    if (j->have_layout) vpd_layout_free(&j->layout);
    vpd_config_free(j->root);
    free(j->config_yaml);
    free(j->provenance);
    memset(j, 0, sizeof *j);
}
