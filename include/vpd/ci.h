/* vpd ci: the sigmoids and the causal-importance (CI) functions of VPD_METHOD.md §2.
 *
 * A CI function maps, for every row n (token / example) and every subcomponent c of
 * every decomposed layer, the layer's CI input to a raw pre-sigmoid value z[n, c]; a
 * sigmoid turns z into the causal importance g ∈ [0, 1].
 *
 * Legend: N rows (B*S), L decomposed layers, C subcomponents of a layer, D the width
 * of a layer's CI input (d_in), h hidden widths.
 *
 * Kinds (ci_config.fn_type, spd spd/models/components.py):
 *   mlp                one MLP per component, 1 -> hidden_dims -> 1, on a_c = (x V)[:, c]
 *   vector_mlp         one MLP per component, D -> hidden_dims -> 1, on the layer input x
 *   shared_mlp         one MLP per layer, D -> hidden_dims -> C, on x
 *   global_shared_mlp  one MLP, ΣD -> hidden_dims -> ΣC on the concatenated inputs of all
 *                      layers, split per layer (inputs given in strcmp order of the names)
 *   global_shared_transformer  in_proj(concat of per-layer weightless RMSNorm(x_l)) ->
 *                      n_blocks x [x += Attn(N(x)); x += MLP(N(x))] -> out_head -> ΣC,
 *                      split per layer; attention runs over the S positions of each
 *                      sequence (non-causal, RoPE). Created by vpd_ci_create_transformer
 *                      (ci_transformer.c; see the block "global_shared_transformer" below).
 *   global_reverse_residual: reserved; create() reports "not implemented in this build".
 * MLPs use exact erf GELU between Linears, biases on (spd Linear / ParallelLinear).
 *
 * Parameters. One flat block `params` (n_params reals) and one gradient block `grads`
 * of the same layout, so the optimiser, the clip (grad_clip_norm_ci_fns) and the MPI
 * allreduce each see a single buffer. The table `tensors` names every tensor with its
 * spd state_dict key and shape, so a run file stores them under names spd users know:
 *   layerwise  "ci_fn._ci_fns.<layer, '.' -> '-'>.layers.<2k>.{W,b}"
 *   global     "ci_fn._global_ci_fn.layers.<2k>.{W,b}"
 * (k = 0 .. n_hidden is the Linear's index; spd's nn.Sequential interleaves GELUs, hence
 * 2k). Layouts are spd's: Linear W [in, out], b [out] (y = x W + b); ParallelLinear
 * (mlp, vector_mlp) W [C, in, out], b [C, out].
 *
 * Init (vpd_ci_init): hidden Linears W ~ N(0, 2/fan_in), final Linears W ~ N(0, 1/fan_in),
 * b = 0, fan_in = the Linear's input width. Every tensor draws from its own Philox stream
 * vpd_rng_make(seed, VPD_RNG_INIT, fnv1a32(tensor name), VPD_CI_RNG_TAG) at element index
 * = position in the tensor: deterministic, independent of the rank count and of which
 * other layers are decomposed.
 *
 * Use:
 *   vpd_ci_create(&ci, type, specs, L, hidden, n_hidden);   allocates params and grads
 *   vpd_ci_init(ci, seed);
 *   (global_shared_transformer: vpd_ci_create_transformer(&ci, specs, L, &tcfg) instead)
 *   vpd_ci_set_seq_len(ci, S);        rows are n = b*S + s (only the transformer uses it)
 *   vpd_ci_reserve(ci, N);            activation workspace for up to N rows (one allocation)
 *   per step: vpd_ci_zero_grad(ci); vpd_ci_forward(ci, z, in, N); ...losses...;
 *             vpd_ci_backward(ci, din, dz, in, N);
 *   vpd_ci_free(ci);
 * Inputs per layer l: for mlp, the component activations a_l = x_l V_l [N, C_l]; for the
 * other kinds the layer input x_l [N, D_l] (for an embedding layer in a global function,
 * the caller passes its component activations and declares D_l = C_l). */
#ifndef VPD_CI_H
#define VPD_CI_H

