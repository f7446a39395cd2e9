/* vpd tensor_table: a method-agnostic table of named tensors with their sharding, written and
 * read collectively with parallel HDF5 (src/io/tensor_table.c). llm.c's ParameterTensors is
 * the model: whoever owns some state lists it once as rows, and io/ moves the rows without
 * knowing what they mean.
 *
 * A row is one HDF5 dataset: its path, a pointer to THIS rank's block of it, the element type,
 * the global shape (1–3 axes) and the sharding rule, a combination of
 *   REPLICATED          every rank of the file's communicator holds the whole tensor
 *   BY_EXAMPLE          axis 0 is split over the data-parallel replicas: this rank holds rows
 *                       [row0, row0 + nrows) (replicated over the component group)
 *   BY_COMPONENT        axis `comp_axis` is split into contiguous component blocks: this rank
 *                       holds [c0, c0 + C_local) of C_total (replicated over the replicas)
 * (BY_EXAMPLE | BY_COMPONENT: per-example rows of a component block, held by one rank).
 * The block is row-major in memory; a row may be a strided view into a wider buffer
 * (mem_ld, mem_col0 below), so interleaved state needs no copy.
 *
 * Writing: every rank creates every dataset (HDF5 metadata is collective); a block held by
 * several ranks (its replicas) is written in equal slices along its first axis, one per
 * replica; so each byte is written once. Reading: every rank reads its whole block. A global
 * shape that differs from the file's is an error naming the dataset and both shapes.
 *
 * Attributes ride along: {object path, name, int | double | string} with a mode for reads —
 *   LOAD   the file's value is stored in the attribute (read it back with vpd_table_get_attr)
 *   CHECK  the file's value must equal the table's (an error names both and the hint)
 *   INFO   written for readers, ignored on read (an absent one is fine)
 * Attribute values must be the same on every rank.
 *
 * The grid: rank = dp_rank·cp + cp_rank of `comm` (the layout of include/vpd/comm.h). The
 * table does not own the data; it owns its row/attribute arrays and strings
 * (vpd_table_free). */
#ifndef VPD_TENSOR_TABLE_H
#define VPD_TENSOR_TABLE_H

#include <mpi.h>

#include "vpd/core.h"
#include "vpd/io.h"

#define VPD_TABLE_NAME_MAX 256

typedef enum { VPD_TT_REAL = 0, VPD_TT_F32, VPD_TT_I32, VPD_TT_I64 } vpd_table_dtype;

enum { VPD_SHARD_REPLICATED = 0, VPD_SHARD_BY_EXAMPLE = 1, VPD_SHARD_BY_COMPONENT = 2 };

typedef struct {
    char name[VPD_TABLE_NAME_MAX]; /* HDF5 dataset path, "/a/b/c" */
    void *data;                     /* this rank's block */
    vpd_table_dtype dtype;
    int ndim;                       /* 1..3 */
    int64_t shape[3];               /* global shape */
    int shard;                      /* VPD_SHARD_* bits */
    int64_t row0, nrows;            /* BY_EXAMPLE: this rank's rows of axis 0 */
    int comp_axis;                  /* BY_COMPONENT: the component axis */
    int64_t c0, c_local;            /* BY_COMPONENT: this rank's block of that axis */
    int64_t mem_ld, mem_col0;       /* strided view (0: dense): the block lives in a wider
                                       row-major buffer of rows of mem_ld elements — for
                                       ndim ≥ 2 its last axis is columns [mem_col0, +n) of
                                       them, for ndim = 1 it is column mem_col0 */
} vpd_table_row;

typedef enum { VPD_ATTR_INT = 0, VPD_ATTR_DOUBLE, VPD_ATTR_STR } vpd_attr_type;
typedef enum { VPD_ATTR_INFO = 0, VPD_ATTR_LOAD, VPD_ATTR_CHECK } vpd_attr_mode;

typedef struct {
    char obj[VPD_TABLE_NAME_MAX]; /* "/" for the root; groups are created on write */
    char name[64];
    vpd_attr_type type;
    vpd_attr_mode mode;
    int64_t i;
    double d;
    char *s;                      /* owned */
    char *hint;                   /* CHECK: what to change when it differs (owned, may be NULL) */
    bool loaded;                  /* LOAD: set by a read */
} vpd_table_attr;

