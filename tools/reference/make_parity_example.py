#!/usr/bin/python3
"""Write a small example parity file (docs/parity.md) and print how to check it.

  make_parity_example.py [--kind tms|resid_mlp|llama] [--out example_parity.h5]

The file holds a target (inline for the toy models, a model directory next to it for
the LM), components, CI values, every loss term with its fixed draws, and under
/reference the PyTorch reference's values and gradients (tools/reference/reference_vpd.py).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_vpd  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", default="tms", choices=list(reference_vpd.PROBLEMS))
    ap.add_argument("--out", default="example_parity.h5")
    a = ap.parse_args()
    res = reference_vpd.make(a.kind, a.out)
    print(f"wrote {a.out}: {a.kind} target, {len(res)} loss terms, reference values under /reference")
    print("run:")
    print(f"  vpd parity {a.out} --out {os.path.splitext(a.out)[0]}.out.h5 --grad")
    print(f"  /usr/bin/python3 {os.path.join(os.path.dirname(os.path.abspath(__file__)), 'reference_vpd.py')} "
          f"compare {a.out} {os.path.splitext(a.out)[0]}.out.h5 --grad")
    print("inspect: h5dump -H", a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