#include "vpd/core.h"

/* ---- sigmoids ---------------------------------------------------------------------
 * Element functions g = σ(z) with α = 0.01 (spd spd/models/sigmoids.py):
 *   LOWER_LEAKY_HARD  clamp(z, 0, 1); hand-written backward: γ for 0 < z ≤ 1; α·γ for
 *                     z ≤ 0 only where γ < 0 (else 0); 0 for z > 1. Not the derivative of
 *                     its forward at z ≤ 0, on purpose: it lets a loss push a dead z up.
 *   UPPER_LEAKY_HARD  z > 1 ? 1 + α(z − 1) : clamp(z, 0, 1); derivative 0 (z < 0),
 *                     1 (0 ≤ z ≤ 1), α (z > 1).
 *   HARD              clamp(z, 0, 1); derivative 1 on [0, 1] (inclusive, as torch.clamp).
 *   NORMAL            logistic 1/(1 + e^{−z}).
 *   SWISH_HARD        0.5 + [usw(x − 0.5) − sw(x)] + [sw(x + 0.5) − usw(x)], x = z − 0.5,
 *                     sw(x) = x·σ(10x), usw(x) = x·σ(−10x): a smooth hard sigmoid.
 * Config mapping (sigmoid_type): "leaky_hard" (default) uses LOWER_LEAKY_HARD for the
 * masks/L0/eval g and UPPER_LEAKY_HARD for ImportanceMinimality; every other type uses
 * its one function for both ("normal", "hard", "upper_leaky_hard", "lower_leaky_hard",
 * "swish_hard"). */
typedef enum {
    VPD_SIGMOID_LOWER_LEAKY_HARD = 0,
    VPD_SIGMOID_UPPER_LEAKY_HARD,
    VPD_SIGMOID_HARD,
    VPD_SIGMOID_NORMAL,
    VPD_SIGMOID_SWISH_HARD
} vpd_sigmoid_fn;

#define VPD_SIGMOID_ALPHA 0.01

/* sigmoid_type string -> the (lower, upper) pair. VPD_ERR_CONFIG naming the value and
 * the accepted ones when unknown. */
vpd_status vpd_sigmoid_lookup(const char *sigmoid_type, vpd_sigmoid_fn *lower, vpd_sigmoid_fn *upper);
const char *vpd_sigmoid_name(vpd_sigmoid_fn f);
/* g[n] = σ(z[n]) (g may alias z) */
void vpd_sigmoid_forward(vpd_sigmoid_fn f, real *g, const real *z, size_t n);
/* dz[n] += σ'(z[n]) dg[n] (the hand-written rule for LOWER_LEAKY_HARD). dz must not alias dg. */
void vpd_sigmoid_backward(vpd_sigmoid_fn f, real *dz, const real *dg, const real *z, size_t n);

/* ---- CI functions ------------------------------------------------------------------ */
typedef enum {
    VPD_CI_MLP = 0,
    VPD_CI_VECTOR_MLP,
    VPD_CI_SHARED_MLP,
    VPD_CI_GLOBAL_SHARED_MLP,
    VPD_CI_GLOBAL_SHARED_TRANSFORMER, /* vpd_ci_create_transformer only */
    VPD_CI_GLOBAL_REVERSE_RESIDUAL    /* not implemented in this build */
} vpd_ci_type;

#define VPD_CI_MAX_HIDDEN 8
#define VPD_CI_NAME_MAX 160
#define VPD_CI_RNG_TAG 0x43494E49u /* "CINI": the c3 word of every CI init stream */

/* ci_config.fn_type string -> type; VPD_ERR_CONFIG naming the value when unknown. */
vpd_status vpd_ci_type_parse(const char *fn_type, vpd_ci_type *out);
const char *vpd_ci_type_name(vpd_ci_type t);
bool vpd_ci_type_is_global(vpd_ci_type t);
/* true when the CI input of a layer is its component activations a = x V (mlp), so the
 * caller must backpropagate din into V */
bool vpd_ci_type_takes_component_acts(vpd_ci_type t);

