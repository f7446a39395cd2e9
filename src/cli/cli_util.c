/* Helpers shared by the subcommands: one way to report a failure and to spot --help. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "vpd/core.h"

int vpd_cli_fail(const char *cmd, int status) {
    fprintf(stderr, "vpd %s: %s: %s\n", cmd, vpd_status_name((vpd_status)status), vpd_last_error());
    return status ? status : 1;
}

int vpd_cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
    return 0;
}

/* the value of option argv[*i]: argv[*i + 1] (and *i advanced), or NULL with
 * "vpd CMD: missing value for OPT" on rank 0 */
const char *vpd_cli_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 < argc) return argv[++*i];
    if (vpd_world_rank() == 0) fprintf(stderr, "vpd %s: missing value for %s\n", cmd, argv[*i]);
    return NULL;
}

/* strict integer: all of s is a base-10 integer in [lo, hi]; else a message naming the option */
int vpd_cli_parse_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !s[0] || end == s || *end || errno == ERANGE || v < lo || v > hi) {
        if (vpd_world_rank() == 0)
            fprintf(stderr, "vpd %s: %s wants an integer from %ld to %ld, got '%s'\n", cmd, opt, lo, hi, s ? s : "");
        return 0;
    }
    *out = v;
    return 1;
}

int vpd_cli_parse_real(const char *cmd, const char *opt, const char *s, double lo, double hi, bool lo_open, double *out) {
    char *end = NULL;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    const bool ok_lo = lo_open ? v > lo : v >= lo;
    if (!s || !s[0] || end == s || *end || errno == ERANGE || !isfinite(v) || !ok_lo || !(v <= hi)) {
        if (vpd_world_rank() == 0) {
            if (isinf(hi) && isinf(lo)) fprintf(stderr, "vpd %s: %s wants a number, got '%s'\n", cmd, opt, s ? s : "");
            else if (isinf(hi))
                fprintf(stderr, "vpd %s: %s wants a number %s %g, got '%s'\n", cmd, opt, lo_open ? ">" : ">=", lo, s ? s : "");
            else
                fprintf(stderr, lo_open ? "vpd %s: %s wants a number in (%g, %g], got '%s'\n"
                                        : "vpd %s: %s wants a number from %g to %g, got '%s'\n",
                        cmd, opt, lo, hi, s ? s : "");
        }
        return 0;
    }
    *out = v;
    return 1;
}

int vpd_cli_parse_double(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out) {
    return vpd_cli_parse_real(cmd, opt, s, lo, hi, false, out);
}

int vpd_cli_double_opt(const char *cmd, int argc, char **argv, int *i, double lo, double hi, bool lo_open, double *out) {
    const char *opt = argv[*i], *s = vpd_cli_value(cmd, argc, argv, i);
    return s && vpd_cli_parse_real(cmd, opt, s, lo, hi, lo_open, out);
}

int vpd_cli_int_opt(const char *cmd, int argc, char **argv, int *i, long lo, long hi, int *out) {
    const char *opt = argv[*i], *s = vpd_cli_value(cmd, argc, argv, i);
    long v;
    if (!s || !vpd_cli_parse_int(cmd, opt, s, lo, hi, &v)) return 0;
    *out = (int)v;
    return 1;
}
