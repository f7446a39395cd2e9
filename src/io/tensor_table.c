/* Tables of named, sharded tensors (include/vpd/tensor_table.h): building them, and moving
 * them to and from HDF5 collectively with one hyperslab per rank.
 *
 * Every HDF5 call that changes metadata (groups, datasets, attributes) is made by every rank
 * with the same arguments, as MPI-IO HDF5 requires; only the selections differ. Errors are
 * collected and agreed at the end instead of returning early, so no rank leaves a collective
 * call the others are still in. This file knows no method: it moves rows. */
#define _POSIX_C_SOURCE 200809L
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vpd/comm.h"
#include "vpd/tensor_table.h"

/* ---- building ------------------------------------------------------------------------------ */
void vpd_table_init(vpd_tensor_table *t, MPI_Comm comm, int dp, int dp_rank, int cp, int cp_rank) {
    memset(t, 0, sizeof *t);
    t->comm = comm;
    t->dp = dp < 1 ? 1 : dp;
    t->cp = cp < 1 ? 1 : cp;
    t->dp_rank = dp_rank;
    t->cp_rank = cp_rank;
}

void vpd_table_free(vpd_tensor_table *t) {
    for (int i = 0; i < t->n_attrs; i++) {
        free(t->attrs[i].s);
        free(t->attrs[i].hint);
    }
    free(t->attrs);
    free(t->rows);
    t->rows = NULL;
    t->attrs = NULL;
    t->n = t->cap = t->n_attrs = t->cap_attrs = 0;
}

vpd_status vpd_table_add(vpd_tensor_table *t, const vpd_table_row *row) {
    if (row->ndim < 1 || row->ndim > 3)
        return vpd_error(VPD_ERR_SHAPE, "tensor table: '%s' has %d axes (1..3 supported)", row->name, row->ndim);
    if ((row->shard & VPD_SHARD_BY_COMPONENT) && (row->comp_axis < 0 || row->comp_axis >= row->ndim ||
                                                 row->c0 < 0 || row->c0 + row->c_local > row->shape[row->comp_axis]))
        return vpd_error(VPD_ERR_SHAPE, "tensor table: '%s': component block [%lld, +%lld) outside axis %d of size %lld",
                         row->name, (long long)row->c0, (long long)row->c_local, row->comp_axis,
                         (long long)row->shape[row->comp_axis < 0 ? 0 : row->comp_axis % 3]);
    if ((row->shard & VPD_SHARD_BY_EXAMPLE) && (row->row0 < 0 || row->row0 + row->nrows > row->shape[0]))
        return vpd_error(VPD_ERR_SHAPE, "tensor table: '%s': rows [%lld, +%lld) outside %lld", row->name,
                         (long long)row->row0, (long long)row->nrows, (long long)row->shape[0]);
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 64;
        vpd_table_row *r = realloc(t->rows, sizeof *r * (size_t)cap);
        if (!r) return vpd_error(VPD_ERR_MEM, "tensor table rows");
        t->rows = r;
        t->cap = cap;
    }
    t->rows[t->n++] = *row;
    return VPD_OK;
}

static vpd_table_row make_row(const char *name, void *data, vpd_table_dtype dt, int ndim, const int64_t *shape) {
    vpd_table_row r;
    memset(&r, 0, sizeof r);
    snprintf(r.name, sizeof r.name, "%s", name);
    r.data = data;
    r.dtype = dt;
    r.ndim = ndim;
    for (int a = 0; a < ndim && a < 3; a++) r.shape[a] = shape[a];
    return r;
}

vpd_status vpd_table_replicated(vpd_tensor_table *t, const char *name, void *data, vpd_table_dtype dt, int ndim,
                                const int64_t *shape) {
    vpd_table_row r = make_row(name, data, dt, ndim, shape);
    return vpd_table_add(t, &r);
}

vpd_status vpd_table_by_example(vpd_tensor_table *t, const char *name, void *data, vpd_table_dtype dt, int ndim,
                                const int64_t *shape, int64_t row0, int64_t nrows) {
    vpd_table_row r = make_row(name, data, dt, ndim, shape);
    r.shard = VPD_SHARD_BY_EXAMPLE;
    r.row0 = row0;
    r.nrows = nrows;
    return vpd_table_add(t, &r);
}