typedef struct {
    MPI_Comm comm;                /* the file is opened collectively over it */
    int dp, cp, dp_rank, cp_rank; /* its layout: rank = dp_rank·cp + cp_rank */
    bool real_as_f32;             /* store VPD_TT_REAL as float32 (run files) instead of `real` */
    int n, cap;
    vpd_table_row *rows;
    int n_attrs, cap_attrs;
    vpd_table_attr *attrs;
} vpd_tensor_table;

/* An empty table over comm with the dp × cp layout (dp·cp = size of comm). */
void vpd_table_init(vpd_tensor_table *t, MPI_Comm comm, int dp, int dp_rank, int cp, int cp_rank);
void vpd_table_free(vpd_tensor_table *t);

/* Rows. shape has ndim entries (the global shape). Return VPD_ERR_MEM / VPD_ERR_SHAPE. */
vpd_status vpd_table_add(vpd_tensor_table *t, const vpd_table_row *row);
vpd_status vpd_table_replicated(vpd_tensor_table *t, const char *name, void *data, vpd_table_dtype dt, int ndim,
                                const int64_t *shape);
/* shape[0] is the global row count; this rank holds rows [row0, row0 + nrows) */
vpd_status vpd_table_by_example(vpd_tensor_table *t, const char *name, void *data, vpd_table_dtype dt, int ndim,
                                const int64_t *shape, int64_t row0, int64_t nrows);
/* shape[axis] = C_total; this rank holds [c0, c0 + c_local) of that axis */
vpd_status vpd_table_by_component(vpd_tensor_table *t, const char *name, void *data, vpd_table_dtype dt, int ndim,
                                  const int64_t *shape, int axis, int64_t c0, int64_t c_local);
/* the last row added: make it a strided view (see the top of this file) */
void vpd_table_last_strided(vpd_tensor_table *t, int64_t mem_ld, int64_t mem_col0);
/* index of the row with that name, or -1 */
int vpd_table_find(const vpd_tensor_table *t, const char *name);

/* Non-finite values (NaN, ±inf) in this rank's block of a real / float32 row (data: the
 * block to scan in the row's layout, NULL = row->data): true with the element's index within
 * the block (row-major over the local extents) and its value. One vectorised pass when clean. */
bool vpd_table_row_nonfinite(const vpd_table_row *r, const void *data, int64_t *elem, double *value);
/* the first row of this rank holding a non-finite value (elem, value as above), or -1. Local. */
int vpd_table_first_nonfinite(const vpd_tensor_table *t, int64_t *elem, double *value);

/* Attributes (values copied). */
vpd_status vpd_table_attr_int(vpd_tensor_table *t, const char *obj, const char *name, int64_t v, vpd_attr_mode mode,
                              const char *hint);
vpd_status vpd_table_attr_double(vpd_tensor_table *t, const char *obj, const char *name, double v, vpd_attr_mode mode,
                                 const char *hint);
vpd_status vpd_table_attr_str(vpd_tensor_table *t, const char *obj, const char *name, const char *v,
                              vpd_attr_mode mode, const char *hint);
/* the attribute (after a read: LOAD ones hold the file's value), or NULL */
const vpd_table_attr *vpd_table_get_attr(const vpd_tensor_table *t, const char *obj, const char *name);

/* Collective over t->comm on a file opened with vpd_h5_open_mpi over the same comm: write
 * every attribute and row / read and check every attribute, then read every row. Errors are
 * gathered and agreed (vpd_all_agree): every rank returns the same status and message, naming
 * the file and the dataset or attribute. */
vpd_status vpd_table_write_h5(vpd_h5 *f, const vpd_tensor_table *t);
vpd_status vpd_table_read_h5(vpd_h5 *f, vpd_tensor_table *t);

/* Whole files, collective over t->comm: write path atomically (a temporary name, renamed by
 * rank 0 when every rank has finished) / open path and read the table. */
vpd_status vpd_table_save(const char *path, const vpd_tensor_table *t);
vpd_status vpd_table_load(const char *path, vpd_tensor_table *t);

#endif
