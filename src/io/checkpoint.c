/* Checkpoint files (layout and rules in include/vpd/checkpoint.h): the header, a tensor table
 * written and read collectively (src/io/tensor_table.c), the atomic temp-fsync-rename
 * protocol, the newest-complete lookup and retention. No method: the table's rows are the
 * caller's. Every HDF5 metadata call is made by every rank with the same arguments. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vpd/checkpoint.h"
#include "vpd/comm.h"
#include "vpd/config.h"
#include "vpd/io.h"

vpd_status vpd_ckpt_opts_read(vpd_config *root, const char *run_dir, vpd_ckpt_opts *o) {
    memset(o, 0, sizeof *o);
    const char *dir = NULL;
    VPD_TRY(vpd_config_get_int(root, "checkpoint.every_steps", 0, 0, 1 << 30, &o->every_steps));
    VPD_TRY(vpd_config_get_double(root, "checkpoint.every_minutes", 0, 0, 1e9, &o->every_minutes));
    VPD_TRY(vpd_config_get_int(root, "checkpoint.keep_last", 2, 0, 1 << 30, &o->keep_last));
    VPD_TRY(vpd_config_get_int(root, "checkpoint.keep_every", 0, 0, 1 << 30, &o->keep_every));
    VPD_TRY(vpd_config_get_string_or_null(root, "checkpoint.dir", NULL, &dir));
    VPD_TRY(vpd_config_get_double(root, "checkpoint.watchdog_s", 0, 0, 1e9, &o->watchdog_s));
    if (!dir || !dir[0]) snprintf(o->dir, sizeof o->dir, "%s/checkpoints", run_dir);
    else if (dir[0] == '/') snprintf(o->dir, sizeof o->dir, "%s", dir);
    else snprintf(o->dir, sizeof o->dir, "%s/%s", run_dir, dir);
    if (vpd_config_has(root, "checkpoint")) vpd_config_consume(root, "checkpoint");
    return VPD_OK;
}

static vpd_status fsync_path(const char *path, bool dir) {
    int fd = open(path, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return vpd_error(VPD_ERR_IO, "cannot open %s to fsync it: %s", path, strerror(errno));
    int e = fsync(fd);
    close(fd);
    /* some filesystems refuse fsync on directories (EINVAL): the rename is still atomic */
    if (e != 0 && !(dir && (errno == EINVAL || errno == EBADF)))
        return vpd_error(VPD_ERR_IO, "fsync of %s failed: %s", path, strerror(errno));
    return VPD_OK;
}

/* the header attributes, every rank the same values; the first failure is kept */
static void header_attrs(vpd_h5 *f, int step, const char *config_yaml, const char *provenance_json, vpd_status *s) {
#define W(x) do { if (*s == VPD_OK) *s = (x); } while (0)
    W(vpd_h5_set_attr_str(f, "/", "format", VPD_CKPT_FORMAT));
    W(vpd_h5_set_attr_int(f, "/", "version", VPD_CKPT_VERSION));
    W(vpd_h5_set_attr_int(f, "/", "step", step));
    W(vpd_h5_set_attr_int(f, "/", "real_bytes", (int64_t)sizeof(real)));
    W(vpd_h5_set_attr_str(f, "/", "vpd_version", VPD_VERSION));
    W(vpd_h5_set_attr_str(f, "/", "git_hash", VPD_GIT_HASH));
    if (config_yaml) W(vpd_h5_set_attr_str(f, "/config", "yaml", config_yaml));
    if (provenance_json) {
        W(vpd_h5_set_attr_str(f, "/provenance", "json", provenance_json));
        /* the run's identity, where retention reads it without parsing the provenance */
        cJSON *j = cJSON_Parse(provenance_json);
        const cJSON *id = j ? cJSON_GetObjectItemCaseSensitive(j, "run_id") : NULL;
        if (cJSON_IsString(id)) W(vpd_h5_set_attr_str(f, "/", "run_id", id->valuestring));
        cJSON_Delete(j);
    }
#undef W
}

