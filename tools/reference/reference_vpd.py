#!/usr/bin/python3
"""PyTorch reference for the VPD loss terms, checked against `vpd parity`.

An independent implementation (float64) of VPD_METHOD.md §1-§4 and spd `dev`'s
losses: components with the delta term, masks m = g + (1-g) r, routing, the
stochastic / layerwise / subset / CI-masked / unmasked reconstruction losses,
faithfulness, importance minimality with the frequency (beta) term over the batch,
PGD reconstruction at given sources and persistent PGD at given sources (all
scopes, incl. repeat_across_batch). The target models come from reference_models.py.
It reads the parity file layout of docs/parity.md, never vpd's code.

  reference_vpd.py make --kind tms|resid_mlp|llama --out IN.h5 [--seed N] [--ci z|direct]
      writes a parity problem (random components, CI, draws) and, under /reference,
      this implementation's values and gradients.
  reference_vpd.py eval IN.h5
      (re)computes /reference for an existing parity file.
  reference_vpd.py compare IN.h5 OUT.h5 [--grad]
      compares `vpd parity IN.h5 --out OUT.h5 [--grad]` with /reference: values at
      |x - ref| <= 1e-5 + 2e-4 |ref|, gradients at max|diff| / max|ref| <= 1e-4 per
      tensor; prints the largest relative differences per term; exit 1 on failure.
  reference_vpd.py corrupt IN.h5 BAD.h5 --mode missing|shape|nan --dataset PATH
      a copy of IN.h5 with one dataset deleted, reshaped or given a NaN (error tests).
"""
import argparse
import json
import math
import os
import shutil
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_models as RM  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import safetensors_np  # noqa: E402

torch.set_default_dtype(torch.float64)
ALPHA = 0.01
TOL_ABS, TOL_REL, TOL_GRAD = 1e-5, 2e-4, 1e-4


# ---- sigmoids (spd spd/models/sigmoids.py) ----------------------------------------------------

