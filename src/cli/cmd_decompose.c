/* `vpd decompose CONFIG.yaml [--out RUN_DIR] [--set key=value ...]`: the main job.
 * Reads the config (either schema), loads the target, builds the decomposition for this
 * rank's share of the batch, trains, summarises, and writes the run directory:
 * config.yaml (resolved), provenance.json, metrics.jsonl, checkpoints/, run.h5.
 *
 * HPC operations (include/vpd/checkpoint.h, include/vpd/signals.h): periodic checkpoints
 * from the `checkpoint:` section; SIGTERM/SIGUSR1 make every rank checkpoint at the next
 * step boundary and exit with VPD_EXIT_REQUEUE (75); `--resume RUN_DIR` continues from the
 * newest complete checkpoint on any rank count, refusing config changes except for the
 * keys named by --allow-config-change (checkpoint.* and output.* may always change). */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include <cjson/cJSON.h>
#include <fnmatch.h>
#include <libgen.h>
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "vpd/checkpoint.h"
#include "vpd/config.h"
#include "vpd/io.h"
#include "vpd/runfile.h"
#include "vpd/sha256.h"
#include "vpd/signals.h"
#include "vpd/trainer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vpd decompose CONFIG.yaml [--out RUN_DIR] [--set key=value ...] [--quiet]\n"
            "       vpd decompose --resume RUN_DIR [CONFIG.yaml] [--set key=value ...]\n"
            "                     [--allow-config-change KEY ...]\n\n"
            "Decompose the weights of a target model with adversarial parameter decomposition (VPD).\n"
            "CONFIG.yaml uses the reference implementation's keys (spd's flat schema or\n"
            "param-decomp's `pd:` schema) plus vpd's sections:\n"
            "  target: {path: MODEL_DIR}      model directory (config.json + model.safetensors)\n"
            "  data: {train: FILE.bin, eval: FILE.bin}   token files for language models\n"
            "  output: {dir: RUN_DIR}\n"
            "  checkpoint: {every_steps: N, every_minutes: M, keep_last: 2, keep_every: 0, dir: checkpoints}\n"
            "options:\n"
            "  --out RUN_DIR        run directory (default: output.dir, else runs/<config name>)\n"
            "  --set key=value      override a config key (dotted path; repeatable), e.g.\n"
            "                       --set steps=20 --set seed=3\n"
            "                       --set 'loss_metric_configs[ImportanceMinimalityLoss].coeff=1e-4'\n"
            "  --quiet              no progress display\n"
            "  --resume RUN_DIR     continue from RUN_DIR's newest complete checkpoint (the config\n"
            "                       is the checkpoint's unless CONFIG.yaml is given); the result is\n"
            "                       bitwise identical to an uninterrupted run on the same ranks\n"
            "  --stop-at-step N     checkpoint and stop (status %d) once step N is reached, as a\n"
            "                       signal would (time boxing, tests)\n"
            "  --allow-config-change KEY ...   accept these changed keys on resume (fnmatch\n"
            "                       patterns, e.g. steps 'loss_metric_configs*')\n"
            "writes RUN_DIR/config.yaml, provenance.json, metrics.jsonl, checkpoints/ and run.h5.\n"
            "Multi-rank: mpiexec -n N vpd decompose ... splits the batch over N data-parallel ranks\n"
            "and gives the single-rank result up to float summation order.\n"
            "Signals: SIGTERM or SIGUSR1 -> checkpoint at the next step, exit status %d (requeue me);\n"
            "a second signal exits at once.\n",
            VPD_EXIT_REQUEUE, VPD_EXIT_REQUEUE);
}

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* a relative path is taken from the working directory, else next to the config file, else
 * from the working directory of the run being resumed */
