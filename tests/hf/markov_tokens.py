#!/usr/bin/env python3
"""markov_tokens.py OUT_DIR VOCAB N: train.bin / val.bin (uint16 little-endian, 80/20) of N token
ids from a fixed random Markov chain over VOCAB ids (3 successors each), for decomposing the
small random Hugging Face models of hf_reference.py. Standard library only."""
import random
import struct
import sys

out, V, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(0)
succ = [[rng.randrange(V) for _ in range(3)] for _ in range(V)]
x = [0]
while len(x) < n:
    x.append(succ[x[-1]][rng.randrange(3)])
cut = n * 4 // 5
for name, part in (("train.bin", x[:cut]), ("val.bin", x[cut:])):
    with open(f"{out}/{name}", "wb") as f:
        f.write(struct.pack(f"<{len(part)}H", *part))
