/* Optimiser and schedules (src/vpd/optim.c, src/vpd/schedule.c): AdamW and gradient
 * clipping against numbers printed by PyTorch 1.13 (Debian python3-torch), schedules
 * against hand-computed values, and the schedule config readers (current and old spd
 * formats, and their error messages). */
#include <string.h>

#include "testutil.h"
#include "vpd/config.h"
#include "vpd/optim.h"

/* Expected values printed by /usr/bin/python3 (torch 1.13.0a0) running:
 *
 *   import torch
 *   p0 = [0.5, -1.25, 2.0, 0.0, -0.3]
 *   grads = [[0.1, -0.2, 0.3, -0.4, 0.05],
 *            [-0.3, 0.25, 0.0, 1.5, -0.01],
 *            [0.2, 0.2, -0.7, 0.02, 0.4]]
 *   for wd in (0.0, 0.1):
 *       p = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float32))
 *       opt = torch.optim.AdamW([p], lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
 *       for g in grads:
 *           p.grad = torch.tensor(g, dtype=torch.float32)
 *           opt.step()
 *           st = opt.state[p]
 *           print(f"wd={wd} p", ", ".join("%.9gf" % x for x in p.tolist()))
 *       print(f"wd={wd} m", ", ".join("%.9gf" % x for x in st['exp_avg'].tolist()))
 *       print(f"wd={wd} v", ", ".join("%.9gf" % x for x in st['exp_avg_sq'].tolist()))
 *   a = torch.nn.Parameter(torch.zeros(3)); b = torch.nn.Parameter(torch.zeros(2))
 *   a.grad = torch.tensor([3.0, -4.0, 1.0]); b.grad = torch.tensor([2.0, 0.5])
 *   n = torch.nn.utils.clip_grad_norm_([a, b], 1.5)
 *   print("clip norm %.9g" % n.item(), a.grad.tolist(), b.grad.tolist())
 */
static const real P0[5] = {0.5f, -1.25f, 2.0f, 0.0f, -0.3f};
static const real GRADS[3][5] = {{0.1f, -0.2f, 0.3f, -0.4f, 0.05f},
                                 {-0.3f, 0.25f, 0.0f, 1.5f, -0.01f},
                                 {0.2f, 0.2f, -0.7f, 0.02f, 0.4f}};
static const real TORCH_P[2][3][5] = {
    {/* wd 0 */
     {0.49000001f, -1.24000001f, 1.99000001f, 0.00999999978f, -0.310000002f},
     {0.49494192f, -1.24162734f, 1.98329937f, 0.00453533465f, -0.315110266f},
     {0.494754046f, -1.24608016f, 1.98713326f, 0.000229147729f, -0.321946263f}},
    {/* wd 0.1 */
     {0.489500016f, -1.23874998f, 1.98800004f, 0.00999999978f, -0.309700012f},
     {0.493952423f, -1.2391386f, 1.97931147f, 0.00452533504f, -0.31450057f},
     {0.493270606f, -1.24235225f, 1.98116612f, 0.000214622822f, -0.321022063f}}};
/* moments after step 3 (the same for both: weight decay does not touch them) */
static const real TORCH_M[5] = {0.00109999918f, 0.0263f, -0.0456999987f, 0.104599997f, 0.0431500003f};
static const real TORCH_V[5] = {0.00013989002f, 0.000142357545f, 0.000579820131f, 0.00240783021f, 0.000162594908f};

static void test_adamw_vs_torch(void) {
    const double wds[2] = {0.0, 0.1};
    for (int w = 0; w < 2; w++) {
        real p[5], m[5], v[5];
        memcpy(p, P0, sizeof p);
        vpd_adamw opt;
        vpd_adamw_init(&opt, m, v, 5, wds[w]);
        for (int t = 0; t < 3; t++) {
            vpd_adamw_step(&opt, p, GRADS[t], 0.01);
            double err = tu_max_rel_err(p, TORCH_P[w][t], 5, 1e-3);
            fprintf(stderr, "  adamw wd=%.1f step %d: max rel err vs torch %.3e\n", wds[w], t + 1, err);
            CHECK(err <= 1e-6, "AdamW wd=%g step %d: rel err %.3e", wds[w], t + 1, err);
        }
        CHECK(opt.t == 3, "step count %lld", (long long)opt.t);
        CHECK(tu_max_rel_err(m, TORCH_M, 5, 1e-3) <= 1e-6, "exp_avg wd=%g", wds[w]);
        CHECK(tu_max_rel_err(v, TORCH_V, 5, 1e-6) <= 1e-6, "exp_avg_sq wd=%g", wds[w]);
    }
    /* the first AdamW step moves every parameter with nonzero gradient by ~lr (bias
     * correction makes m̂/√v̂ = sign(g)); a missing bias correction would fail here */
    real p[5], m[5], v[5];
    memcpy(p, P0, sizeof p);
    memset(m, 0, sizeof m);
    memset(v, 0, sizeof v);
    vpd_adamw_update(p, GRADS[0], m, v, 5, 0.01, 0.9, 0.999, 1e-8, 0.0, 1);
    for (int i = 0; i < 5; i++)
        CHECK(fabs((double)(P0[i] - p[i]) - 0.01 * (GRADS[0][i] > 0 ? 1 : -1)) < 1e-6, "first step %d", i);
}

