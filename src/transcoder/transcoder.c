/* Transcoder inference (include/vpd/transcoder.h): geometry, transcoder.h5 reading and
 * writing, encode / decode by the inference rule, and the splice hook. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "transcoder/tc_internal.h"
#include "vpd/io.h"
#include "vpd/nn.h"

const char *vpd_tc_kind_name(vpd_tc_kind k) { return k == VPD_TC_CLT ? "clt" : "plt"; }
const char *vpd_tc_act_name(vpd_tc_act a) {
    static const char *const n[] = {"batchtopk", "topk", "relu", "jumprelu"};
    return (unsigned)a < 4 ? n[a] : "?";
}

vpd_status vpd_transcoder_create(vpd_transcoder **out, vpd_tc_kind kind, vpd_tc_act act, int n_layers, int d_model,
                                 int n_latent, int k) {
    *out = NULL;
    if (n_layers < 1 || n_layers > VPD_TC_MAX_LAYERS)
        return vpd_error(VPD_ERR_CONFIG, "transcoder: %d MLPs (1 to %d supported)", n_layers, VPD_TC_MAX_LAYERS);
    if (d_model < 1 || n_latent < 1) return vpd_error(VPD_ERR_CONFIG, "transcoder: d_model %d, n_latent %d must be >= 1", d_model, n_latent);
    if ((act == VPD_TC_TOPK || act == VPD_TC_BATCHTOPK) && (k < 1 || k > n_latent))
        return vpd_error(VPD_ERR_CONFIG, "transcoder: k = %d must be in [1, n_latent = %d] for %s", k, n_latent,
                         vpd_tc_act_name(act));
    vpd_transcoder *t = calloc(1, sizeof *t);
    if (!t) return vpd_error(VPD_ERR_MEM, "transcoder");
    t->kind = kind;
    t->act = act;
    t->n_layers = n_layers;
    t->d_model = d_model;
    t->n_latent = n_latent;
    t->k = (act == VPD_TC_TOPK || act == VPD_TC_BATCHTOPK) ? k : 0;
    t->W_dec = calloc((size_t)n_layers * n_layers, sizeof(real *));
    if (!t->W_dec) {
        free(t);
        return vpd_error(VPD_ERR_MEM, "transcoder");
    }
    tc_bind(t, NULL); /* sizes only */
    real *p = vpd_calloc(sizeof(real) * t->n_params, "transcoder parameters");
    if (!p) {
        vpd_transcoder_free(t);
        return VPD_ERR_MEM;
    }
    tc_bind(t, p);
    *out = t;
    return VPD_OK;
}

void vpd_transcoder_free(vpd_transcoder *t) {
    if (!t) return;
    vpd_free(t->params);
    free(t->W_dec);
    free(t);
}

static int parse_name(const char *s, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (s && !strcmp(s, names[i])) return i;
    return -1;
}

/* Every tensor of the file, one table for reading and writing: /layer_i/{W_enc [n, d], b_enc [n],
 * threshold [n], b_dec [d], W_dec_j [n, d] for each later layer j it writes to}. */
static vpd_status tc_tensors_io(vpd_h5 *f, vpd_transcoder *t, bool write) {
    const int64_t n = t->n_latent, d = t->d_model;
    vpd_status s = VPD_OK;
    for (int i = 0; s == VPD_OK && i < t->n_layers; i++) {
        struct {
            const char *name;
            real *x;
            int rank;
            int64_t sh[2];
        } tab[4] = {{"W_enc", t->W_enc[i], 2, {n, d}}, {"b_enc", t->b_enc[i], 1, {n, 0}},
                    {"threshold", t->threshold[i], 1, {n, 0}}, {"b_dec", t->b_dec[i], 1, {d, 0}}};
        char p[96];
        for (int e = 0; s == VPD_OK && e < 4 + t->n_layers; e++) {
            int j = e - 4;
            if (j >= 0 && !vpd_tc_writes(t, i, j)) continue;
            real *x = j < 0 ? tab[e].x : t->W_dec[i * t->n_layers + j];
            int rank = j < 0 ? tab[e].rank : 2;
            int64_t sh[2] = {j < 0 ? tab[e].sh[0] : n, j < 0 ? tab[e].sh[1] : d};
            if (j < 0)
                snprintf(p, sizeof p, "/layer_%d/%s", i, tab[e].name);
            else
                snprintf(p, sizeof p, "/layer_%d/W_dec_%d", i, j);
            s = write ? vpd_h5_write_real(f, p, x, rank, sh) : vpd_h5_read_real(f, p, x, rank, sh);
        }
    }
    return s;
}

