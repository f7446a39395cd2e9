#!/usr/bin/python3
"""Rewrite accesses to the old flat fields of `struct vpd_decomp` into its named groups
(issue 12 part 4: d->B -> d->batch.B, d->dp_comm -> d->grid.dp_comm, d->g_lower ->
d->act.g_lower, d->adam_comp -> d->opt.adam_comp, ...).

Usage (from the repository root; rewrites files in place, prints what it changed):

    /usr/bin/python3 tools/dev/regroup_decomp.py            # rewrite src/ include/ tests/ tools/*.c
    /usr/bin/python3 tools/dev/regroup_decomp.py --check    # list what would change, exit 1 if anything
    /usr/bin/python3 tools/dev/regroup_decomp.py FILE...    # only these files

Idempotent: a rewritten access (d->batch.B) is not matched again, so running it twice
changes nothing; run it after merging a branch that still uses the old names.

Which expressions are vpd_decomp pointers: in this code base every vpd_decomp * is named
`d` — a local or parameter `d` (rewritten only in files that declare `vpd_decomp *d` or
`const vpd_decomp *d`; the files where `d` is a vpd_toy_data *, vpd_draw * or vpd_config *
declare no vpd_decomp *d) or a struct member `d` reached as `X->d->` / `X.d->` (trainer
t->d, job j->d / job.d, harvest h->d, parity P->d, runs r->d: every member named `d` is a
vpd_decomp *). Identically named fields of other structs (vpd_batch_geom.B,
vpd_layout.dp_comm, ls->C, ...) have another base expression and are left alone.
"""
import re
import sys
from pathlib import Path

GROUPS = {
    "params": ["n_comp_params", "comp_params", "comp_grads", "tied_buf", "ci"],
    "grid": ["dp_comm", "dp_size", "dp_rank", "cp_comm", "cp_size", "cp_rank"],
    "batch": ["B", "S", "N", "example0", "B_global", "out_numel", "input", "x_batch", "tok_in"],
    "act": ["target_out", "target_probs", "target_rowc", "ci_in", "z", "zp", "g_lower", "g_upper",
            "dg_lower", "dg_upper", "dz", "dci_in", "z_full", "dz_full", "tmp_dx"],
    "pass": ["a", "mask", "dmask", "src", "dsrc", "srcdelta", "dsrcdelta", "route", "out", "dout",
             "q_probs", "work", "work_size", "tmp_layer"],
    "loss": ["ppgd", "im_p_current"],
    "opt": ["adam_comp", "adam_ci"],
}
MOVE = {f: g for g, fs in GROUPS.items() for f in fs}
assert not set(GROUPS) & set(MOVE), "a group name must not be an old field name (idempotency)"

FIELDS = "|".join(sorted(MOVE, key=len, reverse=True))
# member d reached through -> or . : any file
MEMBER = re.compile(r"((?:->|\.)\s*d\s*->\s*)(" + FIELDS + r")\b")
# a plain identifier d (not a member, not part of a longer name)
PLAIN = re.compile(r"((?<![\w.>])d\s*->\s*)(" + FIELDS + r")\b")
DECLARES = re.compile(r"\bvpd_decomp\s*\*\s*(?:const\s+)?d\b")


def rewrite(text):
    sub = lambda m: m.group(1) + MOVE[m.group(2)] + "." + m.group(2)
    text, n1 = MEMBER.subn(sub, text)
    n2 = 0
    if DECLARES.search(text):
        text, n2 = PLAIN.subn(sub, text)
    return text, n1 + n2


def files(root):
    for top in ("src", "include", "tests"):
        for p in sorted((root / top).rglob("*")):
            if p.suffix in (".c", ".h") and p.is_file():
                yield p
    yield from sorted((root / "tools").glob("*.c"))


def main(argv):
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    root = Path.cwd()
    if not args and not (root / "include/vpd/decomp.h").exists():
        sys.exit("regroup_decomp.py: run it from the repository root (include/vpd/decomp.h not found)")
    paths = [Path(a) for a in args] if args else list(files(root))
    total = 0
    for p in paths:
        old = p.read_text(encoding="utf-8")
        new, n = rewrite(old)
        if new != old:
            total += n
            print(f"{p}: {n} access{'es' if n != 1 else ''}")
            if not check:
                p.write_text(new, encoding="utf-8")
    print(f"{'would rewrite' if check else 'rewrote'} {total} accesses")
    return 1 if check and total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
