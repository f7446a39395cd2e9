#!/usr/bin/python3
"""Check RUN_DIR/harvest.h5 (vpd harvest) with h5py and numpy alone.

Independent of vpd's code: recomputes from run.h5 (components U, V), the target's weights
(model.safetensors, parsed here) and the token file
  - a_c = |U_c| V[token, c] at the firing token of every top context of the wte layer,
  - the logit lens (wte @ (ln_f.weight * U_c)) of one residual writer,
  - the head shares of every q/k/v/o layer and the q/k interaction under RoPE,
  - the context tokens of every recorded example against the token file,
and checks internal consistency: histogram sums equal the position count, density and mean g
agree with the counts and the g histogram, top lists are sorted and complete, no recorded
context holds a firing position that ranks above the top list's last entry yet is missing
from it, quantile samples fall in their g bucket, precision / recall / PMI agree with the
counts, Jaccard values are consistent and sorted.

usage: check_harvest.py RUN_DIR [--compare OTHER.h5]
  --compare: every dataset and attribute of RUN_DIR/harvest.h5 equals OTHER.h5's exactly
  (except the attribute 'run' when the directories differ)
"""
import argparse
import json
import os
import sys

import h5py
import numpy as np
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import safetensors_np  # noqa: E402


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def datasets(f):
    out = {}
    f.visititems(lambda n, o: out.__setitem__(n, o) if isinstance(o, h5py.Dataset) else None)
    return out


def compare(a_path, b_path):
    a, b = h5py.File(a_path, "r"), h5py.File(b_path, "r")
    da, db = datasets(a), datasets(b)
    if set(da) != set(db):
        fail(f"dataset sets differ: {sorted(set(da) ^ set(db))[:10]}")
    for n in da:
        x, y = da[n][()], db[n][()]
        if x.shape != y.shape or x.dtype != y.dtype or not np.array_equal(x, y, equal_nan=True):
            fail(f"dataset {n} differs between {a_path} and {b_path}")
    groups = ["/"]
    a.visititems(lambda n, o: groups.append(n) if isinstance(o, h5py.Group) else None)
    for g in groups:
        for k in a[g].attrs:
            if k == "run":
                continue
            if k not in b[g].attrs or not np.array_equal(a[g].attrs[k], b[g].attrs[k]):
                fail(f"attribute {g}@{k} differs")
    print(f"identical: {len(da)} datasets of {a_path} and {b_path}")


def load_safetensors(path):
    return safetensors_np.load(path, dtypes=("F32",), strict=True)


def target_path(cfg, run_dir):
    t = cfg.get("target", {})
    p = t.get("path") or t.get("model_path") or cfg.get("pretrained_model_path")
    for cand in (p, os.path.join(run_dir, p), os.path.join(run_dir, "..", p), os.path.join(run_dir, "..", "..", p)):
        if os.path.isdir(cand):
            return cand
    fail(f"cannot find the target directory {p}")


def gelu_erf(x):
    from math import erf
    return 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))


def check_toy_ci(run, cfg, W, name, L, U, Vm, unorm):
    """layerwise `mlp` CI functions of toy targets: recompute g and a_c of every recorded example
    from its input features, the target's weights and run.h5's components and CI parameters"""
    ci = cfg.get("ci_config", {})
    if ci.get("fn_type") != "mlp" or len(ci.get("hidden_dims", [])) != 1:
        return 0
    if name == "linear1":
        lin = lambda x: x
    elif name == "linear2":
        W1 = W["linear1.weight"].astype(np.float64)
        lin = lambda x: x @ W1.T
    else:
        return 0
    pre = "ci_fn._ci_fns." + name + ".layers."
    W0, b0 = run["ci_fn"][pre + "0.W"][()], run["ci_fn"][pre + "0.b"][()]
    W2, b2 = run["ci_fn"][pre + "2.W"][()], run["ci_fn"][pre + "2.b"][()]
    n_checked = 0
    for grp in ("top", "quantiles"):
        x = L[grp + "/x"][()].reshape(L.attrs["C"], -1, W["linear1.weight"].shape[1]).astype(np.float64)
        pos = L[grp + "/position"][()].reshape(L.attrs["C"], -1)
        g_rec = L[grp + "/g"][()].reshape(L.attrs["C"], -1)
        a_rec = L[grp + "/a"][()].reshape(L.attrs["C"], -1)
        for c in range(L.attrs["C"]):
            ok = pos[c] >= 0
            if not ok.any():
                continue
            s = lin(x[c][ok]) @ Vm[:, c].astype(np.float64)
            h = gelu_erf(s[:, None] * W0[c, 0][None, :] + b0[c][None, :])
            g = np.clip(h @ W2[c, :, 0] + b2[c, 0], 0, 1)
            if not np.allclose(g, g_rec[c][ok], atol=2e-5) or not np.allclose(unorm[c] * s, a_rec[c][ok], rtol=1e-4, atol=1e-5):
                fail(f"{name}[{c}] {grp}: recomputed g / a_c of the recorded examples differ (g {g[:3]} vs {g_rec[c][ok][:3]})")
            n_checked += int(ok.sum())
    return n_checked


