#!/usr/bin/env bash
# Real Slurm (tools/local-slurm.sh, started by the slurm.start fixture): a 3-task job array
# of tiny decompositions made by `vpd sweep`; task 1 gets USR1 mid-run (scancel -b -s USR1),
# checkpoints, exits 75, is requeued by the job script and resumes. All three must finish
# with components bitwise equal to uninterrupted runs of the same configs outside Slurm.
# usage: slurm_array.sh VPD PY TOOLS CFG
source "$(dirname "$0")/common.sh"
D=$PWD/hpc_slurm; rm -rf $D; mkdir -p $D
cat > $D/sweep.yaml <<'YAML'
global:
  seed: {values: [1, 2, 3]}
YAML
expect_rc 0 slurm_sweep "$VPD" sweep $D/sweep.yaml --config "$CFG" --out $D/grid --time 00:10:00 --vpd "$VPD" --set steps=300
echo "+ sbatch --wait $D/grid/sweep.sbatch"
t0=$(date +%s)
sbatch --wait --parsable $D/grid/sweep.sbatch > $D/sbatch.out 2>&1 &
sb=$!
for i in $(seq 1 100); do [ -s $D/sbatch.out ] && break; sleep 0.1; done
job=$(head -n 1 $D/sbatch.out | tr -d '[:space:]')
echo "array job $job"
[ -n "$job" ] || { cat $D/sbatch.out; fail "sbatch gave no job id"; }
name1=$(sed -n 2p $D/grid/runs.txt | cut -d' ' -f1)
m=$D/grid/runs/$name1/metrics.jsonl
for i in $(seq 1 600); do grep -q '^{"step": 30,' $m 2>/dev/null && break; sleep 0.1; done
grep -q '^{"step": 30,' $m || { squeue; cat $D/grid/logs/* 2>/dev/null; fail "task 1 did not reach step 30"; }
echo "+ scancel -b -s USR1 ${job}_1"
scancel -b -s USR1 "${job}_1" || fail "scancel failed"
wait $sb; rc=$?
t1=$(date +%s)
for f in $D/grid/logs/*.out; do echo "--- $f"; cat "$f"; done
echo "sbatch --wait: status $rc after $((t1 - t0)) s"
[ $rc -eq 0 ] || fail "the array did not succeed"
grep -q "requeueing job" $D/grid/logs/${job}_1.out || fail "task 1 was not requeued"
grep -q "restart 1 " $D/grid/logs/${job}_1.out || fail "task 1 did not restart"
grep -q -- "--resume" $D/grid/logs/${job}_1.out || fail "task 1 did not resume"
"$VPD" info $D/grid/runs/$name1 > $D/info1.txt
grep -q "array task 1 *restarts 1" $D/info1.txt || { cat $D/info1.txt; fail "provenance lacks the array task / restart"; }
while read -r name cfg; do
  expect_rc 0 "slurm_ref_$name" "$VPD" decompose "$cfg" --out $D/ref/$name --quiet
  compare_exact $D/ref/$name $D/grid/runs/$name
done < $D/grid/runs.txt
echo "PASS: Slurm array with a preempted and requeued task"
