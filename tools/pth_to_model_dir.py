#!/usr/bin/python3
"""Convert a PyTorch state_dict (.pth) into a vpd model directory.

The directory holds config.json (the reference implementation's field names, with
"model_type" = tms | resid_mlp | llama_simple_mlp) and model.safetensors with the
PyTorch parameter names, which `vpd` reads (include/vpd/io.h, vpd_model_load).

The safetensors file is written here with struct + json only (the safetensors package
is not in Debian): 8-byte little-endian header length, JSON header padded with spaces to
a multiple of 8 bytes, then raw little-endian tensor data in header order.

Sizes are inferred from the tensor shapes where possible; --config (a JSON file, either
the model config itself or a training config holding "<x>_model_config") and --set
key=value override them. Llama needs n_head (not recoverable from shapes).

Examples:
  pth_to_model_dir.py tms.pth out/tms_5-2 --model-type tms
  pth_to_model_dir.py model.pth out/lm --model-type llama_simple_mlp --set n_head=4 \\
      --strip-prefix _orig_mod.
"""
import argparse
import json
import os
import re
import struct
import sys

import torch

ST_DTYPES = {
    torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}
# well-known wrappers: torch.compile adds "_orig_mod.", DistributedDataParallel "module."
AUTO_PREFIXES = ("_orig_mod.", "module.")
NESTING_KEYS = ("model", "state_dict", "model_state_dict")


