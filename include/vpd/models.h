/* vpd models: the target models (TMS, ResidMLP, LlamaSimpleMLP), their flat parameter
 * block with PyTorch names, forward/backward, and the hook through which the
 * decomposition replaces any linear (or embedding) layer.
 *
 * A model owns one flat parameter block (`params`, n_params floats) described by a
 * table of PyTorch-named tensors (`pinfo`), and a table of decomposable layers
 * (`layers`) named as PyTorch names the module ("linear1", "layers.0.mlp_in",
 * "h.2.attn.k_proj", "wte"). Activations live in one arena sized by
 * vpd_model_reserve(B, S) and reused by every forward.
 *
 * Hooks. vpd_model_forward computes every decomposable layer through
 * hook->forward when a hook is given (else y = W x + b from the target weights), and
 * vpd_model_backward calls hook->backward for those layers in reverse order. The
 * hook receives the layer index, its input rows and writes the output rows; in
 * backward it gets dy, accumulates dx (when dx != NULL) and whatever it trains. */
#ifndef VPD_MODELS_H
#define VPD_MODELS_H

#include <mpi.h>

#include "vpd/core.h"

typedef enum {
    VPD_MODEL_TMS = 0,
    VPD_MODEL_RESID_MLP = 1,
    VPD_MODEL_LLAMA = 2,
    VPD_MODEL_GPT2 = 3,     /* Hugging Face model_type "gpt2" (src/models/hf_gpt2.c) */
    VPD_MODEL_GPT_NEOX = 4, /* Hugging Face model_type "gpt_neox", Pythia (src/models/hf_neox.c) */
    VPD_MODEL_HF_LLAMA = 5, /* Hugging Face llama / qwen2 / qwen3 (src/models/hf_llama.c) */
} vpd_model_kind;

/* Language models (token input, logits [B, S, vocab]): every kind but the two toy models. */
static inline bool vpd_model_is_lm(vpd_model_kind k) { return k != VPD_MODEL_TMS && k != VPD_MODEL_RESID_MLP; }

typedef enum { VPD_HF_ARCH_LLAMA = 0, VPD_HF_ARCH_QWEN2 = 1, VPD_HF_ARCH_QWEN3 = 2 } vpd_hf_arch;
typedef enum { VPD_ROPE_DEFAULT = 0, VPD_ROPE_LINEAR = 1, VPD_ROPE_LLAMA3 = 2 } vpd_rope_type;

typedef struct {
    vpd_model_kind kind;
    /* TMS: n_features -> n_hidden -> n_features, tied weights, ReLU output, bias */
    /* ResidMLP: n_features, d_embed, d_mlp, n_layers; ReLU; no biases */
    int n_features, n_hidden, d_embed, d_mlp;
    /* LlamaSimpleMLP */
    int vocab_size, n_ctx, n_embd, n_head, n_key_value_heads, n_intermediate;
    int n_layers; /* ResidMLP and Llama */
    double rms_eps;    /* 1e-6 */
    double rope_theta; /* 10000 */
    /* GPT-2 (hf_gpt2.c) and GPT-NeoX (hf_neox.c): vocab_size, n_ctx (n_positions /
     * max_position_embeddings), n_embd, n_head, n_intermediate, n_layers as above
     * (n_key_value_heads = n_head); rope_theta = rotary_emb_base (NeoX) */
    double ln_eps;          /* LayerNorm eps: layer_norm_epsilon / layer_norm_eps */
    int gelu_tanh;          /* 1: tanh GELU ("gelu_new", GPT-2's), 0: exact erf GELU ("gelu", NeoX's) */
    double rotary_pct;      /* NeoX: fraction of each head that rotates */
    int rotary_dim;         /* NeoX: (int)(rotary_pct · head dim), even, >= 2 */
    bool parallel_residual; /* NeoX use_parallel_residual: x + attn(ln1 x) + mlp(ln2 x) */
    /* HF llama / qwen2 / qwen3 (VPD_MODEL_HF_LLAMA): n_embd = hidden_size, n_head,
     * n_key_value_heads, n_intermediate, n_layers, vocab_size, n_ctx = max_position_embeddings,
     * rms_eps, rope_theta above, and: */
    vpd_hf_arch hf_arch;
    int head_dim;          /* config head_dim, else hidden_size / num_attention_heads */
    bool tie_embeddings;   /* lm_head.weight = model.embed_tokens.weight */
    bool qkv_bias, o_bias; /* q/k/v_proj and o_proj biases (qwen2: qkv; llama attention_bias: all four) */
    bool mlp_bias;         /* gate/up/down_proj biases (llama mlp_bias) */
    bool qk_norm;          /* per-head RMSNorm of q and k before RoPE (qwen3) */
    vpd_rope_type rope_type;
    double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos;
} vpd_model_config;

