#!/usr/bin/env bash
# A checkpoint written on NP1 ranks resumes on NP2 ranks: the result equals the
# uninterrupted NP2-rank run within the rank-invariance tolerance.
# usage: resume_layout.sh VPD PY TOOLS CFG NP1 NP2
source "$(dirname "$0")/common.sh"
NP1=$5; NP2=$6
L1=""; [ "$NP1" -gt 1 ] && L1="$MPIEXEC -n $NP1"
L2=""; [ "$NP2" -gt 1 ] && L2="$MPIEXEC -n $NP2"
A=runs/hpc_layout_full_np$NP2; B=runs/hpc_layout_${NP1}to${NP2}
rm -rf $A $B
expect_rc 0 lfull_np$NP2 $L2 "$VPD" decompose "$CFG" --out $A --quiet --set steps=20
expect_rc 75 lfirst_$NP1 $L1 "$VPD" decompose "$CFG" --out $B --quiet --set steps=20 --stop-at-step 10
expect_rc 0 lresume_$NP2 $L2 "$VPD" decompose --resume $B --quiet
compare_tol $A $B
echo "PASS: checkpoint from $NP1 rank(s) resumed on $NP2"
