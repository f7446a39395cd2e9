#define _POSIX_C_SOURCE 200809L
/* Config tree (src/io/config.c): loading spd-style YAML, dotted / [index] / [ClassName]
 * lookup, typed getters and their exact error messages with line numbers, the
 * unknown-key check with suggestions and ignore patterns, --set overrides, and the
 * emit → parse round trip. */
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "vpd/config.h"

/* An abridged spd TMS 5-2 config (spd dev: spd/experiments/tms/tms_5-2_config.yaml).
 * Line numbers matter: the tests below quote them. */
static const char TMS[] =
    "# TMS 5-2\n"                                     /*  1 */
    "wandb_project: spd\n"                            /*  2 */
    "wandb_run_name: null\n"                          /*  3 */
    "wandb_run_name_prefix: \"\"\n"                   /*  4 */
    "seed: 0\n"                                       /*  5 */
    "n_mask_samples: 1\n"                             /*  6 */
    "ci_config:\n"                                    /*  7 */
    "  mode: layerwise\n"                             /*  8 */
    "  fn_type: mlp\n"                                /*  9 */
    "  hidden_dims: [16]\n"                           /* 10 */
    "sigmoid_type: \"leaky_hard\"\n"                  /* 11 */
    "module_info:\n"                                  /* 12 */
    "  - module_pattern: \"linear1\"\n"               /* 13 */
    "    C: 20\n"                                     /* 14 */
    "  - module_pattern: \"linear2\"\n"               /* 15 */
    "    C: 20\n"                                     /* 16 */
    "use_delta_component: true\n"                     /* 17 */
    "loss_metric_configs:\n"                          /* 18 */
    "  - classname: \"ImportanceMinimalityLoss\"\n"   /* 19 */
    "    coeff: 3e-3\n"                               /* 20 */
    "    pnorm: 1.0\n"                                /* 21 */
    "    beta: 0\n"                                   /* 22 */
    "  - classname: \"StochasticReconLoss\"\n"        /* 23 */
    "    coeff: 1.0\n"                                /* 24 */
    "output_loss_type: mse\n"                         /* 25 */
    "batch_size: 4096\n"                              /* 26 */
    "steps: 10_000\n"                                 /* 27 */
    "lr_schedule:\n"                                  /* 28 */
    "  start_val: 1e-3\n"                             /* 29 */
    "  fn_type: cosine\n"                             /* 30 */
    "  warmup_pct: 0.0\n"                             /* 31 */
    "  final_val_frac: 0.0\n"                         /* 32 */
    "save_freq: null\n"                               /* 33 */
    "pretrained_model_path: \"wandb:goodfire/spd-pre-Sep-2025/runs/0hsp07o4\"\n" /* 34 */
    "task_config:\n"                                  /* 35 */
    "  task_name: tms\n"                              /* 36 */
    "  feature_probability: 0.05\n";                  /* 37 */

static vpd_config *parse(const char *text) {
    vpd_config *c = NULL;
    vpd_status st = vpd_config_parse(text, strlen(text), "t.yaml", &c);
    CHECK(st == VPD_OK, "parse failed: %s", vpd_last_error());
    return c;
}

