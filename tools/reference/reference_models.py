#!/usr/bin/python3
"""PyTorch reference for vpd's three target models (TMS, ResidMLP, LlamaSimpleMLP).

Written from the spec (/work/shared/VPD_METHOD.md §7 and spd `dev`'s
experiments/tms/models.py, experiments/resid_mlp/models.py and
pretrain/models/llama_simple_mlp.py), independent of the C code it checks.

  reference_models.py --kind tms|resid_mlp|llama --out DIR [--seed N] [--n-kv-heads K]
      writes DIR/config.json, DIR/model.safetensors (float32, PyTorch names,
      [out, in] layouts) and DIR/reference.h5 (schema below), plus the raw input
      DIR/x.f32 (toy models) or DIR/tokens.u16 (LM) for `vpd forward`.

  reference_models.py --check-forward OUT.h5 --ref DIR [--tol 1e-5]
      compares the "logits" of a `vpd forward` output with DIR/reference.h5; exit 1
      if the max relative error exceeds tol.

reference.h5 (attribute schema_version = 1, kind):
  x [B, F] float32 (toy) | tokens [B, S] int32 (LM)      the model input
  targets [B, F] float32 (toy: MSE targets) | [B, S] int32 (LM: next tokens)
  logits  model output, float64 (computed in double on the float32-rounded weights)
  loss    [1]: mean squared error (toy) or mean next-token cross-entropy (LM)
  dlogits d loss / d logits, float64
  grad/<param name>  d loss / d parameter, float64, for every tensor in model.safetensors
                     except the tied duplicates (linear2.weight, lm_head.weight), whose
                     gradient is included in their partner's
  grad_input [B, F]  d loss / d x (toy models), float64

The weights are random with O(1) activations (not the models' training inits), so the
comparison exercises every path with values of a useful size.
"""
import argparse
import json
import math
import os
import struct
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

SCHEMA_VERSION = 1


# ---- models (functional, parameters in a name -> tensor dict) ---------------------------

def tms_forward(p, x):
    W1 = p["linear1.weight"]  # [n_hidden, n_features]
    h = x @ W1.T  # linear1, no bias
    return F.relu(h @ W1 + p["linear2.bias"])  # linear2: weight = W1^T (tied), with bias


def resid_mlp_forward(p, x, n_layers):
    r = x @ p["W_E"]  # [B, d_embed]
    for i in range(n_layers):
        mid = F.relu(r @ p[f"layers.{i}.mlp_in.weight"].T)
        r = r + mid @ p[f"layers.{i}.mlp_out.weight"].T
    return r @ p["W_U"]


def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    n = x.shape[-1] // 2
    return torch.cat((-x[..., n:], x[..., :n]), dim=-1)


