#!/usr/bin/env python3
"""Analytic model of communication volume and memory per rank for VPD at the paper's scale
(VPD_METHOD.md §7; docs/distribution.md prints this script's output).

    python3 tools/dev/bench_dist.py [--bw 25e9] [--alpha 2e-6]

Everything here is MODELLED (counted from the method and the trainer's allreduces), not
measured. Conventions: fp32 (4 B) parameters/gradients/activations, fp64 (8 B) for the
importance-minimality sums and metrics (as the trainer sends them); ring allreduce sends
2(p-1)/p * n bytes per rank and takes 2(p-1) latency steps; 1 GB = 1e9 B.
"""
import argparse

D, DMLP, BLOCKS, VOCAB = 768, 3072, 4, 50277
SEQS, SEQ = 64, 512
TOKENS = SEQS * SEQ
# (d_in, d_out, C) of the six matrices of one block
MATS = {"q_proj": (D, D, 512), "k_proj": (D, D, 512), "v_proj": (D, D, 1024), "o_proj": (D, D, 1024),
        "c_fc": (D, DMLP, 3072), "down_proj": (DMLP, D, 3584)}
L = 6 * BLOCKS
CSUM = BLOCKS * sum(c for _, _, c in MATS.values())
N_COMP = BLOCKS * sum((di + do) * c for di, do, c in MATS.values())
N_W = BLOCKS * sum(di * do for di, do, _ in MATS.values())
SUM_DIN = BLOCKS * sum(di for di, _, _ in MATS.values())
SUM_DOUT = BLOCKS * sum(do for _, do, _ in MATS.values())
# global_shared_transformer CI (spd GlobalSharedTransformerCiFn): input projector (bias),
# blocks [4 bias-free d_model^2 attention projections, MLP d->8192->d with biases, weightless
# RMSNorms], output head d_model -> ΣC (bias)
CI_D, CI_BLOCKS, CI_HEADS, CI_MLP = 2048, 8, 16, 8192
CI_IN = SUM_DIN
CI_TRUNK = CI_IN * CI_D + CI_D + CI_BLOCKS * (4 * CI_D * CI_D + CI_D * CI_MLP + CI_MLP + CI_MLP * CI_D + CI_D)
CI_HEAD = CI_D * CSUM + CSUM
N_CI = CI_TRUNK + CI_HEAD
N_LOSSES = 4
# masked passes per step (forward + backward each): StochasticReconSubset 1, PPGD 2 warmup + 1 loss
PASSES = 4


def ring(n, p):
    return 0.0 if p <= 1 else 2 * (p - 1) / p * n


