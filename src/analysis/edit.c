/* Editing a target by its subcomponents (include/vpd/edit.h; VPD_METHOD.md §6): the
 * run-time hook, baking edits into a copy of the target, and measuring an edit's on-target
 * and off-target effects on held-out tokens. */
#include "vpd/edit.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpd/nn.h"

/* ---- parsing ------------------------------------------------------------------------------ */

static vpd_status find_layer(const vpd_decomp *d, const char *name, size_t n, int *k) {
    for (int i = 0; i < d->L; i++)
        if (strlen(d->layers[i].name) == n && !strncmp(d->layers[i].name, name, n)) {
            *k = i;
            return VPD_OK;
        }
    char list[1024];
    size_t u = 0;
    list[0] = '\0';
    for (int i = 0; i < d->L && u + 80 < sizeof list; i++)
        u += (size_t)snprintf(list + u, sizeof list - u, "%s%s", i ? ", " : "", d->layers[i].name);
    return vpd_error(VPD_ERR_ARG, "unknown layer '%.*s': the run decomposes %s", (int)n, name, list);
}

static vpd_status parse_c(const vpd_decomp *d, int k, const char *s, size_t n, int *c) {
    char buf[32];
    if (n == 0 || n >= sizeof buf) return vpd_error(VPD_ERR_ARG, "'%.*s' is not a subcomponent index", (int)n, s);
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    long v = strtol(buf, &end, 10);
    if (*end || end == buf) return vpd_error(VPD_ERR_ARG, "'%s' is not a subcomponent index (LAYER:c wants an integer c)", buf);
    const int C = d->layers[k].C_total;
    if (v < 0 || v >= C)
        return vpd_error(VPD_ERR_ARG, "subcomponent %ld out of range: layer %s has C = %d (c from 0 to %d)", v, d->layers[k].name, C,
                         C - 1);
    *c = (int)v;
    return VPD_OK;
}

static vpd_status push(vpd_edit_set *set, vpd_edit e) {
    if (set->n >= VPD_EDIT_MAX) return vpd_error(VPD_ERR_ARG, "more than %d edits", VPD_EDIT_MAX);
    set->e[set->n++] = e;
    return VPD_OK;
}

vpd_status vpd_edit_parse(vpd_edit_set *set, const vpd_decomp *d, const char *arg, vpd_edit_kind kind, double value,
                          bool want_value) {
    const char *colon = strchr(arg, ':');
    if (!colon) return vpd_error(VPD_ERR_ARG, "'%s': expected LAYER:c%s", arg, want_value ? "=x" : "[,c...]");
    int k = 0;
    VPD_TRY(find_layer(d, arg, (size_t)(colon - arg), &k));
    const char *p = colon + 1;
    if (want_value) {
        const char *eq = strchr(p, '=');
        if (!eq) return vpd_error(VPD_ERR_ARG, "'%s': expected LAYER:c=x", arg);
        int c = 0;
        VPD_TRY(parse_c(d, k, p, (size_t)(eq - p), &c));
        char *end;
        double x = strtod(eq + 1, &end);
        if (end == eq + 1 || *end || !isfinite(x)) return vpd_error(VPD_ERR_ARG, "'%s': the value after '=' must be a finite number", arg);
        return push(set, (vpd_edit){kind, k, c, x, -1});
    }
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        int c = 0;
        VPD_TRY(parse_c(d, k, p, n, &c));
        VPD_TRY(push(set, (vpd_edit){kind, k, c, value, -1}));
        if (!comma) break;
        p = comma + 1;
    }
    return VPD_OK;
}

