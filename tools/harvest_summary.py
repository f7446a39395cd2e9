#!/usr/bin/env python3
"""Plain-text readout of a harvest file (RUN_DIR/harvest.h5 from `vpd harvest`), for a terminal
or a closing note: the subcomponents whose firing is best explained by one input or next token,
their top contexts with the firing token in [brackets], and one attention layer's head shares.

  harvest_summary.py RUN_DIR [--tokenizer tokenizer.json] [--top N] [--layer NAME]
                     [--min-fires K] [--heads h.1] [--contexts 3]

"Explained by one token" ranks by the precision of the best input (or next) token: the fraction
of the subcomponent's firing positions (g > 0.1) at which that token is the input (the next
token), among subcomponents firing at least --min-fires times. Nothing here is new statistics:
every figure printed is read from harvest.h5 as `vpd harvest` wrote it (README: harvest.h5).
Needs numpy and h5py (Debian: python3-h5py); no matplotlib.
"""
import argparse
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import find_decoder, find_target_dir  # noqa: E402


def die(msg):
    print(f"harvest_summary: {msg}", file=sys.stderr)
    sys.exit(1)


def context_text(dec, toks, gs, half):
    out = []
    for j, t in enumerate(toks):
        if t < 0:
            continue
        s = dec(t).replace("\n", "\\n") if dec else f"<{t}>"
        if j == half:
            s = f"[{s}]"
        out.append(s)
    return "".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--tokenizer")
    ap.add_argument("--top", type=int, default=10, help="subcomponents to list (default 10)")
    ap.add_argument("--layer", help="only this decomposed layer (e.g. h.1.mlp.c_fc)")
    ap.add_argument("--min-fires", type=int, default=50, help="firing positions needed to be listed (default 50)")
    ap.add_argument("--contexts", type=int, default=3, help="top contexts printed per subcomponent (default 3)")
    ap.add_argument("--heads", default=None, help="attention block whose head shares to print (e.g. h.1)")
    ap.add_argument("--window", type=int, default=8, help="tokens either side shown per context (default 8)")
    ap.add_argument("--skip-whitespace", action="store_true",
                    help="skip subcomponents whose best token is whitespace or punctuation only")
    a = ap.parse_args()
    path = os.path.join(a.run_dir, "harvest.h5")
    if not os.path.isfile(path):
        die(f"{path}: no harvest file (run `vpd harvest {a.run_dir}` first)")
    f = h5py.File(path, "r")
    if "layers" not in f:
        die(f"{path}: no /layers group: not a vpd harvest file")
    run_path = os.path.join(a.run_dir, "run.h5")
    target_dir, cfg = None, {}
    if os.path.isfile(run_path):
        with h5py.File(run_path, "r") as run:
            target_dir, cfg = find_target_dir(run, a.run_dir)
    dec, tok_path = find_decoder(a.run_dir, cfg, target_dir, a.tokenizer)
    half = int(f.attrs.get("half_window", 20))
    print(f"{path}: run step {int(f.attrs.get('run_step', -1))}, {int(f.attrs.get('positions', 0))} positions, "
          f"fire threshold g > {float(f.attrs.get('fire_threshold', 0.1))}, tokenizer {tok_path or '(none: ids)'}")

    rows = []
    for name, g in f["layers"].items():
        if a.layer and name != a.layer:
            continue
        if "input_tokens" not in g or "top" not in g:
            continue
        fires = g["count_fire"][:]
        dens = g["density"][:]
        for kind in ("input_tokens", "next_tokens"):
            prec = g[kind]["precision"]["value"][:, 0]
            tok = g[kind]["precision"]["token"][:, 0]
            for c in np.nonzero(fires >= a.min_fires)[0]:
                rows.append((float(prec[c]), name, int(c), kind, int(tok[c]), int(fires[c]), float(dens[c])))
    if not rows:
        die("no subcomponent fires often enough (lower --min-fires) or no token tables (harvest with tokens)")
    rows.sort(key=lambda r: -r[0])
    seen = set()
    shown = 0
    for prec, name, c, kind, tok, fires, dens in rows:
        if (name, c) in seen:
            continue
        seen.add((name, c))
        tt = dec(tok) if dec else f"<{tok}>"
        if a.skip_whitespace and dec and not any(ch.isalnum() for ch in tt):
            continue
        shown += 1
        print(f"\n{name}:{c}  fires {fires}× (density {dens:.4f}); {kind.replace('_', ' ')}: "
              f"{tt!r} at {100 * prec:.1f}% of firings")
        g = f["layers"][name]
        n = int(g["top"]["n"][c])
        lo, hi = half - a.window, half + a.window + 1
        for j in range(min(n, a.contexts)):
            toks = g["top"]["context_tokens"][c, j, lo:hi]
            gs = g["top"]["context_g"][c, j, lo:hi]
            print(f"   g={g['top']['g'][c, j]:.2f}  {context_text(dec, toks, gs, a.window)}")
        if "logit_lens" in g:
            pr = [dec(t) if dec else str(t) for t in g["logit_lens"]["promoted"]["token"][c, :5]]
            print(f"   promotes {pr}")
        if shown >= a.top:
            break

    blocks = [k for k in f.get("attention", {}).keys()]
    hb = a.heads or (blocks[1] if len(blocks) > 1 else (blocks[0] if blocks else None))
    if hb:
        print(f"\nhead shares in {hb} (share of each subcomponent's norm per head; the 8 most active "
              f"subcomponents of each matrix by density)")
        for mat in ("q_proj", "k_proj", "v_proj", "o_proj"):
            name = f"{hb}.attn.{mat}"
            if name not in f["layers"] or "head_share" not in f["layers"][name]:
                continue
            g = f["layers"][name]
            hs = g["head_share"][:]
            order = np.argsort(-g["density"][:])[:8]
            H = hs.shape[1]
            print(f"  {name:18s} c    density  " + " ".join(f"head{h}" for h in range(H)) + "   max")
            for c in order:
                print(f"  {'':18s} {c:<4d} {g['density'][c]:.4f}  " + " ".join(f"{hs[c, h]:5.2f}" for h in range(H))
                      + f"  {hs[c].max():.2f}")
            one = (hs.max(axis=1) > 0.9) & (g["density"][:] > 0)
            alive = g["density"][:] > 0
            print(f"  {'':18s} {int(one.sum())} of {int(alive.sum())} firing subcomponents have > 90% of their norm in one head")


if __name__ == "__main__":
    main()
