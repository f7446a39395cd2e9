/* Tests of include/vpd/data.h: synthetic toy batches (layout independence: a batch
 * generated in pieces equals the whole batch bit for bit; feature frequencies and value
 * ranges; label functions) and token files (windows in range and contiguous, split vs
 * whole, out-of-vocabulary and malformed files reported with file and byte offset). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "vpd/data.h"

/* whole batch vs three pieces [0,a), [a,b), [b,B) */
static void check_split_toy(vpd_toy_data *d, const char *what) {
    enum { B = 97 };
    int F = d->n_features;
    real *x = malloc(sizeof(real) * B * F), *y = malloc(sizeof(real) * B * F);
    real *xs = malloc(sizeof(real) * B * F), *ys = malloc(sizeof(real) * B * F);
    vpd_toy_batch(d, VPD_DATA_TRAIN, 12345, 1000, B, x, y);
    int cut[4] = {0, 17, 60, B};
    for (int k = 0; k < 3; k++)
        vpd_toy_batch(d, VPD_DATA_TRAIN, 12345, 1000 + cut[k], cut[k + 1] - cut[k], xs + (size_t)cut[k] * F,
                      ys + (size_t)cut[k] * F);
    CHECK(!memcmp(x, xs, sizeof(real) * B * F), "%s: split inputs differ from the whole batch", what);
    CHECK(!memcmp(y, ys, sizeof(real) * B * F), "%s: split labels differ from the whole batch", what);
    /* another step and the eval stream give other data */
    vpd_toy_batch(d, VPD_DATA_TRAIN, 12346, 1000, B, xs, NULL);
    CHECK(memcmp(x, xs, sizeof(real) * B * F) != 0, "%s: step 12345 and 12346 gave the same batch", what);
    vpd_toy_batch(d, VPD_DATA_EVAL, 12345, 1000, B, xs, NULL);
    CHECK(memcmp(x, xs, sizeof(real) * B * F) != 0, "%s: train and eval streams gave the same batch", what);
    free(x); free(y); free(xs); free(ys);
}

static void test_toy_split(void) {
    vpd_toy_data d;
    CHECK(vpd_toy_data_init(&d, 7, VPD_GEN_AT_LEAST_ZERO_ACTIVE, 0, 0.3, 42) == VPD_OK, "init");
    check_split_toy(&d, "tms at_least_zero_active");
    d.value_min = -1;
    d.label = VPD_LABEL_ACT_PLUS_RESID;
    vpd_toy_data_random_coeffs(&d, 3);
    check_split_toy(&d, "resid_mlp act_plus_resid");
    vpd_toy_data_free(&d);
    CHECK(vpd_toy_data_init(&d, 9, VPD_GEN_EXACTLY_N_ACTIVE, 2, 0, 42) == VPD_OK, "init exactly_two");
    check_split_toy(&d, "exactly_two_active");
    vpd_toy_data_free(&d);
}

