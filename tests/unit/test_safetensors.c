/* File formats: safetensors round trip, a file written by Python (tests/cmake/io.cmake)
 * read by C in F32/F64/F16/BF16, every malformed-input case giving one message that names
 * the file or tensor; HDF5 helpers round trip (real, int32, uint32, int64, attributes),
 * replacement, exists, and their error messages. Runs in build/fixtures. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "vpd/io.h"

/* the value convention shared with io.cmake: exact in F16 and BF16 */
static real val(int i, int seed) { return (real)(((37 * i + 11 * seed) % 64) / 16.0 - 2.0); }

/* raw file: 8-byte length (hlen_field), the header text, then `ndata` zero bytes */
static void write_raw(const char *path, uint64_t hlen_field, const char *header, size_t ndata) {
    FILE *f = fopen(path, "wb");
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hlen_field >> (8 * i));
    fwrite(b, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < ndata; i++) fputc(0, f);
    fclose(f);
}

static void test_roundtrip(void) {
    real a[6], b[4], s[1] = {3.25f};
    /* files hold float32: values rounded to float first, so the double build is bit exact too */
    for (int i = 0; i < 6; i++) a[i] = (real)(float)(val(i, 1) * 0.3); /* not exact in bf16 */
    for (int i = 0; i < 4; i++) b[i] = (real)(float)(1e-3 * (i + 1));
    vpd_tensor t[3] = {vpd_tensor_view(a, "layers.0.w", 2, (int64_t[]){2, 3}),
                       vpd_tensor_view(b, "b", 1, (int64_t[]){4}), vpd_tensor_view(s, "scalar", 0, NULL)};
    const char *meta[] = {"format", "pt", "note", "round trip"};
    CHECK(vpd_st_write("rt.safetensors", t, 3, meta, 2) == VPD_OK, "write: %s", vpd_last_error());

    FILE *f = fopen("rt.safetensors", "rb");
    unsigned char lb[8] = {0};
    CHECK(f && fread(lb, 1, 8, f) == 8, "reopen");
    if (f) fclose(f);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | lb[i];
    CHECK(hl % 8 == 0, "header length %llu is not padded to 8", (unsigned long long)hl);

    vpd_safetensors st;
    CHECK(vpd_st_open(&st, "rt.safetensors") == VPD_OK, "open: %s", vpd_last_error());
    CHECK(st.n == 3, "entries %d", st.n);
    CHECK(st.n == 3 && !strcmp(st.entries[0].name, "layers.0.w") && !strcmp(st.entries[0].dtype, "F32"),
          "entry 0 name/dtype");
    CHECK(st.n == 3 && st.entries[2].ndim == 0, "scalar ndim");
    CHECK(vpd_st_metadata(&st, "note") && !strcmp(vpd_st_metadata(&st, "note"), "round trip"), "metadata");
    CHECK(vpd_st_metadata(&st, "nope") == NULL, "absent metadata");
    real ra[6], rb[4], rs[1];
    CHECK(vpd_st_read(&st, "layers.0.w", ra, 2, (int64_t[]){2, 3}) == VPD_OK, "%s", vpd_last_error());
    CHECK(vpd_st_read(&st, "b", rb, 1, (int64_t[]){4}) == VPD_OK, "%s", vpd_last_error());
    CHECK(vpd_st_read(&st, "scalar", rs, 0, NULL) == VPD_OK, "%s", vpd_last_error());
    CHECK(memcmp(a, ra, sizeof a) == 0 && memcmp(b, rb, sizeof b) == 0 && rs[0] == s[0], "values differ");
    real *al = NULL;
    int nd = 0;
    int64_t sh[VPD_MAX_DIMS];
    CHECK(vpd_st_read_alloc(&st, "layers.0.w", &al, &nd, sh) == VPD_OK && nd == 2 && sh[0] == 2 && sh[1] == 3,
          "read_alloc");
    CHECK(al && memcmp(al, a, sizeof a) == 0, "read_alloc values");
    vpd_free(al);

    /* missing tensor: name it and list the closest available ones */
    EXPECT_FAIL(vpd_st_read(&st, "layers.0.v", ra, 2, (int64_t[]){2, 3}), VPD_ERR_FORMAT, "rt.safetensors",
                "'layers.0.v'", "layers.0.w");
    /* wrong shape: expected vs found, with the transpose hint */
    EXPECT_FAIL(vpd_st_read(&st, "layers.0.w", ra, 2, (int64_t[]){3, 2}), VPD_ERR_SHAPE, "layers.0.w", "[3, 2]",
                "[2, 3]", "transposed");
    EXPECT_FAIL(vpd_st_read(&st, "b", rb, 2, (int64_t[]){2, 2}), VPD_ERR_SHAPE, "'b'", "[2, 2]", "[4]");
    vpd_st_close(&st);

    /* NaN written by us, caught on read with the tensor name and first bad index */
    real bad[8] = {0, 1, 2, 3, 4, 0, 6, 7};
    bad[5] = NAN;
    vpd_tensor tb = vpd_tensor_view(bad, "h.1.mlp.c_fc.weight", 2, (int64_t[]){2, 4});
    CHECK(vpd_st_write("nan.safetensors", &tb, 1, NULL, 0) == VPD_OK, "%s", vpd_last_error());
    CHECK(vpd_st_open(&st, "nan.safetensors") == VPD_OK, "%s", vpd_last_error());
    EXPECT_FAIL(vpd_st_read(&st, "h.1.mlp.c_fc.weight", bad, 2, (int64_t[]){2, 4}), VPD_ERR_VALUE,
                "h.1.mlp.c_fc.weight", "flat index 5", "[1, 1]");
    vpd_st_close(&st);
}

