/* vpd parity: evaluate individual VPD loss terms on a fully specified problem read from
 * an HDF5 file (layout: docs/parity.md), with every random draw taken from the file, so a
 * PyTorch implementation given the same file must produce the same numbers.
 *
 * The file names a target (a model directory or an inline one), the input batch, per
 * decomposed layer V, U (optionally W, b to check against the target) and the causal
 * importances (pre-sigmoid z, or ci_lower / ci_upper directly), and per loss its settings
 * as attributes and its fixed draws (stochastic sources, delta sources, routing masks, PGD
 * initial sources, persistent PGD sources). Each loss is evaluated on its own, so its
 * value and its gradients (coeff·∂/∂V, ∂/∂U, ∂/∂z or ∂/∂ci) are per term. */
#ifndef VPD_PARITY_H
#define VPD_PARITY_H

#include <stdio.h>

#include "vpd/core.h"

typedef struct {
    const char *in_path;  /* the parity file */
    const char *out_path; /* NULL: print only */
    bool grad;            /* also compute and write gradients */
    FILE *report;         /* the value table (NULL: silent) */
} vpd_parity_opts;

/* Read, validate (shapes, missing datasets, non-finite values: one message naming the
 * dataset), evaluate every loss of the file and write the results. */
vpd_status vpd_parity_run(const vpd_parity_opts *o);

#endif