static void test_toy_frequencies(void) {
    enum { F = 5, N = 200000 };
    const double p = 0.05;
    vpd_toy_data d;
    CHECK(vpd_toy_data_init(&d, F, VPD_GEN_AT_LEAST_ZERO_ACTIVE, 0, p, 7) == VPD_OK, "init");
    real *x = malloc(sizeof(real) * N * F), *y = malloc(sizeof(real) * N * F);
    vpd_toy_batch(&d, VPD_DATA_TRAIN, 0, 0, N, x, y);
    double sigma = sqrt(p * (1 - p) / N);
    int bad_range = 0;
    double vsum = 0;
    long nz_total = 0;
    for (int f = 0; f < F; f++) {
        long nz = 0;
        for (long i = 0; i < N; i++) {
            real v = x[i * F + f];
            if (v != 0) {
                nz++;
                vsum += v;
                if (v < 0 || v >= 1) bad_range++;
            }
        }
        nz_total += nz;
        double freq = (double)nz / N;
        CHECK(fabs(freq - p) < 5 * sigma, "feature %d frequency %.5f, expected %.3f +- %.5f", f, freq, p, 5 * sigma);
    }
    CHECK(bad_range == 0, "%d values outside [0, 1)", bad_range);
    double mean = vsum / nz_total;
    CHECK(fabs(mean - 0.5) < 5 * sqrt(1.0 / 12 / nz_total), "mean active value %.4f, expected 0.5", mean);
    CHECK(!memcmp(x, y, sizeof(real) * N * F), "TMS labels differ from inputs");
    fprintf(stderr, "  tms p=0.05: %ld active of %d (expected %.0f), mean value %.4f\n", nz_total, N * F, p * N * F, mean);

    /* ResidMLP: values in [-1, 1), labels x + ReLU(x) with c = 1 */
    d.value_min = -1;
    d.label = VPD_LABEL_ACT_PLUS_RESID;
    vpd_toy_batch(&d, VPD_DATA_TRAIN, 1, 0, N, x, y);
    int neg = 0, bad = 0, bad_label = 0;
    for (long i = 0; i < (long)N * F; i++) {
        if (x[i] < 0) neg++;
        if (x[i] < -1 || x[i] >= 1) bad++;
        real want = x[i] > 0 ? 2 * x[i] : x[i];
        if (y[i] != want) bad_label++;
    }
    CHECK(bad == 0, "%d resid_mlp values outside [-1, 1)", bad);
    CHECK(neg > 0.4 * p * N * F && neg < 0.6 * p * N * F, "%d negative values of ~%.0f active", neg, p * N * F);
    CHECK(bad_label == 0, "%d labels differ from x + ReLU(x)", bad_label);

    /* random coefficients in [1, 2), labels |c x| */
    vpd_toy_data_random_coeffs(&d, 0);
    int bad_c = 0;
    for (int f = 0; f < F; f++)
        if (d.coeffs[f] < 1 || d.coeffs[f] >= 2) bad_c++;
    CHECK(bad_c == 0, "label coefficients outside [1, 2)");
    d.label = VPD_LABEL_ABS;
    vpd_toy_labels(&d, x, y, 100);
    for (int i = 0; i < 100 * F; i++)
        if (y[i] != (real)fabs((double)(d.coeffs[i % F] * x[i]))) bad_c++;
    CHECK(bad_c == 0, "abs labels wrong");
    vpd_toy_data_free(&d);

    /* exactly_one_active: one nonzero per row, features uniform */
    CHECK(vpd_toy_data_init(&d, F, VPD_GEN_EXACTLY_N_ACTIVE, 1, 0, 9) == VPD_OK, "init exactly_one");
    vpd_toy_batch(&d, VPD_DATA_TRAIN, 0, 0, N, x, NULL);
    long count[F] = {0};
    int bad_rows = 0;
    for (long i = 0; i < N; i++) {
        int nz = 0;
        for (int f = 0; f < F; f++)
            if (x[i * F + f] != 0) { nz++; count[f]++; }
        if (nz != 1) bad_rows++;
    }
    /* a value of exactly 0.0 has probability 2^-24 per row: allow a handful */
    CHECK(bad_rows <= 2, "%d rows without exactly one active feature", bad_rows);
    double s1 = sqrt(0.2 * 0.8 / N);
    for (int f = 0; f < F; f++)
        CHECK(fabs((double)count[f] / N - 0.2) < 5 * s1, "exactly_one: feature %d chosen %.4f of rows", f,
              (double)count[f] / N);
    vpd_toy_data_free(&d);

    vpd_data_gen g;
    int n;
    CHECK(vpd_data_gen_parse("exactly_three_active", "k", &g, &n) == VPD_OK && g == VPD_GEN_EXACTLY_N_ACTIVE && n == 3,
          "parse exactly_three_active");
    CHECK(vpd_data_gen_parse("sometimes_active", "task_config.data_generation_type", &g, &n) == VPD_ERR_CONFIG &&
              strstr(vpd_last_error(), "task_config.data_generation_type"),
          "bad data_generation_type not named: %s", vpd_last_error());
    CHECK(vpd_toy_data_init(&d, 3, VPD_GEN_EXACTLY_N_ACTIVE, 4, 0, 0) == VPD_ERR_CONFIG, "4 of 3 features accepted");
    CHECK(vpd_toy_data_init(&d, 3, VPD_GEN_AT_LEAST_ZERO_ACTIVE, 0, 1.5, 0) == VPD_ERR_CONFIG, "p = 1.5 accepted");
    free(x); free(y);
}

