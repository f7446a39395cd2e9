/* Small file-system helpers of io/ (include/vpd/io.h). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
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