def tensor_bytes(t):
    """Raw little-endian bytes of a tensor (bf16 through an int16 view: numpy has no bf16)."""
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    arr = t.numpy()
    return arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def write_safetensors(path, tensors, metadata=None, keep_dtype=False):
    """Write {name: tensor} (in insertion order) as safetensors. Floats become F32 unless
    keep_dtype. metadata: {str: str} or None."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        if not keep_dtype and t.is_floating_point():
            t = t.to(torch.float32)
        if t.dtype not in ST_DTYPES:
            raise SystemExit(f"error: tensor '{name}' has dtype {t.dtype}, which safetensors cannot store")
        b = tensor_bytes(t)
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)  # data section 8-byte aligned, as the reference writer does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


# ---- model types: inference of sizes and the expected state_dict -------------------------

def count_layers(sd, pattern):
    idx = {int(m.group(1)) for k in sd for m in [re.match(pattern, k)] if m}
    return max(idx) + 1 if idx else None


def infer_config(model_type, sd):
    c = {}
    shape = lambda k: tuple(sd[k].shape) if k in sd else None  # noqa: E731
    if model_type == "tms":
        if shape("linear1.weight"):
            c["n_hidden"], c["n_features"] = shape("linear1.weight")
        c.update(n_hidden_layers=0, tied_weights=True)
    elif model_type == "resid_mlp":
        if shape("W_E"):
            c["n_features"], c["d_embed"] = shape("W_E")
        if shape("layers.0.mlp_in.weight"):
            c["d_mlp"] = shape("layers.0.mlp_in.weight")[0]
        n = count_layers(sd, r"layers\.(\d+)\.")
        if n:
            c["n_layers"] = n
        c.update(act_fn_name="relu", in_bias=False, out_bias=False)
    elif model_type == "llama_simple_mlp":
        w = shape("wte.weight") or shape("lm_head.weight")
        if w:
            c["vocab_size"], c["n_embd"] = w
        if shape("h.0.mlp.c_fc.weight"):
            c["n_intermediate"] = shape("h.0.mlp.c_fc.weight")[0]
        n = count_layers(sd, r"h\.(\d+)\.")
        if n:
            c["n_layer"] = n
        c.update(n_ctx=1024, rms_norm_eps=1e-6, rope_theta=10000)
    return c


def finish_config(model_type, c, sd):
    """Fill derived values and check the keys vpd needs."""
    need = {"tms": ["n_features", "n_hidden"],
            "resid_mlp": ["n_features", "d_embed", "d_mlp", "n_layers"],
            "llama_simple_mlp": ["vocab_size", "n_embd", "n_head", "n_intermediate", "n_layer"]}[model_type]
    if model_type == "llama_simple_mlp":
        if "rotary_base" in c and "rope_theta" not in c:
            c["rope_theta"] = c["rotary_base"]
        if "n_head" in c and "n_key_value_heads" not in c:
            k = sd.get("h.0.attn.k_proj.weight")
            hd = c["n_embd"] // c["n_head"] if "n_embd" in c else 0
            c["n_key_value_heads"] = k.shape[0] // hd if k is not None and hd else c["n_head"]
    missing = [k for k in need if k not in c]
    if missing:
        names = ", ".join(list(sd)[:5])
        raise SystemExit(f"error: {model_type}: cannot determine {', '.join(missing)}; give them with "
                         f"--set key=value or --config (state_dict names start: {names})")
    c["model_type"] = model_type
    return c


def expected_params(model_type, c):
    """(name, shape) of every tensor in the PyTorch state_dict, tied duplicates included."""
    if model_type == "tms":
        F, H = c["n_features"], c["n_hidden"]
        return [("linear1.weight", (H, F)), ("linear2.weight", (F, H)), ("linear2.bias", (F,))]
    if model_type == "resid_mlp":
        F, D, M = c["n_features"], c["d_embed"], c["d_mlp"]
        out = [("W_E", (F, D)), ("W_U", (D, F))]
        for i in range(c["n_layers"]):
            out += [(f"layers.{i}.mlp_in.weight", (M, D)), (f"layers.{i}.mlp_out.weight", (D, M))]
        return out
    V, D, Fi = c["vocab_size"], c["n_embd"], c["n_intermediate"]
    KV = c["n_key_value_heads"] * (D // c["n_head"])
    out = [("wte.weight", (V, D))]
    for i in range(c["n_layer"]):
        p = f"h.{i}."
        out += [(p + "rms_1.weight", (D,)), (p + "attn.q_proj.weight", (D, D)), (p + "attn.k_proj.weight", (KV, D)),
                (p + "attn.v_proj.weight", (KV, D)), (p + "attn.o_proj.weight", (D, D)),
                (p + "rms_2.weight", (D,)), (p + "mlp.c_fc.weight", (Fi, D)), (p + "mlp.down_proj.weight", (D, Fi))]
    out += [("ln_f.weight", (D,)), ("lm_head.weight", (V, D))]
    return out


# tied duplicates: if only one side is stored, the other is derived
TIES = {"tms": [("linear1.weight", "linear2.weight", True)],
        "llama_simple_mlp": [("wte.weight", "lm_head.weight", False)]}


def load_state_dict(path, key, prefixes):
    obj = torch.load(path, map_location="cpu")
    if key:
        for part in key.split("."):
            if not isinstance(obj, dict) or part not in obj:
                raise SystemExit(f"error: {path}: no key '{part}' (of --key {key})")
            obj = obj[part]
    else:
        while isinstance(obj, dict) and not any(torch.is_tensor(v) for v in obj.values()):
            nested = [k for k in NESTING_KEYS if k in obj]
            if not nested:
                raise SystemExit(f"error: {path}: no tensors at the top level and none of the keys "
                                 f"{', '.join(NESTING_KEYS)}; give --key (top-level keys: {', '.join(map(str, obj))})")
            obj = obj[nested[0]]
    if hasattr(obj, "state_dict") and not isinstance(obj, dict):
        obj = obj.state_dict()
    sd = {k: v for k, v in obj.items() if torch.is_tensor(v)}
    for p in list(prefixes) + list(AUTO_PREFIXES):
        if sd and all(k.startswith(p) for k in sd):
            sd = {k[len(p):]: v for k, v in sd.items()}
    return sd


ANCHORS = {"tms": ["linear1.weight", "linear2.weight"], "resid_mlp": ["W_E", "W_U"],
           "llama_simple_mlp": ["wte.weight", "lm_head.weight", "ln_f.weight"]}


def strip_wrapper_prefix(model_type, sd):
    """If the model's anchor tensor only appears under some prefix ("transformer.wte.weight"),
    strip that prefix from every name carrying it (wrappers: HF "transformer.", "model.")."""
    anchors = ANCHORS[model_type]
    if any(a in sd for a in anchors):
        return sd
    for k in sd:
        for a in anchors:
            if k.endswith("." + a):
                p = k[: -len(a)]
                print(f"note: stripping prefix '{p}' (found '{k}')", file=sys.stderr)
                return {(n[len(p):] if n.startswith(p) else n): v for n, v in sd.items()}
    return sd


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pth", help="PyTorch file holding a state_dict (possibly nested under 'model'/'state_dict')")
    ap.add_argument("out_dir", help="model directory to create (config.json + model.safetensors)")
    ap.add_argument("--model-type", required=True, choices=["tms", "resid_mlp", "llama_simple_mlp"])
    ap.add_argument("--config", help="JSON file with the model sizes (model config, or a config holding "
                                     "'<x>_model_config' / 'model_config')")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override one config value (JSON literal or string), repeatable")
    ap.add_argument("--key", help="dotted path to the state_dict inside the .pth (default: auto)")
    ap.add_argument("--strip-prefix", action="append", default=[], metavar="PREFIX",
                    help="strip this prefix when every name has it (e.g. 'transformer.'); "
                         "'_orig_mod.' and 'module.' are stripped automatically")
    ap.add_argument("--keep-dtype", action="store_true", help="keep bf16/f16/f64 instead of converting to F32")
    args = ap.parse_args(argv)

    sd = load_state_dict(args.pth, args.key, args.strip_prefix)
    mt = args.model_type
    sd = strip_wrapper_prefix(mt, sd)
    cfg = infer_config(mt, sd)
    if args.config:
        with open(args.config) as f:
            user = json.load(f)
        nested = [k for k in user if k.endswith("model_config") and isinstance(user[k], dict)]
        cfg.update(user[nested[0]] if nested else user)
        cfg.pop("model_type", None)
    for kv in args.set:
        k, sep, v = kv.partition("=")
        if not sep:
            raise SystemExit(f"error: --set {kv}: expected KEY=VALUE")
        try:
            cfg[k] = json.loads(v)
        except json.JSONDecodeError:
            cfg[k] = v
    cfg = finish_config(mt, cfg, sd)

    # tied duplicates present on one side only
    for a, b, tr in TIES.get(mt, []):
        for x, y in ((a, b), (b, a)):
            if x in sd and y not in sd:
                sd[y] = sd[x].t() if tr else sd[x]

    expected = expected_params(mt, cfg)
    errors = []
    out = {}
    for name, shape in expected:
        if name not in sd:
            close = sorted(sd, key=lambda k: -len(os.path.commonprefix([k, name])))[:4]
            errors.append(f"tensor '{name}' missing (closest names: {', '.join(close)})")
            continue
        if tuple(sd[name].shape) != tuple(shape):
            errors.append(f"tensor '{name}': expected shape {list(shape)}, found {list(sd[name].shape)}")
            continue
        t = sd[name]
        if t.is_floating_point() and not torch.isfinite(t).all():
            bad = (~torch.isfinite(t)).flatten().nonzero()[0].item()
            errors.append(f"tensor '{name}': non-finite value at flat index {bad}")
            continue
        out[name] = t
    if errors:
        raise SystemExit(f"error: {args.pth} does not match {mt} {json.dumps(cfg)}:\n  " + "\n  ".join(errors))
    extra = sorted(set(sd) - set(out))
    if extra:
        print(f"warning: dropping {len(extra)} tensor(s) that are not {mt} parameters: {', '.join(extra[:8])}"
              + (" ..." if len(extra) > 8 else ""), file=sys.stderr)

    os.makedirs(args.out_dir, exist_ok=True)
    write_safetensors(os.path.join(args.out_dir, "model.safetensors"), out,
                      {"format": "pt", "producer": "vpd tools/pth_to_model_dir.py", "model_type": mt},
                      keep_dtype=args.keep_dtype)
    keys = ["model_type"] + [k for k in cfg if k != "model_type"]
    with open(os.path.join(args.out_dir, "config.json"), "w") as f:
        json.dump({k: cfg[k] for k in keys}, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out_dir}/config.json and model.safetensors ({len(out)} tensors)")


if __name__ == "__main__":
    main()
