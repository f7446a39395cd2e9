/* `vpd report RUN_DIR [--force] [--max-cards N] [--tokenizer FILE]`: a self-contained HTML
 * report of a run (RUN_DIR/report/index.html, PNG plots beside it) rendered by
 * tools/report.py with Debian's python3 + h5py + numpy + matplotlib. This command checks the
 * inputs (one-line errors naming the file) and runs the tool; rank 0 only. README.md
 * "vpd report" describes the page. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/commands.h"
#include "vpd/checkpoint.h"
#include "vpd/comm.h"
#include "vpd/io.h"

#ifndef VPD_SOURCE_DIR
#define VPD_SOURCE_DIR ""
#endif
#ifndef VPD_PYTHON_EXE
#define VPD_PYTHON_EXE "/usr/bin/python3"
#endif

extern char **environ;

static void usage(FILE *f) {
    fprintf(f,
            "usage: vpd report RUN_DIR [--force] [--max-cards N] [--tokenizer FILE]\n\n"
            "Write a self-contained HTML report, RUN_DIR/report/index.html (plots beside it; no\n"
            "server, no network): training curves from metrics.jsonl, the eval table (run.h5:/eval,\n"
            "from vpd eval), CI histograms, per-layer tables of subcomponents by density with a card\n"
            "per subcomponent (top contexts shaded by g, token tables, logit lens, co-firing, head\n"
            "shares; from harvest.h5, made by vpd harvest), the attention-head view, and for toy\n"
            "targets the learned directions against the ground truth.\n\n"
            "  --force           overwrite an existing RUN_DIR/report\n"
            "  --max-cards N     cards per layer: the N densest subcomponents that fired (default 20)\n"
            "  --tokenizer FILE  tokenizer.json to decode token ids (default: the config's\n"
            "                    data.tokenizer, then TARGET_DIR/tokenizer.json; else ids are shown)\n\n"
            "The renderer is tools/report.py of the source tree (VPD_REPORT_TOOL overrides).\n");
}

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* tools/report.py: $VPD_REPORT_TOOL, the source tree this binary was built from, or
 * <prefix>/share/vpd/report.py beside an installed bin/vpd */
static bool find_tool(char *path, size_t n) {
    const char *env = getenv("VPD_REPORT_TOOL");
    if (env && *env) {
        snprintf(path, n, "%s", env);
        return file_exists(path);
    }
    snprintf(path, n, "%s/tools/report.py", VPD_SOURCE_DIR);
    if (VPD_SOURCE_DIR[0] && file_exists(path)) return true;
    char exe[1024];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = 0;
        char *s = strrchr(exe, '/');
        if (s) {
            *s = 0;
            snprintf(path, n, "%s/../share/vpd/report.py", exe);
            if (file_exists(path)) return true;
        }
    }
    snprintf(path, n, "%s/tools/report.py", VPD_SOURCE_DIR);
    return false;
}

/* the run identity: harvest.h5@run_config must equal run.h5's config text, and its
 * run_step the run's step */
static int check_harvest(const char *run_h5, const char *hv, const char *dir) {
    char *ryaml = NULL, *hyaml = NULL;
    vpd_status s = vpd_checkpoint_config(run_h5, &ryaml);
    if (s != VPD_OK) {
        fprintf(stderr, "vpd report: %s: cannot read its /config (not a run file of vpd decompose?)\n", run_h5);
        return 1;
    }
    vpd_h5 f;
    int rc = 0;
    if (vpd_h5_open(&f, hv, false) != VPD_OK) {
        fprintf(stderr, "vpd report: %s: not an HDF5 file (rerun vpd harvest %s --force)\n", hv, dir);
        vpd_free(ryaml);
        return 1;
    }
    char *fmt = NULL;
    int64_t hstep = -1;
    if (vpd_h5_get_attr_str(&f, "/", "format", &fmt) != VPD_OK || strcmp(fmt, "vpd-harvest") != 0) {
        fprintf(stderr, "vpd report: %s: not a harvest file of vpd harvest (format attribute missing or wrong)\n", hv);
        rc = 1;
    } else if (!vpd_h5_has_attr(&f, "/", "run_config") || vpd_h5_get_attr_str(&f, "/", "run_config", &hyaml) != VPD_OK) {
        fprintf(stderr, "vpd report: %s records no run identity (made by an older vpd harvest): rerun vpd harvest %s --force\n",
                hv, dir);
        rc = 1;
    } else if (strcmp(hyaml, ryaml) != 0) {
        fprintf(stderr, "vpd report: %s was made from another run (its run_config differs from %s:/config): rerun "
                "vpd harvest %s --force\n", hv, run_h5, dir);
        rc = 1;
    } else if (vpd_h5_get_attr_int(&f, "/", "run_step", &hstep) == VPD_OK) {
        vpd_h5 r;
        int64_t rstep = -1;
        if (vpd_h5_open(&r, run_h5, false) == VPD_OK) {
            if (vpd_h5_get_attr_int(&r, "/", "step", &rstep) == VPD_OK && rstep != hstep) {
                fprintf(stderr, "vpd report: %s was made at step %lld of the run but %s is at step %lld: rerun vpd "
                        "harvest %s --force\n", hv, (long long)hstep, run_h5, (long long)rstep, dir);
                rc = 1;
            }
            vpd_h5_close(&r);
        }
    }
    vpd_h5_close(&f);
    vpd_free(fmt);
    vpd_free(hyaml);
    vpd_free(ryaml);
    return rc;
}