vpd_status vpd_ckpt_write_table(const char *dir, int step, const vpd_tensor_table *t, const char *config_yaml,
                                const char *provenance_json, double *seconds, size_t *bytes) {
    const double t0 = vpd_wtime();
    MPI_Comm comm = t->comm;
    const int rank = vpd_comm_rank(comm);
    char path[1300], tmp[1300];
    snprintf(path, sizeof path, "%s/ckpt-%08d.h5", dir, step);
    snprintf(tmp, sizeof tmp, "%s/.ckpt-%08d.h5.tmp", dir, step);
    vpd_status s = VPD_OK;
    if (rank == 0) s = vpd_mkdirs(dir);
    VPD_TRY(vpd_all_agree(s, comm));

    vpd_h5 f;
    VPD_TRY(vpd_all_agree(vpd_h5_open_mpi(&f, tmp, true, comm), comm));
    header_attrs(&f, step, config_yaml, provenance_json, &s);
    if (s != VPD_OK) vpd_error_context(s, "checkpoint %s", tmp);
    vpd_status w = vpd_table_write_h5(&f, t); /* collective, agreed */
    /* test hook: stall with the temporary file half-made at step $VPD_CKPT_TEST_STALL_STEP (any
     * step if negative) for $VPD_CKPT_TEST_STALL_S seconds (default 120); the tests in tests/hpc
     * kill -9 or signal the process here */
    const char *stall = getenv("VPD_CKPT_TEST_STALL_STEP");
    if (stall && (atoi(stall) == step || atoi(stall) < 0)) {
        if (rank == 0) fprintf(stderr, "[vpd] test hook: stalling inside the checkpoint write of step %d (%s)\n", step, tmp);
        H5Fflush((hid_t)f.id, H5F_SCOPE_GLOBAL);
        const char *secs = getenv("VPD_CKPT_TEST_STALL_S");
        unsigned left = secs && atoi(secs) > 0 ? (unsigned)atoi(secs) : 120;
        while ((left = sleep(left)) > 0) {} /* a first signal does not cut the stall short */
    }
    if (s == VPD_OK) s = vpd_h5_set_attr_int(&f, "/", "complete", 1);
    vpd_status c = vpd_h5_close(&f);
    if (s == VPD_OK) s = w;
    if (s == VPD_OK) s = c;
    s = vpd_all_agree(s, comm);
    if (s != VPD_OK) {
        if (rank == 0) unlink(tmp);
        return s;
    }
    if (rank == 0) {
        s = fsync_path(tmp, false);
        if (s == VPD_OK && rename(tmp, path) != 0)
            s = vpd_error(VPD_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        if (s == VPD_OK) s = fsync_path(dir, true);
    }
    VPD_TRY(vpd_all_agree(s, comm));
    struct stat st;
    if (bytes) *bytes = stat(path, &st) == 0 ? (size_t)st.st_size : 0;
    if (seconds) *seconds = vpd_wtime() - t0;
    return VPD_OK;
}

/* the header of a checkpoint on an open file: format, version, step */
static vpd_status read_header(vpd_h5 *f, int *step) {
    char *fmt = NULL;
    int64_t version = 0, st = -1;
    vpd_status s = VPD_OK;
    if (!vpd_h5_has_attr(f, "/", "format") || vpd_h5_get_attr_str(f, "/", "format", &fmt) != VPD_OK || !fmt ||
        strcmp(fmt, VPD_CKPT_FORMAT))
        s = vpd_error(VPD_ERR_FORMAT, "%s is not a vpd checkpoint (root attribute format is not '%s')", f->path,
                      VPD_CKPT_FORMAT);
    vpd_free(fmt);
    if (s == VPD_OK && (vpd_h5_get_attr_int(f, "/", "version", &version) != VPD_OK || version != VPD_CKPT_VERSION))
        s = vpd_error(VPD_ERR_FORMAT,
                      "%s: checkpoint format version %lld, this vpd reads version %d (version 1 is the flat "
                      "/comp_params layout of earlier vpd builds): resume it with the vpd that wrote it, or start "
                      "the run again",
                      f->path, (long long)version, VPD_CKPT_VERSION);
    if (s == VPD_OK && vpd_h5_get_attr_int(f, "/", "step", &st) != VPD_OK)
        s = vpd_error(VPD_ERR_FORMAT, "%s: no root attribute 'step'", f->path);
    /* a step outside what a config allows (steps <= 2^30) is damage, not a run: never truncate it */
    if (s == VPD_OK && (st < 0 || st > (int64_t)1 << 30))
        s = vpd_error(VPD_ERR_FORMAT, "%s: root attribute step = %lld is out of range (0 to 2^30): the file is damaged",
                      f->path, (long long)st);
    *step = s == VPD_OK ? (int)st : -1;
    return s;
}

vpd_status vpd_ckpt_read_table(const char *path, vpd_tensor_table *t, int *step) {
    MPI_Comm comm = t->comm;
    vpd_h5 f;
    /* rank 0 checks the header serially (its messages say whether the file is missing, not
     * HDF5, not a checkpoint or of another version) and tells the others the step */
    vpd_status s = VPD_OK;
    if (vpd_comm_rank(comm) == 0 && (s = vpd_h5_open(&f, path, false)) == VPD_OK) {
        s = read_header(&f, step);
        vpd_h5_close(&f);
    }
    VPD_TRY(vpd_all_agree(s, comm));
    vpd_bcast(step, sizeof *step, 0, comm);
    VPD_TRY(vpd_all_agree(vpd_h5_open_mpi(&f, path, false, comm), comm));
    s = vpd_table_read_h5(&f, t);
    vpd_status c = vpd_h5_close(&f);
    return s != VPD_OK ? s : vpd_all_agree(c, comm);
}

/* ---- lookup and retention ------------------------------------------------------------- */
static int cmp_desc(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x < y) - (x > y);
}