static void test_clip_vs_torch(void) {
    real a[3] = {3, -4, 1}, b[2] = {2, 0.5f};
    vpd_grad_range r[2] = {{a, 3}, {b, 2}};
    CHECK(fabs(vpd_grad_sumsq(r, 2) - 30.25) < 1e-12, "sumsq");
    double n = vpd_clip_grad_norm(r, 2, 1.5);
    /* torch: clip norm 5.5, a.grad [0.8181817531585693, -1.0909090042114258, 0.27272725105285645],
     * b.grad [0.5454545021057129, 0.13636362552642822] */
    const real ta[3] = {0.8181817531585693f, -1.0909090042114258f, 0.27272725105285645f};
    const real tb[2] = {0.5454545021057129f, 0.13636362552642822f};
    CHECK(n == 5.5, "norm before clipping %.9g", n);
    double ea = tu_max_rel_err(a, ta, 3, 1e-3), eb = tu_max_rel_err(b, tb, 2, 1e-3);
    fprintf(stderr, "  clip vs torch: max rel err %.3e %.3e\n", ea, eb);
    CHECK(ea <= 1e-6 && eb <= 1e-6, "clipped grads %.3e %.3e", ea, eb);
    CHECK(fabs(vpd_grad_norm(r, 2) - 1.5) < 1e-5, "norm after clipping %.9g", vpd_grad_norm(r, 2));
    /* below the threshold nothing changes */
    real c[2] = {0.3f, 0.4f};
    vpd_grad_range rc = {c, 2};
    CHECK(fabs(vpd_clip_grad_norm(&rc, 1, 1.0) - 0.5) < 1e-7 && c[0] == 0.3f && c[1] == 0.4f, "no clip below max");
    CHECK(vpd_clip_coef(0.5, 1.0) == 1.0 && fabs(vpd_clip_coef(9.0, 1.0) - 1.0 / (9.0 + 1e-6)) < 1e-15, "coef");
    /* many small values: the double accumulator keeps the sum exact where float would not */
    static real big[1 << 20];
    for (size_t i = 0; i < (1u << 20); i++) big[i] = 1e-3f;
    vpd_grad_range rb = {big, 1u << 20};
    double s = vpd_grad_sumsq(&rb, 1), want = (double)(1u << 20) * (double)1e-3f * (double)1e-3f;
    CHECK(fabs(s - want) / want < 1e-9, "double accumulation %.12g vs %.12g", s, want);
}

#define NEAR(a, b) (fabs((a) - (b)) <= 1e-12 * (1 + fabs(b)))

