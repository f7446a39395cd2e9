/* Checkpoints (layout and rules in include/vpd/checkpoint.h): collective parallel-HDF5
 * writes and reads of the full trainer state, the atomic temp-fsync-rename protocol, the
 * newest-complete lookup and retention.
 *
 * Every HDF5 call that changes metadata (groups, datasets, attributes) is made by every
 * rank with the same arguments, as MPI-IO HDF5 requires; only the hyperslab each rank
 * selects differs. Errors are collected and reduced at the end instead of returning early,
 * so no rank leaves a collective call that the others are still in. */
#define _POSIX_C_SOURCE 200809L
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
#include "vpd/config.h"
#include "vpd/io.h"

#define CKPT_FORMAT "vpd-checkpoint"
#define CKPT_VERSION 1

static hid_t real_type(void) { return VPD_REAL_IS_DOUBLE ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT; }

vpd_status vpd_ckpt_opts_read(vpd_config *root, const char *run_dir, vpd_ckpt_opts *o) {
    memset(o, 0, sizeof *o);
    const char *dir = NULL;
    VPD_TRY(vpd_config_get_int(root, "checkpoint.every_steps", 0, 0, 1 << 30, &o->every_steps));
    VPD_TRY(vpd_config_get_double(root, "checkpoint.every_minutes", 0, 0, 1e9, &o->every_minutes));
    VPD_TRY(vpd_config_get_int(root, "checkpoint.keep_last", 2, 0, 1 << 30, &o->keep_last));
    VPD_TRY(vpd_config_get_int(root, "checkpoint.keep_every", 0, 0, 1 << 30, &o->keep_every));
    VPD_TRY(vpd_config_get_string_or_null(root, "checkpoint.dir", NULL, &dir));
    if (!dir || !dir[0]) snprintf(o->dir, sizeof o->dir, "%s/checkpoints", run_dir);
    else if (dir[0] == '/') snprintf(o->dir, sizeof o->dir, "%s", dir);
    else snprintf(o->dir, sizeof o->dir, "%s/%s", run_dir, dir);
    if (vpd_config_has(root, "checkpoint")) vpd_config_consume(root, "checkpoint");
    return VPD_OK;
}

/* ---- one tensor ------------------------------------------------------------------------
 * A dataset of `rows` × `cols` (cols 0: 1-D of `rows`) whose rows [row0, row0 + nrows)
 * this rank transfers from/to buf (nrows 0: this rank takes part with an empty selection). */
typedef struct {
    hid_t file, dxpl;
    int nerr;
    char first_err[512];
    const char *path;
} ck_io;

static void ck_fail(ck_io *io, const char *what, const char *name) {
    if (io->nerr++ == 0) snprintf(io->first_err, sizeof io->first_err, "%.160s '%.160s' in %.160s", what, name, io->path);
}

static void ck_groups(ck_io *io, const char *name) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", name);
    for (char *p = buf + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        if (H5Lexists(io->file, buf, H5P_DEFAULT) <= 0) {
            hid_t g = H5Gcreate2(io->file, buf, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            if (g < 0) ck_fail(io, "cannot create group", buf);
            else H5Gclose(g);
        }
        *p = '/';
    }
}

static void ck_select(hid_t *fs, hid_t *ms, int ndim, hsize_t rows, hsize_t cols, hsize_t row0, hsize_t nrows) {
    hsize_t dims[2] = {rows, cols}, start[2] = {row0, 0}, count[2] = {nrows, cols};
    *fs = H5Screate_simple(ndim, dims, NULL);
    hsize_t mdims[2] = {nrows, cols};
    *ms = H5Screate_simple(ndim, mdims, NULL);
    if (nrows == 0 || rows == 0) {
        H5Sselect_none(*fs);
        H5Sselect_none(*ms);
    } else {
        H5Sselect_hyperslab(*fs, H5S_SELECT_SET, start, NULL, count, NULL);
    }
}

static void ck_write(ck_io *io, const char *name, hid_t type, hsize_t rows, hsize_t cols, hsize_t row0,
                     hsize_t nrows, const void *buf) {
    ck_groups(io, name);
    int ndim = cols ? 2 : 1;
    if (!cols) cols = 1;
    hid_t fs, ms;
    ck_select(&fs, &ms, ndim, rows, cols, row0, nrows);
    hid_t ds = H5Dcreate2(io->file, name, type, fs, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0) ck_fail(io, "cannot create dataset", name);
    else {
        if (H5Dwrite(ds, type, ms, fs, io->dxpl, buf) < 0) ck_fail(io, "cannot write dataset", name);
        H5Dclose(ds);
    }
    H5Sclose(fs);
    H5Sclose(ms);
}