class LowerLeakyHard(torch.autograd.Function):
    """clamp(z, 0, 1) with the hand-written backward: γ on (0, 1], α·γ for z <= 0 only where
    γ < 0, 0 above 1."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return z.clamp(0, 1)

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        inside = (z > 0) & (z <= 1)
        below = (z <= 0) & (g < 0)
        return torch.where(inside, g, torch.where(below, ALPHA * g, torch.zeros_like(g)))


def upper_leaky_hard(z):
    return torch.where(z > 1, 1 + ALPHA * (z - 1), z.clamp(0, 1))


# ---- the target as named layers -----------------------------------------------------------

def target_layers(kind, p, c):
    """name -> (W in PyTorch layout, bias or None, embedding?)"""
    L = {}
    if kind == "tms":
        L["linear1"] = (p["linear1.weight"], None, False)
        L["linear2"] = (p["linear1.weight"].T, p["linear2.bias"], False)
    elif kind == "resid_mlp":
        for i in range(c["n_layers"]):
            for n in ("mlp_in", "mlp_out"):
                L[f"layers.{i}.{n}"] = (p[f"layers.{i}.{n}.weight"], None, False)
    else:
        L["wte"] = (p["wte.weight"], None, True)
        for i in range(c["n_layer"]):
            for n in ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.o_proj", "mlp.c_fc", "mlp.down_proj"):
                L[f"h.{i}.{n}"] = (p[f"h.{i}.{n}.weight"], None, False)
    return L


def model_forward(kind, p, c, inp, layer):
    """The target's forward with every decomposable layer computed by layer(name, x)."""
    if kind == "tms":
        return F.relu(layer("linear2", layer("linear1", inp)))
    if kind == "resid_mlp":
        r = inp @ p["W_E"]
        for i in range(c["n_layers"]):
            r = r + layer(f"layers.{i}.mlp_out", F.relu(layer(f"layers.{i}.mlp_in", r)))
        return r @ p["W_U"]
    B, S = inp.shape
    D, H, Hkv = c["n_embd"], c["n_head"], c["n_key_value_heads"]
    dh, eps = D // H, c["rms_norm_eps"]
    x = layer("wte", inp)
    cos, sin = RM.rope_cos_sin(S, dh, c["rope_theta"], x.dtype)
    mask = torch.tril(torch.ones(S, S, dtype=torch.bool))
    for i in range(c["n_layer"]):
        a = RM.rms_norm(x, p[f"h.{i}.rms_1.weight"], eps)
        q = layer(f"h.{i}.attn.q_proj", a).view(B, S, H, dh).transpose(1, 2)
        k = layer(f"h.{i}.attn.k_proj", a).view(B, S, Hkv, dh).transpose(1, 2)
        v = layer(f"h.{i}.attn.v_proj", a).view(B, S, Hkv, dh).transpose(1, 2)
        q = q * cos + RM.rotate_half(q) * sin
        k = k * cos + RM.rotate_half(k) * sin
        if H // Hkv > 1:
            k = k.repeat_interleave(H // Hkv, dim=1)
            v = v.repeat_interleave(H // Hkv, dim=1)
        att = ((q @ k.transpose(-2, -1)) / math.sqrt(dh)).masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, S, D)
        x = x + layer(f"h.{i}.attn.o_proj", y)
        a = RM.rms_norm(x, p[f"h.{i}.rms_2.weight"], eps)
        x = x + layer(f"h.{i}.mlp.down_proj", RM.new_gelu(layer(f"h.{i}.mlp.c_fc", a)))
    x = RM.rms_norm(x, p["ln_f.weight"], eps)
    return x @ p["wte.weight"].T  # the output head keeps the target weight


# ---- the problem as read from a parity file -------------------------------------------------

def arr(f, path):
    return torch.tensor(np.asarray(f[path], dtype=np.float64))


class Problem:
    def __init__(self, path):
        self.path = path
        f = self.f = h5py.File(path, "r")
        a = f.attrs
        if "target_dir" in a:
            d = os.path.join(os.path.dirname(os.path.abspath(path)), a["target_dir"])
            cfg = json.load(open(os.path.join(d, "config.json")))
            p = load_safetensors(os.path.join(d, "model.safetensors"))
        else:
            cfg = json.loads(f["target"].attrs["config"])
            p = {k: arr(f, f"target/{k}") for k in f["target"].keys()}
        self.kind = {"tms": "tms", "resid_mlp": "resid_mlp", "llama_simple_mlp": "llama"}[cfg["model_type"]]
        self.cfg, self.p = cfg, p
        self.steps = int(a.get("steps", 1))
        self.step = int(a.get("step", 0))
        self.n_samples = int(a.get("n_mask_samples", 1))
        self.delta = bool(int(a.get("use_delta_component", 1)))
        self.out_loss = str(a.get("output_loss", "kl" if self.kind == "llama" else "mse"))
        assert str(a.get("sigmoid_type", "leaky_hard")) == "leaky_hard", "reference implements leaky_hard only"
        if self.kind == "llama":
            self.inp = torch.tensor(np.asarray(f["input/tokens"], dtype=np.int64))
        else:
            self.inp = arr(f, "input/x")
        self.tl = target_layers(self.kind, p, cfg)
        self.names = sorted(f["layers"].keys())
        self.tied = self.kind == "tms" and self.names == ["linear1", "linear2"]
        # leaves: V, U of the untied layers; z or (ci_lower, ci_upper) per layer
        self.V, self.U, self.leaves = {}, {}, {}
        for n in self.names:
            if self.tied and n == "linear2":
                continue
            self.V[n] = arr(f, f"layers/{n}/V").requires_grad_(True)
            self.U[n] = arr(f, f"layers/{n}/U").requires_grad_(True)
            self.leaves[f"{n}/dV"], self.leaves[f"{n}/dU"] = self.V[n], self.U[n]
        self.direct = f"layers/{self.names[0]}/z" not in f
        self.g_lo, self.g_up = {}, {}
        for n in self.names:
            if self.direct:
                lo = arr(f, f"layers/{n}/ci_lower").requires_grad_(True)
                up = arr(f, f"layers/{n}/ci_upper").requires_grad_(True)
                self.leaves[f"{n}/dci_lower"], self.leaves[f"{n}/dci_upper"] = lo, up
                self.g_lo[n], self.g_up[n] = lo, up
            else:
                z = arr(f, f"layers/{n}/z").requires_grad_(True)
                self.leaves[f"{n}/dz"] = z
                self.g_lo[n], self.g_up[n] = LowerLeakyHard.apply(z), upper_leaky_hard(z)
        with torch.no_grad():
            self.f_target = model_forward(self.kind, p, cfg, self.inp, self.target_layer)

    def VU(self, n):
        if self.tied and n == "linear2":
            return self.U["linear1"].T, self.V["linear1"].T
        return self.V[n], self.U[n]

    def target_layer(self, n, x):
        W, b, emb = self.tl[n]
        if emb:
            return W[x]
        y = x @ W.T
        return y + b if b is not None else y

    def comp_layer(self, n, x, m, md, route):
        """(a ⊙ m) U + m_Δ·(Δ x) + b; rows with route 0 run the target layer."""
        W, b, emb = self.tl[n]
        V, U = self.VU(n)
        if emb:
            a, dx = V[x], (W - V @ U)[x]
        else:
            a, dx = x @ V, x @ (W - (V @ U).T).T
        y = (a * m) @ U if m is not None else a @ U
        if md is not None:
            y = y + md.unsqueeze(-1) * dx
        if b is not None:
            y = y + b
        if route is not None:
            y = torch.where(route.unsqueeze(-1) > 0, y, self.target_layer(n, x))
        return y

    def D(self, out):
        if self.out_loss == "mse":
            return ((out - self.f_target) ** 2).mean()
        lp, lq = F.log_softmax(self.f_target, -1), F.log_softmax(out, -1)
        return (lp.exp() * (lp - lq)).sum(-1).mean()

    def recon(self, masks, deltas, routes=None):
        """masks: name -> mask (None = ones) for the replaced layers; deltas: name -> m_Δ or absent"""
        def layer(n, x):
            if n not in masks:
                return self.target_layer(n, x)
            return self.comp_layer(n, x, masks[n], deltas.get(n), routes[n] if routes else None)
        return self.D(model_forward(self.kind, self.p, self.cfg, self.inp, layer))

    # -- draws from the file
    def ds(self, lname, path):
        return arr(self.f, f"losses/{lname}/{path}")

    def routes(self, lname, draw):
        return {n: self.ds(lname, f"routing/{draw}/{n}") for n in self.names}

    def stoch_masks(self, lname, s):
        masks, deltas = {}, {}
        for n in self.names:
            r = self.ds(lname, f"stochastic/{s}/{n}/src")
            masks[n] = self.g_lo[n] + (1 - self.g_lo[n]) * r
            if self.delta:
                deltas[n] = self.ds(lname, f"stochastic/{s}/{n}/delta")
        return masks, deltas

    def masks_from_sources(self, srcs):
        """srcs: name -> sources [..., C (+1)] broadcastable to the rows"""
        masks, deltas = {}, {}
        for n, r in srcs.items():
            g = self.g_lo[n]
            C = g.shape[-1]
            masks[n] = g + (1 - g) * r[..., :C]
            if self.delta:
                deltas[n] = r[..., C].expand(g.shape[:-1])
        return masks, deltas

    # -- the losses
    def loss(self, lname):
        at = self.f[f"losses/{lname}"].attrs
        cls = str(at["classname"])
        names, L = self.names, len(self.names)
        if cls == "FaithfulnessLoss":
            sq, num = 0.0, 0
            for n in names:
                W, _, emb = self.tl[n]
                V, U = self.VU(n)
                dW = W - (V @ U if emb else (V @ U).T)
                sq, num = sq + (dW ** 2).sum(), num + W.numel()
            return sq / num
        if cls == "ImportanceMinimalityLoss":
            p0 = float(at["pnorm"])
            p = p0
            if "p_anneal_final_p" in at:
                s0, s1, pf = float(at.get("p_anneal_start_frac", 1)), float(at.get("p_anneal_end_frac", 1)), float(at["p_anneal_final_p"])
                frac = self.step / self.steps
                if s0 < 1 and frac >= s0:
                    p = pf if frac >= s1 else p0 + (pf - p0) * (frac - s0) / (s1 - s0)
            beta, eps = float(at.get("beta", 0)), float(at.get("eps", 1e-12))
            total = 0.0
            for n in names:
                g = self.g_up[n].reshape(-1, self.g_up[n].shape[-1])
                Sc = ((g + eps) ** p).sum(0)
                mean = Sc / g.shape[0]
                total = total + (mean + beta * mean * torch.log2(1 + Sc)).sum()
            return total
        if cls in ("StochasticReconLoss", "StochasticReconLayerwiseLoss", "StochasticReconSubsetLoss"):
            vals = []
            for s in range(self.n_samples):
                masks, deltas = self.stoch_masks(lname, s)
                if cls == "StochasticReconLayerwiseLoss":
                    vals += [self.recon({n: masks[n]}, {k: v for k, v in deltas.items() if k == n}) for n in names]
                else:
                    vals.append(self.recon(masks, deltas, self.routes(lname, s) if "Subset" in cls else None))
            return sum(vals) / len(vals)
        if cls.startswith("CIMaskedRecon"):
            masks = {n: self.g_lo[n] for n in names}
            if cls == "CIMaskedReconLayerwiseLoss":
                return sum(self.recon({n: masks[n]}, {}) for n in names) / L
            return self.recon(masks, {}, self.routes(lname, 0) if "Subset" in cls else None)
        if cls == "UnmaskedReconLoss":
            return self.recon({n: None for n in names}, {})
        if cls.startswith("PGDRecon"):
            shared = str(at.get("mask_scope", "unique_per_datapoint")) == "shared_across_batch"
            n_steps, step = int(at.get("n_steps", 0)), float(at.get("step_size", 0.1))
            routes = self.routes(lname, 0) if cls == "PGDReconSubsetLoss" else None
            groups = [[n] for n in names] if cls == "PGDReconLayerwiseLoss" else [names]
            vals = []
            for grp in groups:
                srcs = {n: self.ds(lname, f"pgd_init/{n}") for n in grp}
                for _ in range(n_steps):  # sign ascent on detached parameters and CI
                    leaves = {n: r.clone().requires_grad_(True) for n, r in srcs.items()}
                    with torch.enable_grad():
                        saved = self.detach_all()
                        m, d = self.masks_from_sources(leaves)
                        Dv = self.recon(m, d, routes)
                        self.restore(saved)
                    gr = torch.autograd.grad(Dv, list(leaves.values()))
                    srcs = {n: (srcs[n] + step * torch.sign(g)).clamp(0, 1) for n, g in zip(leaves, gr)}
                m, d = self.masks_from_sources(srcs)
                vals.append(self.recon(m, d, routes))
            return sum(vals) / len(vals)
        if cls.startswith("PersistentPGDRecon"):
            sig = bool(int(at.get("use_sigmoid_parameterization", 0)))
            srcs = {}
            for n in names:
                s = self.ds(lname, f"ppgd_sources/{n}")  # [Ns, Ss, Cs]
                r = torch.sigmoid(s) if sig else s
                B = self.inp.shape[0]
                r = r[torch.arange(B) % r.shape[0]]  # example b uses row b mod Ns
                if self.kind == "llama":
                    r = r.expand(B, self.inp.shape[1], r.shape[-1])  # Ss = 1 broadcasts over positions
                else:
                    r = r[:, 0, :]
                srcs[n] = r
            m, d = self.masks_from_sources(srcs)
            return self.recon(m, d, self.routes(lname, 0) if "Subset" in cls else None)
        raise SystemExit(f"reference_vpd: loss class {cls} not implemented here")

    def detach_all(self):
        saved = (self.V, self.U, self.g_lo, self.g_up)
        self.V = {k: v.detach() for k, v in self.V.items()}
        self.U = {k: v.detach() for k, v in self.U.items()}
        self.g_lo = {k: v.detach() for k, v in self.g_lo.items()}
        self.g_up = {k: v.detach() for k, v in self.g_up.items()}
        return saved

    def restore(self, saved):
        self.V, self.U, self.g_lo, self.g_up = saved


def load_safetensors(path):
    """float32 tensors of a model file as float64 torch tensors"""
    return {k: torch.tensor(v.astype(np.float64)) for k, v in safetensors_np.load(path, dtypes=("F32",), strict=True).items()}


def evaluate(path):
    """values and gradients of every loss of the file, written under /reference"""
    P = Problem(path)
    res = {}
    for lname in sorted(P.f["losses"].keys()):
        coeff = float(P.f[f"losses/{lname}"].attrs.get("coeff", 1.0))
        val = P.loss(lname)
        keys = list(P.leaves)
        grads = torch.autograd.grad(coeff * val, [P.leaves[k] for k in keys], allow_unused=True, retain_graph=True)
        res[lname] = (float(val), {k: (g if g is not None else torch.zeros_like(P.leaves[k])) for k, g in zip(keys, grads)})
    P.f.close()
    with h5py.File(path, "a") as f:
        if "reference" in f:
            del f["reference"]
        for lname, (v, g) in res.items():
            grp = f.create_group(f"reference/losses/{lname}")
            grp.attrs["value"] = v
            for k, t in g.items():
                grp[f"grad/{k}"] = t.detach().numpy()
    return res


# ---- writing a problem ------------------------------------------------------------------------

PROBLEMS = {
    "tms": dict(cfg={"model_type": "tms", "n_features": 8, "n_hidden": 3, "n_hidden_layers": 0, "tied_weights": True},
                B=8, S=1, layers={"linear1": 6, "linear2": 6}, inline=True, ci="z"),
    "resid_mlp": dict(cfg={"model_type": "resid_mlp", "n_features": 12, "d_embed": 16, "d_mlp": 8, "n_layers": 2,
                           "act_fn_name": "relu", "in_bias": False, "out_bias": False},
                      B=8, S=1, layers={"layers.0.mlp_in": 7, "layers.0.mlp_out": 5, "layers.1.mlp_in": 9,
                                        "layers.1.mlp_out": 4}, inline=True, ci="z"),
    "llama": dict(cfg={"model_type": "llama_simple_mlp", "vocab_size": 41, "n_ctx": 16, "n_embd": 16, "n_head": 4,
                       "n_key_value_heads": 2, "n_intermediate": 32, "n_layer": 2, "rms_norm_eps": 1e-6,
                       "rope_theta": 10000.0},
                  B=2, S=5, layers={"wte": 6, "h.0.attn.q_proj": 5, "h.0.attn.k_proj": 4, "h.0.mlp.c_fc": 7,
                                    "h.1.attn.o_proj": 5, "h.1.mlp.down_proj": 6}, inline=False, ci="direct"),
}


def make(kind, out, seed=0, ci=None, losses=None):
    spec = PROBLEMS[kind]
    cfg, B, S = spec["cfg"], spec["B"], spec["S"]
    ci = ci or spec["ci"]
    toy = kind != "llama"
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    p = RM.make_params(kind, cfg, g)
    tl = target_layers(kind, p, cfg)
    f32 = lambda t: np.asarray(t, dtype=np.float32)  # noqa: E731
    rows = (B,) if toy else (B, S)
    names = list(spec["layers"])
    rng.shuffle(names)  # file order is irrelevant
    tied = kind == "tms"
    Ls = sorted(names)
    with h5py.File(out, "w") as f:
        f.attrs.update({"version": 1, "steps": 10, "step": 3, "n_mask_samples": 2, "use_delta_component": 1,
                        "output_loss": "mse" if toy else "kl", "sigmoid_type": "leaky_hard"})
        if spec["inline"]:
            t = f.create_group("target")
            t.attrs["config"] = json.dumps(cfg)
            for k, v in p.items():
                t[k] = f32(v)
        else:
            d = os.path.splitext(out)[0] + "_target"
            os.makedirs(d, exist_ok=True)
            json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
            st = dict(p)
            if kind == "llama":
                st["lm_head.weight"] = p["wte.weight"]
            RM.write_safetensors(os.path.join(d, "model.safetensors"), st)
            f.attrs["target_dir"] = os.path.basename(d)
        if toy:
            x = rng.random((B, cfg["n_features"])) * (rng.random((B, cfg["n_features"])) < 0.6)
            f["input/x"] = f32(x)
        else:
            f["input/tokens"] = rng.integers(0, cfg["vocab_size"], size=(B, S)).astype(np.int32)
        V1 = U1 = None
        for n in names:
            W, b, emb = tl[n]
            C = spec["layers"][n]
            d_in = W.shape[0] if emb else W.shape[1]
            d_out = W.shape[1] if emb else W.shape[0]
            grp = f.create_group(f"layers/{n}")
            if not (tied and n == "linear2"):
                V = rng.normal(0, 1 / math.sqrt(d_in), (d_in, C))
                U = rng.normal(0, 1 / math.sqrt(C), (C, d_out))
                grp["V"], grp["U"] = f32(V), f32(U)
            grp["W"] = f32(W.numpy())
            if b is not None:
                grp["b"] = f32(b.numpy())
            if ci == "z":
                grp["z"] = f32(rng.uniform(-0.4, 1.4, rows + (C,)))
            else:
                lo = rng.uniform(0, 1, rows + (C,)) * (rng.random(rows + (C,)) < 0.8)
                grp["ci_lower"] = f32(lo)
                grp["ci_upper"] = f32(np.clip(lo + rng.uniform(0.01, 0.3, lo.shape), 0, 1.2))
        Cs = {n: spec["layers"][n] for n in names}

        def add_loss(name, cls, coeff, **attrs):
            grp = f.create_group(f"losses/{name}")
            grp.attrs["classname"] = cls
            grp.attrs["coeff"] = float(coeff)
            for k, v in attrs.items():
                grp.attrs[k] = v
            return grp

        def routing(grp, draw):
            for n in Ls:
                pass
            k = rng.integers(1, len(Ls) + 1, size=rows)
            flags = np.zeros(rows + (len(Ls),), dtype=np.uint8)
            for idx in np.ndindex(*rows):
                flags[idx + (rng.permutation(len(Ls))[: k[idx]],)] = 1
            for j, n in enumerate(Ls):
                grp[f"routing/{draw}/{n}"] = flags[..., j]

        def stochastic(grp):
            for s in range(2):
                for n in Ls:
                    grp[f"stochastic/{s}/{n}/src"] = f32(rng.random(rows + (Cs[n],)))
                    grp[f"stochastic/{s}/{n}/delta"] = f32(rng.random(rows))

        def pgd(grp, shared):
            for n in Ls:
                grp[f"pgd_init/{n}"] = f32(rng.random((Cs[n] + 1,) if shared else rows + (Cs[n] + 1,)))

        def ppgd(grp, Ns, Ss, sig):
            for n in Ls:
                v = rng.normal(0, 1, (Ns, Ss, Cs[n] + 1)) if sig else rng.random((Ns, Ss, Cs[n] + 1))
                grp[f"ppgd_sources/{n}"] = f32(v)

        all_losses = losses is None
        want = (lambda n: True) if all_losses else (lambda n: n in losses)  # noqa: E731
        if want("faith"):
            add_loss("faith", "FaithfulnessLoss", 1.5)
        if want("im"):
            add_loss("im", "ImportanceMinimalityLoss", 0.3, pnorm=2.0, beta=0.5, eps=1e-12, p_anneal_start_frac=0.0,
                     p_anneal_end_frac=1.0, p_anneal_final_p=0.8)
        if want("im_nobeta"):
            add_loss("im_nobeta", "ImportanceMinimalityLoss", 0.2, pnorm=1.0)
        if want("stoch"):
            stochastic(add_loss("stoch", "StochasticReconLoss", 0.7))
        if want("stoch_lw"):
            stochastic(add_loss("stoch_lw", "StochasticReconLayerwiseLoss", 0.4))
        if want("stoch_subset"):
            grp = add_loss("stoch_subset", "StochasticReconSubsetLoss", 0.6)
            stochastic(grp)
            routing(grp, 0)
            routing(grp, 1)
        if want("ci_masked"):
            add_loss("ci_masked", "CIMaskedReconLoss", 0.9)
        if want("ci_masked_lw"):
            add_loss("ci_masked_lw", "CIMaskedReconLayerwiseLoss", 0.8)
        if want("ci_masked_subset"):
            routing(add_loss("ci_masked_subset", "CIMaskedReconSubsetLoss", 0.5), 0)
        if want("unmasked"):
            add_loss("unmasked", "UnmaskedReconLoss", 1.1)
        if want("pgd"):
            pgd(add_loss("pgd", "PGDReconLoss", 0.5, mask_scope="unique_per_datapoint", n_steps=0, step_size=0.1), False)
        if want("pgd_shared"):
            pgd(add_loss("pgd_shared", "PGDReconLoss", 0.5, mask_scope="shared_across_batch", n_steps=0, step_size=0.1), True)
        if want("pgd_subset"):
            grp = add_loss("pgd_subset", "PGDReconSubsetLoss", 0.5, mask_scope="unique_per_datapoint", n_steps=0)
            pgd(grp, False)
            routing(grp, 0)
        if want("pgd_lw"):
            pgd(add_loss("pgd_lw", "PGDReconLayerwiseLoss", 0.5, mask_scope="shared_across_batch", n_steps=0), True)
        if want("ppgd"):
            ppgd(add_loss("ppgd", "PersistentPGDReconLoss", 0.5, scope="per_batch_per_position"), B, S, False)
        if want("ppgd_single_sig"):
            ppgd(add_loss("ppgd_single_sig", "PersistentPGDReconLoss", 0.5, scope="single_source",
                          use_sigmoid_parameterization=1), 1, 1, True)
        if want("ppgd_subset_rep"):
            grp = add_loss("ppgd_subset_rep", "PersistentPGDReconSubsetLoss", 0.5, scope="repeat_across_batch",
                           n_sources=2)
            ppgd(grp, 2, S, False)
            routing(grp, 0)
        if want("ppgd_bcast") and not toy:
            ppgd(add_loss("ppgd_bcast", "PersistentPGDReconLoss", 0.5, scope="broadcast_across_batch"), 1, S, False)
    return evaluate(out)


# ---- comparing with vpd parity's output ---------------------------------------------------------

def compare(inp, outp, grad):
    ok = True
    with h5py.File(inp, "r") as fr, h5py.File(outp, "r") as fo:
        ref = fr["reference/losses"]
        print(f"{'loss':<20} {'classname':<30} {'value (ref)':>16} {'rel diff':>10} {'grad rel diff':>14}")
        for lname in sorted(ref.keys()):
            r = float(ref[lname].attrs["value"])
            if f"losses/{lname}" not in fo:
                print(f"{lname}: missing from {outp}")
                ok = False
                continue
            x = float(fo[f"losses/{lname}"].attrs["value"])
            diff = abs(x - r)
            rel = diff / max(abs(r), 1e-30)
            vok = diff <= TOL_ABS + TOL_REL * abs(r)
            gmax, worst = 0.0, ""
            if grad:
                for k in ref[f"{lname}/grad"].keys():
                    for t in ref[f"{lname}/grad/{k}"].keys():
                        key = f"{k}/{t}"
                        a = np.asarray(ref[f"{lname}/grad/{key}"], dtype=np.float64)
                        if f"losses/{lname}/grad/{key}" not in fo:
                            print(f"{lname}: gradient {key} missing from {outp}")
                            ok = False
                            continue
                        b = np.asarray(fo[f"losses/{lname}/grad/{key}"], dtype=np.float64)
                        if a.shape != b.shape:
                            print(f"{lname}: gradient {key}: shape {b.shape} != reference {a.shape}")
                            ok = False
                            continue
                        e = np.abs(a - b).max() / max(np.abs(a).max(), 1e-8)
                        if e > gmax:
                            gmax, worst = e, key
            gok = gmax <= TOL_GRAD
            cls = str(fr[f"losses/{lname}"].attrs["classname"])
            print(f"{lname:<20} {cls:<30} {r:16.9e} {rel:10.2e} {gmax:14.2e}"
                  f"{'' if vok else '  VALUE FAIL'}{'' if gok else '  GRAD FAIL (' + worst + ')'}")
            ok = ok and vok and gok
    print("parity:", "ok" if ok else "FAIL")
    return 0 if ok else 1


def corrupt(inp, outp, mode, dataset):
    shutil.copyfile(inp, outp)
    with h5py.File(outp, "a") as f:
        if mode == "missing":
            del f[dataset]
        elif mode == "shape":
            a = np.asarray(f[dataset])
            del f[dataset]
            f[dataset] = np.concatenate([a, a[-1:]], axis=0)
        else:
            a = np.asarray(f[dataset]).copy()
            a.flat[a.size // 2] = np.nan
            f[dataset][...] = a
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--kind", choices=list(PROBLEMS), required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--ci", choices=["z", "direct"])
    e = sub.add_parser("eval")
    e.add_argument("file")
    c = sub.add_parser("compare")
    c.add_argument("file")
    c.add_argument("out")
    c.add_argument("--grad", action="store_true")
    k = sub.add_parser("corrupt")
    k.add_argument("file")
    k.add_argument("out")
    k.add_argument("--mode", choices=["missing", "shape", "nan"], required=True)
    k.add_argument("--dataset", required=True)
    a = ap.parse_args()
    if a.cmd == "make":
        res = make(a.kind, a.out, a.seed, a.ci)
        print(f"reference_vpd: {a.kind} -> {a.out} ({len(res)} losses)")
        return 0
    if a.cmd == "eval":
        evaluate(a.file)
        return 0
    if a.cmd == "compare":
        return compare(a.file, a.out, a.grad)
    return corrupt(a.file, a.out, a.mode, a.dataset)


if __name__ == "__main__":
    sys.exit(main())
