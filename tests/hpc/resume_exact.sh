#!/usr/bin/env bash
# Bitwise-identical resume on the same layout: an uninterrupted 20-step run against 10 steps
# (--stop-at-step, the signal path: checkpoint + exit 75) + --resume to 20; NP ranks, of which
# CP (default 1) split the components (dp = NP / CP).
# usage: resume_exact.sh VPD PY TOOLS CFG NP [CP]
source "$(dirname "$0")/common.sh"
NP=$5; CP=${6:-1}
L=""; [ "$NP" -gt 1 ] && L="$MPIEXEC -n $NP"
T=np${NP}; [ "$CP" -gt 1 ] && T=np${NP}cp${CP}
SETS=$(cp_sets $CP)
A=runs/hpc_exact_${T}_A; B=runs/hpc_exact_${T}_B
rm -rf $A $B
expect_rc 0 full_$T $L "$VPD" decompose "$CFG" --out $A --quiet --set steps=20 $SETS
expect_rc 75 first_$T $L "$VPD" decompose "$CFG" --out $B --quiet --set steps=20 $SETS --stop-at-step 10
[ -f $B/checkpoints/ckpt-00000010.h5 ] || fail "no checkpoint at step 10"
[ ! -f $B/run.h5 ] || fail "a stopped run must not write run.h5"
expect_rc 0 resume_$T $L "$VPD" decompose --resume $B --quiet
grep -q "faithfulness warmup skipped" hpc_resume_$T.log || fail "resume did not skip the warmup"
compare_exact $A $B
n=$(wc -l < $B/metrics.jsonl); [ "$n" -eq 21 ] || fail "metrics.jsonl has $n records, expected 21"
echo "PASS: resume on $NP rank(s), component_parallel $CP, is bitwise identical"
