# Shared by the tests/hpc/*.sh scripts (sourced). Arguments of every script:
#   VPD (the vpd binary) PY (python with h5py) TOOLS (repo tools/) CFG (decomposition config)
# Run from the fixtures directory (models/tms_5-2 pretrained by decompose.pretrain_tms52).
set -u
VPD=$1; PY=$2; TOOLS=$3; CFG=$4
MPIEXEC=${MPIEXEC:-mpiexec}
fail() { echo "FAIL: $*"; exit 1; }
# run "name" cmd...: print the command, run it, keep its output in NAME.log
run() { local name=$1; shift; echo "+ $*"; "$@" > "hpc_$name.log" 2>&1; local rc=$?; tail -n 3 "hpc_$name.log"; return $rc; }
expect_rc() { local want=$1 name=$2; shift 2; run "$name" "$@"; local rc=$?; [ $rc -eq "$want" ] || fail "$name: exit status $rc, expected $want (log: hpc_$name.log)"; }
# cp_sets CP: the --set arguments of a component-parallel run (the CI function must read the
# layer inputs: shared_mlp), or nothing for CP = 1
cp_sets() { [ "${1:-1}" -gt 1 ] && echo "--set ci_config.fn_type=shared_mlp --set ci_config.hidden_dims=[8] --set parallel.component_parallel=$1"; }
compare_exact() { echo "+ compare_runs.py $1 $2 --exact"; "$PY" "$TOOLS/reference/compare_runs.py" "$1" "$2" --exact > "hpc_cmp_$(basename "$2").log" || { cat "hpc_cmp_$(basename "$2").log"; fail "$1 and $2 differ (bitwise)"; }; tail -n 2 "hpc_cmp_$(basename "$2").log"; }
compare_tol() { echo "+ compare_runs.py $1 $2 (rank-invariance tolerance)"; "$PY" "$TOOLS/reference/compare_runs.py" "$1" "$2" --rtol 1e-4 --metrics-rtol 5e-4 --l0-atol 0.01 > "hpc_cmp_$(basename "$2").log" || { cat "hpc_cmp_$(basename "$2").log"; fail "$1 and $2 differ beyond tolerance"; }; tail -n 2 "hpc_cmp_$(basename "$2").log"; }
