/* Memory: aligned allocation with named failures, and the arena (one block per lifetime,
 * carved by bump allocation; sizes computed first so the plan can be printed). */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "vpd/core.h"

#define VPD_ALIGN 64

void *vpd_malloc(size_t bytes, const char *what) {
    void *p = NULL;
    if (bytes == 0) bytes = VPD_ALIGN;
    size_t rounded = (bytes + VPD_ALIGN - 1) / VPD_ALIGN * VPD_ALIGN;
    if (posix_memalign(&p, VPD_ALIGN, rounded) != 0) {
        vpd_error(VPD_ERR_MEM, "cannot allocate %.1f MiB for %s", (double)bytes / 1048576.0,
                  what ? what : "(unnamed buffer)");
        return NULL;
    }
    return p;
}

void *vpd_calloc(size_t bytes, const char *what) {
    void *p = vpd_malloc(bytes, what);
    if (p) memset(p, 0, bytes);
    return p;
}

void vpd_free(void *p) { free(p); }

size_t vpd_arena_size(size_t bytes) { return (bytes + VPD_ALIGN - 1) / VPD_ALIGN * VPD_ALIGN; }

vpd_status vpd_arena_init(vpd_arena *a, size_t bytes, const char *name) {
    memset(a, 0, sizeof *a);
    a->name = name;
    a->base = vpd_malloc(bytes, name);
    if (!a->base) return VPD_ERR_MEM;
    a->capacity = bytes;
    return VPD_OK;
}

void *vpd_arena_alloc(vpd_arena *a, size_t bytes) {
    size_t need = vpd_arena_size(bytes);
    VPD_ASSERT(a->used + need <= a->capacity, "arena '%s' overflow: %zu + %zu > %zu bytes",
               a->name ? a->name : "?", a->used, need, a->capacity);
    void *p = a->base + a->used;
    a->used += need;
    if (a->used > a->peak) a->peak = a->used;
    return p;
}

size_t vpd_arena_mark(const vpd_arena *a) { return a->used; }
void vpd_arena_reset(vpd_arena *a, size_t mark) { VPD_ASSERT(mark <= a->used, "bad arena mark"); a->used = mark; }

void vpd_arena_free(vpd_arena *a) {
    vpd_free(a->base);
    memset(a, 0, sizeof *a);
}
