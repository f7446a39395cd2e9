/* vpd comm: the parallel layout and every collective (src/dist/comm.c).
 *
 * The rule (docs/architecture.md): src/dist/ is the only place that calls MPI. Everything
 * else asks this header: who am I (world / dp / cp rank), how is the batch split (one
 * function: vpd_batch_geometry), and the collectives with a documented meaning —
 *   vpd_dp_mean      mean over the data-parallel replicas (gradients), bucketed
 *   vpd_sum_*        sum over a communicator (cp partial outputs, global counts)
 *   vpd_all_agree    every rank returns the same status and message (a failure anywhere
 *                    fails everywhere, with the failing rank's text)
 *   vpd_bcast / vpd_gather_bytes   root-based movement of plain bytes
 * The MPI datatype of `real` is spelled once, in comm.c. Every array call is bucketed
 * (≤ 1 Mi values per MPI call; MACHINE.md: 1–4 MiB is the sweet spot) and takes size_t
 * counts, so no caller casts to int.
 *
 * MPI_Comm is used as an opaque handle type in headers; only comm.c and scalapack.c call
 * MPI functions on it. */
#ifndef VPD_COMM_H
#define VPD_COMM_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "vpd/core.h"

/* ---- process lifetime ------------------------------------------------------------------ */
void vpd_dist_init(int *argc, char ***argv);
/* Every rank passes its exit status; every rank returns the worst (max) one, then MPI ends. */
int vpd_dist_finalize(int status);

/* ---- ranks ---------------------------------------------------------------------------- */
int vpd_world_rank(void);
int vpd_world_size(void);
int vpd_comm_rank(MPI_Comm comm);
int vpd_comm_size(MPI_Comm comm);
MPI_Comm vpd_comm_world(void);
MPI_Comm vpd_comm_self(void);

/* ---- the dp × cp layout ----------------------------------------------------------------
 * World rank r is data-parallel replica r / cp and component block r % cp: the shards of
 * one replica are neighbouring ranks (they talk every layer), replicas talk once per step.
 *   dp_comm: ranks with the same cp_rank (the replicas of one component block)
 *   cp_comm: ranks with the same dp_rank (the component blocks of one replica);
 *            MPI_COMM_SELF when cp = 1
 * comm: the communicator split (normally the world). */
typedef struct {
    int rank, size;       /* in comm */
    int dp, cp;           /* size = dp · cp */
    int dp_rank, cp_rank;
    MPI_Comm comm, dp_comm, cp_comm;
    int owns;             /* dp_comm / cp_comm were created here */
} vpd_layout;

/* VPD_ERR_CONFIG when cp < 1 or cp does not divide comm's size. Collective over comm. */
vpd_status vpd_layout_create(vpd_layout *lay, MPI_Comm comm, int cp);
/* the single-process layout (tests and analysis on one rank): dp = cp = 1, comm = SELF */
void vpd_layout_self(vpd_layout *lay);
void vpd_layout_free(vpd_layout *lay);

/* ---- batch geometry: the one place the global batch is split over replicas ------------
 * B_global examples of S positions over dp replicas: replica dp_rank holds B = B_global/dp
 * examples starting at global example example0 = dp_rank·B; N = B·S rows.
 * VPD_ERR_CONFIG naming `what` (e.g. "batch_size") when dp does not divide B_global. */
typedef struct {
    int B, S, N;
    int64_t example0;
    int B_global;
} vpd_batch_geom;
vpd_status vpd_batch_geometry(vpd_batch_geom *g, int B_global, int S, int dp, int dp_rank, const char *what);

/* ---- collectives ------------------------------------------------------------------------
 * All are no-ops on a communicator of size 1 (and MPI_COMM_NULL). */
/* x ← mean of x over the ranks of comm (gradient averaging), bucketed */
void vpd_dp_mean(real *x, size_t n, MPI_Comm comm);
/* x ← Σ over the ranks of comm, bucketed */
void vpd_sum_real(real *x, size_t n, MPI_Comm comm);
void vpd_sum_double(double *x, size_t n, MPI_Comm comm);
void vpd_sum_int64(int64_t *x, size_t n, MPI_Comm comm);
void vpd_max_double(double *x, size_t n, MPI_Comm comm);
void vpd_min_double(double *x, size_t n, MPI_Comm comm);
/* wall seconds this process has spent in the reductions above (including waiting for the
 * slowest rank), a running total: the communication share of a step's profile */
double vpd_comm_seconds(void);
int vpd_max_int(int v, MPI_Comm comm);
void vpd_max_ints(int *x, size_t n, MPI_Comm comm);
int vpd_min_int(int v, MPI_Comm comm);
/* every rank returns the same status; when some rank failed, the lowest failing rank's
 * code and message (vpd_last_error) are those of every rank */
vpd_status vpd_all_agree(vpd_status s, MPI_Comm comm);
void vpd_bcast(void *buf, size_t bytes, int root, MPI_Comm comm);
/* a malloc'd string from root to every rank (root's s may be NULL: every rank gets NULL) */
char *vpd_bcast_string(const char *s, int root, MPI_Comm comm);
/* root receives size(comm) blocks of `bytes` bytes in rank order (recv ignored elsewhere).
 * Any size: sent in rounds of <= 4 MiB per rank (no int count overflows past 2 GiB). */
void vpd_gather_bytes(const void *send, size_t bytes, void *recv, int root, MPI_Comm comm);
/* Tests only: the bytes per gather round (0: the default 4 MiB; at most 1 GiB); returns the old value. */
size_t vpd_comm_set_gather_chunk(size_t bytes);
void vpd_barrier(MPI_Comm comm);

/* ---- node-shared memory (MPI-3 shared windows) ------------------------------------------ */
/* Read-only data every rank needs whole (the target model's weights) is held once per node:
 * vpd_node_shared_alloc is collective over `comm`; the ranks of one node (MPI_COMM_TYPE_SHARED)
 * get pointers to the same `bytes`, allocated by the node's first rank (*node_rank 0), which
 * fills them; then every rank calls vpd_node_shared_sync before reading (a node barrier with
 * the memory synchronisation the shared window needs). Free collectively with
 * vpd_node_shared_free. */
typedef struct vpd_node_shared vpd_node_shared;
vpd_status vpd_node_shared_alloc(size_t bytes, MPI_Comm comm, void **ptr, int *node_rank, vpd_node_shared **h);
void vpd_node_shared_sync(vpd_node_shared *h);
void vpd_node_shared_free(vpd_node_shared **h);

#endif
