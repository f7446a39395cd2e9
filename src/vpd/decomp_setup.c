/* Building a decomposition: which layers (module_info patterns over the target's layer
 * names), their order (strcmp, as global CI functions and the RNG use), tied layers (TMS),
 * the flat component parameter block, the CI function, and every per-step buffer sized
 * once for the local batch. Also the CI forward/backward glue: CI inputs, sigmoids and
 * binomial sampling's perturbation, and the gradient of the CI input back into V. */
#define _POSIX_C_SOURCE 200809L
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpd/decomp.h"
#include "vpd/loss_table.h"
#include "vpd/dist.h"
#include "vpd/nn.h"

static int cmp_layer_name(const void *a, const void *b) {
    return strcmp(((const vpd_layer_state *)a)->name, ((const vpd_layer_state *)b)->name);
}

/* true when layer k's CI input is its component activations (mlp, and every embedding) */
static bool ci_input_is_acts(const vpd_decomp *d, int k) {
    return vpd_ci_type_takes_component_acts(d->cfg->ci_type) || d->layers[k].embedding;
}

static vpd_status select_layers(vpd_decomp *d) {
    const vpd_decomp_config *cfg = d->cfg;
    const vpd_model *t = d->target;
    d->layers = calloc((size_t)t->n_layers, sizeof *d->layers);
    d->model_to_decomp = malloc(sizeof(int) * (size_t)t->n_layers);
    if (!d->layers || !d->model_to_decomp) return vpd_error(VPD_ERR_MEM, "decomposition layer tables");
    int L = 0;
    for (int l = 0; l < t->n_layers; l++) {
        int C = 0;
        for (int p = 0; p < cfg->n_module_info; p++)
            if (fnmatch(cfg->module_info[p].pattern, t->layers[l].name, 0) == 0) C = cfg->module_info[p].C;
        if (C <= 0) continue;
        vpd_layer_state *ls = &d->layers[L++];
        snprintf(ls->name, sizeof ls->name, "%s", t->layers[l].name);
        ls->model_layer = l;
        if (C % d->grid.cp_size != 0)
            return vpd_error(VPD_ERR_CONFIG,
                             "layer '%s': C = %d is not divisible by the component-parallel size %d "
                             "(parallel.component_parallel); choose C or component_parallel so that it is",
                             ls->name, C, d->grid.cp_size);
        ls->C_total = C;
        ls->C = C / d->grid.cp_size;
        ls->c0 = d->grid.cp_rank * ls->C;
        ls->d_in = t->layers[l].d_in;
        ls->d_out = t->layers[l].d_out;
        ls->embedding = t->layers[l].embedding;
        ls->numel_W = (size_t)ls->d_in * (size_t)ls->d_out;
        ls->tied_to = -1;
    }
    for (int p = 0; p < cfg->n_module_info; p++) {
        bool hit = false;
        for (int l = 0; l < t->n_layers && !hit; l++) hit = fnmatch(cfg->module_info[p].pattern, t->layers[l].name, 0) == 0;
        if (!hit) {
            char avail[512] = "";
            for (int l = 0; l < t->n_layers && strlen(avail) < 400; l++) {
                strcat(avail, l ? ", " : "");
                strcat(avail, t->layers[l].name);
            }
            return vpd_error(VPD_ERR_CONFIG, "module_info pattern '%s' matches no layer of the %s target (layers: %s)",
                             cfg->module_info[p].pattern, vpd_model_kind_name(t->cfg.kind), avail);
        }
    }
    if (L == 0) return vpd_error(VPD_ERR_CONFIG, "module_info selects no layer to decompose");
    d->L = L;
    qsort(d->layers, (size_t)L, sizeof *d->layers, cmp_layer_name);
    for (int l = 0; l < t->n_layers; l++) d->model_to_decomp[l] = -1;
    int c_off = 0, c_off_total = 0;
    for (int k = 0; k < L; k++) {
        d->model_to_decomp[d->layers[k].model_layer] = k;
        d->layers[k].c_off = c_off;
        d->layers[k].c_off_total = c_off_total;
        c_off += d->layers[k].C;
        c_off_total += d->layers[k].C_total;
    }
    d->C_sum = c_off;
    d->C_sum_total = c_off_total;
    /* TMS ties linear2 = linear1ᵀ: one parameter set serves both (VPD_METHOD.md §1) */
    if (t->cfg.kind == VPD_MODEL_TMS && L == 2 && !strcmp(d->layers[0].name, "linear1") &&
        !strcmp(d->layers[1].name, "linear2")) {
        if (d->layers[0].C != d->layers[1].C)
            return vpd_error(VPD_ERR_CONFIG,
                             "TMS has tied weights (linear2 = linear1ᵀ): linear1 and linear2 need the same C, got %d and %d",
                             d->layers[0].C, d->layers[1].C);
        d->layers[1].tied_to = 0;
    }
    return VPD_OK;
}

