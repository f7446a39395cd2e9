/* End-of-run summary (VPD_METHOD.md §6): L0 per layer (g > 0, strict), alive subcomponents
 * (mean g over evaluation data > 1e-6), and for toy targets the ground truth:
 *   - MMCS: mean over ground-truth rank-one pieces of the max cosine similarity to a learned
 *     u_c v_cᵀ. TMS: the pieces of linear1 are w_f e_fᵀ (w_f the f-th column of W1), of
 *     linear2 e_f w_fᵀ. ResidMLP: the part of each matrix that reads / writes feature f's
 *     embedding direction ê_f: mlp_in (W_in ê_f) ê_fᵀ, mlp_out ê_f (W_outᵀ ê_f)ᵀ.
 *   - captured (weights): feature f is captured by exactly one subcomponent when exactly one
 *     ALIVE subcomponent has cosine > 0.9 with its ground-truth piece, and that subcomponent
 *     is not the match of another feature.
 *   - dedicated (CI): feed each feature alone at magnitude 0.75 (spd's IdentityCIError
 *     convention); f has a dedicated subcomponent of a layer when exactly one subcomponent
 *     has g > 0.1 on it and that subcomponent is active on no other single feature. In TMS
 *     linear2 interference legitimately makes a neighbour's component causally important
 *     too, so this count is reported, not required. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vpd/trainer.h"

/* cos(u vᵀ, a bᵀ) = (u·a)(v·b) / (|u||v||a||b|) */
static double outer_cos(const real *u, int su, const real *v, int sv, const double *a, const double *b, int dout, int din) {
    double ua = 0, uu = 0, aa = 0, vb = 0, vv = 0, bb = 0;
    for (int i = 0; i < dout; i++) {
        ua += (double)u[(size_t)i * su] * a[i];
        uu += (double)u[(size_t)i * su] * (double)u[(size_t)i * su];
        aa += a[i] * a[i];
    }
    for (int j = 0; j < din; j++) {
        vb += (double)v[(size_t)j * sv] * b[j];
        vv += (double)v[(size_t)j * sv] * (double)v[(size_t)j * sv];
        bb += b[j] * b[j];
    }
    double den = sqrt(uu * vv * aa * bb);
    return den > 0 ? ua * vb / den : 0;
}

/* ground-truth piece f of layer k as a bᵀ (a: d_out, b: d_in); false if undefined */
static bool gt_piece(const vpd_decomp *d, int k, int f, double *a, double *b) {
    const vpd_model *m = d->target;
    const vpd_layer_state *ls = &d->layers[k];
    const vpd_layer_info *li = &m->layers[ls->model_layer];
    memset(a, 0, sizeof(double) * (size_t)ls->d_out);
    memset(b, 0, sizeof(double) * (size_t)ls->d_in);
    if (m->cfg.kind == VPD_MODEL_TMS) {
        const real *W1 = m->layers[0].W; /* [n_hidden, n_features] */
        const int F = m->cfg.n_features, H = m->cfg.n_hidden;
        if (!strcmp(ls->name, "linear1")) {
            for (int i = 0; i < H; i++) a[i] = W1[(size_t)i * F + f];
            b[f] = 1;
        } else {
            a[f] = 1;
            for (int i = 0; i < H; i++) b[i] = W1[(size_t)i * F + f];
        }
        return true;
    }
    if (m->cfg.kind == VPD_MODEL_RESID_MLP) {
        int iwe = vpd_model_find_param(m, "W_E");
        if (iwe < 0) return false;
        const real *WE = m->params + m->pinfo[iwe].offset; /* [n_features, d_embed] */
        const int D = m->cfg.d_embed;
        double nrm = 0;
        for (int j = 0; j < D; j++) nrm += (double)WE[(size_t)f * D + j] * WE[(size_t)f * D + j];
        nrm = sqrt(nrm);
        if (nrm == 0) return false;
        bool reads = strstr(ls->name, "mlp_in") != NULL;
        if (reads) { /* (W_in ê) êᵀ, W_in [d_mlp, D] */
            for (int j = 0; j < D; j++) b[j] = WE[(size_t)f * D + j] / nrm;
            for (int i = 0; i < ls->d_out; i++) {
                double s = 0;
                for (int j = 0; j < D; j++) s += (double)li->W[(size_t)i * D + j] * b[j];
                a[i] = s;
            }
        } else { /* ê (W_outᵀ ê)ᵀ, W_out [D, d_mlp] */
            for (int i = 0; i < D; i++) a[i] = WE[(size_t)f * D + i] / nrm;
            for (int j = 0; j < ls->d_in; j++) {
                double s = 0;
                for (int i = 0; i < D; i++) s += (double)li->W[(size_t)i * ls->d_in + j] * a[i];
                b[j] = s;
            }
        }
        return true;
    }
    return false;
}

