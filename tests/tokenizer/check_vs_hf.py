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
  added-flags   vpd loads a tokenizer with added tokens of every flag (tokenizers adds
                them to the GPT-NeoX-like one): ids identical on a text full of them,
                next to ASCII and Unicode white space (U+00A0, U+3000, U+2028, U+0085, ...)
  multilingual  ids identical on text in many scripts and white spaces (vpd's and the
                NeoX-like tokenizer)
  big           a file over 16 MiB (vpd streams it in chunks) with blank lines, trailing
                white space and CRLF: ids identical to tokenizers' on the whole file
  roundtrip     vpd tokenize then vpd tokenize --decode gives back the bytes
  split         Llama-3 / Qwen2 style tokenizers (pre_tokenizer Sequence of Split with their
                regex, Isolated, and ByteLevel(use_regex false); Llama-3's ignore_merges, Qwen2's
                NFC), trained by tokenizers on the head: ids identical on val.txt, the stress
                text plus split-specific cases (contractions in any case, digit runs, CR/LF
                runs), and the multilingual text
tokenizers is installed from PyPI into a venv under WORK_DIR (never system-wide).
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


MULTI = ["English text, with punctuation!", "Français: déjà vu, où ça?", "Deutsch: Größe, Übermaß", "Ελληνικά κείμενα",
         "Русский текст, ёлка", "Українська мова ї є", "עברית מימין לשמאל", "العربية النص ١٢٣", "فارسی ۱۲۳",
         "हिन्दी पाठ", "বাংলা লেখা", "தமிழ் உரை", "ไทย ภาษา", "ລາວ", "ქართული", "Հայերեն", "日本語のテキスト。",
         "中文文本，标点。", "한국어 텍스트", "Tiếng Việt có dấu", "Türkçe ıİ", "emoji 👩‍👩‍👧 🏳️‍🌈 ✔️",
         "mixed123数字456", "e\u0301 combining", "\u00a0nbsp\u00a0", "ideographic\u3000space", "line\u2028sep",
         "nel\u0085x", "em\u2003space", "thin\u2009space", "ogham\u1680x", "zw\u200bsp", "tab\tx", "\r\n", "\n\n",
         "  \n", "\t\n", " \u3000\n", "<|endoftext|>", "<t3> <t5>\u3000<t7>\u00a0x", "ab\u2028ab", "x\ny", "\u00a0\u00a0"]


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
    here = os.path.dirname(os.path.abspath(__file__))
    py = hc.venv_python(work)
    cmp = [py, os.path.join(here, "hf_compare.py")]
    multi, big = j("multilingual.txt"), j("big.txt")
    if check == "setup":
        rng = random.Random(2)
        with open(multi, "w", encoding="utf-8", newline="") as f:
            f.write(unicodedata.normalize("NFC", "".join(rng.choice(MULTI) + rng.choice([" ", "", "\n", "  \n", "\r\n",
                                                                                      "\u3000"])
                                                          for _ in range(20000))))
        # > 16 MiB: vpd streams 16 MiB chunks; lines with trailing white space, blank lines, CRLF
        # mostly white space before a blank line ("  \n\n", CRLF pairs): the old chunker cut
        # after it and "  \n\n" became one pre-token ("\n\n" merged) at the chunk end
        # every line ends in white space before a blank line, so wherever the 16 MiB cut falls
        lines = [f"line {i} " + rng.choice(MULTI[:25] + ["x", "  indented", "\tcode"])
                 + rng.choice(["  \n\n", " \t\n\n", "\t\r\n\r\n", "  \n  \n\n", " \n\n\n"]) for i in range(2000)]
        text = unicodedata.normalize("NFC", "".join(lines))  # vpd does not normalize (it warns)
        with open(big, "w", encoding="utf-8", newline="") as f:
            n = 0
            while n < (17 << 20):
                f.write(text)
                n += len(text.encode())
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
    if check in ("added-flags", "multilingual", "big"):
        neox = j(f"neox_{check}.json")  # one per check: checks may run in parallel
        run(cmp + ["train", head, "4096", neox, "--neox"])
        toks = []
        if check == "added-flags":
            toks.append(j("added_flags.json"))
            run(cmp + ["added", neox, toks[0]])
            texts = [("multi", multi), ("stress", stress)]
        elif check == "multilingual":
            vt = j("vpd_multi.json")
            run([vpd, "tokenize", "--train", "--vocab", "4096", "--special", "<|endoftext|>", head, "--out", vt])
            toks += [vt, neox]
            texts = [("multi", multi)]
        else:  # vpd's own tokenizer, trained on the big file's head: it has the white-space
            # merges ("\n\n", " \n") that make a bad cut visible, and no added space runs
            vt, bh = j("vpd_big.json"), j("big_head.txt")
            with open(big, "rb") as f:
                data = f.read(2 << 20)
            open(bh, "wb").write(data[:data.rfind(b"\n") + 1])
            run([vpd, "tokenize", "--train", "--vocab", "1024", bh, "--out", vt])
            toks += [vt, neox]
            texts = [("big", big)]
        bad = 0
        for tok in toks:
            for name, text in texts:
                tn = os.path.basename(tok)[:-5]
                a, b = j(f"{check}_{tn}_{name}_vpd.bin"), j(f"{check}_{tn}_{name}_hf.bin")
                run([vpd, "tokenize", "--tokenizer", tok, text, "--out", a, "--dtype", "uint32"])
                run(cmp + ["encode", tok, text, b])
                bad |= hc.cmd_same_ids(a, b, "4", "4", text)
        return bad
    if check == "split":
        rng = random.Random(3)
        extra = STRESS + ["'RE", "'Ve", "'LL", "'D", "'M", "'T", "'sS", "12345678", " 1234", "٣٤٥٦٧", "\r", "\r\r\n",
                          " \r\n ", "\t\n\t", ".\n", "!\r\n\r\n", " ...\n", "'", "''", "'s'", "\u00a0x", "\u3000\n",
                          "x\n\n y", "  \n\n", "a1b22c333d4444"]
        sst = j("split_stress.txt")
        with open(sst, "w", encoding="utf-8", newline="") as f:
            f.write(unicodedata.normalize("NFC", "".join(rng.choice(extra) for _ in range(60000))))
        bad = 0
        for kind in ("llama3", "qwen2"):
            tok = j(f"split_{kind}.json")
            run(cmp + ["train", head, "4096", tok, "--split", kind])
            for name, text in (("val", val), ("stress", sst), ("multi", multi)):
                a, b = j(f"split_{kind}_{name}_vpd.bin"), j(f"split_{kind}_{name}_hf.bin")
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
