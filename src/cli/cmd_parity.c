/* `vpd parity IN.h5 [--out OUT.h5] [--grad]`: the value of every loss term of a fixed
 * problem (docs/parity.md) and, with --grad, its gradients with respect to V, U and the
 * causal importances; printed as a table and written to OUT.h5. The comparison against
 * the PyTorch reference is tools/reference/reference_vpd.py compare IN.h5 OUT.h5. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "vpd/parity.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vpd parity IN.h5 [--out OUT.h5] [--grad] [--quiet]\n\n"
            "Evaluate the loss terms described by IN.h5 (layout: docs/parity.md) with every random\n"
            "draw taken from the file, print each term's value and write them to OUT.h5.\n\n"
            "  --out OUT.h5   write /losses/<name>@value and (with --grad) the gradients\n"
            "  --grad         gradients coeff·d(term)/d(V, U) per layer and d/dz (or d/dci_lower,\n"
            "                 d/dci_upper when the file gives the CI values directly)\n"
            "  --quiet        no table on stdout\n");
}

int vpd_cmd_parity(int argc, char **argv) {
    if (vpd_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    vpd_parity_opts o;
    memset(&o, 0, sizeof o);
    o.report = stdout;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out")) {
            if (!(o.out_path = vpd_cli_value("parity", argc, argv, &i))) return 2;
        }
        else if (!strcmp(argv[i], "--grad")) o.grad = true;
        else if (!strcmp(argv[i], "--quiet")) o.report = NULL;
        else if (argv[i][0] == '-' || o.in_path) {
            fprintf(stderr, "vpd parity: unexpected argument '%s'\n\n", argv[i]);
            usage(stderr);
            return 2;
        } else o.in_path = argv[i];
    }
    if (!o.in_path) {
        usage(stderr);
        return 2;
    }
    vpd_status s = vpd_parity_run(&o);
    if (s != VPD_OK) return vpd_cli_fail("parity", s);
    return 0;
}
