/* HDF5 helpers: files, typed datasets at slash paths, attributes.
 *
 * Everything vpd writes to HDF5 (run files, checkpoints, model.h5) goes through these few
 * functions, so the conventions live in one place: `real` tensors are float32 on disk
 * whatever the build's precision, groups along a dataset path are created on the fly,
 * strings are variable-length UTF-8 (what h5py writes and reads as str). HDF5 prints its
 * own error stack to stderr by default; that is switched off once (H5Eset_auto2) and the
 * innermost HDF5 description is appended to our own message, which names the file and
 * the dataset path. */
#define _POSIX_C_SOURCE 200809L
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpd/io.h"

static void h5_quiet(void) {
    static bool done = false;
    if (!done) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        done = true;
    }
}

/* innermost (most specific) description on the HDF5 error stack */
static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
    if (e->desc && e->desc[0]) snprintf((char *)data, 256, "%s", e->desc);
    return 0;
}

static const char *h5_detail(char buf[256]) {
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, buf);
    H5Eclear2(H5E_DEFAULT);
    return buf;
}

#define H5ERR(status, ...)                                                                     \
    do {                                                                                       \
        char _d[256], _m[900];                                                                 \
        snprintf(_m, sizeof _m, __VA_ARGS__);                                                  \
        h5_detail(_d);                                                                         \
        return vpd_error(status, "%s%s%s%s", _m, _d[0] ? " (HDF5: " : "", _d, _d[0] ? ")" : ""); \
    } while (0)

/* ---- files ------------------------------------------------------------------------ */

static void set_path(vpd_h5 *f, const char *path) { snprintf(f->path, sizeof f->path, "%s", path); }

vpd_status vpd_h5_create(vpd_h5 *f, const char *path) {
    h5_quiet();
    set_path(f, path);
    f->id = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f->id < 0) H5ERR(VPD_ERR_IO, "cannot create HDF5 file '%s'", path);
    return VPD_OK;
}

vpd_status vpd_h5_open(vpd_h5 *f, const char *path, bool writable) {
    h5_quiet();
    set_path(f, path);
    f->id = -1;
    FILE *probe = fopen(path, "rb");
    if (!probe) return vpd_error(VPD_ERR_IO, "cannot open HDF5 file '%s': no such file or not readable", path);
    fclose(probe);
    if (H5Fis_hdf5(path) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return vpd_error(VPD_ERR_FORMAT, "'%s' is not an HDF5 file (or is corrupt)", path);
    }
    f->id = H5Fopen(path, writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f->id < 0) H5ERR(VPD_ERR_IO, "cannot open HDF5 file '%s'%s", path, writable ? " for writing" : "");
    return VPD_OK;
}

vpd_status vpd_h5_open_mpi(vpd_h5 *f, const char *path, bool create, MPI_Comm comm) {
    h5_quiet();
    set_path(f, path);
    f->id = -1;
#ifdef H5_HAVE_PARALLEL
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
    f->id = create ? H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl) : H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (f->id < 0) H5ERR(VPD_ERR_IO, "cannot %s HDF5 file '%s' (MPI-IO, collective)", create ? "create" : "open", path);
    return VPD_OK;
#else
    return vpd_error(VPD_ERR_INTERNAL, "%s: this HDF5 has no parallel support", path);
#endif
}

/* a file whose H5Fclose failed (its last flush: a full disk) stays half-open inside libhdf5,
 * and libhdf5's own clean-up when MPI finalises then crashes on it (H5F__close_cb, issue 17) */
static bool g_unclosed = false;
bool vpd_h5_unclosed(void) { return g_unclosed; }

vpd_status vpd_h5_close(vpd_h5 *f) {
    if (f->id < 0) return VPD_OK;
    herr_t e = H5Fclose(f->id);
    f->id = -1;
    if (e < 0) g_unclosed = true;
    if (e < 0) H5ERR(VPD_ERR_IO, "closing HDF5 file '%s' failed", f->path);
    return VPD_OK;
}