static void test_schedule_values(void) {
    /* cosine to 0 over 10 steps, no warmup: warmup 0, decay 10, p = step/9 */
    vpd_schedule cos0 = {1e-3, VPD_SCHED_COSINE, 0.0, 0.0};
    CHECK(NEAR(vpd_schedule_value(&cos0, 0, 10), 1e-3), "cos step 0");
    CHECK(NEAR(vpd_schedule_value(&cos0, 3, 10), 7.5e-4), "cos step 3: ½(1+cos π/3) = 0.75 → %.12g",
          vpd_schedule_value(&cos0, 3, 10));
    CHECK(fabs(vpd_schedule_value(&cos0, 9, 10)) < 1e-18, "cos step 9 = 0");
    /* the extra last iteration (step = steps) has p = 10/9: ½(1 − cos(π/9)) = 0.0301536896 */
    CHECK(fabs(vpd_schedule_value(&cos0, 10, 10) - 1e-3 * 0.030153689607045842) < 1e-15, "cos step 10 %.12g",
          vpd_schedule_value(&cos0, 10, 10));
    /* linear to half with 20% warmup over 10 steps: warmup 2, decay 8, p = (step−2)/7 */
    vpd_schedule lin = {2.0, VPD_SCHED_LINEAR, 0.2, 0.5};
    CHECK(NEAR(vpd_schedule_value(&lin, 0, 10), 0.0), "warmup step 0");
    CHECK(NEAR(vpd_schedule_value(&lin, 1, 10), 1.0), "warmup step 1 = 2·1/2");
    CHECK(NEAR(vpd_schedule_value(&lin, 2, 10), 2.0), "decay start");
    CHECK(NEAR(vpd_schedule_value(&lin, 5, 10), 11.0 / 7.0), "step 5: 2(½ + ½·4/7) = 11/7 → %.12g",
          vpd_schedule_value(&lin, 5, 10));
    CHECK(NEAR(vpd_schedule_value(&lin, 9, 10), 1.0), "step 9 = f·start");
    /* cosine to 10%: the decay ends at f·start */
    vpd_schedule cosf = {5e-5, VPD_SCHED_COSINE, 0.0, 0.1};
    CHECK(NEAR(vpd_schedule_value(&cosf, 399999, 400000), 5e-6), "cos to 0.1");
    CHECK(NEAR(vpd_schedule_value(&cosf, 200000, 400000), 5e-5 * (0.1 + 0.9 * 0.5 * (1 + cos(3.14159265358979323846 * 200000.0 / 399999.0)))),
          "cos midpoint");
    /* decay <= 1: warmup 9 of 10 steps, then the start value */
    vpd_schedule late = {3.0, VPD_SCHED_COSINE, 0.9, 0.0};
    CHECK(NEAR(vpd_schedule_value(&late, 4, 10), 3.0 * 4 / 9), "late warmup");
    CHECK(NEAR(vpd_schedule_value(&late, 9, 10), 3.0) && NEAR(vpd_schedule_value(&late, 10, 10), 3.0), "decay <= 1");
    /* warmup = int(steps·pct) truncates the double product: 100·0.29 = 28.999999999999996 → 28 */
    vpd_schedule w = {1.0, VPD_SCHED_CONSTANT, 0.29, 1.0};
    CHECK(NEAR(vpd_schedule_value(&w, 27, 100), 27.0 / 28.0), "warmup 28: step 27 %.12g", vpd_schedule_value(&w, 27, 100));
    CHECK(NEAR(vpd_schedule_value(&w, 28, 100), 1.0), "warmup done at 28");
    /* the paper's PPGD lr: constant 0.01 with warmup_pct 0.025 over 400k steps: warmup 10000 */
    vpd_schedule pp = {0.01, VPD_SCHED_CONSTANT, 0.025, 1.0};
    CHECK(NEAR(vpd_schedule_value(&pp, 5000, 400000), 0.005) && NEAR(vpd_schedule_value(&pp, 10000, 400000), 0.01),
          "ppgd warmup");
    vpd_schedule k = vpd_schedule_constant(0.1);
    CHECK(NEAR(vpd_schedule_value(&k, 7, 8), 0.1) && !strcmp(vpd_sched_fn_name(k.fn_type), "constant"), "constant");
}

static vpd_config *parse(const char *text) {
    vpd_config *c = NULL;
    CHECK(vpd_config_parse(text, strlen(text), "s.yaml", &c) == VPD_OK, "parse: %s", vpd_last_error());
    return c;
}

