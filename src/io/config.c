/* YAML config tree: loading through libyaml's document API, dotted-path lookup (with
 * `[index]` and `[ClassName]` segments), typed validating getters that mark what they
 * read, the unknown-key check with "did you mean", `--set` overrides parsed as YAML, and
 * emitting the tree back as YAML for the run directory. Schema knowledge lives in the
 * readers (trainer, losses, models); this file only knows YAML. See include/vpd/config.h. */
#define _POSIX_C_SOURCE 200809L
#include "vpd/config.h"

#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

/* Guards against alias bombs and self-referencing anchors: real configs are a few
 * levels deep and a few thousand nodes. */
#define MAX_DEPTH 64
#define MAX_NODES 1000000

static const char SET_FILE[] = "--set";

/* ---- node basics ------------------------------------------------------------------- */

static vpd_config *node_new(vpd_config_kind kind, const char *file, int line) {
    vpd_config *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->kind = kind;
    n->file = file;
    n->line = line;
    return n;
}

static void node_free(vpd_config *n) {
    if (!n) return;
    for (int i = 0; i < n->n; i++) node_free(n->items[i]);
    for (int i = 0; i < n->n_asked; i++) free(n->asked[i]);
    free(n->items);
    free(n->asked);
    free(n->key);
    free(n->value);
    free(n->owned_file);
    free(n);
}

void vpd_config_free(vpd_config *root) { node_free(root); }

static bool node_append(vpd_config *parent, vpd_config *child) {
    if (parent->n == parent->cap) {
        int cap = parent->cap ? 2 * parent->cap : 8;
        vpd_config **items = realloc(parent->items, (size_t)cap * sizeof *items);
        if (!items) return false;
        parent->items = items;
        parent->cap = cap;
    }
    parent->items[parent->n++] = child;
    child->parent = parent;
    return true;
}

static int node_index(const vpd_config *n) {
    if (!n->parent) return -1;
    for (int i = 0; i < n->parent->n; i++)
        if (n->parent->items[i] == n) return i;
    return -1;
}

bool vpd_config_node_is_null(const vpd_config *n) {
    if (!n || n->kind != VPD_CONFIG_SCALAR || n->quoted) return false;
    const char *v = n->value;
    return !v[0] || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

/* ---- paths and messages -------------------------------------------------------------- */

static const char *scalar_classname(const vpd_config *n) {
    if (!n || n->kind != VPD_CONFIG_MAP) return NULL;
    for (int i = 0; i < n->n; i++)
        if (!strcmp(n->items[i]->key, "classname") && n->items[i]->kind == VPD_CONFIG_SCALAR)
            return n->items[i]->value;
    return NULL;
}

/* Appends the path of n to buf at *off (recursing to the root first). */
static void path_rec(const vpd_config *n, char *buf, size_t size, size_t *off) {
    if (!n->parent) return;
    path_rec(n->parent, buf, size, off);
    char seg[256];
    if (n->parent->kind == VPD_CONFIG_MAP) {
        snprintf(seg, sizeof seg, "%s%s", *off ? "." : "", n->key);
    } else {
        /* sequence element: by classname when that is unique, else by index */
        const char *cls = scalar_classname(n);
        int same = 0;
        if (cls)
            for (int i = 0; i < n->parent->n; i++) {
                const char *c = scalar_classname(n->parent->items[i]);
                if (c && !strcmp(c, cls)) same++;
            }
        if (cls && same == 1) snprintf(seg, sizeof seg, "[%s]", cls);
        else snprintf(seg, sizeof seg, "%s%d", *off ? "." : "", node_index(n));
    }
    size_t len = strlen(seg);
    if (*off + len >= size) len = size - 1 - *off;
    memcpy(buf + *off, seg, len);
    *off += len;
    buf[*off] = '\0';
}

const char *vpd_config_path(const vpd_config *n, char *buf, size_t size) {
    size_t off = 0;
    if (size == 0) return buf;
    buf[0] = '\0';
    if (n) path_rec(n, buf, size, &off);
    return buf;
}

static void loc_str(const vpd_config *n, char *buf, size_t size) {
    if (n->line > 0) snprintf(buf, size, "%s:%d", n->file ? n->file : "?", n->line);
    else snprintf(buf, size, "%s", n->file ? n->file : "?");
}

vpd_status vpd_config_error(const vpd_config *n, const char *fmt, ...) {
    char msg[1024], loc[512], path[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!n) return vpd_error(VPD_ERR_CONFIG, "config: %s", msg); /* tolerate a failed find */
    loc_str(n, loc, sizeof loc);
    if (!n->parent) return vpd_error(VPD_ERR_CONFIG, "%s: %s", loc, msg);
    return vpd_error(VPD_ERR_CONFIG, "%s: key '%s': %s", loc, vpd_config_path(n, path, sizeof path), msg);
}

/* "'abc'", "null", "a mapping", "a sequence" for "got ..." */
static const char *got_str(const vpd_config *n, char *buf, size_t size) {
    if (n->kind == VPD_CONFIG_MAP) return "a mapping";
    if (n->kind == VPD_CONFIG_SEQ) return "a sequence";
    if (vpd_config_node_is_null(n)) return "null";
    if (strlen(n->value) > 60) snprintf(buf, size, "'%.57s...'", n->value);
    else snprintf(buf, size, "'%s'", n->value);
    return buf;
}

static vpd_status type_error(const vpd_config *n, const char *expected) {
    char got[80];
    return vpd_config_error(n, "expected %s, got %s", expected, got_str(n, got, sizeof got));
}

/* ---- loading -------------------------------------------------------------------------- */

/* The tree is built from libyaml's event stream (not its document API): nesting is
 * refused at the event that crosses MAX_DEPTH, before libyaml has scanned the rest (its
 * scanner is quadratic in the flow depth: 40k '[' took 5 s, so the old loader spent 89 s
 * on a deep file before saying no), and each mapping keeps a hash of its keys so the
 * duplicate check is linear in the number of keys (it was a scan per key: 100k keys, 105 s). */

typedef struct {
    vpd_config *node;
    int depth;
    /* maps: the key read, waiting for its value; and a hash of keys -> item index + 1 */
    char *key;
    int key_line;
    uint32_t *slots;
    size_t cap;
} load_frame;

typedef struct {
    char *name;
    vpd_config *node;
} load_anchor;

typedef struct {
    const char *file;
    bool keep_lines; /* false for --set values: they have no line in a file */
    long count;
    load_frame stack[MAX_DEPTH + 2];
    int top; /* frames in use */
    load_anchor *anchors;
    int n_anchors, cap_anchors;
} load_ctx;

static uint64_t key_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h ^ (h >> 31);
}

/* Index of `key` among the items of the frame's map, or -1; with insert, adds item
 * `insert_index` under that key when absent. false when out of memory. */