/* Read every key of TMS the way a reader would. */
static void read_tms(vpd_config *c) {
    int seed, n, dims[4] = {0}, ndims = -1, C;
    int64_t steps;
    double coeff, start;
    bool delta;
    const char *s;
    CHECK(vpd_config_get_int(c, "seed", 7, 0, 1 << 30, &seed) == VPD_OK && seed == 0, "seed %d", seed);
    CHECK(vpd_config_get_int(c, "n_mask_samples", 0, 1, 1 << 30, &n) == VPD_OK && n == 1, "n_mask_samples");
    CHECK(vpd_config_get_int64(c, "steps", 0, 0, INT64_MAX, &steps) == VPD_OK && steps == 10000,
          "steps 10_000 -> %lld", (long long)steps);
    CHECK(vpd_config_get_string(c, "ci_config.mode", NULL, &s) == VPD_OK && !strcmp(s, "layerwise"), "mode");
    CHECK(vpd_config_get_string(c, "ci_config.fn_type", NULL, &s) == VPD_OK && !strcmp(s, "mlp"), "fn_type");
    CHECK(vpd_config_get_int_list(c, "ci_config.hidden_dims", 0, 1 << 30, dims, 4, &ndims) == VPD_OK &&
              ndims == 1 && dims[0] == 16, "hidden_dims n=%d", ndims);
    CHECK(vpd_config_get_string(c, "sigmoid_type", NULL, &s) == VPD_OK && !strcmp(s, "leaky_hard"), "sigmoid");
    for (int i = 0; i < 2; i++) {
        char p[64];
        snprintf(p, sizeof p, "module_info.%d.module_pattern", i);
        CHECK(vpd_config_get_string(c, p, NULL, &s) == VPD_OK && s[6] == '1' + i, "%s", p);
        snprintf(p, sizeof p, "module_info[%d].C", i); /* bracket index form */
        CHECK(vpd_config_get_int(c, p, 0, 1, 1 << 30, &C) == VPD_OK && C == 20, "%s", p);
    }
    CHECK(vpd_config_get_bool(c, "use_delta_component", false, &delta) == VPD_OK && delta, "delta");
    CHECK(vpd_config_get_string(c, "loss_metric_configs.0.classname", NULL, &s) == VPD_OK, "classname");
    CHECK(vpd_config_get_double(c, "loss_metric_configs.0.coeff", 0, 0, INFINITY, &coeff) == VPD_OK &&
              coeff == 3e-3, "IM coeff");
    CHECK(vpd_config_get_double(c, "loss_metric_configs[ImportanceMinimalityLoss].pnorm", 0, 0, INFINITY, &coeff) ==
              VPD_OK && coeff == 1.0, "pnorm");
    CHECK(vpd_config_get_double(c, "loss_metric_configs[ImportanceMinimalityLoss].beta", 0, 0, INFINITY, &coeff) ==
              VPD_OK && coeff == 0, "beta");
    CHECK(vpd_config_get_string(c, "loss_metric_configs.1.classname", NULL, &s) == VPD_OK, "classname 1");
    CHECK(vpd_config_get_double(c, "loss_metric_configs[StochasticReconLoss].coeff", 0, 0, INFINITY, &coeff) ==
              VPD_OK && coeff == 1.0, "SR coeff");
    CHECK(vpd_config_get_string(c, "output_loss_type", NULL, &s) == VPD_OK, "output_loss_type");
    CHECK(vpd_config_get_int(c, "batch_size", 0, 1, 1 << 30, &n) == VPD_OK && n == 4096, "batch");
    CHECK(vpd_config_get_positive_double(c, "lr_schedule.start_val", 1, &start) == VPD_OK && start == 1e-3, "lr");
    vpd_config_consume(c, "lr_schedule"); /* read elsewhere (optim) */
    CHECK(vpd_config_is_null(c, "save_freq"), "save_freq null");
    CHECK(vpd_config_get_string_or_null(c, "pretrained_model_path", "x", &s) == VPD_OK && s &&
              !strncmp(s, "wandb:", 6), "model path");
    CHECK(vpd_config_get_string(c, "task_config.task_name", NULL, &s) == VPD_OK, "task");
    CHECK(vpd_config_get_double(c, "task_config.feature_probability", 0, 0, 1, &coeff) == VPD_OK && coeff == 0.05,
          "feature_probability");
}

static void test_load_and_lookup(void) {
    vpd_config *c = parse(TMS);
    if (!c) return;
    CHECK(c->kind == VPD_CONFIG_MAP && c->n == 17, "top level: %d keys", c->n);
    vpd_config *n = vpd_config_find(c, "ci_config.hidden_dims");
    CHECK(n && n->kind == VPD_CONFIG_SEQ && n->line == 10 && !strcmp(n->file, "t.yaml"), "hidden_dims node line");
    n = vpd_config_find(c, "loss_metric_configs[StochasticReconLoss]");
    CHECK(n && n->kind == VPD_CONFIG_MAP && n->line == 23, "classname lookup line %d", n ? n->line : -1);
    CHECK(vpd_config_find_classname(vpd_config_find(c, "loss_metric_configs"), "ImportanceMinimalityLoss") ==
              vpd_config_find(c, "loss_metric_configs.0"), "find_classname");
    CHECK(!vpd_config_find(c, "loss_metric_configs[Nope]"), "absent classname");
    CHECK(!vpd_config_find(c, "loss_metric_configs.2"), "index past the end");
    CHECK(!vpd_config_find(c, "steps.x"), "path through a scalar");
    CHECK(!vpd_config_find(c, "a..b") && !vpd_config_find(c, "seed.") && !vpd_config_find(c, "x[") &&
              !vpd_config_find(c, "x[]") && !vpd_config_find(c, "x[1]y"), "malformed paths");
    CHECK(vpd_config_find(c, "") == c && vpd_config_find(c, NULL) == c, "empty path is the node itself");
    n = vpd_config_find(c, "loss_metric_configs[ImportanceMinimalityLoss].coeff");
    char p[256];
    CHECK(n && n->line == 20 && !strcmp(vpd_config_path(n, p, sizeof p), "loss_metric_configs[ImportanceMinimalityLoss].coeff"),
          "path %s", p);
    CHECK(!strcmp(vpd_config_path(vpd_config_find(c, "module_info.1.C"), p, sizeof p), "module_info.1.C"), "%s", p);
    /* relative lookups from a subsection */
    vpd_config *ci = vpd_config_find(c, "ci_config");
    const char *s;
    CHECK(vpd_config_get_string(ci, "fn_type", NULL, &s) == VPD_OK && !strcmp(s, "mlp"), "relative");
    int def;
    CHECK(vpd_config_get_int(c, "absent.key", 42, 0, 100, &def) == VPD_OK && def == 42, "default");
    CHECK(vpd_config_has(c, "lr_schedule.fn_type") && !vpd_config_has(c, "lr_schedule.nope"), "has");
    CHECK(vpd_config_require(c, "steps") == VPD_OK, "require present");
    CHECK_MSG(vpd_config_require(ci, "n_blocks"), "t.yaml:7: missing required key 'ci_config.n_blocks'");
    CHECK_MSG(vpd_config_require(c, "pd.steps"), "t.yaml: missing required key 'pd.steps'");
    read_tms(c);
    const char *ignore[] = {"wandb_*", NULL};
    CHECK(vpd_config_check_unused(c, ignore) == VPD_OK, "all keys read: %s", vpd_last_error());
    char list[256];
    CHECK(vpd_config_ignore(c, ignore, list, sizeof list) == 3 &&
              !strcmp(list, "wandb_project, wandb_run_name, wandb_run_name_prefix"), "ignored: %s", list);
    CHECK(vpd_config_check_unused(c, NULL) == VPD_OK, "after ignore: %s", vpd_last_error());
    vpd_config_free(c);
}