static vpd_status allocate(vpd_decomp *d) {
    const int N = d->batch.N, L = d->L, CS = d->C_sum;
    /* component parameters: V then U for every untied layer */
    size_t n = 0, n_tied = 0, max_dout = 1, max_W = 0;
    for (int k = 0; k < L; k++) {
        vpd_layer_state *ls = &d->layers[k];
        size_t sz = (size_t)ls->C * (size_t)(ls->d_in + ls->d_out);
        if (ls->tied_to < 0) n += sz; else n_tied += 2 * sz;
        if ((size_t)ls->d_out > max_dout) max_dout = (size_t)ls->d_out;
        if (ls->numel_W > max_W) max_W = ls->numel_W;
    }
    d->params.n_comp_params = n;
    d->params.comp_params = vpd_calloc(sizeof(real) * n, "component parameters (V, U)");
    d->params.comp_grads = vpd_calloc(sizeof(real) * n, "component gradients");
    d->params.tied_buf = n_tied ? vpd_calloc(sizeof(real) * n_tied, "tied components") : NULL;
    if (!d->params.comp_params || !d->params.comp_grads || (n_tied && !d->params.tied_buf)) return VPD_ERR_MEM;
    size_t off = 0, toff = 0;
    for (int k = 0; k < L; k++) {
        vpd_layer_state *ls = &d->layers[k];
        size_t nv = (size_t)ls->d_in * ls->C, nu = (size_t)ls->C * ls->d_out;
        real *V, *U;
        if (ls->tied_to < 0) {
            V = d->params.comp_params + off; ls->dV = d->params.comp_grads + off; off += nv;
            U = d->params.comp_params + off; ls->dU = d->params.comp_grads + off; off += nu;
        } else {
            V = d->params.tied_buf + toff; toff += nv;
            U = d->params.tied_buf + toff; toff += nu;
            ls->dV = d->params.tied_buf + toff; toff += nv;
            ls->dU = d->params.tied_buf + toff; toff += nu;
        }
        const vpd_layer_info *li = &d->target->layers[ls->model_layer];
        real *delta = vpd_malloc(sizeof(real) * ls->numel_W, "weight delta");
        if (!delta) return VPD_ERR_MEM;
        VPD_TRY(vpd_components_setup(&ls->comp, ls->name, ls->d_in, ls->d_out, ls->C, ls->embedding, V, U, li->W,
                                     li->b, delta));
        ls->comp.c0 = ls->c0;
        ls->comp.C_total = ls->C_total;
        ls->comp.shared_terms = d->grid.cp_rank == 0; /* one rank of the group adds bias, Δx, routed-out rows */
    }
    /* per-step buffers, one block */
    bool hidden = vpd_loss_any_needs(d->cfg, VPD_LOSS_NEEDS_HIDDEN_ACTS);
    bool kl = d->cfg->output_loss == VPD_OUT_KL;
    int vocab = kl ? vpd_model_out_dim(d->target) : 0;
    size_t work = 0;
    for (int k = 0; k < L; k++) {
        size_t w = vpd_components_work_size(&d->layers[k].comp, N);
        if (w > work) work = w;
    }
    d->pass.work_size = work;
    size_t nCS = (size_t)N * (size_t)CS, nLN = (size_t)L * (size_t)N, outn = (size_t)d->batch.out_numel;
    size_t bytes = 0;
#define PLAN(count, type) bytes += vpd_arena_size(sizeof(type) * (size_t)(count))
    for (int k = 0; k < L; k++) {
        if (!d->layers[k].embedding) PLAN((size_t)N * d->layers[k].d_in, real);
        if (hidden) PLAN((size_t)N * d->layers[k].d_out, real);
    }
    PLAN(nCS, real); /* ci_in */
    for (int i = 0; i < 8; i++) PLAN(nCS, real); /* z zp g_lower g_upper dg_lower dg_upper dz dci_in */
    for (int i = 0; i < 5; i++) PLAN(nCS, real); /* a mask dmask src dsrc */
    for (int i = 0; i < 2; i++) PLAN(nLN, real); /* srcdelta dsrcdelta */
    PLAN(nLN, uint8_t);
    for (int i = 0; i < 3; i++) PLAN(outn, real); /* target_out out dout */
    if (kl) { PLAN((size_t)N * vocab, real); PLAN(3 * (size_t)N, double); PLAN((size_t)N * vocab, real); }
    PLAN(work, real);
    PLAN((size_t)N * max_dout, real);
    size_t max_din = 1, nCT = (size_t)N * (size_t)d->C_sum_total;
    for (int k = 0; k < L; k++)
        if ((size_t)d->layers[k].d_in > max_din) max_din = (size_t)d->layers[k].d_in;
    if (d->grid.cp_size > 1) {
        PLAN(nCT, real);
        PLAN(nCT, real);
        PLAN((size_t)N * max_din, real);
    }
#undef PLAN
    VPD_TRY(vpd_arena_init(&d->arena, bytes, "decomposition step buffers"));
    vpd_arena *a = &d->arena;
    for (int k = 0; k < L; k++) {
        if (!d->layers[k].embedding) d->layers[k].x_in = vpd_arena_new(a, real, (size_t)N * d->layers[k].d_in);
        if (hidden) d->layers[k].y_target = vpd_arena_new(a, real, (size_t)N * d->layers[k].d_out);
    }
    d->act.ci_in = vpd_arena_new(a, real, nCS);
    real **bufs1[] = {&d->act.z, &d->act.zp, &d->act.g_lower, &d->act.g_upper, &d->act.dg_lower, &d->act.dg_upper, &d->act.dz, &d->act.dci_in,
                      &d->pass.a, &d->pass.mask, &d->pass.dmask, &d->pass.src, &d->pass.dsrc};
    for (size_t i = 0; i < sizeof bufs1 / sizeof bufs1[0]; i++) *bufs1[i] = vpd_arena_new(a, real, nCS);
    d->pass.srcdelta = vpd_arena_new(a, real, nLN);
    d->pass.dsrcdelta = vpd_arena_new(a, real, nLN);
    d->pass.route = vpd_arena_new(a, uint8_t, nLN);
    d->act.target_out = vpd_arena_new(a, real, outn);
    d->pass.out = vpd_arena_new(a, real, outn);
    d->pass.dout = vpd_arena_new(a, real, outn);
    if (kl) {
        d->act.target_probs = vpd_arena_new(a, real, (size_t)N * vocab);
        d->act.target_rowc = vpd_arena_new(a, double, 3 * (size_t)N);
        d->pass.q_probs = vpd_arena_new(a, real, (size_t)N * vocab);
    }
    d->pass.work = vpd_arena_new(a, real, work);
    d->pass.tmp_layer = vpd_arena_new(a, real, (size_t)N * max_dout);
    if (d->grid.cp_size > 1) {
        d->act.z_full = vpd_arena_new(a, real, nCT);
        d->act.dz_full = vpd_arena_new(a, real, nCT);
        d->act.tmp_dx = vpd_arena_new(a, real, (size_t)N * max_din);
    }
    return VPD_OK;
}

