/* vpd config: a schema-agnostic YAML tree (libyaml) with typed, validating getters.
 *
 * vpd reads the reference implementation's YAML configs as they are: spd's flat keys
 * (`steps`, `loss_metric_configs: [{classname, coeff, ...}]`, ...) and param-decomp's
 * nested sections (`pd:`, `logging`, `target`, `data`, `runtime`). This layer knows
 * nothing about either schema: it loads a file into a tree of map / sequence / scalar
 * nodes, each remembering its source file and line, and the readers in the rest of vpd
 * ask for keys by dotted path with a type, a range and a default. Every getter marks the
 * node it read as consumed, so after reading, vpd_config_check_unused names the first key
 * nobody asked for (a typo such as `stpes`) with its line and the nearest key that was
 * asked for in the same mapping (spd's `extra="forbid"`).
 *
 * Paths: segments separated by '.'; in a mapping a segment is a key, in a sequence it is
 * an index (`loss_metric_configs.0.coeff`). A segment may carry `[X]`: `[3]` indexes a
 * sequence, `[ClassName]` picks the first element of a sequence of mappings whose
 * `classname` is ClassName (`loss_metric_configs[ImportanceMinimalityLoss].coeff`).
 *
 * Error messages have the form
 *     config.yaml:12: key 'steps': expected a positive integer, got 'abc'
 * (nodes created by vpd_config_set report "--set" as their file and no line).
 *
 * Lifetime: strings returned by getters point into the tree and live until the node is
 * replaced by vpd_config_set or the tree is freed; apply overrides before reading. */
#ifndef VPD_CONFIG_H
#define VPD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vpd/core.h"

typedef enum { VPD_CONFIG_MAP = 0, VPD_CONFIG_SEQ = 1, VPD_CONFIG_SCALAR = 2 } vpd_config_kind;

typedef struct vpd_config vpd_config;
struct vpd_config {
    vpd_config_kind kind;
    const char *file;      /* source file name (owned by the root), or "--set" */
    int line;              /* 1-based line of the key (map entries) or of the node; 0 = none */
    char *key;             /* key in the parent mapping, NULL otherwise */
    char *value;           /* scalar text ("" for an empty plain scalar), NULL for containers */
    bool quoted;           /* scalar was quoted or a block literal: never null */
    bool consumed;         /* read by a getter (containers: accepted as a whole) */
    bool touched;          /* a lookup went through this container */
    vpd_config *parent;
    vpd_config **items;    /* children in document order (map entries carry their key) */
    int n, cap;
    char **asked;          /* maps: keys looked up here, for "did you mean" suggestions */
    int n_asked, cap_asked;
    char *owned_file;      /* root only: storage behind `file` */
};

/* ---- loading and freeing ---------------------------------------------------------
 * Allocates the tree (free with vpd_config_free). The top level must be a mapping; an
 * empty document gives an empty mapping. Duplicate keys are an error. */
vpd_status vpd_config_load(const char *path, vpd_config **out);
/* Same from a string; `name` is used as the file name in messages. */
vpd_status vpd_config_parse(const char *text, size_t len, const char *name, vpd_config **out);
void vpd_config_free(vpd_config *root);

/* ---- navigation -------------------------------------------------------------------
 * vpd_config_find: the node at `path` below `node`, or NULL when absent (or the path is
 * malformed). Marks the containers it passes as touched but consumes nothing. */
vpd_config *vpd_config_find(vpd_config *node, const char *path);
/* First element of sequence `seq` that is a mapping with scalar `classname` == name. */
vpd_config *vpd_config_find_classname(vpd_config *seq, const char *classname);
/* Mapping entry by key (no path parsing), NULL if absent; records the key as asked. */
vpd_config *vpd_config_child(vpd_config *map, const char *key);
bool vpd_config_has(vpd_config *node, const char *path);
/* Present and a YAML null (~, null, empty plain scalar). Consumes it when true. */
bool vpd_config_is_null(vpd_config *node, const char *path);
/* True for an unquoted null scalar. */
bool vpd_config_node_is_null(const vpd_config *n);
/* VPD_ERR_CONFIG "missing required key 'a.b'" unless present. */
vpd_status vpd_config_require(vpd_config *node, const char *path);
/* Mark the node at `path` and its whole subtree as read (accepted without inspection). */
void vpd_config_consume(vpd_config *node, const char *path);
/* Dotted path of a node from the root ("loss_metric_configs[StochasticReconLoss].coeff"
 * when the element's classname is unique in its sequence, else ".N"). Returns buf. */
const char *vpd_config_path(const vpd_config *n, char *buf, size_t size);
/* Record "file:line: key 'path': <message>" and return VPD_ERR_CONFIG (n may be NULL). For readers
 * that validate beyond types (unknown classname, inconsistent values). */