def gb(x):
    return x / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bw", type=float, default=25e9, help="link bandwidth per rank, B/s (25e9: 200 Gb/s InfiniBand)")
    ap.add_argument("--alpha", type=float, default=2e-6, help="latency per message, s")
    a = ap.parse_args()
    bucket = 4 * (1 << 20)  # the trainer's 1 Mi-value buckets
    print(f"model: {BLOCKS} blocks, d {D}, d_mlp {DMLP}, {L} matrices ({N_W:,} weights), ΣC = {CSUM:,}")
    print(f"U, V parameters: {N_COMP:,} ({gb(4 * N_COMP):.3f} GB fp32)")
    print(f"CI function (global_shared_transformer): trunk {CI_TRUNK:,} + output head {CI_HEAD:,} = {N_CI:,} "
          f"({gb(4 * N_CI):.3f} GB fp32)")
    print(f"batch {SEQS} x {SEQ} = {TOKENS:,} tokens per step; bandwidth {a.bw / 1e9:g} GB/s, latency {a.alpha * 1e6:g} us\n")

    dp_payload = {"component gradients": 4 * N_COMP, "CI gradients": 4 * N_CI,
                  "importance-minimality sums": 8 * CSUM, "PPGD shared-source gradients (per_batch_per_position: none)": 0,
                  "metrics": 8 * (N_LOSSES + 2 * L)}
    tot = sum(dp_payload.values())
    print("1. pure data parallelism: allreduce payload per step (every rank)")
    for k, v in dp_payload.items():
        print(f"   {k:<60s} {v:>15,d} B")
    print(f"   {'total':<60s} {tot:>15,d} B = {gb(tot):.3f} GB")
    print(f"   {'ranks':>6s} {'seqs/rank':>9s} {'sent/rank GB':>12s} {'bw time s':>10s} {'latency s':>10s} {'mem/rank GB':>11s}")
    for p in (8, 64, 512):
        sent = ring(tot, p)
        msgs = tot / bucket
        lat = msgs * 2 * (p - 1) * a.alpha
        print(f"   {p:>6d} {SEQS / p:>9.3g} {gb(sent):>12.3f} {sent / a.bw:>10.3f} {lat:>10.3f} {gb(mem(p, 1)):>11.2f}"
              + ("   (impossible: batch 64 < ranks)" if p > SEQS else ""))

    print("\n2. dp x cp (components, U/V Adam moments, CI output head sharded over cp; CI trunk replicated)")
    print("   per step and rank: dp allreduce = (U,V grads + CI head grads)/cp + CI trunk grads + sums;")
    print(f"   cp allreduce = per masked pass the layer outputs [N_loc, Σd_out] forward and inputs")
    print(f"   [N_loc, Σd_in] backward ({PASSES} passes) + dCI-trunk-output [N_loc, {CI_D}] + Δ refresh (reduce-scatter of W-sized partials)")
    print(f"   {'ranks':>6s} {'dp':>4s} {'cp':>4s} {'dp sent GB':>10s} {'cp sent GB':>10s} {'dp time s':>9s} {'cp time s':>9s} {'mem/rank GB':>11s}")
    for p, dp, cp in ((8, 8, 1), (8, 1, 8), (64, 64, 1), (64, 8, 8), (512, 64, 8), (512, 8, 64)):
        n_loc = TOKENS / dp
        dp_n = 4 * (N_COMP + CI_HEAD) / cp + 4 * CI_TRUNK + 8 * CSUM / cp + 8 * (N_LOSSES + 2 * L)
        act = 4 * n_loc * (PASSES * (SUM_DIN + SUM_DOUT) + CI_D)
        dp_sent = ring(dp_n, dp)
        # Δ refresh: a reduce-scatter of the W-sized partial products sends (cp-1)/cp of them
        cp_sent = ring(act, cp) + (4 * N_W * (cp - 1) / cp if cp > 1 else 0)
        print(f"   {p:>6d} {dp:>4d} {cp:>4d} {gb(dp_sent):>10.3f} {gb(cp_sent):>10.3f} {dp_sent / a.bw:>9.3f} "
              f"{cp_sent / a.bw:>9.3f} {gb(mem(dp, cp)):>11.2f}")
    print("\n   memory per rank = 4 copies (param, grad, Adam m, v) of U,V/cp, CI trunk, CI head/cp;")
    print("   15 [N_loc, (ΣC+L)/cp] step buffers (12 per-step/per-pass in vpd_decomp + PPGD sources and their")
    print("   Adam moments); CI transformer activations ≈ N_loc·8·(10·2048 + 2·8192 + 16·512) floats;")
    print("   frozen target 66.9M fp32 replicated. The target's own activations are not counted.")


def mem(dp, cp):
    n_loc = TOKENS / dp
    params = 4 * 4 * (N_COMP / cp + CI_TRUNK + CI_HEAD / cp)
    bufs = 4 * 15 * n_loc * (CSUM + L) / cp
    ci_act = 4 * n_loc * CI_BLOCKS * (10 * CI_D + 2 * CI_MLP + CI_HEADS * SEQ)
    target = 4 * 66.9e6
    return params + bufs + ci_act + target


if __name__ == "__main__":
    main()
