#!/usr/bin/env python3
"""Check a vpd run directory against thresholds (used by the end-to-end tests).

usage: check_run.py RUN_DIR [--min-mmcs X] [--dedicated N] [--max-l0 X] [--steps N]

Reads RUN_DIR/run.h5 with h5py only (no vpd code) and RUN_DIR/metrics.jsonl; prints the
per-layer summary and exits 1 when a threshold is missed."""
import argparse
import json
import sys

import h5py


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--min-mmcs", type=float, default=None, help="every layer's MMCS must be >= this")
    ap.add_argument("--captured", type=int, default=None,
                    help="every layer must have this many features captured by exactly one alive subcomponent")
    ap.add_argument("--max-l0", type=float, default=None, help="total L0 must be <= this")
    ap.add_argument("--steps", type=int, default=None, help="run.h5 must record this many steps")
    a = ap.parse_args()
    ok = True
    with h5py.File(f"{a.run_dir}/run.h5", "r") as f:
        assert f.attrs["format"] == "vpd-run", "not a vpd run file"
        steps = int(f.attrs["steps"])
        yaml_text = f["config"].attrs["yaml"]
        assert "module_info" in yaml_text or "pd:" in yaml_text
        total_l0 = 0.0
        for layer in f["summary"]:
            s = f["summary"][layer].attrs
            V = f["components"][layer]["V"]
            U = f["components"][layer]["U"]
            assert V.shape[1] == U.shape[0], f"{layer}: V {V.shape} and U {U.shape} disagree on C"
            line = f"{layer}: C={U.shape[0]} L0={s['l0']:.3f} alive={s['alive']}"
            total_l0 += float(s["l0"])
            if "mmcs" in s:
                line += f" MMCS={s['mmcs']:.4f} captured={s['captured_features']} dedicated_ci={s['dedicated_features']}"
                if a.min_mmcs is not None and s["mmcs"] < a.min_mmcs:
                    ok = False
                    line += f"  <-- MMCS below {a.min_mmcs}"
                if a.captured is not None and s["captured_features"] != a.captured:
                    ok = False
                    line += f"  <-- expected {a.captured} captured features"
            elif a.min_mmcs is not None:
                ok = False
                line += "  <-- no MMCS recorded"
            print(line)
        print(f"total L0 {total_l0:.3f}, steps {steps}")
        if a.max_l0 is not None and total_l0 > a.max_l0:
            ok = False
            print(f"total L0 above {a.max_l0}")
        if a.steps is not None and steps != a.steps:
            ok = False
            print(f"expected {a.steps} steps")
    lines = [json.loads(l) for l in open(f"{a.run_dir}/metrics.jsonl")]
    assert lines and lines[-1]["step"] == steps, "metrics.jsonl does not end at the last step"
    for key in ("train/loss/total", "train/schedules/lr", "train/grad_norms/components", "time/step_seconds"):
        assert key in lines[-1], f"metrics.jsonl lacks {key}"
    print(f"metrics.jsonl: {len(lines)} records, final total loss {lines[-1]['train/loss/total']:.4e}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
