#!/bin/sh
# Step-time benchmarks of vpd (tms_5-2, tms_40-10, resid_mlp1, lm_tiny, lm_4L_128) in the
# layouts MACHINE.md asks benchmarks to state: 1 rank x 1 and 2 OpenBLAS threads (not pinned),
# then 2 ranks x 1 thread (mpiexec pins each rank to a core). Each row: median s/step,
# GFLOP/s, % of the FMA peak measured at start, speed-up over bench/baseline-<isa>.json.
#   tools/dev/bench.sh [build dir, default build] [extra `vpd bench` options, e.g. --steps 30]
# Run from the project root (reads configs/ and models/; a missing models/<name> is
# replaced by a random target of the same sizes, LM data by random tokens). Timings on this shared host vary by
# ±20 %: compare rows of one run.
set -eu
BUILD=${1:-build}
[ $# -gt 0 ] && shift
VPD="$BUILD/bin/vpd"
[ -x "$VPD" ] || { echo "bench.sh: $VPD not found (make first, or pass the build dir)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "== 1 rank, OpenBLAS 1 and 2 threads (no binding)"
"$VPD" bench --threads 1,2 "$@"
if command -v mpiexec >/dev/null 2>&1; then
  echo
  echo "== 2 ranks x 1 thread (mpiexec, bound to cores)"
  OPENBLAS_NUM_THREADS=1 mpiexec -n 2 "$VPD" bench --threads 1 "$@"
fi
