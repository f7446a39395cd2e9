/* vpd_gather_bytes in rounds (src/dist/comm.c): with the round size lowered to a few bytes
 * (vpd_comm_set_gather_chunk) blocks of many rounds, a last partial round and blocks smaller
 * than one round arrive on the root in rank order, byte for byte; then the default round size
 * (one round). Run under mpiexec -n 1, 2, 3. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "vpd/comm.h"

static unsigned char pattern(int rank, size_t i) { return (unsigned char)((rank * 131 + i * 7 + (i >> 8)) & 0xff); }

int main(int argc, char **argv) {
    vpd_dist_init(&argc, &argv);
    MPI_Comm w = vpd_comm_world();
    const int rank = vpd_comm_rank(w), size = vpd_comm_size(w);
    const size_t chunks[] = {7, 64, 0};
    const size_t sizes[] = {1, 6, 7, 8, 1000, 65537};
    for (size_t ci = 0; ci < sizeof chunks / sizeof *chunks; ci++) {
        vpd_comm_set_gather_chunk(chunks[ci]);
        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
            for (int root = 0; root < size; root++) {
                const size_t n = sizes[si];
                unsigned char *send = malloc(n), *recv = rank == root ? malloc(n * (size_t)size) : NULL;
                for (size_t i = 0; i < n; i++) send[i] = pattern(rank, i);
                if (recv) memset(recv, 0xEE, n * (size_t)size);
                vpd_gather_bytes(send, n, recv, root, w);
                if (rank == root) {
                    size_t bad = 0;
                    for (int r = 0; r < size; r++)
                        for (size_t i = 0; i < n; i++) bad += recv[(size_t)r * n + i] != pattern(r, i);
                    CHECK(bad == 0, "gather of %zu bytes in rounds of %zu to root %d on %d ranks: %zu wrong bytes", n,
                          chunks[ci], root, size, bad);
                }
                free(send);
                free(recv);
            }
        }
    }
    /* the int-count limit: a round is never larger than 1 GiB whatever is asked */
    vpd_comm_set_gather_chunk((size_t)3 << 30);
    CHECK(vpd_comm_set_gather_chunk(0) == (size_t)1 << 30, "gather round size must be capped at 1 GiB");
    int fails = vpd_max_int(tu_failures, w);
    if (rank == 0) fprintf(stderr, "test_comm_gather: %d ranks, %d checks, %s\n", size, tu_checks, fails ? "FAILED" : "ok");
    return vpd_dist_finalize(fails ? 1 : 0);
}