static void test_getter_errors(void) {
    static const char Y[] =
        "steps: abc\n"                  /* 1 */
        "batch: 0\n"                    /* 2 */
        "big: 3000000000\n"             /* 3 */
        "half: 2.5\n"                   /* 4 */
        "sci: 1e4\n"                    /* 5 */
        "quoted: \"5\"\n"               /* 6 */
        "warm: 1.5\n"                   /* 7 */
        "lr: 0\n"                       /* 8 */
        "inf: .inf\n"                   /* 9 */
        "flag: maybe\n"                 /* 10 */
        "name: null\n"                  /* 11 */
        "sect:\n"                       /* 12 */
        "  fn: cosin\n"                 /* 13 */
        "  dims: [16, -3]\n"            /* 14 */
        "  many: [1, 2, 3]\n"           /* 15 */
        "  notlist: 5\n"                /* 16 */
        "  neg: -7\n"                   /* 17 */
        "  strs: [a, null]\n"           /* 18 */
        "nulls: [~, Null, NULL, '']\n"  /* 19 */
        "yes: off\n";                   /* 20 */
    vpd_config *c = parse(Y);
    if (!c) return;
    int i;
    int64_t l;
    double d;
    bool b;
    const char *s;
    CHECK_MSG(vpd_config_get_int(c, "steps", 0, 1, INT32_MAX, &i),
              "t.yaml:1: key 'steps': expected a positive integer, got 'abc'");
    CHECK_MSG(vpd_config_get_int(c, "batch", 0, 1, INT32_MAX, &i),
              "t.yaml:2: key 'batch': expected a positive integer, got '0'");
    CHECK_MSG(vpd_config_get_int(c, "big", 0, INT32_MIN, INT32_MAX, &i),
              "t.yaml:3: key 'big': expected an integer, got '3000000000'");
    CHECK(vpd_config_get_int64(c, "big", 0, 0, INT64_MAX, &l) == VPD_OK && l == 3000000000LL, "int64 big");
    CHECK_MSG(vpd_config_get_int(c, "half", 0, 0, INT32_MAX, &i),
              "t.yaml:4: key 'half': expected a non-negative integer, got '2.5'");
    CHECK(vpd_config_get_int(c, "sci", 0, 0, INT32_MAX, &i) == VPD_OK && i == 10000, "1e4 as int");
    CHECK(vpd_config_get_int(c, "quoted", 0, 0, 10, &i) == VPD_OK && i == 5, "quoted int");
    CHECK_MSG(vpd_config_get_int(c, "quoted", 0, 6, 9, &i), "t.yaml:6: key 'quoted': expected an integer in [6, 9], got '5'");
    CHECK_MSG(vpd_config_get_double(c, "warm", 0, 0, 1, &d), "t.yaml:7: key 'warm': expected a number in [0, 1], got '1.5'");
    CHECK_MSG(vpd_config_get_positive_double(c, "lr", 1, &d), "t.yaml:8: key 'lr': expected a positive number, got '0'");
    CHECK_MSG(vpd_config_get_double(c, "inf", 0, -INFINITY, INFINITY, &d),
              "t.yaml:9: key 'inf': expected a finite number, got '.inf'");
    CHECK_MSG(vpd_config_get_double(c, "steps", 0, 0, INFINITY, &d),
              "t.yaml:1: key 'steps': expected a non-negative number, got 'abc'");
    CHECK_MSG(vpd_config_get_bool(c, "flag", false, &b), "t.yaml:10: key 'flag': expected true or false, got 'maybe'");
    CHECK(vpd_config_get_bool(c, "yes", true, &b) == VPD_OK && !b, "off is false");
    CHECK_MSG(vpd_config_get_string(c, "name", "d", &s), "t.yaml:11: key 'name': expected a string, got null");
    CHECK(vpd_config_get_string_or_null(c, "name", "d", &s) == VPD_OK && s == NULL, "string or null");
    CHECK_MSG(vpd_config_get_string(c, "sect", NULL, &s), "t.yaml:12: key 'sect': expected a string, got a mapping");
    CHECK_MSG(vpd_config_get_int(c, "sect.dims", 0, 0, INT32_MAX, &i),
              "t.yaml:14: key 'sect.dims': expected a non-negative integer, got a sequence");
    static const char *const fns[] = {"constant", "linear", "cosine", NULL};
    CHECK_MSG(vpd_config_get_enum(c, "sect.fn", fns, 0, &i),
              "t.yaml:13: key 'sect.fn': expected one of 'constant', 'linear', 'cosine', got 'cosin'");
    int dims[4];
    int nd = -1;
    CHECK_MSG(vpd_config_get_int_list(c, "sect.dims", 0, INT32_MAX, dims, 4, &nd),
              "t.yaml:14: key 'sect.dims.1': expected a non-negative integer, got '-3'");
    CHECK(nd == -1, "n untouched on error");
    CHECK_MSG(vpd_config_get_int_list(c, "sect.many", 0, INT32_MAX, dims, 2, &nd),
              "t.yaml:15: key 'sect.many': expected at most 2 elements, got 3");
    CHECK_MSG(vpd_config_get_int_list(c, "sect.notlist", 0, INT32_MAX, dims, 2, &nd),
              "t.yaml:16: key 'sect.notlist': expected a list of non-negative integers, got '5'");
    CHECK(vpd_config_get_int_list(c, "sect.absent", 0, INT32_MAX, dims, 2, &nd) == VPD_OK && nd == -1,
          "absent list leaves defaults");
    CHECK(vpd_config_get_int(c, "sect.neg", 0, INT32_MIN, INT32_MAX, &i) == VPD_OK && i == -7, "negative");
    double dl[4];
    CHECK(vpd_config_get_double_list(c, "sect.many", 0, 10, dl, 4, &nd) == VPD_OK && nd == 3 && dl[2] == 3.0,
          "double list");
    double tup[2] = {0.5, 0.25};
    CHECK_MSG(vpd_config_get_double_tuple(c, "sect.many", 0, 10, tup, 2), "t.yaml:15: key 'sect.many': expected at most 2 elements, got 3");
    double tup3[3];
    CHECK(vpd_config_get_double_tuple(c, "sect.many", 0, 10, tup3, 3) == VPD_OK && tup3[0] == 1.0 && tup3[2] == 3.0, "tuple of 3");
    double tup4[4];
    CHECK_MSG(vpd_config_get_double_tuple(c, "sect.many", 0, 10, tup4, 4), "t.yaml:15: key 'sect.many': expected 4 values, got 3");
    CHECK(vpd_config_get_double_tuple(c, "sect.absent", 0, 10, tup, 2) == VPD_OK && tup[0] == 0.5 && tup[1] == 0.25,
          "absent tuple keeps the defaults");
    const char *sl[4];
    CHECK_MSG(vpd_config_get_string_list(c, "sect.strs", sl, 4, &nd), "t.yaml:18: key 'sect.strs.1': expected a string, got null");
    vpd_config *nulls = vpd_config_find(c, "nulls");
    CHECK(nulls && nulls->n == 4, "nulls");
    if (nulls && nulls->n == 4)
        CHECK(vpd_config_node_is_null(nulls->items[0]) && vpd_config_node_is_null(nulls->items[1]) &&
                  vpd_config_node_is_null(nulls->items[2]) && !vpd_config_node_is_null(nulls->items[3]),
              "null spellings; quoted '' is a string");
    /* vpd_config_error for readers' own checks */
    CHECK_MSG(vpd_config_error(vpd_config_find(c, "sect.fn"), "unknown thing"), "t.yaml:13: key 'sect.fn': unknown thing");
    vpd_config_free(c);
}