static void test_python_file(void) {
    vpd_safetensors st;
    if (vpd_st_open(&st, "py_written.safetensors") != VPD_OK) {
        CHECK(0, "python fixture: %s (io.fixtures test must run first)", vpd_last_error());
        return;
    }
    CHECK(vpd_st_metadata(&st, "source") && !strcmp(vpd_st_metadata(&st, "source"), "python"), "py metadata");
    struct { const char *name; int ndim; int64_t shape[2]; int n, seed; const char *dtype; } cases[] = {
        {"a.f32", 2, {2, 3}, 6, 1, "F32"}, {"b.f64", 1, {3}, 3, 2, "F64"},
        {"c.f16", 2, {2, 2}, 4, 3, "F16"}, {"d.bf16", 1, {4}, 4, 4, "BF16"}};
    for (int c = 0; c < 4; c++) {
        real x[8];
        int i = vpd_st_find(&st, cases[c].name);
        CHECK(i >= 0 && !strcmp(st.entries[i].dtype, cases[c].dtype), "%s dtype", cases[c].name);
        vpd_status s = vpd_st_read(&st, cases[c].name, x, cases[c].ndim, cases[c].shape);
        CHECK(s == VPD_OK, "%s: %s", cases[c].name, vpd_last_error());
        for (int k = 0; s == VPD_OK && k < cases[c].n; k++)
            CHECK(x[k] == val(k, cases[c].seed), "%s[%d] = %g, expected %g", cases[c].name, k, (double)x[k],
                  (double)val(k, cases[c].seed));
    }
    real x[4];
    EXPECT_FAIL(vpd_st_read(&st, "e.i64", x, 1, (int64_t[]){2}), VPD_ERR_FORMAT, "'e.i64'", "I64",
                "py_written.safetensors");
    EXPECT_FAIL(vpd_st_read(&st, "bad.nan", x, 1, (int64_t[]){3}), VPD_ERR_VALUE, "'bad.nan'", "flat index 1");
    vpd_st_close(&st);
}

static void test_malformed(void) {
    vpd_safetensors st;
    EXPECT_FAIL(vpd_st_open(&st, "no/such/file.safetensors"), VPD_ERR_IO, "no/such/file.safetensors");
    EXPECT_FAIL(vpd_st_open(&st, "."), VPD_ERR_IO, "'.'", "directory");

    FILE *f = fopen("short.safetensors", "wb");
    fwrite("abc", 1, 3, f);
    fclose(f);
    EXPECT_FAIL(vpd_st_open(&st, "short.safetensors"), VPD_ERR_FORMAT, "short.safetensors", "truncated header");

    write_raw("hlen.safetensors", 1000, "{}", 0);
    EXPECT_FAIL(vpd_st_open(&st, "hlen.safetensors"), VPD_ERR_FORMAT, "hlen.safetensors", "truncated header",
                "1000");

    const char *bad_json = "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], ";
    write_raw("json.safetensors", strlen(bad_json), bad_json, 8);
    EXPECT_FAIL(vpd_st_open(&st, "json.safetensors"), VPD_ERR_FORMAT, "json.safetensors", "JSON");

    const char *beyond = "{\"emb\":{\"dtype\":\"F32\",\"shape\":[10,10],\"data_offsets\":[0,400]}}";
    write_raw("beyond.safetensors", strlen(beyond), beyond, 16);
    EXPECT_FAIL(vpd_st_open(&st, "beyond.safetensors"), VPD_ERR_FORMAT, "beyond.safetensors", "'emb'", "beyond",
                "400");

    const char *size = "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}";
    write_raw("size.safetensors", strlen(size), size, 8);
    EXPECT_FAIL(vpd_st_open(&st, "size.safetensors"), VPD_ERR_FORMAT, "'w'", "needs 12");

    const char *i32 = "{\"tok\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    write_raw("i32.safetensors", strlen(i32), i32, 8);
    CHECK(vpd_st_open(&st, "i32.safetensors") == VPD_OK, "i32 open: %s", vpd_last_error());
    real x[2];
    EXPECT_FAIL(vpd_st_read(&st, "tok", x, 1, (int64_t[]){2}), VPD_ERR_FORMAT, "'tok'", "I32", "i32.safetensors");
    vpd_st_close(&st);
}

