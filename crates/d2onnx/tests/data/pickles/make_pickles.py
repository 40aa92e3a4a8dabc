"""Regenerate the pickle fixtures for d2onnx's pickle reader tests.

Usage: python make_pickles.py   (needs numpy; writes next to this script)
Never load evil_os_system.pkl: it would run os.system in Python.
"""
import collections, json, os, pickle, sys, types
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def model():
    return {
        "a.weight": np.arange(6, dtype=np.float32).reshape(2, 3) * 0.5,
        "b.bias": np.array([1, -2, 3], dtype=np.int64),
        # non-contiguous view -> numpy pickles a C-order copy
        "c.f64": np.arange(4, dtype=np.float64).reshape(2, 2).T,
        # Fortran order -> pickled with fortran_order flag and F-order bytes
        "d.fortran": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
        "e.half": np.array([1.0, -2.0, 0.5], dtype=np.float16),
        "f.scalar": np.array(7, dtype=np.int64),  # 0-d array
        # > 256 bytes: forces long-form opcodes (BINBYTES/BINUNICODE etc.)
        "g.big": np.random.RandomState(0).randn(70, 70).astype(np.float32),
    }


def zoo(m):
    return {"model": m, "__author__": "test", "matching_heuristics": True}


def dump(name, obj, protocol):
    with open(os.path.join(HERE, name), "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


for p in (2, 3, 4, 5):
    dump(f"zoo_p{p}.pkl", zoo(model()), p)
# numpy>=2 writes "numpy._core.multiarray"; real zoo files (numpy 1.x) say "numpy.core.multiarray".
# GLOBAL args are newline-terminated text (no length prefix), so a byte replace is safe in protocol 2.
with open(os.path.join(HERE, "zoo_p2.pkl"), "rb") as f:
    raw = f.read().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
with open(os.path.join(HERE, "zoo_np1_p2.pkl"), "wb") as f:
    f.write(raw)
dump("zoo_ordereddict_p4.pkl", zoo(collections.OrderedDict(model().items())), 4)

# expected.json: dtype, shape, C-order values (g.big: first 5 values + float64 "sum")
expected = {}
for k, v in model().items():
    flat = np.ascontiguousarray(v).reshape(-1)
    e = {"dtype": v.dtype.name, "shape": list(v.shape)}
    if k == "g.big":
        e["values"] = [float(x) for x in flat[:5]]  # first 5 only
        e["sum"] = float(flat.astype(np.float64).sum())
    else:
        e["values"] = flat.tolist()
    expected[k] = e
with open(os.path.join(HERE, "expected.json"), "w") as f:
    f.write("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in expected.items()) + "\n}\n")


# torch_like.pkl: references torch._utils._rebuild_tensor_v2 without torch installed.
def _rebuild_tensor_v2(*a):
    pass


_rebuild_tensor_v2.__module__ = "torch._utils"
fake = types.ModuleType("torch._utils")
fake._rebuild_tensor_v2 = _rebuild_tensor_v2
sys.modules["torch._utils"] = fake
sys.modules.setdefault("torch", types.ModuleType("torch"))  # parent package must import too


class FakeTensor:
    def __reduce__(self):
        return (_rebuild_tensor_v2, (1, 2))


dump("torch_like.pkl", {"model": {"x": FakeTensor()}, "__author__": "t"}, 2)


# evil_os_system.pkl: payload would call os.system("echo pwned") when unpickled.
class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


dump("evil_os_system.pkl", {"model": {"x": Evil()}}, 2)

# Detectron1-style checkpoint
dump("blobs_p2.pkl", {"blobs": {"conv1_w": np.zeros((2, 2), np.float32)}}, 2)
dump("not_a_dict.pkl", [1, 2, 3], 4)
