#!/usr/bin/python3
"""PyTorch reference for one training step of `vpd transcoder` (objective mse or kl).

usage: reference_transcoder.py DUMP.h5

DUMP.h5 is written by a one-rank run with `debug_dump_step: S` and `debug_dump_path: DUMP.h5`
(src/transcoder/train.c): that step's MLP inputs x_i and outputs y_i, the latents z_i and AuxK
latents zaux_i vpd selected, the dead mask, the BatchTopK batch thresholds, the parameters and
Adam moments before the step, the raw gradients, the loss terms and the parameters after the
update. This script recomputes, in float64 with autograd, from x, y and the parameters:

  * the selections: TopK / BatchTopK / AuxK masks must equal vpd's except at near-ties
    (|pre - cut| < 1e-4 relative), the BatchTopK threshold must equal vpd's;
  * with vpd's selection (so a near-tie cannot flip the comparison), the loss terms
    (MSE, AuxK, sparsity) and the gradient of every parameter (JumpReLU: the documented
    pseudo-gradient, rectangle kernel);
  * the update: decoder-gradient projection, clipping, Adam (no weight decay), BatchTopK's EMA
    threshold, decoder renormalisation, JumpReLU threshold clamp -> params_after.
Objective kl: x and y are not inputs but results. The dump's tokens run through the target
(its config.json and model.safetensors, tools/reference/reference_models.py's llama_forward)
twice in float64: clean, and with every MLP replaced by its transcoder reconstruction, the
encoders reading the spliced forward's normalised MLP inputs (so the gradient flows through
later layers' inputs into earlier transcoders). The main loss is KL(clean || spliced) of the
next-token distributions, mean over tokens; the spliced MLP inputs and the MLPs' own outputs on
them are compared with the dumped x and y; everything else is checked as for mse.
Exit status 0 when everything agrees, 1 otherwise."""
import json
import os
import sys

import h5py
import numpy as np
import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reference_models import llama_forward, new_gelu  # noqa: E402
import safetensors_np  # noqa: E402

torch.set_default_dtype(torch.float64)


