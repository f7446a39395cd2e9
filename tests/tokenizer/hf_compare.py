#!/usr/bin/env python3
"""Checks vpd's byte-level BPE against Hugging Face `tokenizers` (test-only dependency).

  hf_compare.py train  CORPUS VOCAB OUT.json [--neox]
      train a byte-level BPE with tokenizers' own BpeTrainer (ByteLevel pre-tokenizer,
      add_prefix_space false, the 256-byte initial alphabet, <|endoftext|> special).
      --neox makes it GPT-NeoX-like: an NFC normalizer, <|padding|>, and added
      (non-special) tokens for runs of 2..24 spaces, as EleutherAI's 20B tokenizer has.
  hf_compare.py added BASE.json OUT.json
      BASE plus added tokens of every flag combination (lstrip/rstrip/normalized/special),
      some with non-ASCII white space or a newline in them.
  hf_compare.py encode TOKENIZER.json TEXT OUT.bin
      encode TEXT with tokenizers and write uint32 ids (the reference ids).
  hf_compare.py same-ids A.bin B.bin WIDTH_A WIDTH_B TEXT
      compare two id files; on a mismatch print the first differing position with the
      surrounding decoded text. Exit 1 on any difference.
  hf_compare.py same-merges VPD.json HF.json
      compare vocab and merges of two tokenizer.json files; report the first difference.
"""
import json
import sys

import numpy as np


def venv_python(work):
    """Python of a venv under WORK with `tokenizers` from PyPI (test-only; never installed
    system-wide). --system-site-packages keeps Debian's numpy visible."""
    import os
    import subprocess
    venv = os.path.join(work, "hf-venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
    if subprocess.run([py, "-c", "import tokenizers"], capture_output=True).returncode:
        subprocess.run([py, "-m", "pip", "install", "-q", "tokenizers"], check=True)
    return py


def load_tokenizers():
    try:
        import tokenizers
    except ImportError:
        sys.exit("tokenizers is not importable here: run hf_compare.py with the venv python "
                 "(check_vs_hf.py setup creates it)")
    return tokenizers


# the split patterns of Llama-3's and Qwen2's tokenizer.json
SPLIT = {"llama3": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                   r"\s*[\r\n]+|\s+(?!\S)|\s+",
         "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                  r"\s*[\r\n]+|\s+(?!\S)|\s+"}


def cmd_train(corpus, vocab, out, neox, split=None):
    """byte-level BPE; --neox: NFC + GPT-NeoX's added tokens; --split llama3|qwen2: the
    pre_tokenizer is Sequence[Split(pattern, Isolated), ByteLevel(use_regex false)] as in
    Llama-3's (ignore_merges true) and Qwen2's (NFC) tokenizer.json"""
    tk = load_tokenizers()
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    if neox or split == "qwen2":
        tok.normalizer = normalizers.NFC()
    if split:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(SPLIT[split]), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    special = ["<|endoftext|>"] + (["<|padding|>"] if neox else [])
    trainer = trainers.BpeTrainer(vocab_size=int(vocab), min_frequency=0, show_progress=False,
                                  special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([corpus], trainer)
    if neox:
        tok.add_tokens([tk.AddedToken(" " * n, normalized=True) for n in range(24, 1, -1)])
    tok.save(out)
    if split == "llama3":  # Llama-3's BPE model has ignore_merges: whole words in the vocab win
        t = json.load(open(out, encoding="utf-8"))
        t["model"]["ignore_merges"] = True
        json.dump(t, open(out, "w", encoding="utf-8"), ensure_ascii=False)
        tok = Tokenizer.from_file(out)
    print(f"tokenizers {tk.__version__}: trained {tok.get_vocab_size()} tokens on {corpus} -> {out}")


def cmd_added(base, out):
    """BASE plus added tokens with every flag combination (lstrip, rstrip, normalized,
    special), some next to or made of non-ASCII white space, one containing a newline."""
    tk = load_tokenizers()
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(base)
    toks = []
    i = 0
    for special in (False, True):
        for normalized in (False, True):
            for lstrip in (False, True):
                for rstrip in (False, True):
                    toks.append((f"<t{i}>", lstrip, rstrip, normalized, special))
                    i += 1
    toks += [("ab", True, True, True, False), ("b<t3>", False, False, False, True), ("\u3000end", True, False, True, False),
             ("x\ny", False, True, False, True), ("\u00a0\u00a0", False, False, True, False)]
    for c, l, r, n, sp in toks:
        t = tk.AddedToken(c, lstrip=l, rstrip=r, normalized=n, special=sp)
        (tok.add_special_tokens if sp else tok.add_tokens)([t])
    tok.save(out)
    print(f"tokenizers: {len(toks)} added tokens -> {out}")


def cmd_encode(tokjson, text, out):
    load_tokenizers()
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tokjson)
    with open(text, encoding="utf-8", newline="") as f:
        s = f.read()
    ids = tok.encode(s, add_special_tokens=False).ids
    np.asarray(ids, dtype=np.uint32).tofile(out)
    print(f"tokenizers: {len(s.encode())} bytes -> {len(ids)} ids with {tokjson}")


def cmd_same_ids(a, b, wa, wb, text):
    x = np.fromfile(a, dtype=np.uint16 if wa == "2" else np.uint32).astype(np.int64)
    y = np.fromfile(b, dtype=np.uint16 if wb == "2" else np.uint32).astype(np.int64)
    n = min(len(x), len(y))
    diff = np.nonzero(x[:n] != y[:n])[0]
    nbytes = len(open(text, "rb").read())
    if len(diff) == 0 and len(x) == len(y):
        print(f"identical: {len(x)} ids over {nbytes} bytes of {text}")
        return 0
    i = int(diff[0]) if len(diff) else n
    print(f"DIFFERENT: {len(x)} vs {len(y)} ids; first difference at id {i}: "
          f"{x[max(0, i - 5):i + 5].tolist()} vs {y[max(0, i - 5):i + 5].tolist()}")
    return 1


def cmd_same_merges(p, q):
    a, b = json.load(open(p)), json.load(open(q))

    def merges(t):
        return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in t["model"]["merges"]]

    va, vb = a["model"]["vocab"], b["model"]["vocab"]
    ma, mb = merges(a), merges(b)
    ok = True
    if va != vb:
        ok = False
        bad = [k for k in set(va) | set(vb) if va.get(k) != vb.get(k)]
        print(f"vocab differs in {len(bad)} entries, e.g. {[(k, va.get(k), vb.get(k)) for k in sorted(bad)[:5]]}")
    if ma != mb:
        ok = False
        i = next((i for i in range(min(len(ma), len(mb))) if ma[i] != mb[i]), min(len(ma), len(mb)))
        print(f"merges differ: {len(ma)} vs {len(mb)}; first difference at rank {i}: "
              f"{ma[i:i + 3]} vs {mb[i:i + 3]}")
    if ok:
        print(f"identical: {len(va)} vocab entries and {len(ma)} merges")
    return 0 if ok else 1


def main():
    a = sys.argv[1:]
    if a[0] == "train":
        cmd_train(a[1], a[2], a[3], "--neox" in a, a[a.index("--split") + 1] if "--split" in a else None)
        return 0
    if a[0] == "added":
        cmd_added(a[1], a[2])
        return 0
    if a[0] == "encode":
        cmd_encode(a[1], a[2], a[3])
        return 0
    if a[0] == "same-ids":
        return cmd_same_ids(*a[1:6])
    if a[0] == "same-merges":
        return cmd_same_merges(a[1], a[2])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
