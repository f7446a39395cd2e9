/* vpd nn: layers as paired *_forward / *_backward functions (llm.c style).
 *
 * Legend: N rows (tokens = B*S, or examples for toy models), Din/Dout widths, B batch,
 * S positions, H query heads, Hkv key/value heads, dh head dim, V vocabulary.
 * Argument order: outputs, buffers saved for backward, inputs, weights, sizes.
 * Every backward ACCUMULATES (+=) into its gradient outputs; any gradient pointer may
 * be NULL when that gradient is not needed. Callers zero gradients once per step.
 * Every matrix product goes through vpd_gemm (BLAS). */
#ifndef VPD_NN_H
#define VPD_NN_H

#include "vpd/core.h"

/* ---- linear: y[N,Dout] = x[N,Din] W^T + b, W [Dout, Din] (PyTorch layout), b [Dout] or NULL */
void linear_forward(real *y, const real *x, const real *W, const real *b, int N, int Din, int Dout);
void linear_backward(real *dx, real *dW, real *db, const real *dy, const real *x, const real *W,
                     int N, int Din, int Dout);

/* ---- embedding: y[N,D] = W[tok[n], :], W [V, D] */
void embedding_forward(real *y, const int32_t *tok, const real *W, int N, int V, int D);
void embedding_backward(real *dW, const real *dy, const int32_t *tok, int N, int V, int D);

/* ---- RMSNorm: y = w ⊙ x / sqrt(mean(x²) + eps) over the last dim D; w NULL = weightless.
 * rstd[N] is saved by forward for backward. */
void rmsnorm_forward(real *y, real *rstd, const real *x, const real *w, int N, int D, real eps);
void rmsnorm_backward(real *dx, real *dw, const real *dy, const real *x, const real *w,
                      const real *rstd, int N, int D);

/* ---- LayerNorm (GPT-2, GPT-NeoX): y = w ⊙ (x − mean) / sqrt(var + eps) + b over the last dim D,
 * biased variance as torch.nn.LayerNorm; w, b NULL = none. mean[N], rstd[N] saved by forward.
 * Backward accumulates dx[N,D], dw[D], db[D] (each may be NULL). */
void layernorm_forward(real *y, real *mean, real *rstd, const real *x, const real *w, const real *b, int N, int D,
                       real eps);
void layernorm_backward(real *dx, real *dw, real *db, const real *dy, const real *x, const real *w, const real *mean,
                        const real *rstd, int N, int D);

/* ---- activations (element-wise over n values) */
typedef enum { GELU_ERF = 0, GELU_TANH = 1 } gelu_kind;
void gelu_forward(real *y, const real *x, size_t n, gelu_kind kind);
void gelu_backward(real *dx, const real *dy, const real *x, size_t n, gelu_kind kind);
/* Forward that also keeps the derivative for the backward (erf form only): y = GELU(x),
 * dydx = GELU'(x), from one erf and one exp per element. dydx may alias x (the CI functions
 * overwrite their pre-activations with it); y must not. The backward is then
 * gelu_backward_deriv: dx += dy ⊙ dydx (in float: the float build rounds GELU' once to
 * float, where gelu_backward multiplied in double — |Δ| ≤ 1 float rounding). */
void gelu_forward_deriv(real *y, real *dydx, const real *x, size_t n, gelu_kind kind);
void gelu_backward_deriv(real *dx, const real *dy, const real *dydx, size_t n);
void relu_forward(real *y, const real *x, size_t n);
void relu_backward(real *dx, const real *dy, const real *x, size_t n);

/* ---- rotary embeddings, half-split convention, in place on x [B, S, H, dh]:
 * for i < dh/2, θ = pos · base^(-2i/dh), pairs (i, i+dh/2):
 *   x'_i = x_i cos θ − x_{i+h} sin θ,  x'_{i+h} = x_{i+h} cos θ + x_i sin θ.
 * Backward applies the transpose rotation in place on the gradient. */
void rope_forward(real *x, int B, int S, int H, int dh, real base);
void rope_backward(real *dx, int B, int S, int H, int dh, real base);
/* The same on rows at positions pos0 .. pos0 + S − 1: x [B, S, H, dh], row s of every b is
 * rotated by θ = (pos0 + s) · base^(−2i/dh) (rope_forward is pos0 = 0). vpd attrib's
 * row-restricted backward rotates n gradient copies of row t (B = n, S = 1, pos0 = t) or of the
 * key rows t−R+1..t (B = n, S = R, pos0 = t − R + 1). */
void rope_offset_forward(real *x, int B, int S, int pos0, int H, int dh, real base);
void rope_offset_backward(real *dx, int B, int S, int pos0, int H, int dh, real base);
/* Partial rotary (GPT-NeoX rotary_pct): only the first `rot` (even, <= dh) values of each
 * head rotate, pairs (i, i + rot/2) for i < rot/2, θ = pos · base^(−2i/rot); the rest pass
 * through. rot = dh is rope_forward / rope_backward. */
void rope_partial_forward(real *x, int B, int S, int H, int dh, int rot, real base);
void rope_partial_backward(real *dx, int B, int S, int H, int dh, int rot, real base);

/* ---- multi-head attention with grouped-query heads (query head h uses kv head
 * h / (H/Hkv)). q [B,S,H,dh], k and v [B,S,Hkv,dh] (RoPE already applied),
 * out [B,S,H,dh]; att [B,H,S,S] holds the softmax probabilities saved for backward.
 * Scores are scaled by 1/sqrt(dh); causal masks j > i. */
void attention_forward(real *out, real *att, const real *q, const real *k, const real *v,
                       int B, int S, int H, int Hkv, int dh, bool causal);
