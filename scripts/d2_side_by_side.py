#!/usr/bin/env python3
# Side by side on one machine, one process, interleaved: Detectron2 (PyTorch) `model()` vs our
# converted graph in Python onnxruntime (the libonnxruntime the engine loads) and, where the
# `openvino` Python package (2026.4.1, the library the engine loads) is installed, in OpenVINO f32
# (and bf16 where the CPU has it). By hand, where Detectron2 is installed (not on PyPI, so not
# in CI); docs/BENCHMARKS.md has the results.
# Usage: d2_side_by_side.py CONFIG(.yaml|.py) CHECKPOINT.pkl ARTIFACT_DIR/model.onnx IMAGE[,IMAGE...] [ROUNDS]
import sys, time, json, numpy as np, torch
from PIL import Image
import onnxruntime as ort
import os
from detectron2.data import transforms as T
import d2model
cfg_file, pkl, onnx_path, images = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(',')
rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 5
model = d2model.load(cfg_file, pkl)
so = ort.SessionOptions(); so.intra_op_num_threads = 2
sess = ort.InferenceSession(onnx_path, so, providers=['CPUExecutionProvider'])
contenders = {'onnxruntime': lambda x: sess.run(None, {'image': x})}
try:
    import openvino as ov
    core = ov.Core()
    precisions = ['f32'] + (['bf16'] if 'BF16' in core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES') else [])
    for p in precisions:
        cm = core.compile_model(onnx_path, 'CPU', {'INFERENCE_PRECISION_HINT': p, 'INFERENCE_NUM_THREADS': 2,
                                                   'PERFORMANCE_HINT': 'LATENCY', 'NUM_STREAMS': 1})
        req = cm.create_infer_request()
        contenders['openvino_' + p] = (lambda r: lambda x: r.infer({'image': x}))(req)
except ImportError:
    pass
rs = json.load(open(os.path.join(os.path.dirname(onnx_path), 'manifest.json')))['resize']
aug = T.ResizeShortestEdge([rs['min_size']]*2, rs['max_size'])
out = {}
for path in images:
    rgb = np.asarray(Image.open(path).convert('RGB'))
    h, w = rgb.shape[:2]
    resized = aug.get_transform(rgb).apply_image(rgb)
    x = d2model.network_input(model, resized)
    def d2():
        with torch.no_grad(): return model([{'image': x, 'height': h, 'width': w}])[0]['instances']
    runs = {'detectron2': d2}
    for name, f in contenders.items():
        runs[name] = (lambda f: lambda: f(np.ascontiguousarray(resized)))(f)
    for f in runs.values():
        f()
    times = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        # Each round in another order, so no contender always runs after the same one.
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            t = time.perf_counter(); runs[name](); times[name].append(time.perf_counter() - t)
    inst = d2(); o = sess.run(None, {'image': np.ascontiguousarray(resized)})
    med = {name: float(np.median(t)) for name, t in times.items()}
    out[path] = dict(resized=list(resized.shape[:2]), seconds=times, median=med,
                     ratio_to_detectron2={n: med[n] / med['detectron2'] for n in med}, d2_dets=len(inst), our_dets=int(len(o[1])))
    print(json.dumps(out[path]), flush=True)