static void test_schedule_config(void) {
    vpd_schedule s;
    vpd_config *c = parse("lr_schedule:\n  start_val: 1e-3\n  fn_type: cosine\n  warmup_pct: 0.0\n  final_val_frac: 0.0\n");
    CHECK(c && vpd_schedule_from_config(c, "lr", &s) == VPD_OK && s.start_val == 1e-3 && s.fn_type == VPD_SCHED_COSINE &&
              s.warmup_pct == 0 && s.final_val_frac == 0, "current format: %s", vpd_last_error());
    CHECK(c && vpd_config_check_unused(c, NULL) == VPD_OK, "all schedule keys consumed");
    vpd_config_free(c);
    /* defaults: constant, warmup 0, final 1 */
    c = parse("components_optimizer:\n  lr_schedule: {start_val: 5e-5}\n");
    CHECK(c && vpd_schedule_from_config(vpd_config_find(c, "components_optimizer"), NULL, &s) == VPD_OK &&
              s.fn_type == VPD_SCHED_CONSTANT && s.warmup_pct == 0 && s.final_val_frac == 1, "defaults");
    vpd_config_free(c);
    /* spd's older flat keys: lr, lr_schedule (a string), lr_warmup_pct */
    c = parse("lr: 2e-3\nlr_schedule: cosine\nlr_warmup_pct: 0.1\n");
    CHECK(c && vpd_schedule_from_config(c, "lr", &s) == VPD_OK && s.start_val == 2e-3 && s.fn_type == VPD_SCHED_COSINE &&
              s.warmup_pct == 0.1 && s.final_val_frac == 0.0, "old cosine decays to 0: %s", vpd_last_error());
    CHECK(c && vpd_config_check_unused(c, NULL) == VPD_OK, "old keys consumed");
    vpd_config_free(c);
    c = parse("lr: 1e-3\n");
    CHECK(c && vpd_schedule_from_config(c, "lr", &s) == VPD_OK && s.fn_type == VPD_SCHED_CONSTANT &&
              s.final_val_frac == 1.0, "old constant");
    vpd_config_free(c);
    c = parse("lr: 1e-3\nlr_schedule: linear\n");
    CHECK(c && vpd_schedule_from_config(c, "lr", &s) == VPD_OK && s.fn_type == VPD_SCHED_LINEAR &&
              s.final_val_frac == 1.0, "old linear keeps final 1 (spd migration)");
    vpd_config_free(c);
    /* sign PGD optimizer: step_size */
    c = parse("optimizer:\n  type: sign\n  step_size: 0.1\n");
    CHECK(c && vpd_schedule_from_config(vpd_config_find(c, "optimizer"), "step_size", &s) == VPD_OK &&
              s.start_val == 0.1 && s.fn_type == VPD_SCHED_CONSTANT, "step_size");
    vpd_config_free(c);
    /* errors */
    c = parse("lr_schedule:\n  start_val: 1e-3\n  final_val_frac: 0.5\n");
    CHECK_MSG(vpd_schedule_from_config(c, "lr", &s), "s.yaml:1: key 'lr_schedule': a constant schedule requires "
                                                     "final_val_frac == 1.0, got 0.5 (use fn_type linear or cosine to decay)");
    vpd_config_free(c);
    c = parse("lr_schedule:\n  start_val: 1e-3\n  fn_type: cosin\n");
    CHECK_MSG(vpd_schedule_from_config(c, "lr", &s),
              "s.yaml:3: key 'lr_schedule.fn_type': expected one of 'constant', 'linear', 'cosine', got 'cosin'");
    vpd_config_free(c);
    c = parse("lr_schedule:\n  start_val: 0\n");
    CHECK_MSG(vpd_schedule_from_config(c, "lr", &s), "s.yaml:2: key 'lr_schedule.start_val': expected a positive number, got '0'");
    vpd_config_free(c);
    c = parse("lr_schedule:\n  start_val: 1\n  warmup_pct: 1.5\n");
    CHECK_MSG(vpd_schedule_from_config(c, "lr", &s), "s.yaml:3: key 'lr_schedule.warmup_pct': expected a number in [0, 1], got '1.5'");
    vpd_config_free(c);
    c = parse("lr_schedule:\n  fn_type: cosine\n");
    CHECK_MSG(vpd_schedule_from_config(c, "lr", &s), "s.yaml:1: missing required key 'lr_schedule.start_val'");
    vpd_config_free(c);
    c = parse("steps: 3\n");
    CHECK_MSG(vpd_schedule_from_config(c, "lr", &s), "s.yaml: missing required key 'lr_schedule' (or the older 'lr')");
    vpd_config_free(c);
    c = parse("pd:\n  steps: 3\n");
    CHECK_MSG(vpd_schedule_from_config(vpd_config_find(c, "pd"), NULL, &s), "s.yaml:1: missing required key 'pd.lr_schedule'");
    vpd_config_free(c);
    c = parse("lr: 1e-3\nlr_schedule:\n  start_val: 1e-3\n");
    CHECK_MSG(vpd_schedule_from_config(c, "lr", &s),
              "s.yaml:1: key 'lr': give either 'lr' (older format) or an lr_schedule mapping, not both");
    vpd_config_free(c);
    c = parse("lr_schedule: 3\n");
    CHECK_MSG(vpd_schedule_from_config(c, "lr", &s),
              "s.yaml:1: key 'lr_schedule': expected a schedule mapping {start_val, fn_type, warmup_pct, final_val_frac}");
    vpd_config_free(c);
}

int main(void) {
    test_adamw_vs_torch();
    test_clip_vs_torch();
    test_schedule_values();
    test_schedule_config();
    TEST_REPORT();
}