void attention_backward(real *dq, real *dk, real *dv, const real *dout, const real *att,
                        const real *q, const real *k, const real *v,
                        int B, int S, int H, int Hkv, int dh, bool causal);

/* The same attention without the probabilities (src/nn/attention_rows.c): memory linear in S.
 * The forward keeps lse [B,H,S] (the log-sum-exp of each row's scaled scores); the backward
 * recomputes the probabilities in blocks of `rows` query rows from q, k and lse. dq, dk, dv
 * accumulate (each may be NULL). Work: 2·rows·S values per thread. */
/* Where the row-block kernels are used automatically (the CI transformer; vpd attrib's
 * --attention auto): from VPD_ATTN_ROWS_MIN_S positions on, in blocks of VPD_ATTN_ROWS rows;
 * shorter sequences (training at n_ctx 128) keep the probabilities, which is faster there. */
#define VPD_ATTN_ROWS_MIN_S 256
#define VPD_ATTN_ROWS 64
void attention_rows_forward(real *out, real *lse, const real *q, const real *k, const real *v,
                            int B, int S, int H, int Hkv, int dh, bool causal, int rows);
void attention_rows_backward(real *dq, real *dk, real *dv, const real *dout, const real *lse,
                             const real *q, const real *k, const real *v,
                             int B, int S, int H, int Hkv, int dh, bool causal, int rows);

/* One query row of causal attention (src/nn/attention_row.c), for vpd attrib's row-restricted
 * backward: the output of row t from q_t [H, dh] and the key/value rows 0..t, k and v
 * [t+1, Hkv, dh] (token-major as above, RoPE applied; the forward's buffers from row 0):
 *   p_h[j] = softmax_j≤t(q_t,h · k_j,hk / √dh),  out[H, dh]: out_h = Σ_j p_h[j] v_j,hk.
 * The backward takes n copies of the output gradient, dout [n, H, dh], and accumulates per copy
 * dq [n, H, dh] (the gradient of q_t) and dk, dv [n, R, Hkv, dh] for the R last key rows
 * t−R+1..t (1 <= R <= t+1; the other rows' gradients are not formed); dq, dk, dv may be NULL.
 * The probabilities are recomputed from q_t and k (as attention_forward computes them). Work:
 * (t+1)·(n+1) values per thread, grown only when a larger size is seen. */
void attention_row_forward(real *out, const real *q, const real *k, const real *v, int t, int H, int Hkv, int dh);
void attention_row_backward(real *dq, real *dk, real *dv, const real *dout, const real *q, const real *k,
                            const real *v, int t, int n, int R, int H, int Hkv, int dh);

/* ---- softmax over the last dim, probs[N,V] */
void softmax_forward(real *probs, const real *logits, int N, int V);

/* ---- cross-entropy, mean over N rows: loss = -(1/N) Σ log softmax(logits)[n, target[n]].
 * probs [N,V] saved. Backward: dlogits += dloss · (probs − onehot) / N. */
real cross_entropy_forward(real *probs, const real *logits, const int32_t *targets, int N, int V);
void cross_entropy_backward(real *dlogits, const real *probs, const int32_t *targets, int N, int V,
                            real dloss);

/* ---- KL(softmax p ‖ softmax q) summed over the vocabulary, mean over N rows.
 * p are the (constant) target logits, q the model's; p_probs and q_probs [N,V] are saved.
 * Backward w.r.t. q logits: dq += dloss · (q_probs − p_probs) / N. */
real kl_forward(real *p_probs, real *q_probs, const real *p_logits, const real *q_logits, int N, int V);
void kl_backward(real *dq_logits, const real *p_probs, const real *q_probs, int N, int V, real dloss);
/* The same KL with the target side computed once for many q: kl_target_prepare stores
 * p_probs [N,V] and p_rowc [3N] (per row: max, log Σ exp(l − max), Σ p; double);
 * kl_forward_prepared(q_probs, p_probs, p_rowc, p_logits, q_logits, N, V) then returns what
 * kl_forward(p_probs, q_probs, p_logits, q_logits, N, V) does, bit for bit. */
void kl_target_prepare(real *p_probs, double *p_rowc, const real *p_logits, int N, int V);
real kl_forward_prepared(real *q_probs, const real *p_probs, const double *p_rowc, const real *p_logits,
                         const real *q_logits, int N, int V);

/* ---- mean squared error, mean over n elements: dy += dloss · 2 (y − t) / n */
real mse_forward(const real *y, const real *t, size_t n);
void mse_backward(real *dy, const real *y, const real *t, size_t n, real dloss);

/* ---- SwiGLU (Llama / Qwen MLP): h[n] = silu(g[n]) * u[n], silu(g) = g / (1 + e^-g).
 * Backward accumulates dg += dh * u * silu'(g), du += dh * silu(g) (dg or du may be NULL). */
void swiglu_forward(real *h, const real *g, const real *u, size_t n);
void swiglu_backward(real *dg, real *du, const real *dh, const real *g, const real *u, size_t n);

/* ---- rotary embeddings from precomputed tables (any frequency schedule: rope_theta,
 * Llama-3 / linear rope scaling). Half-split pairs (i, i + dh/2) as rope_forward, in place
 * on x [B, S, H, dh]; cs [S, dh] holds per position cos θ_i (first dh/2) then sin θ_i.
 * rope_table_fill writes cs for positions 0..S-1 from inv_freq [dh/2] (angles in double). */
void rope_table_fill(real *cs, const double *inv_freq, int S, int dh);
void rope_table_forward(real *x, const real *cs, int B, int S, int H, int dh);
void rope_table_backward(real *dx, const real *cs, int B, int S, int H, int dh);

#endif
