#!/usr/bin/env bash
# vpd sweep (spd format, global + experiment sections, a loss coeff addressed by classname)
# writes one config per point and a job array; the configs run; vpd collect makes the CSV
# and the plot.
# usage: sweep_collect.sh VPD PY TOOLS CFG
source "$(dirname "$0")/common.sh"
D=hpc_sweep; rm -rf $D; mkdir -p $D
cat > $D/sweep.yaml <<'YAML'
global:
  seed: {values: [1, 2]}
  loss_metric_configs:
    - classname: ImportanceMinimalityLoss
      coeff: {values: [1e-3, 3e-3]}
tms_all_losses:
  steps: {values: [6]}
YAML
expect_rc 0 sweep "$VPD" sweep $D/sweep.yaml --config "$CFG" --out $D/grid --throttle 2
n=$(wc -l < $D/grid/runs.txt); [ "$n" -eq 4 ] || fail "runs.txt has $n lines, expected 4"
grep -q "^tms_all_losses-seed2-ImportanceMinimality.coeff0.003-steps6 " $D/grid/runs.txt || { cat $D/grid/runs.txt; fail "run names"; }
grep -q -- "--array=0-3%2" $D/grid/sweep.sbatch || fail "array line"
bash -n $D/grid/sweep.sbatch || fail "sweep.sbatch is not valid bash"
"$PY" - "$D/grid/configs/tms_all_losses-seed2-ImportanceMinimality.coeff0.003-steps6.yaml" <<'PYEOF' || fail "resolved config"
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
im = [x for x in c["loss_metric_configs"] if x["classname"] == "ImportanceMinimalityLoss"][0]
assert c["seed"] == 2 and c["steps"] == 6 and abs(float(im["coeff"]) - 3e-3) < 1e-12, c
assert c["target"]["path"].startswith("/"), c["target"]
print("resolved config ok")
PYEOF
while read -r name cfg; do
  expect_rc 0 "sweep_$name" "$VPD" decompose "$cfg" --quiet
done < $D/grid/runs.txt
expect_rc 0 collect "$VPD" collect $D/grid/runs --out $D/grid.csv
"$PY" - $D/grid.csv <<'PYEOF' || fail "CSV content"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 4, len(rows)
assert "seed" in rows[0] and "loss_metric_configs.ImportanceMinimalityLoss.coeff" in rows[0], list(rows[0])
assert all(r["status"] == "finished" and r["final_step"] == "6" for r in rows), rows
print("csv ok:", len(rows), "rows")
PYEOF
[ -s $D/grid.png ] || fail "no plot"
echo "PASS: sweep and collect"
