/* Tensor tables (include/vpd/tensor_table.h) and checkpoint files (checkpoint.h) on P ranks
 * (1 as a unit test; 2 and 4 under mpiexec, tests/cmake/io.cmake): every sharding rule and a
 * strided row are written collectively, read back on the same layout, and read by one rank as
 * the global arrays, element by element against the formula — so every rank's hyperslab is
 * where it belongs. Also: a CHECK attribute that differs, a shape that differs, and a
 * checkpoint of an older format version give clear errors on every rank. */
#include <mpi.h>
#include <unistd.h>

#include "testutil.h"
#include "vpd/checkpoint.h"
#include "vpd/comm.h"
#include "vpd/io.h"
#include "vpd/tensor_table.h"

/* the global value of element (i, j) of tensor `which` */
static real gval(int which, int64_t i, int64_t j) { return (real)(which * 1000 + i * 16 + j) * (real)0.25; }

typedef struct {
    int dp, cp, dp_rank, cp_rank;
    int64_t RE, CV, CU;  /* global sizes: example rows, V columns, U rows */
    int64_t ex0, nex, c0, nc;
    real rep[3 * 5], ex[64 * 3], V[6 * 64], U[64 * 3], strided[64 * 3];
    int64_t i64[2];
} fixture;

static void fill(fixture *f, int dp, int cp, int dp_rank, int cp_rank, bool values) {
    memset(f, 0, sizeof *f);
    f->dp = dp;
    f->cp = cp;
    f->dp_rank = dp_rank;
    f->cp_rank = cp_rank;
    f->RE = 4 * dp;
    f->CV = 4 * cp;
    f->CU = 4 * cp;
    f->ex0 = (int64_t)dp_rank * (f->RE / dp);
    f->nex = f->RE / dp;
    f->c0 = (int64_t)cp_rank * (f->CV / cp);
    f->nc = f->CV / cp;
    if (!values) return;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 5; j++) f->rep[i * 5 + j] = gval(1, i, j);
    for (int64_t i = 0; i < f->nex; i++)
        for (int j = 0; j < 3; j++) f->ex[i * 3 + j] = gval(2, f->ex0 + i, j);
    for (int i = 0; i < 6; i++)
        for (int64_t c = 0; c < f->nc; c++) f->V[i * f->nc + c] = gval(3, i, f->c0 + c);
    for (int64_t c = 0; c < f->nc; c++)
        for (int j = 0; j < 3; j++) f->U[c * 3 + j] = gval(4, f->c0 + c, j);
    /* [nex, nc + 1]: the block of tensor 5, then the Δ-like column of tensor 6 */
    for (int64_t i = 0; i < f->nex; i++) {
        for (int64_t c = 0; c < f->nc; c++) f->strided[i * (f->nc + 1) + c] = gval(5, f->ex0 + i, f->c0 + c);
        f->strided[i * (f->nc + 1) + f->nc] = gval(6, f->ex0 + i, 0);
    }
    f->i64[0] = 7;
    f->i64[1] = -9;
}

