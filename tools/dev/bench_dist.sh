#!/bin/sh
# Scaling of the data-parallel trainer from 1 to 2 ranks on this machine (docs/distribution.md).
#   tools/dev/bench_dist.sh [BUILD_DIR] [WORK_DIR] [STEPS]
# Needs BUILD_DIR/bin/vpd and BUILD_DIR/bin/bench_dist (built by tests/cmake/dist.cmake).
# For each workload, runs `bench_dist CONFIG --set steps=STEPS` (= `vpd decompose` with a meter
# on vpd_trainer_step and MPI_Allreduce) as
#   mpiexec -n 1 --bind-to none   (one rank may use both cores through OpenBLAS threads)
#   mpiexec -n 1                  (one rank bound to one core: the per-core baseline)
#   mpiexec -n 2                  (two ranks, one core each)
# and prints the BENCH lines. Workloads:
#   resid_mlp1   configs/resid_mlp1.yaml (target pretrained into WORK_DIR/models/resid_mlp1 if
#                missing: `vpd pretrain configs/resid_mlp1-target.yaml`, ~45 s)
#   llama_tiny   a random LlamaSimpleMLP from tools/reference/reference_models.py --kind llama (d 32,
#                2 blocks, vocab 97, n_ctx raised to 64), random tokens, global_shared_mlp CI,
#                KL output, batch 16 x 64 tokens, 12 decomposed matrices + wte.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
WORK=${2:-/tmp/vpd_bench_dist}
STEPS=${3:-50}
PY=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$WORK"
cd "$WORK"

if [ ! -f models/resid_mlp1/model.safetensors ]; then
  if [ -f "$ROOT/models/resid_mlp1/model.safetensors" ]; then
    mkdir -p models && cp -r "$ROOT/models/resid_mlp1" models/
  else
    "$BUILD/bin/vpd" pretrain "$ROOT/configs/resid_mlp1-target.yaml" --out models/resid_mlp1
  fi
fi

if [ ! -f llama/model/model.safetensors ]; then
  mkdir -p llama
  $PY "$ROOT/tools/reference/reference_models.py" --kind llama --out llama/model >/dev/null
  $PY - <<'EOF'
import json, numpy as np
p = "llama/model/config.json"
c = json.load(open(p)); c["n_ctx"] = 64; json.dump(c, open(p, "w"), indent=2)
rng = np.random.default_rng(0)
rng.integers(0, c["vocab_size"], size=400_000, dtype=np.uint16).tofile("llama/train.bin")
EOF
fi
cat > llama/lm.yaml <<EOF
seed: 0
n_mask_samples: 1
ci_config: {mode: global, fn_type: global_shared_mlp, hidden_dims: [64]}
module_info:
  - {module_pattern: "h.*.mlp.*", C: 32}
  - {module_pattern: "h.*.attn.*", C: 16}
  - {module_pattern: "wte", C: 32}
loss_metric_configs:
  - {classname: ImportanceMinimalityLoss, coeff: 2e-4, pnorm: 2.0, beta: 0.5, p_anneal_start_frac: 0.0, p_anneal_final_p: 0.4, p_anneal_end_frac: 1.0}
  - {classname: StochasticReconSubsetLoss, coeff: 0.5, routing: {type: uniform_k_subset}}
  - classname: PersistentPGDReconLoss
    coeff: 0.5
    optimizer: {type: adam, lr_schedule: {start_val: 0.01, fn_type: constant, warmup_pct: 0.025}, beta1: 0.5, beta2: 0.99}
    scope: {type: per_batch_per_position}
    n_warmup_steps: 2
  - {classname: FaithfulnessLoss, coeff: 1e7}
output_loss_type: kl
batch_size: 16
steps: 50
lr_schedule: {start_val: 5e-4, fn_type: cosine, final_val_frac: 0.1}
grad_clip_norm_components: 0.01
faithfulness_warmup_steps: 10
train_log_freq: 1000
task_config: {task_name: lm, max_seq_len: 64}
target: {path: $WORK/llama/model}
data: {train: $WORK/llama/train.bin}
EOF

run() { # name np extra-mpiexec-flags config [--set ...]
  name=$1; np=$2; flags=$3; cfg=$4; shift 4
  printf '%-11s np=%s %-16s ' "$name" "$np" "${flags:-(bound)}"
  # shellcheck disable=SC2086
  mpiexec -n "$np" $flags "$BUILD/bin/bench_dist" "$cfg" --set steps="$STEPS" --out "runs/${name}_np${np}" --quiet "$@" \
    >"runs_${name}_np${np}_$(echo "$flags" | tr -d ' -').log" 2>&1 || { echo FAILED; tail -5 "runs_${name}_np${np}_$(echo "$flags" | tr -d ' -').log"; return 1; }
  grep '^BENCH' "runs_${name}_np${np}_$(echo "$flags" | tr -d ' -').log"
}
mkdir -p runs
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for w in resid_mlp1 llama_tiny; do
  if [ $w = resid_mlp1 ]; then set -- "$ROOT/configs/resid_mlp1.yaml" --set target.path="$WORK/models/resid_mlp1"
  else set -- "$WORK/llama/lm.yaml"; fi
  run $w 1 "--bind-to none" "$@"
  run $w 1 "" "$@"
  run $w 2 "" "$@"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
for f in runs_*_np2_.log; do echo "== $f"; sed -n '/^bench_dist:/,/total/p' "$f"; done
