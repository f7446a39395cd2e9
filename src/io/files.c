/* Small file-system helpers of io/ (include/vpd/io.h). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "vpd/io.h"

vpd_status vpd_mkdirs(const char *dir) {
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return vpd_error(VPD_ERR_IO, "directory path too long: '%.80s...'", dir);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = '\0';
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            struct stat sb;
            if (stat(buf, &sb) != 0) {
                if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                    return vpd_error(VPD_ERR_IO, "cannot create directory '%s': %s", buf, strerror(errno));
            } else if (!S_ISDIR(sb.st_mode)) {
                return vpd_error(VPD_ERR_IO, "cannot create directory '%s': a file of that name exists", buf);
            }
            if (c == '\0') break;
            *p = c;
        }
    }
    return VPD_OK;
}

vpd_status vpd_metrics_truncate(const char *path, int keep_below) {
    FILE *in = fopen(path, "r");
    if (!in) return VPD_OK; /* nothing logged yet */
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *out = fopen(tmp, "w");
    if (!out) {
        fclose(in);
        return vpd_error(VPD_ERR_IO, "cannot write %s", tmp);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int kept = 0, dropped = 0;
    while ((n = getline(&line, &cap, in)) > 0) {
        int step;
        /* a torn last line (killed mid-write) has no closing brace: drop it */
        bool whole = n > 1 && line[n - 1] == '\n' && line[n - 2] == '}';
        if (whole && sscanf(line, "{\"step\": %d", &step) == 1 && step < keep_below) {
            fputs(line, out);
            kept++;
        } else {
            dropped++;
        }
    }
    free(line);
    fclose(in);
    if (fclose(out) != 0 || rename(tmp, path) != 0) return vpd_error(VPD_ERR_IO, "cannot rewrite %s", path);
    vpd_info("resume: %s keeps %d records before step %d, drops %d", path, kept, keep_below, dropped);
    return VPD_OK;
}
