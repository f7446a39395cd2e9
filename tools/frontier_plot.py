#!/usr/bin/python3
"""frontier_plot.py: the sparsity–reconstruction frontiers of `vpd compare` outputs.

usage: frontier_plot.py CSV... [--out frontier.png] [--x l0_module] [--protocols a,b,c] [--logy]
                        [--dict-size N] [--splitting SPLIT.csv... --splitting-out splitting.png]

CSV: compare.csv files of `vpd compare`, or the table `vpd collect --compare` gathers.
One curve per method and protocol — ΔCE over the target (delta_ce, with its standard error
as error bars) against an L0 column (default l0_module: active subcomponents per weight
matrix for VPD, active latents per layer for transcoders; l0_mlp counts VPD's c_fc and
down_proj together, l0_recon what reaches one MLP's reconstruction), and in a second panel
against parameters touched per token. Rows with layer "all" (error_propagating,
clean_input) and "mean" (single_layer) are plotted; the dashed line is zero-ablating every
MLP. Colour = method, line style = protocol; points of one curve are the runs and VPD mask
settings, sorted by L0. Transcoders trained on the end-to-end objective (a `config/objective`
column of `vpd collect --compare` equal to kl) are their own curves ("plt kl"); --dict-size N
keeps only transcoders with N latents per layer (VPD rows are kept), so a k grid is one curve;
--split-by COLUMN makes a curve per value of COLUMN (e.g. config/pd.steps: VPD runs of
different lengths). --vpd-settings g>0[,ci,...] keeps only those VPD mask settings, so a grid of
VPD runs (importance-minimality coefficient, C) is one curve per setting instead of a zig-zag
through every run's thresholds. The same run's row given twice (overlapping compare outputs
on the same tokens) is plotted once.
--splitting draws the feature-splitting figure from splitting.csv files of `vpd compare`:
split_frac and matched_frac of each (smaller -> larger dictionary) pair, per method.
Matplotlib (Agg).
"""
import argparse
import csv
import math
import os
import sys
import textwrap

STYLE = {"error_propagating": "-", "clean_input": "--", "single_layer": ":"}
COLOR = {"vpd": "tab:purple", "plt": "tab:blue", "clt": "tab:orange", "plt kl": "tab:green", "clt kl": "tab:red"}