/* steps of every ckpt-<8 digits>.h5 in dir, newest first; *n = count; malloc'd */
static int *list_steps(const char *dir, int *n) {
    *n = 0;
    DIR *dp = opendir(dir);
    if (!dp) return NULL;
    int cap = 16, *v = malloc(sizeof(int) * cap);
    struct dirent *e;
    while (v && (e = readdir(dp))) {
        int step;
        char tail[8];
        if (strlen(e->d_name) != 16 || sscanf(e->d_name, "ckpt-%8d%4s", &step, tail) != 2 || strcmp(tail, ".h5")) continue;
        if (*n == cap) {
            int *nv = realloc(v, sizeof(int) * (cap *= 2));
            if (!nv) break;
            v = nv;
        }
        v[(*n)++] = step;
    }
    closedir(dp);
    if (v) qsort(v, *n, sizeof(int), cmp_desc);
    return v;
}

vpd_status vpd_checkpoint_latest(const char *dir, char *path, size_t size, int *step) {
    return vpd_checkpoint_latest_before(dir, -1, path, size, step);
}

vpd_status vpd_checkpoint_latest_before(const char *dir, int before, char *path, size_t size, int *step) {
    int n = 0, *steps = list_steps(dir, &n);
    for (int i = 0; i < n; i++) {
        if (before >= 0 && steps[i] >= before) continue;
        char p[1300];
        snprintf(p, sizeof p, "%s/ckpt-%08d.h5", dir, steps[i]);
        vpd_h5 f;
        int64_t complete = 0, st = -1;
        char *fmt = NULL;
        bool ok = vpd_h5_open(&f, p, false) == VPD_OK;
        if (ok) {
            ok = vpd_h5_get_attr_str(&f, "/", "format", &fmt) == VPD_OK && fmt && !strcmp(fmt, VPD_CKPT_FORMAT) &&
                 vpd_h5_get_attr_int(&f, "/", "complete", &complete) == VPD_OK && complete == 1 &&
                 vpd_h5_get_attr_int(&f, "/", "step", &st) == VPD_OK && st == steps[i];
            vpd_free(fmt);
            vpd_h5_close(&f);
        }
        if (!ok) {
            vpd_warn("checkpoint %s is incomplete or unreadable; trying an older one", p);
            continue;
        }
        snprintf(path, size, "%s", p);
        *step = steps[i];
        free(steps);
        return VPD_OK;
    }
    free(steps);
    if (before >= 0) return vpd_error(VPD_ERR_IO, "no complete checkpoint (ckpt-*.h5) before step %d in %s", before, dir);
    return vpd_error(VPD_ERR_IO, "no complete checkpoint (ckpt-*.h5) in %s", dir);
}

