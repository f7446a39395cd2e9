/* vpd harvest: what each subcomponent does, from held-out data (VPD_METHOD.md §6).
 *
 * `vpd harvest RUN_DIR` streams tokens (language models: data.eval or a given file) or
 * generated examples (toy models: the eval stream of the data generator) through the
 * target with the CI function, and records per subcomponent of every decomposed layer:
 * firing densities, mean g, histograms of g and of a_c = ‖U_c‖·V_cᵀx, the top activating
 * contexts and quantile samples, input/next-token tables (toy models: per-feature tables),
 * the logit lens of residual writers, the most co-firing subcomponents and the attention
 * views (head shares, q/k interaction under RoPE). README.md "harvest.h5" lists every
 * dataset and defines each statistic.
 *
 * Parallelism: rank r of `comm` takes a contiguous range of the stream's batches (every
 * rank forms the same batches, so each position is computed identically on any rank
 * count); counts, histograms and fixed-point sums are summed, top-k lists and reservoirs
 * merged by a total order, so the file is the same for 1 and N ranks. Memory is
 * O(ΣC·k) for the lists plus the dense count tables (ΣC×vocab per token table, ΣC² for
 * co-firing), each checked against a limit before the first batch. */
#ifndef VPD_HARVEST_H
#define VPD_HARVEST_H

#include <mpi.h>

#include "vpd/analysis.h"

#define VPD_HARVEST_BINS 50
#define VPD_HARVEST_TOPK 30
#define VPD_HARVEST_QUANTILES 10
#define VPD_HARVEST_PER_QUANTILE 5
#define VPD_HARVEST_HALF_WINDOW 20
#define VPD_HARVEST_WINDOW (2 * VPD_HARVEST_HALF_WINDOW + 1)
#define VPD_HARVEST_TABLE_K 10
#define VPD_HARVEST_COFIRE_K 10
#define VPD_HARVEST_QK_OFFSETS 17
#define VPD_HARVEST_FIRE 0.1 /* g > 0.1: "fires" */

typedef struct {
    const char *tokens_path;  /* LM: NULL = the config's data.eval */
    int64_t n_tokens;         /* LM: tokens (toy: examples); <= 0: 1M or the whole file */
    double max_dense_mib;     /* limit for each dense count table (token tables, co-firing) */
    bool no_cofire, no_token_tables;
    bool progress;            /* progress line on rank 0 (stderr) */
} vpd_harvest_opts;

/* Harvest the opened run `r` (its decomposition sized for the harvest batch) into
 * `out_path` (written by rank 0 of comm; the caller chooses the name and the overwrite
 * policy). Collective over comm. */
vpd_status vpd_harvest(vpd_run *r, const vpd_harvest_opts *o, const char *out_path, MPI_Comm comm);

#endif