/* MMCS of layer k, and how many features are captured by exactly one alive subcomponent
 * (cosine > 0.9, unique both ways) */
static double layer_mmcs(const vpd_decomp *d, int k, const bool *alive, int *captured) {
    const vpd_layer_state *ls = &d->layers[k];
    const int F = d->target->cfg.n_features;
    double *a = malloc(sizeof(double) * (size_t)ls->d_out), *b = malloc(sizeof(double) * (size_t)ls->d_in);
    int *match = malloc(sizeof(int) * (size_t)F), *uses = calloc((size_t)ls->C, sizeof(int));
    double sum = 0;
    int n = 0;
    for (int f = 0; f < F; f++) {
        match[f] = -1;
        if (!gt_piece(d, k, f, a, b)) continue;
        double best = -1;
        int n_high = 0;
        for (int c = 0; c < ls->C; c++) {
            /* learned piece (v_c u_cᵀ)ᵀ = u_c v_cᵀ: u_c = U[c, :], v_c = V[:, c] */
            double cs = outer_cos(ls->comp.U + (size_t)c * ls->d_out, 1, ls->comp.V + c, ls->C, a, b, ls->d_out, ls->d_in);
            if (cs > best) best = cs;
            if (alive[c] && cs > 0.9) { n_high++; match[f] = c; }
        }
        if (n_high != 1) match[f] = -1;
        else uses[match[f]]++;
        sum += best;
        n++;
    }
    *captured = 0;
    for (int f = 0; f < F; f++) *captured += match[f] >= 0 && uses[match[f]] == 1;
    free(a);
    free(b);
    free(match);
    free(uses);
    return n ? sum / n : -1;
}

