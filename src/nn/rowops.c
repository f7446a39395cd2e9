/* The attention kernels' row softmax (src/nn/rowops.h), compiled for AVX2 and AVX-512. */
#include "rowops.h"

VPD_HOT double nn_softmax_inplace(real *row, int n) {
    const real mx = row_max(row, n);
    /* row_exp_sum with l = e: each element is read before it is written at the same index */
    const double sum = row_exp_sum(row, row, mx, n);
    const real inv = (real)(1.0 / sum);
    for (int j = 0; j < n; j++) row[j] *= inv; /* vectorised: nn_softmax_inplace */
    return (double)mx + log(sum);
}

VPD_HOT void nn_exp_shift(real *row, real l, int n) {
    for (int j = 0; j < n; j++) row[j] = exp_nonpos(row[j] - l); /* vectorised: nn_exp_shift */
}
