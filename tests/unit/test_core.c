/* Core: Philox4x32-10 against Random123's published known-answer vectors (kat_vectors),
 * element-indexed draws, arena, gemm against the naive product, errors. */
#include <string.h>

#include "testutil.h"
#include "vpd/core.h"

static void test_philox_kat(void) {
    /* Random123 kat_vectors: "philox4x32 10 <ctr x4> <key x2> <expected x4>" */
    struct { uint32_t ctr[4], key[2], expect[4]; } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t t = 0; t < sizeof kat / sizeof kat[0]; t++) {
        uint32_t out[4];
        vpd_philox4x32_10(kat[t].ctr, kat[t].key, out);
        for (int j = 0; j < 4; j++)
            CHECK(out[j] == kat[t].expect[j], "philox KAT %zu word %d: got %08x expected %08x", t, j, out[j],
                  kat[t].expect[j]);
    }
}

static void test_indexed_draws(void) {
    vpd_rng r = vpd_rng_make(1234, VPD_RNG_TEST, 7, 3);
    real all[101], part[60];
    vpd_rng_fill_uniform(&r, 0, 101, all);
    vpd_rng_fill_uniform(&r, 41, 60, part); /* an unaligned slice draws the same numbers */
    int same = 1;
    for (int i = 0; i < 60; i++) same &= part[i] == all[41 + i];
    CHECK(same, "uniform slice differs from full draw");
    for (int i = 0; i < 101; i++) CHECK(all[i] == vpd_rng_uniform(&r, (uint64_t)i), "uniform %d", i);
    real nall[51], npart[20];
    vpd_rng_fill_normal(&r, 0, 51, nall);
    vpd_rng_fill_normal(&r, 31, 20, npart);
    same = 1;
    for (int i = 0; i < 20; i++) same &= npart[i] == nall[31 + i] && nall[31 + i] == vpd_rng_normal(&r, 31 + (uint64_t)i);
    CHECK(same, "normal slice differs");
    /* moments of a large sample */
    double s = 0, s2 = 0, un = 0;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        double z = vpd_rng_normal(&r, (uint64_t)i);
        s += z; s2 += z * z;
        un += vpd_rng_uniform(&r, (uint64_t)i);
    }
    CHECK(fabs(s / n) < 0.01 && fabs(s2 / n - 1) < 0.02, "normal moments %g %g", s / n, s2 / n);
    CHECK(fabs(un / n - 0.5) < 0.005, "uniform mean %g", un / n);
    /* other sub-streams and purposes differ */
    vpd_rng r2 = vpd_rng_make(1234, VPD_RNG_TEST, 7, 4), r3 = vpd_rng_make(1234, VPD_RNG_MASK, 7, 3);
    CHECK(vpd_rng_u32(&r, 0) != vpd_rng_u32(&r2, 0) && vpd_rng_u32(&r, 0) != vpd_rng_u32(&r3, 0), "streams collide");
    /* k-subsets: exactly k chosen, each element equally likely */
    int count[6] = {0};
    for (int d = 0; d < 30000; d++) {
        uint8_t m[6];
        vpd_rng_k_subset(&r, (uint64_t)d, 6, 2, m);
        int k = 0;
        for (int j = 0; j < 6; j++) { k += m[j]; count[j] += m[j]; }
        if (k != 2) { CHECK(0, "k-subset size %d", k); break; }
    }
    for (int j = 0; j < 6; j++) CHECK(fabs(count[j] / 30000.0 - 1.0 / 3) < 0.015, "k-subset freq %d: %g", j, count[j] / 30000.0);
}

static void test_gemm(void) {
    enum { M = 7, N = 5, K = 9 };
    real A[M * K], At[K * M], B[K * N], Bt[N * K], C1[M * N], C2[M * N];
    tu_fill(A, M * K, 1, 1.0);
    tu_fill(B, K * N, 2, 1.0);
    for (int i = 0; i < M; i++) for (int k = 0; k < K; k++) At[k * M + i] = A[i * K + k];
    for (int k = 0; k < K; k++) for (int j = 0; j < N; j++) Bt[j * K + k] = B[k * N + j];
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            tu_fill(C1, M * N, 3, 1.0);
            memcpy(C2, C1, sizeof C1);
            vpd_gemm(ta, tb, M, N, K, 0.5f, ta ? At : A, ta ? M : K, tb ? Bt : B, tb ? K : N, 2.0f, C1, N);
            vpd_gemm_naive(ta, tb, M, N, K, 0.5f, ta ? At : A, ta ? M : K, tb ? Bt : B, tb ? K : N, 2.0f, C2, N);
            double e = tu_max_rel_err(C1, C2, M * N, 1e-6);
            CHECK(e < 1e-5, "gemm ta=%d tb=%d rel err %g", ta, tb, e);
        }
}

static void test_arena_and_errors(void) {
    vpd_arena a;
    CHECK(vpd_arena_init(&a, 1024, "test") == VPD_OK, "arena init");
    char *p = vpd_arena_alloc(&a, 10), *q = vpd_arena_alloc(&a, 100);
    CHECK(((uintptr_t)p % 64) == 0 && ((uintptr_t)q % 64) == 0 && q - p == 64, "arena alignment");
    size_t mark = vpd_arena_mark(&a);
    vpd_arena_alloc(&a, 500);
    vpd_arena_reset(&a, mark);
    CHECK(a.used == mark && a.peak >= mark + 512, "arena reset/peak");
    vpd_arena_free(&a);

    real x[3] = {1, NAN, 2};
    CHECK(vpd_check_finite(x, 3, "h.0.attn.q_proj") == VPD_ERR_VALUE, "NaN detected");
    CHECK(strstr(vpd_last_error(), "h.0.attn.q_proj") && strstr(vpd_last_error(), "index 1"), "NaN message: %s",
          vpd_last_error());
    int64_t shape[2] = {3, 4}, want[2] = {4, 3};
    vpd_tensor t = vpd_tensor_view(x, "W", 2, shape);
    CHECK(vpd_tensor_check_shape(&t, 2, want) == VPD_ERR_SHAPE && strstr(vpd_last_error(), "[4, 3]") &&
              strstr(vpd_last_error(), "[3, 4]"),
          "shape message: %s", vpd_last_error());
    vpd_error_context(VPD_ERR_SHAPE, "reading %s", "model.safetensors");
    CHECK(strncmp(vpd_last_error(), "reading model.safetensors: ", 27) == 0, "context: %s", vpd_last_error());
}

int main(void) {
    test_philox_kat();
    test_indexed_draws();
    test_gemm();
    test_arena_and_errors();
    TEST_REPORT();
}
