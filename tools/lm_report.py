#!/usr/bin/python3
"""Report on a trained LlamaSimpleMLP model directory (config.json + model.safetensors).

Prints the validation curve from DIR/training.jsonl, the model's cross-entropy on
windows of n_ctx+1 tokens of a uint16 token file (computed with the independent
PyTorch forward of tools/reference/reference_models.py, so it also cross-checks `vpd pretrain`'s
own val_loss), the unigram and bigram baselines on the same target tokens, and a few
sampled continuations decoded with the byte-level BPE tokenizer.json (no `tokenizers`
package: the vocab and merges are read from the json).

  lm_report.py models/lm_4L_128 [--val data/corpus/val.bin] [--train data/corpus/train.bin]
      [--tokenizer data/corpus/tokenizer.json] [--windows 64] [--random-windows]
      [--samples 3] [--length 60] [--temperature 0.8] [--seed 0] [--prompt TEXT ...]
      [--json OUT]
"""
import argparse
import json
import math
import os
import re
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from byte_level import bytes_to_unicode  # noqa: E402
import reference_models as RM  # noqa: E402  llama_forward
from reference_vpd import load_safetensors  # noqa: E402
torch.set_default_dtype(torch.float32)  # reference_vpd sets float64; float32 is plenty here
torch.set_num_threads(1)  # the machine is shared with long runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# GPT-2's pre-tokenizer; \p{L} / \p{N} approximated with `re` classes (no `regex` module)
PRETOK = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+|_+""")




class Tokenizer:
    def __init__(self, path):
        t = json.load(open(path, encoding="utf-8"))
        self.vocab = dict(t["model"]["vocab"])
        for a in t.get("added_tokens", []):
            self.vocab[a["content"]] = a["id"]
        self.inv = {i: s for s, i in self.vocab.items()}
        self.special = {a["id"] for a in t.get("added_tokens", [])}
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in t["model"]["merges"]]
        self.rank = {m: i for i, m in enumerate(merges)}
        self.b2u = bytes_to_unicode()
        self.u2b = {u: b for b, u in self.b2u.items()}

    def encode(self, text):
        ids = []
        for w in PRETOK.findall(text):
            parts = [self.b2u[b] for b in w.encode("utf-8")]
            while len(parts) > 1:  # merge the lowest-ranked adjacent pair until none applies
                pairs = [(self.rank.get((a, b), math.inf), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
                r, i = min(pairs)
                if r == math.inf:
                    break
                parts[i:i + 2] = [parts[i] + parts[i + 1]]
            ids += [self.vocab[p] for p in parts]
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            s = self.inv.get(int(i), "")
            out += s.encode() if int(i) in self.special else bytes(self.u2b[c] for c in s)
        return out.decode("utf-8", errors="replace")


def load_model(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    if cfg.get("model_type") != "llama_simple_mlp":
        raise SystemExit(f"error: {d}/config.json: model_type is {cfg.get('model_type')!r}, expected 'llama_simple_mlp'")
    p = {k: v.float() for k, v in load_safetensors(os.path.join(d, "model.safetensors")).items()}
    return cfg, p


def windows(tokens, n, S, rand, seed):
    """n windows of S tokens: evenly strided over the file (deterministic) or random starts"""
    last = len(tokens) - S
    if n <= 0 or n > last // S + 1:  # 0 or too many: every non-overlapping window
        starts = np.arange(0, last + 1, S)
    elif rand:
        starts = np.random.default_rng(seed).integers(0, last + 1, n)
    else:
        starts = np.linspace(0, last, n).astype(np.int64)
    return np.stack([tokens[s:s + S] for s in starts]).astype(np.int64)


@torch.no_grad()
def model_ce(p, cfg, win, batch=16):
    tot, n = 0.0, 0
    for b in range(0, len(win), batch):
        w = torch.from_numpy(win[b:b + batch])
        logits = RM.llama_forward(p, w[:, :-1], cfg)
        tot += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1), reduction="sum").item()
        n += w[:, 1:].numel()
    return tot / n


def baselines(train, win, V, k_bigram):
    """unigram (add-one) and bigram (Dirichlet-smoothed toward that unigram, strength k) CE"""
    train = train.astype(np.int64)
    uni = (np.bincount(train, minlength=V) + 1.0) / (len(train) + V)
    prev, tgt = win[:, :-1].ravel(), win[:, 1:].ravel()
    ce_uni = float(-np.log(uni[tgt]).mean())
    pair = np.bincount(train[:-1] * V + train[1:], minlength=V * V)  # V*V int64: 128 MB at V=4096
    c_ab = pair[prev * V + tgt]
    c_a = np.bincount(train[:-1], minlength=V)[prev]
    ce_bi = float(-np.log((c_ab + k_bigram * uni[tgt]) / (c_a + k_bigram)).mean())
    return ce_uni, ce_bi


@torch.no_grad()
def sample(p, cfg, prompt_ids, T, temp, g):
    ids = list(prompt_ids) or [0]  # empty prompt: start from <|endoftext|>
    for _ in range(T):
        x = torch.tensor([ids[-cfg["n_ctx"]:]])
        logits = RM.llama_forward(p, x, cfg)[0, -1]
        if temp <= 0:
            ids.append(int(logits.argmax()))
        else:
            ids.append(int(torch.multinomial(F.softmax(logits / temp, -1), 1, generator=g)))
    return ids[len(prompt_ids):]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--val", default=os.path.join(ROOT, "data/corpus/val.bin"), help="uint16 token file")
    ap.add_argument("--train", default=os.path.join(ROOT, "data/corpus/train.bin"), help="for the baselines")
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "data/corpus/tokenizer.json"))
    ap.add_argument("--windows", type=int, default=64, help="windows of n_ctx+1 tokens (0 = all non-overlapping)")
    ap.add_argument("--random-windows", action="store_true", help="random starts instead of evenly strided")
    ap.add_argument("--bigram-k", type=float, default=10.0, help="bigram prior strength toward the unigram")
    ap.add_argument("--samples", type=int, default=3, help="samples per prompt list (cycled)")
    ap.add_argument("--length", type=int, default=60, help="tokens generated per sample")
    ap.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prompt", action="append", help="prompt text (repeatable)")
    ap.add_argument("--json", metavar="OUT", help="write the numbers (and samples) as JSON")
    a = ap.parse_args()
    cfg, p = load_model(a.model_dir)
    V, S = cfg["vocab_size"], cfg["n_ctx"]
    rep = {"model_dir": a.model_dir, "config": cfg}

    tj = os.path.join(a.model_dir, "training.jsonl")
    if os.path.exists(tj):
        rows = [json.loads(l) for l in open(tj) if l.strip()]
        curve = [{"step": r["step"], "tokens": r.get("tokens"), "val_loss": r["val_loss"]} for r in rows if "val_loss" in r]
        rep["val_curve"] = curve
        print(f"validation curve ({tj}):\n  {'step':>7} {'tokens':>11} {'val_loss':>9}")
        for r in curve:
            print(f"  {r['step']:7d} {r['tokens'] or 0:11d} {r['val_loss']:9.4f}")

    val = np.fromfile(a.val, dtype="<u2")
    if val.max(initial=0) >= V:
        raise SystemExit(f"error: {a.val}: token id {val.max()} >= vocab_size {V}")
    win = windows(val, a.windows, S + 1, a.random_windows, a.seed)
    ce = model_ce(p, cfg, win)
    ntok = win[:, 1:].size
    print(f"\nval cross-entropy on {len(win)} {'random' if a.random_windows else 'strided'} windows of {S + 1}"
          f" tokens ({ntok} targets) of {a.val}:")
    print(f"  model    {ce:.4f} nats  (ppl {math.exp(ce):.1f})")
    rep.update(val_file=a.val, n_windows=len(win), n_targets=ntok, model_ce=ce)
    if os.path.exists(a.train):
        ce_u, ce_b = baselines(np.fromfile(a.train, dtype="<u2"), win, V, a.bigram_k)
        print(f"  unigram  {ce_u:.4f} nats  (ppl {math.exp(ce_u):.1f}; add-one, from {a.train})")
        print(f"  bigram   {ce_b:.4f} nats  (ppl {math.exp(ce_b):.1f}; smoothed toward unigram, k={a.bigram_k:g})")
        print(f"  uniform  {math.log(V):.4f} nats")
        rep.update(unigram_ce=ce_u, bigram_ce=ce_b, uniform_ce=math.log(V))

    if a.samples > 0:
        tok = Tokenizer(a.tokenizer)
        prompts = a.prompt or ["In the beginning", "The ", "def "]
        g = torch.Generator().manual_seed(a.seed)
        rep["samples"] = []
        print(f"\nsamples (temperature {a.temperature:g}, {a.length} tokens, seed {a.seed}):")
        for i in range(a.samples):
            pr = prompts[i % len(prompts)]
            ids = tok.encode(pr)
            text = tok.decode(sample(p, cfg, ids, a.length, a.temperature, g))
            rep["samples"].append({"prompt": pr, "text": text})
            print(f"--- [{i}] {pr!r}\n{pr}{text}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rep, f, indent=1)
        print(f"\nwrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