vpd_status vpd_edit_parse_overwrite(vpd_edit_set *set, const vpd_decomp *d, const vpd_tokenizer *tok, int vocab,
                                    const char *arg, double alpha) {
    const char *colon = strchr(arg, ':');
    const char *eq = colon ? strchr(colon, '=') : NULL;
    if (!colon || !eq) return vpd_error(VPD_ERR_ARG, "'%s': expected LAYER:c=TOKEN", arg);
    int k = 0, c = 0;
    VPD_TRY(find_layer(d, arg, (size_t)(colon - arg), &k));
    VPD_TRY(parse_c(d, k, colon + 1, (size_t)(eq - colon - 1), &c));
    const char *t = eq + 1;
    long id = -1;
    if (t[0] == '#' && t[1]) {
        char *end;
        id = strtol(t + 1, &end, 10);
        if (*end) id = -2;
    }
    if (id == -2 || (id == -1 && !tok)) {
        if (!tok)
            return vpd_error(VPD_ERR_ARG, "token '%s': no tokenizer (the target has no tokenizer.json; pass --tokenizer FILE or "
                             "give the token as #ID)", t);
        return vpd_error(VPD_ERR_ARG, "token '%s': #ID wants an integer id", t);
    }
    if (id == -1) {
        id = vpd_tokenizer_token_id(tok, t, strlen(t));
        if (id < 0) return vpd_error(VPD_ERR_ARG, "token '%s' is not in the vocabulary (not a single token; give #ID for an id)", t);
    }
    if (id < 0 || id >= vocab) return vpd_error(VPD_ERR_ARG, "token %s is not in the vocabulary [0, %d)", t, vocab);
    return push(set, (vpd_edit){VPD_EDIT_OVERWRITE, k, c, alpha, (int)id});
}

/* ---- the run-time hook -------------------------------------------------------------------- */

static void target_layer(const vpd_layer_info *li, const real *x, const int32_t *tok, real *y, int N) {
    if (li->embedding) embedding_forward(y, tok, li->W, N, li->d_in, li->d_out);
    else linear_forward(y, x, li->W, li->b, N, li->d_in, li->d_out);
}

/* a[n] = a_c of row n: V_cᵀ x_n (embedding: V[tok_n, c]) */
static void activation_c(real *a, const vpd_components *cp, int c, const real *x, const int32_t *tok, int N) {
    if (cp->embedding)
        for (int n = 0; n < N; n++) a[n] = cp->V[(size_t)tok[n] * cp->C + c];
    else vpd_gemm(false, false, N, 1, cp->d_in, 1, x, cp->d_in, cp->V + c, cp->C, 0, a, 1);
}

static bool active(const vpd_edit_hook *h, int k, int c, int n) {
    const vpd_decomp *d = h->d;
    if (h->set->where_active < 0) return true;
    const real *g = d->act.g_lower + (size_t)d->batch.N * d->layers[k].c_off;
    return g[(size_t)n * d->layers[k].C + c] > h->set->where_active;
}

static void edit_forward(vpd_hook *hk, int l, const real *x, const int32_t *tok, real *y, int N) {
    vpd_edit_hook *h = (vpd_edit_hook *)hk;
    const vpd_decomp *d = h->d;
    const vpd_layer_info *li = &d->target->layers[l];
    const int k = d->model_to_decomp[l];
    if (N > h->cap_rows || (h->set->where_active >= 0 && N != d->batch.N))
        vpd_panic(__FILE__, __LINE__, "edit hook: %d rows (capacity %d, decomposition batch %d)", N, h->cap_rows, d->batch.N);
    if (k < 0) {
        target_layer(li, x, tok, y, N);
        return;
    }
    const vpd_components *cp = &d->layers[k].comp;
    const int C = cp->C, Do = cp->d_out;
    if (h->set->no_delta) {
        /* the components alone: y = (a ⊙ m) U + b */
        real *a = h->a;
        if (cp->embedding)
            for (int n = 0; n < N; n++) memcpy(a + (size_t)n * C, cp->V + (size_t)tok[n] * C, sizeof(real) * (size_t)C);
        else vpd_gemm(false, false, N, C, cp->d_in, 1, x, cp->d_in, cp->V, C, 0, a, C);
        for (int i = 0; i < h->set->n; i++) {
            const vpd_edit *e = &h->set->e[i];
            if (e->k != k || e->kind != VPD_EDIT_MASK) continue;
            for (int n = 0; n < N; n++)
                if (active(h, k, e->c, n)) a[(size_t)n * C + e->c] *= (real)e->value;
        }
        vpd_gemm(false, false, N, Do, C, 1, a, C, cp->U, Do, 0, y, Do);
        if (li->b)
            for (int n = 0; n < N; n++) vpd_axpy((size_t)Do, 1, li->b, y + (size_t)n * Do);
        return;
    }
    target_layer(li, x, tok, y, N);
    for (int i = 0; i < h->set->n; i++) {
        const vpd_edit *e = &h->set->e[i];
        if (e->k != k || e->kind != VPD_EDIT_MASK || e->value == 1.0) continue;
        activation_c(h->coef, cp, e->c, x, tok, N);
        const real f = (real)(1.0 - e->value);
        for (int n = 0; n < N; n++) h->coef[n] = active(h, k, e->c, n) ? f * h->coef[n] : 0;
        /* y −= coef ⊗ U_c */
        vpd_gemm(false, false, N, Do, 1, -1, h->coef, 1, cp->U + (size_t)e->c * Do, Do, 1, y, Do);
    }
}