static void ck_read(ck_io *io, const char *name, hid_t type, hsize_t rows, hsize_t cols, hsize_t row0, hsize_t nrows,
                    void *buf) {
    int ndim = cols ? 2 : 1;
    if (!cols) cols = 1;
    hid_t ds = H5Dopen2(io->file, name, H5P_DEFAULT);
    if (ds < 0) {
        ck_fail(io, "missing dataset", name);
        return;
    }
    hid_t dfs = H5Dget_space(ds);
    hsize_t have[2] = {0, 0};
    int hnd = H5Sget_simple_extent_dims(dfs, have, NULL);
    H5Sclose(dfs);
    if (hnd != ndim || have[0] != rows || (ndim == 2 && have[1] != cols)) {
        char msg[200];
        snprintf(msg, sizeof msg, "shape [%llu%s%llu] expected (the run's geometry changed?) for dataset",
                 (unsigned long long)rows, ndim == 2 ? ", " : "", ndim == 2 ? (unsigned long long)cols : 0ULL);
        if (ndim == 1) snprintf(msg, sizeof msg, "shape [%llu] expected (the run's geometry changed?) for dataset",
                                (unsigned long long)rows);
        ck_fail(io, msg, name);
        /* still take part in the collective read below with an empty selection */
        nrows = 0;
    }
    hid_t fs, ms;
    ck_select(&fs, &ms, ndim, have[0] ? have[0] : rows, ndim == 2 ? (have[1] ? have[1] : cols) : 1, row0, nrows);
    if (H5Dread(ds, type, ms, fs, io->dxpl, buf) < 0) ck_fail(io, "cannot read dataset", name);
    H5Sclose(fs);
    H5Sclose(ms);
    H5Dclose(ds);
}

/* a replicated flat vector: rank r transfers slice r of P (write) or all of it (read) */
static void ck_write_rep(ck_io *io, const char *name, const real *x, size_t n, int rank, int P) {
    size_t a = n * (size_t)rank / (size_t)P, b = n * (size_t)(rank + 1) / (size_t)P;
    ck_write(io, name, real_type(), n, 0, a, b - a, x + a);
}

static void ck_read_rep(ck_io *io, const char *name, real *x, size_t n) { ck_read(io, name, real_type(), n, 0, 0, n, x); }

/* ---- the PPGD layout ---------------------------------------------------------------------
 * Flat buffers are layer blocks [rows_local, C_k + Δ]; the global row of local row j of a
 * per-rank state is example0·S + j. */
typedef struct {
    int rows_local;
    int64_t rows_global, row0;
} ppgd_geom;

static ppgd_geom ppgd_layout(const vpd_decomp *d, vpd_ppgd_state *p) {
    ppgd_geom g;
    g.rows_local = vpd_ppgd_rows(p);
    if (vpd_ppgd_is_per_rank(p)) {
        g.rows_global = (int64_t)d->B_global * d->S;
        g.row0 = d->example0 * d->S;
    } else {
        g.rows_global = g.rows_local;
        g.row0 = 0;
    }
    return g;
}

static int ppgd_cols(const vpd_decomp *d, int k) { return d->layers[k].C + (d->cfg->use_delta_component ? 1 : 0); }

