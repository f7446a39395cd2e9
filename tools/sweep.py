#!/usr/bin/env python3
"""vpd sweep: expand a sweep file in the reference implementation's format into one resolved
config per grid point and a Slurm job array that runs them.

usage: vpd sweep SWEEP.yaml --out DIR [--config BASE.yaml | --config-dir configs]
                 [--experiments a,b] [--throttle N] [--ntasks N] [--time HH:MM:SS]
                 [--partition P] [--account A] [--vpd PATH] [--set key=value ...]

SWEEP.yaml (spd's spd/scripts/sweep_params.yaml format):
  global:                       # applies to every experiment
    seed: {values: [0, 1]}
    loss_metric_configs:        # lists are addressed by classname
      - classname: ImportanceMinimalityLoss
        coeff: {values: [1e-3, 3e-3]}
  tms_5-2:                      # per experiment; overrides global keys
    task_config:
      feature_probability: {values: [0.05, 0.1]}
Every leaf is {values: [...]}; the grid is the Cartesian product (spd's
generate_grid_combinations). An experiment NAME's base config is --config (one experiment),
else CONFIG_DIR/NAME.yaml. Experiments: --experiments, else every section except global.
A section NAME@LABEL is a second grid on the same base config NAME.yaml (its runs are named
NAME-LABEL-...), so one file can hold grids that are not one Cartesian product (e.g. k at one
dictionary size and dictionary sizes at one k).

Writes DIR/configs/<run>.yaml (base config + point; output.dir = DIR/runs/<run>; relative
target / data paths made absolute), DIR/runs.txt ("<run> <config>" per array task),
DIR/sweep.json (the points) and DIR/sweep.sbatch (the job array; see jobscripts/). Run names
read like tms_5-2-seed1-ImportanceMinimality.coeff0.003.
"""
import argparse
import copy
import itertools
import json
import os
import re
import sys

import yaml

class Loader(yaml.SafeLoader):
    """YAML 1.2 floats: PyYAML (YAML 1.1) reads 1e-3 as a string; pydantic and vpd read a number"""


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
               r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)|[-+]\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))

DISCRIMINATED = {"loss_metric_configs": "classname", "eval_metric_configs": "classname"}
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def die(msg):
    print(f"vpd sweep: {msg}", file=sys.stderr)
    sys.exit(2)


def extract(obj, path, specs):
    """(flattened key, values) of every {values: [...]} leaf; lists by discriminator (spd)."""
    if isinstance(obj, dict):
        if "values" in obj and len(obj) == 1:
            if not isinstance(obj["values"], list) or not obj["values"]:
                die(f"'{'.'.join(path)}': values must be a non-empty list")
            specs.append((".".join(path), obj["values"]))
            return
        for k, v in obj.items():
            extract(v, path + [str(k)], specs)
    elif isinstance(obj, list):
        if not path or path[-1] not in DISCRIMINATED:
            die(f"list at '{'.'.join(path) or '(root)'}': only {', '.join(DISCRIMINATED)} may be lists (by classname)")
        disc = DISCRIMINATED[path[-1]]
        seen = set()
        for item in obj:
            if not isinstance(item, dict) or disc not in item:
                die(f"every item of '{path[-1]}' must be a mapping with '{disc}'")
            if item[disc] in seen:
                die(f"'{path[-1]}': {disc} '{item[disc]}' appears twice")
            seen.add(item[disc])
            for k, v in item.items():
                if k != disc:
                    extract(v, path + [item[disc], k], specs)
    else:
        die(f"every leaf must be {{values: [...]}}, found {obj!r} at '{'.'.join(path) or '(root)'}'")


def merge(base, over):
    """spd's _merge_sweep_params: experiment keys override global ones, recursively."""
    for k, v in over.items():
        if k in base and isinstance(base[k], dict) and isinstance(v, dict) and "values" not in v:
            merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)