static void edit_backward(vpd_hook *h, int l, const real *x, const int32_t *tok, const real *dy, real *dx, int N) {
    (void)h; (void)l; (void)x; (void)tok; (void)dy; (void)dx; (void)N;
    vpd_panic(__FILE__, __LINE__, "the edit hook is forward-only");
}

vpd_status vpd_edit_hook_init(vpd_edit_hook *h, const vpd_decomp *d, const vpd_edit_set *set, int max_rows) {
    memset(h, 0, sizeof *h);
    h->base.forward = edit_forward;
    h->base.backward = edit_backward;
    h->d = d;
    h->set = set;
    h->cap_rows = max_rows;
    for (int k = 0; k < d->L; k++)
        if (d->layers[k].C > h->cap_c) h->cap_c = d->layers[k].C;
    if (set->where_active >= 0 && max_rows != d->batch.N)
        return vpd_error(VPD_ERR_ARG, "--where-active needs the decomposition's batch (%d rows), not %d", d->batch.N, max_rows);
    for (int i = 0; i < set->n; i++)
        if (set->e[i].kind != VPD_EDIT_MASK)
            return vpd_error(VPD_ERR_ARG, "an overwrite is a baked edit: give --out MODEL_DIR");
    h->coef = vpd_malloc(sizeof(real) * (size_t)max_rows, "edit hook scratch");
    h->a = set->no_delta ? vpd_malloc(sizeof(real) * (size_t)max_rows * (size_t)h->cap_c, "edit hook activations") : NULL;
    if (!h->coef || (set->no_delta && !h->a)) {
        vpd_edit_hook_free(h);
        return VPD_ERR_MEM;
    }
    return VPD_OK;
}

void vpd_edit_hook_free(vpd_edit_hook *h) {
    vpd_free(h->a);
    vpd_free(h->coef);
    h->a = h->coef = NULL;
}

/* ---- baking ------------------------------------------------------------------------------- */

