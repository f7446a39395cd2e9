/* vpd io: the file formats of vpd.
 *
 *  - safetensors (the Hugging Face weights format): 8-byte little-endian header
 *    length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {...}},
 *    then raw little-endian data. Reader converts F32/F64/F16/BF16 to `real`, checks
 *    the expected shape and finiteness; writer writes F32 (atomically: temp + rename).
 *  - HDF5 helpers: files, `real` tensors stored as float32 datasets at a path (groups
 *    created on the way), integer datasets, string/int/double attributes. HDF5's own
 *    error printing is silenced; every failure becomes one vpd message naming the file
 *    and the dataset path.
 *  - model directories, like Hugging Face ones: config.json (reference field names,
 *    "model_type" picks the kind) + model.safetensors (or model.h5, one dataset per
 *    PyTorch parameter name at the root).
 *
 * Every function returning vpd_status leaves a message in vpd_last_error() on failure. */
#ifndef VPD_IO_H
#define VPD_IO_H

#include <mpi.h>
#include <stdio.h>

#include "vpd/core.h"

/* ---- safetensors ------------------------------------------------------------------ */
#define VPD_ST_MAX_DIMS 8

typedef struct {
    char name[160];
    char dtype[8];   /* as in the file: "F32", "BF16", "I64", ... */
    int ndim;        /* 0 for a scalar */
    int64_t shape[VPD_ST_MAX_DIMS];
    uint64_t begin, end; /* absolute byte offsets in the file */
} vpd_st_entry;

typedef struct {
    char path[512];
    void *fp;            /* FILE*, open while the reader is */
    uint64_t file_size, data_start;
    int n;               /* entries, in header order */
    vpd_st_entry *entries;
    int n_meta;          /* "__metadata__" string pairs */
    char **meta_keys, **meta_vals;
} vpd_safetensors;

/* Open and validate the header (length, JSON, dtypes, shapes vs byte sizes, offsets inside
 * the file). On failure nothing stays open. Close with vpd_st_close. */
vpd_status vpd_st_open(vpd_safetensors *st, const char *path);
void vpd_st_close(vpd_safetensors *st);
/* entry index or -1 */
int vpd_st_find(const vpd_safetensors *st, const char *name);
/* metadata value or NULL */
const char *vpd_st_metadata(const vpd_safetensors *st, const char *key);
/* Read tensor `name` into out (caller-sized), converting to real. Fails unless the file's
 * shape equals (ndim, shape), the dtype is F32/F64/F16/BF16 and every value is finite. */
vpd_status vpd_st_read(vpd_safetensors *st, const char *name, real *out, int ndim, const int64_t *shape);
/* Same, allocating *out (vpd_malloc; free with vpd_free) and returning its shape (ndim <= 4). */
vpd_status vpd_st_read_alloc(vpd_safetensors *st, const char *name, real **out, int *ndim,
                             int64_t shape[VPD_MAX_DIMS]);
/* Write n tensors as F32 (names = t[i].name, contiguous views) with optional string
 * metadata pairs (meta_kv = {k0, v0, k1, v1, ...}, n_meta pairs). The header is padded
 * with spaces to a multiple of 8 bytes. Written to "<path>.tmp-<pid>" and renamed. */
vpd_status vpd_st_write(const char *path, const vpd_tensor *t, int n, const char *const *meta_kv, int n_meta);

/* ---- HDF5 ------------------------------------------------------------------------- */
typedef struct {
    int64_t id; /* hid_t */
    char path[512];
} vpd_h5;

/* create (truncating) / open an existing file with the default (serial) driver */
vpd_status vpd_h5_create(vpd_h5 *f, const char *path);
vpd_status vpd_h5_open(vpd_h5 *f, const char *path, bool writable);
/* Collective over comm: the MPI-IO driver. create=true truncates, false opens read-only.
 * Every rank of comm calls it. */
vpd_status vpd_h5_open_mpi(vpd_h5 *f, const char *path, bool create, MPI_Comm comm);
vpd_status vpd_h5_close(vpd_h5 *f);
/* true once an H5Fclose failed (a full disk during the last flush): libhdf5 keeps that file
 * half-open and its clean-up when MPI finalises would crash on it, so vpd then ends without
 * finalising MPI (src/cli/main.c) */