static bool frame_key(load_frame *f, const char *key, int *found, int insert_index) {
    vpd_config *m = f->node;
    if ((size_t)m->n * 2 + 2 > f->cap) {
        size_t nc = f->cap ? 2 * f->cap : 16;
        while (nc < (size_t)m->n * 2 + 2) nc *= 2;
        uint32_t *s = calloc(nc, sizeof *s);
        if (!s) return false;
        for (int i = 0; i < m->n; i++) {
            size_t h = (size_t)key_hash(m->items[i]->key) & (nc - 1);
            while (s[h]) h = (h + 1) & (nc - 1);
            s[h] = (uint32_t)i + 1;
        }
        free(f->slots);
        f->slots = s;
        f->cap = nc;
    }
    size_t mask = f->cap - 1, h = (size_t)key_hash(key) & mask;
    for (; f->slots[h]; h = (h + 1) & mask)
        if (!strcmp(m->items[f->slots[h] - 1]->key, key)) {
            *found = (int)f->slots[h] - 1;
            return true;
        }
    *found = -1;
    if (insert_index >= 0) f->slots[h] = (uint32_t)insert_index + 1;
    return true;
}

static bool on_stack(const load_ctx *c, const vpd_config *n) {
    for (int i = 0; i < c->top; i++)
        if (c->stack[i].node == n) return true;
    return false;
}

/* deep copy of an anchored node for an alias, counted against the node budget */
static vpd_status copy_tree(load_ctx *c, const vpd_config *src, int depth, int line, vpd_config **out) {
    *out = NULL;
    if (depth > MAX_DEPTH)
        return vpd_error(VPD_ERR_CONFIG, "%s:%d: nesting deeper than %d levels (through an alias)", c->file, line,
                         MAX_DEPTH);
    if (++c->count > MAX_NODES)
        return vpd_error(VPD_ERR_CONFIG, "%s: more than %d nodes (alias expansion?)", c->file, MAX_NODES);
    vpd_config *n = node_new(src->kind, c->file, src->line);
    if (!n || (src->value && !(n->value = strdup(src->value)))) {
        node_free(n);
        return vpd_error(VPD_ERR_MEM, "%s: out of memory building the config tree", c->file);
    }
    n->quoted = src->quoted;
    for (int i = 0; i < src->n; i++) {
        vpd_config *k = NULL;
        vpd_status st = copy_tree(c, src->items[i], depth + 1, line, &k);
        if (st == VPD_OK && src->items[i]->key && !(k->key = strdup(src->items[i]->key)))
            st = vpd_error(VPD_ERR_MEM, "%s: out of memory building the config tree", c->file);
        if (st == VPD_OK && !node_append(n, k))
            st = vpd_error(VPD_ERR_MEM, "%s: out of memory building the config tree", c->file);
        if (st != VPD_OK) {
            node_free(k);
            node_free(n);
            return st;
        }
    }
    *out = n;
    return VPD_OK;
}

/* Attach a new node (built from a scalar/collection event or copied for an alias) where
 * the top frame expects a value; containers from events are pushed (copies are complete). *root receives the first node. */
static vpd_status attach(load_ctx *c, vpd_config *n, const char *anchor, bool push, vpd_config **root) {
    load_frame *f = c->top ? &c->stack[c->top - 1] : NULL;
    if (f) {
        if (f->node->kind == VPD_CONFIG_MAP) {
            int unused;
            n->key = f->key; /* ownership moves to the node */
            f->key = NULL;
            if (!node_append(f->node, n) || !frame_key(f, n->key, &unused, f->node->n - 1)) goto oom;
        } else if (!node_append(f->node, n)) {
            goto oom;
        }
    } else {
        *root = n;
    }
    if (anchor) {
        if (c->n_anchors == c->cap_anchors) {
            int nc = c->cap_anchors ? 2 * c->cap_anchors : 8;
            load_anchor *a = realloc(c->anchors, (size_t)nc * sizeof *a);
            if (!a) return vpd_error(VPD_ERR_MEM, "%s: out of memory building the config tree", c->file);
            c->anchors = a;
            c->cap_anchors = nc;
        }
        char *name = strdup(anchor);
        if (!name) return vpd_error(VPD_ERR_MEM, "%s: out of memory building the config tree", c->file);
        c->anchors[c->n_anchors].name = name;
        c->anchors[c->n_anchors++].node = n; /* a later anchor of the same name wins, as in YAML */
    }
    if (push && n->kind != VPD_CONFIG_SCALAR) {
        load_frame *g = &c->stack[c->top++];
        memset(g, 0, sizeof *g);
        g->node = n;
        g->depth = f ? f->depth + 1 : 0;
    }
    return VPD_OK;
oom:
    if (n->parent == NULL) node_free(n);
    return vpd_error(VPD_ERR_MEM, "%s: out of memory building the config tree", c->file);
}

static vpd_status yaml_syntax_error(yaml_parser_t *p, const char *file, bool with_line) {
    const char *what = p->problem ? p->problem : "malformed YAML";
    if (with_line)
        return vpd_error(VPD_ERR_CONFIG, "%s:%d: YAML syntax error: %s%s%s", file, (int)p->problem_mark.line + 1,
                         what, p->context ? " " : "", p->context ? p->context : "");
    return vpd_error(VPD_ERR_CONFIG, "%s: YAML syntax error: %s%s%s", file, what, p->context ? " " : "",
                     p->context ? p->context : "");
}

