#!/usr/bin/env python3
"""vpd collect: gather every run's config values and final metrics into one CSV, and plot
the grid (L0 against reconstruction loss, coloured by a swept value).

usage: vpd collect DIR... [--out grid.csv] [--plot grid.png] [--x KEY] [--y KEY] [--color KEY]
       vpd collect --compare DIR... [--out compare.csv]

--compare gathers the outputs of `vpd compare` instead: every compare.csv below DIR, one row
per method × setting × protocol × layer, with a compare_dir column and, for a row's source
run (a VPD or transcoder run directory), the config keys that differ between those runs;
tools/frontier_plot.py draws the frontiers from the result.

A run is any directory below DIR with metrics.jsonl (and config.yaml). Columns: run (its
path), status (finished = run.h5 present, else the last logged step), every config key that
differs between the runs (flattened: loss_metric_configs.<classname>.coeff), the last
metrics record (train/...), and from run.h5 the summary per layer (l0, alive, mmcs).
Defaults: x = total L0 (sum of train/l0/* of the last record), y = the first of
StochasticReconLoss, CIMaskedReconLoss, total loss; colour = the first varying key.
Plotting uses matplotlib (Debian's python3-matplotlib, Agg backend).
"""
import argparse
import csv
import json
import math
import os
import sys

import yaml


def flatten(obj, prefix, out):
    if isinstance(obj, dict):
        for k, v in obj.items():
            flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(obj, list) and obj and all(isinstance(x, dict) and "classname" in x for x in obj):
        for x in obj:
            flatten({k: v for k, v in x.items() if k != "classname"}, f"{prefix}.{x['classname']}", out)
            out[f"{prefix}.{x['classname']}"] = "on"
    else:
        out[prefix] = json.dumps(obj) if isinstance(obj, list) else obj


def find_runs(dirs):
    runs = []
    for d in dirs:
        for root, subdirs, files in os.walk(d):
            if "metrics.jsonl" in files:
                runs.append(root)
                subdirs[:] = []
            subdirs[:] = [s for s in subdirs if s != "checkpoints"]
    return sorted(set(runs))


def load(run):
    row = {"run": run}
    cfg = {}
    try:
        flatten(yaml.safe_load(open(os.path.join(run, "config.yaml"))) or {}, "", cfg)
    except (OSError, yaml.YAMLError):
        pass
    last = {}
    for line in open(os.path.join(run, "metrics.jsonl")):
        try:
            last = json.loads(line)
        except json.JSONDecodeError:
            pass
    h5 = os.path.join(run, "run.h5")
    row["status"] = "finished" if os.path.exists(h5) else f"step {last.get('step', '-')}"
    row.update({k: v for k, v in last.items() if not k.startswith("time/")})
    row["final_step"] = last.get("step")
    row["l0_total"] = sum(v for k, v in last.items() if k.startswith("train/l0/") and v is not None) if last else None
    if os.path.exists(h5):
        try:
            import h5py
            with h5py.File(h5, "r") as f:
                if "summary" in f:
                    for layer, g in f["summary"].items():
                        for a, v in g.attrs.items():
                            row[f"summary/{layer}/{a}"] = float(v)
        except Exception as e:  # a damaged run.h5 must not stop the collection
            row["status"] = f"run.h5 unreadable: {e}"
    return cfg, row


def find_compare(dirs):
    out = []
    for d in dirs:
        for root, subdirs, files in os.walk(d):
            if "compare.csv" in files:
                out.append(root)
            subdirs[:] = [s for s in subdirs if s != "checkpoints"]
    return sorted(set(out))


def source_config(run):
    """the flattened config of a compare row's source run (VPD config.yaml, else the
    transcoder.h5 config attribute)"""
    cfg = {}
    try:
        flatten(yaml.safe_load(open(os.path.join(run, "config.yaml"))) or {}, "", cfg)
        return cfg
    except (OSError, yaml.YAMLError):
        pass
    try:
        import h5py
        with h5py.File(os.path.join(run, "transcoder.h5"), "r") as f:
            text = f.attrs.get("config", "")
            flatten(yaml.safe_load(text if isinstance(text, str) else text.decode()) or {}, "", cfg)
    except Exception:
        pass
    return cfg