vpd_status vpd_edit_bake(vpd_model *out, const vpd_decomp *d, const vpd_edit_set *set) {
    const vpd_model *t = d->target;
    if (set->where_active >= 0)
        return vpd_error(VPD_ERR_ARG, "--where-active edits depend on the token (CI per position): they cannot be baked into weights");
    if (set->no_delta) return vpd_error(VPD_ERR_ARG, "--no-delta is a run-time mode: it cannot be baked into a model directory");
    for (int i = 0; i < set->n; i++) {
        const vpd_layer_state *ls = &d->layers[set->e[i].k];
        if (t->cfg.kind == VPD_MODEL_TMS || ls->tied_to >= 0)
            return vpd_error(VPD_ERR_ARG, "layer %s shares its weights with another layer (tied): a baked edit would change both",
                             ls->name);
        if (ls->embedding && t->cfg.kind == VPD_MODEL_LLAMA)
            return vpd_error(VPD_ERR_ARG, "layer %s is tied to the unembedding (lm_head = wte): a baked edit would change the output "
                             "layer too; use the run-time --ablate/--scale with --measure instead", ls->name);
        if (set->e[i].kind == VPD_EDIT_OVERWRITE && (t->cfg.kind != VPD_MODEL_LLAMA || ls->embedding || ls->d_out != t->cfg.n_embd))
            return vpd_error(VPD_ERR_ARG, "--overwrite %s: the layer must write into the residual stream (d_out = n_embd %d, e.g. "
                             "h.N.mlp.down_proj or h.N.attn.o_proj), this one has d_out = %d",
                             ls->name, t->cfg.n_embd, ls->d_out);
    }
    memset(out, 0, sizeof *out);
    VPD_TRY(vpd_model_create(out, &t->cfg));
    memcpy(out->params, t->params, sizeof(real) * t->n_params);
    const int iw = t->cfg.kind == VPD_MODEL_LLAMA ? vpd_model_find_param(t, "wte.weight") : -1;
    double *w = NULL;
    for (int i = 0; i < set->n; i++) {
        const vpd_edit *e = &set->e[i];
        const vpd_layer_state *ls = &d->layers[e->k];
        const vpd_components *cp = &ls->comp;
        const vpd_layer_info *li = &t->layers[ls->model_layer];
        const int C = cp->C, Di = cp->d_in, Do = cp->d_out, c = e->c;
        real *W = out->params + (li->W - t->params);
        /* the write vector to subtract: w = (1 − m) U_c, or U_c + α u/‖u‖ */
        vpd_free(w);
        if (!(w = vpd_malloc(sizeof(double) * (size_t)Do, "edit write vector"))) {
            vpd_model_free(out);
            return VPD_ERR_MEM;
        }
        for (int o = 0; o < Do; o++) w[o] = (double)cp->U[(size_t)c * Do + o];
        if (e->kind == VPD_EDIT_MASK) {
            for (int o = 0; o < Do; o++) w[o] *= 1.0 - e->value;
        } else {
            if (iw < 0) {
                vpd_free(w);
                vpd_model_free(out);
                return vpd_error(VPD_ERR_ARG, "the target has no wte.weight (unembedding) for --overwrite");
            }
            const real *u = t->params + t->pinfo[iw].offset + (size_t)e->token * t->cfg.n_embd;
            double nn = 0;
            for (int o = 0; o < Do; o++) nn += (double)u[o] * u[o];
            nn = sqrt(nn);
            if (!(nn > 0)) {
                vpd_free(w);
                vpd_model_free(out);
                return vpd_error(VPD_ERR_VALUE, "token %d has a zero unembedding row", e->token);
            }
            for (int o = 0; o < Do; o++) w[o] += e->value * (double)u[o] / nn;
        }
        if (li->embedding) /* W [vocab, d] −= V_c ⊗ w (unreachable for tied LM embeddings) */
            for (int tk = 0; tk < Di; tk++) {
                const double v = cp->V[(size_t)tk * C + c];
                for (int o = 0; o < Do; o++) W[(size_t)tk * Do + o] = (real)((double)W[(size_t)tk * Do + o] - v * w[o]);
            }
        else /* W [d_out, d_in] −= w ⊗ V_c */
            for (int o = 0; o < Do; o++) {
                real *row = W + (size_t)o * Di;
                for (int j = 0; j < Di; j++) row[j] = (real)((double)row[j] - w[o] * (double)cp->V[(size_t)j * C + c]);
            }
    }
    vpd_free(w);
    vpd_model_sync(out);
    return vpd_check_finite(out->params, out->n_params, "the edited weights");
}

/* ---- measuring ---------------------------------------------------------------------------- */

/* log-softmax of one row in double */
static void log_softmax(double *ls, const real *z, int V) {
    double mx = -INFINITY;
    for (int v = 0; v < V; v++) mx = z[v] > mx ? z[v] : mx;
    double s = 0;
    for (int v = 0; v < V; v++) s += exp((double)z[v] - mx);
    const double lse = mx + log(s);
    for (int v = 0; v < V; v++) ls[v] = (double)z[v] - lse;
}

static int argmax(const double *x, int V) {
    int b = 0;
    for (int v = 1; v < V; v++)
        if (x[v] > x[b]) b = v;
    return b;
}

