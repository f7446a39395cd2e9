/* vpd sha256: SHA-256 (FIPS 180-4) for provenance: the digests of the target weights and
 * data files a run used. Streaming interface plus a whole-file helper. */
#ifndef VPD_SHA256_H
#define VPD_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "vpd/core.h"

typedef struct {
    uint32_t h[8];
    uint64_t len;      /* bytes hashed so far */
    uint8_t buf[64];
    size_t nbuf;
} vpd_sha256_ctx;

void vpd_sha256_init(vpd_sha256_ctx *c);
void vpd_sha256_update(vpd_sha256_ctx *c, const void *data, size_t n);
void vpd_sha256_final(vpd_sha256_ctx *c, uint8_t out[32]);
/* digest of a buffer as 64 lowercase hex digits + NUL */
void vpd_sha256_hex(const void *data, size_t n, char hex[65]);
/* digest of a file's contents; VPD_ERR_IO naming the path if it cannot be read */
vpd_status vpd_sha256_file(const char *path, char hex[65]);

#endif
