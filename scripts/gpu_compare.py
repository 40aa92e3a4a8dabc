#!/usr/bin/env python3
"""CUDA against CPU on the same images: two folders of Supervisely annotations written
by `zoo predict --json DIR` (one per device). Objects are matched greedily by class
and bitmap IoU; passes when >= 98% of the CPU objects have a CUDA match with mask IoU
>= 0.98 and |dscore| <= 1e-3, with <= 2% extra. Prints the worst cases.

    python3 scripts/gpu_compare.py CPU_JSON_DIR CUDA_JSON_DIR
"""
import base64
import io
import json
import os
import sys
import zlib

import numpy as np
from PIL import Image


def objects(path):
    ann = json.load(open(path))
    h, w = ann["size"]["height"], ann["size"]["width"]
    out = []
    for o in ann["objects"]:
        bm = o["bitmap"]
        im = Image.open(io.BytesIO(zlib.decompress(base64.b64decode(bm["data"]))))
        crop = np.array(im.convert("RGBA"))[:, :, 3] > 0 if "transparency" in im.info else np.array(im) > 0
        mask = np.zeros((h, w), bool)
        c, r = bm["origin"]
        mask[r:r + crop.shape[0], c:c + crop.shape[1]] = crop
        score = next(t["value"] for t in o["tags"] if t["name"] == "confidence")
        out.append((o["classTitle"], float(score), mask))
    return out


def main():
    cpu_dir, cuda_dir = sys.argv[1:3]
    total = matched = extra = 0
    worst_iou, worst_score = 1.0, 0.0
    for name in sorted(os.listdir(cpu_dir)):
        a, b = objects(os.path.join(cpu_dir, name)), objects(os.path.join(cuda_dir, name))
        used = [False] * len(b)
        m = 0
        for cls, score, mask in a:
            best, best_j = -1.0, -1
            for j, (cls2, score2, mask2) in enumerate(b):
                if used[j] or cls2 != cls or abs(score2 - score) > 1e-3:
                    continue
                union = np.logical_or(mask, mask2).sum()
                iou = np.logical_and(mask, mask2).sum() / union if union else 1.0
                if iou > best:
                    best, best_j = iou, j
            if best >= 0.98:
                used[best_j] = True
                m += 1
                worst_iou = min(worst_iou, best)
                worst_score = max(worst_score, abs(b[best_j][1] - score))
        total += len(a); matched += m; extra += used.count(False)
        print(f"  {name}: cpu={len(a)} cuda={len(b)} matched={m}")
    ok = matched >= 0.98 * total and extra <= 0.02 * max(total, 1)
    print(f"{'PASS' if ok else 'FAIL'} cuda vs cpu: matched {matched}/{total}, extra {extra}, "
          f"worst mask IoU {worst_iou:.4f}, worst |dscore| {worst_score:.2e}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
