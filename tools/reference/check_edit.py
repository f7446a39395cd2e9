#!/usr/bin/python3
"""Independent checks of `vpd edit` and `vpd generate` (tests/cmake/edit.cmake).

  check_edit.py weights RUN_DIR TARGET_DIR EDITED_DIR [--forward OUT.h5]
      Recompute the edited weights from run.h5 (components/<layer>/U, V) and the target's
      model.safetensors in float64 with numpy, from EDITED_DIR/edit.json:
          mask m:          W - (1 - m) U_c V_c^T
          overwrite alpha: W - (U_c + alpha u/|u|) V_c^T,  u = wte.weight[token] (= lm_head row)
      and compare with EDITED_DIR/model.safetensors (every other tensor bit-identical). With
      --forward (a `vpd forward EDITED_DIR` output), run the PyTorch reference LlamaSimpleMLP
      (reference_models.llama_forward, float64) with the recomputed weights on its tokens
      and compare the logits; also check the edit changed the logits.
  check_edit.py greedy MODEL_DIR --prompt-ids "a b c" --generated-ids "d e f"
      The greedy continuation by the PyTorch reference (float64, sliding window of n_ctx)
      must equal vpd generate's.
  check_edit.py same A.json B.json [--rtol R]
      Two --measure JSON files agree on every number (positions, P, CE, KL).
  check_edit.py expect A.json KEY OP VALUE ...
      Assertions on a --measure JSON: KEY a dotted path, OP one of eq le ge lt gt.
"""
import argparse
import json
import math
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import reference_models as rm  # noqa: E402
import safetensors_np  # noqa: E402


def edited_weights(run_dir, target_dir, edits):
    st = {k: np.array(v, np.float64) for k, v in safetensors_np.load(os.path.join(target_dir, "model.safetensors")).items()}
    with h5py.File(os.path.join(run_dir, "run.h5"), "r") as f:
        for e in edits:
            g = f["components"][e["layer"]]
            V = np.asarray(g["V"], np.float64)  # [d_in, C]
            U = np.asarray(g["U"], np.float64)  # [C, d_out]
            c = e["c"]
            W = st[e["layer"] + ".weight"]      # [d_out, d_in] (f32 values in f64)
            assert W.shape == (U.shape[1], V.shape[0]), (e["layer"], W.shape, U.shape, V.shape)
            if e["kind"] == "mask":
                w = (1.0 - e["mask"]) * U[c]
            else:
                u = st["wte.weight"][e["token"]]
                w = U[c] + e["alpha"] * u / np.linalg.norm(u)
            st[e["layer"] + ".weight"] = W - np.outer(w, V[:, c])
    if "lm_head.weight" in st:
        st["lm_head.weight"] = st["wte.weight"]
    return st


def cmd_weights(a):
    with open(os.path.join(a.edited, "edit.json")) as f:
        info = json.load(f)
    edits = info["edits"]
    assert edits, "edit.json lists no edits"
    ref = edited_weights(a.run_dir, a.target, edits)
    got = safetensors_np.load(os.path.join(a.edited, "model.safetensors"))
    orig = safetensors_np.load(os.path.join(a.target, "model.safetensors"))
    assert set(got) == set(orig), (sorted(got), sorted(orig))
    edited_names = {e["layer"] + ".weight" for e in edits}
    worst = 0.0
    for k in got:
        if k in edited_names:
            err = np.abs(got[k] - ref[k]).max() / max(np.abs(ref[k]).max(), 1e-30)
            worst = max(worst, err)
            moved = np.abs(ref[k] - orig[k]).max()
            print(f"weights: {k}: max rel err {err:.2e} vs numpy float64 (edit moved it by up to {moved:.3e})")
            assert err < 1e-6, f"{k}: edited weight differs from the numpy recomputation ({err:.3e})"
            assert moved > 0, f"{k}: the edit changed nothing"
        else:
            assert np.array_equal(got[k], orig[k]), f"{k}: not edited but changed"
    if a.forward:
        with open(os.path.join(a.edited, "config.json")) as f:
            cfg = json.load(f)
        with h5py.File(a.forward, "r") as f:
            logits = np.asarray(f["logits"], np.float64)
            tok = torch.from_numpy(np.asarray(f["tokens"], np.int64))
        torch.set_default_dtype(torch.float64)
        p = {k: torch.from_numpy(v) for k, v in ref.items()}
        ref_logits = rm.llama_forward(p, tok, cfg).detach().numpy()
        p0 = {k: torch.from_numpy(np.array(v, np.float64)) for k, v in orig.items()}
        base = rm.llama_forward(p0, tok, cfg).detach().numpy()
        err = np.abs(logits - ref_logits).max() / np.abs(ref_logits).max()
        change = np.abs(ref_logits - base).max()
        print(f"forward: vpd forward of the edited model vs PyTorch on the recomputed weights: max rel err {err:.2e}; "
              f"the edit moves logits by up to {change:.3e}")
        assert err < 2e-5, f"edited logits differ from the PyTorch reference ({err:.3e})"
        assert change > 100 * err * np.abs(ref_logits).max(), "the edit's effect on the logits is not above the error"
    print("check_edit weights ok")
    return 0