static int report_main(int argc, char **argv) {
    const char *dir = NULL, *tokenizer = NULL, *max_cards = "20";
    bool force = false;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (!strcmp(argv[i], "--force")) force = true;
        else if (!strcmp(argv[i], "--max-cards") && i + 1 < argc) {
            max_cards = argv[++i];
            long v = strtol(max_cards, &end, 10);
            if (*end || v < 0) {
                fprintf(stderr, "vpd report: --max-cards wants a non-negative integer, got '%s'\n", max_cards);
                return 2;
            }
        } else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tokenizer = argv[++i];
        else if (argv[i][0] == '-' || dir) {
            fprintf(stderr, "vpd report: unexpected argument '%s'\n\n", argv[i]);
            usage(stderr);
            return 2;
        } else dir = argv[i];
    }
    if (!dir) {
        usage(stderr);
        return 2;
    }
    char run_h5[1200], hv[1200], out[1200], tool[1400];
    snprintf(run_h5, sizeof run_h5, "%s/run.h5", dir);
    snprintf(hv, sizeof hv, "%s/harvest.h5", dir);
    snprintf(out, sizeof out, "%s/report", dir);
    if (!file_exists(run_h5)) {
        fprintf(stderr, "vpd report: %s: no such file (RUN_DIR must be a finished run of vpd decompose)\n", run_h5);
        return 1;
    }
    if (file_exists(out) && !force) {
        fprintf(stderr, "vpd report: %s exists: pass --force to overwrite it\n", out);
        return 1;
    }
    if (tokenizer && !file_exists(tokenizer)) {
        fprintf(stderr, "vpd report: %s: no such tokenizer file\n", tokenizer);
        return 1;
    }
    if (file_exists(hv) && check_harvest(run_h5, hv, dir)) return 1;
    if (!find_tool(tool, sizeof tool)) {
        fprintf(stderr, "vpd report: %s: the report renderer is missing (set VPD_REPORT_TOOL to tools/report.py of the "
                "vpd sources)\n", tool);
        return 1;
    }
    if (!file_exists(VPD_PYTHON_EXE)) {
        fprintf(stderr, "vpd report: %s: no such interpreter (install python3-h5py python3-matplotlib: "
                "tools/install-deps.sh)\n", VPD_PYTHON_EXE);
        return 1;
    }
    char *args[16];
    int n = 0;
    args[n++] = (char *)VPD_PYTHON_EXE;
    args[n++] = tool;
    args[n++] = (char *)dir;
    args[n++] = (char *)"--out";
    args[n++] = out;
    args[n++] = (char *)"--max-cards";
    args[n++] = (char *)max_cards;
    if (force) args[n++] = (char *)"--force";
    if (tokenizer) {
        args[n++] = (char *)"--tokenizer";
        args[n++] = (char *)tokenizer;
    }
    args[n] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid;
    int e = posix_spawn(&pid, VPD_PYTHON_EXE, NULL, NULL, args, environ);
    if (e != 0) {
        fprintf(stderr, "vpd report: cannot run %s %s: %s\n", VPD_PYTHON_EXE, tool, strerror(e));
        return 1;
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) {
            fprintf(stderr, "vpd report: waiting for %s: %s\n", tool, strerror(errno));
            return 1;
        }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "vpd report: %s failed (%s %d)\n", tool, WIFEXITED(st) ? "exit status" : "signal",
                WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        return 1;
    }
    return 0;
}

int vpd_cmd_report(int argc, char **argv) {
    const bool root = vpd_world_rank() == 0;
    if (vpd_cli_wants_help(argc, argv)) {
        if (root) usage(stdout);
        return 0;
    }
    /* serial: rank 0 renders, the others only agree on its status */
    int rc = root ? report_main(argc, argv) : 0;
    vpd_status s = vpd_all_agree(rc == 0 ? VPD_OK : VPD_ERR_IO, vpd_comm_world());
    return root ? rc : (s == VPD_OK ? 0 : 1);
}
