/* Distributed linear algebra of component parallelism (src/dist/scalapack.c) against the
 * serial result, on every dp × cp grid the world size allows (run under mpiexec -n 1, 2, 4):
 *   - Δ = W − (VU)ᵀ by P?GEMM from contiguous component shards vs vpd_components_delta
 *   - Gram VᵀV, UUᵀ (plain and cosine) vs vpd_gemm
 *   - init: svd — singular values vs serial LAPACK ?gesvd, the reconstruction of the top-k
 *     components vs P_k Σ_k Q_kᵀ (sign-free), rest components = rest_scale × random init
 *   - errors: C not divisible by cp, cp not dividing the world size.
 * Built twice: against libvpd (float, tolerance 1e-5) and libvpd64 (double, 1e-10). */
#include <mpi.h>

#include "testutil.h"
#include "vpd/components.h"
#include "vpd/dist.h"

void sgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, float *a, const int *lda, float *s,
             float *u, const int *ldu, float *vt, const int *ldvt, float *work, const int *lwork, int *info, size_t,
             size_t);
void dgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a, const int *lda, double *s,
             double *u, const int *ldu, double *vt, const int *ldvt, double *work, const int *lwork, int *info,
             size_t, size_t);
#if VPD_REAL_IS_DOUBLE
#define GESVD dgesvd_
static const double TOL = 1e-10;
#else
#define GESVD sgesvd_
static const double TOL = 1e-5;
#endif

static double worst_delta = 0, worst_gram = 0, worst_sigma = 0, worst_recon = 0;

typedef struct {
    const char *name;
    int d_in, d_out, C, inner; /* inner > 0: W is a product of rank `inner` */
    bool embedding;
} layer_case;

static real *alloc_r(size_t n) { return calloc(n ? n : 1, sizeof(real)); }

/* logical T(i, j) = (VU)ᵀ [d_out, d_in] of the layer */
static double T_at(const layer_case *lc, const real *W, int i, int j) {
    return lc->embedding ? W[(size_t)j * lc->d_out + i] : W[(size_t)i * lc->d_in + j];
}