static vpd_status create_ci(vpd_decomp *d) {
    vpd_ci_layer_spec specs[VPD_MAX_MODULE_PATTERNS * 4];
    vpd_ci_layer_spec *sp = d->L <= (int)(sizeof specs / sizeof specs[0]) ? specs : NULL;
    if (!sp) return vpd_error(VPD_ERR_CONFIG, "too many decomposed layers (%d)", d->L);
    for (int k = 0; k < d->L; k++) {
        if (d->grid.cp_size > 1 && ci_input_is_acts(d, k))
            return vpd_error(VPD_ERR_CONFIG,
                             "layer '%s': with component_parallel > 1 the CI function must read the layer input "
                             "(vector_mlp, shared_mlp, global_shared_mlp, global_shared_transformer; no embedding "
                             "layers): its input would be the sharded component activations",
                             d->layers[k].name);
        sp[k].name = d->layers[k].name;
        sp[k].C = d->layers[k].C_total; /* the CI function is replicated over the component group */
        sp[k].d_in = ci_input_is_acts(d, k) ? d->layers[k].C : d->layers[k].d_in;
    }
    VPD_TRY(vpd_ci_create_from(&d->params.ci, d->cfg->ci_type, sp, d->L,
                               &(vpd_ci_args){.hidden = d->cfg->ci_hidden,
                                              .n_hidden = d->cfg->ci_n_hidden,
                                              .transformer = &d->cfg->ci_transformer}));
    vpd_ci_init(d->params.ci, d->cfg->seed);
    VPD_TRY(vpd_ci_set_seq_len(d->params.ci, d->batch.S)); /* the transformer attends over positions */
    return vpd_ci_reserve(d->params.ci, d->batch.N);
}

