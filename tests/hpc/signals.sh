#!/usr/bin/env bash
# SIGUSR1 / SIGTERM to a running decomposition (1 rank, and 2 ranks through mpiexec, which
# forwards the signal): checkpoint at the next step, exit 75; the resumed run is bitwise
# identical to an uninterrupted one. A second signal exits at once (128 + signal).
# usage: signals.sh VPD PY TOOLS CFG
source "$(dirname "$0")/common.sh"
STEPS=150
A=runs/hpc_sig_A; rm -rf $A runs/hpc_sig_*
expect_rc 0 sig_full "$VPD" decompose "$CFG" --out $A --quiet --set steps=$STEPS
for sig in USR1 TERM; do
  B=runs/hpc_sig_$sig
  "$VPD" decompose "$CFG" --out $B --quiet --set steps=$STEPS > hpc_sig_$sig.log 2>&1 &
  pid=$!
  for i in $(seq 1 100); do grep -q "^{\"step\": 20" $B/metrics.jsonl 2>/dev/null && break; sleep 0.05; done
  kill -$sig $pid; wait $pid; rc=$?
  tail -n 3 hpc_sig_$sig.log
  [ $rc -eq 75 ] || fail "SIG$sig: exit status $rc, expected 75"
  ls $B/checkpoints/ckpt-*.h5 > /dev/null || fail "SIG$sig: no checkpoint"
  expect_rc 0 sig_resume_$sig "$VPD" decompose --resume $B --quiet
  compare_exact $A $B
done
# two ranks: mpiexec forwards SIGUSR1, every rank agrees on the same step
B=runs/hpc_sig_np2; A2=runs/hpc_sig_np2_A
expect_rc 0 sig_full_np2 $MPIEXEC -n 2 "$VPD" decompose "$CFG" --out $A2 --quiet --set steps=$STEPS
$MPIEXEC -n 2 "$VPD" decompose "$CFG" --out $B --quiet --set steps=$STEPS > hpc_sig_np2.log 2>&1 &
pid=$!
for i in $(seq 1 100); do grep -q "^{\"step\": 20" $B/metrics.jsonl 2>/dev/null && break; sleep 0.05; done
kill -USR1 $pid; wait $pid; rc=$?
[ $rc -eq 75 ] || { cat hpc_sig_np2.log; fail "2 ranks: exit status $rc, expected 75"; }
expect_rc 0 sig_resume_np2 $MPIEXEC -n 2 "$VPD" decompose --resume $B --quiet
compare_exact $A2 $B
# a second signal: exit now, 128 + 10
# (the checkpoint write is stalled by the test hook so the second signal lands inside it; it
# counts as insisting only VPD_SIGNAL_INSIST_S seconds after the first: tests/hpc/preempt_group.sh)
B=runs/hpc_sig_twice
VPD_SIGNAL_INSIST_S=1 VPD_CKPT_TEST_STALL_STEP=-1 "$VPD" decompose "$CFG" --out $B --quiet --set steps=$STEPS > hpc_sig_twice.log 2>&1 &
pid=$!
for i in $(seq 1 100); do grep -q "^{\"step\": 5" $B/metrics.jsonl 2>/dev/null && break; sleep 0.05; done
kill -USR1 $pid
for i in $(seq 1 100); do grep -q "stalling inside the checkpoint" hpc_sig_twice.log && break; sleep 0.05; done
sleep 1.2
kill -USR1 $pid; wait $pid; rc=$?
grep -q "second signal: exiting without a checkpoint" hpc_sig_twice.log || fail "no second-signal message"
echo "two signals: exit status $rc"
[ $rc -eq 138 ] || fail "two signals: exit status $rc, expected 138 = 128 + SIGUSR1"
echo "PASS: signals"
