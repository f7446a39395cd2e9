#!/usr/bin/python3
"""Render RUN_DIR/report/index.html: a self-contained HTML report of a vpd decomposition.

Run by `vpd report RUN_DIR` (src/cli/cmd_report.c checks the inputs first); usable alone:
  report.py RUN_DIR --out DIR [--max-cards N] [--tokenizer tokenizer.json]
Reads run.h5 (components, summary, /eval when `vpd eval` ran), metrics.jsonl (training
curves), harvest.h5 when `vpd harvest` ran (subcomponent cards, attention view), the target's
weights (toy targets: learned directions against the ground truth). Plots: matplotlib (PNG
files beside index.html). Nothing is fetched from the network; the page has one small inline
script that marks <body data-images="ok|failed"> once every image loaded (used by the tests).
"""
import argparse
import html
import json
import os
import sys

import h5py
import numpy as np

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402,F401

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from byte_level import bytes_to_unicode  # noqa: E402
import safetensors_np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

E = html.escape


def progress(msg):
    print(f"vpd report: {msg}", flush=True)


def die(msg):
    print(f"vpd report: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def updates_done(run):
    """Optimiser updates a run file records: its `step` attribute is the next step to run, and the
    trainer's last iteration (step == steps) evaluates without updating, so a finished run of N
    steps stores step N + 1 (a checkpoint stores the step it resumes at)."""
    return min(int(run.attrs.get("step", 0)), int(run.attrs.get("steps", 0)))


def attr_str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


# ---- tokenizer (byte-level BPE tokenizer.json: id -> bytes; no `tokenizers` needed) ----


class Decoder:
    def __init__(self, path):
        t = json.load(open(path, encoding="utf-8"))
        vocab = dict(t["model"]["vocab"])
        special = set()
        for a in t.get("added_tokens", []):
            vocab[a["content"]] = a["id"]
            special.add(a["id"])
        u2b = {u: b for b, u in bytes_to_unicode().items()}
        self.text = {}
        for s, i in vocab.items():
            if i in special or any(c not in u2b for c in s):
                self.text[i] = s
            else:
                self.text[i] = bytes(u2b[c] for c in s).decode("utf-8", errors="replace")

    def __call__(self, i):
        return self.text.get(int(i), f"<{int(i)}>")


def token_html(dec, t):
    if t < 0:
        return ""
    if dec is None:
        return f"{int(t)}"
    s = dec(t)
    return E(s).replace(" ", "&nbsp;").replace("\n", "↵").replace("\t", "⇥") or "&#8203;"


# ---- inputs ----
def read_metrics(path):
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path) as f:
        for ln, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                die(f"{path}:{ln}: not JSON ({e.msg})")
    return rows


def find_target_dir(run, run_dir):
    import yaml
    cands = []
    try:
        cfg = yaml.safe_load(attr_str(run["config"].attrs["yaml"])) or {}
        t = cfg.get("target", {}) or {}
        p = t.get("path") or t.get("model_path") or cfg.get("pretrained_model_path")
        if p:
            cands += [p, os.path.join(run_dir, p), os.path.join(run_dir, "..", p), os.path.join(run_dir, "..", "..", p)]
    except Exception:
        cfg = {}
    if "provenance" in run and "target_dir" in run["provenance"].attrs:
        cands.append(attr_str(run["provenance"].attrs["target_dir"]))
    for c in cands:
        if c and os.path.isdir(c):
            return c, cfg
    return None, cfg


def find_decoder(run_dir, cfg, target_dir, explicit=None):
    """The run's tokenizer as a Decoder: `explicit` (--tokenizer), else the config's
    data.tokenizer (relative to the working directory or the run directory's ancestors), else
    TARGET_DIR/tokenizer.json. Returns (Decoder, path) or (None, None) when there is none."""
    cands = [explicit] if explicit else []
    data = (cfg.get("data") or {}) if isinstance(cfg, dict) else {}
    if not explicit:
        if data.get("tokenizer"):
            t = data["tokenizer"]
            cands += [t, os.path.join(run_dir, t), os.path.join(run_dir, "..", t), os.path.join(run_dir, "..", "..", t)]
        if target_dir:
            cands.append(os.path.join(target_dir, "tokenizer.json"))
    for c in cands:
        if c and os.path.isfile(c):
            try:
                return Decoder(c), c
            except (ValueError, KeyError) as e:
                die(f"{c}: not a byte-level BPE tokenizer.json ({e})")
    if explicit:
        die(f"{explicit}: no such tokenizer file")
    return None, None