vpd_status vpd_decomp_create(vpd_decomp **out, const vpd_decomp_config *cfg, vpd_model *target, const vpd_layout *lay,
                             const vpd_batch_geom *geom) {
    *out = NULL;
    vpd_decomp *d = calloc(1, sizeof *d);
    if (!d) return vpd_error(VPD_ERR_MEM, "decomposition state");
    const int B = geom->B, S = geom->S;
    d->cfg = cfg;
    d->target = target;
    d->batch.B = B;
    d->batch.S = S;
    d->batch.N = geom->N;
    d->batch.example0 = geom->example0;
    d->batch.B_global = geom->B_global;
    d->grid.dp_comm = lay->dp_comm;
    d->grid.dp_size = lay->dp;
    d->grid.dp_rank = lay->dp_rank;
    d->grid.cp_comm = lay->cp_comm;
    d->grid.cp_size = lay->cp;
    d->grid.cp_rank = lay->cp_rank;
    d->batch.out_numel = (int)vpd_model_out_size(target, B, S);
    vpd_status s = vpd_model_reserve(target, B, S);
    if (s == VPD_OK) s = select_layers(d);
    if (s == VPD_OK) s = allocate(d);
    if (s == VPD_OK) s = create_ci(d);
    if (s != VPD_OK) {
        vpd_decomp_free(d);
        return s;
    }
    for (int k = 0; k < d->L; k++)
        if (d->layers[k].tied_to < 0) vpd_components_init(&d->layers[k].comp, cfg->seed, k);
    if (cfg->init_svd) {
        /* the ScaLAPACK grid over the same dp × cp layout (src/dist): each rank gets its block
         * of the top singular triplets; the rest keeps the random draw, scaled down */
        vpd_grid g;
        s = vpd_grid_create(&g, lay->comm, d->grid.cp_size, 0);
        for (int k = 0; s == VPD_OK && k < d->L; k++) {
            if (d->layers[k].tied_to >= 0) continue;
            int rank = 0;
            /* the random draw above stays for the components the SVD leaves out (scaled down) */
            const vpd_shard_view view = vpd_components_shard(&d->layers[k].comp);
            s = vpd_dist_svd_init(&view, &g, cfg->svd_rest_scale, NULL, &rank);
            if (s == VPD_OK)
                vpd_info("init svd: layer %s: rank %d of %d subcomponents from singular triplets", d->layers[k].name,
                         rank < d->layers[k].C_total ? rank : d->layers[k].C_total, d->layers[k].C_total);
        }
        if (s == VPD_OK) vpd_grid_free(&g);
        if (s != VPD_OK) {
            vpd_decomp_free(d);
            return s;
        }
    }
    for (int i = 0; i < cfg->n_losses; i++) {
        if (vpd_loss_def_of(cfg->losses[i].kind)->persistent) {
            s = vpd_ppgd_create(&d->loss.ppgd[i], d, i);
            if (s != VPD_OK) {
                vpd_decomp_free(d);
                return s;
            }
        }
    }
    vpd_decomp_refresh(d);
    d->batch.input.B = B;
    d->batch.input.S = S;
    *out = d;
    return VPD_OK;
}