vpd_status vpd_config_error(const vpd_config *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- typed getters -----------------------------------------------------------------
 * When `path` is absent, *out = def and the call succeeds. When present the value must
 * have the type and lie in the range (bounds inclusive), else VPD_ERR_CONFIG with a
 * message naming file, line, key, what was expected and what was found. Integers accept
 * YAML's `10_000` and exactly integral floats (`1e4`); numbers may be quoted (as
 * pydantic's lax mode accepts "5"); doubles must be finite. */
vpd_status vpd_config_get_int(vpd_config *node, const char *path, int def, int lo, int hi, int *out);
vpd_status vpd_config_get_int64(vpd_config *node, const char *path, int64_t def, int64_t lo, int64_t hi,
                                int64_t *out);
vpd_status vpd_config_get_double(vpd_config *node, const char *path, double def, double lo, double hi,
                                 double *out);
/* strictly > 0 (pydantic PositiveFloat) */
vpd_status vpd_config_get_positive_double(vpd_config *node, const char *path, double def, double *out);
/* true/false/yes/no/on/off, any case */
vpd_status vpd_config_get_bool(vpd_config *node, const char *path, bool def, bool *out);
/* Any scalar except null; a mapping or sequence is an error. */
vpd_status vpd_config_get_string(vpd_config *node, const char *path, const char *def, const char **out);
/* As above, but null gives *out = NULL. */
vpd_status vpd_config_get_string_or_null(vpd_config *node, const char *path, const char *def,
                                         const char **out);
/* One of `choices` (NULL-terminated); *out = index. Error lists the choices. */
vpd_status vpd_config_get_enum(vpd_config *node, const char *path, const char *const *choices, int def,
                               int *out);
/* Sequences of scalars into a caller buffer of `max` entries. When absent, out and *n are
 * left as they are (the caller's defaults). A flow or block sequence; an empty list is
 * fine; more than `max` elements is an error. Element range checks as above. */
vpd_status vpd_config_get_int_list(vpd_config *node, const char *path, int lo, int hi, int *out, int max,
                                   int *n);
vpd_status vpd_config_get_double_list(vpd_config *node, const char *path, double lo, double hi, double *out,
                                      int max, int *n);
/* A list of exactly n doubles (e.g. `betas: [0.9, 0.99]`); absent keeps out[] (the defaults). */
vpd_status vpd_config_get_double_tuple(vpd_config *node, const char *path, double lo, double hi, double *out, int n);
vpd_status vpd_config_get_string_list(vpd_config *node, const char *path, const char **out, int max, int *n);

/* ---- unknown keys --------------------------------------------------------------------
 * `ignore` is a NULL-terminated list of fnmatch patterns matched against full dotted
 * paths (e.g. "wandb_*", "eval_metric_configs"); NULL means none.
 * vpd_config_check_unused: VPD_ERR_CONFIG naming the first key no getter consumed and
 * no pattern matches: "config.yaml:7: unknown key 'stpes' (did you mean 'steps'?)".
 * A container nobody looked into is reported as a whole. */
vpd_status vpd_config_check_unused(vpd_config *root, const char *const *ignore);
/* Mark every unconsumed key matching `ignore` as consumed; write their paths,
 * comma-separated, into list (may be NULL). Returns how many. */
int vpd_config_ignore(vpd_config *root, const char *const *ignore, char *list, size_t list_size);
/* vpd_config_ignore, then one info line "config: ignoring keys not used by vpd: a, b". */
int vpd_config_note_ignored(vpd_config *root, const char *const *ignore);

/* ---- overrides ------------------------------------------------------------------------
 * "dotted.path=value". The value is parsed as YAML (scalar or flow collection):
 * `seed=3`, `loss_metric_configs.0.coeff=1e-3`, `ci_config.hidden_dims=[16,8]`,
 * `pretrained_model_path=null`, `loss_metric_configs[ImportanceMinimalityLoss].coeff=1e-4`.
 * Missing mapping keys are created (intermediate mappings too); a sequence index may be
 * one past the end (appends). Replaces the old node (and frees it). */
vpd_status vpd_config_set(vpd_config *root, const char *assignment);

/* ---- writing ----------------------------------------------------------------------------
 * Emit the tree as block YAML (sequences of scalars in flow style, quoted scalars stay
 * quoted, null as `null`); parsing the text back gives the same tree.
 * vpd_config_emit allocates *text (free with free()). vpd_config_write writes `path`
 * through a temporary file and rename. */
vpd_status vpd_config_emit(const vpd_config *root, char **text, size_t *len);
vpd_status vpd_config_write(const vpd_config *root, const char *path);
/* Structural equality (kinds, keys in order, scalar text, null spellings equal). */
bool vpd_config_equal(const vpd_config *a, const vpd_config *b);

#endif
