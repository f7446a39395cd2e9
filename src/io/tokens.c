/* Token data in the nanoGPT `.bin` convention (include/vpd/data.h): a flat file of
 * little-endian uint16 or uint32 token ids, memory-mapped read-only, and batches of
 * random windows of S+1 tokens whose start offsets come from the Philox data stream
 * indexed by (step, stream, global example), so any rank layout reads the same windows.
 *
 * Ids are range-checked lazily, window by window: a corpus can be far larger than what
 * a run reads, and a full scan would cost a pass over it at every start. A bad id is
 * reported with the file, the byte offset and the value, never silently used. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vpd/data.h"
#include "vpd/io.h"

vpd_status vpd_tokens_dtype_parse(const char *s, const char *key, int *width) {
    if (!strcmp(s, "uint16") || !strcmp(s, "u16")) *width = 2;
    else if (!strcmp(s, "uint32") || !strcmp(s, "u32")) *width = 4;
    else return vpd_error(VPD_ERR_CONFIG, "%s: unknown token dtype '%s' (expected uint16 or uint32)", key, s);
    return VPD_OK;
}

/* "FILE.h5[:/dataset]": the whole dataset as little-endian uint32 on the heap */
static vpd_status tokens_open_h5(vpd_tokens *t, const char *spec, int vocab_size) {
    char file[512], dset[256] = "/tokens";
    const char *colon = strstr(spec, ".h5:") ? strstr(spec, ".h5:") + 3 : strstr(spec, ".hdf5:") ? strstr(spec, ".hdf5:") + 5 : NULL;
    size_t fl = colon ? (size_t)(colon - spec) : strlen(spec);
    if (fl >= sizeof file) return vpd_error(VPD_ERR_ARG, "token file path too long: %s", spec);
    memcpy(file, spec, fl);
    file[fl] = '\0';
    if (colon) snprintf(dset, sizeof dset, "%s%s", colon[1] == '/' ? "" : "/", colon + 1);
    vpd_h5 f;
    VPD_TRY(vpd_h5_open(&f, file, false));
    int nd = 0;
    int64_t sh[VPD_MAX_DIMS];
    vpd_status s = vpd_h5_dataset_shape(&f, dset, &nd, sh);
    int64_t n = 1;
    for (int i = 0; s == VPD_OK && i < nd; i++) {
        if (sh[i] < 0 || (sh[i] && n > (INT64_C(1) << 40) / sh[i])) /* 4 TB of ids: a corrupt dataspace */
            s = vpd_error(VPD_ERR_FORMAT, "token dataset %s:%s: shape too large", file, dset);
        else n *= sh[i];
    }
    uint32_t *buf = NULL;
    if (s == VPD_OK && n < 2) s = vpd_error(VPD_ERR_FORMAT, "token dataset %s:%s has %lld tokens, need at least 2", file, dset, (long long)n);
    if (s == VPD_OK) {
        buf = vpd_malloc(sizeof(uint32_t) * (size_t)n, "token dataset");
        if (!buf) s = VPD_ERR_MEM;
    }
    if (s == VPD_OK) s = vpd_h5_read_u32(&f, dset, buf, nd, sh);
    vpd_h5_close(&f);
    if (s != VPD_OK) {
        vpd_free(buf);
        return s;
    }
    /* the window reader decodes little-endian bytes: store them so on any host */
    unsigned char *b = (unsigned char *)buf;
    for (int64_t i = 0; i < n; i++) {
        uint32_t v = buf[i];
        b[4 * i] = (unsigned char)v; b[4 * i + 1] = (unsigned char)(v >> 8);
        b[4 * i + 2] = (unsigned char)(v >> 16); b[4 * i + 3] = (unsigned char)(v >> 24);
    }
    snprintf(t->path, sizeof t->path, "%s", spec);
    t->map = b;
    t->heap = true;
    t->bytes = (size_t)n * 4;
    t->width = 4;
    t->n_tokens = n;
    t->vocab_size = vocab_size;
    return VPD_OK;
}