vpd_status vpd_decomp_create_local(vpd_decomp **out, const vpd_decomp_config *cfg, vpd_model *target, int B, int S) {
    *out = NULL;
    vpd_layout lay; /* owns nothing: d keeps only the (SELF) handles */
    vpd_layout_self(&lay);
    vpd_batch_geom geom;
    VPD_TRY(vpd_batch_geometry(&geom, B, S, 1, 0, "batch"));
    return vpd_decomp_create(out, cfg, target, &lay, &geom);
}

void vpd_decomp_free(vpd_decomp *d) {
    if (!d) return;
    for (int i = 0; i < VPD_MAX_LOSSES; i++) vpd_ppgd_free(d->loss.ppgd[i]);
    vpd_free(d->loss.im_pow);
    if (d->layers)
        for (int k = 0; k < d->L; k++) vpd_free(d->layers[k].comp.delta);
    vpd_ci_free(d->params.ci);
    vpd_free(d->params.comp_params);
    vpd_free(d->params.comp_grads);
    vpd_free(d->params.tied_buf);
    vpd_arena_free(&d->arena);
    free(d->layers);
    free(d->model_to_decomp);
    free(d);
}

size_t vpd_decomp_memory_bytes(const vpd_decomp *d) {
    size_t b = d->arena.capacity + 2 * sizeof(real) * d->params.n_comp_params;
    for (int k = 0; k < d->L; k++) b += sizeof(real) * d->layers[k].numel_W;
    if (d->params.ci) b += 2 * sizeof(real) * d->params.ci->n_params + vpd_ci_workspace_bytes(d->params.ci, d->batch.N);
    return b;
}

static void transpose(real *dst, const real *src, int rows, int cols) {
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) dst[(size_t)j * rows + i] = src[(size_t)i * cols + j];
}

void vpd_decomp_refresh(vpd_decomp *d) {
    d->act.ci_in_current = false; /* V may have changed */
    for (int k = 0; k < d->L; k++) {
        vpd_layer_state *ls = &d->layers[k];
        if (ls->tied_to >= 0) {
            const vpd_layer_state *src = &d->layers[ls->tied_to];
            transpose(ls->comp.V, src->comp.U, src->C, src->d_out); /* V₂ [d_in₂ = d_out₁, C] = U₁ᵀ */
            transpose(ls->comp.U, src->comp.V, src->d_in, src->C);  /* U₂ [C, d_out₂ = d_in₁] = V₁ᵀ */
        }
        vpd_components_delta(&ls->comp);
        if (d->grid.cp_size > 1) {
            /* each rank has W − P_r (P_r its block's (V U)ᵀ): Δ = W − Σ_r P_r */
            size_t n = ls->numel_W;
            real *D = ls->comp.delta;
            const real *W = ls->comp.W;
            for (size_t i = 0; i < n; i++) D[i] -= W[i];
            vpd_sum_real(D, n, d->grid.cp_comm);
            for (size_t i = 0; i < n; i++) D[i] += W[i];
        }
    }
}