static void run_case(const layer_case *lc, const vpd_grid *g, int layer) {
    const int d_in = lc->d_in, d_out = lc->d_out, C = lc->C, Cb = C / g->cp;
    const size_t nW = (size_t)d_in * d_out;
    real *W = alloc_r(nW);
    if (lc->inner > 0) {
        real *A = alloc_r((size_t)d_out * lc->inner), *B = alloc_r((size_t)lc->inner * d_in);
        tu_fill(A, (size_t)d_out * lc->inner, 11 + layer, 1.0);
        tu_fill(B, (size_t)lc->inner * d_in, 12 + layer, 1.0);
        /* W logical [d_out, d_in] = A B, stored in the layer's layout */
        real *T = alloc_r(nW);
        vpd_gemm(false, false, d_out, d_in, lc->inner, 1, A, lc->inner, B, d_in, 0, T, d_in);
        for (int i = 0; i < d_out; i++)
            for (int j = 0; j < d_in; j++)
                if (lc->embedding) W[(size_t)j * d_out + i] = T[(size_t)i * d_in + j];
                else W[(size_t)i * d_in + j] = T[(size_t)i * d_in + j];
        free(A), free(B), free(T);
    } else {
        tu_fill(W, nW, 7 + layer, 1.0);
    }

    /* serial reference: the whole layer on this rank */
    real *V = alloc_r((size_t)d_in * C), *U = alloc_r((size_t)C * d_out), *delta = alloc_r(nW);
    vpd_components full;
    CHECK(vpd_components_setup(&full, lc->name, d_in, d_out, C, lc->embedding, V, U, W, NULL, delta) == VPD_OK, "setup");
    vpd_components_init(&full, 5, layer);
    vpd_components_delta(&full);

    /* this rank's shard of the same initialisation */
    real *Vs = alloc_r((size_t)d_in * Cb), *Us = alloc_r((size_t)Cb * d_out);
    vpd_components sh;
    CHECK(vpd_components_setup(&sh, lc->name, d_in, d_out, Cb, lc->embedding, Vs, Us, W, NULL, NULL) == VPD_OK, "setup");
    sh.c0 = g->cp_rank * Cb;
    sh.C_total = C;
    vpd_components_init(&sh, 5, layer);
    const vpd_shard_view shv = vpd_components_shard(&sh);

    /* --- Δ --- */
    vpd_bcmat D;
    CHECK(vpd_dist_delta(&D, &shv, g) == VPD_OK, "%s: vpd_dist_delta: %s", lc->name, vpd_last_error());
    real *Dg = alloc_r(nW);
    vpd_bcmat_gather(&D, Dg, lc->embedding, g->cp_comm); /* back into W's layout */
    double e = tu_max_rel_err(Dg, delta, nW, 1e-30);
    if (e > worst_delta) worst_delta = e;
    CHECK(e <= TOL, "%s cp=%d: delta rel err %.3e > %.0e", lc->name, g->cp, e, TOL);
    vpd_bcmat_free(&D);

    /* --- Gram --- */
    real *GVr = alloc_r((size_t)C * C), *GUr = alloc_r((size_t)C * C), *G = alloc_r((size_t)C * C);
    vpd_gemm(true, false, C, C, d_in, 1, V, C, V, C, 0, GVr, C);
    vpd_gemm(false, true, C, C, d_out, 1, U, d_out, U, d_out, 0, GUr, C);
    for (int cosine = 0; cosine < 2; cosine++) {
        if (cosine) {
            real *nv = alloc_r(C), *nu = alloc_r(C);
            for (int a = 0; a < C; a++) nv[a] = (real)sqrt((double)GVr[(size_t)a * C + a]), nu[a] = (real)sqrt((double)GUr[(size_t)a * C + a]);
            for (int a = 0; a < C; a++)
                for (int b = 0; b < C; b++) GVr[(size_t)a * C + b] /= nv[a] * nv[b], GUr[(size_t)a * C + b] /= nu[a] * nu[b];
            free(nv), free(nu);
        }
        vpd_bcmat GV, GU;
        CHECK(vpd_dist_gram(&GV, &GU, &shv, g, cosine) == VPD_OK, "%s: gram: %s", lc->name, vpd_last_error());
        vpd_bcmat_gather(&GV, G, false, g->cp_comm);
        double ev = tu_max_rel_err(G, GVr, (size_t)C * C, 1e-30);
        vpd_bcmat_gather(&GU, G, false, g->cp_comm);
        double eu = tu_max_rel_err(G, GUr, (size_t)C * C, 1e-30);
        if (ev > worst_gram) worst_gram = ev;
        if (eu > worst_gram) worst_gram = eu;
        CHECK(ev <= TOL && eu <= TOL, "%s cp=%d cosine=%d: Gram rel err V %.3e U %.3e", lc->name, g->cp, cosine, ev, eu);
        vpd_bcmat_free(&GV);
        vpd_bcmat_free(&GU);
    }

    /* --- init: svd --- */
    const int m = d_out, n = d_in, mn = m < n ? m : n;
    real *Tc = alloc_r(nW), *s = alloc_r(mn), *P = alloc_r((size_t)m * mn), *Qt = alloc_r((size_t)mn * n);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) Tc[(size_t)j * m + i] = (real)T_at(lc, W, i, j);
    real wq;
    int lwork = -1, info = 0;
    GESVD("S", "S", &m, &n, Tc, &m, s, P, &m, Qt, &mn, &wq, &lwork, &info, 1, 1);
    lwork = (int)wq + 16;
    real *work = alloc_r((size_t)lwork);
    GESVD("S", "S", &m, &n, Tc, &m, s, P, &m, Qt, &mn, work, &lwork, &info, 1, 1);
    CHECK(info == 0, "serial gesvd info %d", info);
    real *sig = alloc_r(mn);
    int rank = -1;
    const double rest = 0.1;
    vpd_components_init(&sh, 5, layer); /* the random draw svd init keeps for the rest */
    vpd_status st = vpd_dist_svd_init(&shv, g, rest, sig, &rank);
    CHECK(st == VPD_OK, "%s: svd init: %s", lc->name, vpd_last_error());
    double es = tu_max_rel_err(sig, s, mn, 1e-30);
    if (es > worst_sigma) worst_sigma = es;
    CHECK(es <= TOL, "%s cp=%d: singular values rel err %.3e", lc->name, g->cp, es);
    const int want_rank = lc->inner > 0 && lc->inner < mn ? lc->inner : mn;
    CHECK(rank == want_rank, "%s: numerical rank %d, expected %d", lc->name, rank, want_rank);
    const int k = rank < C ? rank : C;
    /* gather V, U from the shards */
    real *Vall = alloc_r((size_t)d_in * C), *Uall = alloc_r((size_t)C * d_out);
    MPI_Datatype rt = VPD_REAL_IS_DOUBLE ? MPI_DOUBLE : MPI_FLOAT;
    MPI_Allgather(Us, Cb * d_out, rt, Uall, Cb * d_out, rt, g->cp_comm);
    MPI_Allgather(Vs, Cb * d_in, rt, Vall, Cb * d_in, rt, g->cp_comm); /* [cp][d_in][Cb] */
    for (int r = 0; r < g->cp; r++)
        for (int i = 0; i < d_in; i++)
            for (int a = 0; a < Cb; a++) V[(size_t)i * C + r * Cb + a] = Vall[((size_t)r * d_in + i) * Cb + a];
    /* top-k reconstruction: Σ_{a<k} U[a, i] V[j, a] vs Σ_{a<k} P(i, a) σ_a Qt(a, j) */
    real *R = alloc_r(nW), *Rref = alloc_r(nW);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double x = 0, y = 0;
            for (int a = 0; a < k; a++) {
                x += (double)Uall[(size_t)a * d_out + i] * V[(size_t)j * C + a];
                y += (double)P[(size_t)a * m + i] * s[a] * Qt[(size_t)j * mn + a];
            }
            R[(size_t)i * n + j] = (real)x, Rref[(size_t)i * n + j] = (real)y;
        }
    double er = tu_max_rel_err(R, Rref, nW, 1e-30);
    if (er > worst_recon) worst_recon = er;
    CHECK(er <= TOL, "%s cp=%d: top-%d reconstruction rel err %.3e", lc->name, g->cp, k, er);
    if (k == rank) { /* C ≥ rank: the top-k part alone reproduces the target */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) Rref[(size_t)i * n + j] = (real)T_at(lc, W, i, j);
        double et = tu_max_rel_err(R, Rref, nW, 1e-30);
        CHECK(et <= 10 * TOL, "%s cp=%d: top-k reconstruction vs target rel err %.3e", lc->name, g->cp, et);
    }
    /* components a ≥ k: rest × the random init (full is still the serial init) */
    real *V0 = alloc_r((size_t)d_in * C), *U0 = alloc_r((size_t)C * d_out);
    vpd_components ref0;
    vpd_components_setup(&ref0, lc->name, d_in, d_out, C, lc->embedding, V0, U0, W, NULL, NULL);
    vpd_components_init(&ref0, 5, layer);
    double erest = 0;
    for (int a = k; a < C; a++)
        for (int i = 0; i < d_in; i++) {
            double dlt = fabs((double)V[(size_t)i * C + a] - rest * V0[(size_t)i * C + a]);
            if (dlt > erest) erest = dlt;
        }
    for (int a = k; a < C; a++)
        for (int j = 0; j < d_out; j++) {
            double dlt = fabs((double)Uall[(size_t)a * d_out + j] - rest * U0[(size_t)a * d_out + j]);
            if (dlt > erest) erest = dlt;
        }
    free(V0), free(U0);
    CHECK(erest <= TOL, "%s: rest components differ from %.1f x init by %.3e", lc->name, rest, erest);

    free(W), free(V), free(U), free(delta), free(Vs), free(Us), free(Dg), free(GVr), free(GUr), free(G);
    free(Tc), free(s), free(P), free(Qt), free(work), free(sig), free(Vall), free(Uall), free(R), free(Rref);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, world;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    const layer_case cases[] = {
        {"h.0.mlp.c_fc (C > rank)", 13, 9, 12, 0, false},
        {"low-rank (C > rank 5)", 10, 17, 12, 5, false},
        {"tall, truncated (C < rank)", 24, 40, 8, 0, false},
        {"wte (embedding, C < rank)", 11, 6, 4, 0, true},
    };
    const int ncases = (int)(sizeof cases / sizeof cases[0]);
    for (int cp = 1; cp <= world; cp++) {
        if (world % cp) continue;
        vpd_grid g;
        CHECK(vpd_grid_create(&g, MPI_COMM_WORLD, cp, 4) == VPD_OK, "grid cp=%d: %s", cp, vpd_last_error());
        CHECK(g.dp * g.cp == world && g.nprow * g.npcol == cp, "grid %dx%d, BLACS %dx%d", g.dp, g.cp, g.nprow, g.npcol);
        for (int i = 0; i < ncases; i++) run_case(&cases[i], &g, i);
        /* C not divisible by cp: one clear message */
        if (cp > 1) {
            real Vb[6 * 3], Ub[6 * 3], Wb[3 * 3];
            vpd_components bad;
            vpd_components_setup(&bad, "bad", 3, 3, 1, false, Vb, Ub, Wb, NULL, NULL);
            bad.C_total = cp + 1;
            bad.c0 = g.cp_rank;
            const vpd_shard_view badv = vpd_components_shard(&bad);
            vpd_status st = vpd_dist_check_shard(&badv, &g);
            CHECK(st == VPD_ERR_CONFIG && strstr(vpd_last_error(), "divisible"), "C %% cp error: %s", vpd_last_error());
        }
        vpd_grid_free(&g);
        if (rank == 0) fprintf(stderr, "cp=%d dp=%d: done\n", cp, world / cp);
    }
    {
        vpd_grid g;
        vpd_status st = vpd_grid_create(&g, MPI_COMM_WORLD, world + 1, 4);
        CHECK(st == VPD_ERR_CONFIG && strstr(vpd_last_error(), "divide"), "cp > world accepted: %s", vpd_last_error());
    }
    double w[4] = {worst_delta, worst_gram, worst_sigma, worst_recon};
    MPI_Allreduce(MPI_IN_PLACE, w, 4, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0)
        fprintf(stderr, "%s, %d ranks: max rel err delta %.3e, gram %.3e, singular values %.3e, svd reconstruction %.3e (tol %.0e)\n",
                VPD_REAL_IS_DOUBLE ? "double" : "float", world, w[0], w[1], w[2], w[3], TOL);
    int fails = tu_failures, any;
    MPI_Allreduce(&fails, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    fprintf(stderr, "rank %d: %d checks, %d failures\n", rank, tu_checks, tu_failures);
    MPI_Finalize();
    return any ? 1 : 0;
}
