#!/usr/bin/env python3
"""Compare two vpd runs: components (max relative difference over each V and U) and the
metrics of every logged step (relative difference), e.g. a 1-rank and a 2-rank run.

usage: compare_runs.py RUN_A RUN_B [--rtol 1e-4] [--metrics-rtol 1e-4]
Exits 1 if any difference is above its tolerance; prints the largest ones."""
import argparse
import json
import sys

import h5py
import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rtol", type=float, default=1e-4, help="max |A-B| / max|A| per tensor")
    ap.add_argument("--atol", type=float, default=0.0,
                    help="absolute floor: a tensor passes when max|A-B| <= rtol*max|A| + atol (tensors near zero, "
                         "e.g. biases a few steps from their zero init)")
    ap.add_argument("--metrics-rtol", type=float, default=1e-4, help="per metric |A-B| / max(|A|, 1e-12)")
    ap.add_argument("--l0-atol", type=float, default=0.0,
                    help="absolute tolerance for L0 metrics: a count over rows flips by 1/rows when one g sits at 0")
    ap.add_argument("--exact", action="store_true", help="require bitwise equality")
    args = ap.parse_args()
    ok = True
    worst = 0.0
    with h5py.File(f"{args.a}/run.h5", "r") as fa, h5py.File(f"{args.b}/run.h5", "r") as fb:
        for group in ("components", "ci_fn"):
            names = []
            fa[group].visit(lambda n: names.append(n) if isinstance(fa[group][n], h5py.Dataset) else None)
            for n in names:
                x, y = fa[group][n][()], fb[group][n][()]
                if x.shape != y.shape:
                    print(f"{group}/{n}: shapes {x.shape} vs {y.shape}")
                    ok = False
                    continue
                dabs, amax = float(np.abs(x - y).max()), float(np.abs(x).max())
                d = dabs / max(amax, 1e-30)
                worst = max(worst, d) if group == "components" else worst
                bad = (dabs != 0) if args.exact else (dabs > args.rtol * amax + args.atol)
                if bad:
                    ok = False
                print(f"{group}/{n}: max rel diff {d:.3e}{'  <-- too large' if bad else ''}")
    ma = [json.loads(l) for l in open(f"{args.a}/metrics.jsonl")]
    mb = [json.loads(l) for l in open(f"{args.b}/metrics.jsonl")]
    if len(ma) != len(mb):
        print(f"metrics.jsonl: {len(ma)} vs {len(mb)} records")
        ok = False
    mworst, mkey = 0.0, ""
    for ra, rb in zip(ma, mb):
        for k, v in ra.items():
            if k.startswith("time/") or v is None:
                continue
            w = rb.get(k)
            if "/l0" in k and not args.exact:
                if abs(v - w) > args.l0_atol:
                    ok = False
                    print(f"step {ra['step']} {k}: {v} vs {w}  <-- beyond --l0-atol")
                continue
            d = abs(v - w) / max(abs(v), 1e-12)
            if d > mworst:
                mworst, mkey = d, f"step {ra['step']} {k}: {v} vs {w}"
    mbad = (mworst != 0) if args.exact else (mworst > args.metrics_rtol)
    print(f"largest metric difference {mworst:.3e} ({mkey}){'  <-- too large' if mbad else ''}")
    print(f"largest component difference {worst:.3e}")
    return 0 if ok and not mbad else 1


if __name__ == "__main__":
    sys.exit(main())