def rope_rotate_k(k, delta, base):
    """rotate a key vector [.., dh] by angle -delta*theta_i (half-split pairs)"""
    dh = k.shape[-1]
    half = dh // 2
    th = -delta * base ** (-2.0 * np.arange(half) / dh)
    c, s = np.cos(th), np.sin(th)
    x1, x2 = k[..., :half], k[..., half:]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


def check(run_dir):
    hf = h5py.File(os.path.join(run_dir, "harvest.h5"), "r")
    run = h5py.File(os.path.join(run_dir, "run.h5"), "r")
    at = hf.attrs
    assert at["format"] == "vpd-harvest"
    P = int(at["positions"])
    lm = at["target"] == "llama_simple_mlp"
    cfg = yaml.safe_load(run["config"].attrs["yaml"])
    layers = at["layers"].split("\n")
    thr = float(at["fire_threshold"])
    n_checked_ctx = 0
    tpath = target_path(cfg, run_dir)
    W = load_safetensors(os.path.join(tpath, "model.safetensors"))
    mcfg = json.load(open(os.path.join(tpath, "config.json")))
    n_ci_checked = 0
    if lm:
        toks = np.fromfile(at["tokens"], dtype="<u2" if at["vocab_size"] <= 65535 else "<u4")
        V_tot = int(at["vocab_size"])
        if hf["token_count"][()].sum() != P:
            fail("token_count does not sum to the positions")
    for name in layers:
        L = hf["layers"][name]
        C = L.attrs["C"]
        U = run["components"][name]["U"][()]
        Vm = run["components"][name]["V"][()]
        unorm = np.linalg.norm(U.astype(np.float64), axis=1)
        gh, ah = L["g_hist"][()], L["a_hist"][()]
        if (gh.sum(1) != P).any() or (ah.sum(1) != P).any():
            fail(f"{name}: histogram sums differ from {P} positions")
        cf, cp = L["count_fire"][()], L["count_pos"][()]
        if (cf > cp).any() or (cp > P).any():
            fail(f"{name}: counts out of order")
        if not np.allclose(L["density"][()], cf / P, rtol=1e-6) or not np.allclose(L["density_pos"][()], cp / P, rtol=1e-6):
            fail(f"{name}: density != count / positions")
        edges = np.linspace(0, 1, 51)
        lo, hi = (gh * edges[:-1]).sum(1) / P, (gh * edges[1:]).sum(1) / P
        mg = L["mean_g"][()]
        if (mg < lo - 1e-6).any() or (mg > hi + 1e-6).any():
            fail(f"{name}: mean_g outside the bounds its g histogram allows")
        if (gh[:, 5:].sum(1) > cf).any():  # bins above 0.1 hold only firing positions
            fail(f"{name}: g histogram above 0.1 exceeds the firing count")
        R = L["a_hist_range"][()]
        amax = np.maximum(np.abs(L["a_min"][()]), np.abs(L["a_max"][()]))
        if ((R < amax * (1 - 1e-6)) | ((R / 2 >= amax) & (R > 2.0 ** -20))).any():
            fail(f"{name}: a_hist_range is not the smallest power of two >= max |a|")
        # top lists
        tn, tg, ta, tpos = L["top/n"][()], L["top/g"][()], L["top/a"][()], L["top/position"][()]
        if (tn != np.minimum(cf, 30)).any():
            fail(f"{name}: top list sizes != min(30, firing count)")
        qc = L["quantiles/count"][()]
        if (qc.sum(1) != cf).any():
            fail(f"{name}: quantile bucket counts do not sum to the firing count")
        qn, qg = L["quantiles/n"][()], L["quantiles/g"][()]
        if (qn != np.minimum(qc, 5)).any():
            fail(f"{name}: quantile group sizes != min(5, bucket count)")
        for c in range(C):
            n = tn[c]
            g, a, pos = tg[c, :n].astype(np.float64), ta[c, :n].astype(np.float64), tpos[c, :n]
            if (g <= thr).any():
                fail(f"{name}[{c}]: a top example with g <= {thr}")
            key = list(zip(-g, -np.abs(a), pos))
            if key != sorted(key):
                fail(f"{name}[{c}]: top list not sorted by (g, |a|, position)")
            if (tpos[c, n:] != -1).any():
                fail(f"{name}[{c}]: padding of the top list")
            for j in range(NQ):
                gq = qg[c, j, : qn[c, j]]
                if ((gq <= thr + j * 0.09 - 1e-6) | (gq > thr + (j + 1) * 0.09 + 1e-6)).any() and j < NQ - 1:
                    fail(f"{name}[{c}]: quantile sample outside bucket {j}")
            if not lm:
                continue
            # contexts: tokens from the file, centre g / a as recorded, no missing firing position
            for grp in ("top", "quantiles"):
                ct = L[grp + "/context_tokens"][c].reshape(-1, 41)
                cg = L[grp + "/context_g"][c].reshape(-1, 41)
                ca = L[grp + "/context_a"][c].reshape(-1, 41)
                ps = L[grp + "/position"][c].reshape(-1)
                gs = L[grp + "/g"][c].reshape(-1)
                as_ = L[grp + "/a"][c].reshape(-1)
                for i in np.nonzero(ps >= 0)[0]:
                    p = ps[i]
                    inw = ct[i] >= 0
                    if ct[i, 20] != toks[p] or cg[i, 20] != gs[i] or ca[i, 20] != as_[i]:
                        fail(f"{name}[{c}] {grp}: centre of the context != recorded token / g / a")
                    idx = p - 20 + np.arange(41)
                    if (ct[i][inw] != toks[idx[inw]]).any():
                        fail(f"{name}[{c}] {grp}: context tokens differ from the token file")
                    if n == 30:
                        last = (-tg[c, 29], -abs(ta[c, 29]), tpos[c, 29])
                        for j in np.nonzero(inw & (cg[i] > thr))[0]:
                            k2 = (-float(cg[i, j]), -abs(float(ca[i, j])), idx[j])
                            if k2 < last and idx[j] not in set(pos.tolist()):
                                fail(f"{name}[{c}]: position {idx[j]} (g {cg[i, j]}) ranks above the top list's last entry but is missing")
                    elif n < 30:
                        for j in np.nonzero(inw & (cg[i] > thr))[0]:
                            if idx[j] not in set(pos.tolist()):
                                fail(f"{name}[{c}]: firing position {idx[j]} missing from a non-full top list")
                    if name == "wte":  # a_c = |U_c| V[token, c], independently
                        want = unorm[c] * Vm[ct[i][inw], c]
                        if not np.allclose(ca[i][inw], want, rtol=1e-4, atol=1e-6):
                            fail(f"wte[{c}]: context a_c != |U_c| V[token, c]")
                    n_checked_ctx += 1
        if lm:
            for tab, cnt_name, fire in (("input_tokens", "token_count", cf), ("next_tokens", "next_token_count", None)):
                if tab not in L:
                    continue
                tc = hf[cnt_name][()]
                tot = P if tab == "input_tokens" else int(at["positions_with_next"])
                for m in ("precision", "recall", "pmi"):
                    t, v, k = L[tab][m]["token"][()], L[tab][m]["value"][()], L[tab][m]["count"][()]
                    ok = t >= 0
                    if m == "precision" and fire is not None:
                        want = k / np.maximum(fire[:, None], 1)
                        if not np.allclose(v[ok], want[ok], rtol=1e-5):
                            fail(f"{name} {tab}: precision != count / firing count")
                    if m == "recall" and not np.allclose(v[ok], (k / np.maximum(tc[np.maximum(t, 0)], 1))[ok], rtol=1e-5):
                        fail(f"{name} {tab}: recall != count / token count")
                    if m == "pmi" and fire is not None:
                        want = np.log(k * tot / (np.maximum(fire[:, None], 1) * np.maximum(tc[np.maximum(t, 0)], 1)))
                        if not np.allclose(v[ok], want[ok], rtol=1e-4, atol=1e-5):
                            fail(f"{name} {tab}: PMI != log(n_ct N / (n_c n_t))")
                    vv = np.where(ok, v, -np.inf)
                    if (np.diff(vv, axis=1) > 1e-6 * np.abs(vv[:, :-1]) + 1e-9).any():
                        fail(f"{name} {tab}: {m} not sorted")
            if "logit_lens" in L:
                wte, lnf = W["wte.weight"].astype(np.float64), W["ln_f.weight"].astype(np.float64)
                lg = (U.astype(np.float64) * lnf) @ wte.T
                top = L["logit_lens/promoted/token"][()]
                bot = L["logit_lens/suppressed/token"][()]
                if not (np.argsort(-lg, axis=1)[:, 0] == top[:, 0]).all() or not (np.argsort(lg, axis=1)[:, 0] == bot[:, 0]).all():
                    fail(f"{name}: logit lens top / bottom token differs from numpy")
                if not np.allclose(L["logit_lens/promoted/value"][()], np.take_along_axis(lg, top, 1), rtol=1e-3, atol=1e-4):
                    fail(f"{name}: logit lens values differ from numpy")
            if "head_share" in L:
                proj = name.split(".")[-1][0]
                H = L["head_share"].shape[1]
                X = Vm.T if proj == "o" else U
                sh = (X.astype(np.float64).reshape(C, H, -1) ** 2).sum(2)
                sh /= sh.sum(1, keepdims=True)
                if not np.allclose(L["head_share"][()], sh, atol=1e-5):
                    fail(f"{name}: head shares differ from numpy")
        if "cofire" in L:
            j, v, k = L["cofire/subcomponent"][()], L["cofire/value"][()], L["cofire/count"][()]
            allfire = np.concatenate([hf["layers"][n2]["count_fire"][()] for n2 in sorted(layers, key=lambda s: hf["layers"][s].attrs["index"])])
            off = L.attrs["c_offset"]
            for c in range(C):
                ok = j[c] >= 0
                if (j[c][ok] == off + c).any():
                    fail(f"{name}[{c}]: co-fires with itself")
                want = k[c][ok] / (allfire[off + c] + allfire[j[c][ok]] - k[c][ok])
                if not np.allclose(v[c][ok], want, rtol=1e-5) or (np.diff(v[c][ok]) > 1e-7).any():
                    fail(f"{name}[{c}]: Jaccard inconsistent with the counts or unsorted")
                if (k[c][ok] > min(allfire[off + c], allfire[j[c][ok]].min() if ok.any() else 0) + 0).any() and ok.any():
                    if (k[c][ok] > np.minimum(allfire[off + c], allfire[j[c][ok]])).any():
                        fail(f"{name}[{c}]: a co-firing count above a firing count")
        if not lm:
            n_ci_checked += check_toy_ci(run, cfg, W, name, L, U, Vm, unorm)
            fc, feat = L["features/count"][()], hf["feature_count"][()]
            if not np.allclose(L["features/precision"][()], fc / np.maximum(cf[:, None], 1), rtol=1e-5):
                fail(f"{name}: feature precision != count / firing count")
            if not np.allclose(L["features/recall"][()], fc / np.maximum(feat[None, :], 1), rtol=1e-5):
                fail(f"{name}: feature recall != count / feature count")
            if (fc > cf[:, None]).any():
                fail(f"{name}: feature count above the firing count")
    if lm and "attention" in hf:
        H, Hkv = mcfg["n_head"], mcfg.get("n_key_value_heads", mcfg["n_head"])
        base = mcfg.get("rotary_base", mcfg.get("rope_theta", 10000.0))
        for b in hf["attention"]:
            A = hf["attention"][b]
            Uq = run["components"][A.attrs["q_layer"]]["U"][()].astype(np.float64)
            Uk = run["components"][A.attrs["k_layer"]]["U"][()].astype(np.float64)
            dh = Uq.shape[1] // H
            I = np.zeros((17, Uq.shape[0], Uk.shape[0]))
            for d in range(17):
                for h in range(H):
                    hk = h // (H // Hkv)
                    kr = rope_rotate_k(Uk[:, hk * dh:(hk + 1) * dh], d, base)
                    I[d] += Uq[:, h * dh:(h + 1) * dh] @ kr.T / np.sqrt(dh)
            if not np.allclose(A["qk_interaction"][()], I, rtol=1e-3, atol=1e-5 * np.abs(I).max()):
                fail(f"attention {b}: q/k interaction differs from numpy (max diff {np.abs(A['qk_interaction'][()] - I).max()})")
            mx = np.abs(I).max(0)
            other = np.delete(I, 1, axis=0).max(0)
            prev = np.where(mx > 0, (I[1] - other) / np.where(mx > 0, mx, 1), 0)
            if not np.allclose(A["prev_token_score"][()], prev, atol=1e-4):
                fail(f"attention {b}: previous-token score differs from numpy")
    print(f"harvest.h5 of {run_dir}: {len(layers)} layers, {P} positions, {n_checked_ctx} contexts checked, "
          f"g and a_c of {n_ci_checked} toy examples recomputed: ok")


