#!/usr/bin/env bash
# A checkpoint written on NP1 ranks (component_parallel CP1) resumes on NP2 ranks (CP2): the
# result equals the uninterrupted NP2-rank run within the rank-invariance tolerance. A changed
# component_parallel is a config change the resume must be allowed to make.
# usage: resume_layout.sh VPD PY TOOLS CFG NP1 NP2 [CP1 CP2]
source "$(dirname "$0")/common.sh"
NP1=$5; NP2=$6; CP1=${7:-1}; CP2=${8:-1}
L1=""; [ "$NP1" -gt 1 ] && L1="$MPIEXEC -n $NP1"
L2=""; [ "$NP2" -gt 1 ] && L2="$MPIEXEC -n $NP2"
T1=$NP1; [ "$CP1" -gt 1 ] && T1=${NP1}cp${CP1}
T2=$NP2; [ "$CP2" -gt 1 ] && T2=${NP2}cp${CP2}
# both runs use the component-parallel CI function when either layout splits the components
SETS1=""; SETS2=""
if [ "$CP1" -gt 1 ] || [ "$CP2" -gt 1 ]; then
  SETS1="--set ci_config.fn_type=shared_mlp --set ci_config.hidden_dims=[8] --set parallel.component_parallel=$CP1"
  SETS2="--set ci_config.fn_type=shared_mlp --set ci_config.hidden_dims=[8] --set parallel.component_parallel=$CP2"
fi
RESUME_SETS=""; [ "$CP1" -ne "$CP2" ] && RESUME_SETS="--set parallel.component_parallel=$CP2 --allow-config-change parallel.component_parallel"
A=runs/hpc_layout_full_np$T2; B=runs/hpc_layout_${T1}to${T2}
rm -rf $A $B
expect_rc 0 lfull_np$T2 $L2 "$VPD" decompose "$CFG" --out $A --quiet --set steps=20 $SETS2
expect_rc 75 lfirst_$T1 $L1 "$VPD" decompose "$CFG" --out $B --quiet --set steps=20 $SETS1 --stop-at-step 10
expect_rc 0 lresume_$T2 $L2 "$VPD" decompose --resume $B --quiet $RESUME_SETS
compare_tol $A $B
echo "PASS: checkpoint from $NP1 rank(s) (cp $CP1) resumed on $NP2 (cp $CP2)"
