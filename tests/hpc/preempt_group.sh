#!/usr/bin/env bash
# One preemption must cost no checkpoint (issue 17, item 2): SIGTERM to the whole process group
# of jobscripts/vpd_run.sh (as Slurm's cancel / time limit sends it) reaches the script, and,
# before the fix, vpd too; the script's forwarded USR1 was then taken as the insisting second
# signal (exit 138, no checkpoint), and through mpirun the job ended with status 1. Both must
# checkpoint and end with 75, and the resumed run is bitwise identical to an uninterrupted one.
# Also: a bare vpd that gets TERM and, at once, USR1 (the same preemption twice) checkpoints.
# usage: preempt_group.sh VPD PY TOOLS CFG
source "$(dirname "$0")/common.sh"
STEPS=400 # long enough that the run is still going when the signal comes (2 ranks, an idle machine)
RUNSH=$(cd "$(dirname "$0")/../../jobscripts" && pwd)/vpd_run.sh
A=runs/hpc_pg_A; rm -rf runs/hpc_pg_*
expect_rc 0 pg_full "$VPD" decompose "$CFG" --out $A --quiet --set steps=$STEPS
# wait_step RUN_DIR N: until metrics.jsonl has step N
wait_step() { for i in $(seq 1 200); do grep -q "^{\"step\": $2" $1/metrics.jsonl 2>/dev/null && return; sleep 0.05; done; }
for launch in "$VPD" "$MPIEXEC -n 2 $VPD"; do
  name=$( [ "$launch" = "$VPD" ] && echo np1 || echo np2 )
  B=runs/hpc_pg_$name; A2=$A
  if [ $name = np2 ]; then A2=runs/hpc_pg_A2; expect_rc 0 pg_full_np2 $MPIEXEC -n 2 "$VPD" decompose "$CFG" --out $A2 --quiet --set steps=$STEPS; fi
  # its own session, so the test's shell is not in the group it signals
  VPD_LAUNCH="$launch" setsid bash "$RUNSH" $B "$CFG" --quiet --set steps=$STEPS > hpc_pg_$name.log 2>&1 &
  pid=$!
  wait_step $B 20
  pgid=$(ps -o pgid= -p $pid | tr -d ' ')
  echo "+ kill -TERM -- -$pgid   (the job's process group, $launch)"
  kill -TERM -- -$pgid; wait $pid; rc=$?
  tail -n 4 hpc_pg_$name.log
  grep -q "second signal" hpc_pg_$name.log && fail "$name: a signal of the same preemption was taken as the second"
  [ $rc -eq 75 ] || fail "$name: SIGTERM to the process group: exit status $rc, expected 75 (log: hpc_pg_$name.log)"
  ls $B/checkpoints/ckpt-*.h5 > /dev/null || fail "$name: no checkpoint"
  if [ $name = np1 ]; then expect_rc 0 pg_resume_$name "$VPD" decompose --resume $B --quiet
  else expect_rc 0 pg_resume_$name $MPIEXEC -n 2 "$VPD" decompose --resume $B --quiet; fi
  compare_exact $A2 $B
done
# a bare vpd: TERM and USR1 together (the script's forward racing the group's TERM)
B=runs/hpc_pg_echo
"$VPD" decompose "$CFG" --out $B --quiet --set steps=$STEPS > hpc_pg_echo.log 2>&1 &
pid=$!
wait_step $B 20
kill -TERM $pid; kill -USR1 $pid; wait $pid; rc=$?
tail -n 3 hpc_pg_echo.log
[ $rc -eq 75 ] || fail "TERM then USR1 at once: exit status $rc, expected 75"
ls $B/checkpoints/ckpt-*.h5 > /dev/null || fail "TERM then USR1: no checkpoint"
echo "PASS: preempt_group"