/* Issue 17: untrusted headers. `__metadata__` twice wrote past the metadata arrays (heap
 * overflow); overlapping and repeated tensors were accepted; shape products that wrap. */
static void test_hostile_headers(void) {
    vpd_safetensors st;
    const char *meta2 = "{\"__metadata__\":{\"a\":\"1\"},\"__metadata__\":{\"b\":\"2\",\"c\":\"3\",\"d\":\"4\","
                        "\"e\":\"5\",\"f\":\"6\",\"g\":\"7\",\"h\":\"8\",\"i\":\"9\"},"
                        "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    write_raw("meta2.safetensors", strlen(meta2), meta2, 4);
    EXPECT_FAIL(vpd_st_open(&st, "meta2.safetensors"), VPD_ERR_FORMAT, "meta2.safetensors", "__metadata__", "twice");

    const char *overlap = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}";
    write_raw("overlap.safetensors", strlen(overlap), overlap, 16);
    EXPECT_FAIL(vpd_st_open(&st, "overlap.safetensors"), VPD_ERR_FORMAT, "overlap.safetensors", "'a'", "'b'",
                "overlap", "[0, 16]", "[8, 16]");
    /* the same, listed in the other order and with a tensor between them */
    const char *overlap2 = "{\"late\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]},"
                           "\"mid\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[14,14]},"
                           "\"big\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
    write_raw("overlap2.safetensors", strlen(overlap2), overlap2, 20);
    EXPECT_FAIL(vpd_st_open(&st, "overlap2.safetensors"), VPD_ERR_FORMAT, "'big'", "'late'", "overlap");
    /* adjacent and empty tensors are fine */
    const char *adj = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[8,8]},"
                      "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[8,12]}}";
    write_raw("adj.safetensors", strlen(adj), adj, 12);
    CHECK(vpd_st_open(&st, "adj.safetensors") == VPD_OK && st.n == 3, "adjacent tensors: %s", vpd_last_error());
    vpd_st_close(&st);

    const char *twice = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
    write_raw("twice.safetensors", strlen(twice), twice, 8);
    EXPECT_FAIL(vpd_st_open(&st, "twice.safetensors"), VPD_ERR_FORMAT, "'a'", "twice");

    /* 2^32 * 2^32 elements: the product wraps to 0 in 64 bits, matching a [0,0] span */
    const char *wrap = "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}";
    write_raw("wrap.safetensors", strlen(wrap), wrap, 0);
    EXPECT_FAIL(vpd_st_open(&st, "wrap.safetensors"), VPD_ERR_FORMAT, "'w'", "shape too large");
    const char *wrap2 = "{\"w\":{\"dtype\":\"F64\",\"shape\":[4503599627370496,4096],\"data_offsets\":[0,0]}}";
    write_raw("wrap2.safetensors", strlen(wrap2), wrap2, 0);
    EXPECT_FAIL(vpd_st_open(&st, "wrap2.safetensors"), VPD_ERR_FORMAT, "'w'", "shape too large");
    /* offsets past the end of the file, begin > end, negative, fractional */
    const char *far = "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[9007199254740988,9007199254740992]}}";
    write_raw("far.safetensors", strlen(far), far, 4);
    EXPECT_FAIL(vpd_st_open(&st, "far.safetensors"), VPD_ERR_FORMAT, "'w'", "beyond");
    const char *neg = "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}";
    write_raw("neg.safetensors", strlen(neg), neg, 4);
    EXPECT_FAIL(vpd_st_open(&st, "neg.safetensors"), VPD_ERR_FORMAT, "'w'", "data_offsets");
    const char *rev = "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,1]}}";
    write_raw("rev.safetensors", strlen(rev), rev, 4);
    EXPECT_FAIL(vpd_st_open(&st, "rev.safetensors"), VPD_ERR_FORMAT, "'w'", "begin <= end");
    const char *notobj = "{\"w\":[1,2]}";
    write_raw("notobj.safetensors", strlen(notobj), notobj, 0);
    EXPECT_FAIL(vpd_st_open(&st, "notobj.safetensors"), VPD_ERR_FORMAT, "'w'");
}