def apply_updates(cfg, updates):
    """spd's apply_nested_updates: dotted keys; list.<classname>.field for discriminated lists."""
    out = copy.deepcopy(cfg)
    for key, value in updates.items():
        ks = key.split(".")
        if len(ks) >= 3 and ks[0] in DISCRIMINATED:
            disc = DISCRIMINATED[ks[0]]
            lst = out.setdefault(ks[0], [])
            item = next((x for x in lst if isinstance(x, dict) and x.get(disc) == ks[1]), None)
            if item is None:
                item = {disc: ks[1]}
                lst.append(item)
            cur, rest = item, ks[2:]
        else:
            cur, rest = out, ks
        for k in rest[:-1]:
            if not isinstance(cur.get(k), dict):
                cur[k] = {}
            cur = cur[k]
        cur[rest[-1]] = value
    return out


def short(key):
    ks = key.split(".")
    if len(ks) >= 3 and ks[0] in DISCRIMINATED:
        return re.sub(r"Loss$", "", ks[1]) + "." + ".".join(ks[2:])
    return ks[-1]


def fmt(v):
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "x".join(fmt(x) for x in v)
    return str(v)


def absolutize(cfg, base_dir):
    """relative target / data paths are resolved as vpd does (cwd, the config's dir, its parent);
    target.model_path is a transcoder config's target"""
    for sec, key in (("target", "path"), ("target", "model_path"), ("data", "train"), ("data", "eval")):
        p = (cfg.get(sec) or {}).get(key) if isinstance(cfg.get(sec), dict) else None
        if isinstance(p, str) and p and not os.path.isabs(p):
            for cand in (os.path.abspath(p), os.path.join(base_dir, p), os.path.join(os.path.dirname(base_dir), p)):
                if os.path.exists(cand):
                    cfg[sec][key] = os.path.abspath(cand)
                    break
    if isinstance(cfg.get("pretrained_model_path"), str) and not os.path.isabs(cfg["pretrained_model_path"]):
        cand = os.path.join(base_dir, cfg["pretrained_model_path"])
        if os.path.exists(cand):
            cfg["pretrained_model_path"] = os.path.abspath(cand)


def parse_set(s):
    if "=" not in s:
        die(f"--set {s}: expected key=value")
    k, v = s.split("=", 1)
    return k, yaml.load(v, Loader=Loader)


