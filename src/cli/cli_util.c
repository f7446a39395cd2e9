/* Helpers shared by the subcommands: one way to report a failure and to spot --help. */
#include <stdio.h>
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