/* One event of the document: a key, a value, or the end of a collection. */
static vpd_status load_event(load_ctx *c, yaml_event_t *e, vpd_config **root) {
    load_frame *f = c->top ? &c->stack[c->top - 1] : NULL;
    int ev_line = (int)e->start_mark.line + 1;
    if (e->type == YAML_SEQUENCE_END_EVENT || e->type == YAML_MAPPING_END_EVENT) {
        free(f->key);
        free(f->slots);
        f->key = NULL;
        f->slots = NULL;
        c->top--;
        return VPD_OK;
    }
    /* a key of a mapping: a scalar (or an alias of one) */
    if (f && f->node->kind == VPD_CONFIG_MAP && !f->key) {
        int kline = c->keep_lines ? ev_line : 0;
        const char *kt = NULL;
        if (e->type == YAML_SCALAR_EVENT) {
            kt = (const char *)e->data.scalar.value;
            if (strlen(kt) != e->data.scalar.length)
                return vpd_error(VPD_ERR_CONFIG, "%s:%d: key contains a NUL character", c->file, kline);
        } else if (e->type == YAML_ALIAS_EVENT) {
            for (int i = c->n_anchors - 1; i >= 0 && !kt; i--)
                if (!strcmp(c->anchors[i].name, (const char *)e->data.alias.anchor) &&
                    c->anchors[i].node->kind == VPD_CONFIG_SCALAR)
                    kt = c->anchors[i].node->value;
        }
        if (!kt) return vpd_error(VPD_ERR_CONFIG, "%s:%d: mapping keys must be scalars", c->file, kline);
        int dup;
        if (!frame_key(f, kt, &dup, -1)) return vpd_error(VPD_ERR_MEM, "%s: out of memory", c->file);
        if (dup >= 0) {
            char path[512];
            vpd_config_path(f->node, path, sizeof path);
            return vpd_error(VPD_ERR_CONFIG, "%s:%d: duplicate key '%s%s%s' (first at line %d)", c->file, kline, path,
                             path[0] ? "." : "", kt, f->node->items[dup]->line);
        }
        if (!(f->key = strdup(kt))) return vpd_error(VPD_ERR_MEM, "%s: out of memory", c->file);
        f->key_line = kline;
        return VPD_OK;
    }
    /* a value: its line is its key's (map entries) or its own */
    int line = !c->keep_lines ? 0 : f && f->node->kind == VPD_CONFIG_MAP ? f->key_line : ev_line;
    int depth = f ? f->depth + 1 : 0;
    if (depth > MAX_DEPTH)
        return vpd_error(VPD_ERR_CONFIG, "%s:%d: nesting deeper than %d levels", c->file, line, MAX_DEPTH);
    if (e->type == YAML_ALIAS_EVENT) {
        const char *name = (const char *)e->data.alias.anchor;
        const vpd_config *src = NULL;
        for (int i = c->n_anchors - 1; i >= 0 && !src; i--)
            if (!strcmp(c->anchors[i].name, name)) src = c->anchors[i].node;
        if (!src) return vpd_error(VPD_ERR_CONFIG, "%s:%d: alias '*%s' names no anchor defined before it", c->file, line, name);
        if (on_stack(c, src))
            return vpd_error(VPD_ERR_CONFIG, "%s:%d: alias '*%s' refers to a node that contains it (recursive alias)",
                             c->file, line, name);
        vpd_config *n = NULL;
        VPD_TRY(copy_tree(c, src, depth, line, &n));
        n->line = line ? line : n->line;
        return attach(c, n, NULL, false, root);
    }
    if (++c->count > MAX_NODES)
        return vpd_error(VPD_ERR_CONFIG, "%s: more than %d nodes (alias expansion?)", c->file, MAX_NODES);
    vpd_config_kind kind = e->type == YAML_SCALAR_EVENT ? VPD_CONFIG_SCALAR
                           : e->type == YAML_SEQUENCE_START_EVENT ? VPD_CONFIG_SEQ : VPD_CONFIG_MAP;
    vpd_config *n = node_new(kind, c->file, line);
    if (!n) return vpd_error(VPD_ERR_MEM, "%s: out of memory building the config tree", c->file);
    const yaml_char_t *anchor = NULL;
    if (kind == VPD_CONFIG_SCALAR) {
        size_t len = e->data.scalar.length;
        anchor = e->data.scalar.anchor;
        if (strlen((const char *)e->data.scalar.value) != len) {
            node_free(n);
            return vpd_error(VPD_ERR_CONFIG, "%s:%d: scalar contains a NUL character", c->file, line);
        }
        if (!(n->value = malloc(len + 1))) {
            node_free(n);
            return vpd_error(VPD_ERR_MEM, "%s: out of memory building the config tree", c->file);
        }
        memcpy(n->value, e->data.scalar.value, len + 1);
        n->quoted = e->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
    } else {
        anchor = kind == VPD_CONFIG_SEQ ? e->data.sequence_start.anchor : e->data.mapping_start.anchor;
    }
    return attach(c, n, (const char *)anchor, true, root);
}

/* Parse one YAML document from text into a tree. An empty stream gives *out NULL (the
 * caller decides); a second document is an error (almost certainly a stray `---`). */
static vpd_status parse_text(const char *text, size_t len, const char *file, bool keep_lines, vpd_config **out) {
    *out = NULL;
    load_ctx *c = calloc(1, sizeof *c);
    yaml_parser_t parser;
    if (!c) return vpd_error(VPD_ERR_MEM, "%s: out of memory", file);
    if (!yaml_parser_initialize(&parser)) {
        free(c);
        return vpd_error(VPD_ERR_MEM, "%s: cannot initialise libyaml", file);
    }
    c->file = file;
    c->keep_lines = keep_lines;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    vpd_config *root = NULL;
    vpd_status st = VPD_OK;
    int docs = 0;
    for (bool done = false; !done && st == VPD_OK;) {
        yaml_event_t e;
        if (!yaml_parser_parse(&parser, &e)) {
            st = yaml_syntax_error(&parser, file, keep_lines);
            break;
        }
        switch (e.type) {
        case YAML_STREAM_END_EVENT: done = true; break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1) st = vpd_error(VPD_ERR_CONFIG, "%s: expected one YAML document, found more ('---')", file);
            break;
        case YAML_SCALAR_EVENT:
        case YAML_ALIAS_EVENT:
        case YAML_SEQUENCE_START_EVENT:
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_START_EVENT:
        case YAML_MAPPING_END_EVENT: st = load_event(c, &e, &root); break;
        default: break; /* stream start, document end */
        }
        yaml_event_delete(&e);
    }
    for (int i = 0; i < c->top; i++) {
        free(c->stack[i].key);
        free(c->stack[i].slots);
    }
    for (int i = 0; i < c->n_anchors; i++) free(c->anchors[i].name);
    free(c->anchors);
    free(c);
    yaml_parser_delete(&parser);
    if (st != VPD_OK) {
        node_free(root);
        return st;
    }
    *out = root;
    return VPD_OK;
}

vpd_status vpd_config_parse(const char *text, size_t len, const char *name, vpd_config **out) {
    *out = NULL;
    char *file = strdup(name ? name : "<config>");
    if (!file) return vpd_error(VPD_ERR_MEM, "out of memory");
    vpd_config *root = NULL;
    vpd_status st = parse_text(text, len, file, true, &root);
    if (st != VPD_OK) { free(file); return st; }
    if (!root) {
        root = node_new(VPD_CONFIG_MAP, file, 0);
        if (!root) { free(file); return vpd_error(VPD_ERR_MEM, "out of memory"); }
    }
    if (root->kind != VPD_CONFIG_MAP) {
        char got[80];
        st = vpd_error(VPD_ERR_CONFIG, "%s:%d: the top level of a config must be a mapping of keys, got %s", file,
                       root->line, got_str(root, got, sizeof got));
        node_free(root);
        free(file);
        return st;
    }
    root->owned_file = file;
    root->line = 0;
    *out = root;
    return VPD_OK;
}

vpd_status vpd_config_load(const char *path, vpd_config **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return vpd_error(VPD_ERR_IO, "%s: cannot open config: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (!buf) { fclose(f); return vpd_error(VPD_ERR_MEM, "%s: out of memory", path); }
    for (;;) {
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (len < cap) break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) { free(buf); fclose(f); return vpd_error(VPD_ERR_MEM, "%s: out of memory", path); }
        buf = nb;
        cap *= 2;
    }
    bool err = ferror(f);
    fclose(f);
    if (err) { free(buf); return vpd_error(VPD_ERR_IO, "%s: read error", path); }
    vpd_status st = vpd_config_parse(buf, len, path, out);
    free(buf);
    return st;
}