vpd_status vpd_tokens_open(vpd_tokens *t, const char *path, int width, int vocab_size) {
    memset(t, 0, sizeof *t);
    t->fd = -1;
    if (strstr(path, ".h5") || strstr(path, ".hdf5")) {
        if (vocab_size < 1) return vpd_error(VPD_ERR_ARG, "token file %s: vocab_size %d must be >= 1", path, vocab_size);
        return tokens_open_h5(t, path, vocab_size);
    }
    if (width != 2 && width != 4)
        return vpd_error(VPD_ERR_ARG, "token file %s: dtype width %d bytes (expected 2 or 4)", path, width);
    if (vocab_size < 1) return vpd_error(VPD_ERR_ARG, "token file %s: vocab_size %d must be >= 1", path, vocab_size);
    if (strlen(path) >= sizeof t->path) return vpd_error(VPD_ERR_ARG, "token file path too long: %s", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return vpd_error(VPD_ERR_IO, "cannot open token file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return vpd_error(VPD_ERR_IO, "cannot stat token file %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) { /* a directory opens fine and fails later as "No such device" */
        close(fd);
        return vpd_error(VPD_ERR_IO, "token file %s is not a regular file (%s)", path,
                         S_ISDIR(st.st_mode) ? "a directory" : "a device, pipe or socket");
    }
    size_t bytes = (size_t)st.st_size;
    if (bytes % (size_t)width != 0) {
        close(fd);
        return vpd_error(VPD_ERR_FORMAT, "token file %s: size %zu bytes is not a multiple of %d (dtype uint%d)", path,
                         bytes, width, 8 * width);
    }
    if (bytes / (size_t)width < 2) {
        close(fd);
        return vpd_error(VPD_ERR_FORMAT, "token file %s: %zu tokens, need at least 2", path, bytes / (size_t)width);
    }
    void *map = mmap(NULL, bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        int e = errno;
        close(fd);
        return vpd_error(VPD_ERR_IO, "cannot map token file %s (%zu bytes): %s", path, bytes, strerror(e));
    }
    strcpy(t->path, path);
    t->fd = fd;
    t->map = map;
    t->bytes = bytes;
    t->width = width;
    t->n_tokens = (int64_t)(bytes / (size_t)width);
    t->vocab_size = vocab_size;
    return VPD_OK;
}

void vpd_tokens_close(vpd_tokens *t) {
    if (t->map && t->heap) vpd_free((void *)t->map);
    else if (t->map) munmap((void *)t->map, t->bytes);
    if (t->fd >= 0) close(t->fd);
    memset(t, 0, sizeof *t);
    t->fd = -1;
}

/* explicit little-endian decoding: the format is defined as LE whatever the host */
static inline uint32_t token_at(const vpd_tokens *t, int64_t i) {
    const unsigned char *p = t->map + (size_t)i * (size_t)t->width;
    if (t->width == 2) return (uint32_t)p[0] | (uint32_t)p[1] << 8;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

vpd_status vpd_tokens_window(const vpd_tokens *t, int64_t start, int S, int32_t *inputs, int32_t *targets) {
    if (S < 1 || start < 0 || start + S + 1 > t->n_tokens)
        return vpd_error(VPD_ERR_ARG, "token file %s: window of %d+1 tokens at token %lld does not fit in %lld tokens",
                         t->path, S, (long long)start, (long long)t->n_tokens);
    for (int s = 0; s <= S; s++) {
        uint32_t id = token_at(t, start + s);
        if (id >= (uint32_t)t->vocab_size)
            return vpd_error(VPD_ERR_VALUE, "token file %s: token id %u at byte offset %lld is >= vocab_size %d", t->path,
                             id, (long long)((start + s) * t->width), t->vocab_size);
        if (s < S) inputs[s] = (int32_t)id;
        if (s > 0) targets[s - 1] = (int32_t)id;
    }
    return VPD_OK;
}

int64_t vpd_tokens_start(const vpd_tokens *t, uint64_t seed, uint32_t stream, uint64_t step, int64_t e, int S) {
    /* token streams live at stream | 1<<16 so they never share a counter with toy data */
    vpd_rng r = vpd_rng_make(seed, VPD_RNG_DATA, (uint32_t)step, stream | 0x10000u);
    uint64_t w = (uint64_t)vpd_rng_u32(&r, 2 * (uint64_t)e) << 32 | vpd_rng_u32(&r, 2 * (uint64_t)e + 1);
    if (S < 0 || t->n_tokens <= S) return 0; /* no window fits: vpd_tokens_window says so */
    uint64_t n_starts = (uint64_t)(t->n_tokens - S); /* windows of S+1 tokens */
    return (int64_t)(w % n_starts); /* bias <= n_starts / 2^64: negligible */
}

vpd_status vpd_tokens_batch(const vpd_tokens *t, uint64_t seed, uint32_t stream, uint64_t step, int64_t e0, int B,
                            int S, int32_t *inputs, int32_t *targets) {
    if (S < 1 || (int64_t)S + 1 > t->n_tokens)
        return vpd_error(VPD_ERR_ARG, "token file %s holds %lld tokens, fewer than one window of %d+1", t->path,
                         (long long)t->n_tokens, S);
    for (int b = 0; b < B; b++) {
        int64_t start = vpd_tokens_start(t, seed, stream, step, e0 + b, S);
        VPD_TRY(vpd_tokens_window(t, start, S, inputs + (size_t)b * S, targets + (size_t)b * S));
    }
    return VPD_OK;
}