typedef struct {
    char name[96]; /* PyTorch state_dict name, e.g. "h.0.attn.q_proj.weight" */
    int ndim;
    int64_t shape[4];
    size_t offset; /* into params */
    size_t numel;
    bool trainable; /* false for fixed buffers such as ResidMLP's W_E */
    /* GPT-2 Conv1D weights: the checkpoint stores [in, out] (shape[1], shape[0]); vpd keeps
     * them [out, in] = shape (the hook's PyTorch-Linear layout). Load and save transpose. */
    bool file_transposed;
} vpd_param_info;

typedef struct {
    char name[64];   /* module name: "linear1", "layers.0.mlp_in", "h.0.mlp.c_fc", "wte" */
    int d_in, d_out; /* embedding: d_in = vocab, d_out = d_model */
    bool embedding;  /* input is token ids; W is [vocab, d] (y = W[tok]) */
    const real *W;   /* [d_out, d_in] for linear layers (PyTorch layout); [vocab, d] for embeddings */
    const real *b;   /* [d_out] or NULL */
} vpd_layer_info;

typedef struct vpd_hook vpd_hook;
struct vpd_hook {
    /* y[N, d_out] of layer l from its input x[N, d_in] (tok[N] for an embedding; x NULL). */
    void (*forward)(vpd_hook *h, int l, const real *x, const int32_t *tok, real *y, int N);
    /* Given dy[N, d_out]: accumulate dx[N, d_in] (dx may be NULL) and the hook's own gradients. */
    void (*backward)(vpd_hook *h, int l, const real *x, const int32_t *tok, const real *dy, real *dx, int N);
};

/* Row-restricted backward (vpd_model_backward_position): the gradient lives at one row t of a
 * one-sequence forward, in n copies. Layer l gets its output gradient for the n copies at the R
 * rows t−R+1..t, dy [n, R, d_out] (copy-major), and x [R, d_in], the forward's input rows
 * t−R+1..t shared by the copies (tok [R] for an embedding, x NULL). R = 1 except for the k/v
 * projections the caller asked for (kv_rows), whose rows s < t are reached through attention:
 * the hook may read them (vpd attrib's k/v → o edges), their gradient goes no further. The
 * hook accumulates dx [n, d_in], the input gradient at row t only, formed from dy's row t (the
 * last of each copy's R rows); dx is NULL where nothing below needs it (the embedding). */
typedef struct vpd_row_hook vpd_row_hook;
struct vpd_row_hook {
    void (*backward)(vpd_row_hook *h, int l, int t, int R, const real *x, const int32_t *tok, const real *dy, real *dx,
                     int n);
};

/* Model input: toy models take float features x[B, n_features]; the LM takes tokens[B, S]. */
typedef struct {
    int B, S;              /* S = 1 for toy models */
    const real *x;         /* [B, n_features] or NULL */
    const int32_t *tokens; /* [B, S] or NULL */
} vpd_model_input;

typedef struct vpd_model {
    vpd_model_config cfg;
    real *params;
    size_t n_params;
    int n_pinfo;
    vpd_param_info *pinfo;
    int n_layers;
    vpd_layer_info *layers; /* in forward order */
    int B, S;               /* activation capacity from vpd_model_reserve */
    vpd_arena acts;
    vpd_arena pos_acts; /* the row-restricted backward's buffers (vpd_model_reserve_position) */
    int pos_n, pos_S;   /* their capacity: copies, positions */
    int prefix_valid; /* activations before this layer are the last full forward's (forward_from) */
    int max_context;  /* > n_ctx: sequences up to this length allowed (vpd_model_extend_context); 0 = n_ctx */
    int attn_rows;    /* > 0: row-block attention without the S×S probabilities (vpd_model_set_attention_rows) */
    void *impl; /* model-specific activation pointers */
    void *node_shared; /* params live in a node-shared window (vpd_model_create_node_shared) */
} vpd_model;

