/* Warmup/decay schedules for learning rates and other scheduled values
 * (VPD_METHOD.md §5 "Schedules"; spd utils/general_utils.py get_scheduled_value and
 * configs.py ScheduleConfig / migrate_to_lr_schedule_config), and their config readers. */
#include <math.h>
#include <string.h>

#include "vpd/optim.h"

#define VPD_PI 3.14159265358979323846 /* M_PI is not in strict C11 */

static const char *const SCHED_NAMES[] = {"constant", "linear", "cosine", NULL};

const char *vpd_sched_fn_name(vpd_sched_fn f) {
    return (f >= VPD_SCHED_CONSTANT && f <= VPD_SCHED_COSINE) ? SCHED_NAMES[f] : "?";
}

vpd_schedule vpd_schedule_constant(double value) {
    return (vpd_schedule){value, VPD_SCHED_CONSTANT, 0.0, 1.0};
}

double vpd_schedule_value(const vpd_schedule *s, int64_t step, int64_t total_steps) {
    VPD_ASSERT(total_steps > 0 && step >= 0 && step <= total_steps, "schedule step %lld of %lld",
               (long long)step, (long long)total_steps);
    /* int(total_steps * warmup_pct) in Python: a double product truncated */
    const int64_t warmup = (int64_t)((double)total_steps * s->warmup_pct);
    const int64_t decay = total_steps - warmup;
    if (step < warmup) return s->start_val * ((double)step / (double)warmup);
    if (decay <= 1) return s->start_val; /* nothing to decay over */
    const double p = (double)(step - warmup) / (double)(decay - 1);
    const double f = s->final_val_frac;
    switch (s->fn_type) {
    case VPD_SCHED_CONSTANT: return s->start_val;
    case VPD_SCHED_LINEAR: return s->start_val * (f + (1 - f) * (1 - p));
    case VPD_SCHED_COSINE: return s->start_val * (f + (1 - f) * 0.5 * (1 + cos(VPD_PI * p)));
    }
    return s->start_val;
}

static vpd_status check_constant(vpd_config *node, const vpd_schedule *s) {
    if (s->fn_type == VPD_SCHED_CONSTANT && s->final_val_frac != 1.0)
        return vpd_config_error(node, "a constant schedule requires final_val_frac == 1.0, got %g "
                                      "(use fn_type linear or cosine to decay)", s->final_val_frac);
    return VPD_OK;
}

vpd_status vpd_schedule_parse(vpd_config *map, vpd_schedule *out) {
    if (!map || map->kind != VPD_CONFIG_MAP) {
        if (map) return vpd_config_error(map, "expected a schedule mapping {start_val, fn_type, warmup_pct, final_val_frac}");
        return vpd_error(VPD_ERR_CONFIG, "missing schedule");
    }
    vpd_schedule s;
    int fn;
    VPD_TRY(vpd_config_require(map, "start_val"));
    VPD_TRY(vpd_config_get_positive_double(map, "start_val", 0, &s.start_val));
    VPD_TRY(vpd_config_get_enum(map, "fn_type", SCHED_NAMES, VPD_SCHED_CONSTANT, &fn));
    s.fn_type = (vpd_sched_fn)fn;
    VPD_TRY(vpd_config_get_double(map, "warmup_pct", 0.0, 0.0, 1.0, &s.warmup_pct));
    VPD_TRY(vpd_config_get_double(map, "final_val_frac", 1.0, 0.0, INFINITY, &s.final_val_frac));
    VPD_TRY(check_constant(map, &s));
    *out = s;
    return VPD_OK;
}

vpd_status vpd_schedule_from_config(vpd_config *parent, const char *legacy_key, vpd_schedule *out) {
    vpd_config *sched = vpd_config_child(parent, "lr_schedule");
    vpd_config *legacy = legacy_key ? vpd_config_child(parent, legacy_key) : NULL;
    if (!legacy) {
        if (!sched) {
            char p[512];
            vpd_config_path(parent, p, sizeof p);
            if (legacy_key)
                return vpd_error(VPD_ERR_CONFIG, "%s: missing required key '%s%slr_schedule' (or the older '%s')",
                                 parent->file, p, p[0] ? "." : "", legacy_key);
            return vpd_config_require(parent, "lr_schedule");
        }
        return vpd_schedule_parse(sched, out);
    }
    /* older format: `lr` (+ `lr_schedule: cosine`, `lr_warmup_pct`) */
    if (sched && sched->kind != VPD_CONFIG_SCALAR)
        return vpd_config_error(legacy, "give either '%s' (older format) or an lr_schedule mapping, not both",
                                legacy_key);
    vpd_schedule s;
    int fn;
    VPD_TRY(vpd_config_get_positive_double(legacy, NULL, 0, &s.start_val));
    VPD_TRY(vpd_config_get_enum(parent, "lr_schedule", SCHED_NAMES, VPD_SCHED_CONSTANT, &fn));
    s.fn_type = (vpd_sched_fn)fn;
    VPD_TRY(vpd_config_get_double(parent, "lr_warmup_pct", 0.0, 0.0, 1.0, &s.warmup_pct));
    /* old cosine decayed to 0, everything else stayed at start (spd's migration) */
    s.final_val_frac = s.fn_type == VPD_SCHED_COSINE ? 0.0 : 1.0;
    *out = s;
    return VPD_OK;
}
