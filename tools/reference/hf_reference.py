#!/usr/bin/env python3
"""Reference models and outputs from Hugging Face `transformers` (issue 18).

Builds small random-weight models with each architecture's quirks switched on, saves them with
`save_pretrained` (safetensors; one case sharded; fp16 and bf16 copies), and writes what vpd must
reproduce. Run with the test venv's python (tests/cmake/hf.cmake: transformers==4.45.2 over
Debian's torch 1.13):

    hf_reference.py OUT_DIR [CASE ...]        (default: every case)

For each case OUT_DIR/CASE/ holds
    model/             config.json + model.safetensors (or the sharded files with
                       model.safetensors.index.json), as save_pretrained writes them
    tokens.bin         the token ids, uint32 little-endian, B*S of them (vpd forward --tokens)
    train.bin          8192 random token ids, uint16 (data for test decompositions)
    ref.safetensors    F32 tensors, computed in float64 from the saved weights:
                         ids [B, S] (exact small integers), logits [B, S, V],
                         R [B, S, V] (fixed random), grad_inputs_embeds [B, S, d]
                         = d sum(logits * R) / d inputs_embeds, and
                         grad.<param> for every parameter (tied weights: one tensor, summed)
                       metadata: B, S, case, arch, hf_fp32_maxrel (transformers' own fp32
                       forward against the float64 one: the noise floor of the comparison)

Qwen3 is not in transformers 4.45.2 (it arrived in 4.51, which needs torch >= 2). The `qwen3`
case is LlamaForCausalLM (explicit head_dim, no biases) with each attention patched to apply
per-head RMSNorm to q and k after the projection and before RoPE, exactly as transformers'
Qwen3Attention does (q_norm/k_norm = RMSNorm(head_dim, rms_norm_eps) over the last dim of
q_proj(x).view(B, S, H, head_dim)); the saved config.json is rewritten to model_type "qwen3".
"""
import json
import math
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file
from torch import nn

import transformers
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

B, S = 2, 12


def llama_cfg(**kw):
    base = dict(vocab_size=96, hidden_size=32, intermediate_size=56, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
                tie_word_embeddings=False, attention_bias=False, mlp_bias=False, initializer_range=0.2,
                attn_implementation="eager")
    base.update(kw)
    return LlamaConfig(**base)


def qwen2_cfg(**kw):
    base = dict(vocab_size=96, hidden_size=32, intermediate_size=56, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=1000000.0,
                tie_word_embeddings=True, use_sliding_window=False, initializer_range=0.2,
                attn_implementation="eager")
    base.update(kw)
    return Qwen2Config(**base)


# ---- Qwen3 on top of transformers 4.45.2's Llama (see the module docstring) ----
class Qwen3StyleAttention(nn.Module):
    """Wraps a LlamaAttention: same q/k/v/o projections, plus q_norm/k_norm as Qwen3."""

    def __init__(self, attn, config):
        super().__init__()
        self.inner = attn
        self.head_dim = attn.head_dim
        self.q_norm = transformers.models.llama.modeling_llama.LlamaRMSNorm(self.head_dim, eps=config.rms_norm_eps)
        self.k_norm = transformers.models.llama.modeling_llama.LlamaRMSNorm(self.head_dim, eps=config.rms_norm_eps)

    def forward(self, hidden_states, attention_mask=None, position_ids=None, past_key_value=None,
                output_attentions=False, use_cache=False, cache_position=None, position_embeddings=None, **kw):
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv
        a = self.inner
        bsz, q_len, _ = hidden_states.size()
        # Qwen3Attention: q_norm(q_proj(x).view(hidden_shape)).transpose(1, 2), same for k
        q = self.q_norm(a.q_proj(hidden_states).view(bsz, q_len, a.num_heads, a.head_dim)).transpose(1, 2)
        k = self.k_norm(a.k_proj(hidden_states).view(bsz, q_len, a.num_key_value_heads, a.head_dim)).transpose(1, 2)
        v = a.v_proj(hidden_states).view(bsz, q_len, a.num_key_value_heads, a.head_dim).transpose(1, 2)
        cos, sin = position_embeddings
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        k = repeat_kv(k, a.num_key_value_groups)
        v = repeat_kv(v, a.num_key_value_groups)
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(a.head_dim)
        if attention_mask is not None:
            w = w + attention_mask[:, :, :, : k.shape[-2]]
        w = nn.functional.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        o = torch.matmul(w, v).transpose(1, 2).contiguous().reshape(bsz, q_len, -1)
        return a.o_proj(o), None, past_key_value


