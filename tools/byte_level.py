"""GPT-2's byte-level BPE alphabet, shared by the user tools that decode or encode tokens
without the `tokenizers` package (tools/report.py, tools/lm_report.py)."""


def bytes_to_unicode():
    """GPT-2's byte -> printable unicode char table used by byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))
