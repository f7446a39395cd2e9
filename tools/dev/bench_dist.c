/* bench_dist: `vpd decompose` with a meter on it. Runs the very same command
 *     mpiexec -n N bench_dist CONFIG.yaml [--out RUN] [--set k=v ...]
 * and, per training step, measures the wall time of vpd_trainer_step and every
 * MPI_Allreduce it makes (payload bytes, calls, time inside MPI), classified as
 *   component gradients (real, n_comp_params in ≤ 1 Mi buckets), CI-function gradients
 *   (real, ci n_params), PPGD shared-source gradients (real, a non-per-rank PPGD state's
 *   size; one per warmup step + one per loss), PGD shared_across_batch sources (other real
 *   counts), importance-minimality sums (double, before the gradient allreduce), metrics
 *   (double, after it).
 * How: MPI_Allreduce is interposed through the PMPI profiling interface, and
 * vpd_trainer_step is wrapped with the linker's --wrap (tests/cmake/dist.cmake), so the
 * numbers are what the trainer actually sends, not a model of it. Step 0 and the first
 * `skip` steps (compile-free but cache-cold) are left out of the timing statistics.
 * Prints one summary on rank 0, ending with a greppable "BENCH ..." line. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "vpd/trainer.h"

enum { K_COMP, K_CI, K_PPGD, K_PGD, K_IM, K_METRICS, K_OTHER, K_N };
static const char *kname[K_N] = {"component gradients (U, V)", "CI-function gradients", "PPGD shared-source gradients",
                                 "PGD shared sources", "importance-minimality sums", "metrics (losses, L0)",
                                 "other"};

#define MAX_STEPS 100000
static struct {
    bool in_step, grads_seen;
    const vpd_decomp *d;
    double bytes[K_N], calls[K_N], mpi_time;
    /* per-step records */
    int n;
    double *step_ms, *step_mpi_ms, *step_bytes;
    double tot_bytes[K_N], tot_calls[K_N];
} B;

/* a count that is n, or one ≤ 1 Mi-value bucket of n (vpd_allreduce_mean) */
static bool is_part_of(size_t c, size_t n) {
    const size_t bucket = (size_t)1 << 20;
    return c == n || (n > bucket && (c == bucket || c == n % bucket));
}

/* In a step every source/IM allreduce comes before the gradient allreduce and the metrics
 * after it, so the order disambiguates equal sizes. */
static int classify(MPI_Datatype t, int count) {
    const vpd_decomp *d = B.d;
    const size_t c = (size_t)count;
    if (t == MPI_DOUBLE && !VPD_REAL_IS_DOUBLE) return B.grads_seen ? K_METRICS : K_IM;
    if (t != (VPD_REAL_IS_DOUBLE ? MPI_DOUBLE : MPI_FLOAT)) return K_OTHER;
    if (!B.grads_seen) {
        for (int i = 0; i < d->cfg->n_losses; i++)
            if (d->loss.ppgd[i] && c == vpd_ppgd_numel(d->loss.ppgd[i])) return K_PPGD;
        return is_part_of(c, d->params.n_comp_params) ? K_COMP : K_PGD;
    }
    if (is_part_of(c, d->params.ci->n_params)) return K_CI;
    if (is_part_of(c, d->params.n_comp_params)) return K_COMP;
    return K_OTHER;
}

int MPI_Allreduce(const void *sendbuf, void *recvbuf, int count, MPI_Datatype datatype, MPI_Op op, MPI_Comm comm) {
    if (!B.in_step) return PMPI_Allreduce(sendbuf, recvbuf, count, datatype, op, comm);
    double t0 = MPI_Wtime();
    int rc = PMPI_Allreduce(sendbuf, recvbuf, count, datatype, op, comm);
    B.mpi_time += MPI_Wtime() - t0;
    int sz;
    MPI_Type_size(datatype, &sz);
    int k = classify(datatype, count);
    if (k == K_COMP) B.grads_seen = true;
    B.bytes[k] += (double)count * sz;
    B.calls[k] += 1;
    return rc;
}