def main(path):
    f = h5py.File(path, "r")
    cfg = yaml.safe_load(f.attrs["config"])
    kind, act = cfg["kind"], cfg.get("activation", "batchtopk")
    n = int(cfg["n_latent"])
    k = int(cfg.get("k", 0) or 0)
    lam = float(cfg.get("sparsity_coeff", 0) or 0)
    eps_jr = float(cfg.get("jumprelu_bandwidth", 1e-3))
    ema = float(cfg.get("threshold_ema", 0.99))
    aux_k = int(cfg.get("aux_k", min(n, 256)))
    aux_coeff = float(cfg.get("aux_coeff", 1 / 32))
    lr = float(cfg.get("lr", 3e-4))
    b1, b2 = [float(b) for b in cfg.get("betas", [0.9, 0.99])]
    adam_eps = float(cfg.get("adam_eps", 1e-8))
    clip = float(cfg.get("grad_clip_norm", 1.0))
    step = int(f.attrs["step"])
    L = len([key for key in f if key.startswith("x_")])
    xs = [torch.tensor(f[f"x_{i}"][...], dtype=torch.float64) for i in range(L)]
    ys = [torch.tensor(f[f"y_{i}"][...], dtype=torch.float64) for i in range(L)]
    zc = [torch.tensor(f[f"z_{i}"][...], dtype=torch.float64) for i in range(L)]
    zauxc = [torch.tensor(f[f"zaux_{i}"][...], dtype=torch.float64) for i in range(L)]
    N, d = xs[0].shape
    dead = torch.tensor(f["dead"][...].reshape(L, n) != 0)
    writes = (lambda i, j: i == j) if kind == "plt" else (lambda i, j: j >= i)

    # the flat layout of tc_bind
    flat0 = np.asarray(f["params_before"][...], dtype=np.float64)
    layout, off = [], 0

    def take(name, shape):
        nonlocal off
        size = int(np.prod(shape))
        layout.append((name, off, shape))
        off += size

    for i in range(L):
        take(("W_enc", i), (n, d))
        take(("b_enc", i), (n,))
        take(("threshold", i), (n,))
        take(("b_dec", i), (d,))
        for j in range(L):
            if writes(i, j):
                take(("W_dec", i, j), (n, d))
    assert off == flat0.size, (off, flat0.size)
    P = {name: torch.tensor(flat0[o:o + int(np.prod(s))].reshape(s), requires_grad=True) for name, o, s in layout}

    ok = True

    def report(name, got, want, rtol):
        nonlocal ok
        got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
        scale = max(np.abs(want).max(), 1e-12)
        err = np.abs(got - want).max() / scale
        good = err <= rtol
        ok &= bool(good)
        print(f"{'ok ' if good else 'BAD'} {name:28s} max rel err {err:.3e} (tol {rtol:g})")

    kl = cfg.get("objective", "mse") == "kl"

    def latents(i, p):
        """z_i from pre-activations p with vpd's selection (so a near-tie cannot flip the comparison)"""
        if act in ("topk", "batchtopk"):
            return p * (zc[i] != 0)
        if act == "relu":
            return p * (p.detach() > 0)
        # jumprelu: value path pre·[pre > θ] with the pseudo-gradient for θ:
        # z = pre·m  +  (θ - θ.detach())·(-(θ/eps)·K)  : d z/dθ = -(θ/eps)K, value unchanged
        th = P[("threshold", i)]
        m = p.detach() > th.detach()
        K_ = (((p.detach() - th.detach()) / eps_jr).abs() < 0.5).double()
        return p * m + (th - th.detach()) * (-(th.detach() / eps_jr) * K_)

    def reconstruct(j, zs):
        y = P[("b_dec", j)].expand(N, d)
        for i in range(j + 1):
            if writes(i, j):
                y = y + zs[i] @ P[("W_dec", i, j)]
        return y

    if kl:
        mdir = cfg["target"]["model_path"]
        mc = json.load(open(os.path.join(mdir, "config.json")))
        W = {key: torch.tensor(np.array(v, dtype=np.float64))
             for key, v in safetensors_np.load(os.path.join(mdir, "model.safetensors")).items()}
        tok = torch.tensor(f["tokens"][...].astype(np.int64))
        assert tok.numel() == N, (tok.shape, N)
        pres, zs, yh, xk, yk = [None] * L, [None] * L, [None] * L, [None] * L, [None] * L

        def splice(i, a):
            a2 = a.reshape(N, d)
            xk[i] = a2.detach()
            yk[i] = (new_gelu(xk[i] @ W[f"h.{i}.mlp.c_fc.weight"].T) @ W[f"h.{i}.mlp.down_proj.weight"].T)
            pres[i] = a2 @ P[("W_enc", i)].T + P[("b_enc", i)]
            zs[i] = latents(i, pres[i])
            yh[i] = reconstruct(i, zs)
            return yh[i].reshape(a.shape)

        with torch.no_grad():
            logp = llama_forward(W, tok, mc).reshape(N, -1).log_softmax(-1)
        logq = llama_forward(W, tok, mc, mlp=splice).reshape(N, -1).log_softmax(-1)
        main_loss = (logp.exp() * (logp - logq)).sum(-1).mean()
        for i in range(L):
            report(f"spliced x_{i}", xs[i].numpy(), xk[i].numpy(), 1e-4)
            report(f"spliced y_{i}", ys[i].numpy(), yk[i].numpy(), 1e-4)
        ys = yk
    else:
        pres = [xs[i] @ P[("W_enc", i)].T + P[("b_enc", i)] for i in range(L)]
    # ---- selections -------------------------------------------------------------------
    bt = np.asarray(f["batch_threshold"][...], dtype=np.float64)
    for i in range(L):
        p = pres[i].detach()
        mine = None
        if act == "topk":
            kth = torch.topk(p, k, dim=1).values[:, -1:]
            mine = (p >= kth) & (p > 0)
            cut = kth.expand_as(p)
        elif act == "batchtopk":
            v = torch.relu(p).flatten()
            K = k * N
            thr = torch.topk(v, K).values[-1].item() if (v > 0).sum() >= K else 0.0
            report(f"batch threshold {i}", [thr], [bt[i]], 1e-5)
            mine = (p >= thr) & (p > 0)
            cut = torch.full_like(p, thr)
        if mine is not None:
            theirs = zc[i] != 0
            near = (p - cut).abs() <= 1e-4 * cut.abs().clamp_min(1e-3)
            bad = ((mine != theirs) & ~near).sum().item()
            ok &= bad == 0
            print(f"{'ok ' if bad == 0 else 'BAD'} selection {i}: {bad} differences away from near-ties")
    # ---- loss with vpd's selection ------------------------------------------------------
    masks = [(zc[i] != 0) if act in ("topk", "batchtopk") else
             (pres[i].detach() > 0) if act == "relu" else
             (pres[i].detach() > P[("threshold", i)].detach()) for i in range(L)]
    if not kl:
        zs = [latents(i, pres[i]) for i in range(L)]
        yh = [reconstruct(j, zs) for j in range(L)]
        main_loss = sum(((yh[j] - ys[j]) ** 2).mean() for j in range(L))
    mse = main_loss
    sp = torch.zeros(())
    if act == "relu" and lam > 0:
        sp = sum(lam * zs[i].sum() / N for i in range(L))
    if act == "jumprelu":
        for i in range(L):
            th = P[("threshold", i)]
            p = pres[i].detach()
            K_ = (((p - th.detach()) / eps_jr).abs() < 0.5).double()
            count = masks[i].double().sum()
            # value = λ/N · count; d/dθ = λ/N · Σ(-1/eps)K
            sp = sp + lam / N * (count + ((th - th.detach()) * (-1 / eps_jr) * K_).sum())
    aux = torch.zeros(())
    if dead.any() and aux_coeff > 0:
        for i in range(L):
            p = pres[i].detach()
            cand = torch.where(dead[i][None, :] & (p > 0), p, torch.zeros_like(p))
            kk = min(aux_k, n)
            kth = torch.topk(cand, kk, dim=1).values[:, -1:]
            mine = (cand >= kth) & (cand > 0)
            theirs = zauxc[i] != 0
            near = (cand - kth).abs() <= 1e-4 * kth.abs().clamp_min(1e-3)
            bad = ((mine != theirs) & ~near).sum().item()
            ok &= bad == 0
            print(f"{'ok ' if bad == 0 else 'BAD'} aux selection {i}: {bad} differences away from near-ties")
        # AuxK does not differentiate x (objective kl: the spliced inputs are constants here)
        xa = xk if kl else xs
        zaux = [(xa[i] @ P[("W_enc", i)].T + P[("b_enc", i)]) * (zauxc[i] != 0) for i in range(L)]
        for j in range(L):
            eh = sum(zaux[i] @ P[("W_dec", i, j)] for i in range(j + 1) if writes(i, j))
            e = (ys[j] - yh[j]).detach()
            aux = aux + aux_coeff * ((eh - e) ** 2).mean()
    else:
        print("(no dead latents at this step: AuxK inactive)")
    total = mse + sp + aux
    total.backward()
    report("loss " + ("kl" if kl else "mse"), [mse.item()], [f.attrs["loss_main"]], 1e-5)
    report("loss aux", [aux.item()], [f.attrs["loss_aux"]], 1e-4 if aux.item() else 0)
    report("loss sparsity", [sp.item()], [f.attrs["loss_sparsity"]], 1e-5 if sp.item() else 0)
    graw = np.asarray(f["grads"][...], dtype=np.float64)
    G = {}
    for name, o, s in layout:
        g = P[name].grad
        g = torch.zeros(s) if g is None else g.detach()
        if name[0] == "threshold" and act != "jumprelu":
            g = torch.zeros(s)
        G[name] = g
        report("grad " + "_".join(str(t) for t in name), graw[o:o + int(np.prod(s))].reshape(s), g.numpy(), 2e-4)
    # ---- the update, from vpd's raw gradients (what the C update saw) --------------------
    g = {name: torch.tensor(graw[o:o + int(np.prod(s))].reshape(s)) for name, o, s in layout}
    p = {name: P[name].detach().clone() for name, _, _ in layout}
    if act != "jumprelu":
        for i in range(L):
            g[("threshold", i)].zero_()
    for i in range(L):
        js = [j for j in range(L) if writes(i, j)]
        gv = sum((g[("W_dec", i, j)] * p[("W_dec", i, j)]).sum(1) for j in js)
        vv = sum((p[("W_dec", i, j)] ** 2).sum(1) for j in js)
        for j in js:
            g[("W_dec", i, j)] -= (gv / vv)[:, None] * p[("W_dec", i, j)]
    norm = torch.sqrt(sum((v ** 2).sum() for v in g.values()))
    coef = min(1.0, clip / (norm.item() + 1e-6)) if clip > 0 else 1.0
    m0 = np.asarray(f["adam_m_before"][...], dtype=np.float64)
    v0 = np.asarray(f["adam_v_before"][...], dtype=np.float64)
    t = step + 1
    after = np.empty_like(flat0)
    for name, o, s in layout:
        gg = g[name].numpy().reshape(-1) * coef
        m = b1 * m0[o:o + gg.size] + (1 - b1) * gg
        v = b2 * v0[o:o + gg.size] + (1 - b2) * gg * gg
        upd = (lr / (1 - b1 ** t)) * m / (np.sqrt(v) / np.sqrt(1 - b2 ** t) + adam_eps)
        after[o:o + gg.size] = p[name].numpy().reshape(-1) - upd
    A = {name: torch.tensor(after[o:o + int(np.prod(s))].reshape(s)) for name, o, s in layout}
    for i in range(L):
        if act == "batchtopk":
            th_old = p[("threshold", i)][0].item()
            A[("threshold", i)][:] = bt[i] if step == 0 else ema * th_old + (1 - ema) * bt[i]
        if act == "jumprelu":
            A[("threshold", i)].clamp_(min=0)
        js = [j for j in range(L) if writes(i, j)]
        nrm = torch.sqrt(sum((A[("W_dec", i, j)] ** 2).sum(1) for j in js))
        for j in js:
            A[("W_dec", i, j)] /= nrm[:, None]
    want = np.concatenate([A[name].numpy().reshape(-1) for name, _, _ in layout])
    got = np.asarray(f["params_after"][...], dtype=np.float64)
    # Adam's first steps move each entry by about lr·sign(g): an entry whose gradient is at
    # float32 rounding level may move the other way, so compare within 2.5·lr everywhere and
    # within 1e-6 + 1e-4·|p| on all but 0.1 % of the entries
    diff = np.abs(got - want)
    tight = diff <= 1e-6 + 1e-4 * np.abs(want)
    good = diff.max() <= 2.5 * lr and tight.mean() >= 0.999
    ok &= bool(good)
    print(f"{'ok ' if good else 'BAD'} params after the update: max abs diff {diff.max():.3e}, "
          f"{100 * tight.mean():.3f} % within 1e-6 + 1e-4|p|")
    print("transcoder reference:", "OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
