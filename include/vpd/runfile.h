/* vpd runfile: writing run.h5, the self-describing result of a decomposition (layout in
 * src/io/runfile.c and DESIGN.md "Files"). */
#ifndef VPD_RUNFILE_H
#define VPD_RUNFILE_H

#include "vpd/trainer.h"

struct vpd_config;
/* Write path atomically (temporary name, then rename). summary and config may be NULL.
 * Collective over d->cp_comm: with component parallelism every rank of the group calls it
 * (the blocks are gathered) and cp rank 0 writes. */
vpd_status vpd_runfile_write(const char *path, const vpd_decomp *d, const struct vpd_config *config,
                             const vpd_summary *summary);
/* The writer itself, with full V / U per layer when the caller has them (NULL: the local ones). */
vpd_status vpd_runfile_write_full(const char *path, const vpd_decomp *d, const struct vpd_config *config,
                                  const vpd_summary *summary, real *const *fullV, real *const *fullU);

#endif