def num(x):
    try:
        v = float(x)
        return v if math.isfinite(v) else None
    except (TypeError, ValueError):
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", nargs="+")
    ap.add_argument("--out", default="frontier.png")
    ap.add_argument("--x", default="l0_module", help="L0 column: l0_module, l0_mlp or l0_recon")
    ap.add_argument("--protocols", default="error_propagating,clean_input,single_layer")
    ap.add_argument("--logy", action="store_true")
    ap.add_argument("--dict-size", type=int, help="keep only transcoders with this many latents per layer")
    ap.add_argument("--split-by", action="append", default=[],
                    help="a column (e.g. config/pd.steps) whose values make separate curves (repeatable)")
    ap.add_argument("--vpd-settings", help="keep only these VPD mask settings (comma-separated, e.g. g>0)")
    ap.add_argument("--splitting", nargs="+", help="splitting.csv files of vpd compare: the feature-splitting figure")
    ap.add_argument("--splitting-out", default="splitting.png")
    a = ap.parse_args()
    if a.splitting:
        r = splitting_plot(a.splitting, a.splitting_out)
        if r:
            return r
    rows = []
    for p in a.csv:
        with open(p, newline="") as f:
            rows += list(csv.DictReader(f))
    need = {"method", "protocol", "layer", "delta_ce", a.x, "params_per_token"}
    if not rows or not need <= set(rows[0]):
        print(f"frontier_plot: {a.csv}: expected vpd compare rows with columns {sorted(need)}", file=sys.stderr)
        return 1
    protocols = a.protocols.split(",")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 6.4))
    zero = [num(r["delta_ce"]) for r in rows if r["method"] == "zero" and r["layer"] == "all"]
    curves = {}
    seen = set()
    keep_vpd = set(a.vpd_settings.split(",")) if a.vpd_settings else None
    for r in rows:
        if r["method"] == "zero" or r["protocol"] not in protocols or r["layer"] not in ("all", "mean"):
            continue
        if keep_vpd is not None and r["method"] == "vpd" and r.get("setting") not in keep_vpd:
            continue
        key = (r["method"], os.path.basename(os.path.normpath(r.get("source", ""))), r.get("setting"), r["protocol"],
               r["layer"], r.get("n_tokens"), r["delta_ce"])
        if key in seen:
            continue
        seen.add(key)
        if a.dict_size and r["method"] != "vpd" and num(r.get("dict_size")) != a.dict_size:
            continue
        x, xp, y = num(r[a.x]), num(r["params_per_token"]), num(r["delta_ce"])
        if x is None or y is None:
            continue
        method = r["method"] + (" kl" if r.get("config/objective") == "kl" else "")
        split = "".join(f" {c.split('/')[-1]}={r[c]}" for c in a.split_by if r.get(c))
        curves.setdefault((method, split, r["protocol"]), []).append((x, xp, y, num(r.get("delta_ce_se")) or 0.0))
    if not curves:
        print("frontier_plot: no rows to plot (layer 'all' / 'mean' of the chosen protocols)", file=sys.stderr)
        return 1
    # colour = method, line style = protocol, marker = the --split-by value (e.g. training length)
    markers = {v: "osD^vP*X"[i % 8] for i, v in enumerate(sorted({k[1] for k in curves}))}
    for (method, split, proto), pts in sorted(curves.items()):
        for ax, xi in ((axes[0], 0), (axes[1], 1)):
            ps = sorted((p for p in pts if p[xi] is not None), key=lambda p: p[xi])
            ax.errorbar([p[xi] for p in ps], [p[2] for p in ps], yerr=[p[3] for p in ps], marker=markers[split], ms=4,
                        capsize=2, color=COLOR.get(method), linestyle=STYLE.get(proto, "-"),
                        label=f"{method}{split} {proto}" if xi == 0 else None)
    for ax, xl in ((axes[0], a.x), (axes[1], "parameters touched per token")):
        if zero and zero[0] is not None:
            ax.axhline(zero[0], color="grey", linestyle="--", linewidth=1, label="zero-ablate all MLPs")
        ax.set_xlabel(xl)
        ax.set_ylabel("CE increase over the target")
        if a.logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    n_leg = len(curves) + (1 if zero and zero[0] is not None else 0)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle("vpd compare: CE increase vs sparsity (lower is better)")
    fig.tight_layout(rect=(0, min(0.45, 0.025 * ((n_leg + 2) // 3) + 0.03), 1, 1))
    fig.savefig(a.out, dpi=120)
    print(f"wrote {a.out}: {len(curves)} curves, {sum(map(len, curves.values()))} points ({', '.join(f'{m}{sp} {p}' for m, sp, p in sorted(curves))})")
    return 0


def splitting_plot(paths, out):
    """feature splitting: one group of bars per method, one bar per (small -> large) pair"""
    rows = []
    for p in paths:
        with open(p, newline="") as f:
            rows += list(csv.DictReader(f))
    need = {"method", "small_size", "large_size", "split_frac", "matched_frac"}
    if not rows or not need <= set(rows[0]):
        print(f"frontier_plot: {paths}: expected splitting.csv rows with columns {sorted(need)}", file=sys.stderr)
        return 1
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows.sort(key=lambda r: (r["method"], int(r["small_size"]), int(r["large_size"])))
    labels = [f"{r['method']} {r['small_size']}→{r['large_size']}" for r in rows]
    # the same pair of sizes from different runs (e.g. other training lengths): name the runs
    labels = [lb + ("\n" + textwrap.fill(os.path.basename(os.path.normpath(r.get("small", ""))), 16) if labels.count(lb) > 1 else "")
              for lb, r in zip(labels, rows)]
    xs = list(range(len(rows)))
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(rows) + 2), 4))
    w = 0.38
    sp = [100 * (num(r["split_frac"]) or 0) for r in rows]
    mt = [100 * (num(r["matched_frac"]) or 0) for r in rows]
    b1 = ax.bar([x - w / 2 for x in xs], sp, w, label="split: source objects with > 1 match in the larger run",
                color=[COLOR.get(r["method"], "grey") for r in rows])
    b2 = ax.bar([x + w / 2 for x in xs], mt, w, label="matched: larger run's objects matching the smaller",
                color="lightgrey", edgecolor=[COLOR.get(r["method"], "grey") for r in rows])
    for bars in (b1, b2):
        for b in bars:
            ax.annotate(f"{b.get_height():.1f}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                        va="bottom", fontsize=7)
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, fontsize=7 if any("\n" in lb for lb in labels) else 8)
    ax.set_ylabel("% (mean over MLPs)")
    cos = rows[0].get("cos_threshold", "0.5")
    ax.set_title(f"feature splitting, smaller \u2192 larger dictionary (cosine > {cos})", fontsize=10)
    ax.set_ylim(0, 115)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out}: {len(rows)} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