vpd_status vpd_transcoder_load(vpd_transcoder **out, const char *path) {
    *out = NULL;
    vpd_h5 f;
    VPD_TRY(vpd_h5_open(&f, path, false));
    char *fmt = NULL, *kind = NULL, *act = NULL;
    int64_t L = 0, d = 0, n = 0, k = 0;
    vpd_status s = vpd_h5_get_attr_str(&f, "/", "format", &fmt);
    if (s == VPD_OK && strcmp(fmt, "vpd-transcoder") != 0)
        s = vpd_error(VPD_ERR_VALUE, "%s: format is '%s', not a vpd transcoder file (write one with vpd transcoder)", path, fmt);
    if (s == VPD_OK) s = vpd_h5_get_attr_str(&f, "/", "kind", &kind);
    if (s == VPD_OK) s = vpd_h5_get_attr_str(&f, "/", "activation", &act);
    if (s == VPD_OK) s = vpd_h5_get_attr_int(&f, "/", "n_layers", &L);
    if (s == VPD_OK) s = vpd_h5_get_attr_int(&f, "/", "d_model", &d);
    if (s == VPD_OK) s = vpd_h5_get_attr_int(&f, "/", "n_latent", &n);
    if (s == VPD_OK) s = vpd_h5_get_attr_int(&f, "/", "k", &k);
    static const char *const kinds[] = {"plt", "clt"};
    static const char *const acts[] = {"batchtopk", "topk", "relu", "jumprelu"};
    int ki = s == VPD_OK ? parse_name(kind, kinds, 2) : 0, ai = s == VPD_OK ? parse_name(act, acts, 4) : 0;
    if (s == VPD_OK && (ki < 0 || ai < 0))
        s = vpd_error(VPD_ERR_VALUE, "%s: unknown kind '%s' or activation '%s'", path, kind, act);
    vpd_transcoder *t = NULL;
    if (s == VPD_OK) s = vpd_transcoder_create(&t, (vpd_tc_kind)ki, (vpd_tc_act)ai, (int)L, (int)d, (int)n, (int)k);
    if (s == VPD_OK) s = tc_tensors_io(&f, t, false);
    if (s == VPD_OK) s = vpd_check_finite(t->params, t->n_params, path);
    vpd_free(fmt);
    vpd_free(kind);
    vpd_free(act);
    vpd_h5_close(&f);
    if (s != VPD_OK) {
        vpd_transcoder_free(t);
        return vpd_error_context(s, "reading transcoder %s", path);
    }
    *out = t;
    return VPD_OK;
}

