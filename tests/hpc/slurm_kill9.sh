#!/usr/bin/env bash
# Real Slurm: the vpd process of a single-node job (srun-launched) is killed with kill -9
# while it writes a checkpoint (srun --kill-on-bad-exit ends the job); resubmitted (VPD_RESUME=1), it resumes from the previous complete checkpoint
# and ends bitwise equal to an uninterrupted run.
# usage: slurm_kill9.sh VPD PY TOOLS CFG REPO
source "$(dirname "$0")/common.sh"
REPO=$5
D=$PWD/hpc_slurm_k9; rm -rf $D; mkdir -p $D
expect_rc 0 sk9_ref "$VPD" decompose "$CFG" --out $D/ref --quiet --set steps=40
export VPD_HOME=$REPO VPD_BIN=$VPD
sopts="--partition=debug --account=root --ntasks=1 --time=00:05:00 --chdir=$PWD --output=$D/job-%j.out --open-mode=append"
echo "+ sbatch (stall at the step-30 checkpoint)"
job=$(VPD_CKPT_TEST_STALL_STEP=30 sbatch --parsable $sopts --export=ALL \
      "$REPO/jobscripts/single_node.sbatch" "$CFG" $D/run --set steps=40 --set checkpoint.every_steps=10 2>&1) || fail "sbatch: $job"
for i in $(seq 1 300); do [ -f $D/run/checkpoints/.ckpt-00000030.h5.tmp ] && break; sleep 0.1; done
[ -f $D/run/checkpoints/.ckpt-00000030.h5.tmp ] || { cat $D/job-*.out; fail "the stalled write never started"; }
victims=""
for p in $(pgrep -x vpd); do grep -q "hpc_slurm_k9/run" /proc/$p/cmdline 2>/dev/null && victims="$victims $p"; done
[ -n "$victims" ] || fail "no vpd process found"
echo "+ kill -9$victims (vpd, during the write of checkpoint 30)"
kill -9 $victims
for i in $(seq 1 100); do squeue -h -j "$job" 2>/dev/null | grep -q . || break; sleep 0.2; done
ls -la $D/run/checkpoints
[ -f $D/run/checkpoints/ckpt-00000020.h5 ] && [ ! -f $D/run/checkpoints/ckpt-00000030.h5 ] || fail "wrong checkpoints after the kill"
echo "+ sbatch --wait (resubmitted, VPD_RESUME=1)"
sbatch --wait $sopts --export=ALL,VPD_RESUME=1 "$REPO/jobscripts/single_node.sbatch" "$CFG" $D/run \
    --set steps=40 --set checkpoint.every_steps=10 > /dev/null 2>&1 || { cat $D/job-*.out; fail "resubmitted job failed"; }
cat $D/job-*.out | tail -n 20
grep -q "ckpt-00000020.h5 (step 20)" $D/job-*.out || fail "did not resume from checkpoint 20"
compare_exact $D/ref $D/run
echo "PASS: Slurm job killed mid-checkpoint resumes from the previous one"