/* One decomposed layer as the caller describes it. */
typedef struct {
    const char *name; /* module name, e.g. "h.0.mlp.c_fc" */
    int d_in;         /* width of the CI input; ignored for mlp (its input is [N, C]) */
    int C;
} vpd_ci_layer_spec;

typedef struct {
    char name[VPD_CI_NAME_MAX]; /* spd state_dict key */
    int ndim;
    int64_t shape[3];
    size_t offset; /* into params and grads */
    size_t numel;
    int layer;     /* decomposed layer it belongs to, -1 for a global function */
    int linear;    /* k: 0 .. n_hidden (the last is the final Linear) */
    bool is_bias;
} vpd_ci_param_info;

/* internal per-network bookkeeping (one per layer for layerwise kinds, one for global) */
typedef struct {
    int first_tensor;                    /* W of Linear k = tensors[first_tensor + 2k], b = +1 */
    size_t ws_pre[VPD_CI_MAX_HIDDEN];    /* per-row element offsets of the saved activations */
    size_t ws_post[VPD_CI_MAX_HIDDEN];
    int width[VPD_CI_MAX_HIDDEN];        /* elements per row of hidden layer k (C*h or h) */
} vpd_ci_net;

typedef struct {
    char name[VPD_CI_NAME_MAX];
    int d_in, C;
    int in_off; /* offset of this layer's input in the concatenation (global) */
    int c_off;  /* offset of this layer's z in the ΣC output (global) */
} vpd_ci_layer;

typedef struct {
    vpd_ci_type type;
    int L;
    vpd_ci_layer *layers; /* [L] */
    int n_hidden;
    int hidden[VPD_CI_MAX_HIDDEN];
    int D_total, C_total;

    size_t n_params;
    real *params; /* [n_params], owned */
    real *grads;  /* [n_params], owned, same layout */
    int n_tensors;
    vpd_ci_param_info *tensors; /* [n_tensors] */

    int n_nets;
    vpd_ci_net *nets; /* [n_nets] */

    /* activation workspace: saved pre/post-GELU of every hidden layer of every net,
     * then two scratch buffers for backward; sized for N_reserved rows */
    int N_reserved, N_last;
    size_t ws_row;     /* elements per row of the saved part */
    size_t ws_scratch; /* elements per row of one scratch buffer */
    real *ws;

    /* sequence structure (vpd_ci_set_seq_len): rows are n = b*S + s. Only the
     * transformer reads it; 1 (every row its own sequence) by default. */
    int S;
    struct vpd_ci_tf *tf; /* global_shared_transformer state (ci_transformer.c), else NULL */
    const struct vpd_ci_ops *ops; /* the row of its type in the ops table (below) */
} vpd_ci_fn;

/* Create a CI function over L layers. For global kinds the layers must be given in the
 * strcmp order of their names (the order the concatenation uses); VPD_ERR_CONFIG
 * otherwise. hidden_dims: n_hidden widths (mlp and vector_mlp need at least one, as in
 * spd; shared and global kinds accept none). Allocates and zeroes params and grads
 * (call vpd_ci_init). On error *out is NULL and nothing is leaked. */
vpd_status vpd_ci_create(vpd_ci_fn **out, vpd_ci_type type, const vpd_ci_layer_spec *layers, int L,
                         const int *hidden_dims, int n_hidden);
void vpd_ci_free(vpd_ci_fn *ci);
/* Deterministic init of every parameter from seed (see the top of this file). */
void vpd_ci_init(vpd_ci_fn *ci, uint64_t seed);
/* Size the activation workspace for up to N rows (one allocation; a later call with a
 * larger N reallocates, a smaller one is a no-op). */
vpd_status vpd_ci_reserve(vpd_ci_fn *ci, int N);
/* Bytes the workspace takes for N rows (for the memory plan). */
size_t vpd_ci_workspace_bytes(const vpd_ci_fn *ci, int N);
void vpd_ci_zero_grad(vpd_ci_fn *ci);