vpd_status vpd_table_by_component(vpd_tensor_table *t, const char *name, void *data, vpd_table_dtype dt, int ndim,
                                  const int64_t *shape, int axis, int64_t c0, int64_t c_local) {
    vpd_table_row r = make_row(name, data, dt, ndim, shape);
    r.shard = VPD_SHARD_BY_COMPONENT;
    r.comp_axis = axis;
    r.c0 = c0;
    r.c_local = c_local;
    return vpd_table_add(t, &r);
}

void vpd_table_last_strided(vpd_tensor_table *t, int64_t mem_ld, int64_t mem_col0) {
    if (t->n == 0) return;
    t->rows[t->n - 1].mem_ld = mem_ld;
    t->rows[t->n - 1].mem_col0 = mem_col0;
}

int vpd_table_find(const vpd_tensor_table *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->rows[i].name, name)) return i;
    return -1;
}

static vpd_status add_attr(vpd_tensor_table *t, const char *obj, const char *name, vpd_attr_type type,
                           vpd_attr_mode mode, const char *hint, vpd_table_attr **out) {
    if (t->n_attrs == t->cap_attrs) {
        int cap = t->cap_attrs ? 2 * t->cap_attrs : 32;
        vpd_table_attr *a = realloc(t->attrs, sizeof *a * (size_t)cap);
        if (!a) return vpd_error(VPD_ERR_MEM, "tensor table attributes");
        t->attrs = a;
        t->cap_attrs = cap;
    }
    vpd_table_attr *a = &t->attrs[t->n_attrs];
    memset(a, 0, sizeof *a);
    snprintf(a->obj, sizeof a->obj, "%s", obj);
    snprintf(a->name, sizeof a->name, "%s", name);
    a->type = type;
    a->mode = mode;
    if (hint && !(a->hint = strdup(hint))) return vpd_error(VPD_ERR_MEM, "tensor table attributes");
    t->n_attrs++;
    *out = a;
    return VPD_OK;
}

vpd_status vpd_table_attr_int(vpd_tensor_table *t, const char *obj, const char *name, int64_t v, vpd_attr_mode mode,
                              const char *hint) {
    vpd_table_attr *a = NULL;
    VPD_TRY(add_attr(t, obj, name, VPD_ATTR_INT, mode, hint, &a));
    a->i = v;
    return VPD_OK;
}

vpd_status vpd_table_attr_double(vpd_tensor_table *t, const char *obj, const char *name, double v, vpd_attr_mode mode,
                                 const char *hint) {
    vpd_table_attr *a = NULL;
    VPD_TRY(add_attr(t, obj, name, VPD_ATTR_DOUBLE, mode, hint, &a));
    a->d = v;
    return VPD_OK;
}

vpd_status vpd_table_attr_str(vpd_tensor_table *t, const char *obj, const char *name, const char *v,
                              vpd_attr_mode mode, const char *hint) {
    vpd_table_attr *a = NULL;
    VPD_TRY(add_attr(t, obj, name, VPD_ATTR_STR, mode, hint, &a));
    if (!(a->s = strdup(v ? v : ""))) return vpd_error(VPD_ERR_MEM, "tensor table attributes");
    return VPD_OK;
}

const vpd_table_attr *vpd_table_get_attr(const vpd_tensor_table *t, const char *obj, const char *name) {
    for (int i = 0; i < t->n_attrs; i++)
        if (!strcmp(t->attrs[i].obj, obj) && !strcmp(t->attrs[i].name, name)) return &t->attrs[i];
    return NULL;
}

/* ---- HDF5 -------------------------------------------------------------------------------------- */
typedef struct {
    vpd_h5 *f;
    hid_t file, dxpl, dxpl_coll; /* independent / collective transfers */
    int nerr;
    vpd_status code;
    char first[900];
    const char *path;
} tt_io;