vpd_status vpd_edit_measure_run(vpd_run *r, const vpd_edit_set *set, vpd_model *edited, const vpd_edit_measure_opts *o,
                                vpd_edit_measure *res) {
    vpd_decomp *d = r->d;
    memset(res, 0, sizeof *res);
    res->token = o->token;
    if (!r->job.trainer.lm) return vpd_error(VPD_ERR_ARG, "--measure compares next-token distributions: it needs a language-model run");
    const int B = d->batch.B, S = d->batch.S, N = d->batch.N, V = vpd_model_out_dim(d->target);
    if (o->token >= V) return vpd_error(VPD_ERR_ARG, "token %d is not in the vocabulary [0, %d)", o->token, V);
    vpd_edit_hook hook;
    memset(&hook, 0, sizeof hook);
    if (!edited) VPD_TRY(vpd_edit_hook_init(&hook, d, set, N));
    else VPD_TRY(vpd_model_reserve(edited, B, S));
    real *out = vpd_malloc(sizeof(real) * (size_t)N * V, "edited logits");
    double *lt = vpd_malloc(sizeof(double) * 2 * (size_t)V, "log-probabilities");
    uint8_t *fire = vpd_malloc((size_t)N, "firing flags"), *near = vpd_malloc((size_t)N, "window flags");
    real *acol = vpd_malloc(sizeof(real) * (size_t)N, "subcomponent activations");
    vpd_status s = out && lt && fire && near && acol ? VPD_OK : VPD_ERR_MEM;
    res->n_edits = set->n;
    double *le = lt ? lt + V : NULL;
    const int64_t n_batches = (o->n_tokens + N - 1) / N;
    for (int64_t bi = 0; s == VPD_OK && bi < n_batches; bi++) {
        d->step = (int)bi;
        if ((s = vpd_trainer_load_batch(&r->job.trainer, VPD_DATA_EVAL, (uint64_t)bi)) != VPD_OK) break;
        vpd_decomp_target_forward(d);
        if ((s = vpd_decomp_ci_forward(d)) != VPD_OK) break;
        if (edited) vpd_model_forward(edited, &d->batch.input, out, NULL);
        else vpd_model_forward(d->target, &d->batch.input, out, &hook.base);
        memset(fire, 0, (size_t)N);
        memset(near, 0, (size_t)N);
        for (int i = 0; i < set->n; i++) {
            const vpd_layer_state *ls = &d->layers[set->e[i].k];
            const real *g = d->act.g_lower + (size_t)N * ls->c_off;
            activation_c(acol, &ls->comp, set->e[i].c, ls->x_in, d->batch.input.tokens, N);
            for (int n = 0; n < N; n++) {
                const bool f = g[(size_t)n * ls->C + set->e[i].c] > o->fire_threshold;
                fire[n] |= f;
                res->fire_c[i] += f;
                res->a_fire[i] += f ? (double)acol[n] : 0.0;
            }
        }
        for (int b = 0; b < B; b++)
            for (int t = 0; t < S; t++)
                if (fire[b * S + t])
                    for (int u = t - o->window < 0 ? 0 : t - o->window; u <= t + o->window && u < S; u++) near[b * S + u] = 1;
        const int32_t *next = r->job.trainer.tok_targets;
        for (int n = 0; n < N; n++) {
            log_softmax(lt, d->act.target_out + (size_t)n * V, V);
            log_softmax(le, out + (size_t)n * V, V);
            double kl = 0;
            for (int v = 0; v < V; v++) kl += exp(lt[v]) * (lt[v] - le[v]);
            res->n_pos++;
            res->ce_all_before -= lt[next[n]];
            res->ce_all_after -= le[next[n]];
            if (fire[n]) {
                res->n_fire++;
                res->kl_fire += kl;
                res->p_next_before += exp(lt[next[n]]);
                res->p_next_after += exp(le[next[n]]);
                res->ce_fire_before -= lt[next[n]];
                res->ce_fire_after -= le[next[n]];
                if (o->token >= 0) {
                    res->p_tok_before += exp(lt[o->token]);
                    res->p_tok_after += exp(le[o->token]);
                    res->top1_tok_before += argmax(lt, V) == o->token;
                    res->top1_tok_after += argmax(le, V) == o->token;
                }
            } else if (near[n]) {
                res->n_surround++;
                res->kl_surround += kl;
            } else {
                res->n_off++;
                res->kl_off += kl;
            }
        }
    }
    d->step = r->run_step;
    const double nf = res->n_fire ? (double)res->n_fire : NAN;
    res->kl_fire /= nf;
    res->p_next_before /= nf;
    res->p_next_after /= nf;
    res->ce_fire_before /= nf;
    res->ce_fire_after /= nf;
    res->p_tok_before /= nf;
    res->p_tok_after /= nf;
    res->top1_tok_before /= nf;
    res->top1_tok_after /= nf;
    res->kl_surround /= res->n_surround ? (double)res->n_surround : NAN;
    res->kl_off /= res->n_off ? (double)res->n_off : NAN;
    for (int i = 0; i < set->n; i++) res->a_fire[i] /= res->fire_c[i] ? (double)res->fire_c[i] : NAN;
    res->ce_all_before /= (double)res->n_pos;
    res->ce_all_after /= (double)res->n_pos;
    if (!edited) vpd_edit_hook_free(&hook);
    vpd_free(out);
    vpd_free(lt);
    vpd_free(fire);
    vpd_free(near);
    vpd_free(acol);
    return s;
}

