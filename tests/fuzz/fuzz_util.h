/* Shared by the fuzz harnesses (tests/fuzz/harness_*.c): each defines
 * int LLVMFuzzerTestOneInput(const uint8_t *, size_t) and is linked either with libFuzzer
 * (clang -fsanitize=fuzzer, CMake -DVPD_FUZZ=ON) or with fuzz_main.c (replay of the seed
 * corpus as a CTest, and a small mutation fuzzer for compilers without libFuzzer).
 * A harness must never crash, leak or trip a sanitizer on any input: parsers answer
 * untrusted bytes with a vpd_status. */
#ifndef VPD_FUZZ_UTIL_H
#define VPD_FUZZ_UTIL_H
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vpd/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_dir_path[64];

/* remove the scratch directory (two levels: the h5 harness makes a model/ inside) at exit */
static void fuzz_cleanup(void) {
    char sub[160], path[400];
    snprintf(sub, sizeof sub, "%s/model", fuzz_dir_path);
    const char *dirs[2] = {sub, fuzz_dir_path};
    for (int k = 0; k < 2; k++) {
        DIR *d = opendir(dirs[k]);
        if (!d) continue;
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.' && snprintf(path, sizeof path, "%s/%s", dirs[k], e->d_name) < (int)sizeof path)
                unlink(path);
        closedir(d);
        rmdir(dirs[k]);
    }
}

/* a private scratch directory for the harnesses that need files */
static inline const char *fuzz_dir(void) {
    char *dir = fuzz_dir_path;
    if (!dir[0]) {
        snprintf(dir, sizeof fuzz_dir_path, "/tmp/vpd-fuzz-XXXXXX");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            abort();
        }
        vpd_log_set_level(VPD_LOG_ERROR); /* warnings about odd inputs are expected */
        atexit(fuzz_cleanup);
    }
    return dir;
}

/* write data to <fuzz_dir>/name; returns the path (static buffer per call site) */
static inline void fuzz_write(const char *path, const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size)) {
        perror(path);
        abort();
    }
    fclose(f);
}

/* NUL-terminated copy of the input (text parsers take C strings) */
static inline char *fuzz_cstr(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    if (size) memcpy(s, data, size);
    s[size] = 0;
    return s;
}

/* VPD_FUZZ_VERBOSE=1: say what each input gave (to check that seeds reach deep code) */
static inline vpd_status fuzz_note(vpd_status s, const char *what) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("VPD_FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "  %s: %s\n", what, s == VPD_OK ? "ok" : vpd_last_error());
    return s;
}

/* a parser promised an invariant and broke it: a finding, reported like a crash */
#define FUZZ_ASSERT(c, ...)                                                  \
    do {                                                                     \
        if (!(c)) {                                                          \
            fprintf(stderr, "fuzz invariant failed: %s: ", #c);              \
            fprintf(stderr, __VA_ARGS__);                                    \
            fprintf(stderr, "\n");                                           \
            abort();                                                         \
        }                                                                    \
    } while (0)
#endif