static int write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    fclose(f);
    return w == n ? 0 : -1;
}

static void test_tokens(int width) {
    enum { NT = 5000, V = 251, S = 16, B = 33 };
    char path[64];
    snprintf(path, sizeof path, "test_data_tokens_u%d.bin", 8 * width);
    unsigned char *buf = malloc((size_t)NT * width);
    for (int i = 0; i < NT; i++) { /* little-endian ids i mod V */
        uint32_t id = (uint32_t)(i % V);
        for (int k = 0; k < width; k++) buf[(size_t)i * width + k] = (unsigned char)(id >> (8 * k));
    }
    CHECK(write_file(path, buf, (size_t)NT * width) == 0, "write %s", path);
    vpd_tokens t;
    CHECK(vpd_tokens_open(&t, path, width, 256) == VPD_OK, "open %s: %s", path, vpd_last_error());
    CHECK(t.n_tokens == NT, "n_tokens %lld", (long long)t.n_tokens);
    int32_t in[B * S], tg[B * S], in2[B * S], tg2[B * S];
    CHECK(vpd_tokens_batch(&t, 5, VPD_DATA_TRAIN, 77, 4096, B, S, in, tg) == VPD_OK, "batch: %s", vpd_last_error());
    int bad = 0;
    for (int b = 0; b < B; b++) {
        int64_t st = vpd_tokens_start(&t, 5, VPD_DATA_TRAIN, 77, 4096 + b, S);
        if (st < 0 || st + S + 1 > NT) bad++;
        for (int s = 0; s < S; s++) {
            int32_t x = in[b * S + s], y = tg[b * S + s];
            if (x < 0 || x >= V || y != (x + 1) % V) bad++;
            if (x != (int32_t)(st + s) % V) bad++;
        }
    }
    CHECK(bad == 0, "u%d: %d window errors (range, contiguity or start)", 8 * width, bad);
    /* the same global examples fetched in two pieces */
    CHECK(vpd_tokens_batch(&t, 5, VPD_DATA_TRAIN, 77, 4096, 10, S, in2, tg2) == VPD_OK &&
              vpd_tokens_batch(&t, 5, VPD_DATA_TRAIN, 77, 4106, B - 10, S, in2 + 10 * S, tg2 + 10 * S) == VPD_OK,
          "split batch");
    CHECK(!memcmp(in, in2, sizeof in) && !memcmp(tg, tg2, sizeof tg), "u%d: split token batch differs", 8 * width);
    /* starts cover the file: the smallest and largest of many are near the ends */
    int64_t lo = NT, hi = -1;
    for (int e = 0; e < 20000; e++) {
        int64_t st = vpd_tokens_start(&t, 1, VPD_DATA_TRAIN, 0, e, S);
        if (st < lo) lo = st;
        if (st > hi) hi = st;
    }
    CHECK(lo >= 0 && lo < 10 && hi <= NT - S - 1 && hi > NT - S - 12, "starts span [%lld, %lld] of [0, %d]",
          (long long)lo, (long long)hi, NT - S - 1);
    CHECK(vpd_tokens_window(&t, NT - S, S, in, tg) == VPD_ERR_ARG, "window past the end accepted");
    vpd_tokens_close(&t);

    /* an out-of-vocabulary id at token 1000 */
    uint32_t badid = 300;
    for (int k = 0; k < width; k++) buf[(size_t)1000 * width + k] = (unsigned char)(badid >> (8 * k));
    CHECK(write_file(path, buf, (size_t)NT * width) == 0, "rewrite %s", path);
    CHECK(vpd_tokens_open(&t, path, width, 256) == VPD_OK, "open (ids are checked lazily)");
    CHECK(vpd_tokens_window(&t, 0, S, in, tg) == VPD_OK, "window before the bad id");
    vpd_status s = vpd_tokens_window(&t, 990, S, in, tg);
    char want[32];
    snprintf(want, sizeof want, "byte offset %d", 1000 * width);
    CHECK(s == VPD_ERR_VALUE && strstr(vpd_last_error(), path) && strstr(vpd_last_error(), want) &&
              strstr(vpd_last_error(), "300"),
          "out-of-vocab message should name %s and %s: %s", path, want, vpd_last_error());
    fprintf(stderr, "  %s\n", vpd_last_error());
    vpd_tokens_close(&t);
    free(buf);
    remove(path);
}

