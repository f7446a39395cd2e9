/* Non-owning tensor views (pointer + shape + strides + name) for I/O and parameter tables,
 * and the shape / finiteness checks that produce messages naming the tensor. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "vpd/core.h"

vpd_tensor vpd_tensor_view(real *data, const char *name, int ndim, const int64_t *shape) {
    vpd_tensor t;
    memset(&t, 0, sizeof t);
    VPD_ASSERT(ndim >= 0 && ndim <= VPD_MAX_DIMS, "tensor '%s': %d dims", name ? name : "?", ndim);
    t.data = data;
    t.ndim = ndim;
    t.name = name;
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        t.shape[d] = shape[d];
        t.stride[d] = s;
        s *= shape[d];
    }
    return t;
}

int64_t vpd_tensor_numel(const vpd_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

bool vpd_tensor_is_contiguous(const vpd_tensor *t) {
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != s) return false;
        s *= t->shape[d];
    }
    return true;
}

const char *vpd_shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t off = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && off < n; d++)
        off += (size_t)snprintf(buf + off, n - off, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (off < n) snprintf(buf + off, n - off, "]");
    return buf;
}

vpd_status vpd_tensor_check_shape(const vpd_tensor *t, int ndim, const int64_t *shape) {
    bool ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == shape[d];
    if (ok) return VPD_OK;
    char a[96], b[96];
    return vpd_error(VPD_ERR_SHAPE, "tensor '%s': expected shape %s, found %s", t->name ? t->name : "?",
                     vpd_shape_str(a, sizeof a, ndim, shape), vpd_shape_str(b, sizeof b, t->ndim, t->shape));
}

vpd_status vpd_check_finite(const real *x, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return vpd_error(VPD_ERR_VALUE, "tensor '%s': non-finite value %g at flat index %zu",
                             name ? name : "?", (double)x[i], i);
    return VPD_OK;
}
