/* The dp × cp process grid and the ScaLAPACK computations of component parallelism
 * (include/vpd/dist.h): block-cyclic matrices, the distributed weight delta, the C×C
 * Gram / cosine-similarity matrices and the SVD initialisation.
 *
 * Why ScaLAPACK at all: with components sharded by contiguous blocks, Δ = W − (VU)ᵀ is a
 * sum over the shards of their partial products, and the Gram matrices couple every pair
 * of shards; P?GEMM on a 2-D block-cyclic layout does this with O(n²/√p) traffic per rank
 * instead of gathering V and U anywhere. The shards themselves are already valid 1-D
 * block-cyclic matrices (one block per rank), so they enter ScaLAPACK without a copy and
 * P?GEMR2D moves them onto the 2-D grid.
 *
 * Debian ships no C header for BLACS / ScaLAPACK (STACK.md §3.5): the prototypes are
 * declared here. PBLAS (p?gemm_) and the C redistribution (Cp?gemr2d) take no hidden
 * string lengths; the Fortran LAPACK driver p?gesvd_ takes one size_t per char argument. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "vpd/dist.h"

/* ---- BLACS / ScaLAPACK prototypes ---------------------------------------------------- */
void Cblacs_pinfo(int *mypnum, int *nprocs);
void Cblacs_get(int ctxt, int what, int *val);
int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_gridinit(int *ctxt, const char *order, int nprow, int npcol);
void Cblacs_gridinfo(int ctxt, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int ctxt);
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc, const int *nprocs);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb, const int *irsrc,
               const int *icsrc, const int *ictxt, const int *lld, int *info);
void psgemm_(const char *ta, const char *tb, const int *m, const int *n, const int *k, const float *alpha,
             const float *a, const int *ia, const int *ja, const int *desca, const float *b, const int *ib,
             const int *jb, const int *descb, const float *beta, float *c, const int *ic, const int *jc,
             const int *descc);
void pdgemm_(const char *ta, const char *tb, const int *m, const int *n, const int *k, const double *alpha,
             const double *a, const int *ia, const int *ja, const int *desca, const double *b, const int *ib,
             const int *jb, const int *descb, const double *beta, double *c, const int *ic, const int *jc,
             const int *descc);
void Cpsgemr2d(int m, int n, float *a, int ia, int ja, int *desca, float *b, int ib, int jb, int *descb, int gctx);
void Cpdgemr2d(int m, int n, double *a, int ia, int ja, int *desca, double *b, int ib, int jb, int *descb, int gctx);
void psgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, float *a, const int *ia,
              const int *ja, const int *desca, float *s, float *u, const int *iu, const int *ju, const int *descu,
              float *vt, const int *ivt, const int *jvt, const int *descvt, float *work, const int *lwork,
              int *info, size_t ljobu, size_t ljobvt);
void pdgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a, const int *ia,
              const int *ja, const int *desca, double *s, double *u, const int *iu, const int *ju,
              const int *descu, double *vt, const int *ivt, const int *jvt, const int *descvt, double *work,
              const int *lwork, int *info, size_t ljobu, size_t ljobvt);

#if VPD_REAL_IS_DOUBLE
#define P_GEMM pdgemm_
#define P_GEMR2D Cpdgemr2d
#define P_GESVD pdgesvd_
#define REAL_EPS DBL_EPSILON
#else
#define P_GEMM psgemm_
#define P_GEMR2D Cpsgemr2d
#define P_GESVD psgesvd_
#define REAL_EPS FLT_EPSILON
#endif

static const int ONE = 1, ZERO = 0;

