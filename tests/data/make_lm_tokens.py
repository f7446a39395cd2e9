"""Deterministic byte-level token files for the language-model tests.

usage: make_lm_tokens.py OUT_DIR N_TOKENS
Writes OUT_DIR/train.bin (90 %) and OUT_DIR/val.bin (10 %): uint16 little-endian token ids
< 256 drawn from a fixed second-order Markov chain over 64 byte values (numpy's PCG64,
seed 0; a sparse transition table so a small model has something to learn).

The tests used to take the bytes of src/*/*.c, so every source edit changed the test data
and with it the trajectories of the short rank-equivalence runs (which diverge chaotically
where Adam or the hard sigmoids see near-zero values): a refactor could fail a layout test
with no change of behaviour. The data now depends on nothing in the tree."""
import sys

import numpy as np

out, n = sys.argv[1], int(sys.argv[2])
rng = np.random.Generator(np.random.PCG64(0))
alphabet = np.frombuffer(b"etaoinshrdlucmfwypvbgkjqxz ETAOINSHRDLU.,;:()[]{}=+-*/_<>\n0123456789", np.uint8)[:64]
V = len(alphabet)
# each (previous, current) pair continues with one of 4 symbols, with Dirichlet weights
nxt = rng.integers(0, V, size=(V, V, 4))
w = rng.dirichlet(np.full(4, 0.5), size=(V, V))
cum = np.cumsum(w, axis=-1)
u = rng.random(n)
ids = np.empty(n, np.int64)
a, b = 0, 1
for i in range(n):
    k = int(np.searchsorted(cum[a, b], u[i] * cum[a, b, -1]))
    c = int(nxt[a, b, min(k, 3)])
    ids[i] = c
    a, b = b, c
toks = alphabet[ids].astype("<u2")
cut = n * 9 // 10
toks[:cut].tofile(out + "/train.bin")
toks[cut:].tofile(out + "/val.bin")
