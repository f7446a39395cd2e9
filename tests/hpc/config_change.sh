#!/usr/bin/env bash
# Resuming with a changed config is refused with the keys that differ, unless
# --allow-config-change names them; checkpoint.* may change freely. vpd info prints the
# provenance (version, git hash, layout, hosts, SHA-256 of the target files).
# usage: config_change.sh VPD PY TOOLS CFG
source "$(dirname "$0")/common.sh"
B=runs/hpc_cfgchange; rm -rf $B
expect_rc 75 cc_first "$VPD" decompose "$CFG" --out $B --quiet --set steps=20 --stop-at-step 10
run cc_refused "$VPD" decompose --resume $B --quiet --set steps=30 --set seed=5 && fail "a changed config was accepted"
grep -q "differs from the checkpoint.* in: seed, steps" hpc_cc_refused.log || fail "message does not name seed and steps"
run cc_refused2 "$VPD" decompose --resume $B --quiet --set steps=30 --set seed=5 --allow-config-change steps && fail "seed change accepted"
grep -q "in: seed;" hpc_cc_refused2.log || fail "message does not name seed alone"
expect_rc 0 cc_allowed "$VPD" decompose --resume $B --quiet --set steps=30 --set checkpoint.keep_last=1 --allow-config-change steps
n=$(wc -l < $B/metrics.jsonl); [ "$n" -eq 31 ] || fail "metrics.jsonl has $n records, expected 31"
run cc_info "$VPD" info $B || fail "vpd info failed"
for pat in "git " "sha256  *[0-9a-f]\{64\}  .*model.safetensors" "sha256  *[0-9a-f]\{64\}  .*config.json" \
           "MPI layout *1 ranks" "resumed from .*ckpt-00000010.h5" "earlier start 1 of 1" "run.h5: present"; do
  grep -q "$pat" hpc_cc_info.log || { cat hpc_cc_info.log; fail "vpd info lacks '$pat'"; }
done
sha=$(sha256sum models/tms_5-2/model.safetensors | cut -d' ' -f1)
grep -q "$sha" hpc_cc_info.log || fail "SHA-256 of model.safetensors differs from sha256sum's $sha"
echo "PASS: config changes and provenance"