SBATCH = """#!/usr/bin/env bash
# Job array of the sweep {sweep} ({n} runs), written by `vpd sweep`.
# Submit: sbatch {script}
# Each task runs line SLURM_ARRAY_TASK_ID+1 of {runs} through jobscripts/vpd_run.sh:
# checkpoint on USR1 (sent {signal_s} s before the time limit), requeue, resume.
#SBATCH --job-name={name}
#SBATCH --array=0-{last}{throttle}
#SBATCH --nodes=1
#SBATCH --ntasks={ntasks}
#SBATCH --time={time}
#SBATCH --signal=B:USR1@{signal_s}
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output={out}/logs/%A_%a.out
{extra}set -u
export OPENBLAS_NUM_THREADS=${{SLURM_CPUS_PER_TASK:-1}}
line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {runs})
read -r NAME CONFIG <<< "$line"
if [ "${{SLURM_NTASKS:-1}}" -gt 1 ]; then export VPD_LAUNCH="srun --kill-on-bad-exit=1 {vpd}"; else export VPD_LAUNCH="{vpd}"; fi
exec bash {runner} {out}/runs/"$NAME" "$CONFIG"
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep")
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", help="base config (one experiment, named after the file)")
    ap.add_argument("--config-dir", default=os.path.join(REPO, "configs"))
    ap.add_argument("--experiments", help="comma-separated experiment names")
    ap.add_argument("--throttle", type=int, default=0, help="at most N array tasks at once (0: no limit)")
    ap.add_argument("--ntasks", type=int, default=1, help="MPI ranks per run")
    ap.add_argument("--time", default="02:00:00")
    ap.add_argument("--signal-seconds", type=int, default=300)
    ap.add_argument("--partition")
    ap.add_argument("--account")
    ap.add_argument("--vpd", default=None, help="vpd binary (default: the one running this, else build/bin/vpd)")
    ap.add_argument("--set", action="append", default=[], help="key=value applied to every run (after the point)")
    a = ap.parse_args()
    try:
        sweep = yaml.load(open(a.sweep), Loader=Loader) or {}
    except (OSError, yaml.YAMLError) as e:
        die(f"{a.sweep}: {e}")
    if not isinstance(sweep, dict):
        die(f"{a.sweep}: the top level must be a mapping (global: and experiment sections)")
    if a.config:
        exps = [os.path.splitext(os.path.basename(a.config))[0]]
        bases = {exps[0]: a.config}
    else:
        exps = a.experiments.split(",") if a.experiments else [k for k in sweep if k != "global"]
        if not exps:
            die("no experiment: give --config BASE.yaml, --experiments, or an experiment section")
        bases = {e: os.path.join(a.config_dir, e.split("@", 1)[0] + ".yaml") for e in exps}
    out = os.path.abspath(a.out)
    os.makedirs(os.path.join(out, "configs"), exist_ok=True)
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    sets = dict(parse_set(s) for s in a.set)
    runs, points, names = [], [], set()
    for e in exps:
        if not os.path.exists(bases[e]):
            die(f"experiment '{e}': base config {bases[e]} not found (use --config or --config-dir)")
        base = yaml.load(open(bases[e]), Loader=Loader) or {}
        params = copy.deepcopy(sweep.get("global") or {})
        if isinstance(sweep.get(e), dict):
            merge(params, sweep[e])
        specs = []
        extract(params, [], specs)
        keys = [k for k, _ in specs]
        for combo in itertools.product(*[v for _, v in specs]) if specs else [()]:
            point = dict(zip(keys, combo))
            name = e.replace("@", "-") + "".join(f"-{short(k)}{fmt(v)}" for k, v in point.items())
            name = re.sub(r"[^A-Za-z0-9._=+-]", "_", name)
            if name in names:
                name += f"-{len(runs)}"
            names.add(name)
            cfg = apply_updates(base, point)
            cfg = apply_updates(cfg, sets)
            absolutize(cfg, os.path.dirname(os.path.abspath(bases[e])))
            if cfg.get("kind") in ("plt", "clt"):
                # a `vpd transcoder` config: it has no output section (the run directory is
                # --out); the job array (jobscripts/vpd_run.sh) runs vpd transcoder CONFIG
                # --out DIR/runs/<run> for it
                pass
            else:
                cfg.setdefault("output", {})
                if not isinstance(cfg["output"], dict):
                    cfg["output"] = {}
                cfg["output"]["dir"] = os.path.join(out, "runs", name)
            path = os.path.join(out, "configs", name + ".yaml")
            with open(path, "w") as f:
                f.write(f"# vpd sweep {os.path.abspath(a.sweep)}: experiment {e}, point {json.dumps(point)}\n")
                yaml.safe_dump(cfg, f, sort_keys=False)
            runs.append((name, path))
            points.append({"name": name, "experiment": e, "config": path, "params": point})
    with open(os.path.join(out, "runs.txt"), "w") as f:
        for n, p in runs:
            f.write(f"{n} {p}\n")
    json.dump({"sweep": os.path.abspath(a.sweep), "runs": points}, open(os.path.join(out, "sweep.json"), "w"), indent=1)
    vpd = a.vpd or os.environ.get("VPD_BIN") or os.path.join(REPO, "build", "bin", "vpd")
    extra = "".join(f"#SBATCH --{k}={v}\n" for k, v in (("partition", a.partition), ("account", a.account)) if v)
    script = os.path.join(out, "sweep.sbatch")
    with open(script, "w") as f:
        f.write(SBATCH.format(sweep=os.path.abspath(a.sweep), n=len(runs), script=script, runs=os.path.join(out, "runs.txt"),
                              name="vpd-" + os.path.splitext(os.path.basename(a.sweep))[0], last=len(runs) - 1,
                              throttle=f"%{a.throttle}" if a.throttle else "", ntasks=a.ntasks, time=a.time,
                              signal_s=a.signal_seconds, out=out, extra=extra, vpd=os.path.abspath(vpd),
                              runner=os.path.join(REPO, "jobscripts", "vpd_run.sh")))
    os.chmod(script, 0o755)
    print(f"{len(runs)} runs:")
    for n, p in runs:
        print(f"  {n}")
    print(f"wrote {out}/configs/*.yaml, runs.txt, sweep.json and {script}\nsubmit with: sbatch {script}")


if __name__ == "__main__":
    main()