/* z[l] [N, C_l] from in[l] ([N, C_l] for mlp, [N, D_l] otherwise). Saves what backward
 * needs in the workspace. VPD_ERR_SHAPE if N exceeds the reserved rows. */
vpd_status vpd_ci_forward(vpd_ci_fn *ci, real *const *z, const real *const *in, int N);
/* Given dz[l] [N, C_l] (a NULL dz[l] counts as zero), accumulate the parameter gradient
 * into ci->grads and, where din != NULL and din[l] != NULL, din[l] += ∂/∂in[l].
 * Must follow the forward of the same in and N (it reads the saved activations). */
vpd_status vpd_ci_backward(vpd_ci_fn *ci, real *const *din, const real *const *dz,
                           const real *const *in, int N);

/* ---- global_shared_transformer (spd GlobalSharedTransformerCiFn) ------------------
 * Config (spd ci_config: {mode: global, fn_type: global_shared_transformer,
 * simple_transformer_ci_cfg: {d_model, n_blocks, mlp_hidden_dim: [..],
 * attn_config: {n_heads, max_len (default 2048), rope_base (default 10000)}}}).
 * spd's default for a missing mlp_hidden_dim is [4*d_model]; [] means the block MLP is
 * one Linear d_model -> d_model. d_model/n_heads must be even (RoPE half-split).
 *
 * Forward on rows n = b*S + s (S from vpd_ci_set_seq_len, N a multiple of S, S <= max_len):
 *   u_l = x_l / sqrt(mean(x_l²) + ε) over each layer's own width, ε = FLT_EPSILON (spd's
 *   F.rms_norm default for float32), no weight; h = concat_l(u_l) W_in + b_in;
 *   per block: h += Attn(N(h)); h += MLP(N(h)) with N the same weightless RMSNorm;
 *   Attn: q, k, v = N(h) W_{q,k,v}^T (bias-free, nn.Linear layout [out, in]), RoPE on
 *   q, k (half-split, position s, base rope_base), softmax(q k^T/√d_head) v over the S
 *   positions of the same sequence, no causal mask, then out_proj (bias-free);
 *   MLP: Linear -> erf GELU -> ... -> Linear back to d_model (spd Linear, biases);
 *   z = h W_out + b_out (no final norm), columns split per layer in strcmp order.
 * Tensors (spd state_dict keys under "ci_fn._global_ci_fn.", in spd's module order):
 *   _input_projector.{W [ΣD, d_model], b}   _output_head.{W [d_model, ΣC], b}
 *   _blocks.<i>.attn.{q,k,v,out}_proj.weight [d_model, d_model]
 *   _blocks.<i>.mlp.<2k>.{W [in, out], b}     (k = 0 .. len(mlp_hidden_dim))
 *   (spd's non-trainable buffer _blocks.<i>.attn.rope.inv_freq is not stored.)
 * Init (vpd_ci_init, one Philox stream per tensor as for the other kinds): in_proj and
 * MLP hidden Linears N(0, 2/fan_in); last MLP Linear and out_head N(0, 1/fan_in);
 * q, k, v, out U(−1/√d_model, 1/√d_model); biases 0.
 * Toy models (no sequence) use S = 1, where attention is the identity on v. */
typedef struct {
    int d_model, n_blocks, n_heads;
    int n_mlp_hidden;                  /* entries of mlp_hidden_dim (0 allowed) */
    int mlp_hidden[VPD_CI_MAX_HIDDEN];
    int max_len;                       /* RoPE positions 0..S-1 must satisfy S <= max_len */
    double rope_base;
} vpd_ci_transformer_cfg;

/* Like vpd_ci_create for type VPD_CI_GLOBAL_SHARED_TRANSFORMER (layers in strcmp order;
 * d_in of an embedding layer = its C, the caller passing component activations).
 * VPD_ERR_CONFIG naming the simple_transformer_ci_cfg key when cfg is invalid. */
vpd_status vpd_ci_create_transformer(vpd_ci_fn **out, const vpd_ci_layer_spec *layers, int L,
                                     const vpd_ci_transformer_cfg *cfg);
