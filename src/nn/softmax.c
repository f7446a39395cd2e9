/* Row-wise softmax over the last dim, numerically stable: the row max is subtracted
 * before exponentiating, so large logits never overflow; the normaliser is summed in
 * double. */
#include <math.h>

#include "vpd/nn.h"

void softmax_forward(real *probs, const real *logits, int N, int V) {
    for (int n = 0; n < N; n++) {
        const real *l = logits + (size_t)n * V;
        real *p = probs + (size_t)n * V;
        real mx = l[0];
        for (int j = 1; j < V; j++) if (l[j] > mx) mx = l[j];
        double sum = 0;
        for (int j = 0; j < V; j++) {
            p[j] = (real)exp((double)(l[j] - mx));
            sum += p[j];
        }
        real inv = (real)(1.0 / sum);
        for (int j = 0; j < V; j++) p[j] *= inv;
    }
}