static void test_unused(void) {
    static const char Y[] =
        "seed: 1\n"                                   /* 1 */
        "loss_metric_configs:\n"                      /* 2 */
        "  - classname: ImportanceMinimalityLoss\n"   /* 3 */
        "    coeff: 1e-3\n"                           /* 4 */
        "    pnrom: 2\n"                              /* 5 */
        "steps: 3\n"                                  /* 6 */
        "stpes: 10\n"                                 /* 7 */
        "task_config:\n"                              /* 8 */
        "  task_name: tms\n"                          /* 9 */
        "wandb_project: x\n";                         /* 10 */
    vpd_config *c = parse(Y);
    if (!c) return;
    int i;
    double d;
    const char *s;
    vpd_config_get_int(c, "seed", 0, 0, 100, &i);
    vpd_config_get_int(c, "steps", 0, 0, 100, &i);
    vpd_config_get_int(c, "batch_size", 5, 0, 100, &i); /* absent: asked, default used */
    vpd_config *lm = vpd_config_find(c, "loss_metric_configs");
    for (int k = 0; lm && k < lm->n; k++) {
        vpd_config_get_string(lm->items[k], "classname", NULL, &s);
        vpd_config_get_double(lm->items[k], "coeff", 0, 0, INFINITY, &d);
        vpd_config_get_double(lm->items[k], "pnorm", 1, 0, INFINITY, &d);
    }
    const char *ignore[] = {"wandb_*", NULL};
    CHECK_MSG(vpd_config_check_unused(c, ignore),
              "t.yaml:5: unknown key 'loss_metric_configs[ImportanceMinimalityLoss].pnrom' (did you mean 'pnorm'?)");
    vpd_config_consume(c, "loss_metric_configs.0.pnrom");
    CHECK_MSG(vpd_config_check_unused(c, ignore), "t.yaml:7: unknown key 'stpes' (did you mean 'steps'?)");
    vpd_config_consume(c, "stpes");
    /* a section nobody looked into is reported as a whole */
    CHECK_MSG(vpd_config_check_unused(c, ignore), "t.yaml:8: unknown key 'task_config'");
    vpd_config_get_string(c, "task_config.task_name", NULL, &s);
    CHECK_MSG(vpd_config_check_unused(c, NULL), "t.yaml:10: unknown key 'wandb_project'");
    CHECK(vpd_config_check_unused(c, ignore) == VPD_OK, "clean: %s", vpd_last_error());
    CHECK(vpd_config_note_ignored(c, ignore) == 1, "note_ignored count");
    CHECK(vpd_config_check_unused(c, NULL) == VPD_OK, "ignored keys are consumed");
    /* no suggestion for a key far from anything asked */
    vpd_config *c2 = parse("seed: 1\nzzzzzz_qqq: 2\n");
    if (c2) {
        vpd_config_get_int(c2, "seed", 0, 0, 100, &i);
        CHECK_MSG(vpd_config_check_unused(c2, NULL), "t.yaml:2: unknown key 'zzzzzz_qqq'");
        vpd_config_free(c2);
    }
    vpd_config_free(c);
}