static void test_token_files(void) {
    const char *odd = "test_data_odd.bin";
    CHECK(write_file(odd, "1234567", 7) == 0, "write");
    vpd_tokens t;
    CHECK(vpd_tokens_open(&t, odd, 2, 256) == VPD_ERR_FORMAT && strstr(vpd_last_error(), odd) &&
              strstr(vpd_last_error(), "multiple of 2"),
          "odd size: %s", vpd_last_error());
    CHECK(vpd_tokens_open(&t, odd, 4, 256) == VPD_ERR_FORMAT, "7 bytes as uint32 accepted");
    remove(odd);
    /* issue 17: a directory, an empty file, one token, and a start asked for a window that cannot fit */
    CHECK(vpd_tokens_open(&t, ".", 2, 256) == VPD_ERR_IO && strstr(vpd_last_error(), "not a regular file") &&
              strstr(vpd_last_error(), "directory"), "directory: %s", vpd_last_error());
    CHECK(write_file(odd, "", 0) == 0, "write");
    CHECK(vpd_tokens_open(&t, odd, 2, 256) == VPD_ERR_FORMAT && strstr(vpd_last_error(), "0 tokens, need at least 2"),
          "empty: %s", vpd_last_error());
    CHECK(write_file(odd, "\x01\x00\x02\x00", 4) == 0, "write");
    CHECK(vpd_tokens_open(&t, odd, 2, 256) == VPD_OK, "2 tokens: %s", vpd_last_error());
    int32_t in[4], tg[4];
    CHECK(vpd_tokens_start(&t, 1, VPD_DATA_TRAIN, 0, 0, 3) == 0, "start for a window that does not fit");
    CHECK(vpd_tokens_batch(&t, 1, VPD_DATA_TRAIN, 0, 0, 1, 3, in, tg) == VPD_ERR_ARG &&
              strstr(vpd_last_error(), "fewer than one window"), "batch: %s", vpd_last_error());
    CHECK(vpd_tokens_batch(&t, 1, VPD_DATA_TRAIN, 0, 0, 1, 1, in, tg) == VPD_OK && in[0] == 1 && tg[0] == 2, "S=1");
    vpd_tokens_close(&t);
    CHECK(write_file(odd, "\xff\xff\xff\xff\x00\x00\x00\x00", 8) == 0, "write");
    CHECK(vpd_tokens_open(&t, odd, 4, 256) == VPD_OK, "open");
    CHECK(vpd_tokens_window(&t, 0, 1, in, tg) == VPD_ERR_VALUE && strstr(vpd_last_error(), "4294967295"),
          "id 2^32-1: %s", vpd_last_error());
    vpd_tokens_close(&t);
    remove(odd);
    CHECK(vpd_tokens_open(&t, "no/such/tokens.bin", 2, 256) == VPD_ERR_IO && strstr(vpd_last_error(), "no/such/tokens.bin"),
          "missing file: %s", vpd_last_error());
    int w = 0;
    CHECK(vpd_tokens_dtype_parse("uint32", "data.dtype", &w) == VPD_OK && w == 4, "uint32");
    CHECK(vpd_tokens_dtype_parse("int8", "data.dtype", &w) == VPD_ERR_CONFIG && strstr(vpd_last_error(), "data.dtype"),
          "bad dtype: %s", vpd_last_error());
}

int main(void) {
    test_toy_split();
    test_toy_frequencies();
    test_tokens(2);
    test_tokens(4);
    test_token_files();
    TEST_REPORT();
}
