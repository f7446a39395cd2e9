#!/usr/bin/python3
"""Hand-made transcoder.h5 files (include/vpd/transcoder.h layout) for tests/cmake/compare.cmake.

  make_transcoder.py zero OUT_DIR KIND N_LAYERS D_MODEL N_LATENT TARGET
      relu, W_enc = 0, b_enc = 1 (every latent on, z = 1), every decoder and b_dec = 0: the
      spliced MLP outputs are exactly zero (= zero ablation), L0 = N_LATENT
  make_transcoder.py split OUT_SMALL OUT_LARGE N_LAYERS D_MODEL TARGET
      two PLTs with every latent on: the small one's 4 decoder rows are e0..e3; the large one's
      8 are e0, e0 + 0.2 e5, e1, e1 + 0.2 e6, e2, e3, e8, e9 (normalised) -> 2 of 4 small latents
      have two matches (split 50 %), 6 of 8 large latents match a small one (75 %)
"""
import os
import sys

import h5py
import numpy as np


def write(out, kind, n_layers, d, n_latent, target, dec):
    os.makedirs(out, exist_ok=True)
    with h5py.File(os.path.join(out, "transcoder.h5"), "w") as f:
        a = f.attrs
        a["format"] = "vpd-transcoder"
        a["format_version"] = 1
        a["kind"] = kind
        a["activation"] = "relu"
        a["n_layers"] = n_layers
        a["d_model"] = d
        a["n_latent"] = n_latent
        a["k"] = 0
        a["objective"] = "mse"
        a["steps"] = 0
        a["target"] = target
        a["config"] = "hand-made for tests/cmake/compare.cmake\n"
        for i in range(n_layers):
            g = f.create_group(f"layer_{i}")
            g["W_enc"] = np.zeros((n_latent, d), np.float32)
            g["b_enc"] = np.ones(n_latent, np.float32)
            g["threshold"] = np.zeros(n_latent, np.float32)
            g["b_dec"] = np.zeros(d, np.float32)
            for j in range(n_layers):
                if (kind == "plt" and j == i) or (kind == "clt" and j >= i):
                    g[f"W_dec_{j}"] = dec(i, j).astype(np.float32)


def main():
    cmd = sys.argv[1]
    if cmd == "zero":
        out, kind, L, d, n, target = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
        write(out, kind, L, d, n, target, lambda i, j: np.zeros((n, d)))
    elif cmd == "split":
        small, large, L, d, target = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
        e = np.eye(d)
        write(small, "plt", L, d, 4, target, lambda i, j: e[[0, 1, 2, 3]])
        rows = [e[0], e[0] + 0.2 * e[5], e[1], e[1] + 0.2 * e[6], e[2], e[3], e[8], e[9]]
        big = np.stack([r / np.linalg.norm(r) for r in rows])
        write(large, "plt", L, d, 8, target, lambda i, j: big)
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