static void test_parse_errors(void) {
    vpd_config *c = NULL;
    const char *dup = "a: 1\nb:\n  x: 1\n  y: 2\n  x: 3\n";
    CHECK_MSG(vpd_config_parse(dup, strlen(dup), "t.yaml", &c), "t.yaml:5: duplicate key 'b.x' (first at line 3)");
    const char *bad = "a: 1\nb: [1, 2\nc: 3\n";
    CHECK(vpd_config_parse(bad, strlen(bad), "t.yaml", &c) == VPD_ERR_CONFIG &&
              !strncmp(vpd_last_error(), "t.yaml:3: YAML syntax error: ", 29), "syntax: %s", vpd_last_error());
    const char *list = "- a\n- b\n";
    CHECK_MSG(vpd_config_parse(list, strlen(list), "t.yaml", &c),
              "t.yaml:1: the top level of a config must be a mapping of keys, got a sequence");
    const char *two = "a: 1\n---\nb: 2\n";
    CHECK_MSG(vpd_config_parse(two, strlen(two), "t.yaml", &c), "t.yaml: expected one YAML document, found more ('---')");
    CHECK(vpd_config_parse("", 0, "t.yaml", &c) == VPD_OK && c && c->kind == VPD_CONFIG_MAP && c->n == 0, "empty file");
    vpd_config_free(c);
    c = NULL;
    const char *anchors = "base: &b {x: 1, y: 2}\nother: *b\n";
    CHECK(vpd_config_parse(anchors, strlen(anchors), "t.yaml", &c) == VPD_OK, "aliases: %s", vpd_last_error());
    int x = 0;
    CHECK(c && vpd_config_get_int(c, "other.y", 0, 0, 9, &x) == VPD_OK && x == 2, "alias copy");
    vpd_config_free(c);
    c = NULL;
    CHECK(vpd_config_load("/nonexistent/dir/cfg.yaml", &c) == VPD_ERR_IO &&
              strstr(vpd_last_error(), "/nonexistent/dir/cfg.yaml: cannot open config"), "missing file: %s",
          vpd_last_error());
}

