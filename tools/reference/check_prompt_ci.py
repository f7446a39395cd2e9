#!/usr/bin/python3
"""Check the JSON of `vpd prompt-ci` (the post-hoc CI optimisation on one prompt).

usage: check_prompt_ci.py OUT.json [--compare OTHER.json] [--run RUN_DIR]
  always     internal consistency: n_nodes of the pruned graph = the number of kept nodes, every
             node's ci in (0, 1], positions inside the prompt, no node twice, probabilities in
             [0, 1], pruned nodes <= unpruned nodes
  --compare  OTHER.json holds the same result (every field but "run"), exactly: 1 and 2 ranks
  --run      recompute independently of vpd's C code, in float64 PyTorch, from RUN_DIR/run.h5
             and the target's weights: the target's P(target) at the position; the CI function
             (tests/ci_transformer/make_ref.py, global_shared_transformer only) on the prompt, its
             alive set (g > 0) against the unpruned node count; P(target) under CI masks (no Δ
             term) for the unpruned graph (masks = the CI function's g) and the pruned one (masks
             = the JSON's kept nodes, 0 elsewhere).
"""
import argparse
import json
import os
import sys

import h5py
import yaml


def fail(msg):
    print(f"check_prompt_ci: FAIL: {msg}")
    sys.exit(1)


def consistency(j):
    T = len(j["tokens"])
    if not 0 <= j["position"] < T:
        fail(f"position {j['position']} outside the prompt of {T} tokens")
    seen = set()
    for n in j["nodes"]:
        key = (n["layer"], n["c"], n["position"])
        if key in seen:
            fail(f"node {key} listed twice")
        seen.add(key)
        if not 0 < n["ci"] <= 1:
            fail(f"node {key}: ci {n['ci']} outside (0, 1]")
        if not 0 <= n["position"] < T:
            fail(f"node {key}: position outside the prompt")
    if j["pruned"]["n_nodes"] != len(j["nodes"]):
        fail(f"pruned n_nodes {j['pruned']['n_nodes']} but {len(j['nodes'])} nodes listed")
    for g in ("pruned", "unpruned"):
        for k in ("p_ci", "p_stochastic", "p_adversarial"):
            if not 0 <= j[g][k] <= 1:
                fail(f"{g} {k} = {j[g][k]} is not a probability")
    if j["pruned"]["n_nodes"] > j["unpruned"]["n_nodes"]:
        fail("more nodes after pruning than before")
    print(f"consistent: {T} tokens, {len(j['nodes'])} of {j['unpruned']['n_nodes']} nodes kept; "
          f"P(target) CI {j['unpruned']['p_ci']:.4f} -> {j['pruned']['p_ci']:.4f}, "
          f"stochastic {j['unpruned']['p_stochastic']:.4f} -> {j['pruned']['p_stochastic']:.4f}, "
          f"adversarial {j['unpruned']['p_adversarial']:.4f} -> {j['pruned']['p_adversarial']:.4f}")


def compare(a, b):
    a, b = dict(a), dict(b)
    a.pop("run", None)
    b.pop("run", None)
    if a != b:
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                fail(f"field '{k}' differs: {str(a.get(k))[:200]} vs {str(b.get(k))[:200]}")
    print(f"identical results ({len(a['nodes'])} nodes)")


def recompute(j, run_dir):
    import torch
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    import reference_vpd as RV
    from check_harvest import reference_run
    run = h5py.File(os.path.join(run_dir, "run.h5"), "r")
    cfg = yaml.safe_load(run["config"].attrs["yaml"])
    pd = cfg.get("pd", cfg)
    if pd["ci_config"].get("fn_type") != "global_shared_transformer":
        fail("--run: only the global_shared_transformer CI function is implemented here")
    names = sorted(run["components"].keys(), key=lambda s: s.encode())
    p, mcfg, comp, m, tl = reference_run(run, cfg, run_dir, names)
    tok = torch.tensor([j["tokens"]], dtype=torch.int64)
    T, t, y = tok.shape[1], j["position"], j["target_token"]
    C = {n: comp[n][1].shape[0] for n in names}

    def forward(masks):
        acts = {}

        def layer(n, x):
            W, b, emb = tl[n]
            if n in comp:
                V, U = comp[n]
                a = V[x] if emb else x @ V
                acts[n] = a if emb else x
                if masks is not None:
                    return (a * masks[n]) @ U
            return W[x] if emb else x @ W.T
        out = RV.model_forward("llama", p, mcfg, tok, layer)
        return out, acts

    with torch.no_grad():
        out, acts = forward(None)
        p_model = out[0, t].softmax(-1)[y].item()
        if abs(p_model - j["p_target_model"]) > 1e-4 + 1e-3 * p_model:
            fail(f"target P(target) {j['p_target_model']} but PyTorch gives {p_model}")
        z = m({n: acts[n] for n in names})
        g = {n: z[n].clamp(0, 1).reshape(1, T, C[n]) for n in names}
        alive = sum(int((g[n] > 0).sum()) for n in names)
        near = sum(int(((z[n] > -1e-4) & (z[n] < 1e-4)).sum()) for n in names)
        if abs(alive - j["unpruned"]["n_nodes"]) > near:
            fail(f"unpruned: {j['unpruned']['n_nodes']} nodes but the CI function recomputed in PyTorch has {alive} "
                 f"with g > 0 ({near} within 1e-4 of 0)")
        p_un = forward(g)[0][0, t].softmax(-1)[y].item()
        mk = {n: torch.zeros(1, T, C[n]) for n in names}
        for nd in j["nodes"]:
            mk[nd["layer"]][0, nd["position"], nd["c"]] = nd["ci"]
        p_pr = forward(mk)[0][0, t].softmax(-1)[y].item()
    for what, mine, ref in (("unpruned", j["unpruned"]["p_ci"], p_un), ("pruned", j["pruned"]["p_ci"], p_pr)):
        if abs(mine - ref) > 1e-3 + 1e-2 * ref:
            fail(f"{what} P(target) under CI masks: {mine} in the JSON, {ref} recomputed in PyTorch")
    print(f"recomputed in PyTorch (float64): target P {p_model:.5f}; unpruned {alive} alive (JSON "
          f"{j['unpruned']['n_nodes']}), P(CI) {p_un:.5f} (JSON {j['unpruned']['p_ci']:.5f}); pruned P(CI) "
          f"{p_pr:.5f} (JSON {j['pruned']['p_ci']:.5f})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("--compare")
    ap.add_argument("--run")
    a = ap.parse_args()
    j = json.load(open(a.json))
    consistency(j)
    if a.compare:
        compare(j, json.load(open(a.compare)))
    if a.run:
        recompute(j, a.run)
    print("prompt-ci ok")