/* Declare that rows are B sequences of S positions (n = b*S + s). Default 1. Call
 * before vpd_ci_reserve or again at any time (the workspace of the transformer grows
 * with S; an existing reservation is resized). VPD_ERR_SHAPE if S < 1 or, for the
 * transformer, S > attn_config.max_len. Kinds other than the transformer ignore S. */
vpd_status vpd_ci_set_seq_len(vpd_ci_fn *ci, int S);

/* ---- the ops table ------------------------------------------------------------------
 * One row per vpd_ci_type (ci_fn.c), as vpd_model_ops for the models: what the kind is and
 * the functions that create, initialise and run it. The generic entry points
 * (vpd_ci_create_from, vpd_ci_init, vpd_ci_forward, vpd_ci_backward, vpd_ci_set_seq_len,
 * vpd_ci_reserve) check their arguments once and call the row; nothing else looks at the
 * type. Adding a CI kind: a vpd_ci_type value, its kernels, one row. */
typedef struct {
    const int *hidden;                         /* ci_config.hidden_dims (the MLP kinds) */
    int n_hidden;
    const vpd_ci_transformer_cfg *transformer; /* simple_transformer_ci_cfg (the transformer) */
} vpd_ci_args;

typedef struct vpd_ci_ops {
    vpd_ci_type type;
    const char *name;    /* ci_config.fn_type */
    bool global;         /* one network over all layers, inputs concatenated in strcmp order */
    bool component_acts; /* a layer's input is its component activations a = x V (mlp) */
    bool parallel;       /* one network per component (spd ParallelLinear: W [C, in, out]) */
    /* build the tensor table (spd names, flat offsets), params, grads and the workspace
     * layout; errors name the config key to change */
    vpd_status (*create)(vpd_ci_fn **out, const struct vpd_ci_ops *ops, const vpd_ci_layer_spec *layers, int L,
                         const vpd_ci_args *args);
    void (*init)(vpd_ci_fn *ci, uint64_t seed);
    vpd_status (*forward)(vpd_ci_fn *ci, real *const *z, const real *const *in, int N);
    void (*backward)(vpd_ci_fn *ci, real *const *din, const real *const *dz, const real *const *in, int N);
    /* rows are B sequences of S positions; NULL: the kind ignores S (no workspace change) */
    vpd_status (*set_seq_len)(vpd_ci_fn *ci, int S);
} vpd_ci_ops;

/* the row of a type, or NULL when out of range */
const vpd_ci_ops *vpd_ci_ops_of(vpd_ci_type t);
/* Create any kind from its arguments (the row's create): what decompositions call. */
vpd_status vpd_ci_create_from(vpd_ci_fn **out, vpd_ci_type type, const vpd_ci_layer_spec *layers, int L,
                              const vpd_ci_args *args);

/* ---- L0 and alive: the one counting rule -------------------------------------------------
 * Shared by the trainer's step metrics, the summary and eval (ci_stats.c). g is one layer's
 * block [N, C] (row-major).
 *   vpd_ci_count_l0: *count += #{(n, c) : g[n, c] > threshold} (L0 = count / rows)
 *   vpd_ci_sum_g:    gsum[c] += Σ_n g[n, c] (mean g = gsum / rows)
 *   vpd_ci_count_alive: #{c : mean_g[c] > VPD_CI_ALIVE_MEAN_G}; alive[c] set when non-NULL */
#define VPD_CI_ALIVE_MEAN_G 1e-6
void vpd_ci_count_l0(const real *g, size_t N, int C, double threshold, double *count);
void vpd_ci_sum_g(const real *g, size_t N, int C, double *gsum);
int vpd_ci_count_alive(const double *mean_g, int C, bool *alive);

/* Views of one named tensor in params / grads. */
vpd_tensor vpd_ci_param_view(const vpd_ci_fn *ci, int i);
vpd_tensor vpd_ci_grad_view(const vpd_ci_fn *ci, int i);
/* index of the tensor with that spd name, or -1 */
int vpd_ci_find_tensor(const vpd_ci_fn *ci, const char *name);

#endif