static void test_set(void) {
    vpd_config *c = parse(TMS);
    if (!c) return;
    int i, dims[4], nd = 0;
    double d;
    const char *s;
    CHECK(vpd_config_set(c, "seed=3") == VPD_OK && vpd_config_get_int(c, "seed", 0, 0, 9, &i) == VPD_OK && i == 3,
          "seed=3");
    CHECK(vpd_config_set(c, "loss_metric_configs.0.coeff=1e-3") == VPD_OK &&
              vpd_config_get_double(c, "loss_metric_configs.0.coeff", 0, 0, 1, &d) == VPD_OK && d == 1e-3, "coeff");
    CHECK(vpd_config_set(c, "loss_metric_configs[ImportanceMinimalityLoss].coeff=1e-4") == VPD_OK &&
              vpd_config_get_double(c, "loss_metric_configs.0.coeff", 0, 0, 1, &d) == VPD_OK && d == 1e-4,
          "coeff by classname");
    CHECK(vpd_config_set(c, "ci_config.hidden_dims=[16,8]") == VPD_OK &&
              vpd_config_get_int_list(c, "ci_config.hidden_dims", 0, 99, dims, 4, &nd) == VPD_OK && nd == 2 &&
              dims[0] == 16 && dims[1] == 8, "hidden_dims list");
    CHECK(vpd_config_set(c, "pretrained_model_path=null") == VPD_OK &&
              vpd_config_get_string_or_null(c, "pretrained_model_path", "x", &s) == VPD_OK && s == NULL, "null");
    CHECK(vpd_config_set(c, "wandb_project=") == VPD_OK && vpd_config_is_null(c, "wandb_project"), "empty = null");
    CHECK(vpd_config_set(c, "sigmoid_type='5'") == VPD_OK && vpd_config_find(c, "sigmoid_type")->quoted, "quoted");
    /* new keys and sections */
    CHECK(vpd_config_set(c, "parallel.dp.size=4") == VPD_OK && vpd_config_get_int(c, "parallel.dp.size", 0, 1, 9, &i) ==
              VPD_OK && i == 4, "create maps");
    CHECK(vpd_config_set(c, "save_freq.every=5") == VPD_OK && vpd_config_find(c, "save_freq")->kind == VPD_CONFIG_MAP,
          "null replaced by a mapping");
    CHECK(vpd_config_set(c, "loss_metric_configs[FaithfulnessLoss].coeff=1e7") == VPD_OK &&
              vpd_config_find(c, "loss_metric_configs")->n == 3 &&
              vpd_config_get_double(c, "loss_metric_configs.2.coeff", 0, 0, INFINITY, &d) == VPD_OK && d == 1e7 &&
              vpd_config_get_string(c, "loss_metric_configs.2.classname", NULL, &s) == VPD_OK &&
              !strcmp(s, "FaithfulnessLoss"), "append by classname");
    CHECK(vpd_config_set(c, "module_info.2={module_pattern: linear3, C: 7}") == VPD_OK &&
              vpd_config_get_int(c, "module_info.2.C", 0, 0, 99, &i) == VPD_OK && i == 7, "append by index");
    CHECK(vpd_config_set(c, "loss_metric_configs[StochasticReconLoss]={coeff: 2}") == VPD_OK &&
              vpd_config_get_double(c, "loss_metric_configs[StochasticReconLoss].coeff", 0, 0, 9, &d) == VPD_OK &&
              d == 2 && vpd_config_find(c, "loss_metric_configs[StochasticReconLoss].classname"),
          "replace element keeps addressability");
    /* errors */
    CHECK_MSG(vpd_config_set(c, "module_info.9.C=1"),
              "--set 'module_info.9.C=1': index 9 out of range: 'module_info' has 3 elements");
    CHECK_MSG(vpd_config_set(c, "steps.x=1"), "--set 'steps.x=1': 'steps' is a scalar, cannot apply 'x'");
    CHECK_MSG(vpd_config_set(c, "seed"), "--set 'seed': expected dotted.key=value");
    CHECK_MSG(vpd_config_set(c, "=3"), "--set '=3': expected dotted.key=value");
    CHECK_MSG(vpd_config_set(c, "a..b=3"), "--set 'a..b=3': malformed key (use a.b.c, a.0.b or a[ClassName].b)");
    CHECK(vpd_config_set(c, "x=[1,") == VPD_ERR_CONFIG && !strncmp(vpd_last_error(), "--set 'x=[1,': YAML syntax error", 32),
          "bad value: %s", vpd_last_error());
    CHECK(vpd_config_set(c, "seed=abc") == VPD_OK, "set a bad value");
    CHECK_MSG(vpd_config_get_int(c, "seed", 0, 0, INT32_MAX, &i), "--set: key 'seed': expected a non-negative integer, got 'abc'");
    vpd_config_free(c);
}