/* ---- grid --------------------------------------------------------------------------- */
vpd_status vpd_grid_create(vpd_grid *g, MPI_Comm world, int cp, int nb) {
    memset(g, 0, sizeof *g);
    g->dp_comm = g->cp_comm = MPI_COMM_NULL;
    g->ctx2d = g->ctx_col = g->ctx_row = -1;
    if (cp < 1)
        return vpd_error(VPD_ERR_CONFIG, "parallel.component_parallel = %d must be >= 1 and divide the %d MPI ranks",
                         cp, vpd_comm_size(world));
    VPD_TRY(vpd_layout_create(&g->lay, world, cp)); /* the one dp × cp split */
    g->world_rank = g->lay.rank;
    g->world_size = g->lay.size;
    g->cp = g->lay.cp;
    g->dp = g->lay.dp;
    g->dp_rank = g->lay.dp_rank;
    g->cp_rank = g->lay.cp_rank;
    g->dp_comm = g->lay.dp_comm;
    g->cp_comm = g->lay.cp_comm;
    g->nb = nb > 0 ? nb : 64;
    /* near-square 2-D grid: the largest divisor of cp not above √cp rows */
    int pr = 1;
    for (int d = 1; d * d <= cp; d++)
        if (cp % d == 0) pr = d;
    int me, np;
    Cblacs_pinfo(&me, &np); /* initialises BLACS before handles are taken */
    int h = Csys2blacs_handle(g->cp_comm);
    g->ctx2d = h;
    Cblacs_gridinit(&g->ctx2d, "Row", pr, cp / pr);
    g->ctx_col = h;
    Cblacs_gridinit(&g->ctx_col, "Row", cp, 1);
    g->ctx_row = h;
    Cblacs_gridinit(&g->ctx_row, "Row", 1, cp);
    Cfree_blacs_system_handle(h);
    Cblacs_gridinfo(g->ctx2d, &g->nprow, &g->npcol, &g->myrow, &g->mycol);
    if (g->myrow < 0 || g->mycol < 0) return vpd_error(VPD_ERR_MPI, "BLACS grid %dx%d: rank %d not in the grid", pr, cp / pr, g->world_rank);
    int r, c, mr, mc;
    Cblacs_gridinfo(g->ctx_col, &r, &c, &mr, &mc);
    VPD_ASSERT(mr == g->cp_rank, "BLACS column grid row %d != cp rank %d", mr, g->cp_rank);
    Cblacs_gridinfo(g->ctx_row, &r, &c, &mr, &mc);
    VPD_ASSERT(mc == g->cp_rank, "BLACS row grid column %d != cp rank %d", mc, g->cp_rank);
    return VPD_OK;
}

void vpd_grid_free(vpd_grid *g) {
    if (g->ctx2d >= 0) Cblacs_gridexit(g->ctx2d);
    if (g->ctx_col >= 0) Cblacs_gridexit(g->ctx_col);
    if (g->ctx_row >= 0) Cblacs_gridexit(g->ctx_row);
    vpd_layout_free(&g->lay);
    memset(g, 0, sizeof *g);
    g->ctx2d = g->ctx_col = g->ctx_row = -1;
    g->dp_comm = g->cp_comm = MPI_COMM_NULL;
}

/* ---- block-cyclic matrices -------------------------------------------------------------- */
vpd_status vpd_bcmat_create(vpd_bcmat *A, int ctx, int m, int n, int mb, int nb, real *data, const char *what) {
    memset(A, 0, sizeof *A);
    Cblacs_gridinfo(ctx, &A->nprow, &A->npcol, &A->myrow, &A->mycol);
    A->m = m;
    A->n = n;
    A->mb = mb < 1 ? 1 : mb;
    A->nb = nb < 1 ? 1 : nb;
    A->mloc = numroc_(&m, &A->mb, &A->myrow, &ZERO, &A->nprow);
    A->nloc = numroc_(&n, &A->nb, &A->mycol, &ZERO, &A->npcol);
    int lld = A->mloc > 1 ? A->mloc : 1, info = 0;
    descinit_(A->desc, &m, &n, &A->mb, &A->nb, &ZERO, &ZERO, &ctx, &lld, &info);
    if (info != 0) return vpd_error(VPD_ERR_INTERNAL, "descinit for %s (%dx%d, blocks %dx%d): argument %d invalid", what, m, n, mb, nb, -info);
    if (data) {
        A->a = data;
    } else {
        size_t cnt = (size_t)A->mloc * A->nloc;
        A->a = vpd_calloc(sizeof(real) * (cnt ? cnt : 1), what);
        if (!A->a) return VPD_ERR_MEM;
        A->owns = true;
    }
    return VPD_OK;
}

void vpd_bcmat_free(vpd_bcmat *A) {
    if (A->owns) vpd_free(A->a);
    memset(A, 0, sizeof *A);
}

/* local → global with the source process 0 (every descriptor here has RSRC = CSRC = 0) */
static int l2g(int l, int nb, int me, int np) { return ((l / nb) * np + me) * nb + l % nb; }
int vpd_bcmat_row_g(const vpd_bcmat *A, int li) { return l2g(li, A->mb, A->myrow, A->nprow); }
int vpd_bcmat_col_g(const vpd_bcmat *A, int lj) { return l2g(lj, A->nb, A->mycol, A->npcol); }

