#!/usr/bin/env bash
# Non-finite values are caught at once (issue 17, item 4): a NaN gradient with finite losses
# stops the run at that step naming the tensor and layer (1 and 2 ranks), nothing is applied or
# checkpointed; a checkpoint of non-finite state is never written (the earlier ones stay);
# `--resume` and `vpd eval` refuse a checkpoint / run.h5 holding a NaN, naming the tensor.
# The NaNs come from test hooks (VPD_TEST_NAN_GRAD_STEP, VPD_TEST_NAN_PARAM_STEP) and h5py.
# usage: nonfinite.sh VPD PY TOOLS CFG
source "$(dirname "$0")/common.sh"
rm -rf runs/hpc_nf_*
for np in 1 2; do
  B=runs/hpc_nf_grad$np
  L=""; [ $np -gt 1 ] && L="$MPIEXEC -n $np"
  VPD_TEST_NAN_GRAD_STEP=25 run nf_grad$np $L "$VPD" decompose "$CFG" --out $B --quiet --set steps=50 --set checkpoint.every_steps=10; rc=$?
  [ $rc -ne 0 ] || fail "$np rank(s): a NaN gradient did not stop the run"
  grep -q "step 25: non-finite gradient with finite losses: the gradient of /components/linear1/V (layer linear1)" hpc_nf_grad$np.log ||
    fail "$np rank(s): the message does not name the step, tensor and layer"
  [ "$(ls $B/checkpoints)" = "$(printf 'ckpt-00000010.h5\nckpt-00000020.h5')" ] || fail "$np rank(s): checkpoints $(ls $B/checkpoints | tr '\n' ' ')"
  grep -q '^{"step": 25' $B/metrics.jsonl && fail "$np rank(s): step 25 was logged as if it had completed"
done
# a NaN parameter after the update of step 25: the checkpoint of step 26 is refused
B=runs/hpc_nf_param
VPD_TEST_NAN_PARAM_STEP=25 run nf_param "$VPD" decompose "$CFG" --out $B --quiet --set steps=50 --set checkpoint.every_steps=1 --set checkpoint.keep_last=1; rc=$?
[ $rc -ne 0 ] || fail "a NaN parameter did not stop the run"
grep -q "step 26: not writing checkpoint $B/checkpoints/ckpt-00000026.h5: /components/linear1/V holds a non-finite value" hpc_nf_param.log ||
  fail "the refused checkpoint write does not say what and why"
[ "$(ls $B/checkpoints)" = "ckpt-00000025.h5" ] || fail "checkpoints after the refusal: $(ls $B/checkpoints | tr '\n' ' ') (want the last good one, ckpt-00000025.h5)"
# reading: a NaN in a checkpoint (--resume) and in run.h5 (eval)
A=runs/hpc_nf_A
expect_rc 0 nf_A "$VPD" decompose "$CFG" --out $A --quiet --set steps=20 --set checkpoint.every_steps=10
"$PY" - $A/checkpoints/ckpt-00000020.h5 $A/run.h5 <<'PY' || fail "h5py could not plant the NaN"
import h5py, sys
for p in sys.argv[1:]:
    with h5py.File(p, "r+") as f:
        d = f["components/linear2/U"]; a = d[...]; a[0, 0] = float("nan"); d[...] = a
PY
run nf_resume "$VPD" decompose --resume $A --quiet --set steps=30 --allow-config-change steps; rc=$?
[ $rc -ne 0 ] || fail "--resume accepted a checkpoint holding a NaN"
grep -q "ckpt-00000020.h5: /components/linear2/U holds a non-finite value" hpc_nf_resume.log || fail "--resume: the message does not name the file and tensor"
run nf_eval "$VPD" eval $A --batches 1 --no-write --no-pgd; rc=$?
[ $rc -ne 0 ] || fail "vpd eval accepted a run.h5 holding a NaN"
grep -q "run.h5: /components/linear2/U holds a non-finite value" hpc_nf_eval.log || fail "eval: the message does not name the file and tensor"
echo "PASS: nonfinite"
