#!/usr/bin/env bash
# kill -9 during a checkpoint write: the half-written temporary is never taken; resume picks
# the previous complete checkpoint and the final result is still bitwise identical.
# usage: kill_during_checkpoint.sh VPD PY TOOLS CFG
source "$(dirname "$0")/common.sh"
A=runs/hpc_k9_A; B=runs/hpc_k9_B
rm -rf $A $B
expect_rc 0 k9_full "$VPD" decompose "$CFG" --out $A --quiet --set steps=20
echo "+ VPD_CKPT_TEST_STALL_STEP=15 vpd decompose ... --set checkpoint.every_steps=5 &"
VPD_CKPT_TEST_STALL_STEP=15 "$VPD" decompose "$CFG" --out $B --quiet --set steps=20 --set checkpoint.every_steps=5 \
    > hpc_k9_first.log 2>&1 &
pid=$!
for i in $(seq 1 200); do [ -f $B/checkpoints/.ckpt-00000015.h5.tmp ] && break; sleep 0.05; done
[ -f $B/checkpoints/.ckpt-00000015.h5.tmp ] || { kill -9 $pid; cat hpc_k9_first.log; fail "the stalled checkpoint write never started"; }
sleep 0.3
kill -9 $pid; wait $pid 2>/dev/null
echo "killed -9 during the write of step 15:"; ls -la $B/checkpoints
[ -f $B/checkpoints/ckpt-00000010.h5 ] || fail "checkpoint 10 missing"
[ ! -f $B/checkpoints/ckpt-00000015.h5 ] || fail "an unfinished checkpoint has its final name"
"$VPD" info $B | tee hpc_k9_info.log | grep -q "newest complete: .*ckpt-00000010.h5" || { cat hpc_k9_info.log; fail "info does not name checkpoint 10"; }
expect_rc 0 k9_resume "$VPD" decompose --resume $B --quiet
grep -q "ckpt-00000010.h5 (step 10)" hpc_k9_resume.log || fail "resume did not start from checkpoint 10"
[ ! -f $B/checkpoints/.ckpt-00000015.h5.tmp ] || fail "the stale temporary was not cleaned up"
compare_exact $A $B
echo "PASS: kill -9 mid-write -> resume from the previous complete checkpoint"