void vpd_bcmat_fill(vpd_bcmat *A, double (*f)(void *ctx, int i, int j), void *ctx) {
    const int lld = A->desc[8];
    for (int lj = 0; lj < A->nloc; lj++) {
        int j = vpd_bcmat_col_g(A, lj);
        for (int li = 0; li < A->mloc; li++) A->a[(size_t)lj * lld + li] = (real)f(ctx, vpd_bcmat_row_g(A, li), j);
    }
}

void vpd_bcmat_gather(const vpd_bcmat *A, real *out, bool colmajor, MPI_Comm comm) {
    const size_t total = (size_t)A->m * A->n;
    memset(out, 0, sizeof(real) * total);
    const int lld = A->desc[8];
    for (int lj = 0; lj < A->nloc; lj++) {
        size_t j = (size_t)vpd_bcmat_col_g(A, lj);
        for (int li = 0; li < A->mloc; li++) {
            size_t i = (size_t)vpd_bcmat_row_g(A, li);
            out[colmajor ? j * A->m + i : i * A->n + j] = A->a[(size_t)lj * lld + li];
        }
    }
    /* every element has exactly one owner, so a sum is a gather (bucketed in comm.c) */
    vpd_sum_real(out, total, comm);
}

/* ---- shards ------------------------------------------------------------------------------ */
vpd_status vpd_dist_check_shard(const vpd_shard_view *c, const vpd_grid *g) {
    if (c->C_total % g->cp != 0)
        return vpd_error(VPD_ERR_CONFIG, "a layer with C = %d subcomponents cannot be split over component_parallel = %d ranks (C must be divisible by it)",
                         c->C_total, g->cp);
    const int Cb = c->C_total / g->cp;
    if (c->C != Cb || c->c0 != g->cp_rank * Cb)
        return vpd_error(VPD_ERR_SHAPE, "component shard [%d, %d) of %d on cp rank %d: expected [%d, %d)", c->c0, c->c0 + c->C,
                         c->C_total, g->cp_rank, g->cp_rank * Cb, (g->cp_rank + 1) * Cb);
    return VPD_OK;
}

/* The shard as ScaLAPACK sees it: rows c0:c1 of Vᵀ [C, d_in] and columns c0:c1 of Uᵀ [d_out, C]. */
static vpd_status shard_descs(vpd_bcmat *Vt, vpd_bcmat *Ut, const vpd_shard_view *c, const vpd_grid *g) {
    VPD_TRY(vpd_dist_check_shard(c, g));
    VPD_TRY(vpd_bcmat_create(Vt, g->ctx_col, c->C_total, c->d_in, c->C, c->d_in, c->V, "V shard"));
    VPD_TRY(vpd_bcmat_create(Ut, g->ctx_row, c->d_out, c->C_total, c->d_out, c->C, c->U, "U shard"));
    VPD_ASSERT(Vt->mloc == c->C && Ut->nloc == c->C, "shard descriptors hold %d/%d components, expected %d", Vt->mloc,
               Ut->nloc, c->C);
    return VPD_OK;
}

/* Vᵀ and Uᵀ on the 2-D grid */
static vpd_status shards_to_2d(vpd_bcmat *Vt2, vpd_bcmat *Ut2, const vpd_shard_view *c, const vpd_grid *g) {
    vpd_bcmat Vt, Ut;
    VPD_TRY(shard_descs(&Vt, &Ut, c, g));
    VPD_TRY(vpd_bcmat_create(Vt2, g->ctx2d, c->C_total, c->d_in, g->nb, g->nb, NULL, "V^T (2-D)"));
    VPD_TRY(vpd_bcmat_create(Ut2, g->ctx2d, c->d_out, c->C_total, g->nb, g->nb, NULL, "U^T (2-D)"));
    P_GEMR2D(c->C_total, c->d_in, Vt.a, 1, 1, Vt.desc, Vt2->a, 1, 1, Vt2->desc, g->ctx_row);
    P_GEMR2D(c->d_out, c->C_total, Ut.a, 1, 1, Ut.desc, Ut2->a, 1, 1, Ut2->desc, g->ctx_row);
    return VPD_OK;
}

/* T = (VU)ᵀ [d_out, d_in] from the replicated target */
static double target_at(void *ctx, int i, int j) {
    const vpd_shard_view *c = ctx;
    return c->embedding ? (double)c->W[(size_t)j * c->d_out + i] : (double)c->W[(size_t)i * c->d_in + j];
}

