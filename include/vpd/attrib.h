/* vpd attrib: the attribution graph of a prompt (VPD_METHOD.md §6), src/analysis/attrib.c.
 *
 * Nodes are the subcomponents (layer, c, position) with g > 0 on the prompt (or any CI
 * the caller passes, e.g. an optimised one) plus the output logit of a target token at
 * position t*. The edge c' → c is
 *     w = ∂a_c/∂ã_c' · ã_c',   ã_c' = g_c'·a_c' (the masked activation the layer uses),
 * i.e. (∂a_c/∂a_c')·a_c'·g_c' of §6 with the derivative taken with respect to the
 * activation as it enters its layer's output (g counted once), a = V_cᵀx. The forward is
 * the masked model: every decomposed layer y = (a ⊙ g) U + Δ x (+ b), Δ = W − (VU)ᵀ with
 * mask 1 (a non-node: it carries gradient but has no edges, as spd's attribution code
 * keeps the weight deltas in its gradient pass). The gradient is stopped at every
 * subcomponent other than the source: in the backward each decomposed layer passes the
 * gradient of y only through Δ (dx = dy Δ), never through its components (direct effects;
 * skips across layers are included). Edges stay within a position except k/v → o inside
 * one attention layer (source position ≤ target position); cross-position paths through
 * Δ_k / Δ_v are dropped as spd does. Edges to the output node: ∂logit_T/∂ã_c' · ã_c'.
 *
 * Computation: one forward of the whole prompt, then one row-restricted backward per chunk of
 * up to `batch` target nodes at one position t (vpd_model_backward_position: `batch` gradient
 * copies living at row t only, attention reaching k/v rows s <= t; cost ~ batch · (the model
 * on one row + attention over t+1 keys)). Work items (t, chunk) are dealt round-robin over
 * the ranks of comm and gathered on rank 0, so the graph is the same for any rank count; the
 * output node is its own single-copy item. Memory: the one-sequence forward's activations
 * (linear in S with row-block attention, vpd_model_set_attention_rows; else H·S² per layer),
 * O(ΣC·S + S·V), batch·S·(2·KV + C_kv) for the k/v rows of a chunk, and the edges;
 * vpd_attrib_batch_for_budget picks the batch for a memory budget. */
#ifndef VPD_ATTRIB_H
#define VPD_ATTRIB_H

#include <mpi.h>

#include "vpd/decomp.h"

#define VPD_ATTRIB_MAX_BATCH 4096 /* target nodes per backward, at most */

typedef struct {
    int layer;        /* decomposed layer (index into d->layers); -1: the output logit */
    int c;            /* subcomponent; the output node: the target token */
    int pos;          /* position in the prompt */
    double g;         /* CI (mask) of the node; the output node: 1 */
    double act;       /* a_c = V_cᵀx in the attribution forward; the output node: the logit */
    double influence; /* circuit-tracer influence on the output node (vpd_attrib_influence) */
} vpd_attrib_node;

typedef struct {
    int32_t src, dst; /* node indices */
    double w;
} vpd_attrib_edge;

typedef struct {
    int S, target_pos, target_token;
    int n_nodes;
    vpd_attrib_node *nodes; /* topological: layers in forward order, then position, then c;
                               the output node last */
    int64_t n_edges;
    vpd_attrib_edge *edges; /* sorted by (dst, src); rank 0 only */
    double logit, prob;     /* the target's logit and probability at t* in the attribution
                               forward (masks g, Δ on) */
    int64_t n_backward;     /* backward passes (chunks) over all ranks */
    int batch;              /* target nodes per backward */
    int max_in_links;       /* the in-link cap (0: none) */
    int64_t n_links_dropped; /* links the cap dropped (not in edges) */
    double w_dropped, w_total; /* their Σ|w|; Σ|w| of every computed link (kept + dropped; 0
                                  when max_in_links is 0) */
} vpd_attrib_graph;

/* g [ΣC·S] (layer-major: layer k's [S, C_k] block at S·c_off) of the prompt tokens[S]:
 * the target forward and the CI function on a decomposition whose batch is one sequence
 * of exactly S positions (vpd_run_open_seq(.., batch 1, S, ..)). */
vpd_status vpd_attrib_prompt_ci(vpd_decomp *d, const int32_t *tokens, int S, real *g);

