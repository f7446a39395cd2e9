/* The parallel layout and the collectives (include/vpd/comm.h). With scalapack.c, the only
 * compilation unit that calls MPI. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpd/comm.h"

/* the one spelling of the MPI type of `real` */
#if VPD_REAL_IS_DOUBLE
#define VPD_MPI_REAL MPI_DOUBLE
#else
#define VPD_MPI_REAL MPI_FLOAT
#endif

/* ≤ 1 Mi values per MPI call (MACHINE.md: 1–4 MiB messages are the sweet spot) */
#define BUCKET ((size_t)1 << 20)

void vpd_dist_init(int *argc, char ***argv) { MPI_Init(argc, argv); }

int vpd_dist_finalize(int status) {
    int worst = status;
    MPI_Allreduce(&status, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return worst;
}

int vpd_comm_rank(MPI_Comm comm) {
    int r = 0;
    if (comm != MPI_COMM_NULL) MPI_Comm_rank(comm, &r);
    return r;
}

int vpd_comm_size(MPI_Comm comm) {
    int n = 1;
    if (comm != MPI_COMM_NULL) MPI_Comm_size(comm, &n);
    return n;
}

int vpd_world_rank(void) { return vpd_comm_rank(MPI_COMM_WORLD); }
int vpd_world_size(void) { return vpd_comm_size(MPI_COMM_WORLD); }
MPI_Comm vpd_comm_world(void) { return MPI_COMM_WORLD; }
MPI_Comm vpd_comm_self(void) { return MPI_COMM_SELF; }

/* ---- layout ------------------------------------------------------------------------------ */
vpd_status vpd_layout_create(vpd_layout *lay, MPI_Comm comm, int cp) {
    memset(lay, 0, sizeof *lay);
    lay->comm = comm;
    lay->rank = vpd_comm_rank(comm);
    lay->size = vpd_comm_size(comm);
    if (cp < 1) cp = 1;
    if (lay->size % cp != 0)
        return vpd_error(VPD_ERR_CONFIG, "parallel.component_parallel = %d does not divide the %d MPI ranks", cp,
                         lay->size);
    lay->cp = cp;
    lay->dp = lay->size / cp;
    lay->dp_rank = lay->rank / cp;
    lay->cp_rank = lay->rank % cp;
    if (cp == 1) {
        lay->dp_comm = comm;
        lay->cp_comm = MPI_COMM_SELF;
        return VPD_OK;
    }
    MPI_Comm_split(comm, lay->cp_rank, lay->dp_rank, &lay->dp_comm);
    MPI_Comm_split(comm, lay->dp_rank, lay->cp_rank, &lay->cp_comm);
    lay->owns = 1;
    return VPD_OK;
}

void vpd_layout_self(vpd_layout *lay) {
    memset(lay, 0, sizeof *lay);
    lay->size = lay->dp = lay->cp = 1;
    lay->comm = lay->dp_comm = lay->cp_comm = MPI_COMM_SELF;
}

void vpd_layout_free(vpd_layout *lay) {
    if (lay->owns) {
        MPI_Comm_free(&lay->dp_comm);
        MPI_Comm_free(&lay->cp_comm);
    }
    lay->owns = 0;
}

/* ---- batch geometry -------------------------------------------------------------------------- */
vpd_status vpd_batch_geometry(vpd_batch_geom *g, int B_global, int S, int dp, int dp_rank, const char *what) {
    memset(g, 0, sizeof *g);
    if (dp < 1) dp = 1;
    if (B_global < 1 || S < 1)
        return vpd_error(VPD_ERR_CONFIG, "%s %d x %d positions: both must be >= 1", what ? what : "batch", B_global, S);
    if (B_global % dp != 0)
        return vpd_error(VPD_ERR_CONFIG, "%s %d is not divisible by the %d data-parallel ranks: choose a multiple of %d",
                         what ? what : "batch", B_global, dp, dp);
    g->B_global = B_global;
    g->S = S;
    g->B = B_global / dp;
    g->N = g->B * S;
    g->example0 = (int64_t)dp_rank * g->B;
    return VPD_OK;
}

/* ---- collectives ------------------------------------------------------------------------------ */
static int trivial(MPI_Comm comm) { return comm == MPI_COMM_NULL || vpd_comm_size(comm) <= 1; }

/* wall seconds spent in allreduces since the process started (waiting for the slowest rank
 * included): the communication share of `vpd bench`'s step profile */
static double comm_seconds;
double vpd_comm_seconds(void) { return comm_seconds; }

static void allreduce(void *x, size_t n, size_t elem, MPI_Datatype t, MPI_Op op, MPI_Comm comm) {
    if (trivial(comm)) return;
    double t0 = MPI_Wtime();
    for (size_t off = 0; off < n; off += BUCKET) {
        size_t m = n - off < BUCKET ? n - off : BUCKET;
        MPI_Allreduce(MPI_IN_PLACE, (char *)x + off * elem, (int)m, t, op, comm);
    }
    comm_seconds += MPI_Wtime() - t0;
}

void vpd_sum_real(real *x, size_t n, MPI_Comm comm) { allreduce(x, n, sizeof(real), VPD_MPI_REAL, MPI_SUM, comm); }
void vpd_sum_double(double *x, size_t n, MPI_Comm comm) { allreduce(x, n, sizeof(double), MPI_DOUBLE, MPI_SUM, comm); }
void vpd_sum_int64(int64_t *x, size_t n, MPI_Comm comm) { allreduce(x, n, sizeof(int64_t), MPI_INT64_T, MPI_SUM, comm); }
void vpd_max_double(double *x, size_t n, MPI_Comm comm) { allreduce(x, n, sizeof(double), MPI_DOUBLE, MPI_MAX, comm); }
void vpd_min_double(double *x, size_t n, MPI_Comm comm) { allreduce(x, n, sizeof(double), MPI_DOUBLE, MPI_MIN, comm); }

void vpd_dp_mean(real *x, size_t n, MPI_Comm comm) {
    if (trivial(comm)) return;
    vpd_sum_real(x, n, comm);
    vpd_scale(n, (real)(1.0 / vpd_comm_size(comm)), x);
}

int vpd_max_int(int v, MPI_Comm comm) {
    allreduce(&v, 1, sizeof v, MPI_INT, MPI_MAX, comm);
    return v;
}

void vpd_max_ints(int *x, size_t n, MPI_Comm comm) { allreduce(x, n, sizeof(int), MPI_INT, MPI_MAX, comm); }

int vpd_min_int(int v, MPI_Comm comm) {
    allreduce(&v, 1, sizeof v, MPI_INT, MPI_MIN, comm);
    return v;
}

vpd_status vpd_all_agree(vpd_status s, MPI_Comm comm) {
    if (trivial(comm)) return s;
    const int rank = vpd_comm_rank(comm);
    const int failing = vpd_min_int(s != VPD_OK ? rank : 1 << 30, comm);
    if (failing == 1 << 30) return VPD_OK;
    struct {
        int code;
        char msg[1020];
    } m;
    memset(&m, 0, sizeof m);
    if (rank == failing) {
        m.code = (int)s;
        snprintf(m.msg, sizeof m.msg, "%s", vpd_last_error());
    }
    MPI_Bcast(&m, (int)sizeof m, MPI_BYTE, failing, comm);
    if (rank != failing) return vpd_error((vpd_status)m.code, "%s", m.msg);
    return s;
}

void vpd_bcast(void *buf, size_t bytes, int root, MPI_Comm comm) {
    if (trivial(comm)) return;
    for (size_t off = 0; off < bytes; off += 4 * BUCKET) {
        size_t m = bytes - off < 4 * BUCKET ? bytes - off : 4 * BUCKET;
        MPI_Bcast((char *)buf + off, (int)m, MPI_BYTE, root, comm);
    }
}

char *vpd_bcast_string(const char *s, int root, MPI_Comm comm) {
    const int rank = vpd_comm_rank(comm);
    long len = rank == root ? (s ? (long)strlen(s) + 1 : 0) : 0;
    if (!trivial(comm)) MPI_Bcast(&len, 1, MPI_LONG, root, comm);
    if (len == 0) return NULL;
    char *out = malloc((size_t)len);
    if (!out) {
        /* keep the collective matched: receive into a scratch byte loop */
        char scratch[4096];
        for (long off = 0; off < len; off += (long)sizeof scratch) {
            long m = len - off < (long)sizeof scratch ? len - off : (long)sizeof scratch;
            if (rank == root) memcpy(scratch, s + off, (size_t)m);
            if (!trivial(comm)) MPI_Bcast(scratch, (int)m, MPI_BYTE, root, comm);
        }
        return NULL;
    }
    if (rank == root) memcpy(out, s, (size_t)len);
    vpd_bcast(out, (size_t)len, root, comm);
    return out;
}

/* bytes per MPI_Gather call (a count that fits an int whatever `bytes` is); tests lower it */
static size_t gather_chunk = 4 * BUCKET;

size_t vpd_comm_set_gather_chunk(size_t bytes) {
    size_t old = gather_chunk;
    gather_chunk = bytes ? bytes : 4 * BUCKET;
    if (gather_chunk > (size_t)1 << 30) gather_chunk = (size_t)1 << 30;
    return old;
}

/* In rounds of <= gather_chunk bytes: round `off` gathers bytes [off, off + m) of every rank's
 * block; on the root they land at recv + r·bytes + off through a receive type of m bytes whose
 * extent is `bytes` (MPI_Aint, 64-bit), so no count or displacement is an int past 2^31. */
void vpd_gather_bytes(const void *send, size_t bytes, void *recv, int root, MPI_Comm comm) {
    if (trivial(comm)) {
        if (recv != send && bytes) memcpy(recv, send, bytes);
        return;
    }
    const bool is_root = vpd_comm_rank(comm) == root;
    for (size_t off = 0; off < bytes; off += gather_chunk) {
        const size_t m = bytes - off < gather_chunk ? bytes - off : gather_chunk;
        MPI_Datatype blk = MPI_DATATYPE_NULL, strided = MPI_DATATYPE_NULL;
        if (is_root) {
            MPI_Type_contiguous((int)m, MPI_BYTE, &blk);
            MPI_Type_create_resized(blk, 0, (MPI_Aint)bytes, &strided);
            MPI_Type_commit(&strided);
        }
        MPI_Gather((const char *)send + off, (int)m, MPI_BYTE, is_root ? (char *)recv + off : NULL, 1,
                   is_root ? strided : MPI_BYTE, root, comm);
        if (is_root) {
            MPI_Type_free(&strided);
            MPI_Type_free(&blk);
        }
    }
}

void vpd_barrier(MPI_Comm comm) {
    if (!trivial(comm)) MPI_Barrier(comm);
}

/* ---- node-shared memory --------------------------------------------------------------- */
struct vpd_node_shared {
    MPI_Comm node;
    MPI_Win win;
};

vpd_status vpd_node_shared_alloc(size_t bytes, MPI_Comm comm, void **ptr, int *node_rank, vpd_node_shared **h) {
    *ptr = NULL;
    *h = NULL;
    vpd_node_shared *ns = calloc(1, sizeof *ns);
    int ok = ns != NULL, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm);
    if (!all_ok) {
        free(ns);
        return vpd_error(VPD_ERR_MEM, "out of memory for a node-shared window handle");
    }
    MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &ns->node);
    int nr = 0;
    MPI_Comm_rank(ns->node, &nr);
    void *base = NULL;
    int rc = MPI_Win_allocate_shared(nr == 0 ? (MPI_Aint)(bytes ? bytes : 1) : 0, 1, MPI_INFO_NULL, ns->node, &base,
                                     &ns->win);
    ok = rc == MPI_SUCCESS;
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, comm);
    if (!ok) {
        if (rc == MPI_SUCCESS) MPI_Win_free(&ns->win);
        MPI_Comm_free(&ns->node);
        free(ns);
        return vpd_error(VPD_ERR_MEM, "cannot allocate %.1f MiB of node-shared memory (MPI_Win_allocate_shared)",
                         (double)bytes / 1048576.0);
    }
    MPI_Aint size = 0;
    int disp = 1;
    MPI_Win_shared_query(ns->win, 0, &size, &disp, &base);
    MPI_Win_lock_all(MPI_MODE_NOCHECK, ns->win);
    if (nr == 0) memset(base, 0, bytes);
    *ptr = base;
    *node_rank = nr;
    *h = ns;
    return VPD_OK;
}

void vpd_node_shared_sync(vpd_node_shared *h) {
    MPI_Win_sync(h->win);
    MPI_Barrier(h->node);
    MPI_Win_sync(h->win);
}

void vpd_node_shared_free(vpd_node_shared **h) {
    if (!*h) return;
    MPI_Win_unlock_all((*h)->win);
    MPI_Win_free(&(*h)->win);
    MPI_Comm_free(&(*h)->node);
    free(*h);
    *h = NULL;
}
