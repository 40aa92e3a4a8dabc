#!/usr/bin/env python3
# Side by side on one machine, one process, interleaved: Detectron2 (PyTorch) `model()` vs our
# converted graph in Python onnxruntime (the libonnxruntime the engine loads). By hand, where
# Detectron2 is installed (not on PyPI, so not in CI); docs/BENCHMARKS.md has the results.
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
    def ours():
        return sess.run(None, {'image': np.ascontiguousarray(resized)})
    d2(); ours()
    td, to = [], []
    for r in range(rounds):
        order = (d2, ours) if r % 2 == 0 else (ours, d2)
        for f in order:
            t = time.perf_counter(); res = f(); dt = time.perf_counter() - t
            (td if f is d2 else to).append(dt)
    inst = d2(); o = ours()
    out[path] = dict(resized=list(resized.shape[:2]), d2_s=td, ours_s=to, d2_median=float(np.median(td)), ours_median=float(np.median(to)),
                     ratio=float(np.median(to) / np.median(td)), d2_dets=len(inst), our_dets=int(len(o[1])))
    print(json.dumps({k: v for k, v in out[path].items()}), flush=True)