def rope_cos_sin(S, dh, base, dtype):
    pos = torch.arange(S, dtype=torch.float64)
    dim = torch.arange(dh // 2, dtype=torch.float64)
    freq = (base ** (dim / (dh / 2))).repeat(2)  # half-split pairs (i, i + dh/2)
    ang = pos[:, None] / freq[None, :]
    return torch.cos(ang).to(dtype), torch.sin(ang).to(dtype)


def new_gelu(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def llama_forward(p, tok, c, mlp=None):
    """logits [B, S, V]; mlp(i, a) -> [B, S, D], when given, replaces block i's MLP on its
    normalised input a (the splice of tools/reference/reference_transcoder.py)"""
    B, S = tok.shape
    D, H, Hkv = c["n_embd"], c["n_head"], c["n_key_value_heads"]
    dh = D // H
    eps = c["rms_norm_eps"]
    x = p["wte.weight"][tok]  # [B, S, D]
    cos, sin = rope_cos_sin(S, dh, c["rope_theta"], x.dtype)
    mask = torch.tril(torch.ones(S, S, dtype=torch.bool))
    for i in range(c["n_layer"]):
        a = rms_norm(x, p[f"h.{i}.rms_1.weight"], eps)
        q = (a @ p[f"h.{i}.attn.q_proj.weight"].T).view(B, S, H, dh).transpose(1, 2)
        k = (a @ p[f"h.{i}.attn.k_proj.weight"].T).view(B, S, Hkv, dh).transpose(1, 2)
        v = (a @ p[f"h.{i}.attn.v_proj.weight"].T).view(B, S, Hkv, dh).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if H // Hkv > 1:  # grouped-query: query head h reads kv head h // (H/Hkv)
            k = k.repeat_interleave(H // Hkv, dim=1)
            v = v.repeat_interleave(H // Hkv, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(dh)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, S, D)
        x = x + y @ p[f"h.{i}.attn.o_proj.weight"].T
        a = rms_norm(x, p[f"h.{i}.rms_2.weight"], eps)
        if mlp is None:
            x = x + new_gelu(a @ p[f"h.{i}.mlp.c_fc.weight"].T) @ p[f"h.{i}.mlp.down_proj.weight"].T
        else:
            x = x + mlp(i, a)
    x = rms_norm(x, p["ln_f.weight"], eps)
    return x @ p["wte.weight"].T  # lm_head tied to wte


# ---- random weights -------------------------------------------------------------------------

def make_params(kind, c, g):
    def rn(*shape, std=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * std

    p = {}
    if kind == "tms":
        Fn, Hd = c["n_features"], c["n_hidden"]
        p["linear1.weight"] = rn(Hd, Fn, std=1 / math.sqrt(Hd))
        p["linear2.bias"] = rn(Fn, std=0.1)
    elif kind == "resid_mlp":
        Fn, De, Dm = c["n_features"], c["d_embed"], c["d_mlp"]
        WE = rn(Fn, De)
        WE /= WE.norm(dim=-1, keepdim=True)
        p["W_E"] = WE
        p["W_U"] = rn(De, Fn, std=1 / math.sqrt(De))  # independent of W_E: exercises its own gradient
        for i in range(c["n_layers"]):
            p[f"layers.{i}.mlp_in.weight"] = rn(Dm, De, std=1 / math.sqrt(De))
            p[f"layers.{i}.mlp_out.weight"] = rn(De, Dm, std=1 / math.sqrt(Dm))
    else:
        V, D, Fi, H, Hkv = c["vocab_size"], c["n_embd"], c["n_intermediate"], c["n_head"], c["n_key_value_heads"]
        KV = Hkv * (D // H)
        p["wte.weight"] = rn(V, D, std=0.3)
        for i in range(c["n_layer"]):
            p[f"h.{i}.rms_1.weight"] = 1 + rn(D, std=0.2)
            p[f"h.{i}.attn.q_proj.weight"] = rn(D, D, std=1 / math.sqrt(D))
            p[f"h.{i}.attn.k_proj.weight"] = rn(KV, D, std=1 / math.sqrt(D))
            p[f"h.{i}.attn.v_proj.weight"] = rn(KV, D, std=1 / math.sqrt(D))
            p[f"h.{i}.attn.o_proj.weight"] = rn(D, D, std=0.5 / math.sqrt(D))
            p[f"h.{i}.rms_2.weight"] = 1 + rn(D, std=0.2)
            p[f"h.{i}.mlp.c_fc.weight"] = rn(Fi, D, std=1 / math.sqrt(D))
            p[f"h.{i}.mlp.down_proj.weight"] = rn(D, Fi, std=0.5 / math.sqrt(Fi))
        p["ln_f.weight"] = 1 + rn(D, std=0.2)
    # the model file is float32: round once, compute the reference in double on the rounded values
    return {k: v.to(torch.float32).to(torch.float64) for k, v in p.items()}


# ---- files ----------------------------------------------------------------------------------

def write_safetensors(path, tensors):
    """safetensors: u64 little-endian header length, JSON header, raw little-endian data."""
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        a = np.ascontiguousarray(t.detach().numpy().astype("<f4"))
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt", "writer": "vpd tools/reference/reference_models.py"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def generate(args):
    g = torch.Generator().manual_seed(args.seed)
    if args.kind == "tms":
        cfg = {"model_type": "tms", "n_features": 20, "n_hidden": 5, "n_hidden_layers": 0, "tied_weights": True}
        B = 16
    elif args.kind == "resid_mlp":
        cfg = {"model_type": "resid_mlp", "n_features": 30, "d_embed": 40, "d_mlp": 16, "n_layers": 2,
               "act_fn_name": "relu", "in_bias": False, "out_bias": False}
        B = 8
    else:
        cfg = {"model_type": "llama_simple_mlp", "vocab_size": 97, "n_ctx": 16, "n_embd": 32, "n_head": 4,
               "n_key_value_heads": args.n_kv_heads, "n_intermediate": 64, "n_layer": 2,
               "rms_norm_eps": 1e-6, "rope_theta": 10000.0}
        B, S = 3, 7
    p = make_params(args.kind, cfg, g)
    for t in p.values():
        t.requires_grad_(True)

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    # as a PyTorch state_dict: the tied duplicates are listed under both names
    st = dict(p)
    if args.kind == "tms":
        st["linear2.weight"] = p["linear1.weight"].T
    elif args.kind == "llama":
        st["lm_head.weight"] = p["wte.weight"]
    write_safetensors(os.path.join(args.out, "model.safetensors"), st)

    h5 = h5py.File(os.path.join(args.out, "reference.h5"), "w")
    h5.attrs["schema_version"] = SCHEMA_VERSION
    h5.attrs["kind"] = cfg["model_type"]
    if args.kind in ("tms", "resid_mlp"):
        Fn = cfg["n_features"]
        # sparse-ish features in [0, 1), as the toy models' data, but dense enough to matter
        x = torch.rand(B, Fn, generator=g, dtype=torch.float64) * (torch.rand(B, Fn, generator=g) < 0.5)
        x = x.to(torch.float32).to(torch.float64).requires_grad_(True)
        targets = torch.rand(B, Fn, generator=g, dtype=torch.float64).to(torch.float32).to(torch.float64)
        if args.kind == "tms":
            logits = tms_forward(p, x)
        else:
            logits = resid_mlp_forward(p, x, cfg["n_layers"])
        logits.retain_grad()
        loss = ((logits - targets) ** 2).mean()
        loss.backward()
        h5["x"] = x.detach().numpy().astype(np.float32)
        h5["targets"] = targets.numpy().astype(np.float32)
        h5["grad_input"] = x.grad.numpy()
        x.detach().numpy().astype("<f4").tofile(os.path.join(args.out, "x.f32"))
    else:
        seq = torch.randint(0, cfg["vocab_size"], (B, S + 1), generator=g)
        tok, targets = seq[:, :S], seq[:, 1:]
        logits = llama_forward(p, tok, cfg)
        logits.retain_grad()
        loss = F.cross_entropy(logits.reshape(-1, cfg["vocab_size"]), targets.reshape(-1))
        loss.backward()
        h5["tokens"] = tok.numpy().astype(np.int32)
        h5["targets"] = targets.numpy().astype(np.int32)
        tok.numpy().astype("<u2").tofile(os.path.join(args.out, "tokens.u16"))
    h5["logits"] = logits.detach().numpy()
    h5["loss"] = np.array([loss.item()])
    h5["dlogits"] = logits.grad.numpy()
    for name, t in p.items():
        h5[f"grad/{name}"] = t.grad.numpy()
    h5.close()
    print(f"reference_models: {args.kind} -> {args.out} (loss {loss.item():.6f}, {len(p)} tensors)")
    return 0


def check_forward(args):
    with h5py.File(args.check_forward, "r") as f:
        got = np.asarray(f["logits"], dtype=np.float64)
    with h5py.File(os.path.join(args.ref, "reference.h5"), "r") as f:
        ref = np.asarray(f["logits"], dtype=np.float64)
    if got.shape != ref.shape:
        print(f"check-forward: shape {got.shape} != reference {ref.shape}")
        return 1
    err = np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-12)
    ok = err <= args.tol
    print(f"check-forward: {args.check_forward} vs {args.ref}: max rel err {err:.3e} (tol {args.tol:g}) "
          f"{'ok' if ok else 'FAIL'}")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=["tms", "resid_mlp", "llama"])
    ap.add_argument("--out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-kv-heads", type=int, default=2, help="LM: n_key_value_heads (4 = no GQA)")
    ap.add_argument("--check-forward", metavar="OUT_H5")
    ap.add_argument("--ref", metavar="DIR")
    ap.add_argument("--tol", type=float, default=1e-5)
    args = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    if args.check_forward:
        if not args.ref:
            ap.error("--check-forward needs --ref DIR")
        return check_forward(args)
    if not args.kind or not args.out:
        ap.error("--kind and --out are required")
    return generate(args)


if __name__ == "__main__":
    sys.exit(main())
