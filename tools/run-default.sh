#!/usr/bin/env bash
# The `make run` job: pretrain the TMS 5-2 target into models/tms_5-2 (unless it is there),
# then decompose it with configs/tms_5-2.yaml into runs/tms_5-2 when this build has
# `vpd decompose`. Usage: tools/run-default.sh BUILD_DIR   (run from the project root)
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VPD="$BUILD/bin/vpd"
[[ "$VPD" = /* ]] || VPD="$ROOT/$VPD"
if [[ ! -x "$VPD" ]]; then
    echo "run-default: $VPD not found: build first (make build, or cmake --build $BUILD)" >&2
    exit 1
fi
# one rank: let OpenBLAS use both cores unless the user chose
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-$(nproc)}

MODEL=models/tms_5-2
if [[ -f "$MODEL/config.json" && -f "$MODEL/model.safetensors" ]]; then
    echo "run-default: target $ROOT/$MODEL exists; not retraining (delete it to retrain)"
else
    echo "run-default: pretraining the TMS 5-2 target (configs/tms_5-2-target.yaml)"
    "$VPD" pretrain configs/tms_5-2-target.yaml --out "$MODEL"
fi

RUN=runs/tms_5-2
if "$VPD" decompose --help >/dev/null 2>&1; then
    echo "run-default: decomposing it (configs/tms_5-2.yaml)"
    "$VPD" decompose configs/tms_5-2.yaml --out "$RUN"
    echo "run-default: wrote the target to $ROOT/$MODEL and the decomposition to $ROOT/$RUN"
else
    echo "run-default: wrote the target to $ROOT/$MODEL (config.json, model.safetensors, training.jsonl)"
    echo "run-default: 'vpd decompose' is not available in this build yet; skipping the decomposition"
fi