/* whether the checkpoint at path belongs to run_id (root attribute run_id equal) */
static bool ckpt_of_run(const char *path, const char *run_id) {
    vpd_h5 f;
    if (vpd_h5_open(&f, path, false) != VPD_OK) {
        vpd_clear_error();
        return false;
    }
    char *id = NULL;
    bool mine = vpd_h5_has_attr(&f, "/", "run_id") && vpd_h5_get_attr_str(&f, "/", "run_id", &id) == VPD_OK && id &&
                !strcmp(id, run_id);
    vpd_free(id);
    vpd_h5_close(&f);
    return mine;
}

vpd_status vpd_checkpoint_prune(const vpd_ckpt_opts *o) {
    if (vpd_log_rank() != 0) return VPD_OK;
    int n = 0, *steps = list_steps(o->dir, &n);
    int rank_in_run = 0; /* position among this run's checkpoints, newest first */
    for (int i = 0; i < n; i++) {
        char p[1300];
        snprintf(p, sizeof p, "%s/ckpt-%08d.h5", o->dir, steps[i]);
        if (o->run_id[0] && !ckpt_of_run(p, o->run_id)) continue; /* another run's: never touched */
        bool keep = o->keep_last <= 0 || rank_in_run < o->keep_last || (o->keep_every > 0 && steps[i] % o->keep_every == 0);
        rank_in_run++;
        if (keep) continue;
        if (unlink(p) != 0) vpd_warn("cannot delete old checkpoint %s: %s", p, strerror(errno));
    }
    free(steps);
    /* temporaries of writes that never finished (a killed job) */
    DIR *dp = opendir(o->dir);
    struct dirent *e;
    while (dp && (e = readdir(dp))) {
        size_t l = strlen(e->d_name);
        if (!strncmp(e->d_name, ".ckpt-", 6) && l > 4 && !strcmp(e->d_name + l - 4, ".tmp")) {
            char p[1300];
            snprintf(p, sizeof p, "%s/%s", o->dir, e->d_name);
            unlink(p);
        }
    }
    if (dp) closedir(dp);
    return VPD_OK;
}

static vpd_status read_attr_text(const char *path, const char *obj, const char *name, char **out, bool required) {
    *out = NULL;
    vpd_h5 f;
    VPD_TRY(vpd_h5_open(&f, path, false));
    vpd_status s = VPD_OK;
    if (vpd_h5_has_attr(&f, obj, name)) s = vpd_h5_get_attr_str(&f, obj, name, out);
    else if (required) s = vpd_error(VPD_ERR_FORMAT, "%s: no attribute '%s' on %s", path, name, obj);
    vpd_h5_close(&f);
    return s;
}

vpd_status vpd_checkpoint_config(const char *path, char **yaml) { return read_attr_text(path, "/config", "yaml", yaml, true); }

vpd_status vpd_checkpoint_provenance(const char *path, char **json) {
    return read_attr_text(path, "/provenance", "json", json, false);
}
