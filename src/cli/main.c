/* vpd: the command-line entry point. Initialises MPI and logging, then dispatches to the
 * subcommand (src/cli/cmd_*.c). Every subcommand returns an exit status; a failure on
 * any rank is reported once and makes every rank exit non-zero. */
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "vpd/core.h"
#include "vpd/io.h"

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} vpd_command;

/* Subcommands are weak references while the tree grows: one whose source is not in this
 * build is listed as unavailable instead of breaking the link. */
#pragma weak vpd_cmd_forward
#pragma weak vpd_cmd_pretrain
#pragma weak vpd_cmd_decompose
#pragma weak vpd_cmd_tokenize
#pragma weak vpd_cmd_eval
#pragma weak vpd_cmd_compare
#pragma weak vpd_cmd_harvest
#pragma weak vpd_cmd_report
#pragma weak vpd_cmd_info
#pragma weak vpd_cmd_sweep
#pragma weak vpd_cmd_collect
#pragma weak vpd_cmd_parity
#pragma weak vpd_cmd_bench
#pragma weak vpd_cmd_edit
#pragma weak vpd_cmd_generate
#pragma weak vpd_cmd_transcoder
#pragma weak vpd_cmd_prompt_ci
#pragma weak vpd_cmd_attrib

static const vpd_command commands[] = {
    {"pretrain", vpd_cmd_pretrain, "train a target model (TMS, ResidMLP, LlamaSimpleMLP) from a config"},
    {"decompose", vpd_cmd_decompose, "decompose a target model's weights (the main job)"},
    {"eval", vpd_cmd_eval, "evaluate a finished run: L0, alive, CE/KL under masks, adversarial loss"},
    {"compare", vpd_cmd_compare, "VPD runs and transcoders spliced into the target on the same tokens: dCE, KL, L0, splitting"},
    {"harvest", vpd_cmd_harvest, "what each subcomponent does: densities, top contexts, token tables, co-firing (harvest.h5)"},
    {"edit", vpd_cmd_edit, "edit a target by its subcomponents: run-time ablation/scaling, baked ablation/overwrite, --measure"},
    {"attrib", vpd_cmd_attrib, "the attribution graph of a prompt: circuit-tracer JSON and a Graphviz SVG"},
    {"report", vpd_cmd_report, "a self-contained HTML report of a run: curves, eval table, subcomponent cards, heads"},
    {"transcoder", vpd_cmd_transcoder, "train per-layer / cross-layer transcoders on a language model's MLPs (baselines)"},
    {"prompt-ci", vpd_cmd_prompt_ci, "optimise the CI on one prompt: the pruned nodes of an attribution graph, P(target)"},
    {"parity", vpd_cmd_parity, "evaluate loss terms and gradients on a fixed problem (HDF5), for reference checks"},
    {"info", vpd_cmd_info, "print a run's provenance, checkpoints and progress"},
    {"sweep", vpd_cmd_sweep, "expand a sweep file (spd format) into configs and a Slurm job array"},
    {"collect", vpd_cmd_collect, "gather runs' config values and final metrics into a CSV and plots"},
    {"bench", vpd_cmd_bench, "time decomposition training steps (toy models) against peak and PyTorch"},
    {"forward", vpd_cmd_forward, "run a target model on inputs and write its outputs (HDF5)"},
    {"generate", vpd_cmd_generate, "continue a prompt with a language model (greedy or sampled), e.g. an edited one"},
    {"tokenize", vpd_cmd_tokenize, "text to token binaries with a tokenizer.json; train a byte-level BPE"},
};

static void usage(FILE *f) {
    fprintf(f,
            "vpd %s (%s): adversarial parameter decomposition of neural network weights\n\n"
            "usage: vpd <command> [options]      (mpiexec -n N vpd ... for multi-rank runs)\n\ncommands:\n",
            VPD_VERSION, VPD_GIT_HASH);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (commands[i].fn) fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "  %-12s %s\n\n'vpd <command> --help' describes each command.\n", "version", "print version and git hash");
}

int main(int argc, char **argv) {
    vpd_dist_init(&argc, &argv);
    const int rank = vpd_world_rank(), world = vpd_world_size();
    vpd_log_set_rank(rank, world);

    int status = 0;
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        if (rank == 0) usage(argc < 2 ? stderr : stdout);
        status = argc < 2 ? 2 : 0;
    } else if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        if (rank == 0) printf("vpd %s (git %s)\n", VPD_VERSION, VPD_GIT_HASH);
    } else {
        const vpd_command *cmd = NULL;
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
            if (!strcmp(argv[1], commands[i].name)) cmd = &commands[i];
        if (cmd && !cmd->fn) {
            if (rank == 0) fprintf(stderr, "vpd: command '%s' is not available in this build\n", argv[1]);
            status = 2;
        } else if (!cmd) {
            if (rank == 0) {
                fprintf(stderr, "vpd: unknown command '%s'\n\n", argv[1]);
                usage(stderr);
            }
            status = 2;
        } else {
            status = cmd->fn(argc - 1, argv + 1);
        }
    }
    if (vpd_h5_unclosed()) {
        /* libhdf5 would crash when MPI finalises, on the file it could not close (see io.h) */
        fprintf(stderr, "[vpd r%d] an HDF5 file could not be closed (above; a full disk?): ending without "
                        "finalising MPI, whose HDF5 clean-up would crash on it\n", rank);
        fflush(NULL);
        _exit(status ? status : 1);
    }
    /* a failure on any rank fails every rank (no rank waits forever on the others) */
    return vpd_dist_finalize(status);
}
