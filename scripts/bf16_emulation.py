#!/usr/bin/env python3
"""An estimate of bf16 inference's accuracy cost on a CPU without native bf16.

    bf16_emulation.py ARTIFACT_DIR OUT_DIR

Writes OUT_DIR/model.onnx + manifest.json: the artifact's graph with every multiply
operand rounded to bfloat16 (round to nearest even) as AVX512_BF16 and AMX take them,
products still accumulated in float32: the weights of Conv, ConvTranspose, MatMul and
Gemm rounded in place, their activation inputs and ROIAlign's feature maps rounded by a
Cast to bfloat16 and back. `zoo eval --artifact OUT_DIR` then scores it. It is an
emulation, not OpenVINO's bf16: OpenVINO also keeps some activations between layers in
bf16 (residual sums, the FPN's upsampled adds) and may leave some layers in f32, so
the real cost can differ; measure it with `--runtime openvino --precision bf16` on a
CPU that has AVX512_BF16 or AMX. Needs onnx and numpy.
"""
import hashlib
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MULTIPLY = {"Conv": (0, 1), "ConvTranspose": (0, 1), "MatMul": (0, 1), "Gemm": (0, 1), "RoiAlign": (0,)}


def bf16_round(a):
    """float32 array -> the nearest bfloat16 values (ties to even), still float32."""
    u = a.astype(np.float32).view(np.uint32)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return rounded.astype(np.uint32).view(np.float32)


def main():
    src, out = sys.argv[1], sys.argv[2]
    m = onnx.load(os.path.join(src, "model.onnx"))
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    nodes, rounded_weights, cast_inputs = [], set(), {}
    for n in g.node:
        for i in MULTIPLY.get(n.op_type, ()):
            if i >= len(n.input) or not n.input[i]:
                continue
            name = n.input[i]
            if name in inits:
                if name not in rounded_weights:
                    t = inits[name]
                    if t.data_type == TensorProto.FLOAT:
                        t.CopyFrom(numpy_helper.from_array(bf16_round(numpy_helper.to_array(t)), name))
                    rounded_weights.add(name)
                continue
            if name not in cast_inputs:
                b, f = name + ".bf16", name + ".bf16_f32"
                nodes.append(helper.make_node("Cast", [name], [b], to=TensorProto.BFLOAT16, name=b))
                nodes.append(helper.make_node("Cast", [b], [f], to=TensorProto.FLOAT, name=f))
                cast_inputs[name] = f
            n.input[i] = cast_inputs[name]
        nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "model.onnx")
    onnx.save(m, path)
    data = open(path, "rb").read()
    manifest = json.load(open(os.path.join(src, "manifest.json")))
    manifest["artifact"]["sha256"] = hashlib.sha256(data).hexdigest()
    manifest["artifact"]["size"] = len(data)
    json.dump(manifest, open(os.path.join(out, "manifest.json"), "w"), indent=1)
    print(f"bf16 emulation: {len(rounded_weights)} weight tensors rounded, {len(cast_inputs)} activation inputs cast; wrote {path}")


if __name__ == "__main__":
    main()
