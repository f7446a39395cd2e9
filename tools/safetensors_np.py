"""Read a .safetensors file into numpy arrays (no `safetensors` package needed), shared by the
user tools (tools/report.py) and the test references (tools/reference/*.py).

load(path, dtypes=("F32", "F64"), strict=False) -> {name: ndarray}: tensors of the listed
dtypes; others are skipped, or with strict=True an error naming the tensor."""
import json

import numpy as np

_NP = {"F32": "<f4", "F64": "<f8"}


def load(path, dtypes=("F32", "F64"), strict=False):
    out = {}
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        hdr = json.loads(f.read(n))
        base = 8 + n
        for k, v in hdr.items():
            if k == "__metadata__":
                continue
            if v["dtype"] not in dtypes:
                if strict:
                    raise ValueError(f"{path}: tensor '{k}' has dtype {v['dtype']}, expected one of {', '.join(dtypes)}")
                continue
            b, e = v["data_offsets"]
            f.seek(base + b)
            out[k] = np.frombuffer(f.read(e - b), _NP[v["dtype"]]).reshape(v["shape"])
    return out