/* The graph of tokens[S] with masks g [ΣC·S] (nodes: g > 0) and the output node
 * (target_pos, target_token). batch: target nodes per backward (>= 1). max_in_links K > 0:
 * every node keeps its K in-links of largest |w| (ties: smaller src), so the graph holds at
 * most K links per node, linear in S (without it the k/v → o links grow as S²); the dropped
 * links' count and Σ|w| are in the graph. 0: every link. Collective over
 * comm; edges end on rank 0 (others: n_edges 0). The decomposition must be held whole
 * (component_parallel 1); its target is reserved for 1 × S and its row-restricted backward
 * for `batch` copies (vpd_model_reserve_position). */
vpd_status vpd_attrib_compute(vpd_decomp *d, const int32_t *tokens, int S, const real *g, int target_pos,
                              int target_token, int batch, int max_in_links, MPI_Comm comm, vpd_attrib_graph *gr);

/* The largest batch <= `batch` (>= 1) whose passes over S positions fit budget_bytes: the
 * target's one-sequence activations (with its current attention mode), the row-restricted
 * backward's buffers for `batch` copies and the ∂/∂m scratch of vpd_attrib_compute (the
 * batch-dependent parts linear in batch × S); *bytes (may be NULL) gets that memory. The rest
 * of vpd_attrib_compute's memory is O(ΣC·S + S·V) and the edges. */
int vpd_attrib_batch_for_budget(vpd_decomp *d, int S, int batch, size_t budget_bytes, size_t *bytes);

/* circuit-tracer's influence: A = |edge weights| normalised so every node's incoming
 * weights sum to 1; influence = e_out (A + A² + …), the logit row of (I − A)⁻¹ − I,
 * computed in one reverse-topological sweep. The output node gets 1. */
void vpd_attrib_influence(vpd_attrib_graph *gr);

/* Metadata and labels for the files. */
typedef struct {
    const char *prompt;          /* the text (or NULL) */
    const char *const *tok_str;  /* [S] display strings of the prompt tokens */
    const char *target_str;      /* display string of the target token */
    const char *const *labels;   /* [ΣC] clerp labels (global subcomponent index c_off + c) or NULL */
    const char *run_dir;
    double seconds;
    int n_ranks;
    int prune_steps;             /* 0: unpruned */
    double p_pruned[3];          /* P(target) of the pruned graph under CI, stochastic, adversarial masks */
    double p_unpruned[3];        /* the same for every subcomponent alive on the prompt (prune_steps > 0) */
    int n_alive;                 /* (position, subcomponent) pairs alive on the prompt (g > 0) */
    double node_threshold;       /* circuit-tracer pruning of the written graph: the nodes of largest */
    double edge_threshold;       /* influence up to this fraction of the total, then the edges of largest
                                    influence among them likewise; >= 1 keeps everything */
} vpd_attrib_meta;

/* The written subgraph: keep_node [n_nodes], keep_edge [n_edges] (the output node always;
 * see vpd_attrib_meta's thresholds). Needs vpd_attrib_influence first. */
vpd_status vpd_attrib_select(const vpd_attrib_graph *gr, double node_threshold, double edge_threshold, bool *keep_node,
                             bool *keep_edge);

/* circuit-tracer's graph JSON (metadata, qParams, nodes, links) of the selected subgraph. */
vpd_status vpd_attrib_write_json(const vpd_attrib_graph *gr, const vpd_decomp *d, const vpd_attrib_meta *meta,
                                 const char *path);
/* Graphviz dot of the top_edges edges by |weight| and the nodes they touch. */
vpd_status vpd_attrib_write_dot(const vpd_attrib_graph *gr, const vpd_decomp *d, const vpd_attrib_meta *meta,
                                int top_edges, const char *path);
/* The same edges drawn as SVG without Graphviz: x = position, y = layer (forward order),
 * the output on top; colour = sign, width = |weight|; tooltips carry the numbers. */
vpd_status vpd_attrib_write_svg(const vpd_attrib_graph *gr, const vpd_decomp *d, const vpd_attrib_meta *meta,
                                int top_edges, const char *path);
void vpd_attrib_graph_free(vpd_attrib_graph *gr);

#endif