static void resolve_path(char *p, size_t size, const char *config_path, const char *old_cwd) {
    if (!p[0] || p[0] == '/' || is_dir(p)) return;
    struct stat st;
    if (stat(p, &st) == 0) return;
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", config_path);
    char alt[2200];
    snprintf(alt, sizeof alt, "%s/%s", dirname(tmp), p);
    if (strlen(alt) < size && stat(alt, &st) == 0) {
        memcpy(p, alt, strlen(alt) + 1);
        return;
    }
    if (old_cwd && old_cwd[0]) {
        snprintf(alt, sizeof alt, "%s/%s", old_cwd, p);
        if (strlen(alt) < size && stat(alt, &st) == 0) memcpy(p, alt, strlen(alt) + 1);
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
                              const char *resumed_from, const char *config_yaml) {
    int rank = 0, world = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    const int prov_cp = cfg->component_parallel > 0 && world % cfg->component_parallel == 0 ? cfg->component_parallel : 1;
    char host[64] = "?";
    gethostname(host, sizeof host - 1);
    char *hosts = rank == 0 ? calloc((size_t)world, 64) : NULL;
    MPI_Gather(host, 64, MPI_CHAR, hosts, 64, MPI_CHAR, 0, MPI_COMM_WORLD);
    char *text = NULL;
    long len = 0;
    if (rank == 0) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "format", "vpd-provenance");
        cJSON_AddStringToObject(j, "vpd_version", VPD_VERSION);
        cJSON_AddStringToObject(j, "git_hash", VPD_GIT_HASH);
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
        len = text ? (long)strlen(text) + 1 : 1;
    }
    free(hosts);
    MPI_Bcast(&len, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    if (rank != 0) text = malloc((size_t)len);
    if (!text) return NULL; /* (allocation failure on one rank only loses provenance text) */
    if (rank == 0 && len == 1) text[0] = '\0';
    MPI_Bcast(text, (int)len, MPI_CHAR, 0, MPI_COMM_WORLD);
    return text;
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

/* rank 0 finds the newest complete checkpoint and broadcasts it */
static vpd_status find_checkpoint(const char *dir, char *path, size_t size, int *step) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    vpd_status s = VPD_OK;
    char msg[1024] = "";
    if (rank == 0) {
        s = vpd_checkpoint_latest(dir, path, size, step);
        if (s != VPD_OK) snprintf(msg, sizeof msg, "%s", vpd_last_error());
    }
    int st[2] = {(int)s, *step};
    MPI_Bcast(st, 2, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Bcast(path, (int)size, MPI_CHAR, 0, MPI_COMM_WORLD);
    MPI_Bcast(msg, sizeof msg, MPI_CHAR, 0, MPI_COMM_WORLD);
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

int vpd_cmd_decompose(int argc, char **argv) {
    int rank = 0, world = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (vpd_cli_wants_help(argc, argv)) {
        if (rank == 0) usage(stdout);
        return 0;
    }
    /* handlers first: a signal during start-up must not kill the job without a checkpoint
     * decision (it is acted on at the first step boundary) */
    vpd_signals_install();
    const char *cfg_path = NULL, *out = NULL, *resume = NULL;
    bool quiet = false;
    int stop_at = 0;
    const char *sets[256], *allow[256];
    int n_sets = 0, n_allow = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--set") && i + 1 < argc && n_sets < 256) sets[n_sets++] = argv[++i];
        else if (!strcmp(argv[i], "--quiet")) quiet = true;
        else if (!strcmp(argv[i], "--resume") && i + 1 < argc) resume = argv[++i];
        else if (!strcmp(argv[i], "--stop-at-step") && i + 1 < argc) stop_at = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--allow-config-change")) {
            while (i + 1 < argc && argv[i + 1][0] != '-' && n_allow < 256) allow[n_allow++] = argv[++i];
        } else if (argv[i][0] == '-') {
            if (rank == 0) { fprintf(stderr, "vpd decompose: unknown option '%s'\n\n", argv[i]); usage(stderr); }
            return 2;
        } else if (!cfg_path) cfg_path = argv[i];
        else {
            if (rank == 0) fprintf(stderr, "vpd decompose: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!cfg_path && !resume) {
        if (rank == 0) usage(stderr);
        return 2;
    }
    vpd_config *root = NULL, *ck_root = NULL;
    vpd_decomp_config cfg;
    vpd_model target;
    memset(&target, 0, sizeof target);
    vpd_decomp *d = NULL;
    vpd_trainer tr;
    memset(&tr, 0, sizeof tr);
    bool have_target = false, have_trainer = false;
    vpd_status s = VPD_OK;
    char ckpt_path[1300] = "", run_dir[1100] = "", stored_cfg_path[PATH_MAX] = "";
    char *ck_yaml = NULL, *ck_prov = NULL, *old_cwd = NULL, *config_yaml = NULL, *prov = NULL;
    int ck_step = -1;
    vpd_ckpt_opts ck_opts;
    memset(&ck_opts, 0, sizeof ck_opts);

    if (resume) {
        /* the run dir's own checkpoint settings may name another directory */
        snprintf(run_dir, sizeof run_dir, "%s", resume);
        vpd_config *rc = NULL;
        char p[1200];
        snprintf(p, sizeof p, "%s/config.yaml", run_dir);
        if (vpd_config_load(p, &rc) == VPD_OK) s = vpd_ckpt_opts_read(rc, run_dir, &ck_opts);
        else {
            vpd_clear_error();
            snprintf(ck_opts.dir, sizeof ck_opts.dir, "%s/checkpoints", run_dir);
        }
        vpd_config_free(rc);
        if (s == VPD_OK) s = find_checkpoint(ck_opts.dir, ckpt_path, sizeof ckpt_path, &ck_step);
        if (s == VPD_OK) s = vpd_checkpoint_config(ckpt_path, &ck_yaml);
        if (s == VPD_OK) s = vpd_checkpoint_provenance(ckpt_path, &ck_prov);
        if (s == VPD_OK) s = vpd_config_parse(ck_yaml, strlen(ck_yaml), ckpt_path, &ck_root);
        if (s == VPD_OK) {
            old_cwd = json_field(ck_prov, "cwd");
            char *cp = json_field(ck_prov, "config_path");
            snprintf(stored_cfg_path, sizeof stored_cfg_path, "%s", cp ? cp : p);
            free(cp);
            if (!cfg_path) cfg_path = stored_cfg_path;
        }
    }
    /* a resume without CONFIG.yaml takes the checkpoint's config text */
    if (s == VPD_OK) {
        if (resume && cfg_path == stored_cfg_path) s = vpd_config_parse(ck_yaml, strlen(ck_yaml), "checkpoint config", &root);
        else s = vpd_config_load(cfg_path, &root);
    }
    for (int i = 0; s == VPD_OK && i < n_sets; i++) s = vpd_config_set(root, sets[i]);
    if (s == VPD_OK && resume) {
        cfg_diffs df;
        memset(&df, 0, sizeof df);
        df.allow = allow;
        df.n_allow = n_allow;
        cfg_diff(ck_root, root, "", &df);
        if (df.n)
            s = vpd_error(VPD_ERR_CONFIG,
                          "--resume %s: the config differs from the checkpoint's (%s) in: %s; "
                          "name the keys with --allow-config-change to accept",
                          run_dir, ckpt_path, df.list);
    }
    /* run directory (needed by the checkpoint section, read before the decomposition reader,
     * which ignores checkpoint.*) */
    if (s == VPD_OK && !resume) {
        const char *od = NULL;
        vpd_config *on = vpd_config_find(root, "output.dir");
        if (on && on->kind == VPD_CONFIG_SCALAR && !vpd_config_node_is_null(on)) od = on->value;
        if (out) snprintf(run_dir, sizeof run_dir, "%s", out);
        else if (od && od[0]) snprintf(run_dir, sizeof run_dir, "%s", od);
        else {
            char tmp[1024];
            snprintf(tmp, sizeof tmp, "%s", cfg_path);
            char *base = basename(tmp), *dot = strrchr(base, '.');
            if (dot) *dot = '\0';
            snprintf(run_dir, sizeof run_dir, "runs/%s", base);
        }
    }
    if (s == VPD_OK) s = vpd_ckpt_opts_read(root, run_dir, &ck_opts);
    if (s == VPD_OK) {
        size_t len = 0;
        s = vpd_config_emit(root, &config_yaml, &len);
    }
    if (s == VPD_OK) s = vpd_decomp_config_read(root, &cfg);
    if (s == VPD_OK) {
        resolve_path(cfg.target_dir, sizeof cfg.target_dir, cfg_path, old_cwd);
        resolve_path(cfg.train_tokens, sizeof cfg.train_tokens, cfg_path, old_cwd);
        resolve_path(cfg.eval_tokens, sizeof cfg.eval_tokens, cfg_path, old_cwd);
        if (!cfg.target_dir[0])
            s = vpd_error(VPD_ERR_CONFIG, "%s: no target model: set target.path to a model directory", cfg_path);
    }
    /* the dp × cp process grid: rank r is data-parallel replica r / cp, component block r % cp */
    MPI_Comm dp_comm = MPI_COMM_WORLD, cp_comm = MPI_COMM_SELF;
    int cp = 1, dp = world;
    if (s == VPD_OK && cfg.component_parallel > 1) {
        s = vpd_decomp_grid_comms(cfg.component_parallel, &dp_comm, &cp_comm);
        if (s == VPD_OK) {
            cp = cfg.component_parallel;
            dp = world / cp;
        }
    }
    if (s == VPD_OK && cfg.batch_size % dp != 0)
        s = vpd_error(VPD_ERR_CONFIG, "batch_size %d is not divisible by the %d data-parallel ranks", cfg.batch_size, dp);
    if (s == VPD_OK) {
        s = vpd_model_load(&target, cfg.target_dir);
        have_target = s == VPD_OK;
        if (have_target) vpd_decomp_config_default_output_loss(&cfg, &target); /* param-decomp leaves it out */
    }
    if (s == VPD_OK) {
        snprintf(cfg.out_dir, sizeof cfg.out_dir, "%s", run_dir);
        if (rank == 0) {
            s = vpd_mkdirs(run_dir);
            char p[1200];
            snprintf(p, sizeof p, "%s/config.yaml", run_dir);
            if (s == VPD_OK) s = vpd_config_write(root, p);
        }
    }
    int S = 1;
    if (s == VPD_OK && target.cfg.kind == VPD_MODEL_LLAMA) {
        S = cfg.max_seq_len;
        if (S > target.cfg.n_ctx)
            s = vpd_error(VPD_ERR_CONFIG, "max_seq_len %d exceeds the target's context n_ctx %d", S, target.cfg.n_ctx);
    }
    int B = cfg.batch_size / dp;
    if (s == VPD_OK)
        s = vpd_decomp_create_grid(&d, &cfg, &target, B, S, (int64_t)(rank / cp) * B, cfg.batch_size, dp_comm, cp_comm);
    if (s == VPD_OK) {
        s = vpd_trainer_init(&tr, d);
        have_trainer = true;
    }
    if (s == VPD_OK && resume) {
        double t0 = vpd_wtime();
        s = vpd_checkpoint_read(ckpt_path, d);
        if (s == VPD_OK)
            vpd_info("resume: loaded %s (step %d) in %.3f s on %d rank%s", ckpt_path, d->step, vpd_wtime() - t0, world,
                     world > 1 ? "s" : "");
    }
    if (s == VPD_OK) {
        prov = build_provenance(&cfg, cfg_path, run_dir, resume ? ckpt_path : NULL, config_yaml);
        if (rank == 0 && prov) {
            char p[1200];
            snprintf(p, sizeof p, "%s/provenance.json", run_dir);
            s = write_text(p, prov);
        }
    }
    vpd_run_hpc hpc;
    memset(&hpc, 0, sizeof hpc);
    if (s == VPD_OK) {
        size_t comp = d->n_comp_params;
        vpd_info("target %s (%s), %d layers decomposed, C = %d in total; %zu component + %zu CI parameters; "
                 "output loss %s%s",
                 cfg.target_dir, vpd_model_kind_name(target.cfg.kind), d->L, d->C_sum_total, comp, d->ci->n_params,
                 cfg.output_loss == VPD_OUT_KL ? "kl" : "mse", cfg.output_loss_given ? "" : " (from the target kind)");
        vpd_info("batch %d (%d per replica x %d data-parallel replicas; %d component block%s) x %d positions; "
                 "memory plan %.1f MiB per rank; run dir %s",
                 cfg.batch_size, B, dp, cp, cp > 1 ? "s" : "", S, (double)vpd_decomp_memory_bytes(d) / 1048576.0, run_dir);
        if (ck_opts.every_steps > 0 || ck_opts.every_minutes > 0)
            vpd_info("checkpoints every %d steps / %g minutes into %s (keep last %d, every %d-th step)", ck_opts.every_steps,
                     ck_opts.every_minutes, ck_opts.dir, ck_opts.keep_last, ck_opts.keep_every);
        vpd_run_opts ro = {run_dir, quiet};
        hpc.ckpt = &ck_opts;
        hpc.resumed = resume != NULL;
        hpc.stop_at_step = stop_at;
        hpc.config_yaml = config_yaml;
        hpc.provenance_json = prov;
        s = vpd_run_training_hpc(&tr, &ro, &hpc);
        if (s == VPD_OK && hpc.checkpoints_written)
            vpd_info("%d checkpoint%s written, %.3f s in total", hpc.checkpoints_written,
                     hpc.checkpoints_written > 1 ? "s" : "", hpc.checkpoint_seconds);
    }
    int rc;
    if (s == VPD_OK && hpc.stopped_by_signal) {
        rc = VPD_EXIT_REQUEUE;
    } else {
        vpd_summary sum;
        if (s == VPD_OK) s = vpd_summarize(&tr, &sum, rank == 0 ? stdout : NULL);
        if (s == VPD_OK && rank / cp == 0) { /* the first replica's component group (rank 0 writes) */
            char p[1200];
            snprintf(p, sizeof p, "%s/run.h5", run_dir);
            s = vpd_runfile_write(p, d, root, &sum);
            if (s == VPD_OK && rank == 0 && prov) { /* the full provenance (hashes, Slurm ids, hosts) */
                vpd_h5 f;
                s = vpd_h5_open(&f, p, true);
                if (s == VPD_OK) {
                    s = vpd_h5_set_attr_str(&f, "/provenance", "json", prov);
                    vpd_status c = vpd_h5_close(&f);
                    if (s == VPD_OK) s = c;
                }
            }
            if (s == VPD_OK && rank == 0) printf("\nwrote %s/{config.yaml, provenance.json, metrics.jsonl, run.h5}\n", run_dir);
        }
        rc = s == VPD_OK ? 0 : vpd_cli_fail("decompose", s);
    }
    if (have_trainer) vpd_trainer_free(&tr);
    vpd_decomp_free(d);
    if (have_target) vpd_model_free(&target);
    if (cp_comm != MPI_COMM_SELF) MPI_Comm_free(&cp_comm);
    if (dp_comm != MPI_COMM_WORLD) MPI_Comm_free(&dp_comm);
    vpd_config_free(root);
    vpd_config_free(ck_root);
    vpd_free(ck_yaml);
    vpd_free(ck_prov);
    free(old_cwd);
    free(config_yaml);
    free(prov);
    return rc;
}