static void ck_ppgd(ck_io *io, vpd_decomp *d, int i, bool write, int rank, int P) {
    vpd_ppgd_state *p = d->ppgd[i];
    ppgd_geom g = ppgd_layout(d, p);
    real *bufs[3] = {vpd_ppgd_sources(p), vpd_ppgd_adam_m(p), vpd_ppgd_adam_v(p)};
    const char *names[3] = {"sources", "m", "v"};
    size_t total = 0;
    for (int k = 0; k < d->L; k++) total += (size_t)g.rows_local * ppgd_cols(d, k);
    if (total != vpd_ppgd_numel(p)) {
        ck_fail(io, "internal: PPGD layout differs from its state size for loss", vpd_loss_classname(d->cfg->losses[i].kind));
        return;
    }
    bool per_rank = vpd_ppgd_is_per_rank(p);
    for (int b = 0; b < 3; b++) {
        size_t off = 0;
        for (int k = 0; k < d->L; k++) {
            char name[256];
            snprintf(name, sizeof name, "/ppgd/%d/%s/%s", i, names[b], d->layers[k].name);
            const int cols = ppgd_cols(d, k);
            real *x = bufs[b] + off;
            /* per-rank sources and moments are in units of the global-mean gradient (ppgd.c),
             * so they load unchanged on any rank count */
            if (write) {
                if (per_rank) ck_write(io, name, real_type(), (hsize_t)g.rows_global, cols, (hsize_t)g.row0, g.rows_local, x);
                else {
                    /* replicated: rows split over the ranks */
                    hsize_t a = (hsize_t)g.rows_local * rank / P, e = (hsize_t)g.rows_local * (rank + 1) / P;
                    ck_write(io, name, real_type(), g.rows_local, cols, a, e - a, x + a * cols);
                }
            } else {
                ck_read(io, name, real_type(), (hsize_t)g.rows_global, cols, (hsize_t)g.row0, g.rows_local, x);
            }
            off += (size_t)g.rows_local * cols;
        }
    }
}