vpd_status vpd_transcoder_save(const vpd_transcoder *t, const char *path, const char *target, const char *objective,
                               int steps, const char *config_text) {
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    vpd_h5 f;
    VPD_TRY(vpd_h5_create(&f, tmp));
    vpd_status s = vpd_h5_set_attr_str(&f, "/", "format", "vpd-transcoder");
    if (s == VPD_OK) s = vpd_h5_set_attr_int(&f, "/", "format_version", 1);
    if (s == VPD_OK) s = vpd_h5_set_attr_str(&f, "/", "kind", vpd_tc_kind_name(t->kind));
    if (s == VPD_OK) s = vpd_h5_set_attr_str(&f, "/", "activation", vpd_tc_act_name(t->act));
    if (s == VPD_OK) s = vpd_h5_set_attr_int(&f, "/", "n_layers", t->n_layers);
    if (s == VPD_OK) s = vpd_h5_set_attr_int(&f, "/", "d_model", t->d_model);
    if (s == VPD_OK) s = vpd_h5_set_attr_int(&f, "/", "n_latent", t->n_latent);
    if (s == VPD_OK) s = vpd_h5_set_attr_int(&f, "/", "k", t->k);
    if (s == VPD_OK) s = vpd_h5_set_attr_str(&f, "/", "objective", objective ? objective : "");
    if (s == VPD_OK) s = vpd_h5_set_attr_int(&f, "/", "steps", steps);
    if (s == VPD_OK) s = vpd_h5_set_attr_str(&f, "/", "target", target ? target : "");
    if (s == VPD_OK) s = vpd_h5_set_attr_str(&f, "/", "config", config_text ? config_text : "");
    if (s == VPD_OK) s = tc_tensors_io(&f, (vpd_transcoder *)t, true); /* writing reads t only */
    vpd_status c = vpd_h5_close(&f);
    if (s == VPD_OK) s = c;
    if (s == VPD_OK && rename(tmp, path) != 0)
        s = vpd_error(VPD_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (s != VPD_OK) unlink(tmp);
    return s;
}

/* ---- inference ------------------------------------------------------------------------ */
void vpd_transcoder_encode(const vpd_transcoder *t, int l, const real *x, int N, real *z) {
    int n = t->n_latent, d = t->d_model;
    size_t cnt = (size_t)N * n;
    tc_pre(x, t->W_enc[l], t->b_enc[l], N, d, n, z);
    switch (t->act) {
    case VPD_TC_BATCHTOPK: tc_keep_gt(z, cnt, t->threshold[l][0], z); break;
    case VPD_TC_TOPK: {
        real *scratch = malloc(sizeof(real) * (size_t)n);
        real *row = malloc(sizeof(real) * (size_t)n);
        VPD_ASSERT(scratch && row, "transcoder encode: out of memory");
        for (int r = 0; r < N; r++) {
            memcpy(row, z + (size_t)r * n, sizeof(real) * (size_t)n);
            tc_topk(row, 1, n, t->k, z + (size_t)r * n, scratch);
        }
        free(scratch);
        free(row);
        break;
    }
    case VPD_TC_RELU: tc_relu(z, cnt, z); break;
    case VPD_TC_JUMPRELU: tc_jumprelu(z, N, n, t->threshold[l], z); break;
    }
}

void vpd_transcoder_decode_add(const vpd_transcoder *t, int l_src, int l_dst, const real *z, int N, real *y) {
    if (!vpd_tc_writes(t, l_src, l_dst)) return;
    tc_dec(z, t->W_dec[l_src * t->n_layers + l_dst], N, t->n_latent, t->d_model, y);
}

void vpd_transcoder_reconstruct(const vpd_transcoder *t, int l_dst, const real *const *z, int N, real *y) {
    int d = t->d_model;
    for (int r = 0; r < N; r++) memcpy(y + (size_t)r * d, t->b_dec[l_dst], sizeof(real) * (size_t)d);
    for (int i = 0; i <= l_dst; i++)
        if (vpd_tc_writes(t, i, l_dst) && z[i]) vpd_transcoder_decode_add(t, i, l_dst, z[i], N, y);
}

int64_t vpd_transcoder_count_active(const real *z, size_t n) {
    int64_t c = 0;
    for (size_t i = 0; i < n; i++) c += z[i] != 0;
    return c;
}

/* ---- the splice hook ---------------------------------------------------------------------- */
struct vpd_tc_hook {
    vpd_hook base;
    const vpd_transcoder *t;
    const vpd_model *m;
    int N_max;
    int *blk_of;  /* model layer -> MLP index, or -1 */
    bool *is_fc;  /* model layer is c_fc (else down_proj) */
    bool splice[VPD_TC_MAX_LAYERS];
    real *z[VPD_TC_MAX_LAYERS];
};

static void hook_forward(vpd_hook *hb, int l, const real *x, const int32_t *tok, real *y, int N) {
    vpd_tc_hook *h = (vpd_tc_hook *)hb;
    const vpd_layer_info *L = &h->m->layers[l];
    int b = h->blk_of[l];
    VPD_ASSERT(N <= h->N_max, "transcoder hook: %d rows, sized for %d", N, h->N_max);
    if (b >= 0 && !h->is_fc[l] && h->splice[b]) {
        vpd_transcoder_reconstruct(h->t, b, (const real *const *)h->z, N, y);
        return;
    }
    if (L->embedding) embedding_forward(y, tok, L->W, N, L->d_in, L->d_out);
    else linear_forward(y, x, L->W, L->b, N, L->d_in, L->d_out);
    if (b >= 0 && h->is_fc[l]) vpd_transcoder_encode(h->t, b, x, N, h->z[b]);
}

vpd_status vpd_tc_hook_create(vpd_tc_hook **out, const vpd_transcoder *t, const vpd_model *m, const bool *splice, int N_max) {
    *out = NULL;
    if (m->cfg.kind != VPD_MODEL_LLAMA)
        return vpd_error(VPD_ERR_CONFIG, "transcoders splice into a LlamaSimpleMLP target, not %s", vpd_model_kind_name(m->cfg.kind));
    if (m->cfg.n_layers != t->n_layers || m->cfg.n_embd != t->d_model)
        return vpd_error(VPD_ERR_CONFIG, "transcoder has %d MLPs of width %d, the target %d of width %d: not this target's transcoder",
                         t->n_layers, t->d_model, m->cfg.n_layers, m->cfg.n_embd);
    vpd_tc_hook *h = calloc(1, sizeof *h);
    if (!h) return vpd_error(VPD_ERR_MEM, "transcoder hook");
    h->base.forward = hook_forward;
    h->base.backward = NULL;
    h->t = t;
    h->m = m;
    h->N_max = N_max;
    h->blk_of = malloc(sizeof(int) * (size_t)m->n_layers);
    h->is_fc = calloc((size_t)m->n_layers, sizeof(bool));
    vpd_status s = (h->blk_of && h->is_fc) ? VPD_OK : vpd_error(VPD_ERR_MEM, "transcoder hook");
    for (int l = 0; s == VPD_OK && l < m->n_layers; l++) h->blk_of[l] = -1;
    for (int i = 0; s == VPD_OK && i < t->n_layers; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "h.%d.mlp.c_fc", i);
        int fc = vpd_model_find_layer(m, nm);
        snprintf(nm, sizeof nm, "h.%d.mlp.down_proj", i);
        int dn = vpd_model_find_layer(m, nm);
        if (fc < 0 || dn < 0) {
            s = vpd_error(VPD_ERR_CONFIG, "target has no layer %s", nm);
            break;
        }
        h->blk_of[fc] = h->blk_of[dn] = i;
        h->is_fc[fc] = true;
        h->splice[i] = splice ? splice[i] : true;
        h->z[i] = vpd_malloc(sizeof(real) * (size_t)N_max * t->n_latent, "transcoder latents");
        if (!h->z[i]) s = VPD_ERR_MEM;
    }
    if (s != VPD_OK) {
        vpd_tc_hook_free(h);
        return s;
    }
    *out = h;
    return VPD_OK;
}

vpd_hook *vpd_tc_hook_base(vpd_tc_hook *h) { return &h->base; }
const real *vpd_tc_hook_latents(const vpd_tc_hook *h, int l) { return h->z[l]; }

void vpd_tc_hook_free(vpd_tc_hook *h) {
    if (!h) return;
    for (int i = 0; i < VPD_TC_MAX_LAYERS; i++) vpd_free(h->z[i]);
    free(h->blk_of);
    free(h->is_fc);
    free(h);
}
