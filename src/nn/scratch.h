/* A per-thread work buffer of the nn kernels that need one (attention.c, attention_rows.c,
 * attention_row.c): grown only when a larger size is asked for, so a training step does no
 * allocation after its first call. Each kernel file keeps its own buffer:
 *     static _Thread_local nn_scratch s;  real *w = nn_scratch_get(&s, n, "what");
 * A failed allocation is fatal (the kernels have no error path), naming the buffer. */
#ifndef VPD_NN_SCRATCH_H
#define VPD_NN_SCRATCH_H

#include "vpd/core.h"

typedef struct {
    real *p;
    size_t n;
} nn_scratch;

static inline real *nn_scratch_get(nn_scratch *s, size_t n, const char *what) {
    if (n > s->n) {
        vpd_free(s->p);
        s->p = vpd_malloc(n * sizeof(real), what);
        VPD_ASSERT(s->p != NULL, "%s: cannot allocate %zu values: %s", what, n, vpd_last_error());
        s->n = n;
    }
    return s->p;
}

#endif