/* ---- path parsing and navigation ------------------------------------------------------ */

typedef enum { STEP_KEY, STEP_INDEX, STEP_CLASS } step_kind;
typedef struct {
    step_kind kind;
    const char *text; /* points into the caller's copy of the path */
} path_step;

#define MAX_STEPS 32

static bool all_digits(const char *s) {
    if (!*s) return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return false;
    return true;
}

/* Split a writable path copy into steps. Returns the count, -1 when malformed. */
static int split_path(char *p, path_step *steps) {
    int ns = 0;
    if (!*p) return 0;
    for (;;) {
        char *name = p;
        while (*p && *p != '.' && *p != '[') p++;
        char end = *p;
        *p = '\0';
        if (*name) {
            if (ns == MAX_STEPS) return -1;
            steps[ns++] = (path_step){STEP_KEY, name};
        } else if (end != '[') {
            return -1; /* empty segment: "a..b", ".a", "a." */
        }
        while (end == '[') {
            char *inner = ++p;
            while (*p && *p != ']') p++;
            if (*p != ']' || p == inner || ns == MAX_STEPS) return -1;
            *p++ = '\0';
            steps[ns++] = (path_step){all_digits(inner) ? STEP_INDEX : STEP_CLASS, inner};
            end = *p;
            if (end == '.' || end == '[') *p = '\0';
            else if (end) return -1;
        }
        if (!end) return ns;
        p++; /* past '.' */
        if (!*p) return -1;
    }
}

static void record_asked(vpd_config *map, const char *key) {
    for (int i = 0; i < map->n_asked; i++)
        if (!strcmp(map->asked[i], key)) return;
    if (map->n_asked == map->cap_asked) {
        int cap = map->cap_asked ? 2 * map->cap_asked : 8;
        char **a = realloc(map->asked, (size_t)cap * sizeof *a);
        if (!a) return; /* suggestions are best effort */
        map->asked = a;
        map->cap_asked = cap;
    }
    char *k = strdup(key);
    if (k) map->asked[map->n_asked++] = k;
}

vpd_config *vpd_config_child(vpd_config *map, const char *key) {
    if (!map || map->kind != VPD_CONFIG_MAP) return NULL;
    map->touched = true;
    record_asked(map, key);
    for (int i = 0; i < map->n; i++)
        if (!strcmp(map->items[i]->key, key)) return map->items[i];
    return NULL;
}

vpd_config *vpd_config_find_classname(vpd_config *seq, const char *classname) {
    if (!seq || seq->kind != VPD_CONFIG_SEQ) return NULL;
    seq->touched = true;
    for (int i = 0; i < seq->n; i++) {
        const char *c = scalar_classname(seq->items[i]);
        if (c && !strcmp(c, classname)) {
            seq->items[i]->touched = true;
            record_asked(seq->items[i], "classname");
            return seq->items[i];
        }
    }
    return NULL;
}

/* One step from `n`; NULL when absent or not applicable. */
static vpd_config *step_once(vpd_config *n, const path_step *s) {
    if (!n) return NULL;
    switch (s->kind) {
    case STEP_KEY:
        if (n->kind == VPD_CONFIG_MAP) return vpd_config_child(n, s->text);
        if (n->kind == VPD_CONFIG_SEQ && all_digits(s->text)) goto index;
        return NULL;
    case STEP_INDEX:
        if (n->kind != VPD_CONFIG_SEQ) return NULL;
    index: {
        n->touched = true;
        char *end;
        errno = 0;
        long i = strtol(s->text, &end, 10);
        if (errno || i < 0 || i >= n->n) return NULL;
        return n->items[i];
    }
    case STEP_CLASS:
        return vpd_config_find_classname(n, s->text);
    }
    return NULL;
}

vpd_config *vpd_config_find(vpd_config *node, const char *path) {
    if (!node) return NULL;
    if (!path || !*path) return node;
    char buf[512];
    if (strlen(path) >= sizeof buf) return NULL;
    strcpy(buf, path);
    path_step steps[MAX_STEPS];
    int ns = split_path(buf, steps);
    if (ns < 0) return NULL;
    for (int i = 0; i < ns && node; i++) node = step_once(node, &steps[i]);
    return node;
}

bool vpd_config_has(vpd_config *node, const char *path) { return vpd_config_find(node, path) != NULL; }

bool vpd_config_is_null(vpd_config *node, const char *path) {
    vpd_config *n = vpd_config_find(node, path);
    if (!vpd_config_node_is_null(n)) return false;
    n->consumed = true;
    return true;
}

static const char *full_path(vpd_config *base, const char *path, char *buf, size_t size) {
    char p[512];
    vpd_config_path(base, p, sizeof p);
    if (!path || !*path) snprintf(buf, size, "%s", p);
    else snprintf(buf, size, "%s%s%s", p, (p[0] && path[0] != '[') ? "." : "", path);
    return buf;
}

vpd_status vpd_config_require(vpd_config *node, const char *path) {
    if (vpd_config_find(node, path)) return VPD_OK;
    if (!node) return vpd_error(VPD_ERR_CONFIG, "config: missing required key '%s'", path ? path : "");
    char fp[768], loc[512];
    loc_str(node, loc, sizeof loc);
    return vpd_error(VPD_ERR_CONFIG, "%s: missing required key '%s'", loc, full_path(node, path, fp, sizeof fp));
}

void vpd_config_consume(vpd_config *node, const char *path) {
    vpd_config *n = vpd_config_find(node, path);
    if (n) n->consumed = true;
}

/* ---- scalar parsing --------------------------------------------------------------------- */

/* Copy without YAML 1.1 digit separators ('_'); false when too long. */
static bool strip_underscores(const char *s, char *out, size_t size) {
    size_t j = 0;
    for (; *s; s++) {
        if (*s == '_') continue;
        if (j + 1 >= size) return false;
        out[j++] = *s;
    }
    out[j] = '\0';
    return true;
}

/* A decimal or scientific number: strtod would also take "inf", "nan" and hex. */
static bool parse_double_text(const char *s, double *out) {
    char buf[128];
    if (!strip_underscores(s, buf, sizeof buf) || !buf[0]) return false;
    bool digit = false;
    for (const char *c = buf; *c; c++) {
        if (*c >= '0' && *c <= '9') digit = true;
        else if (!strchr(".eE+-", *c)) return false;
    }
    if (!digit) return false;
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (*end || errno == ERANGE) return false;
    *out = v;
    return true;
}

static bool yaml_inf_or_nan(const char *s) {
    if (*s == '+' || *s == '-') s++;
    return !strcmp(s, ".inf") || !strcmp(s, ".Inf") || !strcmp(s, ".INF") || !strcmp(s, ".nan") ||
           !strcmp(s, ".NaN") || !strcmp(s, ".NAN");
}

