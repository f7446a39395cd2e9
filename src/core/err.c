/* Status codes and the per-process error message buffer.
 * A failing function records one message and returns its status; callers may prefix
 * context; the CLI prints the final message once and exits non-zero. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpd/core.h"

static char err_buf[2048];

vpd_status vpd_error(vpd_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return s;
}

vpd_status vpd_error_context(vpd_status s, const char *fmt, ...) {
    char old[sizeof err_buf];
    memcpy(old, err_buf, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    size_t off = n < 0 ? 0 : (size_t)n < sizeof err_buf ? (size_t)n : sizeof err_buf - 1;
    /* append ": <old message>", truncating at the buffer end */
    const char *parts[2] = {": ", old};
    for (int p = 0; p < 2; p++)
        for (const char *c = parts[p]; *c && off + 1 < sizeof err_buf; c++) err_buf[off++] = *c;
    err_buf[off] = '\0';
    return s;
}

const char *vpd_last_error(void) { return err_buf; }
void vpd_clear_error(void) { err_buf[0] = '\0'; }

const char *vpd_status_name(vpd_status s) {
    switch (s) {
    case VPD_OK: return "ok";
    case VPD_ERR_IO: return "I/O error";
    case VPD_ERR_FORMAT: return "format error";
    case VPD_ERR_CONFIG: return "config error";
    case VPD_ERR_SHAPE: return "shape error";
    case VPD_ERR_VALUE: return "value error";
    case VPD_ERR_MEM: return "out of memory";
    case VPD_ERR_ARG: return "usage error";
    case VPD_ERR_MPI: return "MPI error";
    case VPD_ERR_INTERNAL: return "internal error";
    }
    return "unknown error";
}

void vpd_panic(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "vpd: internal error at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    fflush(stderr);
    abort();
}
