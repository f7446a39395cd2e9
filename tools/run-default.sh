#!/usr/bin/env bash
# The `make run` job: pretrain the TMS 5-2 target into models/tms_5-2 (unless it is there),
# then decompose it with configs/tms_5-2.yaml into runs/tms_5-2 when this build has
# `vpd decompose`. Usage: tools/run-default.sh BUILD_DIR   (run from the project root)
# The decomposition runs one MPI rank per core (VPD_RANKS, default nproc; 1 without mpiexec),
# each with one OpenBLAS thread: on this machine kind 2 ranks x 1 thread beat 1 rank x 2
# threads, because only large GEMMs use BLAS threads while ranks split all the work (issue 16).
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
# pretraining is one rank: let OpenBLAS use every core unless the user chose
PRETRAIN_THREADS=${OPENBLAS_NUM_THREADS:-$(nproc)}
RANKS=${VPD_RANKS:-$(nproc)}
if [[ "$RANKS" -gt 1 ]] && ! command -v mpiexec >/dev/null 2>&1; then
    echo "run-default: mpiexec not found: decomposing with one rank (set VPD_RANKS=1 to silence this)" >&2
    RANKS=1
fi
LAUNCH=("$VPD")
if [[ "$RANKS" -gt 1 ]]; then
    # Open MPI refuses root without these; one core per rank (no --oversubscribe)
    LAUNCH=(mpiexec -n "$RANKS" -x OPENBLAS_NUM_THREADS)
    [[ $(id -u) -eq 0 ]] && LAUNCH+=(--allow-run-as-root)
    LAUNCH+=("$VPD")
fi

MODEL=models/tms_5-2
if [[ -f "$MODEL/config.json" && -f "$MODEL/model.safetensors" ]]; then
    echo "run-default: target $ROOT/$MODEL exists; not retraining (delete it to retrain)"
else
    echo "run-default: pretraining the TMS 5-2 target (configs/tms_5-2-target.yaml)"
    OPENBLAS_NUM_THREADS=$PRETRAIN_THREADS "$VPD" pretrain configs/tms_5-2-target.yaml --out "$MODEL"
fi

# a run directory holds one run (vpd refuses to overwrite another run's results): a second
# `make run` writes runs/tms_5-2.2, then .3, ...
RUN=runs/tms_5-2
n=1
while [[ -e "$RUN" ]]; do n=$((n + 1)); RUN=runs/tms_5-2.$n; done
[[ $n -gt 1 ]] && echo "run-default: runs/tms_5-2 holds an earlier run; this one goes to $RUN"
if "$VPD" decompose --help >/dev/null 2>&1; then
    THREADS=${OPENBLAS_NUM_THREADS:-$([[ "$RANKS" -gt 1 ]] && echo 1 || nproc)}
    echo "run-default: decomposing it (configs/tms_5-2.yaml) with $RANKS rank(s) x $THREADS OpenBLAS thread(s)"
    OPENBLAS_NUM_THREADS=$THREADS "${LAUNCH[@]}" decompose configs/tms_5-2.yaml --out "$RUN"
    echo "run-default: wrote the target to $ROOT/$MODEL and the decomposition to $ROOT/$RUN"
else
    echo "run-default: wrote the target to $ROOT/$MODEL (config.json, model.safetensors, training.jsonl)"
    echo "run-default: 'vpd decompose' is not available in this build yet; skipping the decomposition"
fi