def collect_compare(a):
    dirs = find_compare(a.dirs)
    if not dirs:
        print(f"vpd collect: no compare outputs (compare.csv) under {' '.join(a.dirs)}", file=sys.stderr)
        return 1
    rows = []
    for d in dirs:
        with open(os.path.join(d, "compare.csv"), newline="") as f:
            for r in csv.DictReader(f):
                r["compare_dir"] = d
                rows.append(r)
    sources = sorted({r["source"] for r in rows if r.get("source")})
    cfgs = {s: source_config(s) for s in sources}
    keys = sorted({k for c in cfgs.values() for k in c})
    # keys that differ among the sources that have them (a VPD and a transcoder config share few)
    varying = [k for k in keys if len({json.dumps(c[k], default=str) for c in cfgs.values() if k in c}) > 1 and k != "output.dir"]
    for r in rows:
        c = cfgs.get(r.get("source"), {})
        for k in varying:
            r[f"config/{k}"] = c.get(k)
    base = list(rows[0].keys())
    cols = ["compare_dir"] + [k for k in base if k != "compare_dir"] + [f"config/{k}" for k in varying if f"config/{k}" not in base]
    out = a.out if a.out != "grid.csv" else "compare.csv"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    print(f"wrote {out}: {len(rows)} rows from {len(dirs)} compare outputs; varying source config: {', '.join(varying) or '(none)'}")
    print(f"plot the frontiers with: tools/frontier_plot.py {out} --out frontier.png")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--compare", action="store_true", help="gather `vpd compare` outputs (compare.csv)")
    ap.add_argument("--out", default="grid.csv")
    ap.add_argument("--plot", default=None, help="PNG path (default: next to the CSV)")
    ap.add_argument("--x", default="l0_total")
    ap.add_argument("--y", default=None)
    ap.add_argument("--color", default=None)
    a = ap.parse_args()
    if a.compare:
        return collect_compare(a)
    runs = find_runs(a.dirs)
    if not runs:
        print(f"vpd collect: no runs (directories with metrics.jsonl) under {' '.join(a.dirs)}", file=sys.stderr)
        return 1
    loaded = [load(r) for r in runs]
    keys = sorted({k for c, _ in loaded for k in c})
    varying = [k for k in keys if len({json.dumps(c.get(k), default=str) for c, _ in loaded}) > 1 and k != "output.dir"]
    rows = []
    for c, r in loaded:
        row = {"run": r["run"], "status": r["status"]}
        row.update({k: c.get(k) for k in varying})
        row.update({k: v for k, v in r.items() if k not in ("run", "status")})
        rows.append(row)
    cols = ["run", "status"] + varying + sorted({k for r in rows for k in r} - set(varying) - {"run", "status"})
    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    print(f"wrote {a.out}: {len(rows)} runs, {len(cols)} columns; varying: {', '.join(varying) or '(none)'}")
    y = a.y
    if not y:
        for cand in ("train/loss/StochasticReconLoss", "train/loss/CIMaskedReconLoss", "train/loss/total"):
            if any(r.get(cand) is not None for r in rows):
                y = cand
                break
    color = a.color or (varying[0] if varying else None)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pts = [(r.get(a.x), r.get(y), r.get(color) if color else None) for r in rows]
    pts = [p for p in pts if isinstance(p[0], (int, float)) and isinstance(p[1], (int, float)) and math.isfinite(p[1])]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    numeric = color and all(isinstance(p[2], (int, float)) for p in pts)
    if numeric and pts:
        sc = ax.scatter([p[0] for p in pts], [p[1] for p in pts], c=[p[2] for p in pts], cmap="viridis")
        fig.colorbar(sc, ax=ax, label=color)
    else:
        groups = {}
        for p in pts:
            groups.setdefault(str(p[2]), []).append(p)
        for g, ps in groups.items():
            ax.scatter([p[0] for p in ps], [p[1] for p in ps], label=g if color else None)
        if color:
            ax.legend(title=color, fontsize=8)
    ax.set_xlabel(a.x)
    ax.set_ylabel(y or "")
    if pts and all(p[1] > 0 for p in pts):
        ax.set_yscale("log")
    ax.set_title(f"{len(pts)} runs")
    fig.tight_layout()
    plot = a.plot or os.path.splitext(a.out)[0] + ".png"
    fig.savefig(plot, dpi=120)
    print(f"wrote {plot}: {y} against {a.x}, coloured by {color}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