vpd_status vpd_summarize(vpd_trainer *t, vpd_summary *s, FILE *out) {
    vpd_decomp *d = t->d;
    const int L = d->L, N = d->batch.N;
    memset(s, 0, sizeof *s);
    double *gsum = calloc((size_t)d->C_sum, sizeof(double));
    bool *alive_flag = calloc((size_t)d->C_sum, sizeof(bool));
    double cnt[VPD_MAX_MODULE_PATTERNS * 4] = {0};
    if (!gsum || !alive_flag) return vpd_error(VPD_ERR_MEM, "summary");
    int n_batches = d->cfg->n_eval_steps < 10 ? d->cfg->n_eval_steps : 10;
    for (int bi = 0; bi < n_batches; bi++) {
        VPD_TRY(vpd_trainer_load_batch(t, VPD_DATA_EVAL, (uint64_t)bi));
        vpd_decomp_target_forward(d);
        VPD_TRY(vpd_decomp_ci_forward(d));
        for (int k = 0; k < L; k++) { /* L0 (g > 0) and Σ g: ci.h's counting rule */
            const real *g = d->act.g_lower + (size_t)N * d->layers[k].c_off;
            vpd_ci_count_l0(g, (size_t)N, d->layers[k].C, 0.0, &cnt[k]);
            vpd_ci_sum_g(g, (size_t)N, d->layers[k].C, gsum + d->layers[k].c_off);
        }
    }
    double rows = (double)N * n_batches;
    vpd_sum_double(cnt, (size_t)L, d->grid.cp_comm); /* L0 adds over the component blocks */
    if (d->grid.dp_size > 1) {
        vpd_sum_double(gsum, (size_t)d->C_sum, d->grid.dp_comm);
        vpd_sum_double(cnt, (size_t)L, d->grid.dp_comm);
        rows *= d->grid.dp_size;
    }
    for (int k = 0; k < L; k++) {
        s->l0[k] = cnt[k] / rows;
        double *mean_g = gsum + d->layers[k].c_off;
        for (int c = 0; c < d->layers[k].C; c++) mean_g[c] /= rows;
        s->alive[k] = vpd_ci_count_alive(mean_g, d->layers[k].C, alive_flag + d->layers[k].c_off);
        s->mmcs[k] = -1;
    }
    if (d->grid.cp_size > 1) {
        double al[VPD_MAX_MODULE_PATTERNS * 4];
        for (int k = 0; k < L; k++) al[k] = s->alive[k];
        vpd_sum_double(al, (size_t)L, d->grid.cp_comm);
        for (int k = 0; k < L; k++) s->alive[k] = (int)al[k];
    }
    free(gsum);
    /* the ground-truth comparison needs every component of a layer in one place */
    const bool toy = !vpd_model_is_lm(d->target->cfg.kind) && d->grid.cp_size == 1;
    if (toy) {
        const int F = d->target->cfg.n_features;
        s->n_features = F;
        /* single-feature inputs, F rows at a time (the batch is N rows) */
        int *hits = calloc((size_t)F * d->C_sum, sizeof(int));
        if (!hits) return vpd_error(VPD_ERR_MEM, "summary");
        for (int f0 = 0; f0 < F; f0 += N) {
            memset(d->batch.x_batch, 0, sizeof(real) * (size_t)N * F);
            for (int r = 0; r < N && f0 + r < F; r++) d->batch.x_batch[(size_t)r * F + f0 + r] = (real)0.75;
            vpd_decomp_target_forward(d);
            VPD_TRY(vpd_decomp_ci_forward(d));
            for (int k = 0; k < L; k++) {
                const int C = d->layers[k].C;
                const real *g = d->act.g_lower + (size_t)N * d->layers[k].c_off;
                for (int r = 0; r < N && f0 + r < F; r++)
                    for (int c = 0; c < C; c++) hits[(size_t)(f0 + r) * d->C_sum + d->layers[k].c_off + c] = g[(size_t)r * C + c] > 0.1;
            }
        }
        s->features_dedicated = F;
        for (int k = 0; k < L; k++) {
            const int C = d->layers[k].C, off = d->layers[k].c_off;
            int dedicated = 0;
            for (int f = 0; f < F; f++) {
                int n_on = 0, which = -1;
                for (int c = 0; c < C; c++)
                    if (hits[(size_t)f * d->C_sum + off + c]) { n_on++; which = c; }
                if (n_on != 1) continue;
                bool shared = false;
                for (int f2 = 0; f2 < F && !shared; f2++) shared = f2 != f && hits[(size_t)f2 * d->C_sum + off + which];
                dedicated += !shared;
            }
            s->dedicated[k] = dedicated;
            if (dedicated < s->features_dedicated) s->features_dedicated = dedicated;
            s->mmcs[k] = layer_mmcs(d, k, alive_flag + off, &s->captured[k]);
        }
        free(hits);
    }
    free(alive_flag);
    if (out && vpd_log_rank() == 0) {
        fprintf(out, "\n%-28s %6s %10s %8s", "layer", "C", "L0 (g>0)", "alive");
        if (toy) fprintf(out, " %8s %10s %14s", "MMCS", "captured", "dedicated CI");
        fprintf(out, "\n");
        double l0 = 0;
        int alive = 0;
        for (int k = 0; k < L; k++) {
            fprintf(out, "%-28s %6d %10.3f %8d", d->layers[k].name, d->layers[k].C_total, s->l0[k], s->alive[k]);
            if (toy) fprintf(out, " %8.4f %4d / %-3d %7d / %-3d", s->mmcs[k], s->captured[k], s->n_features, s->dedicated[k], s->n_features);
            fprintf(out, "\n");
            l0 += s->l0[k];
            alive += s->alive[k];
        }
        fprintf(out, "%-28s %6d %10.3f %8d\n", "total", d->C_sum_total, l0, alive);
        if (toy)
            fprintf(out, "(MMCS: mean max cosine of the ground-truth rank-one pieces; captured: features matched by exactly\n"
                         " one alive subcomponent at cosine > 0.9; dedicated CI: exactly one subcomponent with g > 0.1 on the\n"
                         " feature alone at magnitude 0.75, used by no other feature)\n");
    }
    return VPD_OK;
}