vpd_status vpd_dist_delta(vpd_bcmat *D, const vpd_shard_view *c, const vpd_grid *g) {
    vpd_bcmat Vt2, Ut2;
    memset(D, 0, sizeof *D);
    vpd_status s = shards_to_2d(&Vt2, &Ut2, c, g);
    if (s == VPD_OK) s = vpd_bcmat_create(D, g->ctx2d, c->d_out, c->d_in, g->nb, g->nb, NULL, "weight delta");
    if (s == VPD_OK) {
        vpd_bcmat_fill(D, target_at, (void *)c);
        const real alpha = -1, beta = 1;
        P_GEMM("N", "N", &c->d_out, &c->d_in, &c->C_total, &alpha, Ut2.a, &ONE, &ONE, Ut2.desc, Vt2.a, &ONE, &ONE,
               Vt2.desc, &beta, D->a, &ONE, &ONE, D->desc);
    }
    vpd_bcmat_free(&Vt2);
    vpd_bcmat_free(&Ut2);
    return s;
}

/* ‖v_a‖ (rows = false: columns of V [d_in, C]) or ‖u_a‖ (rows of U [C, d_out]) for all C_total */
static void shard_norms(double *out, const vpd_shard_view *c, const vpd_grid *g, bool of_u) {
    double *mine = out + c->c0;
    for (int a = 0; a < c->C; a++) {
        double s = 0;
        if (of_u)
            for (int j = 0; j < c->d_out; j++) s += (double)c->U[(size_t)a * c->d_out + j] * c->U[(size_t)a * c->d_out + j];
        else
            for (int i = 0; i < c->d_in; i++) s += (double)c->V[(size_t)i * c->C + a] * c->V[(size_t)i * c->C + a];
        mine[a] = s > 0 ? sqrt(s) : 1.0;
    }
    MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, out, c->C, MPI_DOUBLE, g->cp_comm);
}

static void scale_by_norms(vpd_bcmat *G, const double *nrm) {
    const int lld = G->desc[8];
    for (int lj = 0; lj < G->nloc; lj++) {
        double nj = nrm[vpd_bcmat_col_g(G, lj)];
        for (int li = 0; li < G->mloc; li++)
            G->a[(size_t)lj * lld + li] = (real)(G->a[(size_t)lj * lld + li] / (nrm[vpd_bcmat_row_g(G, li)] * nj));
    }
}

vpd_status vpd_dist_gram(vpd_bcmat *GV, vpd_bcmat *GU, const vpd_shard_view *c, const vpd_grid *g, bool cosine) {
    vpd_bcmat Vt2, Ut2;
    if (GV) memset(GV, 0, sizeof *GV);
    if (GU) memset(GU, 0, sizeof *GU);
    vpd_status s = shards_to_2d(&Vt2, &Ut2, c, g);
    const int C = c->C_total;
    const real alpha = 1, beta = 0;
    double *nrm = NULL;
    if (s == VPD_OK && cosine) {
        nrm = vpd_malloc(sizeof(double) * (size_t)C, "component norms");
        if (!nrm) s = VPD_ERR_MEM;
    }
    if (s == VPD_OK && GV) {
        s = vpd_bcmat_create(GV, g->ctx2d, C, C, g->nb, g->nb, NULL, "Gram V^T V");
        if (s == VPD_OK) {
            P_GEMM("N", "T", &C, &C, &c->d_in, &alpha, Vt2.a, &ONE, &ONE, Vt2.desc, Vt2.a, &ONE, &ONE, Vt2.desc, &beta,
                   GV->a, &ONE, &ONE, GV->desc);
            if (cosine) {
                shard_norms(nrm, c, g, false);
                scale_by_norms(GV, nrm);
            }
        }
    }
    if (s == VPD_OK && GU) {
        s = vpd_bcmat_create(GU, g->ctx2d, C, C, g->nb, g->nb, NULL, "Gram U U^T");
        if (s == VPD_OK) {
            P_GEMM("T", "N", &C, &C, &c->d_out, &alpha, Ut2.a, &ONE, &ONE, Ut2.desc, Ut2.a, &ONE, &ONE, Ut2.desc, &beta,
                   GU->a, &ONE, &ONE, GU->desc);
            if (cosine) {
                shard_norms(nrm, c, g, true);
                scale_by_norms(GU, nrm);
            }
        }
    }
    vpd_free(nrm);
    vpd_bcmat_free(&Vt2);
    vpd_bcmat_free(&Ut2);
    return s;
}

