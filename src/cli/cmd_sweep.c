/* `vpd sweep` and `vpd collect`: thin wrappers that run tools/sweep.py and tools/collect.py
 * with /usr/bin/python3 (Debian's, which has PyYAML and matplotlib after
 * tools/install-deps.sh). Grids and plots are bookkeeping, not numerics, so they live in
 * Python; the wrappers only make them reachable as vpd subcommands.
 *
 * The tools directory is $VPD_TOOLS_DIR if set, else found next to the executable
 * (<build>/bin/vpd -> <repo>/tools, or <prefix>/bin/vpd -> <prefix>/share/vpd/tools). */
#define _POSIX_C_SOURCE 200809L
#include <libgen.h>
#include <limits.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/commands.h"

static bool find_tool(const char *name, char *out, size_t size) {
    struct stat st;
    const char *env = getenv("VPD_TOOLS_DIR");
    if (env) {
        snprintf(out, size, "%s/%s", env, name);
        return stat(out, &st) == 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return false;
    exe[n] = '\0';
    char *dir = dirname(exe); /* .../bin */
    const char *rel[] = {"../../tools", "../tools", "../share/vpd/tools"};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        snprintf(out, size, "%s/%s/%s", dir, rel[i], name);
        if (stat(out, &st) == 0) return true;
    }
    return false;
}

static int run_tool(const char *cmd, const char *script, int argc, char **argv) {
    if (vpd_world_rank() != 0) return 0;
    char path[PATH_MAX + 64];
    if (!find_tool(script, path, sizeof path)) {
        fprintf(stderr, "vpd %s: cannot find tools/%s (set VPD_TOOLS_DIR to the repository's tools/ directory)\n", cmd,
                script);
        return 2;
    }
    const char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
    char **args = calloc((size_t)argc + 3, sizeof(char *));
    if (!args) return 1;
    args[0] = (char *)py;
    args[1] = path;
    for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        execvp(py, args);
        fprintf(stderr, "vpd %s: cannot run %s\n", cmd, py);
        _exit(127);
    }
    free(args);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) {
        fprintf(stderr, "vpd %s: cannot start %s\n", cmd, py);
        return 1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int vpd_cmd_sweep(int argc, char **argv) { return run_tool("sweep", "sweep.py", argc, argv); }
int vpd_cmd_collect(int argc, char **argv) { return run_tool("collect", "collect.py", argc, argv); }