/* Integers: decimal with '_' separators, or an exactly integral decimal/scientific float. */
static bool parse_int64_text(const char *s, int64_t *out) {
    char buf[128];
    if (!strip_underscores(s, buf, sizeof buf) || !buf[0]) return false;
    const char *c = buf;
    if (*c == '+' || *c == '-') c++;
    if (all_digits(c)) {
        char *end;
        errno = 0;
        long long v = strtoll(buf, &end, 10);
        if (*end || errno == ERANGE) return false;
        *out = (int64_t)v;
        return true;
    }
    double d;
    if (!parse_double_text(s, &d) || d != floor(d) || fabs(d) > 9.007199254740992e15) return false;
    *out = (int64_t)d;
    return true;
}

static void int_expectation(int64_t lo, int64_t hi, int64_t type_min, int64_t type_max, char *buf, size_t size) {
    if (lo == 1 && hi == type_max) snprintf(buf, size, "a positive integer");
    else if (lo == 0 && hi == type_max) snprintf(buf, size, "a non-negative integer");
    else if (lo == type_min && hi == type_max) snprintf(buf, size, "an integer");
    else if (hi == type_max) snprintf(buf, size, "an integer >= %lld", (long long)lo);
    else if (lo == type_min) snprintf(buf, size, "an integer <= %lld", (long long)hi);
    else snprintf(buf, size, "an integer in [%lld, %lld]", (long long)lo, (long long)hi);
}

static void double_expectation(double lo, double hi, bool positive, char *buf, size_t size) {
    if (positive) snprintf(buf, size, "a positive number");
    else if (lo == 0 && isinf(hi)) snprintf(buf, size, "a non-negative number");
    else if (isinf(lo) && isinf(hi)) snprintf(buf, size, "a number");
    else if (isinf(hi)) snprintf(buf, size, "a number >= %g", lo);
    else if (isinf(lo)) snprintf(buf, size, "a number <= %g", hi);
    else snprintf(buf, size, "a number in [%g, %g]", lo, hi);
}

static vpd_status scalar_int64(vpd_config *n, int64_t lo, int64_t hi, int64_t tmin, int64_t tmax, int64_t *out) {
    char exp[96];
    int64_t v;
    int_expectation(lo, hi, tmin, tmax, exp, sizeof exp);
    if (n->kind != VPD_CONFIG_SCALAR || vpd_config_node_is_null(n) || !parse_int64_text(n->value, &v) || v < lo ||
        v > hi)
        return type_error(n, exp);
    n->consumed = true;
    *out = v;
    return VPD_OK;
}

static vpd_status scalar_double(vpd_config *n, double lo, double hi, bool positive, double *out) {
    char exp[96];
    double v;
    double_expectation(lo, hi, positive, exp, sizeof exp);
    if (n->kind == VPD_CONFIG_SCALAR && !vpd_config_node_is_null(n) && yaml_inf_or_nan(n->value))
        return type_error(n, "a finite number");
    if (n->kind != VPD_CONFIG_SCALAR || vpd_config_node_is_null(n) || !parse_double_text(n->value, &v) ||
        !isfinite(v) || v < lo || v > hi || (positive && !(v > 0)))
        return type_error(n, exp);
    n->consumed = true;
    *out = v;
    return VPD_OK;
}

/* ---- getters ---------------------------------------------------------------------------- */

vpd_status vpd_config_get_int64(vpd_config *node, const char *path, int64_t def, int64_t lo, int64_t hi,
                                int64_t *out) {
    vpd_config *n = vpd_config_find(node, path);
    if (!n) { *out = def; return VPD_OK; }
    return scalar_int64(n, lo, hi, INT64_MIN, INT64_MAX, out);
}

vpd_status vpd_config_get_int(vpd_config *node, const char *path, int def, int lo, int hi, int *out) {
    vpd_config *n = vpd_config_find(node, path);
    if (!n) { *out = def; return VPD_OK; }
    int64_t v;
    VPD_TRY(scalar_int64(n, lo, hi, INT_MIN, INT_MAX, &v));
    *out = (int)v;
    return VPD_OK;
}

vpd_status vpd_config_get_double(vpd_config *node, const char *path, double def, double lo, double hi,
                                 double *out) {
    vpd_config *n = vpd_config_find(node, path);
    if (!n) { *out = def; return VPD_OK; }
    return scalar_double(n, lo, hi, false, out);
}

vpd_status vpd_config_get_positive_double(vpd_config *node, const char *path, double def, double *out) {
    vpd_config *n = vpd_config_find(node, path);
    if (!n) { *out = def; return VPD_OK; }
    return scalar_double(n, 0, INFINITY, true, out);
}

static int ci_equal(const char *a, const char *b) {
    for (; *a && *b; a++, b++) {
        char x = *a >= 'A' && *a <= 'Z' ? (char)(*a + 32) : *a;
        char y = *b >= 'A' && *b <= 'Z' ? (char)(*b + 32) : *b;
        if (x != y) return 0;
    }
    return *a == *b;
}

vpd_status vpd_config_get_bool(vpd_config *node, const char *path, bool def, bool *out) {
    vpd_config *n = vpd_config_find(node, path);
    if (!n) { *out = def; return VPD_OK; }
    if (n->kind == VPD_CONFIG_SCALAR && !vpd_config_node_is_null(n)) {
        const char *v = n->value;
        if (ci_equal(v, "true") || ci_equal(v, "yes") || ci_equal(v, "on")) { *out = true; n->consumed = true; return VPD_OK; }
        if (ci_equal(v, "false") || ci_equal(v, "no") || ci_equal(v, "off")) { *out = false; n->consumed = true; return VPD_OK; }
    }
    return type_error(n, "true or false");
}

static vpd_status string_common(vpd_config *node, const char *path, const char *def, bool allow_null,
                                const char **out) {
    vpd_config *n = vpd_config_find(node, path);
    if (!n) { *out = def; return VPD_OK; }
    if (n->kind != VPD_CONFIG_SCALAR) return type_error(n, allow_null ? "a string or null" : "a string");
    if (vpd_config_node_is_null(n)) {
        if (!allow_null) return type_error(n, "a string");
        *out = NULL;
    } else {
        *out = n->value;
    }
    n->consumed = true;
    return VPD_OK;
}

vpd_status vpd_config_get_string(vpd_config *node, const char *path, const char *def, const char **out) {
    return string_common(node, path, def, false, out);
}

vpd_status vpd_config_get_string_or_null(vpd_config *node, const char *path, const char *def, const char **out) {
    return string_common(node, path, def, true, out);
}

