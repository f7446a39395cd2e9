/* softmax_forward: against a direct evaluation, rows sum to 1, invariance to a shift
 * of the logits, and stability for logits of size 1000 (a naive exp overflows). */
#include <math.h>

#include "testutil.h"
#include "vpd/nn.h"

enum { N = 3, V = 7 };

int main(void) {
    real l[N * V], p[N * V], ref[N * V];
    tu_fill(l, N * V, 1, 4.0);
    softmax_forward(p, l, N, V);
    for (int n = 0; n < N; n++) {
        double z = 0, s = 0;
        for (int j = 0; j < V; j++) z += exp((double)l[n * V + j]);
        for (int j = 0; j < V; j++) ref[n * V + j] = (real)(exp((double)l[n * V + j]) / z);
        for (int j = 0; j < V; j++) s += p[n * V + j];
        CHECK(fabs(s - 1) < 1e-14, "softmax row %d sums to %.17g", n, s);
    }
    double e = tu_max_rel_err(p, ref, N * V, 1e-12);
    CHECK(e < 1e-14, "softmax vs direct: rel err %.3e", e);

    /* shifted by +1000: same probabilities, nothing overflows */
    real ls[N * V], ps[N * V];
    for (int i = 0; i < N * V; i++) ls[i] = l[i] + 1000;
    softmax_forward(ps, ls, N, V);
    e = tu_max_rel_err(ps, ref, N * V, 1e-12);
    CHECK(e < 1e-12, "softmax of logits + 1000: rel err %.3e", e);
    TEST_REPORT();
}
