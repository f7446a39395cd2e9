/* AdamW on flat buffers and gradient-norm clipping (VPD_METHOD.md §5 item 11).
 *
 * The update reproduces torch.optim.AdamW's single-tensor path operation by operation
 * (torch 1.13 `_single_tensor_adamw`): the scalars lr/(1−β1^t) and √(1−β2^t) are formed
 * in double, as Python floats, then used in `real` arithmetic, so float results agree
 * with PyTorch to an ulp or two. One fused loop per block: the optimiser is memory-bound
 * and touches p, g, m, v once each. */
#include <math.h>

#include "vpd/optim.h"

void vpd_adamw_init(vpd_adamw *a, real *m, real *v, size_t n, double weight_decay) {
    a->beta1 = 0.9;
    a->beta2 = 0.999;
    a->eps = 1e-8;
    a->weight_decay = weight_decay;
    a->t = 0;
    a->m = m;
    a->v = v;
    a->n = n;
    for (size_t i = 0; i < n; i++) m[i] = v[i] = 0;
}

void vpd_adamw_update(real *p, const real *g, real *m, real *v, size_t n, double lr, double beta1, double beta2,
                      double eps, double weight_decay, int64_t t) {
    VPD_ASSERT(t >= 1, "AdamW step count must start at 1, got %lld", (long long)t);
    const double bc1 = 1.0 - pow(beta1, (double)t);
    const double bc2 = 1.0 - pow(beta2, (double)t);
    const real decay = (real)(1.0 - lr * weight_decay); /* param.mul_(1 - lr*wd) */
    const real step_size = (real)(lr / bc1);
    const real bc2_sqrt = (real)sqrt(bc2);
    const real b1 = (real)beta1, b2 = (real)beta2, ob1 = (real)(1.0 - beta1), ob2 = (real)(1.0 - beta2);
    const real e = (real)eps;
    for (size_t i = 0; i < n; i++) { /* vectorised: adamw_update */
        real gi = g[i];
        real mi = m[i] * b1 + gi * ob1;            /* exp_avg.mul_(β1).add_(g, alpha=1−β1) */
        real vi = v[i] * b2 + ob2 * gi * gi;       /* exp_avg_sq.mul_(β2).addcmul_(g, g, value=1−β2) */
        real denom = (real)sqrt(vi) / bc2_sqrt + e; /* (v.sqrt() / √bc2).add_(eps) */
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step_size * (mi / denom);
    }
}

void vpd_adamw_step(vpd_adamw *a, real *params, const real *grads, double lr) {
    a->t++;
    vpd_adamw_update(params, grads, a->m, a->v, a->n, lr, a->beta1, a->beta2, a->eps, a->weight_decay, a->t);
}

double vpd_grad_sumsq(const vpd_grad_range *r, int nr) {
    double s = 0;
    for (int k = 0; k < nr; k++)
        for (size_t i = 0; i < r[k].n; i++) s += (double)r[k].g[i] * (double)r[k].g[i];
    return s;
}

double vpd_grad_norm(const vpd_grad_range *r, int nr) { return sqrt(vpd_grad_sumsq(r, nr)); }

double vpd_clip_coef(double norm, double max_norm) {
    double c = max_norm / (norm + 1e-6);
    return c < 1.0 ? c : 1.0;
}

void vpd_grad_scale(const vpd_grad_range *r, int nr, double factor) {
    if (factor == 1.0) return;
    const real f = (real)factor;
    for (int k = 0; k < nr; k++)
        for (size_t i = 0; i < r[k].n; i++) r[k].g[i] *= f;
}

double vpd_clip_grad_norm(const vpd_grad_range *r, int nr, double max_norm) {
    double norm = vpd_grad_norm(r, nr);
    /* torch multiplies even when the coefficient clamps to 1; skipping is bit-identical */
    vpd_grad_scale(r, nr, vpd_clip_coef(norm, max_norm));
    return norm;
}