/* sizes of the output of one forward: toy models [B, n_features]; LM [B, S, vocab] */
size_t vpd_model_out_size(const vpd_model *m, int B, int S);
int vpd_model_out_dim(const vpd_model *m);

vpd_status vpd_model_create(vpd_model *m, const vpd_model_config *cfg);
/* The same with the parameter block allocated once per node and shared by the node's ranks
 * (include/vpd/comm.h vpd_node_shared_alloc; collective over comm). The caller on
 * *node_rank 0 fills the parameters, then every rank calls vpd_node_shared_sync(m->node_shared);
 * they are read-only afterwards. vpd_model_free releases the window (collective as well). */
vpd_status vpd_model_create_node_shared(vpd_model *m, const vpd_model_config *cfg, MPI_Comm comm, int *node_rank);
/* PyTorch-default-like random init from the counter-based RNG (pretraining starts here) */
void vpd_model_init_params(vpd_model *m, uint64_t seed);
/* After params change (load, optimizer step): refresh derived views (TMS's transposed linear2). */
void vpd_model_sync(vpd_model *m);
vpd_status vpd_model_reserve(vpd_model *m, int B, int S);
/* The longest sequence the model accepts: n_ctx, or max_context after vpd_model_extend_context. */
int vpd_model_context(const vpd_model *m);
/* Allow sequences of up to n > n_ctx positions (extrapolation past the trained context):
 * rotary models only (llama_simple_mlp, HF llama/qwen, GPT-NeoX), which have no position
 * table; VPD_ERR_ARG for learned position embeddings (gpt2) and toy models. n <= n_ctx
 * restores the trained context. The caller warns that the model was trained on n_ctx. */
vpd_status vpd_model_extend_context(vpd_model *m, int n);
/* Attention without the [B, H, S, S] probabilities (llama_simple_mlp): rows > 0 runs
 * attention_rows_forward/backward in blocks of `rows` query rows, keeping only the
 * [B, H, S] log-sum-exp and recomputing each block's probabilities in the backward
 * (memory linear in S); 0 keeps the probabilities (the default, fastest at short S).
 * Other kinds ignore it. An already reserved model is re-laid out at its capacity
 * (its activations are lost: run a forward again). */
vpd_status vpd_model_set_attention_rows(vpd_model *m, int rows);
/* Bytes of activations vpd_model_reserve(B, S) would allocate (with the current attention mode). */
size_t vpd_model_activation_bytes(vpd_model *m, int B, int S);
/* out as vpd_model_out_size; hook may be NULL. in->B, in->S <= reserved. LlamaSimpleMLP:
 * out NULL skips ln_f and the logits (only the hook's layers are wanted). */
void vpd_model_forward(vpd_model *m, const vpd_model_input *in, real *out, vpd_hook *hook);
/* Backward of the last forward. dout as out (LlamaSimpleMLP: NULL = zero, the gradient
 * enters through the hook; the forward may then have skipped the logits). dparams [n_params] (may be NULL) accumulates the
 * parameter gradient (tied weights summed into their one tensor); dinput (may be NULL)
 * accumulates d/dx for toy models. */
void vpd_model_backward(vpd_model *m, const real *dout, real *dparams, real *dinput, vpd_hook *hook);
/* The forward of the last vpd_model_forward's input again, from decomposable layer `from`
 * on: the input and the activations computed before layer `from` are reused, not
 * recomputed. The caller promises that `hook` computes every layer before `from` as the
 * hook of the last full forward did (e.g. both give the target's values there). The model
 * starts earlier when a previous vpd_model_forward_from has overwritten activations before
 * `from`, so the result is always that of vpd_model_forward with the same input. */
void vpd_model_forward_from(vpd_model *m, int from, real *out, vpd_hook *hook);
/* Backward of the last forward down to decomposable layer `to` only: hook->backward is called
 * for the layers >= `to`, with dx = NULL where the input gradient would only flow below
 * `to` (the layers below have nothing to train); no parameter or input gradients. */