class Qwen3Reference(LlamaForCausalLM):
    """LlamaForCausalLM with Qwen3's per-head q/k RMSNorm; state_dict names as Qwen3's
    (model.layers.N.self_attn.{q,k,v,o}_proj / q_norm / k_norm)."""

    def __init__(self, config):
        super().__init__(config)
        for layer in self.model.layers:
            layer.self_attn = Qwen3StyleAttention(layer.self_attn, config)

    def state_dict(self, *a, **kw):
        sd = super().state_dict(*a, **kw)
        return type(sd)((k.replace(".self_attn.inner.", ".self_attn."), v) for k, v in sd.items())

    def load_qwen3_state_dict(self, sd):
        own = {k.replace(".self_attn.inner.", ".self_attn."): k for k in super().state_dict()}
        super().load_state_dict({own[k]: v for k, v in sd.items()}, strict=True)


def qwen3_cfg(**kw):
    return llama_cfg(head_dim=16, rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True, **kw)


# ---- GPT-2 and GPT-NeoX (Pythia) (s2h4) ----
def gpt2_cfg(**kw):
    base = dict(vocab_size=96, n_positions=32, n_embd=32, n_layer=2, n_head=4, activation_function="gelu_new",
                resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5, initializer_range=0.2,
                attn_implementation="eager")
    base.update(kw)
    return GPT2Config(**base)


def neox_cfg(**kw):
    base = dict(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=56,
                hidden_act="gelu", rotary_pct=0.25, rotary_emb_base=10000, max_position_embeddings=64,
                layer_norm_eps=1e-5, use_parallel_residual=True, tie_word_embeddings=False, initializer_range=0.2,
                attention_dropout=0.0, hidden_dropout=0.0, attn_implementation="eager")
    base.update(kw)
    return GPTNeoXConfig(**base)


def make_model(arch, cfg, seed):
    torch.manual_seed(seed)
    if arch == "gpt2":
        m = GPT2LMHeadModel(cfg)
    elif arch == "gpt_neox":
        m = GPTNeoXForCausalLM(cfg)
    elif arch == "llama":
        m = LlamaForCausalLM(cfg)
    elif arch == "qwen2":
        m = Qwen2ForCausalLM(cfg)
    else:
        m = Qwen3Reference(cfg)
    # random norms and biases too (from_config gives ones / zeros, which would hide mistakes)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("norm.weight") or (arch == "gpt2" and ".ln_" in name and name.endswith(".weight")):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return m.eval()


# name: (arch, config builder, save options)
CASES = {
    # GQA, untied head, Llama-3.1 rope scaling, sharded checkpoint
    "llama": ("llama", lambda: llama_cfg(rope_theta=500000.0, rope_scaling=dict(
        rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=8)), dict(max_shard_size="20KB")),
    # MHA, tied head, explicit head_dim != hidden/heads, attention and MLP biases
    "llama_tied": ("llama", lambda: llama_cfg(num_key_value_heads=4, head_dim=12, tie_word_embeddings=True,
                                              attention_bias=True, mlp_bias=True), {}),
    # fp16 / bf16 checkpoints of the GQA Llama (reference from the rounded weights)
    "llama_fp16": ("llama", lambda: llama_cfg(), dict(dtype=torch.float16)),
    "llama_bf16": ("llama", lambda: llama_cfg(), dict(dtype=torch.bfloat16)),
    # Qwen2: GQA, q/k/v biases, tied head
    "qwen2": ("qwen2", lambda: qwen2_cfg(), {}),
    # Qwen2 untied with 1 kv head (multi-query)
    "qwen2_untied": ("qwen2", lambda: qwen2_cfg(num_key_value_heads=1, tie_word_embeddings=False), {}),
    # Qwen3 (see the docstring): head_dim 16 with hidden 32 / 4 heads, GQA, q/k norms, tied
    "qwen3": ("qwen3", lambda: qwen3_cfg(), {}),
    # GPT-2: learned positions, fused c_attn (Conv1D [in, out]), biases, tanh GELU, tied lm_head
    "gpt2": ("gpt2", lambda: gpt2_cfg(), {}),
    # GPT-2 with an explicit n_inner and exact GELU
    "gpt2_inner": ("gpt2", lambda: gpt2_cfg(n_inner=40, activation_function="gelu", n_layer=3), {}),
    # GPT-2 as the Hub's checkpoint names it (GPT2Model: "h.0.attn.c_attn.weight", no lm_head)
    "gpt2_bare": ("gpt2", lambda: gpt2_cfg(), dict(bare=True)),
    # Pythia: parallel residual, rotary on 1/4 of each head, untied embed_out
    "neox": ("gpt_neox", lambda: neox_cfg(), {}),
    # GPT-NeoX with a sequential residual and rotary on half of each head, tanh GELU
    "neox_seq": ("gpt_neox", lambda: neox_cfg(use_parallel_residual=False, rotary_pct=0.5, hidden_act="gelu_new",
                                              rotary_emb_base=100), {}),
}