static vpd_status build(vpd_tensor_table *t, fixture *f, MPI_Comm comm, const char *cls) {
    vpd_table_init(t, comm, f->dp, f->dp_rank, f->cp, f->cp_rank);
    VPD_TRY(vpd_table_replicated(t, "/rep", f->rep, VPD_TT_REAL, 2, (int64_t[]){3, 5}));
    VPD_TRY(vpd_table_by_example(t, "/g/ex", f->ex, VPD_TT_REAL, 2, (int64_t[]){f->RE, 3}, f->ex0, f->nex));
    VPD_TRY(vpd_table_by_component(t, "/g/comp/V", f->V, VPD_TT_REAL, 2, (int64_t[]){6, f->CV}, 1, f->c0, f->nc));
    VPD_TRY(vpd_table_by_component(t, "/g/comp/U", f->U, VPD_TT_REAL, 2, (int64_t[]){f->CU, 3}, 0, f->c0, f->nc));
    vpd_table_row r;
    memset(&r, 0, sizeof r);
    snprintf(r.name, sizeof r.name, "/s/main");
    r.data = f->strided;
    r.dtype = VPD_TT_REAL;
    r.ndim = 2;
    r.shape[0] = f->RE;
    r.shape[1] = f->CV;
    r.shard = VPD_SHARD_BY_EXAMPLE | VPD_SHARD_BY_COMPONENT;
    r.row0 = f->ex0;
    r.nrows = f->nex;
    r.comp_axis = 1;
    r.c0 = f->c0;
    r.c_local = f->nc;
    r.mem_ld = f->nc + 1;
    VPD_TRY(vpd_table_add(t, &r));
    VPD_TRY(vpd_table_by_example(t, "/s/delta", f->strided, VPD_TT_REAL, 1, (int64_t[]){f->RE}, f->ex0, f->nex));
    vpd_table_last_strided(t, f->nc + 1, f->nc);
    VPD_TRY(vpd_table_replicated(t, "/i64", f->i64, VPD_TT_I64, 1, (int64_t[]){2}));
    VPD_TRY(vpd_table_attr_int(t, "/g", "t", 42, VPD_ATTR_LOAD, NULL));
    VPD_TRY(vpd_table_attr_str(t, "/g", "classname", cls, VPD_ATTR_CHECK, "the losses changed"));
    VPD_TRY(vpd_table_attr_double(t, "/", "info", 0.5, VPD_ATTR_INFO, NULL));
    return VPD_OK;
}