vpd_status vpd_config_get_enum(vpd_config *node, const char *path, const char *const *choices, int def, int *out) {
    vpd_config *n = vpd_config_find(node, path);
    if (!n) { *out = def; return VPD_OK; }
    if (n->kind == VPD_CONFIG_SCALAR && !vpd_config_node_is_null(n))
        for (int i = 0; choices[i]; i++)
            if (!strcmp(n->value, choices[i])) { *out = i; n->consumed = true; return VPD_OK; }
    char exp[512];
    size_t off = (size_t)snprintf(exp, sizeof exp, "one of");
    for (int i = 0; choices[i] && off < sizeof exp; i++)
        off += (size_t)snprintf(exp + off, sizeof exp - off, "%s '%s'", i ? "," : "", choices[i]);
    return type_error(n, exp);
}

/* Shared shape of the list getters: the node must be a sequence of at most max scalars. */
static vpd_status list_node(vpd_config *node, const char *path, int max, const char *expected, vpd_config **seq) {
    vpd_config *n = vpd_config_find(node, path);
    *seq = n;
    if (!n) return VPD_OK;
    if (n->kind != VPD_CONFIG_SEQ) return type_error(n, expected);
    if (n->n > max) return vpd_config_error(n, "expected at most %d elements, got %d", max, n->n);
    return VPD_OK;
}

vpd_status vpd_config_get_int_list(vpd_config *node, const char *path, int lo, int hi, int *out, int max, int *n) {
    char exp[96], lexp[128];
    int_expectation(lo, hi, INT_MIN, INT_MAX, exp, sizeof exp);
    /* "a positive integer" -> "a list of positive integers" */
    const char *rest = strchr(exp, ' ') + 1, *word = strstr(rest, "integer") + 7;
    snprintf(lexp, sizeof lexp, "a list of %.*ss%s", (int)(word - rest), rest, word);
    vpd_config *seq;
    VPD_TRY(list_node(node, path, max, lexp, &seq));
    if (!seq) return VPD_OK;
    for (int i = 0; i < seq->n; i++) {
        int64_t v;
        VPD_TRY(scalar_int64(seq->items[i], lo, hi, INT_MIN, INT_MAX, &v));
        out[i] = (int)v;
    }
    seq->consumed = true;
    *n = seq->n;
    return VPD_OK;
}

vpd_status vpd_config_get_double_list(vpd_config *node, const char *path, double lo, double hi, double *out, int max,
                                      int *n) {
    vpd_config *seq;
    VPD_TRY(list_node(node, path, max, "a list of numbers", &seq));
    if (!seq) return VPD_OK;
    for (int i = 0; i < seq->n; i++) VPD_TRY(scalar_double(seq->items[i], lo, hi, false, &out[i]));
    seq->consumed = true;
    *n = seq->n;
    return VPD_OK;
}

vpd_status vpd_config_get_double_tuple(vpd_config *node, const char *path, double lo, double hi, double *out, int n) {
    int got = n;
    VPD_TRY(vpd_config_get_double_list(node, path, lo, hi, out, n, &got));
    if (got != n) return vpd_config_error(vpd_config_find(node, path), "expected %d values, got %d", n, got);
    return VPD_OK;
}

vpd_status vpd_config_get_string_list(vpd_config *node, const char *path, const char **out, int max, int *n) {
    vpd_config *seq;
    VPD_TRY(list_node(node, path, max, "a list of strings", &seq));
    if (!seq) return VPD_OK;
    for (int i = 0; i < seq->n; i++) VPD_TRY(string_common(seq->items[i], NULL, NULL, false, &out[i]));
    seq->consumed = true;
    *n = seq->n;
    return VPD_OK;
}

/* ---- unknown keys ------------------------------------------------------------------------- */

static bool has_activity(const vpd_config *n) {
    if (n->consumed || n->touched) return true;
    for (int i = 0; i < n->n; i++)
        if (has_activity(n->items[i])) return true;
    return false;
}

static bool matches_any(const char *path, const char *const *ignore) {
    if (!ignore) return false;
    for (int i = 0; ignore[i]; i++)
        if (fnmatch(ignore[i], path, 0) == 0) return true;
    return false;
}

typedef struct {
    const char *const *ignore;
    bool mark;          /* ignore mode: consume matches and list them */
    char *list;
    size_t list_size, list_off;
    int count;
} walk_ctx;

/* First unused node under n (NULL if none). In ignore mode, nodes matching a pattern
 * are consumed and listed instead of being returned. */
static vpd_config *walk_unused(vpd_config *n, walk_ctx *w) {
    if (n->consumed) return NULL;
    if (n->parent) {
        char path[512];
        vpd_config_path(n, path, sizeof path);
        if (matches_any(path, w->ignore)) {
            if (w->mark) {
                n->consumed = true;
                w->count++;
                if (w->list && w->list_off < w->list_size)
                    w->list_off += (size_t)snprintf(w->list + w->list_off, w->list_size - w->list_off, "%s%s",
                                                    w->count > 1 ? ", " : "", path);
            }
            return NULL;
        }
        if (n->kind == VPD_CONFIG_SCALAR || !has_activity(n)) return n;
    }
    for (int i = 0; i < n->n; i++) {
        vpd_config *u = walk_unused(n->items[i], w);
        if (u) return u;
    }
    return NULL;
}

/* Optimal string alignment distance (adjacent transpositions count 1: "stpes" ~ "steps"). */
static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63) return 1 << 20;
    int d[64][64];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int cost = a[i - 1] != b[j - 1];
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[la][lb];
}

vpd_status vpd_config_check_unused(vpd_config *root, const char *const *ignore) {
    walk_ctx w = {ignore, false, NULL, 0, 0, 0};
    vpd_config *u = walk_unused(root, &w);
    if (!u) return VPD_OK;
    char loc[512], path[512], hint[160] = "";
    loc_str(u, loc, sizeof loc);
    vpd_config_path(u, path, sizeof path);
    if (u->key && u->parent->kind == VPD_CONFIG_MAP) {
        /* nearest key that a reader asked for in the same mapping */
        const char *best = NULL;
        int bd = 1 << 20;
        for (int i = 0; i < u->parent->n_asked; i++) {
            const char *cand = u->parent->asked[i];
            if (!strcmp(cand, u->key)) continue;
            int d = edit_distance(u->key, cand);
            if (d < bd) { bd = d; best = cand; }
        }
        if (best && (bd <= 2 || 3 * bd <= (int)strlen(u->key)))
            snprintf(hint, sizeof hint, " (did you mean '%s'?)", best);
        return vpd_error(VPD_ERR_CONFIG, "%s: unknown key '%s'%s", loc, path, hint);
    }
    return vpd_error(VPD_ERR_CONFIG, "%s: unused entry '%s'", loc, path);
}

int vpd_config_ignore(vpd_config *root, const char *const *ignore, char *list, size_t list_size) {
    walk_ctx w = {ignore, true, list, list_size, 0, 0};
    if (list && list_size) list[0] = '\0';
    /* walk_unused stops at the first unused key that no pattern matches; keep going past
     * it by consuming it temporarily, then restore. */
    vpd_config *stops[4096];
    int ns = 0;
    for (;;) {
        vpd_config *u = walk_unused(root, &w);
        if (!u) break;
        if (ns == (int)(sizeof stops / sizeof *stops)) break;
        u->consumed = true;
        stops[ns++] = u;
    }
    for (int i = 0; i < ns; i++) stops[i]->consumed = false;
    return w.count;
}