def reference_run(run, cfg, run_dir, names):
    """The run's target and decomposition as float64 PyTorch references (also used by
    check_prompt_ci.py): the target's parameters p and config.json mcfg, the components
    comp[name] = (V, U) for `names` (in that order: the CI function's layer order), the
    global_shared_transformer CI function m loaded with the run's parameters, and the target's
    layer table tl (reference_vpd.target_layers)."""
    import importlib.util
    import torch
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    import reference_vpd as RV
    spec = importlib.util.spec_from_file_location("ci_ref", os.path.join(here, "..", "..", "tests", "ci_transformer", "make_ref.py"))
    CR = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(CR)
    pd = cfg.get("pd", cfg)
    tc = pd["ci_config"]["simple_transformer_ci_cfg"]
    ac = tc["attn_config"]
    tpath = target_path(cfg, run_dir)
    mcfg = json.load(open(os.path.join(tpath, "config.json")))
    p = {k: torch.tensor(v.astype(np.float64)) for k, v in load_safetensors(os.path.join(tpath, "model.safetensors")).items()}
    comp = {n: (torch.tensor(run["components"][n]["V"][()].astype(np.float64)),
                torch.tensor(run["components"][n]["U"][()].astype(np.float64))) for n in names}
    layers = [(n, comp[n][0].shape[0] if n != "wte" else comp[n][0].shape[1], comp[n][1].shape[0]) for n in names]
    # the CI function's input for an embedding layer is V[token, :] (its width is C)
    m = CR.GlobalSharedTransformerCiFn(layers, tc["d_model"], tc["n_blocks"], ac["n_heads"], tc["mlp_hidden_dim"],
                                       ac["max_len"], ac["rope_base"]).double()
    sd = {k[len("ci_fn._global_ci_fn."):]: torch.tensor(v[()].astype(np.float64)) for k, v in run["ci_fn"].items()}
    res = m.load_state_dict(sd, strict=False)
    if res.unexpected_keys or any("inv_freq" not in k for k in res.missing_keys):
        fail(f"CI parameters do not match the reference module: {res.unexpected_keys} {res.missing_keys}")
    return p, mcfg, comp, m, RV.target_layers("llama", p, mcfg)


