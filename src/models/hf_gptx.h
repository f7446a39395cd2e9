/* The block engine shared by the Hugging Face GPT-2 (hf_gpt2.c) and GPT-NeoX (hf_neox.c)
 * targets: pre-LayerNorm transformer blocks with a fused q/k/v projection, biases on every
 * linear, GELU MLP, final LayerNorm and a linear head. Not a public header.
 *
 *   x = E[tok] (+ P[pos] when the model has learned positions)
 *   per block:  a = LN1(x);  [q|k|v] = qkv(a) (fused, one decomposable matrix);
 *               q, k rotated (partial rotary) when rotary_dim > 0;
 *               att = o(softmax(q kᵀ/√dh, causal) v)
 *     sequential:  x' = x + att;  x'' = x' + down(gelu(fc(LN2(x'))))
 *     parallel:    x'' = x + att + down(gelu(fc(LN2(x))))      (NeoX use_parallel_residual)
 *   logits = head(LNf(x))
 * Decomposable layers in forward order: 0 the token embedding, then per block
 * qkv, o, fc, down, and last the head (an unembedding; for GPT-2 its W is the tied wte).
 * Learned positions, biases and LayerNorm parameters are fixed (not hook layers): the
 * decomposition's embedding CI reads the batch's token ids, which position ids are not. */
#ifndef VPD_HF_GPTX_H
#define VPD_HF_GPTX_H

#include "models/models_internal.h"

/* per-block parameter slots */
enum { GP_LN1_W, GP_LN1_B, GP_QKV_W, GP_QKV_B, GP_O_W, GP_O_B, GP_LN2_W, GP_LN2_B, GP_FC_W, GP_FC_B, GP_DOWN_W,
       GP_DOWN_B, GP_N };
/* per-block decomposable layers, forward order */
enum { GL_QKV, GL_O, GL_FC, GL_DOWN, GL_N };

/* Checkpoint names of one architecture: parameter names (block ones are printf formats with
 * one %d for the block index) and the decomposable layers' names (the weights' names
 * without ".weight"). */
typedef struct {
    const char *wte, *wpe; /* wpe NULL: no learned positions */
    const char *lnf_w, *lnf_b, *head_w;
    const char *blk[GP_N];
    const char *emb_layer, *head_layer, *blk_layer[GL_N];
    bool qkv_per_head; /* NeoX: fused output is [H][q,k,v][dh]; GPT-2: [q|k|v] each [H][dh] */
} gptx_names;

/* count of decomposable layers for L blocks */
static inline int gptx_count_layers(const vpd_model_config *c) { return 2 + GL_N * c->n_layers; }
/* build the index tables and the layer table (after the parameters exist) */
vpd_status gptx_build_layers(vpd_model *m, const gptx_names *nm);
/* parameter index of a block slot / global (for init) */
int gptx_pblk(const vpd_model *m, int i, int slot);
size_t gptx_layout(vpd_model *m, int B, int S, vpd_arena *a);
void gptx_forward(vpd_model *m, const vpd_model_input *in, real *out, vpd_hook *hook, int from);
void gptx_backward(vpd_model *m, const real *dout, real *dparams, real *dinput, vpd_hook *hook, int to);
void gptx_destroy(vpd_model *m);
void gptx_sync(vpd_model *m);
/* shared config checks (LayerNorm eps, head split, rotary dim when rotary) */
vpd_status gptx_check(const vpd_model_config *c, const char *what, bool rotary);

#endif
