/* vpd data: the batches every trainer consumes.
 *
 *  - Synthetic sparse-feature data for the toy models, as spd's SparseFeatureDataset and
 *    ResidMLPDataset generate it (spd/utils/data_utils.py,
 *    spd/experiments/resid_mlp/resid_mlp_dataset.py): each feature present with
 *    probability p (`at_least_zero_active`) or exactly n present per example
 *    (`exactly_<n>_active`), values uniform in [value_min, value_max); labels are the
 *    inputs (TMS) or act(c ⊙ x) + x / |c ⊙ x| (ResidMLP).
 *  - Token data in the nanoGPT `.bin` convention: a flat file of little-endian uint16 or
 *    uint32 token ids, memory-mapped; batches are random windows of S+1 tokens.
 *
 * Layout independence. Every random number comes from the Philox stream keyed by
 * (seed, VPD_RNG_DATA) and indexed by (step, stream, GLOBAL example index, feature), so
 * a rank that generates examples [e0, e0+B) of a global batch gets bit for bit the rows
 * e0..e0+B-1 of what one process generating the whole batch gets. `stream` separates
 * training from evaluation data (VPD_DATA_TRAIN, VPD_DATA_EVAL, or any other small
 * integer a caller wants as an independent stream).
 *
 * Toy streams: Philox counter (step, 2·stream) holds presence words (sort keys for
 * exactly_n_active), counter (step, 2·stream + 1) value words; example e, feature f uses
 * word e·F + f of each (for exactly_n_active the j-th chosen feature takes value word
 * e·F + j), and values are drawn only for present features. Token windows: counter
 * (step, stream | 0x10000), example e uses words 2e and 2e+1 (a 64-bit start offset). */
#ifndef VPD_DATA_H
#define VPD_DATA_H

#include "vpd/core.h"

enum { VPD_DATA_TRAIN = 0, VPD_DATA_EVAL = 1 };

/* ---- synthetic sparse features --------------------------------------------------- */
typedef enum {
    VPD_GEN_AT_LEAST_ZERO_ACTIVE = 0, /* each feature independently present with probability p */
    VPD_GEN_EXACTLY_N_ACTIVE = 1      /* exactly n_active features present (uniform n-subset) */
} vpd_data_gen;

typedef enum {
    VPD_LABEL_INPUT = 0,          /* labels = x (TMS; spd's loss uses |labels|) */
    VPD_LABEL_ACT_PLUS_RESID = 1, /* labels = act(c ⊙ x) + x (ResidMLP) */
    VPD_LABEL_ABS = 2             /* labels = |c ⊙ x| */
} vpd_label_type;

typedef enum { VPD_LABEL_ACT_RELU = 0, VPD_LABEL_ACT_GELU = 1 } vpd_label_act;

typedef struct {
    int n_features;
    double feature_probability; /* at_least_zero_active */
    vpd_data_gen gen;
    int n_active;               /* exactly_n_active: 1..5 in spd, any 1..n_features here */
    double value_min, value_max; /* TMS [0, 1); ResidMLP [-1, 1) */
    vpd_label_type label;
    vpd_label_act act;
    real *coeffs;               /* [n_features] label coefficients c (owned; all 1 by default) */
    uint64_t seed;
    uint32_t *keys;             /* [n_features] scratch: one example's presence words (owned) */
} vpd_toy_data;

/* Map spd's data_generation_type string ("at_least_zero_active", "exactly_one_active" ...
 * "exactly_five_active") to (gen, n_active). VPD_ERR_CONFIG naming `key` otherwise. */
vpd_status vpd_data_gen_parse(const char *s, const char *key, vpd_data_gen *gen, int *n_active);
const char *vpd_data_gen_name(vpd_data_gen gen, int n_active);

/* Set up a generator: value range [0, 1), labels = inputs, coefficients 1. Callers change
 * value_min/max, label, act afterwards, and coeffs through vpd_toy_data_random_coeffs.
 * Checks 0 <= p <= 1, 1 <= n_active <= n_features. Free with vpd_toy_data_free. */
vpd_status vpd_toy_data_init(vpd_toy_data *d, int n_features, vpd_data_gen gen, int n_active,
                             double feature_probability, uint64_t seed);
void vpd_toy_data_free(vpd_toy_data *d);
/* spd's calc_label_coeffs: c_f ~ U[1, 2) (drawn from the Philox data stream of
 * `label_fn_seed`, not from torch's generator, so the values differ from spd's). */
void vpd_toy_data_random_coeffs(vpd_toy_data *d, uint64_t label_fn_seed);

/* Examples [e0, e0+B) of global batch `step` of `stream`: x[B, F] and labels[B, F]
 * (labels may be NULL). Not thread-safe per generator (uses its scratch). */
void vpd_toy_batch(vpd_toy_data *d, uint32_t stream, uint64_t step, int64_t e0, int B, real *x,
                   real *labels);
/* labels[n, F] from x[n, F] with the generator's label function */
void vpd_toy_labels(const vpd_toy_data *d, const real *x, real *labels, int n);

/* ---- token files -------------------------------------------------------------------- */
typedef struct {
    char path[512];
    int fd;
    const unsigned char *map; /* read-only mapping of the whole file */
    size_t bytes;
    int width;                /* 2 (uint16) or 4 (uint32) */
    int64_t n_tokens;
    int vocab_size;           /* ids must be < vocab_size (checked per window read) */
    bool heap;                /* map is a heap copy (HDF5 input), not an mmap */
} vpd_tokens;

/* "uint16" / "u16" / "uint32" / "u32" -> 2 / 4; VPD_ERR_CONFIG naming `key` otherwise */
vpd_status vpd_tokens_dtype_parse(const char *s, const char *key, int *width);
/* HDF5 input instead of a flat binary: a path "FILE.h5" (dataset "tokens") or
 * "FILE.h5:/path/to/dataset" — any integer dataset of any shape, read whole into memory
 * (row-major, flattened: windows may span rows, as with a concatenated .bin). */
/* Map `path`. Fails (naming the file) if it is missing, empty, not a multiple of `width`
 * bytes, or holds fewer than 2 tokens. Token ids are NOT scanned here (files can be
 * hundreds of GB); each window is checked when read. Close with vpd_tokens_close. */
vpd_status vpd_tokens_open(vpd_tokens *t, const char *path, int width, int vocab_size);
void vpd_tokens_close(vpd_tokens *t);

/* One window: inputs[S] = tokens[start .. start+S), targets[S] = tokens[start+1 .. start+S].
 * VPD_ERR_VALUE naming the file, the byte offset and the id if an id is >= vocab_size;
 * VPD_ERR_ARG if the window does not fit. */
vpd_status vpd_tokens_window(const vpd_tokens *t, int64_t start, int S, int32_t *inputs, int32_t *targets);
/* Start offset (in tokens) of example e of batch `step` of `stream`: uniform over the
 * n_tokens - S possible windows of S+1 tokens. */
int64_t vpd_tokens_start(const vpd_tokens *t, uint64_t seed, uint32_t stream, uint64_t step, int64_t e, int S);
/* Examples [e0, e0+B) of batch `step`: inputs[B, S], targets[B, S] (row-major). Fails as
 * vpd_tokens_window, or with VPD_ERR_ARG when the file is shorter than S+1 tokens. */
vpd_status vpd_tokens_batch(const vpd_tokens *t, uint64_t seed, uint32_t stream, uint64_t step, int64_t e0,
                            int B, int S, int32_t *inputs, int32_t *targets);

#endif
