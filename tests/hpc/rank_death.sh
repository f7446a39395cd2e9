#!/usr/bin/env bash
# A rank killed with -9 ends the whole job within a bounded time (mpiexec names the rank and
# host), never a hang; the restarted job resumes from the last complete checkpoint.
# usage: rank_death.sh VPD PY TOOLS CFG
source "$(dirname "$0")/common.sh"
B=runs/hpc_death; rm -rf $B
t0=$(date +%s)
# the ranks stall inside the checkpoint write of step 40 (test hook), so the job is certainly
# still running when a rank is killed however fast the machine is; the last complete
# checkpoint is then step 20
VPD_CKPT_TEST_STALL_STEP=40 $MPIEXEC -n 2 "$VPD" decompose "$CFG" --out $B --quiet --set steps=300 \
    --set checkpoint.every_steps=20 > hpc_death.log 2>&1 &
pid=$!
for i in $(seq 1 400); do ls $B/checkpoints/.ckpt-00000040.h5.tmp > /dev/null 2>&1 && break; sleep 0.05; done
[ -f $B/checkpoints/.ckpt-00000040.h5.tmp ] || { kill -9 $pid; cat hpc_death.log; fail "the stalled checkpoint write of step 40 never started"; }
victim=$(pgrep -P $pid -f "vpd decompose" | tail -n 1)
[ -n "$victim" ] || victim=$(pgrep -f "decompose $CFG --out $B" | grep -v "^$pid$" | tail -n 1)
echo "kill -9 rank process $victim"
kill -9 $victim
# bounded: the job must be gone within 50 s (a hang would be killed here and fail)
for i in $(seq 1 500); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
kill -0 $pid 2>/dev/null && { kill -9 $pid; fail "the job still runs 50 s after a rank died"; }
wait $pid; rc=$?
t1=$(date +%s)
cat hpc_death.log | tail -n 8
echo "job ended with status $rc after $((t1 - t0)) s"
[ $rc -ne 0 ] || fail "the job did not fail"
[ $((t1 - t0)) -lt 50 ] || fail "the job took too long to end"
grep -Eq "rank [0-9]+ .*(on node|host)|exited on signal 9|killed" hpc_death.log || fail "no message naming the rank"
expect_rc 0 death_resume $MPIEXEC -n 2 "$VPD" decompose --resume $B --quiet --set steps=300
grep -q "resume: loaded" hpc_death_resume.log || fail "did not resume from a checkpoint"
echo "PASS: rank death"