void vpd_model_backward_to(vpd_model *m, const real *dout, vpd_hook *hook, int to);
/* Row-restricted backward (vpd attrib, issue 14): of the last vpd_model_forward of ONE sequence
 * (B = 1), n_copies gradients that live only at row t in every layer — residual stream, norms,
 * MLP, the decomposable layers — except inside attention, where the gradient of the attention
 * output at row t reaches q at row t and k, v at rows s <= t; k/v rows s < t are handed to the
 * hook only for the k/v layers with kv_rows[l] (kv_rows [n_layers] or NULL), and go no further.
 * So it is the exact backward of row t's output when nothing but row t carries gradient past
 * a layer: what vpd attrib's stop-gradient edges need. Cost per call ~ n_copies · (the model
 * on one row + attention over t+1 keys). dout [n_copies, V]: the gradient of the logits of row
 * t per copy (NULL: zero; the gradient enters through the hook's dx). top: the last
 * decomposable layer whose hook call brings gradient in (with dout NULL): the blocks after its
 * block carry none and are skipped; -1: the whole model. hook NULL: every layer through the
 * target weights. LlamaSimpleMLP only: VPD_ERR_ARG for other kinds, a forward of B > 1, t
 * outside it, or more copies than vpd_model_reserve_position reserved. */
vpd_status vpd_model_backward_position(vpd_model *m, int t, int n_copies, const real *dout, const bool *kv_rows, int top,
                                       vpd_row_hook *hook);
/* Buffers of vpd_model_backward_position for n_copies at the reserved positions m->S (call
 * after vpd_model_reserve; allocated once, kept for later calls); VPD_ERR_ARG for kinds
 * without it. vpd_model_position_bytes: what it would allocate for (n_copies, S) positions,
 * the attention kernel's per-thread work included. */
vpd_status vpd_model_reserve_position(vpd_model *m, int n_copies);
size_t vpd_model_position_bytes(vpd_model *m, int n_copies, int S);
int vpd_model_find_layer(const vpd_model *m, const char *name);
int vpd_model_find_param(const vpd_model *m, const char *name);
void vpd_model_free(vpd_model *m);
const char *vpd_model_kind_name(vpd_model_kind k);

/* ---- model directories (src/models/model_io.c: config.json + safetensors / HDF5 weights) ---- */
typedef enum { VPD_WEIGHTS_SAFETENSORS = 0, VPD_WEIGHTS_H5 = 1 } vpd_weights_format;

/* Parse <dir>/config.json. Unsupported values are VPD_ERR_CONFIG naming config.json and the key. */
vpd_status vpd_model_config_read(vpd_model_config *cfg, const char *dir);
/* Same from JSON text; `source` names it in messages (e.g. "run.h5:/config"). */
vpd_status vpd_model_config_parse(vpd_model_config *cfg, const char *json, const char *source);
/* config.json text for cfg (malloc'd, free with free()); NULL on allocation failure. */
char *vpd_model_config_to_json(const vpd_model_config *cfg);
/* config.json + model.safetensors (else model.h5) -> vpd_model_create + weights + sync.
 * Every tensor in m->pinfo is read by its PyTorch name and shape and checked finite.
 * Extra tensors in the file produce a warning, except the model's tied duplicates
 * (TMS linear2.weight = linear1.weight^T, Llama lm_head.weight = wte.weight), which may
 * replace a missing partner and are checked to agree. On failure m is freed. */
vpd_status vpd_model_load(vpd_model *m, const char *dir);
/* vpd_model_load with the weights read once per node (by its first rank) into a node-shared
 * parameter block (vpd_model_create_node_shared); collective over comm, every rank returns
 * the same status. */
vpd_status vpd_model_load_node_shared(vpd_model *m, const char *dir, MPI_Comm comm);
/* Create dir (mkdir -p) and write config.json + model.safetensors (all pinfo tensors plus
 * the tied duplicates, so PyTorch's load_state_dict(strict=True) accepts the file). */
vpd_status vpd_model_save(const vpd_model *m, const char *dir);
vpd_status vpd_model_save_as(const vpd_model *m, const char *dir, vpd_weights_format fmt);

#endif
