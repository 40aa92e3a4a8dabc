#!/usr/bin/env python3
"""Generate the torch.save test files in crates/d2onnx/tests/data/torch/.

The Rust reader (crates/d2onnx/src/torch.rs) is tested against files written
by real torch, with the values torch itself reads back stored beside them in
expected.json. CI has no torch, so the outputs are committed; rerun this only
to change the cases:

    /work/torchenv/bin/python scripts/gen-torch-test-data.py

(written with torch 2.15; any torch >= 2.1 writes the same layout, except for
record names such as `.format_version` that the reader ignores). Output is
deterministic up to `.data/serialization_id` and legacy storage keys (heap
addresses), so regenerating changes some bytes but not expected.json.

Cases (see crates/d2onnx/tests/torch_reader.rs):
- d2_train.pth        {"model", "optimizer", "scheduler", "iteration"} through a
                      file object, as Detectron2's checkpointer writes it
                      (archive name `archive`; BatchNorm gives `_metadata` and
                      num_batches_tracked; the scheduler state holds a Counter)
- model_only_storages.pth  d2_train.pth without the optimizer's storage records:
                      readable, because only tensors under "model" are read
- by_path.pth         saved by path: archive name `by_path`
- legacy.pth          _use_new_zipfile_serialization=False
- half.pth            float16 / bfloat16 weights (special values, a strided fp16 view)
- dtypes.pth          float64, int64, int32, int16, int8, uint8, bool
- module_prefix.pth   a DataParallel state dict: every key starts with `module.`
- module_partial.pth  only some keys have `module.`: nothing is stripped
- bare_sd.pth         torch.save(model.state_dict()): no "model" key
- views.pth           tensors sharing one storage, with offsets and strides
- keep_vars.pth       state_dict(keep_vars=True): Parameters (_rebuild_parameter)
- hostile: evil_os_system.pth, evil_eval.pth, evil_rcnn.pth (GLOBALs that must
  be refused), whole_module.pth (torch.save(model)), compressed.pth (deflated
  data.pkl: the zip-bomb stand-in), missing_storage.pth, short_storage.pth,
  broadcast_bomb.pth (a stride-0 view claiming 2^40 elements), big_endian.pth,
  no_model.pth (a Lightning-style {"state_dict": …}), bare_tensor.pth
"""

import collections
import io
import json
import os
import pickletools
import zipfile

import torch
from torch import nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "d2onnx", "tests", "data", "torch")
EXPECTED = {}


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def expect(tensors):
    """What the Rust reader must return: names in order, shapes, the dtype
    after widening, and the values as bit patterns (exact comparison)."""
    out = []
    for name, t in tensors:
        t = t.detach()
        e = {"name": name, "shape": list(t.shape)}
        if t.dtype in (torch.float32, torch.float16, torch.bfloat16):
            e["dtype"] = "float32"
            e["bits"] = [v & 0xFFFFFFFF for v in t.float().contiguous().view(torch.int32).flatten().tolist()]
        elif t.dtype == torch.float64:
            e["dtype"] = "float64"
            e["bits"] = [v & 0xFFFFFFFFFFFFFFFF for v in t.contiguous().view(torch.int64).flatten().tolist()]
        elif t.dtype == torch.int64:
            e["dtype"] = "int64"
            e["ints"] = t.flatten().tolist()
        elif t.dtype in (torch.int32, torch.int16, torch.int8):
            e["dtype"] = "int32"
            e["ints"] = t.flatten().tolist()
        elif t.dtype == torch.uint8:
            e["dtype"] = "uint8"
            e["ints"] = t.flatten().tolist()
        elif t.dtype == torch.bool:
            e["dtype"] = "bool"
            e["ints"] = [int(v) for v in t.flatten().tolist()]
        else:
            raise ValueError(t.dtype)
        out.append(e)
    return out


def save(name, obj, tensors, fmt="torch-zip", by_path=False, **kw):
    path = os.path.join(OUT, name)
    if by_path:
        torch.save(obj, path, **kw)
    else:
        # Detectron2/fvcore pass a file object: archive name `archive`.
        with open(path, "wb") as f:
            torch.save(obj, f, **kw)
    # torch reads back what the Rust reader must read.
    back = torch.load(path, weights_only=True)
    back = back["model"] if "model" in back else back
    for (n, t), (bn, bt) in zip(tensors, back.items()):
        assert n.removeprefix("module.") == bn.removeprefix("module."), (n, bn)
        assert torch.equal(t.detach(), bt.detach()) or t.isnan().any(), n
    EXPECTED[name] = {"format": fmt, "tensors": expect(tensors)}
    return path


def records(path):
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def rewrite(name, recs, compress=()):
    """Re-pack records with Python's zipfile (not ZIP64, unaligned): the
    reader must not depend on torch's writer quirks."""
    with zipfile.ZipFile(os.path.join(OUT, name), "w") as z:
        for n, data in recs:
            method = zipfile.ZIP_DEFLATED if n in compress else zipfile.ZIP_STORED
            z.writestr(zipfile.ZipInfo(n), data, compress_type=method)


def crafted(name, pkl):
    rewrite(name, [("archive/data.pkl", pkl), ("archive/version", b"3\n")])