vpd_status __real_vpd_trainer_step(vpd_trainer *t, vpd_step_metrics *sm);
vpd_status __wrap_vpd_trainer_step(vpd_trainer *t, vpd_step_metrics *sm) {
    memset(B.bytes, 0, sizeof B.bytes);
    memset(B.calls, 0, sizeof B.calls);
    B.mpi_time = 0;
    B.d = t->d;
    B.grads_seen = false;
    B.in_step = true;
    double t0 = MPI_Wtime();
    vpd_status s = __real_vpd_trainer_step(t, sm);
    double dt = MPI_Wtime() - t0;
    B.in_step = false;
    if (B.n < MAX_STEPS && B.step_ms) {
        double tb = 0;
        for (int k = 0; k < K_N; k++) tb += B.bytes[k];
        B.step_ms[B.n] = 1e3 * dt;
        B.step_mpi_ms[B.n] = 1e3 * B.mpi_time;
        B.step_bytes[B.n] = tb;
        B.n++;
        for (int k = 0; k < K_N; k++) B.tot_bytes[k] = B.bytes[k], B.tot_calls[k] = B.calls[k]; /* per step: constant */
    }
    return s;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank = 0, world = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    vpd_log_set_rank(rank, world);
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        if (rank == 0)
            fprintf(stderr, "usage: mpiexec -n N bench_dist CONFIG.yaml [vpd decompose options]\n"
                            "runs `vpd decompose` and reports time and allreduce bytes per step\n");
        MPI_Finalize();
        return argc < 2 ? 2 : 0;
    }
    B.step_ms = calloc(MAX_STEPS, sizeof(double));
    B.step_mpi_ms = calloc(MAX_STEPS, sizeof(double));
    B.step_bytes = calloc(MAX_STEPS, sizeof(double));
    /* argv[0] stands for the subcommand name */
    char *sub[256];
    int n = 0;
    sub[n++] = "decompose";
    for (int i = 1; i < argc && n < 255; i++) sub[n++] = argv[i];
    sub[n] = NULL;
    int status = vpd_cmd_decompose(n, sub);
    int worst = 0;
    MPI_Allreduce(&status, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);

    /* slowest rank per step (a step takes as long as its slowest replica) */
    int steps = B.n;
    MPI_Allreduce(MPI_IN_PLACE, &steps, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (worst == 0 && steps > 0) {
        MPI_Allreduce(MPI_IN_PLACE, B.step_ms, steps, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        MPI_Allreduce(MPI_IN_PLACE, B.step_mpi_ms, steps, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (rank == 0) {
            const int skip = steps > 4 ? 2 : 0;
            /* the last iteration has no update: leave it out too */
            const int m = steps - skip - (steps > 1 ? 1 : 0);
            double *v = malloc(sizeof(double) * (size_t)(m > 0 ? m : 1)), mean = 0, mpi = 0;
            for (int i = 0; i < m; i++) v[i] = B.step_ms[skip + i], mean += v[i], mpi += B.step_mpi_ms[skip + i];
            mean /= m > 0 ? m : 1;
            mpi /= m > 0 ? m : 1;
            qsort(v, (size_t)m, sizeof(double), cmp_d);
            double med = m > 0 ? v[m / 2] : 0, mn = m > 0 ? v[0] : 0;
            double tb = 0, tc = 0;
            printf("bench_dist: %d rank(s), %d timed steps (of %d; first %d and the last skipped)\n", world, m, steps, skip);
            printf("  time per step (slowest rank): median %.2f ms, mean %.2f ms, min %.2f ms; in MPI_Allreduce %.2f ms\n",
                   med, mean, mn, mpi);
            printf("  allreduce payload per step and rank (ring traffic per rank = 2(p-1)/p x payload):\n");
            printf("    %-30s %8s %14s\n", "what", "calls", "bytes");
            for (int k = 0; k < K_N; k++) {
                if (!B.tot_calls[k]) continue;
                printf("    %-30s %8.0f %14.0f\n", kname[k], B.tot_calls[k], B.tot_bytes[k]);
                tb += B.tot_bytes[k];
                tc += B.tot_calls[k];
            }
            printf("    %-30s %8.0f %14.0f\n", "total", tc, tb);
            printf("BENCH ranks=%d steps=%d ms_per_step_median=%.3f ms_per_step_mean=%.3f allreduce_ms=%.3f "
                   "allreduce_calls=%.0f allreduce_bytes=%.0f\n",
                   world, m, med, mean, mpi, tc, tb);
            free(v);
        }
    }
    free(B.step_ms);
    free(B.step_mpi_ms);
    free(B.step_bytes);
    MPI_Finalize();
    return worst;
}