static const char *tok_name(const vpd_tokenizer *tk, int id, char *buf, size_t cap) {
    size_t n = 0;
    const char *b = tk ? vpd_tokenizer_token_bytes(tk, id, &n) : NULL;
    if (!b) snprintf(buf, cap, "#%d", id);
    else {
        size_t u = 0;
        buf[u++] = '\'';
        for (size_t i = 0; i < n && u + 6 < cap; i++) {
            unsigned char ch = (unsigned char)b[i];
            if (ch == '\n') { buf[u++] = '\\'; buf[u++] = 'n'; }
            else if (ch < 32 || ch == 127) u += (size_t)snprintf(buf + u, cap - u, "\\x%02x", ch);
            else buf[u++] = (char)ch;
        }
        u += (size_t)snprintf(buf + u, cap - u, "' (#%d)", id);
    }
    return buf;
}

void vpd_edit_measure_print(const vpd_edit_measure *m, const vpd_edit_set *set, const vpd_decomp *d, const vpd_tokenizer *tk,
                            FILE *f) {
    for (int i = 0; i < m->n_edits; i++) {
        const vpd_edit *e = &set->e[i];
        fprintf(f, "%s %s:%d fires on %lld positions, mean a_c = V_c^T x there %.4g\n", e->kind == VPD_EDIT_MASK ? "mask" : "overwrite",
                d->layers[e->k].name, e->c, (long long)m->fire_c[i], m->a_fire[i]);
        if (e->kind == VPD_EDIT_OVERWRITE && m->a_fire[i] * e->value > 0)
            fprintf(f, "  note: a_c and alpha have the same sign where it fires, so the overwrite LOWERS the token's logit there "
                    "(the paper's subcomponent has a_c < 0); use --alpha %g to raise it\n", -e->value);
    }
    fprintf(f, "positions: %lld held-out; firing %lld, surrounding (+-window) %lld, off-target %lld\n", (long long)m->n_pos,
            (long long)m->n_fire, (long long)m->n_surround, (long long)m->n_off);
    fprintf(f, "%-44s %12s %12s\n", "", "target", "edited");
    fprintf(f, "%-44s %12.5f %12.5f\n", "P(next token) at firing positions", m->p_next_before, m->p_next_after);
    if (m->token >= 0) {
        char nm[96], row[160];
        tok_name(tk, m->token, nm, sizeof nm);
        snprintf(row, sizeof row, "P(%s) at firing positions", nm);
        fprintf(f, "%-44s %12.5f %12.5f\n", row, m->p_tok_before, m->p_tok_after);
        snprintf(row, sizeof row, "argmax = %s at firing positions", nm);
        fprintf(f, "%-44s %12.5f %12.5f\n", row, m->top1_tok_before, m->top1_tok_after);
    }
    fprintf(f, "%-44s %12.5f %12.5f\n", "next-token CE at firing positions", m->ce_fire_before, m->ce_fire_after);
    fprintf(f, "%-44s %12.5f %12.5f\n", "next-token CE, all positions", m->ce_all_before, m->ce_all_after);
    fprintf(f, "KL(target || edited) per position: firing %.6g, surrounding %.6g, off-target %.6g\n", m->kl_fire, m->kl_surround,
            m->kl_off);
}