def cmd_greedy(a):
    with open(os.path.join(a.model_dir, "config.json")) as f:
        cfg = json.load(f)
    torch.set_default_dtype(torch.float64)
    p = {k: torch.from_numpy(np.array(v, np.float64)) for k, v in
         safetensors_np.load(os.path.join(a.model_dir, "model.safetensors")).items()}
    ctx = [int(x) for x in a.prompt_ids.split()]
    want = [int(x) for x in a.generated_ids.split()]
    n = cfg["n_ctx"]
    margins = []
    for _ in range(len(want)):
        window = torch.tensor([ctx[-n:]])
        z = rm.llama_forward(p, window, cfg)[0, -1]
        top = torch.topk(z, 2).values
        margins.append(float(top[0] - top[1]))
        ctx.append(int(torch.argmax(z)))
    got = ctx[len(ctx) - len(want):]
    print(f"greedy: vpd {want[:12]}... reference {got[:12]}... (min top-2 margin {min(margins):.2e})")
    for i, (x, y) in enumerate(zip(want, got)):
        if x != y:
            # a float32 near-tie may pick the other of two almost equal logits: that is not an error
            assert margins[i] < 1e-4, f"greedy token {i}: vpd {x}, reference {y} (margin {margins[i]:.3e})"
            print(f"greedy: stopped comparing at token {i}: a near-tie (margin {margins[i]:.2e})")
            break
    print("check_edit greedy ok")
    return 0


def flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, prefix + k + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[prefix + k] = float(v)
    return out


def cmd_same(a):
    A, B = (flat(json.load(open(p))) for p in (a.a, a.b))
    for k in A:
        if k in ("window", "fire_threshold"):
            continue
        x, y = A[k], B.get(k)
        assert y is not None, f"{k} missing in {a.b}"
        assert math.isclose(x, y, rel_tol=a.rtol, abs_tol=a.atol), f"{k}: {x} vs {y}"
    print(f"check_edit same: {len(A)} numbers agree (rtol {a.rtol:g}, atol {a.atol:g})")
    return 0


def cmd_expect(a):
    m = flat(json.load(open(a.json)))
    ops = {"eq": lambda x, y: x == y, "le": lambda x, y: x <= y, "ge": lambda x, y: x >= y,
           "lt": lambda x, y: x < y, "gt": lambda x, y: x > y}
    t = a.terms
    assert len(t) % 3 == 0, "expect: KEY OP VALUE triples"
    for i in range(0, len(t), 3):
        k, op, v = t[i], t[i + 1], float(t[i + 2])
        assert k in m, f"{k} not in {a.json} (has {sorted(m)})"
        assert op in ops, f"expect: unknown OP '{op}' (eq le ge lt gt)"
        assert ops[op](m[k], v), f"{a.json}: {k} = {m[k]} is not {op} {v}"
        print(f"expect: {k} = {m[k]:.6g} {op} {v:g}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("weights")
    w.add_argument("run_dir")
    w.add_argument("target")
    w.add_argument("edited")
    w.add_argument("--forward")
    g = sub.add_parser("greedy")
    g.add_argument("model_dir")
    g.add_argument("--prompt-ids", required=True)
    g.add_argument("--generated-ids", required=True)
    s = sub.add_parser("same")
    s.add_argument("a")
    s.add_argument("b")
    s.add_argument("--rtol", type=float, default=1e-4)
    s.add_argument("--atol", type=float, default=1e-7)
    e = sub.add_parser("expect")
    e.add_argument("json")
    e.add_argument("terms", nargs="+")
    a = ap.parse_args()
    return {"weights": cmd_weights, "greedy": cmd_greedy, "same": cmd_same, "expect": cmd_expect}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