def pickle_globals(path):
    with zipfile.ZipFile(path) as z:
        pkl = z.read([n for n in z.namelist() if n.endswith("/data.pkl")][0])
    return {arg for op, arg, _ in pickletools.genops(pkl) if op.name == "GLOBAL"}


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    torch.manual_seed(0)

    model = Tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[5, 8])
    # One training step: BN running stats move, num_batches_tracked = 1, momentum buffers exist.
    model(torch.randn(2, 3, 6, 6)).sum().backward()
    opt.step()
    sched.step()
    sd = model.state_dict()
    assert hasattr(sd, "_metadata") and "bn.num_batches_tracked" in sd
    items = list(sd.items())

    path = save("d2_train.pth", {"model": sd, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "iteration": 9}, items)
    assert records(path)[0][0] == "archive/data.pkl"
    assert "collections Counter" in pickle_globals(path)
    # Storage keys are numbered in pickling order, model first, one storage per tensor.
    recs = records(path)
    keep = [(n, d) for n, d in recs if not (n.startswith("archive/data/") and int(n.rsplit("/", 1)[1]) >= len(items))]
    assert len(keep) < len(recs)
    rewrite("model_only_storages.pth", keep)
    EXPECTED["model_only_storages.pth"] = {"format": "torch-zip", "tensors": expect(items)}

    path = save("by_path.pth", {"model": sd, "iteration": 3}, items, by_path=True)
    assert records(path)[0][0] == "by_path/data.pkl"

    save("legacy.pth", {"model": sd, "optimizer": opt.state_dict(), "iteration": 9}, items, fmt="torch-legacy",
         _use_new_zipfile_serialization=False)

    special = [1.0, -2.0, 0.1, 65504.0, 6e-8, 1e-5, float("inf"), float("-inf"), float("nan"), -0.0, 3.14159]
    h = torch.tensor(special, dtype=torch.float16)
    b = torch.tensor(special + [1e38, -3e-39], dtype=torch.bfloat16)
    hv = torch.randn(3, 4).half().t()
    half = [("h", h), ("b", b), ("hv", hv), ("bn.num_batches_tracked", torch.tensor(3))]
    save("half.pth", {"model": collections.OrderedDict(half)}, half)

    dtypes = [
        ("f64", torch.tensor([1.0 / 3, -2.5e-300, 7.0], dtype=torch.float64)),
        ("i64", torch.tensor([-(2**62), 5], dtype=torch.int64)),
        ("i32", torch.tensor([-(2**31), 2**31 - 1], dtype=torch.int32)),
        ("i16", torch.tensor([-32768, 7], dtype=torch.int16)),
        ("i8", torch.tensor([-128, 127, -1], dtype=torch.int8)),
        ("u8", torch.tensor([0, 255], dtype=torch.uint8)),
        ("flag", torch.tensor([True, False, True])),
    ]
    save("dtypes.pth", {"model": dict(dtypes)}, dtypes)

    dp = nn.DataParallel(model).state_dict()
    assert all(k.startswith("module.") for k in dp)
    save("module_prefix.pth", {"model": dp}, list(dp.items()))
    partial = [("module.a", torch.ones(2)), ("b", torch.zeros(1))]
    save("module_partial.pth", {"model": dict(partial)}, partial)

    save("bare_sd.pth", sd, items)

    big = torch.arange(20, dtype=torch.float32) * 0.5
    w = torch.randn(3, 5)
    base3 = torch.randn(2, 3, 4)
    views = [
        ("w", w),
        ("wt", w.t()),
        ("slice", big[3:7]),
        ("big", big),
        ("strided", big[2::3]),
        ("window", big[1:13].view(3, 4)[:, 1:3]),
        ("perm", base3.permute(2, 0, 1)),
        ("bcast", torch.tensor([2.5]).expand(3, 2)),
        ("scalar", torch.tensor(7.25)),
        ("empty", torch.zeros(0, 4)),
    ]
    assert views[1][1].untyped_storage().data_ptr() == w.untyped_storage().data_ptr()
    save("views.pth", {"model": dict(views)}, views)

    kv = list(model.state_dict(keep_vars=True).items())
    assert isinstance(kv[0][1], nn.Parameter)
    path = save("keep_vars.pth", {"model": dict(kv)}, kv)
    assert "torch._utils _rebuild_parameter" in pickle_globals(path)

    # --- hostile and foreign files -------------------------------------------------
    crafted("evil_os_system.pth", b"\x80\x02cos\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.")
    crafted("evil_eval.pth", b"\x80\x02cbuiltins\neval\nX\x0b\x00\x00\x00print('hi')\x85R.")
    crafted("evil_rcnn.pth", b"\x80\x02cdetectron2.modeling.meta_arch.rcnn\nGeneralizedRCNN\n)\x81}b.")
    with open(os.path.join(OUT, "whole_module.pth"), "wb") as f:
        torch.save(model, f)

    small = [("x", torch.arange(4, dtype=torch.float32)), ("y", torch.ones(2, 2))]
    path = save("small.pth", {"model": dict(small)}, small)
    recs = records(path)
    rewrite("compressed.pth", recs, compress={"archive/data.pkl"})
    rewrite("missing_storage.pth", [(n, d) for n, d in recs if n != "archive/data/0"])
    rewrite("short_storage.pth", [(n, d[: len(d) // 2] if n == "archive/data/1" else d) for n, d in recs])
    rewrite("big_endian.pth", [(n, b"big" if n == "archive/byteorder" else d) for n, d in recs])
    with open(os.path.join(OUT, "broadcast_bomb.pth"), "wb") as f:
        torch.save({"model": {"x": torch.zeros(1).expand(1 << 20, 1 << 20)}}, f)
    with open(os.path.join(OUT, "no_model.pth"), "wb") as f:
        torch.save({"state_dict": dict(small), "epoch": 1}, f)
    with open(os.path.join(OUT, "bare_tensor.pth"), "wb") as f:
        torch.save(torch.ones(3), f)

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(EXPECTED, f, indent=1, sort_keys=True)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, to {os.path.normpath(OUT)}")
    assert total < 200_000


if __name__ == "__main__":
    main()