static cJSON *num(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

char *vpd_edit_measure_json(const vpd_edit_measure *m, const vpd_edit_set *set, const vpd_decomp *d,
                            const vpd_edit_measure_opts *o) {
    cJSON *j = cJSON_CreateObject(), *ed = cJSON_AddArrayToObject(j, "edits");
    for (int i = 0; i < set->n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "kind", set->e[i].kind == VPD_EDIT_MASK ? "mask" : "overwrite");
        cJSON_AddStringToObject(e, "layer", d->layers[set->e[i].k].name);
        cJSON_AddNumberToObject(e, "c", set->e[i].c);
        cJSON_AddNumberToObject(e, set->e[i].kind == VPD_EDIT_MASK ? "mask" : "alpha", set->e[i].value);
        if (set->e[i].kind == VPD_EDIT_OVERWRITE) cJSON_AddNumberToObject(e, "token", set->e[i].token);
        cJSON_AddNumberToObject(e, "firing", (double)m->fire_c[i]);
        cJSON_AddItemToObject(e, "mean_a_firing", isfinite(m->a_fire[i]) ? cJSON_CreateNumber(m->a_fire[i]) : cJSON_CreateNull());
        cJSON_AddItemToArray(ed, e);
    }
    cJSON_AddItemToObject(j, "where_active", set->where_active >= 0 ? cJSON_CreateNumber(set->where_active) : cJSON_CreateNull());
    cJSON_AddBoolToObject(j, "no_delta", set->no_delta);
    cJSON_AddNumberToObject(j, "fire_threshold", o->fire_threshold);
    cJSON_AddNumberToObject(j, "window", o->window);
    cJSON_AddItemToObject(j, "token", o->token >= 0 ? cJSON_CreateNumber(o->token) : cJSON_CreateNull());
    cJSON_AddNumberToObject(j, "positions", (double)m->n_pos);
    cJSON_AddNumberToObject(j, "firing", (double)m->n_fire);
    cJSON_AddNumberToObject(j, "surrounding", (double)m->n_surround);
    cJSON_AddNumberToObject(j, "off_target", (double)m->n_off);
    cJSON *b = cJSON_AddObjectToObject(j, "before"), *a = cJSON_AddObjectToObject(j, "after");
    cJSON_AddItemToObject(b, "p_next_firing", num(m->p_next_before));
    cJSON_AddItemToObject(a, "p_next_firing", num(m->p_next_after));
    cJSON_AddItemToObject(b, "p_token_firing", num(o->token >= 0 ? m->p_tok_before : NAN));
    cJSON_AddItemToObject(a, "p_token_firing", num(o->token >= 0 ? m->p_tok_after : NAN));
    cJSON_AddItemToObject(b, "top1_token_firing", num(o->token >= 0 ? m->top1_tok_before : NAN));
    cJSON_AddItemToObject(a, "top1_token_firing", num(o->token >= 0 ? m->top1_tok_after : NAN));
    cJSON_AddItemToObject(b, "ce_firing", num(m->ce_fire_before));
    cJSON_AddItemToObject(a, "ce_firing", num(m->ce_fire_after));
    cJSON_AddItemToObject(b, "ce_all", num(m->ce_all_before));
    cJSON_AddItemToObject(a, "ce_all", num(m->ce_all_after));
    cJSON *k = cJSON_AddObjectToObject(j, "kl_target_edited");
    cJSON_AddItemToObject(k, "firing", num(m->kl_fire));
    cJSON_AddItemToObject(k, "surrounding", num(m->kl_surround));
    cJSON_AddItemToObject(k, "off_target", num(m->kl_off));
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    return txt;
}
