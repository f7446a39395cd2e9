/* Driver for the harnesses when libFuzzer is not linked (see fuzz_util.h):
 *   fuzz_X replay DIR...               run the harness on every file of each DIR (a CTest,
 *                                      under ASan+UBSan in build-asan: the seed corpus and
 *                                      every crash found so far must pass)
 *   fuzz_X mutate SECONDS SEED DIR...  mutation fuzzing from the files of DIR: bit flips,
 *                                      interesting bytes and numbers, inserted/duplicated/
 *                                      deleted runs, truncation, splices of two seeds; fixed
 *                                      SEED so a run is reproducible. An input that crashes
 *                                      is written to ./crash-<harness>-<n> before the report.
 * Prints the number of executions. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void __sanitizer_set_death_callback(void (*cb)(void)) __attribute__((weak));

typedef struct {
    uint8_t *d;
    size_t n;
    char name[4096];
} input;

static input *seeds;
static int n_seeds;
static const uint8_t *cur;
static size_t cur_n;
static const char *harness = "fuzz";

static void save_current(void) {
    if (!cur) return;
    char path[300];
    snprintf(path, sizeof path, "crash-%s-%ld", harness, (long)getpid());
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(cur, 1, cur_n, f);
        fclose(f);
        fprintf(stderr, "fuzz: crashing input written to %s (%zu bytes)\n", path, cur_n);
    }
    cur = NULL;
}

static void on_signal(int sig) {
    save_current();
    signal(sig, SIG_DFL);
    raise(sig);
}

static int cmp_name(const void *a, const void *b) { return strcmp(((const input *)a)->name, ((const input *)b)->name); }

static void load_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "fuzz: cannot open corpus directory %s\n", dir);
        exit(2);
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[3000];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) continue;
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        if (fseek(f, 0, SEEK_END) != 0) { fclose(f); continue; } /* a directory */
        long n = ftell(f);
        rewind(f);
        if (n < 0) { fclose(f); continue; }
        input in = {malloc((size_t)n + 1), (size_t)n, ""};
        if (!in.d || fread(in.d, 1, (size_t)n, f) != (size_t)n) { fclose(f); free(in.d); continue; }
        fclose(f);
        snprintf(in.name, sizeof in.name, "%s", path);
        seeds = realloc(seeds, (size_t)(n_seeds + 1) * sizeof *seeds);
        if (!seeds) abort();
        seeds[n_seeds++] = in;
    }
    closedir(d);
}

