/* GELU (erf and tanh forms) and ReLU: forward values at known points and
 * finite-difference checks of the backward. ReLU test points stay away from the kink
 * at 0 (|x| >= 0.05 with h = 1e-5), where the derivative is not defined. */
#include <math.h>

#include "testutil.h"
#include "vpd/nn.h"

enum { n = 16 };
static real x[n], R[n], y[n];
static int which; /* 0 erf GELU, 1 tanh GELU, 2 ReLU */

static double objective(void *ctx) {
    (void)ctx;
    if (which == 2) relu_forward(y, x, n);
    else gelu_forward(y, x, n, which == 1 ? GELU_TANH : GELU_ERF);
    double f = 0;
    for (int i = 0; i < n; i++) f += (double)y[i] * R[i];
    return f;
}

int main(void) {
    tu_fill(x, n, 1, 3.0);
    for (int i = 0; i < n; i++)
        if (fabs((double)x[i]) < 0.05) x[i] = 0.3; /* keep ReLU points off the kink */
    tu_fill(R, n, 2, 1.0);

    /* known values: GELU_erf(1) = Φ(1) = 0.8413447460685429; tanh form at 1: 0.8411919906082768 */
    real one = 1, g;
    gelu_forward(&g, &one, 1, GELU_ERF);
    CHECK(fabs(g - 0.8413447460685429) < 1e-14, "gelu erf(1) = %.17g", (double)g);
    gelu_forward(&g, &one, 1, GELU_TANH);
    CHECK(fabs(g - 0.8411919906082768) < 1e-14, "gelu tanh(1) = %.17g", (double)g);

    const char *names[3] = {"gelu erf dx", "gelu tanh dx", "relu dx"};
    for (which = 0; which < 3; which++) {
        real dx[n];
        for (int i = 0; i < n; i++) dx[i] = 0.5;
        if (which == 2) relu_backward(dx, R, x, n);
        else gelu_backward(dx, R, x, n, which == 1 ? GELU_TANH : GELU_ERF);
        for (int i = 0; i < n; i++) dx[i] -= 0.5;
        CHECK(tu_fd_check(objective, NULL, x, dx, n, 1e-5, names[which]) <= 1e-6, "%s", names[which]);
    }
    which = 2;
    objective(NULL);
    for (int i = 0; i < n; i++) CHECK(y[i] == (x[i] > 0 ? x[i] : 0), "relu value at %d", i);
    TEST_REPORT();
}
