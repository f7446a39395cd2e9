/* vpd dist: the 2-D process grid (dp data-parallel replicas × cp component shards) and the
 * ScaLAPACK side of component parallelism: block-cyclic matrices built from contiguous
 * component shards, the distributed weight delta Δ = W − (VU)ᵀ, the C×C Gram / cosine
 * similarity matrices VᵀV and UUᵀ, and the SVD initialisation `init: svd`.
 *
 * Orientation. ScaLAPACK is column-major, vpd row-major. Every distributed matrix here is
 * the LOGICAL matrix named in the comment, stored block-cyclically column-major. A rank's
 * component shard maps onto descriptors without copying:
 *   V[:, c0:c1] (row-major [d_in, Cb])  = rows c0:c1 of Vᵀ [C, d_in]   (cp×1 grid, MB = Cb)
 *   U[c0:c1, :] (row-major [Cb, d_out]) = cols c0:c1 of Uᵀ [d_out, C]  (1×cp grid, NB = Cb)
 * and the target is the logical T = (VU)ᵀ [d_out, d_in]: T = W for a linear layer
 * (W [d_out, d_in]), T = Wᵀ for an embedding (W [vocab, d], W ≈ VU). So Δ_logical = T − UᵀVᵀ.
 *
 * Precision follows `real`: libvpd calls PSGEMM/PSGESVD, libvpd64 PDGEMM/PDGESVD.
 * Every function is collective over the grid's cp communicator unless it says otherwise. */
#ifndef VPD_DIST_H
#define VPD_DIST_H

#include <mpi.h>

#include "vpd/comm.h"
#include "vpd/core.h"

/* ---- 2-D process grid ------------------------------------------------------------------
 * The BLACS contexts over the dp × cp layout of comm.h (vpd_layout: world rank r has
 * dp_rank = r / cp and cp_rank = r % cp); the fields below repeat the layout's. */
typedef struct {
    vpd_layout lay;
    int world_rank, world_size;
    int dp, cp;               /* world_size = dp · cp */
    int dp_rank, cp_rank;
    MPI_Comm dp_comm;         /* same cp_rank: the replicas (gradient allreduce) */
    MPI_Comm cp_comm;         /* same dp_rank: the component shards of one replica */
    /* BLACS contexts over cp_comm (process numbers = cp_rank) */
    int ctx2d;                /* nprow × npcol, near square, row-major */
    int nprow, npcol, myrow, mycol;
    int ctx_col;              /* cp × 1: row blocks (Vᵀ shards) */
    int ctx_row;              /* 1 × cp: column blocks (Uᵀ shards) */
    int nb;                   /* block size of 2-D block-cyclic matrices */
} vpd_grid;

/* Split `world` into dp × cp. VPD_ERR_CONFIG if cp < 1 or cp does not divide the world size.
 * nb: block size of 2-D matrices (0: 64). Collective over `world`. */
vpd_status vpd_grid_create(vpd_grid *g, MPI_Comm world, int cp, int nb);
void vpd_grid_free(vpd_grid *g);

/* ---- block-cyclic matrices -------------------------------------------------------------- */
typedef struct {
    int desc[9];        /* ScaLAPACK descriptor */
    int m, n, mb, nb;   /* global size, block size */
    int mloc, nloc;     /* local rows / columns (numroc) */
    int nprow, npcol, myrow, mycol;
    real *a;            /* local column-major [mloc, nloc], lld = desc[8] */
    bool owns;          /* a was allocated here */
} vpd_bcmat;

/* An m × n matrix on BLACS context ctx with mb × nb blocks, local storage allocated
 * (zeroed) unless `data` is given (then lld is max(1, mloc) and data must hold mloc·nloc). */
vpd_status vpd_bcmat_create(vpd_bcmat *A, int ctx, int m, int n, int mb, int nb, real *data, const char *what);
void vpd_bcmat_free(vpd_bcmat *A);
/* global index of local row li / column lj (0-based) */
int vpd_bcmat_row_g(const vpd_bcmat *A, int li);
int vpd_bcmat_col_g(const vpd_bcmat *A, int lj);
/* Fill from a replicated function of the global (i, j). */
void vpd_bcmat_fill(vpd_bcmat *A, double (*f)(void *ctx, int i, int j), void *ctx);
/* Every rank of `comm` (the communicator the context spans) gets the whole matrix in
 * `out`: row-major [m, n] (colmajor = false) or column-major (true). One allreduce of m·n
 * values: for tests and analysis outputs, not for the training loop. */
void vpd_bcmat_gather(const vpd_bcmat *A, real *out, bool colmajor, MPI_Comm comm);

/* ---- component geometry ------------------------------------------------------------------
 * A plain view of one layer's component shard (no dependency on vpd/: vpd_shard_view_shard
 * in components.h makes one from a vpd_shard_view):
 *   V [d_in, C] and U [C, d_out] row-major: subcomponents [c0, c0 + C) of the layer's C_total
 *   W the replicated target weight: linear [d_out, d_in], embedding [vocab = d_in, d = d_out] */
typedef struct {
    int d_in, d_out;
    int C;             /* subcomponents held by this rank */
    int c0, C_total;   /* the shard is [c0, c0 + C) of C_total */
    bool embedding;
    real *V;           /* [d_in, C] */
    real *U;           /* [C, d_out] */
    const real *W;     /* linear [d_out, d_in]; embedding [vocab, d] */
} vpd_shard_view;

/* c: this rank's shard (c->C = C_total / cp, c->c0 = cp_rank · c->C, c->W replicated).
 * VPD_ERR_CONFIG if the shard does not match the grid (C_total not divisible by cp, wrong c0). */
vpd_status vpd_dist_check_shard(const vpd_shard_view *c, const vpd_grid *g);
/* Δ = T − UᵀVᵀ (logical [d_out, d_in], see the top) into a new 2-D matrix on g->ctx2d:
 * two redistributions of the shards (p?gemr2d) and one P?GEMM. */
vpd_status vpd_dist_delta(vpd_bcmat *D, const vpd_shard_view *c, const vpd_grid *g);
/* G_V = VᵀV and G_U = UUᵀ ([C_total, C_total], 2-D). cosine: divide entry (a, b) by
 * ‖v_a‖‖v_b‖ (‖u_a‖‖u_b‖), a zero norm counting as 1. Either output may be NULL. */
vpd_status vpd_dist_gram(vpd_bcmat *GV, vpd_bcmat *GU, const vpd_shard_view *c, const vpd_grid *g,
                         bool cosine);

/* ---- SVD initialisation (init: svd) ----------------------------------------------------------
 * T = P Σ Qᵀ by P?GESVD of the block-cyclic T. With k = min(C_total, numerical rank of T)
 * (σ_i > max(d_in, d_out) · eps · σ_1), component a < k gets
 *     V[:, a] = √σ_a Q[:, a],   U[a, :] = √σ_a P[:, a]ᵀ,
 * so (VU)ᵀ = T exactly when C_total ≥ rank. Components a ≥ k (nothing left to explain)
 * keep vpd_shard_view_init's draw times rest_scale on both V and U (their product is
 * rest_scale² of the random init): small, so the reconstruction starts faithful, but not
 * zero, since a component with V = U = 0 has zero gradient for ever.
 * Each rank writes only its shard c->V, c->U. sigma (optional, min(d_in, d_out) values,
 * replicated) and rank_out (optional) report the spectrum. Refreshes nothing: call
 * vpd_shard_view_delta afterwards. */
vpd_status vpd_dist_svd_init(const vpd_shard_view *c, const vpd_grid *g, double rest_scale, real *sigma, int *rank_out);

#endif