static uint64_t rng_state;
static uint64_t rnd(void) {
    uint64_t x = rng_state += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
static size_t below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

static const char *const tokens[] = {"0", "-1", "1e308", "4294967296", "9007199254740993", "null", "true",
                                     "\"\"", "{", "}", "[", "]", ":", ",", "\n", "  ", "\\u0000", "\xc3\xa9",
                                     "\xe3\x80\x80", "\xff", "&a ", "*a", "---\n", "- ", "\r\n", "__metadata__",
                                     "data_offsets", "added_tokens", "n_layer", "\"id\": 99999999"};

/* one mutated input from the seeds into buf (capacity cap); returns its length */
static size_t mutate(uint8_t *buf, size_t cap) {
    const input *s = &seeds[below((size_t)n_seeds)];
    size_t n = s->n < cap ? s->n : cap;
    memcpy(buf, s->d, n);
    int rounds = 1 + (int)below(8);
    for (int r = 0; r < rounds; r++) {
        switch (below(9)) {
        case 0: if (n) buf[below(n)] ^= (uint8_t)(1u << below(8)); break;
        case 1: if (n) buf[below(n)] = (uint8_t)rnd(); break;
        case 2: { /* interesting byte */
            static const uint8_t v[] = {0, 1, 0x7f, 0x80, 0xff, '"', '\\', '{', '[', ':', ' ', '\n', '0', '9'};
            if (n) buf[below(n)] = v[below(sizeof v)];
            break;
        }
        case 3: { /* insert a token */
            const char *t = tokens[below(sizeof tokens / sizeof *tokens)];
            size_t tl = strlen(t), at = below(n + 1);
            if (n + tl > cap) break;
            memmove(buf + at + tl, buf + at, n - at);
            memcpy(buf + at, t, tl);
            n += tl;
            break;
        }
        case 4: { /* duplicate a run */
            if (!n) break;
            size_t a = below(n), l = 1 + below(n - a < 64 ? n - a : 64), at = below(n + 1);
            if (n + l > cap) break;
            uint8_t tmp[64];
            memcpy(tmp, buf + a, l);
            memmove(buf + at + l, buf + at, n - at);
            memcpy(buf + at, tmp, l);
            n += l;
            break;
        }
        case 5: { /* delete a run */
            if (!n) break;
            size_t a = below(n), l = 1 + below(n - a < 32 ? n - a : 32);
            memmove(buf + a, buf + a + l, n - a - l);
            n -= l;
            break;
        }
        case 6: n = below(n + 1); break; /* truncate */
        case 7: { /* little-endian number somewhere (lengths, offsets, ids) */
            if (n < 8) break;
            uint64_t v = below(3) == 0 ? rnd() : below(2) ? (uint64_t)1 << below(64) : below(1 << 16);
            size_t at = below(n - 7), w = (size_t)1 << below(4);
            for (size_t k = 0; k < w; k++) buf[at + k] = (uint8_t)(v >> (8 * k));
            break;
        }
        case 8: { /* splice: tail of another seed */
            const input *o = &seeds[below((size_t)n_seeds)];
            size_t at = below(n + 1), from = below(o->n + 1), l = o->n - from;
            if (at + l > cap) l = cap - at;
            memcpy(buf + at, o->d + from, l);
            n = at + l;
            break;
        }
        }
    }
    return n;
}

int main(int argc, char **argv) {
    const char *slash = strrchr(argv[0], '/');
    harness = slash ? slash + 1 : argv[0];
    if (argc >= 3 && !strcmp(argv[1], "replay")) {
        for (int i = 2; i < argc; i++) load_dir(argv[i]);
        qsort(seeds, (size_t)n_seeds, sizeof *seeds, cmp_name);
        for (int i = 0; i < n_seeds; i++) {
            fprintf(stderr, "%s: %s\n", harness, seeds[i].name);
            LLVMFuzzerTestOneInput(seeds[i].d, seeds[i].n);
        }
        fprintf(stderr, "%s: replayed %d inputs, no crash\n", harness, n_seeds);
        return n_seeds > 0 ? 0 : 1;
    }
    if (argc >= 5 && !strcmp(argv[1], "mutate")) {
        double seconds = atof(argv[2]);
        rng_state = strtoull(argv[3], NULL, 10);
        for (int i = 4; i < argc; i++) load_dir(argv[i]);
        if (!n_seeds) {
            fprintf(stderr, "%s: no seeds\n", harness);
            return 2;
        }
        qsort(seeds, (size_t)n_seeds, sizeof *seeds, cmp_name);
        if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(save_current);
        signal(SIGSEGV, on_signal);
        signal(SIGABRT, on_signal);
        signal(SIGBUS, on_signal);
        signal(SIGFPE, on_signal);
        size_t cap = 1 << 20;
        uint8_t *buf = malloc(cap);
        struct timespec t0, t;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        long execs = 0;
        for (;;) {
            if ((execs & 63) == 0) {
                clock_gettime(CLOCK_MONOTONIC, &t);
                double el = (double)(t.tv_sec - t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - t0.tv_nsec);
                if (el >= seconds) break;
            }
            size_t n = mutate(buf, cap);
            /* an exact-size heap copy: ASan sees reads past the end of the input */
            uint8_t *in = malloc(n ? n : 1);
            memcpy(in, buf, n);
            cur = in;
            cur_n = n;
            LLVMFuzzerTestOneInput(in, n);
            cur = NULL;
            free(in);
            execs++;
        }
        fprintf(stderr, "%s: %ld executions in %.0f s from %d seeds (seed %s), no crash\n", harness, execs, seconds,
                n_seeds, argv[3]);
        free(buf);
        return 0;
    }
    fprintf(stderr, "usage: %s replay DIR... | %s mutate SECONDS SEED DIR...\n", argv[0], argv[0]);
    return 2;
}