static void test_emit_roundtrip(void) {
    vpd_config *c = parse(TMS);
    if (!c) return;
    vpd_config_set(c, "ci_config.hidden_dims=[16,8]");
    vpd_config_set(c, "pretrained_model_path=null");
    vpd_config_set(c, "extra.empty_map={}");
    vpd_config_set(c, "extra.empty_seq=[]");
    vpd_config_set(c, "extra.str='null'");
    vpd_config_set(c, "extra.colon='a: b # c'");
    vpd_config_set(c, "extra.nested=[{a: 1}, [2, 3]]");
    char *text = NULL;
    size_t len = 0;
    CHECK(vpd_config_emit(c, &text, &len) == VPD_OK && text && len == strlen(text), "emit: %s", vpd_last_error());
    if (text) {
        CHECK(strstr(text, "hidden_dims: [16, 8]\n") != NULL, "flow list:\n%s", text);
        CHECK(strstr(text, "sigmoid_type: \"leaky_hard\"\n") != NULL, "quoted stays quoted");
        CHECK(strstr(text, "steps: 10_000\n") != NULL, "scalar text kept");
        vpd_config *back = NULL;
        CHECK(vpd_config_parse(text, len, "back.yaml", &back) == VPD_OK, "reparse: %s", vpd_last_error());
        CHECK(vpd_config_equal(c, back), "round trip differs:\n%s", text);
        const char *s = NULL;
        CHECK(back && vpd_config_get_string(back, "extra.str", NULL, &s) == VPD_OK && !strcmp(s, "null"),
              "quoted 'null' stays a string");
        CHECK(back && vpd_config_is_null(back, "pretrained_model_path"), "null stays null");
        CHECK(back && vpd_config_find(back, "extra.empty_map")->kind == VPD_CONFIG_MAP, "empty map");
        vpd_config_free(back);
        free(text);
    }
    /* equality can fail */
    vpd_config *d = parse(TMS);
    CHECK(!vpd_config_equal(c, d), "modified tree differs from the original");
    vpd_config_free(d);
    /* through a file */
    CHECK(vpd_config_write(c, "test_config_out.yaml") == VPD_OK, "write: %s", vpd_last_error());
    vpd_config *f = NULL;
    CHECK(vpd_config_load("test_config_out.yaml", &f) == VPD_OK && vpd_config_equal(c, f), "file round trip");
    CHECK(f && vpd_config_find(f, "ci_config.fn_type")->line > 0 && !strcmp(f->file, "test_config_out.yaml"),
          "loaded lines");
    CHECK(access("test_config_out.yaml.tmp", F_OK) != 0, "no temporary left");
    vpd_config_free(f);
    remove("test_config_out.yaml");
    vpd_config_free(c);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Issue 17: 100k keys took 105 s (a duplicate scan per key) and a deep file 89 s before
 * the nesting error (libyaml's scanner is quadratic in the flow depth). Both must be
 * linear / fail at the level that crosses the limit. Bounds are ~20x the ASan time. */
static void test_scaling(void) {
    enum { NK = 100000, ND = 200000 };
    char *text = malloc((size_t)NK * 24 + 4 * (size_t)ND + 16);
    if (!text) return;
    size_t k = 0;
    for (int i = 0; i < NK; i++) k += (size_t)sprintf(text + k, "key_%d: %d\n", i, i);
    vpd_config *c = NULL;
    double t0 = now_s();
    vpd_status st = vpd_config_parse(text, k, "big.yaml", &c);
    double t_parse = now_s() - t0;
    CHECK(st == VPD_OK && c && c->n == NK, "100k keys: %s", vpd_last_error());
    CHECK(t_parse < 10.0, "100k keys parsed in %.2f s (must be linear)", t_parse);
    int v = 0;
    CHECK(vpd_config_get_int(c, "key_99999", 0, 0, NK, &v) == VPD_OK && v == 99999, "last key");
    t0 = now_s();
    const char *ign[] = {"key_*", NULL};
    vpd_config_note_ignored(c, ign);
    CHECK(now_s() - t0 < 10.0, "ignore over 100k keys: %.2f s", now_s() - t0);
    vpd_config_free(c);
    /* a duplicate at the end of 100k keys is still found, with both lines */
    k += (size_t)sprintf(text + k, "key_5: 1\n");
    CHECK_MSG(vpd_config_parse(text, k, "big.yaml", &c), "big.yaml:100001: duplicate key 'key_5' (first at line 6)");
    /* deep nesting: flow, block sequences, block mappings */
    for (int form = 0; form < 3; form++) {
        k = 0;
        if (form == 0) {
            k += (size_t)sprintf(text, "a: ");
            for (int i = 0; i < ND; i++) text[k++] = '[';
            for (int i = 0; i < ND; i++) text[k++] = ']';
        } else if (form == 1) {
            k += (size_t)sprintf(text, "a:\n");
            for (int i = 0; i < ND; i++) { text[k++] = '-'; text[k++] = ' '; }
            text[k++] = '1';
        } else {
            for (int i = 0; i < 2000; i++) { /* 2000 levels of indentation: 2 MB */
                for (int j = 0; j < i; j++) text[k++] = ' ';
                k += (size_t)sprintf(text + k, "k:\n");
            }
        }
        text[k] = 0;
        t0 = now_s();
        st = vpd_config_parse(text, k, "deep.yaml", &c);
        double t = now_s() - t0;
        CHECK(st == VPD_ERR_CONFIG && strstr(vpd_last_error(), "nesting deeper than 64 levels"), "deep form %d: %s",
              form, vpd_last_error());
        CHECK(t < 2.0, "deep form %d refused after %.2f s (must fail fast)", form, t);
    }
    free(text);
    /* aliases: recursive, undefined, and a bomb */
    const char *rec = "a: &x\n  b: *x\n";
    CHECK(vpd_config_parse(rec, strlen(rec), "t.yaml", &c) == VPD_ERR_CONFIG, "recursive alias accepted");
    const char *undef = "a: *nope\n";
    CHECK(vpd_config_parse(undef, strlen(undef), "t.yaml", &c) == VPD_ERR_CONFIG && strstr(vpd_last_error(), "nope"),
          "undefined alias: %s", vpd_last_error());
    const char *bomb = "a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                       "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                       "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
                       "g: [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n";
    CHECK(vpd_config_parse(bomb, strlen(bomb), "t.yaml", &c) == VPD_ERR_CONFIG &&
              strstr(vpd_last_error(), "more than 1000000 nodes"), "alias bomb: %s", vpd_last_error());
    const char *anch = "base: &b {x: 1, y: [2, 3]}\nother: *b\nk: &kk name\n*kk : 4\n";
    CHECK(vpd_config_parse(anch, strlen(anch), "t.yaml", &c) == VPD_OK, "anchors: %s", vpd_last_error());
    CHECK(c && vpd_config_get_int(c, "other.y.1", 0, 0, 9, &v) == VPD_OK && v == 3 &&
              vpd_config_get_int(c, "name", 0, 0, 9, &v) == VPD_OK && v == 4, "alias copy and alias key");
    vpd_config_free(c);
}

/* Issue 17: a --set with invalid UTF-8 was written into config.yaml and the run could not
 * be resumed; the config module refuses it, for the key and for the value. */
static void test_set_utf8(void) {
    vpd_config *c = parse(TMS);
    if (!c) return;
    CHECK_MSG(vpd_config_set(c, "se\xff" "ed=3"), "--set: the key has a byte that is not valid UTF-8 (0xFF at byte 2 "
              "of the argument); config keys and values must be UTF-8 text");
    CHECK_MSG(vpd_config_set(c, "seed=\xc3\x28"), "--set: the value has a byte that is not valid UTF-8 (0xC3 at byte 5 "
              "of the argument); config keys and values must be UTF-8 text");
    CHECK(vpd_config_set(c, "new.k\xed\xa0\x80=1") == VPD_ERR_ARG, "surrogate in key accepted");
    CHECK(vpd_config_set(c, "new.k\xc0\xaf=1") == VPD_ERR_ARG, "overlong in key accepted");
    CHECK(vpd_config_set(c, "new.k\x01=1") == VPD_ERR_ARG, "control char in key accepted");
    CHECK(vpd_config_set(c, "wandb_run_name=caf\xc3\xa9 \xe6\x97\xa5\xf0\x9f\x98\x80") == VPD_OK, "valid UTF-8 refused: %s",
          vpd_last_error());
    /* what was set round-trips through the emitter and the loader */
    char *y = NULL;
    size_t yl = 0;
    vpd_config *d = NULL;
    CHECK(vpd_config_emit(c, &y, &yl) == VPD_OK && vpd_config_parse(y, yl, "e.yaml", &d) == VPD_OK, "re-parse: %s", vpd_last_error());
    const char *s = NULL;
    CHECK(d && vpd_config_get_string(d, "wandb_run_name", NULL, &s) == VPD_OK && s &&
              !strcmp(s, "caf\xc3\xa9 \xe6\x97\xa5\xf0\x9f\x98\x80"), "round trip");
    free(y);
    vpd_config_free(d);
    vpd_config_free(c);
}

int main(void) {
    test_load_and_lookup();
    test_getter_errors();
    test_unused();
    test_parse_errors();
    test_set();
    test_emit_roundtrip();
    test_scaling();
    test_set_utf8();
    TEST_REPORT();
}
