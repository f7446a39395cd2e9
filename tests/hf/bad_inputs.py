#!/usr/bin/env python3
"""Bad Hugging Face model directories give one-line errors naming what is wrong (issue 18).
Usage: bad_inputs.py VPD HF_WORK   (HF_WORK from tools/reference/hf_reference.py: llama, qwen2)
Each case copies a reference model to HF_WORK/bad/<case>, breaks one thing, runs
`vpd forward` (or `vpd decompose` for module patterns) and requires a non-zero exit and an
error line matching the expected text."""
import json
import os
import re
import shutil
import subprocess
import sys

vpd, work = sys.argv[1], sys.argv[2]
bad = os.path.join(work, "bad")
fails = 0


def copy(case, name):
    d = os.path.join(bad, name)
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(os.path.join(work, case, "model"), d)
    return d


def edit_config(d, **kv):
    p = os.path.join(d, "config.json")
    c = json.load(open(p))
    for k, v in kv.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    json.dump(c, open(p, "w"))


def expect(name, cmd, pattern):
    global fails
    r = subprocess.run(cmd, capture_output=True, text=True)
    err = [ln for ln in (r.stdout + r.stderr).splitlines() if "error" in ln.lower()]
    ok = r.returncode != 0 and any(re.search(pattern, ln) for ln in err)
    print(f"{'ok  ' if ok else 'FAIL'} {name}: rc {r.returncode}: {err[0] if err else (r.stdout + r.stderr)[-300:]}")
    fails += not ok


def forward(d):
    return [vpd, "forward", d, "--tokens", os.path.join(work, "llama", "tokens.bin"), "--dtype", "uint32", "--n-ctx",
            "12", "--out", os.path.join(bad, "out.h5")]


d = copy("llama", "missing_shard")
os.remove(os.path.join(d, "model-00003-of-00006.safetensors"))
expect("missing shard", forward(d), r"shard 'model-00003-of-00006.safetensors' is missing")

d = copy("qwen2", "model_type")
edit_config(d, model_type="mistral")
expect("unsupported model_type", forward(d), r"'model_type' = \"mistral\" is not supported")

d = copy("qwen2", "sliding")
edit_config(d, use_sliding_window=True)
expect("sliding window", forward(d), r"'use_sliding_window' = true is not supported")

d = copy("qwen2", "moe")
edit_config(d, num_experts=8)
expect("mixture of experts", forward(d), r"'num_experts' is set: mixture-of-experts models are not supported")

d = copy("llama", "yarn")
edit_config(d, rope_scaling={"rope_type": "yarn", "factor": 4.0})
expect("rope scaling type", forward(d), r"'rope_scaling' type \"yarn\" is not supported")

d = copy("llama", "activation")
edit_config(d, hidden_act="gelu")
expect("activation", forward(d), r"'hidden_act' = gelu is not supported")

d = copy("qwen2", "shape")
edit_config(d, intermediate_size=60)
expect("shape disagrees with config.json", forward(d), r"model\.safetensors.*mlp\.gate_proj\.weight.*shape")

d = copy("qwen2", "missing_tensor")
edit_config(d, num_hidden_layers=3)
expect("tensor missing for config.json", forward(d), r"model\.layers\.2\.")

sys.exit(1 if fails else 0)
