#!/usr/bin/env python3
"""Reference outputs for vpd's global_shared_transformer CI function.

A PyTorch re-implementation of spd's GlobalSharedTransformerCiFn (spd/models/components.py
on branch dev: Linear, RoPEEmbedding, SelfAttention, TransformerBlock), written from its
code for torch 1.13 (which lacks F.rms_norm and scaled_dot_product_attention, so both are
spelled out with the same definitions: eps = finfo(float32).eps, softmax(q k^T/sqrt(d_head)) v).
Module attribute names are spd's, so state_dict() keys are the names vpd uses.

For each case it draws random float32 weights and inputs, evaluates the module in float64
on exactly those float32 values, and writes to OUT/ref.h5:
  /<case>/cfg        int32 [d_model, n_blocks, n_heads, max_len, B, S, n_mlp_hidden, h...]
  /<case>/rope_base  float64 [1]
  /<case>/params/ci_fn._global_ci_fn.<spd key>   float32 (trainable parameters only)
  /<case>/in/<layer>  float32 [B*S, d_in]     (rows n = b*S + s)
  /<case>/z/<layer>   float64 [B*S, C]
The layers (names in strcmp order, d_in, C) are fixed: see LAYERS (the C test uses the same).
"""
import argparse
import math
import os

import h5py
import numpy as np
import torch
from torch import nn

LAYERS = [("h.0.attn.q_proj", 6, 4), ("h.0.mlp.c_fc", 5, 3), ("h.1.mlp.down_proj", 7, 5)]
# name: d_model, n_blocks, n_heads, mlp_hidden, max_len, rope_base, B, S
CASES = {
    "lm": (8, 2, 2, [12], 16, 10000.0, 2, 5),
    "wide": (16, 3, 4, [20, 12], 32, 100.0, 3, 7),
    "toy": (8, 1, 2, [], 4, 10000.0, 4, 1),
}
EPS = float(torch.finfo(torch.float32).eps)  # spd: F.rms_norm(x, ...) on float32 tensors


def rms_norm(x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS)


class Linear(nn.Module):  # spd Linear: W [in, out], y = x W + b
    def __init__(self, i, o):
        super().__init__()
        self.W = nn.Parameter(torch.empty(i, o))
        self.b = nn.Parameter(torch.zeros(o))

    def forward(self, x):
        return x @ self.W + self.b


class RoPEEmbedding(nn.Module):
    def __init__(self, d_head, max_len, base):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, d_head, 2).double() / d_head))
        self.register_buffer("inv_freq", inv_freq)
        self.max_len, self.d_head = max_len, d_head

    def forward(self, q, k):
        seq_len = q.shape[-2]
        assert seq_len <= self.max_len
        pos = torch.arange(seq_len, dtype=self.inv_freq.dtype)
        ang = pos[:, None] * self.inv_freq[None, :]
        cos = torch.cat([ang.cos(), ang.cos()], -1)
        sin = torch.cat([ang.sin(), ang.sin()], -1)
        return self._rot(q, cos, sin), self._rot(k, cos, sin)

    def _rot(self, x, cos, sin):
        h = self.d_head // 2
        xr = torch.cat([-x[..., h:], x[..., :h]], -1)
        return x * cos + xr * sin


class SelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, max_len, rope_base):
        super().__init__()
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        self.rope = RoPEEmbedding(self.d_head, max_len, rope_base)

    def forward(self, x):
        *bd, S, _ = x.shape
        q, k, v = (p(x).view(*bd, S, self.n_heads, self.d_head).transpose(-3, -2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        q, k = self.rope(q, k)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.d_head), dim=-1)  # no causal mask
        o = (att @ v).transpose(-3, -2).contiguous().view(*bd, S, self.d_model)
        return self.out_proj(o)


class TransformerBlock(nn.Module):
    def __init__(self, d_model, n_heads, mlp_hidden_dims, max_len, rope_base):
        super().__init__()
        self.attn = SelfAttention(d_model, n_heads, max_len, rope_base)
        self.mlp = nn.Sequential()
        i = d_model
        for h in mlp_hidden_dims:
            self.mlp.append(Linear(i, h))
            self.mlp.append(nn.GELU())  # exact erf GELU
            i = h
        self.mlp.append(Linear(i, d_model))

    def forward(self, x):
        x = x + self.attn(rms_norm(x))
        return x + self.mlp(rms_norm(x))


class GlobalSharedTransformerCiFn(nn.Module):
    def __init__(self, layers, d_model, n_blocks, n_heads, mlp_hidden, max_len, rope_base):
        super().__init__()
        self.layer_order = sorted(n for n, _, _ in layers)
        self.split = [c for _, _, c in sorted(layers)]
        self._input_projector = Linear(sum(d for _, d, _ in layers), d_model)
        self._output_head = Linear(d_model, sum(c for _, _, c in layers))
        self._blocks = nn.ModuleList(
            [TransformerBlock(d_model, n_heads, mlp_hidden, max_len, rope_base) for _ in range(n_blocks)])

    def forward(self, acts):
        x = torch.cat([rms_norm(acts[n]) for n in self.layer_order], -1)
        x = self._input_projector(x)
        added = x.ndim < 3
        if added:
            x = x.unsqueeze(-2)
        for b in self._blocks:
            x = b(x)
        out = self._output_head(x)
        if added:
            out = out.squeeze(-2)
        return dict(zip(self.layer_order, torch.split(out, self.split, -1)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    g = torch.Generator().manual_seed(a.seed)
    with h5py.File(os.path.join(a.out, "ref.h5"), "w") as f:
        for case, (dm, nb, nh, hid, ml, rb, B, S) in CASES.items():
            m = GlobalSharedTransformerCiFn(LAYERS, dm, nb, nh, hid, ml, rb).double()
            grp = f.create_group(case)
            grp["cfg"] = np.array([dm, nb, nh, ml, B, S, len(hid)] + hid, dtype=np.int32)
            grp["rope_base"] = np.array([rb])
            with torch.no_grad():
                for name, p in m.named_parameters():
                    # random float32 values, std 0.5 (biases too) so attention is far from uniform
                    v = (0.5 * torch.randn(p.shape, generator=g, dtype=torch.float64)).float()
                    p.copy_(v.double())
                    grp["params/ci_fn._global_ci_fn." + name] = v.numpy()
                acts = {}
                for n, d, _ in LAYERS:
                    x = (torch.randn(B * S, d, generator=g, dtype=torch.float64) * 2.0).float()
                    grp["in/" + n] = x.numpy()
                    acts[n] = x.double().view(B, S, d) if S > 1 else x.double()
                z = m(acts)
                for n, _, c in LAYERS:
                    grp["z/" + n] = z[n].reshape(B * S, c).numpy()
            grp["n_params"] = np.array([sum(p.numel() for p in m.parameters())], dtype=np.int64)
    print("wrote", os.path.join(a.out, "ref.h5"))


if __name__ == "__main__":
    main()
