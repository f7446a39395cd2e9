#!/usr/bin/env bash
# A fresh run never destroys another run's results (issue 17, item 1): run A finishes; a run B
# without --resume into A's directory is refused (naming the directory and what is in it) and
# leaves every file of A byte-for-byte unchanged; --force starts over (removing only vpd's files
# of the run: an unrelated file stays); checkpoint retention only deletes checkpoints of its own
# run id, never another run's; --resume keeps the run id.
# usage: run_dir_guard.sh VPD PY TOOLS CFG
source "$(dirname "$0")/common.sh"
A=runs/hpc_guard; rm -rf $A runs/hpc_guard_*
CK="--set checkpoint.every_steps=10 --set checkpoint.keep_last=1"
expect_rc 0 guard_A "$VPD" decompose "$CFG" --out $A --quiet --set steps=30 $CK
echo "the user's notes" > $A/notes.txt
before=$(cd $A && find . -type f | sort | xargs sha256sum)
# B: refused, A unchanged
run guard_B "$VPD" decompose "$CFG" --out $A --quiet --set steps=20 --set seed=7; rc=$?
[ $rc -ne 0 ] || fail "a fresh run into $A (holding run A) was not refused"
grep -q "run directory $A already holds a run" hpc_guard_B.log || fail "the refusal does not name the directory"
for w in config.yaml provenance.json metrics.jsonl run.h5 "checkpoint file" "--resume $A" "--force" "another --out"; do
  grep -q -- "$w" hpc_guard_B.log || fail "the refusal does not mention '$w'"
done
after=$(cd $A && find . -type f | sort | xargs sha256sum)
[ "$before" = "$after" ] || { diff <(echo "$before") <(echo "$after"); fail "the refused run changed run A's files"; }
# the same through 2 ranks
run guard_B2 $MPIEXEC -n 2 "$VPD" decompose "$CFG" --out $A --quiet --set steps=20; rc=$?
[ $rc -ne 0 ] || fail "2 ranks: a fresh run into $A was not refused"
after=$(cd $A && find . -type f | sort | xargs sha256sum)
[ "$before" = "$after" ] || fail "2 ranks: the refused run changed run A's files"
id_A=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['run_id'])" $A/provenance.json)
[ ${#id_A} -ge 32 ] || fail "provenance.json has no run_id"
cp $A/checkpoints/ckpt-00000030.h5 foreign_ckpt.h5
# --force: starts over, keeps the unrelated file
expect_rc 75 guard_force "$VPD" decompose "$CFG" --out $A --quiet --set steps=30 --force $CK --stop-at-step 15
[ -f $A/notes.txt ] || fail "--force removed a file that is not vpd's"
id_F=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['run_id'])" $A/provenance.json)
[ "$id_F" != "$id_A" ] || fail "--force kept the old run id"
[ ! -f $A/checkpoints/ckpt-00000030.h5 ] || fail "--force left the old run's checkpoint"
"$PY" - $A/checkpoints/ckpt-00000015.h5 "$id_F" <<'PY' || fail "the checkpoint does not carry the run id"
import h5py, sys
with h5py.File(sys.argv[1], "r") as f:
    rid = f.attrs["run_id"]; rid = rid.decode() if isinstance(rid, bytes) else rid
    assert rid == sys.argv[2], (rid, sys.argv[2])
PY
# another run's checkpoint in the directory (older step): retention (keep_last 1) never deletes it
cp foreign_ckpt.h5 $A/checkpoints/ckpt-00000005.h5
sum_foreign=$(sha256sum < $A/checkpoints/ckpt-00000005.h5)
expect_rc 0 guard_resume "$VPD" decompose --resume $A --quiet
[ -f $A/checkpoints/ckpt-00000005.h5 ] || fail "retention deleted another run's checkpoint"
[ "$(sha256sum < $A/checkpoints/ckpt-00000005.h5)" = "$sum_foreign" ] || fail "another run's checkpoint changed"
[ -f $A/checkpoints/ckpt-00000030.h5 ] || fail "the run's own newest checkpoint is missing"
[ ! -f $A/checkpoints/ckpt-00000020.h5 ] || fail "retention kept the run's own older checkpoint (keep_last 1)"
id_R=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['run_id'])" $A/provenance.json)
[ "$id_R" = "$id_F" ] || fail "--resume changed the run id ($id_F -> $id_R)"
echo "PASS: run_dir_guard"
