#!/usr/bin/env python3
# Full-size parity: a synthesized full-size checkpoint (zoo synth) converted by us vs Detectron2
# itself on the same resized image, matched like tests/parity.rs. By hand, where Detectron2 is
# installed (not on PyPI, so not in CI); docs/PARITY.md has the results.
# Usage: d2_full_size_parity.py CONFIG(.yaml|.py) CHECKPOINT.pkl ARTIFACT_DIR IMAGE...
import sys, json, time, numpy as np, torch
from PIL import Image
import onnxruntime as ort
from detectron2.data import transforms as T
import d2model
cfg_path, pkl, art = sys.argv[1:4]; images = sys.argv[4:]
model = d2model.load(cfg_path, pkl)
man = json.load(open(art + '/manifest.json')); rs = man['resize']
sess = ort.InferenceSession(art + '/model.onnx', providers=['CPUExecutionProvider'])
def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0])); iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    u = (a[2]-a[0])*(a[3]-a[1]) + (b[2]-b[0])*(b[3]-b[1]) - ix*iy
    return ix*iy/u if u > 0 else 0
for path in images:
    rgb = np.asarray(Image.open(path).convert('RGB'))
    img = T.ResizeShortestEdge([rs['min_size']]*2, rs['max_size']).get_transform(rgb).apply_image(rgb)
    t = time.perf_counter()
    with torch.no_grad():
        inst = model.inference([{'image': d2model.network_input(model, img)}], do_postprocess=False)[0]
    td = time.perf_counter() - t
    db, ds, dc = inst.pred_boxes.tensor.numpy(), inst.scores.numpy(), inst.pred_classes.numpy()
    dm = inst.pred_masks.numpy()[:, 0]
    t = time.perf_counter(); ob, os_, oc, om = sess.run(None, {'image': np.ascontiguousarray(img)})[:4]; to = time.perf_counter() - t
    used = set(); matched = 0; ws = wb = wm = 0.0; miou = 1.0
    for i in range(len(db)):
        best, bj = 0, -1
        for j in range(len(ob)):
            if j in used or oc[j] != dc[i]: continue
            v = iou(db[i], ob[j])
            if v > best: best, bj = v, j
        if bj >= 0 and best >= 0.99 and abs(ds[i] - os_[bj]) <= 1e-3:
            used.add(bj); matched += 1; miou = min(miou, best)
            ws = max(ws, abs(ds[i] - os_[bj])); wb = max(wb, np.abs(db[i] - ob[bj]).max()); wm = max(wm, np.abs(dm[i] - om[bj]).max())
    print(json.dumps(dict(model=man['key'], image=path.split('/')[-1], hw=list(img.shape[:2]), d2=len(db), ours=len(ob), matched=matched,
        extra=len(ob) - matched, min_iou=round(float(miou), 6), max_score_diff=float(ws), max_box_diff_px=float(wb), max_mask_prob_diff=float(wm),
        d2_s=round(td, 2), ours_s=round(to, 2))), flush=True)