bool vpd_h5_unclosed(void);
/* true if every component of the path ("/a/b/c" or "a/b/c") exists (group or dataset) */
bool vpd_h5_exists(const vpd_h5 *f, const char *path);
/* create the groups along path (mkdir -p) */
vpd_status vpd_h5_make_groups(vpd_h5 *f, const char *path);
/* shape of a dataset (ndim <= 4) */
vpd_status vpd_h5_dataset_shape(const vpd_h5 *f, const char *path, int *ndim, int64_t shape[VPD_MAX_DIMS]);

/* `real` tensors: stored as float32 (any float dataset is read, HDF5 converts). A dataset
 * already at path is replaced. Readers check the shape; they do not check finiteness. */
vpd_status vpd_h5_write_real(vpd_h5 *f, const char *path, const real *x, int ndim, const int64_t *shape);
vpd_status vpd_h5_read_real(const vpd_h5 *f, const char *path, real *x, int ndim, const int64_t *shape);
vpd_status vpd_h5_read_real_alloc(const vpd_h5 *f, const char *path, real **x, int *ndim,
                                  int64_t shape[VPD_MAX_DIMS]);
/* integer datasets (stored with the same width) */
vpd_status vpd_h5_write_i32(vpd_h5 *f, const char *path, const int32_t *x, int ndim, const int64_t *shape);
vpd_status vpd_h5_read_i32(const vpd_h5 *f, const char *path, int32_t *x, int ndim, const int64_t *shape);
vpd_status vpd_h5_write_u32(vpd_h5 *f, const char *path, const uint32_t *x, int ndim, const int64_t *shape);
vpd_status vpd_h5_read_u32(const vpd_h5 *f, const char *path, uint32_t *x, int ndim, const int64_t *shape);
vpd_status vpd_h5_write_i64(vpd_h5 *f, const char *path, const int64_t *x, int ndim, const int64_t *shape);
vpd_status vpd_h5_read_i64(const vpd_h5 *f, const char *path, int64_t *x, int ndim, const int64_t *shape);

/* Attributes on the group or dataset at obj ("/" for the root; groups are created by the
 * setters when missing). Strings are variable-length UTF-8 (h5py reads them as str); the
 * string getter also reads fixed-length strings and returns a vpd_malloc'd copy. */
vpd_status vpd_h5_set_attr_str(vpd_h5 *f, const char *obj, const char *name, const char *value);
vpd_status vpd_h5_get_attr_str(const vpd_h5 *f, const char *obj, const char *name, char **value);
vpd_status vpd_h5_set_attr_int(vpd_h5 *f, const char *obj, const char *name, int64_t value);
vpd_status vpd_h5_get_attr_int(const vpd_h5 *f, const char *obj, const char *name, int64_t *value);
vpd_status vpd_h5_set_attr_double(vpd_h5 *f, const char *obj, const char *name, double value);
vpd_status vpd_h5_get_attr_double(const vpd_h5 *f, const char *obj, const char *name, double *value);
bool vpd_h5_has_attr(const vpd_h5 *f, const char *obj, const char *name);

/* A float32 dataset of `ndim` (≤ 3) axes written in blocks of rows (axis 0) as they are
 * produced, so outputs larger than memory stream to disk: create, write rows [row0,
 * row0 + nrows) from x (row-major `real`, converted to float32), close. */
typedef struct {
    int64_t ds, fspace; /* hid_t */
    int ndim;
    int64_t dims[3];
    char name[256];
    const vpd_h5 *f;
} vpd_h5_rows;
vpd_status vpd_h5_rows_create(vpd_h5_rows *w, const vpd_h5 *f, const char *path, int ndim, const int64_t *dims);
vpd_status vpd_h5_rows_write(vpd_h5_rows *w, int64_t row0, int64_t nrows, const real *x);
void vpd_h5_rows_close(vpd_h5_rows *w);

/* mkdir -p; VPD_ERR_IO naming the path on failure */
vpd_status vpd_mkdirs(const char *dir);
/* Resuming a run: keep the records of a metrics.jsonl with "step" < keep_below (the resumed
 * run recomputes and logs the rest; a torn last line is dropped too), rewritten through
 * PATH.tmp and rename. A missing file is no error. (vpd decompose and vpd transcoder.) */
vpd_status vpd_metrics_truncate(const char *path, int keep_below);

/* A JSON string literal of s[0..n) (vpd_json_str: NUL-terminated, NULL as ""): RFC 8259
 * escapes; bytes that are not well-formed UTF-8 are written as \ufffd, so the file is always
 * valid JSON (src/io/json_write.c). */
void vpd_json_strn(FILE *f, const char *s, size_t n);
void vpd_json_str(FILE *f, const char *s);

#endif