def save(arch, m, cfg, mdir, opts):
    dtype = opts.get("dtype")
    if arch == "qwen3":
        os.makedirs(mdir, exist_ok=True)
        sd = {k: v.detach().contiguous().clone() for k, v in m.state_dict().items()}
        if cfg.tie_word_embeddings:
            sd.pop("lm_head.weight")
        from safetensors.torch import save_file as st_save
        st_save(sd, os.path.join(mdir, "model.safetensors"), metadata={"format": "pt"})
        c = cfg.to_dict()
        for key in ("mlp_bias", "pretraining_tp", "_attn_implementation_autoset"):
            c.pop(key, None)
        c.update(model_type="qwen3", architectures=["Qwen3ForCausalLM"])
        with open(os.path.join(mdir, "config.json"), "w") as f:
            json.dump(c, f, indent=2)
    else:
        kw = {"safe_serialization": True}
        if "max_shard_size" in opts:
            kw["max_shard_size"] = opts["max_shard_size"]
        if dtype is not None:
            # only the parameters are stored in dtype: converting the module would also round
            # the rotary inv_freq buffer, which real fp16/bf16 checkpoints do not store
            kw["state_dict"] = {k: v.detach().to(dtype) for k, v in m.state_dict().items()}
            m.config.torch_dtype = dtype
        m.save_pretrained(mdir, **kw)
        if opts.get("bare"):  # as the Hub's gpt2 (saved from GPT2Model): no "transformer." prefix
            from safetensors.torch import load_file, save_file as st_save
            f = os.path.join(mdir, "model.safetensors")
            sd = {k[len("transformer."):]: v for k, v in load_file(f).items() if k.startswith("transformer.")}
            st_save(sd, f, metadata={"format": "pt"})
    if dtype is not None:
        m = m.to(torch.float32)
    return m


def reference(m, ids, R):
    """logits and gradients of sum(logits * R) in float64"""
    m = m.double()
    m.zero_grad(set_to_none=True)
    emb = m.get_input_embeddings()(ids).detach().requires_grad_(True)
    logits = m(inputs_embeds=emb, use_cache=False).logits
    (logits * R).sum().backward()
    out = {"ids": ids.double(), "logits": logits.detach(), "R": R, "grad_inputs_embeds": emb.grad}
    # the gradient wrt embed_tokens must include the input path: add the scatter of emb.grad
    emb_w = m.get_input_embeddings().weight
    for name, p in m.named_parameters():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        if p is emb_w:
            g = g.clone().index_add_(0, ids.reshape(-1), emb.grad.reshape(-1, emb.shape[-1]))
        name = name.replace(".self_attn.inner.", ".self_attn.")
        out["grad." + name] = g
    return {k: v.detach().to(torch.float32).numpy() for k, v in out.items()}


def build(case, out_dir):
    arch, cfg_fn, opts = CASES[case]
    cfg = cfg_fn()
    seed = sum(map(ord, case))
    m = make_model(arch, cfg, seed)
    cdir = os.path.join(out_dir, case)
    mdir = os.path.join(cdir, "model")
    m = save(arch, m, cfg, mdir, opts)
    if "dtype" in opts:  # the reference sees the weights as stored (parameters only)
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(p.to(opts["dtype"]).to(torch.float32))
    g = torch.Generator().manual_seed(seed + 2)
    ids = torch.randint(0, cfg.vocab_size, (B, S), generator=g)
    R = torch.randn(B, S, cfg.vocab_size, generator=g, dtype=torch.float64)
    with torch.no_grad():
        l32 = m(input_ids=ids, use_cache=False).logits.double()
    ref = reference(m, ids, R)
    l64 = torch.from_numpy(ref["logits"]).double()
    noise = float((l32 - l64).abs().max() / l64.abs().max())
    ids.numpy().astype("<u4").tofile(os.path.join(cdir, "tokens.bin"))
    # token data for test decompositions of the random model (uint16, nanoGPT .bin)
    torch.randint(0, cfg.vocab_size, (8192,), generator=g).numpy().astype("<u2").tofile(os.path.join(cdir, "train.bin"))
    save_file(ref, os.path.join(cdir, "ref.safetensors"),
              metadata={"B": str(B), "S": str(S), "case": case, "arch": arch, "hf_fp32_maxrel": f"{noise:.3e}",
                        "transformers": transformers.__version__})
    print(f"{case}: {arch}, {sum(p.numel() for p in m.parameters())} parameters, "
          f"transformers fp32 vs float64 max rel {noise:.2e} -> {cdir}")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    cases = sys.argv[2:] or list(CASES)
    for c in cases:
        if c not in CASES:
            sys.exit(f"hf_reference.py: unknown case '{c}' (cases: {', '.join(CASES)})")
    torch.set_num_threads(1)
    for c in cases:
        build(c, out_dir)


if __name__ == "__main__":
    main()