void vpd_decomp_fold_tied_grads(vpd_decomp *d) {
    for (int k = 0; k < d->L; k++) {
        vpd_layer_state *ls = &d->layers[k];
        if (ls->tied_to < 0) continue;
        vpd_layer_state *src = &d->layers[ls->tied_to];
        /* dU₁ [C, d_out₁] += dV₂ᵀ (dV₂ [d_out₁, C]); dV₁ [d_in₁, C] += dU₂ᵀ (dU₂ [C, d_in₁]) */
        for (int i = 0; i < ls->d_in; i++)
            for (int c = 0; c < ls->C; c++) src->dU[(size_t)c * src->d_out + i] += ls->dV[(size_t)i * ls->C + c];
        for (int c = 0; c < ls->C; c++)
            for (int j = 0; j < ls->d_out; j++) src->dV[(size_t)j * src->C + c] += ls->dU[(size_t)c * ls->d_out + j];
        memset(ls->dV, 0, sizeof(real) * (size_t)ls->d_in * ls->C);
        memset(ls->dU, 0, sizeof(real) * (size_t)ls->C * ls->d_out);
    }
}

void vpd_decomp_zero_grads(vpd_decomp *d, bool ci_params) {
    memset(d->params.comp_grads, 0, sizeof(real) * d->params.n_comp_params);
    for (int k = 0; k < d->L; k++)
        if (d->layers[k].tied_to >= 0) { /* scratch gradients of tied layers */
            memset(d->layers[k].dV, 0, sizeof(real) * (size_t)d->layers[k].d_in * d->layers[k].C);
            memset(d->layers[k].dU, 0, sizeof(real) * (size_t)d->layers[k].C * d->layers[k].d_out);
        }
    if (ci_params) vpd_ci_zero_grad(d->params.ci);
    size_t n = (size_t)d->batch.N * d->C_sum;
    memset(d->act.dg_lower, 0, sizeof(real) * n);
    memset(d->act.dg_upper, 0, sizeof(real) * n);
}

/* ---- CI forward / backward ------------------------------------------------------------------ */
static real *blk(const vpd_decomp *d, real *buf, int k) { return buf + (size_t)d->batch.N * (size_t)d->layers[k].c_off; }

vpd_draw vpd_decomp_draw(const vpd_decomp *d, int k, uint32_t sample) {
    vpd_draw dr;
    memset(&dr, 0, sizeof dr);
    dr.seed = d->cfg->seed;
    dr.step = (uint32_t)d->step;
    dr.sample = sample;
    dr.layer = (uint32_t)(k < 0 ? 0 : k);
    dr.example0 = d->batch.example0;
    dr.B = d->batch.B;
    dr.S = d->batch.S;
    if (k >= 0) {
        dr.C_total = d->layers[k].comp.C_total;
        dr.c0 = d->layers[k].comp.c0;
        dr.C = d->layers[k].C;
    }
    return dr;
}

vpd_status vpd_decomp_ci_forward(vpd_decomp *d) {
    const int N = d->batch.N, L = d->L;
    const real *in[VPD_MAX_MODULE_PATTERNS * 4] = {0};
    real *z[VPD_MAX_MODULE_PATTERNS * 4] = {0};
    const bool cp = d->grid.cp_size > 1;
    for (int k = 0; k < L; k++) {
        vpd_layer_state *ls = &d->layers[k];
        z[k] = cp ? d->act.z_full + (size_t)N * ls->c_off_total : blk(d, d->act.z, k);
        if (ci_input_is_acts(d, k)) {
            real *acts = blk(d, d->act.ci_in, k);
            if (ls->embedding)
                embedding_forward(acts, d->batch.tok_in, ls->comp.V, N, ls->d_in, ls->C);
            else
                vpd_gemm(false, false, N, ls->C, ls->d_in, 1, ls->x_in, ls->d_in, ls->comp.V, ls->C, 0, acts, ls->C);
            in[k] = acts;
        } else {
            in[k] = ls->x_in;
        }
    }
    d->act.ci_in_current = true; /* for every layer whose CI input is its acts (ci_input_is_acts) */
    VPD_TRY(vpd_ci_forward(d->params.ci, z, in, N));
    if (cp) /* this rank's block of each layer's z */
        for (int k = 0; k < L; k++) {
            const vpd_layer_state *ls = &d->layers[k];
            real *zl = blk(d, d->act.z, k);
            for (int r = 0; r < N; r++)
                memcpy(zl + (size_t)r * ls->C, z[k] + (size_t)r * ls->C_total + ls->c0, sizeof(real) * (size_t)ls->C);
        }
    size_t n = (size_t)N * (size_t)d->C_sum;
    for (int k = 0; k < L; k++) {
        if (d->cfg->sampling == VPD_SAMPLING_BINOMIAL) {
            vpd_draw dr = vpd_decomp_draw(d, k, VPD_SAMPLE_BINOMIAL_U);
            vpd_binomial_perturb_forward(blk(d, d->act.zp, k), blk(d, d->act.z, k), &dr);
        }
    }
    const real *zl = d->cfg->sampling == VPD_SAMPLING_BINOMIAL ? d->act.zp : d->act.z;
    vpd_sigmoid_forward(d->cfg->sigmoid_lower, d->act.g_lower, zl, n);
    vpd_sigmoid_forward(d->cfg->sigmoid_upper, d->act.g_upper, d->act.z, n);
    return VPD_OK;
}

