#!/usr/bin/python3
"""Checks of `vpd compare` outputs (tests/cmake/compare.cmake).

  parity RUN_DIR CMP_DIR      compare's error_propagating rows (all MLPs) equal `vpd eval`'s /eval
                              CE and KL for the same masks (CI masks, rounded g > 0, 0.1, 0.5)
  one_mlp CMP_DIR             with one MLP selected, error_propagating = clean_input = single_layer
  protocols CMP_DIR           with every MLP: the protocols differ as defined; zero rows; L0 columns
  same A_DIR B_DIR            two compare outputs agree exactly (1 vs 2 ranks)
  zero_tc CMP_DIR N_LATENT D  a transcoder with zero decoders and all latents on = zero ablation
  split CMP_DIR SPLIT MATCHED the feature-splitting row of the two hand-made transcoders
"""
import csv
import json
import math
import sys


def rows(d):
    return json.load(open(f"{d}/compare.json"))


def find(js, **kw):
    out = [r for r in js["rows"] if all(r[k] == v for k, v in kw.items())]
    assert out, f"no row with {kw}"
    return out


def close(a, b, rtol, what):
    assert abs(a - b) <= rtol * max(1.0, abs(a), abs(b)), f"{what}: {a!r} != {b!r} (rtol {rtol})"


def parity(run, cmp):
    import h5py
    e = h5py.File(f"{run}/run.h5", "r")["eval"]
    js = rows(cmp)
    names = {"ci": "CI masks", "g>0": "rounded g > 0", "g>0.1": "rounded g > 0.1", "g>0.5": "rounded g > 0.5"}
    for setting, name in names.items():
        r = find(js, method="vpd", setting=setting, protocol="error_propagating", layer="all")[0]
        ce, kl = e["masks"][name].attrs["ce"], e["masks"][name].attrs["output_loss"]
        close(r["ce"], ce, 1e-6, f"{setting} CE")
        close(r["kl"], kl, 1e-5, f"{setting} KL")
        print(f"{setting:6s} compare CE {r['ce']:.8f} KL {r['kl']:.8f}   eval CE {ce:.8f} KL {kl:.8f}")
    close(js["ce_target"], e["masks"]["target"].attrs["ce"], 1e-6, "target CE")
    print("parity ok")


def one_mlp(cmp):
    js = rows(cmp)
    settings = {r["setting"] for r in js["rows"] if r["method"] != "zero"}
    assert settings, "no method rows"
    for s in settings:
        ep = find(js, setting=s, protocol="error_propagating", layer="all")[0]
        ci = find(js, setting=s, protocol="clean_input", layer="all")[0]
        sl = [r for r in find(js, setting=s, protocol="single_layer") if r["layer"] != "mean"]
        assert len(sl) == 1, sl
        for k in ("ce", "kl", "l0_mlp", "params_per_token", "frac_recovered"):
            assert ep[k] == ci[k] == sl[0][k], f"{s} {k}: {ep[k]} {ci[k]} {sl[0][k]}"
    z_all = find(js, method="zero", layer="all")[0]
    z_one = [r for r in find(js, method="zero") if r["layer"] != "all"][0]
    assert z_all["ce"] == z_one["ce"]
    print("one MLP: error_propagating = clean_input = single_layer for", sorted(settings))


def protocols(cmp):
    js = rows(cmp)
    n = js["n_mlps"]
    assert n >= 2
    for r in find(js, method="zero"):
        assert r["ce"] > js["ce_target"] and r["frac_recovered"] == 0
    for s in {r["setting"] for r in js["rows"] if r["method"] == "vpd"}:
        ep = find(js, setting=s, protocol="error_propagating", layer="all")[0]
        ci = find(js, setting=s, protocol="clean_input", layer="all")[0]
        # the masks come from the clean activations, so L0 agrees while the outputs differ
        assert ep["l0_mlp"] == ci["l0_mlp"] and ep["ce"] != ci["ce"], (ep, ci)
        per = [r for r in find(js, setting=s, protocol="single_layer") if r["layer"] != "mean"]
        mean = find(js, setting=s, protocol="single_layer", layer="mean")[0]
        assert len(per) == n
        close(mean["ce"], sum(r["ce"] for r in per) / n, 1e-9, "single-layer mean")
        close(mean["l0_mlp"], ep["l0_mlp"], 1e-9, "single-layer mean L0")
        for r in per + [ep, ci]:
            close(r["l0_module"], r["l0_mlp"] / 2, 1e-9, "l0_module")
            close(r["delta_ce"], r["ce"] - js["ce_target"], 1e-9, "delta_ce")
            z = find(js, method="zero", layer=r["layer"] if r["protocol"] == "single_layer" else "all")[0]
            close(r["ce_zero"], z["ce"], 1e-9, "ce_zero")
    print("protocols ok")


def same(a, b):
    ra, rb = list(csv.DictReader(open(f"{a}/compare.csv"))), list(csv.DictReader(open(f"{b}/compare.csv")))
    assert len(ra) == len(rb) and ra, (len(ra), len(rb))
    for x, y in zip(ra, rb):
        for k in x:
            if k == "source":
                continue
            assert x[k] == y[k], f"{k}: {x[k]} != {y[k]} ({x['method']} {x['setting']} {x['protocol']} {x['layer']})"
    print(f"{len(ra)} rows identical")


def zero_tc(cmp, n_latent, d):
    js = rows(cmp)
    tc = [r for r in js["rows"] if r["method"] in ("plt", "clt")]
    assert tc
    for r in tc:
        layer = r["layer"] if r["protocol"] == "single_layer" and r["layer"] != "mean" else "all"
        if r["layer"] == "mean":
            continue
        z = find(js, method="zero", layer=layer)[0]
        assert r["ce"] == z["ce"], (r, z)
        assert r["frac_recovered"] == 0
        assert r["l0_mlp"] == n_latent, r
        if r["method"] == "plt":
            assert r["params_per_token"] == n_latent * 2 * d * (js["n_mlps"] if layer == "all" else 1), r
    print("zero-decoder transcoders = zero ablation, L0 = n_latent")


def split(cmp, want_split, want_matched):
    sp = rows(cmp)["splitting"]
    assert len(sp) == 1, sp
    close(sp[0]["split_frac"], want_split, 1e-9, "split_frac")
    close(sp[0]["matched_frac"], want_matched, 1e-9, "matched_frac")
    print("splitting", sp[0])


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"parity": lambda: parity(*args), "one_mlp": lambda: one_mlp(*args), "protocols": lambda: protocols(*args),
     "same": lambda: same(*args), "zero_tc": lambda: zero_tc(args[0], int(args[1]), int(args[2])),
     "split": lambda: split(args[0], float(args[1]), float(args[2]))}[cmd]()
