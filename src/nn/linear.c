/* Linear layer y = x W^T + b with W stored [Dout, Din] as in PyTorch, so weights
 * loaded from safetensors need no transpose. Both directions are single vpd_gemm
 * calls over all N rows; the bias is broadcast into y first so the product can
 * accumulate onto it (beta = 1) instead of needing a second pass. */
#include "vpd/nn.h"

void linear_forward(real *y, const real *x, const real *W, const real *b, int N, int Din, int Dout) {
    real beta = 0;
    if (b) {
        for (int n = 0; n < N; n++) {
            real *yn = y + (size_t)n * Dout;
            for (int o = 0; o < Dout; o++) yn[o] = b[o];
        }
        beta = 1;
    }
    /* y[N,Dout] = x[N,Din] · W^T, W stored [Dout,Din] → tb = true */
    vpd_gemm(false, true, N, Dout, Din, 1, x, Din, W, Din, beta, y, Dout);
}

void linear_backward(real *dx, real *dW, real *db, const real *dy, const real *x, const real *W,
                     int N, int Din, int Dout) {
    /* dx[N,Din] += dy[N,Dout] · W[Dout,Din] */
    if (dx) vpd_gemm(false, false, N, Din, Dout, 1, dy, Dout, W, Din, 1, dx, Din);
    /* dW[Dout,Din] += dy^T · x */
    if (dW) vpd_gemm(true, false, Dout, Din, N, 1, dy, Dout, x, Din, 1, dW, Din);
    if (db) {
        /* column sums of dy; row-outer order streams dy once */
        for (int n = 0; n < N; n++) {
            const real *dyn = dy + (size_t)n * Dout;
            for (int o = 0; o < Dout; o++) db[o] += dyn[o];
        }
    }
}