int main(int argc, char **argv) {
    vpd_dist_init(&argc, &argv);
    MPI_Comm world = vpd_comm_world();
    const int P = vpd_world_size(), rank = vpd_world_rank();
    const int cp = P % 2 == 0 ? 2 : 1, dp = P / cp;
    const int dp_rank = rank / cp, cp_rank = rank % cp;
    vpd_log_set_rank(rank, P);
    char file[64], dir[64]; /* per rank count: the 1-, 2- and 4-rank tests may run at once */
    snprintf(file, sizeof file, "tt_np%d.h5", P);
    snprintf(dir, sizeof dir, "tt_ckpt_np%d", P);

    /* write on the dp × cp layout */
    static fixture w, r, g;
    fill(&w, dp, cp, dp_rank, cp_rank, true);
    vpd_tensor_table t;
    CHECK(build(&t, &w, world, "A") == VPD_OK, "%s", vpd_last_error());
    CHECK(vpd_table_save(file, &t) == VPD_OK, "save: %s", vpd_last_error());
    vpd_table_free(&t);

    /* read back on the same layout */
    fill(&r, dp, cp, dp_rank, cp_rank, false);
    CHECK(build(&t, &r, world, "A") == VPD_OK, "%s", vpd_last_error());
    t.attrs[0].i = 0;
    CHECK(vpd_table_load(file, &t) == VPD_OK, "load: %s", vpd_last_error());
    const vpd_table_attr *at = vpd_table_get_attr(&t, "/g", "t");
    CHECK(at && at->loaded && at->i == 42, "LOAD attribute");
    vpd_table_free(&t);
    CHECK(!memcmp(&r, &w, sizeof r), "rank %d: the table read back differs from the one written", rank);

    /* one rank reads the global arrays and checks every element */
    if (rank == 0) {
        fill(&g, 1, 1, 0, 0, false);
        g.RE = w.RE;
        g.nex = w.RE;
        g.CV = g.CU = g.nc = w.CV;
        CHECK(build(&t, &g, vpd_comm_self(), "A") == VPD_OK, "%s", vpd_last_error());
        CHECK(vpd_table_load(file, &t) == VPD_OK, "global load: %s", vpd_last_error());
        vpd_table_free(&t);
        int bad = 0;
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 5; j++) bad += g.rep[i * 5 + j] != gval(1, i, j);
        for (int64_t i = 0; i < g.RE; i++)
            for (int j = 0; j < 3; j++) bad += g.ex[i * 3 + j] != gval(2, i, j);
        for (int i = 0; i < 6; i++)
            for (int64_t c = 0; c < g.CV; c++) bad += g.V[i * g.CV + c] != gval(3, i, c);
        for (int64_t c = 0; c < g.CU; c++)
            for (int j = 0; j < 3; j++) bad += g.U[c * 3 + j] != gval(4, c, j);
        for (int64_t i = 0; i < g.RE; i++) {
            for (int64_t c = 0; c < g.CV; c++) bad += g.strided[i * (g.CV + 1) + c] != gval(5, i, c);
            bad += g.strided[i * (g.CV + 1) + g.CV] != gval(6, i, 0);
        }
        bad += g.i64[0] != 7 || g.i64[1] != -9;
        CHECK(bad == 0, "%d elements of the global arrays are not where the %d x %d layout should have put them", bad,
              dp, cp);
    }
    vpd_barrier(world);

    /* a CHECK attribute that differs: every rank fails with the same message */
    fill(&r, dp, cp, dp_rank, cp_rank, false);
    CHECK(build(&t, &r, world, "B") == VPD_OK, "%s", vpd_last_error());
    vpd_status s = vpd_table_load(file, &t);
    CHECK(s == VPD_ERR_CONFIG && strstr(vpd_last_error(), "'A' in the file, 'B' in this run") &&
              strstr(vpd_last_error(), "the losses changed") && strstr(vpd_last_error(), file),
          "CHECK mismatch: %s", vpd_last_error());
    vpd_table_free(&t);

    /* a global shape that differs names the dataset and both shapes */
    fill(&r, dp, cp, dp_rank, cp_rank, false);
    CHECK(build(&t, &r, world, "A") == VPD_OK, "%s", vpd_last_error());
    t.rows[0].shape[1] = 4;
    s = vpd_table_load(file, &t);
    CHECK(s == VPD_ERR_SHAPE && strstr(vpd_last_error(), "'/rep' has shape [3, 5], this run expects [3, 4]"),
          "shape mismatch: %s", vpd_last_error());
    vpd_table_free(&t);

    /* checkpoint files: write, find, read; an older format version is refused clearly */
    CHECK(build(&t, &w, world, "A") == VPD_OK, "%s", vpd_last_error());
    double secs = 0;
    size_t bytes = 0;
    CHECK(vpd_ckpt_write_table(dir, 7, &t, "a: 1", "{}", &secs, &bytes) == VPD_OK && bytes > 0, "ckpt write: %s",
          vpd_last_error());
    vpd_table_free(&t);
    char path[256];
    int step = -1;
    CHECK(vpd_checkpoint_latest(dir, path, sizeof path, &step) == VPD_OK && step == 7, "latest: %s",
          vpd_last_error());
    fill(&r, dp, cp, dp_rank, cp_rank, false);
    CHECK(build(&t, &r, world, "A") == VPD_OK, "%s", vpd_last_error());
    step = -1;
    CHECK(vpd_ckpt_read_table(path, &t, &step) == VPD_OK && step == 7, "ckpt read: %s", vpd_last_error());
    CHECK(!memcmp(&r, &w, sizeof r), "rank %d: the checkpoint read back differs", rank);
    vpd_barrier(world);
    if (rank == 0) {
        vpd_h5 f;
        CHECK(vpd_h5_open(&f, path, true) == VPD_OK && vpd_h5_set_attr_int(&f, "/", "version", 1) == VPD_OK,
              "%s", vpd_last_error());
        vpd_h5_close(&f);
    }
    vpd_barrier(world);
    s = vpd_ckpt_read_table(path, &t, &step);
    CHECK(s == VPD_ERR_FORMAT && strstr(vpd_last_error(), "checkpoint format version 1, this vpd reads version 2"),
          "old version: %s", vpd_last_error());
    vpd_table_free(&t);

    int fails = vpd_max_int(tu_failures, world);
    if (rank != 0) tu_failures = 0; /* rank 0 reports */
    else tu_failures = fails;
    vpd_dist_finalize(0);
    TEST_REPORT();
}
