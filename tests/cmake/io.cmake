# File-format tests (src/io). Python writes fixtures the C tests read (safetensors written
# by an independent writer, a .pth converted by tools/pth_to_model_dir.py), and reads back
# what the C tests wrote (safetensors via torch load_state_dict(strict=True), HDF5 via h5py).
# Value convention shared with tests/unit/test_{safetensors,model_io}.c:
#   v(i, seed) = ((37*i + 11*seed) % 64) / 16 - 2   (exact in F16 and BF16)

file(WRITE ${VPD_FIXTURES}/io_make_fixtures.py [==[
import os, subprocess, sys
import torch
tools = sys.argv[1]
sys.path.insert(0, tools)
from pth_to_model_dir import write_safetensors

def v(n, seed):
    return torch.tensor([((37 * i + 11 * seed) % 64) / 16 - 2 for i in range(n)], dtype=torch.float64)

t = {
    "a.f32": v(6, 1).reshape(2, 3).float(),
    "b.f64": v(3, 2),
    "c.f16": v(4, 3).reshape(2, 2).half(),
    "d.bf16": v(4, 4).bfloat16(),
    "e.i64": torch.tensor([1, 2], dtype=torch.int64),
    "bad.nan": torch.tensor([1.0, float("nan"), float("inf")], dtype=torch.float32),
}
write_safetensors("py_written.safetensors", t, {"format": "pt", "source": "python"}, keep_dtype=True)

# a TMS state_dict as torch.compile + a trainer would save it: nested and prefixed
F, H = 5, 2
w1 = v(H * F, 7).reshape(H, F).float()
sd = {"_orig_mod.linear1.weight": w1, "_orig_mod.linear2.weight": w1.t().contiguous(),
      "_orig_mod.linear2.bias": v(F, 8).float()}
torch.save({"model": sd, "step": 10}, "tms_state.pth")
subprocess.run([sys.executable, os.path.join(tools, "pth_to_model_dir.py"), "tms_state.pth", "tms_from_pth",
                "--model-type", "tms"], check=True)
# a tiny Llama with bf16 weights and only wte.weight stored (the tie supplies lm_head)
V, D, Fi, L, nh, nkv = 11, 8, 12, 1, 2, 1
kv = nkv * D // nh
shapes = {"wte.weight": (V, D), "h.0.rms_1.weight": (D,), "h.0.attn.q_proj.weight": (D, D),
          "h.0.attn.k_proj.weight": (kv, D), "h.0.attn.v_proj.weight": (kv, D), "h.0.attn.o_proj.weight": (D, D),
          "h.0.rms_2.weight": (D,), "h.0.mlp.c_fc.weight": (Fi, D), "h.0.mlp.down_proj.weight": (D, Fi),
          "ln_f.weight": (D,)}
sd = {}
for s, (k, shp) in enumerate(shapes.items()):
    n = 1
    for x in shp: n *= x
    sd["transformer." + k] = v(n, 20 + s).reshape(shp).bfloat16()
torch.save(sd, "llama_state.pth")
subprocess.run([sys.executable, os.path.join(tools, "pth_to_model_dir.py"), "llama_state.pth", "llama_from_pth",
                "--model-type", "llama_simple_mlp", "--strip-prefix", "transformer.", "--set", "n_head=2",
                "--set", "n_key_value_heads=1", "--set", "n_ctx=16"], check=True)
print("io fixtures written")
]==])