static void tt_fail(tt_io *io, vpd_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void tt_fail(tt_io *io, vpd_status code, const char *fmt, ...) {
    if (io->nerr++ == 0) {
        char m[700];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(m, sizeof m, fmt, ap);
        va_end(ap);
        snprintf(io->first, sizeof io->first, "%s: %s", io->path, m);
        io->code = code;
    }
    H5Eclear2(H5E_DEFAULT);
}

static hid_t mem_type(vpd_table_dtype dt) {
    switch (dt) {
    case VPD_TT_REAL: return VPD_REAL_IS_DOUBLE ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT;
    case VPD_TT_F32: return H5T_NATIVE_FLOAT;
    case VPD_TT_I32: return H5T_NATIVE_INT32;
    case VPD_TT_I64: return H5T_NATIVE_INT64;
    }
    return H5T_NATIVE_FLOAT;
}

static hid_t file_type(const vpd_tensor_table *t, vpd_table_dtype dt) {
    if (dt == VPD_TT_REAL && t->real_as_f32) return H5T_NATIVE_FLOAT;
    return mem_type(dt);
}

/* the groups along a dataset path (mkdir -p of its parent) */
static void tt_groups(tt_io *io, const char *name) {
    char buf[VPD_TABLE_NAME_MAX];
    snprintf(buf, sizeof buf, "%s", name);
    for (char *p = buf + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        htri_t e = H5Lexists(io->file, buf, H5P_DEFAULT);
        if (e <= 0) {
            hid_t g = H5Gcreate2(io->file, buf, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            if (g < 0) tt_fail(io, VPD_ERR_IO, "cannot create group '%s'", buf);
            else H5Gclose(g);
        }
        *p = '/';
    }
}

/* This rank's block of row r: start/count per axis of the global array. */
static void block_of(const vpd_table_row *r, hsize_t start[3], hsize_t count[3]) {
    for (int a = 0; a < r->ndim; a++) {
        start[a] = 0;
        count[a] = (hsize_t)r->shape[a];
    }
    if (r->shard & VPD_SHARD_BY_EXAMPLE) {
        start[0] = (hsize_t)r->row0;
        count[0] = (hsize_t)r->nrows;
    }
    if (r->shard & VPD_SHARD_BY_COMPONENT) {
        start[r->comp_axis] = (hsize_t)r->c0;
        count[r->comp_axis] = (hsize_t)r->c_local;
    }
}

/* how many ranks hold the same block as this one, and which of them this rank is */
static void replicas_of(const vpd_tensor_table *t, const vpd_table_row *r, int *rank, int *size) {
    const bool ex = r->shard & VPD_SHARD_BY_EXAMPLE, comp = r->shard & VPD_SHARD_BY_COMPONENT;
    if (ex && comp) { *rank = 0; *size = 1; }
    else if (ex) { *rank = t->cp_rank; *size = t->cp; }       /* the component group holds it */
    else if (comp) { *rank = t->dp_rank; *size = t->dp; }     /* the replicas hold it */
    else { *rank = t->dp_rank * t->cp + t->cp_rank; *size = t->dp * t->cp; }
}

/* File and memory selections of rows [a, b) of this rank's block (axis 0 of the block). */
static void select_part(const vpd_table_row *r, hid_t fs, hid_t *ms, hsize_t a, hsize_t b) {
    hsize_t start[3], count[3];
    block_of(r, start, count);
    hsize_t n = 1;
    for (int d = 0; d < r->ndim; d++) n *= count[d];
    const hsize_t blk0 = count[0];
    start[0] += a;
    count[0] = b - a;
    hsize_t sel = b > a ? n / (blk0 ? blk0 : 1) * (b - a) : 0;
    /* memory: the block (rows of mem_ld elements when strided) */
    hsize_t mdims[4], mstart[4] = {0, 0, 0, 0}, mcount[4];
    int mnd = r->ndim;
    for (int d = 0; d < r->ndim; d++) {
        mdims[d] = d == 0 ? blk0 : count[d];
        mcount[d] = count[d];
    }
    mstart[0] = a;
    if (r->mem_ld > 0) {
        if (r->ndim == 1) { /* a column of rows of mem_ld elements */
            mnd = 2;
            mdims[1] = (hsize_t)r->mem_ld;
            mstart[1] = (hsize_t)r->mem_col0;
            mcount[1] = 1;
        } else {
            mdims[r->ndim - 1] = (hsize_t)r->mem_ld;
            mstart[r->ndim - 1] = (hsize_t)r->mem_col0;
        }
    }
    for (int d = 0; d < mnd; d++)
        if (mdims[d] == 0) mdims[d] = 1; /* a zero-sized memory space is not allowed; nothing is selected anyway */
    *ms = H5Screate_simple(mnd, mdims, NULL);
    if (sel == 0) {
        H5Sselect_none(fs);
        H5Sselect_none(*ms);
        return;
    }
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    H5Sselect_hyperslab(*ms, H5S_SELECT_SET, mstart, NULL, mcount, NULL);
}

/* Large tensors go through collective MPI-IO (two-phase aggregation pays off); small ones
 * independently: a checkpoint has hundreds of small datasets, and a collective transfer per
 * dataset costs a synchronisation of every rank for a few bytes each (lm_tiny on 2 ranks:
 * 192 datasets, ~2x the write time collectively). Every rank picks the same mode. */
#define TT_COLLECTIVE_BYTES ((int64_t)1 << 20)
static hid_t xfer(const tt_io *io, const vpd_table_row *r) {
    int64_t n = r->dtype == VPD_TT_I64 ? 8 : 4;
    for (int d = 0; d < r->ndim; d++) n *= r->shape[d];
    return n >= TT_COLLECTIVE_BYTES ? io->dxpl_coll : io->dxpl;
}

static void write_row(tt_io *io, const vpd_tensor_table *t, const vpd_table_row *r) {
    tt_groups(io, r->name);
    hsize_t dims[3];
    for (int d = 0; d < r->ndim; d++) dims[d] = (hsize_t)r->shape[d];
    hid_t fs = H5Screate_simple(r->ndim, dims, NULL);
    /* every element is written below: no fill values (MPI-IO files allocate early and would
     * write the fill first) */
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    hid_t ds = H5Dcreate2(io->file, r->name, file_type(t, r->dtype), fs, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    if (ds < 0) {
        tt_fail(io, VPD_ERR_IO, "cannot create dataset '%s'", r->name);
        H5Sclose(fs);
        return;
    }
    /* a block held by several ranks: each writes its slice of the block's first axis */
    hsize_t start[3], count[3];
    block_of(r, start, count);
    int rr, rs;
    replicas_of(t, r, &rr, &rs);
    hsize_t a = count[0] * (hsize_t)rr / (hsize_t)rs, b = count[0] * (hsize_t)(rr + 1) / (hsize_t)rs;
    hid_t ms;
    select_part(r, fs, &ms, a, b);
    if (H5Dwrite(ds, mem_type(r->dtype), ms, fs, xfer(io, r), r->data) < 0)
        tt_fail(io, VPD_ERR_IO, "cannot write dataset '%s'", r->name);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(ds);
}

static void shape_text(char *buf, size_t n, int ndim, const hsize_t *dims) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && o < n; d++) o += (size_t)snprintf(buf + o, n - o, "%s%llu", d ? ", " : "", (unsigned long long)dims[d]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

static void read_row(tt_io *io, const vpd_table_row *r) {
    if (!vpd_h5_exists(io->f, r->name)) {
        tt_fail(io, VPD_ERR_FORMAT, "missing dataset '%s'", r->name);
        return;
    }
    hid_t ds = H5Dopen2(io->file, r->name, H5P_DEFAULT);
    if (ds < 0) {
        tt_fail(io, VPD_ERR_FORMAT, "cannot open dataset '%s'", r->name);
        return;
    }
    hid_t fs = H5Dget_space(ds);
    hsize_t have[H5S_MAX_RANK];
    int hnd = H5Sget_simple_extent_ndims(fs);
    bool ok = hnd == r->ndim;
    if (hnd > 0 && hnd <= H5S_MAX_RANK) H5Sget_simple_extent_dims(fs, have, NULL);
    for (int d = 0; ok && d < r->ndim; d++) ok = have[d] == (hsize_t)r->shape[d];
    if (!ok) {
        char hs[96] = "?", ws[96];
        hsize_t want[3];
        for (int d = 0; d < r->ndim; d++) want[d] = (hsize_t)r->shape[d];
        if (hnd > 0 && hnd <= H5S_MAX_RANK) shape_text(hs, sizeof hs, hnd, have);
        shape_text(ws, sizeof ws, r->ndim, want);
        tt_fail(io, VPD_ERR_SHAPE, "dataset '%s' has shape %s, this run expects %s (the config or layout changed?)",
                r->name, hs, ws);
    } else {
        hsize_t start[3], count[3];
        block_of(r, start, count);
        hid_t ms;
        select_part(r, fs, &ms, 0, count[0]);
        if (H5Dread(ds, mem_type(r->dtype), ms, fs, xfer(io, r), r->data) < 0)
            tt_fail(io, VPD_ERR_IO, "cannot read dataset '%s'", r->name);
        H5Sclose(ms);
    }
    H5Sclose(fs);
    H5Dclose(ds);
}

static void write_attr(tt_io *io, vpd_h5 *f, const vpd_table_attr *a) {
    vpd_status s = VPD_OK;
    switch (a->type) {
    case VPD_ATTR_INT: s = vpd_h5_set_attr_int(f, a->obj, a->name, a->i); break;
    case VPD_ATTR_DOUBLE: s = vpd_h5_set_attr_double(f, a->obj, a->name, a->d); break;
    case VPD_ATTR_STR: s = vpd_h5_set_attr_str(f, a->obj, a->name, a->s); break;
    }
    if (s != VPD_OK) tt_fail(io, s, "cannot write attribute '%s' of %s", a->name, a->obj);
}

static void read_attr(tt_io *io, vpd_h5 *f, vpd_table_attr *a) {
    if (a->mode == VPD_ATTR_INFO) return;
    if (!vpd_h5_has_attr(f, a->obj, a->name)) {
        tt_fail(io, VPD_ERR_FORMAT, "missing attribute '%s' of %s", a->name, a->obj);
        return;
    }
    vpd_status s = VPD_OK;
    int64_t i = 0;
    double d = 0;
    char *str = NULL;
    switch (a->type) {
    case VPD_ATTR_INT: s = vpd_h5_get_attr_int(f, a->obj, a->name, &i); break;
    case VPD_ATTR_DOUBLE: s = vpd_h5_get_attr_double(f, a->obj, a->name, &d); break;
    case VPD_ATTR_STR: s = vpd_h5_get_attr_str(f, a->obj, a->name, &str); break;
    }
    if (s != VPD_OK) {
        tt_fail(io, s, "cannot read attribute '%s' of %s: %s", a->name, a->obj, vpd_last_error());
        vpd_free(str);
        return;
    }
    const char *hint = a->hint ? a->hint : "";
    if (a->mode == VPD_ATTR_LOAD) {
        a->i = i;
        a->d = d;
        if (a->type == VPD_ATTR_STR) {
            free(a->s);
            a->s = strdup(str ? str : "");
        }
        a->loaded = true;
    } else if (a->type == VPD_ATTR_INT && i != a->i) {
        tt_fail(io, VPD_ERR_CONFIG, "attribute '%s' of %s is %lld in the file, %lld in this run%s%s", a->name, a->obj,
                (long long)i, (long long)a->i, hint[0] ? ": " : "", hint);
    } else if (a->type == VPD_ATTR_DOUBLE && d != a->d) {
        tt_fail(io, VPD_ERR_CONFIG, "attribute '%s' of %s is %.17g in the file, %.17g in this run%s%s", a->name, a->obj,
                d, a->d, hint[0] ? ": " : "", hint);
    } else if (a->type == VPD_ATTR_STR && strcmp(str ? str : "", a->s)) {
        tt_fail(io, VPD_ERR_CONFIG, "attribute '%s' of %s is '%.200s' in the file, '%.200s' in this run%s%s", a->name,
                a->obj, str ? str : "", a->s, hint[0] ? ": " : "", hint);
    }
    vpd_free(str);
}

static vpd_status finish(tt_io *io, const vpd_tensor_table *t) {
    H5Pclose(io->dxpl);
    H5Pclose(io->dxpl_coll);
    vpd_status s = io->nerr ? vpd_error(io->code, "%s", io->first) : VPD_OK;
    return vpd_all_agree(s, t->comm);
}

static void tt_open(tt_io *io, vpd_h5 *f) {
    memset(io, 0, sizeof *io);
    io->f = f;
    io->file = (hid_t)f->id;
    io->path = f->path;
    io->dxpl = H5Pcreate(H5P_DATASET_XFER);
    io->dxpl_coll = H5Pcreate(H5P_DATASET_XFER);
#ifdef H5_HAVE_PARALLEL
    H5Pset_dxpl_mpio(io->dxpl, H5FD_MPIO_INDEPENDENT);
    H5Pset_dxpl_mpio(io->dxpl_coll, H5FD_MPIO_COLLECTIVE);
#endif
}

vpd_status vpd_table_write_h5(vpd_h5 *f, const vpd_tensor_table *t) {
    tt_io io;
    tt_open(&io, f);
    for (int i = 0; i < t->n_attrs; i++) write_attr(&io, f, &t->attrs[i]);
    for (int i = 0; i < t->n; i++) write_row(&io, t, &t->rows[i]);
    return finish(&io, t);
}

vpd_status vpd_table_read_h5(vpd_h5 *f, vpd_tensor_table *t) {
    tt_io io;
    tt_open(&io, f);
    for (int i = 0; i < t->n_attrs; i++) read_attr(&io, f, &t->attrs[i]);
    /* a wrong format or version would only produce a list of missing datasets: stop at the
     * attributes (every rank reads the same file, so every rank stops here) */
    for (int i = 0; i < t->n && io.nerr == 0; i++) read_row(&io, &t->rows[i]);
    return finish(&io, t);
}

/* ---- whole files --------------------------------------------------------------------------------- */
vpd_status vpd_table_save(const char *path, const vpd_tensor_table *t) {
    const int rank = vpd_comm_rank(t->comm);
    long pid = (long)getpid();
    vpd_bcast(&pid, sizeof pid, 0, t->comm); /* one temporary name for the whole group */
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, pid);
    vpd_h5 f;
    VPD_TRY(vpd_all_agree(vpd_h5_open_mpi(&f, tmp, true, t->comm), t->comm));
    vpd_status s = vpd_table_write_h5(&f, t);
    vpd_status c = vpd_all_agree(vpd_h5_close(&f), t->comm);
    if (s == VPD_OK) s = c;
    if (s == VPD_OK && rank == 0 && rename(tmp, path) != 0)
        s = vpd_error(VPD_ERR_IO, "cannot rename %s to %s", tmp, path);
    s = vpd_all_agree(s, t->comm);
    if (s != VPD_OK && rank == 0) unlink(tmp);
    return s;
}

vpd_status vpd_table_load(const char *path, vpd_tensor_table *t) {
    vpd_h5 f;
    /* rank 0 opens it serially first: its messages say whether the file is missing or not HDF5 */
    vpd_status s = VPD_OK;
    if (vpd_comm_rank(t->comm) == 0 && (s = vpd_h5_open(&f, path, false)) == VPD_OK) vpd_h5_close(&f);
    VPD_TRY(vpd_all_agree(s, t->comm));
    VPD_TRY(vpd_all_agree(vpd_h5_open_mpi(&f, path, false, t->comm), t->comm));
    s = vpd_table_read_h5(&f, t);
    vpd_status c = vpd_h5_close(&f);
    return s != VPD_OK ? s : vpd_all_agree(c, t->comm);
}

/* ---- non-finite values ------------------------------------------------------------------- */
/* this rank's extent of axis a of row r */
static int64_t local_extent(const vpd_table_row *r, int a) {
    if ((r->shard & VPD_SHARD_BY_EXAMPLE) && a == 0) return r->nrows;
    if ((r->shard & VPD_SHARD_BY_COMPONENT) && a == r->comp_axis) return r->c_local;
    return r->shape[a];
}

static bool bad_at(const vpd_table_row *r, const void *data, int64_t off, double *v) {
    double x = r->dtype == VPD_TT_F32 ? (double)((const float *)data)[off] : (double)((const real *)data)[off];
    *v = x;
    return !isfinite(x);
}

bool vpd_table_row_nonfinite(const vpd_table_row *r, const void *data, int64_t *elem, double *value) {
    if (!data) data = r->data;
    if (!data || (r->dtype != VPD_TT_REAL && r->dtype != VPD_TT_F32)) return false;
    int64_t rows = 1, cols = local_extent(r, r->ndim - 1);
    for (int a = 0; a + 1 < r->ndim; a++) rows *= local_extent(r, a);
    double v;
    if (r->mem_ld == 0) { /* dense: one vectorisable pass, then locate */
        const int64_t n = rows * cols;
        double acc = 0; /* a sum of x·0 is NaN exactly when some x is not finite */
        if (r->dtype == VPD_TT_F32) {
            const float *p = data;
            float a = 0;
            for (int64_t i = 0; i < n; i++) a += p[i] * 0.0f;
            acc = a;
        } else {
            const real *p = data;
            real a = 0;
            for (int64_t i = 0; i < n; i++) a += p[i] * (real)0;
            acc = (double)a;
        }
        if (acc == 0) return false;
        for (int64_t i = 0; i < n; i++)
            if (bad_at(r, data, i, &v)) {
                if (elem) *elem = i;
                if (value) *value = v;
                return true;
            }
        return false;
    }
    if (r->ndim == 1) { rows = cols; cols = 1; }
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            if (bad_at(r, data, i * r->mem_ld + r->mem_col0 + j, &v)) {
                if (elem) *elem = i * cols + j;
                if (value) *value = v;
                return true;
            }
    return false;
}

int vpd_table_first_nonfinite(const vpd_tensor_table *t, int64_t *elem, double *value) {
    for (int i = 0; i < t->n; i++)
        if (vpd_table_row_nonfinite(&t->rows[i], NULL, elem, value)) return i;
    return -1;
}