def recompute_lm(run_dir):
    """Language models, independently of vpd's C code: run the target (tools/reference/reference_vpd.py)
    and the global_shared_transformer CI function (tests/ci_transformer/make_ref.py, spd's
    module re-implemented in PyTorch) in float64 on the harvested windows, from run.h5 and the
    token file; compare count_pos, count_fire, mean_g and the top lists with the file. Float32
    (vpd) against float64 moves positions near the thresholds, hence the tolerances."""
    import torch
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    import reference_vpd as RV
    hf = h5py.File(os.path.join(run_dir, "harvest.h5"), "r")
    run = h5py.File(os.path.join(run_dir, "run.h5"), "r")
    cfg = yaml.safe_load(run["config"].attrs["yaml"])
    pd = cfg.get("pd", cfg)
    ci = pd["ci_config"]
    if ci.get("fn_type") != "global_shared_transformer" or pd.get("sampling", "continuous") != "continuous":
        print("recompute: only global_shared_transformer CI with continuous sampling is implemented here; skipped")
        return
    at = hf.attrs
    S, nw = int(at["seq_len"]), int(at["windows"])
    toks = np.fromfile(at["tokens"], dtype="<u2" if at["vocab_size"] <= 65535 else "<u4")[: nw * S].astype(np.int64)
    names = at["layers"].split("\n")
    p, mcfg, comp, m, tl = reference_run(run, cfg, run_dir, names)
    C = {n: comp[n][1].shape[0] for n in names}
    cnt_pos = {n: np.zeros(C[n], np.int64) for n in names}
    cnt_fire = {n: np.zeros(C[n], np.int64) for n in names}
    gsum = {n: np.zeros(C[n]) for n in names}
    gmax = {n: np.full(C[n], -1.0) for n in names}
    gat = {}  # (layer, position) -> g row, for the recorded top positions
    want_pos = {n: set(hf["layers"][n]["top/position"][()].reshape(-1).tolist()) - {-1} for n in names}
    B = 16
    with torch.no_grad():
        for w0 in range(0, nw, B):
            tok = torch.tensor(toks[w0 * S:(min(nw, w0 + B)) * S].reshape(-1, S))
            acts = {}

            def layer(n, x):
                W, b, emb = tl[n]
                if n in comp:
                    acts[n] = comp[n][0][x] if emb else x
                y = W[x] if emb else x @ W.T
                return y if b is None else y + b
            RV.model_forward("llama", p, mcfg, tok, layer)
            z = m({n: acts[n] for n in names})
            for n in names:
                g = z[n].clamp(0, 1).reshape(-1, C[n]).numpy()
                cnt_pos[n] += (g > 0).sum(0)
                cnt_fire[n] += (g > 0.1).sum(0)
                gsum[n] += g.sum(0)
                gmax[n] = np.maximum(gmax[n], g.max(0))
                base = w0 * S
                for q in want_pos[n]:
                    if base <= q < base + g.shape[0]:
                        gat[(n, q)] = g[q - base]
    P = nw * S
    worst = 0.0
    for n in names:
        L = hf["layers"][n]
        d_pos = np.abs(L["count_pos"][()] - cnt_pos[n]).max() / P
        d_fire = np.abs(L["count_fire"][()] - cnt_fire[n]).max() / P
        d_mean = np.abs(L["mean_g"][()] - gsum[n] / P).max()
        worst = max(worst, d_pos, d_fire, d_mean)
        if d_pos > 0.01 or d_fire > 0.01 or d_mean > 2e-3:
            fail(f"{n}: densities / mean g differ from the PyTorch recomputation (count_pos {d_pos:.4f}, "
                 f"count_fire {d_fire:.4f} of P, mean_g {d_mean:.2e})")
        tn, tg, tpos = L["top/n"][()], L["top/g"][()], L["top/position"][()]
        for c in range(C[n]):
            if tn[c] == 0:
                continue
            if abs(tg[c, 0] - gmax[n][c]) > 2e-3:
                fail(f"{n}[{c}]: top g {tg[c, 0]} but the recomputed maximum over the positions is {gmax[n][c]}")
            for j in range(tn[c]):
                gr = gat[(n, int(tpos[c, j]))][c]
                if abs(gr - tg[c, j]) > 2e-3:
                    fail(f"{n}[{c}]: top example at position {tpos[c, j]}: g {tg[c, j]} recorded, {gr} recomputed")
    print(f"recomputed in PyTorch (float64): {len(names)} layers, {P} positions; densities, mean g and every top example "
          f"agree (largest difference {worst:.2e})")


NQ = 10
np.seterr(divide="ignore", invalid="ignore")
if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--compare")
    ap.add_argument("--recompute", action="store_true", help="LM: recompute g with PyTorch (tools/reference/reference_vpd.py)")
    args = ap.parse_args()
    if args.recompute:
        recompute_lm(args.run_dir)
        sys.exit(0)
    if args.compare:
        compare(os.path.join(args.run_dir, "harvest.h5"), args.compare)
    else:
        check(args.run_dir)
