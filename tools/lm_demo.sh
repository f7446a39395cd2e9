#!/usr/bin/env bash
# The language-model demo, end to end on one machine (run from the project root after a build):
#   1. the demo corpus from Debian packages (tools/make_corpus.sh -> data/corpus/{train,val}.txt)
#   2. a 4096-token byte-level BPE trained on it (vpd tokenize --train -> data/corpus/tokenizer.json)
#   3. token files (data/corpus/{train,val}.bin)
#   4. the 4-layer d_model-128 LlamaSimpleMLP target (configs/lm_4L_128-target.yaml -> models/lm_4L_128)
#   5. its decomposition with the paper's losses (configs/lm_4L_128.yaml -> runs/lm_4L_128; resumable:
#      rerun this script, or `vpd decompose --resume runs/lm_4L_128`, to continue after a stop)
#   6. vpd eval of the run
# (the tokenizer is copied beside the target's weights after step 4)
# Each step is skipped when its output exists. Extra arguments go to `vpd decompose`
# (e.g. --set pd.steps=500). Usage: tools/lm_demo.sh [BUILD_DIR] [decompose options...]
# The decomposition runs one MPI rank per core with one OpenBLAS thread each (VPD_RANKS,
# default nproc; it must divide the batch of 8): measured on this machine kind, 2 ranks x 1
# thread use the second core better than 1 rank x 2 BLAS threads (issue 16).
set -euo pipefail
BUILD=${1:-build}
shift || true
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VPD="$ROOT/$BUILD/bin/vpd"
[[ -x "$VPD" ]] || { echo "lm_demo: $VPD not found: run make build first" >&2; exit 1; }
C=data/corpus
[[ -f $C/train.txt && -f $C/val.txt ]] || bash tools/make_corpus.sh
[[ -f $C/tokenizer.json ]] || "$VPD" tokenize --train --vocab 4096 --special '<|endoftext|>' $C/train.txt --out $C/tokenizer.json
[[ -f $C/train.bin ]] || "$VPD" tokenize --tokenizer $C/tokenizer.json $C/train.txt --out $C/train.bin
[[ -f $C/val.bin ]] || "$VPD" tokenize --tokenizer $C/tokenizer.json $C/val.txt --out $C/val.bin
[[ -f models/lm_4L_128/model.safetensors ]] || "$VPD" pretrain configs/lm_4L_128-target.yaml
# the tokenizer beside the weights, as in a Hugging Face model directory: harvest, report,
# attrib and generate find it there
[[ -f models/lm_4L_128/tokenizer.json ]] || cp $C/tokenizer.json models/lm_4L_128/tokenizer.json
RANKS=${VPD_RANKS:-$(nproc)}
command -v mpiexec >/dev/null 2>&1 || RANKS=1
DECOMPOSE=("$VPD")
if [[ "$RANKS" -gt 1 ]]; then
    export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
    DECOMPOSE=(mpiexec -n "$RANKS" -x OPENBLAS_NUM_THREADS)
    [[ $(id -u) -eq 0 ]] && DECOMPOSE+=(--allow-run-as-root)
    DECOMPOSE+=("$VPD")
fi
if [[ -d runs/lm_4L_128/checkpoints ]] && ls runs/lm_4L_128/checkpoints/ckpt-*.h5 >/dev/null 2>&1 && [[ ! -f runs/lm_4L_128/run.h5 ]]; then
    "${DECOMPOSE[@]}" decompose --resume runs/lm_4L_128 "$@"
elif [[ ! -f runs/lm_4L_128/run.h5 ]]; then
    "${DECOMPOSE[@]}" decompose configs/lm_4L_128.yaml --out runs/lm_4L_128 "$@"
fi
"$VPD" eval runs/lm_4L_128