def load_weights(d):
    st = os.path.join(d, "model.safetensors")
    if os.path.exists(st):
        return safetensors_np.load(st)
    h = os.path.join(d, "model.h5")
    if os.path.exists(h):
        out = {}
        with h5py.File(h, "r") as f:
            f.visititems(lambda n, o: out.__setitem__(n.replace("/", "."), o[()]) if isinstance(o, h5py.Dataset) else None)
        return out
    return {}


# ---- plots ----
def savefig(fig, out, name):
    fig.savefig(os.path.join(out, name), dpi=90, bbox_inches="tight")
    plt.close(fig)
    return name


def img(name, alt, width=None):
    w = f' style="max-width:{width}px"' if width else ""
    return f'<img src="{E(name)}" alt="{E(alt)}"{w}>'


def plot_training(rows, out):
    imgs = []
    steps = np.array([r.get("step", i) for i, r in enumerate(rows)], float)
    loss_keys = sorted({k for r in rows for k in r if k.startswith("train/loss/")})
    l0_keys = sorted({k for r in rows for k in r if k.startswith("train/l0/")})
    other = [k for k in ("train/schedules/lr", "train/grad_norms/components", "train/grad_norms/ci_fn",
                         "train/importance_minimality_p") if any(k in r for r in rows)]

    def series(k):
        return np.array([r.get(k, np.nan) if isinstance(r.get(k), (int, float)) else np.nan for r in rows], float)

    if loss_keys:
        n = len(loss_keys)
        cols = min(3, n)
        fig, axs = plt.subplots((n + cols - 1) // cols, cols, figsize=(4.2 * cols, 2.8 * ((n + cols - 1) // cols)),
                                squeeze=False)
        for ax, k in zip(axs.flat, loss_keys):
            y = series(k)
            ax.plot(steps, y, lw=1)
            if np.nanmin(y) > 0 and np.nanmax(y) / max(np.nanmin(y), 1e-30) > 30:
                ax.set_yscale("log")
            ax.set_title(k.split("/", 2)[2], fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.tick_params(labelsize=7)
        for ax in list(axs.flat)[n:]:
            ax.axis("off")
        fig.tight_layout()
        imgs.append(savefig(fig, out, "train_losses.png"))
    if l0_keys:
        fig, ax = plt.subplots(figsize=(9, 4))
        for k in l0_keys:
            ax.plot(steps, series(k), lw=1, label=k[len("train/l0/"):])
        ax.set_xlabel("step")
        ax.set_ylabel("L0 (subcomponents with g > 0 per position)")
        ax.set_title("L0 per layer")
        ax.legend(fontsize=7, ncol=2 if len(l0_keys) > 8 else 1, loc="center left", bbox_to_anchor=(1, 0.5))
        imgs.append(savefig(fig, out, "train_l0.png"))
    if other:
        fig, axs = plt.subplots(1, len(other), figsize=(3.6 * len(other), 2.6), squeeze=False)
        for ax, k in zip(axs[0], other):
            ax.plot(steps, series(k), lw=1)
            ax.set_title(k.split("/")[-1], fontsize=9)
            ax.tick_params(labelsize=7)
        fig.tight_layout()
        imgs.append(savefig(fig, out, "train_other.png"))
    return imgs


def plot_hists(hists, out, name, title):
    """hists: list of (layer, counts[50]) over g in [0, 1]"""
    n = len(hists)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axs = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.3 * rows), squeeze=False)
    edges = np.linspace(0, 1, 51)
    for ax, (layer, h) in zip(axs.flat, hists):
        ax.bar(edges[:-1], np.maximum(h, 0), width=1 / 50, align="edge", color="#4062a8")
        if h.max() > 0:
            ax.set_yscale("log")
        ax.set_title(layer, fontsize=8)
        ax.set_xlim(0, 1)
        ax.tick_params(labelsize=6)
    for ax in list(axs.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return savefig(fig, out, name)


# ---- sections ----
def eval_section(run, run_dir):
    if "eval" not in run:
        return ('<p class="note">run.h5 has no <code>/eval</code>: run <code>vpd eval '
                f'{E(run_dir)}</code> to add the evaluation table (output loss and CE under CI, rounded, '
                'stochastic, unmasked, random and zero masks; L0 and alive subcomponents per layer).</p>'), None
    ev = run["eval"]
    h = ['<table class="num"><tr><th>masks</th><th>output loss (KL / MSE)</th><th>CE</th></tr>']
    order = ["target", "CI masks", "rounded g > 0", "rounded g > 0.1", "rounded g > 0.5", "stochastic",
             "unmasked (m = 1)", "random m ~ U(0,1)", "zero (m = 0)"]
    names = [n for n in order if n in ev.get("masks", {})] + [n for n in ev.get("masks", {}) if n not in order]
    for n in names:
        a = ev["masks"][n].attrs
        ce = a.get("ce", np.nan)
        h.append(f"<tr><td>{E(n)}</td><td>{a.get('output_loss', np.nan):.4g}</td><td>{'' if np.isnan(ce) else f'{ce:.4g}'}</td></tr>")
    for n in ev.get("adversarial", {}):
        a = ev["adversarial"][n].attrs
        ce = a.get("ce", np.nan)
        h.append(f"<tr><td>adversarial ({E(n)})</td><td>{a.get('output_loss', np.nan):.4g}</td>"
                 f"<td>{'' if np.isnan(ce) else f'{ce:.4g}'}</td></tr>")
    h.append("</table>")
    ea = ev.attrs
    facts = []
    for k in ("step", "positions", "pretraining_compute_recovered", "density_threshold"):
        if k in ea:
            facts.append(f"{k.replace('_', ' ')}: <b>{ea[k]:.4g}</b>" if isinstance(ea[k], float) else f"{k}: <b>{ea[k]}</b>")
    if "masks_note" in ea:
        facts.append(E(attr_str(ea["masks_note"])))
    h.append("<p>" + "; ".join(facts) + "</p>")
    hists = []
    if "layers" in ev:
        h.append('<table class="num"><tr><th>layer</th><th>C</th><th>L0</th><th>L0 (threshold)</th><th>alive</th></tr>')
        tot = 0.0
        for n in ev["layers"]:
            a = ev["layers"][n].attrs
            C = ev["layers"][n]["mean_ci"].shape[0] if "mean_ci" in ev["layers"][n] else ""
            tot += float(a.get("l0", 0))
            h.append(f"<tr><td>{E(n)}</td><td>{C}</td><td>{a.get('l0', np.nan):.3f}</td>"
                     f"<td>{a.get('l0_threshold', np.nan):.3f}</td><td>{a.get('alive', '')}</td></tr>")
            if "ci_histogram" in ev["layers"][n]:
                hists.append((n, ev["layers"][n]["ci_histogram"][()].astype(float)))
        h.append(f"<tr><th>total</th><td></td><th>{tot:.3f}</th><td></td><td></td></tr></table>")
    return "\n".join(h), hists


def subcomp_label(layers, offs, g):
    for name, off, C in zip(layers, offs[:-1], np.diff(offs)):
        if off <= g < off + C:
            return name, int(g - off)
    return "?", int(g)


def card_html(L, name, c, lm, dec, layers, offs, hv):
    aid = f"{name}:{c}"
    p = [f'<div class="card" id="{E(aid)}"><h4>{E(name)} · subcomponent {c}</h4>']
    p.append(f"<p>density (g &gt; 0.1) <b>{L['density'][c]:.4g}</b>, density (g &gt; 0) {L['density_pos'][c]:.4g}, "
             f"mean g {L['mean_g'][c]:.4g}, firing positions {int(L['count_fire'][c])}, "
             f"a<sub>c</sub> ∈ [{L['a_min'][c]:.3g}, {L['a_max'][c]:.3g}]</p>")
    n = int(L["top/n"][c])
    if lm and "top/context_tokens" in L:
        p.append("<h5>top activating contexts (background: g of this subcomponent; firing token boxed)</h5><div class='ctx'>")
        toks = L["top/context_tokens"][c, :n]
        gs = L["top/context_g"][c, :n]
        hw = toks.shape[1] // 2
        for i in range(min(n, 12)):
            spans = []
            for j, (t, g) in enumerate(zip(toks[i], gs[i])):
                if t < 0:
                    continue
                cls = ' class="fire"' if j == hw else ""
                spans.append(f'<span{cls} style="background:rgba(230,80,30,{0.75 * min(max(float(g), 0), 1):.2f})" '
                             f'title="id {int(t)}, g={g:.3f}">{token_html(dec, t)}</span>')
            p.append(f"<div class='row'><span class='gv'>g={L['top/g'][c, i]:.3f}</span> " + "".join(spans) + "</div>")
        p.append("</div>")
        tabs = []
        for grp, title in (("input_tokens", "input token"), ("next_tokens", "next token")):
            if f"{grp}/precision/token" not in L:
                continue
            for meas in ("precision", "recall", "pmi"):
                tk = L[f"{grp}/{meas}/token"][c]
                vv = L[f"{grp}/{meas}/value"][c]
                cells = "".join(f"<tr><td class='tok'>{token_html(dec, t)}</td><td>{v:.3g}</td></tr>"
                                for t, v in zip(tk, vv) if t >= 0)
                tabs.append(f"<table class='small'><tr><th colspan=2>{title}: {meas}</th></tr>{cells}</table>")
        if "logit_lens/promoted/token" in L:
            for kind in ("promoted", "suppressed"):
                tk = L[f"logit_lens/{kind}/token"][c]
                vv = L[f"logit_lens/{kind}/value"][c]
                cells = "".join(f"<tr><td class='tok'>{token_html(dec, t)}</td><td>{v:.3g}</td></tr>"
                                for t, v in zip(tk, vv) if t >= 0)
                tabs.append(f"<table class='small'><tr><th colspan=2>logit lens: {kind}</th></tr>{cells}</table>")
        p.append("<div class='tabs'>" + "".join(tabs) + "</div>")
    elif "top/x" in L:
        x = L["top/x"][c, :n]
        F = x.shape[1] if x.ndim == 2 else 0
        p.append("<h5>top examples (input features; g, a<sub>c</sub>)</h5><table class='small num'><tr><th>g</th><th>a</th>"
                 + "".join(f"<th>x{f}</th>" for f in range(F)) + "</tr>")
        for i in range(min(n, 8)):
            p.append(f"<tr><td>{L['top/g'][c, i]:.3f}</td><td>{L['top/a'][c, i]:.3g}</td>"
                     + "".join(f"<td>{v:.2f}</td>" for v in x[i]) + "</tr>")
        p.append("</table>")
        if "features/precision" in L:
            pr, rc = L["features/precision"][c], L["features/recall"][c]
            order = np.argsort(-pr)[:10]
            p.append("<table class='small num'><tr><th>feature</th><th>precision</th><th>recall</th></tr>"
                     + "".join(f"<tr><td>{f}</td><td>{pr[f]:.3f}</td><td>{rc[f]:.3f}</td></tr>" for f in order)
                     + "</table>")
    if "cofire/subcomponent" in L:
        cells = []
        for gi, v in zip(L["cofire/subcomponent"][c], L["cofire/value"][c]):
            if gi < 0:
                continue
            ln, cc = subcomp_label(layers, offs, int(gi))
            cells.append(f"<a href='#{E(ln)}:{cc}'>{E(ln)}:{cc}</a> ({v:.2f})")
        if cells:
            p.append("<p class='cof'>co-firing (Jaccard): " + ", ".join(cells) + "</p>")
    if "head_share" in L:
        hs = L["head_share"][c]
        p.append("<table class='small heads'><tr><th>head</th>" + "".join(f"<th>{h}</th>" for h in range(len(hs)))
                 + "</tr><tr><th>share</th>"
                 + "".join(f"<td style='background:rgba(40,90,200,{float(v):.2f})'>{v:.2f}</td>" for v in hs)
                 + "</tr></table>")
    p.append("</div>")
    return "\n".join(p)


def harvest_sections(hv, out, max_cards, dec, run_dir):
    lm = "tokens" in hv.attrs or "vocab_size" in hv.attrs
    layers = attr_str(hv.attrs["layers"]).split("\n")
    offs = [0]
    for n in layers:
        offs.append(offs[-1] + int(hv["layers"][n].attrs["C"]))
    body, toc = [], []
    n_cards = 0
    for li, name in enumerate(layers):
        L = hv["layers"][name]
        C = int(L.attrs["C"])
        dens = L["density"][()]
        order = np.argsort(-dens, kind="stable")
        topn = L["top/n"][()]
        carded = [int(c) for c in order if topn[c] > 0][:max_cards]
        n_cards += len(carded)
        progress(f"layer {li + 1}/{len(layers)} {name}: {len(carded)} cards")
        toc.append(f"<li><a href='#layer-{E(name)}'>{E(name)}</a> (C = {C}, {len(carded)} cards)</li>")
        rows = []
        for c in order:
            c = int(c)
            tops = ""
            if lm and "input_tokens/precision/token" in L:
                tops = " ".join(token_html(dec, t) for t in L["input_tokens/precision/token"][c][:5] if t >= 0)
            elif "features/precision" in L:
                tops = ", ".join(f"x{f}" for f in np.argsort(-L["features/precision"][c])[:3])
            link = f"<a href='#{E(name)}:{c}'>{c}</a>" if c in carded else str(c)
            rows.append(f"<tr><td>{link}</td><td>{dens[c]:.4g}</td><td>{L['density_pos'][c]:.4g}</td>"
                        f"<td>{L['mean_g'][c]:.4g}</td><td class='tok'>{tops}</td></tr>")
        body.append(f"<section class='layer' id='layer-{E(name)}'><h3>{E(name)}</h3>"
                    "<details><summary>all subcomponents by density</summary><table class='num'>"
                    "<tr><th>c</th><th>density g&gt;0.1</th><th>density g&gt;0</th><th>mean g</th>"
                    f"<th>top input {'tokens' if lm else 'features'} (precision)</th></tr>" + "".join(rows)
                    + "</table></details>")
        body.extend(card_html(L, name, c, lm, dec, layers, offs, hv) for c in carded)
        body.append("</section>")
    hists = [(n, hv["layers"][n]["g_hist"][()].sum(0).astype(float)) for n in layers]
    return body, toc, n_cards, hists, layers


def attention_section(hv, out):
    parts = []
    hs_layers = [n for n in attr_str(hv.attrs["layers"]).split("\n") if "head_share" in hv["layers"][n]]
    if not hs_layers:
        return ""
    progress(f"attention view: {len(hs_layers)} q/k/v/o layers")
    n = len(hs_layers)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axs = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.0 * rows), squeeze=False)
    for ax, name in zip(axs.flat, hs_layers):
        L = hv["layers"][name]
        order = np.argsort(-L["density"][()], kind="stable")
        im = ax.imshow(L["head_share"][()][order], aspect="auto", vmin=0, vmax=1, cmap="Blues", interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("head", fontsize=7)
        ax.set_xticks(range(L["head_share"].shape[1]))
        if len(order) <= 32:  # label rows with the subcomponent ids
            ax.set_yticks(range(len(order)))
            ax.set_yticklabels([str(c) for c in order])
        if ax in axs[:, 0]:
            ax.set_ylabel("subcomponent (by density)", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axs.flat)[n:]:
        ax.axis("off")
    fig.colorbar(im, ax=axs.ravel().tolist(), shrink=0.6, label="share of norm")
    parts.append("<h3>head shares</h3><p>Share of each q/k/v/o subcomponent's norm in each head "
                 "(rows sorted by firing density).</p>" + img(savefig(fig, out, "head_shares.png"), "head shares"))
    if "attention" in hv:
        for blk in hv["attention"]:
            A = hv["attention"][blk]
            ql, kl = attr_str(A.attrs["q_layer"]), attr_str(A.attrs["k_layer"])
            I = A["qk_interaction"][()]
            pts = A["prev_token_score"][()]
            fig, axs = plt.subplots(1, 2, figsize=(10, 3.6))
            im = axs[0].imshow(pts, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
            axs[0].set_title(f"{blk}: previous-token score", fontsize=9)
            axs[0].set_xlabel(f"{kl} subcomponent", fontsize=8)
            axs[0].set_ylabel(f"{ql} subcomponent", fontsize=8)
            fig.colorbar(im, ax=axs[0])
            mag = np.abs(I).max(0)
            best = np.dstack(np.unravel_index(np.argsort(-mag, axis=None)[:6], mag.shape))[0]
            for qc, kc in best:
                axs[1].plot(np.arange(I.shape[0]), I[:, qc, kc], marker=".", lw=1, label=f"q{qc}·k{kc}")
            axs[1].axhline(0, color="k", lw=0.5)
            axs[1].set_xlabel("offset δ (key at i − δ)", fontsize=8)
            axs[1].set_title("interaction I[δ] of the strongest pairs", fontsize=9)
            axs[1].legend(fontsize=7)
            fig.tight_layout()
            pi, pk = np.unravel_index(np.argmax(pts), pts.shape)
            parts.append(f"<h3>{E(blk)}: q/k interaction</h3><p>Most previous-token-like pair: "
                         f"<a href='#{E(ql)}:{pi}'>{E(ql)}:{pi}</a> × <a href='#{E(kl)}:{pk}'>{E(kl)}:{pk}</a> "
                         f"(score {pts[pi, pk]:.3f}).</p>" + img(savefig(fig, out, f"qk_{blk}.png"), f"qk {blk}"))
    return "\n".join(parts)


def toy_section(run, W, out, kind):
    """learned directions against the ground truth: each component's rank-one weight
    U_cᵀ V_cᵀ [d_out, d_in] against the target's per-feature pieces"""
    parts = []
    for name in run["components"]:
        V = run["components"][name]["V"][()].astype(np.float64)  # [d_in, C]
        U = run["components"][name]["U"][()].astype(np.float64)  # [C, d_out]
        key = name + ".weight"
        if key not in W and kind == "tms" and name == "linear2" and "linear1.weight" in W:
            Wt = W["linear1.weight"].T.astype(np.float64)  # tied: linear2 = linear1ᵀ
        elif key in W:
            Wt = W[key].astype(np.float64)  # [d_out, d_in]
        else:
            continue
        d_out, d_in = Wt.shape
        if V.shape[0] != d_in or U.shape[1] != d_out:
            continue
        norms = np.linalg.norm(U, axis=1) * np.linalg.norm(V, axis=0)
        alive = np.argsort(-norms)
        # per-feature pieces of the ground truth: the input-feature columns (first layer) or
        # the output-feature rows (a layer whose output is the feature space)
        # (TMS: linear1 reads the features, linear2 writes them; ResidMLP: the residual
        # stream's dimensions read by mlp_in / written by mlp_out)
        if name == "linear1" or name.endswith("mlp_in"):
            pieces = [(f"in {f}", np.outer(Wt[:, f], np.eye(d_in)[f])) for f in range(d_in)]
        else:
            pieces = [(f"out {f}", np.outer(np.eye(d_out)[f], Wt[f])) for f in range(d_out)]
        P = np.stack([p.ravel() for _, p in pieces])
        P /= np.maximum(np.linalg.norm(P, axis=1, keepdims=True), 1e-30)
        comp = np.stack([np.outer(U[c], V[:, c]).ravel() for c in alive])
        comp_n = comp / np.maximum(np.linalg.norm(comp, axis=1, keepdims=True), 1e-30)
        cos = comp_n @ P.T  # [C, F]
        recon = sum(np.outer(U[c], V[:, c]) for c in range(U.shape[0]))
        fig, axs = plt.subplots(1, 4, figsize=(15, 3.6), gridspec_kw={"width_ratios": [1, 1, 1, 1.6]})
        vm = np.abs(Wt).max()
        for ax, M, t in ((axs[0], Wt, "target W"), (axs[1], recon, "Σ_c U_cᵀV_cᵀ"), (axs[2], Wt - recon, "difference")):
            im = ax.imshow(M, cmap="RdBu_r", vmin=-vm, vmax=vm, aspect="auto", interpolation="nearest")
            ax.set_title(t, fontsize=9)
            ax.set_xlabel("in", fontsize=8)
            ax.set_ylabel("out", fontsize=8)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.tick_params(labelsize=7)
        fig.colorbar(im, ax=axs[:3].tolist(), shrink=0.7)
        im2 = axs[3].imshow(cos.T, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
        axs[3].set_xlabel("subcomponent (by ‖U_c‖‖V_c‖)", fontsize=8)
        axs[3].set_ylabel("feature (TMS) / residual dimension", fontsize=8)
        axs[3].set_title("cosine: component vs feature piece", fontsize=9)
        axs[3].set_yticks(range(len(pieces)))
        axs[3].set_yticklabels([q[0] for q in pieces], fontsize=7)
        fig.colorbar(im2, ax=axs[3])
        mm = np.abs(cos).max(0)
        facts = ""
        if "summary" in run and name in run["summary"]:
            a = run["summary"][name].attrs
            facts = ", ".join(f"{k} {a[k]:.4g}" if isinstance(a[k], float) else f"{k} {a[k]}" for k in a)
        parts.append(f"<h3>{E(name)}</h3><p>{E(facts)}. Best |cosine| per feature: "
                     + ", ".join(f"{p[0]}: {m:.3f}" for p, m in zip(pieces, mm)) + "</p>"
                     + img(savefig(fig, out, f"toy_{name}.png"), f"toy {name}"))
    return "\n".join(parts)


CSS = """
body{font-family:sans-serif;margin:1.5em;max-width:1300px;color:#222}
h2{border-bottom:2px solid #4062a8;padding-bottom:2px;margin-top:1.6em}
table{border-collapse:collapse;margin:0.4em 0}
td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}
table.num td{text-align:right} table.small td,table.small th{font-size:11px;padding:1px 4px}
.note{background:#fff4d6;border-left:4px solid #e0a000;padding:6px 10px}
.card{border:1px solid #bbb;border-radius:6px;padding:6px 12px;margin:10px 0;background:#fbfbfd}
.card h4{margin:4px 0}.card h5{margin:6px 0 2px 0;font-size:12px;color:#555}
.ctx .row{font-family:monospace;font-size:12px;white-space:nowrap;overflow-x:auto;margin:1px 0}
.ctx span{padding:0 1px}.ctx .fire{outline:2px solid #222}.gv{color:#666;margin-right:6px}
.tabs{display:flex;flex-wrap:wrap;gap:8px}.tok{font-family:monospace}
.cof{font-size:12px}img{max-width:100%;border:1px solid #eee}
"""

SCRIPT = """
(function(){var failed=0;
function check(){var im=document.images,ok=true;for(var i=0;i<im.length;i++){
 if(!im[i].complete){return false;} if(im[i].naturalWidth===0){failed++;}}
 document.body.setAttribute('data-images',failed?'failed':'ok');
 document.body.setAttribute('data-image-count',String(im.length));return true;}
window.addEventListener('error',function(e){if(e.target&&e.target.tagName==='IMG'){failed++;}},true);
window.addEventListener('load',function(){if(!check()){var t=setInterval(function(){if(check())clearInterval(t);},50);}});
})();
"""


def attrib_section(run_dir, out):
    """Attribution graphs of `vpd attrib` found in the run directory (RUN_DIR/attrib*.json with the
    SVG beside it): the prompt, target, node counts, P(target) under the three masks, the drawing
    and the most influential nodes. None when the run has none."""
    import glob
    import shutil
    files = sorted(glob.glob(os.path.join(run_dir, "attrib*.json")))
    parts = []
    for k, path in enumerate(files):
        try:
            g = json.load(open(path, encoding="utf-8"))
            meta, info = g["metadata"], g["metadata"].get("info", {})
        except (OSError, ValueError, KeyError) as e:
            parts.append(f"<p class='note'>{E(path)}: not a vpd attrib graph ({E(str(e))})</p>")
            continue
        rows = [("prompt", meta.get("prompt") or " ".join(meta.get("prompt_tokens", []))),
                ("target", f"{info.get('target_str', '?')!r} (#{info.get('target_token', '?')}) at position "
                           f"{info.get('target_position', '?')}"),
                ("P(target), CI masks + Δ", f"{info.get('p_target_ci_masks_delta', float('nan')):.4f}"),
                ("nodes / links (graph)", f"{info.get('n_nodes_full', '?')} / {info.get('n_links_full', '?')}"),
                ("nodes / links (written, influence-pruned)", f"{info.get('n_nodes', '?')} / {info.get('n_links', '?')}")]
        for key, label in (("p_target_pruned", "CI-optimised graph"), ("p_target_unpruned", "all alive on the prompt")):
            p = info.get(key)
            if p:
                rows.append((f"P(target) {label}: CI / stochastic / adversarial",
                             f"{p['ci']:.4f} / {p['stochastic']:.4f} / {p['adversarial']:.4f}"))
        if info.get("n_alive") is not None:
            rows.append(("alive on the prompt (position, subcomponent)", str(info["n_alive"])))
        html_ = f"<h3>{E(os.path.basename(path))}</h3><table>" + "".join(
            f"<tr><th>{E(a)}</th><td>{E(str(b))}</td></tr>" for a, b in rows) + "</table>"
        svg = path[:-5] + ".svg"
        if os.path.exists(svg):
            name = f"attrib_{k}.svg"
            shutil.copyfile(svg, os.path.join(out, name))
            html_ += img(name, f"attribution graph {os.path.basename(path)}", 1100)
        nodes = sorted((n for n in g.get("nodes", []) if not n.get("is_target_logit")),
                       key=lambda n: -abs(n.get("influence") or 0))[:15]
        if nodes:
            html_ += ("<table><tr><th>node</th><th>layer</th><th>c</th><th>position</th><th>g</th><th>activation</th>"
                      "<th>influence</th><th>label (harvest)</th></tr>" + "".join(
                          f"<tr><td>{E(n['node_id'])}</td><td>{E(n.get('layer_name', n.get('layer', '')))}</td>"
                          f"<td>{n.get('feature')}</td><td>{n.get('ctx_idx')}</td><td>{n.get('g', 0):.3f}</td>"
                          f"<td>{n.get('activation', 0):.3f}</td><td>{n.get('influence', 0):.3f}</td>"
                          f"<td>{E(n.get('clerp', ''))}</td></tr>" for n in nodes) + "</table>")
        parts.append(html_)
    if not parts:
        return None
    return ("<p>Graphs written by <code>vpd attrib RUN_DIR --prompt TEXT</code> (circuit-tracer's JSON layout; "
            "edges = direct effects between subcomponents, VPD_METHOD.md §6).</p>" + "".join(parts))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--out", help="output directory (default RUN_DIR/report)")
    ap.add_argument("--max-cards", type=int, default=20, help="cards per layer (the densest subcomponents that fired)")
    ap.add_argument("--tokenizer", help="tokenizer.json to decode token ids (default: data.tokenizer, then the target's)")
    ap.add_argument("--force", action="store_true", help="replace the plots and page of an existing report")
    a = ap.parse_args()
    run_dir = a.run_dir
    out = a.out or os.path.join(run_dir, "report")
    if os.path.exists(os.path.join(out, "index.html")) and not a.force:
        die(f"{out} exists: pass --force to overwrite it")
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):  # only what this tool writes: no stale plots of an earlier report
        if f.endswith(".png") or f == "index.html" or (f.startswith("attrib_") and f.endswith(".svg")):
            os.remove(os.path.join(out, f))
    run_path = os.path.join(run_dir, "run.h5")
    hv_path = os.path.join(run_dir, "harvest.h5")
    try:
        run = h5py.File(run_path, "r")
    except OSError as e:
        die(f"{run_path}: cannot open ({e})")
    kind = ""
    target_dir, cfg = find_target_dir(run, run_dir)
    if target_dir and os.path.exists(os.path.join(target_dir, "config.json")):
        kind = json.load(open(os.path.join(target_dir, "config.json"))).get("model_type", "")
    hv = h5py.File(hv_path, "r") if os.path.exists(hv_path) else None
    if hv is not None:
        kind = attr_str(hv.attrs.get("target", kind))

    dec, tok_src = find_decoder(run_dir, cfg, target_dir, a.tokenizer)

    sec = []  # (id, title, html)
    progress("training curves from metrics.jsonl")
    rows = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
    if rows:
        ims = plot_training(rows, out)
        sec.append(("training", "Training", f"<p>{len(rows)} logged steps (metrics.jsonl).</p>"
                    + "".join(img(i, i) for i in ims)))
    else:
        sec.append(("training", "Training", "<p class='note'>no metrics.jsonl in the run directory.</p>"))

    progress("eval table")
    ev_html, ev_hists = eval_section(run, run_dir)
    sec.append(("eval", "Evaluation", ev_html))

    n_cards = 0
    if hv is not None:
        progress(f"subcomponent cards from harvest.h5 (up to {a.max_cards} per layer)")
        body, toc, n_cards, hv_hists, layers = harvest_sections(hv, out, a.max_cards, dec, run_dir)
        hv_note = (f"<p>harvest.h5: {int(hv.attrs['positions'])} positions, {len(layers)} layers, "
                   f"{int(hv.attrs['n_subcomponents'])} subcomponents; {n_cards} cards (the {a.max_cards} densest "
                   "firing subcomponents per layer). "
                   + ("Tokens decoded with " + E(tok_src) if dec else
                      ("Token ids shown (no tokenizer.json: pass <code>--tokenizer FILE</code>)" if "vocab_size" in hv.attrs
                       else "")) + "</p>")
        sec.append(("subcomponents", "Subcomponents", hv_note + "<ul>" + "".join(toc) + "</ul>" + "\n".join(body)))
    else:
        hv_hists = None
        sec.append(("subcomponents", "Subcomponents",
                    f"<p class='note'>no harvest.h5: run <code>vpd harvest {E(run_dir)}</code> to add a card per "
                    "subcomponent (top contexts, token tables, logit lens, co-firing, head shares) and the attention view."
                    "</p>"))
    progress("CI histograms")
    hists = ev_hists or hv_hists
    if hists:
        src = "run.h5:/eval" if ev_hists else "harvest.h5 (g_hist summed over subcomponents)"
        sec.append(("ci", "CI histograms", f"<p>Distribution of g over positions and subcomponents, per layer ({src}).</p>"
                    + img(plot_hists(hists, out, "ci_histograms.png", "CI (g) histograms"), "CI histograms")))
    else:
        sec.append(("ci", "CI histograms", "<p class='note'>needs run.h5:/eval (<code>vpd eval</code>) or harvest.h5.</p>"))
    if hv is not None:
        att = attention_section(hv, out)
        if att:
            sec.append(("attention", "Attention heads", att))
    ag = attrib_section(run_dir, out)
    if ag:
        progress("attribution graphs")
        sec.append(("attrib", "Attribution graphs", ag))
    if kind in ("tms", "resid_mlp"):
        progress("toy target: learned directions against the ground truth")
        W = load_weights(target_dir) if target_dir else {}
        if W:
            sec.append(("toy", "Learned directions vs ground truth", toy_section(run, W, out, kind)))
        else:
            sec.append(("toy", "Learned directions vs ground truth",
                        "<p class='note'>the target's weights were not found (config target.path).</p>"))

    cfg_yaml = attr_str(run["config"].attrs["yaml"]) if "config" in run else ""
    head = (f"<h1>vpd report: {E(os.path.abspath(run_dir))}</h1><p>target {E(kind)} "
            f"({E(target_dir or '?')}), {updates_done(run)} of {int(run.attrs.get('steps', 0))} steps, "
            f"vpd {E(attr_str(run.attrs.get('vpd_version', '')))}</p>"
            f"<details><summary>config</summary><pre>{E(cfg_yaml)}</pre></details>"
            "<nav><ul>" + "".join(f"<li><a href='#{i}'>{E(t)}</a></li>" for i, t, _ in sec) + "</ul></nav>")
    doc = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>vpd report</title>"
           f"<style>{CSS}</style><script>{SCRIPT}</script></head>"
           f"<body data-cards='{n_cards}'>" + head
           + "".join(f"<section id='{i}'><h2>{E(t)}</h2>{h}</section>" for i, t, h in sec) + "</body></html>")
    tmp = os.path.join(out, "index.html.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(doc)
    os.replace(tmp, os.path.join(out, "index.html"))
    progress(f"wrote {os.path.join(out, 'index.html')} ({n_cards} cards, "
             f"{len([f for f in os.listdir(out) if f.endswith('.png')])} images)")


if __name__ == "__main__":
    main()