/* ---- SVD initialisation ---------------------------------------------------------------- */
vpd_status vpd_dist_svd_init(const vpd_shard_view *c, const vpd_grid *g, double rest_scale, real *sigma, int *rank_out) {
    VPD_TRY(vpd_dist_check_shard(c, g));
    const int m = c->d_out, n = c->d_in, mn = m < n ? m : n;
    vpd_bcmat T, P, Qt, Vt, Ut;
    memset(&T, 0, sizeof T);
    memset(&P, 0, sizeof P);
    memset(&Qt, 0, sizeof Qt);
    real *s = NULL, *work = NULL;
    vpd_status st = vpd_bcmat_create(&T, g->ctx2d, m, n, g->nb, g->nb, NULL, "SVD input");
    if (st == VPD_OK) st = vpd_bcmat_create(&P, g->ctx2d, m, mn, g->nb, g->nb, NULL, "SVD left vectors");
    if (st == VPD_OK) st = vpd_bcmat_create(&Qt, g->ctx2d, mn, n, g->nb, g->nb, NULL, "SVD right vectors");
    if (st == VPD_OK) {
        s = vpd_malloc(sizeof(real) * (size_t)mn, "singular values");
        if (!s) st = VPD_ERR_MEM;
    }
    int info = 0;
    if (st == VPD_OK) {
        vpd_bcmat_fill(&T, target_at, (void *)c);
        real wq = 0;
        int lwork = -1;
        P_GESVD("V", "V", &m, &n, T.a, &ONE, &ONE, T.desc, s, P.a, &ONE, &ONE, P.desc, Qt.a, &ONE, &ONE, Qt.desc, &wq,
                &lwork, &info, 1, 1);
        /* some ScaLAPACK releases under-report the workspace of P?GESVD: give it slack */
        lwork = (int)(wq * 1.5) + 64 * g->nb;
        work = vpd_malloc(sizeof(real) * (size_t)lwork, "P?GESVD workspace");
        if (!work) st = VPD_ERR_MEM;
        if (st == VPD_OK)
            P_GESVD("V", "V", &m, &n, T.a, &ONE, &ONE, T.desc, s, P.a, &ONE, &ONE, P.desc, Qt.a, &ONE, &ONE, Qt.desc,
                    work, &lwork, &info, 1, 1);
        if (st == VPD_OK && info != 0)
            st = vpd_error(VPD_ERR_VALUE, "SVD initialisation of a [%d, %d] layer: P?GESVD info = %d (%s)", m, n, info,
                           info < 0 ? "bad argument" : "no convergence");
    }
    if (st == VPD_OK) {
        int rank = 0;
        const double tol = (double)(m > n ? m : n) * REAL_EPS * (double)s[0];
        while (rank < mn && (double)s[rank] > tol) rank++;
        const int k = rank < c->C_total ? rank : c->C_total;
        if (sigma) memcpy(sigma, s, sizeof(real) * (size_t)mn);
        if (rank_out) *rank_out = rank;
        /* the caller's random draw scaled down first, then the top-k components overwritten */
        vpd_scale((size_t)c->d_in * c->C, (real)rest_scale, c->V);
        vpd_scale((size_t)c->C * c->d_out, (real)rest_scale, c->U);
        st = shard_descs(&Vt, &Ut, c, g);
        if (st == VPD_OK && k > 0) {
            P_GEMR2D(k, n, Qt.a, 1, 1, Qt.desc, Vt.a, 1, 1, Vt.desc, g->ctx_row); /* Vᵀ rows a < k = Qᵀ rows */
            P_GEMR2D(m, k, P.a, 1, 1, P.desc, Ut.a, 1, 1, Ut.desc, g->ctx_row);  /* Uᵀ cols a < k = P cols */
            for (int a = 0; a < c->C && c->c0 + a < k; a++) {
                const real r = (real)sqrt((double)s[c->c0 + a]);
                for (int i = 0; i < c->d_in; i++) c->V[(size_t)i * c->C + a] *= r;
                vpd_scale((size_t)c->d_out, r, c->U + (size_t)a * c->d_out);
            }
        }
    }
    vpd_free(work);
    vpd_free(s);
    vpd_bcmat_free(&T);
    vpd_bcmat_free(&P);
    vpd_bcmat_free(&Qt);
    return st;
}
