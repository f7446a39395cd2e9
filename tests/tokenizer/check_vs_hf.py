#!/usr/bin/env python3
"""CTest driver for the tokenizer checks against Hugging Face `tokenizers` (see
tests/cmake/tokenizer.cmake). Usage: check_vs_hf.py VPD CORPUS_DIR WORK_DIR CHECK

  setup         pip-install tokenizers if missing; write the Unicode stress text and a
                3 MB head of train.txt into WORK_DIR
  train         vpd and tokenizers each train a 4096-token byte-level BPE on the head:
                vocab and merges must be identical
  hf-loads-vpd  tokenizers loads vpd's tokenizer.json: ids identical to vpd's on val.txt
                (~0.8 MB) and on the stress text
  vpd-loads-hf  vpd loads a GPT-NeoX-like tokenizer.json trained by tokenizers (NFC,
                <|endoftext|>, <|padding|>, added space-run tokens): ids identical on
                val.txt and the stress text
  roundtrip     vpd tokenize then vpd tokenize --decode gives back the bytes
Every check exits non-zero on a difference and prints what differed."""
import os
import random
import subprocess
import sys
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_compare as hc  # noqa: E402

STRESS = ["Hello", " world", "  ", "   ", "\t", "\n", "\r\n", "\n\n\n", " \n ", "'s", "'S", "'ll", "'re", "'ve", "'d",
          "'m", "'t", "'x", "don't", "I'M", "123", " 4567", "٣٤٥", "½", "Ⅻ", "³", "—", "…", "“quoted”", "naïve", "Ærø",
          "Straße", "日本語", "中文字符", "한국어", "😀", "👍🏽", "🇫🇷", "\u00a0", "\u2003", "\u3000", "\u2028", "\u0085",
          "x\u200bz", "Ωμέγα", "Привет", "مرحبا", "עברית", "<|endoftext|>", "<|padding|>", "<|endoftext", "|>",
          "$$$", "!!!", "?!", "((", "))", "->", "=>", "#", "@user", "a.b.c", "    ", " ", "x", "\x0b", "\x0c", "\x1c",
          "\x1f", "\x7f", "\u1680", "\u205f", "\U0001F600\U0001F601", "ǅ", "ʰ", "ⅷ", "𝟘𝟙", "ﬁ", "      x", " \t y"]


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    r = subprocess.run(cmd)
    if r.returncode:
        sys.exit(f"command failed ({r.returncode}): {' '.join(cmd)}")


def main():
    vpd, corpus, work, check = sys.argv[1:5]
    os.makedirs(work, exist_ok=True)
    j = lambda *p: os.path.join(work, *p)  # noqa: E731
    val = os.path.join(corpus, "val.txt")
    head, stress = j("train_head.txt"), j("stress.txt")
    py = sys.executable
    here = os.path.dirname(os.path.abspath(__file__))
    cmp = [py, os.path.join(here, "hf_compare.py")]
    if check == "setup":
        hc.load_tokenizers()
        with open(os.path.join(corpus, "train.txt"), "rb") as f:
            data = f.read(3 << 20)
        data = data[:data.rfind(b"\n") + 1]
        open(head, "wb").write(data)
        rng = random.Random(1)
        text = "".join(rng.choice(STRESS) for _ in range(60000))
        with open(stress, "w", encoding="utf-8", newline="") as f:
            f.write(unicodedata.normalize("NFC", text))
        return 0
    if check == "train":
        run([vpd, "tokenize", "--train", "--vocab", "4096", "--special", "<|endoftext|>", head, "--out", j("vpd4k.json")])
        run(cmp + ["train", head, "4096", j("hf4k.json")])
        return hc.cmd_same_merges(j("vpd4k.json"), j("hf4k.json"))
    if check in ("hf-loads-vpd", "vpd-loads-hf"):
        if check == "hf-loads-vpd":
            tok = j("vpd_val.json")
            run([vpd, "tokenize", "--train", "--vocab", "4096", "--special", "<|endoftext|>", head, "--out", tok])
        else:
            tok = j("neox_like.json")
            run(cmp + ["train", head, "4096", tok, "--neox"])
        bad = 0
        for name, text in (("val", val), ("stress", stress)):
            a, b = j(f"{check}_{name}_vpd.bin"), j(f"{check}_{name}_hf.bin")
            run([vpd, "tokenize", "--tokenizer", tok, text, "--out", a, "--dtype", "uint32"])
            run(cmp + ["encode", tok, text, b])
            bad |= hc.cmd_same_ids(a, b, "4", "4", text)
        return bad
    if check == "roundtrip":
        tok = j("rt.json")
        run([vpd, "tokenize", "--train", "--vocab", "1000", head, "--out", tok])
        bad = 0
        for text in (val, stress):
            run([vpd, "tokenize", "--tokenizer", tok, text, "--out", j("rt.bin")])
            out = subprocess.run([vpd, "tokenize", "--tokenizer", tok, "--decode", j("rt.bin")], capture_output=True,
                                 check=True).stdout
            same = out == open(text, "rb").read()
            print(f"{text}: decode(encode(x)) {'==' if same else '!='} x ({len(out)} bytes)")
            bad |= not same
        return int(bad)
    sys.exit(f"unknown check {check}")


if __name__ == "__main__":
    sys.exit(main())