vpd_status vpd_decomp_ci_backward(vpd_decomp *d) {
    const int N = d->batch.N, L = d->L;
    size_t n = (size_t)N * (size_t)d->C_sum;
    memset(d->act.dz, 0, sizeof(real) * n);
    vpd_sigmoid_backward(d->cfg->sigmoid_upper, d->act.dz, d->act.dg_upper, d->act.z, n);
    if (d->cfg->sampling == VPD_SAMPLING_BINOMIAL) {
        real *dzp = d->pass.dmask; /* free between passes */
        memset(dzp, 0, sizeof(real) * n);
        vpd_sigmoid_backward(d->cfg->sigmoid_lower, dzp, d->act.dg_lower, d->act.zp, n);
        vpd_binomial_perturb_backward(d->act.dz, dzp, n);
    } else {
        vpd_sigmoid_backward(d->cfg->sigmoid_lower, d->act.dz, d->act.dg_lower, d->act.z, n);
    }
    const real *in[VPD_MAX_MODULE_PATTERNS * 4] = {0}, *dz[VPD_MAX_MODULE_PATTERNS * 4] = {0};
    real *din[VPD_MAX_MODULE_PATTERNS * 4] = {0};
    bool any_acts = false;
    const bool cp = d->grid.cp_size > 1;
    if (cp) memset(d->act.dz_full, 0, sizeof(real) * (size_t)N * d->C_sum_total);
    for (int k = 0; k < L; k++) {
        dz[k] = blk(d, d->act.dz, k);
        if (cp) { /* the full-width gradient, zero outside this rank's block */
            const vpd_layer_state *ls = &d->layers[k];
            real *full = d->act.dz_full + (size_t)N * ls->c_off_total;
            for (int r = 0; r < N; r++)
                memcpy(full + (size_t)r * ls->C_total + ls->c0, dz[k] + (size_t)r * ls->C, sizeof(real) * (size_t)ls->C);
            dz[k] = full;
        }
        if (ci_input_is_acts(d, k)) {
            in[k] = blk(d, d->act.ci_in, k);
            din[k] = blk(d, d->act.dci_in, k);
            memset(din[k], 0, sizeof(real) * (size_t)N * d->layers[k].C);
            any_acts = true;
        } else {
            in[k] = d->layers[k].x_in;
            din[k] = NULL;
        }
    }
    VPD_TRY(vpd_ci_backward(d->params.ci, any_acts ? din : NULL, dz, in, N));
    /* the CI input a = x V (or V[tok]) is not detached: its gradient trains V */
    for (int k = 0; k < L; k++) {
        if (!din[k]) continue;
        vpd_layer_state *ls = &d->layers[k];
        if (ls->embedding)
            embedding_backward(ls->dV, din[k], d->batch.tok_in, N, ls->d_in, ls->C);
        else
            vpd_gemm(true, false, ls->d_in, ls->C, N, 1, ls->x_in, ls->d_in, din[k], ls->C, 1, ls->dV, ls->C);
    }
    return VPD_OK;
}
