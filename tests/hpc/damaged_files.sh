#!/usr/bin/env bash
# Damaged files of a run (issue 17, item 6): `vpd info` does not call a truncated run.h5
# "present (run finished)"; --resume falls back to the next older checkpoint when the newest
# has a missing dataset (warning naming the skipped file) and the result equals a resume from
# that older checkpoint.
# usage: damaged_files.sh VPD PY TOOLS CFG
source "$(dirname "$0")/common.sh"
A=runs/hpc_dmg_A; B=runs/hpc_dmg_B; rm -rf $A $B
CK="--set checkpoint.every_steps=10 --set checkpoint.keep_last=3"
expect_rc 0 dmg_A "$VPD" decompose "$CFG" --out $A --quiet --set steps=30 $CK
expect_rc 0 dmg_info_ok "$VPD" info $A
grep -q "run.h5: present (run finished)" hpc_dmg_info_ok.log || fail "info: a whole run.h5 is not reported as finished"
cp -r $A $B
size=$(stat -c %s $A/run.h5); truncate -s $((size / 2)) $A/run.h5
run dmg_info_trunc "$VPD" info $A
grep -q "present (run finished)" hpc_dmg_info_trunc.log && fail "info calls a truncated run.h5 'present (run finished)'"
grep -q "run.h5: DAMAGED" hpc_dmg_info_trunc.log || fail "info does not say that the truncated run.h5 is damaged"
# the newest checkpoint (step 30) loses a dataset: resume from step 20, with a warning
"$PY" -c "import h5py,sys; f=h5py.File(sys.argv[1],'r+'); del f['components/linear1/V']; f.close()" $A/checkpoints/ckpt-00000030.h5
rm -f $B/checkpoints/ckpt-00000030.h5
expect_rc 0 dmg_resume "$VPD" decompose --resume $A --quiet
grep -q "resume: skipping $A/checkpoints/ckpt-00000030.h5" hpc_dmg_resume.log || fail "no warning naming the skipped checkpoint"
grep -q "resume: loaded $A/checkpoints/ckpt-00000020.h5" hpc_dmg_resume.log || fail "did not resume from the older checkpoint"
expect_rc 0 dmg_resume_ref "$VPD" decompose --resume $B --quiet
compare_exact $B $A
echo "PASS: damaged_files"
