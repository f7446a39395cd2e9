/* Element-wise activations. GELU comes in the two forms the target models use:
 * exact erf GELU  y = x Φ(x) = 0.5 x (1 + erf(x/√2)), and the tanh approximation
 *   y = 0.5 x (1 + tanh(k (x + 0.044715 x³))), k = √(2/π)  (LlamaSimpleMLP, §7).
 * The transcendental parts are evaluated in double: cheap next to the matrix
 * products, and it keeps the float build's derivative consistent with its forward.
 * ReLU's derivative at exactly 0 is taken as 0 (PyTorch's convention). */
#include <math.h>

#include "vpd/nn.h"

#define GELU_K 0.79788456080286535588     /* sqrt(2/pi) */
#define GELU_C 0.044715
#define INV_SQRT2 0.70710678118654752440
#define INV_SQRT2PI 0.39894228040143267794 /* 1/sqrt(2 pi) */

void gelu_forward(real *y, const real *x, size_t n, gelu_kind kind) {
    if (kind == GELU_TANH) {
        for (size_t i = 0; i < n; i++) {
            double v = x[i];
            y[i] = (real)(0.5 * v * (1.0 + tanh(GELU_K * (v + GELU_C * v * v * v))));
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            double v = x[i];
            y[i] = (real)(0.5 * v * (1.0 + erf(v * INV_SQRT2)));
        }
    }
}

void gelu_backward(real *dx, const real *dy, const real *x, size_t n, gelu_kind kind) {
    if (!dx) return;
    if (kind == GELU_TANH) {
        for (size_t i = 0; i < n; i++) {
            double v = x[i];
            double t = tanh(GELU_K * (v + GELU_C * v * v * v));
            /* d/dx: 0.5(1 + t) + 0.5 x (1 − t²) k (1 + 3c x²) */
            double g = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * GELU_K * (1.0 + 3.0 * GELU_C * v * v);
            dx[i] += (real)(dy[i] * g);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            double v = x[i];
            /* d/dx x Φ(x) = Φ(x) + x φ(x) */
            double g = 0.5 * (1.0 + erf(v * INV_SQRT2)) + v * INV_SQRT2PI * exp(-0.5 * v * v);
            dx[i] += (real)(dy[i] * g);
        }
    }
}

void relu_forward(real *y, const real *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
}

void relu_backward(real *dx, const real *dy, const real *x, size_t n) {
    if (!dx) return;
    for (size_t i = 0; i < n; i++)
        if (x[i] > 0) dx[i] += dy[i];
}