/* ---- attributes (every rank, same values) ------------------------------------------------ */
static void ck_attr_int(ck_io *io, vpd_h5 *f, const char *obj, const char *name, int64_t v) {
    if (vpd_h5_set_attr_int(f, obj, name, v) != VPD_OK) ck_fail(io, "cannot write attribute", name);
}
static void ck_attr_str(ck_io *io, vpd_h5 *f, const char *obj, const char *name, const char *v) {
    if (vpd_h5_set_attr_str(f, obj, name, v) != VPD_OK) ck_fail(io, "cannot write attribute", name);
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

/* agree on a status across ranks; a failing rank's message is broadcast so every rank
 * returns the same error text */
static vpd_status agree(vpd_status s, MPI_Comm comm, int rank) {
    int in[2] = {s != VPD_OK, s != VPD_OK ? rank : 1 << 30}, out[2];
    MPI_Allreduce(&in[0], &out[0], 1, MPI_INT, MPI_MAX, comm);
    if (!out[0]) return VPD_OK;
    MPI_Allreduce(&in[1], &out[1], 1, MPI_INT, MPI_MIN, comm);
    char msg[1024] = "";
    if (rank == out[1]) snprintf(msg, sizeof msg, "%s", vpd_last_error());
    MPI_Bcast(msg, sizeof msg, MPI_CHAR, out[1], comm);
    int code = (int)s;
    MPI_Bcast(&code, 1, MPI_INT, out[1], comm);
    if (rank != out[1]) return vpd_error((vpd_status)code, "%s", msg);
    return (vpd_status)code;
}

vpd_status vpd_checkpoint_write(const char *dir, vpd_decomp *d, const char *config_yaml, const char *provenance_json,
                                double *seconds, size_t *bytes) {
    const double t0 = vpd_wtime();
    if (d->cp_size > 1) /* every rank of the group sees the same d->cp_size: a collective refusal */
        return vpd_error(VPD_ERR_CONFIG, "checkpoints with component_parallel > 1 are not supported yet "
                                         "(the component blocks would need one hyperslab per cp rank)");
    MPI_Comm comm = d->dp_comm;
    int rank = d->dp_rank, P = d->dp_size;
    char path[1300], tmp[1300];
    snprintf(path, sizeof path, "%s/ckpt-%08d.h5", dir, d->step);
    snprintf(tmp, sizeof tmp, "%s/.ckpt-%08d.h5.tmp", dir, d->step);
    vpd_status s = VPD_OK;
    if (rank == 0) s = vpd_mkdirs(dir);
    VPD_TRY(agree(s, comm, rank));

    vpd_h5 f;
    s = vpd_h5_open_mpi(&f, tmp, true, comm);
    VPD_TRY(agree(s, comm, rank));
    ck_io io = {(hid_t)f.id, H5Pcreate(H5P_DATASET_XFER), 0, "", tmp};
    H5Pset_dxpl_mpio(io.dxpl, H5FD_MPIO_COLLECTIVE);

    ck_attr_str(&io, &f, "/", "format", CKPT_FORMAT);
    ck_attr_int(&io, &f, "/", "version", CKPT_VERSION);
    ck_attr_int(&io, &f, "/", "step", d->step);
    ck_attr_int(&io, &f, "/", "steps", d->cfg->steps);
    ck_attr_int(&io, &f, "/", "B_global", d->B_global);
    ck_attr_int(&io, &f, "/", "S", d->S);
    ck_attr_int(&io, &f, "/", "world_size", P);
    ck_attr_int(&io, &f, "/", "real_bytes", (int64_t)sizeof(real));
    ck_attr_str(&io, &f, "/", "vpd_version", VPD_VERSION);
    ck_attr_str(&io, &f, "/", "git_hash", VPD_GIT_HASH);
    if (config_yaml) ck_attr_str(&io, &f, "/config", "yaml", config_yaml);
    if (provenance_json) ck_attr_str(&io, &f, "/provenance", "json", provenance_json);

    ck_write_rep(&io, "/comp_params", d->comp_params, d->n_comp_params, rank, P);
    ck_write_rep(&io, "/ci_params", d->ci->params, d->ci->n_params, rank, P);
    ck_write_rep(&io, "/adam_comp/m", d->adam_comp.m, d->adam_comp.n, rank, P);
    ck_write_rep(&io, "/adam_comp/v", d->adam_comp.v, d->adam_comp.n, rank, P);
    ck_attr_int(&io, &f, "/adam_comp", "t", d->adam_comp.t);
    ck_write_rep(&io, "/adam_ci/m", d->adam_ci.m, d->adam_ci.n, rank, P);
    ck_write_rep(&io, "/adam_ci/v", d->adam_ci.v, d->adam_ci.n, rank, P);
    ck_attr_int(&io, &f, "/adam_ci", "t", d->adam_ci.t);
    for (int i = 0; i < d->cfg->n_losses; i++) {
        if (!d->ppgd[i]) continue;
        ck_ppgd(&io, d, i, true, rank, P);
        char g[64];
        snprintf(g, sizeof g, "/ppgd/%d", i);
        ck_attr_int(&io, &f, g, "t", *vpd_ppgd_adam_t(d->ppgd[i]));
        ck_attr_int(&io, &f, g, "per_rank", vpd_ppgd_is_per_rank(d->ppgd[i]));
        ck_attr_str(&io, &f, g, "classname", vpd_loss_classname(d->cfg->losses[i].kind));
    }
    /* test hook: stall with the temporary file half-made at step $VPD_CKPT_TEST_STALL_STEP (any
     * step if negative); the tests in tests/hpc kill -9 or signal the process here */
    const char *stall = getenv("VPD_CKPT_TEST_STALL_STEP");
    if (stall && (atoi(stall) == d->step || atoi(stall) < 0)) {
        if (rank == 0) fprintf(stderr, "[vpd] test hook: stalling inside the checkpoint write of step %d (%s)\n", d->step, tmp);
        H5Fflush(io.file, H5F_SCOPE_GLOBAL);
        unsigned left = 120;
        while ((left = sleep(left)) > 0) {} /* a first signal does not cut the stall short */
    }
    ck_attr_int(&io, &f, "/", "complete", 1);
    H5Pclose(io.dxpl);
    vpd_status c = vpd_h5_close(&f);
    s = io.nerr ? vpd_error(VPD_ERR_IO, "checkpoint: %s", io.first_err) : c;
    s = agree(s, comm, rank);
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
    VPD_TRY(agree(s, comm, rank));
    struct stat st;
    if (bytes) *bytes = stat(path, &st) == 0 ? (size_t)st.st_size : 0;
    if (seconds) *seconds = vpd_wtime() - t0;
    return VPD_OK;
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
    int n = 0, *steps = list_steps(dir, &n);
    for (int i = 0; i < n; i++) {
        char p[1300];
        snprintf(p, sizeof p, "%s/ckpt-%08d.h5", dir, steps[i]);
        vpd_h5 f;
        int64_t complete = 0, st = -1;
        char *fmt = NULL;
        bool ok = vpd_h5_open(&f, p, false) == VPD_OK;
        if (ok) {
            ok = vpd_h5_get_attr_str(&f, "/", "format", &fmt) == VPD_OK && fmt && !strcmp(fmt, CKPT_FORMAT) &&
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
    return vpd_error(VPD_ERR_IO, "no complete checkpoint (ckpt-*.h5) in %s", dir);
}

vpd_status vpd_checkpoint_prune(const vpd_ckpt_opts *o) {
    if (vpd_log_rank() != 0) return VPD_OK;
    int n = 0, *steps = list_steps(o->dir, &n);
    for (int i = 0; i < n; i++) {
        bool keep = o->keep_last <= 0 || i < o->keep_last || (o->keep_every > 0 && steps[i] % o->keep_every == 0);
        if (keep) continue;
        char p[1300];
        snprintf(p, sizeof p, "%s/ckpt-%08d.h5", o->dir, steps[i]);
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

vpd_status vpd_checkpoint_read(const char *path, vpd_decomp *d) {
    MPI_Comm comm = d->dp_comm;
    int rank = d->dp_rank;
    vpd_h5 f;
    vpd_status s = vpd_h5_open_mpi(&f, path, false, comm);
    VPD_TRY(agree(s, comm, rank));
    ck_io io = {(hid_t)f.id, H5Pcreate(H5P_DATASET_XFER), 0, "", path};
    H5Pset_dxpl_mpio(io.dxpl, H5FD_MPIO_COLLECTIVE);
    int64_t step = -1, bg = -1, S = -1, t_comp = 0, t_ci = 0;
    char *fmt = NULL;
    if (vpd_h5_get_attr_str(&f, "/", "format", &fmt) != VPD_OK || !fmt || strcmp(fmt, CKPT_FORMAT))
        ck_fail(&io, "not a vpd checkpoint (attribute format)", "/");
    vpd_free(fmt);
    if (vpd_h5_get_attr_int(&f, "/", "step", &step) != VPD_OK) ck_fail(&io, "missing attribute", "step");
    if (vpd_h5_get_attr_int(&f, "/", "B_global", &bg) != VPD_OK) ck_fail(&io, "missing attribute", "B_global");
    if (vpd_h5_get_attr_int(&f, "/", "S", &S) != VPD_OK) ck_fail(&io, "missing attribute", "S");
    if (!io.nerr && (bg != d->B_global || S != d->S)) {
        char msg[160];
        snprintf(msg, sizeof msg, "batch geometry %lld x %lld (checkpoint) vs %d x %d (this run) for",
                 (long long)bg, (long long)S, d->B_global, d->S);
        ck_fail(&io, msg, "batch_size / max_seq_len");
    }
    ck_read_rep(&io, "/comp_params", d->comp_params, d->n_comp_params);
    ck_read_rep(&io, "/ci_params", d->ci->params, d->ci->n_params);
    ck_read_rep(&io, "/adam_comp/m", d->adam_comp.m, d->adam_comp.n);
    ck_read_rep(&io, "/adam_comp/v", d->adam_comp.v, d->adam_comp.n);
    ck_read_rep(&io, "/adam_ci/m", d->adam_ci.m, d->adam_ci.n);
    ck_read_rep(&io, "/adam_ci/v", d->adam_ci.v, d->adam_ci.n);
    if (vpd_h5_get_attr_int(&f, "/adam_comp", "t", &t_comp) != VPD_OK) ck_fail(&io, "missing attribute", "/adam_comp t");
    if (vpd_h5_get_attr_int(&f, "/adam_ci", "t", &t_ci) != VPD_OK) ck_fail(&io, "missing attribute", "/adam_ci t");
    for (int i = 0; i < d->cfg->n_losses; i++) {
        if (!d->ppgd[i]) continue;
        ck_ppgd(&io, d, i, false, rank, d->dp_size);
        char g[64];
        snprintf(g, sizeof g, "/ppgd/%d", i);
        int64_t t = 0;
        if (vpd_h5_get_attr_int(&f, g, "t", &t) != VPD_OK) ck_fail(&io, "missing attribute t of", g);
        *vpd_ppgd_adam_t(d->ppgd[i]) = t;
    }
    H5Pclose(io.dxpl);
    vpd_status c = vpd_h5_close(&f);
    s = io.nerr ? vpd_error(VPD_ERR_FORMAT, "checkpoint: %s", io.first_err) : c;
    VPD_TRY(agree(s, comm, rank));
    d->step = (int)step;
    d->adam_comp.t = t_comp;
    d->adam_ci.t = t_ci;
    vpd_decomp_refresh(d);
    return VPD_OK;
}
