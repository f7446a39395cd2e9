/* Logging: leveled lines on stderr with a rank prefix when more than one rank runs.
 * vpd_info goes through rank 0 only, so a 512-rank job prints one line, not 512. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "vpd/core.h"

static int log_rank = 0, log_world = 1;
static vpd_log_level log_level = VPD_LOG_INFO;

void vpd_log_set_rank(int rank, int world_size) { log_rank = rank; log_world = world_size; }
void vpd_log_set_level(vpd_log_level level) { log_level = level; }
int vpd_log_rank(void) { return log_rank; }

void vpd_log(vpd_log_level level, bool all_ranks, const char *fmt, ...) {
    if (level < log_level || (!all_ranks && log_rank != 0)) return;
    char prefix[48];
    const char *tag = level == VPD_LOG_WARN ? "warning: " : level == VPD_LOG_ERROR ? "error: " : "";
    if (log_world > 1)
        snprintf(prefix, sizeof prefix, "[vpd r%d] %s", log_rank, tag);
    else
        snprintf(prefix, sizeof prefix, "[vpd] %s", tag);
    va_list ap;
    va_start(ap, fmt);
    char msg[4096];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s%s\n", prefix, msg); /* one call: lines from ranks do not interleave mid-line */
}

double vpd_wtime(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
