#!/usr/bin/python3
"""`vpd compare` on bad inputs: a non-zero exit and ONE error line (starting 'vpd compare')
that names what to change. usage: bad_inputs.py VPD_CLI RUN_DIR EXISTING_OUT_DIR TOKENS"""
import subprocess
import sys

cli, run, existing, tokens = sys.argv[1:5]
cases = [
    ([], "nothing to compare"),
    (["--vpd", "/nonexistent/run"], "/nonexistent/run"),
    (["--vpd", run, "--mlps", "5"], "--mlps '5'"),
    (["--vpd", run, "--mlps", "0,0"], "given twice"),
    (["--vpd", run, "--taus", "2"], "outside [0, 1)"),
    (["--vpd", run, "--taus", "a,b"], "--taus 'a,b'"),
    (["--tc", run], "transcoder"),
    (["--vpd", run, "--out", existing], "--force"),
    (["--vpd", run, "--tokens", "/nonexistent/tokens.bin"], "/nonexistent/tokens.bin"),
    (["--vpd", run, "--n-tokens", "0"], "--n-tokens"),
    (["--vpd", run, "--seq", "7"], "max_seq_len"),
    (["--vpd", run, "--tokens", tokens, "--n-tokens", "64"], "fewer than one batch"),
    (["--vpd", run, "--bogus"], "unexpected argument '--bogus'"),
]
bad = 0
for args, frag in cases:
    p = subprocess.run([cli, "compare", *args, "--quiet"], capture_output=True, text=True, timeout=120)
    lines = [l for l in p.stderr.splitlines() if l.startswith("vpd compare")]
    ok = p.returncode != 0 and len(lines) == 1 and frag in lines[0]
    print(f"{'ok ' if ok else 'BAD'} rc={p.returncode} {' '.join(args)[:60]!r}: {lines}")
    if not ok:
        print(p.stderr)
        bad += 1
sys.exit(1 if bad else 0)