/* ---- paths ------------------------------------------------------------------------- */

bool vpd_h5_exists(const vpd_h5 *f, const char *path) {
    h5_quiet();
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    if (!strcmp(buf, "/") || !buf[0]) return true;
    /* H5Lexists fails (rather than returning 0) when an intermediate group is missing, so
     * test every prefix in turn. */
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            htri_t e = H5Lexists(f->id, buf, H5P_DEFAULT);
            if (e <= 0) {
                H5Eclear2(H5E_DEFAULT);
                return false;
            }
            if (c == '\0') break;
            *p = c;
        }
    }
    /* the final link may dangle (soft link): also check the object */
    htri_t o = H5Oexists_by_name(f->id, path, H5P_DEFAULT);
    H5Eclear2(H5E_DEFAULT);
    return o > 0;
}

vpd_status vpd_h5_make_groups(vpd_h5 *f, const char *path) {
    h5_quiet();
    if (vpd_h5_exists(f, path)) return VPD_OK;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t g = H5Gcreate2(f->id, path, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    if (g < 0) H5ERR(VPD_ERR_IO, "%s: cannot create group '%s'", f->path, path);
    H5Gclose(g);
    return VPD_OK;
}

static hid_t open_dataset(const vpd_h5 *f, const char *path, vpd_status *s) {
    if (!vpd_h5_exists(f, path)) {
        *s = vpd_error(VPD_ERR_FORMAT, "%s: dataset '%s' not found", f->path, path);
        return -1;
    }
    hid_t d = H5Dopen2(f->id, path, H5P_DEFAULT);
    if (d < 0) {
        char det[256];
        h5_detail(det);
        *s = vpd_error(VPD_ERR_FORMAT, "%s: '%s' exists but is not a readable dataset%s%s%s", f->path, path,
                       det[0] ? " (HDF5: " : "", det, det[0] ? ")" : "");
    }
    return d;
}

static vpd_status space_shape(const vpd_h5 *f, const char *path, hid_t d, int *ndim, hsize_t dims[H5S_MAX_RANK]) {
    hid_t sp = H5Dget_space(d);
    int nd = H5Sget_simple_extent_ndims(sp);
    if (nd < 0) {
        H5Sclose(sp);
        H5ERR(VPD_ERR_FORMAT, "%s: cannot read the shape of dataset '%s'", f->path, path);
    }
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    *ndim = nd;
    return VPD_OK;
}

vpd_status vpd_h5_dataset_shape(const vpd_h5 *f, const char *path, int *ndim, int64_t shape[VPD_MAX_DIMS]) {
    vpd_status s = VPD_OK;
    hid_t d = open_dataset(f, path, &s);
    if (d < 0) return s;
    hsize_t dims[H5S_MAX_RANK];
    int nd = 0;
    s = space_shape(f, path, d, &nd, dims);
    H5Dclose(d);
    if (s != VPD_OK) return s;
    if (nd > VPD_MAX_DIMS)
        return vpd_error(VPD_ERR_SHAPE, "%s: dataset '%s' has %d dimensions; vpd handles at most %d", f->path, path,
                         nd, VPD_MAX_DIMS);
    *ndim = nd;
    for (int i = 0; i < nd; i++) shape[i] = (int64_t)dims[i];
    return VPD_OK;
}

/* ---- typed datasets ---------------------------------------------------------------- */

static vpd_status write_ds(vpd_h5 *f, const char *path, hid_t mem_type, hid_t file_type, const void *x, int ndim,
                           const int64_t *shape) {
    h5_quiet();
    if (ndim < 0 || ndim > H5S_MAX_RANK)
        return vpd_error(VPD_ERR_ARG, "%s: dataset '%s': bad rank %d", f->path, path, ndim);
    hsize_t dims[H5S_MAX_RANK];
    for (int i = 0; i < ndim; i++) dims[i] = (hsize_t)shape[i];
    hid_t d = -1;
    if (vpd_h5_exists(f, path)) {
        /* same shape and type: overwrite in place (checkpoints rewrite the same tensors);
         * otherwise replace the dataset */
        d = H5Dopen2(f->id, path, H5P_DEFAULT);
        bool same = false;
        if (d >= 0) {
            hsize_t old[H5S_MAX_RANK];
            int nd = -1;
            hid_t ft = H5Dget_type(d);
            if (space_shape(f, path, d, &nd, old) == VPD_OK && nd == ndim && H5Tequal(ft, file_type) > 0) {
                same = true;
                for (int i = 0; i < nd; i++) same = same && old[i] == dims[i];
            }
            H5Tclose(ft);
        }
        if (!same) {
            if (d >= 0) H5Dclose(d);
            d = -1;
            if (H5Ldelete(f->id, path, H5P_DEFAULT) < 0)
                H5ERR(VPD_ERR_IO, "%s: cannot replace dataset '%s'", f->path, path);
        }
    }
    if (d < 0) {
        hid_t sp = ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(ndim, dims, NULL);
        hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
        H5Pset_create_intermediate_group(lcpl, 1);
        d = H5Dcreate2(f->id, path, file_type, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        H5Pclose(lcpl);
        H5Sclose(sp);
        if (d < 0) H5ERR(VPD_ERR_IO, "%s: cannot create dataset '%s'", f->path, path);
    }
    herr_t e = H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Dclose(d);
    if (e < 0) H5ERR(VPD_ERR_IO, "%s: writing dataset '%s' failed", f->path, path);
    return VPD_OK;
}

static vpd_status check_class(const vpd_h5 *f, const char *path, hid_t d, H5T_class_t want) {
    hid_t t = H5Dget_type(d);
    H5T_class_t c = H5Tget_class(t);
    H5Tclose(t);
    if (c == want) return VPD_OK;
    return vpd_error(VPD_ERR_FORMAT, "%s: dataset '%s' holds %s values, expected %s", f->path, path,
                     c == H5T_FLOAT ? "floating-point" : c == H5T_INTEGER ? "integer" : c == H5T_STRING ? "string"
                                                                                                          : "non-numeric",
                     want == H5T_FLOAT ? "floating-point" : "integer");
}

static vpd_status read_ds(const vpd_h5 *f, const char *path, hid_t mem_type, H5T_class_t cls, void *x, int ndim,
                          const int64_t *shape) {
    h5_quiet();
    vpd_status s = VPD_OK;
    hid_t d = open_dataset(f, path, &s);
    if (d < 0) return s;
    hsize_t dims[H5S_MAX_RANK];
    int nd = 0;
    if ((s = space_shape(f, path, d, &nd, dims)) != VPD_OK || (s = check_class(f, path, d, cls)) != VPD_OK) {
        H5Dclose(d);
        return s;
    }
    bool same = nd == ndim;
    for (int i = 0; same && i < nd; i++) same = (int64_t)dims[i] == shape[i];
    if (!same) {
        int64_t found[H5S_MAX_RANK];
        for (int i = 0; i < nd; i++) found[i] = (int64_t)dims[i];
        char a[128], b[128];
        H5Dclose(d);
        return vpd_error(VPD_ERR_SHAPE, "%s: dataset '%s': expected shape %s, found %s", f->path, path,
                         vpd_shape_str(a, sizeof a, ndim, shape), vpd_shape_str(b, sizeof b, nd, found));
    }
    herr_t e = H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Dclose(d);
    if (e < 0) H5ERR(VPD_ERR_IO, "%s: reading dataset '%s' failed", f->path, path);
    return VPD_OK;
}

#define REAL_MEM_TYPE (VPD_REAL_IS_DOUBLE ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT)

vpd_status vpd_h5_write_real(vpd_h5 *f, const char *path, const real *x, int ndim, const int64_t *shape) {
    return write_ds(f, path, REAL_MEM_TYPE, H5T_IEEE_F32LE, x, ndim, shape);
}
vpd_status vpd_h5_read_real(const vpd_h5 *f, const char *path, real *x, int ndim, const int64_t *shape) {
    return read_ds(f, path, REAL_MEM_TYPE, H5T_FLOAT, x, ndim, shape);
}
vpd_status vpd_h5_read_real_alloc(const vpd_h5 *f, const char *path, real **x, int *ndim,
                                  int64_t shape[VPD_MAX_DIMS]) {
    *x = NULL;
    VPD_TRY(vpd_h5_dataset_shape(f, path, ndim, shape));
    size_t n = 1;
    for (int i = 0; i < *ndim; i++) n *= (size_t)shape[i];
    real *buf = vpd_malloc((n ? n : 1) * sizeof(real), path);
    if (!buf) return VPD_ERR_MEM;
    vpd_status s = vpd_h5_read_real(f, path, buf, *ndim, shape);
    if (s != VPD_OK) {
        vpd_free(buf);
        return s;
    }
    *x = buf;
    return VPD_OK;
}
vpd_status vpd_h5_write_i32(vpd_h5 *f, const char *path, const int32_t *x, int ndim, const int64_t *shape) {
    return write_ds(f, path, H5T_NATIVE_INT32, H5T_STD_I32LE, x, ndim, shape);
}
vpd_status vpd_h5_read_i32(const vpd_h5 *f, const char *path, int32_t *x, int ndim, const int64_t *shape) {
    return read_ds(f, path, H5T_NATIVE_INT32, H5T_INTEGER, x, ndim, shape);
}
vpd_status vpd_h5_write_u32(vpd_h5 *f, const char *path, const uint32_t *x, int ndim, const int64_t *shape) {
    return write_ds(f, path, H5T_NATIVE_UINT32, H5T_STD_U32LE, x, ndim, shape);
}
vpd_status vpd_h5_read_u32(const vpd_h5 *f, const char *path, uint32_t *x, int ndim, const int64_t *shape) {
    return read_ds(f, path, H5T_NATIVE_UINT32, H5T_INTEGER, x, ndim, shape);
}
vpd_status vpd_h5_write_i64(vpd_h5 *f, const char *path, const int64_t *x, int ndim, const int64_t *shape) {
    return write_ds(f, path, H5T_NATIVE_INT64, H5T_STD_I64LE, x, ndim, shape);
}
vpd_status vpd_h5_read_i64(const vpd_h5 *f, const char *path, int64_t *x, int ndim, const int64_t *shape) {
    return read_ds(f, path, H5T_NATIVE_INT64, H5T_INTEGER, x, ndim, shape);
}

/* ---- attributes ------------------------------------------------------------------ */

bool vpd_h5_has_attr(const vpd_h5 *f, const char *obj, const char *name) {
    h5_quiet();
    if (!vpd_h5_exists(f, obj)) return false;
    htri_t e = H5Aexists_by_name(f->id, obj, name, H5P_DEFAULT);
    H5Eclear2(H5E_DEFAULT);
    return e > 0;
}

static vpd_status set_attr(vpd_h5 *f, const char *obj, const char *name, hid_t type, const void *value) {
    h5_quiet();
    VPD_TRY(vpd_h5_make_groups(f, obj));
    if (H5Aexists_by_name(f->id, obj, name, H5P_DEFAULT) > 0 && H5Adelete_by_name(f->id, obj, name, H5P_DEFAULT) < 0)
        H5ERR(VPD_ERR_IO, "%s: cannot replace attribute '%s' of '%s'", f->path, name, obj);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate_by_name(f->id, obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Sclose(sp);
    if (a < 0) H5ERR(VPD_ERR_IO, "%s: cannot create attribute '%s' on '%s'", f->path, name, obj);
    herr_t e = H5Awrite(a, type, value);
    H5Aclose(a);
    if (e < 0) H5ERR(VPD_ERR_IO, "%s: writing attribute '%s' of '%s' failed", f->path, name, obj);
    return VPD_OK;
}

static hid_t open_attr(const vpd_h5 *f, const char *obj, const char *name, vpd_status *s) {
    h5_quiet();
    if (!vpd_h5_has_attr(f, obj, name)) {
        *s = vpd_error(VPD_ERR_FORMAT, "%s: attribute '%s' of '%s' not found", f->path, name, obj);
        return -1;
    }
    hid_t a = H5Aopen_by_name(f->id, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) *s = vpd_error(VPD_ERR_FORMAT, "%s: cannot open attribute '%s' of '%s'", f->path, name, obj);
    return a;
}

static vpd_status get_attr_num(const vpd_h5 *f, const char *obj, const char *name, hid_t mem_type, void *value) {
    vpd_status s = VPD_OK;
    hid_t a = open_attr(f, obj, name, &s);
    if (a < 0) return s;
    hid_t t = H5Aget_type(a);
    H5T_class_t c = H5Tget_class(t);
    H5Tclose(t);
    hid_t sp = H5Aget_space(a);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    if ((c != H5T_INTEGER && c != H5T_FLOAT) || n != 1) {
        H5Aclose(a);
        return vpd_error(VPD_ERR_FORMAT, "%s: attribute '%s' of '%s' is not a single number", f->path, name, obj);
    }
    herr_t e = H5Aread(a, mem_type, value);
    H5Aclose(a);
    if (e < 0) H5ERR(VPD_ERR_FORMAT, "%s: reading attribute '%s' of '%s' failed", f->path, name, obj);
    return VPD_OK;
}

vpd_status vpd_h5_set_attr_int(vpd_h5 *f, const char *obj, const char *name, int64_t value) {
    return set_attr(f, obj, name, H5T_NATIVE_INT64, &value);
}
vpd_status vpd_h5_get_attr_int(const vpd_h5 *f, const char *obj, const char *name, int64_t *value) {
    return get_attr_num(f, obj, name, H5T_NATIVE_INT64, value);
}
vpd_status vpd_h5_set_attr_double(vpd_h5 *f, const char *obj, const char *name, double value) {
    return set_attr(f, obj, name, H5T_NATIVE_DOUBLE, &value);
}
vpd_status vpd_h5_get_attr_double(const vpd_h5 *f, const char *obj, const char *name, double *value) {
    return get_attr_num(f, obj, name, H5T_NATIVE_DOUBLE, value);
}

vpd_status vpd_h5_set_attr_str(vpd_h5 *f, const char *obj, const char *name, const char *value) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    vpd_status s = set_attr(f, obj, name, t, &value);
    H5Tclose(t);
    return s;
}

vpd_status vpd_h5_get_attr_str(const vpd_h5 *f, const char *obj, const char *name, char **value) {
    *value = NULL;
    vpd_status s = VPD_OK;
    hid_t a = open_attr(f, obj, name, &s);
    if (a < 0) return s;
    hid_t ft = H5Aget_type(a);
    /* one string: H5Aread writes one element per point of the dataspace, and the buffers
     * below hold one (a damaged file's 1000-point attribute would overrun them) */
    hid_t sp = H5Aget_space(a);
    hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (sp >= 0) H5Sclose(sp);
    if (H5Tget_class(ft) != H5T_STRING || np != 1) {
        H5Tclose(ft);
        H5Aclose(a);
        return vpd_error(VPD_ERR_FORMAT, "%s: attribute '%s' of '%s' is not a single string%s", f->path, name, obj,
                         np != 1 ? " (it has several elements, or none)" : "");
    }
    hid_t mt = H5Tcopy(H5T_C_S1);
    herr_t e;
    char *out = NULL;
    if (H5Tis_variable_str(ft) > 0) {
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(ft));
        char *tmp = NULL;
        e = H5Aread(a, mt, &tmp);
        if (e >= 0) {
            size_t n = tmp ? strlen(tmp) : 0;
            out = vpd_malloc(n + 1, name);
            if (out) {
                if (n) memcpy(out, tmp, n);
                out[n] = '\0';
            }
            H5free_memory(tmp);
        }
    } else {
        size_t n = H5Tget_size(ft);
        H5Tset_size(mt, n + 1); /* room for the terminator HDF5 adds with NULLTERM */
        H5Tset_strpad(mt, H5T_STR_NULLTERM);
        out = vpd_malloc(n + 1, name);
        e = out ? H5Aread(a, mt, out) : 0;
        if (out) out[n] = '\0';
    }
    H5Tclose(mt);
    H5Tclose(ft);
    H5Aclose(a);
    if (e < 0) {
        vpd_free(out);
        H5ERR(VPD_ERR_FORMAT, "%s: reading string attribute '%s' of '%s' failed", f->path, name, obj);
    }
    if (!out) return VPD_ERR_MEM;
    *value = out;
    return VPD_OK;
}

/* ---- streamed rows ---------------------------------------------------------------------- */
vpd_status vpd_h5_rows_create(vpd_h5_rows *w, const vpd_h5 *f, const char *path, int ndim, const int64_t *dims) {
    memset(w, 0, sizeof *w);
    w->ds = w->fspace = -1;
    if (ndim < 1 || ndim > 3) return vpd_error(VPD_ERR_ARG, "dataset '%s': %d axes (1 to 3 supported)", path, ndim);
    hsize_t hd[3];
    for (int i = 0; i < ndim; i++) hd[i] = (hsize_t)(w->dims[i] = dims[i]);
    w->ndim = ndim;
    w->f = f;
    snprintf(w->name, sizeof w->name, "%s", path);
    w->fspace = H5Screate_simple(ndim, hd, NULL);
    w->ds = w->fspace < 0 ? -1 : H5Dcreate2((hid_t)f->id, path, H5T_IEEE_F32LE, (hid_t)w->fspace, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (w->ds < 0) {
        vpd_h5_rows_close(w);
        return vpd_error(VPD_ERR_IO, "cannot create dataset '%s' in '%s'", path, f->path);
    }
    return VPD_OK;
}

vpd_status vpd_h5_rows_write(vpd_h5_rows *w, int64_t row0, int64_t nrows, const real *x) {
    hsize_t start[3] = {(hsize_t)row0, 0, 0}, count[3] = {(hsize_t)nrows, 0, 0};
    for (int i = 1; i < w->ndim; i++) count[i] = (hsize_t)w->dims[i];
    hid_t ms = H5Screate_simple(w->ndim, count, NULL);
    hid_t memtype = VPD_REAL_IS_DOUBLE ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT;
    bool ok = ms >= 0 && row0 >= 0 && row0 + nrows <= w->dims[0] &&
              H5Sselect_hyperslab((hid_t)w->fspace, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
              H5Dwrite((hid_t)w->ds, memtype, ms, (hid_t)w->fspace, H5P_DEFAULT, x) >= 0;
    if (ms >= 0) H5Sclose(ms);
    if (!ok)
        return vpd_error(VPD_ERR_IO, "writing rows %lld..%lld of '%s' to '%s'", (long long)row0, (long long)(row0 + nrows - 1),
                         w->name, w->f ? w->f->path : "?");
    return VPD_OK;
}

void vpd_h5_rows_close(vpd_h5_rows *w) {
    if (w->ds >= 0) H5Dclose((hid_t)w->ds);
    if (w->fspace >= 0) H5Sclose((hid_t)w->fspace);
    w->ds = w->fspace = -1;
}
