/* vpd optim: AdamW on flat buffers, gradient-norm clipping, and the warmup/decay
 * schedules used for learning rates (VPD_METHOD.md §5).
 *
 * AdamW follows torch.optim.AdamW (single-tensor path) exactly: decoupled weight decay
 * p ← p·(1 − lr·wd) first, then m ← β1 m + (1−β1) g, v ← β2 v + (1−β2) g²,
 * p ← p − (lr / (1−β1^t)) · m / (√v / √(1−β2^t) + eps), with the bias corrections in
 * double and t counted from 1. Clipping matches torch.nn.utils.clip_grad_norm_: the L2
 * norm n over all given ranges (accumulated in double), then every gradient is scaled
 * by min(1, c / (n + 1e-6)). Schedules mirror spd's get_scheduled_value. */
#ifndef VPD_OPTIM_H
#define VPD_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "vpd/config.h"
#include "vpd/core.h"

/* ---- AdamW ------------------------------------------------------------------------------
 * State of one optimiser over one flat parameter block. m and v are views of n values
 * (owned by the caller's flat buffers, e.g. the decomposition's arena). */
typedef struct {
    double beta1, beta2, eps, weight_decay;
    int64_t t;     /* updates taken so far */
    real *m, *v;   /* [n] first and second moments */
    size_t n;
} vpd_adamw;

/* β1 0.9, β2 0.999, eps 1e-8, the given weight decay; zeroes m and v; t = 0. */
void vpd_adamw_init(vpd_adamw *a, real *m, real *v, size_t n, double weight_decay);
/* One update of params[n] with grads[n] at learning rate lr (t += 1 first). */
void vpd_adamw_step(vpd_adamw *a, real *params, const real *grads, double lr);
/* The fused kernel itself, for callers that keep their own state; t >= 1 is the step
 * number of this update. */
void vpd_adamw_update(real *p, const real *g, real *m, real *v, size_t n, double lr, double beta1, double beta2,
                      double eps, double weight_decay, int64_t t);

/* ---- gradient norms and clipping -----------------------------------------------------------
 * A set of flat gradient ranges (e.g. every V and U of every layer) treated as one vector. */
typedef struct {
    real *g;
    size_t n;
} vpd_grad_range;

/* Σ g² over all ranges, in double (for an MPI allreduce before the sqrt when the ranges
 * are sharded across ranks). */
double vpd_grad_sumsq(const vpd_grad_range *r, int nr);
/* sqrt(vpd_grad_sumsq) */
double vpd_grad_norm(const vpd_grad_range *r, int nr);
/* min(1, max_norm / (norm + 1e-6)) */
double vpd_clip_coef(double norm, double max_norm);
void vpd_grad_scale(const vpd_grad_range *r, int nr, double factor);
/* Clip in place to max_norm (torch clip_grad_norm_) and return the norm before clipping. */
double vpd_clip_grad_norm(const vpd_grad_range *r, int nr, double max_norm);

/* ---- schedules --------------------------------------------------------------------------
 * value(step) for step in [0, total_steps]: warmup = ⌊total·warmup_pct⌋, decay = total −
 * warmup; start·step/warmup while step < warmup; start if decay <= 1; else with
 * p = (step − warmup)/(decay − 1): constant start, linear start·(f + (1−f)(1−p)), cosine
 * start·(f + (1−f)·½(1 + cos πp)). (At step = total, p slightly exceeds 1, as in spd.) */
typedef enum { VPD_SCHED_CONSTANT = 0, VPD_SCHED_LINEAR = 1, VPD_SCHED_COSINE = 2 } vpd_sched_fn;

typedef struct {
    double start_val;
    vpd_sched_fn fn_type;
    double warmup_pct;
    double final_val_frac;
} vpd_schedule;

/* "constant", "linear", "cosine" */
const char *vpd_sched_fn_name(vpd_sched_fn f);
/* constant schedule at `value` */
vpd_schedule vpd_schedule_constant(double value);
double vpd_schedule_value(const vpd_schedule *s, int64_t step, int64_t total_steps);

/* Parse a schedule mapping {start_val, fn_type, warmup_pct, final_val_frac} with spd's
 * ScheduleConfig rules: start_val > 0 (required), warmup_pct in [0, 1] (default 0),
 * final_val_frac >= 0 (default 1), fn_type constant|linear|cosine (default constant), and a
 * constant schedule needs final_val_frac == 1. */
vpd_status vpd_schedule_parse(vpd_config *map, vpd_schedule *out);
/* Read the schedule of `parent` (a config mapping) as spd does, accepting old formats:
 *  - `lr_schedule: {...}` (current);
 *  - when `legacy_key` (e.g. "lr" at the top level or in an adam PGD optimizer,
 *    "step_size" in a sign PGD optimizer) is present: start_val = its value, fn_type =
 *    `lr_schedule` as a string (default constant), warmup_pct = `lr_warmup_pct` (default 0),
 *    final_val_frac 0 for cosine, else 1 (spd's migrate_to_lr_schedule_config).
 * Both forms at once, or neither, is an error naming the keys. legacy_key may be NULL. */
vpd_status vpd_schedule_from_config(vpd_config *parent, const char *legacy_key, vpd_schedule *out);

#endif