int vpd_config_note_ignored(vpd_config *root, const char *const *ignore) {
    char list[1024];
    int n = vpd_config_ignore(root, ignore, list, sizeof list);
    if (n > 0) vpd_info("config: ignoring %d key%s not used by vpd: %s", n, n == 1 ? "" : "s", list);
    return n;
}

/* ---- overrides ---------------------------------------------------------------------------- */

static void mark_set_origin(vpd_config *n) {
    n->file = SET_FILE;
    n->line = 0;
    for (int i = 0; i < n->n; i++) mark_set_origin(n->items[i]);
}

/* Put `val` into slot i of parent (i == parent->n appends), freeing what was there. */
static bool put_child(vpd_config *parent, int i, vpd_config *val, const char *key) {
    if (key) {
        free(val->key);
        val->key = strdup(key);
        if (!val->key) return false;
    }
    if (i == parent->n) return node_append(parent, val);
    node_free(parent->items[i]);
    parent->items[i] = val;
    val->parent = parent;
    return true;
}

static vpd_config *new_map_with_classname(const char *cls) {
    vpd_config *m = node_new(VPD_CONFIG_MAP, SET_FILE, 0);
    vpd_config *c = node_new(VPD_CONFIG_SCALAR, SET_FILE, 0);
    if (!m || !c || !(c->key = strdup("classname")) || !(c->value = strdup(cls)) || !node_append(m, c)) {
        node_free(m);
        node_free(c);
        return NULL;
    }
    return m;
}

/* Resolve step s below container n for writing. Returns the child slot index in *slot
 * (n->n for "append") and whether the step names an existing child. */
static vpd_status locate_for_set(vpd_config *n, const path_step *s, const char *assign, int *slot) {
    char p[512];
    if (n->kind == VPD_CONFIG_MAP && s->kind == STEP_KEY) {
        for (int i = 0; i < n->n; i++)
            if (!strcmp(n->items[i]->key, s->text)) { *slot = i; return VPD_OK; }
        *slot = n->n;
        return VPD_OK;
    }
    if (n->kind == VPD_CONFIG_SEQ && (s->kind == STEP_INDEX || (s->kind == STEP_KEY && all_digits(s->text)))) {
        long i = strtol(s->text, NULL, 10);
        if (i < 0 || i > n->n)
            return vpd_error(VPD_ERR_CONFIG, "--set '%s': index %ld out of range: '%s' has %d elements", assign, i,
                             vpd_config_path(n, p, sizeof p), n->n);
        *slot = (int)i;
        return VPD_OK;
    }
    if (n->kind == VPD_CONFIG_SEQ && s->kind == STEP_CLASS) {
        *slot = n->n;
        for (int i = 0; i < n->n; i++) {
            const char *c = scalar_classname(n->items[i]);
            if (c && !strcmp(c, s->text)) { *slot = i; break; }
        }
        return VPD_OK;
    }
    vpd_config_path(n, p, sizeof p);
    return vpd_error(VPD_ERR_CONFIG, "--set '%s': '%s' is %s, cannot apply '%s%s%s'", assign, p[0] ? p : "(top level)",
                     n->kind == VPD_CONFIG_MAP ? "a mapping" : n->kind == VPD_CONFIG_SEQ ? "a sequence" : "a scalar",
                     s->kind == STEP_KEY ? "" : "[", s->text, s->kind == STEP_KEY ? "" : "]");
}

/* Byte offset of the first invalid UTF-8 sequence in s (overlong forms, surrogates and
 * code points above U+10FFFF are invalid), or -1 when s is valid. */
static long utf8_invalid_at(const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; s[i];) {
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!len) return (long)i;
        uint32_t v = c & (0x7Fu >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return (long)i;
            v = v << 6 | (s[i + k] & 0x3Fu);
        }
        if ((len == 3 && (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF))) || (len == 4 && (v < 0x10000 || v > 0x10FFFF)))
            return (long)i;
        i += len;
    }
    return -1;
}

vpd_status vpd_config_set(vpd_config *root, const char *assignment) {
    /* the tree is written back as config.yaml and must load again on --resume: refuse what
     * YAML cannot hold here, naming the byte, instead of writing an unloadable file */
    long bad = utf8_invalid_at(assignment);
    if (bad >= 0) {
        const char *eq0 = strchr(assignment, '=');
        bool in_key = !eq0 || bad < (long)(eq0 - assignment);
        return vpd_error(VPD_ERR_ARG, "--set: the %s has a byte that is not valid UTF-8 (0x%02X at byte %ld of the "
                         "argument); config keys and values must be UTF-8 text", in_key ? "key" : "value",
                         (unsigned)(unsigned char)assignment[bad], bad);
    }
    for (const unsigned char *q = (const unsigned char *)assignment; *q; q++)
        if (*q < 0x20 && *q != '\t' && *q != '\n' && *q != '\r')
            return vpd_error(VPD_ERR_ARG, "--set: control character 0x%02X at byte %ld; config keys and values must "
                             "be printable text", (unsigned)*q, (long)(q - (const unsigned char *)assignment));
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return vpd_error(VPD_ERR_ARG, "--set '%s': expected dotted.key=value", assignment);
    char path[512];
    size_t plen = (size_t)(eq - assignment);
    if (plen >= sizeof path) return vpd_error(VPD_ERR_ARG, "--set '%s': key too long", assignment);
    memcpy(path, assignment, plen);
    path[plen] = '\0';
    path_step steps[MAX_STEPS];
    int ns = split_path(path, steps);
    if (ns <= 0)
        return vpd_error(VPD_ERR_ARG, "--set '%s': malformed key (use a.b.c, a.0.b or a[ClassName].b)", assignment);

    vpd_config *val = NULL;
    const char *vtext = eq + 1;
    char file[600];
    snprintf(file, sizeof file, "--set '%s'", assignment);
    vpd_status st = parse_text(vtext, strlen(vtext), file, false, &val);
    if (st != VPD_OK) return st;
    if (!val) { /* empty value: YAML null */
        val = node_new(VPD_CONFIG_SCALAR, SET_FILE, 0);
        if (!val || !(val->value = strdup(""))) { node_free(val); return vpd_error(VPD_ERR_MEM, "out of memory"); }
    }
    mark_set_origin(val);

    vpd_config *n = root;
    for (int k = 0; k < ns; k++) {
        int slot = 0;
        st = locate_for_set(n, &steps[k], assignment, &slot);
        if (st != VPD_OK) goto fail;
        const char *key = n->kind == VPD_CONFIG_MAP ? steps[k].text : NULL;
        if (k == ns - 1) {
            /* an element addressed by [ClassName] keeps (or gets) that classname */
            if (steps[k].kind == STEP_CLASS && val->kind == VPD_CONFIG_MAP &&
                !scalar_classname(val)) {
                vpd_config *c = node_new(VPD_CONFIG_SCALAR, SET_FILE, 0);
                if (!c || !(c->key = strdup("classname")) || !(c->value = strdup(steps[k].text)) ||
                    !node_append(val, c)) { node_free(c); goto oom; }
            }
            if (!put_child(n, slot, val, key)) goto oom;
            return VPD_OK;
        }
        vpd_config *next = slot < n->n ? n->items[slot] : NULL;
        if (!next || vpd_config_node_is_null(next)) {
            /* create what is missing: a mapping, or a {classname: X} element */
            if (steps[k + 1].kind == STEP_INDEX || steps[k + 1].kind == STEP_CLASS) {
                if (steps[k + 1].kind == STEP_INDEX || next) {
                    char p[512];
                    st = vpd_error(VPD_ERR_CONFIG, "--set '%s': '%s' does not exist; cannot create a sequence", assignment,
                                   next ? vpd_config_path(next, p, sizeof p) : steps[k].text);
                    goto fail;
                }
                next = node_new(VPD_CONFIG_SEQ, SET_FILE, 0);
            } else if (steps[k].kind == STEP_CLASS) {
                next = new_map_with_classname(steps[k].text);
            } else {
                next = node_new(VPD_CONFIG_MAP, SET_FILE, 0);
            }
            if (!next || !put_child(n, slot, next, key)) { node_free(next); goto oom; }
        }
        n = next;
    }
    goto fail; /* unreachable: the loop returns on its last step */
oom:
    st = vpd_error(VPD_ERR_MEM, "--set '%s': out of memory", assignment);
fail:
    node_free(val);
    return st;
}