static void test_h5(void) {
    vpd_h5 f;
    CHECK(vpd_h5_create(&f, "vpd_h5_roundtrip.h5") == VPD_OK, "%s", vpd_last_error());
    real w[6];
    for (int i = 0; i < 6; i++) w[i] = (real)(float)(val(i, 5) * 0.1);
    int32_t i32[3] = {-1, 2, 2147483647};
    uint32_t u32[2] = {0, 4294967295u};
    int64_t i64[2] = {-5, 1234567890123ll};
    CHECK(vpd_h5_write_real(&f, "/grp/sub/w", w, 2, (int64_t[]){2, 3}) == VPD_OK, "%s", vpd_last_error());
    CHECK(vpd_h5_write_i32(&f, "ints/i32", i32, 1, (int64_t[]){3}) == VPD_OK, "%s", vpd_last_error());
    CHECK(vpd_h5_write_u32(&f, "/ints/u32", u32, 1, (int64_t[]){2}) == VPD_OK, "%s", vpd_last_error());
    CHECK(vpd_h5_write_i64(&f, "/ints/i64", i64, 1, (int64_t[]){2}) == VPD_OK, "%s", vpd_last_error());
    int64_t step = 7;
    CHECK(vpd_h5_write_i64(&f, "/step", &step, 0, NULL) == VPD_OK, "scalar: %s", vpd_last_error());
    CHECK(vpd_h5_set_attr_str(&f, "/grp", "note", "hello, h5py") == VPD_OK, "%s", vpd_last_error());
    CHECK(vpd_h5_set_attr_int(&f, "/grp/sub/w", "step", 41) == VPD_OK, "%s", vpd_last_error());
    CHECK(vpd_h5_set_attr_int(&f, "/grp/sub/w", "step", 42) == VPD_OK, "replace attr: %s", vpd_last_error());
    CHECK(vpd_h5_set_attr_double(&f, "/", "lr", 1.5e-3) == VPD_OK, "%s", vpd_last_error());
    CHECK(vpd_h5_set_attr_str(&f, "/new/group", "k", "v") == VPD_OK, "attr on new group: %s", vpd_last_error());
    /* replace a dataset with another shape */
    real tmp[4] = {1, 2, 3, 4};
    CHECK(vpd_h5_write_real(&f, "/grp/other", tmp, 1, (int64_t[]){4}) == VPD_OK, "%s", vpd_last_error());
    CHECK(vpd_h5_write_real(&f, "/grp/other", tmp, 2, (int64_t[]){2, 2}) == VPD_OK, "replace: %s", vpd_last_error());
    CHECK(vpd_h5_close(&f) == VPD_OK, "%s", vpd_last_error());

    CHECK(vpd_h5_open(&f, "vpd_h5_roundtrip.h5", false) == VPD_OK, "%s", vpd_last_error());
    CHECK(vpd_h5_exists(&f, "/grp/sub/w") && vpd_h5_exists(&f, "grp/sub") && vpd_h5_exists(&f, "/"), "exists");
    CHECK(!vpd_h5_exists(&f, "/grp/nope/w") && !vpd_h5_exists(&f, "/zzz"), "not exists");
    real rw[6];
    int32_t r32[3];
    uint32_t ru32[2];
    int64_t r64[2], rstep = 0;
    CHECK(vpd_h5_read_real(&f, "/grp/sub/w", rw, 2, (int64_t[]){2, 3}) == VPD_OK, "%s", vpd_last_error());
    CHECK(memcmp(rw, w, sizeof w) == 0, "real values");
    CHECK(vpd_h5_read_i32(&f, "/ints/i32", r32, 1, (int64_t[]){3}) == VPD_OK && !memcmp(r32, i32, sizeof i32), "i32");
    CHECK(vpd_h5_read_u32(&f, "/ints/u32", ru32, 1, (int64_t[]){2}) == VPD_OK && !memcmp(ru32, u32, sizeof u32),
          "u32");
    CHECK(vpd_h5_read_i64(&f, "/ints/i64", r64, 1, (int64_t[]){2}) == VPD_OK && !memcmp(r64, i64, sizeof i64), "i64");
    CHECK(vpd_h5_read_i64(&f, "/step", &rstep, 0, NULL) == VPD_OK && rstep == 7, "scalar");
    real *al = NULL;
    int nd = 0;
    int64_t sh[VPD_MAX_DIMS];
    CHECK(vpd_h5_read_real_alloc(&f, "/grp/other", &al, &nd, sh) == VPD_OK && nd == 2 && sh[0] == 2 && sh[1] == 2 &&
              al[3] == 4,
          "read_alloc after replace: %s", vpd_last_error());
    vpd_free(al);
    char *s = NULL;
    int64_t iv = 0;
    double dv = 0;
    CHECK(vpd_h5_get_attr_str(&f, "/grp", "note", &s) == VPD_OK && s && !strcmp(s, "hello, h5py"), "str attr");
    vpd_free(s);
    CHECK(vpd_h5_get_attr_int(&f, "/grp/sub/w", "step", &iv) == VPD_OK && iv == 42, "int attr");
    CHECK(vpd_h5_get_attr_double(&f, "/", "lr", &dv) == VPD_OK && dv == 1.5e-3, "double attr");
    CHECK(vpd_h5_has_attr(&f, "/grp", "note") && !vpd_h5_has_attr(&f, "/grp", "nope") &&
              !vpd_h5_has_attr(&f, "/nope", "x"),
          "has_attr");

    /* errors name the file and the dataset path */
    EXPECT_FAIL(vpd_h5_read_real(&f, "/grp/sub/w", rw, 2, (int64_t[]){3, 2}), VPD_ERR_SHAPE, "vpd_h5_roundtrip.h5",
                "/grp/sub/w", "[3, 2]", "[2, 3]");
    EXPECT_FAIL(vpd_h5_read_real(&f, "/grp/missing", rw, 1, (int64_t[]){6}), VPD_ERR_FORMAT, "vpd_h5_roundtrip.h5",
                "/grp/missing", "not found");
    EXPECT_FAIL(vpd_h5_read_real(&f, "/ints/i32", rw, 1, (int64_t[]){3}), VPD_ERR_FORMAT, "/ints/i32", "integer");
    EXPECT_FAIL(vpd_h5_get_attr_int(&f, "/grp", "missing", &iv), VPD_ERR_FORMAT, "missing", "/grp");
    EXPECT_FAIL(vpd_h5_get_attr_int(&f, "/grp", "note", &iv), VPD_ERR_FORMAT, "note", "not a single number");
    /* writing into a read-only file: HDF5's stack is silent, our message names the file */
    EXPECT_FAIL(vpd_h5_write_real(&f, "/x", tmp, 1, (int64_t[]){4}), VPD_ERR_IO, "vpd_h5_roundtrip.h5", "/x");
    vpd_h5_close(&f);

    EXPECT_FAIL(vpd_h5_open(&f, "no_such_dir/run.h5", false), VPD_ERR_IO, "no_such_dir/run.h5");
    EXPECT_FAIL(vpd_h5_open(&f, "rt.safetensors", false), VPD_ERR_FORMAT, "rt.safetensors", "not an HDF5 file");
    EXPECT_FAIL(vpd_h5_create(&f, "no_such_dir/run.h5"), VPD_ERR_IO, "no_such_dir/run.h5");
}

static void test_h5_mpi(void) {
    /* the MPI-IO driver on one rank: create, write, reopen, read */
    vpd_h5 f;
    CHECK(vpd_h5_open_mpi(&f, "vpd_h5_mpi.h5", true, MPI_COMM_WORLD) == VPD_OK, "%s", vpd_last_error());
    real w[3] = {1, 2, 3}, r[3] = {0};
    CHECK(vpd_h5_write_real(&f, "/a/w", w, 1, (int64_t[]){3}) == VPD_OK, "%s", vpd_last_error());
    CHECK(vpd_h5_close(&f) == VPD_OK, "%s", vpd_last_error());
    CHECK(vpd_h5_open_mpi(&f, "vpd_h5_mpi.h5", false, MPI_COMM_WORLD) == VPD_OK, "%s", vpd_last_error());
    CHECK(vpd_h5_read_real(&f, "/a/w", r, 1, (int64_t[]){3}) == VPD_OK && r[2] == 3, "mpi read");
    vpd_h5_close(&f);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    test_roundtrip();
    test_python_file();
    test_malformed();
    test_hostile_headers();
    test_h5();
    test_h5_mpi();
    MPI_Finalize();
    TEST_REPORT();
}