file(WRITE ${VPD_FIXTURES}/io_check_outputs.py [==[
import json, struct, sys
import torch, h5py
fail = 0
def check(c, msg):
    global fail
    if not c:
        fail += 1
        print("FAIL", msg)

def read_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        check(n % 8 == 0, f"{path}: header length {n} not a multiple of 8")
        h = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for k, e in h.items():
            if k == "__metadata__":
                continue
            check(e["dtype"] == "F32", f"{k}: dtype {e['dtype']}")
            f.seek(base + e["data_offsets"][0])
            b = f.read(e["data_offsets"][1] - e["data_offsets"][0])
            out[k] = torch.frombuffer(bytearray(b), dtype=torch.float32).reshape(e["shape"])
        return h.get("__metadata__", {}), out

# vpd's TMS save: a PyTorch TMS module must accept it with strict=True
meta, sd = read_st("vpd_tms_saved/model.safetensors")
check(meta.get("format") == "pt", f"metadata {meta}")
cfg = json.load(open("vpd_tms_saved/config.json"))
lin1 = torch.nn.Linear(cfg["n_features"], cfg["n_hidden"], bias=False)
lin2 = torch.nn.Linear(cfg["n_hidden"], cfg["n_features"], bias=True)
m = torch.nn.ModuleDict({"linear1": lin1, "linear2": lin2})
m.load_state_dict(sd, strict=True)
check(torch.equal(lin2.weight, lin1.weight.t()), "linear2.weight is not linear1.weight^T")
F = cfg["n_features"]; H = cfg["n_hidden"]
ref = torch.tensor([((37 * i + 11 * 1) % 64) / 16 - 2 for i in range(H * F)]).reshape(H, F)
check(torch.equal(lin1.weight.detach(), ref), "linear1.weight values")

# vpd's HDF5 helpers: attributes are str, datasets float32 / int widths as written
with h5py.File("vpd_h5_roundtrip.h5", "r") as f:
    check(f["/grp/sub/w"].dtype == "float32", f"w dtype {f['/grp/sub/w'].dtype}")
    check(f["/grp/sub/w"].shape == (2, 3), "w shape")
    check(f["/ints/i64"].dtype == "int64" and f["/ints/u32"].dtype == "uint32", "int dtypes")
    a = f["/grp"].attrs["note"]
    check(isinstance(a, str) and a == "hello, h5py", f"string attribute {a!r}")
    check(int(f["/grp/sub/w"].attrs["step"]) == 42, "int attribute")
print("python checks:", "FAILED" if fail else "ok")
sys.exit(1 if fail else 0)
]==])

add_test(NAME io.fixtures COMMAND ${VPD_PYTHON} ${VPD_FIXTURES}/io_make_fixtures.py ${VPD_TOOLS}
         WORKING_DIRECTORY ${VPD_FIXTURES})
set_tests_properties(io.fixtures PROPERTIES FIXTURES_SETUP io_py LABELS "unit;python" TIMEOUT 300
                     ENVIRONMENT "${VPD_TEST_ENV}")
foreach(t unit.test_safetensors unit.test_model_io)
  if(TEST ${t})
    set_tests_properties(${t} PROPERTIES FIXTURES_REQUIRED io_py FIXTURES_SETUP io_c)
  endif()
endforeach()
add_test(NAME io.python_reads_vpd COMMAND ${VPD_PYTHON} ${VPD_FIXTURES}/io_check_outputs.py
         WORKING_DIRECTORY ${VPD_FIXTURES})
set_tests_properties(io.python_reads_vpd PROPERTIES FIXTURES_REQUIRED "io_c;io_py" LABELS "unit;python"
                     TIMEOUT 300 ENVIRONMENT "${VPD_TEST_ENV}")
add_test(NAME io.pth_to_model_dir_help COMMAND ${VPD_PYTHON} ${VPD_TOOLS}/pth_to_model_dir.py --help)
set_tests_properties(io.pth_to_model_dir_help PROPERTIES LABELS "unit;python")

# Tensor tables and checkpoint files on 2 and 4 ranks (dp 1 x cp 2, dp 2 x cp 2): every rank's
# hyperslab lands where the layout says (tests/unit/test_tensor_table.c; 1 rank is unit.*).
if(TARGET test_tensor_table)
  foreach(np 2 4)
    add_test(NAME io.tensor_table_np${np}
             COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${MPIEXEC_PREFLAGS} $<TARGET_FILE:test_tensor_table>
             WORKING_DIRECTORY ${VPD_FIXTURES})
    set_tests_properties(io.tensor_table_np${np} PROPERTIES LABELS "unit;mpi" TIMEOUT 120 PROCESSORS 2
                         ENVIRONMENT "${VPD_TEST_ENV}")
  endforeach()
endif()

# The layering rule of io/ (issue 12): src/io/*.c and the headers they may include name no
# method header (decomp, trainer, ci, components, runfile, optim, analysis, parity, dist): io/
# moves tables of tensors and knows no method. Model directories (config.json + weights) are read in src/models/model_io.c.
set(VPD_IO_ALLOWED "vpd/(core|io|config|data|tokenizer|comm|tensor_table|checkpoint|sha256|signals)\\.h")
add_test(NAME io.layering_no_method_headers COMMAND sh -c
         "cd ${CMAKE_SOURCE_DIR} && bad=$(grep -n '#include \"vpd/' src/io/*.c include/vpd/core.h include/vpd/io.h include/vpd/config.h include/vpd/data.h include/vpd/tokenizer.h include/vpd/comm.h include/vpd/tensor_table.h include/vpd/checkpoint.h include/vpd/sha256.h include/vpd/signals.h | grep -Ev '${VPD_IO_ALLOWED}'); [ -z \"$bad\" ] || { echo \"io/ includes a method header:\"; echo \"$bad\"; exit 1; }")
set_tests_properties(io.layering_no_method_headers PROPERTIES LABELS "unit")
