/* The attention kernels' row softmax (src/nn/rowops.h), compiled for AVX2 and AVX-512. */
#include "rowops.h"

VPD_HOT double nn_softmax_inplace(real *row, int n) {
    const real mx = row_max(row, n);
    const double sum = row_exp_sum_inplace(row, mx, n);
    row_scale(row, (real)(1.0 / sum), n);
    return (double)mx + log(sum);
}

VPD_HOT void nn_exp_shift(real *row, real l, int n) { row_exp_shift_inplace(row, l, n); }