/* ---- emitting ----------------------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
    bool oom;
} sink;

static int sink_write(void *data, unsigned char *buffer, size_t size) {
    sink *s = data;
    if (s->len + size + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + size + 1) cap *= 2;
        char *nb = realloc(s->buf, cap);
        if (!nb) { s->oom = true; return 0; }
        s->buf = nb;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, buffer, size);
    s->len += size;
    s->buf[s->len] = '\0';
    return 1;
}

static bool emit_scalar(yaml_emitter_t *e, const char *v, yaml_scalar_style_t style) {
    yaml_event_t ev;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)v, (int)strlen(v), 1, 1, style)) return false;
    return yaml_emitter_emit(e, &ev);
}

static bool emit_node(yaml_emitter_t *e, const vpd_config *n) {
    yaml_event_t ev;
    switch (n->kind) {
    case VPD_CONFIG_SCALAR:
        if (vpd_config_node_is_null(n)) return emit_scalar(e, "null", YAML_PLAIN_SCALAR_STYLE);
        return emit_scalar(e, n->value, n->quoted ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_PLAIN_SCALAR_STYLE);
    case VPD_CONFIG_SEQ: {
        bool flat = true; /* lists of scalars read best in flow style: [16, 8] */
        for (int i = 0; i < n->n; i++) flat = flat && n->items[i]->kind == VPD_CONFIG_SCALAR;
        if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                                  flat ? YAML_FLOW_SEQUENCE_STYLE : YAML_BLOCK_SEQUENCE_STYLE) ||
            !yaml_emitter_emit(e, &ev))
            return false;
        for (int i = 0; i < n->n; i++)
            if (!emit_node(e, n->items[i])) return false;
        return yaml_sequence_end_event_initialize(&ev) && yaml_emitter_emit(e, &ev);
    }
    case VPD_CONFIG_MAP:
        if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
                                                 n->n ? YAML_BLOCK_MAPPING_STYLE : YAML_FLOW_MAPPING_STYLE) ||
            !yaml_emitter_emit(e, &ev))
            return false;
        for (int i = 0; i < n->n; i++)
            if (!emit_scalar(e, n->items[i]->key, YAML_PLAIN_SCALAR_STYLE) || !emit_node(e, n->items[i])) return false;
        return yaml_mapping_end_event_initialize(&ev) && yaml_emitter_emit(e, &ev);
    }
    return false;
}

vpd_status vpd_config_emit(const vpd_config *root, char **text, size_t *len) {
    *text = NULL;
    if (len) *len = 0;
    yaml_emitter_t e;
    yaml_event_t ev;
    sink s = {0};
    if (!yaml_emitter_initialize(&e)) return vpd_error(VPD_ERR_MEM, "cannot initialise the YAML emitter");
    yaml_emitter_set_output(&e, sink_write, &s);
    yaml_emitter_set_width(&e, -1); /* no folding of long values */
    yaml_emitter_set_unicode(&e, 1);
    bool ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) && yaml_emitter_emit(&e, &ev) &&
              yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) && yaml_emitter_emit(&e, &ev) &&
              emit_node(&e, root) && yaml_document_end_event_initialize(&ev, 1) && yaml_emitter_emit(&e, &ev) &&
              yaml_stream_end_event_initialize(&ev) && yaml_emitter_emit(&e, &ev) && yaml_emitter_flush(&e);
    const char *problem = e.problem;
    yaml_emitter_delete(&e);
    if (!ok || s.oom) {
        free(s.buf);
        return vpd_error(s.oom ? VPD_ERR_MEM : VPD_ERR_INTERNAL, "emitting the config as YAML: %s",
                         s.oom ? "out of memory" : problem ? problem : "emitter error");
    }
    *text = s.buf;
    if (len) *len = s.len;
    return VPD_OK;
}

vpd_status vpd_config_write(const vpd_config *root, const char *path) {
    char *text;
    size_t len;
    VPD_TRY(vpd_config_emit(root, &text, &len));
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        free(text);
        return vpd_error(VPD_ERR_IO, "%s: path too long", path);
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(text);
        return vpd_error(VPD_ERR_IO, "%s: cannot write config: %s", tmp, strerror(errno));
    }
    bool ok = fwrite(text, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    free(text);
    if (!ok || rename(tmp, path) != 0) {
        vpd_status st = vpd_error(VPD_ERR_IO, "%s: cannot write config: %s", path, strerror(errno));
        remove(tmp);
        return st;
    }
    return VPD_OK;
}

bool vpd_config_equal(const vpd_config *a, const vpd_config *b) {
    if (!a || !b) return a == b;
    if (a->kind != b->kind || a->n != b->n) return false;
    if ((a->key == NULL) != (b->key == NULL) || (a->key && strcmp(a->key, b->key))) return false;
    if (a->kind == VPD_CONFIG_SCALAR) {
        bool na = vpd_config_node_is_null(a), nb = vpd_config_node_is_null(b);
        if (na || nb) return na == nb;
        if (a->quoted != b->quoted || strcmp(a->value, b->value)) return false;
    }
    for (int i = 0; i < a->n; i++)
        if (!vpd_config_equal(a->items[i], b->items[i])) return false;
    return true;
}
